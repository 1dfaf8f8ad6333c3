// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * /dev/llmp ioctl fuzz loop: ~100k calls with random commands (our ioctl
 * type, random number, direction and size, or a real command) and random
 * argument structs (mostly zero, a few random bits, random fds, bad
 * pointers) on the device, segment and bell fds.  Every call must end in
 * success or one of the errors the ABI documents; afterwards the process
 * holds exactly the fds it held before and the module's counters are back
 * at the baseline.  The VM harness fails the run on any kernel warning
 * this provokes.  In its failslab pass the loop runs with slab fault
 * injection on, and the same checks must hold.  LLMP_FUZZ_CALLS and LLMP_FUZZ_SEED override the defaults.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "kselftest_harness.h"
#include "llmp_test.h"
#include "kmod_abi.h"
#include "uapi/linux/llmp.h"

/* A "# ..." line on stdout that survives the test child's _exit(). */
#define FIGURE(...) do { ksft_print_msg(__VA_ARGS__); fflush(stdout); } while (0)

static int count_fds(void)
{
	struct dirent *e;
	DIR *d = opendir("/proc/self/fd");
	int n = 0;

	if (!d)
		return -1;
	while ((e = readdir(d)))
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return n;
}

static const unsigned long real_cmds[] = {
	LLMP_IOC_VERSION, LLMP_IOC_SEG_CREATE, LLMP_IOC_SEG_OPEN, LLMP_IOC_BELL_CREATE,
	LLMP_IOC_STATS, LLMP_IOC_SEG_INFO, LLMP_IOC_SEG_BIND, LLMP_IOC_SEG_RING,
};

/* Errors the ABI may answer a malformed or unlucky call with. */
static int allowed(int err)
{
	switch (err) {
	case EINVAL: case ENOTTY: case EFAULT: case ENOENT: case EBADF: case ENOTCONN:
	case EACCES: case ENOSPC: case EDQUOT: case ENOMEM: case EMFILE: case EPERM:
		return 1;
	}
	return 0;
}

#define MAXFDS 64

/*
 * Under the VM's failslab pass this process inherits make-it-fail=1.
 * Keep fault injection for the ioctl loop (where the allocations are
 * mostly the module's) and off for the setup and the final checks, so
 * the checks prove that the module's error paths leak nothing.
 */
static int make_it_fail(int on)
{
	char c = '0';
	int fd = open("/proc/self/make-it-fail", O_RDWR | O_CLOEXEC);

	if (fd < 0)
		return 0;
	if (on < 0) {
		if (read(fd, &c, 1) != 1)
			c = '0';
	} else {
		c = on ? '1' : '0';
		if (write(fd, &c, 1) != 1)
			c = '0';
	}
	close(fd);
	return c == '1';
}

FIXTURE(fuzz) {
	int unused;
};

FIXTURE_SETUP(fuzz)
{
}

FIXTURE_TEARDOWN(fuzz)
{
}

/* 100k calls take minutes on a KASAN + lockdep kernel under emulation. */
TEST_F_TIMEOUT(fuzz, ioctl_fuzz, 1200)
{
	unsigned char buf[256] __attribute__((aligned(8)));
	int fds[MAXFDS], nfd = 0, dev, fd0;
	struct llmp_stats base, s;
	unsigned long calls = 100000, ok = 0, bad_err = 0;
	unsigned long errs[160] = { 0 };
	uint64_t seed, t0;
	struct timespec ts;
	int inject;
	void *ro;

	/* The VM's failslab pass sets LLMP_FUZZ_FAILSLAB=1 (see tests/vm/init). */
	inject = make_it_fail(-1) || getenv("LLMP_FUZZ_FAILSLAB");
	if (inject)
		make_it_fail(0);
	dev = open(LLMP_DEVICE_PATH, O_RDWR | O_CLOEXEC);
	if (dev < 0)
		SKIP(return, "no %s: llmp.ko is not loaded", LLMP_DEVICE_PATH);
	if (getenv("LLMP_FUZZ_CALLS"))
		calls = strtoul(getenv("LLMP_FUZZ_CALLS"), NULL, 0);
	seed = getenv("LLMP_FUZZ_SEED") ? strtoull(getenv("LLMP_FUZZ_SEED"), NULL, 0) :
					  (uint64_t)time(NULL) * 2654435761u | 1;
	FIGURE("fuzz: %lu calls, LLMP_FUZZ_SEED=%llu\n", calls, (unsigned long long)seed);
	ASSERT_EQ(0, ioctl(dev, LLMP_IOC_STATS, &base));
	ro = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ASSERT_NE(MAP_FAILED, ro);
	fd0 = count_fds();
	ASSERT_GT(fd0, 0);
	clock_gettime(CLOCK_MONOTONIC, &ts);
	t0 = (uint64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
	if (inject) {
		FIGURE("fuzz: slab fault injection on during the loop\n");
		make_it_fail(1);
	}

	for (unsigned long i = 0; i < calls; i++) {
		uint64_t r = llmp_test_rand(&seed);
		unsigned long cmd;
		void *arg = buf;
		int target, ret, err;

		/* The command: a real one (3/4) or a random one of our type. */
		if (r % 4) {
			cmd = real_cmds[(r >> 2) % (sizeof(real_cmds) / sizeof(real_cmds[0]))];
		} else {
			unsigned int dir = (r >> 8) & 3, nr = (r >> 10) & 0x1f;
			unsigned int size = (r >> 16) % 200;

			cmd = _IOC(dir, LLMP_IOC_MAGIC, nr, size);
		}
		/* The argument: zeroes with a few random bits, fds and sizes. */
		memset(buf, 0, sizeof(buf));
		switch ((r >> 24) % 8) {
		case 0:
			for (size_t k = 0; k < sizeof(buf); k++)
				buf[k] = (unsigned char)llmp_test_rand(&seed);
			break;
		case 1: case 2: case 3: {
			int flips = 1 + (r >> 27) % 3;

			for (int k = 0; k < flips; k++) {
				uint64_t b = llmp_test_rand(&seed) % (64 * 8);

				buf[b / 8] ^= (unsigned char)(1u << (b % 8));
			}
			break;
		}
		default:
			break;
		}
		/* Plausible sizes, ids and fds where the structs keep them. */
		if (cmd == LLMP_IOC_SEG_CREATE && (r >> 30) % 2)
			((struct llmp_seg_create *)buf)->size = 1 + (llmp_test_rand(&seed) % 65536);
		if (cmd == LLMP_IOC_SEG_BIND) {
			struct llmp_seg_bind *b = (void *)buf;

			if ((r >> 31) % 2 && nfd)
				b->bell_fd = fds[llmp_test_rand(&seed) % nfd];
			else if ((r >> 32) % 4 == 0)
				b->bell_fd = -1;
		}
		if ((r >> 34) % 64 == 0)
			arg = NULL;
		else if ((r >> 34) % 64 == 1)
			arg = ro;
		else if ((r >> 34) % 64 == 2)
			arg = (void *)(uintptr_t)llmp_test_rand(&seed);
		if (cmd == LLMP_IOC_SEG_RING)
			arg = (r >> 40) % 8 ? NULL : (void *)(uintptr_t)(r >> 41);
		/* The target: the device, a segment/bell fd we made, or junk. */
		switch ((r >> 44) % 8) {
		case 0: case 1: case 2:
			target = dev;
			break;
		case 7:
			target = (int)((r >> 47) % 1024);
			break;
		default:
			target = nfd ? fds[(r >> 47) % nfd] : dev;
			break;
		}
		if (target < 3 && target != dev)
			target = dev; /* not our stdio */

		ret = ioctl(target, cmd, arg);
		err = ret < 0 ? errno : 0;
		if (ret == 0) {
			ok++;
			/* New fds come back in the struct: keep some, close the rest. */
			int nf = -1;

			if (cmd == LLMP_IOC_SEG_CREATE)
				nf = ((struct llmp_seg_create *)arg)->fd;
			else if (cmd == LLMP_IOC_SEG_OPEN)
				nf = ((struct llmp_seg_open *)arg)->fd;
			else if (cmd == LLMP_IOC_BELL_CREATE)
				nf = ((struct llmp_bell_create *)arg)->fd;
			if (nf >= 0 && target == dev) {
				if (nfd < MAXFDS)
					fds[nfd++] = nf;
				else
					close(nf);
			}
		} else {
			if (err < 160)
				errs[err]++;
			/* ioctl() on a descriptor that is not ours: anything it says. */
			if (!allowed(err) && (target == dev || (r >> 44) % 8 != 7)) {
				if (bad_err++ < 10)
					TH_LOG("call %lu: cmd %#lx on fd %d: unexpected %s", i, cmd,
					       target, strerror(err));
			}
		}
		/* Now and then drop an fd we made, so objects die mid-run. */
		if (nfd && llmp_test_rand(&seed) % 16 == 0) {
			int k = llmp_test_rand(&seed) % nfd;

			close(fds[k]);
			fds[k] = fds[--nfd];
		}
	}
	while (nfd)
		close(fds[--nfd]);
	if (inject)
		make_it_fail(0);
	clock_gettime(CLOCK_MONOTONIC, &ts);
	FIGURE("fuzz: %lu calls in %llu ms\n", calls,
	       (unsigned long long)((uint64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000 - t0));
	FIGURE("fuzz: %lu succeeded; EINVAL %lu, ENOTTY %lu, EFAULT %lu, ENOENT %lu, "
		       "EBADF %lu, ENOTCONN %lu, ENOMEM %lu\n", ok, errs[EINVAL], errs[ENOTTY],
		       errs[EFAULT], errs[ENOENT], errs[EBADF], errs[ENOTCONN], errs[ENOMEM]);
	ASSERT_EQ(0, bad_err);
	/* The loop reached past the argument checks. */
	ASSERT_GT(ok, calls / 100);
	ASSERT_EQ(fd0, count_fds());
	ASSERT_EQ(0, ioctl(dev, LLMP_IOC_STATS, &s));
	ASSERT_EQ(base.segments_live, s.segments_live);
	ASSERT_EQ(base.bytes_live, s.bytes_live);
	ASSERT_EQ(base.bells_live, s.bells_live);
	ASSERT_EQ(s.segments_created - base.segments_created,
		  s.segments_freed - base.segments_freed);
	munmap(ro, 4096);
	close(dev);
}

TEST_HARNESS_MAIN
