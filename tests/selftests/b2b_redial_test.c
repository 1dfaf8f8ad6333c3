// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * Dialled broker-to-broker links that come back.  Promises guarded: a
 * dial waits (with backoff, not a busy loop) for a peer not up yet; a link
 * re-dials after its peer was killed and restarted, after a connection
 * reset and after a half-open connection, and the messages of both sides
 * arrive exactly once.
 */
#include "b2b_fixture.h"

/* ---- re-dialling ---------------------------------------------------------------- */

/*
 * Nobody listens on the port broker 0 dials: llmp_loop_connect_b2b()
 * returns at once, the loop keeps trying with backoff (a few attempts in
 * 2 s, not a busy loop) while a client registers and gets its message
 * round; once a broker listens there, the link comes up and both sides'
 * messages, including one sent before the link existed, arrive exactly once.
 */
TEST_F_TIMEOUT(link, dial_waits_for_absent_peer, 60)
{
	struct llmp_node *a = &self->n[0], b;
	struct llmp_client *ca, *cb;
	struct llmp_msg_view v;
	uint16_t port = llmp_test_free_port();
	int r;

	LINK_NODE(C_POLL); /* the waits between attempts on poll(2); the other tests use io_uring */
	ASSERT_NE(0, port);
	memset(&b, 0, sizeof(b));
	ASSERT_EQ(0, llmp_loop_connect_b2b(a->lp, NULL, port)) TH_LOG("%s", llmp_strerror_last());
	ASSERT_EQ(0, llmp_node_start(a));
	ASSERT_EQ(0, llmp_client_connect_tcp(a->cp, NULL, a->port, NULL, &ca));
	ASSERT_EQ(0, llmp_client_send(ca, TAG, 0, "early", 5));
	while ((r = llmp_client_recv_wait(ca, &v, 5000)) == 1 && v.tag != TAG)
		;
	ASSERT_EQ(1, r);
	usleep(2000000);
	unsigned long dials = atomic_load_explicit(&a->dials, memory_order_relaxed);
	/* 0, ~0.1, ~0.3, ~0.7, ~1.5 s: backoff, not a spin. */
	ASSERT_GE(dials, 3) TH_LOG("%lu attempts in 2 s", dials);
	ASSERT_LE(dials, 8) TH_LOG("%lu attempts in 2 s", dials);
	ASSERT_EQ(0, atomic_load_explicit(&a->links_up, memory_order_relaxed));
	ASSERT_TRUE(log_has("attempt 1 failed")) TH_LOG("%s", b2b_log);

	/* The peer appears. */
	ASSERT_EQ(0, node_init(&b, self->kind, port, 0)) TH_LOG("%s", llmp_strerror_last());
	ASSERT_EQ(0, llmp_node_start(&b));
	ASSERT_TRUE(llmp_node_wait_links(a, 1, 15000)) TH_LOG("no link after the peer came up:\n%s", b2b_log);
	ASSERT_TRUE(llmp_node_wait_links(&b, 1, 5000));
	ASSERT_EQ(0, llmp_client_connect_tcp(b.cp, NULL, b.port, NULL, &cb));
	ASSERT_EQ(0, llmp_client_send(cb, TAG, 0, "from b", 6));
	ASSERT_EQ(0, llmp_client_send(ca, TAG, 0, "late", 4));
	int got_a = 0, got_b = 0;
	while (got_a < 1 && (r = llmp_client_recv_wait(ca, &v, 5000)) == 1)
		got_a += v.tag == TAG && v.len == 6 && !memcmp(v.buf, "from b", 6);
	ASSERT_EQ(1, got_a);
	int early = 0, late = 0;
	while (early + late < 2 && (r = llmp_client_recv_wait(cb, &v, 5000)) == 1) {
		if (v.tag != TAG || !(v.flags & LLMP_FLAG_FROM_B2B))
			continue;
		early += v.len == 5 && !memcmp(v.buf, "early", 5);
		late += v.len == 4 && !memcmp(v.buf, "late", 4);
	}
	ASSERT_EQ(1, early);
	ASSERT_EQ(1, late);
	usleep(200000);
	while ((r = llmp_client_recv(cb, &v)) == 1)
		got_b += v.tag == TAG && (v.flags & LLMP_FLAG_FROM_B2B);
	ASSERT_EQ(0, got_b) TH_LOG("duplicates at b");
	while ((r = llmp_client_recv(ca, &v)) == 1)
		ASSERT_FALSE(v.tag == TAG && (v.flags & LLMP_FLAG_FROM_B2B)) TH_LOG("duplicate at a");
	llmp_client_free(ca);
	llmp_client_free(cb);
	ASSERT_EQ(0, llmp_node_stop(a));
	llmp_node_fini(&b);
}

/* Start llmp-broker on port (0: any); returns its pid, *port_out the port it listens on. */
static pid_t start_tool_broker(const char *path, enum llmp_shmem_kind kind, uint16_t port,
			       uint16_t *port_out, FILE **out)
{
	char ps[16], line[256];
	int pfd[2];
	pid_t pid;
	FILE *f;
	unsigned p = 0;

	if (pipe(pfd))
		return -1;
	snprintf(ps, sizeof(ps), "%u", port);
	pid = fork();
	if (pid == 0) {
		int null = open("/dev/null", O_WRONLY | O_CLOEXEC);

		dup2(pfd[1], 1);
		if (null >= 0)
			dup2(null, 2);
		close(pfd[0]);
		execl(path, path, "--port", ps, "--provider", llmp_shmem_kind_name(kind),
		      "--stats-interval", "0", (char *)NULL);
		_exit(127);
	}
	close(pfd[1]);
	f = fdopen(pfd[0], "r");
	while (f && fgets(line, sizeof(line), f)) {
		char *colon = strrchr(line, ':');

		if (strstr(line, "listening on ") && colon && sscanf(colon + 1, "%u", &p) == 1)
			break;
	}
	*out = f; /* kept open until the broker exits: it prints a last line */
	*port_out = (uint16_t)p;
	return p ? pid : -1;
}

/* The first i with seen[i] != 1 (a loss or a duplicate), or -1. */
static int first_not_once(const int *seen, int n)
{
	for (int i = 0; i < n; i++)
		if (seen[i] != 1)
			return i;
	return -1;
}

/* Receive until `want` TAG messages whose text starts with prefix are seen; counts per index. */
static int collect(struct llmp_client *c, const char *prefix, int *seen, int n, int want)
{
	struct llmp_msg_view v;
	int got = 0, i;
	char t[64];

	while (got < want && llmp_client_recv_wait(c, &v, 10000) == 1) {
		if (v.tag != TAG || v.len >= sizeof(t))
			continue;
		memcpy(t, v.buf, v.len);
		t[v.len] = 0;
		if (strncmp(t, prefix, strlen(prefix)) || sscanf(t + strlen(prefix), "%d", &i) != 1 ||
		    i < 0 || i >= n)
			continue;
		seen[i]++;
		got++;
	}
	return got;
}

static int send_n(struct llmp_client *c, const char *prefix, int n)
{
	char t[64];

	for (int i = 0; i < n; i++) {
		snprintf(t, sizeof(t), "%s%d", prefix, i);
		if (llmp_client_send(c, TAG, 0, t, strlen(t)) < 0)
			return -1;
	}
	return 0;
}

#define RN 20

/*
 * Broker A (here) dials broker B (an llmp-broker process).  B is SIGKILLed
 * and started again on the same port: A notices, re-dials, and the new link
 * carries what A's client sent while B was away and afterwards, each
 * message exactly once; nothing from before the kill is sent again, and B's
 * new messages reach A once.
 */
TEST_F_TIMEOUT(link, redial_after_peer_restart, 90)
{
	struct llmp_node *a = &self->n[0];
	struct llmp_client *txa, *rxa, *txb, *rxb;
	char path[4200];
	uint16_t port, port2;
	int seen[RN], st;
	FILE *bout = NULL;
	pid_t bp;

	LINK_NODE(0);
	if (!llmp_test_tool_path("llmp-broker", path, sizeof(path)))
		SKIP(return, "llmp-broker not built beside the tests");
	bp = start_tool_broker(path, self->kind, 0, &port, &bout);
	ASSERT_LT(0, bp);
	ASSERT_EQ(0, llmp_loop_connect_b2b(a->lp, NULL, port));
	ASSERT_EQ(0, llmp_node_start(a));
	ASSERT_EQ(0, llmp_client_connect_tcp(a->cp, NULL, a->port, NULL, &txa));
	ASSERT_EQ(0, llmp_client_connect_tcp(a->cp, NULL, a->port, NULL, &rxa));
	ASSERT_EQ(0, llmp_client_connect_tcp(a->cp, NULL, port, NULL, &txb));
	ASSERT_EQ(0, llmp_client_connect_tcp(a->cp, NULL, port, NULL, &rxb));
	ASSERT_TRUE(llmp_node_wait_links(a, 1, 10000)) TH_LOG("%s", b2b_log);

	/* Before: both ways, once. */
	ASSERT_EQ(0, send_n(txa, "a0 ", RN));
	ASSERT_EQ(0, send_n(txb, "b0 ", RN));
	memset(seen, 0, sizeof(seen));
	ASSERT_EQ(RN, collect(rxb, "a0 ", seen, RN, RN));
	memset(seen, 0, sizeof(seen));
	ASSERT_EQ(RN, collect(rxa, "b0 ", seen, RN, RN));
	llmp_client_free(txb);
	llmp_client_free(rxb);

	/* B dies; A's link goes down and A's client sends while B is away. */
	ASSERT_EQ(0, kill(bp, SIGKILL));
	ASSERT_EQ(bp, waitpid(bp, &st, 0));
	if (bout)
		fclose(bout);
	llmp_test_remove_orphans(self->kind, bp);
	ASSERT_TRUE(llmp_node_wait_links(a, 0, 10000));
	ASSERT_EQ(0, send_n(txa, "a1 ", RN));
	usleep(300000);

	/* B again, same port: the link comes back by itself. */
	bp = start_tool_broker(path, self->kind, port, &port2, &bout);
	ASSERT_LT(0, bp);
	ASSERT_EQ(port, port2);
	ASSERT_EQ(0, llmp_client_connect_tcp(a->cp, NULL, port, NULL, &txb));
	ASSERT_EQ(0, llmp_client_connect_tcp(a->cp, NULL, port, NULL, &rxb));
	ASSERT_TRUE(llmp_node_wait_links(a, 1, 15000)) TH_LOG("no re-dial:\n%s", b2b_log);
	ASSERT_EQ(0, send_n(txa, "a2 ", RN));
	ASSERT_EQ(0, send_n(txb, "b2 ", RN));
	/* B's client: every a1 and a2 exactly once (a1 was kept in A's history). */
	memset(seen, 0, sizeof(seen));
	ASSERT_EQ(RN, collect(rxb, "a1 ", seen, RN, RN));
	ASSERT_EQ(-1, first_not_once(seen, RN)) TH_LOG("a1: message %d", first_not_once(seen, RN));
	memset(seen, 0, sizeof(seen));
	ASSERT_EQ(RN, collect(rxb, "a2 ", seen, RN, RN));
	ASSERT_EQ(-1, first_not_once(seen, RN)) TH_LOG("a2: message %d", first_not_once(seen, RN));
	/* A's client: every b2 once. */
	memset(seen, 0, sizeof(seen));
	ASSERT_EQ(RN, collect(rxa, "b2 ", seen, RN, RN));
	/* Then nothing: no copy of a0/a1/a2 at B, no b0 again at A. */
	usleep(300000);
	struct llmp_msg_view v;
	int r;
	while ((r = llmp_client_recv(rxb, &v)) == 1) {
		ASSERT_FALSE(v.tag == TAG && (v.flags & LLMP_FLAG_FROM_B2B))
			TH_LOG("B got another: %.*s", (int)v.len, (const char *)v.buf);
	}
	while ((r = llmp_client_recv(rxa, &v)) == 1) {
		ASSERT_FALSE(v.tag == TAG && (v.flags & LLMP_FLAG_FROM_B2B))
			TH_LOG("A got another: %.*s", (int)v.len, (const char *)v.buf);
	}
	ASSERT_TRUE(log_has("lost")) TH_LOG("%s", b2b_log);
	llmp_client_free(txb);
	llmp_client_free(rxb);
	ASSERT_EQ(0, kill(bp, SIGTERM));
	ASSERT_EQ(bp, waitpid(bp, &st, 0));
	if (bout)
		fclose(bout);
	ASSERT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) TH_LOG("status 0x%x", st);
	llmp_client_free(txa);
	llmp_client_free(rxa);
	ASSERT_EQ(0, llmp_node_stop(a));
	struct llmp_loop_stats ls;
	llmp_loop_stats(a->lp, &ls);
	ASSERT_LE(2, ls.b2b_dials);
}
/* A TCP relay between a dialling broker and the broker it dials, which the test can cut. */
struct relay {
	int ls;
	uint16_t port, to;
	bool half;      /* a cut closes only the dialler's side: the other stays half-open */
	int held[8];    /* those other sides, closed when the relay stops */
	unsigned nheld;
	atomic_int cut, stop;
	pthread_t t;
};

static void *relay_thread(void *v)
{
	struct relay *r = v;

	/* Pairs with the test's relaxed store of stop at the end: a flag, no data behind it. */
	while (!atomic_load_explicit(&r->stop, memory_order_relaxed)) {
		struct pollfd pa = { .fd = r->ls, .events = POLLIN };
		uint8_t buf[65536];
		int c, s;

		if (poll(&pa, 1, 50) <= 0)
			continue;
		c = accept4(r->ls, NULL, NULL, SOCK_CLOEXEC);
		s = c >= 0 ? llmp_test_tcp_dial(r->to) : -1;
		while (c >= 0 && s >= 0 && !atomic_load_explicit(&r->stop, memory_order_relaxed)) {
			struct pollfd p[2] = { { .fd = c, .events = POLLIN }, { .fd = s, .events = POLLIN } };

			/* Pairs with the test's relaxed store of cut: it only ends this relay. */
			if (atomic_exchange_explicit(&r->cut, 0, memory_order_relaxed)) {
				if (r->half && r->nheld < 8) {
					r->held[r->nheld++] = s;
					s = -1;
				}
				break;
			}
			if (poll(p, 2, 20) <= 0)
				continue;
			int from = (p[0].revents & (POLLIN | POLLHUP | POLLERR)) ? 0 : 1;
			ssize_t n = recv(from ? s : c, buf, sizeof(buf), 0);

			if (n <= 0 || send(from ? c : s, buf, (size_t)n, MSG_NOSIGNAL) != n)
				break;
		}
		if (c >= 0)
			close(c);
		if (s >= 0)
			close(s);
	}
	for (unsigned i = 0; i < r->nheld; i++)
		close(r->held[i]);
	return NULL;
}

static bool wait_log(const char *what, int ms)
{
	int64_t end = llmp_test_now_ms() + ms;

	while (!log_has(what)) {
		if (llmp_test_now_ms() > end)
			return false;
		usleep(5000);
	}
	return true;
}

/*
 * The connection of a link breaks while both brokers stay up (a relay in
 * between is cut).  The dialling side re-dials through the relay and goes on
 * where it stopped; the accepting side recognises the dialler by the resume
 * token of its capabilities frame and goes on where the old connection
 * stopped too.  Nothing sent before the cut is sent again, what is sent
 * after arrives once, both ways.
 */
static void reset_case(struct __test_metadata *_metadata, struct _test_data_link *self, bool half)
{
	struct llmp_node *a = &self->n[0], b;
	struct relay rl;
	struct llmp_client *txa, *rxa, *txb, *rxb;
	struct sockaddr_in sa = { .sin_family = AF_INET };
	socklen_t sl = sizeof(sa);
	int seen[RN];

	/* The half-open case runs both loops on poll(2). */
	LINK_NODE(half ? C_POLL : 0);
	memset(&b, 0, sizeof(b));
	memset(&rl, 0, sizeof(rl));
	rl.half = half;
	ASSERT_EQ(0, node_init(&b, self->kind, 0, half ? C_POLL : 0));
	rl.ls = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ASSERT_EQ(0, bind(rl.ls, (struct sockaddr *)&sa, sizeof(sa)));
	ASSERT_EQ(0, listen(rl.ls, 4));
	ASSERT_EQ(0, getsockname(rl.ls, (struct sockaddr *)&sa, &sl));
	rl.port = ntohs(sa.sin_port);
	rl.to = b.port;
	ASSERT_EQ(0, pthread_create(&rl.t, NULL, relay_thread, &rl));
	ASSERT_EQ(0, llmp_loop_connect_b2b(a->lp, NULL, rl.port));
	ASSERT_EQ(0, llmp_node_start(a));
	ASSERT_EQ(0, llmp_node_start(&b));
	ASSERT_EQ(0, llmp_client_connect_tcp(a->cp, NULL, a->port, NULL, &txa));
	ASSERT_EQ(0, llmp_client_connect_tcp(a->cp, NULL, a->port, NULL, &rxa));
	ASSERT_EQ(0, llmp_client_connect_tcp(b.cp, NULL, b.port, NULL, &txb));
	ASSERT_EQ(0, llmp_client_connect_tcp(b.cp, NULL, b.port, NULL, &rxb));
	ASSERT_TRUE(llmp_node_wait_links(a, 1, 10000));
	ASSERT_EQ(0, send_n(txa, "a0 ", RN));
	ASSERT_EQ(0, send_n(txb, "b0 ", RN));
	memset(seen, 0, sizeof(seen));
	ASSERT_EQ(RN, collect(rxb, "a0 ", seen, RN, RN));
	memset(seen, 0, sizeof(seen));
	ASSERT_EQ(RN, collect(rxa, "b0 ", seen, RN, RN));

	/* Cut: A's link breaks and comes back through the relay by itself. */
	atomic_store_explicit(&rl.cut, 1, memory_order_relaxed);
	int64_t end = llmp_test_now_ms() + 10000;
	while (atomic_load_explicit(&a->dials, memory_order_relaxed) < 2 && llmp_test_now_ms() < end)
		usleep(5000);
	ASSERT_LE(2, atomic_load_explicit(&a->dials, memory_order_relaxed)) TH_LOG("%s", b2b_log);
	ASSERT_TRUE(llmp_node_wait_links(a, 1, 10000)) TH_LOG("%s", b2b_log);
	ASSERT_TRUE(wait_log("the dialler is back; resuming", 10000)) TH_LOG("%s", b2b_log);
	ASSERT_TRUE(llmp_node_wait_links(&b, 1, 10000)) TH_LOG("%s", b2b_log);
	if (half)
		ASSERT_TRUE(log_has("came back on a new connection")) TH_LOG("%s", b2b_log);
	ASSERT_EQ(0, send_n(txa, "a1 ", RN));
	ASSERT_EQ(0, send_n(txb, "b1 ", RN));
	/* B: every a1 once. */
	memset(seen, 0, sizeof(seen));
	ASSERT_EQ(RN, collect(rxb, "a1 ", seen, RN, RN));
	/* A: every b1 once (and no b0 again: checked below). */
	memset(seen, 0, sizeof(seen));
	ASSERT_EQ(RN, collect(rxa, "b1 ", seen, RN, RN));
	ASSERT_EQ(-1, first_not_once(seen, RN)) TH_LOG("b1: message %d", first_not_once(seen, RN));
	usleep(300000);
	struct llmp_msg_view v;
	while (llmp_client_recv(rxb, &v) == 1)
		ASSERT_FALSE(v.tag == TAG && (v.flags & LLMP_FLAG_FROM_B2B))
			TH_LOG("B got another: %.*s", (int)v.len, (const char *)v.buf);
	while (llmp_client_recv(rxa, &v) == 1)
		ASSERT_FALSE(v.tag == TAG && (v.flags & LLMP_FLAG_FROM_B2B))
			TH_LOG("A got another: %.*s", (int)v.len, (const char *)v.buf);
	llmp_client_free(txa);
	llmp_client_free(rxa);
	llmp_client_free(txb);
	llmp_client_free(rxb);
	ASSERT_EQ(0, llmp_node_stop(a));
	llmp_node_fini(&b);
	atomic_store_explicit(&rl.stop, 1, memory_order_relaxed);
	pthread_join(rl.t, NULL);
	close(rl.ls);
}

TEST_F_TIMEOUT(link, redial_after_connection_reset, 60)
{
	reset_case(_metadata, self, false);
}

/*
 * The same when the accepting broker does not see the old connection end
 * (half-open): the new connection with the same token takes the old link's
 * reader, and the old link is closed.
 */
TEST_F_TIMEOUT(link, redial_after_half_open_connection, 60)
{
	reset_case(_metadata, self, true);
}

TEST_HARNESS_MAIN
