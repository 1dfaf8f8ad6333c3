// SPDX-License-Identifier: MIT OR Apache-2.0
/* memfd provider: not implemented yet; every call reports -ENODEV. */
#include "internal.h"

static int memfd_probe(void)
{
	return llmp_err(-ENODEV, "memfd provider: not available in this build");
}

static int memfd_create(struct llmp_provider *p, size_t size, struct llmp_shmem *m)
{
	return memfd_probe();
}

static int memfd_attach(struct llmp_provider *p, const struct llmp_shmem_desc *d,
		       struct llmp_shmem *m)
{
	return memfd_probe();
}

static void memfd_release(struct llmp_provider *p, struct llmp_shmem *m)
{
}

const struct llmp_shmem_ops llmp_shmem_memfd_ops = {
	.kind = LLMP_SHMEM_MEMFD,
	.probe = memfd_probe,
	.create = memfd_create,
	.attach = memfd_attach,
	.release = memfd_release,
};
