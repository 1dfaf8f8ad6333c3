// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * The campaign secret (issue 8, "Authentication, once"; Documentation/
 * security.rst): SHA-256 and HMAC-SHA256 against the published vectors, the
 * secret file's checks, registration and B2B links with the right, a wrong
 * and no secret, a rogue broker that cannot prove it, and hostile peers
 * that skip, repeat, forge or replay steps of the handshake.  After every
 * hostile case an honest client still registers and its messages arrive.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include "kselftest_harness.h"
#include "llmp_node.h"
#include "llmp/auth.h"
/* The library's own implementation, compiled in to check it against the vectors. */
#include "sha256.c"

#define TAG 0x5ec7e7u
#define LLMP_SECRET_MAX_TEST 4097 /* one byte over the library's limit */

#define SECRET "correct horse battery staple 42"

/* ---- SHA-256 / HMAC-SHA256 vectors (FIPS 180-4 examples, RFC 4231) --------------------- */

static void hex(const uint8_t *b, size_t n, char *out)
{
	for (size_t i = 0; i < n; i++)
		sprintf(out + 2 * i, "%02x", b[i]);
}

TEST(sha256_vectors)
{
	static const struct { const char *msg; const char *want; } v[] = {
		{ "", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" },
		{ "abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad" },
		{ "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
		  "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1" },
	};
	uint8_t d[32];
	char h[65];

	for (unsigned i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		llmp_sha256(v[i].msg, strlen(v[i].msg), d);
		hex(d, 32, h);
		EXPECT_STREQ(v[i].want, h);
	}
	/* A million 'a', fed in uneven pieces (the partial-block path). */
	struct llmp_sha256 s;
	char a[997];

	memset(a, 'a', sizeof(a));
	llmp_sha256_init(&s);
	for (size_t left = 1000000; left;) {
		size_t n = left < sizeof(a) ? left : sizeof(a);

		llmp_sha256_update(&s, a, n);
		left -= n;
	}
	llmp_sha256_final(&s, d);
	hex(d, 32, h);
	EXPECT_STREQ("cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0", h);
}

TEST(hmac_sha256_vectors)
{
	uint8_t k1[20], k6[131], d[32];
	const char *m1 = "Hi There";
	const char *m6 = "Test Using Larger Than Block-Size Key - Hash Key First";
	const void *part[2];
	size_t len[2];
	char h[65];

	memset(k1, 0x0b, sizeof(k1));
	memset(k6, 0xaa, sizeof(k6));
	/* RFC 4231 case 1, the message in two parts. */
	part[0] = m1, len[0] = 3, part[1] = m1 + 3, len[1] = strlen(m1) - 3;
	llmp_hmac_sha256(k1, sizeof(k1), 2, part, len, d);
	hex(d, 32, h);
	EXPECT_STREQ("b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7", h);
	/* Case 2: a key shorter than the block. */
	part[0] = "what do ya want for nothing?", len[0] = 28;
	llmp_hmac_sha256((const uint8_t *)"Jefe", 4, 1, part, len, d);
	hex(d, 32, h);
	EXPECT_STREQ("5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843", h);
	/* Case 6: a key longer than the block is hashed first. */
	part[0] = m6, len[0] = strlen(m6);
	llmp_hmac_sha256(k6, sizeof(k6), 1, part, len, d);
	hex(d, 32, h);
	EXPECT_STREQ("60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54", h);
	EXPECT_EQ(0, llmp_memeq_ct(k1, k1, sizeof(k1)));
	k6[0] = 0x0b;
	EXPECT_NE(0, llmp_memeq_ct(k1, k6, sizeof(k1)));
}

/* ---- secret files ------------------------------------------------------------------- */

/* Write a file in dir with these bytes and mode; its path in out. */
static int put_file(const char *dir, const char *name, const void *data, size_t len, mode_t mode,
		    char *out, size_t cap)
{
	int fd;

	snprintf(out, cap, "%s/%s", dir, name);
	unlink(out);
	fd = open(out, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0)
		return -1;
	if (write(fd, data, len) != (ssize_t)len || fchmod(fd, mode) < 0) {
		close(fd);
		return -1;
	}
	return close(fd);
}

FIXTURE(files)
{
	char dir[64];
	struct llmp_provider *p;
	struct llmp_broker *b;
};

FIXTURE_SETUP(files)
{
	strcpy(self->dir, "/tmp/llmp-auth-XXXXXX");
	ASSERT_NE(NULL, mkdtemp(self->dir));
	ASSERT_EQ(0, llmp_provider_new(LLMP_SHMEM_MEMFD, &self->p));
	ASSERT_EQ(0, llmp_broker_new(self->p, NULL, &self->b));
}

FIXTURE_TEARDOWN(files)
{
	char cmd[128];

	llmp_broker_free(self->b);
	llmp_provider_free(self->p);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", self->dir);
	if (system(cmd) != 0)
		TH_LOG("cannot remove %s", self->dir);
}

/* Every unsafe or unusable secret file is refused with its own errno and a reason. */
TEST_F(files, unsafe_or_unusable_files_are_refused)
{
	char path[128], big[LLMP_SECRET_MAX_TEST];
	struct { const char *name; const char *data; size_t len; mode_t mode; int err; } c[] = {
		{ "world", SECRET, sizeof(SECRET) - 1, 0644, -EPERM },
		{ "group", SECRET, sizeof(SECRET) - 1, 0640, -EPERM },
		{ "short", "only15bytes....\n\n", 17, 0600, -EINVAL },
		{ "blank", "                    \n", 21, 0600, -EINVAL },
		{ "big", big, sizeof(big), 0600, -EFBIG },
		{ "good", SECRET, sizeof(SECRET) - 1, 0600, 0 },
		{ "owner_only_ro", SECRET, sizeof(SECRET) - 1, 0400, 0 },
	};

	memset(big, 'x', sizeof(big));
	for (unsigned i = 0; i < sizeof(c) / sizeof(c[0]); i++) {
		ASSERT_EQ(0, put_file(self->dir, c[i].name, c[i].data, c[i].len, c[i].mode, path,
				      sizeof(path)));
		EXPECT_EQ(c[i].err, llmp_broker_set_secret(self->b, path, 0)) TH_LOG("%s", c[i].name);
	}
	EXPECT_EQ(-ENOENT, llmp_broker_set_secret(self->b, "/nonexistent/llmp-secret", 0));
	EXPECT_EQ(-EINVAL, llmp_broker_set_secret(self->b, self->dir, 0)); /* a directory */
	EXPECT_EQ(-EINVAL, llmp_broker_set_secret(self->b, "/dev/null", 0)); /* not regular */
	EXPECT_EQ(-EINVAL, llmp_broker_set_secret(self->b, path, 0x80)); /* unknown flag */
	EXPECT_NE(NULL, strstr(llmp_strerror_last(), "unknown flags"));
	/* A file of another user (not root): refused even with a safe mode. */
	if (geteuid() == 0) {
		ASSERT_EQ(0, put_file(self->dir, "nobody", SECRET, sizeof(SECRET) - 1, 0600, path,
				      sizeof(path)));
		ASSERT_EQ(0, chown(path, 65534, 65534));
		EXPECT_EQ(-EPERM, llmp_broker_set_secret(self->b, path, 0));
		EXPECT_NE(NULL, strstr(llmp_strerror_last(), "belongs to uid 65534"));
	}
	/* NULL turns it off. */
	EXPECT_EQ(0, llmp_broker_set_secret(self->b, NULL, 0));
}

/* ---- registration ------------------------------------------------------------------- */

static char auth_log[32768];
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;

static void log_cb(void *ctx, enum llmp_log_level level, const char *msg)
{
	pthread_mutex_lock(&log_lock);
	size_t n = strlen(auth_log);

	if (n + strlen(msg) + 2 < sizeof(auth_log))
		snprintf(auth_log + n, sizeof(auth_log) - n, "%s\n", msg);
	pthread_mutex_unlock(&log_lock);
}

static bool log_has(const char *s)
{
	pthread_mutex_lock(&log_lock);
	bool r = strstr(auth_log, s) != NULL;

	pthread_mutex_unlock(&log_lock);
	return r;
}

static void log_clear(void)
{
	pthread_mutex_lock(&log_lock);
	auth_log[0] = 0;
	pthread_mutex_unlock(&log_lock);
}

FIXTURE(reg)
{
	char dir[64], good[128], wrong[128];
	struct llmp_node n;
	struct llmp_client *rx; /* an honest receiver registered with the secret */
};

FIXTURE_VARIANT(reg)
{
	unsigned flags;
};

FIXTURE_VARIANT_ADD(reg, libafl_compat) { .flags = 0 };
FIXTURE_VARIANT_ADD(reg, required) { .flags = LLMP_SECRET_REQUIRED };

/* A client of the node with the secret in path (NULL: none): 0 or the connect error. */
static int connect_as(struct llmp_node *n, const char *path, struct llmp_client **c)
{
	int ret;

	if (path)
		setenv(LLMP_SECRET_ENV, path, 1);
	else
		unsetenv(LLMP_SECRET_ENV);
	ret = llmp_client_connect_tcp(n->cp, "127.0.0.1", n->port, NULL, c);
	unsetenv(LLMP_SECRET_ENV);
	return ret;
}

/* Send one message from a fresh honest client to rx: 0 when its bytes arrived intact. */
static int honest_roundtrip(struct llmp_node *n, const char *good, struct llmp_client *rx)
{
	static uint32_t seq;
	struct llmp_client *tx;
	struct llmp_msg_view v;
	char msg[64];
	int k = snprintf(msg, sizeof(msg), "honest message %u", ++seq);

	if (connect_as(n, good, &tx) < 0)
		return -1;
	if (llmp_client_send(tx, TAG, 0, msg, (size_t)k) < 0) {
		llmp_client_free(tx);
		return -2;
	}
	for (int64_t end = llmp_test_now_ms() + 10000; llmp_test_now_ms() < end;) {
		if (llmp_client_recv_wait(rx, &v, 100) != 1)
			continue;
		if (v.tag == TAG && v.len == (size_t)k && !memcmp(v.buf, msg, (size_t)k)) {
			llmp_client_free(tx);
			return 0;
		}
	}
	llmp_client_free(tx);
	return -3;
}

FIXTURE_SETUP(reg)
{
	strcpy(self->dir, "/tmp/llmp-auth-XXXXXX");
	ASSERT_NE(NULL, mkdtemp(self->dir));
	/* The client's copy ends with a newline, the broker's not: the same secret. */
	ASSERT_EQ(0, put_file(self->dir, "good", SECRET "\n", sizeof(SECRET), 0600, self->good,
			      sizeof(self->good)));
	ASSERT_EQ(0, put_file(self->dir, "wrong", "a different secret, 32 bytes ...", 32, 0600,
			      self->wrong, sizeof(self->wrong)));
	char broker_copy[128];

	ASSERT_EQ(0, put_file(self->dir, "broker", SECRET, sizeof(SECRET) - 1, 0600, broker_copy,
			      sizeof(broker_copy)));
	log_clear();
	llmp_set_log(log_cb, NULL, LLMP_LOG_INFO);
	ASSERT_EQ(0, llmp_node_init(&self->n, LLMP_SHMEM_MEMFD, 0, NULL, NULL));
	ASSERT_EQ(0, llmp_broker_set_secret(self->n.b, broker_copy, variant->flags));
	ASSERT_EQ(0, llmp_node_start(&self->n));
	ASSERT_EQ(0, connect_as(&self->n, self->good, &self->rx));
}

FIXTURE_TEARDOWN(reg)
{
	char cmd[128];

	if (self->rx)
		llmp_client_free(self->rx);
	llmp_node_fini(&self->n);
	llmp_set_log(NULL, NULL, LLMP_LOG_WARN);
	unsetenv(LLMP_SECRET_ENV);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", self->dir);
	if (system(cmd) != 0)
		TH_LOG("cannot remove %s", self->dir);
}

/* The right secret registers and its messages arrive; a wrong one is refused, and logged. */
TEST_F(reg, right_secret_registers_wrong_one_is_refused)
{
	struct llmp_client *c = NULL;

	ASSERT_EQ(0, honest_roundtrip(&self->n, self->good, self->rx));
	/* The client sees the broker's proof fail first: it never sends its own. */
	EXPECT_EQ(-EACCES, connect_as(&self->n, self->wrong, &c));
	EXPECT_EQ(NULL, c);
	EXPECT_NE(NULL, strstr(llmp_strerror_last(), "does not know the campaign secret"));
	ASSERT_EQ(0, honest_roundtrip(&self->n, self->good, self->rx));
}

/*
 * Without a secret: served from loopback for LibAFL compatibility, unless
 * the broker requires it; either way the answer is clear.
 */
TEST_F(reg, no_secret_from_loopback)
{
	struct llmp_client *c = NULL;
	int ret = connect_as(&self->n, NULL, &c);

	if (variant->flags & LLMP_SECRET_REQUIRED) {
		EXPECT_EQ(-ECONNREFUSED, ret);
		EXPECT_NE(NULL, strstr(llmp_strerror_last(), "requires the campaign secret"));
		EXPECT_EQ(NULL, c);
	} else {
		ASSERT_EQ(0, ret);
		ASSERT_EQ(0, llmp_client_send(c, TAG, 0, "libafl-like", 11));
		llmp_client_free(c);
	}
	ASSERT_EQ(0, honest_roundtrip(&self->n, self->good, self->rx));
}

/* An unusable LLMP_SECRET_FILE fails the connect: never a silent fallback to no secret. */
TEST_F(reg, unusable_secret_env_fails_closed)
{
	struct llmp_client *c = NULL;
	char path[128];

	ASSERT_EQ(0, put_file(self->dir, "loose", SECRET, sizeof(SECRET) - 1, 0644, path,
			      sizeof(path)));
	EXPECT_EQ(-EPERM, connect_as(&self->n, path, &c));
	EXPECT_NE(NULL, strstr(llmp_strerror_last(), LLMP_SECRET_ENV));
	EXPECT_EQ(-ENOENT, connect_as(&self->n, "/nonexistent/secret", &c));
	EXPECT_EQ(NULL, c);
	ASSERT_EQ(0, honest_roundtrip(&self->n, self->good, self->rx));
}

/* ---- hostile peers, speaking the handshake by hand ------------------------------------ */

static int send_frame(int fd, const uint8_t *body, size_t n)
{
	uint8_t f[256];

	llmp_wire_put_len(f, (uint32_t)n);
	memcpy(f + 4, body, n);
	return send(fd, f, 4 + n, MSG_NOSIGNAL) == (ssize_t)(4 + n) ? 0 : -1;
}

/* One frame into buf: its length, or -1 (closed, timeout). */
static int recv_frame(int fd, uint8_t *buf, uint32_t cap)
{
	uint32_t len;

	if (recv(fd, buf, 4, MSG_WAITALL) != 4 || llmp_wire_get_len(buf, cap, &len) < 0)
		return -1;
	return recv(fd, buf, len, MSG_WAITALL) == (ssize_t)len ? (int)len : -1;
}

/* Closed by the peer (EOF or reset) within 5 s? */
static bool closed(int fd)
{
	uint8_t b[512];

	for (;;) {
		ssize_t n = recv(fd, b, sizeof(b), 0);

		if (n == 0 || (n < 0 && errno == ECONNRESET))
			return true;
		if (n < 0)
			return false; /* timeout */
	}
}

/* A connection with its broker hello read (5 s timeouts), or -1. */
static int dial_hello(uint16_t port)
{
	struct timeval tv = { .tv_sec = 5 };
	uint8_t buf[4096];
	int fd = llmp_test_tcp_dial(port);

	if (fd < 0)
		return -1;
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	if (recv_frame(fd, buf, sizeof(buf)) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

/*
 * The proofs as Documentation/security.rst defines them, written again here
 * (HMAC-SHA256 keyed with SHA-256 of the secret, over a role tag and both
 * nonces), so the test checks the documented protocol, not the library
 * against itself.
 */
static void llmp_auth_proof(const uint8_t *key, bool broker, const uint8_t *nc, const uint8_t *nb,
			    uint8_t *out)
{
	const char *tag = broker ? "llmp-auth-v1 broker" : "llmp-auth-v1 client";
	const void *part[3] = { tag, nc, nb };
	const size_t len[3] = { strlen(tag), 32, 32 };

	llmp_hmac_sha256(key, 32, 3, part, len, out);
}

/* varint(0x4C41 / 0x4C42) then 32 bytes. */
static size_t auth_body(uint8_t *out, uint32_t type, const uint8_t *a)
{
	out[0] = (uint8_t)(0x80 | (type & 0x7f));
	out[1] = (uint8_t)(0x80 | ((type >> 7) & 0x7f));
	out[2] = (uint8_t)(type >> 14);
	memcpy(out + 3, a, 32);
	return 35;
}

/* The broker's nonce from a challenge frame, its proof checked with key: 0 or -1. */
static int take_challenge(int fd, const uint8_t *key, const uint8_t *nc, uint8_t *nb)
{
	uint8_t buf[256], want[32];
	int n = recv_frame(fd, buf, sizeof(buf));

	if (n != 3 + 64 || buf[0] != 0xc1)
		return -1;
	memcpy(nb, buf + 3, 32);
	llmp_auth_proof(key, true, nc, nb, want);
	return memcmp(want, buf + 35, 32) ? -1 : 0;
}

/*
 * Out-of-order and forged handshakes are dropped or refused, none of them
 * registers anything, a replayed proof does not pass on a new connection,
 * and an honest client is served after each.
 */
TEST_F(reg, hostile_handshakes)
{
	uint8_t key[32], nc[32], nb[32], proof[32], body[64], buf[512];
	unsigned long reg0;
	int fd;

	llmp_sha256(SECRET, sizeof(SECRET) - 1, key);
	memset(nc, 0x11, sizeof(nc));

	/* 1. A proof without a challenge: dropped. */
	ASSERT_LE(0, fd = dial_hello(self->n.port));
	ASSERT_EQ(0, send_frame(fd, body, auth_body(body, 0x4C42, nc)));
	EXPECT_TRUE(closed(fd));
	close(fd);

	/* 2. Two hellos: dropped at the second. */
	ASSERT_LE(0, fd = dial_hello(self->n.port));
	ASSERT_EQ(0, send_frame(fd, body, auth_body(body, 0x4C41, nc)));
	ASSERT_EQ(0, take_challenge(fd, key, nc, nb));
	ASSERT_EQ(0, send_frame(fd, body, auth_body(body, 0x4C41, nc)));
	EXPECT_TRUE(closed(fd));
	close(fd);

	/* 3. A truncated hello (the nonce cut short): dropped. */
	ASSERT_LE(0, fd = dial_hello(self->n.port));
	ASSERT_EQ(0, send_frame(fd, body, auth_body(body, 0x4C41, nc) - 5));
	EXPECT_TRUE(closed(fd));
	close(fd);

	/* 4. A request between the challenge and the proof: refused with an Error. */
	ASSERT_LE(0, fd = dial_hello(self->n.port));
	ASSERT_EQ(0, send_frame(fd, body, auth_body(body, 0x4C41, nc)));
	ASSERT_EQ(0, take_challenge(fd, key, nc, nb));
	struct llmp_wire_msg q = { .type = LLMP_TCP_REQ_CLIENT_QUIT, .id = 1 }, r;
	int qn = llmp_wire_encode_req(&q, body, sizeof(body));

	ASSERT_LT(0, qn);
	ASSERT_EQ(0, send_frame(fd, body, (size_t)qn));
	int rn = recv_frame(fd, buf, sizeof(buf));

	ASSERT_LT(0, rn);
	ASSERT_EQ(0, llmp_wire_decode_resp(buf, (size_t)rn, &r));
	EXPECT_EQ(LLMP_TCP_RESP_ERROR, r.type);
	EXPECT_TRUE(closed(fd));
	close(fd);

	/* 5. An honest proof, recorded... */
	ASSERT_LE(0, fd = dial_hello(self->n.port));
	ASSERT_EQ(0, send_frame(fd, body, auth_body(body, 0x4C41, nc)));
	ASSERT_EQ(0, take_challenge(fd, key, nc, nb));
	llmp_auth_proof(key, false, nc, nb, proof);
	ASSERT_EQ(0, send_frame(fd, body, auth_body(body, 0x4C42, proof)));
	close(fd);
	/* ...and replayed on a new connection with the same nonce: the broker's is new. */
	ASSERT_LE(0, fd = dial_hello(self->n.port));
	ASSERT_EQ(0, send_frame(fd, body, auth_body(body, 0x4C41, nc)));
	uint8_t nb2[32];

	ASSERT_EQ(0, take_challenge(fd, key, nc, nb2));
	EXPECT_NE(0, memcmp(nb, nb2, 32));
	ASSERT_EQ(0, send_frame(fd, body, auth_body(body, 0x4C42, proof)));
	EXPECT_TRUE(closed(fd));
	close(fd);
	for (int64_t end = llmp_test_now_ms() + 5000; !log_has("wrong proof") &&
	     llmp_test_now_ms() < end;)
		usleep(10000);
	EXPECT_TRUE(log_has("campaign secret: wrong proof"));

	/* 6. A garbage proof of the right size: closed, nothing registered. */
	for (int64_t end = llmp_test_now_ms() + 5000; atomic_load(&self->n.registered) < 1 &&
	     llmp_test_now_ms() < end;)
		usleep(10000); /* the stats (every 20 ms) have counted the setup's receiver */
	reg0 = atomic_load(&self->n.registered);
	ASSERT_EQ(1, reg0);
	ASSERT_LE(0, fd = dial_hello(self->n.port));
	ASSERT_EQ(0, send_frame(fd, body, auth_body(body, 0x4C41, nc)));
	ASSERT_EQ(0, take_challenge(fd, key, nc, nb));
	memset(proof, 0xee, sizeof(proof));
	ASSERT_EQ(0, send_frame(fd, body, auth_body(body, 0x4C42, proof)));
	EXPECT_TRUE(closed(fd));
	close(fd);
	usleep(200000); /* ten stats periods */
	EXPECT_EQ(reg0, atomic_load(&self->n.registered));
	EXPECT_TRUE(log_has("campaign secret: a proof without a challenge"));
	EXPECT_TRUE(log_has("campaign secret: a second hello"));
	EXPECT_TRUE(log_has("campaign secret: malformed hello"));

	ASSERT_EQ(0, honest_roundtrip(&self->n, self->good, self->rx));
}

/* ---- a rogue broker ------------------------------------------------------------------ */

struct rogue {
	int lfd;
	uint16_t port;
	int frames_after_challenge; /* frames the client sent after our forged challenge */
	pthread_t t;
};

/* Accept one client, send a hello, answer its secret hello with a forged proof, count what follows. */
static void *rogue_thread(void *v)
{
	struct rogue *r = v;
	struct timeval tv = { .tv_sec = 5 };
	uint8_t buf[512];
	struct llmp_wire_msg h = { .type = LLMP_TCP_RESP_BROKER_CONNECT_HELLO, .text = "rogue",
				   .text_len = 5 };
	int fd = accept(r->lfd, NULL, NULL), n;

	r->frames_after_challenge = -1;
	if (fd < 0)
		return NULL;
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	h.desc.size = 1 << 16;
	memcpy(h.desc.id, "m1:3", 4);
	n = llmp_wire_encode_resp(&h, buf, sizeof(buf));
	if (n > 0 && send_frame(fd, buf, (size_t)n) == 0 && recv_frame(fd, buf, sizeof(buf)) == 35) {
		uint8_t ch[67] = { 0xc1, 0x98, 0x01 };

		memset(ch + 3, 0x42, 64); /* a nonce and a proof made up without the secret */
		if (send_frame(fd, ch, sizeof(ch)) == 0) {
			r->frames_after_challenge = 0;
			while (recv_frame(fd, buf, sizeof(buf)) >= 0)
				r->frames_after_challenge++;
		}
	}
	close(fd);
	return NULL;
}

/* A broker that cannot prove the secret gets neither our proof nor our page. */
TEST(rogue_broker_gets_nothing)
{
	struct rogue r = { 0 };
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t al = sizeof(a);
	char dir[] = "/tmp/llmp-auth-XXXXXX", path[128], cmd[128];
	struct llmp_provider *p;
	struct llmp_client *c = NULL;

	ASSERT_NE(NULL, mkdtemp(dir));
	ASSERT_EQ(0, put_file(dir, "s", SECRET, sizeof(SECRET) - 1, 0600, path, sizeof(path)));
	r.lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	ASSERT_EQ(0, bind(r.lfd, (struct sockaddr *)&a, sizeof(a)));
	ASSERT_EQ(0, listen(r.lfd, 1));
	ASSERT_EQ(0, getsockname(r.lfd, (struct sockaddr *)&a, &al));
	ASSERT_EQ(0, pthread_create(&r.t, NULL, rogue_thread, &r));
	ASSERT_EQ(0, llmp_provider_new(LLMP_SHMEM_MEMFD, &p));
	setenv(LLMP_SECRET_ENV, path, 1);
	EXPECT_EQ(-EACCES, llmp_client_connect_tcp(p, "127.0.0.1", ntohs(a.sin_port), NULL, &c));
	unsetenv(LLMP_SECRET_ENV);
	EXPECT_NE(NULL, strstr(llmp_strerror_last(), "does not know the campaign secret"));
	pthread_join(r.t, NULL);
	EXPECT_EQ(0, r.frames_after_challenge);
	EXPECT_EQ(NULL, c);
	llmp_provider_free(p);
	close(r.lfd);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	EXPECT_EQ(0, system(cmd));
}

/* ---- broker-to-broker links ----------------------------------------------------------- */

/*
 * Two brokers with the same secret link and carry a message; a dialler with
 * another secret never links (either side refuses), and neither does one
 * whose peer has no secret.
 */
TEST(b2b_links_prove_the_secret)
{
	char dir[] = "/tmp/llmp-auth-XXXXXX", s1[128], s2[128], cmd[128];
	struct llmp_node a = { 0 }, b = { 0 }, w = { 0 }, n = { 0 };
	struct llmp_client *tx, *rx;
	struct llmp_msg_view v;
	bool got = false;

	ASSERT_NE(NULL, mkdtemp(dir));
	ASSERT_EQ(0, put_file(dir, "s1", SECRET, sizeof(SECRET) - 1, 0600, s1, sizeof(s1)));
	ASSERT_EQ(0, put_file(dir, "s2", "another campaign's secret!!", 27, 0600, s2, sizeof(s2)));
	log_clear();
	llmp_set_log(log_cb, NULL, LLMP_LOG_INFO);
	ASSERT_EQ(0, llmp_node_init(&a, LLMP_SHMEM_MEMFD, 0, NULL, NULL));
	ASSERT_EQ(0, llmp_node_init(&b, LLMP_SHMEM_MEMFD, 0, NULL, NULL));
	ASSERT_EQ(0, llmp_node_init(&w, LLMP_SHMEM_MEMFD, 0, NULL, NULL));
	ASSERT_EQ(0, llmp_node_init(&n, LLMP_SHMEM_MEMFD, 0, NULL, NULL));
	ASSERT_EQ(0, llmp_broker_set_secret(a.b, s1, LLMP_SECRET_REQUIRED));
	ASSERT_EQ(0, llmp_broker_set_secret(b.b, s1, LLMP_SECRET_REQUIRED));
	ASSERT_EQ(0, llmp_broker_set_secret(w.b, s2, 0));
	ASSERT_EQ(0, llmp_loop_connect_b2b(b.lp, "127.0.0.1", a.port)); /* right secret */
	ASSERT_EQ(0, llmp_loop_connect_b2b(w.lp, "127.0.0.1", a.port)); /* wrong secret */
	ASSERT_EQ(0, llmp_loop_connect_b2b(n.lp, "127.0.0.1", a.port)); /* none: required */
	ASSERT_EQ(0, llmp_loop_connect_b2b(w.lp, "127.0.0.1", n.port)); /* peer has none */
	ASSERT_EQ(0, llmp_node_start(&a));
	ASSERT_EQ(0, llmp_node_start(&b));
	ASSERT_EQ(0, llmp_node_start(&w));
	ASSERT_EQ(0, llmp_node_start(&n));
	ASSERT_TRUE(llmp_node_wait_links(&b, 1, 10000));
	ASSERT_TRUE(llmp_node_wait_links(&a, 1, 10000));

	/* A message from b's client reaches a's client. */
	setenv(LLMP_SECRET_ENV, s1, 1);
	ASSERT_EQ(0, llmp_client_connect_tcp(a.cp, "127.0.0.1", a.port, NULL, &rx));
	ASSERT_EQ(0, llmp_client_connect_tcp(b.cp, "127.0.0.1", b.port, NULL, &tx));
	unsetenv(LLMP_SECRET_ENV);
	for (int64_t end = llmp_test_now_ms() + 10000; !got && llmp_test_now_ms() < end;) {
		ASSERT_EQ(0, llmp_client_send(tx, TAG, 0, "across", 6));
		for (int k = 0; k < 20 && !got; k++)
			got = llmp_client_recv_wait(rx, &v, 20) == 1 && v.tag == TAG && v.len == 6 &&
			      !memcmp(v.buf, "across", 6);
	}
	EXPECT_TRUE(got);
	/* The others tried (and keep trying, with backoff) but never linked. */
	for (int64_t end = llmp_test_now_ms() + 10000; llmp_test_now_ms() < end &&
	     (atomic_load(&w.dials) < 2 || atomic_load(&n.dials) < 1);)
		usleep(20000);
	EXPECT_LE(2, atomic_load(&w.dials));
	EXPECT_EQ(1, atomic_load(&a.links_up));
	EXPECT_EQ(0, atomic_load(&w.links_up));
	EXPECT_EQ(0, atomic_load(&n.links_up));
	EXPECT_TRUE(log_has("does not know the campaign secret"));
	EXPECT_TRUE(log_has("requires the campaign secret"));
	EXPECT_TRUE(log_has("has no campaign secret"));
	llmp_client_free(tx);
	llmp_client_free(rx);
	llmp_node_fini(&n);
	llmp_node_fini(&w);
	llmp_node_fini(&b);
	llmp_node_fini(&a);
	llmp_set_log(NULL, NULL, LLMP_LOG_WARN);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	EXPECT_EQ(0, system(cmd));
}

TEST_HARNESS_MAIN
