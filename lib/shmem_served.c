// SPDX-License-Identifier: MIT OR Apache-2.0
/* served provider: not implemented yet; every call reports -ENODEV. */
#include "internal.h"

static int served_probe(void)
{
	return llmp_err(-ENODEV, "served provider: not available in this build");
}

static int served_create(struct llmp_provider *p, size_t size, struct llmp_shmem *m)
{
	return served_probe();
}

static int served_attach(struct llmp_provider *p, const struct llmp_shmem_desc *d,
		       struct llmp_shmem *m)
{
	return served_probe();
}

static void served_release(struct llmp_provider *p, struct llmp_shmem *m)
{
}

const struct llmp_shmem_ops llmp_shmem_served_ops = {
	.kind = LLMP_SHMEM_SERVED,
	.probe = served_probe,
	.create = served_create,
	.attach = served_attach,
	.release = served_release,
};
