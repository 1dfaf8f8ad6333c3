// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * The NATS bridge against real nats-server processes on loopback: two
 * brokers over one server (core NATS and JetStream): every message crosses
 * exactly once, none echoes back, order per client kept; a raw publisher
 * speaking the NATS text protocol sends malformed, lying and reserved-tag
 * messages (dropped and counted; honest traffic flows; with JetStream
 * they are acknowledged, so never redelivered); unreachable
 * servers and wrong credentials (a clear error, or with retry: serve
 * locally, connect later); TLS trusting only the given CA; an outage under
 * a publishing broker (resumed from the read position, losses counted); JetStream: a restarted broker resumes without
 * loss or duplicates, a late broker gets the retained stream.  SKIPs with
 * the reason without nats-server or without libnats in the build.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kselftest_harness.h"
#include "nats_test.h"

#define TAG 0x5c1u
#define WARM 0x5c2u
#define NSEND 2     /* sending clients per broker */
#define PER 100     /* messages per sending client */
#define CAMPAIGN "t1"

/* A broker (node) with a bridge to url. */
static int bnode_init(struct llmp_node *n, enum llmp_shmem_kind kind, const char *url, bool js,
		      const char *state, bool retry, const char *creds, struct llmp_nats **br)
{
	struct llmp_broker_opts bo = { .struct_size = sizeof(bo), .page_size = 1 << 18 };
	struct llmp_nats_opts o = { .struct_size = sizeof(o), .urls = url, .campaign = CAMPAIGN,
				    .stream = js, .state_file = state, .retry = retry,
				    .creds_file = creds };
	int r = llmp_node_init(n, kind, 0, &bo, NULL);

	if (r < 0)
		return r;
	return llmp_loop_attach_nats(n->lp, &o, br);
}

static void fill(char *buf, size_t len, int b, int c, int i)
{
	memset(buf, 'a' + (i % 26), len);
	snprintf(buf, len, "b%d c%d m%d ", b, c, i);
}

static size_t size_of(int i)
{
	return i % 3 == 0 ? 40 : i % 3 == 1 ? 1000 : 5000;
}

FIXTURE(pair)
{
	struct nt_server s;
	struct llmp_node n[2];
	struct llmp_nats *br[2];
	enum llmp_shmem_kind kind;
	char state[2][64];
	bool ok;
};

FIXTURE_VARIANT(pair)
{
	bool js;
};

FIXTURE_VARIANT_ADD(pair, core) { .js = false };
FIXTURE_VARIANT_ADD(pair, jetstream) { .js = true };

FIXTURE_SETUP(pair)
{
	char url[64];

	memset(self, 0, sizeof(*self));
	nlog[0] = 0;
	llmp_set_log(llmp_test_log_cb, &nlog_capture, LLMP_LOG_DEBUG);
	if (!nt_server_bin())
		SKIP(return, "nats-server is not installed (apt-get install nats-server)");
	if (llmp_test_named_kind(&self->kind) < 0)
		SKIP(return, "neither POSIX nor System V shared memory works here");
	ASSERT_EQ(0, nt_server_start(&self->s, llmp_test_free_port(), variant->js, NULL));
	nt_url(self->s.port, url, sizeof(url));
	for (int k = 0; k < 2; k++) {
		int r;

		snprintf(self->state[k], sizeof(self->state[k]), "/tmp/llmp-nats-state-%d-%d",
			 (int)getpid(), k);
		unlink(self->state[k]);
		r = bnode_init(&self->n[k], self->kind, url, variant->js, self->state[k], false,
			       NULL, &self->br[k]);
		if (r == -EOPNOTSUPP)
			SKIP(return, "%s", llmp_strerror_last());
		ASSERT_EQ(0, r) TH_LOG("%s", llmp_strerror_last());
	}
	self->ok = true;
}

FIXTURE_TEARDOWN(pair)
{
	for (int k = 0; k < 2; k++)
		llmp_node_fini(&self->n[k]);
	for (int k = 0; k < 2; k++)
		unlink(self->state[k]);
	nt_server_fini(&self->s);
	llmp_set_log(NULL, NULL, LLMP_LOG_WARN);
}

/* Each side's client sends WARM until the other side's receiver has seen one. */
static int warm_up(struct llmp_client **tx, struct llmp_client **rx)
{
	for (int k = 0; k < 2; k++) {
		struct llmp_msg_view v;
		int64_t end = llmp_test_now_ms() + 15000;
		bool seen = false;

		while (!seen && llmp_test_now_ms() < end) {
			if (llmp_client_send(tx[k], WARM, 0, "w", 1) < 0)
				return -1;
			while (!seen && llmp_client_recv_wait(rx[!k], &v, 50) == 1)
				seen = v.tag == WARM && (v.flags & LLMP_FLAG_FROM_B2B);
		}
		if (!seen)
			return -1;
	}
	return 0;
}

/*
 * Two brokers over one server: every message of every client reaches the
 * other broker's clients exactly once, in its client's order, with
 * FROM_B2B and the origin's id; no copy comes back to its own broker.
 */
TEST_F_TIMEOUT(pair, every_message_crosses_once, 90)
{
	struct llmp_client *tx[2][NSEND], *rx[2];
	uint32_t txid[2][NSEND];
	struct llmp_nats_stats st[2];
	char buf[8192];
	int ret;

	if (!self->ok)
		SKIP(return, "no setup (see its reason)");
	for (int k = 0; k < 2; k++)
		ASSERT_EQ(0, llmp_node_start(&self->n[k]));
	for (int k = 0; k < 2; k++) {
		struct llmp_client_opts o = { .struct_size = sizeof(o), .send_timeout_ms = 10000 };

		ASSERT_EQ(0, llmp_client_connect_tcp(self->n[k].cp, NULL, self->n[k].port, &o, &rx[k]));
		for (int c = 0; c < NSEND; c++) {
			ASSERT_EQ(0, llmp_client_connect_tcp(self->n[k].cp, NULL, self->n[k].port, &o,
							     &tx[k][c]));
			txid[k][c] = llmp_client_id(tx[k][c]);
		}
	}
	struct llmp_client *w_tx[2] = { tx[0][0], tx[1][0] };
	ASSERT_EQ(0, warm_up(w_tx, rx)) TH_LOG("no message crossed in 15 s; log:\n%s", nlog);
	for (int i = 0; i < PER; i++)
		for (int k = 0; k < 2; k++)
			for (int c = 0; c < NSEND; c++) {
				fill(buf, size_of(i), k, c, i);
				ASSERT_EQ(0, llmp_client_send(tx[k][c], TAG, 0, buf, size_of(i)));
			}
	for (int k = 0; k < 2; k++) {
		int next[2][NSEND], got = 0;
		struct llmp_msg_view v;

		memset(next, 0, sizeof(next));
		llmp_nats_stats(self->br[!k], &st[!k]);
		while (got < 2 * NSEND * PER) {
			int b, c, i;

			ASSERT_EQ(1, llmp_client_recv_wait(rx[k], &v, 15000))
				TH_LOG("broker %d: %d of %d; log:\n%s", k, got, 2 * NSEND * PER, nlog);
			if (v.tag != TAG)
				continue;
			ASSERT_EQ(3, sscanf((const char *)v.buf, "b%d c%d m%d", &b, &c, &i));
			ASSERT_TRUE(b >= 0 && b < 2 && c >= 0 && c < NSEND);
			/* In order per client, each once. */
			ASSERT_EQ(next[b][c], i) TH_LOG("broker %d: b%d c%d m%d", k, b, c, i);
			next[b][c]++;
			fill(buf, size_of(i), b, c, i);
			ASSERT_EQ(size_of(i), v.len);
			ASSERT_EQ(0, memcmp(buf, v.buf, v.len));
			ASSERT_EQ(txid[b][c], v.sender);
			ASSERT_EQ(b != k, !!(v.flags & LLMP_FLAG_FROM_B2B));
			if (b != k) {
				ASSERT_EQ((uint32_t)st[!k].origin, v.broker);
			}
			got++;
		}
		/* Nothing more: no echo, no duplicate. */
		usleep(k == 0 ? 500000 : 0);
		while ((ret = llmp_client_recv(rx[k], &v)) == 1)
			ASSERT_NE(TAG, v.tag) TH_LOG("broker %d: a duplicate arrived", k);
		ASSERT_EQ(0, ret);
	}
	for (int k = 0; k < 2; k++) {
		llmp_nats_stats(self->br[k], &st[k]);
		ASSERT_TRUE(st[k].connected);
		/* PER per client crossed, plus the warm-ups */
		ASSERT_LE((uint64_t)NSEND * PER, st[k].received);
		ASSERT_LE((uint64_t)NSEND * PER, st[k].published);
		ASSERT_EQ(0, st[k].bad);
		ASSERT_EQ(0, st[k].lost);
#ifdef LLMP_HAVE_ZSTD
		/* 1000- and 5000-byte messages went out compressed */
		ASSERT_LE((uint64_t)NSEND * (PER / 3) * 2, st[k].zstd);
#endif
		/* Core NATS does not echo; JetStream delivers ours too, dropped by origin. */
		if (!variant->js) {
			ASSERT_EQ(0, st[k].own);
		} else {
			ASSERT_LE((uint64_t)NSEND * PER, st[k].own);
		}
	}
	for (int k = 0; k < 2; k++) {
		llmp_client_free(rx[k]);
		for (int c = 0; c < NSEND; c++)
			llmp_client_free(tx[k][c]);
	}
}

/* ---- hostile publishers ---------------------------------------------------------- */

#define HDRS_SEQ(tag, len, seq)                                                         \
	"Llmp-Origin: 00000000000000aa\r\nLlmp-Boot: 0000beef\r\nLlmp-Seq: " seq "\r\n"   \
	"Llmp-Client: 7\r\nLlmp-Tag: " tag "\r\nLlmp-Flags: 00000000\r\nLlmp-Len: " len "\r\n"
#define GOOD_HDRS(tag, len) HDRS_SEQ(tag, len, "1")

struct bad_msg {
	const char *subject, *hdrs;
	const char *data;
};

static const struct bad_msg bad_msgs[] = {
	{ "llmp." CAMPAIGN ".00000010", "X-Nothing: 1\r\n", "no llmp headers" },
	{ "llmp." CAMPAIGN ".00000010",
	  "Llmp-Origin: zz\r\nLlmp-Client: 7\r\nLlmp-Tag: 00000010\r\nLlmp-Flags: 0\r\n"
	  "Llmp-Len: 5\r\n", "hello" },
	{ "llmp." CAMPAIGN ".00000010", GOOD_HDRS("00000011", "5"), "hello" },      /* tag differs */
	{ "llmp." CAMPAIGN ".0af1e0f1", GOOD_HDRS("0af1e0f1", "5"), "hello" },      /* END_OF_PAGE */
	{ "llmp." CAMPAIGN ".0deadaf0", GOOD_HDRS("00deadaf", "5"), "hello" },      /* UNSET, sort of */
	{ "llmp." CAMPAIGN ".00deadaf", GOOD_HDRS("00deadaf", "5"), "hello" },      /* UNSET */
	{ "llmp." CAMPAIGN ".00000010", GOOD_HDRS("00000010", "100"), "short" },    /* lies */
	{ "llmp." CAMPAIGN ".00000010", GOOD_HDRS("00000010", "999999999"), "x" },  /* too big */
	{ "llmp." CAMPAIGN ".00000010", GOOD_HDRS("00000010", "4") "Llmp-Enc: zstd\r\n", "junkjunk" },
	{ "llmp." CAMPAIGN ".00000010", GOOD_HDRS("00000010", "5") "Llmp-Enc: lz4\r\n", "hello" },
	{ "llmp." CAMPAIGN ".00000010",
	  "Llmp-Origin: 00000000000000aa\r\nLlmp-Boot: 1\r\nLlmp-Seq: 9\r\nLlmp-Client: 7\r\n"
	  "Llmp-Tag: 00000010\r\nLlmp-Flags: 00000002\r\nLlmp-Len: 5\r\n", "hello" },                   /* FROM_B2B */
	{ "llmp." CAMPAIGN ".00000010",
	  "Llmp-Origin: 00000000000000aa\r\nLlmp-Boot: 1\r\nLlmp-Seq: 9\r\nLlmp-Client: -7\r\n"
	  "Llmp-Tag: 00000010\r\n"
	  "Llmp-Flags: 0\r\nLlmp-Len: 5\r\n", "hello" },
	{ "llmp." CAMPAIGN ".zzzzzzzz", GOOD_HDRS("00000010", "5"), "hello" },
	{ "llmp." CAMPAIGN ".00000010", HDRS_SEQ("00000010", "5", "0"), "hello" },   /* seq 0 */
	{ "llmp." CAMPAIGN ".00000010", HDRS_SEQ("00000010", "5", "1x"), "hello" },
	{ "llmp." CAMPAIGN ".00000010",
	  "Llmp-Origin: 00000000000000aa\r\nLlmp-Client: 7\r\nLlmp-Tag: 00000010\r\n"
	  "Llmp-Flags: 0\r\nLlmp-Len: 5\r\n", "hello" },                      /* no boot, seq */
	{ "llmp." CAMPAIGN ".00000010.x", GOOD_HDRS("00000010", "5"), "hello" },
	{ "llmp." CAMPAIGN ".10", GOOD_HDRS("00000010", "5"), "hello" },
	{ "llmp." CAMPAIGN ".00000010",
	  "Llmp-Origin: 00000000000000000000aa\r\nLlmp-Client: 7\r\nLlmp-Tag: 00000010\r\n"
	  "Llmp-Flags: 0\r\nLlmp-Len: 5\r\n", "hello" },
};

FIXTURE(one)
{
	struct nt_server s;
	struct llmp_node n;
	struct llmp_nats *br;
	enum llmp_shmem_kind kind;
	char dir[64];
	bool ok;
};

FIXTURE_SETUP(one)
{
	memset(self, 0, sizeof(*self));
	nlog[0] = 0;
	llmp_set_log(llmp_test_log_cb, &nlog_capture, LLMP_LOG_DEBUG);
	if (!nt_server_bin())
		SKIP(return, "nats-server is not installed (apt-get install nats-server)");
	if (llmp_test_named_kind(&self->kind) < 0)
		SKIP(return, "neither POSIX nor System V shared memory works here");
	self->ok = true;
}

FIXTURE_TEARDOWN(one)
{
	llmp_node_fini(&self->n);
	nt_server_fini(&self->s);
	llmp_set_log(NULL, NULL, LLMP_LOG_WARN);
}

#define ONE_BROKER(url, js, state, retry, creds)                                          \
	do {                                                                              \
		int r_ = bnode_init(&self->n, self->kind, (url), (js), (state), (retry),  \
				    (creds), &self->br);                                  \
		if (r_ == -EOPNOTSUPP)                                                    \
			SKIP(return, "%s", llmp_strerror_last());                         \
		ASSERT_EQ(0, r_) TH_LOG("%s", llmp_strerror_last());                      \
	} while (0)

/* Wait for a message with tag on c: 1 and *v, or 0 after ms. */
static int wait_tag(struct llmp_client *c, uint32_t tag, struct llmp_msg_view *v, int ms)
{
	int64_t end = llmp_test_now_ms() + ms;

	while (llmp_test_now_ms() < end)
		if (llmp_client_recv_wait(c, v, 50) == 1 && v->tag == tag)
			return 1;
	return 0;
}

/* a's client and b's (on two bridged brokers) each get one message from the other within ms. */
static bool both_ways(struct llmp_client *a, struct llmp_client *b, int ms)
{
	int64_t end = llmp_test_now_ms() + ms;
	bool there = false, back = false;
	struct llmp_msg_view v;

	while ((!there || !back) && llmp_test_now_ms() < end) {
		if (!there)
			llmp_client_send(a, 0x41, 0, "there", 5);
		if (!back)
			llmp_client_send(b, 0x42, 0, "back", 4);
		there = there || wait_tag(b, 0x41, &v, 100);
		back = back || wait_tag(a, 0x42, &v, 100);
	}
	return there && back;
}

/*
 * A raw publisher sends every kind of malformed or lying message, then a
 * good one, then protocol garbage: the broker drops and counts each bad
 * one, delivers the good ones, and keeps serving its local clients.
 */
TEST_F_TIMEOUT(one, hostile_publisher, 60)
{
	const unsigned nbad = sizeof(bad_msgs) / sizeof(bad_msgs[0]);
	struct llmp_client_opts o = { .struct_size = sizeof(o), .send_timeout_ms = 10000 };
	struct llmp_client *c, *tx;
	struct llmp_nats_stats st;
	struct llmp_msg_view v;
	char url[64];
	int fd;

	if (!self->ok)
		SKIP(return, "no setup (see its reason)");
	ASSERT_EQ(0, nt_server_start(&self->s, llmp_test_free_port(), false, NULL));
	ONE_BROKER(nt_url(self->s.port, url, sizeof(url)), false, NULL, false, NULL);
	ASSERT_EQ(0, llmp_node_start(&self->n));
	ASSERT_EQ(0, llmp_client_connect_tcp(self->n.cp, NULL, self->n.port, &o, &c));
	ASSERT_EQ(0, llmp_client_connect_tcp(self->n.cp, NULL, self->n.port, &o, &tx));
	fd = nt_raw_connect(self->s.port);
	ASSERT_LE(0, fd) TH_LOG("no raw connection");
	/* The bridge's subscription is in once a good message comes through. */
	{
		int64_t end = llmp_test_now_ms() + 10000;
		bool in = false;

		while (!in && llmp_test_now_ms() < end) {
			ASSERT_EQ(0, nt_raw_hpub(fd, "llmp." CAMPAIGN ".00000020",
						 GOOD_HDRS("00000020", "2"), "hi", 2));
			in = wait_tag(c, 0x20, &v, 100);
		}
		ASSERT_TRUE(in) TH_LOG("log:\n%s", nlog);
		while (llmp_client_recv(c, &v) == 1)
			;
	}
	llmp_nats_stats(self->br, &st);
	ASSERT_EQ(0, st.bad);
	for (unsigned i = 0; i < nbad; i++)
		ASSERT_EQ(0, nt_raw_hpub(fd, bad_msgs[i].subject, bad_msgs[i].hdrs, bad_msgs[i].data,
					 strlen(bad_msgs[i].data)));
	ASSERT_EQ(0, nt_raw_hpub(fd, "llmp." CAMPAIGN ".00000010", HDRS_SEQ("00000010", "5", "2"),
				 "hello", 5));
	/* The same run and sequence again: a redelivery, dropped as such. */
	ASSERT_EQ(0, nt_raw_hpub(fd, "llmp." CAMPAIGN ".00000010", HDRS_SEQ("00000010", "5", "2"),
				 "hello", 5));
	ASSERT_EQ(0, nt_raw_ping(fd));
	ASSERT_EQ(1, wait_tag(c, 0x10, &v, 10000)) TH_LOG("log:\n%s", nlog);
	ASSERT_EQ(5, v.len);
	ASSERT_EQ(0, memcmp(v.buf, "hello", 5));
	ASSERT_EQ(7, v.sender);
	ASSERT_EQ(0xaa, v.broker);
	ASSERT_EQ(LLMP_FLAG_FROM_B2B, v.flags);
	/* Only that one: every bad message was dropped (in order: they came first). */
	ASSERT_EQ(0, llmp_client_recv(c, &v));
	llmp_nats_stats(self->br, &st);
	/* Each bad one reached the broker (all match llmp.<campaign>.>) and was counted. */
	ASSERT_EQ(nbad, st.bad) TH_LOG("log:\n%s", nlog);
	/* The repeated copy came after the first: it may still be on its way. */
	for (int i = 0; i < 500 && !st.dup; i++) {
		usleep(10000);
		llmp_nats_stats(self->br, &st);
	}
	ASSERT_EQ(1, st.dup);
	ASSERT_TRUE(strstr(nlog, "nats: dropped a message") != NULL);
	/* Protocol garbage: the server closes that connection; nothing reaches us. */
	send(fd, "HPUB llmp." CAMPAIGN ".00000010 999999999 5\r\n\x01\x02garbage\r\n", 45,
	     MSG_NOSIGNAL);
	close(fd);
	/* Local traffic and honest publishers still flow. */
	ASSERT_EQ(0, llmp_client_send(tx, 0x30, 0, "local", 5));
	ASSERT_EQ(1, wait_tag(c, 0x30, &v, 5000));
	fd = nt_raw_connect(self->s.port);
	ASSERT_LE(0, fd);
	ASSERT_EQ(0, nt_raw_hpub(fd, "llmp." CAMPAIGN ".00000010", HDRS_SEQ("00000010", "5", "3"),
				 "again", 5));
	ASSERT_EQ(1, wait_tag(c, 0x10, &v, 10000));
	ASSERT_EQ(0, memcmp(v.buf, "again", 5));
	close(fd);
	llmp_client_free(c);
	llmp_client_free(tx);
}

/* No server: a clear error; with retry the broker serves locally and connects later. */
TEST_F_TIMEOUT(one, unreachable_server, 60)
{
	struct llmp_client_opts o = { .struct_size = sizeof(o), .send_timeout_ms = 10000 };
	struct llmp_broker_opts bo = { .struct_size = sizeof(bo), .page_size = 1 << 18 };
	struct llmp_nats_opts no = { .struct_size = sizeof(no), .campaign = CAMPAIGN };
	struct llmp_node other;
	struct llmp_nats *obr;
	struct llmp_client *c, *oc;
	struct llmp_msg_view v;
	uint16_t port = llmp_test_free_port();
	char url[64];
	int r;

	if (!self->ok)
		SKIP(return, "no setup (see its reason)");
	nt_url(port, url, sizeof(url));
	ASSERT_EQ(0, llmp_node_init(&self->n, self->kind, 0, &bo, NULL));
	no.urls = url;
	r = llmp_loop_attach_nats(self->n.lp, &no, &self->br);
	if (r == -EOPNOTSUPP)
		SKIP(return, "%s", llmp_strerror_last());
	ASSERT_EQ(-ECONNREFUSED, r);
	ASSERT_TRUE(strstr(llmp_strerror_last(), "cannot connect to") != NULL)
		TH_LOG("%s", llmp_strerror_last());
	no.retry = true;
	ASSERT_EQ(0, llmp_loop_attach_nats(self->n.lp, &no, &self->br))
		TH_LOG("%s", llmp_strerror_last());
	ASSERT_EQ(0, llmp_node_start(&self->n));
	ASSERT_EQ(0, llmp_client_connect_tcp(self->n.cp, NULL, self->n.port, &o, &c));
	ASSERT_EQ(0, llmp_client_send(c, 0x40, 0, "local", 5));
	ASSERT_EQ(1, wait_tag(c, 0x40, &v, 5000));
	/* The server comes up; a second broker joins; messages cross both ways. */
	ASSERT_EQ(0, nt_server_start(&self->s, port, false, NULL));
	ASSERT_EQ(0, llmp_node_init(&other, self->kind, 0, &bo, NULL));
	ASSERT_EQ(0, llmp_loop_attach_nats(other.lp, &no, &obr)) TH_LOG("%s", llmp_strerror_last());
	ASSERT_EQ(0, llmp_node_start(&other));
	ASSERT_EQ(0, llmp_client_connect_tcp(other.cp, NULL, other.port, &o, &oc)) TH_LOG("client");
	ASSERT_TRUE(both_ways(c, oc, 20000)) TH_LOG("log:\n%s", nlog);
	llmp_client_free(oc);
	llmp_node_fini(&other);
	llmp_client_free(c);
}

/* Wrong credentials: -EACCES and a clear message; right ones connect. */
TEST_F_TIMEOUT(one, wrong_credentials, 30)
{
	static const char *const auth[] = { "--user", "llmp", "--pass", "right", NULL };
	char url[64], creds[64];
	int fd, r;

	if (!self->ok)
		SKIP(return, "no setup (see its reason)");
	ASSERT_EQ(0, nt_server_start(&self->s, llmp_test_free_port(), false, auth));
	snprintf(creds, sizeof(creds), "/tmp/llmp-nats-creds-%d", (int)getpid());
	fd = open(creds, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	ASSERT_LE(0, fd);
	ASSERT_EQ(12, write(fd, "llmp:wrong\r\n", 12));
	close(fd);
	struct llmp_broker_opts bo = { .struct_size = sizeof(bo), .page_size = 1 << 18 };
	struct llmp_nats_opts no = { .struct_size = sizeof(no), .campaign = CAMPAIGN,
				     .urls = nt_url(self->s.port, url, sizeof(url)),
				     .creds_file = creds };

	ASSERT_EQ(0, llmp_node_init(&self->n, self->kind, 0, &bo, NULL));
	r = llmp_loop_attach_nats(self->n.lp, &no, &self->br);
	if (r == -EOPNOTSUPP) {
		unlink(creds);
		SKIP(return, "%s", llmp_strerror_last());
	}
	EXPECT_EQ(-EACCES, r) TH_LOG("%s", llmp_strerror_last());
	EXPECT_TRUE(strstr(llmp_strerror_last(), "uthorization") != NULL)
		TH_LOG("%s", llmp_strerror_last());
	fd = open(creds, O_WRONLY | O_TRUNC);
	ASSERT_EQ(11, write(fd, "llmp:right\n", 11));
	close(fd);
	r = llmp_loop_attach_nats(self->n.lp, &no, &self->br);
	unlink(creds);
	ASSERT_EQ(0, r) TH_LOG("%s", llmp_strerror_last());
	/* A missing file is an error too, naming it. */
	no.creds_file = "/nonexistent/creds";
	ASSERT_GT(0, llmp_loop_attach_nats(self->n.lp, &no, NULL));
}

/* A state file that does not hold an origin id is refused, not overwritten. */
TEST_F(one, bad_state_file)
{
	struct llmp_broker_opts bo = { .struct_size = sizeof(bo), .page_size = 1 << 18 };
	char state[64], url[64], buf[64];
	int fd, r;

	if (!self->ok)
		SKIP(return, "no setup (see its reason)");
	ASSERT_EQ(0, nt_server_start(&self->s, llmp_test_free_port(), false, NULL));
	struct llmp_nats_opts no = { .struct_size = sizeof(no), .campaign = CAMPAIGN,
				     .urls = nt_url(self->s.port, url, sizeof(url)),
				     .state_file = state };

	snprintf(state, sizeof(state), "/tmp/llmp-nats-badstate-%d", (int)getpid());
	fd = open(state, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	ASSERT_EQ(9, write(fd, "garbage!\n", 9));
	close(fd);
	ASSERT_EQ(0, llmp_node_init(&self->n, self->kind, 0, &bo, NULL));
	r = llmp_loop_attach_nats(self->n.lp, &no, &self->br);
	if (r == -EOPNOTSUPP) {
		unlink(state);
		SKIP(return, "%s", llmp_strerror_last());
	}
	EXPECT_EQ(-EINVAL, r);
	fd = open(state, O_RDONLY);
	EXPECT_EQ(9, read(fd, buf, sizeof(buf)));
	close(fd);
	unlink(state);
	/* Bad campaign names and tag lists are refused too. */
	no.state_file = NULL;
	no.campaign = "a.b";
	EXPECT_EQ(-EINVAL, llmp_loop_attach_nats(self->n.lp, &no, NULL));
	no.campaign = CAMPAIGN;
	no.tags = "0x10,zz";
	EXPECT_EQ(-EINVAL, llmp_loop_attach_nats(self->n.lp, &no, NULL));
	no.tags = "0xaf1e0f1";
	EXPECT_EQ(-EINVAL, llmp_loop_attach_nats(self->n.lp, &no, NULL));
}

/*
 * TLS (--nats-tls-ca): a server that requires TLS, with a certificate for
 * 127.0.0.1 signed by a CA made here (openssl).  A broker trusting another
 * CA, and one without TLS, are refused with a clear error; two brokers
 * trusting the right CA carry messages both ways.
 */
TEST_F_TIMEOUT(one, tls_trusts_only_the_given_ca, 90)
{
	struct llmp_client_opts o = { .struct_size = sizeof(o), .send_timeout_ms = 10000 };
	struct llmp_broker_opts bo = { .struct_size = sizeof(bo), .page_size = 1 << 18 };
	struct llmp_nats_opts no = { .struct_size = sizeof(no), .campaign = CAMPAIGN };
	char dir[64], cmd[2048], ca[96], other[96], cert[96], key[96], url[64];
	struct llmp_node b;
	struct llmp_nats *bbr;
	struct llmp_client *c, *bc;
	int r;

	if (!self->ok)
		SKIP(return, "no setup (see its reason)");
	if (access("/usr/bin/openssl", X_OK))
		SKIP(return, "openssl is not installed (apt-get install openssl)");
	snprintf(dir, sizeof(dir), "/tmp/llmp-nats-tls-XXXXXX");
	ASSERT_NE(NULL, mkdtemp(dir));
	snprintf(ca, sizeof(ca), "%s/ca.pem", dir);
	snprintf(other, sizeof(other), "%s/other.pem", dir);
	snprintf(cert, sizeof(cert), "%s/srv.pem", dir);
	snprintf(key, sizeof(key), "%s/srv.key", dir);
	snprintf(cmd, sizeof(cmd),
		 "cd %s && k='-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes' && "
		 "openssl req -x509 $k -keyout ca.key -out ca.pem -days 2 -subj /CN=llmp-test-ca && "
		 "openssl req -x509 $k -keyout other.key -out other.pem -days 2 -subj /CN=llmp-test-ca && "
		 "openssl req $k -keyout srv.key -out srv.csr -subj /CN=127.0.0.1 && "
		 "printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\\n' > ext && "
		 "openssl x509 -req -in srv.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 "
		 "-extfile ext -out srv.pem",
		 dir);
	r = system(cmd);
	ASSERT_EQ(0, r) TH_LOG("openssl failed: %s", cmd);
	{
		const char *tls[] = { "--tls", "--tlscert", cert, "--tlskey", key, NULL };

		ASSERT_EQ(0, nt_server_start(&self->s, llmp_test_free_port(), false, tls));
	}
	no.urls = nt_url(self->s.port, url, sizeof(url));
	ASSERT_EQ(0, llmp_node_init(&self->n, self->kind, 0, &bo, NULL));
	/* without TLS: the server wants it */
	r = llmp_loop_attach_nats(self->n.lp, &no, NULL);
	if (r == -EOPNOTSUPP) {
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
		if (system(cmd) != 0)
			fprintf(stderr, "# could not remove %s\n", dir);
		SKIP(return, "%s", llmp_strerror_last());
	}
	EXPECT_GT(0, r) TH_LOG("without TLS: %s", llmp_strerror_last());
	fprintf(stderr, "# without TLS: %s\n", llmp_strerror_last());
	/* a CA that did not sign the server's certificate (same name, other key) */
	no.tls_ca_file = other;
	r = llmp_loop_attach_nats(self->n.lp, &no, NULL);
	EXPECT_GT(0, r) TH_LOG("another CA: %s", llmp_strerror_last());
	EXPECT_TRUE(strstr(llmp_strerror_last(), "nats:") != NULL) TH_LOG("%s", llmp_strerror_last());
	fprintf(stderr, "# another CA: %s\n", llmp_strerror_last());
	/* a CA file that is not one */
	no.tls_ca_file = key;
	EXPECT_GT(0, llmp_loop_attach_nats(self->n.lp, &no, NULL));
	fprintf(stderr, "# a key as CA file: %s\n", llmp_strerror_last());
	/* the right CA: two brokers, both ways */
	no.tls_ca_file = ca;
	ASSERT_EQ(0, llmp_loop_attach_nats(self->n.lp, &no, &self->br))
		TH_LOG("%s", llmp_strerror_last());
	ASSERT_EQ(0, llmp_node_start(&self->n));
	ASSERT_EQ(0, llmp_node_init(&b, self->kind, 0, &bo, NULL));
	ASSERT_EQ(0, llmp_loop_attach_nats(b.lp, &no, &bbr)) TH_LOG("%s", llmp_strerror_last());
	ASSERT_EQ(0, llmp_node_start(&b));
	ASSERT_EQ(0, llmp_client_connect_tcp(self->n.cp, NULL, self->n.port, &o, &c));
	ASSERT_EQ(0, llmp_client_connect_tcp(b.cp, NULL, b.port, &o, &bc)) TH_LOG("client");
	EXPECT_TRUE(both_ways(c, bc, 20000)) TH_LOG("log:\n%s", nlog);
	llmp_client_free(bc);
	llmp_client_free(c);
	llmp_node_fini(&b);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	EXPECT_EQ(0, system(cmd));
}

/*
 * NATS goes away under a publishing broker (JetStream, the server's store
 * kept): local clients keep getting local messages at once; what was sent
 * meanwhile is published from the bridge's read position when the server
 * is back, and the other broker gets each message once, in order.  Down
 * again while more than the broadcast history (1 MiB) is sent: the pages
 * the bridge could not read are counted as lost and logged, and what the
 * history still holds is published.
 */
TEST_F_TIMEOUT(one, outage_resumes_and_counts_what_the_history_lost, 180)
{
	struct llmp_client_opts o = { .struct_size = sizeof(o), .send_timeout_ms = 10000 };
	struct llmp_broker_opts bo = { .struct_size = sizeof(bo), .page_size = 1 << 18,
				       .history_bytes = 1 << 20 };
	struct llmp_nats_opts no = { .struct_size = sizeof(no), .campaign = CAMPAIGN, .stream = true };
	struct llmp_client *atx, *arx, *brx;
	struct llmp_nats_stats st;
	struct llmp_msg_view v;
	struct llmp_node b;
	struct llmp_nats *bbr;
	uint16_t port = llmp_test_free_port();
	char url[64], buf[1000];
	int i, got, r;

	if (!self->ok)
		SKIP(return, "no setup (see its reason)");
	ASSERT_EQ(0, nt_server_start(&self->s, port, true, NULL));
	no.urls = nt_url(port, url, sizeof(url));
	ASSERT_EQ(0, llmp_node_init(&self->n, self->kind, 0, &bo, NULL));
	r = llmp_loop_attach_nats(self->n.lp, &no, &self->br);
	if (r == -EOPNOTSUPP)
		SKIP(return, "%s", llmp_strerror_last());
	ASSERT_EQ(0, r) TH_LOG("%s", llmp_strerror_last());
	ASSERT_EQ(0, llmp_node_init(&b, self->kind, 0, &bo, NULL));
	ASSERT_EQ(0, llmp_loop_attach_nats(b.lp, &no, &bbr)) TH_LOG("%s", llmp_strerror_last());
	ASSERT_EQ(0, llmp_node_start(&self->n));
	ASSERT_EQ(0, llmp_node_start(&b));
	ASSERT_EQ(0, llmp_client_connect_tcp(self->n.cp, NULL, self->n.port, &o, &atx));
	ASSERT_EQ(0, llmp_client_connect_tcp(self->n.cp, NULL, self->n.port, &o, &arx));
	ASSERT_EQ(0, llmp_client_connect_tcp(b.cp, NULL, b.port, &o, &brx)) TH_LOG("client");
	ASSERT_TRUE(both_ways(atx, brx, 30000)) TH_LOG("log:\n%s", nlog);
	while (llmp_client_recv(arx, &v) == 1)
		;

	/* down: 50 messages; A's own client has them at once */
	nt_server_kill(&self->s, SIGKILL);
	for (i = 0; i < 50; i++) {
		snprintf(buf, sizeof(buf), "m%d", i);
		ASSERT_EQ(0, llmp_client_send(atx, 0x10, 0, buf, 300));
	}
	for (got = 0; got < 50 && wait_tag(arx, 0x10, &v, 5000); got++)
		;
	EXPECT_EQ(50, got) TH_LOG("local delivery stalled while NATS was down");
	/* back (same port, same store): B gets the 50 once, in order */
	ASSERT_EQ(0, nt_server_start(&self->s, port, true, NULL));
	for (got = 0; got < 50 && wait_tag(brx, 0x10, &v, 30000); got++) {
		int k = -1;

		sscanf((const char *)v.buf, "m%d", &k);
		ASSERT_EQ(got, k) TH_LOG("out of order or repeated");
	}
	ASSERT_EQ(50, got) TH_LOG("log:\n%s", nlog);
	EXPECT_EQ(0, wait_tag(brx, 0x10, &v, 1000)); /* nothing repeated behind them */
	llmp_nats_stats(self->br, &st);
	EXPECT_EQ(0, st.lost);
	EXPECT_LE(1, st.reconnects);

	/* down again while 3 MiB go through a 1 MiB history: counted, logged, the rest published */
	nt_server_kill(&self->s, SIGKILL);
	memset(buf, 'y', sizeof(buf));
	for (i = 0; i < 3000; i++) {
		snprintf(buf, 16, "n%d", i);
		ASSERT_EQ(0, llmp_client_send(atx, 0x11, 0, buf, sizeof(buf)));
	}
	ASSERT_EQ(0, nt_server_start(&self->s, port, true, NULL));
	for (i = 0; i < 300; i++) {
		llmp_nats_stats(self->br, &st);
		if (st.lost)
			break;
		usleep(100000);
	}
	EXPECT_LE(1, st.lost) TH_LOG("log:\n%s", nlog);
	EXPECT_LE(1, st.lost_pages);
	EXPECT_TRUE(strstr(nlog, "fell out of the broadcast history") != NULL) TH_LOG("no log line");
	/* the last message is in the kept history: it arrives */
	{
		int64_t end = llmp_test_now_ms() + 60000;
		bool last = false;

		while (!last && llmp_test_now_ms() < end)
			if (wait_tag(brx, 0x11, &v, 1000))
				last = !strcmp((const char *)v.buf, "n2999");
		EXPECT_TRUE(last) TH_LOG("log:\n%s", nlog);
	}
	fprintf(stderr, "# outages: %llu reconnects, %llu time(s) out of the history, %llu page(s) lost\n",
		(unsigned long long)st.reconnects, (unsigned long long)st.lost,
		(unsigned long long)st.lost_pages);
	llmp_client_free(brx);
	llmp_client_free(arx);
	llmp_client_free(atx);
	llmp_node_fini(&b);
}

#ifdef LLMP_HAVE_NATS
#include <nats/nats.h>

/* The bridge's durable consumer as the server sees it (libnats): 0, or -1. */
static int consumer_info(uint16_t port, uint64_t origin, int64_t *ack_pending,
			 uint64_t *redelivered, uint64_t *pending)
{
	char url[64], durable[32];
	natsConnection *nc = NULL;
	jsCtx *js = NULL;
	jsConsumerInfo *ci = NULL;
	jsErrCode jerr = 0;
	int ret = -1;

	snprintf(durable, sizeof(durable), "b%016llx", (unsigned long long)origin);
	if (natsConnection_ConnectTo(&nc, nt_url(port, url, sizeof(url))) == NATS_OK &&
	    natsConnection_JetStream(&js, nc, NULL) == NATS_OK &&
	    js_GetConsumerInfo(&ci, js, "LLMP_" CAMPAIGN, durable, NULL, &jerr) == NATS_OK) {
		*ack_pending = ci->NumAckPending;
		*redelivered = ci->NumRedelivered;
		*pending = ci->NumPending;
		ret = 0;
	}
	jsConsumerInfo_Destroy(ci);
	jsCtx_Destroy(js);
	natsConnection_Destroy(nc);
	return ret;
}

/*
 * JetStream: poison messages (malformed, lying, reserved tags) published
 * into the stream are dropped, counted, and acknowledged: the durable
 * consumer has nothing waiting for an acknowledgement and has redelivered
 * nothing (an unacknowledged one would come again after the 30 s AckWait,
 * again and again).
 */
TEST_F_TIMEOUT(one, jetstream_poison_is_acknowledged, 90)
{
	const unsigned nbad = sizeof(bad_msgs) / sizeof(bad_msgs[0]);
	struct llmp_client_opts o = { .struct_size = sizeof(o), .send_timeout_ms = 10000 };
	struct llmp_nats_stats st;
	struct llmp_client *c;
	struct llmp_msg_view v;
	int64_t ack_pending = -1;
	uint64_t redelivered = 1, pending = 1;
	char url[64], state[64];
	int fd, i;

	if (!self->ok)
		SKIP(return, "no setup (see its reason)");
	snprintf(state, sizeof(state), "/tmp/llmp-nats-poison-%d", (int)getpid());
	unlink(state);
	ASSERT_EQ(0, nt_server_start(&self->s, llmp_test_free_port(), true, NULL));
	ONE_BROKER(nt_url(self->s.port, url, sizeof(url)), true, state, false, NULL);
	ASSERT_EQ(0, llmp_node_start(&self->n));
	ASSERT_EQ(0, llmp_client_connect_tcp(self->n.cp, NULL, self->n.port, &o, &c));
	fd = nt_raw_connect(self->s.port);
	ASSERT_LE(0, fd);
	/* honest messages (new sequence numbers) until one is through: the consumer is up */
	for (i = 1; i < 100; i++) {
		char hdrs[512];

		snprintf(hdrs, sizeof(hdrs), HDRS_SEQ("00000020", "2", "%d"), i);
		ASSERT_EQ(0, nt_raw_hpub(fd, "llmp." CAMPAIGN ".00000020", hdrs, "hi", 2));
		if (wait_tag(c, 0x20, &v, 200))
			break;
	}
	ASSERT_GT(100, i) TH_LOG("log:\n%s", nlog);
	for (unsigned k = 0; k < nbad; k++)
		ASSERT_EQ(0, nt_raw_hpub(fd, bad_msgs[k].subject, bad_msgs[k].hdrs, bad_msgs[k].data,
					 strlen(bad_msgs[k].data)));
	ASSERT_EQ(0, nt_raw_hpub(fd, "llmp." CAMPAIGN ".00000010", HDRS_SEQ("00000010", "5", "1000"),
				 "after", 5));
	ASSERT_EQ(1, wait_tag(c, 0x10, &v, 10000)) TH_LOG("log:\n%s", nlog);
	ASSERT_EQ(0, memcmp(v.buf, "after", 5));
	llmp_nats_stats(self->br, &st);
	EXPECT_EQ(nbad, st.bad) TH_LOG("log:\n%s", nlog);
	/* every message acknowledged, the poison too, within a few seconds */
	for (i = 0; i < 100; i++) {
		ASSERT_EQ(0, consumer_info(self->s.port, st.origin, &ack_pending, &redelivered, &pending));
		if (!ack_pending && !pending)
			break;
		usleep(50000);
	}
	EXPECT_EQ(0, ack_pending);
	EXPECT_EQ(0, pending);
	EXPECT_EQ(0, redelivered);
	close(fd);
	llmp_client_free(c);
	unlink(state);
}
#endif

TEST_HARNESS_MAIN
