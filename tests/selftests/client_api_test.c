// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * Client API promises of issue 10: every reserved tag is refused by both
 * send paths and nothing reaches the page (CLIENT_EXIT has its own call);
 * zeroed options mean what opts == NULL means (a 10 s send timeout), with
 * LLMP_NO_WAIT for "never wait"; back-pressure (-EAGAIN) is not logged as an
 * error; the event fd of a client whose broadcast page a hostile process
 * scribbled on reports the error and does not spin.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kselftest_harness.h"
#include "llmp_test.h"
#include "llmp_node.h"
#include "llmp/broker.h"

#define TAG 0xC11E0A91u
#define PAGE 4096

FIXTURE(api)
{
	struct llmp_provider *p;
	struct llmp_broker *b;
	struct llmp_shmem_desc bd;
};

FIXTURE_SETUP(api)
{
	enum llmp_shmem_kind kind;

	if (llmp_test_named_kind(&kind) < 0)
		SKIP(return, "no named shared memory provider here");
	ASSERT_EQ(0, llmp_provider_new(kind, &self->p));
	ASSERT_EQ(0, llmp_broker_new(self->p, NULL, &self->b));
	ASSERT_EQ(0, llmp_broker_broadcast_desc(self->b, &self->bd));
}

FIXTURE_TEARDOWN(api)
{
	if (self->b)
		llmp_broker_free(self->b);
	if (self->p)
		llmp_provider_free(self->p);
}

/* A client registered with the fixture's broker (which only runs when the test pumps it). */
static int add(FIXTURE_DATA(api) *self, const struct llmp_client_opts *o, struct llmp_client **c)
{
	struct llmp_shmem_desc od;
	int id;

	if (llmp_client_new(self->p, &self->bd, o, c) < 0 || llmp_client_out_desc(*c, &od) < 0)
		return -1;
	id = llmp_broker_add_client(self->b, &od);
	if (id > 0)
		llmp_client_set_id(*c, (uint32_t)id);
	return id;
}

static void pump(struct llmp_broker *b)
{
	for (int i = 0; i < 8; i++)
		(void)llmp_broker_once(b);
}

/* Every reserved tag: -EINVAL from send and commit, the client stays, nothing is forwarded. */
TEST_F(api, reserved_tags_are_refused)
{
	static const uint32_t reserved[] = {
		LLMP_TAG_UNSET, LLMP_TAG_UNINITIALIZED, LLMP_TAG_END_OF_PAGE,
		LLMP_TAG_NEW_SHM_CLIENT, LLMP_TAG_CLIENT_EXIT, LLMP_TAG_EXITING,
		LLMP_TAG_SLOW_RECEIVER_PANIC, LLMP_TAG_B2B_CAPS,
	};
	struct llmp_client_opts o = { .struct_size = sizeof(o), .send_timeout_ms = LLMP_NO_WAIT };
	struct llmp_client *tx, *rx;
	struct llmp_msg_view v;
	uint32_t payload = 1; /* what a CLIENT_EXIT naming client 1 would carry */
	void *buf;
	int n = 0;

	if (!self->p)
		return;
	ASSERT_LT(0, add(self, &o, &tx));
	ASSERT_LT(0, add(self, &o, &rx));
	for (unsigned i = 0; i < sizeof(reserved) / sizeof(reserved[0]); i++) {
		EXPECT_EQ(-EINVAL, llmp_client_send(tx, reserved[i], 0, &payload, sizeof(payload)));
		EXPECT_NE(NULL, strstr(llmp_strerror_last(), "reserved"));
		ASSERT_EQ(0, llmp_client_alloc(tx, sizeof(payload), &buf));
		memcpy(buf, &payload, sizeof(payload));
		EXPECT_EQ(-EINVAL, llmp_client_commit(tx, reserved[i], 0, sizeof(payload)));
		llmp_client_cancel(tx);
	}
	ASSERT_EQ(0, llmp_client_send(tx, TAG, 0, "ok", 2));
	pump(self->b);
	EXPECT_EQ(2u, llmp_broker_nclients(self->b));
	while (llmp_client_recv(rx, &v) == 1) {
		EXPECT_EQ(TAG, v.tag);
		n++;
	}
	EXPECT_EQ(1, n);
	llmp_client_free(tx);
	llmp_client_free(rx);
}

struct filler {
	struct llmp_client *c;
	size_t len;
	atomic_int sent, stop, done;
	int ret;
};

/* Send until stopped or an error; done once the last send returned. */
static void *fill_thread(void *v)
{
	struct filler *f = v;
	static char msg[60000];

	while (!atomic_load(&f->stop)) {
		f->ret = llmp_client_send(f->c, TAG, 0, msg, f->len);
		if (f->ret < 0)
			break;
		atomic_fetch_add(&f->sent, 1);
	}
	atomic_store(&f->done, 1);
	return NULL;
}

/*
 * A sender that outruns its broker: with opts == NULL and with zeroed opts
 * the send that finds no room waits (the default timeout, 10 s) and
 * completes once the broker catches up; with LLMP_NO_WAIT it returns
 * -EAGAIN at once.  The same defaults both ways.
 */
TEST_F(api, zeroed_opts_mean_the_default)
{
	struct llmp_client_opts zero = { .struct_size = sizeof(zero) };
	struct llmp_client_opts nowait = { .struct_size = sizeof(nowait),
					   .send_timeout_ms = LLMP_NO_WAIT };

	if (!self->p)
		return;
	for (int mode = 0; mode < 3; mode++) {
		const struct llmp_client_opts *o = mode == 0 ? NULL : mode == 1 ? &zero : &nowait;
		struct filler f = { .len = 60000 };
		pthread_t t;
		int last = -1;

		pump(self->b);
		ASSERT_LT(0, add(self, o, &f.c)) TH_LOG("%s", llmp_strerror_last());
		ASSERT_EQ(0, pthread_create(&t, NULL, fill_thread, &f));
		/* Until the count stops moving for 300 ms (or the sender gave up). */
		for (int64_t still = llmp_test_now_ms(), end = still + 20000;
		     !atomic_load(&f.done) && llmp_test_now_ms() < end;) {
			if (atomic_load(&f.sent) != last) {
				last = atomic_load(&f.sent);
				still = llmp_test_now_ms();
			} else if (llmp_test_now_ms() - still >= 300) {
				break;
			}
			usleep(5000);
		}
		if (mode == 2) {
			pthread_join(t, NULL);
			EXPECT_EQ(-EAGAIN, f.ret);
		} else {
			/* Still inside a send, waiting for the broker, not failed. */
			EXPECT_EQ(0, atomic_load(&f.done)) TH_LOG("mode %d: %s", mode,
								 llmp_strerror_last());
			atomic_store(&f.stop, 1);
			for (int i = 0; i < 5000 && !atomic_load(&f.done); i++) {
				(void)llmp_broker_once(self->b);
				usleep(1000);
			}
			pthread_join(t, NULL);
			EXPECT_EQ(0, f.ret) TH_LOG("mode %d", mode);
		}
		EXPECT_LE(4, atomic_load(&f.sent)) TH_LOG("mode %d", mode);
		pump(self->b);
		llmp_client_free(f.c);
	}
}

static atomic_int errors_logged, debug_logged;

static void count_log(void *ctx, enum llmp_log_level level, const char *msg)
{
	if (level == LLMP_LOG_ERROR)
		atomic_fetch_add(&errors_logged, 1);
	else if (level == LLMP_LOG_DEBUG && strstr(msg, "EAGAIN") == NULL &&
		 strstr(msg, "Resource temporarily unavailable"))
		atomic_fetch_add(&debug_logged, 1);
}

/* Back-pressure with LLMP_NO_WAIT: -EAGAIN with a reason, never an ERROR log line. */
TEST_F(api, back_pressure_is_not_an_error)
{
	struct llmp_client_opts o = { .struct_size = sizeof(o), .page_size = PAGE,
				      .max_pages_in_flight = 2, .send_timeout_ms = LLMP_NO_WAIT };
	struct llmp_client *c;
	char msg[1000] = { 0 };
	int eagain = 0;

	if (!self->p)
		return;
	ASSERT_LT(0, add(self, &o, &c));
	llmp_set_log(count_log, NULL, LLMP_LOG_DEBUG);
	for (int i = 0; i < 1000; i++)
		eagain += llmp_client_send(c, TAG, 0, msg, sizeof(msg)) == -EAGAIN;
	llmp_set_log(NULL, NULL, LLMP_LOG_WARN);
	EXPECT_LT(900, eagain);
	EXPECT_NE(NULL, strstr(llmp_strerror_last(), "Resource temporarily unavailable"));
	EXPECT_EQ(0, atomic_load(&errors_logged));
	EXPECT_EQ(eagain, atomic_load(&debug_logged));
	/* A real error is still an error. */
	EXPECT_EQ(-EINVAL, llmp_client_send(c, LLMP_TAG_EXITING, 0, NULL, 0));
	llmp_set_log(count_log, NULL, LLMP_LOG_WARN);
	EXPECT_EQ(-EINVAL, llmp_client_send(c, LLMP_TAG_EXITING, 0, NULL, 0));
	llmp_set_log(NULL, NULL, LLMP_LOG_WARN);
	EXPECT_EQ(1, atomic_load(&errors_logged));
	pump(self->b);
	llmp_client_free(c);
}

/*
 * join_at_newest: a client that joins after 50 messages gets none of them,
 * then every later one; a client without it replays the history first.
 */
TEST_F(api, join_at_newest_skips_the_history)
{
	struct llmp_client_opts o = { .struct_size = sizeof(o), .send_timeout_ms = LLMP_NO_WAIT,
				      .page_size = PAGE };
	struct llmp_client_opts now = o;
	struct llmp_client *tx, *late, *replay;
	struct llmp_msg_view v;
	uint32_t i, seq;
	int n = 0;

	if (!self->p)
		return;
	now.join_at_newest = true;
	ASSERT_LT(0, add(self, &o, &tx));
	/* 50 messages over several 4 KiB pages: the joiner must skip end-of-page records too. */
	for (i = 0; i < 50; i++) {
		char msg[300] = { 0 };

		memcpy(msg, &i, sizeof(i));
		ASSERT_EQ(0, llmp_client_send(tx, TAG, 0, msg, sizeof(msg)));
		pump(self->b);
	}
	ASSERT_LT(0, add(self, &now, &late));
	ASSERT_LT(0, add(self, &o, &replay));
	EXPECT_EQ(0, llmp_client_recv(late, &v));
	for (i = 50; i < 53; i++) {
		ASSERT_EQ(0, llmp_client_send(tx, TAG, 0, &i, sizeof(i)));
		pump(self->b);
	}
	for (seq = 50; llmp_client_recv(late, &v) == 1; seq++) {
		ASSERT_EQ(TAG, v.tag);
		ASSERT_EQ(sizeof(seq), v.len);
		EXPECT_EQ(0, memcmp(v.buf, &seq, sizeof(seq)));
	}
	EXPECT_EQ(53u, seq);
	EXPECT_EQ(0u, llmp_client_pages_skipped(late));
	while (llmp_client_recv(replay, &v) == 1)
		n += v.tag == TAG;
	EXPECT_EQ(53, n);
	llmp_client_free(tx);
	llmp_client_free(late);
	llmp_client_free(replay);
}

struct late_broker {
	struct llmp_broker *b;
	struct llmp_shmem_desc od;
	atomic_int stop;
	int id;
};

/* A broker that maps a registered client's page only 200 ms later, as LibAFL's may. */
static void *late_broker_thread(void *v)
{
	struct late_broker *lb = v;

	usleep(200 * 1000);
	lb->id = llmp_broker_add_client(lb->b, &lb->od);
	while (!atomic_load(&lb->stop))
		(void)llmp_broker_once(lb->b);
	for (int i = 0; i < 16; i++)
		(void)llmp_broker_once(lb->b);
	return NULL;
}

/*
 * A client that was given an id exits right after its last send: free
 * waits until the broker has its page, so all 500 messages arrive (it used
 * to wait only when the broker had joined the page already: 0 of 500).
 */
TEST_F(api, exit_right_after_sending_loses_nothing)
{
	struct llmp_client_opts o = { .struct_size = sizeof(o), .send_timeout_ms = LLMP_NO_WAIT };
	struct late_broker lb = { .b = self->b };
	struct llmp_client *tx, *rx;
	struct llmp_msg_view v;
	pthread_t t;
	uint32_t i, n = 0;

	if (!self->p)
		return;
	ASSERT_LT(0, add(self, &o, &rx));
	ASSERT_EQ(0, llmp_client_new(self->p, &self->bd, NULL, &tx));
	ASSERT_EQ(0, llmp_client_out_desc(tx, &lb.od));
	llmp_client_set_id(tx, 77); /* what the TCP answer gave it */
	ASSERT_EQ(0, pthread_create(&t, NULL, late_broker_thread, &lb));
	for (i = 0; i < 500; i++)
		ASSERT_EQ(0, llmp_client_send(tx, TAG, 0, &i, sizeof(i)));
	llmp_client_free(tx);
	atomic_store(&lb.stop, 1);
	pthread_join(t, NULL);
	ASSERT_LT(0, lb.id) TH_LOG("%s", llmp_strerror_last());
	while (llmp_client_recv(rx, &v) == 1) {
		if (v.tag != TAG)
			continue;
		ASSERT_EQ(sizeof(n), v.len);
		EXPECT_EQ(0, memcmp(v.buf, &n, sizeof(n)));
		n++;
	}
	EXPECT_EQ(500u, n);
	llmp_client_free(rx);
}

/* A client of another provider than the broker's is told which one to use. */
TEST(provider_mismatch_names_the_brokers_provider)
{
	struct llmp_node n = { 0 };
	struct llmp_provider *mp;
	struct llmp_client *c = NULL;

	if (llmp_test_kind_available(LLMP_SHMEM_SYSV) <= 0 ||
	    llmp_test_kind_available(LLMP_SHMEM_MEMFD) <= 0)
		SKIP(return, "needs both SysV and memfd shared memory");
	ASSERT_EQ(0, llmp_node_init(&n, LLMP_SHMEM_SYSV, 0, NULL, NULL));
	ASSERT_EQ(0, llmp_node_start(&n));
	ASSERT_EQ(0, llmp_provider_new(LLMP_SHMEM_MEMFD, &mp));
	EXPECT_EQ(-EPROTOTYPE, llmp_client_connect_tcp(mp, "127.0.0.1", n.port, NULL, &c));
	EXPECT_EQ(NULL, c);
	EXPECT_NE(NULL, strstr(llmp_strerror_last(), "the broker's pages are sysv segments"))
		TH_LOG("%s", llmp_strerror_last());
	EXPECT_NE(NULL, strstr(llmp_strerror_last(), "-P sysv"));
	/* The matching provider registers. */
	EXPECT_EQ(0, llmp_client_connect_tcp(n.cp, "127.0.0.1", n.port, NULL, &c));
	llmp_client_free(c);
	llmp_provider_free(mp);
	llmp_node_fini(&n);
}

/* Exit status and stderr of a shell command (stderr into buf). */
static int run(char *buf, size_t cap, const char *cmd)
{
	char full[1024];
	FILE *f;
	size_t n;
	int st;

	snprintf(full, sizeof(full), "%s 2>&1 >/dev/null", cmd);
	f = popen(full, "r");
	if (!f)
		return -1;
	n = fread(buf, 1, cap - 1, f);
	buf[n] = 0;
	st = pclose(f);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/*
 * The tools' arguments: llmp-broker refuses -m 0 with a reason (it used to
 * mean the default 1000 us), llmp-client takes options after the
 * subcommand (then fails to connect, exit 1, instead of exit 2).
 */
TEST(tool_arguments)
{
	char broker[4200], client[4200], cmd[9000], out[4096];

	if (!llmp_test_tool_path("llmp-broker", broker, sizeof(broker)) ||
	    !llmp_test_tool_path("llmp-client", client, sizeof(client)))
		SKIP(return, "the tools are not built next to the tests");
	snprintf(cmd, sizeof(cmd), "%s -m 0 -p 0", broker);
	EXPECT_EQ(2, run(out, sizeof(out), cmd));
	EXPECT_NE(NULL, strstr(out, "--max-sleep-us 0")) TH_LOG("%s", out);
	/* Port 1 on loopback: nobody listens there, so the connect fails after parsing. */
	snprintf(cmd, sizeof(cmd), "%s recv -w 100 -p 1", client);
	EXPECT_EQ(1, run(out, sizeof(out), cmd)) TH_LOG("%s", out);
	EXPECT_EQ(NULL, strstr(out, "bad arguments")) TH_LOG("%s", out);
	snprintf(cmd, sizeof(cmd), "%s recv -w", client);
	EXPECT_EQ(2, run(out, sizeof(out), cmd));
}

static uint64_t process_cpu_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/*
 * Hostile input to the event fd: a process that can write the broadcast
 * page (every reader maps it writable) sets its current_msg_id (offset 16
 * of the page header) far ahead.  The watcher wakes, the fd turns readable,
 * recv says -EBADMSG (and keeps saying it), the fd stays readable while the
 * error waits, and the watcher thread does not spin meanwhile.
 */
TEST_F(api, event_fd_reports_a_scribbled_page_without_spinning)
{
	struct llmp_client *tx, *rx;
	struct llmp_shmem *m;
	struct llmp_msg_view v;
	struct pollfd pfd;
	uint64_t *id, cpu0, cpu;
	uint32_t x = 5;
	int fd;

	ASSERT_LT(0, add(self, NULL, &tx));
	ASSERT_LT(0, add(self, NULL, &rx));
	fd = llmp_client_event_fd(rx);
	ASSERT_LE(0, fd);
	ASSERT_EQ(0, llmp_client_send(tx, TAG, 0, &x, sizeof(x)));
	pump(self->b);
	pfd = (struct pollfd){ .fd = fd, .events = POLLIN };
	ASSERT_EQ(1, poll(&pfd, 1, 5000));
	while (llmp_client_recv(rx, &v) == 1)
		;
	pfd.revents = 0;
	EXPECT_EQ(0, poll(&pfd, 1, 50));

	ASSERT_EQ(0, llmp_shmem_attach(self->p, &self->bd, &m));
	id = (uint64_t *)((char *)llmp_shmem_addr(m) + 16);
	__atomic_store_n(id, __atomic_load_n(id, __ATOMIC_RELAXED) + 1000, __ATOMIC_RELEASE);
	/* the watcher wakes within its 100 ms timeout (nothing FUTEX_WAKEs it) */
	EXPECT_EQ(1, poll(&pfd, 1, 2000));
	EXPECT_EQ(-EBADMSG, llmp_client_recv(rx, &v));
	EXPECT_EQ(-EBADMSG, llmp_client_recv(rx, &v)); /* sticky */
	cpu0 = process_cpu_ns();
	usleep(300 * 1000);
	cpu = process_cpu_ns() - cpu0;
	pfd.revents = 0;
	EXPECT_EQ(1, poll(&pfd, 1, 0)); /* the error still waits */
	TH_LOG("CPU over 300 ms with the error pending: %.2f ms", (double)cpu / 1e6);
	EXPECT_GT(30u * 1000000u, cpu);
	/* the sender and the broker carry on */
	EXPECT_EQ(0, llmp_client_send(tx, TAG, 0, &x, sizeof(x)));
	pump(self->b);
	llmp_shmem_put(m);
	llmp_client_free(rx);
	llmp_client_free(tx);
}

TEST_HARNESS_MAIN
