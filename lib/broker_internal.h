/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * The broker's internal API, for the TCP listener, broker-to-broker links
 * and the event loop (lib/tcp.c, lib/b2b.c, lib/loop.c).  All of these run
 * on the broker's thread: the broker is not thread-safe, except for
 * llmp_broker_stop() and the sleep word.  Not installed.
 */
#ifndef LLMP_BROKER_INTERNAL_H
#define LLMP_BROKER_INTERNAL_H

#include "page.h"
#include "llmp/broker.h"

LLMP_HIDDEN_BEGIN

/*
 * Every tag the protocol (or our B2B capabilities frame) gives a meaning:
 * no client may send one, no B2B link may forward one.
 */
static inline bool llmp_tag_reserved(uint32_t tag)
{
	switch (tag) {
	case LLMP_TAG_UNSET:
	case LLMP_TAG_UNINITIALIZED:
	case LLMP_TAG_END_OF_PAGE:
	case LLMP_TAG_NEW_SHM_CLIENT:
	case LLMP_TAG_CLIENT_EXIT:
	case LLMP_TAG_EXITING:
	case LLMP_TAG_SLOW_RECEIVER_PANIC:
	case LLMP_TAG_B2B_CAPS: /* ours, only as a link's first frame (take_caps) */
		return true;
	default:
		return false;
	}
}

/* Register a client's first out page (as llmp_broker_add_client): new id or <0. */
int llmp_broker_register_desc(struct llmp_broker *b, const struct llmp_shmem_desc *d);
/*
 * Register page d on behalf of a peer (TCP LocalClientHello): refused
 * (<0, logged with who) unless the peer is local (or allow_remote_clients
 * is set), the id is canonical, the page is new to the broker and, for a
 * local peer, one it could open itself (lib/shmem_ident.c).  New id or <0.
 */
int llmp_broker_register_peer(struct llmp_broker *b, const struct llmp_shmem_desc *d,
			      const struct llmp_peer_cred *peer, const char *who);
/*
 * A peer's ClientQuit: removes client id only if the peer is root or the
 * uid that registered it (remote peers: only clients remote peers
 * registered, with allow_remote_clients).  0, -ENOENT, or -EPERM (logged).
 */
int llmp_broker_quit_client(struct llmp_broker *b, uint32_t id, const struct llmp_peer_cred *peer,
			    const char *who);
/*
 * The campaign secret's key (llmp_broker_set_secret(), lib/auth.c), or NULL
 * when none is set; *required: peers must prove it even from loopback.
 */
const uint8_t *llmp_broker_secret(const struct llmp_broker *b, bool *required);
/* The id the next registration will get. */
uint32_t llmp_broker_next_id(const struct llmp_broker *b);
/* Is id a registered client (not removed)? */
bool llmp_broker_client_live(const struct llmp_broker *b, uint32_t id);
/* Forget a client (as if it had sent CLIENT_EXIT): 0, or -ENOENT. */
int llmp_broker_remove_client(struct llmp_broker *b, uint32_t id);
/*
 * Put a message on the broadcast page as if client `sender` of broker
 * `broker_id` had sent it (hooks are not called): e.g. messages that came
 * over a broker-to-broker link, with LLMP_FLAG_FROM_B2B in flags.
 */
int llmp_broker_forward(struct llmp_broker *b, uint32_t sender, uint32_t tag, uint32_t flags,
			uint32_t broker_id, const void *buf, size_t len);
/* The broadcast sender (client id 0). */
struct llmp_sender *llmp_broker_bcast(struct llmp_broker *b);
struct llmp_provider *llmp_broker_provider(const struct llmp_broker *b);
/* True once llmp_broker_stop() was called. */
bool llmp_broker_stop_requested(const struct llmp_broker *b);
/*
 * The sleep announce word: the broker's loop stores 1 (seq_cst) before it
 * re-checks every client and sleeps, and 0 when it wakes.  Whoever wakes
 * the broker (a doorbell) loads it after committing a message.
 */
uint32_t *llmp_broker_sleep_word(struct llmp_broker *b);
/* Messages forwarded to the broadcast page so far. */
uint64_t llmp_broker_forwarded(const struct llmp_broker *b);
/* Broadcast pages dropped by the history bound so far. */
uint64_t llmp_broker_pages_dropped(const struct llmp_broker *b);

/*
 * On a client's own out page, ask the broker to register the page d as a
 * new client (NEW_SHM_CLIENT), as LibAFL's TCP listener does.
 */
int llmp_client_announce(struct llmp_client *c, const struct llmp_shmem_desc *d);

LLMP_HIDDEN_END

#endif /* LLMP_BROKER_INTERNAL_H */
