// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * memfd provider: anonymous shared memory from memfd_create(2).
 *
 * A segment is a memfd of exactly the requested size, sealed with
 * F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL right after ftruncate, so no
 * process holding it can ever change its size (a reader cannot be hit by
 * SIGBUS from a shrink).  Nothing has a name in /dev/shm: the memory is
 * freed when the last fd and the last mapping are gone, including after
 * SIGKILL.
 *
 * Printable id: "m<pid>:<fd>:<gen>", the creator's pid, its fd number and
 * the low decimal digits of a per-process generation counter, as many as
 * fit in 19 characters (none, and no second colon, if pid and fd already
 * fill them).  The memfd is named "llmp-<pid>-<generation>", so an
 * attacher that finds another memfd behind a reused fd number reports the
 * segment as gone instead of mapping the wrong memory.
 *
 * Another process of the same user attaches by opening /proc/<pid>/fd/<fd>,
 * which needs the creator alive and ptrace-read access to it (same uid,
 * not dumpable-restricted).  Sharing between unrelated processes or users
 * is what SERVED is for.
 */
#include "internal.h"

#if defined(__linux__)

#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef MFD_CLOEXEC
#define MFD_CLOEXEC 0x0001U
#endif
#ifndef MFD_ALLOW_SEALING
#define MFD_ALLOW_SEALING 0x0002U
#endif
#ifndef F_ADD_SEALS
#define F_ADD_SEALS 1033
#define F_GET_SEALS 1034
#define F_SEAL_SEAL 0x0001
#define F_SEAL_SHRINK 0x0002
#define F_SEAL_GROW 0x0004
#endif

#define MEMFD_SEALS (F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL)

/* Only for distinct memfd names (visible in /proc/<pid>/fd); no ordering needed. */
static atomic_uint memfd_counter;

static int memfd_probe(void)
{
	int fd = (int)syscall(SYS_memfd_create, "llmp-probe", MFD_CLOEXEC | MFD_ALLOW_SEALING);

	if (fd < 0)
		return llmp_err(-ENODEV, "memfd: memfd_create is not available: %s",
				strerror(errno));
	close(fd);
	return 0;
}

/* Decimal digits of the generation that fit after "m<pid>:<fd>" and a colon. */
static int memfd_gen_digits(size_t base_len)
{
	long room = (long)LLMP_SHMEM_ID_LEN - 1 - (long)base_len - 1;

	return room < 1 ? 0 : room > 9 ? 9 : (int)room;
}

static unsigned long pow10u(int n)
{
	unsigned long v = 1;

	while (n-- > 0)
		v *= 10;
	return v;
}

/* One strict decimal: digits only, no sign, no leading zero, <= max. */
static const char *parse_dec(const char *s, long max, long *out)
{
	const char *start = s;
	long x = 0;

	while (*s >= '0' && *s <= '9') {
		x = x * 10 + (*s - '0');
		if (x > max)
			return NULL;
		s++;
	}
	if (s == start || (s - start > 1 && *start == '0'))
		return NULL;
	*out = x;
	return s;
}

/*
 * Parse "m<pid>:<fd>[:<gen>]".  *gen_digits is how many generation digits
 * the creator wrote (0: none, the id had no room); a generation must be
 * present exactly when there is room for one.
 */
static int memfd_parse_id(const char *id, long *pid, long *fd, long *gen, int *gen_digits)
{
	const char *s = id;

	if (*s++ != 'm')
		return -EINVAL;
	s = parse_dec(s, INT_MAX, pid);
	if (!s || *s++ != ':' || *pid < 1)
		return -EINVAL;
	s = parse_dec(s, INT_MAX, fd);
	if (!s)
		return -EINVAL;
	*gen_digits = memfd_gen_digits((size_t)(s - id));
	*gen = -1;
	if (*s == ':') {
		if (!*gen_digits)
			return -EINVAL;
		s = parse_dec(s + 1, (long)pow10u(*gen_digits) - 1, gen);
		if (!s)
			return -EINVAL;
	}
	if (*s)
		return -EINVAL;
	return 0;
}

/*
 * Does the memfd open as fd carry the generation the id names?  Its
 * /proc/self/fd link reads "/memfd:llmp-<pid>-<generation> (deleted)".
 * Ids without a generation (no room, or not made by us) are not checked.
 */
static bool memfd_gen_matches(int fd, long pid, long gen, int gen_digits)
{
	char path[64], link[128], want[48];
	unsigned long full;
	ssize_t n;
	int used;
	char *end;

	if (gen < 0)
		return true;
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	n = readlink(path, link, sizeof(link) - 1);
	if (n <= 0)
		return false;
	link[n] = 0;
	used = snprintf(want, sizeof(want), "/memfd:llmp-%ld-", pid);
	if (strncmp(link, want, (size_t)used))
		return false;
	if (link[used] < '0' || link[used] > '9')
		return false;
	errno = 0;
	full = strtoul(link + used, &end, 10);
	if (errno || strcmp(end, " (deleted)"))
		return false;
	return full % pow10u(gen_digits) == (unsigned long)gen;
}

static int memfd_map(struct llmp_shmem *m, int fd, size_t size)
{
	void *addr = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);

	if (addr == MAP_FAILED)
		return llmp_err(-errno, "memfd: mmap of %zu bytes: %s", size, strerror(errno));
	m->addr = addr;
	m->size = size;
	m->fd = fd;
	llmp_shmem_note_file(m, fd);
	return 0;
}

static int memfd_create_seg(struct llmp_provider *p, size_t size, struct llmp_shmem *m)
{
	char name[32];
	int fd, ret, n;
	/* Relaxed: the value only has to differ between calls. */
	unsigned c = atomic_fetch_add_explicit(&memfd_counter, 1, memory_order_relaxed);

	(void)p;
	snprintf(name, sizeof(name), "llmp-%ld-%u", (long)getpid(), c);
	fd = (int)syscall(SYS_memfd_create, name, MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (fd < 0)
		return llmp_err(-errno, "memfd: memfd_create: %s", strerror(errno));
	if (ftruncate(fd, (off_t)size) < 0) {
		ret = -errno;
		close(fd);
		if (ret == -EFBIG || ret == -EINVAL)
			ret = -E2BIG;
		return llmp_err(ret, "memfd: sizing a segment to %zu bytes failed", size);
	}
	if (fcntl(fd, F_ADD_SEALS, MEMFD_SEALS) < 0) {
		ret = -errno;
		close(fd);
		return llmp_err(ret, "memfd: sealing the segment: %s", strerror(-ret));
	}
	ret = memfd_map(m, fd, size);
	if (ret < 0) {
		close(fd);
		return ret;
	}
	n = snprintf(m->desc.id, LLMP_SHMEM_ID_LEN, "m%ld:%d", (long)getpid(), fd);
	if (n > 0 && n < LLMP_SHMEM_ID_LEN && memfd_gen_digits((size_t)n))
		snprintf(m->desc.id + n, (size_t)(LLMP_SHMEM_ID_LEN - n), ":%lu",
			 (unsigned long)c % pow10u(memfd_gen_digits((size_t)n)));
	if (n < 0 || n >= LLMP_SHMEM_ID_LEN) {
		munmap(m->addr, m->size);
		close(fd);
		m->addr = NULL;
		m->fd = -1;
		return llmp_err(-EOVERFLOW, "memfd: id of pid %ld fd %d does not fit %d bytes",
				(long)getpid(), fd, LLMP_SHMEM_ID_LEN);
	}
	return 0;
}

static int memfd_attach(struct llmp_provider *p, const struct llmp_shmem_desc *d,
			struct llmp_shmem *m)
{
	char path[64];
	struct stat st;
	long pid, nfd, gen;
	int fd, seals, ret, gen_digits;

	(void)p;
	if (memfd_parse_id(d->id, &pid, &nfd, &gen, &gen_digits) < 0)
		return llmp_err(-EINVAL, "memfd: id '%.19s' is not m<pid>:<fd>[:<gen>]", d->id);
	if (d->size > SIZE_MAX)
		return llmp_err(-E2BIG, "memfd: size %llu does not fit this address space",
				(unsigned long long)d->size);
	snprintf(path, sizeof(path), "/proc/%ld/fd/%ld", pid, nfd);
	/* O_NONBLOCK: a FIFO or device behind that fd must not block us. */
	fd = open(path, O_RDWR | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0) {
		ret = -errno;
		if (ret == -ENOENT || ret == -ESRCH)
			return llmp_err(-ENOENT, "memfd: segment %s is gone (no %s; the creator must "
					"be alive)", d->id, path);
		return llmp_err(ret, "memfd: cannot open %s (same user and ptrace access "
				"needed): %s", path, strerror(-ret));
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		return llmp_err(-EBADMSG, "memfd: %s is not a memfd", path);
	}
	seals = fcntl(fd, F_GET_SEALS);
	if (seals < 0 || (seals & (F_SEAL_SHRINK | F_SEAL_GROW)) != (F_SEAL_SHRINK | F_SEAL_GROW)) {
		close(fd);
		return llmp_err(-EBADMSG, "memfd: %s is not a memfd sealed against resizing", path);
	}
	if (!memfd_gen_matches(fd, pid, gen, gen_digits)) {
		close(fd);
		return llmp_err(-ENOENT, "memfd: segment %s is gone (fd %ld of pid %ld now holds "
				"another memfd)", d->id, nfd, pid);
	}
	if ((unsigned long long)st.st_size < d->size) {
		close(fd);
		return llmp_err(-EBADMSG, "memfd: segment %s has %lld bytes, the description "
				"says %llu", d->id, (long long)st.st_size,
				(unsigned long long)d->size);
	}
	/* The mapping keeps the memfd alive; only the creator's fd is named by the id. */
	ret = memfd_map(m, fd, (size_t)d->size);
	close(fd);
	m->fd = -1;
	return ret;
}

const struct llmp_shmem_ops llmp_shmem_memfd_ops = {
	.kind = LLMP_SHMEM_MEMFD,
	.probe = memfd_probe,
	.create = memfd_create_seg,
	.attach = memfd_attach,
	.release = llmp_shmem_release_fd_mapping,
};

#else

LLMP_SHMEM_UNAVAILABLE_OPS(memfd, LLMP_SHMEM_MEMFD, "memfd provider: memfd_create exists only on Linux");

#endif
