// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * What a SIGKILLed creator leaves behind, per kind.  MEMFD: nothing (no
 * process holds the memfd any more, no /dev/shm entry, the id no longer
 * attaches).  POSIX and SYSV: the name / segment stays (the documented
 * leak); the test asserts it, then removes it so the run stays clean.
 * A SIGKILLed attacher never destroys the owner's segment.
 */
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/mman.h>
#include <sys/shm.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kselftest_harness.h"
#include "llmp_test.h"

struct victim {
	pid_t pid;
	struct llmp_shmem_desc d;
};

/*
 * Fork a child that creates a segment of kind and size, fills it, sends
 * its description up a pipe and waits to be killed.
 */
static int start_victim(enum llmp_shmem_kind kind, size_t size, struct victim *v)
{
	int pfd[2];
	ssize_t n;

	if (pipe(pfd) < 0)
		return -errno;
	v->pid = fork();
	if (v->pid < 0)
		return -errno;
	if (v->pid == 0) {
		struct llmp_provider *p;
		struct llmp_shmem *m;

		close(pfd[0]);
		if (llmp_provider_new(kind, &p) < 0 || llmp_shmem_new(p, size, &m) < 0)
			_exit(1);
		memset(llmp_shmem_addr(m), 0x5c, size);
		if (write(pfd[1], llmp_shmem_desc(m), sizeof(struct llmp_shmem_desc)) !=
		    sizeof(struct llmp_shmem_desc))
			_exit(2);
		for (;;)
			pause();
	}
	close(pfd[1]);
	n = read(pfd[0], &v->d, sizeof(v->d));
	close(pfd[0]);
	if (n != sizeof(v->d)) {
		kill(v->pid, SIGKILL);
		waitpid(v->pid, NULL, 0);
		return -EIO;
	}
	return 0;
}

static int kill_victim(struct victim *v)
{
	int status;

	if (kill(v->pid, SIGKILL) < 0 || waitpid(v->pid, &status, 0) != v->pid)
		return -1;
	return WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL ? 0 : -1;
}

/*
 * How many fds and mappings of all processes on the machine refer to the
 * memfd whose /proc fd link reads target ("/memfd:<name> (deleted)").
 */
static int count_holders(const char *target)
{
	DIR *proc = opendir("/proc");
	struct dirent *e;
	char path[600], link[300], line[1024];
	int n = 0;

	if (!proc)
		return -1;
	while ((e = readdir(proc))) {
		DIR *fds;
		struct dirent *f;
		FILE *maps;

		if (e->d_name[0] < '0' || e->d_name[0] > '9')
			continue;
		snprintf(path, sizeof(path), "/proc/%s/fd", e->d_name);
		fds = opendir(path);
		while (fds && (f = readdir(fds))) {
			ssize_t l;

			snprintf(path, sizeof(path), "/proc/%s/fd/%s", e->d_name, f->d_name);
			l = readlink(path, link, sizeof(link) - 1);
			if (l > 0) {
				link[l] = 0;
				if (!strcmp(link, target))
					n++;
			}
		}
		if (fds)
			closedir(fds);
		snprintf(path, sizeof(path), "/proc/%s/maps", e->d_name);
		maps = fopen(path, "r");
		while (maps && fgets(line, sizeof(line), maps)) {
			line[strcspn(line, "\n")] = 0;
			size_t ll = strlen(line), tl = strlen(target);

			if (ll >= tl && !strcmp(line + ll - tl, target))
				n++;
		}
		if (maps)
			fclose(maps);
	}
	closedir(proc);
	return n;
}

static int count_shm_entries_with(const char *needle)
{
	DIR *dir = opendir("/dev/shm");
	struct dirent *e;
	int n = 0;

	if (!dir)
		return 0;
	while ((e = readdir(dir)))
		if (strstr(e->d_name, needle))
			n++;
	closedir(dir);
	return n;
}

TEST(memfd_creator_killed_leaves_nothing)
{
	struct llmp_provider *p;
	struct llmp_shmem *a = NULL;
	struct victim v;
	char path[64], target[256], pidstr[16];
	long pid, fd;
	ssize_t l;

	if (llmp_provider_new(LLMP_SHMEM_MEMFD, &p) < 0)
		SKIP(return, "memfd provider: %s", llmp_strerror_last());
	ASSERT_EQ(0, start_victim(LLMP_SHMEM_MEMFD, 8 << 20, &v));
	ASSERT_EQ(2, sscanf(v.d.id, "m%ld:%ld", &pid, &fd));
	ASSERT_EQ(v.pid, pid);
	snprintf(path, sizeof(path), "/proc/%ld/fd/%ld", pid, fd);
	l = readlink(path, target, sizeof(target) - 1);
	ASSERT_GT(l, 0);
	target[l] = 0;
	ASSERT_EQ(0, strncmp(target, "/memfd:llmp-", 12));
	/* The scanner sees the victim's fd and its mapping while it lives. */
	ASSERT_EQ(2, count_holders(target));
	/* Attach while it lives: our data; then let go of it again. */
	ASSERT_EQ(0, llmp_shmem_attach(p, &v.d, &a));
	ASSERT_EQ(0x5c, ((unsigned char *)llmp_shmem_addr(a))[(8 << 20) - 1]);
	llmp_shmem_put(a);
	a = NULL;

	ASSERT_EQ(0, kill_victim(&v));
	/* No process holds the memfd: the kernel has freed it. */
	ASSERT_EQ(0, count_holders(target));
	ASSERT_EQ(-ENOENT, llmp_shmem_attach(p, &v.d, &a));
	ASSERT_EQ(NULL, a);
	snprintf(pidstr, sizeof(pidstr), "_%ld_", pid);
	ASSERT_EQ(0, count_shm_entries_with(pidstr));
	llmp_provider_free(p);
}

TEST(posix_creator_killed_leaks_the_name)
{
	struct llmp_provider *p;
	struct llmp_shmem *a = NULL;
	struct victim v;
	char path[64];
	struct stat st;

	if (llmp_provider_new(LLMP_SHMEM_POSIX, &p) < 0)
		SKIP(return, "posix provider: %s", llmp_strerror_last());
	ASSERT_EQ(0, start_victim(LLMP_SHMEM_POSIX, 65536, &v));
	ASSERT_EQ(0, kill_victim(&v));
	/* Documented: nobody unlinks the name of a killed creator. */
	snprintf(path, sizeof(path), "/dev/shm%s", v.d.id);
	ASSERT_EQ(0, stat(path, &st));
	ASSERT_EQ(65536, st.st_size);
	ASSERT_EQ(0, llmp_shmem_attach(p, &v.d, &a));
	ASSERT_EQ(0x5c, ((unsigned char *)llmp_shmem_addr(a))[65535]);
	llmp_shmem_put(a); /* an attacher's release does not unlink */
	ASSERT_EQ(0, stat(path, &st));
	/* Clean up the leak by hand, as an operator would. */
	ASSERT_EQ(0, shm_unlink(v.d.id));
	ASSERT_EQ(-1, stat(path, &st));
	llmp_provider_free(p);
}

TEST(sysv_creator_killed_leaks_the_segment)
{
	struct llmp_provider *p;
	struct llmp_shmem *a = NULL;
	struct shmid_ds ds;
	struct victim v;
	int id;

	if (llmp_provider_new(LLMP_SHMEM_SYSV, &p) < 0)
		SKIP(return, "sysv provider: %s", llmp_strerror_last());
	ASSERT_EQ(0, start_victim(LLMP_SHMEM_SYSV, 65536, &v));
	ASSERT_EQ(0, kill_victim(&v));
	id = atoi(v.d.id);
	/* Documented: the segment outlives its killed creator, nattch 0. */
	ASSERT_EQ(0, shmctl(id, IPC_STAT, &ds));
	ASSERT_EQ(0, ds.shm_nattch);
	ASSERT_EQ(v.pid, ds.shm_cpid);
	ASSERT_EQ(0, ds.shm_perm.mode & SHM_DEST);
	ASSERT_EQ(0, llmp_shmem_attach(p, &v.d, &a));
	ASSERT_EQ(0x5c, ((unsigned char *)llmp_shmem_addr(a))[65535]);
	llmp_shmem_put(a);
	ASSERT_EQ(0, shmctl(id, IPC_STAT, &ds)); /* an attacher does not remove it */
	/* Clean up the leak by hand (ipcrm -m). */
	ASSERT_EQ(0, shmctl(id, IPC_RMID, NULL));
	ASSERT_EQ(-1, shmctl(id, IPC_STAT, &ds));
	llmp_provider_free(p);
}

/* A killed attacher never destroys the owner's segment, for every kind here. */
TEST(attacher_killed_destroys_nothing)
{
	static const enum llmp_shmem_kind kinds[] = { LLMP_SHMEM_MEMFD, LLMP_SHMEM_POSIX,
						      LLMP_SHMEM_SYSV };
	int tested = 0;

	for (size_t k = 0; k < sizeof(kinds) / sizeof(kinds[0]); k++) {
		struct llmp_provider *p;
		struct llmp_shmem *m, *a;
		int pfd[2], status;
		char c;
		pid_t pid;

		if (llmp_provider_new(kinds[k], &p) < 0)
			continue;
		tested++;
		ASSERT_EQ(0, llmp_shmem_new(p, 65536, &m));
		ASSERT_EQ(0, pipe(pfd));
		pid = fork();
		ASSERT_GE(pid, 0);
		if (pid == 0) {
			close(pfd[0]);
			if (llmp_shmem_attach(p, llmp_shmem_desc(m), &a) < 0)
				_exit(1);
			((unsigned char *)llmp_shmem_addr(a))[100] = 0xee;
			if (write(pfd[1], "x", 1) != 1)
				_exit(2);
			for (;;)
				pause();
		}
		close(pfd[1]);
		ASSERT_EQ(1, read(pfd[0], &c, 1));
		close(pfd[0]);
		ASSERT_EQ(0, kill(pid, SIGKILL));
		ASSERT_EQ(pid, waitpid(pid, &status, 0));
		ASSERT_EQ(0xee, ((unsigned char *)llmp_shmem_addr(m))[100]);
		ASSERT_EQ(0, llmp_shmem_attach(p, llmp_shmem_desc(m), &a));
		ASSERT_EQ(0xee, ((unsigned char *)llmp_shmem_addr(a))[100]);
		llmp_shmem_put(a);
		llmp_shmem_put(m);
		llmp_provider_free(p);
	}
	if (!tested)
		SKIP(return, "no MEMFD, POSIX or SYSV provider on this machine");
}

TEST_HARNESS_MAIN
