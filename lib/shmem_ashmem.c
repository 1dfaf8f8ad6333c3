// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * ashmem provider: Android's /dev/ashmem (built only for Android).
 *
 * A segment is one open of the ashmem device: ASHMEM_SET_NAME, then
 * ASHMEM_SET_SIZE, then mmap MAP_SHARED.  The device is /dev/ashmem<boot_id>
 * when that node exists (newer Android), else /dev/ashmem, the same lookup
 * LibAFL does.
 *
 * Printable id: "a<pid>:<fd>", the creator's pid and fd number; the region
 * is named "llmp-<pid>-<fd>".  An ashmem region is reachable only through
 * its fd (opening /proc/<pid>/fd/<fd> opens a new, empty region), so attach
 * works in the creating process and in its forked children, which inherit
 * the fd: the fd of that number must be an ashmem region of that name.
 * Unrelated processes share ashmem through the SERVED provider, which
 * passes the fd over a Unix socket.
 *
 * Ashmem regions cannot be resized after the first mmap, so a mapped
 * reader cannot be hit by a shrink.  The memory is freed with the last fd
 * and mapping, also after SIGKILL.
 */
#include "internal.h"

#if defined(__ANDROID__)

#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* The ashmem ioctl ABI (include/uapi/linux/ashmem.h in Android kernels). */
#define LLMP_ASHMEM_NAME_LEN 256
#define LLMP_ASHMEM_IOC 0x77
#define LLMP_ASHMEM_SET_NAME _IOW(LLMP_ASHMEM_IOC, 1, char[LLMP_ASHMEM_NAME_LEN])
#define LLMP_ASHMEM_GET_NAME _IOR(LLMP_ASHMEM_IOC, 2, char[LLMP_ASHMEM_NAME_LEN])
#define LLMP_ASHMEM_SET_SIZE _IOW(LLMP_ASHMEM_IOC, 3, size_t)
#define LLMP_ASHMEM_GET_SIZE _IO(LLMP_ASHMEM_IOC, 4)

/* Fill path with the ashmem device node to open. */
static void ashmem_device(char *path, size_t len)
{
	char boot_id[64] = "";
	int fd = open("/proc/sys/kernel/random/boot_id", O_RDONLY | O_CLOEXEC);

	snprintf(path, len, "/dev/ashmem");
	if (fd >= 0) {
		ssize_t n = read(fd, boot_id, sizeof(boot_id) - 1);

		close(fd);
		while (n > 0 && (boot_id[n - 1] == '\n' || boot_id[n - 1] == ' '))
			n--;
		if (n > 0) {
			char alt[96];

			boot_id[n] = 0;
			snprintf(alt, sizeof(alt), "/dev/ashmem%s", boot_id);
			if (access(alt, R_OK | W_OK) == 0)
				snprintf(path, len, "%s", alt);
		}
	}
}

static int ashmem_probe(void)
{
	char path[96];

	ashmem_device(path, sizeof(path));
	if (access(path, R_OK | W_OK) < 0)
		return llmp_err(-ENODEV, "ashmem: cannot use %s: %s", path, strerror(errno));
	return 0;
}

/* Parse "a<pid>:<fd>": decimal, no sign, no leading zeros, in range. */
static int ashmem_parse_id(const char *id, long *pid, long *fd)
{
	const char *s = id;
	long v[2];

	if (*s++ != 'a')
		return -EINVAL;
	for (int i = 0; i < 2; i++) {
		long x = 0;
		const char *start = s;

		while (*s >= '0' && *s <= '9') {
			x = x * 10 + (*s - '0');
			if (x > INT_MAX)
				return -EINVAL;
			s++;
		}
		if (s == start || (s - start > 1 && *start == '0'))
			return -EINVAL;
		if (*s != (i == 0 ? ':' : '\0'))
			return -EINVAL;
		s++;
		v[i] = x;
	}
	if (v[0] < 1)
		return -EINVAL;
	*pid = v[0];
	*fd = v[1];
	return 0;
}

static int ashmem_map(struct llmp_shmem *m, int fd, size_t size)
{
	void *addr = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);

	if (addr == MAP_FAILED)
		return llmp_err(-errno, "ashmem: mmap of %zu bytes: %s", size, strerror(errno));
	m->addr = addr;
	m->size = size;
	m->fd = fd;
	return 0;
}

static int ashmem_create(struct llmp_provider *p, size_t size, struct llmp_shmem *m)
{
	char path[96], name[LLMP_ASHMEM_NAME_LEN];
	int fd, ret;

	(void)p;
	ashmem_device(path, sizeof(path));
	fd = open(path, O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return llmp_err(-errno, "ashmem: open %s: %s", path, strerror(errno));
	memset(name, 0, sizeof(name));
	snprintf(name, sizeof(name), "llmp-%ld-%d", (long)getpid(), fd);
	if (ioctl(fd, LLMP_ASHMEM_SET_NAME, name) < 0 ||
	    ioctl(fd, LLMP_ASHMEM_SET_SIZE, size) < 0) {
		ret = -errno;
		close(fd);
		return llmp_err(ret, "ashmem: naming/sizing a region of %zu bytes: %s", size,
				strerror(-ret));
	}
	ret = ashmem_map(m, fd, size);
	if (ret < 0) {
		close(fd);
		return ret;
	}
	snprintf(m->desc.id, LLMP_SHMEM_ID_LEN, "a%ld:%d", (long)getpid(), fd);
	return 0;
}

static int ashmem_attach(struct llmp_provider *p, const struct llmp_shmem_desc *d,
			 struct llmp_shmem *m)
{
	char want[LLMP_ASHMEM_NAME_LEN], got[LLMP_ASHMEM_NAME_LEN];
	struct stat st;
	long pid, nfd;
	int size, fd, ret;

	(void)p;
	if (ashmem_parse_id(d->id, &pid, &nfd) < 0)
		return llmp_err(-EINVAL, "ashmem: id '%.19s' is not a<pid>:<fd>", d->id);
	if (d->size > SIZE_MAX)
		return llmp_err(-E2BIG, "ashmem: size %llu does not fit this address space",
				(unsigned long long)d->size);
	memset(got, 0, sizeof(got));
	snprintf(want, sizeof(want), "llmp-%ld-%ld", pid, nfd);
	if (fstat((int)nfd, &st) < 0 || !S_ISCHR(st.st_mode) ||
	    ioctl((int)nfd, LLMP_ASHMEM_GET_NAME, got) < 0 || strcmp(got, want))
		return llmp_err(-ENOENT, "ashmem: segment %s is not an fd of this process (ashmem "
				"is shared by fd: fork, or use the served provider)", d->id);
	size = ioctl((int)nfd, LLMP_ASHMEM_GET_SIZE, NULL);
	if (size < 0 || (unsigned long long)size < d->size)
		return llmp_err(-EBADMSG, "ashmem: segment %s has %d bytes, the description says "
				"%llu", d->id, size, (unsigned long long)d->size);
	fd = fcntl((int)nfd, F_DUPFD_CLOEXEC, 0);
	if (fd < 0)
		return llmp_err(-errno, "ashmem: dup of fd %ld: %s", nfd, strerror(errno));
	ret = ashmem_map(m, fd, (size_t)d->size);
	if (ret < 0)
		close(fd);
	return ret;
}

const struct llmp_shmem_ops llmp_shmem_ashmem_ops = {
	.kind = LLMP_SHMEM_ASHMEM,
	.probe = ashmem_probe,
	.create = ashmem_create,
	.attach = ashmem_attach,
	.release = llmp_shmem_release_fd_mapping,
};

#else

LLMP_SHMEM_UNAVAILABLE_OPS(ashmem, LLMP_SHMEM_ASHMEM, "ashmem provider: /dev/ashmem exists only on Android");

#endif
