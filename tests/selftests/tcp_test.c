// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * The broker's TCP codec: the postcard frames against those captured from
 * LibAFL (reference/vectors/README.md), every variant round-tripped,
 * malformed input rejected, B2B messages round-tripped.  TCP registration
 * through a live listener is tcp_reg_test, the event loop and the tools
 * tcp_loop_test; broker-to-broker links are in b2b_test.c.
 */
#include "tcp_fixture.h"

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

TEST_HARNESS_MAIN
