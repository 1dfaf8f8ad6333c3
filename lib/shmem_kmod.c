// SPDX-License-Identifier: MIT OR Apache-2.0
/* kmod provider: not implemented yet; every call reports -ENODEV. */
#include "internal.h"

static int kmod_probe(void)
{
	return llmp_err(-ENODEV, "kmod provider: not available in this build");
}

static int kmod_create(struct llmp_provider *p, size_t size, struct llmp_shmem *m)
{
	return kmod_probe();
}

static int kmod_attach(struct llmp_provider *p, const struct llmp_shmem_desc *d,
		       struct llmp_shmem *m)
{
	return kmod_probe();
}

static void kmod_release(struct llmp_provider *p, struct llmp_shmem *m)
{
}

const struct llmp_shmem_ops llmp_shmem_kmod_ops = {
	.kind = LLMP_SHMEM_KMOD,
	.probe = kmod_probe,
	.create = kmod_create,
	.attach = kmod_attach,
	.release = kmod_release,
};
