// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * /dev/llmp segments (kmod/): create, mmap, open by id+key from other
 * processes, permissions, IPC namespaces, the ABI's reserved fields and
 * unknown ioctls, debugfs, and module unload while segments live.  Limits
 * and freed memory are kmod_quota_test.c's.  SKIPs without /dev/llmp (the
 * VM harness loads llmp.ko).
 */
#include "kmod_seg_fixture.h"

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
