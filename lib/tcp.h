/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/* The TCP listener's hooks for the event loop (lib/loop.c).  Not installed. */
#ifndef LLMP_TCP_H
#define LLMP_TCP_H

#include <poll.h>
#include <stdint.h>

#include "internal.h"
#include "llmp/broker.h"

LLMP_HIDDEN_BEGIN

struct addrinfo;

/* getaddrinfo() for a TCP address (NULL: 127.0.0.1); passive for bind(). */
int llmp_tcp_resolve(const char *addr, uint16_t port, bool passive, struct addrinfo **res);
/* Monotonic clock in milliseconds. */
int64_t llmp_now_ms(void);
/* How many pollfds llmp_tcp_fill_pollfds() writes (listening socket + peers). */
unsigned llmp_tcp_nfds(const struct llmp_tcp_listener *l);
/* Fill fds with the listener's sockets and the events each waits for; returns the count. */
unsigned llmp_tcp_fill_pollfds(const struct llmp_tcp_listener *l, struct pollfd *fds,
			       unsigned max);
/* The listening socket. */
int llmp_tcp_listen_fd(const struct llmp_tcp_listener *l);
/* Answer EXT_QUERY with this control segment and layout version (NULL: refuse). */
void llmp_tcp_set_ext(struct llmp_tcp_listener *l, const struct llmp_shmem_desc *ctl,
		      uint32_t version);
/* Send EXT_QUERY to the broker at addr:port; *info is its EXT_INFO answer. */
int llmp_tcp_ext_query(const char *addr, uint16_t port, struct llmp_wire_msg *info);
/* Milliseconds until the earliest peer deadline (-1: none). */
int llmp_tcp_timeout_ms(const struct llmp_tcp_listener *l, int64_t now);

/*
 * Blocking send (wr) or receive of exactly len bytes: 0, -ETIMEDOUT on the
 * socket's timeout, -ECONNRESET on EOF, or -errno.
 */
int llmp_tcp_io_full(int fd, void *buf, size_t len, bool wr);
/*
 * For this thread's next client dials: retry a refused connect for at most
 * ms (0: LLMP_TCP_CONNECT_TIMEOUT_MS).  llmp_client_reconnect_tcp() keeps
 * them inside its own deadline.
 */
void llmp_tcp_dial_budget(int ms);

LLMP_HIDDEN_END

#endif /* LLMP_TCP_H */
