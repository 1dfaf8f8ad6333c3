// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * The NATS bridge in JetStream mode against real nats-server processes:
 * a broker stopped and restarted with its state file resumes without loss
 * or duplicates; a broker that starts late gets the retained stream; three
 * servers as a cluster (routes on loopback, the stream on all three): the
 * node a broker uses is killed, the broker fails over to another and
 * nothing is lost; three brokers each on a different node of the cluster
 * (JetStream and core NATS): every message reaches the other two brokers'
 * clients once, in order per origin, and none comes back.  SKIPs with the reason without nats-server or libnats.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kselftest_harness.h"
#include "nats_test.h"

#define TAG 0x5d1u
#define WARM 0x5d2u
#define CAMPAIGN "js1"
#define NSRV 3

struct jbroker {
	struct llmp_node n;
	struct llmp_nats *br;
	struct llmp_client *tx, *rx;
	bool up;
};

/* A broker bridged (JetStream) to urls, with a sending and a receiving client. */
static int jb_start_how(struct jbroker *j, enum llmp_shmem_kind kind, const char *urls,
			const char *state, unsigned replicas, bool stream)
{
	struct llmp_broker_opts bo = { .struct_size = sizeof(bo), .page_size = 1 << 18 };
	struct llmp_nats_opts o = { .struct_size = sizeof(o), .urls = urls, .campaign = CAMPAIGN,
				    .stream = stream, .state_file = state,
				    .stream_replicas = replicas };
	struct llmp_client_opts co = { .struct_size = sizeof(co), .send_timeout_ms = 10000 };
	int r;

	memset(j, 0, sizeof(*j));
	if ((r = llmp_node_init(&j->n, kind, 0, &bo, NULL)) < 0 ||
	    (r = llmp_loop_attach_nats(j->n.lp, &o, &j->br)) < 0 ||
	    (r = llmp_node_start(&j->n)) < 0 ||
	    (r = llmp_client_connect_tcp(j->n.cp, NULL, j->n.port, &co, &j->rx)) < 0 ||
	    (r = llmp_client_connect_tcp(j->n.cp, NULL, j->n.port, &co, &j->tx)) < 0)
		return r;
	j->up = true;
	return 0;
}

static int jb_start(struct jbroker *j, enum llmp_shmem_kind kind, const char *urls,
		    const char *state, unsigned replicas)
{
	return jb_start_how(j, kind, urls, state, replicas, true);
}

static void jb_stop(struct jbroker *j)
{
	if (j->tx)
		llmp_client_free(j->tx);
	if (j->rx)
		llmp_client_free(j->rx);
	j->tx = j->rx = NULL;
	llmp_node_fini(&j->n);
	j->up = false;
}

/* Until the stream acknowledged `want` of j's publishes; false after ms. */
static bool wait_published(struct jbroker *j, uint64_t want, int ms)
{
	int64_t end = llmp_test_now_ms() + ms;
	struct llmp_nats_stats st;

	for (;;) {
		llmp_nats_stats(j->br, &st);
		if (st.published >= want)
			return true;
		if (llmp_test_now_ms() > end)
			return false;
		usleep(10000);
	}
}

/* a's client sends WARM until b's receiver has one; false after ms. */
static bool warm(struct jbroker *a, struct jbroker *b, int ms)
{
	int64_t end = llmp_test_now_ms() + ms;
	struct llmp_msg_view v;

	while (llmp_test_now_ms() < end) {
		if (llmp_client_send(a->tx, WARM, 0, "w", 1) < 0)
			return false;
		while (llmp_client_recv_wait(b->rx, &v, 100) == 1)
			if (v.tag == WARM && (v.flags & LLMP_FLAG_FROM_B2B))
				return true;
	}
	return false;
}

/*
 * Receive TAG messages "m<i>" on j, first..last, each exactly once; with
 * ordered, in order.  0, or the first index that was wrong, repeated or
 * missing (as -1 - i).
 */
static int recv_range_how(struct jbroker *j, int first, int last, int ms, bool ordered)
{
	int64_t end = llmp_test_now_ms() + ms;
	struct llmp_msg_view v;
	int got = 0, i;
	char seen[1000] = { 0 };

	while (got <= last - first) {
		if (llmp_test_now_ms() > end) {
			for (i = first; i <= last && seen[i]; i++)
				;
			return -1 - i;
		}
		if (llmp_client_recv_wait(j->rx, &v, 100) != 1 || v.tag != TAG)
			continue;
		if (sscanf((const char *)v.buf, "m%d", &i) != 1 || i < first || i > last || seen[i] ||
		    (ordered && i != first + got))
			return -1 - i;
		seen[i] = 1;
		got++;
	}
	/* Nothing more of TAG: no duplicate behind them. */
	usleep(300000);
	while (llmp_client_recv(j->rx, &v) == 1)
		if (v.tag == TAG)
			return -1 - last - 1;
	return 0;
}

static int recv_range(struct jbroker *j, int first, int last, int ms)
{
	return recv_range_how(j, first, last, ms, true);
}

static int send_range(struct jbroker *j, int first, int last)
{
	char buf[2048];

	for (int i = first; i <= last; i++) {
		size_t len = (i % 2) ? 1500 : 30;

		memset(buf, 'x', len);
		snprintf(buf, len, "m%d ", i);
		if (llmp_client_send(j->tx, TAG, 0, buf, len) < 0)
			return -1;
	}
	return 0;
}

/*
 * NSRV servers as one cluster (routes on loopback, JetStream on each):
 * their client ports in port[], the comma-separated URLs in urls.  0 or -1.
 */
static int start_cluster(struct nt_server *s, uint16_t *port, char *urls, size_t cap)
{
	uint16_t cport[NSRV];
	char routes[NSRV][160], names[NSRV][16], cl[NSRV][48], pb[64];

	for (int k = 0; k < NSRV; k++) {
		port[k] = llmp_test_free_port();
		cport[k] = llmp_test_free_port();
	}
	urls[0] = 0;
	for (int k = 0; k < NSRV; k++) {
		snprintf(urls + strlen(urls), cap - strlen(urls), "%s%s", k ? "," : "",
			 nt_url(port[k], pb, sizeof(pb)));
		snprintf(names[k], sizeof(names[k]), "n%d", k);
		snprintf(cl[k], sizeof(cl[k]), "nats://127.0.0.1:%u", cport[k]);
		routes[k][0] = 0;
		for (int j = 0; j < NSRV; j++)
			if (j != k)
				snprintf(routes[k] + strlen(routes[k]), sizeof(routes[k]) - strlen(routes[k]),
					 "%snats://127.0.0.1:%u", routes[k][0] ? "," : "", cport[j]);
	}
	for (int k = 0; k < NSRV; k++) {
		const char *extra[] = { "-n", names[k], "--cluster_name", "llmp", "--cluster", cl[k],
					"--routes", routes[k], NULL };

		if (nt_server_start(&s[k], port[k], true, extra) < 0)
			return -1;
	}
	return 0;
}

FIXTURE(js)
{
	struct nt_server s[NSRV];
	struct jbroker b[3];
	enum llmp_shmem_kind kind;
	char state[3][64];
	bool ok;
};

FIXTURE_SETUP(js)
{
	memset(self, 0, sizeof(*self));
	nlog[0] = 0;
	llmp_set_log(llmp_test_log_cb, &nlog_capture, LLMP_LOG_INFO);
	if (!nt_server_bin())
		SKIP(return, "nats-server is not installed (apt-get install nats-server)");
	if (llmp_test_named_kind(&self->kind) < 0)
		SKIP(return, "neither POSIX nor System V shared memory works here");
	{
		struct llmp_nats_opts o = { .struct_size = sizeof(o), .urls = "nats://127.0.0.1:1",
					    .campaign = CAMPAIGN };
		struct llmp_node n;
		struct llmp_broker_opts bo = { .struct_size = sizeof(bo), .page_size = 1 << 18 };
		int r;

		ASSERT_EQ(0, llmp_node_init(&n, self->kind, 0, &bo, NULL));
		r = llmp_loop_attach_nats(n.lp, &o, NULL);
		llmp_node_fini(&n);
		if (r == -EOPNOTSUPP)
			SKIP(return, "%s", llmp_strerror_last());
	}
	for (int k = 0; k < 3; k++) {
		snprintf(self->state[k], sizeof(self->state[k]), "/tmp/llmp-js-state-%d-%d",
			 (int)getpid(), k);
		unlink(self->state[k]);
	}
	self->ok = true;
}

FIXTURE_TEARDOWN(js)
{
	for (int k = 0; k < 3; k++)
		if (self->b[k].up)
			jb_stop(&self->b[k]);
	for (int k = 0; k < NSRV; k++)
		nt_server_fini(&self->s[k]);
	for (int k = 0; k < 3; k++)
		unlink(self->state[k]);
	llmp_set_log(NULL, NULL, LLMP_LOG_WARN);
}

/*
 * A is stopped (cleanly) while B keeps publishing; A restarted with its
 * state file gets exactly what it missed, in order, and nothing it had.
 * A broker C that starts afterwards gets the whole retained stream.
 */
TEST_F_TIMEOUT(js, restart_resumes_and_late_broker_catches_up, 120)
{
	struct jbroker *a = &self->b[0], *b = &self->b[1], *c = &self->b[2];
	struct llmp_nats_stats st;
	char url[64];

	if (!self->ok)
		SKIP(return, "no setup (see its reason)");
	ASSERT_EQ(0, nt_server_start(&self->s[0], llmp_test_free_port(), true, NULL));
	nt_url(self->s[0].port, url, sizeof(url));
	ASSERT_EQ(0, jb_start(a, self->kind, url, self->state[0], 0)) TH_LOG("%s", llmp_strerror_last());
	ASSERT_EQ(0, jb_start(b, self->kind, url, self->state[1], 0)) TH_LOG("%s", llmp_strerror_last());
	ASSERT_TRUE(warm(b, a, 20000)) TH_LOG("log:\n%s", nlog);
	ASSERT_EQ(0, send_range(b, 0, 49));
	ASSERT_EQ(0, recv_range(a, 0, 49, 20000)) TH_LOG("log:\n%s", nlog);
	llmp_nats_stats(a->br, &st);
	uint64_t origin_a = st.origin;
	jb_stop(a);
	/* Every warm-up B sent is acknowledged or given up: then count 50 more. */
	for (int i = 0; i < 500; i++) {
		llmp_nats_stats(b->br, &st);
		if (!st.pending)
			break;
		usleep(10000);
	}
	ASSERT_EQ(0, st.pending);
	ASSERT_EQ(0, send_range(b, 50, 99));
	ASSERT_TRUE(wait_published(b, st.published + 50, 20000)) TH_LOG("log:\n%s", nlog);
	ASSERT_EQ(0, jb_start(a, self->kind, url, self->state[0], 0)) TH_LOG("%s", llmp_strerror_last());
	llmp_nats_stats(a->br, &st);
	ASSERT_EQ(origin_a, st.origin);
	ASSERT_EQ(0, recv_range(a, 50, 99, 20000)) TH_LOG("log:\n%s", nlog);
	/* C: a new broker (new id) replays the stream: all 100. */
	ASSERT_EQ(0, jb_start(c, self->kind, url, self->state[2], 0)) TH_LOG("%s", llmp_strerror_last());
	ASSERT_EQ(0, recv_range(c, 0, 99, 20000)) TH_LOG("log:\n%s", nlog);
	llmp_nats_stats(c->br, &st);
	ASSERT_EQ(0, st.bad);
	ASSERT_NE(origin_a, st.origin);
}

/*
 * Three servers in a cluster, the stream on all three.  The server broker
 * A is connected to is killed while B publishes: A fails over to another
 * server and gets every message, once, in order.
 */
TEST_F_TIMEOUT(js, cluster_failover_loses_nothing, 240)
{
	struct jbroker *a = &self->b[0], *b = &self->b[1];
	uint16_t port[NSRV];
	char urls[256], pb[64];
	struct llmp_nats_stats st;
	int victim = -1;

	if (!self->ok)
		SKIP(return, "no setup (see its reason)");
	ASSERT_EQ(0, start_cluster(self->s, port, urls, sizeof(urls)));
	ASSERT_EQ(0, jb_start(a, self->kind, urls, self->state[0], 3)) TH_LOG("%s", llmp_strerror_last());
	ASSERT_EQ(0, jb_start(b, self->kind, urls, self->state[1], 3)) TH_LOG("%s", llmp_strerror_last());
	/* The cluster elects its JetStream leaders first: the bridges retry until then. */
	ASSERT_TRUE(warm(b, a, 60000)) TH_LOG("log:\n%s", nlog);
	ASSERT_EQ(0, send_range(b, 0, 29));
	ASSERT_EQ(0, recv_range(a, 0, 29, 20000)) TH_LOG("log:\n%s", nlog);
	llmp_nats_stats(a->br, &st);
	for (int k = 0; k < NSRV; k++)
		if (!strcmp(st.server, nt_url(port[k], pb, sizeof(pb))))
			victim = k;
	ASSERT_LE(0, victim) TH_LOG("A is connected to \"%s\"", st.server);
	nt_server_kill(&self->s[victim], SIGKILL);
	ASSERT_EQ(0, send_range(b, 30, 99));
	/*
	 * Exactly once; not necessarily in order: what the dead node had sent
	 * toward A without A's acknowledgement comes again after the ack wait
	 * (30 s), after later messages (Documentation/fleet.rst).
	 */
	ASSERT_EQ(0, recv_range_how(a, 30, 99, 90000, false)) TH_LOG("log:\n%s", nlog);
	llmp_nats_stats(a->br, &st);
	ASSERT_TRUE(st.connected);
	ASSERT_NE(0, strcmp(st.server, nt_url(port[victim], pb, sizeof(pb))));
	ASSERT_LE(1, st.reconnects);
}

#define PER 40 /* messages each broker's client sends in three_nodes() */

/*
 * Three servers in a cluster, three brokers each connected to a different
 * one (only that server's URL), a sending and a receiving client on each.
 * Every broker's sender sends PER messages "o<k> m<i>": each receiver gets
 * the other two brokers' messages, each once, in order per origin, and
 * none of its own broker's back from NATS.  JetStream (stream on all three
 * servers) or core NATS: core promises at most once, and on a healthy
 * cluster with its subscriptions in place (the warm-up) nothing is lost
 * either, so the same check applies.
 */
static void three_nodes(struct __test_metadata *_metadata, FIXTURE_DATA(js) *self, bool stream)
{
	uint16_t port[NSRV];
	char urls[256], url[NSRV][64];

	ASSERT_EQ(0, start_cluster(self->s, port, urls, sizeof(urls)));
	for (int k = 0; k < 3; k++) {
		nt_url(port[k], url[k], sizeof(url[k]));
		ASSERT_EQ(0, jb_start_how(&self->b[k], self->kind, url[k], self->state[k],
					  stream ? 3 : 0, stream))
			TH_LOG("%s", llmp_strerror_last());
	}
	/* each pair carries (the cluster elects its JetStream leaders first) */
	for (int pair = 0; pair < 9; pair++) {
		int from = pair / 3, to = pair % 3;
		bool ok = from == to || warm(&self->b[from], &self->b[to], 60000);

		ASSERT_TRUE(ok) TH_LOG("%d to %d; log:\n%s", pair / 3, pair % 3, nlog);
	}
	for (int i = 0; i < PER; i++)
		for (int k = 0; k < 3; k++) {
			char buf[1600];
			size_t len = (i % 2) ? 1500 : 30;

			memset(buf, 'x', len);
			snprintf(buf, len, "o%d m%d ", k, i);
			ASSERT_EQ(0, llmp_client_send(self->b[k].tx, TAG, 0, buf, len));
		}
	for (int k = 0; k < 3; k++) {
		int next[3] = { 0 }, want = 2 * PER, got = 0, o, i, echo = 0, bad = 0;
		int64_t end = llmp_test_now_ms() + 60000;
		struct llmp_msg_view v;

		while (got < want && llmp_test_now_ms() < end) {
			if (llmp_client_recv_wait(self->b[k].rx, &v, 100) != 1 || v.tag != TAG)
				continue;
			if (!(v.flags & LLMP_FLAG_FROM_B2B))
				continue; /* its own broker's sender, locally */
			if (sscanf((const char *)v.buf, "o%d m%d", &o, &i) != 2 || o < 0 || o > 2) {
				bad++;
				continue;
			}
			if (o == k) {
				echo++;
				continue;
			}
			if (i != next[o])
				bad++;
			next[o] = i + 1;
			got++;
		}
		usleep(300000); /* nothing more behind them */
		while (llmp_client_recv(self->b[k].rx, &v) == 1)
			if (v.tag == TAG && (v.flags & LLMP_FLAG_FROM_B2B))
				bad++;
		EXPECT_EQ(want, got) TH_LOG("broker %d: from %d: %d, from %d: %d; log:\n%s", k,
					    (k + 1) % 3, next[(k + 1) % 3], (k + 2) % 3,
					    next[(k + 2) % 3], nlog);
		EXPECT_EQ(0, bad) TH_LOG("broker %d: out of order, repeated or malformed", k);
		EXPECT_EQ(0, echo) TH_LOG("broker %d: its own messages came back", k);
	}
}

TEST_F_TIMEOUT(js, three_brokers_on_three_nodes_jetstream, 240)
{
	if (!self->ok)
		SKIP(return, "no setup (see its reason)");
	three_nodes(_metadata, self, true);
}

TEST_F_TIMEOUT(js, three_brokers_on_three_nodes_core, 240)
{
	if (!self->ok)
		SKIP(return, "no setup (see its reason)");
	three_nodes(_metadata, self, false);
}

TEST_HARNESS_MAIN
