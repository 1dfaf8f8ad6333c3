/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/* Broker-to-broker links, driven by the event loop (lib/loop.c).  Not installed. */
#ifndef LLMP_B2B_H
#define LLMP_B2B_H

#include <poll.h>
#include <stdint.h>

#include "internal.h"
#include "llmp/broker.h"

LLMP_HIDDEN_BEGIN

struct llmp_b2b_link;

/*
 * A link over a connected socket whose handshake is done.  It reads the
 * local broadcast page from its first kept message and ships every message
 * that did not itself come over a link (no FROM_B2B flag); what the peer
 * sends is put on the local broadcast page with FROM_B2B added and the
 * peer's client id kept, broker field = remote_id.
 */
int llmp_b2b_link_new(struct llmp_broker *b, int fd, uint32_t remote_id, bool compress,
		      const char *peer, struct llmp_b2b_link **out);
/* Move data both ways without blocking: >0 messages moved, 0 idle, <0 link is dead. */
int llmp_b2b_link_step(struct llmp_b2b_link *l);
void llmp_b2b_link_pollfd(const struct llmp_b2b_link *l, struct pollfd *pfd);
void llmp_b2b_link_stats(const struct llmp_b2b_link *l, uint64_t *sent, uint64_t *received);
void llmp_b2b_link_free(struct llmp_b2b_link *l);

/* Outgoing handshake (blocking, with timeouts): returns the connected fd or <0. */
int llmp_b2b_dial(const char *addr, uint16_t port, const char *hostname, uint32_t *remote_id);

/* The listener hands RemoteBrokerHello peers over (tcp.c -> loop.c). */
typedef int (*llmp_b2b_accept_fn)(void *ctx, int fd, const char *peer);
void llmp_tcp_set_b2b_handler(struct llmp_tcp_listener *l, llmp_b2b_accept_fn fn, void *ctx);

LLMP_HIDDEN_END

#endif /* LLMP_B2B_H */
