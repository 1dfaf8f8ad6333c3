// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * Watching a peer process for exit (a client's page creator, the broker of a
 * broadcast page): a pidfd where the kernel has one (it also sees an
 * unreaped zombie as exited), else kill(pid, 0) and, on Linux, the state in
 * /proc/<pid>/stat (a zombie, Z, or a dead task, X, has exited although
 * kill() still finds it).
 *
 * Windows: a process handle opened with SYNCHRONIZE, polled with
 * WaitForSingleObject(h, 0); it is signalled once the process has exited.
 * The handle is kept in w->fd: Windows guarantees that handles fit in 32
 * bits (HandleToLong/LongToHandle, for 32/64-bit interop).  Holding the
 * handle keeps the process object, so its id cannot be reused while we
 * watch; an id reused between the creator's exit and set() is watched as
 * if it were the creator (as with a pid on Linux without a pidfd).  A
 * process we may not open (another user's: ERROR_ACCESS_DENIED) is
 * unknown, never "dead".
 */
#include <errno.h>
#if defined(_WIN32)
#include <windows.h>
#endif
#if !defined(_WIN32)
#include <poll.h>
#include <signal.h>
#include <unistd.h>
#endif
#if defined(__linux__)
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#endif

#include "internal.h"

#if defined(__linux__)
/* Read /proc/<pid>/<file> into buf (NUL-terminated); bytes read, or -errno. */
static int proc_read(long pid, const char *file, char *buf, size_t cap)
{
	char path[64];
	ssize_t n;
	int fd, err;

	snprintf(path, sizeof(path), "/proc/%ld/%s", pid, file);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	n = read(fd, buf, cap - 1);
	err = errno;
	close(fd);
	if (n < 0)
		return -err;
	buf[n] = '\0';
	return (int)n;
}

/* 1: /proc says pid is a zombie (Z) or dead (X); 0: another state; -errno: unreadable. */
static int proc_state_dead(long pid)
{
	char buf[512], *p;
	int n = proc_read(pid, "stat", buf, sizeof(buf));

	if (n < 0)
		return n;
	/* "pid (comm) S ...": comm may hold anything, the state follows the last ')' */
	p = strrchr(buf, ')');
	if (!p || p[1] != ' ' || !p[2])
		return -EINVAL;
	return p[2] == 'Z' || p[2] == 'X';
}
#endif

int llmp_pid_exiting(long pid)
{
#if defined(__linux__)
	char buf[128];
	unsigned long size = 1;
	int n;

	if (pid <= 0)
		return 0;
	if (kill((pid_t)pid, 0) < 0 && errno == ESRCH)
		return 1;
	if (proc_state_dead(pid) == 1)
		return 1;
	/* past exit_mm(): no address space any more (statm reads all zeros) */
	n = proc_read(pid, "statm", buf, sizeof(buf));
	if (n > 0 && sscanf(buf, "%lu", &size) == 1 && size == 0)
		return 1;
	return n == -ENOENT || n == -ESRCH ? kill((pid_t)pid, 0) < 0 && errno == ESRCH : 0;
#else
	(void)pid;
	return 0;
#endif
}

void llmp_pidwatch_close(struct llmp_pidwatch *w)
{
#if defined(_WIN32)
	if (w->fd != -1)
		CloseHandle(LongToHandle(w->fd));
#else
	if (w->fd >= 0)
		close(w->fd);
#endif
	w->fd = -1;
	w->pid = 0;
}

int llmp_pidwatch_set(struct llmp_pidwatch *w, long pid)
{
	llmp_pidwatch_close(w);
#if defined(_WIN32)
	{
		HANDLE h;

		if (pid <= 0 || pid > 0x7fffffffL || (DWORD)pid == GetCurrentProcessId())
			return 0; /* unknown, or ourselves */
		w->pid = pid;
		h = OpenProcess(SYNCHRONIZE, FALSE, (DWORD)pid);
		if (h) {
			w->fd = HandleToLong(h);
			return 0;
		}
		/* no such process (any more): ERROR_INVALID_PARAMETER */
		if (GetLastError() == ERROR_INVALID_PARAMETER)
			return 1;
		w->pid = 0; /* e.g. access denied: unknown */
		return 0;
	}
#else
	if (pid <= 0 || pid == (long)getpid())
		return 0; /* unknown, or ourselves: alive as long as we are */
	w->pid = pid;
#if defined(__linux__)
	{
		long fd = syscall(SYS_pidfd_open, (pid_t)pid, 0);

		if (fd >= 0)
			w->fd = (int)fd;
		else if (errno == ESRCH)
			return 1;
	}
#endif
	return 0;
#endif
}

int llmp_pidwatch_dead(const struct llmp_pidwatch *w)
{
#if defined(_WIN32)
	if (w->pid <= 0)
		return 0;
	if (w->fd == -1)
		return 1; /* set() found no such process */
	/* a process handle is signalled when the process has exited */
	return WaitForSingleObject(LongToHandle(w->fd), 0) == WAIT_OBJECT_0;
#else
	if (w->pid <= 0)
		return 0;
	if (w->fd >= 0) {
		struct pollfd pfd = { .fd = w->fd, .events = POLLIN };

		/* a pidfd turns readable when its process has exited (zombie or reaped) */
		return poll(&pfd, 1, 0) > 0 && (pfd.revents & (POLLIN | POLLHUP | POLLERR));
	}
	if (kill((pid_t)w->pid, 0) < 0)
		return errno == ESRCH;
#if defined(__linux__)
	/* kill() finds a zombie too: it has exited all the same */
	return proc_state_dead(w->pid) == 1;
#else
	return 0;
#endif
#endif
}
