/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * The broker's state, shared by lib/broker.c (forwarding, hooks, removal,
 * the run loop) and lib/broker_register.c (which pages it reads).  Not
 * installed.
 */
#ifndef LLMP_BROKER_STATE_H
#define LLMP_BROKER_STATE_H

#include "broker_internal.h"

LLMP_HIDDEN_BEGIN

struct bclient {
	uint32_t id;
	bool gone;
	struct llmp_receiver r;
	/* liveness: the creator of the page being read, 0 if unknown or ourselves */
	struct llmp_pidwatch watch;
	uint64_t pid_page;    /* r.pages_seen when pid was read */
	uint64_t msgs;        /* messages taken from this client */
	uint64_t dead_msgs;   /* msgs when the creator was found dead */
	uint64_t dead_since;  /* llmp_now_ns() of that, 0: alive */
	/* what the page being read is (identity, not spelling); space NONE: unknown */
	struct llmp_shmem_ident ident;
	/* who registered it: a quit is taken from that uid or root (reg_known) */
	bool reg_known, reg_remote;
	uint32_t reg_uid;
};

struct hook {
	llmp_hook_fn fn;
	void *ctx;
};

struct llmp_broker {
	struct llmp_provider *p;
	struct llmp_sender out;
	struct bclient *clients;
	unsigned n, cap;
	struct hook *hooks;
	unsigned nhooks;
	uint32_t next_id;
	unsigned exit_after;
	unsigned seen, left;
	int stop;           /* atomic */
	uint32_t sleeping;  /* atomic: the sleep announce word */
	bool exiting_sent;
	bool removals;
	uint64_t forwarded;
	uint64_t grace_ns;      /* dead_client_grace_ms */
	uint64_t next_check;    /* llmp_now_ns() of run()'s next liveness check */
	unsigned max_clients;   /* registrations beyond this many live clients are refused */
	bool cap_logged;        /* the cap was reported since the count last fell below it */
	bool remote_clients;    /* remote TCP peers may register pages */
	bool has_secret;        /* llmp_broker_set_secret(): TCP peers prove secret */
	bool secret_required;   /* ... even from loopback (no LibAFL peers) */
	uint8_t secret[32];     /* SHA-256 of the secret file */
};

/* Register page d for the program (peer NULL) or a peer: new id or <0 (logged). */
int llmp_broker_register_page(struct llmp_broker *b, const struct llmp_shmem_desc *d,
			      const struct llmp_peer_cred *peer, const char *who);
/* c's reader moved to another page: 0, or -EBADMSG (drop c). */
int llmp_broker_check_new_page(struct llmp_broker *b, struct bclient *c);
/* Record who created the page c reads now, and watch that process. */
void llmp_broker_watch_creator(struct bclient *c);

LLMP_HIDDEN_END

#endif /* LLMP_BROKER_STATE_H */
