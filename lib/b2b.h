/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/* Broker-to-broker links, driven by the event loop (lib/loop.c).  Not installed. */
#ifndef LLMP_B2B_H
#define LLMP_B2B_H

#include <poll.h>
#include <stdint.h>
#include <sys/socket.h>

#include "internal.h"
#include "llmp/broker.h"

LLMP_HIDDEN_BEGIN

struct llmp_b2b_link;

/* Codecs a link may send with (bits of the codecs arguments below). */
#define LLMP_B2B_DEFLATE 1u /* raw DEFLATE, LLMP_FLAG_COMPRESSED: any peer */
#define LLMP_B2B_ZSTD 2u    /* zstd, LLMP_FLAG_ZSTD: only to our brokers that agree */

/*
 * Memory limits shared by the links of one loop (the loop owns it; each
 * link keeps a pointer and adds what it holds to buffered).
 */
struct llmp_b2b_limits {
	size_t max_frame;    /* largest frame body taken from a peer, and largest zstd output */
	size_t memory;       /* bytes all links may hold in partial frames at once */
	size_t inflate_rate; /* zstd output bytes one link may produce per second */
	size_t buffered;     /* bytes the links hold now (frames in and out, scratch) */
	uint64_t throttled;  /* times a link stopped reading for the memory or inflate budget */
};

/* Counters of a link, added to *c by llmp_b2b_link_counters(). */
struct llmp_b2b_counters {
	uint64_t sent, received; /* messages */
	uint64_t deflated, zstd; /* of those sent, compressed with each codec */
	uint64_t dials;          /* connection attempts (dialled links) */
	uint64_t reserved;       /* received frames with a reserved tag: dropped, not forwarded */
};

/*
 * A link over a connected socket whose handshake is done (the listener
 * accepted a RemoteBrokerHello).  It reads the local broadcast page from its
 * first kept message and ships every message that did not itself come over
 * a link (no FROM_B2B flag); what the peer sends is put on the local
 * broadcast page with FROM_B2B added and the peer's client id kept, broker
 * field = link_id.
 */
int llmp_b2b_link_new(struct llmp_broker *b, int fd, uint32_t link_id, unsigned codecs,
		      const char *peer, struct llmp_b2b_limits *lim, struct llmp_b2b_link **out);
/*
 * A link this broker dials (addr NULL: 127.0.0.1), resolved now; it
 * connects from llmp_b2b_link_step() without blocking, and when it breaks
 * dials again with backoff (100 ms doubling to 5 s, jittered).  Its read
 * position in the broadcast page survives the re-dials.
 */
int llmp_b2b_link_dial(struct llmp_broker *b, const char *addr, uint16_t port,
		       const char *hostname, uint32_t link_id, unsigned codecs,
		       struct llmp_b2b_limits *lim, struct llmp_b2b_link **out);
/*
 * Move data both ways and drive the dialling without blocking: >0 messages
 * moved, 0 idle, <0 the link is dead (accepted links; a dialled link
 * re-dials instead and returns <0 only when out of memory).
 */
int llmp_b2b_link_step(struct llmp_b2b_link *l);
/* The fd (and events) the loop waits on for this link; always a valid fd. */
void llmp_b2b_link_pollfd(const struct llmp_b2b_link *l, struct pollfd *pfd);
/* Milliseconds until the link must be stepped again without an fd event (-1: none). */
int llmp_b2b_link_timeout_ms(const struct llmp_b2b_link *l, int64_t now);
/* True while the link is connected (handshake done). */
bool llmp_b2b_link_up(const struct llmp_b2b_link *l);
void llmp_b2b_link_counters(const struct llmp_b2b_link *l, struct llmp_b2b_counters *c);
void llmp_b2b_link_free(struct llmp_b2b_link *l);
/*
 * Free the read positions kept for diallers that may come back (accepted
 * links of b that broke); call after freeing b's links, before freeing b.
 */
void llmp_b2b_forget(struct llmp_broker *b);

/*
 * The listener asks whether a RemoteBrokerHello from ss may link (0 yes, <0
 * no, with the reason for the peer's Error answer in why), then hands the
 * socket over once RemoteBrokerAccepted is sent (tcp.c -> loop.c).
 */
typedef int (*llmp_b2b_admit_fn)(void *ctx, const struct sockaddr_storage *ss, char *why,
				 size_t cap);
typedef int (*llmp_b2b_accept_fn)(void *ctx, int fd, const char *peer,
				  const struct sockaddr_storage *ss);
void llmp_tcp_set_b2b_handler(struct llmp_tcp_listener *l, llmp_b2b_admit_fn admit,
			      llmp_b2b_accept_fn fn, void *ctx);

/* ---- who may link (b2b_allow.c) ---- */

#define LLMP_B2B_MAX_ALLOW 64
struct llmp_b2b_rule {
	uint8_t addr[16]; /* IPv6, or IPv4 as ::ffff:a.b.c.d */
	unsigned bits;    /* prefix length over the 16 bytes */
};
struct llmp_b2b_allow {
	unsigned n;       /* 0: loopback peers only */
	struct llmp_b2b_rule rule[LLMP_B2B_MAX_ALLOW];
};
/* Add "ADDR[/PREFIX]" (numeric IPv4 or IPv6). */
int llmp_b2b_allow_add(struct llmp_b2b_allow *al, const char *spec);
/* Does ss match a rule (no rules: is it loopback)? */
bool llmp_b2b_allow_match(const struct llmp_b2b_allow *al, const struct sockaddr_storage *ss);
bool llmp_b2b_is_loopback(const struct sockaddr_storage *ss);
/* Same IP address (ports aside; IPv4 equals its IPv4-mapped IPv6 form)? */
bool llmp_b2b_same_addr(const struct sockaddr_storage *x, const struct sockaddr_storage *y);
/*
 * May ss open a link to a broker whose links are links[0..n)?  Yes (0) if
 * the allow list (no rules: loopback) matches or a dialled link connects to
 * ss, and fewer than max_accepted accepted links exist; else <0 with the
 * reason for the peer in why.
 */
int llmp_b2b_admit(const struct llmp_b2b_allow *al, struct llmp_b2b_link *const *links, unsigned n,
		   unsigned max_accepted, const struct sockaddr_storage *ss, char *why, size_t cap);
/*
 * Fill *lim from the options (0: default): max_frame 32 x the broadcast page
 * size, at least 1 MiB, at most LLMP_TCP_MAX_FRAME; memory 4 x max_frame (at
 * least one frame plus 1 MiB); inflate_rate 64 MiB/s.
 */
void llmp_b2b_limits_init(struct llmp_b2b_limits *lim, size_t page, size_t max_frame,
			  size_t memory, size_t inflate_rate);
/* Is ss one of the addresses this (dialled) link connects to?  False for accepted links. */
bool llmp_b2b_link_dials(const struct llmp_b2b_link *l, const struct sockaddr_storage *ss);
/* True for a link this broker dials, false for an accepted one. */
bool llmp_b2b_link_dialled(const struct llmp_b2b_link *l);

LLMP_HIDDEN_END

#endif /* LLMP_B2B_H */
