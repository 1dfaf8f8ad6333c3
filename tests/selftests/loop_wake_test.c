// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * loop_wake_test: the event loop sleeps when idle and every client poke
 * wakes it, on each way of watching the sleep word: the bridge thread
 * (forced, poll and io_uring backends), io_uring's FUTEX_WAIT (kernels
 * 6.7+, SKIP elsewhere) and the /dev/llmp bell (KMOD provider, SKIP without
 * the module; the QEMU guests of make check-vm run it).
 *
 * The broker runs in this process (a thread), its clients are forked
 * processes that register over TCP, so every poke crosses a process
 * boundary.  In the lost-wake-up test no timer can end a sleep (no stats
 * timer, dead-client checks once a minute, no nap): a lost wake-up
 * leaves the receiver without a message for its 10 s timeout and fails
 * the test instead of hiding behind a timer.
 *
 * LLMP_WAKE_MSGS: messages per sender in that test (default 700, 3 senders).
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "kselftest_harness.h"
#include "llmp/broker.h"
#include "llmp/llmp.h"
#include "llmp_test.h"

#define TAG_WAKE 0x5A4B0001u
#define NSEND 3
#define RECV_TIMEOUT_MS 10000

struct shared {
	atomic_int ready;	/* clients registered */
	atomic_int go;		/* parent -> senders: send */
	atomic_int quit;	/* parent -> children: free and exit */
	atomic_uint got;	/* receiver: messages taken */
	atomic_llong sent_ns;	/* one-message test: send and receive times */
	atomic_llong recv_ns;
	atomic_int failed;
	char why[256];
};

static int64_t mono_ns(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

static void child_fail(struct shared *sh, const char *fmt, ...)
{
	va_list ap;
	int zero = 0;

	/* The first failure keeps its reason (pairs with the load in the parent). */
	if (!atomic_compare_exchange_strong(&sh->failed, &zero, 1))
		return;
	va_start(ap, fmt);
	vsnprintf(sh->why, sizeof(sh->why), fmt, ap);
	va_end(ap);
}

/* Wait for a flag set by the parent, at most ms; false on timeout. */
static bool wait_flag(atomic_int *f, int ms)
{
	int64_t end = mono_ns() + (int64_t)ms * 1000000;

	/* Pairs with the parent's seq_cst store. */
	while (!atomic_load(f)) {
		if (mono_ns() > end)
			return false;
		usleep(1000);
	}
	return true;
}

static int child_connect(struct shared *sh, enum llmp_shmem_kind kind, uint16_t port,
			 struct llmp_provider **p, struct llmp_client **c)
{
	struct llmp_client_opts o = { .struct_size = sizeof(o), .send_timeout_ms = 10000 };

	if (llmp_provider_new(kind, p) < 0) {
		child_fail(sh, "child: provider: %s", llmp_strerror_last());
		return -1;
	}
	if (llmp_client_connect_tcp(*p, NULL, port, &o, c) < 0) {
		child_fail(sh, "child: connect: %s", llmp_strerror_last());
		llmp_provider_free(*p);
		return -1;
	}
	atomic_fetch_add(&sh->ready, 1); /* seq_cst, read by the parent */
	return 0;
}

static void child_done(struct shared *sh, struct llmp_provider *p, struct llmp_client *c)
{
	wait_flag(&sh->quit, 120000);
	llmp_client_free(c);
	llmp_provider_free(p);
}

/* Message: u32 sender, u32 seq, random bytes, u64 FNV-1a of everything before it. */
static int sender_main(struct shared *sh, enum llmp_shmem_kind kind, uint16_t port, uint32_t idx,
		       uint32_t n, unsigned max_gap_us)
{
	struct llmp_provider *p;
	struct llmp_client *c;
	uint64_t seed = 0x9E3779B97F4A7C15ull * (idx + 1), sum;
	uint8_t buf[256];

	if (child_connect(sh, kind, port, &p, &c) < 0)
		return 1;
	if (!wait_flag(&sh->go, 60000)) {
		child_fail(sh, "sender %u: never told to go", idx);
		return 1;
	}
	for (uint32_t seq = 0; seq < n; seq++) {
		size_t len = 16 + llmp_test_rand(&seed) % 200;
		unsigned gap = max_gap_us ? (unsigned)(llmp_test_rand(&seed) % (max_gap_us + 1)) : 0;

		if (gap)
			usleep(gap); /* idle: the broker may go to sleep */
		memcpy(buf, &idx, 4);
		memcpy(buf + 4, &seq, 4);
		for (size_t k = 8; k < len - 8; k++)
			buf[k] = (uint8_t)llmp_test_rand(&seed);
		sum = llmp_test_fnv(buf, len - 8);
		memcpy(buf + len - 8, &sum, 8);
		if (n == 1)
			atomic_store(&sh->sent_ns, mono_ns()); /* seq_cst, read by the parent */
		/* The send pokes the broker (the client got a waker at registration). */
		if (llmp_client_send(c, TAG_WAKE, 0, buf, len) < 0) {
			child_fail(sh, "sender %u: send %u: %s", idx, seq, llmp_strerror_last());
			return 1;
		}
	}
	child_done(sh, p, c);
	return 0;
}

static int receiver_main(struct shared *sh, enum llmp_shmem_kind kind, uint16_t port,
			 uint32_t nsend, uint32_t n)
{
	struct llmp_provider *p;
	struct llmp_client *c;
	uint32_t next[NSEND] = { 0 }, got = 0;

	if (child_connect(sh, kind, port, &p, &c) < 0)
		return 1;
	while (got < nsend * n) {
		struct llmp_msg_view v;
		uint32_t idx, seq;
		uint64_t sum;
		int r = llmp_client_recv_wait(c, &v, RECV_TIMEOUT_MS);

		if (r == 0) {
			child_fail(sh, "receiver: no message for %d ms after %u of %u: a lost wake-up",
				   RECV_TIMEOUT_MS, got, nsend * n);
			return 1;
		}
		if (r < 0) {
			child_fail(sh, "receiver: recv: %s", llmp_strerror_last());
			return 1;
		}
		if (v.tag != TAG_WAKE)
			continue;
		if (v.len < 16) {
			child_fail(sh, "receiver: %zu-byte message", (size_t)v.len);
			return 1;
		}
		memcpy(&idx, v.buf, 4);
		memcpy(&seq, (const uint8_t *)v.buf + 4, 4);
		memcpy(&sum, (const uint8_t *)v.buf + v.len - 8, 8);
		if (idx >= nsend || seq != next[idx] || sum != llmp_test_fnv(v.buf, v.len - 8)) {
			child_fail(sh, "receiver: sender %u seq %u (want %u), checksum %s", idx, seq,
				   idx < nsend ? next[idx] : 0,
				   sum == llmp_test_fnv(v.buf, v.len - 8) ? "ok" : "bad");
			return 1;
		}
		next[idx]++;
		got++;
		if (n == 1)
			atomic_store(&sh->recv_ns, mono_ns()); /* seq_cst, read by the parent */
		atomic_store(&sh->got, got);                   /* seq_cst, read by the parent */
	}
	child_done(sh, p, c);
	return 0;
}

/* ---- the broker side ----------------------------------------------------------- */

FIXTURE(wake)
{
	struct llmp_provider *p;
	struct llmp_broker *b;
	struct llmp_tcp_listener *l;
	struct llmp_loop *lp;
	uint16_t port;
	pthread_t t;
	bool running;
	int run_ret;
	struct shared *sh;
	pid_t kids[NSEND + 1];
	unsigned nkids;
	/* stats snapshots taken on the loop thread (on_stats) */
	pthread_mutex_t mu;
	struct llmp_loop_stats snap;
	unsigned nsnap;
};

FIXTURE_VARIANT(wake)
{
	enum llmp_loop_backend backend;
	enum llmp_loop_wake wake;
	enum llmp_shmem_kind kind;
	const char *mode; /* what llmp_loop_wake_name() must say */
};

FIXTURE_VARIANT_ADD(wake, poll_bridge)
{
	.backend = LLMP_LOOP_POLL, .wake = LLMP_LOOP_WAKE_BRIDGE, .kind = LLMP_SHMEM_MEMFD,
	.mode = "futex-bridge",
};
FIXTURE_VARIANT_ADD(wake, uring_bridge)
{
	.backend = LLMP_LOOP_URING, .wake = LLMP_LOOP_WAKE_BRIDGE, .kind = LLMP_SHMEM_MEMFD,
	.mode = "futex-bridge",
};
FIXTURE_VARIANT_ADD(wake, uring_futex_op)
{
	.backend = LLMP_LOOP_URING, .wake = LLMP_LOOP_WAKE_FUTEX, .kind = LLMP_SHMEM_MEMFD,
	.mode = "futex-op",
};
FIXTURE_VARIANT_ADD(wake, poll_bell)
{
	.backend = LLMP_LOOP_POLL, .wake = LLMP_LOOP_WAKE_BELL, .kind = LLMP_SHMEM_KMOD,
	.mode = "bell",
};
FIXTURE_VARIANT_ADD(wake, uring_bell)
{
	.backend = LLMP_LOOP_URING, .wake = LLMP_LOOP_WAKE_BELL, .kind = LLMP_SHMEM_KMOD,
	.mode = "bell",
};

static void on_stats(void *ctx, const struct llmp_loop_stats *st)
{
	struct _test_data_wake *self = ctx;

	pthread_mutex_lock(&self->mu);
	self->snap = *st;
	self->nsnap++;
	pthread_mutex_unlock(&self->mu);
}

/* The newest snapshot taken after the one numbered after (waits up to 5 s). */
static unsigned snapshot(struct _test_data_wake *self, unsigned after, struct llmp_loop_stats *st)
{
	int64_t end = mono_ns() + 5000000000ll;
	unsigned n;

	for (;;) {
		pthread_mutex_lock(&self->mu);
		n = self->nsnap;
		*st = self->snap;
		pthread_mutex_unlock(&self->mu);
		if (n > after || mono_ns() > end)
			return n;
		usleep(10000);
	}
}

static void *loop_thread(void *v)
{
	struct _test_data_wake *self = v;

	self->run_ret = llmp_loop_run(self->lp);
	return NULL;
}

FIXTURE_SETUP(wake)
{
	memset(&self->snap, 0, sizeof(self->snap));
	self->nsnap = 0;
	self->nkids = 0;
	self->running = false;
	pthread_mutex_init(&self->mu, NULL);
	self->sh = mmap(NULL, sizeof(*self->sh), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
			-1, 0);
	ASSERT_NE(MAP_FAILED, self->sh);
	memset(self->sh, 0, sizeof(*self->sh));
	self->p = NULL;
	self->b = NULL;
	self->l = NULL;
	self->lp = NULL;
	/* KMOD missing: the tests SKIP (this harness runs the body after a SKIP in setup). */
	if (llmp_provider_new(variant->kind, &self->p) < 0 && variant->kind != LLMP_SHMEM_KMOD)
		ASSERT_EQ(0, -1) TH_LOG("provider: %s", llmp_strerror_last());
}

FIXTURE_TEARDOWN(wake)
{
	for (unsigned i = 0; i < self->nkids; i++) {
		kill(self->kids[i], SIGKILL);
		waitpid(self->kids[i], NULL, 0);
	}
	if (self->running) {
		llmp_loop_stop(self->lp);
		pthread_join(self->t, NULL);
	}
	llmp_loop_free(self->lp);
	llmp_tcp_listener_free(self->l);
	if (self->b)
		llmp_broker_free(self->b);
	llmp_provider_free(self->p);
	munmap(self->sh, sizeof(*self->sh));
	pthread_mutex_destroy(&self->mu);
}

/* Broker, listener and loop: 0, or 1 when the variant cannot run here (reason in *why). */
static int broker_up(struct _test_data_wake *self, const struct _fixture_variant_wake *variant,
		     int stats_ms, const char **why)
{
	struct llmp_broker_opts bo = { .struct_size = sizeof(bo), .page_size = 1 << 18 };
	struct llmp_loop_opts oo = {
		.struct_size = sizeof(oo), .backend = variant->backend, .wake = variant->wake,
		.max_sleep_us = -1,         /* no nap: only a poke, an fd or a timer ends a sleep */
		.check_clients_ms = 60000,  /* nor the dead-client check */
		.stats_interval_ms = stats_ms, .on_stats = on_stats, .ctx = self,
	};
	int ret;

	*why = NULL;
	if (!self->p) {
		*why = "no usable /dev/llmp (load llmp.ko; make check-vm runs this)";
		return 1;
	}
	if (llmp_broker_new(self->p, &bo, &self->b) < 0 ||
	    llmp_tcp_listen(self->b, "127.0.0.1", 0, NULL, &self->l) < 0)
		return -1;
	self->port = llmp_tcp_listener_port(self->l);
	ret = llmp_loop_new(self->b, &oo, &self->lp);
	if (ret < 0 && variant->backend == LLMP_LOOP_URING) {
		static char why_uring[256]; /* not built with liburing, or the kernel refuses */

		snprintf(why_uring, sizeof(why_uring), "io_uring unavailable: %s", llmp_strerror_last());
		*why = why_uring;
		return 1;
	}
	if (ret < 0)
		return -1;
	if (strcmp(llmp_loop_wake_name(self->lp), variant->mode)) {
		/* FUTEX falls back to the bridge on kernels without IORING_OP_FUTEX_WAIT. */
		*why = "the kernel has no IORING_OP_FUTEX_WAIT (Linux 6.7+): the bridge variants cover it";
		return 1;
	}
	return llmp_loop_add_listener(self->lp, self->l);
}

/* Fork the receiver and nsend senders (before the loop thread starts). */
static int spawn(struct _test_data_wake *self, const struct _fixture_variant_wake *variant,
		 uint32_t nsend, uint32_t n, unsigned max_gap_us)
{
	for (uint32_t i = 0; i <= nsend; i++) {
		pid_t pid;

		fflush(NULL);
		pid = fork();
		if (pid < 0)
			return -1;
		if (pid == 0) {
			int r = i == 0 ? receiver_main(self->sh, variant->kind, self->port, nsend, n)
				       : sender_main(self->sh, variant->kind, self->port, i - 1, n,
						     max_gap_us);
			_exit(r);
		}
		self->kids[self->nkids++] = pid;
	}
	return 0;
}

static int start_loop(struct _test_data_wake *self)
{
	if (pthread_create(&self->t, NULL, loop_thread, self))
		return -1;
	self->running = true;
	return 0;
}

static void stop_loop(struct _test_data_wake *self)
{
	llmp_loop_stop(self->lp);
	pthread_join(self->t, NULL);
	self->running = false;
}

/* Wait until cond holds or a child failed, at most ms: true if it holds. */
#define WAIT_FOR(cond, ms)                                                              \
	({                                                                              \
		int64_t end_ = mono_ns() + (int64_t)(ms) * 1000000;                     \
		while (!(cond) && !atomic_load(&self->sh->failed) && mono_ns() < end_) \
			usleep(2000);                                                   \
		(bool)(cond);                                                           \
	})

/* Every child exits 0 within ms (after quit). */
static int reap(struct _test_data_wake *self, int ms)
{
	int64_t end = mono_ns() + (int64_t)ms * 1000000;
	int bad = 0;

	atomic_store(&self->sh->quit, 1); /* seq_cst, read by the children */
	for (unsigned i = 0; i < self->nkids;) {
		int status;
		pid_t r = waitpid(self->kids[i], &status, WNOHANG);

		if (r == 0 && mono_ns() < end) {
			usleep(5000);
			continue;
		}
		if (r == 0) {
			kill(self->kids[i], SIGKILL);
			waitpid(self->kids[i], &status, 0);
			bad++;
		} else if (!WIFEXITED(status) || WEXITSTATUS(status)) {
			bad++;
		}
		self->kids[i] = self->kids[--self->nkids];
	}
	return bad;
}

/*
 * Idle: the loop sleeps, and over an idle second it is woken only by its
 * own stats timer (4 a second), never by a client; then one message gets
 * through, woken by the sender's poke.
 */
TEST_F_TIMEOUT(wake, idle_then_one_message, 90)
{
	struct llmp_loop_stats a, b, fin;
	const char *why;
	unsigned na, nb;
	int r;

	r = broker_up(self, variant, 250, &why);
	if (r == 1)
		SKIP(return, "%s", why);
	ASSERT_EQ(0, r) TH_LOG("%s", llmp_strerror_last());
	ASSERT_EQ(0, spawn(self, variant, 1, 1, 0));
	ASSERT_EQ(0, start_loop(self));
	ASSERT_TRUE(WAIT_FOR(atomic_load(&self->sh->ready) == 2, 30000)) TH_LOG("%s", self->sh->why);
	usleep(300000);
	na = snapshot(self, 0, &a);
	usleep(1000000);
	nb = snapshot(self, na, &b);
	ASSERT_GT(nb, na);
	TH_LOG("%s/%s: idle second: %llu sleeps, %llu wake-ups by clients",
	       llmp_loop_backend_name(self->lp), llmp_loop_wake_name(self->lp),
	       (unsigned long long)(b.sleeps - a.sleeps),
	       (unsigned long long)(b.wakeups - a.wakeups));
	ASSERT_GT(a.sleeps, 0);                /* it went to sleep */
	ASSERT_EQ(a.wakeups, b.wakeups);       /* nobody woke it while idle */
	ASSERT_EQ(a.msgs_in, b.msgs_in);
	/* The stats timer (4 a second) and nothing else: a 1 ms nap would make ~1000. */
	ASSERT_LE(b.sleeps - a.sleeps, 20);

	atomic_store(&self->sh->go, 1); /* seq_cst, read by the sender */
	ASSERT_TRUE(WAIT_FOR(atomic_load(&self->sh->got) == 1, 20000)) TH_LOG("%s", self->sh->why);
	TH_LOG("first message after idle: %lld us",
	       (long long)(atomic_load(&self->sh->recv_ns) - atomic_load(&self->sh->sent_ns)) / 1000);
	stop_loop(self);
	ASSERT_EQ(0, self->run_ret);
	llmp_loop_stats(self->lp, &fin);
	/* The send flipped the word of a sleeping broker: exactly one wake-up. */
	ASSERT_EQ(1, fin.wakeups);
	ASSERT_EQ(0, reap(self, 30000)) TH_LOG("%s", self->sh->why);
}

/*
 * Three sender processes, LLMP_WAKE_MSGS messages each at random gaps of
 * 0..2 ms, so the broker falls asleep between many of them: every message
 * arrives, in order and intact, each within 10 s although nothing but a
 * poke can end a sleep before the dead-client check a minute later.
 */
TEST_F_TIMEOUT(wake, no_lost_wakeup, 300)
{
	const char *env = getenv("LLMP_WAKE_MSGS");
	uint32_t n = env ? (uint32_t)strtoul(env, NULL, 0) : 700;
	struct llmp_loop_stats fin;
	const char *why;
	int r;

	if (!n)
		n = 1;
	r = broker_up(self, variant, 0, &why);
	if (r == 1)
		SKIP(return, "%s", why);
	ASSERT_EQ(0, r) TH_LOG("%s", llmp_strerror_last());
	ASSERT_EQ(0, spawn(self, variant, NSEND, n, 2000));
	ASSERT_EQ(0, start_loop(self));
	ASSERT_TRUE(WAIT_FOR(atomic_load(&self->sh->ready) == NSEND + 1, 30000))
		TH_LOG("%s", self->sh->why);
	atomic_store(&self->sh->go, 1); /* seq_cst, read by the senders */
	ASSERT_TRUE(WAIT_FOR(atomic_load(&self->sh->got) == NSEND * n, 240000))
		TH_LOG("got %u of %u: %s", atomic_load(&self->sh->got), NSEND * n, self->sh->why);
	stop_loop(self);
	ASSERT_EQ(0, self->run_ret);
	llmp_loop_stats(self->lp, &fin);
	TH_LOG("%s/%s: %u messages, %llu sleeps, %llu woken by pokes",
	       llmp_loop_backend_name(self->lp), llmp_loop_wake_name(self->lp), NSEND * n,
	       (unsigned long long)fin.sleeps, (unsigned long long)fin.wakeups);
	ASSERT_GE(fin.msgs_in, NSEND * n);
	ASSERT_GT(fin.wakeups, 0);
	/* Each poke that found it asleep ended one sleep: never more wake-ups than sleeps. */
	ASSERT_LE(fin.wakeups, fin.sleeps);
	ASSERT_EQ(0, reap(self, 30000)) TH_LOG("%s", self->sh->why);
}

/* ---- options --------------------------------------------------------------------- */

/* A bell needs the KMOD provider; AUTO and the environment pick the futex ways. */
TEST(wake_options)
{
	struct llmp_provider *p;
	struct llmp_broker *b;
	struct llmp_loop *lp;
	struct llmp_broker_opts bo = { .struct_size = sizeof(bo) };
	struct llmp_loop_opts oo = { .struct_size = sizeof(oo), .wake = LLMP_LOOP_WAKE_BELL };

	ASSERT_EQ(0, llmp_provider_new(LLMP_SHMEM_MEMFD, &p));
	ASSERT_EQ(0, llmp_broker_new(p, &bo, &b));
	ASSERT_EQ(-EOPNOTSUPP, llmp_loop_new(b, &oo, &lp));
	ASSERT_EQ(NULL, lp);
	oo.wake = (enum llmp_loop_wake)7;
	ASSERT_EQ(-EINVAL, llmp_loop_new(b, &oo, &lp));
	oo.wake = LLMP_LOOP_WAKE_AUTO;
	oo.check_clients_ms = -1;
	ASSERT_EQ(-EINVAL, llmp_loop_new(b, &oo, &lp));
	oo.check_clients_ms = 0;
	/* memfd: no bell; the futex word, by io_uring's op where the kernel has it */
	ASSERT_EQ(0, llmp_loop_new(b, &oo, &lp));
	ASSERT_TRUE(!strcmp(llmp_loop_wake_name(lp), "futex-op") ||
		    !strcmp(llmp_loop_wake_name(lp), "futex-bridge"));
	llmp_loop_free(lp);
	oo.backend = LLMP_LOOP_POLL;
	ASSERT_EQ(0, llmp_loop_new(b, &oo, &lp));
	ASSERT_STREQ("futex-bridge", llmp_loop_wake_name(lp));
	llmp_loop_free(lp);
	oo.backend = LLMP_LOOP_AUTO;
	setenv("LLMP_LOOP_NO_FUTEX_OP", "1", 1);
	ASSERT_EQ(0, llmp_loop_new(b, &oo, &lp));
	unsetenv("LLMP_LOOP_NO_FUTEX_OP");
	ASSERT_STREQ("futex-bridge", llmp_loop_wake_name(lp));
	llmp_loop_free(lp);
	/* An older caller's smaller struct: the new fields read as their defaults. */
	oo.struct_size = offsetof(struct llmp_loop_opts, wake);
	oo.wake = (enum llmp_loop_wake)7;
	ASSERT_EQ(0, llmp_loop_new(b, &oo, &lp));
	llmp_loop_free(lp);
	llmp_broker_free(b);
	llmp_provider_free(p);
}

TEST_HARNESS_MAIN
