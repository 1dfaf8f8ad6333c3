// SPDX-License-Identifier: MIT OR Apache-2.0
/* sysv provider: not implemented yet; every call reports -ENODEV. */
#include "internal.h"

static int sysv_probe(void)
{
	return llmp_err(-ENODEV, "sysv provider: not available in this build");
}

static int sysv_create(struct llmp_provider *p, size_t size, struct llmp_shmem *m)
{
	return sysv_probe();
}

static int sysv_attach(struct llmp_provider *p, const struct llmp_shmem_desc *d,
		       struct llmp_shmem *m)
{
	return sysv_probe();
}

static void sysv_release(struct llmp_provider *p, struct llmp_shmem *m)
{
}

const struct llmp_shmem_ops llmp_shmem_sysv_ops = {
	.kind = LLMP_SHMEM_SYSV,
	.probe = sysv_probe,
	.create = sysv_create,
	.attach = sysv_attach,
	.release = sysv_release,
};
