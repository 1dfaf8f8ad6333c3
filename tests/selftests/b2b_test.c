// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * Broker-to-broker links: exactly-once delivery in a full mesh with each
 * codec (none, deflate, zstd, mixed fleets), bad and corrupt frames, a
 * LibAFL peer played by hand, dialled links that re-dial after their peer
 * was killed and restarted or that wait for a peer not up yet, and three
 * broker processes in three network namespaces.
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/mman.h>
#include <sys/shm.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
/* Without zlib or libzstd the library refuses those codecs (-EOPNOTSUPP) and their tests SKIP. */
#ifdef LLMP_HAVE_ZLIB
#include <zlib.h>
#endif
#ifdef LLMP_HAVE_ZSTD
#include <zstd.h>
#endif

#include "kselftest_harness.h"
#include "llmp_test.h"
#include "llmp_node.h"
#include "llmp/broker.h"

#define TAG 0x51300321u
#define NB 3
#define PER_CLIENT 40
/* Codec bits of a node in the fixture's variants. */
#define C_DEFLATE 1
#define C_ZSTD 2
#define C_POLL 4 /* not a codec: the loop uses poll(2) instead of io_uring */

/* Decode a hex string (spaces ignored) into out; returns the byte count. */
static size_t unhex(const char *s, uint8_t *out, size_t cap)
{
	size_t n = 0;
	unsigned v;

	while (*s && n < cap) {
		if (*s == ' ') {
			s++;
			continue;
		}
		if (sscanf(s, "%2x", &v) != 1)
			break;
		out[n++] = (uint8_t)v;
		s += 2;
	}
	return n;
}

/* A loopback port nobody listens on (bound, read, closed). */
static uint16_t free_port(void)
{
	struct sockaddr_in a = { .sin_family = AF_INET };
	socklen_t al = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	uint16_t port = 0;

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
	    getsockname(fd, (struct sockaddr *)&a, &al) == 0)
		port = ntohs(a.sin_port);
	if (fd >= 0)
		close(fd);
	return port;
}

/* Exactly one length-prefixed frame from fd into buf (5 s timeout set by the caller). */
static int read_frame(int fd, uint8_t *buf, uint32_t cap, uint32_t *len)
{
	if (recv(fd, buf, 4, MSG_WAITALL) != 4 || llmp_wire_get_len(buf, cap, len) < 0)
		return -1;
	return recv(fd, buf, *len, MSG_WAITALL) == (ssize_t)*len ? 0 : -1;
}

static int send_b2b(int fd, uint32_t client, uint32_t tag, uint32_t flags, const void *p, size_t n)
{
	struct llmp_wire_b2b w = { .client_id = client, .tag = tag, .flags = flags, .buf = p, .len = n };
	static uint8_t buf[70000];
	int k = llmp_wire_encode_b2b(&w, buf + 4, sizeof(buf) - 4);

	if (k < 0)
		return -1;
	llmp_wire_put_len(buf, (uint32_t)k);
	return send(fd, buf, 4 + (size_t)k, MSG_NOSIGNAL) == 4 + k ? 0 : -1;
}

/* Log lines of the library that start with "b2b:". */
static char b2b_log[16384];
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;

static void log_cb(void *ctx, enum llmp_log_level level, const char *msg)
{
	(void)ctx;
	(void)level;
	if (strncmp(msg, "b2b:", 4))
		return;
	pthread_mutex_lock(&log_lock);
	if (strlen(b2b_log) + strlen(msg) + 2 < sizeof(b2b_log)) {
		strcat(b2b_log, msg);
		strcat(b2b_log, "\n");
	}
	pthread_mutex_unlock(&log_lock);
}

static bool log_has(const char *s)
{
	bool r;

	pthread_mutex_lock(&log_lock);
	r = strstr(b2b_log, s) != NULL;
	pthread_mutex_unlock(&log_lock);
	return r;
}

/* ---- nodes: a broker, its listener and its loop on a thread (llmp_node.h) ---------- */

/* A broker on port (0: any), its loop with the given codecs; 0 or a negative errno. */
static int node_init(struct llmp_node *n, enum llmp_shmem_kind kind, uint16_t port, int codecs)
{
	struct llmp_broker_opts bo = { .struct_size = sizeof(bo), .page_size = 1 << 18 };
	struct llmp_loop_opts oo = { .struct_size = sizeof(oo),
				     .backend = (codecs & C_POLL) ? LLMP_LOOP_POLL : LLMP_LOOP_AUTO,
				     .b2b_compress = !!(codecs & C_DEFLATE),
				     .b2b_zstd = !!(codecs & C_ZSTD) };

	return llmp_node_init(n, kind, port, &bo, &oo);
}

FIXTURE(b2b)
{
	struct llmp_node n[NB];
	enum llmp_shmem_kind kind;
	bool ok;
};

FIXTURE_VARIANT(b2b)
{
	int codecs[NB];
	size_t len;
};

FIXTURE_VARIANT_ADD(b2b, plain) { .codecs = { 0, 0, 0 }, .len = 100 };
FIXTURE_VARIANT_ADD(b2b, deflate) { .codecs = { C_DEFLATE, C_DEFLATE, C_DEFLATE }, .len = 4096 };
FIXTURE_VARIANT_ADD(b2b, zstd) { .codecs = { C_ZSTD, C_ZSTD, C_ZSTD }, .len = 4096 };
/* Broker 2 has neither codec: 0-1 agree on zstd, 0 and 1 deflate to 2, 2 sends plain (poll loops). */
FIXTURE_VARIANT_ADD(b2b, zstd_and_none) {
	.codecs = { C_ZSTD | C_DEFLATE | C_POLL, C_ZSTD | C_DEFLATE | C_POLL, C_POLL }, .len = 4096 };
/* Broker 0 (which dials 1 and 2, on poll) has deflate only: only the 1-2 link uses zstd. */
FIXTURE_VARIANT_ADD(b2b, zstd_dialer_without) {
	.codecs = { C_DEFLATE | C_POLL, C_ZSTD | C_DEFLATE, C_ZSTD | C_DEFLATE }, .len = 4096 };

FIXTURE_SETUP(b2b)
{
	memset(self->n, 0, sizeof(self->n));
	self->ok = false;
	b2b_log[0] = 0;
	llmp_set_log(log_cb, NULL, LLMP_LOG_DEBUG);
	if (llmp_test_named_kind(&self->kind) < 0)
		SKIP(return, "neither POSIX nor System V shared memory works here");
	for (int i = 0; i < NB; i++) {
		int r = node_init(&self->n[i], self->kind, 0, variant->codecs[i]);

		if (r == -EOPNOTSUPP)
			SKIP(return, "codec not built in: %s", llmp_strerror_last());
		ASSERT_EQ(0, r) TH_LOG("%s", llmp_strerror_last());
	}
	self->ok = true;
}

FIXTURE_TEARDOWN(b2b)
{
	for (int i = 0; i < NB; i++)
		llmp_node_stop(&self->n[i]);
	for (int i = 0; i < NB; i++)
		llmp_node_fini(&self->n[i]);
	llmp_set_log(NULL, NULL, LLMP_LOG_WARN);
}

/* One broker per test, with the codecs the test asks for (LINK_NODE). */
FIXTURE(link)
{
	struct llmp_node n[1];
	enum llmp_shmem_kind kind;
	bool ok;
};

FIXTURE_SETUP(link)
{
	memset(self->n, 0, sizeof(self->n));
	b2b_log[0] = 0;
	llmp_set_log(log_cb, NULL, LLMP_LOG_DEBUG);
	self->ok = llmp_test_named_kind(&self->kind) == 0;
}

FIXTURE_TEARDOWN(link)
{
	llmp_node_fini(&self->n[0]);
	llmp_set_log(NULL, NULL, LLMP_LOG_WARN);
}

#define LINK_NODE(codecs)                                                                   \
	do {                                                                                \
		int r_;                                                                     \
		if (!self->ok)                                                              \
			SKIP(return, "neither POSIX nor System V shared memory works here"); \
		r_ = node_init(&self->n[0], self->kind, 0, (codecs));                       \
		if (r_ == -EOPNOTSUPP)                                                      \
			SKIP(return, "codec not built in: %s", llmp_strerror_last());       \
		ASSERT_EQ(0, r_) TH_LOG("%s", llmp_strerror_last());                        \
	} while (0)

static void fill(uint8_t *buf, size_t len, int broker, int i)
{
	/* Compressible, and different for every (broker, i). */
	memset(buf, 'a' + broker, len);
	snprintf((char *)buf, len, "b%d m%d ", broker, i);
}

/* Which codec a message from broker k takes to broker j: 2 zstd, 1 deflate, 0 none. */
static int codec_used(const int *c, int k, int j)
{
	if ((c[k] & C_ZSTD) && (c[j] & C_ZSTD))
		return 2;
	return (c[k] & C_DEFLATE) ? 1 : 0;
}

/* Every client sends a small message tagged `round`; wait until each has all NB of them. */
static int warm_up(struct llmp_client **tx, struct llmp_client **rx, uint32_t round)
{
	for (int k = 0; k < NB; k++) {
		if (llmp_client_send(tx[k], round, 0, "w", 1) < 0)
			return -1;
	}
	for (int k = 0; k < NB; k++) {
		struct llmp_msg_view v;
		int got = 0;

		while (got < NB) {
			if (llmp_client_recv_wait(rx[k], &v, 10000) != 1)
				return -1;
			got += v.tag == round;
		}
	}
	return 0;
}

/*
 * A triangle of brokers (full mesh of links): every client message arrives
 * exactly once at every broker's clients, with its sender id kept and
 * FROM_B2B set on the remote copies; no message loops back.  Each link uses
 * the codec both ends agree on: zstd arrives decompressed by the receiving
 * broker, deflate with COMPRESSED for the clients to inflate.
 */
TEST_F_TIMEOUT(b2b, triangle_exactly_once, 60)
{
	struct llmp_client *tx[NB], *rx[NB];
	uint32_t txid[NB];
	uint8_t buf[8192];
#ifdef LLMP_HAVE_ZLIB
	uint8_t out[8192]; /* what a COMPRESSED message inflates to */
#endif
	int ret;

	if (!self->ok)
		SKIP(return, "no brokers (see the setup's reason)");
	/* Links 0-1, 0-2, 1-2: dialled from the loops, in any order. */
	ASSERT_EQ(0, llmp_loop_connect_b2b(self->n[1].lp, NULL, self->n[2].port))
		TH_LOG("%s", llmp_strerror_last());
	ASSERT_EQ(0, llmp_loop_connect_b2b(self->n[0].lp, NULL, self->n[1].port));
	ASSERT_EQ(0, llmp_loop_connect_b2b(self->n[0].lp, NULL, self->n[2].port));
	for (int k = 0; k < NB; k++)
		ASSERT_EQ(0, llmp_node_start(&self->n[k]));
	for (int k = 0; k < NB; k++) {
		struct llmp_client_opts o = { .struct_size = sizeof(o), .send_timeout_ms = 10000 };

		ASSERT_EQ(0, llmp_client_connect_tcp(self->n[k].cp, NULL, self->n[k].port, &o, &tx[k]));
		ASSERT_EQ(0, llmp_client_connect_tcp(self->n[k].cp, NULL, self->n[k].port, &o, &rx[k]));
		txid[k] = llmp_client_id(tx[k]);
	}
	/*
	 * Two all-to-all rounds: after them every link has exchanged its
	 * capabilities frames, so the codec of every later message is known.
	 */
	ASSERT_EQ(0, warm_up(tx, rx, 0x77a1));
	ASSERT_EQ(0, warm_up(tx, rx, 0x77a2));
	for (int i = 0; i < PER_CLIENT; i++) {
		for (int k = 0; k < NB; k++) {
			fill(buf, variant->len, k, i);
			ASSERT_EQ(0, llmp_client_send(tx[k], TAG, 0, buf, variant->len));
		}
	}
	for (int k = 0; k < NB; k++) {
		int seen[NB][PER_CLIENT];
		int got = 0;
		struct llmp_msg_view v;

		memset(seen, 0, sizeof(seen));
		while (got < NB * PER_CLIENT) {
			ASSERT_EQ(1, llmp_client_recv_wait(rx[k], &v, 10000))
				TH_LOG("broker %d: %d of %d messages", k, got, NB * PER_CLIENT);
			if (v.tag != TAG)
				continue;
			const uint8_t *data = v.buf;
			size_t len = v.len;
			if (v.flags & LLMP_FLAG_COMPRESSED) {
#ifndef LLMP_HAVE_ZLIB
				ASSERT_TRUE(false) TH_LOG("built without zlib, yet a broker deflated");
#else
				z_stream zs;

				memset(&zs, 0, sizeof(zs));
				ASSERT_EQ(Z_OK, inflateInit2(&zs, -15));
				zs.next_in = (Bytef *)v.buf;
				zs.avail_in = (uInt)v.len;
				zs.next_out = out;
				zs.avail_out = sizeof(out);
				ASSERT_EQ(Z_STREAM_END, inflate(&zs, Z_FINISH));
				len = zs.total_out;
				inflateEnd(&zs);
				data = out;
				ASSERT_LT(v.len, len); /* it did shrink */
#endif
			}
			int from, i;
			ASSERT_EQ(2, sscanf((const char *)data, "b%d m%d", &from, &i));
			ASSERT_LT(from, NB);
			ASSERT_LT(i, PER_CLIENT);
			ASSERT_EQ(0, seen[from][i]) TH_LOG("broker %d got b%d m%d twice", k, from, i);
			seen[from][i] = 1;
			fill(buf, variant->len, from, i);
			ASSERT_EQ(variant->len, len);
			ASSERT_EQ(0, memcmp(buf, data, len));
			ASSERT_EQ(txid[from], v.sender);
			ASSERT_EQ(from != k, !!(v.flags & LLMP_FLAG_FROM_B2B));
			ASSERT_EQ(0, v.flags & LLMP_FLAG_ZSTD);
			ASSERT_EQ(from != k && codec_used(variant->codecs, from, k) == 1,
				  !!(v.flags & LLMP_FLAG_COMPRESSED)) TH_LOG("b%d -> broker %d", from, k);
			got++;
		}
		/* Nothing more: no copy looped back around the triangle. */
		usleep(k == 0 ? 300000 : 0);
		while ((ret = llmp_client_recv(rx[k], &v)) == 1)
			ASSERT_NE(TAG, v.tag) TH_LOG("broker %d: a duplicate arrived", k);
		ASSERT_EQ(0, ret);
	}
	for (int k = 0; k < NB; k++) {
		llmp_client_free(tx[k]);
		llmp_client_free(rx[k]);
	}
	for (int k = 0; k < NB; k++) {
		struct llmp_loop_stats st;
		unsigned zs = 0, df = 0;

		ASSERT_EQ(0, llmp_node_stop(&self->n[k]));
		llmp_loop_stats(self->n[k].lp, &st);
		for (int j = 0; j < NB; j++) {
			if (j != k) {
				zs += codec_used(variant->codecs, k, j) == 2;
				df += codec_used(variant->codecs, k, j) == 1;
			}
		}
		ASSERT_EQ(2, st.b2b_links);
		/* PER_CLIENT messages and two warm-ups to each of two brokers, and from them. */
		ASSERT_EQ(2 * (PER_CLIENT + 2), st.b2b_sent) TH_LOG("broker %d", k);
		ASSERT_EQ(2 * (PER_CLIENT + 2), st.b2b_received) TH_LOG("broker %d", k);
		ASSERT_EQ(zs * PER_CLIENT, st.b2b_zstd) TH_LOG("broker %d", k);
		ASSERT_EQ(df * PER_CLIENT, st.b2b_deflated) TH_LOG("broker %d", k);
		ASSERT_EQ(k == 0 ? 2 : k == 1 ? 1 : 0, st.b2b_dials) TH_LOG("broker %d", k);
	}
}

/* A link whose peer sends garbage is closed; the broker and its clients carry on. */
TEST_F(link, bad_link_frames_close_the_link)
{
	static const char *const bad[] = {
		"7fffffff",            /* frame over the 128 MiB cap */
		"00000003 01 02 03",   /* no payload length */
		"00000002 80 80",      /* truncated varint */
	};
	uint8_t buf[512], raw[64];
	struct llmp_wire_msg m;
	uint32_t len;

	LINK_NODE(0);
	ASSERT_EQ(0, llmp_node_start(&self->n[0]));
	for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct llmp_wire_msg h = { .type = LLMP_TCP_REQ_REMOTE_BROKER_HELLO, .text = "evil",
					   .text_len = 4 };
		int fd = llmp_test_tcp_dial(self->n[0].port);
		struct timeval tv = { 5, 0 };

		ASSERT_LE(0, fd);
		setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		ASSERT_EQ(0, read_frame(fd, buf, sizeof(buf), &len));
		int n = llmp_wire_encode_req(&h, buf + 4, sizeof(buf) - 4);
		llmp_wire_put_len(buf, (uint32_t)n);
		ASSERT_EQ(4 + n, send(fd, buf, 4 + (size_t)n, 0));
		ASSERT_EQ(0, read_frame(fd, buf, sizeof(buf), &len));
		ASSERT_EQ(0, llmp_wire_decode_resp(buf, len, &m));
		ASSERT_EQ(LLMP_TCP_RESP_REMOTE_BROKER_ACCEPTED, m.type);
		ASSERT_EQ(i + 1, m.id);
		/* Now a link: one bad frame and the broker hangs up. */
		size_t rn = unhex(bad[i], raw, sizeof(raw));
		ASSERT_EQ((ssize_t)rn, send(fd, raw, rn, MSG_NOSIGNAL));
		ssize_t r;
		while ((r = recv(fd, buf, sizeof(buf), 0)) > 0)
			; /* whatever history the link shipped first */
		/* EOF, or a reset if our bytes were still unread when it closed. */
		ASSERT_TRUE(r == 0 || errno == ECONNRESET)
			TH_LOG("%s: the broker did not close the link (%s)", bad[i], strerror(errno));
		close(fd);
	}
	/* Still serving: a client registers and its message goes round. */
	struct llmp_client *c;
	struct llmp_msg_view v;
	ASSERT_EQ(0, llmp_client_connect_tcp(self->n[0].cp, NULL, self->n[0].port, NULL, &c));
	ASSERT_EQ(0, llmp_client_send(c, TAG, 0, "alive", 5));
	int r2;
	while ((r2 = llmp_client_recv_wait(c, &v, 5000)) == 1 && v.tag != TAG)
		;
	ASSERT_EQ(1, r2);
	ASSERT_EQ(5, v.len);
	llmp_client_free(c);
	ASSERT_EQ(0, llmp_node_stop(&self->n[0]));
	struct llmp_loop_stats st;
	llmp_loop_stats(self->n[0].lp, &st);
	ASSERT_EQ(0, st.b2b_links);
	ASSERT_EQ(0, st.b2b_received);
}

/*
 * A peer speaking LibAFL's B2B bytes by hand: after RemoteBrokerHello it gets
 * TcpRemoteNewMessage frames for local messages (sender id, tag, flags,
 * payload exactly), and a frame it sends shows up locally flagged FROM_B2B
 * with its client id kept.  A broker with zstd on never sends it a
 * capabilities frame (the peer did not send one first).
 */
TEST_F(link, libafl_wire_link)
{
	uint8_t buf[4096];
	struct llmp_wire_b2b x;
	struct llmp_client *c;
	struct llmp_msg_view v;
	uint32_t len;
	int r;

	/* With zstd on: it still sends no capabilities to a peer that sent none. */
	LINK_NODE(C_ZSTD);
	ASSERT_EQ(0, llmp_node_start(&self->n[0]));
	ASSERT_EQ(0, llmp_client_connect_tcp(self->n[0].cp, NULL, self->n[0].port, NULL, &c));
	ASSERT_EQ(0, llmp_client_send(c, TAG, 0x0, "before the link", 15));

	int fd = llmp_test_tcp_dial(self->n[0].port);
	struct timeval tv = { 5, 0 };
	ASSERT_LE(0, fd);
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	ASSERT_EQ(0, read_frame(fd, buf, sizeof(buf), &len));
	/* RemoteBrokerHello { hostname: "libafl" }, as raw bytes. */
	static const uint8_t hello[] = { 0, 0, 0, 8, 0x01, 0x06, 'l', 'i', 'b', 'a', 'f', 'l' };
	ASSERT_EQ(sizeof(hello), send(fd, hello, sizeof(hello), 0));
	ASSERT_EQ(4, recv(fd, buf, 4, MSG_WAITALL));
	ASSERT_EQ(0, memcmp(buf, "\0\0\0\2", 4));
	ASSERT_EQ(2, recv(fd, buf, 2, MSG_WAITALL));
	ASSERT_EQ(LLMP_TCP_RESP_REMOTE_BROKER_ACCEPTED, buf[0]);
	ASSERT_EQ(1, buf[1]);

	/* The history: client 1's message, byte for byte (0x51300321 as a varint). */
	static const uint8_t want[] = { 0, 0, 0, 0x17, 0x01, 0xa1, 0x86, 0xc0, 0x89, 0x05, 0x00, 0x0f,
					'b', 'e', 'f', 'o', 'r', 'e', ' ', 't', 'h', 'e', ' ', 'l', 'i',
					'n', 'k' };
	ASSERT_EQ(sizeof(want), recv(fd, buf, sizeof(want), MSG_WAITALL));
	char hex[3 * sizeof(want) + 1];
	for (size_t k = 0; k < sizeof(want); k++)
		snprintf(hex + 3 * k, 4, "%02x ", buf[k]);
	ASSERT_EQ(0, memcmp(want, buf, sizeof(want))) TH_LOG("got %s", hex);
	ASSERT_EQ(0, llmp_wire_decode_b2b(buf + 4, sizeof(want) - 4, &x));
	ASSERT_EQ(1, x.client_id);

	/* The remote side's client 7 sends tag 0x99 flags 0x1 "zz". */
	static const uint8_t in[] = { 0, 0, 0, 7, 0x07, 0x80 | 0x19, 0x01, 0x01, 0x02, 'z', 'z' };
	ASSERT_EQ(sizeof(in), send(fd, in, sizeof(in), 0));
	while ((r = llmp_client_recv_wait(c, &v, 5000)) == 1 && v.tag != 0x99)
		;
	ASSERT_EQ(1, r);
	ASSERT_EQ(7, v.sender);
	ASSERT_EQ(LLMP_FLAG_FROM_B2B | LLMP_FLAG_COMPRESSED, v.flags);
	ASSERT_EQ(1, v.broker); /* the link's number */
	ASSERT_EQ(2, v.len);
	ASSERT_EQ(0, memcmp("zz", v.buf, 2));
	/* A frame flagged 0x100 from a peer that never agreed on zstd is just a flag. */
	static const uint8_t in2[] = { 0, 0, 0, 8, 0x07, 0x80 | 0x1a, 0x01, 0x80, 0x02, 0x02, 'y', 'y' };
	ASSERT_EQ(sizeof(in2), send(fd, in2, sizeof(in2), 0));
	while ((r = llmp_client_recv_wait(c, &v, 5000)) == 1 && v.tag != 0x9a)
		;
	ASSERT_EQ(1, r);
	ASSERT_EQ(LLMP_FLAG_FROM_B2B | LLMP_FLAG_ZSTD, v.flags);
	ASSERT_EQ(0, memcmp("yy", v.buf, 2));
	/* Neither is sent back over the link it came from, nor anything else. */
	usleep(100000);
	ASSERT_EQ(-1, recv(fd, buf, 1, MSG_DONTWAIT));
	ASSERT_EQ(EAGAIN, errno);
	close(fd);
	llmp_client_free(c);
}

/*
 * Finding 2 (issue 8): a peer that can reach the B2B port sends every tag the
 * protocol reserves (EXITING, CLIENT_EXIT, SLOW_RECEIVER_PANIC, END_OF_PAGE,
 * NEW_SHM_CLIENT, UNSET, UNINITIALIZED, and our capabilities tag after the
 * first frame) between honest messages.  None reaches the broadcast page:
 * a receiver that joined before gets every honest message in order and
 * keeps receiving, a client that joins afterwards replays the same honest
 * history and nothing else, and the loop counts each dropped frame.
 */
TEST_F(link, reserved_tags_from_a_link_are_dropped)
{
	static const uint32_t reserved[] = {
		LLMP_TAG_EXITING, LLMP_TAG_CLIENT_EXIT, LLMP_TAG_SLOW_RECEIVER_PANIC,
		LLMP_TAG_END_OF_PAGE, LLMP_TAG_NEW_SHM_CLIENT, LLMP_TAG_UNSET,
		LLMP_TAG_UNINITIALIZED, LLMP_TAG_B2B_CAPS,
	};
	const int nres = (int)(sizeof(reserved) / sizeof(reserved[0]));
	uint8_t buf[512], pay[32];
	struct llmp_client *c[2];
	struct llmp_loop_stats st;
	uint32_t len;

	LINK_NODE(0);
	ASSERT_EQ(0, llmp_node_start(&self->n[0]));
	ASSERT_EQ(0, llmp_client_connect_tcp(self->n[0].cp, NULL, self->n[0].port, NULL, &c[0]));

	int fd = llmp_test_tcp_dial(self->n[0].port);
	struct timeval tv = { 5, 0 };
	ASSERT_LE(0, fd);
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	ASSERT_EQ(0, read_frame(fd, buf, sizeof(buf), &len));
	static const uint8_t hello[] = { 0, 0, 0, 8, 0x01, 0x06, 'h', 'o', 's', 't', 'i', 'l' };
	ASSERT_EQ(sizeof(hello), send(fd, hello, sizeof(hello), 0));
	ASSERT_EQ(0, read_frame(fd, buf, sizeof(buf), &len));
	ASSERT_EQ(LLMP_TCP_RESP_REMOTE_BROKER_ACCEPTED, buf[0]);
	/* Honest 0, reserved 0, honest 1, reserved 1, ... honest nres. */
	memset(pay, 0, sizeof(pay));
	for (int i = 0; i <= nres; i++) {
		snprintf((char *)pay, sizeof(pay), "honest %d", i);
		ASSERT_EQ(0, send_b2b(fd, 7, TAG, 0, pay, 16));
		if (i < nres) {
			/* A page description naming nothing useful (EOP/NEW_SHM_CLIENT shape). */
			memset(pay, 0x41, sizeof(pay));
			ASSERT_EQ(0, send_b2b(fd, 1, reserved[i], 0, pay, sizeof(pay)));
		}
	}
	/* The receiver: every honest message, in order, nothing else, and it is still alive. */
	for (int k = 0; k < 2; k++) {
		struct llmp_msg_view v;
		int got = 0, r;

		if (k == 1)
			ASSERT_EQ(0, llmp_client_connect_tcp(self->n[0].cp, NULL, self->n[0].port, NULL,
							     &c[1]));
		while (got <= nres && (r = llmp_client_recv_wait(c[k], &v, 10000)) == 1) {
			char want[32];

			ASSERT_EQ(TAG, v.tag) TH_LOG("client %d got tag 0x%x after %d honest", k, v.tag,
						     got);
			snprintf(want, sizeof(want), "honest %d", got);
			ASSERT_EQ(16, v.len);
			ASSERT_STREQ(want, (const char *)v.buf);
			ASSERT_EQ(7, v.sender);
			got++;
		}
		ASSERT_EQ(nres + 1, got) TH_LOG("client %d: %s", k, llmp_strerror_last());
	}
	/* Both keep receiving: a later message from a local client reaches them. */
	ASSERT_EQ(0, llmp_client_send(c[1], TAG + 1, 0, "later", 5));
	for (int k = 0; k < 2; k++) {
		struct llmp_msg_view v;

		ASSERT_EQ(1, llmp_client_recv_wait(c[k], &v, 10000)) TH_LOG("client %d", k);
		ASSERT_EQ(TAG + 1, v.tag);
		ASSERT_EQ(5, v.len);
	}
	close(fd);
	llmp_client_free(c[0]);
	llmp_client_free(c[1]);
	ASSERT_EQ(0, llmp_node_stop(&self->n[0]));
	llmp_loop_stats(self->n[0].lp, &st);
	ASSERT_EQ((uint64_t)nres, st.b2b_reserved);
	ASSERT_EQ((uint64_t)nres + 1, st.b2b_received);
	ASSERT_TRUE(log_has("reserved tag"));
}

#ifdef LLMP_HAVE_ZSTD
/* Speak to broker n as one of our brokers would: handshake, capabilities both ways. */
static int our_peer(struct llmp_node *n, uint8_t *buf, uint32_t cap, uint32_t *codecs)
{
	struct llmp_wire_msg h = { .type = LLMP_TCP_REQ_REMOTE_BROKER_HELLO, .text = "ours",
				   .text_len = 4 };
	struct timeval tv = { 5, 0 };
	struct llmp_wire_msg m;
	struct llmp_wire_b2b x;
	uint8_t caps[12];
	uint32_t len;
	int fd = llmp_test_tcp_dial(n->port), k;

	if (fd < 0)
		return -1;
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	k = llmp_wire_encode_req(&h, buf + 4, cap - 4);
	llmp_wire_put_len(buf, (uint32_t)k);
	if (read_frame(fd, buf + 64, cap - 64, &len) < 0 || send(fd, buf, 4 + (size_t)k, 0) != 4 + k ||
	    read_frame(fd, buf, cap, &len) < 0 || llmp_wire_decode_resp(buf, len, &m) < 0 ||
	    m.type != LLMP_TCP_RESP_REMOTE_BROKER_ACCEPTED)
		goto fail;
	memcpy(caps, LLMP_B2B_CAPS_MAGIC, 8);
	memcpy(caps + 8, "\1\0\0\0", 4);
	if (send_b2b(fd, 0, LLMP_TAG_B2B_CAPS, 0, caps, sizeof(caps)) < 0)
		goto fail;
	/* The answer, perhaps after some history. */
	for (;;) {
		if (read_frame(fd, buf, cap, &len) < 0 || llmp_wire_decode_b2b(buf, len, &x) < 0)
			goto fail;
		if (x.tag == LLMP_TAG_B2B_CAPS && x.len == 12 && !memcmp(x.buf, LLMP_B2B_CAPS_MAGIC, 8)) {
			*codecs = ((const uint8_t *)x.buf)[8];
			return fd;
		}
	}
fail:
	close(fd);
	return -1;
}

/*
 * One of our brokers, played by hand, agrees on zstd with broker 0: a valid
 * zstd frame arrives decompressed at the local client; a corrupt one, a
 * bomb (a frame that declares 1 GiB) and a truncated frame each drop the
 * link with a logged reason, and the broker carries on.
 */
TEST_F(link, corrupt_zstd_drops_the_link)
{
	static uint8_t buf[70000], big[20000], z[20000], back[4096];
	struct llmp_client *c;
	struct llmp_msg_view v;
	uint32_t codecs = 0;
	int fd, r;

	LINK_NODE(C_ZSTD);
	ASSERT_EQ(0, llmp_node_start(&self->n[0]));
	ASSERT_EQ(0, llmp_client_connect_tcp(self->n[0].cp, NULL, self->n[0].port, NULL, &c));

	/* Good: 20000 compressible bytes as one zstd frame. */
	fd = our_peer(&self->n[0], buf, sizeof(buf), &codecs);
	ASSERT_LE(0, fd);
	ASSERT_EQ(LLMP_B2B_CAPS_ZSTD, codecs);
	for (size_t i = 0; i < sizeof(big); i++)
		big[i] = (uint8_t)("fuzz"[i % 4] + (i % 1000 == 0));
	size_t zn = ZSTD_compress(z, sizeof(z), big, sizeof(big), 3);
	ASSERT_FALSE(ZSTD_isError(zn));
	ASSERT_EQ(0, send_b2b(fd, 9, 0xabc, LLMP_FLAG_ZSTD, z, zn));
	while ((r = llmp_client_recv_wait(c, &v, 5000)) == 1 && v.tag != 0xabc)
		;
	ASSERT_EQ(1, r);
	ASSERT_EQ(LLMP_FLAG_FROM_B2B, v.flags);
	ASSERT_EQ(9, v.sender);
	ASSERT_EQ(sizeof(big), v.len);
	ASSERT_EQ(0, memcmp(big, v.buf, sizeof(big)));

	/*
	 * The other way: a local 4 KiB message goes to the peer as one zstd
	 * frame; a local message that carries 0x100 itself is not shipped (the
	 * peer would take it for zstd); a small one goes as it is.
	 */
	ASSERT_EQ(0, llmp_client_send(c, 0xf0, 0, big, 4096));
	ASSERT_EQ(0, llmp_client_send(c, 0xf1, LLMP_FLAG_ZSTD, "reserved", 8));
	ASSERT_EQ(0, llmp_client_send(c, 0xf2, 0, "after", 5));
	int seen_f0 = 0;
	for (;;) {
		struct llmp_wire_b2b x;
		uint32_t len;

		ASSERT_EQ(0, read_frame(fd, buf, sizeof(buf), &len));
		ASSERT_EQ(0, llmp_wire_decode_b2b(buf, len, &x));
		ASSERT_NE(0xf1, x.tag);
		if (x.tag == 0xf0) {
			ASSERT_EQ(LLMP_FLAG_ZSTD, x.flags);
			ASSERT_LT(x.len, 4096);
			ASSERT_EQ(4096, ZSTD_decompress(back, sizeof(back), x.buf, x.len));
			ASSERT_EQ(0, memcmp(big, back, 4096));
			seen_f0++;
		}
		if (x.tag == 0xf2) {
			ASSERT_EQ(0, x.flags);
			ASSERT_EQ(5, x.len);
			break;
		}
	}
	ASSERT_EQ(1, seen_f0);
	ASSERT_TRUE(log_has("reserved for zstd")) TH_LOG("%s", b2b_log);
	close(fd);

	/* Bad ones. */
	uint8_t bomb[32] = { 0x28, 0xb5, 0x2f, 0xfd, 0xe0 }; /* magic, single segment, 8-byte size */
	bomb[5 + 4] = 0x40;                                 /* 1 << 38 bytes */
	bomb[13] = 0x01;                                    /* a last raw block of 0 bytes */
	const struct {
		const void *p;
		size_t n;
		const char *why;
	} bad[] = {
		{ "not a zstd frame at all", 23, "no zstd frame" },
		{ bomb, 16, "byte cap (a decompression bomb?)" },
		{ z, zn - 3, "corrupt zstd frame" },
	};
	for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		fd = our_peer(&self->n[0], buf, sizeof(buf), &codecs);
		ASSERT_LE(0, fd);
		ASSERT_EQ(0, send_b2b(fd, 9, 0xbad, LLMP_FLAG_ZSTD, bad[i].p, bad[i].n));
		ssize_t n;
		while ((n = recv(fd, buf, sizeof(buf), 0)) > 0)
			;
		ASSERT_TRUE(n == 0 || errno == ECONNRESET) TH_LOG("case %u: link not closed", i);
		close(fd);
		ASSERT_TRUE(log_has(bad[i].why)) TH_LOG("case %u: no \"%s\" in:\n%s", i, bad[i].why, b2b_log);
	}
	/* Still serving, and nothing of the bad frames reached the page. */
	ASSERT_EQ(0, llmp_client_send(c, TAG, 0, "alive", 5));
	while ((r = llmp_client_recv_wait(c, &v, 5000)) == 1 && v.tag != TAG)
		ASSERT_NE(0xbad, v.tag);
	ASSERT_EQ(1, r);
	llmp_client_free(c);
	ASSERT_EQ(0, llmp_node_stop(&self->n[0]));
}
#else
/* Built without libzstd: the loop refuses b2b_zstd with -EOPNOTSUPP, and LINK_NODE SKIPs. */
TEST_F(link, corrupt_zstd_drops_the_link)
{
	LINK_NODE(C_ZSTD);
	ASSERT_TRUE(false) TH_LOG("built without libzstd, yet the loop took b2b_zstd");
}
#endif

/*
 * Broker 0 (zstd and deflate) dials a LibAFL broker played by hand: it asks
 * EXT_QUERY on a first connection, which LibAFL answers by hanging up, then
 * links on a second one and sends deflate, never a capabilities frame and
 * never zstd.
 */
TEST_F(link, zstd_dialer_to_libafl_peer)
{
	static uint8_t buf[70000], msg[4096];
	struct sockaddr_in a = { .sin_family = AF_INET };
	socklen_t al = sizeof(a);
	struct llmp_client *c;
	struct llmp_wire_msg m;
	struct llmp_wire_b2b x;
	uint32_t len;
	int ls, fd = -1;

	LINK_NODE(C_ZSTD | C_DEFLATE);
	ls = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ASSERT_EQ(0, bind(ls, (struct sockaddr *)&a, sizeof(a)));
	ASSERT_EQ(0, listen(ls, 4));
	ASSERT_EQ(0, getsockname(ls, (struct sockaddr *)&a, &al));
	ASSERT_EQ(0, llmp_loop_connect_b2b(self->n[0].lp, "127.0.0.1", ntohs(a.sin_port)));
	ASSERT_EQ(0, llmp_node_start(&self->n[0]));
	ASSERT_EQ(0, llmp_client_connect_tcp(self->n[0].cp, NULL, self->n[0].port, NULL, &c));
	fill(msg, sizeof(msg), 0, 1);
	ASSERT_EQ(0, llmp_client_send(c, TAG, 0, msg, sizeof(msg)));

	/* LibAFL's hello: broadcast page {size 1 MiB, id "libafl"}, hostname "libafl". */
	struct llmp_wire_msg hello = { .type = LLMP_TCP_RESP_BROKER_CONNECT_HELLO, .text = "libafl",
				       .text_len = 6, .desc = { .size = 1 << 20, .id = "libafl" } };
	int hn = llmp_wire_encode_resp(&hello, buf + 4, 200);
	ASSERT_LT(0, hn);
	llmp_wire_put_len(buf, (uint32_t)hn);
	struct timeval tv = { 5, 0 };
	for (int conn = 0; conn < 2; conn++) {
		fd = accept4(ls, NULL, NULL, SOCK_CLOEXEC);
		ASSERT_LE(0, fd);
		setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		ASSERT_EQ(4 + hn, send(fd, buf, 4 + (size_t)hn, 0));
		uint8_t rq[300];
		ASSERT_EQ(0, read_frame(fd, rq, sizeof(rq), &len));
		ASSERT_EQ(0, llmp_wire_decode_req(rq, len, &m));
		if (conn == 0) {
			/* LibAFL does not know this request: it hangs up. */
			ASSERT_EQ(LLMP_TCP_REQ_EXT_QUERY, m.type);
			close(fd);
			continue;
		}
		ASSERT_EQ(LLMP_TCP_REQ_REMOTE_BROKER_HELLO, m.type);
		static const uint8_t acc[] = { 0, 0, 0, 2, 0x02, 0x05 };
		ASSERT_EQ(sizeof(acc), send(fd, acc, sizeof(acc), 0));
	}
	/* The first frame is the client's message, deflated: no capabilities, no zstd. */
	ASSERT_EQ(0, read_frame(fd, buf, sizeof(buf), &len));
	ASSERT_EQ(0, llmp_wire_decode_b2b(buf, len, &x));
	ASSERT_EQ(TAG, x.tag);
	ASSERT_EQ(LLMP_FLAG_COMPRESSED, x.flags);
	ASSERT_LT(x.len, sizeof(msg));
	ASSERT_EQ(-1, recv(fd, buf, 1, MSG_DONTWAIT));
	close(fd);
	close(ls);
	llmp_client_free(c);
	ASSERT_EQ(0, llmp_node_stop(&self->n[0]));
}

/* ---- re-dialling ---------------------------------------------------------------- */

/*
 * Nobody listens on the port broker 0 dials: llmp_loop_connect_b2b()
 * returns at once, the loop keeps trying with backoff (a few attempts in
 * 2 s, not a busy loop) while a client registers and gets its message
 * round; once a broker listens there, the link comes up and both sides'
 * messages, including one sent before the link existed, arrive exactly once.
 */
TEST_F_TIMEOUT(link, dial_waits_for_absent_peer, 60)
{
	struct llmp_node *a = &self->n[0], b;
	struct llmp_client *ca, *cb;
	struct llmp_msg_view v;
	uint16_t port = free_port();
	int r;

	LINK_NODE(C_POLL); /* the waits between attempts on poll(2); the other tests use io_uring */
	ASSERT_NE(0, port);
	memset(&b, 0, sizeof(b));
	ASSERT_EQ(0, llmp_loop_connect_b2b(a->lp, NULL, port)) TH_LOG("%s", llmp_strerror_last());
	ASSERT_EQ(0, llmp_node_start(a));
	ASSERT_EQ(0, llmp_client_connect_tcp(a->cp, NULL, a->port, NULL, &ca));
	ASSERT_EQ(0, llmp_client_send(ca, TAG, 0, "early", 5));
	while ((r = llmp_client_recv_wait(ca, &v, 5000)) == 1 && v.tag != TAG)
		;
	ASSERT_EQ(1, r);
	usleep(2000000);
	unsigned long dials = atomic_load_explicit(&a->dials, memory_order_relaxed);
	/* 0, ~0.1, ~0.3, ~0.7, ~1.5 s: backoff, not a spin. */
	ASSERT_GE(dials, 3) TH_LOG("%lu attempts in 2 s", dials);
	ASSERT_LE(dials, 8) TH_LOG("%lu attempts in 2 s", dials);
	ASSERT_EQ(0, atomic_load_explicit(&a->links_up, memory_order_relaxed));
	ASSERT_TRUE(log_has("attempt 1 failed")) TH_LOG("%s", b2b_log);

	/* The peer appears. */
	ASSERT_EQ(0, node_init(&b, self->kind, port, 0)) TH_LOG("%s", llmp_strerror_last());
	ASSERT_EQ(0, llmp_node_start(&b));
	ASSERT_TRUE(llmp_node_wait_links(a, 1, 15000)) TH_LOG("no link after the peer came up:\n%s", b2b_log);
	ASSERT_TRUE(llmp_node_wait_links(&b, 1, 5000));
	ASSERT_EQ(0, llmp_client_connect_tcp(b.cp, NULL, b.port, NULL, &cb));
	ASSERT_EQ(0, llmp_client_send(cb, TAG, 0, "from b", 6));
	ASSERT_EQ(0, llmp_client_send(ca, TAG, 0, "late", 4));
	int got_a = 0, got_b = 0;
	while (got_a < 1 && (r = llmp_client_recv_wait(ca, &v, 5000)) == 1)
		got_a += v.tag == TAG && v.len == 6 && !memcmp(v.buf, "from b", 6);
	ASSERT_EQ(1, got_a);
	int early = 0, late = 0;
	while (early + late < 2 && (r = llmp_client_recv_wait(cb, &v, 5000)) == 1) {
		if (v.tag != TAG || !(v.flags & LLMP_FLAG_FROM_B2B))
			continue;
		early += v.len == 5 && !memcmp(v.buf, "early", 5);
		late += v.len == 4 && !memcmp(v.buf, "late", 4);
	}
	ASSERT_EQ(1, early);
	ASSERT_EQ(1, late);
	usleep(200000);
	while ((r = llmp_client_recv(cb, &v)) == 1)
		got_b += v.tag == TAG && (v.flags & LLMP_FLAG_FROM_B2B);
	ASSERT_EQ(0, got_b) TH_LOG("duplicates at b");
	while ((r = llmp_client_recv(ca, &v)) == 1)
		ASSERT_FALSE(v.tag == TAG && (v.flags & LLMP_FLAG_FROM_B2B)) TH_LOG("duplicate at a");
	llmp_client_free(ca);
	llmp_client_free(cb);
	ASSERT_EQ(0, llmp_node_stop(a));
	llmp_node_fini(&b);
}

/* Start llmp-broker on port (0: any); returns its pid, *port_out the port it listens on. */
static pid_t start_tool_broker(const char *path, enum llmp_shmem_kind kind, uint16_t port,
			       uint16_t *port_out, FILE **out)
{
	char ps[16], line[256];
	int pfd[2];
	pid_t pid;
	FILE *f;
	unsigned p = 0;

	if (pipe(pfd))
		return -1;
	snprintf(ps, sizeof(ps), "%u", port);
	pid = fork();
	if (pid == 0) {
		int null = open("/dev/null", O_WRONLY | O_CLOEXEC);

		dup2(pfd[1], 1);
		if (null >= 0)
			dup2(null, 2);
		close(pfd[0]);
		execl(path, path, "--port", ps, "--provider", llmp_shmem_kind_name(kind),
		      "--stats-interval", "0", (char *)NULL);
		_exit(127);
	}
	close(pfd[1]);
	f = fdopen(pfd[0], "r");
	while (f && fgets(line, sizeof(line), f)) {
		char *colon = strrchr(line, ':');

		if (strstr(line, "listening on ") && colon && sscanf(colon + 1, "%u", &p) == 1)
			break;
	}
	*out = f; /* kept open until the broker exits: it prints a last line */
	*port_out = (uint16_t)p;
	return p ? pid : -1;
}

/* The first i with seen[i] != 1 (a loss or a duplicate), or -1. */
static int first_not_once(const int *seen, int n)
{
	for (int i = 0; i < n; i++)
		if (seen[i] != 1)
			return i;
	return -1;
}

/* Receive until `want` TAG messages whose text starts with prefix are seen; counts per index. */
static int collect(struct llmp_client *c, const char *prefix, int *seen, int n, int want)
{
	struct llmp_msg_view v;
	int got = 0, i;
	char t[64];

	while (got < want && llmp_client_recv_wait(c, &v, 10000) == 1) {
		if (v.tag != TAG || v.len >= sizeof(t))
			continue;
		memcpy(t, v.buf, v.len);
		t[v.len] = 0;
		if (strncmp(t, prefix, strlen(prefix)) || sscanf(t + strlen(prefix), "%d", &i) != 1 ||
		    i < 0 || i >= n)
			continue;
		seen[i]++;
		got++;
	}
	return got;
}

static int send_n(struct llmp_client *c, const char *prefix, int n)
{
	char t[64];

	for (int i = 0; i < n; i++) {
		snprintf(t, sizeof(t), "%s%d", prefix, i);
		if (llmp_client_send(c, TAG, 0, t, strlen(t)) < 0)
			return -1;
	}
	return 0;
}

#define RN 20

/*
 * Broker A (here) dials broker B (an llmp-broker process).  B is SIGKILLed
 * and started again on the same port: A notices, re-dials, and the new link
 * carries what A's client sent while B was away and afterwards, each
 * message exactly once; nothing from before the kill is sent again, and B's
 * new messages reach A once.
 */
TEST_F_TIMEOUT(link, redial_after_peer_restart, 90)
{
	struct llmp_node *a = &self->n[0];
	struct llmp_client *txa, *rxa, *txb, *rxb;
	char path[4200];
	uint16_t port, port2;
	int seen[RN], st;
	FILE *bout = NULL;
	pid_t bp;

	LINK_NODE(0);
	if (!llmp_test_tool_path("llmp-broker", path, sizeof(path)))
		SKIP(return, "llmp-broker not built beside the tests");
	bp = start_tool_broker(path, self->kind, 0, &port, &bout);
	ASSERT_LT(0, bp);
	ASSERT_EQ(0, llmp_loop_connect_b2b(a->lp, NULL, port));
	ASSERT_EQ(0, llmp_node_start(a));
	ASSERT_EQ(0, llmp_client_connect_tcp(a->cp, NULL, a->port, NULL, &txa));
	ASSERT_EQ(0, llmp_client_connect_tcp(a->cp, NULL, a->port, NULL, &rxa));
	ASSERT_EQ(0, llmp_client_connect_tcp(a->cp, NULL, port, NULL, &txb));
	ASSERT_EQ(0, llmp_client_connect_tcp(a->cp, NULL, port, NULL, &rxb));
	ASSERT_TRUE(llmp_node_wait_links(a, 1, 10000)) TH_LOG("%s", b2b_log);

	/* Before: both ways, once. */
	ASSERT_EQ(0, send_n(txa, "a0 ", RN));
	ASSERT_EQ(0, send_n(txb, "b0 ", RN));
	memset(seen, 0, sizeof(seen));
	ASSERT_EQ(RN, collect(rxb, "a0 ", seen, RN, RN));
	memset(seen, 0, sizeof(seen));
	ASSERT_EQ(RN, collect(rxa, "b0 ", seen, RN, RN));
	llmp_client_free(txb);
	llmp_client_free(rxb);

	/* B dies; A's link goes down and A's client sends while B is away. */
	ASSERT_EQ(0, kill(bp, SIGKILL));
	ASSERT_EQ(bp, waitpid(bp, &st, 0));
	if (bout)
		fclose(bout);
	llmp_test_remove_orphans(self->kind, bp);
	ASSERT_TRUE(llmp_node_wait_links(a, 0, 10000));
	ASSERT_EQ(0, send_n(txa, "a1 ", RN));
	usleep(300000);

	/* B again, same port: the link comes back by itself. */
	bp = start_tool_broker(path, self->kind, port, &port2, &bout);
	ASSERT_LT(0, bp);
	ASSERT_EQ(port, port2);
	ASSERT_EQ(0, llmp_client_connect_tcp(a->cp, NULL, port, NULL, &txb));
	ASSERT_EQ(0, llmp_client_connect_tcp(a->cp, NULL, port, NULL, &rxb));
	ASSERT_TRUE(llmp_node_wait_links(a, 1, 15000)) TH_LOG("no re-dial:\n%s", b2b_log);
	ASSERT_EQ(0, send_n(txa, "a2 ", RN));
	ASSERT_EQ(0, send_n(txb, "b2 ", RN));
	/* B's client: every a1 and a2 exactly once (a1 was kept in A's history). */
	memset(seen, 0, sizeof(seen));
	ASSERT_EQ(RN, collect(rxb, "a1 ", seen, RN, RN));
	ASSERT_EQ(-1, first_not_once(seen, RN)) TH_LOG("a1: message %d", first_not_once(seen, RN));
	memset(seen, 0, sizeof(seen));
	ASSERT_EQ(RN, collect(rxb, "a2 ", seen, RN, RN));
	ASSERT_EQ(-1, first_not_once(seen, RN)) TH_LOG("a2: message %d", first_not_once(seen, RN));
	/* A's client: every b2 once. */
	memset(seen, 0, sizeof(seen));
	ASSERT_EQ(RN, collect(rxa, "b2 ", seen, RN, RN));
	/* Then nothing: no copy of a0/a1/a2 at B, no b0 again at A. */
	usleep(300000);
	struct llmp_msg_view v;
	int r;
	while ((r = llmp_client_recv(rxb, &v)) == 1) {
		ASSERT_FALSE(v.tag == TAG && (v.flags & LLMP_FLAG_FROM_B2B))
			TH_LOG("B got another: %.*s", (int)v.len, (const char *)v.buf);
	}
	while ((r = llmp_client_recv(rxa, &v)) == 1) {
		ASSERT_FALSE(v.tag == TAG && (v.flags & LLMP_FLAG_FROM_B2B))
			TH_LOG("A got another: %.*s", (int)v.len, (const char *)v.buf);
	}
	ASSERT_TRUE(log_has("lost")) TH_LOG("%s", b2b_log);
	llmp_client_free(txb);
	llmp_client_free(rxb);
	ASSERT_EQ(0, kill(bp, SIGTERM));
	ASSERT_EQ(bp, waitpid(bp, &st, 0));
	if (bout)
		fclose(bout);
	ASSERT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) TH_LOG("status 0x%x", st);
	llmp_client_free(txa);
	llmp_client_free(rxa);
	ASSERT_EQ(0, llmp_node_stop(a));
	struct llmp_loop_stats ls;
	llmp_loop_stats(a->lp, &ls);
	ASSERT_LE(2, ls.b2b_dials);
}
/* A TCP relay between a dialling broker and the broker it dials, which the test can cut. */
struct relay {
	int ls;
	uint16_t port, to;
	bool half;      /* a cut closes only the dialler's side: the other stays half-open */
	int held[8];    /* those other sides, closed when the relay stops */
	unsigned nheld;
	atomic_int cut, stop;
	pthread_t t;
};

static void *relay_thread(void *v)
{
	struct relay *r = v;

	/* Pairs with the test's relaxed store of stop at the end: a flag, no data behind it. */
	while (!atomic_load_explicit(&r->stop, memory_order_relaxed)) {
		struct pollfd pa = { .fd = r->ls, .events = POLLIN };
		uint8_t buf[65536];
		int c, s;

		if (poll(&pa, 1, 50) <= 0)
			continue;
		c = accept4(r->ls, NULL, NULL, SOCK_CLOEXEC);
		s = c >= 0 ? llmp_test_tcp_dial(r->to) : -1;
		while (c >= 0 && s >= 0 && !atomic_load_explicit(&r->stop, memory_order_relaxed)) {
			struct pollfd p[2] = { { .fd = c, .events = POLLIN }, { .fd = s, .events = POLLIN } };

			/* Pairs with the test's relaxed store of cut: it only ends this relay. */
			if (atomic_exchange_explicit(&r->cut, 0, memory_order_relaxed)) {
				if (r->half && r->nheld < 8) {
					r->held[r->nheld++] = s;
					s = -1;
				}
				break;
			}
			if (poll(p, 2, 20) <= 0)
				continue;
			int from = (p[0].revents & (POLLIN | POLLHUP | POLLERR)) ? 0 : 1;
			ssize_t n = recv(from ? s : c, buf, sizeof(buf), 0);

			if (n <= 0 || send(from ? c : s, buf, (size_t)n, MSG_NOSIGNAL) != n)
				break;
		}
		if (c >= 0)
			close(c);
		if (s >= 0)
			close(s);
	}
	for (unsigned i = 0; i < r->nheld; i++)
		close(r->held[i]);
	return NULL;
}

static bool wait_log(const char *what, int ms)
{
	int64_t end = llmp_test_now_ms() + ms;

	while (!log_has(what)) {
		if (llmp_test_now_ms() > end)
			return false;
		usleep(5000);
	}
	return true;
}

/*
 * The connection of a link breaks while both brokers stay up (a relay in
 * between is cut).  The dialling side re-dials through the relay and goes on
 * where it stopped; the accepting side recognises the dialler by the resume
 * token of its capabilities frame and goes on where the old connection
 * stopped too.  Nothing sent before the cut is sent again, what is sent
 * after arrives once, both ways.
 */
static void reset_case(struct __test_metadata *_metadata, struct _test_data_link *self, bool half)
{
	struct llmp_node *a = &self->n[0], b;
	struct relay rl;
	struct llmp_client *txa, *rxa, *txb, *rxb;
	struct sockaddr_in sa = { .sin_family = AF_INET };
	socklen_t sl = sizeof(sa);
	int seen[RN];

	/* The half-open case runs both loops on poll(2). */
	LINK_NODE(half ? C_POLL : 0);
	memset(&b, 0, sizeof(b));
	memset(&rl, 0, sizeof(rl));
	rl.half = half;
	ASSERT_EQ(0, node_init(&b, self->kind, 0, half ? C_POLL : 0));
	rl.ls = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ASSERT_EQ(0, bind(rl.ls, (struct sockaddr *)&sa, sizeof(sa)));
	ASSERT_EQ(0, listen(rl.ls, 4));
	ASSERT_EQ(0, getsockname(rl.ls, (struct sockaddr *)&sa, &sl));
	rl.port = ntohs(sa.sin_port);
	rl.to = b.port;
	ASSERT_EQ(0, pthread_create(&rl.t, NULL, relay_thread, &rl));
	ASSERT_EQ(0, llmp_loop_connect_b2b(a->lp, NULL, rl.port));
	ASSERT_EQ(0, llmp_node_start(a));
	ASSERT_EQ(0, llmp_node_start(&b));
	ASSERT_EQ(0, llmp_client_connect_tcp(a->cp, NULL, a->port, NULL, &txa));
	ASSERT_EQ(0, llmp_client_connect_tcp(a->cp, NULL, a->port, NULL, &rxa));
	ASSERT_EQ(0, llmp_client_connect_tcp(b.cp, NULL, b.port, NULL, &txb));
	ASSERT_EQ(0, llmp_client_connect_tcp(b.cp, NULL, b.port, NULL, &rxb));
	ASSERT_TRUE(llmp_node_wait_links(a, 1, 10000));
	ASSERT_EQ(0, send_n(txa, "a0 ", RN));
	ASSERT_EQ(0, send_n(txb, "b0 ", RN));
	memset(seen, 0, sizeof(seen));
	ASSERT_EQ(RN, collect(rxb, "a0 ", seen, RN, RN));
	memset(seen, 0, sizeof(seen));
	ASSERT_EQ(RN, collect(rxa, "b0 ", seen, RN, RN));

	/* Cut: A's link breaks and comes back through the relay by itself. */
	atomic_store_explicit(&rl.cut, 1, memory_order_relaxed);
	int64_t end = llmp_test_now_ms() + 10000;
	while (atomic_load_explicit(&a->dials, memory_order_relaxed) < 2 && llmp_test_now_ms() < end)
		usleep(5000);
	ASSERT_LE(2, atomic_load_explicit(&a->dials, memory_order_relaxed)) TH_LOG("%s", b2b_log);
	ASSERT_TRUE(llmp_node_wait_links(a, 1, 10000)) TH_LOG("%s", b2b_log);
	ASSERT_TRUE(wait_log("the dialler is back; resuming", 10000)) TH_LOG("%s", b2b_log);
	ASSERT_TRUE(llmp_node_wait_links(&b, 1, 10000)) TH_LOG("%s", b2b_log);
	if (half)
		ASSERT_TRUE(log_has("came back on a new connection")) TH_LOG("%s", b2b_log);
	ASSERT_EQ(0, send_n(txa, "a1 ", RN));
	ASSERT_EQ(0, send_n(txb, "b1 ", RN));
	/* B: every a1 once. */
	memset(seen, 0, sizeof(seen));
	ASSERT_EQ(RN, collect(rxb, "a1 ", seen, RN, RN));
	/* A: every b1 once (and no b0 again: checked below). */
	memset(seen, 0, sizeof(seen));
	ASSERT_EQ(RN, collect(rxa, "b1 ", seen, RN, RN));
	ASSERT_EQ(-1, first_not_once(seen, RN)) TH_LOG("b1: message %d", first_not_once(seen, RN));
	usleep(300000);
	struct llmp_msg_view v;
	while (llmp_client_recv(rxb, &v) == 1)
		ASSERT_FALSE(v.tag == TAG && (v.flags & LLMP_FLAG_FROM_B2B))
			TH_LOG("B got another: %.*s", (int)v.len, (const char *)v.buf);
	while (llmp_client_recv(rxa, &v) == 1)
		ASSERT_FALSE(v.tag == TAG && (v.flags & LLMP_FLAG_FROM_B2B))
			TH_LOG("A got another: %.*s", (int)v.len, (const char *)v.buf);
	llmp_client_free(txa);
	llmp_client_free(rxa);
	llmp_client_free(txb);
	llmp_client_free(rxb);
	ASSERT_EQ(0, llmp_node_stop(a));
	llmp_node_fini(&b);
	atomic_store_explicit(&rl.stop, 1, memory_order_relaxed);
	pthread_join(rl.t, NULL);
	close(rl.ls);
}

TEST_F_TIMEOUT(link, redial_after_connection_reset, 60)
{
	reset_case(_metadata, self, false);
}

/*
 * The same when the accepting broker does not see the old connection end
 * (half-open): the new connection with the same token takes the old link's
 * reader, and the old link is closed.
 */
TEST_F_TIMEOUT(link, redial_after_half_open_connection, 60)
{
	reset_case(_metadata, self, true);
}

/* ---- three brokers in three network namespaces -------------------------------------- */

static int sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int sh(const char *fmt, ...)
{
	char cmd[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	strncat(cmd, " >/dev/null 2>&1", sizeof(cmd) - strlen(cmd) - 1);
	return system(cmd);
}

static int enter_ns(const char *name)
{
	char path[128];
	int fd, r;

	snprintf(path, sizeof(path), "/var/run/netns/%s", name);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	r = setns(fd, CLONE_NEWNET);
	close(fd);
	return r;
}

#define NS_PORT 7411
#define NS_MSGS 20

/*
 * Brokers A, B, C in namespaces joined pairwise by veth links (A-B, A-C,
 * B-C), linked B->A, C->A, C->B over those addresses; one client process
 * per namespace sends NS_MSGS messages and must receive all 3 * NS_MSGS
 * exactly once.
 */
TEST_F_TIMEOUT(link, netns_triangle, 90)
{
	static const char *const addr[3][3] = {
		/* addr[i][j]: how namespace j reaches broker i */
		{ NULL, "10.251.1.1", "10.251.2.1" },
		{ "10.251.1.2", NULL, "10.251.3.2" },
		{ "10.251.2.3", "10.251.3.3", NULL },
	};
	char ns[3][32];
	pid_t bro[3] = { 0, 0, 0 }, cli[3];
	int pid = getpid() % 100000, st;

	if (!self->ok)
		SKIP(return, "neither POSIX nor System V shared memory works here");
	if (geteuid() != 0 || sh("ip netns list") != 0)
		SKIP(return, "needs root and ip(8) for network namespaces");
	for (int i = 0; i < 3; i++)
		snprintf(ns[i], sizeof(ns[i]), "llmp%d%c", pid, 'a' + i);
	/* Namespaces, loopback, and a veth pair per edge. */
	int fail = 0;
	for (int i = 0; i < 3; i++)
		fail |= sh("ip netns add %s", ns[i]) || sh("ip -n %s link set lo up", ns[i]);
	static const int edge[3][2] = { { 0, 1 }, { 0, 2 }, { 1, 2 } };
	static const char *const net[3] = { "10.251.1", "10.251.2", "10.251.3" };
	for (int e = 0; e < 3 && !fail; e++) {
		int a = edge[e][0], b = edge[e][1];
		char va[16], vb[16];

		snprintf(va, sizeof(va), "v%d%d%d", pid, a, b);
		snprintf(vb, sizeof(vb), "v%d%d%d", pid, b, a);
		fail |= sh("ip link add %s type veth peer name %s", va, vb) ||
			sh("ip link set %s netns %s", va, ns[a]) || sh("ip link set %s netns %s", vb, ns[b]) ||
			sh("ip -n %s addr add %s.%d/24 dev %s", ns[a], net[e], a + 1, va) ||
			sh("ip -n %s addr add %s.%d/24 dev %s", ns[b], net[e], b + 1, vb) ||
			sh("ip -n %s link set %s up", ns[a], va) || sh("ip -n %s link set %s up", ns[b], vb);
	}
	if (fail) {
		for (int i = 0; i < 3; i++)
			sh("ip netns del %s", ns[i]);
		SKIP(return, "cannot set up network namespaces and veth pairs here");
	}

	/* Brokers: A first; B links to A; C links to A and B. */
	for (int i = 0; i < 3 && !fail; i++) {
		int pfd[2];
		char ok;

		ASSERT_EQ(0, pipe(pfd));
		bro[i] = fork();
		ASSERT_LE(0, bro[i]);
		if (bro[i] == 0) {
			struct llmp_provider *p;
			struct llmp_broker *b;
			struct llmp_tcp_listener *l;
			struct llmp_loop *lp;
			struct llmp_loop_opts oo = { .struct_size = sizeof(oo), .handle_signals = true };

			close(pfd[0]);
			if (enter_ns(ns[i]) < 0 || llmp_provider_new(LLMP_SHMEM_POSIX, &p) < 0 ||
			    llmp_broker_new(p, NULL, &b) < 0 ||
			    llmp_tcp_listen(b, "0.0.0.0", NS_PORT, NULL, &l) < 0 ||
			    llmp_loop_new(b, &oo, &lp) < 0 || llmp_loop_add_listener(lp, l) < 0 ||
			    llmp_loop_b2b_allow(lp, "10.251.0.0/16") < 0)
				_exit(2);
			/* Remote peers must be allowed (issue 8, finding 11); loopback is not enough. */
			for (int j = 0; j < i; j++) {
				if (llmp_loop_connect_b2b(lp, addr[j][i], NS_PORT) < 0)
					_exit(3);
			}
			if (write(pfd[1], "k", 1) != 1)
				_exit(2);
			int r = llmp_loop_run(lp);
			llmp_loop_free(lp);
			llmp_tcp_listener_free(l);
			llmp_broker_free(b);
			llmp_provider_free(p);
			_exit(r == 0 ? 0 : 4);
		}
		close(pfd[1]);
		if (read(pfd[0], &ok, 1) != 1)
			fail = 1;
		close(pfd[0]);
	}
	/* Clients: one per namespace, through that namespace's loopback. */
	for (int i = 0; i < 3 && !fail; i++) {
		cli[i] = fork();
		ASSERT_LE(0, cli[i]);
		if (cli[i] == 0) {
			struct llmp_provider *p;
			struct llmp_client *c;
			struct llmp_msg_view v;
			int seen[3][NS_MSGS], got = 0, from, k;
			char m[32];

			memset(seen, 0, sizeof(seen));
			if (enter_ns(ns[i]) < 0 || llmp_provider_new(LLMP_SHMEM_POSIX, &p) < 0 ||
			    llmp_client_connect_tcp(p, NULL, NS_PORT, NULL, &c) < 0)
				_exit(10);
			for (int n = 0; n < NS_MSGS; n++) {
				snprintf(m, sizeof(m), "ns%d m%d", i, n);
				if (llmp_client_send(c, 0x51300321, 0, m, strlen(m)) < 0)
					_exit(11);
			}
			while (got < 3 * NS_MSGS && llmp_client_recv_wait(c, &v, 20000) == 1) {
				char t[32];

				if (v.tag != 0x51300321 || v.len >= sizeof(t))
					continue;
				memcpy(t, v.buf, v.len);
				t[v.len] = 0;
				if (sscanf(t, "ns%d m%d", &from, &k) != 2 || from < 0 || from > 2 ||
				    k < 0 || k >= NS_MSGS)
					_exit(12);
				if (seen[from][k]++)
					_exit(13); /* duplicate */
				if ((from != i) != !!(v.flags & LLMP_FLAG_FROM_B2B))
					_exit(14);
				got++;
			}
			/* A little longer: nothing else may arrive. */
			if (got == 3 * NS_MSGS && llmp_client_recv_wait(c, &v, 300) == 1 &&
			    v.tag == 0x51300321)
				_exit(13);
			llmp_client_free(c);
			llmp_provider_free(p);
			_exit(got == 3 * NS_MSGS ? 0 : 15);
		}
	}
	int cst[3] = { -1, -1, -1 };
	for (int i = 0; i < 3 && !fail; i++)
		waitpid(cli[i], &cst[i], 0);
	for (int i = 0; i < 3; i++) {
		if (bro[i] > 0) {
			kill(bro[i], SIGTERM);
			waitpid(bro[i], &st, 0);
			EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) TH_LOG("broker %d: status 0x%x", i, st);
		}
	}
	for (int i = 0; i < 3; i++)
		sh("ip netns del %s", ns[i]);
	ASSERT_EQ(0, fail) TH_LOG("a broker did not start");
	for (int i = 0; i < 3; i++) {
		ASSERT_TRUE(WIFEXITED(cst[i]));
		ASSERT_EQ(0, WEXITSTATUS(cst[i])) TH_LOG("client in namespace %d (10 connect, 12 bad, 13 duplicate, 14 flag, 15 missing)", i);
	}
}

#if defined(LLMP_HAVE_ZSTD) && defined(LLMP_HAVE_ZLIB)
/* ---- codec figures -------------------------------------------------------------- */

#define FIG_MSGS 3000

static double secs_since(const struct timespec *t0)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)(t.tv_sec - t0->tv_sec) + (double)(t.tv_nsec - t0->tv_nsec) / 1e9;
}

/* A fuzzing-like corpus: eight seeds (text and binary), each input a mutated copy. */
static size_t make_input(uint8_t *out, size_t cap, uint64_t *rng, const uint8_t seeds[8][4096])
{
	const uint8_t *sd = seeds[llmp_test_rand(rng) % 8];
	size_t len = 64 + llmp_test_rand(rng) % (cap - 64);
	unsigned muts = 1 + llmp_test_rand(rng) % 8;

	memcpy(out, sd, len);
	for (unsigned m = 0; m < muts; m++) {
		size_t at = llmp_test_rand(rng) % len;

		switch (llmp_test_rand(rng) % 4) {
		case 0: /* bit flip */
			out[at] ^= (uint8_t)(1u << (llmp_test_rand(rng) % 8));
			break;
		case 1: /* interesting byte */
			out[at] = (uint8_t[]){ 0, 0xff, 0x7f, 0x80, 0x41 }[llmp_test_rand(rng) % 5];
			break;
		case 2: { /* splice a chunk of another seed */
			size_t n = 1 + llmp_test_rand(rng) % 64;

			if (at + n > len)
				n = len - at;
			memcpy(out + at, seeds[llmp_test_rand(rng) % 8] + at, n);
			break;
		}
		default: /* random bytes */
			for (size_t i = at; i < at + 8 && i < len; i++)
				out[i] = (uint8_t)llmp_test_rand(rng);
		}
	}
	return len;
}

/*
 * Deflate (level 1, raw, as the links send it) against zstd (level 1, one
 * frame per message, a reused context, as the links send it) on 3000
 * mutated fuzzing inputs of 64 bytes to 4 KiB.  Every message must come
 * back byte for byte; the ratio and the speed are printed as figures, not
 * asserted.
 */
TEST(codec_figures)
{
	static uint8_t seeds[8][4096], in[4096], z[8192], back[4096];
	uint64_t rng = 0x1234567, in_b = 0, df_b = 0, zs_b = 0, df_pol = 0, zs_pol = 0, pol_in = 0;
	double t_df = 0, t_inf = 0, t_zs = 0, t_unz = 0;
	ZSTD_CCtx *cc = ZSTD_createCCtx();
	ZSTD_DCtx *dc = ZSTD_createDCtx();

	z_stream ds;

	ASSERT_NE(NULL, cc);
	ASSERT_NE(NULL, dc);
	memset(&ds, 0, sizeof(ds));
	ASSERT_EQ(Z_OK, deflateInit2(&ds, 1, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY));
	for (int k = 0; k < 8; k++) {
		if (k < 4) {
			/* text: a request with headers and a JSON-ish body */
			size_t n = 0;
			while (n < sizeof(seeds[k]) - 64)
				n += (size_t)snprintf((char *)seeds[k] + n, 64, "GET /a%d?id=%u HTTP/1.1\r\n"
						      "X-Key: {\"v\":%u}\r\n", k,
						      (unsigned)(llmp_test_rand(&rng) % 1000),
						      (unsigned)(llmp_test_rand(&rng) % 100));
		} else {
			/* binary: 16-byte records, a magic, a small counter, some entropy */
			for (size_t i = 0; i < sizeof(seeds[k]); i += 16) {
				memcpy(seeds[k] + i, "\x89PNG", 4);
				seeds[k][i + 4] = (uint8_t)(i / 16);
				for (int j = 5; j < 16; j++)
					seeds[k][i + j] = j < 9 ? (uint8_t)llmp_test_rand(&rng) : 0;
			}
		}
	}
	for (int m = 0; m < FIG_MSGS; m++) {
		size_t len = make_input(in, sizeof(in), &rng, (const uint8_t (*)[4096])seeds);
		struct timespec t0;
		z_stream zs;
		size_t zn;

		in_b += len;
		/* deflate, as queue_msg() does it (one stream, reset per message) */
		clock_gettime(CLOCK_MONOTONIC, &t0);
		ASSERT_EQ(Z_OK, deflateReset(&ds));
		ds.next_in = in;
		ds.avail_in = (uInt)len;
		ds.next_out = z;
		ds.avail_out = sizeof(z);
		ASSERT_EQ(Z_STREAM_END, deflate(&ds, Z_FINISH));
		zn = ds.total_out;
		t_df += secs_since(&t0);
		df_b += zn;
		clock_gettime(CLOCK_MONOTONIC, &t0);
		memset(&zs, 0, sizeof(zs));
		ASSERT_EQ(Z_OK, inflateInit2(&zs, -15));
		zs.next_in = z;
		zs.avail_in = (uInt)zn;
		zs.next_out = back;
		zs.avail_out = sizeof(back);
		ASSERT_EQ(Z_STREAM_END, inflate(&zs, Z_FINISH));
		inflateEnd(&zs);
		t_inf += secs_since(&t0);
		ASSERT_EQ(len, zs.total_out);
		ASSERT_EQ(0, memcmp(in, back, len));
		if (len >= 1024)
			df_pol += zn < len ? zn : len;
		/* zstd, as queue_msg() and unzstd() do it */
		clock_gettime(CLOCK_MONOTONIC, &t0);
		size_t zz = ZSTD_compressCCtx(cc, z, sizeof(z), in, len, 1);
		t_zs += secs_since(&t0);
		ASSERT_FALSE(ZSTD_isError(zz));
		zs_b += zz;
		clock_gettime(CLOCK_MONOTONIC, &t0);
		size_t bn = ZSTD_decompressDCtx(dc, back, sizeof(back), z, zz);
		t_unz += secs_since(&t0);
		ASSERT_EQ(len, bn);
		ASSERT_EQ(0, memcmp(in, back, len));
		if (len >= 256)
			zs_pol += zz < len ? zz : len;
		if (len < 1024)
			df_pol += len;
		if (len < 256)
			zs_pol += len;
		pol_in += len;
	}
	ZSTD_freeCCtx(cc);
	ZSTD_freeDCtx(dc);
	deflateEnd(&ds);
	ASSERT_EQ(in_b, pol_in);
	printf("# figure: corpus %d mutated inputs, %.1f KiB (64 B to 4 KiB)\n", FIG_MSGS,
	       (double)in_b / 1024);
	printf("# figure: deflate-1 every message: %.1f%% of the bytes, compress %.0f MB/s, "
	       "inflate %.0f MB/s\n", 100.0 * (double)df_b / (double)in_b,
	       (double)in_b / 1e6 / t_df, (double)in_b / 1e6 / t_inf);
	printf("# figure: zstd-1 every message: %.1f%% of the bytes, compress %.0f MB/s, "
	       "decompress %.0f MB/s\n", 100.0 * (double)zs_b / (double)in_b,
	       (double)in_b / 1e6 / t_zs, (double)in_b / 1e6 / t_unz);
	printf("# figure: on the wire with the links' thresholds: deflate (>= 1 KiB) %.1f%%, "
	       "zstd (>= 256 B) %.1f%%\n", 100.0 * (double)df_pol / (double)in_b,
	       100.0 * (double)zs_pol / (double)in_b);
	fflush(stdout);
}
#else
/* The figures compare zlib's deflate with libzstd: both must be built in. */
TEST(codec_figures)
{
#ifndef LLMP_HAVE_ZLIB
	SKIP(return, "built without zlib: no deflate figures");
#else
	SKIP(return, "built without libzstd: no zstd figures");
#endif
}
#endif

TEST_HARNESS_MAIN
