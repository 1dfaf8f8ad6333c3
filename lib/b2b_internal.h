/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * What the broker-to-broker files share: the link and dialler state and the
 * functions one of lib/b2b*.c gives the others.  Not installed.
 */
#ifndef LLMP_B2B_INTERNAL_H
#define LLMP_B2B_INTERNAL_H

#include <sys/socket.h>

#ifdef LLMP_HAVE_ZLIB
#include <zlib.h>
#endif
#ifdef LLMP_HAVE_ZSTD
#include <zstd.h>
#endif

#include "b2b.h"
#include "broker_internal.h"
#include "tcp.h"

LLMP_HIDDEN_BEGIN

#define COMPRESS_MIN 1024
#define ZSTD_MIN 256
#define ZSTD_LEVEL 1
/* Stop pulling local messages while this much is waiting to be sent. */
#define OUT_HIGH (1u << 20)
#define HANDSHAKE_TIMEOUT_MS 3000
#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000
/* A link that stayed up this long starts its next re-dial from BACKOFF_MIN_MS. */
#define STABLE_MS 10000
/* Failed attempts in a row logged at INFO; then DEBUG, with a WARN this often. */
#define LOUD_ATTEMPTS 3
#define WARN_EVERY_MS 60000
#define MAX_ADDRS 4
#define CAPS_LEN 12 /* magic (8) + codecs (u32 LE) */
#define CAPS_TOKEN_LEN 20 /* + the dialler's resume token (u64 LE) */
/* An accepted link waits this long for a capabilities frame before it ships the history. */
#define HOLD_MS 1000
/* Read positions of broken accepted links kept for their dialler's return, per broker. */
#define MAX_PARKED 64
/* A frame must be whole FRAME_BASE_MS after its first byte, plus 1 ms per KiB it declares. */
#define FRAME_BASE_MS 10000
/* Buffers above this are freed once their frame is done (out: once sent). */
#define KEEP_BUF (1u << 20)
/* The first allocation for a frame body; it doubles as bytes arrive. */
#define BODY_MIN (64u * 1024u)
/* A link that waits for the shared memory budget looks again this often. */
#define MEM_RETRY_MS 20

enum dial_state {
	D_WAIT,    /* down, next attempt at retry_at */
	D_CONNECT, /* non-blocking connect in progress */
	D_HELLO,   /* reading BrokerConnectHello */
	D_REQ,     /* sending our request */
	D_RESP,    /* reading the answer */
	D_UP,      /* link up: the normal data path */
};

struct dialer {
	struct sockaddr_storage addr[MAX_ADDRS];
	socklen_t alen[MAX_ADDRS];
	unsigned naddr, next_addr;
	char hostname[256];
	enum dial_state st;
	bool probing;    /* this connection asks EXT_QUERY (is the peer ours?) */
	bool peer_ours;  /* EXT_INFO came back on the last probe, or the peer proved the secret */
	bool authing;    /* the campaign secret's hello is out, its challenge is awaited */
	uint8_t nc[32];  /* our nonce for that challenge */
	int sock;        /* the socket being connected, -1 */
	int tfd;         /* timerfd: retry time or handshake deadline */
	int epfd;        /* epoll over sock and tfd: the loop's fd while not up */
	unsigned watched; /* epoll events sock is registered with (0: not in epfd) */
	int64_t deadline, retry_at, up_since, last_warn;
	unsigned backoff_ms;
	unsigned fails;  /* failed attempts since the last success */
	uint64_t attempts;
	uint64_t rng;
	uint64_t token;  /* identifies this link to the accepting broker across re-dials */
	uint8_t hs[1024]; /* handshake frame in or out */
	size_t hs_len, hs_off;
};

struct llmp_b2b_link {
	struct llmp_broker *b;
	int fd;                /* connected socket, -1 while a dialled link is down */
	uint32_t link_id;
	unsigned codecs;       /* LLMP_B2B_* this side wants to send with */
	char peer[80];
	struct llmp_receiver r;
	bool r_ok;
	/* codec agreement (our brokers only) */
	bool caps_sent;        /* we sent our capabilities frame */
	bool caps_got;         /* we got the peer's */
	bool peer_zstd;        /* the peer decodes zstd: we may send it */
	bool got_first;        /* a frame arrived on this connection */
	uint64_t token;        /* accepted link: the dialler's resume token (0: none) */
	struct llmp_b2b_link *live_next; /* in live_list while token != 0 */
	bool replaced;         /* its dialler is back on a new connection, which took the reader */
	/* accepted link, until the first frame or HOLD_MS: nothing is shipped yet */
	bool holding;
	int64_t hold_until;
	int hold_tfd, hold_epfd; /* timerfd at hold_until, epoll of it and the socket */
	uint64_t reserved_drops; /* local messages that carried LLMP_FLAG_ZSTD (not shipped) */
	/* outgoing bytes: out[out_off..out_len) */
	uint8_t *out;
	size_t out_len, out_off, out_cap;
	/* incoming frame */
	uint8_t hdr[4];
	size_t hdr_got;
	uint8_t *body;
	uint32_t body_len;
	size_t body_got, body_cap;
	int64_t frame_deadline; /* the frame being read must be whole by then */
	bool mem_wait;          /* stopped reading: the links' memory budget is spent */
	bool pending;           /* a whole frame waits for the inflate budget */
	int64_t stall_until;    /* ... until then */
	double tokens;          /* inflate budget left (bytes), refilled at lim->inflate_rate */
	int64_t tokens_at;      /* last refill (ms) */
	struct llmp_b2b_limits *lim;
	/* compression scratch */
	uint8_t *z;
	size_t zcap;
#ifdef LLMP_HAVE_ZSTD
	ZSTD_CCtx *zc;
	ZSTD_DCtx *zd;
#endif
#ifdef LLMP_HAVE_ZLIB
	z_stream zs;           /* kept and reset per message: an init costs more than a deflate */
	bool zs_ok;
#endif
	struct llmp_b2b_counters cnt;
	struct dialer *d;      /* NULL: accepted link */
};

/* b2b.c: the link itself */
int b2b_link_alloc(struct llmp_broker *b, uint32_t link_id, unsigned codecs, const char *peer,
		   struct llmp_b2b_limits *lim, struct llmp_b2b_link **out);
void b2b_link_attach(struct llmp_b2b_link *l, int fd);
/* A buffer of the link went from old to new bytes: keep lim->buffered true. */
void b2b_acct(struct llmp_b2b_link *l, size_t old, size_t new_size);
/* Free the incoming frame and forget any partial one (the connection is gone). */
void b2b_drop_in(struct llmp_b2b_link *l);
/* May the link inflate sz more bytes now?  If not it waits (-EAGAIN) for the budget. */
int b2b_inflate_budget(struct llmp_b2b_link *l, size_t sz);

/* b2b_codec.c: frames out and in */
int b2b_queue_caps(struct llmp_b2b_link *l);
int b2b_queue_msg(struct llmp_b2b_link *l, const struct llmp_rmsg *m);
int b2b_take_caps(struct llmp_b2b_link *l, const struct llmp_wire_b2b *w);
int b2b_unzstd(struct llmp_b2b_link *l, const struct llmp_wire_b2b *w, size_t *out_len);

/* b2b_resume.c: read positions kept across re-dials, the accepting side's hold */
void b2b_live_add(struct llmp_b2b_link *l);
void b2b_live_del(struct llmp_b2b_link *l);
void b2b_park(struct llmp_b2b_link *l);
bool b2b_unpark_into(struct llmp_b2b_link *l);
void b2b_hold_start(struct llmp_b2b_link *l);
void b2b_hold_end(struct llmp_b2b_link *l);

/* b2b_dial.c: connecting, the handshake, re-dialling */
int b2b_dial_step(struct llmp_b2b_link *l);
void b2b_link_broken(struct llmp_b2b_link *l, int64_t now);
void b2b_dialer_free(struct dialer *d);

LLMP_HIDDEN_END

#endif /* LLMP_B2B_INTERNAL_H */
