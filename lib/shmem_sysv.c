// SPDX-License-Identifier: MIT OR Apache-2.0
/* sysv provider: not built yet. */
#include "internal.h"

LLMP_SHMEM_UNAVAILABLE_OPS(sysv, LLMP_SHMEM_SYSV, "sysv provider: not available in this build");
