// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * loop_nap_test: the event loop with its default options sleeps until
 * woken while every registered client can wake it (ours: they claim a slot
 * of the control segment's poker table), and naps only while a client that
 * cannot (LibAFL's; here ours with its waker taken away, which registers
 * and sends exactly as LibAFL's does and never pokes) is registered.
 * Messages get through either way; garbage in the poker table is cleared
 * and changes nothing for honest clients.
 *
 * The broker runs in this process (a thread), its clients are forked
 * processes that register over TCP.  The loop's wake-ups are counted with
 * its sleeps counter; the stats timer (4 a second) and nothing else ends a
 * sleep of an idle loop that does not nap, a 1 ms nap makes hundreds.
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

#define TAG_NAP 0x4E415001u
#define MAXKIDS 12

struct shared {
	atomic_int ready;	/* clients registered */
	atomic_int go;		/* parent -> senders: send */
	atomic_int leave;	/* parent -> the LibAFL-style sender: free the client */
	atomic_int quit;	/* parent -> children: free and exit */
	atomic_uint got;	/* receiver: messages taken */
	atomic_uint recv_id;	/* the receiver's client id */
	atomic_int failed;
	char why[256];
};

struct kid {
	bool recv;	/* the receiver, else a sender */
	bool libafl;	/* a sender without waker */
	uint32_t idx, n;
};

static int64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void child_fail(struct shared *sh, const char *what)
{
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

/* One client process: the receiver checks every message, a sender sends n. */
static int kid_main(struct shared *sh, uint16_t port, const struct kid *k, uint32_t total)
{
	struct llmp_client_opts o = { .struct_size = sizeof(o), .send_timeout_ms = 10000 };
	uint32_t next[MAXKIDS] = { 0 }, got = 0;
	uint64_t seed = 0x9E3779B97F4A7C15ull * (k->idx + 1);
	struct llmp_provider *p;
	struct llmp_client *c;
	uint8_t buf[128];

	if (llmp_provider_new(LLMP_SHMEM_MEMFD, &p) < 0 ||
	    llmp_client_connect_tcp(p, "127.0.0.1", port, &o, &c) < 0) {
		child_fail(sh, "connect");
		return 1;
	}
	if (k->libafl)
		llmp_client_set_waker(c, NULL); /* never pokes, as LibAFL's clients */
	if (k->recv)
		atomic_store(&sh->recv_id, llmp_client_id(c));
	atomic_fetch_add(&sh->ready, 1); /* seq_cst, read by the parent */
	while (k->recv && got < total) {
		struct llmp_msg_view v;
		uint32_t idx, seq;
		uint64_t sum;
		int r = llmp_client_recv_wait(c, &v, 20000);

		if (r <= 0) {
			child_fail(sh, r == 0 ? "receiver: nothing for 20 s" : "receiver: recv");
			return 1;
		}
		if (v.tag != TAG_NAP)
			continue;
		memcpy(&idx, v.buf, 4);
		memcpy(&seq, (const uint8_t *)v.buf + 4, 4);
		memcpy(&sum, (const uint8_t *)v.buf + v.len - 8, 8);
		if (v.len < 16 || idx >= MAXKIDS || seq != next[idx] ||
		    sum != llmp_test_fnv(v.buf, v.len - 8)) {
			child_fail(sh, "receiver: a message out of order or corrupt");
			return 1;
		}
		next[idx]++;
		atomic_store(&sh->got, ++got); /* seq_cst, read by the parent */
	}
	if (!k->recv && k->n && !wait_flag(&sh->go, 60000)) {
		child_fail(sh, "sender: never told to go");
		return 1;
	}
	for (uint32_t seq = 0; !k->recv && seq < k->n; seq++) {
		size_t len = 16 + llmp_test_rand(&seed) % 100;
		uint64_t sum;

		usleep(llmp_test_rand(&seed) % 3000); /* idle gaps: the broker goes to sleep */
		memcpy(buf, &k->idx, 4);
		memcpy(buf + 4, &seq, 4);
		for (size_t i = 8; i < len - 8; i++)
			buf[i] = (uint8_t)llmp_test_rand(&seed);
		sum = llmp_test_fnv(buf, len - 8);
		memcpy(buf + len - 8, &sum, 8);
		if (llmp_client_send(c, TAG_NAP, 0, buf, len) < 0) {
			child_fail(sh, "sender: send");
			return 1;
		}
	}
	if (k->libafl) {
		wait_flag(&sh->leave, 120000);
		llmp_client_free(c); /* EXITING: the broker forgets it */
		c = NULL;
	}
	wait_flag(&sh->quit, 120000);
	llmp_client_free(c);
	llmp_provider_free(p);
	return 0;
}

FIXTURE(nap)
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
	pthread_mutex_t mu;
	struct llmp_loop_stats snap;
	unsigned nsnap;
};

static void on_stats(void *ctx, const struct llmp_loop_stats *st)
{
	struct _test_data_nap *self = ctx;

	pthread_mutex_lock(&self->mu);
	self->snap = *st;
	self->nsnap++;
	pthread_mutex_unlock(&self->mu);
}

static void *loop_thread(void *v)
{
	struct _test_data_nap *self = v;

	self->run_ret = llmp_loop_run(self->lp);
	return NULL;
}

FIXTURE_SETUP(nap)
{
	struct llmp_broker_opts bo = { .struct_size = sizeof(bo), .page_size = 1 << 18 };
	/* The defaults (nap AUTO, 1 ms naps) but for a stats timer and no dead-client checks. */
	struct llmp_loop_opts oo = { .struct_size = sizeof(oo), .stats_interval_ms = 250,
				     .on_stats = on_stats, .ctx = self, .check_clients_ms = 60000 };

	memset(&self->snap, 0, sizeof(self->snap));
	self->nsnap = 0;
	self->nkids = 0;
	self->running = false;
	pthread_mutex_init(&self->mu, NULL);
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

FIXTURE_TEARDOWN(nap)
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
	llmp_broker_free(self->b);
	llmp_provider_free(self->p);
	munmap(self->sh, sizeof(*self->sh));
	pthread_mutex_destroy(&self->mu);
}

/* Fork the clients (before the loop thread starts), then start the loop. */
static int start(struct _test_data_nap *self, const struct kid *k, unsigned n)
{
	uint32_t total = 0;

	for (unsigned i = 0; i < n; i++)
		total += k[i].recv ? 0 : k[i].n;
	for (unsigned i = 0; i < n; i++) {
		pid_t pid;

		fflush(NULL);
		pid = fork();
		if (pid < 0)
			return -1;
		if (pid == 0)
			_exit(kid_main(self->sh, self->port, &k[i], total));
		self->kids[self->nkids++] = pid;
	}
	if (pthread_create(&self->t, NULL, loop_thread, self))
		return -1;
	self->running = true;
	return 0;
}

#define WAIT_FOR(cond, ms)                                                              \
	({                                                                              \
		int64_t end_ = mono_ns() + (int64_t)(ms) * 1000000;                     \
		while (!(cond) && !atomic_load(&self->sh->failed) && mono_ns() < end_) \
			usleep(2000);                                                   \
		(bool)(cond);                                                           \
	})

/* Stats of a whole idle second (the snapshots of the stats timer before and after). */
static void idle_second(struct _test_data_nap *self, struct llmp_loop_stats *d)
{
	struct llmp_loop_stats a, b;
	unsigned na;

	usleep(300000);
	pthread_mutex_lock(&self->mu);
	a = self->snap;
	na = self->nsnap;
	pthread_mutex_unlock(&self->mu);
	usleep(1000000);
	for (int i = 0; i < 500; i++) {
		pthread_mutex_lock(&self->mu);
		b = self->snap;
		pthread_mutex_unlock(&self->mu);
		if (self->nsnap > na + 3)
			break;
		usleep(10000);
	}
	*d = b;
	d->sleeps = b.sleeps - a.sleeps;
	d->msgs_in = b.msgs_in - a.msgs_in;
}

/* Every child exits 0 within 30 s of quit. */
static int reap(struct _test_data_nap *self)
{
	int64_t end = mono_ns() + 30000000000ll;
	int bad = 0;

	atomic_store(&self->sh->leave, 1); /* seq_cst, read by the children */
	atomic_store(&self->sh->quit, 1);
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
 * Ten clients of ours (a receiver, a sender, eight idle): an idle second
 * has only the stats timer's wake-ups, and the sender's 200 messages
 * arrive, woken by its pokes.
 */
TEST_F_TIMEOUT(nap, ours_only_no_nap, 120)
{
	struct kid k[10] = { { .recv = true }, { .idx = 0, .n = 200 } };
	struct llmp_loop_stats idle, fin;

	for (unsigned i = 2; i < 10; i++)
		k[i].idx = i - 1;
	ASSERT_EQ(0, start(self, k, 10));
	ASSERT_TRUE(WAIT_FOR(atomic_load(&self->sh->ready) == 10, 30000)) TH_LOG("%s", self->sh->why);
	idle_second(self, &idle);
	TH_LOG("idle second, %u clients, all ours: %llu sleeps", idle.clients,
	       (unsigned long long)idle.sleeps);
	ASSERT_EQ(10, idle.clients);
	ASSERT_EQ(0, idle.msgs_in);
	ASSERT_LE(idle.sleeps, 20); /* a 1 ms nap would make several hundred */
	atomic_store(&self->sh->go, 1); /* seq_cst, read by the senders */
	ASSERT_TRUE(WAIT_FOR(atomic_load(&self->sh->got) == 200, 60000))
		TH_LOG("got %u of 200: %s", atomic_load(&self->sh->got), self->sh->why);
	llmp_loop_stop(self->lp);
	pthread_join(self->t, NULL);
	self->running = false;
	ASSERT_EQ(0, self->run_ret);
	llmp_loop_stats(self->lp, &fin);
	TH_LOG("200 messages: %llu sleeps, %llu ended by pokes", (unsigned long long)fin.sleeps,
	       (unsigned long long)fin.wakeups);
	ASSERT_GT(fin.wakeups, 0);
	ASSERT_EQ(0, reap(self)) TH_LOG("%s", self->sh->why);
}

/*
 * A LibAFL-style sender (registered over TCP, never pokes) beside our
 * receiver: the loop naps, its 200 messages arrive; once it left, the
 * loop sleeps without a nap again.
 */
TEST_F_TIMEOUT(nap, libafl_client_naps, 120)
{
	struct kid k[2] = { { .recv = true }, { .idx = 0, .n = 200, .libafl = true } };
	struct llmp_loop_stats idle, fin;

	ASSERT_EQ(0, start(self, k, 2));
	ASSERT_TRUE(WAIT_FOR(atomic_load(&self->sh->ready) == 2, 30000)) TH_LOG("%s", self->sh->why);
	idle_second(self, &idle);
	TH_LOG("idle second with a client that cannot wake the loop: %llu sleeps",
	       (unsigned long long)idle.sleeps);
	ASSERT_GE(idle.sleeps, 40); /* ~1000 on a quiet machine; a loaded one starves the loop */
	atomic_store(&self->sh->go, 1); /* seq_cst, read by the senders */
	ASSERT_TRUE(WAIT_FOR(atomic_load(&self->sh->got) == 200, 60000))
		TH_LOG("got %u of 200: %s", atomic_load(&self->sh->got), self->sh->why);
	atomic_store(&self->sh->leave, 1); /* seq_cst, read by the LibAFL-style sender */
	ASSERT_TRUE(WAIT_FOR(llmp_broker_nclients(self->b) == 1, 30000));
	idle_second(self, &idle);
	TH_LOG("idle second after it left: %llu sleeps", (unsigned long long)idle.sleeps);
	ASSERT_EQ(1, idle.clients);
	ASSERT_LE(idle.sleeps, 20);
	llmp_loop_stop(self->lp);
	pthread_join(self->t, NULL);
	self->running = false;
	ASSERT_EQ(0, self->run_ret);
	llmp_loop_stats(self->lp, &fin);
	ASSERT_GE(fin.msgs_in, 200);
	ASSERT_EQ(0, reap(self)) TH_LOG("%s", self->sh->why);
}

/*
 * Hostile writes into the poker table (any mapper of the control segment
 * can): every slot filled with ids of no client, the receiver's id in many
 * slots, the generation bumped all along.  The loop keeps napping for the
 * LibAFL-style sender (a duplicate counts once), all its messages arrive,
 * and the loop clears every slot that names no live client.
 */
TEST_F_TIMEOUT(nap, hostile_poker_table, 120)
{
	struct kid k[2] = { { .recv = true }, { .idx = 0, .n = 100, .libafl = true } };
	struct llmp_loop_stats idle;
	struct llmp_wire_msg info;
	struct llmp_shmem_desc d;
	struct llmp_shmem *m;
	struct llmp_ctl *ctl;
	unsigned left = 0, mine = 0;
	uint32_t rid;

	ASSERT_EQ(0, start(self, k, 2));
	ASSERT_TRUE(WAIT_FOR(atomic_load(&self->sh->ready) == 2, 30000)) TH_LOG("%s", self->sh->why);
	rid = atomic_load(&self->sh->recv_id);
	ASSERT_NE(0, rid);
	ASSERT_EQ(0, llmp_tcp_ext_query("127.0.0.1", self->port, &info));
	ASSERT_EQ(0, llmp_wire_desc_to_shmem(&info.desc, LLMP_SHMEM_MEMFD, &d));
	ASSERT_EQ(0, llmp_shmem_attach(self->p, &d, &m));
	ctl = llmp_shmem_addr(m);
	for (unsigned round = 0; round < 50; round++) {
		for (unsigned i = 0; i < LLMP_CTL_POKERS; i++) {
			uint32_t v = i % 7 == 0 ? rid : 0x80000000u + round * LLMP_CTL_POKERS + i;

			__atomic_store_n(&ctl->pokers[i].id, v, __ATOMIC_RELAXED);
		}
		__atomic_fetch_add(&ctl->pokers_gen, 1, __ATOMIC_SEQ_CST);
		usleep(10000);
	}
	idle_second(self, &idle);
	TH_LOG("idle second after the garbage: %llu sleeps", (unsigned long long)idle.sleeps);
	/* Still naps: the LibAFL-style sender has no slot (~1000 sleeps on a quiet machine). */
	ASSERT_GE(idle.sleeps, 40);
	for (unsigned i = 0; i < LLMP_CTL_POKERS; i++) {
		uint32_t v = __atomic_load_n(&ctl->pokers[i].id, __ATOMIC_RELAXED);

		left += v != 0 && v != rid;
		mine += v == rid;
	}
	ASSERT_EQ(0, left);
	ASSERT_GE(mine, 1);
	atomic_store(&self->sh->go, 1); /* seq_cst, read by the senders */
	ASSERT_TRUE(WAIT_FOR(atomic_load(&self->sh->got) == 100, 60000))
		TH_LOG("got %u of 100: %s", atomic_load(&self->sh->got), self->sh->why);
	llmp_shmem_put(m);
	ASSERT_EQ(0, reap(self)) TH_LOG("%s", self->sh->why);
}

/* The nap option: a value out of range is refused, an older struct reads it as AUTO. */
TEST(nap_options)
{
	struct llmp_provider *p;
	struct llmp_broker *b;
	struct llmp_loop *lp;
	struct llmp_broker_opts bo = { .struct_size = sizeof(bo) };
	struct llmp_loop_opts oo = { .struct_size = sizeof(oo), .nap = (enum llmp_loop_nap)2 };

	ASSERT_EQ(0, llmp_provider_new(LLMP_SHMEM_MEMFD, &p));
	ASSERT_EQ(0, llmp_broker_new(p, &bo, &b));
	ASSERT_EQ(-EINVAL, llmp_loop_new(b, &oo, &lp));
	/* An older caller's smaller struct: nap reads as AUTO. */
	oo.struct_size = offsetof(struct llmp_loop_opts, nap);
	ASSERT_EQ(0, llmp_loop_new(b, &oo, &lp));
	llmp_loop_free(lp);
	llmp_broker_free(b);
	llmp_provider_free(p);
}

TEST_HARNESS_MAIN
