// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * The broker's TCP side: the postcard codec against frames captured from
 * LibAFL (reference/vectors/README.md), malformed input, and (below) TCP
 * registration through a live listener.  Broker-to-broker links are in
 * b2b_test.c.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <linux/futex.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "kselftest_harness.h"
#include "llmp_test.h"
#include "llmp/broker.h"

/* Decode a hex string (spaces ignored) into out; returns the byte count. */
static size_t unhex(const char *s, uint8_t *out, size_t cap)
{
	size_t n = 0;
	int hi = -1;

	for (; *s; s++) {
		int v;

		if (*s == ' ')
			continue;
		v = (*s >= '0' && *s <= '9') ? *s - '0' : (*s | 0x20) - 'a' + 10;
		if (hi < 0) {
			hi = v;
		} else {
			if (n < cap)
				out[n] = (uint8_t)(hi << 4 | v);
			n++;
			hi = -1;
		}
	}
	return n;
}

/* The three frames of one LibAFL registration, as captured. */
static const char *const hello_hex =
	"00000022 00 808040 3439313532380000000000000000000000000000 09 706565722d686f7374";
static const char *const client_hello_hex =
	"00000018 00 808040 3439313533300000000000000000000000000000";
static const char *const accepted_hex = "00000002 01 01";

static void id_of(uint8_t id[LLMP_SHMEM_ID_LEN], const char *s)
{
	memset(id, 0, LLMP_SHMEM_ID_LEN);
	memcpy(id, s, strlen(s));
}

TEST(vector_broker_connect_hello)
{
	uint8_t f[64], enc[64], id[LLMP_SHMEM_ID_LEN];
	size_t n = unhex(hello_hex, f, sizeof(f));
	struct llmp_wire_msg m;
	uint32_t len;

	ASSERT_EQ(38, n);
	ASSERT_EQ(0, llmp_wire_get_len(f, LLMP_TCP_MAX_FRAME, &len));
	ASSERT_EQ(0x22, len);
	ASSERT_EQ(0, llmp_wire_decode_resp(f + 4, len, &m));
	ASSERT_EQ(LLMP_TCP_RESP_BROKER_CONNECT_HELLO, m.type);
	ASSERT_EQ(1048576, m.desc.size);
	id_of(id, "491528");
	ASSERT_EQ(0, memcmp(id, m.desc.id, sizeof(id)));
	ASSERT_EQ(9, m.text_len);
	ASSERT_EQ(0, memcmp("peer-host", m.text, 9));

	/* Ours encodes to the same bytes. */
	struct llmp_wire_msg o = { .type = LLMP_TCP_RESP_BROKER_CONNECT_HELLO,
				   .desc.size = 1048576, .text = "peer-host", .text_len = 9 };
	id_of(o.desc.id, "491528");
	int e = llmp_wire_encode_resp(&o, enc + 4, sizeof(enc) - 4);
	ASSERT_EQ(0x22, e);
	llmp_wire_put_len(enc, (uint32_t)e);
	ASSERT_EQ(0, memcmp(f, enc, n));

	/* The local description it names (the kind comes from our provider). */
	struct llmp_shmem_desc d;
	ASSERT_EQ(0, llmp_wire_desc_to_shmem(&m.desc, LLMP_SHMEM_SYSV, &d));
	ASSERT_STREQ("491528", d.id);
	ASSERT_EQ(1048576, d.size);
	struct llmp_wire_desc w;
	llmp_wire_desc_from_shmem(&d, &w);
	ASSERT_EQ(0, memcmp(&w.id, m.desc.id, sizeof(w.id)));
	ASSERT_EQ(m.desc.size, w.size);
}

TEST(vector_local_client_hello)
{
	uint8_t f[64], enc[64], id[LLMP_SHMEM_ID_LEN];
	size_t n = unhex(client_hello_hex, f, sizeof(f));
	struct llmp_wire_msg m;
	uint32_t len;

	ASSERT_EQ(28, n);
	ASSERT_EQ(0, llmp_wire_get_len(f, LLMP_TCP_MAX_REQUEST, &len));
	ASSERT_EQ(0x18, len);
	ASSERT_EQ(0, llmp_wire_decode_req(f + 4, len, &m));
	ASSERT_EQ(LLMP_TCP_REQ_LOCAL_CLIENT_HELLO, m.type);
	ASSERT_EQ(1048576, m.desc.size);
	id_of(id, "491530");
	ASSERT_EQ(0, memcmp(id, m.desc.id, sizeof(id)));

	struct llmp_wire_msg o = { .type = LLMP_TCP_REQ_LOCAL_CLIENT_HELLO, .desc.size = 1 << 20 };
	id_of(o.desc.id, "491530");
	int e = llmp_wire_encode_req(&o, enc + 4, sizeof(enc) - 4);
	ASSERT_EQ(0x18, e);
	llmp_wire_put_len(enc, (uint32_t)e);
	ASSERT_EQ(0, memcmp(f, enc, n));
	/* A request is not a response: variant 0 there needs a hostname too. */
	ASSERT_EQ(-EBADMSG, llmp_wire_decode_resp(f + 4, len, &m));
}

TEST(vector_local_client_accepted)
{
	uint8_t f[16], enc[16];
	size_t n = unhex(accepted_hex, f, sizeof(f));
	struct llmp_wire_msg m;
	uint32_t len;

	ASSERT_EQ(6, n);
	ASSERT_EQ(0, llmp_wire_get_len(f, LLMP_TCP_MAX_FRAME, &len));
	ASSERT_EQ(2, len);
	ASSERT_EQ(0, llmp_wire_decode_resp(f + 4, len, &m));
	ASSERT_EQ(LLMP_TCP_RESP_LOCAL_CLIENT_ACCEPTED, m.type);
	ASSERT_EQ(1, m.id);

	struct llmp_wire_msg o = { .type = LLMP_TCP_RESP_LOCAL_CLIENT_ACCEPTED, .id = 1 };
	int e = llmp_wire_encode_resp(&o, enc + 4, sizeof(enc) - 4);
	ASSERT_EQ(2, e);
	llmp_wire_put_len(enc, (uint32_t)e);
	ASSERT_EQ(0, memcmp(f, enc, n));
}

/* Every request and response variant survives a round trip byte for byte. */
TEST(round_trip_all_variants)
{
	const struct llmp_wire_msg reqs[] = {
		{ .type = LLMP_TCP_REQ_LOCAL_CLIENT_HELLO, .desc = { .size = 0xffffffffffffffffULL } },
		{ .type = LLMP_TCP_REQ_REMOTE_BROKER_HELLO, .text = "h\xc3\xa9st", .text_len = 5 },
		{ .type = LLMP_TCP_REQ_REMOTE_BROKER_HELLO, .text = "", .text_len = 0 },
		{ .type = LLMP_TCP_REQ_CLIENT_QUIT, .id = 0xffffffffu },
		{ .type = LLMP_TCP_REQ_CLIENT_QUIT, .id = 127 },
	};
	const struct llmp_wire_msg resps[] = {
		{ .type = LLMP_TCP_RESP_BROKER_CONNECT_HELLO, .desc = { .size = 128 }, .text = "x", .text_len = 1 },
		{ .type = LLMP_TCP_RESP_LOCAL_CLIENT_ACCEPTED, .id = 128 },
		{ .type = LLMP_TCP_RESP_REMOTE_BROKER_ACCEPTED, .id = 16384 },
		{ .type = LLMP_TCP_RESP_ERROR, .text = "no", .text_len = 2 },
	};
	uint8_t buf[64], buf2[64];
	struct llmp_wire_msg m;

	for (size_t i = 0; i < sizeof(reqs) / sizeof(reqs[0]); i++) {
		int n = llmp_wire_encode_req(&reqs[i], buf, sizeof(buf));

		ASSERT_GT(n, 0);
		ASSERT_EQ(0, llmp_wire_decode_req(buf, n, &m));
		ASSERT_EQ(reqs[i].type, m.type);
		ASSERT_EQ(reqs[i].id, m.id);
		ASSERT_EQ(reqs[i].desc.size, m.desc.size);
		ASSERT_EQ(reqs[i].text_len, m.text_len);
		ASSERT_EQ(n, llmp_wire_encode_req(&m, buf2, sizeof(buf2)));
		ASSERT_EQ(0, memcmp(buf, buf2, n));
		/* Every strict prefix is truncated, so malformed. */
		for (int k = 0; k < n; k++)
			ASSERT_EQ(-EBADMSG, llmp_wire_decode_req(buf, k, &m));
		/* One trailing byte is rejected. */
		buf[n] = 0;
		ASSERT_EQ(-EBADMSG, llmp_wire_decode_req(buf, n + 1, &m));
		/* Too small a buffer says so. */
		ASSERT_EQ(-ENOSPC, llmp_wire_encode_req(&reqs[i], buf, n - 1));
	}
	for (size_t i = 0; i < sizeof(resps) / sizeof(resps[0]); i++) {
		int n = llmp_wire_encode_resp(&resps[i], buf, sizeof(buf));

		ASSERT_GT(n, 0);
		ASSERT_EQ(0, llmp_wire_decode_resp(buf, n, &m));
		ASSERT_EQ(resps[i].type, m.type);
		ASSERT_EQ(resps[i].id, m.id);
		ASSERT_EQ(resps[i].text_len, m.text_len);
		ASSERT_EQ(n, llmp_wire_encode_resp(&m, buf2, sizeof(buf2)));
		ASSERT_EQ(0, memcmp(buf, buf2, n));
		for (int k = 0; k < n; k++)
			ASSERT_EQ(-EBADMSG, llmp_wire_decode_resp(buf, k, &m));
	}
	/* Varint sizes: 127 is one byte, 128 two (80 01), 16384 three (80 80 01). */
	ASSERT_EQ(3, llmp_wire_encode_resp(&resps[1], buf, sizeof(buf)));
	ASSERT_EQ(0x80, buf[1]);
	ASSERT_EQ(0x01, buf[2]);
	ASSERT_EQ(4, llmp_wire_encode_resp(&resps[2], buf, sizeof(buf)));
	ASSERT_EQ(0x02, buf[0]);
	ASSERT_EQ(0x80, buf[1]);
	ASSERT_EQ(0x80, buf[2]);
	ASSERT_EQ(0x01, buf[3]);
	struct llmp_wire_msg bad = { .type = 7 };
	ASSERT_EQ(-EINVAL, llmp_wire_encode_req(&bad, buf, sizeof(buf)));
	ASSERT_EQ(-EINVAL, llmp_wire_encode_resp(&bad, buf, sizeof(buf)));
}

/* Hand-made malformed bodies: each one is refused. */
TEST(decode_rejects_malformed)
{
	static const char *const bad_reqs[] = {
		"",                      /* empty */
		"03",                    /* unknown variant */
		"8000",                  /* overlong variant index */
		"80",                    /* truncated varint */
		"02 8080808010",         /* u32 id with bit 32 set */
		"02 ffffffff8f",         /* continuation on the 5th byte */
		"02 8100",               /* overlong id (trailing zero byte) */
		"01 05 6869",            /* hostname longer than the body */
		"01 02 c328",            /* invalid UTF-8 */
		"01 03 eda080",          /* UTF-16 surrogate */
		"01 02 c0af",            /* overlong UTF-8 */
		"00 808040 34",          /* id cut short */
		"00 ffffffffffffffffff02 3439313533300000000000000000000000000000", /* size > u64 */
		"02 01 00",              /* trailing byte */
	};
	static const char *const bad_b2b[] = {
		"01 02 03",               /* no payload length */
		"01 02 03 05 00",         /* payload shorter than its length */
		"01 02 03 00 00",         /* trailing byte */
		"01 02 03 8000",          /* overlong length */
	};
	uint8_t b[64];
	struct llmp_wire_msg m;
	struct llmp_wire_b2b x;

	for (size_t i = 0; i < sizeof(bad_reqs) / sizeof(bad_reqs[0]); i++) {
		size_t n = unhex(bad_reqs[i], b, sizeof(b));

		EXPECT_EQ(-EBADMSG, llmp_wire_decode_req(b, n, &m)) TH_LOG("request %s", bad_reqs[i]);
	}
	for (size_t i = 0; i < sizeof(bad_b2b) / sizeof(bad_b2b[0]); i++) {
		size_t n = unhex(bad_b2b[i], b, sizeof(b));

		EXPECT_EQ(-EBADMSG, llmp_wire_decode_b2b(b, n, &x)) TH_LOG("b2b %s", bad_b2b[i]);
	}
	ASSERT_NE(NULL, strstr(llmp_strerror_last(), "malformed"));
	/* The largest legal u32 and u64 varints are accepted. */
	ASSERT_EQ(6, unhex("02 ffffffff0f", b, sizeof(b)));
	ASSERT_EQ(0, llmp_wire_decode_req(b, 6, &m));
	ASSERT_EQ(0xffffffffu, m.id);
	/* Length prefix: the cap is enforced. */
	uint32_t len;
	llmp_wire_put_len(b, LLMP_TCP_MAX_FRAME + 1);
	ASSERT_EQ(-EMSGSIZE, llmp_wire_get_len(b, LLMP_TCP_MAX_FRAME, &len));
	llmp_wire_put_len(b, LLMP_TCP_MAX_FRAME);
	ASSERT_EQ(0, llmp_wire_get_len(b, LLMP_TCP_MAX_FRAME, &len));
	ASSERT_EQ(LLMP_TCP_MAX_FRAME, len);
	ASSERT_EQ(0x08, b[0]);
}

TEST(b2b_message_round_trip)
{
	uint8_t payload[300], buf[400];
	struct llmp_wire_b2b m = { .client_id = 5, .tag = 0x51300321, .flags = LLMP_FLAG_FROM_B2B,
				   .buf = payload, .len = sizeof(payload) };
	struct llmp_wire_b2b back;
	uint64_t seed = 7;

	for (size_t i = 0; i < sizeof(payload); i++)
		payload[i] = (uint8_t)llmp_test_rand(&seed);
	int n = llmp_wire_encode_b2b(&m, buf, sizeof(buf));
	/* 05 | a1 86 c0 89 05 | 02 | ac 02 | payload */
	ASSERT_EQ(1 + 5 + 1 + 2 + 300, n);
	ASSERT_EQ(0x05, buf[0]);
	ASSERT_EQ(0xa1, buf[1]);
	ASSERT_EQ(0x86, buf[2]);
	ASSERT_EQ(0xc0, buf[3]);
	ASSERT_EQ(0x89, buf[4]);
	ASSERT_EQ(0x05, buf[5]);
	ASSERT_EQ(0x02, buf[6]);
	ASSERT_EQ(0xac, buf[7]);
	ASSERT_EQ(0x02, buf[8]);
	ASSERT_EQ(9, llmp_wire_encode_b2b_head(&m, buf + 320, 16));
	ASSERT_EQ(0, memcmp(buf, buf + 320, 9));
	ASSERT_EQ(0, llmp_wire_decode_b2b(buf, n, &back));
	ASSERT_EQ(5, back.client_id);
	ASSERT_EQ(0x51300321, back.tag);
	ASSERT_EQ(LLMP_FLAG_FROM_B2B, back.flags);
	ASSERT_EQ(300, back.len);
	ASSERT_EQ(llmp_test_fnv(payload, 300), llmp_test_fnv(back.buf, back.len));
	ASSERT_EQ(-ENOSPC, llmp_wire_encode_b2b(&m, buf, 100));
}

/* ---- TCP registration through a live listener ------------------------------ */

/* Dropped-peer reasons logged by the listener. */
static char drop_log[4096];
static pthread_mutex_t drop_lock = PTHREAD_MUTEX_INITIALIZER;

static void log_cb(void *ctx, enum llmp_log_level level, const char *msg)
{
	(void)ctx;
	(void)level;
	if (!strstr(msg, "tcp:"))
		return;
	pthread_mutex_lock(&drop_lock);
	if (strlen(drop_log) + strlen(msg) + 2 < sizeof(drop_log)) {
		strcat(drop_log, msg);
		strcat(drop_log, "\n");
	}
	pthread_mutex_unlock(&drop_lock);
}

FIXTURE(reg)
{
	enum llmp_shmem_kind kind;
	struct llmp_provider *p;
	struct llmp_broker *b;
	struct llmp_tcp_listener *l;
	uint16_t port;
};

FIXTURE_SETUP(reg)
{
	self->p = NULL;
	self->b = NULL;
	self->l = NULL;
	if (llmp_test_named_kind(&self->kind) < 0)
		SKIP(return, "neither POSIX nor System V shared memory works here");
	drop_log[0] = 0;
	llmp_set_log(log_cb, NULL, LLMP_LOG_INFO);
	ASSERT_EQ(0, llmp_provider_new(self->kind, &self->p));
	struct llmp_broker_opts bo = { .struct_size = sizeof(bo), .page_size = 1 << 18 };
	ASSERT_EQ(0, llmp_broker_new(self->p, &bo, &self->b));
	struct llmp_tcp_listener_opts lo = { .struct_size = sizeof(lo), .peer_timeout_ms = 3000,
					     .hostname = "llmp-test" };
	ASSERT_EQ(0, llmp_tcp_listen(self->b, "127.0.0.1", 0, &lo, &self->l));
	self->port = llmp_tcp_listener_port(self->l);
	ASSERT_NE(0, self->port);
}

FIXTURE_TEARDOWN(reg)
{
	llmp_tcp_listener_free(self->l);
	if (self->b)
		llmp_broker_free(self->b);
	if (self->p)
		llmp_provider_free(self->p);
	llmp_set_log(NULL, NULL, LLMP_LOG_WARN);
}

/* Run the broker's side for a while: listener + one forwarding pass per round. */
static int serve_ms(struct llmp_tcp_listener *l, struct llmp_broker *b, int ms)
{
	int64_t end = llmp_test_now_ms() + ms;
	int ret = 0;

	do {
		ret = llmp_tcp_listener_service(l);
		if (ret < 0)
			return ret;
		ret = llmp_broker_once(b);
		if (ret < 0)
			return ret;
		usleep(500);
	} while (llmp_test_now_ms() < end);
	return 0;
}

/* Read exactly n bytes, serving the listener while waiting. */
static int read_served(struct llmp_tcp_listener *l, struct llmp_broker *b, int fd, void *buf,
		       size_t n)
{
	int64_t end = llmp_test_now_ms() + 5000;
	size_t got = 0;

	while (got < n && llmp_test_now_ms() < end) {
		struct pollfd pf = { .fd = fd, .events = POLLIN };
		ssize_t r;

		llmp_tcp_listener_service(l);
		llmp_broker_once(b);
		if (poll(&pf, 1, 1) <= 0)
			continue;
		r = recv(fd, (char *)buf + got, n - got, 0);
		if (r <= 0)
			return -1;
		got += (size_t)r;
	}
	return got == n ? 0 : -1;
}

/* A peer speaking the raw LibAFL bytes registers and gets exactly `00000002 01 01`. */
TEST_F(reg, libafl_wire_registration)
{
	uint8_t buf[256], req[64];
	struct llmp_shmem_desc bd, od;
	struct llmp_wire_msg m;
	struct llmp_client *c;
	uint32_t len;
	int fd = llmp_test_tcp_dial(self->port);

	ASSERT_LE(0, fd);
	ASSERT_EQ(0, read_served(self->l, self->b, fd, buf, 4));
	ASSERT_EQ(0, llmp_wire_get_len(buf, sizeof(buf), &len));
	ASSERT_EQ(0, read_served(self->l, self->b, fd, buf, len));
	ASSERT_EQ(0, llmp_wire_decode_resp(buf, len, &m));
	ASSERT_EQ(LLMP_TCP_RESP_BROKER_CONNECT_HELLO, m.type);
	ASSERT_EQ(9, m.text_len);
	ASSERT_EQ(0, memcmp("llmp-test", m.text, 9));
	ASSERT_EQ(0, llmp_broker_broadcast_desc(self->b, &bd));
	ASSERT_EQ(bd.size, m.desc.size);
	ASSERT_EQ(0, memcmp(bd.id, m.desc.id, LLMP_SHMEM_ID_LEN));

	/* A client page to announce, sent as the exact frame LibAFL sends. */
	ASSERT_EQ(0, llmp_client_new(self->p, &bd, NULL, &c));
	ASSERT_EQ(0, llmp_client_out_desc(c, &od));
	struct llmp_wire_msg h = { .type = LLMP_TCP_REQ_LOCAL_CLIENT_HELLO };
	llmp_wire_desc_from_shmem(&od, &h.desc);
	int n = llmp_wire_encode_req(&h, req + 4, sizeof(req) - 4);
	ASSERT_GT(n, 0);
	llmp_wire_put_len(req, (uint32_t)n);
	ASSERT_EQ(4 + n, send(fd, req, 4 + (size_t)n, 0));
	ASSERT_EQ(0, read_served(self->l, self->b, fd, buf, 6));
	const uint8_t want[6] = { 0, 0, 0, 2, 1, 1 };
	ASSERT_EQ(0, memcmp(want, buf, 6));
	ASSERT_EQ(0, recv(fd, buf, 1, 0)); /* the broker closes after answering */
	close(fd);
	ASSERT_EQ(1, llmp_broker_nclients(self->b));

	struct llmp_tcp_stats st;
	llmp_tcp_listener_stats(self->l, &st);
	ASSERT_EQ(1, st.accepted);
	ASSERT_EQ(1, st.registered);
	ASSERT_EQ(0, st.dropped);
	llmp_client_free(c);
}

struct conn_arg {
	struct llmp_provider *p;
	uint16_t port;
	int ret;
	uint32_t id;
	const char *msg;
	atomic_int done;
};

static void *connect_thread(void *v)
{
	struct conn_arg *a = v;
	struct llmp_client *c = NULL;

	a->ret = llmp_client_connect_tcp(a->p, "127.0.0.1", a->port, NULL, &c);
	if (a->ret == 0) {
		a->id = llmp_client_id(c);
		if (a->msg)
			a->ret = llmp_client_send(c, 0x51300321, 0, a->msg, strlen(a->msg));
		llmp_client_free(c);
	}
	/* Pairs with the acquire load in serve_until_done(). */
	atomic_store_explicit(&a->done, 1, memory_order_release);
	return NULL;
}

static int serve_until_done(struct llmp_tcp_listener *l, struct llmp_broker *b, atomic_int *done,
			    int ms)
{
	int64_t end = llmp_test_now_ms() + ms;

	/* Pairs with the release store at the end of the thread. */
	while (!atomic_load_explicit(done, memory_order_acquire)) {
		if (llmp_test_now_ms() > end)
			return -ETIMEDOUT;
		if (serve_ms(l, b, 1) < 0)
			return -EIO;
	}
	return 0;
}

struct quit_arg {
	uint16_t port;
	uint32_t id;
	int ret;
	atomic_int done;
};

static void *quit_thread(void *v)
{
	struct quit_arg *a = v;

	a->ret = llmp_tcp_client_quit("127.0.0.1", a->port, a->id);
	/* Pairs with the acquire load in serve_until_done(). */
	atomic_store_explicit(&a->done, 1, memory_order_release);
	return NULL;
}

/* Our client connects, its message reaches the broadcast page; ClientQuit removes a client. */
TEST_F(reg, connect_send_and_quit)
{
	struct conn_arg a = { .p = self->p, .port = self->port, .msg = "ping over tcp" };
	struct llmp_shmem_desc bd;
	struct llmp_client *reader;
	struct llmp_msg_view v;
	pthread_t t;
	int got = 0;

	ASSERT_EQ(0, pthread_create(&t, NULL, connect_thread, &a));
	ASSERT_EQ(0, serve_until_done(self->l, self->b, &a.done, 10000));
	pthread_join(t, NULL);
	ASSERT_EQ(0, a.ret) TH_LOG("%s", llmp_strerror_last());
	ASSERT_EQ(1, a.id);
	ASSERT_EQ(0, serve_ms(self->l, self->b, 20));
	/* Its message is on the broadcast page with its id as sender. */
	ASSERT_EQ(0, llmp_broker_broadcast_desc(self->b, &bd));
	ASSERT_EQ(0, llmp_client_new(self->p, &bd, NULL, &reader));
	while (llmp_client_recv(reader, &v) == 1) {
		if (v.tag != 0x51300321)
			continue;
		ASSERT_EQ(1, v.sender);
		ASSERT_EQ(strlen(a.msg), v.len);
		ASSERT_EQ(0, memcmp(a.msg, v.buf, v.len));
		got++;
	}
	ASSERT_EQ(1, got);

	/* A second client, then its ClientQuit over TCP. */
	struct llmp_shmem_desc od;
	ASSERT_EQ(0, llmp_client_out_desc(reader, &od));
	int id = llmp_broker_add_client(self->b, &od);
	ASSERT_EQ(2, id);
	unsigned before = llmp_broker_nclients(self->b);
	struct quit_arg q = { .port = self->port, .id = (uint32_t)id };
	ASSERT_EQ(0, pthread_create(&t, NULL, quit_thread, &q));
	ASSERT_EQ(0, serve_until_done(self->l, self->b, &q.done, 10000));
	pthread_join(t, NULL);
	ASSERT_EQ(0, q.ret);
	ASSERT_EQ(before - 1, llmp_broker_nclients(self->b));
	/* Quitting an unknown id is logged, nothing else happens. */
	q = (struct quit_arg){ .port = self->port, .id = 999 };
	ASSERT_EQ(0, pthread_create(&t, NULL, quit_thread, &q));
	ASSERT_EQ(0, serve_until_done(self->l, self->b, &q.done, 10000));
	pthread_join(t, NULL);
	ASSERT_EQ(before - 1, llmp_broker_nclients(self->b));
	struct llmp_tcp_stats st;
	llmp_tcp_listener_stats(self->l, &st);
	ASSERT_EQ(2, st.quits);
	ASSERT_EQ(1, st.registered);
	ASSERT_NE(NULL, strstr(drop_log, "quit of client 999"));
	llmp_client_free(reader);
}

/* A RemoteBrokerHello gets LibAFL's Error response (no B2B here) and nothing breaks. */
TEST_F(reg, remote_broker_hello_refused)
{
	uint8_t buf[256], req[64];
	struct llmp_wire_msg m, r = { .type = LLMP_TCP_REQ_REMOTE_BROKER_HELLO, .text = "far",
				      .text_len = 3 };
	uint32_t len;
	int fd = llmp_test_tcp_dial(self->port);

	ASSERT_LE(0, fd);
	ASSERT_EQ(0, read_served(self->l, self->b, fd, buf, 4));
	ASSERT_EQ(0, llmp_wire_get_len(buf, sizeof(buf), &len));
	ASSERT_EQ(0, read_served(self->l, self->b, fd, buf, len));
	int n = llmp_wire_encode_req(&r, req + 4, sizeof(req) - 4);
	llmp_wire_put_len(req, (uint32_t)n);
	ASSERT_EQ(4 + n, send(fd, req, 4 + (size_t)n, 0));
	ASSERT_EQ(0, read_served(self->l, self->b, fd, buf, 4));
	ASSERT_EQ(0, llmp_wire_get_len(buf, sizeof(buf), &len));
	ASSERT_EQ(0, read_served(self->l, self->b, fd, buf, len));
	ASSERT_EQ(0, llmp_wire_decode_resp(buf, len, &m));
	ASSERT_EQ(LLMP_TCP_RESP_ERROR, m.type);
	ASSERT_NE(NULL, memmem(m.text, m.text_len, "not enabled", 11));
	close(fd);
	struct llmp_tcp_stats st;
	llmp_tcp_listener_stats(self->l, &st);
	ASSERT_EQ(1, st.refused);
	ASSERT_EQ(0, llmp_broker_nclients(self->b));
}

struct waker_arg {
	struct llmp_provider *p;
	uint16_t port;
	int ret;
	atomic_int done;
};

static void *waker_thread(void *v)
{
	struct waker_arg *a = v;
	struct llmp_waker *w = NULL;

	a->ret = llmp_waker_connect_tcp(a->p, "127.0.0.1", a->port, &w);
	llmp_waker_free(w);
	/* Pairs with the acquire load in serve_until_done(). */
	atomic_store_explicit(&a->done, 1, memory_order_release);
	return NULL;
}

/* Our EXT_QUERY to a listener outside an event loop: Error, and the waker says so. */
TEST_F(reg, ext_query_without_loop)
{
	struct waker_arg a = { .p = self->p, .port = self->port };
	pthread_t t;

	ASSERT_EQ(0, pthread_create(&t, NULL, waker_thread, &a));
	ASSERT_EQ(0, serve_until_done(self->l, self->b, &a.done, 10000));
	pthread_join(t, NULL);
	ASSERT_EQ(-EOPNOTSUPP, a.ret);
	struct llmp_tcp_stats st;
	llmp_tcp_listener_stats(self->l, &st);
	ASSERT_EQ(1, st.refused);
	ASSERT_EQ(0, st.dropped);
	/* The wire form of the query: variant 0x4C4C, no fields. */
	struct llmp_wire_msg q = { .type = LLMP_TCP_REQ_EXT_QUERY }, m;
	uint8_t b[8];
	ASSERT_EQ(3, llmp_wire_encode_req(&q, b, sizeof(b)));
	ASSERT_EQ(0xcc, b[0]);
	ASSERT_EQ(0x98, b[1]);
	ASSERT_EQ(0x01, b[2]);
	ASSERT_EQ(0, llmp_wire_decode_req(b, 3, &m));
	ASSERT_EQ(LLMP_TCP_REQ_EXT_QUERY, m.type);
}

/*
 * Bad peers: silent, half a length, half a body, a huge length, garbage,
 * a malformed body, an early close.  A good client registers while the
 * silent ones are still connected; each bad one is dropped with a reason.
 */
TEST_F_TIMEOUT(reg, bad_peers_dropped_others_register, 60)
{
	static const struct {
		const char *what;
		const char *bytes; /* hex */
		bool at_once;       /* dropped without waiting for the timeout */
	} bad[] = {
		{ "silent", "", false },
		{ "half length", "0000", false },
		{ "half body", "00000018 00 8080", false },
		{ "huge length", "7fffffff", true },
		{ "garbage", "00000005 ffffffffff", true },
		{ "malformed body", "00000003 02 8080", true },
		{ "empty frame", "00000000", true },
	};
	enum { NBAD = sizeof(bad) / sizeof(bad[0]) };
	int fds[NBAD + 1];
	uint8_t raw[64];
	unsigned at_once = 0;

	for (unsigned i = 0; i < NBAD; i++) {
		size_t n = unhex(bad[i].bytes, raw, sizeof(raw));

		fds[i] = llmp_test_tcp_dial(self->port);
		ASSERT_LE(0, fds[i]);
		if (n)
			ASSERT_EQ((ssize_t)n, send(fds[i], raw, n, 0));
		at_once += bad[i].at_once;
	}
	/* A peer that connects and closes at once. */
	fds[NBAD] = llmp_test_tcp_dial(self->port);
	ASSERT_LE(0, fds[NBAD]);
	close(fds[NBAD]);
	at_once++;

	int64_t t0 = llmp_test_now_ms();
	struct conn_arg a = { .p = self->p, .port = self->port };
	pthread_t t;
	ASSERT_EQ(0, pthread_create(&t, NULL, connect_thread, &a));
	ASSERT_EQ(0, serve_until_done(self->l, self->b, &a.done, 20000));
	pthread_join(t, NULL);
	ASSERT_EQ(0, a.ret) TH_LOG("%s", llmp_strerror_last());
	int64_t took = llmp_test_now_ms() - t0;

	struct llmp_tcp_stats st;
	llmp_tcp_listener_stats(self->l, &st);
	ASSERT_EQ(1, st.registered);
	/* Registered while the slow ones were still pending (their deadline is 3 s). */
	ASSERT_LT(took, 3000);
	ASSERT_EQ(at_once, st.dropped) TH_LOG("log:\n%s", drop_log);

	/* After the deadline every bad peer is gone: each saw the hello, then EOF. */
	ASSERT_EQ(0, serve_ms(self->l, self->b, 3500));
	llmp_tcp_listener_stats(self->l, &st);
	ASSERT_EQ(NBAD + 1, st.dropped) TH_LOG("log:\n%s", drop_log);
	for (unsigned i = 0; i < NBAD; i++) {
		uint8_t buf[256];
		size_t got = 0;
		ssize_t r;

		while ((r = recv(fds[i], buf + got, sizeof(buf) - got, 0)) > 0)
			got += (size_t)r;
		/* huge length, garbage, ...: the hello arrived before the drop. */
		ASSERT_GE(got, 4) TH_LOG("%s", bad[i].what);
		ASSERT_EQ(0, buf[4]) TH_LOG("%s: not a BrokerConnectHello", bad[i].what);
		close(fds[i]);
	}
	ASSERT_NE(NULL, strstr(drop_log, "timed out inside a frame"));
	ASSERT_NE(NULL, strstr(drop_log, ": timed out"));
	ASSERT_NE(NULL, strstr(drop_log, "over the 4096-byte cap"));
	ASSERT_NE(NULL, strstr(drop_log, "unknown request variant"));
	ASSERT_NE(NULL, strstr(drop_log, "malformed request"));
	ASSERT_NE(NULL, strstr(drop_log, "closed without a request"));
}

/*
 * More handshakes than max_peers at once: the oldest unfinished one is
 * evicted for the newcomer (issue 8, finding 7: stalled peers must not
 * keep honest ones out).
 */
TEST_F(reg, max_peers_bound)
{
	struct llmp_tcp_listener *l2;
	struct llmp_tcp_listener_opts lo = { .struct_size = sizeof(lo), .max_peers = 2,
					     .peer_timeout_ms = 5000 };
	struct llmp_tcp_stats st;
	uint8_t buf[256];
	int fds[3];

	ASSERT_EQ(0, llmp_tcp_listen(self->b, NULL, 0, &lo, &l2));
	for (int i = 0; i < 3; i++) {
		fds[i] = llmp_test_tcp_dial(llmp_tcp_listener_port(l2));
		ASSERT_LE(0, fds[i]);
		ASSERT_EQ(0, serve_ms(l2, self->b, 20));
	}
	llmp_tcp_listener_stats(l2, &st);
	ASSERT_EQ(3, st.accepted);
	ASSERT_EQ(1, st.dropped);
	ASSERT_NE(NULL, strstr(drop_log, "evicted: handshake table full"));
	/* All three got the hello; the first was closed, the newer two are still open. */
	for (int i = 0; i < 3; i++)
		ASSERT_LT(4, recv(fds[i], buf, sizeof(buf), MSG_DONTWAIT));
	ASSERT_EQ(0, recv(fds[0], buf, sizeof(buf), 0));
	for (int i = 1; i < 3; i++) {
		ASSERT_EQ(-1, recv(fds[i], buf, sizeof(buf), MSG_DONTWAIT));
		ASSERT_EQ(EAGAIN, errno);
	}
	for (int i = 0; i < 3; i++)
		close(fds[i]);
	llmp_tcp_listener_free(l2);
}

/*
 * Out of file descriptors: accept() fails with EMFILE, the listener pauses
 * accepting (instead of spinning on a socket that stays readable) and takes
 * the queued connection once fds are back.
 */
TEST_F(reg, accept_pauses_when_out_of_fds)
{
	pid_t pid = fork();
	int st;

	ASSERT_LE(0, pid);
	if (pid == 0) {
		struct rlimit old, rl;
		struct llmp_tcp_stats ts;
		int fd, spare = open("/dev/null", O_RDONLY);

		/* The lowest free fd is the limit: every new fd fails. */
		if (spare < 0 || getrlimit(RLIMIT_NOFILE, &old))
			_exit(10);
		close(spare);
		rl = old;
		rl.rlim_cur = (rlim_t)spare;
		fd = llmp_test_tcp_dial(self->port); /* queued in the backlog */
		if (fd < 0 || setrlimit(RLIMIT_NOFILE, &rl))
			_exit(11);
		if (llmp_tcp_listener_service(self->l) != 0)
			_exit(12);
		llmp_tcp_listener_stats(self->l, &ts);
		if (ts.accept_pauses != 1 || ts.accepted != 0)
			_exit(13);
		/* Paused: more service calls do not even try. */
		llmp_tcp_listener_service(self->l);
		llmp_tcp_listener_stats(self->l, &ts);
		if (ts.accept_pauses != 1)
			_exit(14);
		if (setrlimit(RLIMIT_NOFILE, &old))
			_exit(15);
		usleep(150000);
		llmp_tcp_listener_service(self->l);
		llmp_tcp_listener_stats(self->l, &ts);
		if (ts.accepted != 1)
			_exit(16);
		_exit(strstr(drop_log, "no accepts for 100 ms") ? 0 : 17);
	}
	ASSERT_EQ(pid, waitpid(pid, &st, 0));
	ASSERT_TRUE(WIFEXITED(st));
	ASSERT_EQ(0, WEXITSTATUS(st));
}

/*
 * 64 client processes register over TCP at once; each sends one message and
 * must receive all 64 (its own included) through the broadcast page.
 */
#define NPROC 64
TEST_F_TIMEOUT(reg, sixty_four_client_processes, 120)
{
	pid_t pids[NPROC];
	bool seen_id[NPROC + 1] = { false };
	int reaped = 0;

	for (int i = 0; i < NPROC; i++) {
		pids[i] = fork();
		ASSERT_LE(0, pids[i]);
		if (pids[i] == 0) {
			struct llmp_provider *p;
			struct llmp_client *c;
			struct llmp_client_opts o = { .struct_size = sizeof(o), .page_size = 1 << 16,
						      .send_timeout_ms = 30000 };
			struct llmp_msg_view v;
			uint64_t have[2] = { 0, 0 };
			char msg[32];
			int n = 0;

			llmp_set_log(NULL, NULL, LLMP_LOG_WARN);
			if (llmp_provider_new(self->kind, &p) < 0)
				_exit(0);
			if (llmp_client_connect_tcp(p, "127.0.0.1", self->port, &o, &c) < 0)
				_exit(0);
			snprintf(msg, sizeof(msg), "proc %d", i);
			if (llmp_client_send(c, 0x51300321, 0, msg, strlen(msg)) < 0)
				_exit(0);
			while (n < NPROC && llmp_client_recv_wait(c, &v, 30000) == 1) {
				int k;

				if (v.tag != 0x51300321 || sscanf(v.buf, "proc %d", &k) != 1 ||
				    k < 0 || k >= NPROC || (have[k / 64] >> (k % 64) & 1))
					continue;
				have[k / 64] |= 1ull << (k % 64);
				n++;
			}
			int id = (int)llmp_client_id(c);
			llmp_client_free(c);
			llmp_provider_free(p);
			_exit(n == NPROC ? id : 0);
		}
	}
	int64_t end = llmp_test_now_ms() + 100000;
	while (reaped < NPROC && llmp_test_now_ms() < end) {
		int st;
		pid_t w;

		ASSERT_EQ(0, serve_ms(self->l, self->b, 2));
		while ((w = waitpid(-1, &st, WNOHANG)) > 0) {
			reaped++;
			ASSERT_TRUE(WIFEXITED(st));
			int id = WEXITSTATUS(st);
			ASSERT_GE(id, 1) TH_LOG("a client failed to register or to receive all messages");
			ASSERT_LE(id, NPROC);
			ASSERT_FALSE(seen_id[id]) TH_LOG("id %d handed out twice", id);
			seen_id[id] = true;
		}
	}
	ASSERT_EQ(NPROC, reaped);
	struct llmp_tcp_stats st;
	llmp_tcp_listener_stats(self->l, &st);
	ASSERT_EQ(NPROC, st.registered);
	ASSERT_EQ(0, st.dropped);
	/* Every client said EXITING: the broker lets them go. */
	ASSERT_EQ(0, serve_ms(self->l, self->b, 50));
	ASSERT_EQ(0, llmp_broker_nclients(self->b));
}

/* ---- the event loop ---------------------------------------------------------- */


FIXTURE(evloop)
{
	enum llmp_shmem_kind kind;
	struct llmp_provider *p, *cp; /* broker's, and the test's clients' */
	struct llmp_broker *b;
	struct llmp_tcp_listener *l;
	struct llmp_loop *lp;
	uint16_t port;
	pthread_t t;
	bool running;
	int run_ret;
	atomic_int run_done;
};

FIXTURE_VARIANT(evloop)
{
	enum llmp_loop_backend backend;
};

FIXTURE_VARIANT_ADD(evloop, uring) { .backend = LLMP_LOOP_URING };
FIXTURE_VARIANT_ADD(evloop, poll) { .backend = LLMP_LOOP_POLL };

static int evl_setup(struct _test_data_evloop *self, const struct _fixture_variant_evloop *variant,
		      int max_sleep_us, unsigned exit_after)
{
	struct llmp_broker_opts bo = { .struct_size = sizeof(bo), .page_size = 1 << 18 };
	struct llmp_tcp_listener_opts lo = { .struct_size = sizeof(lo) };
	struct llmp_loop_opts oo = { .struct_size = sizeof(oo), .backend = variant->backend,
				     .max_sleep_us = max_sleep_us, .exit_after = exit_after };
	int ret;

	if ((ret = llmp_broker_new(self->p, &bo, &self->b)) < 0 ||
	    (ret = llmp_tcp_listen(self->b, "127.0.0.1", 0, &lo, &self->l)) < 0)
		return ret;
	self->port = llmp_tcp_listener_port(self->l);
	ret = llmp_loop_new(self->b, &oo, &self->lp);
	if (ret < 0)
		return ret;
	return llmp_loop_add_listener(self->lp, self->l);
}

static void *evl_thread(void *v)
{
	struct _test_data_evloop *self = v;

	self->run_ret = llmp_loop_run(self->lp);
	/* Pairs with the acquire loads in the tests. */
	atomic_store_explicit(&self->run_done, 1, memory_order_release);
	return NULL;
}

static int evl_start(struct _test_data_evloop *self)
{
	if (pthread_create(&self->t, NULL, evl_thread, self))
		return -1;
	self->running = true;
	return 0;
}

/* Wait for the loop thread to return by itself (ms), 0 if it did. */
static int evl_wait(struct _test_data_evloop *self, int ms)
{
	int64_t end = llmp_test_now_ms() + ms;

	/* Pairs with the release store in evl_thread(). */
	while (!atomic_load_explicit(&self->run_done, memory_order_acquire)) {
		if (llmp_test_now_ms() > end)
			return -1;
		usleep(1000);
	}
	pthread_join(self->t, NULL);
	self->running = false;
	return 0;
}

FIXTURE_SETUP(evloop)
{
	self->p = self->cp = NULL;
	self->b = NULL;
	self->l = NULL;
	self->lp = NULL;
	self->running = false;
	atomic_init(&self->run_done, 0);
	if (llmp_test_named_kind(&self->kind) < 0)
		SKIP(return, "neither POSIX nor System V shared memory works here");
	ASSERT_EQ(0, llmp_provider_new(self->kind, &self->p));
	ASSERT_EQ(0, llmp_provider_new(self->kind, &self->cp));
}

FIXTURE_TEARDOWN(evloop)
{
	if (self->running) {
		llmp_loop_stop(self->lp);
		pthread_join(self->t, NULL);
	}
	llmp_loop_free(self->lp);
	llmp_tcp_listener_free(self->l);
	if (self->b)
		llmp_broker_free(self->b);
	if (self->cp)
		llmp_provider_free(self->cp);
	if (self->p)
		llmp_provider_free(self->p);
}

#define SETUP_OR_SKIP(max_sleep, exit_after)                                            \
	do {                                                                            \
		int r_ = evl_setup(self, variant, (max_sleep), (exit_after));           \
		if (r_ < 0 && variant->backend == LLMP_LOOP_URING)                       \
			SKIP(return, "io_uring unavailable: %s", llmp_strerror_last());   \
		ASSERT_EQ(0, r_);                                                        \
	} while (0)

/* Clients registered over TCP by the loop; 500 messages go through it intact. */
TEST_F(evloop, forwards_and_stops)
{
	struct llmp_client_opts o = { .struct_size = sizeof(o), .send_timeout_ms = 10000 };
	struct llmp_client *tx, *rx;
	struct llmp_msg_view v;
	uint64_t seed = 1, sum_tx = 0, sum_rx = 0;
	uint8_t buf[600];
	int got = 0;

	SETUP_OR_SKIP(0, 0);
	ASSERT_STREQ(variant->backend == LLMP_LOOP_URING ? "io_uring" : "poll",
		     llmp_loop_backend_name(self->lp));
	ASSERT_EQ(0, evl_start(self));
	ASSERT_EQ(0, llmp_client_connect_tcp(self->cp, NULL, self->port, &o, &tx));
	ASSERT_EQ(0, llmp_client_connect_tcp(self->cp, NULL, self->port, &o, &rx));
	ASSERT_NE(llmp_client_id(tx), llmp_client_id(rx));
	for (int i = 0; i < 500; i++) {
		size_t len = llmp_test_rand(&seed) % sizeof(buf);

		for (size_t k = 0; k < len; k++)
			buf[k] = (uint8_t)llmp_test_rand(&seed);
		sum_tx += llmp_test_fnv(buf, len);
		ASSERT_EQ(0, llmp_client_send(tx, 0x51300321, 0, buf, len));
		if (i % 50 == 0)
			usleep(2000); /* let the broker go idle and sleep now and then */
	}
	while (got < 500) {
		int r = llmp_client_recv_wait(rx, &v, 10000);

		ASSERT_EQ(1, r);
		if (v.tag != 0x51300321)
			continue;
		ASSERT_EQ(llmp_client_id(tx), v.sender);
		sum_rx += llmp_test_fnv(v.buf, v.len);
		got++;
	}
	ASSERT_EQ(sum_tx, sum_rx);
	llmp_client_free(tx);
	llmp_client_free(rx);
	llmp_loop_stop(self->lp);
	ASSERT_EQ(0, evl_wait(self, 5000));
	ASSERT_EQ(0, self->run_ret);
	struct llmp_loop_stats st;
	llmp_loop_stats(self->lp, &st);
	ASSERT_GE(st.forwarded, 500);
	ASSERT_EQ(2, st.tcp.registered);
	ASSERT_GT(st.sleeps, 0);
}

/*
 * A long idle sleep ends at once on llmp_loop_stop() (eventfd) and on a
 * poke of the sleep word (io_uring's futex op or the bridge thread).
 */
TEST_F(evloop, wakes_from_long_sleep)
{
	struct llmp_client_opts o = { .struct_size = sizeof(o), .send_timeout_ms = 10000 };
	struct llmp_client *tx, *rx;
	struct llmp_waker *w;
	struct llmp_msg_view v;
	struct llmp_loop_stats st;
	int64_t slowest = 0;
	int r;

	SETUP_OR_SKIP(3000000, 0); /* naps grow up to 3 s */
	ASSERT_EQ(0, evl_start(self));
	/* Clients that registered over TCP with our loop poke it on every send. */
	ASSERT_EQ(0, llmp_client_connect_tcp(self->cp, NULL, self->port, &o, &tx));
	ASSERT_EQ(0, llmp_client_connect_tcp(self->cp, NULL, self->port, &o, &rx));
	ASSERT_EQ(0, llmp_waker_connect_tcp(self->cp, NULL, self->port, &w))
		TH_LOG("%s", llmp_strerror_last());
	for (int round = 0; round < 3; round++) {
		char m[16];

		usleep(400000); /* idle: the naps are long by now */
		snprintf(m, sizeof(m), "wake %d", round);
		int64_t t0 = llmp_test_now_ms();
		ASSERT_EQ(0, llmp_client_send(tx, 0x51300321, 0, m, strlen(m)));
		/* The send already poked: a second poke finds the broker awake. */
		ASSERT_LE(0, llmp_waker_poke(w));
		while ((r = llmp_client_recv_wait(rx, &v, 10000)) == 1 && v.tag != 0x51300321)
			;
		ASSERT_EQ(1, r);
		ASSERT_EQ(strlen(m), v.len);
		ASSERT_EQ(0, memcmp(m, v.buf, v.len));
		if (llmp_test_now_ms() - t0 > slowest)
			slowest = llmp_test_now_ms() - t0;
	}
	/* A sleep that nobody wakes ends at once on stop (the eventfd). */
	usleep(300000);
	int64_t t1 = llmp_test_now_ms();
	llmp_loop_stop(self->lp);
	ASSERT_EQ(0, evl_wait(self, 5000));
	ASSERT_LT(llmp_test_now_ms() - t1, 1500) TH_LOG("stop did not interrupt the sleep");
	ASSERT_EQ(0, self->run_ret);
	llmp_loop_stats(self->lp, &st);
	ASSERT_GT(st.sleeps, 0);
	TH_LOG("wake-ups by pokes: %llu, slowest delivery %lld ms",
	       (unsigned long long)st.wakeups, (long long)slowest);
	/*
	 * Both backends watch the word (io_uring's futex op, or the bridge
	 * thread): each send flips it; the extra poke may flip it once more
	 * if the broker went back to sleep in between.
	 */
	TH_LOG("wake mode %s", llmp_loop_wake_name(self->lp));
	ASSERT_GE(st.wakeups, 3);
	ASSERT_LE(st.wakeups, 6);
	ASSERT_LT(slowest, 1000); /* woken, not left to its multi-second nap */
	llmp_waker_free(w);
	llmp_client_free(tx);
	llmp_client_free(rx);
}

/* exit_after: the loop returns by itself once that many clients came and went. */
TEST_F(evloop, exit_after_clients)
{
	struct llmp_client *c;

	SETUP_OR_SKIP(0, 2);
	ASSERT_EQ(0, evl_start(self));
	for (int i = 0; i < 2; i++) {
		ASSERT_EQ(0, llmp_client_connect_tcp(self->cp, NULL, self->port, NULL, &c));
		ASSERT_EQ(0, llmp_client_send(c, 0x51300321, 0, "bye", 3));
		llmp_client_free(c); /* EXITING */
		if (i == 0)
			ASSERT_EQ(-1, evl_wait(self, 200)); /* one is not enough */
	}
	ASSERT_EQ(0, evl_wait(self, 10000));
	ASSERT_EQ(0, self->run_ret);
}

/* SIGTERM to a process running the loop with handle_signals: clean return. */
TEST_F(evloop, sigterm_stops_cleanly)
{
	int pfd[2];
	uint16_t port = 0;
	pid_t pid;
	int st;

	if (variant->backend == LLMP_LOOP_URING) {
		struct llmp_loop *probe;
		struct llmp_loop_opts oo = { .struct_size = sizeof(oo), .backend = LLMP_LOOP_URING };

		ASSERT_EQ(0, llmp_broker_new(self->p, NULL, &self->b));
		if (llmp_loop_new(self->b, &oo, &probe) < 0)
			SKIP(return, "io_uring unavailable: %s", llmp_strerror_last());
		llmp_loop_free(probe);
	}
	ASSERT_EQ(0, pipe(pfd));
	pid = fork();
	ASSERT_LE(0, pid);
	if (pid == 0) {
		struct llmp_broker *b;
		struct llmp_tcp_listener *l;
		struct llmp_loop *lp;
		struct llmp_loop_opts oo = { .struct_size = sizeof(oo), .backend = variant->backend,
					     .handle_signals = true, .max_sleep_us = 2000000 };

		if (llmp_broker_new(self->p, NULL, &b) < 0 ||
		    llmp_tcp_listen(b, NULL, 0, NULL, &l) < 0 || llmp_loop_new(b, &oo, &lp) < 0 ||
		    llmp_loop_add_listener(lp, l) < 0)
			_exit(2);
		port = llmp_tcp_listener_port(l);
		if (write(pfd[1], &port, sizeof(port)) != sizeof(port))
			_exit(2);
		int r = llmp_loop_run(lp);
		llmp_loop_free(lp);
		llmp_tcp_listener_free(l);
		llmp_broker_free(b);
		_exit(r == 0 ? 0 : 3);
	}
	close(pfd[1]);
	ASSERT_EQ(sizeof(port), read(pfd[0], &port, sizeof(port)));
	close(pfd[0]);
	struct llmp_client *c;
	ASSERT_EQ(0, llmp_client_connect_tcp(self->cp, NULL, port, NULL, &c));
	llmp_client_free(c);
	usleep(100000);
	ASSERT_EQ(0, kill(pid, SIGTERM));
	int64_t end = llmp_test_now_ms() + 5000;
	pid_t w;
	while ((w = waitpid(pid, &st, WNOHANG)) == 0 && llmp_test_now_ms() < end)
		usleep(1000);
	if (w == 0) {
		kill(pid, SIGKILL);
		waitpid(pid, &st, 0);
	}
	ASSERT_EQ(pid, w);
	ASSERT_TRUE(WIFEXITED(st));
	ASSERT_EQ(0, WEXITSTATUS(st));
}

/* ---- the tools ------------------------------------------------------------------- */

/* Run argv with stdin from `in` (NULL: /dev/null); stdout into out; returns the exit status. */
static int run_tool(char *const argv[], const char *in, char *out, size_t cap, int timeout_s)
{
	int ip[2], op[2];
	pid_t pid;
	size_t got = 0;
	int st;

	if (pipe(ip) || pipe(op))
		return -1;
	pid = fork();
	if (pid == 0) {
		dup2(ip[0], 0);
		dup2(op[1], 1);
		close(ip[1]);
		close(op[0]);
		alarm(timeout_s);
		execv(argv[0], argv);
		_exit(127);
	}
	close(ip[0]);
	close(op[1]);
	if (in && write(ip[1], in, strlen(in)) < 0)
		st = 0;
	close(ip[1]);
	for (;;) {
		ssize_t r = read(op[0], out + got, cap - 1 - got);

		if (r <= 0)
			break;
		got += (size_t)r;
	}
	out[got] = 0;
	close(op[0]);
	waitpid(pid, &st, 0);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* llmp-broker and two llmp-client processes, by their command lines. */
TEST(tools_broker_and_clients)
{
	char bpath[4200], cpath[4200], line[256], port[16], out[8192];
	enum llmp_shmem_kind kind;
	int bo[2];
	pid_t bpid;

	if (!llmp_test_tool_path("llmp-broker", bpath, sizeof(bpath)) ||
	    !llmp_test_tool_path("llmp-client", cpath, sizeof(cpath)))
		SKIP(return, "llmp-broker/llmp-client not built beside the tests");
	if (llmp_test_named_kind(&kind) < 0)
		SKIP(return, "neither POSIX nor System V shared memory works here");
	const char *kname = llmp_shmem_kind_name(kind);
	ASSERT_EQ(0, pipe(bo));
	bpid = fork();
	ASSERT_LE(0, bpid);
	if (bpid == 0) {
		dup2(bo[1], 1);
		close(bo[0]);
		execl(bpath, bpath, "--port", "0", "--provider", kname, "--stats-interval", "1",
		      "--exit-after", "2", (char *)NULL);
		_exit(127);
	}
	close(bo[1]);
	FILE *bf = fdopen(bo[0], "r");
	ASSERT_NE(NULL, bf);
	ASSERT_NE(NULL, fgets(line, sizeof(line), bf));
	char *colon = strrchr(line, ':');
	ASSERT_NE(NULL, strstr(line, "listening on 127.0.0.1:"));
	ASSERT_EQ(1, sscanf(colon + 1, "%15[0-9]", port));

	/* Client 1 sends two lines; client 2 (registered after) replays the history. */
	char *send_argv[] = { cpath, "--port", port, "--provider", (char *)kname, "send", NULL };
	ASSERT_EQ(0, run_tool(send_argv, "first line\nsecond\n", out, sizeof(out), 20));
	char *recv_argv[] = { cpath, "--port", port, "--provider", (char *)kname, "--count", "2",
			      "recv", NULL };
	ASSERT_EQ(0, run_tool(recv_argv, NULL, out, sizeof(out), 20));
	ASSERT_NE(NULL, strstr(out, "from 1 tag 0x5130c11e flags 0x0 len 10: first line\n")) TH_LOG("%s", out);
	ASSERT_NE(NULL, strstr(out, "from 1 tag 0x5130c11e flags 0x0 len 6: second\n")) TH_LOG("%s", out);

	/* Two clients came and went: --exit-after 2 stops the broker by itself. */
	int st;
	int64_t end = llmp_test_now_ms() + 10000;
	pid_t w;
	while ((w = waitpid(bpid, &st, WNOHANG)) == 0 && llmp_test_now_ms() < end)
		usleep(5000);
	if (w == 0) {
		kill(bpid, SIGKILL);
		waitpid(bpid, &st, 0);
	}
	ASSERT_EQ(bpid, w);
	ASSERT_TRUE(WIFEXITED(st));
	ASSERT_EQ(0, WEXITSTATUS(st));
	size_t n = fread(out, 1, sizeof(out) - 1, bf);
	out[n] = 0;
	fclose(bf);
	ASSERT_NE(NULL, strstr(out, "stopped after")) TH_LOG("%s", out);
	ASSERT_NE(NULL, strstr(out, "2 clients registered over TCP")) TH_LOG("%s", out);
	/* Bad arguments: usage and exit 2. */
	char *bad_argv[] = { bpath, "--port", "70000", NULL };
	ASSERT_EQ(2, run_tool(bad_argv, NULL, out, sizeof(out), 5));
}

TEST_HARNESS_MAIN
