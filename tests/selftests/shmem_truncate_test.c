// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * A peer must not crash a reader by resizing a segment under it.
 * MEMFD: sealed, every resize fails with EPERM.  POSIX: the attacher checks
 * the real size first and refuses a shrunk object; a shrink after mapping
 * still raises SIGBUS (the documented risk, shown here).  Untrusted fds
 * named by a memfd id (unsealed memfd, pipe, device) are refused.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kselftest_harness.h"
#include "llmp_test.h"

/* The SIGBUS test needs the signal to reach the kernel's default action. */
const char *__asan_default_options(void);
const char *__asan_default_options(void)
{
	return "handle_sigbus=0";
}

static int new_provider(enum llmp_shmem_kind kind, struct llmp_provider **p, char *why,
			size_t len)
{
	int ret = llmp_provider_new(kind, p);

	if (ret < 0)
		snprintf(why, len, "%s", llmp_strerror_last());
	return ret;
}

static int wait_exit(pid_t pid)
{
	int status;

	if (waitpid(pid, &status, 0) != pid)
		return -1;
	if (WIFSIGNALED(status))
		return 1000 + WTERMSIG(status);
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

TEST(posix_shrunk_before_attach_is_refused)
{
	struct llmp_provider *p;
	struct llmp_shmem *m, *a = NULL;
	struct llmp_shmem_desc d;
	char why[256];
	pid_t pid;

	if (new_provider(LLMP_SHMEM_POSIX, &p, why, sizeof(why)) < 0)
		SKIP(return, "posix provider: %s", why);
	ASSERT_EQ(0, llmp_shmem_new(p, 1 << 20, &m));
	d = *llmp_shmem_desc(m);
	/* The peer shrinks the object after the description was made. */
	pid = fork();
	ASSERT_GE(pid, 0);
	if (pid == 0) {
		int fd = shm_open(d.id, O_RDWR, 0);

		if (fd < 0 || ftruncate(fd, 4096) < 0)
			_exit(1);
		_exit(0);
	}
	ASSERT_EQ(0, wait_exit(pid));
	ASSERT_EQ(-EBADMSG, llmp_shmem_attach(p, &d, &a));
	ASSERT_EQ(NULL, a);
	ASSERT_NE(NULL, strstr(llmp_strerror_last(), "has 4096 bytes"));
	/* What is left is still attachable with an honest description. */
	d.size = 4096;
	ASSERT_EQ(0, llmp_shmem_attach(p, &d, &a));
	((volatile char *)llmp_shmem_addr(a))[4095] = 1;
	llmp_shmem_put(a);
	llmp_shmem_put(m);
	llmp_provider_free(p);
}

TEST(posix_shrink_after_map_raises_sigbus)
{
	struct llmp_provider *p;
	struct llmp_shmem *m;
	char why[256];
	pid_t pid;

	if (new_provider(LLMP_SHMEM_POSIX, &p, why, sizeof(why)) < 0)
		SKIP(return, "posix provider: %s", why);
	ASSERT_EQ(0, llmp_shmem_new(p, 1 << 20, &m));
	pid = fork();
	ASSERT_GE(pid, 0);
	if (pid == 0) {
		struct llmp_shmem *a;
		volatile char *b;
		int fd;

		if (llmp_shmem_attach(p, llmp_shmem_desc(m), &a) < 0)
			_exit(2);
		b = llmp_shmem_addr(a);
		b[(1 << 20) - 1] = 1; /* fine while the object is whole */
		fd = shm_open(llmp_shmem_desc(m)->id, O_RDWR, 0);
		if (fd < 0 || ftruncate(fd, 4096) < 0)
			_exit(3);
		b[(1 << 20) - 1] = 2; /* past the new end: SIGBUS */
		_exit(4);
	}
	/* The remaining risk of POSIX segments, as documented in shmem.rst. */
	ASSERT_EQ(1000 + SIGBUS, wait_exit(pid));
	llmp_shmem_put(m);
	llmp_provider_free(p);
}

/* fd number of a memfd id "m<pid>:<fd>". */
static int memfd_fd_of(const struct llmp_shmem *m)
{
	long pid, fd;

	if (sscanf(llmp_shmem_desc(m)->id, "m%ld:%ld", &pid, &fd) != 2)
		return -1;
	return (int)fd;
}

TEST(memfd_cannot_be_resized_by_a_peer)
{
	struct llmp_provider *p;
	struct llmp_shmem *m;
	struct stat st;
	char why[256];
	int fd;
	pid_t pid;

	if (new_provider(LLMP_SHMEM_MEMFD, &p, why, sizeof(why)) < 0)
		SKIP(return, "memfd provider: %s", why);
	ASSERT_EQ(0, llmp_shmem_new(p, 1 << 20, &m));
	fd = memfd_fd_of(m);
	ASSERT_GE(fd, 0);
	pid = fork();
	ASSERT_GE(pid, 0);
	if (pid == 0) {
		char path[64];
		int pfd;

		/* The peer reaches the segment the way an attacher does. */
		snprintf(path, sizeof(path), "/proc/%ld/fd/%d", (long)getppid(), fd);
		pfd = open(path, O_RDWR);
		if (pfd < 0)
			_exit(1);
		if (ftruncate(pfd, 4096) == 0 || errno != EPERM)
			_exit(2);
		if (ftruncate(pfd, 2 << 20) == 0 || errno != EPERM)
			_exit(3);
		if (fallocate(pfd, 0, 0, 4 << 20) == 0 || errno != EPERM)
			_exit(4);
		/* F_SEAL_SEAL: no new seals (e.g. F_SEAL_WRITE) can be added either. */
		if (fcntl(pfd, F_ADD_SEALS, F_SEAL_WRITE) == 0 || errno != EPERM)
			_exit(5);
		_exit(0);
	}
	ASSERT_EQ(0, wait_exit(pid));
	ASSERT_EQ(0, fstat(fd, &st));
	ASSERT_EQ(1 << 20, st.st_size);
	ASSERT_EQ(-1, ftruncate(fd, 0));
	ASSERT_EQ(EPERM, errno);
	((volatile char *)llmp_shmem_addr(m))[(1 << 20) - 1] = 7;
	llmp_shmem_put(m);
	llmp_provider_free(p);
}

static int attach_fd_as_memfd(struct llmp_provider *p, int fd, size_t size)
{
	struct llmp_shmem_desc d;
	struct llmp_shmem *m = NULL;
	int ret;

	memset(&d, 0, sizeof(d));
	d.kind = LLMP_SHMEM_MEMFD;
	d.size = size;
	snprintf(d.id, sizeof(d.id), "m%ld:%d", (long)getpid(), fd);
	ret = llmp_shmem_attach(p, &d, &m);
	if (ret == 0) {
		llmp_shmem_put(m);
		return 1;
	}
	return ret;
}

TEST(memfd_attach_refuses_unsealed_and_foreign_fds)
{
	struct llmp_provider *p;
	char why[256];
	int mfd, pipefd[2], nullfd;

	if (new_provider(LLMP_SHMEM_MEMFD, &p, why, sizeof(why)) < 0)
		SKIP(return, "memfd provider: %s", why);
	/* An unsealed memfd could be shrunk under us. */
	mfd = (int)syscall(SYS_memfd_create, "peer-unsealed", MFD_CLOEXEC);
	ASSERT_GE(mfd, 0);
	ASSERT_EQ(0, ftruncate(mfd, 65536));
	ASSERT_EQ(-EBADMSG, attach_fd_as_memfd(p, mfd, 65536));
	ASSERT_NE(NULL, strstr(llmp_strerror_last(), "sealed"));
	/* A pipe: opened non-blocking, refused, no hang. */
	ASSERT_EQ(0, pipe(pipefd));
	ASSERT_EQ(-EBADMSG, attach_fd_as_memfd(p, pipefd[0], 4096));
	/* A device. */
	nullfd = open("/dev/null", O_RDWR);
	ASSERT_GE(nullfd, 0);
	ASSERT_EQ(-EBADMSG, attach_fd_as_memfd(p, nullfd, 4096));
	/* A closed fd number. */
	close(nullfd);
	ASSERT_EQ(-ENOENT, attach_fd_as_memfd(p, nullfd, 4096));
	close(pipefd[0]);
	close(pipefd[1]);
	close(mfd);
	llmp_provider_free(p);
}

TEST_HARNESS_MAIN
