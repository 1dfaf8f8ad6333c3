// SPDX-License-Identifier: MIT OR Apache-2.0
/* win32 provider: not built yet. */
#include "internal.h"

LLMP_SHMEM_UNAVAILABLE_OPS(win32, LLMP_SHMEM_WIN32, "win32 provider: not available in this build");
