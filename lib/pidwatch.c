// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * Watching a peer process for exit (a client's page creator, the broker of a
 * broadcast page): a pidfd where the kernel has one (it also sees an
 * unreaped zombie as exited), else kill(pid, 0).
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
#include <sys/syscall.h>
#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#endif

#include "internal.h"

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
	return kill((pid_t)w->pid, 0) < 0 && errno == ESRCH;
#endif
}
