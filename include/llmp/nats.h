/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * The NATS bridge: links a broker's event loop to brokers on other hosts
 * through a NATS server or cluster (core NATS or JetStream) instead of a
 * mesh of broker-to-broker links.  See Documentation/fleet.rst.
 *
 * Messages local clients send (not those that came from NATS or a B2B
 * link, no control tags) are published to llmp.<campaign>.<tag in hex>;
 * messages other brokers published there are written onto the broadcast
 * page with LLMP_FLAG_FROM_B2B.  Needs libnats (Debian's libnats-dev) at
 * build time: without it llmp_loop_attach_nats() returns -EOPNOTSUPP.
 * Functions return 0 on success and a negative errno on failure.
 */
#ifndef LLMP_NATS_H
#define LLMP_NATS_H

#include <stdbool.h>
#include <stdint.h>

#include "llmp/broker.h"

#ifdef __cplusplus
extern "C" {
#endif

struct llmp_nats; /* opaque; owned by the loop it is attached to */

struct llmp_nats_opts {
	uint32_t struct_size;     /* sizeof(struct llmp_nats_opts) */
	const char *urls;         /* "nats://host:port[,nats://host:port...]", tried in turn */
	const char *campaign;     /* subject token: [A-Za-z0-9_-], 1..64 characters */
	const char *creds_file;   /* NULL, a NATS .creds file, or a file "user:password" or "token" */
	const char *tls_ca_file;  /* NULL, or CA certificates (PEM): TLS to the servers */
	const char *state_file;   /* keeps the broker's 64-bit origin id across restarts; NULL: new id */
	const char *tags;         /* NULL/"all", "0x10,0x11" (only these), "!0x12,..." (all but) */
	bool retry;               /* servers unreachable at start: serve locally, retry with backoff */
	bool stream;              /* JetStream: stream LLMP_<campaign>, durable consumer per broker */
	int64_t stream_max_bytes; /* the stream's limits when this call creates it; 0: none */
	int64_t stream_max_age_s;
	unsigned stream_replicas; /* copies of the stream in a NATS cluster; 0: 1 */
	unsigned window;          /* publishes in flight at most; 0: 1024 */
};

struct llmp_nats_stats {
	uint64_t origin;          /* this broker's origin id */
	bool connected;
	uint64_t published;       /* local messages handed to NATS (JetStream: acknowledged) */
	uint64_t received;        /* foreign messages written onto the broadcast page */
	uint64_t own;             /* our own messages that came back (dropped) */
	uint64_t filtered;        /* messages the tag filter kept from crossing (both ways) */
	uint64_t bad;             /* malformed, lying or reserved-tag messages dropped */
	uint64_t too_big;         /* local messages over the server's max_payload (not published) */
	uint64_t lost;            /* times the bridge fell out of the broadcast history: the
				     local messages of the skipped pages were never published */
	uint64_t lost_pages;      /* the history pages skipped so */
	uint64_t overflow;        /* foreign messages dropped: the bridge's queue was full (core) */
	uint64_t retried;         /* JetStream publishes sent again after a timeout */
	uint64_t dup;             /* foreign messages delivered again (same origin, run, sequence): dropped */
	uint64_t zstd;            /* messages published zstd-compressed */
	uint64_t reconnects;
	unsigned pending;         /* publishes in flight now */
	char server[128];         /* the URL of the server connected to ("" while down) */
};

/*
 * Connect a bridge and attach it to lp (from the loop's thread, or before
 * llmp_loop_run()).  Fails with a clear error (llmp_strerror_last()) when
 * the servers cannot be reached or refuse the credentials, unless o->retry.
 * The loop frees the bridge with itself.  *out (may be NULL) is for
 * llmp_nats_stats().
 */
int llmp_loop_attach_nats(struct llmp_loop *lp, const struct llmp_nats_opts *o,
			  struct llmp_nats **out);
/* The bridge's counters; safe from any thread while the loop lives. */
void llmp_nats_stats(const struct llmp_nats *n, struct llmp_nats_stats *st);

#ifdef __cplusplus
}
#endif

#endif /* LLMP_NATS_H */
