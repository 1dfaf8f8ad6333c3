// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * /dev/llmp segments (kmod/): create, mmap, open by id+key from other
 * processes, permissions, IPC namespaces, limits, the ABI's reserved fields,
 * and that the memory is freed after close+munmap and after SIGKILL.
 * SKIPs without /dev/llmp (the VM harness loads llmp.ko).
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/ipc.h>
#include <sys/mman.h>
#include <sys/shm.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kselftest_harness.h"
#include "llmp_test.h"
#include "kmod_abi.h"
#include "uapi/linux/llmp.h"

/* A "# ..." line on stdout that survives the test child's _exit(). */
#define FIGURE(...) do { ksft_print_msg(__VA_ARGS__); fflush(stdout); } while (0)

#define PARAM_DIR "/sys/module/llmp/parameters/"

static int dev_open(void)
{
	return open(LLMP_DEVICE_PATH, O_RDWR | O_CLOEXEC);
}

/* ioctl returning 0 or -errno. */
static int xioctl(int fd, unsigned long cmd, void *arg)
{
	return ioctl(fd, cmd, arg) < 0 ? -errno : 0;
}

static int seg_create(int dev, uint64_t size, uint32_t flags, struct llmp_seg_create *c)
{
	memset(c, 0, sizeof(*c));
	c->size = size;
	c->flags = flags;
	c->fd_flags = O_CLOEXEC;
	return xioctl(dev, LLMP_IOC_SEG_CREATE, c);
}

static int seg_open(int dev, uint32_t id, uint64_t key, struct llmp_seg_open *o)
{
	memset(o, 0, sizeof(*o));
	o->id = id;
	o->key = key;
	o->fd_flags = O_CLOEXEC;
	return xioctl(dev, LLMP_IOC_SEG_OPEN, o);
}

static int get_stats(int dev, struct llmp_stats *s)
{
	memset(s, 0xa5, sizeof(*s));
	return xioctl(dev, LLMP_IOC_STATS, s);
}

/* A /proc/meminfo field in KiB, or -1. */
static long meminfo_kb(const char *field)
{
	char line[256];
	size_t n = strlen(field);
	long v = -1;
	FILE *f = fopen("/proc/meminfo", "r");

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f)) {
		if (!strncmp(line, field, n) && line[n] == ':') {
			v = strtol(line + n + 1, NULL, 10);
			break;
		}
	}
	fclose(f);
	return v;
}

static void fill(unsigned char *p, size_t len, uint64_t seed)
{
	for (size_t i = 0; i < len; i++)
		p[i] = (unsigned char)llmp_test_rand(&seed);
}

/* Read a module parameter into buf; 0 or -errno. */
static int param_get(const char *name, char *buf, size_t len)
{
	char path[128];
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), PARAM_DIR "%s", name);
	fd = open(path, O_RDONLY);
	if (fd < 0)
		return -errno;
	n = read(fd, buf, len - 1);
	close(fd);
	if (n < 0)
		return -errno;
	buf[n] = 0;
	return 0;
}

static int param_set(const char *name, const char *val)
{
	char path[128];
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), PARAM_DIR "%s", name);
	fd = open(path, O_WRONLY);
	if (fd < 0)
		return -errno;
	n = write(fd, val, strlen(val));
	close(fd);
	return n < 0 ? -errno : 0;
}

/* kselftest_harness.h of 6.1 runs the body even after SKIP in the setup. */
#define NEED_DEV() do { \
		if (self->dev < 0) \
			SKIP(return, "no %s: llmp.ko is not loaded", LLMP_DEVICE_PATH); \
	} while (0)

/*
 * Save the three limit parameters (restored by the teardown); 0, or a
 * SKIP reason when they cannot be changed here.
 */
static const char *params_save(struct __test_metadata *_metadata, char *user, char *total,
			       char *reserved, int *changed)
{
	if (param_get("max_user_bytes", user, 32) || param_get("max_total_bytes", total, 32))
		return "no " PARAM_DIR;
	/* Older modules have no reserve: the tests that need one fail there. */
	if (param_get("reserved_bytes", reserved, 32))
		reserved[0] = 0;
	if (access(PARAM_DIR "max_user_bytes", W_OK) || geteuid() != 0)
		return "module parameters not writable (needs root)";
	*changed = 1;
	return NULL;
}

#define SAVE_PARAMS() do { \
		const char *why_ = params_save(_metadata, self->old_user, self->old_total, \
					       self->old_reserved, &self->params_changed); \
		if (why_) \
			SKIP(return, "%s", why_); \
	} while (0)

/* One "name value" line of /sys/kernel/debug/llmp/stats; 0 or -errno. */
static int debug_stat(const char *name, uint64_t *v)
{
	FILE *f = fopen("/sys/kernel/debug/llmp/stats", "r");
	char line[128];
	size_t n = strlen(name);
	int ret = -ENOENT;

	if (!f)
		return -errno;
	while (fgets(line, sizeof(line), f)) {
		if (!strncmp(line, name, n) && line[n] == ' ') {
			*v = strtoull(line + n + 1, NULL, 10);
			ret = 0;
			break;
		}
	}
	fclose(f);
	return ret;
}

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

FIXTURE(seg) {
	int dev;
	long page;
	struct llmp_stats base;
	char old_user[32], old_total[32], old_reserved[32];
	int params_changed;
};

FIXTURE_SETUP(seg)
{
	self->dev = dev_open();
	self->params_changed = 0;
	if (self->dev < 0)
		SKIP(return, "no %s (%s): llmp.ko is not loaded", LLMP_DEVICE_PATH,
		     strerror(errno));
	self->page = sysconf(_SC_PAGESIZE);
	ASSERT_EQ(0, get_stats(self->dev, &self->base));
}

FIXTURE_TEARDOWN(seg)
{
	if (self->params_changed) {
		param_set("max_user_bytes", self->old_user);
		param_set("max_total_bytes", self->old_total);
		param_set("reserved_bytes", self->old_reserved);
	}
	if (self->dev >= 0)
		close(self->dev);
}

TEST_F(seg, version_and_features)
{
	NEED_DEV();
	struct llmp_version v;
	struct llmp_seg_create c;

	memset(&v, 0xff, sizeof(v));
	ASSERT_EQ(0, xioctl(self->dev, LLMP_IOC_VERSION, &v));
	ASSERT_EQ(LLMP_ABI_VERSION, v.abi_version);
	ASSERT_EQ(0, v.reserved);
	ASSERT_EQ(LLMP_FEAT_SEGMENTS | LLMP_FEAT_BELLS | LLMP_FEAT_STATS |
		  LLMP_FEAT_CHARGE_MAPPED | LLMP_FEAT_BIND_OWNER, v.features);
	/* The same query answers on a segment fd. */
	ASSERT_EQ(0, seg_create(self->dev, 1, 0, &c));
	memset(&v, 0xff, sizeof(v));
	ASSERT_EQ(0, xioctl(c.fd, LLMP_IOC_VERSION, &v));
	ASSERT_EQ(LLMP_ABI_VERSION, v.abi_version);
	ASSERT_EQ(0, v.reserved);
	close(c.fd);
}

TEST_F(seg, create_rounds_zeroes_and_describes)
{
	NEED_DEV();
	struct llmp_seg_create c, c2;
	struct llmp_seg_info info;
	struct llmp_stats s;
	unsigned char *p;

	ASSERT_EQ(0, seg_create(self->dev, 3 * self->page + 1, 0, &c));
	ASSERT_EQ(4 * self->page, c.size);
	ASSERT_NE(0, c.id);
	ASSERT_GE(c.fd, 0);
	ASSERT_EQ(0, c.reserved[0]);
	ASSERT_EQ(0, c.reserved[1]);
	ASSERT_EQ(FD_CLOEXEC, fcntl(c.fd, F_GETFD) & FD_CLOEXEC);
	ASSERT_EQ(0, seg_create(self->dev, self->page, 0, &c2));
	ASSERT_NE(c.id, c2.id);
	ASSERT_NE(c.key, c2.key); /* 64 random bits each: equal only by a 2^-64 accident */

	memset(&info, 0xff, sizeof(info));
	ASSERT_EQ(0, xioctl(c.fd, LLMP_IOC_SEG_INFO, &info));
	ASSERT_EQ(c.size, info.size);
	ASSERT_EQ(c.key, info.key);
	ASSERT_EQ(c.id, info.id);
	ASSERT_EQ(0, info.flags);
	ASSERT_EQ(geteuid(), info.owner_uid);
	ASSERT_EQ(getpid(), info.creator_pid);
	ASSERT_EQ(0, info.bound);
	ASSERT_EQ(0, info.cookie);
	ASSERT_EQ(0, info.reserved[0]);
	ASSERT_EQ(0, info.reserved[1]);

	ASSERT_EQ(0, get_stats(self->dev, &s));
	ASSERT_EQ(self->base.segments_live + 2, s.segments_live);
	ASSERT_EQ(self->base.bytes_live + 5 * self->page, s.bytes_live);
	ASSERT_EQ(self->base.segments_created + 2, s.segments_created);
	for (int i = 0; i < 8; i++)
		ASSERT_EQ(0, s.reserved[i]);

	p = mmap(NULL, c.size, PROT_READ | PROT_WRITE, MAP_SHARED, c.fd, 0);
	ASSERT_NE(MAP_FAILED, p);
	for (size_t i = 0; i < c.size; i++)
		ASSERT_EQ(0, p[i]);
	munmap(p, c.size);
	close(c.fd);
	close(c2.fd);
	ASSERT_EQ(0, get_stats(self->dev, &s));
	ASSERT_EQ(self->base.segments_live, s.segments_live);
	ASSERT_EQ(self->base.bytes_live, s.bytes_live);
	ASSERT_EQ(self->base.segments_freed + 2, s.segments_freed);
}

/*
 * The parent writes, a child that inherited nothing but the (id, key)
 * opens the segment through its own /dev/llmp fd, checks the bytes and
 * answers in the second half, which the parent then checks.
 */
TEST_F(seg, write_read_across_processes)
{
	NEED_DEV();
	size_t size = 64 * 1024, half = size / 2;
	static unsigned char want[32 * 1024];
	struct llmp_seg_create c;
	unsigned char *p;
	uint64_t sum;
	pid_t pid;
	int st;

	ASSERT_EQ(0, seg_create(self->dev, size, 0, &c));
	p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, c.fd, 0);
	ASSERT_NE(MAP_FAILED, p);
	fill(p, half, 42);
	sum = llmp_test_fnv(p, half);

	pid = fork();
	ASSERT_GE(pid, 0);
	if (pid == 0) {
		struct llmp_seg_open o;
		unsigned char *q;
		int dev;

		/* Nothing inherited: drop the parent's fds and mapping. */
		munmap(p, size);
		close(c.fd);
		close(self->dev);
		dev = dev_open();
		if (dev < 0 || seg_open(dev, c.id, c.key, &o))
			_exit(2);
		if (o.size != size || o.flags != 0 || o.reserved[0] || o.reserved[1])
			_exit(3);
		q = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, o.fd, 0);
		if (q == MAP_FAILED)
			_exit(4);
		if (llmp_test_fnv(q, half) != sum)
			_exit(5);
		fill(q + half, half, 43);
		_exit(0);
	}
	ASSERT_EQ(pid, waitpid(pid, &st, 0));
	ASSERT_TRUE(WIFEXITED(st));
	ASSERT_EQ(0, WEXITSTATUS(st));
	fill(want, half, 43);
	ASSERT_EQ(0, memcmp(p + half, want, half));
	munmap(p, size);
	close(c.fd);
}

/* fork() children share the fd and the mapping; the kernel counts them. */
TEST_F(seg, fork_inherits_fd_and_mapping)
{
	NEED_DEV();
	struct llmp_seg_create c;
	volatile uint32_t *p;
	struct llmp_stats s;
	pid_t pid;
	int st;

	ASSERT_EQ(0, seg_create(self->dev, self->page, 0, &c));
	p = mmap(NULL, self->page, PROT_READ | PROT_WRITE, MAP_SHARED, c.fd, 0);
	ASSERT_NE(MAP_FAILED, (void *)p);
	pid = fork();
	ASSERT_GE(pid, 0);
	if (pid == 0) {
		struct llmp_seg_info info;

		if (ioctl(c.fd, LLMP_IOC_SEG_INFO, &info) || info.id != c.id)
			_exit(2);
		p[0] = 0x11223344;
		_exit(0);
	}
	ASSERT_EQ(pid, waitpid(pid, &st, 0));
	ASSERT_EQ(0, WEXITSTATUS(st));
	ASSERT_EQ(0x11223344, p[0]);
	/* The child's exit did not free the parent's segment. */
	ASSERT_EQ(0, get_stats(self->dev, &s));
	ASSERT_EQ(self->base.segments_live + 1, s.segments_live);
	munmap((void *)p, self->page);
	close(c.fd);
}

TEST_F(seg, wrong_key_or_id_is_enoent)
{
	NEED_DEV();
	struct llmp_seg_create c;
	struct llmp_seg_open o;

	ASSERT_EQ(0, seg_create(self->dev, self->page, LLMP_SEG_ALLOW_OTHER_UIDS, &c));
	ASSERT_EQ(-ENOENT, seg_open(self->dev, c.id, c.key ^ 1, &o));
	ASSERT_EQ(-ENOENT, seg_open(self->dev, c.id, c.key ^ (1ULL << 63), &o));
	ASSERT_EQ(-ENOENT, seg_open(self->dev, c.id, 0, &o));
	ASSERT_EQ(-ENOENT, seg_open(self->dev, 0, c.key, &o));
	ASSERT_EQ(-ENOENT, seg_open(self->dev, c.id + 100000, c.key, &o));
	ASSERT_EQ(-ENOENT, seg_open(self->dev, 0xffffffffu, c.key, &o));
	ASSERT_EQ(0, seg_open(self->dev, c.id, c.key, &o));
	ASSERT_EQ(c.size, o.size);
	ASSERT_EQ(LLMP_SEG_ALLOW_OTHER_UIDS, o.flags);
	close(o.fd);
	/* Once the last fd is gone the id is gone too. */
	close(c.fd);
	ASSERT_EQ(-ENOENT, seg_open(self->dev, c.id, c.key, &o));
}

/* Child: become nobody, try to open (id, key); exit 0 on the expected result. */
static int nobody_opens(uint32_t id, uint64_t key, int want, uint64_t sum, size_t size)
{
	struct llmp_seg_open o;
	unsigned char *q;
	int dev, ret;

	if (setgroups(0, NULL) || setgid(65534) || setuid(65534))
		return 10;
	if (geteuid() != 65534)
		return 11;
	dev = dev_open();
	if (dev < 0)
		return 12;
	ret = seg_open(dev, id, key, &o);
	if (ret != want)
		return 13;
	if (ret)
		return 0;
	q = mmap(NULL, size, PROT_READ, MAP_SHARED, o.fd, 0);
	if (q == MAP_FAILED)
		return 14;
	return llmp_test_fnv(q, size) == sum ? 0 : 15;
}

TEST_F(seg, other_uid_needs_the_flag)
{
	NEED_DEV();
	struct llmp_seg_create priv, shared;
	unsigned char *p;
	uint64_t sum;
	pid_t pid;
	int st;

	if (geteuid() != 0)
		SKIP(return, "needs root to switch to uid 65534");
	ASSERT_EQ(0, seg_create(self->dev, self->page, 0, &priv));
	ASSERT_EQ(0, seg_create(self->dev, self->page, LLMP_SEG_ALLOW_OTHER_UIDS, &shared));
	p = mmap(NULL, self->page, PROT_READ | PROT_WRITE, MAP_SHARED, shared.fd, 0);
	ASSERT_NE(MAP_FAILED, p);
	fill(p, self->page, 7);
	sum = llmp_test_fnv(p, self->page);

	pid = fork();
	ASSERT_GE(pid, 0);
	if (pid == 0)
		_exit(nobody_opens(priv.id, priv.key, -EACCES, 0, 0));
	ASSERT_EQ(pid, waitpid(pid, &st, 0));
	ASSERT_EQ(0, WEXITSTATUS(st));

	pid = fork();
	ASSERT_GE(pid, 0);
	if (pid == 0)
		_exit(nobody_opens(shared.id, shared.key, 0, sum, self->page));
	ASSERT_EQ(pid, waitpid(pid, &st, 0));
	ASSERT_EQ(0, WEXITSTATUS(st));

	/* A wrong key is -ENOENT for another uid too (no probing by error code). */
	pid = fork();
	ASSERT_GE(pid, 0);
	if (pid == 0)
		_exit(nobody_opens(priv.id, priv.key + 1, -ENOENT, 0, 0));
	ASSERT_EQ(pid, waitpid(pid, &st, 0));
	ASSERT_EQ(0, WEXITSTATUS(st));

	munmap(p, self->page);
	close(priv.fd);
	close(shared.fd);
}

/* nobody's segment: root opens it (CAP_IPC_OWNER, as with SysV); its owner is 65534. */
TEST_F(seg, owner_is_recorded_and_cap_ipc_owner_overrides)
{
	NEED_DEV();
	struct llmp_seg_info info;
	struct llmp_seg_open o;
	uint64_t msg[2];
	int pfd[2], gate[2];
	pid_t pid;
	int st;

	if (geteuid() != 0)
		SKIP(return, "needs root to switch to uid 65534");
	ASSERT_EQ(0, pipe(pfd));
	ASSERT_EQ(0, pipe(gate));
	pid = fork();
	ASSERT_GE(pid, 0);
	if (pid == 0) {
		struct llmp_seg_create c;
		char x;

		if (setgroups(0, NULL) || setgid(65534) || setuid(65534))
			_exit(10);
		if (seg_create(self->dev, self->page, 0, &c))
			_exit(11);
		msg[0] = c.id;
		msg[1] = c.key;
		if (write(pfd[1], msg, sizeof(msg)) != sizeof(msg))
			_exit(12);
		/* Hold the segment until the parent has looked at it. */
		if (read(gate[0], &x, 1) != 1)
			_exit(13);
		_exit(0);
	}
	close(pfd[1]);
	close(gate[0]);
	ASSERT_EQ(sizeof(msg), read(pfd[0], msg, sizeof(msg)));
	ASSERT_EQ(0, seg_open(self->dev, (uint32_t)msg[0], msg[1], &o));
	ASSERT_EQ(0, xioctl(o.fd, LLMP_IOC_SEG_INFO, &info));
	ASSERT_EQ(65534, info.owner_uid);
	ASSERT_EQ(pid, info.creator_pid);
	ASSERT_EQ(1, write(gate[1], "x", 1));
	ASSERT_EQ(pid, waitpid(pid, &st, 0));
	ASSERT_EQ(0, WEXITSTATUS(st));
	/* Our fd keeps it alive after its creator exited. */
	ASSERT_EQ(0, xioctl(o.fd, LLMP_IOC_SEG_INFO, &info));
	ASSERT_EQ((uint32_t)msg[0], info.id);
	close(o.fd);
	close(pfd[0]);
	close(gate[1]);
}

/* Ids are scoped to the IPC namespace, as SysV ids are. */
TEST_F(seg, ipc_namespace_scopes_ids)
{
	NEED_DEV();
	struct llmp_seg_create c;
	pid_t pid;
	int st;

	if (geteuid() != 0)
		SKIP(return, "needs root for unshare(CLONE_NEWIPC)");
	ASSERT_EQ(0, seg_create(self->dev, self->page, LLMP_SEG_ALLOW_OTHER_UIDS, &c));
	pid = fork();
	ASSERT_GE(pid, 0);
	if (pid == 0) {
		struct llmp_seg_open o;

		if (seg_open(self->dev, c.id, c.key, &o))
			_exit(2); /* same namespace: visible */
		close(o.fd);
		if (unshare(CLONE_NEWIPC))
			_exit(3);
		_exit(seg_open(self->dev, c.id, c.key, &o) == -ENOENT ? 0 : 4);
	}
	ASSERT_EQ(pid, waitpid(pid, &st, 0));
	ASSERT_EQ(0, WEXITSTATUS(st));
	close(c.fd);
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
	uint64_t total, user, chunk;
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
	uint64_t total, user, reserved, chunk;
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
TEST_F(seg, reserved_fields_and_bad_sizes_are_einval)
{
	NEED_DEV();
	struct llmp_seg_create c, ok;
	struct llmp_seg_open o;
	struct llmp_bell_create bc;
	struct llmp_seg_bind bind;
	struct llmp_stats s;
	void *p;

#define CREATE_BAD(field, val) do { \
		memset(&c, 0, sizeof(c)); c.size = 4096; c.field = val; \
		ASSERT_EQ(-EINVAL, xioctl(self->dev, LLMP_IOC_SEG_CREATE, &c)); \
	} while (0)
	CREATE_BAD(reserved[0], 1);
	CREATE_BAD(reserved[1], 1ULL << 63);
	CREATE_BAD(key, 5);
	CREATE_BAD(id, 5);
	CREATE_BAD(fd, 5);
	CREATE_BAD(fd, -1);
	CREATE_BAD(flags, 1u << 1);
	CREATE_BAD(flags, 1u << 31);
	CREATE_BAD(fd_flags, O_NONBLOCK);
	CREATE_BAD(fd_flags, O_RDONLY | 1);
	CREATE_BAD(size, 0);
	CREATE_BAD(size, LLMP_SEG_MAX_SIZE + 1);
	CREATE_BAD(size, ~0ULL);
	CREATE_BAD(size, ~0ULL - 4095); /* would wrap when page-rounded */

	ASSERT_EQ(0, seg_create(self->dev, 8192, 0, &ok));
#define OPEN_BAD(field, val) do { \
		memset(&o, 0, sizeof(o)); o.id = ok.id; o.key = ok.key; o.field = val; \
		ASSERT_EQ(-EINVAL, xioctl(self->dev, LLMP_IOC_SEG_OPEN, &o)); \
	} while (0)
	OPEN_BAD(reserved[0], 1);
	OPEN_BAD(reserved[1], 2);
	OPEN_BAD(size, 4096);
	OPEN_BAD(fd, 3);
	OPEN_BAD(flags, 1);
	OPEN_BAD(fd_flags, O_NONBLOCK);
	OPEN_BAD(fd_flags, 0x40000000);

#define BELL_BAD(field, val) do { \
		memset(&bc, 0, sizeof(bc)); bc.field = val; \
		ASSERT_EQ(-EINVAL, xioctl(self->dev, LLMP_IOC_BELL_CREATE, &bc)); \
	} while (0)
	BELL_BAD(reserved[0], 1);
	BELL_BAD(reserved[1], 1);
	BELL_BAD(fd, 7);
	BELL_BAD(fd_flags, O_APPEND);

#define BIND_BAD(field, val) do { \
		memset(&bind, 0, sizeof(bind)); bind.bell_fd = -1; bind.field = val; \
		ASSERT_EQ(-EINVAL, xioctl(ok.fd, LLMP_IOC_SEG_BIND, &bind)); \
	} while (0)
	BIND_BAD(reserved[0], 1);
	BIND_BAD(reserved[1], 1);
	BIND_BAD(cookie, 9); /* unbinding takes cookie 0 */
	/* Binding to something that is not a bell. */
	memset(&bind, 0, sizeof(bind));
	bind.bell_fd = ok.fd;
	ASSERT_EQ(-EINVAL, xioctl(ok.fd, LLMP_IOC_SEG_BIND, &bind));
	bind.bell_fd = self->dev;
	ASSERT_EQ(-EINVAL, xioctl(ok.fd, LLMP_IOC_SEG_BIND, &bind));
	bind.bell_fd = -2;
	ASSERT_EQ(-EBADF, xioctl(ok.fd, LLMP_IOC_SEG_BIND, &bind));
	bind.bell_fd = 100000;
	ASSERT_EQ(-EBADF, xioctl(ok.fd, LLMP_IOC_SEG_BIND, &bind));
	/* RING takes no argument. */
	ASSERT_EQ(-EINVAL, ioctl(ok.fd, LLMP_IOC_SEG_RING, 1) < 0 ? -errno : 0);

	/* mmap: private, too long, past the end. */
	p = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE, ok.fd, 0);
	ASSERT_EQ(MAP_FAILED, p);
	ASSERT_EQ(EINVAL, errno);
	p = mmap(NULL, 3 * 4096, PROT_READ, MAP_SHARED, ok.fd, 0);
	ASSERT_EQ(MAP_FAILED, p);
	ASSERT_EQ(EINVAL, errno);
	p = mmap(NULL, 4096, PROT_READ, MAP_SHARED, ok.fd, 2 * 4096);
	ASSERT_EQ(MAP_FAILED, p);
	ASSERT_EQ(EINVAL, errno);
	p = mmap64(NULL, 4096, PROT_READ, MAP_SHARED, ok.fd, (off64_t)1 << 40);
	ASSERT_EQ(MAP_FAILED, p);
	/* The last page alone is fine. */
	p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, ok.fd, 4096);
	ASSERT_NE(MAP_FAILED, p);
	munmap(p, 4096);
	/* A segment cannot grow or shrink under a mapping. */
	ASSERT_NE(0, ftruncate(ok.fd, 4096));
	close(ok.fd);

	/* Bad pointers: -EFAULT, and nothing created behind our back. */
	ASSERT_EQ(-EFAULT, xioctl(self->dev, LLMP_IOC_SEG_CREATE, NULL));
	ASSERT_EQ(-EFAULT, xioctl(self->dev, LLMP_IOC_SEG_OPEN, (void *)8));
	ASSERT_EQ(-EFAULT, xioctl(self->dev, LLMP_IOC_STATS, NULL));
	ASSERT_EQ(-EFAULT, xioctl(self->dev, LLMP_IOC_VERSION, NULL));
	/* A read-only reply page: the create succeeds inside, the reply faults. */
	p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ASSERT_NE(MAP_FAILED, p);
	((struct llmp_seg_create *)p)->size = 4096;
	ASSERT_EQ(0, mprotect(p, 4096, PROT_READ));
	ASSERT_EQ(-EFAULT, xioctl(self->dev, LLMP_IOC_SEG_CREATE, p));
	ASSERT_EQ(0, mprotect(p, 4096, PROT_READ | PROT_WRITE));
	memset(p, 0, 4096);
	ASSERT_EQ(0, mprotect(p, 4096, PROT_READ));
	ASSERT_EQ(-EFAULT, xioctl(self->dev, LLMP_IOC_BELL_CREATE, p));
	munmap(p, 4096);

	ASSERT_EQ(0, get_stats(self->dev, &s));
	ASSERT_EQ(self->base.segments_live, s.segments_live);
	ASSERT_EQ(self->base.bytes_live, s.bytes_live);
	ASSERT_EQ(self->base.bells_live, s.bells_live);
}

TEST_F(seg, unknown_ioctls_are_enotty)
{
	NEED_DEV();
	struct llmp_seg_create c;
	struct llmp_bell_create bc;
	char buf[256];
	unsigned long bad[] = {
		_IO(LLMP_IOC_MAGIC, 0x7f),
		_IOR(LLMP_IOC_MAGIC, 0x05, struct llmp_stats),
		_IOWR(LLMP_IOC_MAGIC, 0x01, struct llmp_stats), /* known nr, other size */
		_IOR(LLMP_IOC_MAGIC, 0x00, uint64_t),
		_IOW(LLMP_IOC_MAGIC, 0x11, uint32_t),
		_IO('x', 0x01),
		_IOWR(0xB9, 0x01, struct llmp_seg_create),
	};

	memset(buf, 0, sizeof(buf));
	ASSERT_EQ(0, seg_create(self->dev, 4096, 0, &c));
	memset(&bc, 0, sizeof(bc));
	ASSERT_EQ(0, xioctl(self->dev, LLMP_IOC_BELL_CREATE, &bc));
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		ASSERT_EQ(-ENOTTY, xioctl(self->dev, bad[i], buf));
		ASSERT_EQ(-ENOTTY, xioctl(c.fd, bad[i], buf));
		ASSERT_EQ(-ENOTTY, xioctl(bc.fd, bad[i], buf));
	}
	/* Device commands on a segment or bell fd, and the reverse. */
	ASSERT_EQ(-ENOTTY, xioctl(c.fd, LLMP_IOC_SEG_CREATE, buf));
	ASSERT_EQ(-ENOTTY, xioctl(bc.fd, LLMP_IOC_SEG_OPEN, buf));
	ASSERT_EQ(-ENOTTY, xioctl(bc.fd, LLMP_IOC_SEG_RING, NULL));
	ASSERT_EQ(-ENOTTY, xioctl(self->dev, LLMP_IOC_SEG_INFO, buf));
	ASSERT_EQ(-ENOTTY, xioctl(self->dev, LLMP_IOC_SEG_RING, NULL));
	close(c.fd);
	close(bc.fd);
}

/*
 * The memory outlives the last fd while a mapping exists, and is freed
 * when the mapping goes.  Measured with the kernel's own Shmem counter.
 */
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
TEST_F(seg, debugfs_lists_segments)
{
	NEED_DEV();
	struct llmp_seg_create c;
	char line[512], want[64];
	int found = 0;
	void *p;
	FILE *f;

	ASSERT_EQ(0, seg_create(self->dev, 3 * 4096, 0, &c));
	p = mmap(NULL, c.size, PROT_READ, MAP_SHARED, c.fd, 0);
	ASSERT_NE(MAP_FAILED, p);
	f = fopen("/sys/kernel/debug/llmp/segments", "r");
	if (!f) {
		munmap(p, c.size);
		close(c.fd);
		SKIP(return, "no /sys/kernel/debug/llmp/segments (debugfs not mounted?)");
	}
	snprintf(want, sizeof(want), "%u %llu %u %d ", c.id, (unsigned long long)c.size,
		 geteuid(), getpid());
	while (fgets(line, sizeof(line), f)) {
		unsigned int fds, maps;

		if (strncmp(line, want, strlen(want)))
			continue;
		/* id size owner_uid creator_pid ipc_ns fds maps flags bound cookie */
		ASSERT_EQ(2, sscanf(line, "%*u %*u %*u %*d %*u %u %u", &fds, &maps));
		ASSERT_EQ(1, fds);
		ASSERT_EQ(1, maps);
		found++;
	}
	fclose(f);
	ASSERT_EQ(1, found);
	munmap(p, c.size);
	close(c.fd);
}

/*
 * Module unload (VM harness only: it sets LLMP_KO and reloads a module a
 * test left unloaded): refused while an fd is open; with only a mapping
 * left it succeeds, and the memory stays valid (it is the kernel's shmem).
 */
TEST(unload_refused_with_fd_safe_with_mapping)
{
	const char *ko = getenv("LLMP_KO");
	unsigned char want[4096];
	struct llmp_seg_create c;
	unsigned char *p;
	int dev, kfd, i;

	if (!ko || geteuid() != 0)
		SKIP(return, "needs root and LLMP_KO (the VM harness)");
	dev = dev_open();
	if (dev < 0)
		SKIP(return, "no %s: llmp.ko is not loaded", LLMP_DEVICE_PATH);
	ASSERT_EQ(0, seg_create(dev, 64 * 1024, 0, &c));
	close(dev);
	p = mmap(NULL, c.size, PROT_READ | PROT_WRITE, MAP_SHARED, c.fd, 0);
	ASSERT_NE(MAP_FAILED, p);
	fill(p, c.size, 99);
	/* The segment fd holds the module. */
	ASSERT_NE(0, syscall(SYS_delete_module, "llmp", O_NONBLOCK));
	ASSERT_TRUE(errno == EWOULDBLOCK || errno == EBUSY);
	ASSERT_EQ(0, access("/sys/module/llmp", F_OK));
	/* Only the mapping left: unload works, the memory stays. */
	close(c.fd);
	ASSERT_EQ(0, syscall(SYS_delete_module, "llmp", O_NONBLOCK));
	ASSERT_NE(0, access("/sys/module/llmp", F_OK));
	fill(want, sizeof(want), 99);
	ASSERT_EQ(0, memcmp(p, want, sizeof(want)));
	memset(p, 0x33, c.size);
	ASSERT_EQ(0x33, p[c.size - 1]);
	munmap(p, c.size);
	/* Load it again for the tests that follow. */
	kfd = open(ko, O_RDONLY | O_CLOEXEC);
	ASSERT_GE(kfd, 0);
	ASSERT_EQ(0, syscall(SYS_finit_module, kfd, "", 0));
	close(kfd);
	for (i = 0; i < 50 && access(LLMP_DEVICE_PATH, F_OK); i++)
		usleep(100 * 1000);
	ASSERT_EQ(0, access(LLMP_DEVICE_PATH, F_OK));
}

TEST_HARNESS_MAIN
