// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * Broker-to-broker delivery.  Promises guarded: in a full mesh of three
 * brokers every client message arrives exactly once at every broker's
 * clients, with its sender id kept and FROM_B2B set, with each codec
 * (none, deflate, zstd, mixed fleets); the same across three broker
 * processes in three network namespaces; and the codec figures (what
 * deflate and zstd make of mutated fuzzing inputs, printed).  Bad frames
 * and LibAFL peers are b2b_frames_test, re-dialling b2b_redial_test.
 */
#include "b2b_fixture.h"

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
	llmp_set_log(llmp_test_log_cb, &b2b_capture, LLMP_LOG_DEBUG);
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
