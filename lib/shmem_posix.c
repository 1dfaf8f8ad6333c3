// SPDX-License-Identifier: MIT OR Apache-2.0
/* posix provider: not implemented yet; every call reports -ENODEV. */
#include "internal.h"

static int posix_probe(void)
{
	return llmp_err(-ENODEV, "posix provider: not available in this build");
}

static int posix_create(struct llmp_provider *p, size_t size, struct llmp_shmem *m)
{
	return posix_probe();
}

static int posix_attach(struct llmp_provider *p, const struct llmp_shmem_desc *d,
		       struct llmp_shmem *m)
{
	return posix_probe();
}

static void posix_release(struct llmp_provider *p, struct llmp_shmem *m)
{
}

const struct llmp_shmem_ops llmp_shmem_posix_ops = {
	.kind = LLMP_SHMEM_POSIX,
	.probe = posix_probe,
	.create = posix_create,
	.attach = posix_attach,
	.release = posix_release,
};
