// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * A loop that sleeps without napping (the default once every registered
 * client can poke it) still keeps its own timers: a client process that is
 * SIGKILLed while the loop sleeps (it cannot poke any more) is found by the
 * dead-client check and dropped, and a loop with exit_after returns.  The
 * check used to be left out of the sleep's bound when it was exactly one
 * period away, as it is right after a check: the loop then slept until a
 * poke that never came (tcp_test exit_after_clients failed in CI).  Also:
 * a client that frees itself pokes, so its goodbye is taken at once.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "kselftest_harness.h"
#include "llmp_test.h"
#include "llmp/broker.h"

struct node {
	struct llmp_provider *p;
	struct llmp_broker *b;
	struct llmp_tcp_listener *l;
	struct llmp_loop *lp;
	pthread_t t;
	int ret;
};

static void *run(void *v)
{
	struct node *n = v;

	n->ret = llmp_loop_run(n->lp);
	return NULL;
}

/* A broker on loopback with a loop of default options (no stats timer), exit_after 1. */
/* check_ms: its dead-client check period (0: the default, 200 ms). */
static int node_start(struct node *n, enum llmp_shmem_kind kind, enum llmp_loop_backend be,
		      int check_ms)
{
	struct llmp_broker_opts bo = { .struct_size = sizeof(bo), .dead_client_grace_ms = 100 };
	struct llmp_loop_opts lo = { .struct_size = sizeof(lo), .backend = be, .exit_after = 1,
				     .check_clients_ms = check_ms };
	int r;

	memset(n, 0, sizeof(*n));
	if ((r = llmp_provider_new(kind, &n->p)) < 0 || (r = llmp_broker_new(n->p, &bo, &n->b)) < 0 ||
	    (r = llmp_tcp_listen(n->b, NULL, 0, NULL, &n->l)) < 0 ||
	    (r = llmp_loop_new(n->b, &lo, &n->lp)) < 0 || (r = llmp_loop_add_listener(n->lp, n->l)) < 0)
		return r;
	return pthread_create(&n->t, NULL, run, n) ? -EAGAIN : 0;
}

/* Wait up to ms for the loop to return by itself: 0, or -ETIMEDOUT (then it is stopped). */
static int node_join(struct node *n, int ms)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += ms / 1000;
	ts.tv_nsec += (long)(ms % 1000) * 1000000;
	if (ts.tv_nsec >= 1000000000) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000;
	}
	if (pthread_timedjoin_np(n->t, NULL, &ts) == 0)
		return 0;
	llmp_loop_stop(n->lp);
	pthread_join(n->t, NULL);
	return -ETIMEDOUT;
}

static void node_fini(struct node *n)
{
	llmp_loop_free(n->lp);
	llmp_tcp_listener_free(n->l);
	llmp_broker_free(n->b);
	llmp_provider_free(n->p);
}

FIXTURE(idle)
{
	enum llmp_shmem_kind kind;
};

FIXTURE_VARIANT(idle)
{
	enum llmp_loop_backend be;
};

FIXTURE_VARIANT_ADD(idle, poll) { .be = LLMP_LOOP_POLL };
FIXTURE_VARIANT_ADD(idle, auto) { .be = LLMP_LOOP_AUTO };

FIXTURE_SETUP(idle)
{
	if (llmp_test_named_kind(&self->kind) < 0)
		self->kind = LLMP_SHMEM_MEMFD;
}

FIXTURE_TEARDOWN(idle)
{
}

/* A client process registers over TCP (with a waker), sends, then is SIGKILLed while the loop sleeps. */
TEST_F_TIMEOUT(idle, killed_client_found_while_sleeping, 60)
{
	struct node n;
	int pfd[2], st;
	int64_t t0;
	pid_t pid;
	char ok;

	ASSERT_EQ(0, node_start(&n, self->kind, variant->be, 0)) TH_LOG("%s", llmp_strerror_last());
	ASSERT_EQ(0, pipe(pfd));
	pid = fork();
	ASSERT_LE(0, pid);
	if (pid == 0) {
		struct llmp_provider *p;
		struct llmp_client *c;

		close(pfd[0]);
		if (llmp_provider_new(self->kind, &p) < 0 ||
		    llmp_client_connect_tcp(p, NULL, llmp_tcp_listener_port(n.l), NULL, &c) < 0 ||
		    llmp_client_send(c, 0x1D1E0001u, 0, "x", 1) < 0 ||
		    llmp_client_wait_safe(c, 5000) < 0)
			_exit(1);
		if (write(pfd[1], "r", 1) != 1)
			_exit(1);
		for (;;)
			pause();
	}
	close(pfd[1]);
	ASSERT_EQ(1, read(pfd[0], &ok, 1));
	close(pfd[0]);
	usleep(300 * 1000); /* the loop is asleep by now */
	t0 = llmp_test_now_ms();
	ASSERT_EQ(0, kill(pid, SIGKILL));
	ASSERT_EQ(pid, waitpid(pid, &st, 0));
	/* dead-client checks every 200 ms, grace 100 ms: well under 5 s */
	EXPECT_EQ(0, node_join(&n, 5000));
	TH_LOG("loop returned %lld ms after the SIGKILL", (long long)(llmp_test_now_ms() - t0));
	EXPECT_EQ(0, n.ret);
	EXPECT_EQ(0u, llmp_broker_nclients(n.b));
	node_fini(&n);
	llmp_test_remove_orphans(self->kind, pid);
}

/*
 * A client that frees itself is taken at once (its free pokes): with the
 * dead-client check once a minute, nothing else would wake the loop.
 */
TEST_F_TIMEOUT(idle, goodbye_wakes_the_loop, 60)
{
	struct llmp_provider *p;
	struct llmp_client *c;
	struct node n;
	int64_t t0;

	ASSERT_EQ(0, node_start(&n, self->kind, variant->be, 60000)) TH_LOG("%s", llmp_strerror_last());
	ASSERT_EQ(0, llmp_provider_new(self->kind, &p));
	ASSERT_EQ(0, llmp_client_connect_tcp(p, NULL, llmp_tcp_listener_port(n.l), NULL, &c));
	ASSERT_EQ(0, llmp_client_send(c, 0x1D1E0002u, 0, "y", 1));
	ASSERT_EQ(0, llmp_client_wait_safe(c, 5000));
	usleep(300 * 1000);
	t0 = llmp_test_now_ms();
	llmp_client_free(c);
	EXPECT_EQ(0, node_join(&n, 5000));
	TH_LOG("loop returned %lld ms after the free", (long long)(llmp_test_now_ms() - t0));
	EXPECT_EQ(0, n.ret);
	node_fini(&n);
	llmp_provider_free(p);
}

TEST_HARNESS_MAIN
