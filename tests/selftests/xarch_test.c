// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * 32 <-> 64 bits through the same pages: this binary's broker and client
 * exchange messages with a client of the other ABI (the same test built
 * with gcc -m32, or the 64-bit one seen from the 32-bit build), byte-exact
 * both ways, across end-of-page chains on both sides.
 *
 * The peer is this test built for the other ABI, named by LLMP_XARCH_PEER
 * (tools/check-matrix.sh's m32 configuration sets it, both ways); without
 * it every case SKIPs.  Run with LLMP_XARCH_ROLE=peer the binary is the
 * peer: it joins the broadcast page named in LLMP_XARCH_BCAST, hands its
 * out-page description (the raw 40-byte struct) to the parent on stdout,
 * sends its messages, checks every message of the broadcast chain, and
 * says "ok" or why not.
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kselftest_harness.h"
#include "llmp/llmp.h"
#include "llmp_test.h"

#define XA_TAG_PARENT 0x58A40001u
#define XA_TAG_PEER 0x58A40002u
#define XA_PAGE 4096u  /* the smallest page: many end-of-page switches */
#define XA_COUNT 300u  /* messages each side sends */
#define XA_DEADLINE_MS 60000

/* Message i's length: small, odd, page-sized, and now and then larger than a page. */
static size_t xa_len(uint32_t i)
{
	static const size_t lens[] = { 0, 1, 7, 8, 39, 40, 63, 64, 65, 500, 1021, 2048, 3000, 4000 };

	if (i % 50 == 17)
		return 70000 + i; /* a page of its own (next_pow2 on the 32-bit side) */
	return lens[i % (sizeof(lens) / sizeof(lens[0]))] + i % 5;
}

/* Message i's bytes from side tag: the same on every ABI (64-bit arithmetic). */
static void xa_fill(uint32_t tag, uint32_t i, unsigned char *buf, size_t len)
{
	uint64_t s = ((uint64_t)tag << 32 | i) ^ 0x9E3779B97F4A7C15ULL;

	for (size_t j = 0; j < len; j += 8) {
		uint64_t r = llmp_test_rand(&s);

		for (size_t k = 0; k < 8 && j + k < len; k++)
			buf[j + k] = (unsigned char)(r >> (8 * k));
	}
}

/*
 * Check one received message against the pattern: 1 if it is the next one
 * expected from that side (*next advanced), 0 if the tag is not ours, -1
 * with a reason in why otherwise.
 */
static int xa_check(const struct llmp_msg_view *m, uint32_t *next_parent, uint32_t *next_peer,
		    unsigned char *scratch, char *why, size_t cap)
{
	uint32_t *next;
	size_t want;

	if (m->tag == XA_TAG_PARENT)
		next = next_parent;
	else if (m->tag == XA_TAG_PEER)
		next = next_peer;
	else
		return 0;
	if (*next >= XA_COUNT) {
		snprintf(why, cap, "tag %#x: more than %u messages", m->tag, XA_COUNT);
		return -1;
	}
	want = xa_len(*next);
	if (m->len != want) {
		snprintf(why, cap, "tag %#x message %u: %zu bytes, want %zu", m->tag, *next, m->len,
			 want);
		return -1;
	}
	xa_fill(m->tag, *next, scratch, want);
	if (want && memcmp(m->buf, scratch, want) != 0) {
		snprintf(why, cap, "tag %#x message %u: payload differs", m->tag, *next);
		return -1;
	}
	(*next)++;
	return 1;
}

/* ---- the peer (LLMP_XARCH_ROLE=peer) -------------------------------------- */

static int xa_peer_fail(const char *why)
{
	printf("fail %s\n", why);
	fflush(stdout);
	return 1;
}

static int xa_peer(void)
{
	struct llmp_client_opts o = { .struct_size = sizeof(o), .page_size = XA_PAGE };
	const char *kind_s = getenv("LLMP_XARCH_KIND");
	static unsigned char buf[80000], scratch[80000];
	uint32_t sent = 0, next_parent = 0, next_peer = 0, id;
	enum llmp_shmem_kind kind;
	struct llmp_shmem_desc bcast, out;
	struct llmp_provider *p;
	struct llmp_client *c;
	unsigned char abi = (unsigned char)sizeof(void *);
	char why[256], line[8];
	int64_t t0 = llmp_test_now_ms();
	int ret;

	if (!kind_s || llmp_shmem_kind_from_name(kind_s, &kind) < 0)
		return xa_peer_fail("LLMP_XARCH_KIND");
	if (llmp_shmem_desc_from_env("LLMP_XARCH_BCAST", &bcast) < 0)
		return xa_peer_fail("LLMP_XARCH_BCAST");
	if (llmp_provider_new(kind, &p) < 0 || llmp_client_new(p, &bcast, &o, &c) < 0)
		return xa_peer_fail(llmp_strerror_last());
	if (llmp_client_out_desc(c, &out) < 0)
		return xa_peer_fail("out_desc");
	/* the description as raw bytes: its layout is the same on both ABIs */
	if (write(1, &abi, 1) != 1 || write(1, &out, sizeof(out)) != (ssize_t)sizeof(out))
		return 1;
	if (read(0, &id, sizeof(id)) != (ssize_t)sizeof(id))
		return xa_peer_fail("no client id");
	llmp_client_set_id(c, id);
	while (next_parent < XA_COUNT || next_peer < XA_COUNT) {
		struct llmp_msg_view m;

		if (llmp_test_now_ms() - t0 > XA_DEADLINE_MS) {
			snprintf(why, sizeof(why), "timeout: sent %u, got %u + %u", sent, next_parent,
				 next_peer);
			return xa_peer_fail(why);
		}
		if (sent < XA_COUNT) {
			size_t len = xa_len(sent);

			xa_fill(XA_TAG_PEER, sent, buf, len);
			ret = llmp_client_send(c, XA_TAG_PEER, 0, buf, len);
			if (ret == 0)
				sent++;
			else if (ret != -EAGAIN)
				return xa_peer_fail(llmp_strerror_last());
		}
		while ((ret = llmp_client_recv(c, &m)) > 0)
			if (xa_check(&m, &next_parent, &next_peer, scratch, why, sizeof(why)) < 0)
				return xa_peer_fail(why);
		if (ret < 0)
			return xa_peer_fail(llmp_strerror_last());
		if (sent == XA_COUNT)
			usleep(100);
	}
	if (llmp_client_pages_skipped(c) != 0)
		return xa_peer_fail("broadcast pages skipped");
	printf("ok %u %u %u\n", sent, next_parent, next_peer);
	fflush(stdout);
	/* stay until the parent has read every page of ours (memfd: through /proc/<pid>/fd) */
	(void)!read(0, line, sizeof(line));
	llmp_client_free(c);
	llmp_provider_free(p);
	return 0;
}

/* ---- the tests ---------------------------------------------------------- */

FIXTURE(xa)
{
	const char *peer;
	struct llmp_provider *p;
	struct llmp_broker *b;
	struct llmp_client *r;
	pid_t pid;
	int to_peer, from_peer;
};

FIXTURE_VARIANT(xa)
{
	enum llmp_shmem_kind kind;
	const char *name;
};

FIXTURE_VARIANT_ADD(xa, memfd) { .kind = LLMP_SHMEM_MEMFD, .name = "memfd" };
FIXTURE_VARIANT_ADD(xa, sysv) { .kind = LLMP_SHMEM_SYSV, .name = "sysv" };

FIXTURE_SETUP(xa)
{
	self->to_peer = self->from_peer = -1;
	self->peer = getenv("LLMP_XARCH_PEER");
	if (!self->peer || !*self->peer)
		SKIP(return, "LLMP_XARCH_PEER unset: no other-ABI build of this test to talk to "
			     "(tools/check-matrix.sh m32 sets it)");
	if (access(self->peer, X_OK) < 0)
		SKIP(return, "LLMP_XARCH_PEER %s: %s", self->peer, strerror(errno));
	if (!llmp_test_kind_available(variant->kind))
		SKIP(return, "no %s provider here", variant->name);
}

FIXTURE_TEARDOWN(xa)
{
	if (self->to_peer >= 0)
		close(self->to_peer);
	if (self->from_peer >= 0)
		close(self->from_peer);
	if (self->pid > 0) {
		kill(self->pid, SIGKILL);
		waitpid(self->pid, NULL, 0);
	}
	if (self->r)
		llmp_client_free(self->r);
	if (self->b)
		llmp_broker_free(self->b);
	if (self->p)
		llmp_provider_free(self->p);
	if (variant->kind == LLMP_SHMEM_SYSV)
		llmp_test_remove_orphans(variant->kind, self->pid);
}

/* Start the peer with stdin/stdout on pipes; 0 or -1. */
static int xa_spawn(FIXTURE_DATA(xa) *self, const char *kind)
{
	int in[2], out[2];

	if (pipe2(in, O_CLOEXEC) < 0 || pipe2(out, O_CLOEXEC) < 0)
		return -1;
	self->pid = fork();
	if (self->pid < 0)
		return -1;
	if (self->pid == 0) {
		dup2(in[0], 0);
		dup2(out[1], 1);
		setenv("LLMP_XARCH_ROLE", "peer", 1);
		setenv("LLMP_XARCH_KIND", kind, 1);
		execl(self->peer, self->peer, (char *)NULL);
		_exit(127);
	}
	close(in[0]);
	close(out[1]);
	self->to_peer = in[1];
	self->from_peer = out[0];
	return 0;
}

/*
 * Our broker and client, the peer's client: each side sends XA_COUNT
 * messages through its own 4 KiB page chain, and each reads all of them
 * (its own included) from the broker's 4 KiB broadcast chain.
 */
TEST_F_TIMEOUT(xa, both_ways_across_page_chains, 120)
{
	struct llmp_broker_opts bo = { .struct_size = sizeof(bo), .page_size = XA_PAGE };
	struct llmp_client_opts co = { .struct_size = sizeof(co), .page_size = XA_PAGE };
	static unsigned char buf[80000], scratch[80000];
	uint32_t sent = 0, next_parent = 0, next_peer = 0, id;
	struct llmp_shmem_desc bcast, out;
	unsigned char abi = 0;
	char why[256] = "", reply[256] = "";
	size_t rlen = 0;
	int64_t t0;
	int ret, st;

	if (!self->peer || !*self->peer || !llmp_test_kind_available(variant->kind))
		SKIP(return, "see the setup's reason");
	ASSERT_EQ(0, llmp_provider_new(variant->kind, &self->p));
	ASSERT_EQ(0, llmp_broker_new(self->p, &bo, &self->b)) TH_LOG("%s", llmp_strerror_last());
	ASSERT_EQ(0, llmp_broker_broadcast_desc(self->b, &bcast));
	ASSERT_EQ(0, llmp_client_new(self->p, &bcast, &co, &self->r));
	ASSERT_EQ(0, llmp_client_out_desc(self->r, &out));
	ret = llmp_broker_add_client(self->b, &out);
	ASSERT_LT(0, ret);
	llmp_client_set_id(self->r, (uint32_t)ret);
	ASSERT_EQ(0, llmp_shmem_desc_to_env(&bcast, "LLMP_XARCH_BCAST"));
	ASSERT_EQ(0, xa_spawn(self, variant->name));

	/* the peer's ABI and its out page, as the raw struct it wrote */
	ASSERT_EQ(1, read(self->from_peer, &abi, 1));
	ASSERT_EQ((ssize_t)sizeof(out), read(self->from_peer, &out, sizeof(out)));
	TH_LOG("%s: %zu-bit broker and client, %u-bit peer client %s %s", variant->name,
	       8 * sizeof(void *), 8u * abi, variant->name, out.id);
	/* a peer of our own ABI proves nothing: LLMP_XARCH_PEER names the wrong build */
	ASSERT_NE(sizeof(void *), (size_t)abi);
	ret = llmp_broker_add_client(self->b, &out);
	ASSERT_LT(0, ret) TH_LOG("%s", llmp_strerror_last());
	id = (uint32_t)ret;
	ASSERT_EQ((ssize_t)sizeof(id), write(self->to_peer, &id, sizeof(id)));

	t0 = llmp_test_now_ms();
	while (next_parent < XA_COUNT || next_peer < XA_COUNT || !strchr(reply, '\n')) {
		struct llmp_msg_view m;
		struct pollfd pfd = { .fd = self->from_peer, .events = POLLIN };

		ASSERT_LT(llmp_test_now_ms() - t0, XA_DEADLINE_MS)
			TH_LOG("sent %u, got %u + %u, peer said '%s'", sent, next_parent, next_peer,
			       reply);
		ASSERT_LE(0, llmp_broker_once(self->b));
		if (sent < XA_COUNT) {
			size_t len = xa_len(sent);

			xa_fill(XA_TAG_PARENT, sent, buf, len);
			ret = llmp_client_send(self->r, XA_TAG_PARENT, 0, buf, len);
			if (ret == 0)
				sent++;
			else
				ASSERT_EQ(-EAGAIN, ret) TH_LOG("%s", llmp_strerror_last());
		}
		while ((ret = llmp_client_recv(self->r, &m)) > 0)
			ASSERT_LE(0, xa_check(&m, &next_parent, &next_peer, scratch, why, sizeof(why)))
				TH_LOG("%s", why);
		ASSERT_EQ(0, ret) TH_LOG("%s", llmp_strerror_last());
		if (poll(&pfd, 1, 0) == 1 && rlen < sizeof(reply) - 1) {
			ssize_t n = read(self->from_peer, reply + rlen, sizeof(reply) - 1 - rlen);

			ASSERT_LT(0, n) TH_LOG("the peer closed its stdout: '%s'", reply);
			rlen += (size_t)n;
			reply[rlen] = 0;
		}
	}
	TH_LOG("peer: %s", reply);
	EXPECT_EQ(0, strncmp(reply, "ok ", 3));
	EXPECT_EQ(0u, llmp_client_pages_skipped(self->r));

	/* let the peer go; keep serving until it has left */
	close(self->to_peer);
	self->to_peer = -1;
	t0 = llmp_test_now_ms();
	while ((ret = waitpid(self->pid, &st, WNOHANG)) == 0 &&
	       llmp_test_now_ms() - t0 < XA_DEADLINE_MS) {
		ASSERT_LE(0, llmp_broker_once(self->b));
		usleep(1000);
	}
	ASSERT_EQ(self->pid, ret);
	self->pid = 0;
	ASSERT_TRUE(WIFEXITED(st));
	EXPECT_EQ(0, WEXITSTATUS(st));
}

static void __attribute__((constructor)) __constructor_order_last(void)
{
	if (!__constructor_order)
		__constructor_order = _CONSTRUCTOR_ORDER_BACKWARD;
}

/* The harness's main, or the peer's when LLMP_XARCH_ROLE=peer. */
int main(int argc, char **argv)
{
	const char *role = getenv("LLMP_XARCH_ROLE");

	if (role && strcmp(role, "peer") == 0)
		return xa_peer();
	llmp_test_scale_timeouts();
	return test_harness_run(argc, argv);
}
