// SPDX-License-Identifier: MIT OR Apache-2.0
/* posix provider: not built yet. */
#include "internal.h"

LLMP_SHMEM_UNAVAILABLE_OPS(posix, LLMP_SHMEM_POSIX, "posix provider: not available in this build");
