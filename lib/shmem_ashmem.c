// SPDX-License-Identifier: MIT OR Apache-2.0
/* ashmem provider: not built yet. */
#include "internal.h"

LLMP_SHMEM_UNAVAILABLE_OPS(ashmem, LLMP_SHMEM_ASHMEM, "ashmem provider: not available in this build");
