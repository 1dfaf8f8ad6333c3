// SPDX-License-Identifier: MIT OR Apache-2.0
/* kmod provider: not built yet. */
#include "internal.h"

LLMP_SHMEM_UNAVAILABLE_OPS(kmod, LLMP_SHMEM_KMOD, "kmod provider: not available in this build");
