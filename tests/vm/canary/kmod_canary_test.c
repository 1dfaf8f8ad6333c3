// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * The canary's test (tests/vm/selftest.sh): opens /dev/llmp, exercises
 * fork/memfd/open (slab allocations for the failslab pass), then asks the
 * canary module to misbehave as the llmp_canary variable says (set on the
 * kernel command line, which the kernel passes to /init's environment):
 * none, warn, leak or oops.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kselftest_harness.h"

TEST(open_fork_memfd)
{
	for (int i = 0; i < 20; i++) {
		int fd = open("/dev/llmp", O_RDWR);
		int m;
		pid_t pid;

		ASSERT_GE(fd, 0);
		ASSERT_EQ(-1, ioctl(fd, 0x1234, 0));
		ASSERT_EQ(ENOTTY, errno);
		m = memfd_create("canary", 0);
		ASSERT_GE(m, 0);
		ASSERT_EQ(0, ftruncate(m, 4096));
		pid = fork();
		ASSERT_GE(pid, 0);
		if (pid == 0)
			_exit(0);
		ASSERT_EQ(pid, waitpid(pid, NULL, 0));
		close(m);
		close(fd);
	}
}

TEST(misbehave)
{
	const char *mode = getenv("llmp_canary");
	unsigned long cmd;
	int fd;

	if (!mode || !strcmp(mode, "none"))
		SKIP(return, "llmp_canary not set");
	if (!strcmp(mode, "warn"))
		cmd = 0xC0;
	else if (!strcmp(mode, "leak"))
		cmd = 0xC1;
	else if (!strcmp(mode, "oops"))
		cmd = 0xC2;
	else
		SKIP(return, "unknown llmp_canary");
	fd = open("/dev/llmp", O_RDWR);
	ASSERT_GE(fd, 0);
	ioctl(fd, cmd, 0);
	close(fd);
}

TEST_HARNESS_MAIN
