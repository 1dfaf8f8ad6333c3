// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * One receiver stops reading while a sender sends far more than the
 * broker's history bound.  The documented policy (Documentation/
 * protocol.rst, struct llmp_broker_opts): the broker keeps its first
 * broadcast page and the newest pages up to history_bytes/history_pages;
 * older pages are dropped.  So
 *  - the memory mapped for the broadcast stays bounded (checked here as
 *    the shared mappings of this process, where broker, sender and
 *    receivers all live; with keep_all_history it grows with the traffic);
 *  - a fast receiver sees every message;
 *  - a slow receiver reads what is left on the page it is on, then gets
 *    -ESTALE once (it missed pages), then continues at the oldest page
 *    still kept and sees a contiguous tail that ends with the last
 *    message.  The same holds for a slow receiver still on the first page.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kselftest_harness.h"
#include "llmp_test.h"

#define PAGE 4096u
#define HISTORY (64u * 1024)
#define LEN 300u
#define PER_PAGE 10   /* 300 B messages (340 + 40 B each) on a 4 KiB page */
#define NMSG 20000
#define SEQ_TAG(s) (0x40000000u | ((uint32_t)(s) & 0xffffffu))

FIXTURE(slow)
{
	struct llmp_provider *p;
	struct llmp_broker *b;
	struct llmp_client *c[4];
};

FIXTURE_VARIANT(slow)
{
	enum llmp_shmem_kind kind;
};

FIXTURE_VARIANT_ADD(slow, memfd) { .kind = LLMP_SHMEM_MEMFD };
FIXTURE_VARIANT_ADD(slow, sysv) { .kind = LLMP_SHMEM_SYSV };
FIXTURE_VARIANT_ADD(slow, posix) { .kind = LLMP_SHMEM_POSIX };

FIXTURE_SETUP(slow)
{
	int r = llmp_provider_new(variant->kind, &self->p);

	if (r == -ENODEV) {
		self->p = NULL;
		SKIP(return, "%s provider not available here: %s",
		     llmp_shmem_kind_name(variant->kind), llmp_strerror_last());
	}
	ASSERT_EQ(0, r) TH_LOG("llmp_provider_new: %s", llmp_strerror_last());
}

FIXTURE_TEARDOWN(slow)
{
	for (int i = 3; i >= 0; i--)
		if (self->c[i])
			llmp_client_free(self->c[i]);
	if (self->b)
		llmp_broker_free(self->b);
	if (self->p)
		llmp_provider_free(self->p);
}

/* Bytes of shared mappings in this process (every segment mapping is one). */
static size_t shared_mapped(int *count)
{
	FILE *f = fopen("/proc/self/maps", "r");
	char line[512];
	size_t total = 0;

	*count = 0;
	while (f && fgets(line, sizeof(line), f)) {
		unsigned long lo, hi;
		char perms[8];

		if (sscanf(line, "%lx-%lx %7s", &lo, &hi, perms) != 3 || perms[3] != 's')
			continue;
		total += hi - lo;
		(*count)++;
	}
	if (f)
		fclose(f);
	return total;
}

static uint8_t pat(int seq, size_t i)
{
	return (uint8_t)(seq * 131 + i * 7);
}

static int check(const struct llmp_msg_view *v, int seq)
{
	const uint8_t *b = v->buf;

	if (v->len != LEN)
		return -1;
	for (size_t i = 0; i < LEN; i++)
		if (b[i] != pat(seq, i))
			return -1;
	return 0;
}

static int seq_of(const struct llmp_msg_view *v)
{
	return (v->tag & 0xff000000u) == 0x40000000u ? (int)(v->tag & 0xffffff) : -1;
}

static int send_one(struct llmp_broker *b, struct llmp_client *c, int seq)
{
	uint8_t buf[LEN];
	int r;

	for (size_t i = 0; i < LEN; i++)
		buf[i] = pat(seq, i);
	while ((r = llmp_client_send(c, SEQ_TAG(seq), 0, buf, LEN)) == -EAGAIN)
		if ((r = llmp_broker_once(b)) < 0)
			return r;
	return r;
}

static int new_client(FIXTURE_DATA(slow) *self, int i, bool reg)
{
	struct llmp_client_opts o = { .struct_size = sizeof(o), .page_size = PAGE,
				      .send_timeout_ms = LLMP_NO_WAIT };
	struct llmp_shmem_desc bd, od;
	int r, id;

	if ((r = llmp_broker_broadcast_desc(self->b, &bd)) < 0 ||
	    (r = llmp_client_new(self->p, &bd, &o, &self->c[i])) < 0)
		return r;
	if (!reg)
		return 0;
	if ((r = llmp_client_out_desc(self->c[i], &od)) < 0)
		return r;
	id = llmp_broker_add_client(self->b, &od);
	if (id < 0)
		return id;
	llmp_client_set_id(self->c[i], (uint32_t)id);
	return 0;
}

/*
 * Read what a slow receiver sees now: a prefix continuing at first_due,
 * one -ESTALE, a contiguous tail to the last message.
 */
static void check_slow(struct __test_metadata *_metadata, struct llmp_client *c, int first_due,
		       int last, const char *who)
{
	struct llmp_msg_view v;
	int due = first_due, stale = 0, tail = 0, r, prefix = 0;

	for (;;) {
		r = llmp_client_recv(c, &v);
		if (r == 0)
			break;
		if (r == -ESTALE) {
			ASSERT_EQ(0, stale) TH_LOG("%s: -ESTALE twice", who);
			stale = 1;
			due = -1;
			continue;
		}
		ASSERT_EQ(1, r) TH_LOG("%s: %d %s", who, r, llmp_strerror_last());
		if (due < 0) {
			/* the first message after the gap: the oldest one kept */
			due = seq_of(&v);
			ASSERT_GT(due, first_due + prefix) TH_LOG("%s: no gap after -ESTALE", who);
		}
		ASSERT_EQ(due, seq_of(&v)) TH_LOG("%s: out of order", who);
		ASSERT_EQ(0, check(&v, due));
		if (stale)
			tail++;
		else
			prefix++;
		due++;
	}
	ASSERT_EQ(1, stale) TH_LOG("%s: no -ESTALE after falling behind", who);
	ASSERT_EQ(last + 1, due) TH_LOG("%s: the tail does not end with the last message", who);
	/* what is left of the page it was on, and no more */
	ASSERT_LE(prefix, PER_PAGE) TH_LOG("%s: %d messages before the gap", who, prefix);
	/* the kept history: 64 KiB of 4 KiB pages, 10 messages each */
	ASSERT_LE(tail, (int)(HISTORY / PAGE + 1) * PER_PAGE) TH_LOG("%s: tail %d", who, tail);
	ASSERT_GE(tail, (int)(HISTORY / PAGE - 2) * PER_PAGE) TH_LOG("%s: tail %d", who, tail);
	TH_LOG("%s: %d more on its page, -ESTALE, then the last %d", who, prefix, tail);
}

static void run(struct __test_metadata *_metadata, FIXTURE_DATA(slow) *self, bool keep_all)
{
	struct llmp_broker_opts bo = { .struct_size = sizeof(bo), .page_size = PAGE,
				       .history_bytes = HISTORY, .keep_all_history = keep_all };
	struct llmp_client *snd, *fast, *slow, *slow0;
	struct llmp_msg_view v;
	size_t base, peak = 0, now;
	/* keep_all: fewer pages (System V segments count against kernel.shmmni) */
	int nmsg = keep_all ? NMSG / 4 : NMSG;
	int nmaps, fast_due = 0, r, n = 0;

	ASSERT_EQ(0, llmp_broker_new(self->p, &bo, &self->b)) TH_LOG("%s", llmp_strerror_last());
	ASSERT_EQ(0, new_client(self, 0, true));
	ASSERT_EQ(0, new_client(self, 1, false));
	ASSERT_EQ(0, new_client(self, 2, false));
	ASSERT_EQ(0, new_client(self, 3, false));
	snd = self->c[0];
	fast = self->c[1];
	slow = self->c[2];
	slow0 = self->c[3];

	/* 30 messages; slow reads 25 (it is on the third page), slow0 reads 5. */
	for (; n < 30; n++)
		ASSERT_EQ(0, send_one(self->b, snd, n));
	while ((r = llmp_broker_once(self->b)) > 0)
		;
	ASSERT_EQ(0, r);
	for (int i = 0; i < 25; i++) {
		ASSERT_EQ(1, llmp_client_recv(slow, &v));
		ASSERT_EQ(i, seq_of(&v));
	}
	for (int i = 0; i < 5; i++) {
		ASSERT_EQ(1, llmp_client_recv(slow0, &v));
		ASSERT_EQ(i, seq_of(&v));
	}
	base = shared_mapped(&nmaps);

	/* 20,000 more (about 7.6 MB of pages); the fast receiver keeps up. */
	for (; n < nmsg; n++) {
		ASSERT_EQ(0, send_one(self->b, snd, n)) TH_LOG("%s", llmp_strerror_last());
		if (n % 50 == 49 || n == nmsg - 1) {
			while ((r = llmp_broker_once(self->b)) > 0)
				;
			ASSERT_EQ(0, r) TH_LOG("%s", llmp_strerror_last());
			while ((r = llmp_client_recv(fast, &v)) == 1) {
				ASSERT_EQ(fast_due, seq_of(&v)) TH_LOG("fast receiver");
				ASSERT_EQ(0, check(&v, fast_due));
				fast_due++;
			}
			ASSERT_EQ(0, r) TH_LOG("fast receiver: %d %s", r, llmp_strerror_last());
		}
		if (n % 1000 == 0) {
			now = shared_mapped(&nmaps);
			if (now > peak)
				peak = now;
		}
	}
	ASSERT_EQ(nmsg, fast_due);
	now = shared_mapped(&nmaps);
	if (now > peak)
		peak = now;
	TH_LOG("%s: shared mappings %zu KiB before, peak %zu KiB, now %zu KiB in %d mappings",
	       keep_all ? "keep_all_history" : "history 64 KiB", base / 1024, peak / 1024,
	       now / 1024, nmaps);
	if (keep_all) {
		/* the metric sees the history: everything sent is still mapped */
		ASSERT_GT(peak, base + 3 * 1024 * 1024 / 2);
		return;
	}
	/* bounded: the kept history plus a few pages per sender and receiver */
	ASSERT_LT(peak, base + HISTORY + 64 * PAGE);
	ASSERT_LT(peak, 1024 * 1024);

	check_slow(_metadata, slow, 25, NMSG - 1, "slow receiver on a middle page");
	check_slow(_metadata, slow0, 5, NMSG - 1, "slow receiver on the first page");
}

TEST_F(slow, history_bounded)
{
	if (!self->p)
		return;
	run(_metadata, self, false);
}

TEST_F(slow, keep_all_history_grows)
{
	if (!self->p)
		return;
	run(_metadata, self, true);
}

/*
 * Issue 8, finding 16: llmp_client_pages_skipped() counts only what this
 * receiver lost.  Broadcast pages of 4 KiB hold 10 messages each (page k
 * holds seq 10k..10k+9) and the broker keeps the first page plus 4 more
 * (16 KiB).  After 200 messages pages 1..15 are dropped and 16..19 kept.
 *  - early: joined at the start, read nothing: lost pages 1..16 (16);
 *  - late: joined after the 200th message, so pages 1..15 were gone before
 *    it came: after 10 more messages (page 16 dropped too) it lost 1;
 *  - restarted: read 5 messages, then restarted from its saved state (env)
 *    after the 200th: like the late joiner, it lost page 16 only (1).
 * Each sees one -ESTALE, the first page's messages before it and
 * 170..209 after it.  Before the fix the late and restarted receivers
 * reported 16 (every page dropped before they joined).
 */
static void read_all(struct __test_metadata *_metadata, struct llmp_client *c, int first,
		     int resume, int last, const char *who)
{
	struct llmp_msg_view v;
	int due = first, stale = 0, r;

	while ((r = llmp_client_recv(c, &v)) != 0) {
		if (r == -ESTALE) {
			ASSERT_EQ(0, stale) TH_LOG("%s: -ESTALE twice", who);
			ASSERT_EQ(PER_PAGE, due) TH_LOG("%s: -ESTALE before the first page's end", who);
			stale = 1;
			due = resume;
			continue;
		}
		ASSERT_EQ(1, r) TH_LOG("%s: %d %s", who, r, llmp_strerror_last());
		ASSERT_EQ(due, seq_of(&v)) TH_LOG("%s: out of order", who);
		ASSERT_EQ(0, check(&v, due));
		due++;
	}
	ASSERT_EQ(1, stale) TH_LOG("%s: no -ESTALE", who);
	ASSERT_EQ(last + 1, due) TH_LOG("%s: the tail does not end with the last message", who);
}

TEST_F(slow, pages_skipped_counts_only_own_losses)
{
	struct llmp_broker_opts bo = { .struct_size = sizeof(bo), .page_size = PAGE,
				       .history_bytes = 4 * PAGE };
	struct llmp_client_opts o = { .struct_size = sizeof(o), .page_size = PAGE,
				      .send_timeout_ms = LLMP_NO_WAIT };
	struct llmp_client *snd, *early, *late, *restarted = NULL;
	struct llmp_msg_view v;
	int r, n = 0;

	if (!self->p)
		return;
	ASSERT_EQ(0, llmp_broker_new(self->p, &bo, &self->b)) TH_LOG("%s", llmp_strerror_last());
	ASSERT_EQ(0, new_client(self, 0, true));
	ASSERT_EQ(0, new_client(self, 1, false));
	ASSERT_EQ(0, new_client(self, 2, false));
	snd = self->c[0];
	early = self->c[1];

	for (; n < 5; n++)
		ASSERT_EQ(0, send_one(self->b, snd, n));
	while ((r = llmp_broker_once(self->b)) > 0)
		;
	ASSERT_EQ(0, r);
	for (int i = 0; i < 5; i++) {
		ASSERT_EQ(1, llmp_client_recv(self->c[2], &v));
		ASSERT_EQ(i, seq_of(&v));
	}
	for (; n < 200; n++) {
		ASSERT_EQ(0, send_one(self->b, snd, n));
		while ((r = llmp_broker_once(self->b)) > 0)
			;
		ASSERT_EQ(0, r);
	}
	/* the late joiner, and the restart of the receiver that read 5 */
	ASSERT_EQ(0, new_client(self, 3, false));
	late = self->c[3];
	ASSERT_EQ(0, llmp_client_to_env(self->c[2], "LLMP_SKIP_TEST"));
	ASSERT_EQ(0, llmp_client_from_env(self->p, "LLMP_SKIP_TEST", &o, &restarted))
		TH_LOG("%s", llmp_strerror_last());
	for (; n < 210; n++) {
		ASSERT_EQ(0, send_one(self->b, snd, n));
		while ((r = llmp_broker_once(self->b)) > 0)
			;
		ASSERT_EQ(0, r);
	}

	read_all(_metadata, early, 0, 170, 209, "early receiver");
	read_all(_metadata, late, 0, 170, 209, "late joiner");
	read_all(_metadata, restarted, 5, 170, 209, "restarted receiver");
	EXPECT_EQ(16u, llmp_client_pages_skipped(early));
	EXPECT_EQ(1u, llmp_client_pages_skipped(late));
	EXPECT_EQ(1u, llmp_client_pages_skipped(restarted));
	llmp_client_free(restarted);
}

TEST_HARNESS_MAIN
