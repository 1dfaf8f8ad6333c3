// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * What a broker-to-broker link takes from its peer.  Promises guarded: bad
 * link frames close the link (and the broker keeps serving), a LibAFL
 * broker played by hand links and exchanges messages, reserved tags from a
 * link are dropped, corrupt zstd drops the link, a zstd dialer links to a
 * LibAFL peer without zstd.
 */
#include "b2b_fixture.h"

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

TEST_HARNESS_MAIN
