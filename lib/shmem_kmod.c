// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * kmod provider: segments from /dev/llmp (kmod/llmp.c).
 *
 * A segment is an fd returned by LLMP_IOC_SEG_CREATE / LLMP_IOC_SEG_OPEN,
 * mapped MAP_SHARED.  The printable id is "k" followed by base64url of the
 * 12 bytes id (32-bit little endian) and key (64-bit little endian): 17
 * characters, so it fits the protocol's 20-byte id field.  Fork-safe: the
 * child inherits the fds and mappings and the kernel counts them.
 *
 * The creator's pid (for the broker's dead-client check and the client's
 * dead-broker check) comes from LLMP_IOC_SEG_INFO at attach, in our own pid
 * namespace (0 when the creator is not visible from it), and is kept in
 * m->priv for llmp_shmem_creator_pid().
 */
#include "internal.h"

#if defined(__linux__)

#include <fcntl.h>
#include <stdint.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "uapi/linux/llmp.h"
#include "kmod_internal.h"

#define KMOD_ID_PREFIX 'k'
#define KMOD_ID_B64_LEN 16 /* 12 bytes -> 16 base64 characters, no padding */

static const char b64url[] =
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static void kmod_encode(uint32_t id, uint64_t key, char out[LLMP_SHMEM_ID_LEN])
{
	unsigned char raw[12];
	size_t o = 0;

	for (int i = 0; i < 4; i++)
		raw[i] = (unsigned char)(id >> (8 * i));
	for (int i = 0; i < 8; i++)
		raw[4 + i] = (unsigned char)(key >> (8 * i));
	memset(out, 0, LLMP_SHMEM_ID_LEN);
	out[o++] = KMOD_ID_PREFIX;
	for (int i = 0; i < 12; i += 3) {
		uint32_t v = (uint32_t)raw[i] << 16 | (uint32_t)raw[i + 1] << 8 | raw[i + 2];

		out[o++] = b64url[(v >> 18) & 63];
		out[o++] = b64url[(v >> 12) & 63];
		out[o++] = b64url[(v >> 6) & 63];
		out[o++] = b64url[v & 63];
	}
}

static int b64url_val(char c)
{
	const char *p = c ? strchr(b64url, c) : NULL;

	return p ? (int)(p - b64url) : -1;
}

int llmp_kmod_decode_id(const char *s, uint32_t *id, uint64_t *key)
{
	unsigned char raw[12];

	if (strnlen(s, LLMP_SHMEM_ID_LEN) != 1 + KMOD_ID_B64_LEN || s[0] != KMOD_ID_PREFIX)
		return llmp_err(-EINVAL, "kmod: id '%.19s' is not 'k' + 16 base64url characters",
				s);
	for (int i = 0, o = 0; i < KMOD_ID_B64_LEN; i += 4) {
		uint32_t v = 0;

		for (int j = 0; j < 4; j++) {
			int d = b64url_val(s[1 + i + j]);

			if (d < 0)
				return llmp_err(-EINVAL, "kmod: id '%.19s' has a non-base64url character",
						s);
			v = v << 6 | (uint32_t)d;
		}
		raw[o++] = (unsigned char)(v >> 16);
		raw[o++] = (unsigned char)(v >> 8);
		raw[o++] = (unsigned char)v;
	}
	*id = 0;
	*key = 0;
	for (int i = 0; i < 4; i++)
		*id |= (uint32_t)raw[i] << (8 * i);
	for (int i = 0; i < 8; i++)
		*key |= (uint64_t)raw[4 + i] << (8 * i);
	if (*id == 0)
		return llmp_err(-EINVAL, "kmod: id '%.19s' encodes segment id 0", s);
	return 0;
}

int llmp_kmod_open_dev(void)
{
	struct llmp_version v;
	int fd, err;

	fd = open(LLMP_DEVICE_PATH, O_RDWR | O_CLOEXEC);
	if (fd < 0) {
		err = errno;
		return llmp_err(-ENODEV, "kmod: cannot open %s: %s", LLMP_DEVICE_PATH,
				strerror(err));
	}
	memset(&v, 0, sizeof(v));
	if (ioctl(fd, LLMP_IOC_VERSION, &v) < 0) {
		err = errno;
		close(fd);
		return llmp_err(-ENODEV, "kmod: %s does not answer the version query: %s",
				LLMP_DEVICE_PATH, strerror(err));
	}
	if (v.abi_version != LLMP_ABI_VERSION ||
	    (v.features & (LLMP_FEAT_SEGMENTS | LLMP_FEAT_BELLS)) !=
		    (LLMP_FEAT_SEGMENTS | LLMP_FEAT_BELLS)) {
		close(fd);
		return llmp_err(-ENODEV, "kmod: %s speaks ABI %u features %#llx, need ABI %u",
				LLMP_DEVICE_PATH, v.abi_version,
				(unsigned long long)v.features, LLMP_ABI_VERSION);
	}
	return fd;
}

static int kmod_probe(void)
{
	int fd = llmp_kmod_open_dev();

	if (fd < 0)
		return fd;
	close(fd);
	return 0;
}

static int kmod_provider_init(struct llmp_provider *p)
{
	int fd = llmp_kmod_open_dev();

	if (fd < 0)
		return fd;
	p->priv = (void *)(intptr_t)fd;
	return 0;
}

static void kmod_provider_fini(struct llmp_provider *p)
{
	close((int)(intptr_t)p->priv);
}

static int kmod_map(struct llmp_shmem *m, int fd, size_t size)
{
	void *addr = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);

	if (addr == MAP_FAILED)
		return llmp_err(-errno, "kmod: mmap of %zu bytes: %s", size, strerror(errno));
	m->addr = addr;
	m->size = size;
	m->fd = fd;
	return 0;
}

static int kmod_create(struct llmp_provider *p, size_t size, struct llmp_shmem *m)
{
	struct llmp_seg_create req;
	int ret;

	memset(&req, 0, sizeof(req));
	req.size = size;
	req.fd_flags = O_CLOEXEC;
	if (ioctl((int)(intptr_t)p->priv, LLMP_IOC_SEG_CREATE, &req) < 0) {
		ret = -errno;
		return llmp_err(ret, "kmod: creating a segment of %zu bytes: %s", size,
				strerror(-ret));
	}
	ret = kmod_map(m, req.fd, size);
	if (ret < 0) {
		close(req.fd);
		return ret;
	}
	kmod_encode(req.id, req.key, m->desc.id);
	m->priv = (void *)(intptr_t)getpid();
	return 0;
}

/*
 * The creator's tgid as our pid namespace sees it, 0 if not visible or not
 * told.  The module keeps a reference on the creator's struct pid and
 * reports its number even after the creator exited, so a number read long
 * after the creator's death may have been reused; we read it at attach.
 */
static long kmod_creator(int fd)
{
	struct llmp_seg_info info;

	memset(&info, 0, sizeof(info));
	if (ioctl(fd, LLMP_IOC_SEG_INFO, &info) < 0) {
		llmp_log(LLMP_LOG_DEBUG, "kmod: SEG_INFO: %s (creator unknown)", strerror(errno));
		return 0;
	}
	return info.creator_pid <= 0x7fffffffu ? (long)info.creator_pid : 0;
}

static int kmod_attach(struct llmp_provider *p, const struct llmp_shmem_desc *d,
		       struct llmp_shmem *m)
{
	struct llmp_seg_open req;
	uint32_t id;
	uint64_t key;
	int ret;

	ret = llmp_kmod_decode_id(d->id, &id, &key);
	if (ret < 0)
		return ret;
	memset(&req, 0, sizeof(req));
	req.id = id;
	req.key = key;
	req.fd_flags = O_CLOEXEC;
	if (ioctl((int)(intptr_t)p->priv, LLMP_IOC_SEG_OPEN, &req) < 0) {
		ret = -errno;
		return llmp_err(ret, "kmod: opening segment %s: %s", d->id, strerror(-ret));
	}
	if (d->size > req.size) {
		close(req.fd);
		return llmp_err(-EINVAL, "kmod: description says %llu bytes, segment %s has %llu",
				(unsigned long long)d->size, d->id,
				(unsigned long long)req.size);
	}
	ret = kmod_map(m, req.fd, (size_t)d->size);
	if (ret < 0) {
		close(req.fd);
		return ret;
	}
	m->priv = (void *)(intptr_t)kmod_creator(req.fd);
	return 0;
}

const struct llmp_shmem_ops llmp_shmem_kmod_ops = {
	.kind = LLMP_SHMEM_KMOD,
	.probe = kmod_probe,
	.provider_init = kmod_provider_init,
	.provider_fini = kmod_provider_fini,
	.create = kmod_create,
	.attach = kmod_attach,
	.release = llmp_shmem_release_fd_mapping,
};

#else

LLMP_SHMEM_UNAVAILABLE_OPS(kmod, LLMP_SHMEM_KMOD, "kmod provider: /dev/llmp exists only on Linux");

#endif
