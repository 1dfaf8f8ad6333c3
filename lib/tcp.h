/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/* The TCP listener's hooks for the event loop (lib/loop.c).  Not installed. */
#ifndef LLMP_TCP_H
#define LLMP_TCP_H

#include <poll.h>
#include <stdint.h>

#include "internal.h"
#include "llmp/broker.h"

LLMP_HIDDEN_BEGIN

/* Monotonic clock in milliseconds. */
int64_t llmp_now_ms(void);
/* How many pollfds llmp_tcp_fill_pollfds() writes (listening socket + peers). */
unsigned llmp_tcp_nfds(const struct llmp_tcp_listener *l);
/* Fill fds with the listener's sockets and the events each waits for; returns the count. */
unsigned llmp_tcp_fill_pollfds(const struct llmp_tcp_listener *l, struct pollfd *fds,
			       unsigned max);
/* The listening socket. */
int llmp_tcp_listen_fd(const struct llmp_tcp_listener *l);
/* Milliseconds until the earliest peer deadline (-1: none). */
int llmp_tcp_timeout_ms(const struct llmp_tcp_listener *l, int64_t now);

LLMP_HIDDEN_END

#endif /* LLMP_TCP_H */
