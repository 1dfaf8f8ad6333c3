// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * /dev/llmp memory accounting (kmod/acct.c): per-user and total limits give
 * clean errors, the reserve keeps room for root, mapped-only segments stay
 * charged, and the memory is freed after close+munmap and after SIGKILL of
 * every holder (with SysV's leak beside it for comparison).  SKIPs without
 * /dev/llmp (the VM harness loads llmp.ko).
 */
#include "kmod_seg_fixture.h"

/*
 * A child that becomes uid (dropping every capability, CAP_IPC_LOCK
 * included), creates segments of chunk bytes until one fails or max are
 * made, reports how many and the errno of the failure, and holds them
 * until its parent writes to the go pipe.
 */
struct filler {
	pid_t pid;
	int res;	/* read end: struct fill_result */
	int go;		/* write end: a byte lets the child exit */
};

struct fill_result {
	int made;
	int err;	/* errno of the create that failed, 0 if max were made */
};

static int filler_start(int dev, uid_t uid, uint64_t chunk, int max, struct filler *f)
{
	int res[2], go[2];

	if (pipe(res) || pipe(go))
		return -errno;
	f->pid = fork();
	if (f->pid < 0)
		return -errno;
	if (f->pid == 0) {
		struct fill_result r = { 0, 0 };
		struct llmp_seg_create c;
		char x;

		close(res[0]);
		close(go[1]);
		if (setgroups(0, NULL) || setresgid(uid, uid, uid) || setresuid(uid, uid, uid))
			_exit(2);
		while (r.made < max) {
			int ret = seg_create(dev, chunk, 0, &c);

			if (ret) {
				r.err = -ret;
				break;
			}
			r.made++;
		}
		if (write(res[1], &r, sizeof(r)) != sizeof(r))
			_exit(3);
		/* A byte, or EOF if the parent died (later children hold the pipe too). */
		_exit(read(go[0], &x, 1) == 1 ? 0 : 4);
	}
	close(res[1]);
	close(go[0]);
	f->res = res[0];
	f->go = go[1];
	return 0;
}

static int filler_result(struct filler *f, struct fill_result *r)
{
	return read(f->res, r, sizeof(*r)) == sizeof(*r) ? 0 : -EIO;
}

/* Let the child go (its segments with it); its exit status. */
static int filler_stop(struct filler *f)
{
	int st;

	if (write(f->go, "g", 1) != 1)
		return -1;
	close(f->go);
	close(f->res);
	if (waitpid(f->pid, &st, 0) != f->pid)
		return -1;
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

TEST_F(seg, limits_give_clean_errors)
{
	NEED_DEV();
	struct llmp_seg_create a, b;
	struct fill_result r;
	struct llmp_stats s;
	struct filler f;
	char v[32];

	SAVE_PARAMS();
	/* Whatever other segments exist count too: start above them. */
	snprintf(v, sizeof(v), "%llu", (unsigned long long)(self->base.bytes_live + (1 << 20)));
	ASSERT_EQ(0, param_set("max_total_bytes", "0"));
	ASSERT_EQ(0, param_set("reserved_bytes", "0"));
	ASSERT_EQ(0, param_set("max_user_bytes", "1048576"));
	/* An unprivileged uid: 512 KiB fit, 768 KiB more do not. */
	ASSERT_EQ(0, filler_start(self->dev, 65534, 512 * 1024, 4, &f));
	ASSERT_EQ(0, filler_result(&f, &r));
	ASSERT_EQ(2, r.made);
	ASSERT_EQ(EDQUOT, r.err);
	ASSERT_EQ(0, get_stats(self->dev, &s));
	ASSERT_EQ(self->base.segments_live + 2, s.segments_live);
	ASSERT_EQ(0, filler_stop(&f));
	/* Beyond the global limit as well: that one is checked first. */
	ASSERT_EQ(0, filler_start(self->dev, 65534, 1ULL << 39, 1, &f));
	ASSERT_EQ(0, filler_result(&f, &r));
	ASSERT_EQ(0, r.made);
	ASSERT_EQ(ENOSPC, r.err);
	ASSERT_EQ(0, filler_stop(&f));
	/* Root (CAP_IPC_LOCK) has no per-uid limit. */
	ASSERT_EQ(0, seg_create(self->dev, 2 << 20, 0, &a));
	close(a.fd);

	ASSERT_EQ(0, param_set("max_total_bytes", v));
	ASSERT_EQ(0, param_set("max_user_bytes", "1099511627776"));
	ASSERT_EQ(0, param_set("reserved_bytes", "4096"));
	ASSERT_EQ(-ENOSPC, seg_create(self->dev, 2 << 20, 0, &b));
	ASSERT_EQ(0, seg_create(self->dev, 1 << 20, 0, &a));
	ASSERT_EQ(-ENOSPC, seg_create(self->dev, 1, 0, &b));
	close(a.fd);
	/* The ABI's own ceiling is -EINVAL whatever the limits say. */
	ASSERT_EQ(-EINVAL, seg_create(self->dev, LLMP_SEG_MAX_SIZE + 1, 0, &b));
	ASSERT_EQ(-EINVAL, seg_create(self->dev, ~0ULL, 0, &b));
	ASSERT_EQ(0, get_stats(self->dev, &s));
	ASSERT_EQ(self->base.segments_live, s.segments_live);
	ASSERT_EQ(self->base.bytes_live, s.bytes_live);
}

/*
 * Issue 8, finding 8: with the default limits two unprivileged uids that
 * fill their quotas (untouched segments cost them nothing) leave root able
 * to create.  Before, the per-uid default was half the global limit, so
 * two uids took it all and root's 1 MiB create failed with ENOSPC.
 */
TEST_F(seg, two_users_at_quota_leave_root_room)
{
	NEED_DEV();
	uint64_t total = 0, user = 0, chunk;
	struct fill_result r[2];
	struct llmp_seg_create c;
	struct filler f[2];

	SAVE_PARAMS();
	ASSERT_EQ(0, param_set("max_total_bytes", "0"));
	ASSERT_EQ(0, param_set("max_user_bytes", "0"));
	param_set("reserved_bytes", "0");
	if (debug_stat("limit_total_bytes", &total) || debug_stat("limit_user_bytes", &user))
		SKIP(return, "no /sys/kernel/debug/llmp/stats (debugfs not mounted?)");
	TH_LOG("default limits: total %llu, per uid %llu", (unsigned long long)total,
	       (unsigned long long)user);
	chunk = (user / 4) & ~(uint64_t)(self->page - 1);
	ASSERT_GT(chunk, 0);
	for (int i = 0; i < 2; i++) {
		ASSERT_EQ(0, filler_start(self->dev, 1001 + i, chunk, 64, &f[i]));
		ASSERT_EQ(0, filler_result(&f[i], &r[i]));
	}
	for (int i = 0; i < 2; i++) {
		/* Each stopped at its own quota, not at the global limit. */
		ASSERT_EQ(EDQUOT, r[i].err);
		ASSERT_GE(r[i].made, 4);
	}
	ASSERT_EQ(0, seg_create(self->dev, 1 << 20, 0, &c));
	close(c.fd);
	for (int i = 0; i < 2; i++)
		ASSERT_EQ(0, filler_stop(&f[i]));
}

/*
 * Finding 8, the reserve: however many unprivileged uids fill the pool
 * (here a 64 MiB global limit and its default per-uid eighth), the last
 * reserved_bytes stay for CAP_IPC_LOCK: root still creates that much.
 */
TEST_F(seg, reserve_outlasts_many_users)
{
	NEED_DEV();
	uint64_t total = 0, user = 0, reserved = 0, chunk;
	struct llmp_seg_create c;
	struct filler f[16];
	struct fill_result r;
	int n = 0, full = 0;
	char v[32];

	SAVE_PARAMS();
	snprintf(v, sizeof(v), "%llu", (unsigned long long)(self->base.bytes_live + (64 << 20)));
	ASSERT_EQ(0, param_set("max_total_bytes", v));
	ASSERT_EQ(0, param_set("max_user_bytes", "0"));
	ASSERT_EQ(0, param_set("reserved_bytes", "0"));
	if (debug_stat("limit_total_bytes", &total) || debug_stat("limit_user_bytes", &user))
		SKIP(return, "no /sys/kernel/debug/llmp/stats (debugfs not mounted?)");
	if (debug_stat("limit_reserved_bytes", &reserved))
		reserved = 0;
	TH_LOG("limits: total %llu, per uid %llu, reserved %llu", (unsigned long long)total,
	       (unsigned long long)user, (unsigned long long)reserved);
	ASSERT_GE(reserved, 1 << 20);
	chunk = (user / 2) & ~(uint64_t)(self->page - 1);
	while (n < 16 && !full) {
		ASSERT_EQ(0, filler_start(self->dev, 2000 + n, chunk, 64, &f[n]));
		ASSERT_EQ(0, filler_result(&f[n], &r));
		n++;
		ASSERT_NE(0, r.err);
		if (r.err == ENOSPC)
			full = 1;
		else
			ASSERT_EQ(EDQUOT, r.err);
	}
	TH_LOG("%d unprivileged uids filled the pool", n);
	ASSERT_TRUE(full);
	ASSERT_EQ(0, seg_create(self->dev, reserved & ~(uint64_t)(self->page - 1), 0, &c));
	close(c.fd);
	while (n > 0)
		ASSERT_EQ(0, filler_stop(&f[--n]));
}

/*
 * Issue 8, finding 9: a segment mapped and then closed keeps its memory,
 * so it keeps its charge.  An unprivileged uid with a 4 MiB quota maps
 * and closes four 1 MiB segments: the fifth create is -EDQUOT (before, it
 * succeeded, and bytes_live read 0 with 4 MiB mapped).  After munmap the
 * charge goes: the create succeeds and the counters return to the base.
 */
TEST_F(seg, mapped_only_segments_stay_charged)
{
	NEED_DEV();
	int res[2], go[2], st;
	struct llmp_stats s;
	int32_t out[2];
	pid_t pid;
	char x;

	SAVE_PARAMS();
	ASSERT_EQ(0, param_set("max_total_bytes", "0"));
	param_set("reserved_bytes", "0");
	ASSERT_EQ(0, param_set("max_user_bytes", "4194304"));
	ASSERT_EQ(0, pipe(res));
	ASSERT_EQ(0, pipe(go));
	pid = fork();
	ASSERT_GE(pid, 0);
	if (pid == 0) {
		struct llmp_seg_create c;
		unsigned char *p[4];

		if (setgroups(0, NULL) || setresgid(65534, 65534, 65534) ||
		    setresuid(65534, 65534, 65534))
			_exit(2);
		for (int i = 0; i < 4; i++) {
			if (seg_create(self->dev, 1 << 20, 0, &c))
				_exit(3);
			p[i] = mmap(NULL, 1 << 20, PROT_READ | PROT_WRITE, MAP_SHARED, c.fd, 0);
			if (p[i] == MAP_FAILED)
				_exit(4);
			memset(p[i], i + 1, 1 << 20);
			close(c.fd);
		}
		out[0] = seg_create(self->dev, 1 << 20, 0, &c);
		if (!out[0])
			close(c.fd);
		if (write(res[1], out, sizeof(out[0])) != sizeof(out[0]) || read(go[0], &x, 1) != 1)
			_exit(5);
		for (int i = 0; i < 4; i++)
			if (p[i][(1 << 20) - 1] != i + 1 || munmap(p[i], 1 << 20))
				_exit(6);
		out[1] = seg_create(self->dev, 1 << 20, 0, &c);
		if (!out[1])
			close(c.fd);
		_exit(write(res[1], &out[1], sizeof(out[1])) == sizeof(out[1]) ? 0 : 7);
	}
	close(res[1]);
	close(go[0]);
	ASSERT_EQ(sizeof(out[0]), read(res[0], &out[0], sizeof(out[0])));
	ASSERT_EQ(-EDQUOT, out[0]);
	ASSERT_EQ(0, get_stats(self->dev, &s));
	ASSERT_EQ(self->base.segments_live, s.segments_live);
	ASSERT_EQ(self->base.segments_mapped_only + 4, s.segments_mapped_only);
	ASSERT_EQ(self->base.bytes_live + (4 << 20), s.bytes_live);
	ASSERT_EQ(1, write(go[1], "g", 1));
	ASSERT_EQ(sizeof(out[1]), read(res[0], &out[1], sizeof(out[1])));
	ASSERT_EQ(0, out[1]);
	ASSERT_EQ(pid, waitpid(pid, &st, 0));
	ASSERT_TRUE(WIFEXITED(st));
	ASSERT_EQ(0, WEXITSTATUS(st));
	close(res[0]);
	close(go[1]);
	ASSERT_EQ(0, get_stats(self->dev, &s));
	ASSERT_EQ(self->base.segments_live, s.segments_live);
	ASSERT_EQ(self->base.segments_mapped_only, s.segments_mapped_only);
	ASSERT_EQ(self->base.bytes_live, s.bytes_live);
}

/* Every reserved field, out-only field, flag and size the ABI rejects. */
TEST_F(seg, memory_freed_after_last_close_and_munmap)
{
	NEED_DEV();
	size_t size = 16 << 20;
	struct llmp_seg_create c;
	struct llmp_seg_open o;
	struct llmp_stats s;
	long shm0, shm1, shm2, shm3;
	unsigned char *p;

	shm0 = meminfo_kb("Shmem");
	ASSERT_GE(shm0, 0);
	ASSERT_EQ(0, seg_create(self->dev, size, 0, &c));
	p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, c.fd, 0);
	ASSERT_NE(MAP_FAILED, p);
	memset(p, 0x5a, size);
	shm1 = meminfo_kb("Shmem");
	ASSERT_GE(shm1 - shm0, (long)(size >> 10) - 1024);

	ASSERT_EQ(0, seg_open(self->dev, c.id, c.key, &o));
	close(c.fd);
	/* The opened fd still holds the segment and its id. */
	ASSERT_EQ(0, get_stats(self->dev, &s));
	ASSERT_EQ(self->base.segments_live + 1, s.segments_live);
	close(o.fd);
	/* No fd left: the object and its id are gone, its charge is not... */
	ASSERT_EQ(0, get_stats(self->dev, &s));
	ASSERT_EQ(self->base.segments_live, s.segments_live);
	ASSERT_EQ(self->base.segments_mapped_only + 1, s.segments_mapped_only);
	ASSERT_EQ(self->base.bytes_live + size, s.bytes_live);
	ASSERT_EQ(-ENOENT, seg_open(self->dev, c.id, c.key, &o));
	/* ...but the mapping keeps the memory, bytes intact. */
	shm2 = meminfo_kb("Shmem");
	ASSERT_GE(shm2 - shm0, (long)(size >> 10) - 1024);
	for (size_t i = 0; i < size; i += 4096)
		ASSERT_EQ(0x5a, p[i]);
	munmap(p, size);
	/* The charge ends with the last mapping (STATS looks first). */
	ASSERT_EQ(0, get_stats(self->dev, &s));
	ASSERT_EQ(self->base.segments_mapped_only, s.segments_mapped_only);
	ASSERT_EQ(self->base.bytes_live, s.bytes_live);
	shm3 = meminfo_kb("Shmem");
	TH_LOG("Shmem KiB: before %ld, mapped %ld, fds closed %ld, unmapped %ld",
	       shm0, shm1, shm2, shm3);
	ASSERT_LT(shm3 - shm0, 2048);
}

/*
 * Children hold segments (fds, a second fd by id, mappings, touched pages)
 * and are SIGKILLed: every counter returns to the baseline and the pages
 * go.  The same with SysV segments leaves all of them behind (the reason
 * the module exists); that count is printed for Documentation/kmod.rst.
 */
#define KILL_CHILDREN 4
#define KILL_SEG (1 << 20)

TEST_F(seg, memory_freed_after_sigkill_of_all_holders)
{
	NEED_DEV();
	pid_t pids[KILL_CHILDREN];
	struct llmp_stats s;
	long shm0, shm1, shm2;
	int pfd[2];
	char x;

	shm0 = meminfo_kb("Shmem");
	ASSERT_EQ(0, pipe(pfd));
	for (int i = 0; i < KILL_CHILDREN; i++) {
		pids[i] = fork();
		ASSERT_GE(pids[i], 0);
		if (pids[i] == 0) {
			struct llmp_seg_create a, b;
			struct llmp_seg_open o;
			unsigned char *p, *q;

			if (seg_create(self->dev, KILL_SEG, 0, &a) ||
			    seg_create(self->dev, KILL_SEG, 0, &b) ||
			    seg_open(self->dev, a.id, a.key, &o))
				_exit(2);
			p = mmap(NULL, KILL_SEG, PROT_READ | PROT_WRITE, MAP_SHARED, a.fd, 0);
			q = mmap(NULL, KILL_SEG, PROT_READ | PROT_WRITE, MAP_SHARED, o.fd, 0);
			if (p == MAP_FAILED || q == MAP_FAILED)
				_exit(3);
			memset(p, 1, KILL_SEG);
			/* b: a mapping only, its fd closed. */
			q = mmap(NULL, KILL_SEG, PROT_READ | PROT_WRITE, MAP_SHARED, b.fd, 0);
			if (q == MAP_FAILED)
				_exit(4);
			memset(q, 2, KILL_SEG);
			close(b.fd);
			if (write(pfd[1], "r", 1) != 1)
				_exit(5);
			for (;;)
				pause();
		}
	}
	close(pfd[1]);
	for (int i = 0; i < KILL_CHILDREN; i++)
		ASSERT_EQ(1, read(pfd[0], &x, 1));
	close(pfd[0]);
	ASSERT_EQ(0, get_stats(self->dev, &s));
	ASSERT_EQ(self->base.segments_live + KILL_CHILDREN, s.segments_live);
	shm1 = meminfo_kb("Shmem");
	ASSERT_GE(shm1 - shm0, KILL_CHILDREN * 2 * (KILL_SEG >> 10) - 1024);
	for (int i = 0; i < KILL_CHILDREN; i++)
		ASSERT_EQ(0, kill(pids[i], SIGKILL));
	for (int i = 0; i < KILL_CHILDREN; i++) {
		int st;

		ASSERT_EQ(pids[i], waitpid(pids[i], &st, 0));
		ASSERT_TRUE(WIFSIGNALED(st));
	}
	ASSERT_EQ(0, get_stats(self->dev, &s));
	ASSERT_EQ(self->base.segments_live, s.segments_live);
	ASSERT_EQ(self->base.bytes_live, s.bytes_live);
	ASSERT_EQ(self->base.segments_created + 2 * KILL_CHILDREN, s.segments_created);
	ASSERT_EQ(self->base.segments_freed + 2 * KILL_CHILDREN, s.segments_freed);
	shm2 = meminfo_kb("Shmem");
	ASSERT_LT(shm2 - shm0, 2048);
	FIGURE("figure: kmod segments left after SIGKILL of %d holders of %d: %llu "
		       "(Shmem KiB %ld -> %ld -> %ld)\n", KILL_CHILDREN, 2 * KILL_CHILDREN,
		       (unsigned long long)(s.segments_live - self->base.segments_live),
		       shm0, shm1, shm2);
}

TEST(sysv_segments_leak_after_sigkill)
{
	int ids[KILL_CHILDREN];
	pid_t pids[KILL_CHILDREN];
	int leaked = 0, pfd[2];

	ASSERT_EQ(0, pipe(pfd));
	for (int i = 0; i < KILL_CHILDREN; i++) {
		pids[i] = fork();
		ASSERT_GE(pids[i], 0);
		if (pids[i] == 0) {
			int id = shmget(IPC_PRIVATE, KILL_SEG, IPC_CREAT | 0600);
			void *p;

			if (id < 0)
				_exit(2);
			p = shmat(id, NULL, 0);
			if (p == (void *)-1)
				_exit(3);
			memset(p, 1, KILL_SEG);
			if (write(pfd[1], &id, sizeof(id)) != sizeof(id))
				_exit(4);
			for (;;)
				pause();
		}
	}
	close(pfd[1]);
	for (int i = 0; i < KILL_CHILDREN; i++)
		ASSERT_EQ(sizeof(int), read(pfd[0], &ids[i], sizeof(int)));
	close(pfd[0]);
	for (int i = 0; i < KILL_CHILDREN; i++) {
		int st;

		kill(pids[i], SIGKILL);
		ASSERT_EQ(pids[i], waitpid(pids[i], &st, 0));
	}
	for (int i = 0; i < KILL_CHILDREN; i++) {
		struct shmid_ds ds;

		if (shmctl(ids[i], IPC_STAT, &ds) == 0) {
			leaked++;
			ASSERT_EQ(0, ds.shm_nattch);
		}
		shmctl(ids[i], IPC_RMID, NULL);
	}
	FIGURE("figure: sysv segments left after SIGKILL of %d holders of %d: %d\n",
		       KILL_CHILDREN, KILL_CHILDREN, leaked);
	/* SysV segments outlive their creators unless marked IPC_RMID. */
	ASSERT_EQ(KILL_CHILDREN, leaked);
}

/* debugfs lists the live segment with its owner, creator and references. */
TEST_HARNESS_MAIN
