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

/* Codecs a link may send with (bits of the codecs arguments below). */
#define LLMP_B2B_DEFLATE 1u /* raw DEFLATE, LLMP_FLAG_COMPRESSED: any peer */
#define LLMP_B2B_ZSTD 2u    /* zstd, LLMP_FLAG_ZSTD: only to our brokers that agree */

/* Counters of a link, added to *c by llmp_b2b_link_counters(). */
struct llmp_b2b_counters {
	uint64_t sent, received; /* messages */
	uint64_t deflated, zstd; /* of those sent, compressed with each codec */
	uint64_t dials;          /* connection attempts (dialled links) */
	uint64_t reserved;       /* received frames with a reserved tag: dropped, not forwarded */
};

/* Tags a link never forwards (the protocol's control tags and ours). */
bool llmp_b2b_tag_reserved(uint32_t tag);

/*
 * A link over a connected socket whose handshake is done (the listener
 * accepted a RemoteBrokerHello).  It reads the local broadcast page from its
 * first kept message and ships every message that did not itself come over
 * a link (no FROM_B2B flag); what the peer sends is put on the local
 * broadcast page with FROM_B2B added and the peer's client id kept, broker
 * field = link_id.
 */
int llmp_b2b_link_new(struct llmp_broker *b, int fd, uint32_t link_id, unsigned codecs,
		      const char *peer, struct llmp_b2b_link **out);
/*
 * A link this broker dials (addr NULL: 127.0.0.1), resolved now; it
 * connects from llmp_b2b_link_step() without blocking, and when it breaks
 * dials again with backoff (100 ms doubling to 5 s, jittered).  Its read
 * position in the broadcast page survives the re-dials.
 */
int llmp_b2b_link_dial(struct llmp_broker *b, const char *addr, uint16_t port,
		       const char *hostname, uint32_t link_id, unsigned codecs,
		       struct llmp_b2b_link **out);
/*
 * Move data both ways and drive the dialling without blocking: >0 messages
 * moved, 0 idle, <0 the link is dead (accepted links; a dialled link
 * re-dials instead and returns <0 only when out of memory).
 */
int llmp_b2b_link_step(struct llmp_b2b_link *l);
/* The fd (and events) the loop waits on for this link; always a valid fd. */
void llmp_b2b_link_pollfd(const struct llmp_b2b_link *l, struct pollfd *pfd);
/* True while the link is connected (handshake done). */
bool llmp_b2b_link_up(const struct llmp_b2b_link *l);
void llmp_b2b_link_counters(const struct llmp_b2b_link *l, struct llmp_b2b_counters *c);
void llmp_b2b_link_free(struct llmp_b2b_link *l);
/*
 * Free the read positions kept for diallers that may come back (accepted
 * links of b that broke); call after freeing b's links, before freeing b.
 */
void llmp_b2b_forget(struct llmp_broker *b);

/* The listener hands RemoteBrokerHello peers over (tcp.c -> loop.c). */
typedef int (*llmp_b2b_accept_fn)(void *ctx, int fd, const char *peer);
void llmp_tcp_set_b2b_handler(struct llmp_tcp_listener *l, llmp_b2b_accept_fn fn, void *ctx);

LLMP_HIDDEN_END

#endif /* LLMP_B2B_H */
