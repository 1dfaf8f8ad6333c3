// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * Restarted clients and dead brokers.  A SysV/POSIX client restarted from
 * the environment within the grace period goes on without loss and is not
 * dropped.  A client whose broker was SIGKILLed gets -EPIPE from
 * llmp_client_recv_wait() instead of waiting out its timeout.  Each runs
 * on every provider kind of the `live` fixture (liveness_fixture.h) and
 * SKIPs where the case does not apply.
 */
#include "liveness_fixture.h"

/* Read the environment the child saved (NUL-separated, empty string last). */
static int read_env(int fd, char *buf, size_t cap)
{
	size_t n = 0;

	while (n < cap) {
		if (read(fd, buf + n, 1) != 1)
			return -1;
		if (buf[n] == '\0' && (n == 0 || buf[n - 1] == '\0'))
			return 0;
		n++;
	}
	return -1;
}

/*
 * (c) A SysV/POSIX client killed and restarted from its environment within
 * the grace period goes on without loss and is never dropped.  The grace
 * period here is long (RESTART_GRACE_MS): the restart (fork, attach, first
 * message) must fit in it even on a loaded or emulated host, and the
 * restarted client sends for longer than the grace period, so the test
 * still shows it survives past it.
 */
#define RESTART_GRACE_MS 3000
TEST_F_TIMEOUT(live, restarted_within_grace, 120)
{
	const uint32_t K1 = 200, K2 = 800;
	struct llmp_broker_opts bo = { .struct_size = sizeof(bo),
				       .dead_client_grace_ms = RESTART_GRACE_MS };
	struct child_cfg c1 = { .kind = variant->kind, .sno = 1, .first = 0, .count = K1,
				.end = END_PAUSE, .save_env = true };
	/* K2 * delay_us > RESTART_GRACE_MS + 200 ms: it outlives the grace period */
	struct child_cfg c2 = { .kind = variant->kind, .sno = 1, .first = K1, .count = K2,
				.delay_us = 4500, .end = END_EXIT, .from_env = true };
	char env[4096];
	uint32_t id;
	uint64_t t_go, t_end, t_kill;
	int st;

	NEED_PROVIDER();
	if (variant->kind == LLMP_SHMEM_MEMFD)
		SKIP(return, "memfd pages cannot be reattached once their creator is gone");
	llmp_client_free(self->r);
	llmp_broker_free(self->b);
	self->r = NULL;
	self->b = NULL;
	ASSERT_EQ(0, llmp_broker_new(self->p, &bo, &self->b));
	ASSERT_EQ(0, llmp_broker_broadcast_desc(self->b, &self->bd));
	ASSERT_EQ(0, llmp_client_new(self->p, &self->bd, NULL, &self->r));
	ASSERT_EQ(0, start_child(self, 0, &c1));
	id = self->t[0].id;
	/* the broker must have mapped the page (wait_safe) before the child saves */
	for (uint64_t t = llmp_test_now_ms() + 10000; llmp_test_now_ms() < t;) {
		struct pollfd pfd = { .fd = self->t[0].rfd, .events = POLLIN };

		ASSERT_GE(pump(self), 0);
		if (poll(&pfd, 1, 1) == 1)
			break;
	}
	ASSERT_EQ(0, read_env(self->t[0].rfd, env, sizeof(env)));
	ASSERT_EQ(0, kill(self->t[0].pid, SIGKILL));
	t_kill = llmp_test_now_ms();
	ASSERT_EQ(self->t[0].pid, waitpid(self->t[0].pid, &st, 0));
	forget(self, 0, false);
	/* a while with the creator dead: not dropped */
	for (uint64_t t = llmp_test_now_ms() + 500; llmp_test_now_ms() < t;) {
		ASSERT_GE(pump(self), 0);
		ASSERT_EQ(0, llmp_broker_check_clients(self->b));
		usleep(1000);
	}
	ASSERT_EQ(1u, llmp_broker_nclients(self->b));
	ASSERT_EQ(K1, self->t[0].next);
	/* the restarted process: same page, same id */
	for (char *e = env; *e; e += strlen(e) + 1) {
		char *eq = strchr(e, '=');

		ASSERT_TRUE(eq != NULL);
		*eq = '\0';
		ASSERT_EQ(0, setenv(e, eq + 1, 1));
		*eq = '=';
	}
	ASSERT_EQ(0, start_child(self, 1, &c2));
	self->t[1].id = id;
	self->t[1].next = K1;
	ASSERT_EQ(1, write(self->t[1].wfd, "g", 1));
	t_go = llmp_test_now_ms();
	t_end = t_go + 30000;
	while (llmp_test_now_ms() < t_end && !(self->t[1].done && llmp_broker_nclients(self->b) == 0)) {
		ASSERT_GE(pump(self), 0);
		ASSERT_EQ(0, llmp_broker_check_clients(self->b)) TH_LOG("restarted client dropped");
		usleep(200);
	}
	ASSERT_EQ(0, self->bad) TH_LOG("%s", self->why);
	/* its first process died longer than the grace period ago: never dropped */
	ASSERT_GT(llmp_test_now_ms() - t_kill, (uint64_t)RESTART_GRACE_MS + 200);
	ASSERT_TRUE(self->t[1].done);
	ASSERT_EQ(K1 + K2, self->t[1].done_n);
	ASSERT_EQ(K1 + K2, self->t[1].next);
	ASSERT_EQ(0, drops_logged);
	ASSERT_EQ(0u, llmp_broker_nclients(self->b));
	ASSERT_EQ(self->t[1].pid, waitpid(self->t[1].pid, &st, 0));
	ASSERT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) TH_LOG("status %d", st);
	self->t[1].pid = 0;
}

/*
 * (d) A client whose broker process was SIGKILLed: recv_wait returns
 * -EPIPE within a second instead of waiting out its timeout.
 */
TEST_F(live, broker_killed)
{
	struct llmp_shmem_desc bd;
	struct llmp_client *c = NULL;
	struct llmp_msg_view v;
	int pfd[2], ret, st;
	uint64_t t0;
	pid_t pid;

	NEED_PROVIDER();
	ASSERT_EQ(0, pipe(pfd));
	fflush(NULL);
	pid = fork();
	ASSERT_GE(pid, 0);
	if (pid == 0) {
		struct llmp_provider *p;
		struct llmp_broker *b;

		close(pfd[0]);
		if (llmp_provider_new(variant->kind, &p) < 0 || llmp_broker_new(p, NULL, &b) < 0 ||
		    llmp_broker_broadcast_desc(b, &bd) < 0 ||
		    llmp_broker_send(b, TAG_HELLO, 0, "hi", 2) < 0 ||
		    write(pfd[1], &bd, sizeof(bd)) != sizeof(bd))
			_exit(80);
		_exit(llmp_broker_run(b) < 0 ? 81 : 0);
	}
	close(pfd[1]);
	self->dead[self->ndead++] = pid;
	ASSERT_EQ(sizeof(bd), (size_t)read(pfd[0], &bd, sizeof(bd)));
	close(pfd[0]);
	ASSERT_EQ(0, llmp_client_new(self->p, &bd, NULL, &c)) TH_LOG("%s", llmp_strerror_last());
	ASSERT_EQ(1, llmp_client_recv_wait(c, &v, 5000));
	ASSERT_EQ(TAG_HELLO, v.tag);
	ASSERT_EQ(2u, v.len);
	/* alive broker, nothing to read: a plain timeout */
	ASSERT_EQ(0, llmp_client_recv_wait(c, &v, 300));
	ASSERT_EQ(0, kill(pid, SIGKILL));
	/* not reaped yet: a zombie broker counts as dead */
	t0 = llmp_test_now_ms();
	ret = llmp_client_recv_wait(c, &v, 10000);
	ASSERT_EQ(-EPIPE, ret) TH_LOG("recv_wait: %d %s", ret, llmp_strerror_last());
	ASSERT_LT(llmp_test_now_ms() - t0, 2000u);
	ASSERT_TRUE(strstr(llmp_strerror_last(), "broker") != NULL) TH_LOG("%s", llmp_strerror_last());
	ASSERT_EQ(pid, waitpid(pid, &st, 0));
	ASSERT_TRUE(WIFSIGNALED(st));
	/* reaped: still -EPIPE */
	ASSERT_EQ(-EPIPE, llmp_client_recv_wait(c, &v, 10000));
	llmp_client_free(c);
}

TEST_HARNESS_MAIN
