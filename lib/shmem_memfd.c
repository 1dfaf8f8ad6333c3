// SPDX-License-Identifier: MIT OR Apache-2.0
/* memfd provider: not built yet. */
#include "internal.h"

LLMP_SHMEM_UNAVAILABLE_OPS(memfd, LLMP_SHMEM_MEMFD, "memfd provider: not available in this build");
