// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * TCP registration through a live listener (no event loop: the test serves
 * the listener itself).  Promises guarded: LibAFL's registration frames
 * register a client; clients connect, send and quit; a remote broker's
 * hello is refused; ext queries are answered without a loop; bad peers are
 * dropped (and logged) while the others register; max_peers holds; accept
 * pauses when out of fds; sixty-four client processes register at once.
 */
#include "tcp_fixture.h"

/* ---- TCP registration through a live listener ------------------------------ */

/* Dropped-peer reasons logged by the listener. */
static char drop_log[4096];
static struct llmp_test_log drop_capture = LLMP_TEST_LOG(drop_log, "tcp:");

FIXTURE(reg)
{
	enum llmp_shmem_kind kind;
	struct llmp_provider *p;
	struct llmp_broker *b;
	struct llmp_tcp_listener *l;
	uint16_t port;
};

FIXTURE_SETUP(reg)
{
	self->p = NULL;
	self->b = NULL;
	self->l = NULL;
	if (llmp_test_named_kind(&self->kind) < 0)
		SKIP(return, "neither POSIX nor System V shared memory works here");
	drop_log[0] = 0;
	llmp_set_log(llmp_test_log_cb, &drop_capture, LLMP_LOG_INFO);
	ASSERT_EQ(0, llmp_provider_new(self->kind, &self->p));
	struct llmp_broker_opts bo = { .struct_size = sizeof(bo), .page_size = 1 << 18 };
	ASSERT_EQ(0, llmp_broker_new(self->p, &bo, &self->b));
	struct llmp_tcp_listener_opts lo = { .struct_size = sizeof(lo), .peer_timeout_ms = 3000,
					     .hostname = "llmp-test" };
	ASSERT_EQ(0, llmp_tcp_listen(self->b, "127.0.0.1", 0, &lo, &self->l));
	self->port = llmp_tcp_listener_port(self->l);
	ASSERT_NE(0, self->port);
}

FIXTURE_TEARDOWN(reg)
{
	llmp_tcp_listener_free(self->l);
	if (self->b)
		llmp_broker_free(self->b);
	if (self->p)
		llmp_provider_free(self->p);
	llmp_set_log(NULL, NULL, LLMP_LOG_WARN);
}

/* Run the broker's side for a while: listener + one forwarding pass per round. */
static int serve_ms(struct llmp_tcp_listener *l, struct llmp_broker *b, int ms)
{
	int64_t end = llmp_test_now_ms() + ms;
	int ret = 0;

	do {
		ret = llmp_tcp_listener_service(l);
		if (ret < 0)
			return ret;
		ret = llmp_broker_once(b);
		if (ret < 0)
			return ret;
		usleep(500);
	} while (llmp_test_now_ms() < end);
	return 0;
}

/* Read exactly n bytes, serving the listener while waiting. */
static int read_served(struct llmp_tcp_listener *l, struct llmp_broker *b, int fd, void *buf,
		       size_t n)
{
	int64_t end = llmp_test_now_ms() + 5000;
	size_t got = 0;

	while (got < n && llmp_test_now_ms() < end) {
		struct pollfd pf = { .fd = fd, .events = POLLIN };
		ssize_t r;

		llmp_tcp_listener_service(l);
		llmp_broker_once(b);
		if (poll(&pf, 1, 1) <= 0)
			continue;
		r = recv(fd, (char *)buf + got, n - got, 0);
		if (r <= 0)
			return -1;
		got += (size_t)r;
	}
	return got == n ? 0 : -1;
}

/* A peer speaking the raw LibAFL bytes registers and gets exactly `00000002 01 01`. */
TEST_F(reg, libafl_wire_registration)
{
	uint8_t buf[256], req[64];
	struct llmp_shmem_desc bd, od;
	struct llmp_wire_msg m;
	struct llmp_client *c;
	uint32_t len;
	int fd = llmp_test_tcp_dial(self->port);

	ASSERT_LE(0, fd);
	ASSERT_EQ(0, read_served(self->l, self->b, fd, buf, 4));
	ASSERT_EQ(0, llmp_wire_get_len(buf, sizeof(buf), &len));
	ASSERT_EQ(0, read_served(self->l, self->b, fd, buf, len));
	ASSERT_EQ(0, llmp_wire_decode_resp(buf, len, &m));
	ASSERT_EQ(LLMP_TCP_RESP_BROKER_CONNECT_HELLO, m.type);
	ASSERT_EQ(9, m.text_len);
	ASSERT_EQ(0, memcmp("llmp-test", m.text, 9));
	ASSERT_EQ(0, llmp_broker_broadcast_desc(self->b, &bd));
	ASSERT_EQ(bd.size, m.desc.size);
	ASSERT_EQ(0, memcmp(bd.id, m.desc.id, LLMP_SHMEM_ID_LEN));

	/* A client page to announce, sent as the exact frame LibAFL sends. */
	ASSERT_EQ(0, llmp_client_new(self->p, &bd, NULL, &c));
	ASSERT_EQ(0, llmp_client_out_desc(c, &od));
	struct llmp_wire_msg h = { .type = LLMP_TCP_REQ_LOCAL_CLIENT_HELLO };
	llmp_wire_desc_from_shmem(&od, &h.desc);
	int n = llmp_wire_encode_req(&h, req + 4, sizeof(req) - 4);
	ASSERT_GT(n, 0);
	llmp_wire_put_len(req, (uint32_t)n);
	ASSERT_EQ(4 + n, send(fd, req, 4 + (size_t)n, 0));
	ASSERT_EQ(0, read_served(self->l, self->b, fd, buf, 6));
	const uint8_t want[6] = { 0, 0, 0, 2, 1, 1 };
	ASSERT_EQ(0, memcmp(want, buf, 6));
	ASSERT_EQ(0, recv(fd, buf, 1, 0)); /* the broker closes after answering */
	close(fd);
	ASSERT_EQ(1, llmp_broker_nclients(self->b));

	struct llmp_tcp_stats st;
	llmp_tcp_listener_stats(self->l, &st);
	ASSERT_EQ(1, st.accepted);
	ASSERT_EQ(1, st.registered);
	ASSERT_EQ(0, st.dropped);
	llmp_client_free(c);
}

struct conn_arg {
	struct llmp_provider *p;
	uint16_t port;
	int ret;
	uint32_t id;
	const char *msg;
	atomic_int done;
};

static void *connect_thread(void *v)
{
	struct conn_arg *a = v;
	struct llmp_client *c = NULL;

	a->ret = llmp_client_connect_tcp(a->p, "127.0.0.1", a->port, NULL, &c);
	if (a->ret == 0) {
		a->id = llmp_client_id(c);
		if (a->msg)
			a->ret = llmp_client_send(c, 0x51300321, 0, a->msg, strlen(a->msg));
		llmp_client_free(c);
	}
	/* Pairs with the acquire load in serve_until_done(). */
	atomic_store_explicit(&a->done, 1, memory_order_release);
	return NULL;
}

static int serve_until_done(struct llmp_tcp_listener *l, struct llmp_broker *b, atomic_int *done,
			    int ms)
{
	int64_t end = llmp_test_now_ms() + ms;

	/* Pairs with the release store at the end of the thread. */
	while (!atomic_load_explicit(done, memory_order_acquire)) {
		if (llmp_test_now_ms() > end)
			return -ETIMEDOUT;
		if (serve_ms(l, b, 1) < 0)
			return -EIO;
	}
	return 0;
}

struct quit_arg {
	uint16_t port;
	uint32_t id;
	int ret;
	atomic_int done;
};

static void *quit_thread(void *v)
{
	struct quit_arg *a = v;

	a->ret = llmp_tcp_client_quit("127.0.0.1", a->port, a->id);
	/* Pairs with the acquire load in serve_until_done(). */
	atomic_store_explicit(&a->done, 1, memory_order_release);
	return NULL;
}

/* Our client connects, its message reaches the broadcast page; ClientQuit removes a client. */
TEST_F(reg, connect_send_and_quit)
{
	struct conn_arg a = { .p = self->p, .port = self->port, .msg = "ping over tcp" };
	struct llmp_shmem_desc bd;
	struct llmp_client *reader;
	struct llmp_msg_view v;
	pthread_t t;
	int got = 0;

	ASSERT_EQ(0, pthread_create(&t, NULL, connect_thread, &a));
	ASSERT_EQ(0, serve_until_done(self->l, self->b, &a.done, 10000));
	pthread_join(t, NULL);
	ASSERT_EQ(0, a.ret) TH_LOG("%s", llmp_strerror_last());
	ASSERT_EQ(1, a.id);
	ASSERT_EQ(0, serve_ms(self->l, self->b, 20));
	/* Its message is on the broadcast page with its id as sender. */
	ASSERT_EQ(0, llmp_broker_broadcast_desc(self->b, &bd));
	ASSERT_EQ(0, llmp_client_new(self->p, &bd, NULL, &reader));
	while (llmp_client_recv(reader, &v) == 1) {
		if (v.tag != 0x51300321)
			continue;
		ASSERT_EQ(1, v.sender);
		ASSERT_EQ(strlen(a.msg), v.len);
		ASSERT_EQ(0, memcmp(a.msg, v.buf, v.len));
		got++;
	}
	ASSERT_EQ(1, got);

	/* A second client, then its ClientQuit over TCP. */
	struct llmp_shmem_desc od;
	ASSERT_EQ(0, llmp_client_out_desc(reader, &od));
	int id = llmp_broker_add_client(self->b, &od);
	ASSERT_EQ(2, id);
	unsigned before = llmp_broker_nclients(self->b);
	struct quit_arg q = { .port = self->port, .id = (uint32_t)id };
	ASSERT_EQ(0, pthread_create(&t, NULL, quit_thread, &q));
	ASSERT_EQ(0, serve_until_done(self->l, self->b, &q.done, 10000));
	pthread_join(t, NULL);
	ASSERT_EQ(0, q.ret);
	ASSERT_EQ(before - 1, llmp_broker_nclients(self->b));
	/* Quitting an unknown id is logged, nothing else happens. */
	q = (struct quit_arg){ .port = self->port, .id = 999 };
	ASSERT_EQ(0, pthread_create(&t, NULL, quit_thread, &q));
	ASSERT_EQ(0, serve_until_done(self->l, self->b, &q.done, 10000));
	pthread_join(t, NULL);
	ASSERT_EQ(before - 1, llmp_broker_nclients(self->b));
	struct llmp_tcp_stats st;
	llmp_tcp_listener_stats(self->l, &st);
	ASSERT_EQ(2, st.quits);
	ASSERT_EQ(1, st.registered);
	ASSERT_NE(NULL, strstr(drop_log, "quit of client 999"));
	llmp_client_free(reader);
}

/* A RemoteBrokerHello gets LibAFL's Error response (no B2B here) and nothing breaks. */
TEST_F(reg, remote_broker_hello_refused)
{
	uint8_t buf[256], req[64];
	struct llmp_wire_msg m, r = { .type = LLMP_TCP_REQ_REMOTE_BROKER_HELLO, .text = "far",
				      .text_len = 3 };
	uint32_t len;
	int fd = llmp_test_tcp_dial(self->port);

	ASSERT_LE(0, fd);
	ASSERT_EQ(0, read_served(self->l, self->b, fd, buf, 4));
	ASSERT_EQ(0, llmp_wire_get_len(buf, sizeof(buf), &len));
	ASSERT_EQ(0, read_served(self->l, self->b, fd, buf, len));
	int n = llmp_wire_encode_req(&r, req + 4, sizeof(req) - 4);
	llmp_wire_put_len(req, (uint32_t)n);
	ASSERT_EQ(4 + n, send(fd, req, 4 + (size_t)n, 0));
	ASSERT_EQ(0, read_served(self->l, self->b, fd, buf, 4));
	ASSERT_EQ(0, llmp_wire_get_len(buf, sizeof(buf), &len));
	ASSERT_EQ(0, read_served(self->l, self->b, fd, buf, len));
	ASSERT_EQ(0, llmp_wire_decode_resp(buf, len, &m));
	ASSERT_EQ(LLMP_TCP_RESP_ERROR, m.type);
	ASSERT_NE(NULL, memmem(m.text, m.text_len, "not enabled", 11));
	close(fd);
	struct llmp_tcp_stats st;
	llmp_tcp_listener_stats(self->l, &st);
	ASSERT_EQ(1, st.refused);
	ASSERT_EQ(0, llmp_broker_nclients(self->b));
}

struct waker_arg {
	struct llmp_provider *p;
	uint16_t port;
	int ret;
	atomic_int done;
};

static void *waker_thread(void *v)
{
	struct waker_arg *a = v;
	struct llmp_waker *w = NULL;

	a->ret = llmp_waker_connect_tcp(a->p, "127.0.0.1", a->port, &w);
	llmp_waker_free(w);
	/* Pairs with the acquire load in serve_until_done(). */
	atomic_store_explicit(&a->done, 1, memory_order_release);
	return NULL;
}

/* Our EXT_QUERY to a listener outside an event loop: Error, and the waker says so. */
TEST_F(reg, ext_query_without_loop)
{
	struct waker_arg a = { .p = self->p, .port = self->port };
	pthread_t t;

	ASSERT_EQ(0, pthread_create(&t, NULL, waker_thread, &a));
	ASSERT_EQ(0, serve_until_done(self->l, self->b, &a.done, 10000));
	pthread_join(t, NULL);
	ASSERT_EQ(-EOPNOTSUPP, a.ret);
	struct llmp_tcp_stats st;
	llmp_tcp_listener_stats(self->l, &st);
	ASSERT_EQ(1, st.refused);
	ASSERT_EQ(0, st.dropped);
	/* The wire form of the query: variant 0x4C4C, no fields. */
	struct llmp_wire_msg q = { .type = LLMP_TCP_REQ_EXT_QUERY }, m;
	uint8_t b[8];
	ASSERT_EQ(3, llmp_wire_encode_req(&q, b, sizeof(b)));
	ASSERT_EQ(0xcc, b[0]);
	ASSERT_EQ(0x98, b[1]);
	ASSERT_EQ(0x01, b[2]);
	ASSERT_EQ(0, llmp_wire_decode_req(b, 3, &m));
	ASSERT_EQ(LLMP_TCP_REQ_EXT_QUERY, m.type);
}

/*
 * Bad peers: silent, half a length, half a body, a huge length, garbage,
 * a malformed body, an early close.  A good client registers while the
 * silent ones are still connected; each bad one is dropped with a reason.
 */
TEST_F_TIMEOUT(reg, bad_peers_dropped_others_register, 60)
{
	static const struct {
		const char *what;
		const char *bytes; /* hex */
		bool at_once;       /* dropped without waiting for the timeout */
	} bad[] = {
		{ "silent", "", false },
		{ "half length", "0000", false },
		{ "half body", "00000018 00 8080", false },
		{ "huge length", "7fffffff", true },
		{ "garbage", "00000005 ffffffffff", true },
		{ "malformed body", "00000003 02 8080", true },
		{ "empty frame", "00000000", true },
	};
	enum { NBAD = sizeof(bad) / sizeof(bad[0]) };
	int fds[NBAD + 1];
	uint8_t raw[64];
	unsigned at_once = 0;

	for (unsigned i = 0; i < NBAD; i++) {
		size_t n = unhex(bad[i].bytes, raw, sizeof(raw));

		fds[i] = llmp_test_tcp_dial(self->port);
		ASSERT_LE(0, fds[i]);
		if (n)
			ASSERT_EQ((ssize_t)n, send(fds[i], raw, n, 0));
		at_once += bad[i].at_once;
	}
	/* A peer that connects and closes at once. */
	fds[NBAD] = llmp_test_tcp_dial(self->port);
	ASSERT_LE(0, fds[NBAD]);
	close(fds[NBAD]);
	at_once++;

	int64_t t0 = llmp_test_now_ms();
	struct conn_arg a = { .p = self->p, .port = self->port };
	pthread_t t;
	ASSERT_EQ(0, pthread_create(&t, NULL, connect_thread, &a));
	ASSERT_EQ(0, serve_until_done(self->l, self->b, &a.done, 20000));
	pthread_join(t, NULL);
	ASSERT_EQ(0, a.ret) TH_LOG("%s", llmp_strerror_last());
	int64_t took = llmp_test_now_ms() - t0;

	struct llmp_tcp_stats st;
	llmp_tcp_listener_stats(self->l, &st);
	ASSERT_EQ(1, st.registered);
	/* Registered while the slow ones were still pending (their deadline is 3 s). */
	ASSERT_LT(took, 3000);
	ASSERT_EQ(at_once, st.dropped) TH_LOG("log:\n%s", drop_log);

	/* After the deadline every bad peer is gone: each saw the hello, then EOF. */
	ASSERT_EQ(0, serve_ms(self->l, self->b, 3500));
	llmp_tcp_listener_stats(self->l, &st);
	ASSERT_EQ(NBAD + 1, st.dropped) TH_LOG("log:\n%s", drop_log);
	for (unsigned i = 0; i < NBAD; i++) {
		uint8_t buf[256];
		size_t got = 0;
		ssize_t r;

		while ((r = recv(fds[i], buf + got, sizeof(buf) - got, 0)) > 0)
			got += (size_t)r;
		/* huge length, garbage, ...: the hello arrived before the drop. */
		ASSERT_GE(got, 4) TH_LOG("%s", bad[i].what);
		ASSERT_EQ(0, buf[4]) TH_LOG("%s: not a BrokerConnectHello", bad[i].what);
		close(fds[i]);
	}
	ASSERT_NE(NULL, strstr(drop_log, "timed out inside a frame"));
	ASSERT_NE(NULL, strstr(drop_log, ": timed out"));
	ASSERT_NE(NULL, strstr(drop_log, "over the 4096-byte cap"));
	ASSERT_NE(NULL, strstr(drop_log, "unknown request variant"));
	ASSERT_NE(NULL, strstr(drop_log, "malformed request"));
	ASSERT_NE(NULL, strstr(drop_log, "closed without a request"));
}

/*
 * More handshakes than max_peers at once: the oldest unfinished one is
 * evicted for the newcomer (issue 8, finding 7: stalled peers must not
 * keep honest ones out).
 */
TEST_F(reg, max_peers_bound)
{
	struct llmp_tcp_listener *l2;
	struct llmp_tcp_listener_opts lo = { .struct_size = sizeof(lo), .max_peers = 2,
					     .peer_timeout_ms = 5000 };
	struct llmp_tcp_stats st;
	uint8_t buf[256];
	int fds[3];

	ASSERT_EQ(0, llmp_tcp_listen(self->b, NULL, 0, &lo, &l2));
	for (int i = 0; i < 3; i++) {
		fds[i] = llmp_test_tcp_dial(llmp_tcp_listener_port(l2));
		ASSERT_LE(0, fds[i]);
		ASSERT_EQ(0, serve_ms(l2, self->b, 20));
	}
	llmp_tcp_listener_stats(l2, &st);
	ASSERT_EQ(3, st.accepted);
	ASSERT_EQ(1, st.dropped);
	ASSERT_NE(NULL, strstr(drop_log, "evicted: handshake table full"));
	/* All three got the hello; the first was closed, the newer two are still open. */
	for (int i = 0; i < 3; i++)
		ASSERT_LT(4, recv(fds[i], buf, sizeof(buf), MSG_DONTWAIT));
	ASSERT_EQ(0, recv(fds[0], buf, sizeof(buf), 0));
	for (int i = 1; i < 3; i++) {
		ASSERT_EQ(-1, recv(fds[i], buf, sizeof(buf), MSG_DONTWAIT));
		ASSERT_EQ(EAGAIN, errno);
	}
	for (int i = 0; i < 3; i++)
		close(fds[i]);
	llmp_tcp_listener_free(l2);
}

/*
 * Out of file descriptors: accept() fails with EMFILE, the listener pauses
 * accepting (instead of spinning on a socket that stays readable) and takes
 * the queued connection once fds are back.
 */
TEST_F(reg, accept_pauses_when_out_of_fds)
{
	pid_t pid = fork();
	int st;

	ASSERT_LE(0, pid);
	if (pid == 0) {
		struct rlimit old, rl;
		struct llmp_tcp_stats ts;
		int fd, spare = open("/dev/null", O_RDONLY);

		/* The lowest free fd is the limit: every new fd fails. */
		if (spare < 0 || getrlimit(RLIMIT_NOFILE, &old))
			_exit(10);
		close(spare);
		rl = old;
		rl.rlim_cur = (rlim_t)spare;
		fd = llmp_test_tcp_dial(self->port); /* queued in the backlog */
		if (fd < 0 || setrlimit(RLIMIT_NOFILE, &rl))
			_exit(11);
		if (llmp_tcp_listener_service(self->l) != 0)
			_exit(12);
		llmp_tcp_listener_stats(self->l, &ts);
		if (ts.accept_pauses != 1 || ts.accepted != 0)
			_exit(13);
		/* Paused: more service calls do not even try. */
		llmp_tcp_listener_service(self->l);
		llmp_tcp_listener_stats(self->l, &ts);
		if (ts.accept_pauses != 1)
			_exit(14);
		if (setrlimit(RLIMIT_NOFILE, &old))
			_exit(15);
		usleep(150000);
		llmp_tcp_listener_service(self->l);
		llmp_tcp_listener_stats(self->l, &ts);
		if (ts.accepted != 1)
			_exit(16);
		_exit(strstr(drop_log, "no accepts for 100 ms") ? 0 : 17);
	}
	ASSERT_EQ(pid, waitpid(pid, &st, 0));
	ASSERT_TRUE(WIFEXITED(st));
	ASSERT_EQ(0, WEXITSTATUS(st));
}

/*
 * 64 client processes register over TCP at once; each sends one message and
 * must receive all 64 (its own included) through the broadcast page.
 */
#define NPROC 64
TEST_F_TIMEOUT(reg, sixty_four_client_processes, 120)
{
	pid_t pids[NPROC];
	bool seen_id[NPROC + 1] = { false };
	int reaped = 0;

	for (int i = 0; i < NPROC; i++) {
		pids[i] = fork();
		ASSERT_LE(0, pids[i]);
		if (pids[i] == 0) {
			struct llmp_provider *p;
			struct llmp_client *c;
			struct llmp_client_opts o = { .struct_size = sizeof(o), .page_size = 1 << 16,
						      .send_timeout_ms = 30000 };
			struct llmp_msg_view v;
			uint64_t have[2] = { 0, 0 };
			char msg[32];
			int n = 0;

			llmp_set_log(NULL, NULL, LLMP_LOG_WARN);
			if (llmp_provider_new(self->kind, &p) < 0)
				_exit(0);
			if (llmp_client_connect_tcp(p, "127.0.0.1", self->port, &o, &c) < 0)
				_exit(0);
			snprintf(msg, sizeof(msg), "proc %d", i);
			if (llmp_client_send(c, 0x51300321, 0, msg, strlen(msg)) < 0)
				_exit(0);
			while (n < NPROC && llmp_client_recv_wait(c, &v, 30000) == 1) {
				int k;

				if (v.tag != 0x51300321 || sscanf(v.buf, "proc %d", &k) != 1 ||
				    k < 0 || k >= NPROC || (have[k / 64] >> (k % 64) & 1))
					continue;
				have[k / 64] |= 1ull << (k % 64);
				n++;
			}
			int id = (int)llmp_client_id(c);
			llmp_client_free(c);
			llmp_provider_free(p);
			_exit(n == NPROC ? id : 0);
		}
	}
	int64_t end = llmp_test_now_ms() + 100000;
	while (reaped < NPROC && llmp_test_now_ms() < end) {
		int st;
		pid_t w;

		ASSERT_EQ(0, serve_ms(self->l, self->b, 2));
		while ((w = waitpid(-1, &st, WNOHANG)) > 0) {
			reaped++;
			ASSERT_TRUE(WIFEXITED(st));
			int id = WEXITSTATUS(st);
			ASSERT_GE(id, 1) TH_LOG("a client failed to register or to receive all messages");
			ASSERT_LE(id, NPROC);
			ASSERT_FALSE(seen_id[id]) TH_LOG("id %d handed out twice", id);
			seen_id[id] = true;
		}
	}
	ASSERT_EQ(NPROC, reaped);
	struct llmp_tcp_stats st;
	llmp_tcp_listener_stats(self->l, &st);
	ASSERT_EQ(NPROC, st.registered);
	ASSERT_EQ(0, st.dropped);
	/* Every client said EXITING: the broker lets them go. */
	ASSERT_EQ(0, serve_ms(self->l, self->b, 50));
	ASSERT_EQ(0, llmp_broker_nclients(self->b));
}

TEST_HARNESS_MAIN
