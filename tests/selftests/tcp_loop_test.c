// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * The event loop (io_uring and poll backends) around a broker and its TCP
 * listener, and the tools built on it.  Promises guarded: the loop forwards
 * and stops, wakes from a long sleep when a message comes, stops after
 * exit_after clients, stops cleanly on SIGTERM; llmp-broker and the client
 * tools pass messages end to end.
 */
#include "tcp_fixture.h"

/* ---- the event loop ---------------------------------------------------------- */

FIXTURE(evloop)
{
	enum llmp_shmem_kind kind;
	struct llmp_provider *p, *cp; /* broker's, and the test's clients' */
	struct llmp_broker *b;
	struct llmp_tcp_listener *l;
	struct llmp_loop *lp;
	uint16_t port;
	pthread_t t;
	bool running;
	int run_ret;
	atomic_int run_done;
};

FIXTURE_VARIANT(evloop)
{
	enum llmp_loop_backend backend;
};

FIXTURE_VARIANT_ADD(evloop, uring) { .backend = LLMP_LOOP_URING };
FIXTURE_VARIANT_ADD(evloop, poll) { .backend = LLMP_LOOP_POLL };

static int evl_setup(struct _test_data_evloop *self, const struct _fixture_variant_evloop *variant,
		      int max_sleep_us, unsigned exit_after)
{
	struct llmp_broker_opts bo = { .struct_size = sizeof(bo), .page_size = 1 << 18 };
	struct llmp_tcp_listener_opts lo = { .struct_size = sizeof(lo) };
	struct llmp_loop_opts oo = { .struct_size = sizeof(oo), .backend = variant->backend,
				     .max_sleep_us = max_sleep_us, .exit_after = exit_after };
	int ret;

	if ((ret = llmp_broker_new(self->p, &bo, &self->b)) < 0 ||
	    (ret = llmp_tcp_listen(self->b, "127.0.0.1", 0, &lo, &self->l)) < 0)
		return ret;
	self->port = llmp_tcp_listener_port(self->l);
	ret = llmp_loop_new(self->b, &oo, &self->lp);
	if (ret < 0)
		return ret;
	return llmp_loop_add_listener(self->lp, self->l);
}

static void *evl_thread(void *v)
{
	struct _test_data_evloop *self = v;

	self->run_ret = llmp_loop_run(self->lp);
	/* Pairs with the acquire loads in the tests. */
	atomic_store_explicit(&self->run_done, 1, memory_order_release);
	return NULL;
}

static int evl_start(struct _test_data_evloop *self)
{
	if (pthread_create(&self->t, NULL, evl_thread, self))
		return -1;
	self->running = true;
	return 0;
}

/* Wait for the loop thread to return by itself (ms), 0 if it did. */
static int evl_wait(struct _test_data_evloop *self, int ms)
{
	int64_t end = llmp_test_now_ms() + ms;

	/* Pairs with the release store in evl_thread(). */
	while (!atomic_load_explicit(&self->run_done, memory_order_acquire)) {
		if (llmp_test_now_ms() > end)
			return -1;
		usleep(1000);
	}
	pthread_join(self->t, NULL);
	self->running = false;
	return 0;
}

FIXTURE_SETUP(evloop)
{
	self->p = self->cp = NULL;
	self->b = NULL;
	self->l = NULL;
	self->lp = NULL;
	self->running = false;
	atomic_init(&self->run_done, 0);
	if (llmp_test_named_kind(&self->kind) < 0)
		SKIP(return, "neither POSIX nor System V shared memory works here");
	ASSERT_EQ(0, llmp_provider_new(self->kind, &self->p));
	ASSERT_EQ(0, llmp_provider_new(self->kind, &self->cp));
}

FIXTURE_TEARDOWN(evloop)
{
	if (self->running) {
		llmp_loop_stop(self->lp);
		pthread_join(self->t, NULL);
	}
	llmp_loop_free(self->lp);
	llmp_tcp_listener_free(self->l);
	if (self->b)
		llmp_broker_free(self->b);
	if (self->cp)
		llmp_provider_free(self->cp);
	if (self->p)
		llmp_provider_free(self->p);
}

#define SETUP_OR_SKIP(max_sleep, exit_after)                                            \
	do {                                                                            \
		int r_ = evl_setup(self, variant, (max_sleep), (exit_after));           \
		if (r_ < 0 && variant->backend == LLMP_LOOP_URING)                       \
			SKIP(return, "io_uring unavailable: %s", llmp_strerror_last());   \
		ASSERT_EQ(0, r_);                                                        \
	} while (0)

/* Clients registered over TCP by the loop; 500 messages go through it intact. */
TEST_F(evloop, forwards_and_stops)
{
	struct llmp_client_opts o = { .struct_size = sizeof(o), .send_timeout_ms = 10000 };
	struct llmp_client *tx, *rx;
	struct llmp_msg_view v;
	uint64_t seed = 1, sum_tx = 0, sum_rx = 0;
	uint8_t buf[600];
	int got = 0;

	SETUP_OR_SKIP(0, 0);
	ASSERT_STREQ(variant->backend == LLMP_LOOP_URING ? "io_uring" : "poll",
		     llmp_loop_backend_name(self->lp));
	ASSERT_EQ(0, evl_start(self));
	ASSERT_EQ(0, llmp_client_connect_tcp(self->cp, NULL, self->port, &o, &tx));
	ASSERT_EQ(0, llmp_client_connect_tcp(self->cp, NULL, self->port, &o, &rx));
	ASSERT_NE(llmp_client_id(tx), llmp_client_id(rx));
	for (int i = 0; i < 500; i++) {
		size_t len = llmp_test_rand(&seed) % sizeof(buf);

		for (size_t k = 0; k < len; k++)
			buf[k] = (uint8_t)llmp_test_rand(&seed);
		sum_tx += llmp_test_fnv(buf, len);
		ASSERT_EQ(0, llmp_client_send(tx, 0x51300321, 0, buf, len));
		if (i % 50 == 0)
			usleep(2000); /* let the broker go idle and sleep now and then */
	}
	while (got < 500) {
		int r = llmp_client_recv_wait(rx, &v, 10000);

		ASSERT_EQ(1, r);
		if (v.tag != 0x51300321)
			continue;
		ASSERT_EQ(llmp_client_id(tx), v.sender);
		sum_rx += llmp_test_fnv(v.buf, v.len);
		got++;
	}
	ASSERT_EQ(sum_tx, sum_rx);
	llmp_client_free(tx);
	llmp_client_free(rx);
	llmp_loop_stop(self->lp);
	ASSERT_EQ(0, evl_wait(self, 5000));
	ASSERT_EQ(0, self->run_ret);
	struct llmp_loop_stats st;
	llmp_loop_stats(self->lp, &st);
	ASSERT_GE(st.forwarded, 500);
	ASSERT_EQ(2, st.tcp.registered);
	ASSERT_GT(st.sleeps, 0);
}

/*
 * A long idle sleep ends at once on llmp_loop_stop() (eventfd) and on a
 * poke of the sleep word (io_uring's futex op or the bridge thread).
 */
TEST_F(evloop, wakes_from_long_sleep)
{
	struct llmp_client_opts o = { .struct_size = sizeof(o), .send_timeout_ms = 10000 };
	struct llmp_client *tx, *rx;
	struct llmp_waker *w;
	struct llmp_msg_view v;
	struct llmp_loop_stats st;
	int64_t slowest = 0;
	int r;

	SETUP_OR_SKIP(3000000, 0); /* naps grow up to 3 s */
	ASSERT_EQ(0, evl_start(self));
	/* Clients that registered over TCP with our loop poke it on every send. */
	ASSERT_EQ(0, llmp_client_connect_tcp(self->cp, NULL, self->port, &o, &tx));
	ASSERT_EQ(0, llmp_client_connect_tcp(self->cp, NULL, self->port, &o, &rx));
	ASSERT_EQ(0, llmp_waker_connect_tcp(self->cp, NULL, self->port, &w))
		TH_LOG("%s", llmp_strerror_last());
	for (int round = 0; round < 3; round++) {
		char m[16];

		usleep(400000); /* idle: the naps are long by now */
		snprintf(m, sizeof(m), "wake %d", round);
		int64_t t0 = llmp_test_now_ms();
		ASSERT_EQ(0, llmp_client_send(tx, 0x51300321, 0, m, strlen(m)));
		/* The send already poked: a second poke finds the broker awake. */
		ASSERT_LE(0, llmp_waker_poke(w));
		while ((r = llmp_client_recv_wait(rx, &v, 10000)) == 1 && v.tag != 0x51300321)
			;
		ASSERT_EQ(1, r);
		ASSERT_EQ(strlen(m), v.len);
		ASSERT_EQ(0, memcmp(m, v.buf, v.len));
		if (llmp_test_now_ms() - t0 > slowest)
			slowest = llmp_test_now_ms() - t0;
	}
	/* A sleep that nobody wakes ends at once on stop (the eventfd). */
	usleep(300000);
	int64_t t1 = llmp_test_now_ms();
	llmp_loop_stop(self->lp);
	ASSERT_EQ(0, evl_wait(self, 5000));
	ASSERT_LT(llmp_test_now_ms() - t1, 1500) TH_LOG("stop did not interrupt the sleep");
	ASSERT_EQ(0, self->run_ret);
	llmp_loop_stats(self->lp, &st);
	ASSERT_GT(st.sleeps, 0);
	TH_LOG("wake-ups by pokes: %llu, slowest delivery %lld ms",
	       (unsigned long long)st.wakeups, (long long)slowest);
	/*
	 * Both backends watch the word (io_uring's futex op, or the bridge
	 * thread): each send flips it; the extra poke may flip it once more
	 * if the broker went back to sleep in between.
	 */
	TH_LOG("wake mode %s", llmp_loop_wake_name(self->lp));
	ASSERT_GE(st.wakeups, 3);
	ASSERT_LE(st.wakeups, 6);
	ASSERT_LT(slowest, 1000); /* woken, not left to its multi-second nap */
	llmp_waker_free(w);
	llmp_client_free(tx);
	llmp_client_free(rx);
}

/* exit_after: the loop returns by itself once that many clients came and went. */
TEST_F(evloop, exit_after_clients)
{
	struct llmp_client *c;

	SETUP_OR_SKIP(0, 2);
	ASSERT_EQ(0, evl_start(self));
	for (int i = 0; i < 2; i++) {
		ASSERT_EQ(0, llmp_client_connect_tcp(self->cp, NULL, self->port, NULL, &c));
		ASSERT_EQ(0, llmp_client_send(c, 0x51300321, 0, "bye", 3));
		llmp_client_free(c); /* EXITING */
		if (i == 0)
			ASSERT_EQ(-1, evl_wait(self, 200)); /* one is not enough */
	}
	ASSERT_EQ(0, evl_wait(self, 10000));
	ASSERT_EQ(0, self->run_ret);
}

/* SIGTERM to a process running the loop with handle_signals: clean return. */
TEST_F(evloop, sigterm_stops_cleanly)
{
	int pfd[2];
	uint16_t port = 0;
	pid_t pid;
	int st;

	if (variant->backend == LLMP_LOOP_URING) {
		struct llmp_loop *probe;
		struct llmp_loop_opts oo = { .struct_size = sizeof(oo), .backend = LLMP_LOOP_URING };

		ASSERT_EQ(0, llmp_broker_new(self->p, NULL, &self->b));
		if (llmp_loop_new(self->b, &oo, &probe) < 0)
			SKIP(return, "io_uring unavailable: %s", llmp_strerror_last());
		llmp_loop_free(probe);
	}
	ASSERT_EQ(0, pipe(pfd));
	pid = fork();
	ASSERT_LE(0, pid);
	if (pid == 0) {
		struct llmp_broker *b;
		struct llmp_tcp_listener *l;
		struct llmp_loop *lp;
		struct llmp_loop_opts oo = { .struct_size = sizeof(oo), .backend = variant->backend,
					     .handle_signals = true, .max_sleep_us = 2000000 };

		if (llmp_broker_new(self->p, NULL, &b) < 0 ||
		    llmp_tcp_listen(b, NULL, 0, NULL, &l) < 0 || llmp_loop_new(b, &oo, &lp) < 0 ||
		    llmp_loop_add_listener(lp, l) < 0)
			_exit(2);
		port = llmp_tcp_listener_port(l);
		if (write(pfd[1], &port, sizeof(port)) != sizeof(port))
			_exit(2);
		int r = llmp_loop_run(lp);
		llmp_loop_free(lp);
		llmp_tcp_listener_free(l);
		llmp_broker_free(b);
		_exit(r == 0 ? 0 : 3);
	}
	close(pfd[1]);
	ASSERT_EQ(sizeof(port), read(pfd[0], &port, sizeof(port)));
	close(pfd[0]);
	struct llmp_client *c;
	ASSERT_EQ(0, llmp_client_connect_tcp(self->cp, NULL, port, NULL, &c));
	llmp_client_free(c);
	usleep(100000);
	ASSERT_EQ(0, kill(pid, SIGTERM));
	int64_t end = llmp_test_now_ms() + 5000;
	pid_t w;
	while ((w = waitpid(pid, &st, WNOHANG)) == 0 && llmp_test_now_ms() < end)
		usleep(1000);
	if (w == 0) {
		kill(pid, SIGKILL);
		waitpid(pid, &st, 0);
	}
	ASSERT_EQ(pid, w);
	ASSERT_TRUE(WIFEXITED(st));
	ASSERT_EQ(0, WEXITSTATUS(st));
}

/* ---- the tools ------------------------------------------------------------------- */

/* Run argv with stdin from `in` (NULL: /dev/null); stdout into out; returns the exit status. */
static int run_tool(char *const argv[], const char *in, char *out, size_t cap, int timeout_s)
{
	int ip[2], op[2];
	pid_t pid;
	size_t got = 0;
	int st;

	if (pipe(ip) || pipe(op))
		return -1;
	pid = fork();
	if (pid == 0) {
		dup2(ip[0], 0);
		dup2(op[1], 1);
		close(ip[1]);
		close(op[0]);
		alarm(timeout_s);
		execv(argv[0], argv);
		_exit(127);
	}
	close(ip[0]);
	close(op[1]);
	if (in && write(ip[1], in, strlen(in)) < 0)
		st = 0;
	close(ip[1]);
	for (;;) {
		ssize_t r = read(op[0], out + got, cap - 1 - got);

		if (r <= 0)
			break;
		got += (size_t)r;
	}
	out[got] = 0;
	close(op[0]);
	waitpid(pid, &st, 0);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* llmp-broker and two llmp-client processes, by their command lines. */
TEST(tools_broker_and_clients)
{
	char bpath[4200], cpath[4200], line[256], port[16], out[8192];
	enum llmp_shmem_kind kind;
	int bo[2];
	pid_t bpid;

	if (!llmp_test_tool_path("llmp-broker", bpath, sizeof(bpath)) ||
	    !llmp_test_tool_path("llmp-client", cpath, sizeof(cpath)))
		SKIP(return, "llmp-broker/llmp-client not built beside the tests");
	if (llmp_test_named_kind(&kind) < 0)
		SKIP(return, "neither POSIX nor System V shared memory works here");
	const char *kname = llmp_shmem_kind_name(kind);
	ASSERT_EQ(0, pipe(bo));
	bpid = fork();
	ASSERT_LE(0, bpid);
	if (bpid == 0) {
		dup2(bo[1], 1);
		close(bo[0]);
		execl(bpath, bpath, "--port", "0", "--provider", kname, "--stats-interval", "1",
		      "--exit-after", "2", (char *)NULL);
		_exit(127);
	}
	close(bo[1]);
	FILE *bf = fdopen(bo[0], "r");
	ASSERT_NE(NULL, bf);
	ASSERT_NE(NULL, fgets(line, sizeof(line), bf));
	char *colon = strrchr(line, ':');
	ASSERT_NE(NULL, strstr(line, "listening on 127.0.0.1:"));
	ASSERT_EQ(1, sscanf(colon + 1, "%15[0-9]", port));

	/* Client 1 sends two lines; client 2 (registered after) replays the history. */
	char *send_argv[] = { cpath, "--port", port, "--provider", (char *)kname, "send", NULL };
	ASSERT_EQ(0, run_tool(send_argv, "first line\nsecond\n", out, sizeof(out), 20));
	char *recv_argv[] = { cpath, "--port", port, "--provider", (char *)kname, "--count", "2",
			      "recv", NULL };
	ASSERT_EQ(0, run_tool(recv_argv, NULL, out, sizeof(out), 20));
	ASSERT_NE(NULL, strstr(out, "from 1 tag 0x5130c11e flags 0x0 len 10: first line\n")) TH_LOG("%s", out);
	ASSERT_NE(NULL, strstr(out, "from 1 tag 0x5130c11e flags 0x0 len 6: second\n")) TH_LOG("%s", out);

	/* Two clients came and went: --exit-after 2 stops the broker by itself. */
	int st;
	int64_t end = llmp_test_now_ms() + 10000;
	pid_t w;
	while ((w = waitpid(bpid, &st, WNOHANG)) == 0 && llmp_test_now_ms() < end)
		usleep(5000);
	if (w == 0) {
		kill(bpid, SIGKILL);
		waitpid(bpid, &st, 0);
	}
	ASSERT_EQ(bpid, w);
	ASSERT_TRUE(WIFEXITED(st));
	ASSERT_EQ(0, WEXITSTATUS(st));
	size_t n = fread(out, 1, sizeof(out) - 1, bf);
	out[n] = 0;
	fclose(bf);
	ASSERT_NE(NULL, strstr(out, "stopped after")) TH_LOG("%s", out);
	ASSERT_NE(NULL, strstr(out, "2 clients registered over TCP")) TH_LOG("%s", out);
	/* Bad arguments: usage and exit 2. */
	char *bad_argv[] = { bpath, "--port", "70000", NULL };
	ASSERT_EQ(2, run_tool(bad_argv, NULL, out, sizeof(out), 5));
}

TEST_HARNESS_MAIN
