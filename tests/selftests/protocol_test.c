// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * The LLMP protocol through the public API, broker and clients in one
 * process: messages and pages.  Promises guarded: round trip, tags and
 * flags preserved, reserved tags refused, zero-copy sends (alloc, commit,
 * cancel, shrink, over a page end), own-message skipping, oversize
 * messages, many page switches, late joiners (keep-all and bounded
 * history).  Every test runs on each provider that works here; the broker's
 * side (hooks, back-pressure, exits) is protocol_broker_test.
 */
#include "protocol_fixture.h"

/* ---------------------------------------------------------------------- */

TEST_F(proto, round_trip)
{
	struct llmp_client_opts o = copts(0, false);
	struct llmp_client *a, *r;
	struct llmp_msg_view v;
	int ida, idr;

	NEED_PROVIDER();
	ASSERT_EQ(0, new_broker(self, 0, 0, false, 0)) TH_LOG("%s", llmp_strerror_last());
	ida = new_client(self, &o, &a);
	ASSERT_GT(ida, 0) TH_LOG("client a: %d %s", ida, llmp_strerror_last());
	idr = new_client(self, &o, &r);
	ASSERT_GT(idr, 0) TH_LOG("client r: %d %s", idr, llmp_strerror_last());
	ASSERT_NE(ida, idr);
	ASSERT_EQ(2u, llmp_broker_nclients(self->b));
	ASSERT_EQ((uint32_t)ida, llmp_client_id(a));

	/* Nothing sent: nothing to forward, nothing to read. */
	ASSERT_EQ(0, llmp_broker_once(self->b));
	ASSERT_EQ(0, llmp_client_recv(r, &v));

	ASSERT_EQ(0, llmp_client_send(a, 0x51300321u, 0, "hello", 5)) TH_LOG("%s", llmp_strerror_last());
	ASSERT_EQ(0, llmp_client_recv(r, &v)); /* not forwarded yet */
	ASSERT_EQ(1, llmp_broker_once(self->b));
	ASSERT_EQ(1, llmp_client_recv(r, &v)) TH_LOG("%s", llmp_strerror_last());
	ASSERT_EQ((uint32_t)ida, v.sender);
	ASSERT_EQ(0x51300321u, v.tag);
	ASSERT_EQ(0u, v.flags);
	ASSERT_EQ(0u, v.broker);
	ASSERT_EQ(5u, v.len);
	ASSERT_EQ(0, memcmp(v.buf, "hello", 5));
	ASSERT_EQ(0, llmp_client_recv(r, &v)) TH_LOG("message seen twice");

	/* The sender also reads the broadcast page: it sees its own message. */
	ASSERT_EQ(1, llmp_client_recv(a, &v));
	ASSERT_EQ((uint32_t)ida, v.sender);
	ASSERT_EQ(5u, v.len);
	ASSERT_EQ(0, llmp_client_recv(a, &v));

	/* Empty payload, and the other direction. */
	ASSERT_EQ(0, llmp_client_send(r, 0x51300322u, 0, NULL, 0));
	ASSERT_EQ(1, llmp_broker_once(self->b));
	ASSERT_EQ(1, llmp_client_recv(a, &v));
	ASSERT_EQ((uint32_t)idr, v.sender);
	ASSERT_EQ(0x51300322u, v.tag);
	ASSERT_EQ(0u, v.len);
	ASSERT_EQ(0, llmp_broker_once(self->b));
}

TEST_F(proto, tags_and_flags_preserved)
{
	static const uint32_t tags[] = { 0, 1, 0x51300321u, 0xFFFFFFFFu, LLMP_TAG_EXITING + 1,
					 0x12345678u };
	static const uint32_t flags[] = { LLMP_FLAG_INITIALIZED, LLMP_FLAG_COMPRESSED,
					  LLMP_FLAG_COMPRESSED | 0x100u, 0x80000000u, 0x10u, 0x1u };
	struct llmp_client_opts o = copts(0, false);
	struct llmp_client *a, *r;
	struct llmp_msg_view v;
	int ida;

	NEED_PROVIDER();
	ASSERT_EQ(0, new_broker(self, 0, 0, false, 0));
	ida = new_client(self, &o, &a);
	ASSERT_GT(ida, 0);
	ASSERT_GT(new_client(self, &o, &r), 0);
	for (unsigned i = 0; i < sizeof(tags) / sizeof(tags[0]); i++) {
		uint8_t buf[64];

		fill(buf, i * 10, i);
		ASSERT_EQ(0, llmp_client_send(a, tags[i], flags[i], buf, i * 10))
			TH_LOG("tag %#x flags %#x: %s", tags[i], flags[i], llmp_strerror_last());
	}
	ASSERT_EQ(6, pump(self->b));
	for (unsigned i = 0; i < sizeof(tags) / sizeof(tags[0]); i++) {
		ASSERT_EQ(1, llmp_client_recv(r, &v)) TH_LOG("message %u missing", i);
		ASSERT_EQ((uint32_t)ida, v.sender);
		ASSERT_EQ(tags[i], v.tag);
		ASSERT_EQ(flags[i], v.flags);
		ASSERT_EQ(i * 10, v.len);
		ASSERT_EQ(-1, check(v.buf, v.len, i));
	}
	ASSERT_EQ(0, llmp_client_recv(r, &v));
}

TEST_F(proto, reserved_tags_refused)
{
	static const uint32_t bad[] = { LLMP_TAG_UNSET, LLMP_TAG_UNINITIALIZED,
					LLMP_TAG_END_OF_PAGE, LLMP_TAG_NEW_SHM_CLIENT };
	struct llmp_client_opts o = copts(0, false);
	struct llmp_client *a, *r;
	struct llmp_msg_view v;
	void *buf;

	NEED_PROVIDER();
	ASSERT_EQ(0, new_broker(self, 0, 0, false, 0));
	ASSERT_GT(new_client(self, &o, &a), 0);
	ASSERT_GT(new_client(self, &o, &r), 0);
	for (unsigned i = 0; i < 4; i++) {
		ASSERT_EQ(-EINVAL, llmp_client_send(a, bad[i], 0, "x", 1)) TH_LOG("tag %#x", bad[i]);
		ASSERT_NE(0, llmp_strerror_last()[0]);
		/* The zero-copy path refuses them too, and the slot can be reused. */
		ASSERT_EQ(0, llmp_client_alloc(a, 1, &buf));
		ASSERT_EQ(-EINVAL, llmp_client_commit(a, bad[i], 0, 1)) TH_LOG("tag %#x", bad[i]);
		llmp_client_cancel(a);
	}
	ASSERT_EQ(-EINVAL, llmp_broker_send(self->b, LLMP_TAG_END_OF_PAGE, 0, NULL, 0));
	ASSERT_EQ(0, llmp_broker_once(self->b));
	ASSERT_EQ(0, llmp_client_recv(r, &v));
	/* The refusals left no outstanding allocation behind. */
	ASSERT_EQ(0, llmp_client_send(a, 7, 0, "ok", 2));
	ASSERT_EQ(1, pump(self->b));
	ASSERT_EQ(1, llmp_client_recv(r, &v));
	ASSERT_EQ(7u, v.tag);
	ASSERT_EQ(2u, v.len);
	ASSERT_EQ(0, llmp_client_recv(r, &v));
}

TEST_F(proto, zero_copy_alloc_commit_cancel_shrink)
{
	struct llmp_client_opts o = copts(0, false);
	struct llmp_client *a, *r;
	struct llmp_shmem_desc od;
	struct llmp_shmem *m = NULL;
	struct llmp_msg_view v;
	uint64_t used0, used1;
	const char *pg;
	void *buf, *buf2;
	int ida;

	NEED_PROVIDER();
	ASSERT_EQ(0, new_broker(self, 0, 0, false, 0));
	ida = new_client(self, &o, &a);
	ASSERT_GT(ida, 0);
	ASSERT_GT(new_client(self, &o, &r), 0);
	ASSERT_EQ(0, llmp_client_out_desc(a, &od));
	ASSERT_EQ(0, llmp_shmem_attach(self->p, &od, &m)) TH_LOG("%s", llmp_strerror_last());
	pg = llmp_shmem_addr(m);
	ASSERT_EQ(LLMP_PAGE_MAGIC, hdr64(pg, 0));
	used0 = hdr64(pg, 32);
	ASSERT_EQ(0u, used0);

	/* Commit without allocation is an error. */
	ASSERT_GT(0, llmp_client_commit(a, 9, 0, 0));

	/* alloc + fill in place + commit. */
	ASSERT_EQ(0, llmp_client_alloc(a, 100, &buf)) TH_LOG("%s", llmp_strerror_last());
	ASSERT_NE(NULL, buf);
	ASSERT_EQ(LLMP_TAG_UNINITIALIZED, hdr32(pg, 48));
	/* A second allocation while one is outstanding is refused. */
	ASSERT_GT(0, llmp_client_alloc(a, 10, &buf2));
	fill(buf, 100, 1);
	/* Written in place: the payload is in the shared page after the first header. */
	ASSERT_EQ(0, memcmp(pg + LLMP_PAGE_HEADER_LEN + LLMP_MSG_HEADER_LEN, buf, 100));
	ASSERT_EQ(100u, hdr64(pg, 48 + 24)); /* buf_len */
	ASSERT_EQ(104u, hdr64(pg, 48 + 32)); /* buf_len_padded */
	ASSERT_EQ(0u, hdr64(pg, 16)); /* not published before commit */
	ASSERT_EQ(0, llmp_client_commit(a, 0x100, 0x1, 100)) TH_LOG("%s", llmp_strerror_last());
	used1 = hdr64(pg, 32);
	ASSERT_EQ(1u, hdr64(pg, 16)); /* current_msg_id */
	ASSERT_EQ(40u + 104u, used1);  /* 100 B at offset 48: padded to 104 */

	/* alloc + cancel: nothing is sent and the space is given back. */
	ASSERT_EQ(0, llmp_client_alloc(a, 500, &buf));
	memset(buf, 0xEE, 500);
	ASSERT_EQ(used1 + 40 + 536, hdr64(pg, 32)); /* 500 B at offset 192: padded 536 */
	llmp_client_cancel(a);
	ASSERT_EQ(used1, hdr64(pg, 32));
	ASSERT_EQ(LLMP_TAG_UNSET, hdr32(pg, 48 + used1));
	ASSERT_EQ(1u, hdr64(pg, 16));

	/* alloc big + shrink on commit: the page holds the smaller message. */
	ASSERT_EQ(0, llmp_client_alloc(a, 1000, &buf));
	fill(buf, 10, 3);
	ASSERT_EQ(-EINVAL, llmp_client_commit(a, 0x300, 0, 1001)) TH_LOG("commit may not grow");
	ASSERT_EQ(0, llmp_client_commit(a, 0x300, 0, 10)) TH_LOG("%s", llmp_strerror_last());
	ASSERT_EQ(used1 + 40 + 24, hdr64(pg, 32)); /* 10 B at 192: padded 24 */
	ASSERT_EQ(LLMP_TAG_UNSET, hdr32(pg, 48 + used1 + 40 + 24));
	ASSERT_EQ(2u, hdr64(pg, 16));

	/* A plain send after all that lands right after the shrunk message. */
	ASSERT_EQ(0, llmp_client_send(a, 0x400, 0, "abc", 3));
	ASSERT_EQ(3u, hdr64(pg, 16));

	ASSERT_EQ(3, pump(self->b));
	ASSERT_EQ(1, llmp_client_recv(r, &v));
	ASSERT_EQ(0x100u, v.tag);
	ASSERT_EQ(0x1u, v.flags);
	ASSERT_EQ(100u, v.len);
	ASSERT_EQ(-1, check(v.buf, 100, 1));
	ASSERT_EQ(1, llmp_client_recv(r, &v));
	ASSERT_EQ(0x300u, v.tag) TH_LOG("the cancelled message was delivered");
	ASSERT_EQ(10u, v.len);
	ASSERT_EQ(-1, check(v.buf, 10, 3));
	ASSERT_EQ(1, llmp_client_recv(r, &v));
	ASSERT_EQ(0x400u, v.tag);
	ASSERT_EQ(0, memcmp(v.buf, "abc", 3));
	ASSERT_EQ(0, llmp_client_recv(r, &v));
	llmp_shmem_put(m);
}

TEST_F(proto, zero_copy_over_page_end)
{
	/* Allocations that do not fit the current page move to a new one. */
	struct llmp_client_opts o = copts(SMALL_PAGE, false);
	struct llmp_client *a, *r;
	struct llmp_msg_view v;
	void *buf;

	NEED_PROVIDER();
	ASSERT_EQ(0, new_broker(self, SMALL_PAGE, 0, false, 0));
	ASSERT_GT(new_client(self, &o, &a), 0);
	ASSERT_GT(new_client(self, &o, &r), 0);
	for (int i = 0; i < 200; i++) {
		size_t len = 100 + (size_t)(i * 37) % 900;
		int ret;

		while ((ret = llmp_client_alloc(a, len, &buf)) == -EAGAIN)
			ASSERT_LE(0, llmp_broker_once(self->b));
		ASSERT_EQ(0, ret) TH_LOG("alloc %zu: %s", len, llmp_strerror_last());
		fill(buf, len, (uint64_t)i);
		if (i % 3 == 0) {
			llmp_client_cancel(a);
			continue;
		}
		ASSERT_EQ(0, llmp_client_commit(a, SEQ_TAG(i), 0, i % 3 == 1 ? len : len / 2));
		ASSERT_LE(0, pump(self->b));
		ASSERT_EQ(1, llmp_client_recv(r, &v));
		ASSERT_EQ(SEQ_TAG(i), v.tag);
		ASSERT_EQ(i % 3 == 1 ? len : len / 2, v.len);
		ASSERT_EQ(-1, check(v.buf, v.len, (uint64_t)i));
	}
	ASSERT_EQ(0, llmp_client_recv(r, &v));
}

TEST_F(proto, skip_own)
{
	struct llmp_client_opts skip = copts(0, true), noskip = copts(0, false);
	struct llmp_client *a, *b;
	struct llmp_msg_view v;
	int ida, idb, seen_a = 0, seen_b = 0;

	NEED_PROVIDER();
	ASSERT_EQ(0, new_broker(self, 0, 0, false, 0));
	ida = new_client(self, &skip, &a);
	ASSERT_GT(ida, 0);
	idb = new_client(self, &noskip, &b);
	ASSERT_GT(idb, 0);
	for (int i = 0; i < 5; i++) {
		ASSERT_EQ(0, llmp_client_send(a, 0xA0, 0, "from a", 6));
		ASSERT_EQ(0, llmp_client_send(b, 0xB0, 0, "from b", 6));
	}
	ASSERT_EQ(10, pump(self->b));
	/* a skips its own five and sees b's five. */
	for (int i = 0; i < 5; i++) {
		ASSERT_EQ(1, llmp_client_recv(a, &v));
		ASSERT_EQ((uint32_t)idb, v.sender) TH_LOG("skip_own client saw its own message");
		ASSERT_EQ(0xB0u, v.tag);
	}
	ASSERT_EQ(0, llmp_client_recv(a, &v));
	/* b does not skip: all ten. */
	for (int i = 0; i < 10; i++) {
		ASSERT_EQ(1, llmp_client_recv(b, &v));
		if (v.sender == (uint32_t)ida)
			seen_a++;
		else if (v.sender == (uint32_t)idb)
			seen_b++;
	}
	ASSERT_EQ(5, seen_a);
	ASSERT_EQ(5, seen_b);
	ASSERT_EQ(0, llmp_client_recv(b, &v));
}

TEST_F(proto, oversize_messages)
{
	/* Messages larger than the page: the sender moves to a larger page. */
	static const size_t sizes[] = { SMALL_PAGE - 48 - 40 - 128, SMALL_PAGE, 3 * SMALL_PAGE + 5,
					64 * 1024, 8, (1u << 20) + 4097, 0 };
	struct llmp_client_opts o = copts(SMALL_PAGE, false);
	struct llmp_client *a, *r;
	struct llmp_msg_view v;
	void *buf = malloc((1u << 20) + 4097), *zb = NULL;

	NEED_PROVIDER();
	ASSERT_NE(NULL, buf);
	ASSERT_EQ(0, new_broker(self, SMALL_PAGE, 0, false, 0));
	ASSERT_GT(new_client(self, &o, &a), 0);
	ASSERT_GT(new_client(self, &o, &r), 0);
	for (unsigned i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		fill(buf, sizes[i], i);
		ASSERT_EQ(0, send_pumped(self->b, a, SEQ_TAG(i), 0, buf, sizes[i]))
			TH_LOG("size %zu: %s", sizes[i], llmp_strerror_last());
		ASSERT_LE(0, pump(self->b)) TH_LOG("%s", llmp_strerror_last());
		ASSERT_EQ(1, llmp_client_recv(r, &v)) TH_LOG("size %zu: %s", sizes[i], llmp_strerror_last());
		ASSERT_EQ(SEQ_TAG(i), v.tag);
		ASSERT_EQ(sizes[i], v.len);
		ASSERT_EQ(-1, check(v.buf, v.len, i)) TH_LOG("size %zu", sizes[i]);
	}
	ASSERT_EQ(0, llmp_client_recv(r, &v));
	/* Beyond what any page may hold: refused up front, nothing allocated. */
	ASSERT_EQ(-EMSGSIZE, llmp_client_alloc(a, (size_t)LLMP_SHMEM_MAX_SIZE, &zb));
	ASSERT_EQ(0, llmp_client_send(a, 0x77, 0, "ok", 2)) TH_LOG("%s", llmp_strerror_last());
	ASSERT_LE(0, pump(self->b));
	ASSERT_EQ(1, llmp_client_recv(r, &v));
	ASSERT_EQ(0x77u, v.tag);
	free(buf);
}

TEST_F(proto, many_page_switches)
{
	/* 4 KiB pages, 20,000 messages of 0..600 B: well over a thousand pages. */
	struct llmp_client_opts o = copts(SMALL_PAGE, false);
	struct llmp_client *a, *r;
	struct llmp_msg_view v;
	uint8_t buf[600];
	uint64_t rs = 42, bytes = 0;
	size_t lens[64];
	int next_read = 0;

	NEED_PROVIDER();
	ASSERT_EQ(0, new_broker(self, SMALL_PAGE, 0, false, 0));
	ASSERT_GT(new_client(self, &o, &a), 0);
	ASSERT_GT(new_client(self, &o, &r), 0);
	for (int i = 0; i < 20000; i++) {
		size_t len = llmp_test_rand(&rs) % 601;

		lens[i % 64] = len;
		bytes += len;
		fill(buf, len, (uint64_t)i);
		ASSERT_EQ(0, send_pumped(self->b, a, SEQ_TAG(i), 0, buf, len))
			TH_LOG("message %d: %s", i, llmp_strerror_last());
		/* Read in bursts so that several pages pile up in between. */
		if (i % 37 == 36 || i == 19999) {
			ASSERT_LE(0, pump(self->b)) TH_LOG("%s", llmp_strerror_last());
			while (next_read <= i) {
				ASSERT_EQ(1, llmp_client_recv(r, &v))
					TH_LOG("message %d missing: %s", next_read, llmp_strerror_last());
				ASSERT_EQ(SEQ_TAG(next_read), v.tag) TH_LOG("expected %d", next_read);
				ASSERT_EQ(lens[next_read % 64], v.len);
				ASSERT_EQ(-1, check(v.buf, v.len, (uint64_t)next_read));
				next_read++;
			}
		}
	}
	ASSERT_EQ(20000, next_read);
	ASSERT_EQ(0, llmp_client_recv(r, &v));
	ASSERT_GT(bytes, 1000u * SMALL_PAGE);
}

TEST_F(proto, late_joiner_keep_all)
{
	/* keep_all_history: a client created after 2,000 messages replays them all. */
	struct llmp_client_opts o = copts(SMALL_PAGE, false);
	struct llmp_client *a, *late;
	struct llmp_msg_view v;
	uint8_t buf[300];

	NEED_PROVIDER();
	ASSERT_EQ(0, new_broker(self, SMALL_PAGE, 0, true, 0));
	ASSERT_GT(new_client(self, &o, &a), 0);
	for (int i = 0; i < 2000; i++) {
		fill(buf, (size_t)i % 300, (uint64_t)i);
		ASSERT_EQ(0, send_pumped(self->b, a, SEQ_TAG(i), 0, buf, (size_t)i % 300));
		if (i % 50 == 0)
			ASSERT_LE(0, pump(self->b));
	}
	ASSERT_LE(0, pump(self->b));
	ASSERT_GT(new_client(self, &o, &late), 0);
	for (int i = 0; i < 2000; i++) {
		ASSERT_EQ(1, llmp_client_recv(late, &v)) TH_LOG("message %d: %s", i, llmp_strerror_last());
		ASSERT_EQ(SEQ_TAG(i), v.tag);
		ASSERT_EQ((size_t)i % 300, v.len);
		ASSERT_EQ(-1, check(v.buf, v.len, (uint64_t)i));
	}
	ASSERT_EQ(0, llmp_client_recv(late, &v));
	/* And it keeps up with new traffic. */
	ASSERT_EQ(0, llmp_client_send(a, SEQ_TAG(2000), 0, "n", 1));
	ASSERT_EQ(1, pump(self->b));
	ASSERT_EQ(1, llmp_client_recv(late, &v));
	ASSERT_EQ(SEQ_TAG(2000), v.tag);
}

TEST_F(proto, late_joiner_bounded_history)
{
	/*
	 * History bounded to 32 KiB of 4 KiB pages.  The policy: the broker
	 * keeps its first broadcast page (what new clients are given) and the
	 * newest pages up to history_bytes; the first page's end-of-page record
	 * is re-pointed at the oldest page still kept.  So a client joining
	 * after ~600 KiB of traffic reads the first page's messages, then
	 * continues at the oldest kept page: one gap, then a contiguous tail
	 * that ends with the last message and fits the bound.
	 */
	struct llmp_client_opts o = copts(SMALL_PAGE, false);
	struct llmp_client *a, *late;
	struct llmp_msg_view v;
	uint8_t buf[300];
	int seqs[2000], n = 0, k;

	NEED_PROVIDER();
	ASSERT_EQ(0, new_broker(self, SMALL_PAGE, 32 * 1024, false, 0));
	ASSERT_GT(new_client(self, &o, &a), 0);
	for (int i = 0; i < 2000; i++) {
		fill(buf, 300, (uint64_t)i);
		ASSERT_EQ(0, send_pumped(self->b, a, SEQ_TAG(i), 0, buf, 300));
		if (i % 20 == 0)
			ASSERT_LE(0, pump(self->b));
	}
	ASSERT_LE(0, pump(self->b));
	ASSERT_GT(new_client(self, &o, &late), 0);
	for (;;) {
		int ret = llmp_client_recv(late, &v);

		ASSERT_LE(0, ret) TH_LOG("%s", llmp_strerror_last());
		if (ret == 0)
			break;
		ASSERT_LT(n, 2000);
		ASSERT_EQ(0x40000000u, v.tag & 0xff000000u);
		seqs[n] = (int)(v.tag & 0xffffff);
		ASSERT_EQ(300u, v.len);
		ASSERT_EQ(-1, check(v.buf, 300, (uint64_t)seqs[n]));
		n++;
	}
	/* The first page: 10 messages of 340 + 40 B fit 4 KiB with the EOP reserve. */
	k = 0;
	while (k < n && seqs[k] == k)
		k++;
	ASSERT_EQ(10, k) TH_LOG("first page: %d messages", k);
	ASSERT_LT(k, n) TH_LOG("nothing after the first page");
	ASSERT_GT(seqs[k], k) TH_LOG("the whole history was kept despite history_bytes");
	for (int i = k + 1; i < n; i++) {
		ASSERT_EQ(seqs[i - 1] + 1, seqs[i]) TH_LOG("gap inside the kept tail at %d", i);
	}
	ASSERT_EQ(1999, seqs[n - 1]) TH_LOG("tail does not end with the last message");
	/* Pages after the first hold at most 32 KiB: 8 pages of 10 messages. */
	ASSERT_LE(n - k, 80) TH_LOG("%d messages kept after the first page", n - k);
	ASSERT_GE(n - k, 50) TH_LOG("%d messages kept after the first page", n - k);
}

TEST_HARNESS_MAIN
