// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * The test-case message (llmp/corpus.h): the codec's round trip, the
 * decoder on hostile bytes (every truncation, every single-byte change,
 * lengths that lie), and the broker's de-duplication
 * hook with a real broker and clients: duplicates dropped, distinct test
 * cases all forwarded, malformed ones dropped without harming an honest
 * client, and the memory budget held with the oldest hashes evicted.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kselftest_harness.h"
#include "llmp_test.h"
#include "llmp/corpus.h"
#include "sha256.h" /* lib/: the content hash (its vectors are in auth_test) */

static struct llmp_tc mk(const char *host, const char *name, const void *data, size_t len)
{
	struct llmp_tc t = { .kind = LLMP_TC_KIND_AFL, .instance = 7, .host = host,
			     .host_len = strlen(host), .name = name, .name_len = strlen(name),
			     .data = data, .data_len = len };
	return t;
}

TEST(codec_round_trip)
{
	uint8_t data[300], buf[1024], h[32];
	struct llmp_tc t, d;
	int n;

	for (unsigned i = 0; i < sizeof(data); i++)
		data[i] = (uint8_t)(i * 7);
	t = mk("hostA", "id:000001,src:000000", data, sizeof(data));
	t.flags = LLMP_TC_F_STATS;
	t.execs = 123456789012ull;
	t.edges = 4242;
	n = llmp_tc_encode(&t, buf, sizeof(buf));
	ASSERT_EQ((int)llmp_tc_encoded_len(&t), n);
	ASSERT_EQ(0, llmp_tc_decode(buf, (size_t)n, &d));
	EXPECT_EQ(LLMP_TC_KIND_AFL, d.kind);
	EXPECT_EQ(7u, d.instance);
	EXPECT_EQ(123456789012ull, d.execs);
	EXPECT_EQ(4242u, d.edges);
	ASSERT_EQ(5u, d.host_len);
	EXPECT_EQ(0, memcmp(d.host, "hostA", 5));
	ASSERT_EQ(strlen("id:000001,src:000000"), d.name_len);
	ASSERT_EQ(sizeof(data), d.data_len);
	EXPECT_EQ(0, memcmp(d.data, data, sizeof(data)));
	llmp_sha256(data, sizeof(data), h);
	EXPECT_EQ(0, memcmp(h, d.hash, 32));
	/* no stats, empty name, empty data */
	t = mk("h", "", NULL, 0);
	n = llmp_tc_encode(&t, buf, sizeof(buf));
	ASSERT_EQ((int)LLMP_TC_FIXED_LEN + 1, n);
	ASSERT_EQ(0, llmp_tc_decode(buf, (size_t)n, &d));
	EXPECT_EQ(0u, d.data_len);
	/* a later version-1 writer's extra header bytes are skipped */
	t = mk("h", "n", "xyz", 3);
	n = llmp_tc_encode(&t, buf, sizeof(buf));
	memmove(buf + n - 3 + 4, buf + n - 3, 3);
	memset(buf + n - 3, 0xee, 4);
	buf[8] = (uint8_t)(buf[8] + 4);
	ASSERT_EQ(0, llmp_tc_decode(buf, (size_t)n + 4, &d));
	ASSERT_EQ(3u, d.data_len);
	EXPECT_EQ(0, memcmp(d.data, "xyz", 3));
}

TEST(encode_refuses)
{
	uint8_t buf[512];
	char longhost[LLMP_TC_HOST_MAX + 2];
	struct llmp_tc t;

	memset(longhost, 'h', sizeof(longhost) - 1);
	longhost[sizeof(longhost) - 1] = 0;
	t = mk("", "n", "x", 1);
	EXPECT_EQ(-EINVAL, llmp_tc_encode(&t, buf, sizeof(buf)));
	t = mk(longhost, "n", "x", 1);
	EXPECT_EQ(-EINVAL, llmp_tc_encode(&t, buf, sizeof(buf)));
	t = mk("h", "../etc/passwd", "x", 1);
	EXPECT_EQ(-EINVAL, llmp_tc_encode(&t, buf, sizeof(buf)));
	t = mk("h", "..", "x", 1);
	EXPECT_EQ(-EINVAL, llmp_tc_encode(&t, buf, sizeof(buf)));
	t = mk("h", "a\nb", "x", 1);
	EXPECT_EQ(-EINVAL, llmp_tc_encode(&t, buf, sizeof(buf)));
	t = mk("h", "n", "x", 1);
	t.flags = 0x8;
	EXPECT_EQ(-EINVAL, llmp_tc_encode(&t, buf, sizeof(buf)));
	t = mk("h", "n", "x", 1);
	EXPECT_EQ(-ENOSPC, llmp_tc_encode(&t, buf, 10));
	t.data_len = LLMP_TC_DATA_MAX + 1;
	EXPECT_EQ(-EINVAL, llmp_tc_encode(&t, buf, sizeof(buf)));
}

/* Every prefix, every single-byte change: the decoder returns 0 or -EBADMSG, never reads past. */
TEST(decode_hostile)
{
	uint8_t data[64], buf[256], *copy;
	struct llmp_tc t, d;
	int n, ok = 0;

	for (unsigned i = 0; i < sizeof(data); i++)
		data[i] = (uint8_t)i;
	t = mk("host", "name", data, sizeof(data));
	t.flags = LLMP_TC_F_STATS;
	n = llmp_tc_encode(&t, buf, sizeof(buf));
	ASSERT_LT(0, n);
	for (int len = 0; len < n; len++) {
		copy = malloc(len ? (size_t)len : 1); /* exact size: ASan sees any overread */
		ASSERT_NE(NULL, copy);
		memcpy(copy, buf, (size_t)len);
		EXPECT_EQ(-EBADMSG, llmp_tc_decode(copy, (size_t)len, &d));
		free(copy);
	}
	copy = malloc((size_t)n);
	ASSERT_NE(NULL, copy);
	for (int i = 0; i < n; i++) {
		for (int bit = 0; bit < 8; bit++) {
			memcpy(copy, buf, (size_t)n);
			copy[i] ^= (uint8_t)(1u << bit);
			int r = llmp_tc_decode(copy, (size_t)n, &d);

			ASSERT_TRUE(r == 0 || r == -EBADMSG);
			if (r == 0) {
				/*
				 * only fields that are not checked may change: kind,
				 * instance, stats, and host/name bytes that stay
				 * printable (the names sit at 72..80), and a
				 * shorter host or name length (10, 11): the bytes
				 * it leaves out count as a later writer's extension
				 */
				if (!(i == 5 || i == 10 || i == 11 || (i >= 12 && i < 16) ||
				      (i >= 56 && i < 80)))
					TH_LOG("byte %d bit %d changed and still decoded", i, bit);
				ASSERT_TRUE(i == 5 || i == 10 || i == 11 || (i >= 12 && i < 16) ||
					    (i >= 56 && i < 80));
				ok += i == 5 || (i >= 12 && i < 16) || (i >= 56 && i < 72);
			}
		}
	}
	/* every bit of kind, instance and stats; the hash covers every data byte */
	EXPECT_EQ(8 * (1 + 4 + 16), ok);
	/* lengths that lie: data_len huge, header length past the end */
	memcpy(copy, buf, (size_t)n);
	memset(copy + 48, 0xff, 8);
	EXPECT_EQ(-EBADMSG, llmp_tc_decode(copy, (size_t)n, &d));
	memcpy(copy, buf, (size_t)n);
	copy[8] = 0xff;
	copy[9] = 0xff;
	EXPECT_EQ(-EBADMSG, llmp_tc_decode(copy, (size_t)n, &d));
	free(copy);
	EXPECT_EQ(-EBADMSG, llmp_tc_decode(NULL, 100, &d));
}

TEST(dedup_budget)
{
	struct llmp_dedup *d;
	struct llmp_dedup_stats st;
	uint8_t h[32];
	uint64_t cap;

	EXPECT_EQ(-EINVAL, llmp_dedup_new(100, &d));
	ASSERT_EQ(0, llmp_dedup_new(64 * 1024, &d));
	llmp_dedup_stats(d, &st);
	cap = st.capacity;
	ASSERT_LT(1000u, cap);
	EXPECT_GE(64u * 1024u, st.bytes); /* the budget holds */
	/* 3 x capacity distinct hashes: every one new, evictions keep entries at capacity */
	for (uint64_t i = 0; i < 3 * cap; i++) {
		llmp_sha256(&i, sizeof(i), h);
		ASSERT_EQ(1, llmp_dedup_check(d, h));
	}
	llmp_dedup_stats(d, &st);
	EXPECT_EQ(cap, st.entries);
	EXPECT_EQ(2 * cap, st.evicted);
	EXPECT_GE(64u * 1024u, st.bytes);
	/* the newest cap are remembered, the older ones forgotten */
	for (uint64_t i = 2 * cap; i < 3 * cap; i++) {
		llmp_sha256(&i, sizeof(i), h);
		ASSERT_EQ(0, llmp_dedup_check(d, h));
	}
	{
		uint64_t i = 0;

		llmp_sha256(&i, sizeof(i), h);
		EXPECT_EQ(1, llmp_dedup_check(d, h));
	}
	llmp_dedup_free(d);
}

/* A broker with the hook, a publisher, a reader, and a hostile client. */
TEST(dedup_hook_broker)
{
	struct llmp_provider *p;
	struct llmp_broker *b;
	struct llmp_client *c[3];
	struct llmp_shmem_desc bd, od;
	struct llmp_client_opts o = { .struct_size = sizeof(o), .send_timeout_ms = 1000 };
	struct llmp_dedup *d;
	struct llmp_dedup_stats st;
	struct llmp_msg_view v;
	struct llmp_tc t, got;
	char data[32], garbage[100];
	int seen[40] = { 0 }, other = 0, r;

	ASSERT_EQ(0, llmp_provider_new(LLMP_SHMEM_MEMFD, &p));
	ASSERT_EQ(0, llmp_broker_new(p, NULL, &b));
	ASSERT_EQ(0, llmp_dedup_new(0, &d));
	ASSERT_EQ(0, llmp_dedup_attach(d, b));
	ASSERT_EQ(0, llmp_broker_broadcast_desc(b, &bd));
	for (int i = 0; i < 3; i++) {
		ASSERT_EQ(0, llmp_client_new(p, &bd, &o, &c[i]));
		ASSERT_EQ(0, llmp_client_out_desc(c[i], &od));
		r = llmp_broker_add_client(b, &od);
		ASSERT_LT(0, r);
		llmp_client_set_id(c[i], (uint32_t)r);
	}
	/* 40 distinct, each sent twice by c0 and once by c2, plus non-test-case traffic */
	for (int round = 0; round < 3; round++) {
		for (int i = 0; i < 40; i++) {
			snprintf(data, sizeof(data), "case-%d", i);
			t = mk(round == 2 ? "hostC" : "hostA", "n", data, strlen(data));
			ASSERT_EQ(0, llmp_tc_send(c[round == 2 ? 2 : 0], &t));
		}
		ASSERT_EQ(0, llmp_client_send(c[0], 0x1234, 0, "plain", 5));
		/* hostile: the test-case tag with garbage, and a valid header with a wrong hash */
		memset(garbage, 0x41, sizeof(garbage));
		ASSERT_EQ(0, llmp_client_send(c[2], LLMP_TAG_TESTCASE, 0, garbage, sizeof(garbage)));
		t = mk("hostC", "n", "evil", 4);
		ASSERT_LT(0, llmp_tc_encode(&t, garbage, sizeof(garbage)));
		garbage[16] ^= 1;
		ASSERT_EQ(0, llmp_client_send(c[2], LLMP_TAG_TESTCASE, 0, garbage,
					      llmp_tc_encoded_len(&t)));
		while (llmp_broker_once(b) > 0)
			;
	}
	while ((r = llmp_client_recv(c[1], &v)) == 1) {
		if (v.tag != LLMP_TAG_TESTCASE) {
			other += v.tag == 0x1234;
			continue;
		}
		ASSERT_EQ(0, llmp_tc_decode(v.buf, v.len, &got));
		int i;

		ASSERT_EQ(1, sscanf((const char *)got.data, "case-%d", &i));
		ASSERT_TRUE(i >= 0 && i < 40);
		seen[i]++;
	}
	ASSERT_EQ(0, r);
	for (int i = 0; i < 40; i++)
		EXPECT_EQ(1, seen[i]);
	EXPECT_EQ(3, other);
	llmp_dedup_stats(d, &st);
	EXPECT_EQ(126u, st.seen);
	EXPECT_EQ(40u, st.passed);
	EXPECT_EQ(80u, st.dropped);
	EXPECT_EQ(6u, st.invalid);
	EXPECT_EQ(40u, st.entries);
	for (int i = 0; i < 3; i++)
		llmp_client_free(c[i]);
	llmp_broker_free(b);
	llmp_dedup_free(d);
	llmp_provider_free(p);
}

TEST_HARNESS_MAIN
