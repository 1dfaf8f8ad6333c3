/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * The broker as a service: LibAFL-compatible TCP registration, the wire
 * codec of its frames, and the client side of the TCP handshake.
 *
 * Wire format (as LibAFL's ll_mp speaks it): every frame is a 4-byte
 * big-endian length followed by that many bytes of "postcard" encoding:
 * unsigned integers as LEB128 varints, enum variants as a varint index,
 * strings and byte vectors as varint length + bytes, the 20-byte segment
 * id raw.  See Documentation/broker.rst.
 *
 * Functions return 0 (or a documented non-negative value) on success and a
 * negative errno on failure, with the reason in llmp_strerror_last().
 */
#ifndef LLMP_BROKER_H
#define LLMP_BROKER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "llmp/llmp.h"
#include "llmp/shmem.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- wire codec ----------------------------------------------------------- */

/* Largest frame body accepted (LibAFL's LLMP_TCP_MAX_MSG_LEN). */
#define LLMP_TCP_MAX_FRAME (128u * 1024u * 1024u)
/* Largest request the listener accepts (a valid one is far smaller). */
#define LLMP_TCP_MAX_REQUEST 4096u
/* LibAFL's default broker port. */
#define LLMP_TCP_DEFAULT_PORT 1337

/* A segment description as it travels on the wire: no kind (both ends agree on it). */
struct llmp_wire_desc {
	uint64_t size;
	uint8_t id[LLMP_SHMEM_ID_LEN];
};

enum llmp_tcp_req_type {
	LLMP_TCP_REQ_LOCAL_CLIENT_HELLO = 0,  /* desc: the client's first out page */
	LLMP_TCP_REQ_REMOTE_BROKER_HELLO = 1, /* text: the remote broker's hostname */
	LLMP_TCP_REQ_CLIENT_QUIT = 2,         /* id: the client that quits */
	/*
	 * Ours, not LibAFL's (a LibAFL broker drops the connection): "which
	 * extensions do you have?"  No fields.  Answered with EXT_INFO.
	 */
	LLMP_TCP_REQ_EXT_QUERY = 0x4C4C,
};

enum llmp_tcp_resp_type {
	LLMP_TCP_RESP_BROKER_CONNECT_HELLO = 0,   /* desc: broadcast page, text: hostname */
	LLMP_TCP_RESP_LOCAL_CLIENT_ACCEPTED = 1,  /* id: the new client id */
	LLMP_TCP_RESP_REMOTE_BROKER_ACCEPTED = 2, /* id: the broker id */
	LLMP_TCP_RESP_ERROR = 3,                  /* text: description */
	/* Ours: desc: the broker's control segment, id: its layout version. */
	LLMP_TCP_RESP_EXT_INFO = 0x4C4C,
};

/*
 * One request or response.  Which fields count depends on type (see the
 * enums).  After decoding, text points into the decoded buffer (valid UTF-8,
 * not NUL-terminated); for encoding, text/text_len give the string.
 */
struct llmp_wire_msg {
	uint32_t type;
	uint32_t id;
	struct llmp_wire_desc desc;
	const char *text;
	size_t text_len;
};

/*
 * Ours, only between two of our brokers that agreed on it (see
 * Documentation/broker.rst, "Compression"): the payload of a B2B frame is
 * one zstd frame.  The receiving broker decompresses, so it is never seen
 * on a page.  LibAFL uses bits 0x1, 0x2 and 0x4.
 */
#define LLMP_FLAG_ZSTD 0x100u
/*
 * Ours: the capabilities frame two of our brokers exchange first on a B2B
 * link (tag, client id 0, flags 0; payload: the 8 bytes of
 * LLMP_B2B_CAPS_MAGIC, then a u32 little endian of LLMP_B2B_CAPS_* bits:
 * the codecs the sender decodes; from the dialling side then a u64 little
 * endian resume token, the same on every re-dial of that link).  Never
 * sent to a LibAFL peer.
 */
#define LLMP_TAG_B2B_CAPS 0x4C4C4243u
#define LLMP_B2B_CAPS_MAGIC "LLMPCAPS"
#define LLMP_B2B_CAPS_ZSTD 0x1u

/* A broker-to-broker message (LibAFL's TcpRemoteNewMessage). */
struct llmp_wire_b2b {
	uint32_t client_id;
	uint32_t tag;
	uint32_t flags;
	const void *buf; /* after decoding: points into the decoded buffer */
	size_t len;
};

/*
 * Encoders write the frame body (no length prefix) into buf and return its
 * length, -ENOSPC if cap is too small, -EINVAL for an invalid message.
 * Decoders parse exactly len bytes and return 0, or -EBADMSG on any
 * malformed byte: unknown variant, truncated or overlong varint, value out
 * of range, invalid UTF-8, trailing bytes.
 */
int llmp_wire_encode_req(const struct llmp_wire_msg *m, void *buf, size_t cap);
int llmp_wire_decode_req(const void *buf, size_t len, struct llmp_wire_msg *m);
int llmp_wire_encode_resp(const struct llmp_wire_msg *m, void *buf, size_t cap);
int llmp_wire_decode_resp(const void *buf, size_t len, struct llmp_wire_msg *m);
int llmp_wire_encode_b2b(const struct llmp_wire_b2b *m, void *buf, size_t cap);
/* Only the part before the payload (for writev); the payload follows it. */
int llmp_wire_encode_b2b_head(const struct llmp_wire_b2b *m, void *buf, size_t cap);
int llmp_wire_decode_b2b(const void *buf, size_t len, struct llmp_wire_b2b *m);

/* Write the 4-byte big-endian length prefix. */
void llmp_wire_put_len(void *hdr4, uint32_t len);
/* Read it: 0, or -EMSGSIZE if above max (bytes). */
int llmp_wire_get_len(const void *hdr4, uint32_t max, uint32_t *len);

/* Convert between wire and local descriptions (the kind comes from the provider). */
void llmp_wire_desc_from_shmem(const struct llmp_shmem_desc *d, struct llmp_wire_desc *w);
int llmp_wire_desc_to_shmem(const struct llmp_wire_desc *w, enum llmp_shmem_kind kind,
			    struct llmp_shmem_desc *d);

/* ---- TCP registration: the broker side ---------------------------------- */

struct llmp_tcp_listener; /* opaque */

struct llmp_tcp_listener_opts {
	uint32_t struct_size;  /* sizeof(struct llmp_tcp_listener_opts) */
	int peer_timeout_ms;   /* a peer must finish its request within this; 0: 3000 */
	unsigned max_peers;    /* handshakes in progress at once (then the oldest goes); 0: 256 */
	const char *hostname;  /* sent in the hello; NULL: gethostname() */
};

struct llmp_tcp_stats {
	uint64_t accepted;     /* connections accepted */
	uint64_t registered;   /* LocalClientHello served */
	uint64_t quits;        /* ClientQuit served */
	uint64_t dropped;      /* peers dropped (timeout, bad frame, errors) */
	uint64_t refused;      /* well-formed requests refused (Error sent) */
	uint64_t accept_pauses; /* accept() ran out of fds or memory: paused 100 ms */
};

/*
 * Listen on addr:port (addr NULL: 127.0.0.1, LibAFL's default; port 0: any
 * free port, see llmp_tcp_listener_port()).  Every accepted peer first gets
 * the BrokerConnectHello naming the broker's broadcast page, then may send
 * one request.  Nothing blocks: llmp_tcp_listener_service() does the work
 * and must run on the thread that runs the broker (it registers clients
 * with it).  A peer that stays silent, stops mid-frame or sends more than
 * it may is dropped after peer_timeout_ms; a malformed frame at once.
 */
int llmp_tcp_listen(struct llmp_broker *b, const char *addr, uint16_t port,
		    const struct llmp_tcp_listener_opts *opts, struct llmp_tcp_listener **out);
uint16_t llmp_tcp_listener_port(const struct llmp_tcp_listener *l);
/* Accept and serve whatever is ready without blocking: requests served (>=0) or <0. */
int llmp_tcp_listener_service(struct llmp_tcp_listener *l);
void llmp_tcp_listener_stats(const struct llmp_tcp_listener *l, struct llmp_tcp_stats *st);
/* Close the socket and every peer still in its handshake. */
void llmp_tcp_listener_free(struct llmp_tcp_listener *l);

/* ---- TCP registration: the client side ---------------------------------- */

/* How long a client keeps retrying a refused connection, and waits for each answer. */
#define LLMP_TCP_CONNECT_TIMEOUT_MS 10000

/*
 * Connect to a broker (ours or LibAFL's) at addr:port (addr NULL:
 * 127.0.0.1): read its hello, map its broadcast page with p (both sides
 * must use the same provider kind), create this client's out page, send
 * LocalClientHello and take the id the broker assigns.
 */
int llmp_client_connect_tcp(struct llmp_provider *p, const char *addr, uint16_t port,
			    const struct llmp_client_opts *opts, struct llmp_client **out);
/*
 * After a client saw its broker die (-EPIPE or -ESHUTDOWN from send, recv
 * or the event fd): register again with llmp_client_connect_tcp(),
 * retrying while nobody answers at addr:port (every 50 ms, doubling up to
 * 2 s), for up to timeout_ms (-1: until a broker is back).  *out is a new
 * client with a new id and new out pages; free the old one.  What may have
 * been lost, and is not repeated: the old client's messages that the dead
 * broker had not yet read from its page, and whatever was broadcast while
 * no broker ran (a restarted broker's history starts empty).  0,
 * -ETIMEDOUT, or the first error that retrying cannot mend (e.g. -EACCES
 * for a wrong campaign secret, -EPROTOTYPE for another provider).
 */
int llmp_client_reconnect_tcp(struct llmp_provider *p, const char *addr, uint16_t port,
			      const struct llmp_client_opts *opts, int timeout_ms,
			      struct llmp_client **out);
/* Tell the broker at addr:port that client_id quits (LibAFL's ClientQuit request). */
int llmp_tcp_client_quit(const char *addr, uint16_t port, uint32_t client_id);

/* ---- waking a sleeping broker (our extension) ---------------------------- */

struct llmp_waker; /* opaque */

/*
 * Ask the broker at addr:port for its control segment (our EXT_QUERY
 * request) and map it.  -EOPNOTSUPP (or a connection error) from a broker
 * that is not ours, e.g. LibAFL's: then there is nothing to poke.
 */
int llmp_waker_connect_tcp(struct llmp_provider *p, const char *addr, uint16_t port,
			   struct llmp_waker **out);
/* Map a control segment by description (e.g. handed down by a parent process). */
int llmp_waker_attach(struct llmp_provider *p, const struct llmp_shmem_desc *ctl,
		      struct llmp_waker **out);
/*
 * Call after committing a message: if the broker announced that it sleeps,
 * wake it (1: this call flipped the word and woke it, by FUTEX_WAKE or by
 * ringing its bell), else do nothing (0: a fence and a load, no system call).
 */
int llmp_waker_poke(struct llmp_waker *w);
void llmp_waker_free(struct llmp_waker *w);
/*
 * Give the client a waker (it takes ownership; NULL drops the old one): its
 * sends and commits then poke the broker.  llmp_client_connect_tcp() does
 * this itself when the broker is ours.
 */
void llmp_client_set_waker(struct llmp_client *c, struct llmp_waker *w);

/* ---- the event loop ------------------------------------------------------- */

struct llmp_loop; /* opaque */

enum llmp_loop_backend {
	LLMP_LOOP_AUTO = 0,  /* io_uring if it works here, else poll */
	LLMP_LOOP_URING = 1, /* io_uring (fails with -ENOSYS/-EPERM where unavailable) */
	LLMP_LOOP_POLL = 2,  /* poll(2) */
};

struct llmp_loop_stats {
	uint64_t msgs_in;     /* messages taken from client pages since the loop started */
	uint64_t forwarded;   /* messages written to the broadcast page (from clients and links) */
	unsigned pages_live;  /* broadcast pages kept */
	uint64_t rounds;      /* llmp_broker_once() calls */
	uint64_t sleeps;      /* times the broker announced sleep and waited */
	uint64_t wakeups;     /* sleeps a client's poke ended (it flipped the word) */
	unsigned clients;     /* clients registered now */
	struct llmp_tcp_stats tcp; /* summed over the listeners */
	unsigned b2b_links;   /* broker-to-broker links up now */
	uint64_t b2b_sent;    /* messages shipped to remote brokers */
	uint64_t b2b_received; /* messages received from remote brokers */
	uint64_t b2b_deflated; /* of those sent, deflated (LLMP_FLAG_COMPRESSED) */
	uint64_t b2b_zstd;    /* of those sent, zstd frames (LLMP_FLAG_ZSTD, our brokers only) */
	uint64_t b2b_dials;   /* connection attempts of the links this broker dials */
	uint64_t b2b_reserved; /* frames from links with a reserved (control) tag: dropped */
	uint64_t b2b_buffered; /* bytes the links hold now (partial frames, queues, scratch) */
	uint64_t b2b_throttled; /* times a link stopped reading for the memory or inflate budget */
	uint64_t b2b_refused;  /* RemoteBrokerHello refused: not allowed, or 64 accepted links */
	int64_t uptime_ms;
};

typedef void (*llmp_loop_stats_fn)(void *ctx, const struct llmp_loop_stats *st);

/*
 * How a client's llmp_waker_poke() wakes the sleeping loop (see
 * Documentation/broker.rst, "Sleep and wake").  Environment:
 * LLMP_LOOP_NO_FUTEX_OP=1 turns FUTEX (and AUTO's futex choice) into BRIDGE.
 */
enum llmp_loop_wake {
	LLMP_LOOP_WAKE_AUTO = 0,   /* BELL with the KMOD provider if it works, else FUTEX */
	LLMP_LOOP_WAKE_FUTEX = 1,  /* futex word: io_uring's FUTEX_WAIT (Linux 6.7+), else BRIDGE */
	LLMP_LOOP_WAKE_BRIDGE = 2, /* futex word watched by a helper thread that writes an eventfd */
	LLMP_LOOP_WAKE_BELL = 3,   /* a /dev/llmp bell: KMOD provider only, else llmp_loop_new fails */
};

/*
 * When the idle loop naps (max_sleep_us) instead of sleeping until a
 * client's poke, a TCP peer, a timer or a signal wakes it.
 */
enum llmp_loop_nap {
	LLMP_LOOP_NAP_AUTO = 0,   /* only while a client that cannot wake it is registered */
	LLMP_LOOP_NAP_ALWAYS = 1, /* every sleep (what the loop did before 2026-12) */
};

struct llmp_loop_opts {
	uint32_t struct_size;      /* sizeof(struct llmp_loop_opts) */
	enum llmp_loop_backend backend;
	bool handle_signals;       /* SIGINT/SIGTERM stop the loop (signalfd; blocks them in this thread) */
	int stats_interval_ms;     /* call on_stats this often (0: never) */
	llmp_loop_stats_fn on_stats;
	void *ctx;
	unsigned idle_rounds;      /* empty broker passes before sleeping; 0: 64 */
	int max_sleep_us;          /* longest nap when idle; 0: 1000; -1: never nap (see broker.rst, and nap) */
	unsigned exit_after;       /* return once this many clients came and all left; 0: never */
	bool b2b_compress;         /* B2B links deflate payloads >= 1 KiB (needs zlib) */
	/*
	 * Links to our brokers that set it too send payloads >= 256 bytes as zstd
	 * (needs libzstd); other peers get b2b_compress's deflate or nothing.
	 */
	bool b2b_zstd;
	enum llmp_loop_wake wake;  /* how clients wake the sleeping loop; 0: AUTO */
	int check_clients_ms;      /* look for dead clients this often; 0: 200 */
	/*
	 * B2B limits against hostile peers (Documentation/broker.rst, "Hostile
	 * peers"); 0: the default.  Largest frame taken from a peer, and largest
	 * zstd output: 32 x the broadcast page size, at least 1 MiB, at most
	 * LLMP_TCP_MAX_FRAME.  Bytes all links may hold at once: 4 x that.  zstd
	 * output one link may produce per second: 64 MiB.
	 */
	size_t b2b_max_frame;
	size_t b2b_memory;
	size_t b2b_inflate_rate;
	/*
	 * AUTO (0): nap only while a registered client cannot wake the loop
	 * (a LibAFL client, or ours without a waker); else sleep until woken.
	 */
	enum llmp_loop_nap nap;
};

/* A loop for b (which it does not own).  Runs on the calling thread. */
int llmp_loop_new(struct llmp_broker *b, const struct llmp_loop_opts *opts, struct llmp_loop **out);
/* Serve l from the loop (the loop does not own it; free it after the loop). */
int llmp_loop_add_listener(struct llmp_loop *lp, struct llmp_tcp_listener *l);
/*
 * Link this broker to the broker at addr:port (LibAFL's RemoteBrokerHello).
 * addr is resolved here; the loop then connects and does the handshake
 * without blocking, so the other broker may start later.  Local clients'
 * messages go to the remote broker and back comes what its clients send,
 * flagged LLMP_FLAG_FROM_B2B, sender id kept.  A message crosses one link
 * only: link brokers in a full mesh.  Listeners added with
 * llmp_loop_add_listener() accept links from remote brokers.  A failed
 * attempt or a link that breaks is dialled again after 100 ms, doubling to
 * 5 s, jittered, until the loop is freed; messages committed while it was
 * down are shipped once it is back (if the broadcast history still holds
 * them), what was queued on the broken connection is lost for that peer.
 * Call it before llmp_loop_run() or from the loop's own thread (e.g. in the
 * stats callback).  0, or <0 if addr does not resolve or there are 64 links.
 */
int llmp_loop_connect_b2b(struct llmp_loop *lp, const char *addr, uint16_t port);
/*
 * Accept B2B links (RemoteBrokerHello) from addresses matching spec,
 * "ADDR[/PREFIX]", numeric IPv4 or IPv6 (repeatable, up to 64).  With no
 * rule, only loopback peers may link; once a rule is given, only matching
 * peers (add 127.0.0.1 to keep loopback).  Addresses this broker dials with
 * llmp_loop_connect_b2b() may always link.  Others get an Error answer.
 */
int llmp_loop_b2b_allow(struct llmp_loop *lp, const char *spec);
/*
 * Lossless mode (default off): the broker keeps a broadcast page until
 * every receiver of ours that reads (it has a waker and has called
 * llmp_client_recv) has left it, and while its history is over the bound
 * (history_bytes) and such a receiver still reads the oldest page, it takes
 * no message from its clients, so their senders wait.  A receiver that
 * keeps the oldest page for stuck_ms is no longer waited for: it gets
 * -ESTALE when it reads on, and is waited for again once it registers
 * again.  LibAFL's receivers (no waker) are not waited for.  stuck_ms 0
 * turns the mode off.  0, -EINVAL (stuck_ms < 0), -ENODEV (the loop has no
 * control segment).
 */
int llmp_loop_set_lossless(struct llmp_loop *lp, int stuck_ms);
/* "io_uring" or "poll": what the loop actually uses. */
const char *llmp_loop_backend_name(const struct llmp_loop *lp);
/* "futex-op", "futex-bridge", "bell" or "nap" (nothing wakes it: no control segment). */
const char *llmp_loop_wake_name(const struct llmp_loop *lp);
/*
 * Forward messages and serve TCP peers until llmp_loop_stop(), a handled
 * signal, or the broker's exit_after condition.  Forwarding spins while
 * messages flow; when idle the broker announces sleep in shared memory and
 * waits (no CPU) for a client's wake, a TCP peer, a timer or a signal.
 * 0 when stopped, <0 on error.
 */
int llmp_loop_run(struct llmp_loop *lp);
/* Ask run() to return; async-signal-safe, any thread. */
void llmp_loop_stop(struct llmp_loop *lp);
void llmp_loop_stats(const struct llmp_loop *lp, struct llmp_loop_stats *st);
void llmp_loop_free(struct llmp_loop *lp);

#ifdef __cplusplus
}
#endif
#endif /* LLMP_BROKER_H */
