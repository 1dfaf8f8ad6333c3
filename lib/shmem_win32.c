// SPDX-License-Identifier: MIT OR Apache-2.0
/* win32 provider: not implemented yet; every call reports -ENODEV. */
#include "internal.h"

static int win32_probe(void)
{
	return llmp_err(-ENODEV, "win32 provider: not available in this build");
}

static int win32_create(struct llmp_provider *p, size_t size, struct llmp_shmem *m)
{
	return win32_probe();
}

static int win32_attach(struct llmp_provider *p, const struct llmp_shmem_desc *d,
		       struct llmp_shmem *m)
{
	return win32_probe();
}

static void win32_release(struct llmp_provider *p, struct llmp_shmem *m)
{
}

const struct llmp_shmem_ops llmp_shmem_win32_ops = {
	.kind = LLMP_SHMEM_WIN32,
	.probe = win32_probe,
	.create = win32_create,
	.attach = win32_attach,
	.release = win32_release,
};
