// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * lossless_test: the loop's lossless mode (llmp_loop_set_lossless()).  A
 * full-speed soak through a small history (256 KiB of 64 KiB pages) with
 * one slow receiver loses nothing (every message counted and checksummed,
 * in order, no -ESTALE), where the same soak without the mode makes the
 * slow receiver lose, and both receivers still read on to the newest
 * message (an end marker sent after all the rest); a SIGSTOPped receiver is no longer waited for after
 * the stuck timeout while the other goes on, and after SIGCONT it gets
 * -ESTALE and reads on; a client that writes garbage into its position in
 * the control segment holds the broker back at most once for the timeout.
 *
 * The broker runs in this process (a thread), its clients are forked
 * processes that register over TCP (so each has a waker and a slot).
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
#include "ctl.h"
#include "tcp.h"

#define TAG_LL 0x4C4C0001u
#define TAG_END 0x4C4C0002u /* after every sender committed all: the newest message */
#define MAXKIDS 6
#define MAXSEND 2

struct rx {
	atomic_uint got;     /* messages taken */
	atomic_uint stale;   /* -ESTALE returns */
	atomic_uint lost;    /* sequence numbers never seen */
	atomic_int done;     /* saw the last message of every sender, or TAG_END */
	atomic_int saw_end;  /* TAG_END arrived */
};

struct shared {
	atomic_int ready;    /* clients registered */
	atomic_int go;       /* parent -> senders */
	atomic_int quit;     /* parent -> children: free and exit */
	atomic_int failed;
	atomic_uint sent[MAXSEND]; /* messages each sender committed */
	struct rx rx[MAXKIDS];
	char why[256];
};

struct kid {
	enum { RECV, SEND, HOSTILE } role;
	uint32_t idx;        /* sender index, or receiver index into sh->rx */
	uint32_t n;          /* sender: messages; receiver: per sender */
	uint32_t nsend;      /* receiver: senders to expect */
	unsigned slow_every, slow_us; /* receiver: a pause every slow_every messages */
	bool end_marker;     /* sender: TAG_END once every sender committed all */
};

static int64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void child_fail(struct shared *sh, const char *fmt, unsigned a, unsigned b)
{
	char what[160];

	snprintf(what, sizeof(what), fmt, a, b);
	if (atomic_exchange(&sh->failed, 1) == 0)
		snprintf(sh->why, sizeof(sh->why), "%s: %s", what, llmp_strerror_last());
}

static bool wait_flag(atomic_int *f, int ms)
{
	int64_t end = mono_ns() + (int64_t)ms * 1000000;

	while (!atomic_load(f)) { /* seq_cst, stored by the parent */
		if (mono_ns() > end)
			return false;
		usleep(1000);
	}
	return true;
}

static int receiver(struct shared *sh, struct llmp_client *c, const struct kid *k)
{
	struct rx *rx = &sh->rx[k->idx];
	uint32_t next[MAXSEND] = { 0 }, ended = 0;

	while (ended < k->nsend) {
		struct llmp_msg_view v;
		uint32_t idx, seq;
		uint64_t sum;
		bool end = atomic_load(&rx->saw_end);
		int r = llmp_client_recv_wait(c, &v, end ? 500 : 30000);

		if (r == 0 && end)
			break; /* drained: what followed TAG_END (a pass's stragglers) */
		if (r == -ESTALE) {
			atomic_fetch_add(&rx->stale, 1);
			continue;
		}
		if (r <= 0) {
			char what[96];

			snprintf(what, sizeof(what), "receiver %%u: %s (got %%u; sent %u, %u)",
				 r ? "recv" : "nothing for 30 s", atomic_load(&sh->sent[0]),
				 atomic_load(&sh->sent[1]));
			child_fail(sh, what, k->idx, atomic_load(&rx->got));
			return 1;
		}
		if (v.tag == TAG_END)
			atomic_store(&rx->saw_end, 1);
		if (v.tag != TAG_LL)
			continue;
		memcpy(&idx, v.buf, 4);
		memcpy(&seq, (const uint8_t *)v.buf + 4, 4);
		memcpy(&sum, (const uint8_t *)v.buf + v.len - 8, 8);
		if (v.len < 16 || idx >= k->nsend || seq < next[idx] || seq >= k->n ||
		    sum != llmp_test_fnv(v.buf, v.len - 8)) {
			child_fail(sh, "receiver %u: message %u out of order or corrupt", k->idx, seq);
			return 1;
		}
		atomic_fetch_add(&rx->lost, seq - next[idx]);
		next[idx] = seq + 1;
		ended += seq == k->n - 1;
		atomic_fetch_add(&rx->got, 1);
		if (k->slow_every && atomic_load(&rx->got) % k->slow_every == 0)
			usleep(k->slow_us);
	}
	atomic_store(&rx->done, 1);
	return 0;
}

static int sender(struct shared *sh, struct llmp_client *c, const struct kid *k)
{
	uint64_t seed = 0x9E3779B97F4A7C15ull * (k->idx + 1);
	static uint8_t buf[2048];

	if (!wait_flag(&sh->go, 60000)) {
		child_fail(sh, "sender %u: never told to go (%u)", k->idx, 0);
		return 1;
	}
	for (uint32_t seq = 0; seq < k->n; seq++) {
		size_t len = 16 + llmp_test_rand(&seed) % 2000;
		uint64_t sum;

		memcpy(buf, &k->idx, 4);
		memcpy(buf + 4, &seq, 4);
		for (size_t i = 8; i < len - 8; i += 8) {
			uint64_t x = llmp_test_rand(&seed);

			memcpy(buf + i, &x, len - 8 - i < 8 ? len - 8 - i : 8);
		}
		sum = llmp_test_fnv(buf, len - 8);
		memcpy(buf + len - 8, &sum, 8);
		if (llmp_client_send(c, TAG_LL, 0, buf, len) < 0) {
			child_fail(sh, "sender %u: send %u", k->idx, seq);
			return 1;
		}
		atomic_store(&sh->sent[k->idx], seq + 1);
	}
	if (!k->end_marker)
		return 0;
	/*
	 * Lossy receivers that fell behind may never see the other sender's
	 * last message (newer traffic pushed it out of the history), but the
	 * newest message of all stays until they read it.  The soak, the only
	 * user, has MAXSEND senders of k->n messages each; sent[] pairs with
	 * their seq_cst stores above.
	 */
	int64_t end = mono_ns() + 170000000000ll;

	for (unsigned i = 0; i < MAXSEND; i++)
		while (atomic_load(&sh->sent[i]) < k->n && mono_ns() < end)
			usleep(1000);
	if (llmp_client_send(c, TAG_END, 0, "the end", 8) < 0) {
		child_fail(sh, "sender %u: send the end marker (%u)", k->idx, 0);
		return 1;
	}
	return 0;
}

/* A client that writes garbage into its own position (and duplicates of its claim). */
static int hostile(struct shared *sh, struct llmp_client *c, uint16_t port)
{
	uint32_t me = llmp_client_id(c);
	uint64_t seed = 0xBADC0FFEEull;
	struct llmp_provider *p;
	struct llmp_wire_msg info;
	struct llmp_shmem_desc d;
	struct llmp_shmem *m;
	struct llmp_ctl *ctl;

	if (llmp_provider_new(LLMP_SHMEM_MEMFD, &p) < 0 ||
	    llmp_tcp_ext_query("127.0.0.1", port, &info) < 0 ||
	    llmp_wire_desc_to_shmem(&info.desc, LLMP_SHMEM_MEMFD, &d) < 0 ||
	    llmp_shmem_attach(p, &d, &m) < 0) {
		child_fail(sh, "hostile %u: map the control segment (%u)", me, 0);
		return 1;
	}
	ctl = llmp_shmem_addr(m);
	for (unsigned i = 0; i < 8; i++) {
		uint32_t free_slot = 0;

		/* Claim more slots with our id (the loop counts a client once). */
		__atomic_compare_exchange_n(&ctl->pokers[LLMP_CTL_POKERS - 1 - i].id, &free_slot, me,
					    false, __ATOMIC_SEQ_CST, __ATOMIC_RELAXED);
	}
	while (!atomic_load(&sh->quit)) {
		for (unsigned i = 0; i < LLMP_CTL_POKERS; i++) {
			uint64_t r = llmp_test_rand(&seed);
			uint64_t v = r % 4 == 0 ? 1 : r % 4 == 1 ? r : r % 4 == 2 ? 0 : r % 8;

			if (__atomic_load_n(&ctl->pokers[i].id, __ATOMIC_RELAXED) == me)
				__atomic_store_n(&ctl->pokers[i].pos, v, __ATOMIC_RELAXED);
		}
		usleep(100);
	}
	llmp_shmem_put(m);
	llmp_provider_free(p);
	return 0;
}

static int kid_main(struct shared *sh, uint16_t port, const struct kid *k)
{
	struct llmp_client_opts o = { .struct_size = sizeof(o), .send_timeout_ms = 60000,
				      .page_size = 1 << 16 };
	struct llmp_provider *p;
	struct llmp_client *c;
	int r;

	if (llmp_provider_new(LLMP_SHMEM_MEMFD, &p) < 0 ||
	    llmp_client_connect_tcp(p, "127.0.0.1", port, &o, &c) < 0) {
		child_fail(sh, "kid %u/%u: connect", k->role, k->idx);
		return 1;
	}
	atomic_fetch_add(&sh->ready, 1); /* seq_cst, read by the parent */
	r = k->role == RECV ? receiver(sh, c, k) : k->role == SEND ? sender(sh, c, k) :
	    hostile(sh, c, port);
	wait_flag(&sh->quit, 180000);
	llmp_client_free(c);
	llmp_provider_free(p);
	return r;
}

FIXTURE(ll)
{
	struct shared *sh;
	struct llmp_provider *p;
	struct llmp_broker *b;
	struct llmp_tcp_listener *l;
	struct llmp_loop *lp;
	uint16_t port;
	pthread_t t;
	bool running;
	int run_ret;
	pid_t kids[MAXKIDS];
	unsigned nkids;
};

static void *loop_thread(void *v)
{
	struct _test_data_ll *self = v;

	self->run_ret = llmp_loop_run(self->lp);
	return NULL;
}

FIXTURE_SETUP(ll)
{
	struct llmp_broker_opts bo = { .struct_size = sizeof(bo), .page_size = 1 << 16,
				       .history_bytes = 256 << 10 };
	struct llmp_loop_opts oo = { .struct_size = sizeof(oo) };

	self->nkids = 0;
	self->running = false;
	self->sh = mmap(NULL, sizeof(*self->sh), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
			-1, 0);
	ASSERT_NE(MAP_FAILED, self->sh);
	memset(self->sh, 0, sizeof(*self->sh));
	ASSERT_EQ(0, llmp_provider_new(LLMP_SHMEM_MEMFD, &self->p));
	ASSERT_EQ(0, llmp_broker_new(self->p, &bo, &self->b));
	ASSERT_EQ(0, llmp_tcp_listen(self->b, "127.0.0.1", 0, NULL, &self->l));
	self->port = llmp_tcp_listener_port(self->l);
	ASSERT_EQ(0, llmp_loop_new(self->b, &oo, &self->lp)) TH_LOG("%s", llmp_strerror_last());
	ASSERT_EQ(0, llmp_loop_add_listener(self->lp, self->l));
}

FIXTURE_TEARDOWN(ll)
{
	for (unsigned i = 0; i < self->nkids; i++) {
		kill(self->kids[i], SIGCONT);
		kill(self->kids[i], SIGKILL);
		waitpid(self->kids[i], NULL, 0);
	}
	if (self->running) {
		llmp_loop_stop(self->lp);
		pthread_join(self->t, NULL);
	}
	llmp_loop_free(self->lp);
	llmp_tcp_listener_free(self->l);
	llmp_broker_free(self->b);
	llmp_provider_free(self->p);
	munmap(self->sh, sizeof(*self->sh));
}

/* Fork the clients, start the loop, wait until all registered, then go. */
static int start(struct _test_data_ll *self, const struct kid *k, unsigned n)
{
	int64_t end = mono_ns() + 30000000000ll;

	for (unsigned i = 0; i < n; i++) {
		pid_t pid;

		fflush(NULL);
		pid = fork();
		if (pid < 0)
			return -1;
		if (pid == 0)
			_exit(kid_main(self->sh, self->port, &k[i]));
		self->kids[self->nkids++] = pid;
	}
	if (pthread_create(&self->t, NULL, loop_thread, self))
		return -1;
	self->running = true;
	while (atomic_load(&self->sh->ready) < (int)n && mono_ns() < end)
		usleep(2000);
	if (atomic_load(&self->sh->ready) < (int)n)
		return -1;
	atomic_store(&self->sh->go, 1); /* seq_cst, read by the senders */
	return 0;
}

#define WAIT_FOR(cond, ms)                                                              \
	({                                                                              \
		int64_t end_ = mono_ns() + (int64_t)(ms) * 1000000;                     \
		while (!(cond) && !atomic_load(&self->sh->failed) && mono_ns() < end_) \
			usleep(2000);                                                   \
		(bool)(cond);                                                           \
	})

/* Every child exits 0 within 30 s of quit. */
static int reap(struct _test_data_ll *self)
{
	int64_t end = mono_ns() + 30000000000ll;
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

#define SOAK_N 40000u

/* Two senders at full speed, a fast and a slow receiver; lossless on or off. */
static void soak(struct __test_metadata *_metadata, struct _test_data_ll *self, bool lossless)
{
	struct kid k[4] = {
		{ .role = RECV, .idx = 0, .n = SOAK_N, .nsend = 2 },
		{ .role = RECV, .idx = 1, .n = SOAK_N, .nsend = 2, .slow_every = 100, .slow_us = 2000 },
		{ .role = SEND, .idx = 0, .n = SOAK_N, .end_marker = !lossless },
		{ .role = SEND, .idx = 1, .n = SOAK_N },
	};
	struct rx *a = &self->sh->rx[0], *s = &self->sh->rx[1];

	if (lossless)
		ASSERT_EQ(0, llmp_loop_set_lossless(self->lp, 5000));
	ASSERT_EQ(0, start(self, k, 4)) TH_LOG("%s", self->sh->why);
	if (!lossless) {
		/*
		 * The slow receiver falls behind the history and loses; both
		 * still read on to the end marker (the newest message, never
		 * dropped before they read it): none stops receiving early.
		 */
		ASSERT_TRUE(WAIT_FOR(atomic_load(&a->done) && atomic_load(&s->done), 170000))
			TH_LOG("fast %u, slow %u of %u (end seen %d, %d): %s", atomic_load(&a->got),
			       atomic_load(&s->got), 2 * SOAK_N, atomic_load(&a->saw_end),
			       atomic_load(&s->saw_end), self->sh->why);
		/* tail: after the last message seen from a sender, never seen */
		TH_LOG("lossless off: fast %u messages, %u lost, %u -ESTALE, tail %u; slow %u, %u "
		       "lost, %u -ESTALE, tail %u", atomic_load(&a->got), atomic_load(&a->lost),
		       atomic_load(&a->stale), 2 * SOAK_N - atomic_load(&a->got) - atomic_load(&a->lost),
		       atomic_load(&s->got), atomic_load(&s->lost), atomic_load(&s->stale),
		       2 * SOAK_N - atomic_load(&s->got) - atomic_load(&s->lost));
		EXPECT_LT(0, atomic_load(&s->stale));
		EXPECT_LT(0, atomic_load(&s->lost));
		EXPECT_GE(2 * SOAK_N, atomic_load(&a->got) + atomic_load(&a->lost));
		EXPECT_GE(2 * SOAK_N, atomic_load(&s->got) + atomic_load(&s->lost));
		ASSERT_EQ(0, reap(self)) TH_LOG("%s", self->sh->why);
		return;
	}
	ASSERT_TRUE(WAIT_FOR(atomic_load(&a->done) && atomic_load(&s->done), 170000))
		TH_LOG("fast %u, slow %u of %u: %s", atomic_load(&a->got), atomic_load(&s->got),
		       2 * SOAK_N, self->sh->why);
	TH_LOG("lossless on: fast receiver %u messages, %u lost, %u -ESTALE; slow %u, %u lost, "
	       "%u -ESTALE", atomic_load(&a->got), atomic_load(&a->lost),
	       atomic_load(&a->stale), atomic_load(&s->got), atomic_load(&s->lost),
	       atomic_load(&s->stale));
	ASSERT_EQ(2 * SOAK_N, atomic_load(&a->got));
	ASSERT_EQ(2 * SOAK_N, atomic_load(&s->got));
	ASSERT_EQ(0, atomic_load(&a->stale) + atomic_load(&s->stale));
	ASSERT_EQ(0, atomic_load(&a->lost) + atomic_load(&s->lost));
	ASSERT_EQ(0, reap(self)) TH_LOG("%s", self->sh->why);
}

TEST_F_TIMEOUT(ll, soak_loses_nothing, 200)
{
	soak(_metadata, self, true);
}

TEST_F_TIMEOUT(ll, soak_without_lossless_loses, 200)
{
	soak(_metadata, self, false);
}

/*
 * Receiver B is SIGSTOPped: after the 1 s stuck timeout the broker no
 * longer waits for it, and receiver A gets every message; after SIGCONT B
 * gets -ESTALE and reads on to the end.
 */
TEST_F_TIMEOUT(ll, sigstopped_receiver_dropped, 200)
{
	struct kid k[3] = {
		{ .role = RECV, .idx = 0, .n = SOAK_N, .nsend = 1 },
		{ .role = RECV, .idx = 1, .n = SOAK_N, .nsend = 1 },
		{ .role = SEND, .idx = 0, .n = SOAK_N },
	};
	struct rx *a = &self->sh->rx[0], *b = &self->sh->rx[1];
	unsigned at_stop;

	ASSERT_EQ(0, llmp_loop_set_lossless(self->lp, 1000));
	ASSERT_EQ(0, start(self, k, 3)) TH_LOG("%s", self->sh->why);
	ASSERT_TRUE(WAIT_FOR(atomic_load(&b->got) >= 500, 60000)) TH_LOG("%s", self->sh->why);
	ASSERT_EQ(0, kill(self->kids[1], SIGSTOP));
	at_stop = atomic_load(&b->got);
	ASSERT_TRUE(WAIT_FOR(atomic_load(&a->done), 120000))
		TH_LOG("A got %u of %u while B is stopped: %s", atomic_load(&a->got), SOAK_N,
		       self->sh->why);
	ASSERT_EQ(SOAK_N, atomic_load(&a->got));
	ASSERT_EQ(0, atomic_load(&a->stale));
	ASSERT_EQ(0, atomic_load(&a->lost));
	ASSERT_EQ(at_stop, atomic_load(&b->got)); /* it really was stopped */
	ASSERT_EQ(0, kill(self->kids[1], SIGCONT));
	ASSERT_TRUE(WAIT_FOR(atomic_load(&b->done), 60000)) TH_LOG("%s", self->sh->why);
	TH_LOG("B: %u messages before SIGSTOP, %u in all, %u lost, %u -ESTALE", at_stop,
	       atomic_load(&b->got), atomic_load(&b->lost), atomic_load(&b->stale));
	ASSERT_GE(atomic_load(&b->stale), 1);
	ASSERT_GT(atomic_load(&b->lost), 0);
	ASSERT_EQ(0, reap(self)) TH_LOG("%s", self->sh->why);
}

/*
 * A client that writes garbage into its position (1, 0, small, huge, at
 * random, in its own slot and in eight more it claimed with its id) holds
 * the broker back at most once for the stuck timeout: the honest receiver
 * gets every message of a full-speed sender, in order, without -ESTALE.
 */
TEST_F_TIMEOUT(ll, hostile_position, 200)
{
	struct kid k[3] = {
		{ .role = HOSTILE },
		{ .role = RECV, .idx = 0, .n = SOAK_N, .nsend = 1 },
		{ .role = SEND, .idx = 0, .n = SOAK_N },
	};
	struct rx *a = &self->sh->rx[0];
	int64_t t0;

	ASSERT_EQ(0, llmp_loop_set_lossless(self->lp, 500));
	t0 = mono_ns();
	ASSERT_EQ(0, start(self, k, 3)) TH_LOG("%s", self->sh->why);
	ASSERT_TRUE(WAIT_FOR(atomic_load(&a->done), 120000))
		TH_LOG("got %u of %u: %s", atomic_load(&a->got), SOAK_N, self->sh->why);
	TH_LOG("%u messages past a hostile position writer in %lld ms", atomic_load(&a->got),
	       (long long)(mono_ns() - t0) / 1000000);
	ASSERT_EQ(SOAK_N, atomic_load(&a->got));
	ASSERT_EQ(0, atomic_load(&a->stale));
	ASSERT_EQ(0, atomic_load(&a->lost));
	ASSERT_EQ(0, reap(self)) TH_LOG("%s", self->sh->why);
}

/* Arguments. */
TEST_F(ll, set_lossless_args)
{
	ASSERT_EQ(-EINVAL, llmp_loop_set_lossless(NULL, 1000));
	ASSERT_EQ(-EINVAL, llmp_loop_set_lossless(self->lp, -1));
	ASSERT_EQ(0, llmp_loop_set_lossless(self->lp, 1000));
	ASSERT_EQ(0, llmp_loop_set_lossless(self->lp, 0));
}

TEST_HARNESS_MAIN
