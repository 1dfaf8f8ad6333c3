/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * The NATS bridge's state, shared by lib/nats_bridge.c (the data path) and
 * lib/nats_conn.c (connecting, the stream, the consumer, freeing).  Needs
 * libnats; not installed.
 */
#ifndef LLMP_NATS_CONN_H
#define LLMP_NATS_CONN_H

#include <pthread.h>
#include <stdatomic.h>

#include <nats/nats.h>
#ifdef LLMP_HAVE_ZSTD
#include <zstd.h>
#endif

#include "broker_internal.h"
#include "nats_internal.h"

LLMP_HIDDEN_BEGIN

/* Foreign messages waiting for the loop (also the JetStream consumer's MaxAckPending). */
#define NATS_QCAP 4096
/* Core NATS: stop handing messages to libnats while this much waits to be sent. */
#define NATS_CORE_BUFFER (8u << 20)
#define NATS_SETUP_RETRY_MS 500
#define NATS_PUB_WAIT_MS 5000

struct nats_counters {
	atomic_ullong published, received, own, filtered, bad, too_big, lost, lost_pages;
	atomic_ullong overflow, retried, zstd, reconnects, pub_failed, dup;
};

struct llmp_nats {
	struct llmp_broker *b;
	int evfd;                  /* the loop's eventfd: written to wake it */
	natsOptions *opts;
	natsConnection *nc;
	jsCtx *js;
	jsPubOptions po;           /* JetStream publishes: the ack wait */
	natsSubscription *sub;
	char campaign[65];
	char subject[96];          /* llmp.<campaign>.> */
	char stream_name[80];      /* LLMP_<campaign> */
	char durable[24];          /* b<origin hex> */
	char origin_hex[17], boot_hex[9];
	struct nats_tags tags;
	uint64_t origin;
	uint64_t seq;
	bool stream;
	int64_t max_bytes, max_age_s;
	unsigned replicas;
	unsigned window;
	int64_t max_payload;
	bool ready;                /* subscribed (JetStream: stream and consumer there too) */
	int64_t next_setup;        /* JetStream setup failed: try again then (ms) */
	bool setup_logged;
	/* the read position on the broadcast history */
	struct llmp_receiver r;
	bool r_ok;
	uint64_t skipped_seen;
	bool recv_err_logged;
	struct nats_dedup dedup;   /* redeliveries seen again */
	natsMsg *held;             /* built, not yet taken by libnats */
	/* foreign messages from libnats's threads */
	pthread_mutex_t qlock;
	natsMsg *q[NATS_QCAP];
	unsigned qhead, qn;
	bool closing;
	/* shared with libnats's threads */
	atomic_bool connected, blocked, stop_retry, closed;
	atomic_uint pending;
	struct nats_counters c;
#ifdef LLMP_HAVE_ZSTD
	ZSTD_CCtx *zc;
	ZSTD_DCtx *zd;
#endif
	uint8_t *z, *d;            /* compression and decompression buffers */
	size_t zcap, dcap;
};

/* nats_bridge.c: libnats's callbacks and the loop's wake */
void nats_on_msg(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure);
void nats_on_puback(jsCtx *js, natsMsg *msg, jsPubAck *pa, jsPubAckErr *pae, void *closure);
void nats_wake(struct llmp_nats *n);
/* nats_conn.c: subscribe (JetStream: make sure of the stream and the consumer first). */
int nats_setup(struct llmp_nats *n);

LLMP_HIDDEN_END

#endif /* LLMP_NATS_CONN_H */
