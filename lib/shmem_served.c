// SPDX-License-Identifier: MIT OR Apache-2.0
/* served provider: not built yet. */
#include "internal.h"

LLMP_SHMEM_UNAVAILABLE_OPS(served, LLMP_SHMEM_SERVED, "served provider: not available in this build");
