// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * Issue 8, finding 17: a caught-up receiver never loses a message, whatever
 * its size.  An in-process broker with the default history (64 MiB) and
 * 1 MiB pages forwards a sequence of large messages; after each one the
 * broker runs until idle and the receiver reads everything (it is caught
 * up).  A 16 MiB message after a 1 MiB (or 5 MiB) one needs a 64 MiB page,
 * and keeping it pushes the previous page out of the history while the
 * receiver still sits at that page's END_OF_PAGE record: it read all of
 * it, so it has lost nothing and must get the 16 MiB message, not
 * -ESTALE.  Every message is checked by length and checksum, and the
 * receiver's pages_skipped stays 0.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kselftest_harness.h"
#include "llmp_test.h"

#define MIB ((size_t)1 << 20)
#define TAG_BIG 0x7B160000u

FIXTURE(big)
{
	struct llmp_provider *p;
	struct llmp_broker *b;
	struct llmp_client *snd, *rx;
	uint8_t *buf;
};

FIXTURE_VARIANT(big)
{
	enum llmp_shmem_kind kind;
};

FIXTURE_VARIANT_ADD(big, memfd) { .kind = LLMP_SHMEM_MEMFD };
FIXTURE_VARIANT_ADD(big, sysv) { .kind = LLMP_SHMEM_SYSV };
FIXTURE_VARIANT_ADD(big, posix) { .kind = LLMP_SHMEM_POSIX };

FIXTURE_SETUP(big)
{
	struct llmp_broker_opts bo = { .struct_size = sizeof(bo) }; /* defaults: 1 MiB, 64 MiB */
	struct llmp_client_opts o = { .struct_size = sizeof(o), .send_timeout_ms = LLMP_NO_WAIT };
	struct llmp_shmem_desc bd, od;
	int r = llmp_provider_new(variant->kind, &self->p);

	if (r == -ENODEV) {
		self->p = NULL;
		SKIP(return, "%s provider not available here: %s",
		     llmp_shmem_kind_name(variant->kind), llmp_strerror_last());
	}
	ASSERT_EQ(0, r) TH_LOG("llmp_provider_new: %s", llmp_strerror_last());
	ASSERT_EQ(0, llmp_broker_new(self->p, &bo, &self->b)) TH_LOG("%s", llmp_strerror_last());
	ASSERT_EQ(0, llmp_broker_broadcast_desc(self->b, &bd));
	ASSERT_EQ(0, llmp_client_new(self->p, &bd, &o, &self->snd)) TH_LOG("%s", llmp_strerror_last());
	ASSERT_EQ(0, llmp_client_new(self->p, &bd, &o, &self->rx)) TH_LOG("%s", llmp_strerror_last());
	ASSERT_EQ(0, llmp_client_out_desc(self->snd, &od));
	r = llmp_broker_add_client(self->b, &od);
	ASSERT_LT(0, r) TH_LOG("%s", llmp_strerror_last());
	llmp_client_set_id(self->snd, (uint32_t)r);
	self->buf = malloc(32 * MIB); /* the largest message below */
	ASSERT_NE(NULL, self->buf);
}

FIXTURE_TEARDOWN(big)
{
	free(self->buf);
	if (self->rx)
		llmp_client_free(self->rx);
	if (self->snd)
		llmp_client_free(self->snd);
	if (self->b)
		llmp_broker_free(self->b);
	if (self->p)
		llmp_provider_free(self->p);
}

static void fill(uint8_t *buf, size_t len, int seq)
{
	uint64_t s = 0x5EED0000u + (uint64_t)seq;

	for (size_t i = 0; i + 8 <= len; i += 8) {
		uint64_t x = llmp_test_rand(&s);

		memcpy(buf + i, &x, 8);
	}
}

static int serve(struct llmp_broker *b)
{
	int r;

	while ((r = llmp_broker_once(b)) > 0)
		;
	return r;
}

/* Send messages of sizes mib[0..n-1] MiB; the receiver reads each right after. */
static void run(struct __test_metadata *_metadata, FIXTURE_DATA(big) *self, const int *mib,
		int n)
{
	for (int i = 0; i < n; i++) {
		size_t len = (size_t)mib[i] * MIB;
		struct llmp_msg_view v;
		uint64_t sum;
		int r;

		fill(self->buf, len, i);
		sum = llmp_test_fnv(self->buf, len);
		/* the sender's page chain waits for the broker: serve while it is full */
		while ((r = llmp_client_send(self->snd, TAG_BIG + (uint32_t)i, 0, self->buf,
					     len)) == -EAGAIN)
			ASSERT_LE(0, serve(self->b));
		ASSERT_EQ(0, r) TH_LOG("send of %d MiB: %s", mib[i], llmp_strerror_last());
		ASSERT_EQ(0, serve(self->b)) TH_LOG("%s", llmp_strerror_last());
		r = llmp_client_recv(self->rx, &v);
		ASSERT_EQ(1, r) TH_LOG("message %d (%d MiB) after %d caught-up reads: %d %s", i,
				       mib[i], i, r, r < 0 ? llmp_strerror_last() : "");
		ASSERT_EQ(TAG_BIG + (uint32_t)i, v.tag);
		ASSERT_EQ(len, v.len);
		ASSERT_EQ(sum, llmp_test_fnv(v.buf, v.len)) TH_LOG("message %d corrupt", i);
		ASSERT_EQ(0, llmp_client_recv(self->rx, &v));
	}
	ASSERT_EQ(0u, llmp_client_pages_skipped(self->rx));
}

TEST_F(big, m1_then_m16)
{
	static const int s[] = { 1, 16 };

	if (self->p)
		run(_metadata, self, s, 2);
}

TEST_F(big, m5_then_m16)
{
	static const int s[] = { 5, 16 };

	if (self->p)
		run(_metadata, self, s, 2);
}

TEST_F(big, m16_then_m16)
{
	static const int s[] = { 16, 16 };

	if (self->p)
		run(_metadata, self, s, 2);
}

TEST_F(big, m1_then_m5_four_times)
{
	static const int s[] = { 1, 5, 5, 5, 5 };

	if (self->p)
		run(_metadata, self, s, 5);
}

TEST_F(big, growing_sizes_past_the_history)
{
	/* each page larger than the last; the 32 MiB one needs a 128 MiB page */
	static const int s[] = { 1, 2, 5, 16, 1, 32, 1 };

	if (self->p)
		run(_metadata, self, s, 7);
}

TEST_HARNESS_MAIN
