// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * Byte compatibility with LibAFL's ll_mp: the pages our client and broker
 * write for the sends of vectors/README are byte-identical to the pages
 * LibAFL wrote (only the segment id inside an end-of-page record may
 * differ: it names a segment of this run), and our receivers read the
 * captured pages back to the same messages.
 *
 * The vectors are found through $LLMP_VECTORS, else next to the binary
 * (vectors/) or in the source tree relative to build/selftests and
 * build/san/selftests.
 */
#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kselftest_harness.h"
#include "llmp_test.h"

#define PAGE1M (1u << 20)
#define TAG_A 0x51300321u
#define TAG_B 0x12345678u
#define EOP_OFF 0xfff00u          /* end-of-page record of the 6,000-message run */
#define EOP_ID_OFF (EOP_OFF + 48) /* its 20-byte segment id: differs per run */

static int load_vector(const char *name, void *buf, size_t len)
{
	const char *env = getenv("LLMP_VECTORS");
	char exe[PATH_MAX], path[PATH_MAX + 64];
	const char *rel[] = { "vectors", "../../tests/selftests/vectors",
			      "../../../tests/selftests/vectors" };
	ssize_t n;
	char *dir;

	n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	if (n < 0)
		return -errno;
	exe[n] = 0;
	dir = dirname(exe);
	for (int i = -1; i < 3; i++) {
		FILE *f;
		size_t got;

		if (i < 0 && !env)
			continue;
		if (i < 0)
			snprintf(path, sizeof(path), "%s/%s", env, name);
		else
			snprintf(path, sizeof(path), "%s/%s/%s", dir, rel[i], name);
		f = fopen(path, "rb");
		if (!f)
			continue;
		got = fread(buf, 1, len, f);
		fclose(f);
		return got == len ? 0 : -EIO;
	}
	return -ENOENT;
}

FIXTURE(compat)
{
	struct llmp_provider *p;
	struct llmp_broker *b;
	struct llmp_client *c[2];
	struct llmp_shmem *m[4];
	uint8_t client4[1024], bcast4[1024], eop_head[64], eop_tail[1024];
};

FIXTURE_VARIANT(compat)
{
	enum llmp_shmem_kind kind;
};

FIXTURE_VARIANT_ADD(compat, memfd) { .kind = LLMP_SHMEM_MEMFD };
FIXTURE_VARIANT_ADD(compat, sysv) { .kind = LLMP_SHMEM_SYSV };
FIXTURE_VARIANT_ADD(compat, posix) { .kind = LLMP_SHMEM_POSIX };

FIXTURE_SETUP(compat)
{
	int r;

	ASSERT_EQ(0, load_vector("client-page-4msgs.bin", self->client4, 1024))
		TH_LOG("vectors not found: set LLMP_VECTORS to tests/selftests/vectors");
	ASSERT_EQ(0, load_vector("broadcast-page-4msgs.bin", self->bcast4, 1024));
	ASSERT_EQ(0, load_vector("eop-page-head.bin", self->eop_head, 64));
	ASSERT_EQ(0, load_vector("eop-page-tail1024.bin", self->eop_tail, 1024));
	r = llmp_provider_new(variant->kind, &self->p);
	if (r == -ENODEV) {
		self->p = NULL;
		SKIP(return, "%s provider not available here: %s",
		     llmp_shmem_kind_name(variant->kind), llmp_strerror_last());
	}
	ASSERT_EQ(0, r) TH_LOG("llmp_provider_new: %s", llmp_strerror_last());
}

FIXTURE_TEARDOWN(compat)
{
	for (int i = 1; i >= 0; i--)
		if (self->c[i])
			llmp_client_free(self->c[i]);
	if (self->b)
		llmp_broker_free(self->b);
	for (int i = 3; i >= 0; i--)
		llmp_shmem_put(self->m[i]);
	if (self->p)
		llmp_provider_free(self->p);
}

#define NEED_PROVIDER() do { if (!self->p) return; } while (0)

static const struct llmp_client_opts nowait = {
	.struct_size = sizeof(struct llmp_client_opts),
	.send_timeout_ms = LLMP_NO_WAIT,
};

static const struct llmp_broker_opts bdefault = {
	.struct_size = sizeof(struct llmp_broker_opts),
};

static void payload100(uint8_t *b)
{
	for (int i = 0; i < 100; i++)
		b[i] = (uint8_t)(7 * i + 1);
}

/* Compare two byte ranges; log up to 12 differing offsets; count differences. */
static int diff_bytes(struct __test_metadata *_metadata, const char *what, const uint8_t *ours,
		      const uint8_t *theirs, size_t len, size_t base, size_t skip_from,
		      size_t skip_to)
{
	int n = 0;

	for (size_t i = 0; i < len; i++) {
		if (base + i >= skip_from && base + i < skip_to)
			continue;
		if (ours[i] == theirs[i])
			continue;
		if (n++ < 12)
			TH_LOG("%s: offset %#zx: ours %02x, LibAFL %02x", what, base + i, ours[i],
			       theirs[i]);
	}
	return n;
}

/* The four sends of vectors/README. */
static int send_four(struct llmp_client *c)
{
	uint8_t ab[64], p100[100];
	int r;

	memset(ab, 0xAB, sizeof(ab));
	payload100(p100);
	if ((r = llmp_client_send(c, TAG_A, 0, NULL, 0)) < 0 ||
	    (r = llmp_client_send(c, TAG_A, 0, "hello", 5)) < 0 ||
	    (r = llmp_client_send(c, TAG_B, 0x1, ab, 64)) < 0 ||
	    (r = llmp_client_send(c, TAG_A, 0, p100, 100)) < 0)
		return r;
	return 0;
}

/* Check the four messages as a receiver sees them. */
static void expect_four(struct __test_metadata *_metadata, struct llmp_client *c)
{
	struct llmp_msg_view v;
	uint8_t ab[64], p100[100];

	memset(ab, 0xAB, sizeof(ab));
	payload100(p100);
	ASSERT_EQ(1, llmp_client_recv(c, &v)) TH_LOG("%s", llmp_strerror_last());
	ASSERT_EQ(1u, v.sender);
	ASSERT_EQ(TAG_A, v.tag);
	ASSERT_EQ(0u, v.flags);
	ASSERT_EQ(0u, v.len);
	ASSERT_EQ(1, llmp_client_recv(c, &v));
	ASSERT_EQ(1u, v.sender);
	ASSERT_EQ(TAG_A, v.tag);
	ASSERT_EQ(5u, v.len);
	ASSERT_EQ(0, memcmp(v.buf, "hello", 5));
	ASSERT_EQ(1, llmp_client_recv(c, &v));
	ASSERT_EQ(1u, v.sender);
	ASSERT_EQ(TAG_B, v.tag);
	ASSERT_EQ(1u, v.flags);
	ASSERT_EQ(64u, v.len);
	ASSERT_EQ(0, memcmp(v.buf, ab, 64));
	ASSERT_EQ(1, llmp_client_recv(c, &v));
	ASSERT_EQ(1u, v.sender);
	ASSERT_EQ(TAG_A, v.tag);
	ASSERT_EQ(0u, v.flags);
	ASSERT_EQ(100u, v.len);
	ASSERT_EQ(0, memcmp(v.buf, p100, 100));
	ASSERT_EQ(0, llmp_client_recv(c, &v));
}

static int pump(struct llmp_broker *b)
{
	int r, total = 0;

	do {
		r = llmp_broker_once(b);
		if (r < 0)
			return r;
		total += r;
	} while (r > 0);
	return total;
}

TEST_F(compat, four_sends_client_and_broadcast_pages)
{
	struct llmp_shmem_desc bd, od;
	struct llmp_client *c;
	const uint8_t *pg;
	int id;

	NEED_PROVIDER();
	ASSERT_EQ(0, llmp_broker_new(self->p, &bdefault, &self->b)) TH_LOG("%s", llmp_strerror_last());
	ASSERT_EQ(0, llmp_broker_broadcast_desc(self->b, &bd));
	ASSERT_EQ(PAGE1M, bd.size);
	ASSERT_EQ(0, llmp_client_new(self->p, &bd, &nowait, &self->c[0]));
	c = self->c[0];
	ASSERT_EQ(0, llmp_client_out_desc(c, &od));
	ASSERT_EQ(PAGE1M, od.size);
	/* As in the capture: client id 1, the broker mapped the page before the sends. */
	id = llmp_broker_add_client(self->b, &od);
	ASSERT_EQ(1, id) TH_LOG("%s", llmp_strerror_last());
	llmp_client_set_id(c, 1);
	ASSERT_EQ(0, send_four(c)) TH_LOG("%s", llmp_strerror_last());

	ASSERT_EQ(0, llmp_shmem_attach(self->p, &od, &self->m[0])) TH_LOG("%s", llmp_strerror_last());
	pg = llmp_shmem_addr(self->m[0]);
	ASSERT_EQ(0, diff_bytes(_metadata, "client page", pg, self->client4, 1024, 0, 0, 0));
	/* Past the captured KiB our page is still untouched. */
	for (size_t i = 1024; i < 4096; i++)
		ASSERT_EQ(0, pg[i]);

	ASSERT_EQ(4, pump(self->b)) TH_LOG("%s", llmp_strerror_last());
	ASSERT_EQ(0, llmp_shmem_attach(self->p, &bd, &self->m[1])) TH_LOG("%s", llmp_strerror_last());
	pg = llmp_shmem_addr(self->m[1]);
	/* joined 0: a client does not count itself on the broker's first page (as LibAFL). */
	ASSERT_EQ(0, diff_bytes(_metadata, "broadcast page", pg, self->bcast4, 1024, 0, 0, 0));

	/* And our receiver reads our broadcast page back to the four messages. */
	expect_four(_metadata, c);
}

TEST_F(compat, eop_page_matches)
{
	struct llmp_shmem_desc bd, od, od2;
	struct llmp_client *c;
	const uint8_t *pg;
	uint8_t p100[100];
	char id[21];
	int r;

	NEED_PROVIDER();
	payload100(p100);
	ASSERT_EQ(0, llmp_broker_new(self->p, &bdefault, &self->b)) TH_LOG("%s", llmp_strerror_last());
	ASSERT_EQ(0, llmp_broker_broadcast_desc(self->b, &bd));
	ASSERT_EQ(0, llmp_client_new(self->p, &bd, &nowait, &self->c[0]));
	c = self->c[0];
	ASSERT_EQ(0, llmp_client_out_desc(c, &od));
	ASSERT_EQ(1, llmp_broker_add_client(self->b, &od));
	llmp_client_set_id(c, 1);
	ASSERT_EQ(0, llmp_shmem_attach(self->p, &od, &self->m[0])) TH_LOG("%s", llmp_strerror_last());
	for (int i = 0; i < 6000; i++) {
		while ((r = llmp_client_send(c, TAG_A, 0, p100, 100)) == -EAGAIN)
			ASSERT_LE(0, llmp_broker_once(self->b));
		ASSERT_EQ(0, r) TH_LOG("send %d: %s", i, llmp_strerror_last());
	}
	ASSERT_LE(0, pump(self->b)) TH_LOG("%s", llmp_strerror_last());
	/* The current out page (the second one), as a restart would save it. */
	ASSERT_EQ(0, llmp_client_to_env(c, "LLMP_COMPAT"));
	ASSERT_EQ(0, llmp_shmem_desc_from_env("LLMP_COMPAT_SENDER", &od2));

	pg = llmp_shmem_addr(self->m[0]);
	ASSERT_EQ(PAGE1M, llmp_shmem_size(self->m[0]));
	ASSERT_EQ(0, diff_bytes(_metadata, "eop page head", pg, self->eop_head, 64, 0, 0, 0));
	ASSERT_EQ(0, diff_bytes(_metadata, "eop page tail", pg + PAGE1M - 1024, self->eop_tail, 1024,
				PAGE1M - 1024, EOP_ID_OFF, EOP_ID_OFF + 20));
	/* The ignored id names our second page, NUL padded. */
	memcpy(id, pg + EOP_ID_OFF, 20);
	id[20] = 0;
	ASSERT_STREQ(od2.id, id);
	ASSERT_NE(0, strcmp(od.id, od2.id));
	for (size_t i = strlen(id); i < 20; i++)
		ASSERT_EQ(0, pg[EOP_ID_OFF + i]);
}

/* A message of the 6,000 run: header at off, 100-byte payload, padded to the next 64. */
static size_t put_msg100(uint8_t *pg, size_t off, uint64_t id)
{
	uint32_t tag = TAG_A, sender = 1, zero = 0;
	uint64_t len = 100, padded = ((off + 40 + 100 + 63) & ~(size_t)63) - off - 40;

	memcpy(pg + off, &tag, 4);
	memcpy(pg + off + 4, &sender, 4);
	memcpy(pg + off + 8, &zero, 4);
	memcpy(pg + off + 12, &zero, 4);
	memcpy(pg + off + 16, &id, 8);
	memcpy(pg + off + 24, &len, 8);
	memcpy(pg + off + 32, &padded, 8);
	payload100(pg + off + 40);
	return off + 40 + padded;
}

/* A page as LibAFL's sender leaves it after n such messages (+ EOP if eop_id). */
static void build_page(uint8_t *pg, unsigned n, const char *eop_id, uint16_t joined,
		       uint16_t left)
{
	uint64_t magic = LLMP_PAGE_MAGIC, total = PAGE1M - 48, used, maxa = 192, cur = n;
	uint32_t sender = 1;
	size_t off = 48;

	memset(pg, 0, PAGE1M);
	for (unsigned i = 1; i <= n; i++)
		off = put_msg100(pg, off, i);
	if (eop_id) {
		uint32_t tag = LLMP_TAG_END_OF_PAGE, zero = 0;
		uint64_t id = n + 1, l = 32, sz = PAGE1M;

		memcpy(pg + off, &tag, 4);
		memcpy(pg + off + 4, &sender, 4);
		memcpy(pg + off + 8, &zero, 4);
		memcpy(pg + off + 12, &zero, 4);
		memcpy(pg + off + 16, &id, 8);
		memcpy(pg + off + 24, &l, 8);
		memcpy(pg + off + 32, &l, 8);
		memcpy(pg + off + 40, &sz, 8);
		strncpy((char *)pg + off + 48, eop_id, 20);
		used = off - 48 + 128;
		cur = n + 1;
	} else {
		uint32_t unset = LLMP_TAG_UNSET;

		memcpy(pg + off, &unset, 4);
		used = off - 48;
	}
	memcpy(pg, &magic, 8);
	memcpy(pg + 8, &sender, 4);
	memcpy(pg + 12, &joined, 2);
	memcpy(pg + 14, &left, 2);
	memcpy(pg + 16, &cur, 8);
	memcpy(pg + 24, &total, 8);
	memcpy(pg + 32, &used, 8);
	memcpy(pg + 40, &maxa, 8);
}

TEST_F(compat, read_captured_eop_page)
{
	/*
	 * The captured page rebuilt in full (its head and tail are checked
	 * against the vectors byte for byte), its end-of-page record pointed at
	 * a segment of ours that holds the remaining 540 messages as LibAFL
	 * would have written them: a receiver reads all 6,000 in order.
	 */
	struct llmp_shmem_desc d1;
	struct llmp_msg_view v;
	uint8_t *pg1, *pg2, p100[100];
	int n = 0, r;

	NEED_PROVIDER();
	payload100(p100);
	ASSERT_EQ(0, llmp_shmem_new(self->p, PAGE1M, &self->m[0])) TH_LOG("%s", llmp_strerror_last());
	ASSERT_EQ(0, llmp_shmem_new(self->p, PAGE1M, &self->m[1])) TH_LOG("%s", llmp_strerror_last());
	pg1 = llmp_shmem_addr(self->m[0]);
	pg2 = llmp_shmem_addr(self->m[1]);

	build_page(pg1, 5460, "491534", 1, 1);
	ASSERT_EQ(0, diff_bytes(_metadata, "rebuilt head", pg1, self->eop_head, 64, 0, 0, 0));
	ASSERT_EQ(0, diff_bytes(_metadata, "rebuilt tail", pg1 + PAGE1M - 1024, self->eop_tail, 1024,
				PAGE1M - 1024, 0, 0));
	build_page(pg1, 5460, llmp_shmem_desc(self->m[1])->id, 1, 1);
	build_page(pg2, 540, NULL, 0, 0);

	d1 = *llmp_shmem_desc(self->m[0]);
	ASSERT_EQ(0, llmp_client_new(self->p, &d1, &nowait, &self->c[0]))
		TH_LOG("%s", llmp_strerror_last());
	while ((r = llmp_client_recv(self->c[0], &v)) == 1) {
		ASSERT_EQ(1u, v.sender);
		ASSERT_EQ(TAG_A, v.tag);
		ASSERT_EQ(0u, v.flags);
		ASSERT_EQ(100u, v.len);
		ASSERT_EQ(0, memcmp(v.buf, p100, 100)) TH_LOG("message %d", n);
		n++;
	}
	ASSERT_EQ(0, r) TH_LOG("after %d messages: %s", n, llmp_strerror_last());
	ASSERT_EQ(6000, n);
	/* The receiver left the first page and joined the second. */
	ASSERT_EQ(2, pg1[14] | pg1[15] << 8);
	ASSERT_EQ(1, pg2[12] | pg2[13] << 8);
}

TEST_F(compat, read_captured_broadcast_page)
{
	struct llmp_shmem_desc d;
	uint8_t *pg;

	NEED_PROVIDER();
	ASSERT_EQ(0, llmp_shmem_new(self->p, PAGE1M, &self->m[0]));
	pg = llmp_shmem_addr(self->m[0]);
	memcpy(pg, self->bcast4, 1024);
	d = *llmp_shmem_desc(self->m[0]);
	ASSERT_EQ(0, llmp_client_new(self->p, &d, &nowait, &self->c[0]))
		TH_LOG("%s", llmp_strerror_last());
	expect_four(_metadata, self->c[0]);
}

TEST_F(compat, broker_forwards_captured_client_page)
{
	/*
	 * Our broker drains the captured client page and writes a broadcast
	 * page identical to the one LibAFL's broker wrote; a client reads it.
	 */
	struct llmp_shmem_desc d, bd;
	uint8_t *pg;

	NEED_PROVIDER();
	ASSERT_EQ(0, llmp_shmem_new(self->p, PAGE1M, &self->m[0]));
	pg = llmp_shmem_addr(self->m[0]);
	memcpy(pg, self->client4, 1024);
	pg[12] = 0; /* not mapped by any broker yet */
	d = *llmp_shmem_desc(self->m[0]);
	ASSERT_EQ(0, llmp_broker_new(self->p, &bdefault, &self->b)) TH_LOG("%s", llmp_strerror_last());
	ASSERT_EQ(1, llmp_broker_add_client(self->b, &d)) TH_LOG("%s", llmp_strerror_last());
	ASSERT_EQ(1, pg[12] | pg[13] << 8) TH_LOG("the broker did not mark the page joined");
	ASSERT_EQ(4, pump(self->b)) TH_LOG("%s", llmp_strerror_last());
	ASSERT_EQ(0, llmp_broker_broadcast_desc(self->b, &bd));
	ASSERT_EQ(0, llmp_shmem_attach(self->p, &bd, &self->m[1]));
	ASSERT_EQ(0, diff_bytes(_metadata, "broadcast page", llmp_shmem_addr(self->m[1]), self->bcast4,
				1024, 0, 0, 0));
	ASSERT_EQ(0, llmp_client_new(self->p, &bd, &nowait, &self->c[0]));
	expect_four(_metadata, self->c[0]);
	/* The captured page itself is untouched apart from the joined count. */
	pg[12] = 1;
	ASSERT_EQ(0, diff_bytes(_metadata, "client page after", pg, self->client4, 1024, 0, 0, 0));
}

TEST_F(compat, broadcast_eop_page_matches)
{
	/*
	 * The broker forwards the 6,000-message run: its first broadcast page
	 * ends exactly like the client page LibAFL wrote, apart from the
	 * writer's id (the page's sender_id and the END_OF_PAGE record's sender
	 * are the broker's, 0, where the client page has 1), the joined count
	 * (a client reading the broker's first page does not count itself, as
	 * in LibAFL) and the next segment's id.  Message headers keep sender 1.
	 */
	struct llmp_shmem_desc bd, od;
	struct llmp_client *c, *rx;
	struct llmp_msg_view v;
	uint8_t head[64], tail[1024], p100[100];
	const uint8_t *pg;
	int r, n = 0;

	NEED_PROVIDER();
	payload100(p100);
	ASSERT_EQ(0, llmp_broker_new(self->p, &bdefault, &self->b)) TH_LOG("%s", llmp_strerror_last());
	ASSERT_EQ(0, llmp_broker_broadcast_desc(self->b, &bd));
	ASSERT_EQ(0, llmp_shmem_attach(self->p, &bd, &self->m[0]));
	ASSERT_EQ(0, llmp_client_new(self->p, &bd, &nowait, &self->c[0]));
	ASSERT_EQ(0, llmp_client_new(self->p, &bd, &nowait, &self->c[1]));
	c = self->c[0];
	rx = self->c[1];
	ASSERT_EQ(0, llmp_client_out_desc(c, &od));
	ASSERT_EQ(1, llmp_broker_add_client(self->b, &od));
	llmp_client_set_id(c, 1);
	for (int i = 0; i < 6000; i++) {
		while ((r = llmp_client_send(c, TAG_A, 0, p100, 100)) == -EAGAIN)
			ASSERT_LE(0, llmp_broker_once(self->b));
		ASSERT_EQ(0, r) TH_LOG("send %d: %s", i, llmp_strerror_last());
	}
	ASSERT_LE(0, pump(self->b)) TH_LOG("%s", llmp_strerror_last());
	while ((r = llmp_client_recv(rx, &v)) == 1) {
		ASSERT_EQ(1u, v.sender);
		ASSERT_EQ(0, memcmp(v.buf, p100, 100));
		n++;
	}
	ASSERT_EQ(0, r) TH_LOG("%s", llmp_strerror_last());
	ASSERT_EQ(6000, n);

	pg = llmp_shmem_addr(self->m[0]);
	memcpy(head, self->eop_head, 64);
	memcpy(tail, self->eop_tail, 1024);
	head[8] = 0;      /* page sender_id: the broker */
	head[12] = 0;     /* joined: nobody counts itself on the broker's first page */
	tail[0x304] = 0;  /* END_OF_PAGE sender: the broker */
	ASSERT_EQ(0, diff_bytes(_metadata, "broadcast eop head", pg, head, 64, 0, 0, 0));
	ASSERT_EQ(0, diff_bytes(_metadata, "broadcast eop tail", pg + PAGE1M - 1024, tail, 1024,
				PAGE1M - 1024, EOP_ID_OFF, EOP_ID_OFF + 20));
}

TEST_HARNESS_MAIN
