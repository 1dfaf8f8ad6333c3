// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * System V provider: shmget(2) / shmat(2), LibAFL's default on Linux.
 *
 * Printable id: the decimal shmid, exactly as LibAFL writes it.  Segments
 * are created IPC_PRIVATE with mode 0600, so only the same user (or root)
 * can attach.  A System V segment cannot change size once created, so the
 * attacher's IPC_STAT check (real size >= described size) is final.
 *
 * Lifetime: the creating process marks the segment IPC_RMID when it
 * releases it; Linux keeps the memory until the last attachment is gone,
 * and we refuse new attaches to a segment so marked (Linux alone would
 * allow them), as POSIX and MEMFD segments cannot be attached after their
 * creator released them either.
 * A release in a forked child of the creator does not destroy it.  If the
 * creator dies without releasing (SIGKILL, crash), nobody removes the
 * segment: it stays in `ipcs -m` until ipcrm or reboot.  Use MEMFD, SERVED
 * or KMOD where that matters.
 */
#include "internal.h"

#if !defined(_WIN32) && !defined(__ANDROID__)

#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/shm.h>
#include <sys/types.h>
#include <unistd.h>

static int sysv_probe(void)
{
	return 0;
}

/* Strict decimal shmid: digits only, no sign, no leading zero, fits an int. */
static int sysv_parse_id(const char *id, int *out)
{
	long long v = 0;
	const char *s = id;

	if (!*s || (s[0] == '0' && s[1]))
		return -EINVAL;
	for (; *s; s++) {
		if (*s < '0' || *s > '9')
			return -EINVAL;
		v = v * 10 + (*s - '0');
		if (v > INT_MAX)
			return -EINVAL;
	}
	*out = (int)v;
	return 0;
}

static int sysv_create(struct llmp_provider *p, size_t size, struct llmp_shmem *m)
{
	void *addr;
	int id, ret;

	(void)p;
	id = shmget(IPC_PRIVATE, size, IPC_CREAT | IPC_EXCL | 0600);
	if (id < 0) {
		ret = -errno;
		if (ret == -EINVAL)
			return llmp_err(-E2BIG, "sysv: shmget of %zu bytes refused (above "
					"kernel.shmmax?)", size);
		return llmp_err(ret, "sysv: shmget of %zu bytes: %s (see kernel.shmall, "
				"kernel.shmmni)", size, strerror(-ret));
	}
	addr = shmat(id, NULL, 0);
	if (addr == (void *)-1) {
		ret = -errno;
		shmctl(id, IPC_RMID, NULL);
		return llmp_err(ret, "sysv: shmat of new segment %d: %s", id, strerror(-ret));
	}
	m->addr = addr;
	m->size = size;
	/* Who may destroy it: the creating process, not its forked children. */
	m->priv = (void *)(intptr_t)getpid();
	snprintf(m->desc.id, LLMP_SHMEM_ID_LEN, "%d", id);
	return 0;
}

static int sysv_attach(struct llmp_provider *p, const struct llmp_shmem_desc *d,
		       struct llmp_shmem *m)
{
	struct shmid_ds ds;
	void *addr;
	int id, ret;

	(void)p;
	if (sysv_parse_id(d->id, &id) < 0)
		return llmp_err(-EINVAL, "sysv: id '%.19s' is not a decimal shmid", d->id);
	if (shmctl(id, IPC_STAT, &ds) < 0) {
		ret = -errno;
		if (ret == -EINVAL || ret == -EIDRM)
			return llmp_err(-ENOENT, "sysv: no segment %s", d->id);
		return llmp_err(ret, "sysv: IPC_STAT of segment %s: %s", d->id, strerror(-ret));
	}
	/* Linux would still attach a removed segment; behave as the other kinds do. */
	if (ds.shm_perm.mode & SHM_DEST)
		return llmp_err(-ENOENT, "sysv: segment %s was released by its creator", d->id);
	if ((unsigned long long)ds.shm_segsz < d->size)
		return llmp_err(-EBADMSG, "sysv: segment %s has %llu bytes, the description "
				"says %llu", d->id, (unsigned long long)ds.shm_segsz,
				(unsigned long long)d->size);
	/* A shmid cannot be resized, so the check above holds for the mapping's life. */
	addr = shmat(id, NULL, 0);
	if (addr == (void *)-1) {
		ret = -errno;
		if (ret == -EINVAL || ret == -EIDRM)
			return llmp_err(-ENOENT, "sysv: segment %s vanished", d->id);
		return llmp_err(ret, "sysv: shmat of segment %s: %s", d->id, strerror(-ret));
	}
	m->addr = addr;
	m->size = (size_t)d->size;
	m->priv = NULL;
	return 0;
}

static void sysv_release(struct llmp_provider *p, struct llmp_shmem *m)
{
	int id;

	(void)p;
	if (m->addr)
		shmdt(m->addr);
	m->addr = NULL;
	if (m->owner && m->priv == (void *)(intptr_t)getpid() &&
	    sysv_parse_id(m->desc.id, &id) == 0)
		shmctl(id, IPC_RMID, NULL);
}

const struct llmp_shmem_ops llmp_shmem_sysv_ops = {
	.kind = LLMP_SHMEM_SYSV,
	.probe = sysv_probe,
	.create = sysv_create,
	.attach = sysv_attach,
	.release = sysv_release,
};

#else

LLMP_SHMEM_UNAVAILABLE_OPS(sysv, LLMP_SHMEM_SYSV, "sysv provider: System V shared memory is not available on this platform");

#endif
