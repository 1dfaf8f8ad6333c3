/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * Doorbells: how an LLMP client wakes a sleeping broker through /dev/llmp.
 *
 * The broker creates a bell and binds every client's segment to it with a
 * cookie (e.g. the client id).  A client rings its segment; the bell then
 * reports that cookie once (rings coalesce until the broker reads).  Ring
 * only when the broker announced it is going to sleep (see
 * Documentation/kmod.rst, "doorbell ordering"), so the busy path makes no
 * system call.  Needs the KMOD provider: other kinds get -EOPNOTSUPP.
 * Functions return 0 (or a count) on success and a negative errno on failure.
 */
#ifndef LLMP_BELL_H
#define LLMP_BELL_H

#include <stddef.h>
#include <stdint.h>

#include "llmp/shmem.h"

#ifdef __cplusplus
extern "C" {
#endif

struct llmp_bell; /* opaque */

/* Create a bell.  -ENODEV without a usable /dev/llmp. */
int llmp_bell_new(struct llmp_bell **out);
/* Close the bell (segments bound to it stay bound until rebound or freed). */
void llmp_bell_free(struct llmp_bell *b);
/* The bell's fd: readable (POLLIN) while cookies are pending (poll, epoll, io_uring). */
int llmp_bell_fd(const struct llmp_bell *b);
/*
 * Bind seg (a KMOD segment) to b with cookie; b NULL unbinds (cookie must
 * be 0).  Only a segment this process created (llmp_shmem_new, or a fork
 * of its creator) binds: an attached one is -EPERM.
 */
int llmp_bell_bind(struct llmp_shmem *seg, struct llmp_bell *b, uint32_t cookie);
/* Ring seg's bell.  -ENOTCONN if seg is not bound. */
int llmp_bell_ring(struct llmp_shmem *seg);
/* Take up to max pending cookies without waiting: how many (0: none pending). */
int llmp_bell_read(struct llmp_bell *b, uint32_t *cookies, size_t max);
/*
 * Wait up to timeout_ms (-1: forever) for cookies, then take up to max of
 * them: how many, 0 on timeout, -EINTR if a signal arrived.
 */
int llmp_bell_wait(struct llmp_bell *b, int timeout_ms, uint32_t *cookies, size_t max);

#ifdef __cplusplus
}
#endif
#endif /* LLMP_BELL_H */
