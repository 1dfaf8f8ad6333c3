// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * /dev/llmp doorbells: bind, ring, read, coalescing, poll/epoll/io_uring
 * wake-ups, blocking reads, many ringing threads with no lost cookie, the
 * sleeping-word protocol of Documentation/kmod.rst, and the libllmp
 * wrapper (llmp_bell_*).  SKIPs without /dev/llmp.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/futex.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#ifdef LLMP_HAVE_LIBURING
#include <liburing.h>
#endif

#include "kselftest_harness.h"
#include "llmp_test.h"
#include "llmp/bell.h"
#include "kmod_abi.h"
#include "uapi/linux/llmp.h"

/*
 * tests/vm/run.sh builds this file a second time with -m32 and without
 * libllmp (LLMP_TEST_RAW_IOCTLS_ONLY) to test the module's compat ioctls:
 * the cases of the library's wrapper SKIP there.
 */
#ifdef LLMP_TEST_RAW_IOCTLS_ONLY
#define RAW_ONLY_SKIP() SKIP(return, "the -m32 raw-ioctl build has no libllmp")
#endif

/* A "# ..." line on stdout that survives the test child's _exit(). */
#define FIGURE(...) do { ksft_print_msg(__VA_ARGS__); fflush(stdout); } while (0)

static int xioctl(int fd, unsigned long cmd, void *arg)
{
	return ioctl(fd, cmd, arg) < 0 ? -errno : 0;
}

static int seg_create(int dev, uint64_t size, struct llmp_seg_create *c)
{
	memset(c, 0, sizeof(*c));
	c->size = size;
	c->fd_flags = O_CLOEXEC;
	return xioctl(dev, LLMP_IOC_SEG_CREATE, c);
}

static int bell_create(int dev, uint32_t fd_flags)
{
	struct llmp_bell_create b;

	memset(&b, 0, sizeof(b));
	b.fd_flags = fd_flags;
	return xioctl(dev, LLMP_IOC_BELL_CREATE, &b) ? -errno : b.fd;
}

static int bind_seg(int seg, int bell, uint32_t cookie)
{
	struct llmp_seg_bind b;

	memset(&b, 0, sizeof(b));
	b.bell_fd = bell;
	b.cookie = cookie;
	return xioctl(seg, LLMP_IOC_SEG_BIND, &b);
}

static int ring(int seg)
{
	return ioctl(seg, LLMP_IOC_SEG_RING, 0) < 0 ? -errno : 0;
}

/* read() the bell: number of cookies, or -errno. */
static int bell_read(int bell, uint32_t *c, size_t max)
{
	ssize_t n = read(bell, c, max * sizeof(*c));

	if (n < 0)
		return -errno;
	return (int)(n / sizeof(*c));
}

static int readable(int fd, int timeout_ms)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };

	return poll(&p, 1, timeout_ms) == 1 && (p.revents & POLLIN);
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

static void get_stats(int dev, struct llmp_stats *s)
{
	memset(s, 0, sizeof(*s));
	ioctl(dev, LLMP_IOC_STATS, s);
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

#define NEED_DEV() do { \
		if (self->dev < 0) \
			SKIP(return, "no %s: llmp.ko is not loaded", LLMP_DEVICE_PATH); \
	} while (0)

#define NSEG 8

FIXTURE(bell) {
	int dev;
	int bell;	/* O_NONBLOCK */
	struct llmp_seg_create seg[NSEG];
};

FIXTURE_SETUP(bell)
{
	self->dev = open(LLMP_DEVICE_PATH, O_RDWR | O_CLOEXEC);
	self->bell = -1;
	for (int i = 0; i < NSEG; i++)
		self->seg[i].fd = -1;
	if (self->dev < 0)
		return;
	self->bell = bell_create(self->dev, O_CLOEXEC | O_NONBLOCK);
	ASSERT_GE(self->bell, 0);
	for (int i = 0; i < NSEG; i++)
		ASSERT_EQ(0, seg_create(self->dev, 4096, &self->seg[i]));
}

FIXTURE_TEARDOWN(bell)
{
	for (int i = 0; i < NSEG; i++)
		if (self->seg[i].fd >= 0)
			close(self->seg[i].fd);
	if (self->bell >= 0)
		close(self->bell);
	if (self->dev >= 0)
		close(self->dev);
}

TEST_F(bell, ring_read_and_coalesce)
{
	NEED_DEV();
	struct llmp_seg_info info;
	struct llmp_stats s0, s1;
	uint32_t c[16];

	ASSERT_EQ(-ENOTCONN, ring(self->seg[0].fd));
	ASSERT_EQ(-EAGAIN, bell_read(self->bell, c, 16));
	ASSERT_FALSE(readable(self->bell, 0));
	for (int i = 0; i < NSEG; i++)
		ASSERT_EQ(0, bind_seg(self->seg[i].fd, self->bell, 1000 + i));
	ASSERT_EQ(0, xioctl(self->seg[3].fd, LLMP_IOC_SEG_INFO, &info));
	ASSERT_EQ(1, info.bound);
	ASSERT_EQ(1003, info.cookie);

	get_stats(self->dev, &s0);
	ASSERT_EQ(0, ring(self->seg[2].fd));
	ASSERT_TRUE(readable(self->bell, 0));
	ASSERT_EQ(0, ring(self->seg[2].fd)); /* coalesced */
	ASSERT_EQ(0, ring(self->seg[2].fd)); /* coalesced */
	ASSERT_EQ(0, ring(self->seg[5].fd));
	get_stats(self->dev, &s1);
	ASSERT_EQ(s0.rings + 2, s1.rings);
	ASSERT_EQ(s0.rings_coalesced + 2, s1.rings_coalesced);

	ASSERT_EQ(2, bell_read(self->bell, c, 16));
	ASSERT_EQ(1002, c[0]); /* in ringing order */
	ASSERT_EQ(1005, c[1]);
	ASSERT_EQ(-EAGAIN, bell_read(self->bell, c, 16));
	ASSERT_FALSE(readable(self->bell, 0));
	/* After the read the segment can ring again. */
	ASSERT_EQ(0, ring(self->seg[2].fd));
	ASSERT_EQ(1, bell_read(self->bell, c, 16));
	ASSERT_EQ(1002, c[0]);
}

TEST_F(bell, every_cookie_once_and_partial_reads)
{
	NEED_DEV();
	void *volatile bad = NULL; /* hidden from the compiler's null checks */
	uint32_t c[NSEG], one;
	int n, got = 0;

	for (int i = 0; i < NSEG; i++)
		ASSERT_EQ(0, bind_seg(self->seg[i].fd, self->bell, 7 * i + 1));
	for (int r = 0; r < 3; r++)
		for (int i = NSEG - 1; i >= 0; i--)
			ASSERT_EQ(0, ring(self->seg[i].fd));
	/* A buffer smaller than a cookie is -EINVAL; one cookie per 4 bytes. */
	ASSERT_EQ(-EINVAL, (int)(read(self->bell, c, 3) < 0 ? -errno : 0));
	ASSERT_EQ(1, bell_read(self->bell, &one, 1));
	ASSERT_EQ(7 * (NSEG - 1) + 1, one);
	c[got++] = one;
	/* 6 bytes: one cookie, the odd bytes stay unused. */
	ASSERT_EQ(4, read(self->bell, &c[got], 6));
	got++;
	while (got < NSEG && (n = bell_read(self->bell, &c[got], NSEG - got)) > 0)
		got += n;
	ASSERT_EQ(NSEG, got);
	ASSERT_EQ(-EAGAIN, bell_read(self->bell, &one, 1));
	qsort(c, NSEG, sizeof(c[0]), cmp_u32);
	for (int i = 0; i < NSEG; i++)
		ASSERT_EQ(7 * i + 1, c[i]);
	/* A faulting buffer: -EFAULT, and the cookie stays for the next read. */
	ASSERT_EQ(0, ring(self->seg[0].fd));
	ASSERT_EQ(-EFAULT, (int)(read(self->bell, bad, 16) < 0 ? -errno : 0));
	ASSERT_EQ(1, bell_read(self->bell, &one, 1));
	ASSERT_EQ(1, one);
}

/*
 * Issue 8, finding 13: a read whose copy_to_user() faults must not lose
 * the wake-ups it took.  read(bell, bad_ptr, 8) is -EFAULT; the next read
 * gets the same cookies in the same order, also when only the second
 * cookie's bytes fault (a buffer that ends at a PROT_NONE page), and a
 * poller still sees the bell readable.
 */
TEST_F(bell, faulting_read_requeues_cookies)
{
	NEED_DEV();
	long pg = sysconf(_SC_PAGESIZE);
	void *volatile bad = NULL;
	unsigned char *two;
	uint32_t c[4];

	for (int i = 0; i < 3; i++)
		ASSERT_EQ(0, bind_seg(self->seg[i].fd, self->bell, 100 + i));
	ASSERT_EQ(0, ring(self->seg[1].fd));
	ASSERT_EQ(0, ring(self->seg[0].fd));
	ASSERT_EQ(-EFAULT, (int)(read(self->bell, bad, 8) < 0 ? -errno : 0));
	ASSERT_TRUE(readable(self->bell, 0));
	/* Rung again while re-queued: coalesced, still once and in order. */
	ASSERT_EQ(0, ring(self->seg[1].fd));
	ASSERT_EQ(0, ring(self->seg[2].fd));
	ASSERT_EQ(3, bell_read(self->bell, c, 4));
	ASSERT_EQ(101, c[0]);
	ASSERT_EQ(100, c[1]);
	ASSERT_EQ(102, c[2]);
	ASSERT_EQ(-EAGAIN, bell_read(self->bell, c, 4));

	/* The first 4 bytes are writable, the next 4 are not. */
	two = mmap(NULL, 2 * pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ASSERT_NE(MAP_FAILED, two);
	ASSERT_EQ(0, mprotect(two + pg, pg, PROT_NONE));
	ASSERT_EQ(0, ring(self->seg[2].fd));
	ASSERT_EQ(0, ring(self->seg[0].fd));
	ASSERT_EQ(-EFAULT, (int)(read(self->bell, two + pg - 4, 8) < 0 ? -errno : 0));
	ASSERT_EQ(2, bell_read(self->bell, c, 4));
	ASSERT_EQ(102, c[0]);
	ASSERT_EQ(100, c[1]);
	ASSERT_EQ(-EAGAIN, bell_read(self->bell, c, 4));
	munmap(two, 2 * pg);
}

/* Open another fd of a segment by id and key (as any registered client can). */
static int seg_open_fd(int dev, const struct llmp_seg_create *c)
{
	struct llmp_seg_open o;

	memset(&o, 0, sizeof(o));
	o.id = c->id;
	o.key = c->key;
	o.fd_flags = O_CLOEXEC;
	return xioctl(dev, LLMP_IOC_SEG_OPEN, &o) ? -errno : o.fd;
}

/*
 * Issue 8, finding 10: whoever learns a segment's id and key (every client
 * of a broker learns its control segment's) may open and ring it, but
 * must not re-bind it to its own bell (stealing the broker's wake-ups) or
 * unbind it (making every ring fail).  Only the fd SEG_CREATE returned,
 * with its dups and fork copies, binds; the owner's bell keeps its rings.
 */
TEST_F(bell, bind_and_unbind_only_from_the_creators_fd)
{
	NEED_DEV();
	struct llmp_seg_info info;
	struct llmp_version v;
	int other, thief, dup_fd, st;
	uint32_t c[4];
	pid_t pid;

	ASSERT_EQ(0, bind_seg(self->seg[0].fd, self->bell, 42));
	other = seg_open_fd(self->dev, &self->seg[0]);
	ASSERT_GE(other, 0);
	thief = bell_create(self->dev, O_CLOEXEC | O_NONBLOCK);
	ASSERT_GE(thief, 0);
	ASSERT_EQ(-EPERM, bind_seg(other, thief, 666));
	ASSERT_EQ(-EPERM, bind_seg(other, -1, 0));
	/* Argument errors still come first. */
	ASSERT_EQ(-EINVAL, bind_seg(other, -1, 3));
	ASSERT_EQ(0, xioctl(other, LLMP_IOC_SEG_INFO, &info));
	ASSERT_EQ(1, info.bound);
	ASSERT_EQ(42, info.cookie);
	/* The other fd rings the owner's bell, never the thief's. */
	ASSERT_EQ(0, ring(other));
	ASSERT_EQ(1, bell_read(self->bell, c, 4));
	ASSERT_EQ(42, c[0]);
	ASSERT_EQ(-EAGAIN, bell_read(thief, c, 4));
	/* Another process holding only an opened fd cannot either. */
	pid = fork();
	ASSERT_GE(pid, 0);
	if (pid == 0) {
		close(self->seg[0].fd);
		_exit(bind_seg(other, thief, 7) == -EPERM && bind_seg(other, -1, 0) == -EPERM &&
		      ring(other) == 0 ? 0 : 1);
	}
	ASSERT_EQ(pid, waitpid(pid, &st, 0));
	ASSERT_TRUE(WIFEXITED(st));
	ASSERT_EQ(0, WEXITSTATUS(st));
	ASSERT_EQ(1, bell_read(self->bell, c, 4));
	ASSERT_EQ(42, c[0]);
	/* A dup of the creator's fd is the same open file: it binds. */
	dup_fd = fcntl(self->seg[0].fd, F_DUPFD_CLOEXEC, 0);
	ASSERT_GE(dup_fd, 0);
	ASSERT_EQ(0, bind_seg(dup_fd, self->bell, 43));
	close(dup_fd);
	/* With the creator's fd closed nobody re-binds; the binding stays. */
	close(self->seg[0].fd);
	self->seg[0].fd = -1;
	ASSERT_EQ(-EPERM, bind_seg(other, thief, 666));
	ASSERT_EQ(0, ring(other));
	ASSERT_EQ(1, bell_read(self->bell, c, 4));
	ASSERT_EQ(43, c[0]);
	ASSERT_EQ(-EAGAIN, bell_read(thief, c, 4));
	close(thief);
	close(other);
	ASSERT_EQ(0, xioctl(self->dev, LLMP_IOC_VERSION, &v));
	ASSERT_TRUE(v.features & LLMP_FEAT_BIND_OWNER);
}

TEST_F(bell, unbind_rebind_and_close)
{
	NEED_DEV();
	struct llmp_stats s0, s1;
	uint32_t c[4];
	int bell2;

	get_stats(self->dev, &s0);
	bell2 = bell_create(self->dev, O_NONBLOCK);
	ASSERT_GE(bell2, 0);
	get_stats(self->dev, &s1);
	ASSERT_EQ(s0.bells_live + 1, s1.bells_live);

	ASSERT_EQ(0, bind_seg(self->seg[0].fd, self->bell, 1));
	ASSERT_EQ(0, ring(self->seg[0].fd));
	/* Unbinding drops the pending cookie. */
	ASSERT_EQ(0, bind_seg(self->seg[0].fd, -1, 0));
	ASSERT_EQ(-EAGAIN, bell_read(self->bell, c, 4));
	ASSERT_EQ(-ENOTCONN, ring(self->seg[0].fd));
	/* Rebinding moves a pending cookie's future to the new bell. */
	ASSERT_EQ(0, bind_seg(self->seg[0].fd, self->bell, 1));
	ASSERT_EQ(0, ring(self->seg[0].fd));
	ASSERT_EQ(0, bind_seg(self->seg[0].fd, bell2, 2));
	ASSERT_EQ(-EAGAIN, bell_read(self->bell, c, 4));
	ASSERT_EQ(0, ring(self->seg[0].fd));
	ASSERT_EQ(1, bell_read(bell2, c, 4));
	ASSERT_EQ(2, c[0]);

	/* Closing a bound bell: the segment still rings (nobody hears), no crash. */
	ASSERT_EQ(0, ring(self->seg[0].fd));
	close(bell2);
	ASSERT_EQ(0, ring(self->seg[0].fd));
	get_stats(self->dev, &s1);
	ASSERT_EQ(s0.bells_live + 1, s1.bells_live); /* the binding holds it */
	close(self->seg[0].fd);
	self->seg[0].fd = -1;
	get_stats(self->dev, &s1);
	ASSERT_EQ(s0.bells_live, s1.bells_live);
}

/* A child rings after a delay; poll, epoll and a blocking read wake up. */
static pid_t ring_later(int segfd, int delay_ms)
{
	pid_t pid = fork();

	if (pid == 0) {
		usleep(delay_ms * 1000);
		_exit(ring(segfd) ? 1 : 0);
	}
	return pid;
}

static int reap(pid_t pid)
{
	int st;

	if (waitpid(pid, &st, 0) != pid)
		return -1;
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

TEST_F(bell, poll_epoll_and_blocking_read_wake)
{
	NEED_DEV();
	struct epoll_event ev = { .events = EPOLLIN }, out;
	uint32_t c[4];
	int ep, blk;
	pid_t pid;

	ASSERT_EQ(0, bind_seg(self->seg[1].fd, self->bell, 77));
	pid = ring_later(self->seg[1].fd, 100);
	ASSERT_GT(pid, 0);
	ASSERT_TRUE(readable(self->bell, 10000));
	ASSERT_EQ(0, reap(pid));
	ASSERT_EQ(1, bell_read(self->bell, c, 4));
	ASSERT_EQ(77, c[0]);

	ep = epoll_create1(EPOLL_CLOEXEC);
	ASSERT_GE(ep, 0);
	ASSERT_EQ(0, epoll_ctl(ep, EPOLL_CTL_ADD, self->bell, &ev));
	ASSERT_EQ(0, epoll_wait(ep, &out, 1, 0));
	pid = ring_later(self->seg[1].fd, 100);
	ASSERT_EQ(1, epoll_wait(ep, &out, 1, 10000));
	ASSERT_TRUE(out.events & EPOLLIN);
	ASSERT_EQ(0, reap(pid));
	ASSERT_EQ(1, bell_read(self->bell, c, 4));
	close(ep);

	/* A bell without O_NONBLOCK: read() sleeps until the ring. */
	blk = bell_create(self->dev, O_CLOEXEC);
	ASSERT_GE(blk, 0);
	ASSERT_EQ(0, bind_seg(self->seg[1].fd, blk, 78));
	pid = ring_later(self->seg[1].fd, 100);
	alarm(20);
	ASSERT_EQ(1, bell_read(blk, c, 4));
	alarm(0);
	ASSERT_EQ(78, c[0]);
	ASSERT_EQ(0, reap(pid));
	close(blk);
}

TEST_F(bell, io_uring_poll_add_wakes)
{
	NEED_DEV();
#ifndef LLMP_HAVE_LIBURING
	SKIP(return, "built without liburing");
#else
	struct __kernel_timespec ts = { .tv_sec = 10 };
	struct io_uring_sqe *sqe;
	struct io_uring_cqe *cqe;
	struct io_uring ring_;
	uint32_t c[4];
	pid_t pid;
	int ret;

	ret = io_uring_queue_init(8, &ring_, 0);
	if (ret == -ENOSYS || ret == -EPERM)
		SKIP(return, "io_uring unavailable: %s", strerror(-ret));
	ASSERT_EQ(0, ret);
	ASSERT_EQ(0, bind_seg(self->seg[4].fd, self->bell, 4444));
	for (int round = 0; round < 3; round++) {
		sqe = io_uring_get_sqe(&ring_);
		ASSERT_NE(NULL, sqe);
		io_uring_prep_poll_add(sqe, self->bell, POLLIN);
		io_uring_sqe_set_data64(sqe, 100 + round);
		ASSERT_EQ(1, io_uring_submit(&ring_));
		/* Nothing pending: no completion yet. */
		ASSERT_EQ(-EAGAIN, io_uring_peek_cqe(&ring_, &cqe));
		pid = ring_later(self->seg[4].fd, 50);
		ASSERT_EQ(0, io_uring_wait_cqe_timeout(&ring_, &cqe, &ts));
		ASSERT_EQ(100 + round, io_uring_cqe_get_data64(cqe));
		ASSERT_TRUE(cqe->res & POLLIN);
		io_uring_cqe_seen(&ring_, cqe);
		ASSERT_EQ(0, reap(pid));
		ASSERT_EQ(1, bell_read(self->bell, c, 4));
		ASSERT_EQ(4444, c[0]);
	}
	io_uring_queue_exit(&ring_);
#endif
}

/*
 * Many threads ring while the reader reads: after every writer is done,
 * each segment's last ring must have produced a cookie that the reader
 * took after the writer's last write (no lost cookie), and the reader
 * never saw a cookie without a write behind it.
 */
#define RING_THREADS 4
#define RINGS_PER_THREAD 3000

struct ringer {
	int fd[NSEG / RING_THREADS];
	_Atomic uint32_t *seq[NSEG / RING_THREADS];
	int failed;
};

static void *ringer_main(void *arg)
{
	struct ringer *r = arg;

	for (int i = 0; i < RINGS_PER_THREAD; i++) {
		int k = i % (NSEG / RING_THREADS);

		/* Pairs with the reader's acquire load after it takes the cookie. */
		atomic_fetch_add_explicit(r->seq[k], 1, memory_order_release);
		if (ring(r->fd[k]))
			r->failed++;
	}
	return NULL;
}

TEST_F(bell, many_threads_ringing_lose_nothing)
{
	NEED_DEV();
	struct ringer r[RING_THREADS];
	pthread_t th[RING_THREADS];
	_Atomic uint32_t *seq[NSEG];
	uint32_t seen[NSEG] = { 0 }, c[64];
	uint64_t cookies = 0, deadline;
	int done = 0, n;

	for (int i = 0; i < NSEG; i++) {
		seq[i] = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, self->seg[i].fd, 0);
		ASSERT_NE(MAP_FAILED, (void *)seq[i]);
		ASSERT_EQ(0, bind_seg(self->seg[i].fd, self->bell, i));
	}
	for (int t = 0; t < RING_THREADS; t++) {
		r[t].failed = 0;
		for (int k = 0; k < NSEG / RING_THREADS; k++) {
			r[t].fd[k] = self->seg[t * (NSEG / RING_THREADS) + k].fd;
			r[t].seq[k] = seq[t * (NSEG / RING_THREADS) + k];
		}
		ASSERT_EQ(0, pthread_create(&th[t], NULL, ringer_main, &r[t]));
	}
	deadline = now_ns() + 120ull * 1000000000ull;
	while (!done) {
		uint32_t final = RINGS_PER_THREAD / (NSEG / RING_THREADS);

		ASSERT_LT(now_ns(), deadline);
		if (!readable(self->bell, 5000))
			continue;
		n = bell_read(self->bell, c, 64);
		if (n == -EAGAIN)
			continue;
		ASSERT_GT(n, 0);
		for (int i = 0; i < n; i++) {
			uint32_t v;

			ASSERT_LT(c[i], NSEG);
			/* Pairs with the ringer's release increment. */
			v = atomic_load_explicit(seq[c[i]], memory_order_acquire);
			/* A cookie always has a write behind it. */
			ASSERT_GT(v, 0);
			ASSERT_GE(v, seen[c[i]]);
			seen[c[i]] = v;
			cookies++;
		}
		done = 1;
		for (int i = 0; i < NSEG; i++)
			if (seen[i] != final)
				done = 0;
	}
	for (int t = 0; t < RING_THREADS; t++) {
		ASSERT_EQ(0, pthread_join(th[t], NULL));
		ASSERT_EQ(0, r[t].failed);
	}
	/* Nothing left behind once every final write was seen. */
	n = bell_read(self->bell, c, 64);
	ASSERT_TRUE(n == -EAGAIN || n > 0);
	FIGURE("%d threads, %d rings, %llu cookies read (the rest coalesced)\n",
		       RING_THREADS, RING_THREADS * RINGS_PER_THREAD,
		       (unsigned long long)cookies);
	for (int i = 0; i < NSEG; i++)
		munmap((void *)seq[i], 4096);
}

/*
 * The doorbell protocol of Documentation/kmod.rst with real processes:
 * a client commits a message, fences, and rings only if the broker's
 * sleeping word is set; the broker sets the word, fences, rechecks every
 * page and only then sleeps.  The broker sleeps with a long timeout: a
 * lost wake-up shows as a sleep that timed out while a message waited.
 */
struct proto_page {
	_Atomic uint32_t msg;		/* client: messages committed */
	_Atomic uint32_t pad[15];
};

#define PROTO_CLIENTS 3
#define PROTO_MSGS 400

TEST_F(bell, sleeping_word_protocol_loses_no_wakeup)
{
	NEED_DEV();
	struct llmp_seg_create ctl;
	_Atomic uint32_t *sleeping;
	struct proto_page *pg[PROTO_CLIENTS];
	uint32_t got[PROTO_CLIENTS] = { 0 }, c[16];
	pid_t pid[PROTO_CLIENTS];
	unsigned int sleeps = 0, lost = 0, total = 0;
	uint64_t deadline = now_ns() + 120ull * 1000000000ull;

	ASSERT_EQ(0, seg_create(self->dev, 4096, &ctl));
	sleeping = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, ctl.fd, 0);
	ASSERT_NE(MAP_FAILED, (void *)sleeping);
	for (int i = 0; i < PROTO_CLIENTS; i++) {
		pg[i] = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, self->seg[i].fd, 0);
		ASSERT_NE(MAP_FAILED, (void *)pg[i]);
		ASSERT_EQ(0, bind_seg(self->seg[i].fd, self->bell, i));
	}
	for (int i = 0; i < PROTO_CLIENTS; i++) {
		pid[i] = fork();
		ASSERT_GE(pid[i], 0);
		if (pid[i] == 0) {
			for (uint32_t m = 1; m <= PROTO_MSGS; m++) {
				/* Commit the message (release pairs with the broker's acquire scan)... */
				atomic_store_explicit(&pg[i]->msg, m, memory_order_release);
				/* ...full fence: the store above is visible before the load below... */
				atomic_thread_fence(memory_order_seq_cst);
				/* ...then ring only if the broker said it sleeps (pairs with its store). */
				if (atomic_load_explicit(sleeping, memory_order_relaxed) &&
				    ring(self->seg[i].fd))
					_exit(2);
				if (m % 50 == 0)
					usleep(2000); /* let the broker run dry and sleep */
			}
			_exit(0);
		}
	}
	while (total < PROTO_CLIENTS * PROTO_MSGS) {
		int progress = 0;

		ASSERT_LT(now_ns(), deadline);
		for (int i = 0; i < PROTO_CLIENTS; i++) {
			/* Pairs with the client's release store of msg. */
			uint32_t v = atomic_load_explicit(&pg[i]->msg, memory_order_acquire);

			if (v != got[i]) {
				ASSERT_GT(v, got[i]);
				total += v - got[i];
				got[i] = v;
				progress = 1;
			}
		}
		if (progress)
			continue;
		/* About to sleep: say so (pairs with the clients' load of sleeping)... */
		atomic_store_explicit(sleeping, 1, memory_order_relaxed);
		/* ...full fence: the flag is visible before the rescan's loads... */
		atomic_thread_fence(memory_order_seq_cst);
		/* ...and look once more, or a message committed just before is missed. */
		for (int i = 0; i < PROTO_CLIENTS; i++)
			if (atomic_load_explicit(&pg[i]->msg, memory_order_acquire) != got[i])
				progress = 1;
		if (!progress) {
			sleeps++;
			if (!readable(self->bell, 10000)) {
				/* Timed out: lost only if something was waiting all along. */
				for (int i = 0; i < PROTO_CLIENTS; i++)
					if (atomic_load_explicit(&pg[i]->msg,
								 memory_order_acquire) != got[i])
						lost++;
			}
			while (bell_read(self->bell, c, 16) > 0)
				;
		}
		/* Awake again: clients need not ring (pairs with their load). */
		atomic_store_explicit(sleeping, 0, memory_order_relaxed);
		ASSERT_EQ(0, lost);
	}
	for (int i = 0; i < PROTO_CLIENTS; i++)
		ASSERT_EQ(0, reap(pid[i]));
	ASSERT_EQ(0, lost);
	FIGURE("protocol: %u messages, broker slept %u times, no lost wake-up\n",
		       total, sleeps);
	close(ctl.fd);
}

/*
 * Wake latency, bell vs futex: a child waits, the parent stamps the time
 * and wakes it, the child reports the delay.  Printed as a figure only
 * (never asserted): under software emulation it says little about metal.
 */
#define LAT_ROUNDS 200

static long futex(_Atomic uint32_t *uaddr, int op, uint32_t val, const struct timespec *ts)
{
	return syscall(SYS_futex, uaddr, op, val, ts, NULL, 0);
}

static uint64_t median(uint64_t *v, int n)
{
	for (int i = 1; i < n; i++)
		for (int j = i; j > 0 && v[j - 1] > v[j]; j--) {
			uint64_t t = v[j];

			v[j] = v[j - 1];
			v[j - 1] = t;
		}
	return v[n / 2];
}

struct lat_shared {
	_Atomic uint32_t word;		/* futex word / round number */
	_Atomic uint32_t ready;		/* child: waiting for this round */
	_Atomic uint64_t t_wake;	/* parent: time of the wake call */
	uint64_t delay[2][LAT_ROUNDS];	/* child: wake-up delay, [0] bell, [1] futex */
};

TEST_F(bell, wake_latency_bell_vs_futex)
{
	NEED_DEV();
	struct lat_shared *sh;
	uint64_t b[LAT_ROUNDS], f[LAT_ROUNDS];
	pid_t pid;

	sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	ASSERT_NE(MAP_FAILED, sh);
	ASSERT_EQ(0, bind_seg(self->seg[0].fd, self->bell, 1));
	pid = fork();
	ASSERT_GE(pid, 0);
	if (pid == 0) {
		uint32_t c[4];

		for (int r = 0; r < LAT_ROUNDS; r++) {
			/* Pairs with the parent's acquire wait for ready. */
			atomic_store_explicit(&sh->ready, 2 * r + 1, memory_order_release);
			if (!readable(self->bell, 10000))
				_exit(2);
			sh->delay[0][r] = now_ns() - atomic_load(&sh->t_wake);
			while (bell_read(self->bell, c, 4) > 0)
				;
		}
		for (int r = 0; r < LAT_ROUNDS; r++) {
			struct timespec ts = { .tv_sec = 10 };

			atomic_store_explicit(&sh->ready, 2 * LAT_ROUNDS + 2 * r + 1,
					      memory_order_release);
			while (atomic_load(&sh->word) == (uint32_t)r)
				futex(&sh->word, FUTEX_WAIT, r, &ts);
			sh->delay[1][r] = now_ns() - atomic_load(&sh->t_wake);
		}
		_exit(0);
	}
	for (int r = 0; r < 2 * LAT_ROUNDS; r++) {
		uint64_t spin = now_ns() + 10ull * 1000000000ull;

		/* Pairs with the child's release store of ready. */
		while (atomic_load_explicit(&sh->ready, memory_order_acquire) != (uint32_t)(2 * r + 1))
			ASSERT_LT(now_ns(), spin);
		usleep(1000); /* let the child block */
		atomic_store(&sh->t_wake, now_ns());
		if (r < LAT_ROUNDS) {
			ASSERT_EQ(0, ring(self->seg[0].fd));
		} else {
			atomic_store(&sh->word, r - LAT_ROUNDS + 1);
			futex(&sh->word, FUTEX_WAKE, 1, NULL);
		}
	}
	ASSERT_EQ(0, reap(pid));
	memcpy(b, sh->delay[0], sizeof(b));
	memcpy(f, sh->delay[1], sizeof(f));
	FIGURE("figure: wake latency median over %d rounds: bell %llu ns, futex %llu ns\n",
		       LAT_ROUNDS, (unsigned long long)median(b, LAT_ROUNDS),
		       (unsigned long long)median(f, LAT_ROUNDS));
	munmap(sh, sizeof(*sh));
}

/* The libllmp wrapper over the same ioctls, with KMOD segments. */
TEST_F(bell, libllmp_wrapper)
{
#ifdef LLMP_TEST_RAW_IOCTLS_ONLY
	RAW_ONLY_SKIP();
#else
	NEED_DEV();
	struct llmp_provider *p;
	struct llmp_shmem *a, *b;
	struct llmp_bell *bl;
	uint32_t c[8];
	pid_t pid;
	int fd;

	ASSERT_EQ(0, llmp_provider_new(LLMP_SHMEM_KMOD, &p));
	ASSERT_EQ(0, llmp_shmem_new(p, 4096, &a));
	ASSERT_EQ(0, llmp_shmem_new(p, 4096, &b));
	ASSERT_EQ(0, llmp_bell_new(&bl));
	fd = llmp_bell_fd(bl);
	ASSERT_GE(fd, 0);
	ASSERT_EQ(-ENOTCONN, llmp_bell_ring(a));
	ASSERT_EQ(0, llmp_bell_bind(a, bl, 11));
	ASSERT_EQ(0, llmp_bell_bind(b, bl, 22));
	ASSERT_EQ(-EINVAL, llmp_bell_bind(a, NULL, 5));
	ASSERT_EQ(0, llmp_bell_read(bl, c, 8));
	ASSERT_EQ(0, llmp_bell_wait(bl, 0, c, 8));
	ASSERT_EQ(0, llmp_bell_ring(a));
	ASSERT_EQ(0, llmp_bell_ring(a));
	ASSERT_EQ(0, llmp_bell_ring(b));
	ASSERT_EQ(2, llmp_bell_read(bl, c, 8));
	ASSERT_EQ(11, c[0]);
	ASSERT_EQ(22, c[1]);
	/* wait() sleeps until a forked child rings. */
	pid = fork();
	ASSERT_GE(pid, 0);
	if (pid == 0) {
		usleep(100 * 1000);
		_exit(llmp_bell_ring(b) ? 1 : 0);
	}
	ASSERT_EQ(1, llmp_bell_wait(bl, 10000, c, 8));
	ASSERT_EQ(22, c[0]);
	ASSERT_EQ(0, reap(pid));
	ASSERT_EQ(0, llmp_bell_bind(a, NULL, 0));
	ASSERT_EQ(-ENOTCONN, llmp_bell_ring(a));
	ASSERT_EQ(-EINVAL, llmp_bell_read(bl, NULL, 8));
	ASSERT_EQ(-EINVAL, llmp_bell_read(bl, c, 0));
	llmp_shmem_put(a);
	llmp_shmem_put(b);
	llmp_bell_free(bl);
	llmp_provider_free(p);
#endif
}

/*
 * Finding 10 through libllmp: a segment attached by its printable id (what
 * a client does with the broker's control segment) cannot be bound, the
 * creator's bell keeps getting the attached handle's rings.
 */
TEST_F(bell, libllmp_attached_segment_cannot_bind)
{
#ifdef LLMP_TEST_RAW_IOCTLS_ONLY
	RAW_ONLY_SKIP();
#else
	NEED_DEV();
	struct llmp_provider *p;
	struct llmp_shmem *own, *att;
	struct llmp_bell *bl, *thief;
	uint32_t c[4];

	ASSERT_EQ(0, llmp_provider_new(LLMP_SHMEM_KMOD, &p));
	ASSERT_EQ(0, llmp_shmem_new(p, 4096, &own));
	ASSERT_EQ(0, llmp_bell_new(&bl));
	ASSERT_EQ(0, llmp_bell_new(&thief));
	ASSERT_EQ(0, llmp_bell_bind(own, bl, 9));
	ASSERT_EQ(0, llmp_shmem_attach(p, llmp_shmem_desc(own), &att));
	ASSERT_EQ(-EPERM, llmp_bell_bind(att, thief, 1));
	ASSERT_NE(NULL, strstr(llmp_strerror_last(), "creat"));
	ASSERT_EQ(-EPERM, llmp_bell_bind(att, NULL, 0));
	ASSERT_EQ(0, llmp_bell_ring(att));
	ASSERT_EQ(1, llmp_bell_wait(bl, 10000, c, 4));
	ASSERT_EQ(9, c[0]);
	ASSERT_EQ(0, llmp_bell_read(thief, c, 4));
	llmp_shmem_put(att);
	llmp_shmem_put(own);
	llmp_bell_free(thief);
	llmp_bell_free(bl);
	llmp_provider_free(p);
#endif
}

/* Bells need KMOD segments: another kind is -EOPNOTSUPP. */
TEST(wrapper_rejects_other_kinds)
{
#ifdef LLMP_TEST_RAW_IOCTLS_ONLY
	RAW_ONLY_SKIP();
#else
	struct llmp_provider *p;
	struct llmp_shmem *m;
	struct llmp_bell *bl;

	if (access(LLMP_DEVICE_PATH, R_OK | W_OK))
		SKIP(return, "no %s", LLMP_DEVICE_PATH);
	if (llmp_provider_new(LLMP_SHMEM_MEMFD, &p) < 0)
		SKIP(return, "no memfd provider in this build");
	ASSERT_EQ(0, llmp_shmem_new(p, 4096, &m));
	ASSERT_EQ(0, llmp_bell_new(&bl));
	ASSERT_EQ(-EOPNOTSUPP, llmp_bell_bind(m, bl, 1));
	ASSERT_EQ(-EOPNOTSUPP, llmp_bell_ring(m));
	llmp_bell_free(bl);
	llmp_shmem_put(m);
	llmp_provider_free(p);
#endif
}

TEST(wrapper_without_device_is_enodev)
{
#ifdef LLMP_TEST_RAW_IOCTLS_ONLY
	RAW_ONLY_SKIP();
#else
	struct llmp_bell *bl = (void *)1;

	if (!access(LLMP_DEVICE_PATH, F_OK))
		SKIP(return, "%s exists", LLMP_DEVICE_PATH);
	ASSERT_EQ(-ENODEV, llmp_bell_new(&bl));
	ASSERT_EQ(NULL, bl);
#endif
}

TEST_HARNESS_MAIN
