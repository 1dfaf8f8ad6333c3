// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * Watching a peer process for exit (a client's page creator, the broker of a
 * broadcast page): a pidfd where the kernel has one (it also sees an
 * unreaped zombie as exited), else kill(pid, 0).  Nothing on Windows.
 */
#include <errno.h>
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
#if !defined(_WIN32)
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
	(void)pid;
	return 0;
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
	(void)w;
	return 0;
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
