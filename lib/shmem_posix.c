// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * POSIX provider: shm_open(3) names (files in /dev/shm on Linux).
 *
 * Printable id: the shm_open name in LibAFL's form, "/libafl_<pid>_<n>",
 * at most 19 characters.  <n> is a per-process counter kept short enough
 * that nothing is cut off (LibAFL keeps the first 18 characters after the
 * slash; our names never need cutting).  Objects are created O_EXCL with
 * mode 0600; a name that already exists is skipped.
 *
 * Lifetime: the creating process shm_unlink()s the name when it releases
 * the segment (a forked child's release does not).  Mappings stay valid
 * until unmapped.  A creator killed before releasing leaves the name in
 * /dev/shm.
 *
 * Truncation: a POSIX object can be resized by anyone who can open it.  The
 * attacher checks the real size with fstat() before mapping and refuses a
 * segment smaller than its description; a peer that shrinks the object
 * after we mapped it still makes our accesses past the new end raise
 * SIGBUS.  MEMFD (sealed) and KMOD do not have that risk.
 */
#include "internal.h"

#if !defined(_WIN32) && !defined(__ANDROID__)

#include <fcntl.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* Longest id: "/" + 18 characters, as LibAFL. */
#define POSIX_NAME_MAX 19

/* Only for distinct names within this process; no ordering needed. */
static atomic_uint posix_counter;

static int posix_probe(void)
{
	return 0;
}

/* "/name": one leading slash, no other slash, not "." or "..", 1..18 characters. */
static int posix_check_name(const char *id)
{
	size_t n = strlen(id);

	if (n < 2 || n > POSIX_NAME_MAX || id[0] != '/' || strchr(id + 1, '/'))
		return -EINVAL;
	if (!strcmp(id, "/.") || !strcmp(id, "/.."))
		return -EINVAL;
	return 0;
}

static int posix_map(struct llmp_shmem *m, int fd, size_t size, const char *id)
{
	void *addr = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);

	if (addr == MAP_FAILED)
		return llmp_err(-errno, "posix: mmap of %zu bytes of %s: %s", size, id,
				strerror(errno));
	m->addr = addr;
	m->size = size;
	llmp_shmem_note_file(m, fd);
	return 0;
}

static int posix_create(struct llmp_provider *p, size_t size, struct llmp_shmem *m)
{
	char name[32];
	unsigned long limit = 1;
	int prefix, fd = -1, ret;

	(void)p;
	prefix = snprintf(name, sizeof(name), "/libafl_%ld_", (long)getpid());
	if (prefix < 0 || prefix + 1 > POSIX_NAME_MAX)
		return llmp_err(-EOVERFLOW, "posix: pid %ld too long for a 19-character name",
				(long)getpid());
	/* Counter values with as many digits as still fit: no truncation needed. */
	for (int i = prefix; i < POSIX_NAME_MAX && limit < 100000000UL; i++)
		limit *= 10;
	for (unsigned long tries = 0; tries < limit && tries < 4096; tries++) {
		/* Relaxed: the value only has to differ between calls. */
		unsigned c = atomic_fetch_add_explicit(&posix_counter, 1, memory_order_relaxed);

		snprintf(name + prefix, sizeof(name) - (size_t)prefix, "%lu",
			 (unsigned long)c % limit);
		fd = shm_open(name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
		if (fd >= 0 || errno != EEXIST)
			break;
	}
	if (fd < 0) {
		ret = errno == EEXIST ? -EEXIST : -errno;
		return llmp_err(ret, "posix: shm_open(%s): %s", name, strerror(-ret));
	}
	if (ftruncate(fd, (off_t)size) < 0) {
		ret = -errno;
		close(fd);
		shm_unlink(name);
		if (ret == -EFBIG || ret == -EINVAL)
			ret = -E2BIG;
		return llmp_err(ret, "posix: sizing %s to %zu bytes failed", name, size);
	}
	ret = posix_map(m, fd, size, name);
	close(fd); /* the mapping keeps the object alive */
	if (ret < 0) {
		shm_unlink(name);
		return ret;
	}
	/* Who may unlink it: the creating process, not its forked children. */
	m->priv = (void *)(intptr_t)getpid();
	memcpy(m->desc.id, name, strlen(name) + 1);
	return 0;
}

static int posix_attach(struct llmp_provider *p, const struct llmp_shmem_desc *d,
			struct llmp_shmem *m)
{
	struct stat st;
	int fd, ret;

	(void)p;
	if (posix_check_name(d->id) < 0)
		return llmp_err(-EINVAL, "posix: id '%.19s' is not a shm_open name (/name)", d->id);
	if (d->size > SIZE_MAX)
		return llmp_err(-E2BIG, "posix: size %llu does not fit this address space",
				(unsigned long long)d->size);
	fd = shm_open(d->id, O_RDWR | O_CLOEXEC, 0);
	if (fd < 0) {
		ret = -errno;
		if (ret == -ENOENT)
			return llmp_err(-ENOENT, "posix: no segment %s", d->id);
		return llmp_err(ret, "posix: shm_open(%s): %s", d->id, strerror(-ret));
	}
	if (fstat(fd, &st) < 0) {
		ret = -errno;
		close(fd);
		return llmp_err(ret, "posix: fstat of %s: %s", d->id, strerror(-ret));
	}
	if (!S_ISREG(st.st_mode) || st.st_size < 0 ||
	    (unsigned long long)st.st_size < d->size) {
		close(fd);
		return llmp_err(-EBADMSG, "posix: segment %s has %lld bytes, the description "
				"says %llu (truncated by a peer?)", d->id, (long long)st.st_size,
				(unsigned long long)d->size);
	}
	ret = posix_map(m, fd, (size_t)d->size, d->id);
	close(fd);
	if (ret == 0)
		m->priv = NULL;
	return ret;
}

static void posix_release(struct llmp_provider *p, struct llmp_shmem *m)
{
	(void)p;
	if (m->addr)
		munmap(m->addr, m->size);
	m->addr = NULL;
	if (m->owner && m->priv == (void *)(intptr_t)getpid())
		shm_unlink(m->desc.id);
}

const struct llmp_shmem_ops llmp_shmem_posix_ops = {
	.kind = LLMP_SHMEM_POSIX,
	.probe = posix_probe,
	.create = posix_create,
	.attach = posix_attach,
	.release = posix_release,
};

#else

LLMP_SHMEM_UNAVAILABLE_OPS(posix, LLMP_SHMEM_POSIX, "posix provider: shm_open is not available on this platform");

#endif
