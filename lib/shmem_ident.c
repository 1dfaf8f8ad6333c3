// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * Segment identity and ownership across providers, for the broker's
 * registration checks: is this page one we already read (or our own), and
 * could the peer that names it have opened it itself?
 *
 * Identity is what the memory is, not how its id is spelled: device and
 * inode of the object create/attach mapped (MEMFD, POSIX, SERVED: fstat of
 * the very fd that was mapped, recorded by llmp_shmem_note_file(); ASHMEM:
 * the fd it keeps), the shmid (SYSV), the segment id (KMOD, SEG_INFO).
 *
 * Who may open a segment, as the kernel would decide for the peer:
 *   MEMFD   /proc/<pid>/fd/<fd> needs ptrace access: the process must run
 *           as the peer (real, effective and saved uid), and that fd must
 *           still hold the page we mapped;
 *   POSIX   the file's owner and mode (read and write);
 *   SYSV    shm_perm: owner or creator uid, group, other (read and write);
 *   KMOD    the segment's owner uid, or LLMP_SEG_ALLOW_OTHER_UIDS;
 *   SERVED  the server's uid (the owner of its memfds): it serves no other;
 *   others  unknown, refused.
 * Root may open everything.  Group bits count only when the peer's gid is
 * known (Unix sockets); supplementary groups are not considered.
 */
#include "internal.h"

#include <stdio.h>
#include <string.h>

/* Strict decimal: digits, no sign, no leading zero, at most max.  End or NULL. */
static const char *dec(const char *s, unsigned long long max, unsigned long long *out)
{
	const char *start = s;
	unsigned long long v = 0;

	while (*s >= '0' && *s <= '9') {
		v = v * 10 + (unsigned long long)(*s - '0');
		if (v > max)
			return NULL;
		s++;
	}
	if (s == start || (s - start > 1 && *start == '0'))
		return NULL;
	*out = v;
	return s;
}

#if defined(__linux__)

#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/ipc.h>
#include <sys/shm.h>
#include <sys/stat.h>
#include <unistd.h>

#include "uapi/linux/llmp.h"

void llmp_shmem_note_file(struct llmp_shmem *m, int fd)
{
	struct stat st;

	m->file_known = fd >= 0 && fstat(fd, &st) == 0;
	if (!m->file_known)
		return;
	m->file_dev = (uint64_t)st.st_dev;
	m->file_ino = (uint64_t)st.st_ino;
	m->file_uid = st.st_uid;
	m->file_gid = st.st_gid;
	m->file_mode = st.st_mode;
}

static int sysv_id(const struct llmp_shmem_desc *d, int *id)
{
	unsigned long long v;
	const char *e = dec(d->id, 0x7fffffff, &v);

	if (!e || *e)
		return -EINVAL;
	*id = (int)v;
	return 0;
}

static int kmod_info(const struct llmp_shmem *m, struct llmp_seg_info *info)
{
	memset(info, 0, sizeof(*info));
	if (m->fd < 0)
		return -EBADF;
	return ioctl(m->fd, LLMP_IOC_SEG_INFO, info) < 0 ? -errno : 0;
}

/* The file fields of m, from attach or (fd-keeping kinds) now. */
static int file_of(const struct llmp_shmem *m, struct llmp_shmem *out)
{
	*out = *m;
	if (!out->file_known && m->fd >= 0)
		llmp_shmem_note_file(out, m->fd);
	return out->file_known ? 0 : -ENODATA;
}

int llmp_shmem_ident(const struct llmp_shmem *m, struct llmp_shmem_ident *id)
{
	struct llmp_seg_info info;
	struct llmp_shmem f;
	int sid, ret;

	memset(id, 0, sizeof(*id));
	switch (m->desc.kind) {
	case LLMP_SHMEM_SYSV:
		ret = sysv_id(&m->desc, &sid);
		if (ret < 0)
			return ret;
		id->space = LLMP_IDENT_SYSV;
		id->a = (uint64_t)sid;
		return 0;
	case LLMP_SHMEM_KMOD:
		ret = kmod_info(m, &info);
		if (ret < 0)
			return ret;
		id->space = LLMP_IDENT_KMOD;
		id->a = info.id;
		return 0;
	case LLMP_SHMEM_MEMFD:
	case LLMP_SHMEM_POSIX:
	case LLMP_SHMEM_SERVED:
	case LLMP_SHMEM_ASHMEM:
		ret = file_of(m, &f);
		if (ret < 0)
			return ret;
		id->space = LLMP_IDENT_FILE;
		id->a = f.file_dev;
		id->b = f.file_ino;
		return 0;
	default:
		return -EOPNOTSUPP;
	}
}

int llmp_shmem_owner_uid(const struct llmp_shmem *m, uint32_t *uid)
{
	struct llmp_seg_info info;
	struct shmid_ds ds;
	struct llmp_shmem f;
	int sid, ret;

	switch (m->desc.kind) {
	case LLMP_SHMEM_SYSV:
		ret = sysv_id(&m->desc, &sid);
		if (ret < 0)
			return ret;
		if (shmctl(sid, IPC_STAT, &ds) < 0)
			return -errno;
		*uid = ds.shm_perm.uid;
		return 0;
	case LLMP_SHMEM_KMOD:
		ret = kmod_info(m, &info);
		if (ret < 0)
			return ret;
		*uid = info.owner_uid;
		return 0;
	case LLMP_SHMEM_MEMFD:
	case LLMP_SHMEM_POSIX:
	case LLMP_SHMEM_SERVED:
		ret = file_of(m, &f);
		if (ret < 0)
			return ret;
		*uid = f.file_uid;
		return 0;
	default:
		return -EOPNOTSUPP;
	}
}

/* rw for whoever the peer is to an object of owner uids, group gids and mode. */
static bool mode_grants(const struct llmp_peer_cred *peer, uint32_t uid, uint32_t cuid,
			uint32_t gid, uint32_t cgid, uint32_t mode)
{
	unsigned shift = 0; /* other */

	if (peer->uid == uid || peer->uid == cuid)
		shift = 6;
	else if (peer->gid_known && (peer->gid == gid || peer->gid == cgid))
		shift = 3;
	return ((mode >> shift) & 6) == 6;
}

/* The uids of /proc/<pid>/status: 0 with real, effective and saved equal to *uid. */
static int process_uid(long pid, uint32_t *uid)
{
	char path[64], line[256];
	unsigned r, e, s, fs;
	int ret = -ENOENT;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%ld/status", pid);
	f = fopen(path, "re");
	if (!f)
		return -errno;
	while (fgets(line, sizeof(line), f)) {
		if (sscanf(line, "Uid: %u %u %u %u", &r, &e, &s, &fs) == 4) {
			ret = (r == e && e == s) ? 0 : -EPERM;
			*uid = e;
			break;
		}
	}
	fclose(f);
	return ret;
}

static int memfd_may_open(const struct llmp_shmem *m, const struct llmp_peer_cred *peer,
			  char *why, size_t cap)
{
	unsigned long long pid, fd;
	const char *s = m->desc.id + 1;
	char path[64];
	struct stat st;
	uint32_t uid = 0;
	int ret;

	s = m->desc.id[0] == 'm' ? dec(s, 0x7fffffff, &pid) : NULL;
	if (s && *s == ':')
		s = dec(s + 1, 0x7fffffff, &fd);
	else
		s = NULL;
	if (!s || !m->file_known) {
		snprintf(why, cap, "memfd page %.19s: creator unknown", m->desc.id);
		return -EACCES;
	}
	/* Does that fd still hold what we mapped?  Else the pid's uid proves nothing. */
	snprintf(path, sizeof(path), "/proc/%llu/fd/%llu", pid, fd);
	if (stat(path, &st) < 0 || (uint64_t)st.st_dev != m->file_dev ||
	    (uint64_t)st.st_ino != m->file_ino) {
		snprintf(why, cap, "memfd page %.19s: fd %llu of pid %llu no longer holds it",
			 m->desc.id, fd, pid);
		return -EACCES;
	}
	ret = process_uid((long)pid, &uid);
	if (ret < 0 || uid != peer->uid) {
		snprintf(why, cap, "memfd page %.19s: process %llu runs as uid %u%s, peer is uid %u",
			 m->desc.id, pid, uid,
			 ret == -EPERM ? " (mixed uids)" : "", peer->uid);
		return -EACCES;
	}
	return 0;
}

int llmp_shmem_may_open(const struct llmp_shmem *m, const struct llmp_peer_cred *peer,
			char *why, size_t cap)
{
	struct llmp_seg_info info;
	struct shmid_ds ds;
	int sid;

	if (!peer->known) {
		snprintf(why, cap, "the peer's uid is unknown");
		return -EACCES;
	}
	if (peer->uid == 0)
		return 0;
	switch (m->desc.kind) {
	case LLMP_SHMEM_MEMFD:
		return memfd_may_open(m, peer, why, cap);
	case LLMP_SHMEM_POSIX:
		if (m->file_known && mode_grants(peer, m->file_uid, m->file_uid, m->file_gid,
						 m->file_gid, m->file_mode))
			return 0;
		snprintf(why, cap, "posix page %.19s: owner uid %u mode %03o, peer uid %u",
			 m->desc.id, m->file_uid, m->file_mode & 0777, peer->uid);
		return -EACCES;
	case LLMP_SHMEM_SYSV:
		if (sysv_id(&m->desc, &sid) == 0 && shmctl(sid, IPC_STAT, &ds) == 0 &&
		    mode_grants(peer, ds.shm_perm.uid, ds.shm_perm.cuid, ds.shm_perm.gid,
				ds.shm_perm.cgid, ds.shm_perm.mode))
			return 0;
		snprintf(why, cap, "sysv page %.19s: not readable and writable by uid %u",
			 m->desc.id, peer->uid);
		return -EACCES;
	case LLMP_SHMEM_KMOD:
		if (kmod_info(m, &info) == 0 &&
		    ((info.flags & LLMP_SEG_ALLOW_OTHER_UIDS) || info.owner_uid == peer->uid))
			return 0;
		snprintf(why, cap, "kmod page %.19s: owned by another uid than %u", m->desc.id,
			 peer->uid);
		return -EACCES;
	case LLMP_SHMEM_SERVED:
		if (m->file_known && m->file_uid == peer->uid)
			return 0;
		snprintf(why, cap, "served page %.19s: the server runs as another uid than %u",
			 m->desc.id, peer->uid);
		return -EACCES;
	default:
		snprintf(why, cap, "cannot tell who may open a %s page",
			 llmp_shmem_kind_name(m->desc.kind));
		return -EACCES;
	}
}

#else /* !__linux__ */

void llmp_shmem_note_file(struct llmp_shmem *m, int fd)
{
	(void)fd;
	m->file_known = false;
}

int llmp_shmem_ident(const struct llmp_shmem *m, struct llmp_shmem_ident *id)
{
	(void)m;
	memset(id, 0, sizeof(*id));
	return -EOPNOTSUPP;
}

int llmp_shmem_owner_uid(const struct llmp_shmem *m, uint32_t *uid)
{
	(void)m;
	(void)uid;
	return -EOPNOTSUPP;
}

int llmp_shmem_may_open(const struct llmp_shmem *m, const struct llmp_peer_cred *peer,
			char *why, size_t cap)
{
	(void)m;
	(void)peer;
	snprintf(why, cap, "page owners cannot be checked on this platform");
	return -EACCES;
}

#endif

bool llmp_shmem_ident_eq(const struct llmp_shmem_ident *x, const struct llmp_shmem_ident *y)
{
	return x->space != LLMP_IDENT_NONE && x->space == y->space && x->a == y->a && x->b == y->b;
}

/* Decimal digits of the generation a MEMFD id carries after a base of n characters. */
static unsigned memfd_gen_room(size_t n)
{
	long room = (long)LLMP_SHMEM_ID_LEN - 1 - (long)n - 1;

	return room < 1 ? 0 : room > 9 ? 9 : (unsigned)room;
}

int llmp_shmem_id_canonical(const struct llmp_shmem_desc *d)
{
	const char *id = d->id, *s;
	unsigned long long v;
	size_t n = strnlen(id, LLMP_SHMEM_ID_LEN);

	if (n == 0 || n == LLMP_SHMEM_ID_LEN)
		return -EINVAL;
	switch (d->kind) {
	case LLMP_SHMEM_MEMFD:
		/* m<pid>:<fd>:<gen>, the generation present exactly when there is room */
		s = id[0] == 'm' ? dec(id + 1, 0x7fffffff, &v) : NULL;
		if (!s || *s != ':' || !v)
			return -EINVAL;
		s = dec(s + 1, 0x7fffffff, &v);
		if (!s)
			return -EINVAL;
		if (memfd_gen_room((size_t)(s - id))) {
			if (*s != ':')
				return -EINVAL;
			s = dec(s + 1, ~0ull, &v);
			if (!s)
				return -EINVAL;
		}
		return *s ? -EINVAL : 0;
	case LLMP_SHMEM_SYSV:
		s = dec(id, 0x7fffffff, &v);
		return s && !*s ? 0 : -EINVAL;
	case LLMP_SHMEM_POSIX:
		/* "/name": the only spelling shm_open resolves to that name */
		if (n < 2 || id[0] != '/' || memchr(id + 1, '/', n - 1) ||
		    !strcmp(id, "/.") || !strcmp(id, "/.."))
			return -EINVAL;
		return 0;
	case LLMP_SHMEM_KMOD:
		if (n != 17 || id[0] != 'k')
			return -EINVAL;
		for (size_t i = 1; i < n; i++) {
			char c = id[i];

			if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
			      (c >= '0' && c <= '9') || c == '-' || c == '_'))
				return -EINVAL;
		}
		return 0;
	default:
		return 0;
	}
}
