// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * A client and the life of its broker (issue 10, features 1 and 3), with
 * the real llmp-broker on both event loops: the event fd turns readable
 * when a message arrives and not before; after SIGKILL or SIGTERM of the
 * broker, send, recv and short recv_waits fail with -EPIPE/-ESHUTDOWN
 * within the documented bound and llmp_strerror_last() says why; a broker
 * restarted at once binds the same port (50 times); llmp_client_reconnect_tcp()
 * gives up on time with no broker and registers again once one is back.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kselftest_harness.h"
#include "llmp_test.h"
#include "llmp/broker.h"

#define TAG 0x11FE0001u

/* the documented bound (100 ms) plus room for a loaded machine */
#define DEAD_BOUND_MS 1000

FIXTURE(live)
{
	struct llmp_provider *p;
	enum llmp_shmem_kind kind;
	pid_t broker;
	uint16_t port;
	char bpath[8192];
};

FIXTURE_VARIANT(live)
{
	const char *loop;
};

FIXTURE_VARIANT_ADD(live, poll) { .loop = "poll" };
FIXTURE_VARIANT_ADD(live, uring) { .loop = "uring" };

static const char *kind_name(enum llmp_shmem_kind k)
{
	return k == LLMP_SHMEM_POSIX ? "posix" : "sysv";
}

/* Start llmp-broker on self->port; 0, or -1 if it did not come up. */
static int broker_start(FIXTURE_DATA(live) *self, const char *loop)
{
	char port[16];
	pid_t pid;

	snprintf(port, sizeof(port), "%u", self->port);
	pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		execl(self->bpath, "llmp-broker", "-p", port, "-l", loop, "-P",
		      kind_name(self->kind), "-s", "0", (char *)NULL);
		_exit(127);
	}
	self->broker = pid;
	for (int i = 0; i < 500; i++) {
		int fd = llmp_test_tcp_dial(self->port);
		int st;

		if (fd >= 0) {
			close(fd);
			return 0;
		}
		if (waitpid(pid, &st, WNOHANG) == pid) {
			self->broker = 0;
			return -1;
		}
		usleep(10000);
	}
	return -1;
}

static void broker_stop(FIXTURE_DATA(live) *self, int sig)
{
	if (self->broker > 0) {
		kill(self->broker, sig);
		waitpid(self->broker, NULL, 0);
		/* a SIGKILLed broker could not remove its pages */
		llmp_test_remove_orphans(self->kind, self->broker);
		self->broker = 0;
	}
}

/* Whether the loop kind runs here: llmp-broker -l uring fails at once where it cannot. */
FIXTURE_SETUP(live)
{
	if (llmp_test_named_kind(&self->kind) < 0)
		SKIP(return, "no named shared memory provider here");
	if (!llmp_test_tool_path("llmp-broker", self->bpath, sizeof(self->bpath)))
		SKIP(return, "llmp-broker not built beside the tests");
	ASSERT_EQ(0, llmp_provider_new(self->kind, &self->p));
	self->port = (uint16_t)(21000 + getpid() % 20000);
	if (broker_start(self, variant->loop) < 0)
		SKIP(return, "llmp-broker -l %s does not start here", variant->loop);
}

FIXTURE_TEARDOWN(live)
{
	broker_stop(self, SIGTERM);
	if (self->p)
		llmp_provider_free(self->p);
	llmp_test_remove_orphans(self->kind, getpid());
}

static struct llmp_client *connect_client(FIXTURE_DATA(live) *self)
{
	struct llmp_client *c = NULL;

	if (llmp_client_connect_tcp(self->p, "127.0.0.1", self->port, NULL, &c) < 0)
		return NULL;
	return c;
}

/* A message from a to b, through the broker: 1 if it arrived within 5 s. */
static int round_trip(struct llmp_client *a, struct llmp_client *b, uint32_t v)
{
	struct llmp_msg_view m;
	int ret;

	if (llmp_client_send(a, TAG, 0, &v, sizeof(v)) < 0)
		return 0;
	for (;;) {
		ret = llmp_client_recv_wait(b, &m, 5000);
		if (ret <= 0)
			return 0;
		if (m.tag == TAG && m.len == sizeof(v) && !memcmp(m.buf, &v, sizeof(v)))
			return 1;
	}
}

/* Send n 8 KiB messages from a; b reads them whenever its fd turns readable.  Returns received. */
static unsigned flood(struct __test_metadata *_metadata, struct llmp_client *a,
		      struct llmp_client *b, int fd, unsigned n)
{
	static char buf[8192];
	struct pollfd pfd = { .fd = fd, .events = POLLIN };
	struct llmp_msg_view m;
	unsigned recvd = 0;
	int ret;

	for (unsigned i = 0; i < n; i++) {
		memcpy(buf, &i, sizeof(i));
		while (llmp_client_send(a, TAG, 0, buf, sizeof(buf)) == -EAGAIN)
			usleep(1000);
		if (i % 50 == 0) {
			if (poll(&pfd, 1, 5000) != 1)
				return recvd;
			while ((ret = llmp_client_recv(b, &m)) > 0)
				recvd += m.tag == TAG;
			if (ret < 0)
				return recvd;
		}
	}
	while (recvd < n) {
		if (poll(&pfd, 1, 5000) != 1) {
			TH_LOG("fd not readable with %u of %u received", recvd, n);
			return recvd;
		}
		while ((ret = llmp_client_recv(b, &m)) > 0)
			recvd += m.tag == TAG;
		if (ret < 0)
			return recvd;
	}
	return recvd;
}

/* The fd is quiet while nothing comes, readable when a message is there, quiet once read. */
TEST_F(live, event_fd_wakes_on_publish)
{
	struct llmp_client *a, *b;
	struct llmp_msg_view m;
	struct pollfd pfd;
	int64_t t0;
	uint32_t v = 42, got = 0;
	int fd, n, ret;

	/* A SKIP in the setup still runs the test (kselftest 6.1): skip here too. */
	if (self->broker <= 0)
		SKIP(return, "no broker (see the setup's reason)");
	a = connect_client(self);
	b = connect_client(self);
	ASSERT_NE(NULL, a);
	ASSERT_NE(NULL, b);
	ASSERT_EQ(1, round_trip(a, b, 1)); /* both registered, history read */
	while (llmp_client_recv(a, &m) > 0)
		;
	fd = llmp_client_event_fd(b);
	ASSERT_LE(0, fd);
	ASSERT_EQ(fd, llmp_client_event_fd(b)); /* the same fd again */
	pfd = (struct pollfd){ .fd = fd, .events = POLLIN };
	/* the watcher may have signalled once at start: drain */
	do {
		ret = llmp_client_recv(b, &m);
	} while (ret > 0);
	ASSERT_EQ(0, ret);
	EXPECT_EQ(0, poll(&pfd, 1, 300)); /* nothing sent: not readable */
	t0 = llmp_test_now_ms();
	ASSERT_EQ(0, llmp_client_send(a, TAG, 0, &v, sizeof(v)));
	ASSERT_EQ(1, poll(&pfd, 1, 5000));
	EXPECT_LT(llmp_test_now_ms() - t0, 2000);
	for (n = 0; (ret = llmp_client_recv(b, &m)) > 0; n++) {
		if (m.tag == TAG && m.len == sizeof(v))
			memcpy(&got, m.buf, sizeof(got));
	}
	EXPECT_EQ(0, ret);
	EXPECT_EQ(1, n);
	EXPECT_EQ(42u, got);
	EXPECT_EQ(0, poll(&pfd, 1, 200)); /* read empty: quiet again */
	/* many messages, one page change at least (1 MiB pages): all arrive through the fd */
	EXPECT_EQ(400u, flood(_metadata, a, b, fd, 400));
	/* the broker dies: the fd turns readable, recv says -EPIPE */
	broker_stop(self, SIGKILL);
	ASSERT_EQ(1, poll(&pfd, 1, DEAD_BOUND_MS));
	EXPECT_EQ(-EPIPE, llmp_client_recv(b, &m));
	EXPECT_NE(NULL, strstr(llmp_strerror_last(), "broker"));
	llmp_client_free(a);
	llmp_client_free(b);
}

/* After the broker died, each call fails within the bound and says why. */
static void dead_broker(struct __test_metadata *_metadata, FIXTURE_DATA(live) *self, int sig)
{
	struct llmp_client *a = connect_client(self), *b = connect_client(self);
	struct llmp_msg_view m;
	int64_t t0;
	int ret = 0, sends = 0;
	uint32_t v = 7;

	ASSERT_NE(NULL, a);
	ASSERT_NE(NULL, b);
	ASSERT_EQ(1, round_trip(a, b, 2));
	broker_stop(self, sig);
	t0 = llmp_test_now_ms();
	/* an unrelated failure first, so a stale text would show */
	(void)llmp_client_send(a, LLMP_TAG_EXITING, 0, NULL, 0);
	while ((ret = llmp_client_send(a, TAG, 0, &v, sizeof(v))) == 0 &&
	       llmp_test_now_ms() - t0 < DEAD_BOUND_MS * 3) {
		sends++;
		usleep(1000);
	}
	EXPECT_EQ(-EPIPE, ret);
	EXPECT_LT(llmp_test_now_ms() - t0, DEAD_BOUND_MS);
	EXPECT_NE(NULL, strstr(llmp_strerror_last(), "broker"));
	EXPECT_NE(NULL, strstr(llmp_strerror_last(), "died"));
	TH_LOG("sig %d: send -EPIPE after %lld ms (%d sends succeeded)", sig,
	       (long long)(llmp_test_now_ms() - t0), sends);
	/* sticky */
	EXPECT_EQ(-EPIPE, llmp_client_send(a, TAG, 0, &v, sizeof(v)));
	/* recv_wait with a short timeout notices too (SIGTERM: the broker said EXITING) */
	t0 = llmp_test_now_ms();
	do {
		ret = llmp_client_recv_wait(b, &m, 20);
	} while (ret >= 0 && llmp_test_now_ms() - t0 < DEAD_BOUND_MS * 3);
	EXPECT_EQ(sig == SIGKILL ? -EPIPE : -ESHUTDOWN, ret);
	EXPECT_LT(llmp_test_now_ms() - t0, DEAD_BOUND_MS);
	EXPECT_NE(NULL, strstr(llmp_strerror_last(), "broker"));
	EXPECT_EQ(ret, llmp_client_recv(b, &m)); /* sticky */
	/* free does not hang on a dead broker */
	t0 = llmp_test_now_ms();
	llmp_client_free(a);
	llmp_client_free(b);
	EXPECT_LT(llmp_test_now_ms() - t0, 2000);
}

TEST_F(live, dead_broker_sigkill)
{
	/* A SKIP in the setup still runs the test (kselftest 6.1): skip here too. */
	if (self->broker <= 0)
		SKIP(return, "no broker (see the setup's reason)");
	dead_broker(_metadata, self, SIGKILL);
}

TEST_F(live, dead_broker_sigterm)
{
	/* A SKIP in the setup still runs the test (kselftest 6.1): skip here too. */
	if (self->broker <= 0)
		SKIP(return, "no broker (see the setup's reason)");
	dead_broker(_metadata, self, SIGTERM);
}

/* SIGTERM and an immediate restart on the same port, 50 times: it binds every time. */
TEST_F(live, restart_same_port_50)
{
	/* A SKIP in the setup still runs the test (kselftest 6.1): skip here too. */
	if (self->broker <= 0)
		SKIP(return, "no broker (see the setup's reason)");
	for (int i = 0; i < 50; i++) {
		struct llmp_client *c = connect_client(self);

		int up;

		if (!c)
			TH_LOG("round %d: no client", i);
		ASSERT_NE(NULL, c);
		ASSERT_EQ(1, round_trip(c, c, (uint32_t)i));
		broker_stop(self, SIGTERM);
		llmp_client_free(c);
		up = broker_start(self, variant->loop);
		if (up < 0)
			TH_LOG("round %d: the restarted broker did not come up", i);
		ASSERT_EQ(0, up);
	}
}

/*
 * llmp_client_reconnect_tcp() after a SIGKILLed broker: with nobody on the
 * port it returns -ETIMEDOUT at its deadline (not before, not much later);
 * with the broker back 300 ms into a 20 s reconnect, it registers again and
 * the new client's messages reach another client, byte-exact.
 */
struct reconnect {
	struct llmp_provider *p;
	uint16_t port;
	struct llmp_client *c;
	int ret;
	char why[256];
};

static void *reconnect_thread(void *v)
{
	struct reconnect *r = v;

	r->ret = llmp_client_reconnect_tcp(r->p, "127.0.0.1", r->port, NULL, 20000, &r->c);
	snprintf(r->why, sizeof(r->why), "%s", llmp_strerror_last());
	return NULL;
}

TEST_F_TIMEOUT(live, reconnect_after_sigkill, 90)
{
	struct llmp_client *a, *c = NULL, *b;
	struct reconnect r = { .p = self->p, .port = self->port };
	struct llmp_msg_view m;
	pthread_t t;
	int64_t t0;
	int ret;

	/* A SKIP in the setup still runs the test (kselftest 6.1): skip here too. */
	if (self->broker <= 0)
		SKIP(return, "no broker (see the setup's reason)");
	a = connect_client(self);
	ASSERT_NE(NULL, a);
	ASSERT_EQ(1, round_trip(a, a, 1));
	broker_stop(self, SIGKILL);
	do
		ret = llmp_client_recv_wait(a, &m, 20);
	while (ret >= 0);
	ASSERT_EQ(-EPIPE, ret);
	llmp_client_free(a);

	t0 = llmp_test_now_ms();
	EXPECT_EQ(-ETIMEDOUT, llmp_client_reconnect_tcp(self->p, "127.0.0.1", self->port,
							NULL, 500, &c));
	EXPECT_LE(400, llmp_test_now_ms() - t0);
	EXPECT_GT(3000, llmp_test_now_ms() - t0);
	EXPECT_NE(NULL, strstr(llmp_strerror_last(), "reconnect"));

	ASSERT_EQ(0, pthread_create(&t, NULL, reconnect_thread, &r));
	usleep(300 * 1000);
	ASSERT_EQ(0, broker_start(self, variant->loop));
	pthread_join(t, NULL);
	ASSERT_EQ(0, r.ret) TH_LOG("%s", r.why);
	b = connect_client(self);
	ASSERT_NE(NULL, b);
	ASSERT_EQ(1, round_trip(r.c, b, 0xBAC4u));
	llmp_client_free(r.c);
	llmp_client_free(b);
}

TEST_HARNESS_MAIN
