/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * The client object, shared by lib/client.c (pages, sending, restart),
 * lib/client_wait.c (receiving, waiting, broker liveness, the event fd) and
 * lib/client_guard.c (LLMP_DEBUG_RECV).
 */
#ifndef LLMP_CLIENT_INTERNAL_H
#define LLMP_CLIENT_INTERNAL_H

#include "page.h"

struct llmp_client_notify; /* the event fd's watcher (client_wait.c) */
struct llmp_recv_guard;   /* LLMP_DEBUG_RECV's buffers (client_guard.c) */

struct llmp_client {
	struct llmp_provider *p;
	struct llmp_sender out;
	struct llmp_receiver in;
	bool skip_own;
	int timeout_ms;
	struct llmp_waker *waker;	/* pokes a sleeping broker after commits; NULL: none */
	uint64_t rep_seen;	/* in.pages_seen when the waker last reported our position */
	/* the broker's process (creator of the broadcast page), if known and not us */
	struct llmp_pidwatch bw;
	uint64_t next_check_ns;		/* coarse clock of the next liveness check (atomic) */
	int gone;			/* -EPIPE once the broker is known dead (atomic, sticky) */
	struct llmp_client_notify *nt;	/* llmp_client_event_fd()'s watcher, NULL: none */
	struct llmp_recv_guard *guard;	/* LLMP_DEBUG_RECV set: received buffers are guarded copies */
};

/* How often sends and empty receives look whether the broker still lives. */
#define LLMP_CLIENT_CHECK_NS (100ull * 1000000ull)

LLMP_HIDDEN_BEGIN

/* Start watching the broker's process (at creation). */
void llmp_client_watch_broker(struct llmp_client *c);
/* The slow path of client_broker_gone(): look now.  0 alive, -EPIPE dead. */
int llmp_client_check_broker(struct llmp_client *c);
/* Stop the event fd's watcher and close the fd (at free). */
void llmp_client_notify_free(struct llmp_client *c);
uint64_t llmp_coarse_ns(void);
/* LLMP_DEBUG_RECV (client_guard.c): set up at creation (0 or -ENOMEM), freed at free. */
int llmp_client_guard_init(struct llmp_client *c);
void llmp_client_guard_free(struct llmp_client *c);
/* Make the buffer the last recv returned inaccessible (at the next recv). */
void llmp_client_guard_retire(struct llmp_recv_guard *g);
/* Point v->buf at a guarded private copy of its payload: 1, or -ENOMEM. */
int llmp_client_guard_copy(struct llmp_recv_guard *g, struct llmp_msg_view *v);

LLMP_HIDDEN_END

/* 0 while the broker lives (looked at most every LLMP_CLIENT_CHECK_NS), -EPIPE once dead. */
static inline int llmp_client_broker_gone(struct llmp_client *c)
{
	if (LLMP_UNLIKELY(__atomic_load_n(&c->gone, __ATOMIC_RELAXED)))
		return llmp_client_check_broker(c);
	if (LLMP_LIKELY(c->bw.pid <= 0))
		return 0;
	if (LLMP_LIKELY(llmp_coarse_ns() < __atomic_load_n(&c->next_check_ns, __ATOMIC_RELAXED)))
		return 0;
	return llmp_client_check_broker(c);
}

#endif /* LLMP_CLIENT_INTERNAL_H */
