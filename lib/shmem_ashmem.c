// SPDX-License-Identifier: MIT OR Apache-2.0
/* ashmem provider: not implemented yet; every call reports -ENODEV. */
#include "internal.h"

static int ashmem_probe(void)
{
	return llmp_err(-ENODEV, "ashmem provider: not available in this build");
}

static int ashmem_create(struct llmp_provider *p, size_t size, struct llmp_shmem *m)
{
	return ashmem_probe();
}

static int ashmem_attach(struct llmp_provider *p, const struct llmp_shmem_desc *d,
		       struct llmp_shmem *m)
{
	return ashmem_probe();
}

static void ashmem_release(struct llmp_provider *p, struct llmp_shmem *m)
{
}

const struct llmp_shmem_ops llmp_shmem_ashmem_ops = {
	.kind = LLMP_SHMEM_ASHMEM,
	.probe = ashmem_probe,
	.create = ashmem_create,
	.attach = ashmem_attach,
	.release = ashmem_release,
};
