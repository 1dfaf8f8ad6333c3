// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * win32 provider: named file mappings backed by the paging file.
 *
 * Create: CreateFileMappingA(INVALID_HANDLE_VALUE, ..., "Local\<id>") and
 * MapViewOfFile.  The id kept in the description is the part after "Local\"
 * ("llmp_<pid>_<counter>", at most 19 characters); the prefix is added again
 * when attaching.  LibAFL creates its mappings without a prefix, which puts
 * them in the same per-session namespace, so its ids ("libafl_<hex>") attach
 * here as they are.
 *
 * Attach: OpenFileMappingA + MapViewOfFile of the whole section; the real
 * size of the view (VirtualQuery) must cover the size in the description,
 * or the attach is refused.  A section never shrinks while a handle to it
 * is open, so a peer cannot pull pages from under a reader.
 *
 * Release: UnmapViewOfFile + CloseHandle.  Windows destroys the section when
 * its last handle and its last view are gone, so there is nothing else for
 * the creator to remove, and a crashed process leaks nothing.
 */
#include "internal.h"

#if defined(_WIN32)

#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <windows.h>

#define WIN32_NAME_PREFIX "Local\\"
#define WIN32_ID_PREFIX "llmp_"
/* Tries before giving up when generated names are taken by other objects. */
#define WIN32_CREATE_TRIES 64

static atomic_uint win32_counter;

static int win32_errno(DWORD e)
{
	switch (e) {
	case ERROR_FILE_NOT_FOUND:
	case ERROR_PATH_NOT_FOUND:
		return -ENOENT;
	case ERROR_ACCESS_DENIED:
		return -EACCES;
	case ERROR_NOT_ENOUGH_MEMORY:
	case ERROR_OUTOFMEMORY:
	case ERROR_COMMITMENT_LIMIT:
	case ERROR_NO_SYSTEM_RESOURCES:
		return -ENOMEM;
	case ERROR_DISK_FULL:
		return -ENOSPC;
	case ERROR_ALREADY_EXISTS:
	case ERROR_INVALID_HANDLE: /* the name belongs to an object of another type */
		return -EEXIST;
	case ERROR_INVALID_PARAMETER:
	case ERROR_INVALID_NAME:
	case ERROR_BAD_PATHNAME:
		return -EINVAL;
	default:
		return -EIO;
	}
}

/* Fill id with "llmp_<pid>_<counter>", cutting the counter to fit 19 characters. */
static void win32_make_id(char id[LLMP_SHMEM_ID_LEN])
{
	unsigned long pid = (unsigned long)GetCurrentProcessId();
	/* relaxed, pairs with no other access: only the value's uniqueness matters */
	unsigned int c = atomic_fetch_add_explicit(&win32_counter, 1, memory_order_relaxed);
	int n = snprintf(id, LLMP_SHMEM_ID_LEN, WIN32_ID_PREFIX "%lu_", pid);
	unsigned long long mod = 1;

	for (int i = n; i < LLMP_SHMEM_ID_LEN - 1 && mod < 10000000000ULL; i++)
		mod *= 10;
	snprintf(id + n, (size_t)(LLMP_SHMEM_ID_LEN - n), "%llu", (unsigned long long)c % mod);
}

static void win32_full_name(char *buf, size_t len, const char *id)
{
	snprintf(buf, len, WIN32_NAME_PREFIX "%s", id);
}

static int win32_probe(void)
{
	return 0;
}

static int win32_create(struct llmp_provider *p, size_t size, struct llmp_shmem *m)
{
	char id[LLMP_SHMEM_ID_LEN];
	char name[sizeof(WIN32_NAME_PREFIX) + LLMP_SHMEM_ID_LEN];
	uint64_t sz = size;
	HANDLE h = NULL;
	void *addr;
	DWORD e = 0;

	(void)p;
	for (int tries = 0; tries < WIN32_CREATE_TRIES; tries++) {
		memset(id, 0, sizeof(id));
		win32_make_id(id);
		win32_full_name(name, sizeof(name), id);
		SetLastError(0);
		h = CreateFileMappingA(INVALID_HANDLE_VALUE, NULL, PAGE_READWRITE,
				       (DWORD)(sz >> 32), (DWORD)sz, name);
		e = GetLastError();
		if (h && e != ERROR_ALREADY_EXISTS)
			break;
		if (h) {
			/* Someone else's mapping of that name: never share it. */
			CloseHandle(h);
			h = NULL;
			continue;
		}
		if (e != ERROR_INVALID_HANDLE)
			break; /* a real failure, not a name clash with another object type */
	}
	if (!h) {
		if (e == ERROR_ALREADY_EXISTS || e == ERROR_INVALID_HANDLE)
			return llmp_err(-EEXIST, "win32: no free mapping name after %d tries",
					WIN32_CREATE_TRIES);
		return llmp_err(win32_errno(e), "win32: CreateFileMappingA(%s, %zu bytes) failed, "
				"error %lu", name, size, (unsigned long)e);
	}
	addr = MapViewOfFile(h, FILE_MAP_ALL_ACCESS, 0, 0, size);
	if (!addr) {
		e = GetLastError();
		CloseHandle(h);
		return llmp_err(win32_errno(e), "win32: MapViewOfFile(%s, %zu bytes) failed, error %lu",
				name, size, (unsigned long)e);
	}
	m->addr = addr;
	m->size = size;
	m->handle = h;
	memcpy(m->desc.id, id, sizeof(id));
	return 0;
}

static int win32_attach(struct llmp_provider *p, const struct llmp_shmem_desc *d,
			struct llmp_shmem *m)
{
	char name[sizeof(WIN32_NAME_PREFIX) + LLMP_SHMEM_ID_LEN];
	MEMORY_BASIC_INFORMATION mbi;
	HANDLE h;
	void *addr;
	DWORD e;

	(void)p;
	/* The caller checked d (printable, NUL-terminated, size in range). */
	if (strchr(d->id, '\\'))
		return llmp_err(-EINVAL, "win32: id '%s' must not contain a backslash "
				"(the Local\\ prefix is added here)", d->id);
	if (d->size > (uint64_t)SIZE_MAX)
		return llmp_err(-EINVAL, "win32: size %llu does not fit this process",
				(unsigned long long)d->size);
	win32_full_name(name, sizeof(name), d->id);
	h = OpenFileMappingA(FILE_MAP_ALL_ACCESS, FALSE, name);
	if (!h) {
		e = GetLastError();
		return llmp_err(win32_errno(e), "win32: OpenFileMappingA(%s) failed, error %lu",
				name, (unsigned long)e);
	}
	/* Map the whole section, then compare its real size with the description. */
	addr = MapViewOfFile(h, FILE_MAP_ALL_ACCESS, 0, 0, 0);
	if (!addr) {
		e = GetLastError();
		CloseHandle(h);
		return llmp_err(win32_errno(e), "win32: MapViewOfFile(%s) failed, error %lu",
				name, (unsigned long)e);
	}
	if (VirtualQuery(addr, &mbi, sizeof(mbi)) != sizeof(mbi)) {
		e = GetLastError();
		UnmapViewOfFile(addr);
		CloseHandle(h);
		return llmp_err(win32_errno(e), "win32: VirtualQuery(%s) failed, error %lu",
				name, (unsigned long)e);
	}
	if ((uint64_t)mbi.RegionSize < d->size) {
		UnmapViewOfFile(addr);
		CloseHandle(h);
		return llmp_err(-EINVAL, "win32: mapping %s holds %llu bytes, the description "
				"says %llu", name, (unsigned long long)mbi.RegionSize,
				(unsigned long long)d->size);
	}
	m->addr = addr;
	m->size = (size_t)d->size;
	m->handle = h;
	return 0;
}

static void win32_release(struct llmp_provider *p, struct llmp_shmem *m)
{
	(void)p;
	if (m->addr)
		UnmapViewOfFile(m->addr);
	if (m->handle)
		CloseHandle((HANDLE)m->handle);
	m->addr = NULL;
	m->handle = NULL;
}

const struct llmp_shmem_ops llmp_shmem_win32_ops = {
	.kind = LLMP_SHMEM_WIN32,
	.probe = win32_probe,
	.create = win32_create,
	.attach = win32_attach,
	.release = win32_release,
};

#else /* !_WIN32 */

LLMP_SHMEM_UNAVAILABLE_OPS(win32, LLMP_SHMEM_WIN32,
			   "win32 provider: Windows named file mappings exist only on Windows");

#endif
