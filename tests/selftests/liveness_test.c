// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * Dead clients.  Clients run in forked processes and are SIGKILLed: the
 * broker (in the test process) must forward everything they committed,
 * drop them (llmp_broker_check_clients, and by themselves llmp_broker_run()
 * and the event loop), release their pages and keep serving the others,
 * also when a client is killed while it registers (issue 8 finding 15).
 * Restarted clients and dead brokers are liveness_restart_test.
 *
 * Every provider kind that tells a page's creator runs these: MEMFD, POSIX
 * and SYSV from the id or IPC_STAT, SERVED from its server (protocol
 * version 2; a server process per test) and KMOD from LLMP_IOC_SEG_INFO
 * (SKIP without /dev/llmp; runs in the VM).  For SERVED and KMOD, "pages
 * released" is also checked against the segment counts of the server (STAT)
 * and of the module (LLMP_IOC_STATS): back to the count before the broker
 * existed once the broker and the receiver are freed.
 */
#include "liveness_fixture.h"

/*
 * (a) A client sends K messages and is SIGKILLed while a second one keeps
 * sending: all K arrive, the dead one is dropped within grace + 1 s and its
 * pages are unmapped; the healthy one is served to its clean exit.
 */
TEST_F_TIMEOUT(live, killed_client_dropped, 120)
{
	const uint32_t K = 150; /* fits in the first out page */
	struct child_cfg dc = { .kind = variant->kind, .sno = 1, .first = 0, .count = K,
				.end = END_PAUSE };
	struct child_cfg hc = { .kind = variant->kind, .sno = 2, .first = 0, .count = 1500,
				.delay_us = 1000, .end = END_EXIT };
	uint64_t t_kill = 0, t_drop = 0, t_end;
	int dropped = 0, st;
	pid_t dpid;
	char byte;

	NEED_PROVIDER();
	ASSERT_EQ(0, start_child(self, 0, &dc));
	ASSERT_EQ(0, start_child(self, 1, &hc));
	dpid = self->t[0].pid;
	ASSERT_EQ(2u, llmp_broker_nclients(self->b));
	/* Wait until the dead-to-be has sent K, but do not read them yet. */
	ASSERT_EQ(1, read(self->t[0].rfd, &byte, 1));
	ASSERT_GT(mapped_of(variant->kind, dpid), 0) TH_LOG("broker does not map its page?");
	ASSERT_EQ(0, kill(dpid, SIGKILL));
	t_kill = llmp_test_now_ms();
	ASSERT_EQ(dpid, waitpid(dpid, &st, 0));
	forget(self, 0, false);
	/*
	 * Nothing of the dead client was read yet: the check itself must
	 * forward its K messages before dropping it (MEMFD: at once).
	 */
	dropped = llmp_broker_check_clients(self->b);
	ASSERT_GE(dropped, 0);
	if (variant->kind == LLMP_SHMEM_MEMFD) {
		ASSERT_EQ(1, dropped);
		t_drop = llmp_test_now_ms();
	} else {
		ASSERT_EQ(0, dropped); /* in its grace period */
	}
	t_end = t_kill + 30000;
	while (llmp_test_now_ms() < t_end && !(t_drop && self->t[1].done &&
				     llmp_broker_nclients(self->b) == 0)) {
		int ret = pump(self);

		ASSERT_GE(ret, 0) TH_LOG("%s", llmp_strerror_last());
		ret = llmp_broker_check_clients(self->b);
		ASSERT_GE(ret, 0);
		if (ret > 0) {
			dropped += ret;
			t_drop = llmp_test_now_ms();
			ASSERT_EQ(1u, llmp_broker_nclients(self->b));
		}
		usleep(200);
	}
	ASSERT_EQ(0, self->bad) TH_LOG("%s", self->why);
	ASSERT_EQ(1, dropped);
	ASSERT_EQ(1, drops_logged);
	ASSERT_NE(0u, t_drop);
	ASSERT_LE(t_drop - t_kill, (uint64_t)GRACE_MS + SLACK_MS) TH_LOG("dropped after %llu ms",
		(unsigned long long)(t_drop - t_kill));
	TH_LOG("%s: dead client dropped %llu ms after SIGKILL (grace %d ms)",
	       llmp_shmem_kind_name(variant->kind), (unsigned long long)(t_drop - t_kill), GRACE_MS);
	/* everything the dead client committed was forwarded, exactly once, in order */
	ASSERT_EQ(K, self->t[0].next);
	/* the healthy client: all of it, then its clean exit */
	ASSERT_TRUE(self->t[1].done);
	ASSERT_EQ(hc.count, self->t[1].done_n);
	ASSERT_EQ(hc.count, self->t[1].next);
	ASSERT_EQ(0u, llmp_broker_nclients(self->b));
	ASSERT_EQ(self->t[1].pid, waitpid(self->t[1].pid, &st, 0));
	ASSERT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) TH_LOG("status %d", st);
	self->t[1].pid = 0;
	/*
	 * The dead client's pages are no longer mapped by the broker.  (Checked
	 * after the other child is gone: it inherited our SysV attachments.)
	 */
	ASSERT_EQ(0, mapped_of(variant->kind, dpid));
	ASSERT_TRUE(release_all(self, variant->kind)) TH_LOG("%ld live segments, %ld before",
		live_segments(variant->kind), self->base_segs);
}

/*
 * (b) Four senders, two SIGKILLed mid-stream: the survivors' messages all
 * arrive once and in order, what arrived of the killed ones is an ordered
 * prefix, and the broker ends with no client.
 */
TEST_F_TIMEOUT(live, stress_kill_two_of_four, 120)
{
	const uint32_t N = 20000;
	uint64_t t_end;
	bool killed = false;

	NEED_PROVIDER();
	for (unsigned i = 0; i < 4; i++) {
		struct child_cfg cfg = { .kind = variant->kind, .sno = i + 1, .count = N,
					 .delay_us = (i == 1 || i == 2) ? 20 : 0,
					 .end = END_EXIT };

		ASSERT_EQ(0, start_child(self, i, &cfg)) TH_LOG("child %u", i);
	}
	ASSERT_EQ(4u, llmp_broker_nclients(self->b));
	t_end = llmp_test_now_ms() + 60000;
	while (llmp_test_now_ms() < t_end) {
		ASSERT_GE(pump(self), 0) TH_LOG("%s", llmp_strerror_last());
		if (!killed && self->t[1].next > N / 4 && self->t[2].next > N / 4) {
			/* kill 1 and 2 mid-stream (one of them reaped only later) */
			ASSERT_LT(self->t[1].next, N);
			ASSERT_LT(self->t[2].next, N);
			ASSERT_EQ(0, kill(self->t[1].pid, SIGKILL));
			ASSERT_EQ(0, kill(self->t[2].pid, SIGKILL));
			forget(self, 1, true);
			forget(self, 2, false);
			killed = true;
		}
		ASSERT_GE(llmp_broker_check_clients(self->b), 0);
		if (killed && self->t[0].done && self->t[3].done &&
		    llmp_broker_nclients(self->b) == 0)
			break;
	}
	waitpid(self->dead[1], NULL, 0);
	ASSERT_TRUE(killed);
	ASSERT_EQ(0, self->bad) TH_LOG("%s", self->why);
	ASSERT_TRUE(self->t[0].done && self->t[3].done);
	ASSERT_EQ(N, self->t[0].next);
	ASSERT_EQ(N, self->t[3].next);
	ASSERT_EQ(N, self->t[0].done_n);
	ASSERT_EQ(N, self->t[3].done_n);
	ASSERT_GT(self->t[1].next, N / 4);
	ASSERT_EQ(0u, llmp_broker_nclients(self->b));
	for (unsigned i = 0; i < 4; i += 3) {
		int st;

		ASSERT_EQ(self->t[i].pid, waitpid(self->t[i].pid, &st, 0));
		ASSERT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) TH_LOG("status %d", st);
		self->t[i].pid = 0;
	}
	/* all children gone (they inherited SysV attachments): nothing of the dead mapped */
	ASSERT_EQ(0, mapped_of(variant->kind, self->dead[0]));
	ASSERT_EQ(0, mapped_of(variant->kind, self->dead[1]));
	ASSERT_TRUE(release_all(self, variant->kind)) TH_LOG("%ld live segments, %ld before",
		live_segments(variant->kind), self->base_segs);
}

/*
 * (e) llmp_broker_run() and the event loop check by themselves: with
 * exit_after = 1 and one client that was SIGKILLed, both return once it is
 * dropped, after forwarding what it committed.
 */
TEST_F_TIMEOUT(live, run_and_loop_drop_dead, 120)
{
	const uint32_t K = 100;

	NEED_PROVIDER();
	for (unsigned mode = 0; mode < 2; mode++) {
		struct llmp_broker_opts bo = { .struct_size = sizeof(bo),
					       .dead_client_grace_ms = GRACE_MS,
					       .exit_after = mode == 0 ? 1 : 0 };
		struct llmp_loop_opts lo = { .struct_size = sizeof(lo), .exit_after = 1 };
		struct child_cfg dc = { .kind = variant->kind, .sno = 1, .count = K,
					.end = END_PAUSE };
		struct llmp_loop *lp = NULL;
		uint64_t t0;
		pid_t dpid;
		char byte;
		int ret;

		llmp_client_free(self->r);
		llmp_broker_free(self->b);
		self->r = NULL;
		self->b = NULL;
		ASSERT_EQ(0, llmp_broker_new(self->p, &bo, &self->b));
		ASSERT_EQ(0, llmp_broker_broadcast_desc(self->b, &self->bd));
		ASSERT_EQ(0, llmp_client_new(self->p, &self->bd, NULL, &self->r));
		ASSERT_EQ(0, start_child(self, mode, &dc));
		dpid = self->t[mode].pid;
		ASSERT_EQ(1, read(self->t[mode].rfd, &byte, 1));
		ASSERT_EQ(0, kill(dpid, SIGKILL));
		ASSERT_EQ(dpid, waitpid(dpid, NULL, 0));
		forget(self, mode, false);
		t0 = llmp_test_now_ms();
		if (mode == 0) {
			ret = llmp_broker_run(self->b);
		} else {
			ASSERT_EQ(0, llmp_loop_new(self->b, &lo, &lp)) TH_LOG("%s",
									    llmp_strerror_last());
			ret = llmp_loop_run(lp);
			llmp_loop_free(lp);
		}
		ASSERT_EQ(0, ret) TH_LOG("%s: %s", mode ? "loop" : "run", llmp_strerror_last());
		ASSERT_LE(llmp_test_now_ms() - t0, (uint64_t)GRACE_MS + SLACK_MS);
		ASSERT_EQ(0u, llmp_broker_nclients(self->b));
		ASSERT_GE(pump(self), 0);
		ASSERT_EQ(0, self->bad) TH_LOG("%s", self->why);
		ASSERT_EQ(K, self->t[mode].next) TH_LOG("%s", mode ? "loop" : "run");
		ASSERT_EQ(0, mapped_of(variant->kind, dpid)) TH_LOG("%s", served_why);
	}
	ASSERT_EQ(2, drops_logged);
}

/*
 * (f) Issue 8 finding 15: a client SIGKILLed while it registers.  The
 * child has handed over its page and waits for its id; it is killed there
 * and left unreaped (a zombie: its /proc/<pid>/maps is empty, its pidfd
 * readable) while the broker registers the page and for as long as the
 * test waits.  A POSIX page outlives its creator, so the registration
 * succeeds, and the broker must see the zombie as dead (not as "a pid that
 * does not map this page") and drop the client after the grace period.
 * The other kinds either drop it the same way or refuse the registration
 * (a memfd cannot be reached through a zombie's /proc/<pid>/fd); either
 * way no client stays behind.
 */
TEST_F_TIMEOUT(live, killed_while_registering_dropped, 120)
{
	struct child_cfg dc = { .kind = variant->kind, .sno = 1, .count = 10, .end = END_PAUSE };
	struct llmp_shmem_desc od;
	siginfo_t si;
	uint64_t t_kill, t_end;
	int c2p[2], p2c[2], id, st;
	pid_t pid;

	NEED_PROVIDER();
	ASSERT_EQ(0, pipe(c2p));
	ASSERT_EQ(0, pipe(p2c));
	fflush(NULL);
	pid = fork();
	ASSERT_LE(0, pid);
	if (pid == 0) {
		close(c2p[0]);
		close(p2c[1]);
		dc.wfd = c2p[1];
		dc.rfd = p2c[0];
		dc.bcast = &self->bd;
		_exit(run_child(&dc)); /* writes its page, then waits for its id */
	}
	close(c2p[1]);
	close(p2c[0]);
	self->t[0].pid = pid;
	self->t[0].rfd = c2p[0];
	self->t[0].wfd = p2c[1];
	ASSERT_EQ(sizeof(od), (size_t)read(c2p[0], &od, sizeof(od)));
	ASSERT_EQ(0, kill(pid, SIGKILL));
	t_kill = llmp_test_now_ms();
	/* a zombie now, and it stays one: WNOWAIT does not reap */
	memset(&si, 0, sizeof(si));
	ASSERT_EQ(0, waitid(P_PID, (id_t)pid, &si, WEXITED | WNOWAIT));
	ASSERT_EQ(pid, si.si_pid);
	id = llmp_broker_add_client(self->b, &od);
	if (variant->kind == LLMP_SHMEM_POSIX)
		ASSERT_LT(0, id) TH_LOG("POSIX page of a zombie: %s", llmp_strerror_last());
	if (id <= 0) {
		TH_LOG("%s: registration refused (%s)", llmp_shmem_kind_name(variant->kind),
		       llmp_strerror_last());
		ASSERT_EQ(0u, llmp_broker_nclients(self->b));
	} else {
		self->t[0].id = (uint32_t)id;
		ASSERT_EQ(1u, llmp_broker_nclients(self->b));
		t_end = t_kill + GRACE_MS + SLACK_MS;
		while (llmp_test_now_ms() < t_end && llmp_broker_nclients(self->b) != 0) {
			ASSERT_GE(pump(self), 0) TH_LOG("%s", llmp_strerror_last());
			ASSERT_LE(0, llmp_broker_check_clients(self->b));
			usleep(1000);
		}
		ASSERT_EQ(0u, llmp_broker_nclients(self->b))
			TH_LOG("%s: the killed client was never dropped",
			       llmp_shmem_kind_name(variant->kind));
		ASSERT_EQ(1, drops_logged);
		/* still unreaped: the drop came from seeing the zombie as dead */
		ASSERT_EQ(0, waitid(P_PID, (id_t)pid, &si, WEXITED | WNOWAIT | WNOHANG));
		ASSERT_EQ(pid, si.si_pid);
		TH_LOG("%s: dropped %llu ms after SIGKILL, the child still a zombie",
		       llmp_shmem_kind_name(variant->kind),
		       (unsigned long long)(llmp_test_now_ms() - t_kill));
	}
	/* at least a second unreaped, as in the soak that found it */
	while (llmp_test_now_ms() < t_kill + 1000)
		usleep(10000);
	ASSERT_EQ(pid, waitpid(pid, &st, 0));
	ASSERT_TRUE(WIFSIGNALED(st));
	forget(self, 0, false);
	ASSERT_EQ(0, self->bad) TH_LOG("%s", self->why);
	/* its page is no longer mapped by the broker (SERVED/KMOD: nor kept alive) */
	ASSERT_EQ(0, mapped_of(variant->kind, pid)) TH_LOG("%s", served_why);
	/* the broker still serves: a new client's messages arrive */
	{
		struct child_cfg hc = { .kind = variant->kind, .sno = 2, .count = 50,
					.end = END_EXIT };

		ASSERT_EQ(0, start_child(self, 1, &hc));
		t_end = llmp_test_now_ms() + 30000;
		while (llmp_test_now_ms() < t_end && !self->t[1].done)
			ASSERT_GE(pump(self), 0);
		ASSERT_TRUE(self->t[1].done);
		ASSERT_EQ(50u, self->t[1].next);
		ASSERT_EQ(self->t[1].pid, waitpid(self->t[1].pid, &st, 0));
		self->t[1].pid = 0;
		ASSERT_EQ(0, self->bad) TH_LOG("%s", self->why);
	}
}

TEST_HARNESS_MAIN
