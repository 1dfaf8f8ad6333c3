/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * Shared state of the shmem server's files: the loop and its life
 * (lib/shmem_server.c) and the segment table with the requests that change
 * it (lib/served_table.c).  Not installed; Linux only.
 */
#ifndef LLMP_SERVED_SERVER_H
#define LLMP_SERVED_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "internal.h"
#include "served_proto.h"

LLMP_HIDDEN_BEGIN

struct srv_seg {
	uint64_t num;		   /* counter part of the id */
	char id[LLMP_SHMEM_ID_LEN];
	int fd;			   /* sealed memfd */
	uint64_t size;
	uint32_t refs;		   /* sum of every client's count */
	uint32_t creator;	   /* pid of the connection that created it (SO_PEERCRED) */
};

struct srv_ref {
	uint64_t num; /* segment */
	uint32_t count;
};

struct srv_client {
	int fd;
	bool hello;
	bool dead;
	uint16_t version;
	uint32_t pid; /* SO_PEERCRED at accept, in our pid namespace; 0 if not visible */
	size_t have; /* bytes in `in` */
	unsigned char in[sizeof(struct served_hdr) + SERVED_MAX_REQ_BODY];
	struct srv_ref *refs;
	size_t nrefs, cap;
};

/*
 * A fork hold: a copy of one connection's references, taken just before
 * the client forks, so the segments survive until the child has its own
 * connection (ADOPT moves them there), even if the parent releases them or
 * dies first.  Not adopted in time, a hold expires and drops them.
 */
struct srv_hold {
	uint32_t num;
	uint64_t deadline_ms; /* CLOCK_MONOTONIC */
	struct srv_ref *refs;
	size_t nrefs;
};

struct srv_state {
	int lfd;
	int wake;	 /* read end of the stop pipe (THREAD), -1 (PROCESS) */
	char tag[8];	 /* random per server: ids of another server never match */
	uint64_t next;	 /* segment counter */
	struct srv_seg *segs;
	size_t nsegs, segcap;
	uint64_t bytes;
	struct srv_client **cls;
	size_t ncls;
	struct srv_hold *holds;
	size_t nholds;
	uint32_t next_hold;
	uint32_t hold_ms;
};

/* One reply being built: status and fields, message text, descriptor to pass. */
struct srv_reply {
	struct served_reply r;
	char msg[SERVED_MAX_MSG + 1];
	int fd; /* to pass, or -1 */
};

/* Set rep's status and message; returns err. */
int srv_reply_err(struct srv_reply *rep, int err, const char *fmt, ...) LLMP_PRINTF(3, 4);

/* ---- lib/served_table.c ---- */
/* Answer one framed request of client c in rep (HELLO and every later op). */
void srv_handle(struct srv_state *st, struct srv_client *c, const struct served_hdr *h,
		const unsigned char *body, struct srv_reply *rep);
/* Drop every reference of c (the connection is closing). */
void srv_client_unref(struct srv_state *st, struct srv_client *c);
/* Expire old holds; returns the poll timeout (ms) until the next one, or -1. */
int srv_holds_expire(struct srv_state *st);
/* Free every hold and segment (the server stops). */
void srv_table_fini(struct srv_state *st);

LLMP_HIDDEN_END

#endif /* LLMP_SERVED_SERVER_H */
