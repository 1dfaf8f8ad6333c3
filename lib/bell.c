// SPDX-License-Identifier: MIT OR Apache-2.0
/* Doorbells over /dev/llmp (see include/llmp/bell.h and kmod/llmp.c). */
#include <stdlib.h>
#include "llmp/bell.h"
#include "internal.h"

#if defined(__linux__)

#include <fcntl.h>
#include <poll.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "uapi/linux/llmp.h"
#include "kmod_internal.h"

struct llmp_bell {
	int fd;
};

int llmp_bell_new(struct llmp_bell **out)
{
	struct llmp_bell_create req;
	struct llmp_bell *b;
	int dev, ret;

	if (!out)
		return llmp_err(-EINVAL, "bell_new: NULL out pointer");
	*out = NULL;
	dev = llmp_kmod_open_dev();
	if (dev < 0)
		return dev;
	memset(&req, 0, sizeof(req));
	req.fd_flags = O_CLOEXEC | O_NONBLOCK;
	ret = ioctl(dev, LLMP_IOC_BELL_CREATE, &req) < 0 ? -errno : 0;
	close(dev);
	if (ret < 0)
		return llmp_err(ret, "bell_new: %s", strerror(-ret));
	b = calloc(1, sizeof(*b));
	if (!b) {
		close(req.fd);
		return llmp_err(-ENOMEM, "bell_new: out of memory");
	}
	b->fd = req.fd;
	*out = b;
	return 0;
}

void llmp_bell_free(struct llmp_bell *b)
{
	if (!b)
		return;
	close(b->fd);
	free(b);
}

int llmp_bell_fd(const struct llmp_bell *b)
{
	return b ? b->fd : llmp_err(-EINVAL, "bell_fd: NULL bell");
}

static int seg_fd(const struct llmp_shmem *seg, const char *what)
{
	if (!seg)
		return llmp_err(-EINVAL, "%s: NULL segment", what);
	if (seg->p->kind != LLMP_SHMEM_KMOD || seg->fd < 0)
		return llmp_err(-EOPNOTSUPP, "%s: bells need a KMOD segment, this one is %s", what,
				llmp_shmem_kind_name(seg->p->kind));
	return seg->fd;
}

int llmp_bell_bind(struct llmp_shmem *seg, struct llmp_bell *b, uint32_t cookie)
{
	struct llmp_seg_bind req;
	int fd = seg_fd(seg, "bell_bind");

	if (fd < 0)
		return fd;
	if (!b && cookie)
		return llmp_err(-EINVAL, "bell_bind: unbinding takes cookie 0");
	memset(&req, 0, sizeof(req));
	req.bell_fd = b ? b->fd : -1;
	req.cookie = cookie;
	if (ioctl(fd, LLMP_IOC_SEG_BIND, &req) < 0) {
		if (errno == EPERM)
			return llmp_err(-EPERM, "bell_bind: segment %s was attached, not created "
					"here: only its creator binds it to a bell",
					seg->desc.id);
		return llmp_err(-errno, "bell_bind: %s", strerror(errno));
	}
	return 0;
}

int llmp_bell_ring(struct llmp_shmem *seg)
{
	int fd = seg_fd(seg, "bell_ring");

	if (fd < 0)
		return fd;
	if (ioctl(fd, LLMP_IOC_SEG_RING, 0) < 0)
		return llmp_err(-errno, "bell_ring: %s", strerror(errno));
	return 0;
}

int llmp_bell_read(struct llmp_bell *b, uint32_t *cookies, size_t max)
{
	ssize_t n;

	if (!b || !cookies || !max)
		return llmp_err(-EINVAL, "bell_read: NULL bell or empty buffer");
	if (max > 4096)
		max = 4096;
	/* The fd is O_NONBLOCK: never waits. */
	n = read(b->fd, cookies, max * sizeof(*cookies));
	if (n < 0) {
		if (errno == EAGAIN)
			return 0;
		return llmp_err(-errno, "bell_read: %s", strerror(errno));
	}
	if (n % sizeof(*cookies))
		return llmp_err(-EIO, "bell_read: short read of %zd bytes", n);
	return (int)(n / sizeof(*cookies));
}

int llmp_bell_wait(struct llmp_bell *b, int timeout_ms, uint32_t *cookies, size_t max)
{
	struct pollfd pfd;
	int ret;

	if (!b)
		return llmp_err(-EINVAL, "bell_wait: NULL bell");
	ret = llmp_bell_read(b, cookies, max);
	if (ret != 0)
		return ret;
	pfd.fd = b->fd;
	pfd.events = POLLIN;
	pfd.revents = 0;
	ret = poll(&pfd, 1, timeout_ms);
	if (ret < 0)
		return errno == EINTR ? -EINTR : llmp_err(-errno, "bell_wait: poll: %s",
							   strerror(errno));
	if (ret == 0)
		return 0;
	return llmp_bell_read(b, cookies, max);
}

#else /* !__linux__ */

static int bell_unavail(void)
{
	return llmp_err(-ENODEV, "bells need /dev/llmp, which exists only on Linux");
}

int llmp_bell_new(struct llmp_bell **out)
{
	if (out)
		*out = NULL;
	return bell_unavail();
}

void llmp_bell_free(struct llmp_bell *b)
{
}

int llmp_bell_fd(const struct llmp_bell *b)
{
	return bell_unavail();
}

int llmp_bell_bind(struct llmp_shmem *seg, struct llmp_bell *b, uint32_t cookie)
{
	return bell_unavail();
}

int llmp_bell_ring(struct llmp_shmem *seg)
{
	return bell_unavail();
}

int llmp_bell_read(struct llmp_bell *b, uint32_t *cookies, size_t max)
{
	return bell_unavail();
}

int llmp_bell_wait(struct llmp_bell *b, int timeout_ms, uint32_t *cookies, size_t max)
{
	return bell_unavail();
}

#endif
