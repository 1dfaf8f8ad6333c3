/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * libllmp: Low Level Message Passing, LibAFL-compatible, over shared memory.
 *
 * Clients write messages into their own out page; a broker copies them into
 * one broadcast page that every client reads.  Full pages are chained with an
 * end-of-page message.  See Documentation/protocol.rst.
 *
 * Functions return 0 (or a documented non-negative value) on success and a
 * negative errno on failure, with the reason in llmp_strerror_last().
 */
#ifndef LLMP_LLMP_H
#define LLMP_LLMP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "llmp/shmem.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- protocol constants (llmp-facts) ------------------------------------ */

#define LLMP_PAGE_MAGIC 0x1A1A1A1A1A1A1AF1ULL
#define LLMP_PAGE_MAGIC_DEINIT 0xDEADC0FEAF1BEEF1ULL
#define LLMP_PAGE_HEADER_LEN 48
#define LLMP_MSG_HEADER_LEN 40
#define LLMP_ALIGN 64
#define LLMP_EOP_MSG_SIZE 128
#define LLMP_INITIAL_PAGE_SIZE (1u << 20)

#define LLMP_TAG_UNSET 0x00DEADAFu
#define LLMP_TAG_UNINITIALIZED 0xA143AF11u
#define LLMP_TAG_END_OF_PAGE 0x0AF1E0F1u
#define LLMP_TAG_NEW_SHM_CLIENT 0x0C11E471u
#define LLMP_TAG_CLIENT_EXIT 0x0C11E472u
#define LLMP_TAG_EXITING 0x013C5171u
#define LLMP_TAG_SLOW_RECEIVER_PANIC 0x70051041u

#define LLMP_FLAG_INITIALIZED 0x0u
#define LLMP_FLAG_COMPRESSED 0x1u
#define LLMP_FLAG_FROM_B2B 0x2u
#define LLMP_FLAG_FROM_MM 0x4u

/* Client id of the broker's own broadcast sender. */
#define LLMP_BROKER_CLIENT_ID 0u

/* ---- a received message -------------------------------------------------- */

/*
 * Set LLMP_DEBUG_RECV=1 in the environment (read when a client is made) to
 * find buffers kept past the next recv: each buffer is then a private
 * read-only copy that faults (SIGSEGV) at its first use after the next
 * recv.  A copy and three system calls per message: for debugging only.
 */
#define LLMP_DEBUG_RECV_ENV "LLMP_DEBUG_RECV"

struct llmp_msg_view {
	uint32_t sender;   /* client id of the original sender */
	uint32_t tag;
	uint32_t flags;
	uint32_t broker;   /* broker id (broker-to-broker), 0 locally */
	const void *buf;   /* payload in shared memory: valid until the next recv (copy it to keep it) */
	size_t len;
};

/* ---- client -------------------------------------------------------------- */

struct llmp_client; /* opaque */

/* send_timeout_ms: a send that would wait for the broker returns -EAGAIN at once. */
#define LLMP_NO_WAIT (-2)

struct llmp_client_opts {
	uint32_t struct_size;       /* sizeof(struct llmp_client_opts) */
	size_t page_size;           /* first out-page size; 0: LLMP_INITIAL_PAGE_SIZE */
	unsigned max_pages_in_flight; /* out pages not yet mapped by the broker; 0: 4 */
	int send_timeout_ms;        /* how long a send waits for the broker, in ms: 0 (as with
				     * opts == NULL) the default 10000; -1 forever; LLMP_NO_WAIT
				     * never (-EAGAIN at once) */
	bool skip_own;              /* recv skips messages this client sent */
	bool join_at_newest;        /* start after the newest message the broker keeps now,
				     * instead of replaying its whole history (up to 64 MiB
				     * of earlier messages); to resume at a saved point, see
				     * llmp_client_to_env() / llmp_client_from_env() */
};

/*
 * Broadcast page description and client id are what a client needs from a
 * broker; in-process brokers hand them out with llmp_broker_add_client().
 */
int llmp_client_new(struct llmp_provider *p, const struct llmp_shmem_desc *broadcast,
		    const struct llmp_client_opts *opts, struct llmp_client **out);
/* Description of this client's first/current out page, to register with a broker. */
int llmp_client_out_desc(const struct llmp_client *c, struct llmp_shmem_desc *d);
uint32_t llmp_client_id(const struct llmp_client *c);
void llmp_client_set_id(struct llmp_client *c, uint32_t id);

/*
 * Send a copy of buf.  Every tag the protocol reserves (LLMP_TAG_* above,
 * and the B2B capabilities tag) is refused with -EINVAL and nothing is
 * written.  -EAGAIN: back-pressure timeout (logged at debug level only:
 * it is not an error; retry or drop).  -EPIPE: the broker's process is
 * gone (looked at every 100 ms; sticky); the message was not sent.
 */
int llmp_client_send(struct llmp_client *c, uint32_t tag, uint32_t flags,
		     const void *buf, size_t len);
/*
 * Tell the broker that client_id is gone (CLIENT_EXIT, as LibAFL's
 * restarting wrapper does for the client it restarts): the broker drops
 * that client.  0 or <0 as llmp_client_send().
 */
int llmp_client_report_exit(struct llmp_client *c, uint32_t client_id);
/* Zero-copy send: allocate len bytes in the out page, fill *buf, then commit or cancel. */
int llmp_client_alloc(struct llmp_client *c, size_t len, void **buf);
/* Commit the allocated message, optionally with a smaller length (shrink). */
int llmp_client_commit(struct llmp_client *c, uint32_t tag, uint32_t flags, size_t len);
void llmp_client_cancel(struct llmp_client *c);

/*
 * Non-blocking: 1 got one, 0 none, -ESHUTDOWN broker exited (it said
 * EXITING; sticky), -EPIPE the broker's process died without (looked at
 * every 100 ms while nothing arrives; sticky; what it published before is
 * read first),
 * -ESTALE this client fell behind the broker's kept history (returned once;
 * the next call continues at the oldest kept page), other <0: error.
 */
int llmp_client_recv(struct llmp_client *c, struct llmp_msg_view *out);
/*
 * Broadcast pages this client never read because it fell behind the
 * broker's kept history (each loss is announced by one -ESTALE).  Only this
 * client's own losses count: pages dropped before it joined (or before a
 * restarted client reattached on the first page) do not; a client
 * reattached in the middle counts once it has passed the first page.
 */
uint64_t llmp_client_pages_skipped(const struct llmp_client *c);
/*
 * Blocking with timeout (ms, -1 forever): 1 got one, 0 timeout, <0 error
 * (as llmp_client_recv(), -EPIPE included).
 */
int llmp_client_recv_wait(struct llmp_client *c, struct llmp_msg_view *out, int timeout_ms);
/*
 * A file descriptor (an eventfd, Linux) that is readable while a message
 * (or an error, e.g. a dead broker) waits for llmp_client_recv(): put it
 * in poll/epoll/select next to other fds, then call llmp_client_recv()
 * until it returns <= 0, which makes the fd unreadable again.  The client
 * owns the fd (do not read or close it); the first call starts a watcher
 * thread that sleeps until our broker wakes it after publishing (or at
 * most 100 ms, e.g. on a LibAFL broker, which does not wake), and from
 * then on llmp_client_recv() takes a lock.  >= 0 the fd, <0 error
 * (-EOPNOTSUPP off Linux).
 */
int llmp_client_event_fd(struct llmp_client *c);

/*
 * Wait until the broker has mapped the current out page (after that the
 * client may exit without its messages being lost).  0, or -ETIMEDOUT.
 */
int llmp_client_wait_safe(struct llmp_client *c, int timeout_ms);

/* Save where the client stands to env vars (prefix NAME) / reattach from them. */
int llmp_client_to_env(const struct llmp_client *c, const char *name);
int llmp_client_from_env(struct llmp_provider *p, const char *name,
			 const struct llmp_client_opts *opts, struct llmp_client **out);
/*
 * Send EXITING on the out page and free the client.  If a broker registered
 * the client (it has an id, or the broker joined its page), first wait (up
 * to 1 s, or send_timeout_ms if shorter) until the broker mapped the
 * current out page, so what was sent is not lost with the page; a LibAFL
 * broker maps a new client's page only a loop round after it answered.
 * A program that must know its messages were taken calls
 * llmp_client_wait_safe() first (llmp-client does, and exits non-zero if
 * the broker did not take them).  A broker that died is not waited for.
 */
void llmp_client_free(struct llmp_client *c);

/* ---- broker -------------------------------------------------------------- */

struct llmp_broker; /* opaque */

enum llmp_hook_verdict { LLMP_HOOK_FORWARD = 0, LLMP_HOOK_DROP = 1 };

/*
 * A hook sees every new message before it is forwarded.  It may change
 * *tag, *flags and the payload in place (*buf, *len: the hook may point
 * *buf at its own memory and set *len, valid until it returns) and returns
 * FORWARD or DROP; the first DROP ends the chain.
 */
typedef enum llmp_hook_verdict (*llmp_hook_fn)(void *ctx, struct llmp_broker *b,
						uint32_t client_id, uint32_t *tag,
						uint32_t *flags, const void **buf, size_t *len);

struct llmp_broker_opts {
	uint32_t struct_size;     /* sizeof(struct llmp_broker_opts) */
	size_t page_size;         /* broadcast page size; 0: LLMP_INITIAL_PAGE_SIZE */
	size_t history_bytes;     /* broadcast bytes kept besides the first page; 0: 64 MiB */
	bool keep_all_history;    /* LibAFL behaviour: never free broadcast pages */
	unsigned exit_after;      /* stop once this many clients came and left; 0: never */
	unsigned history_pages;   /* broadcast pages kept besides the first; 0: 1024 */
	unsigned dead_client_grace_ms; /* a client whose process died is dropped after
					* this long without a message (its pages outlive
					* it and a restart may reattach them; MEMFD
					* clients go at once); 0: 2000 */
	unsigned max_clients;     /* live clients at most; registrations beyond are refused
				   * (logged once when reached); 0: 1024 */
	bool allow_remote_clients; /* TCP peers on other hosts may register pages (their uid
				    * cannot be known: no owner check); default: refused */
};

int llmp_broker_new(struct llmp_provider *p, const struct llmp_broker_opts *opts,
		    struct llmp_broker **out);
/* Description of the broker's first broadcast page still kept (for new clients). */
int llmp_broker_broadcast_desc(const struct llmp_broker *b, struct llmp_shmem_desc *d);
/*
 * Register a client out page by description; returns the new client id (>0)
 * or <0.  The program is trusted (no owner check), but the page must be
 * spelled canonically (-EINVAL), be none of the broker's own pages (-EINVAL)
 * nor one another client is read through (-EEXIST), and max_clients must
 * not be reached (-EUSERS).
 */
int llmp_broker_add_client(struct llmp_broker *b, const struct llmp_shmem_desc *out_page);
int llmp_broker_add_hook(struct llmp_broker *b, llmp_hook_fn fn, void *ctx);
/* Broadcast a message of the broker's own (sender id 0). */
int llmp_broker_send(struct llmp_broker *b, uint32_t tag, uint32_t flags,
		     const void *buf, size_t len);
/*
 * One pass over all clients: >0 messages handled, 0 idle, <0 error of the
 * broker itself.  A client whose page is corrupt is dropped (and logged);
 * the pass goes on with the others.
 */
int llmp_broker_once(struct llmp_broker *b);
/*
 * Loop until llmp_broker_stop() or exit_after.  While idle it spins briefly,
 * then naps (50 us doubling up to 1 ms), so a message after an idle spell
 * waits at most ~1 ms; llmp_loop_run() (llmp/broker.h) sleeps until woken.
 */
int llmp_broker_run(struct llmp_broker *b);
/*
 * Look for clients whose process died without saying goodbye (SIGKILL):
 * forward what they committed, then drop them (pages released, counted for
 * exit_after).  MEMFD clients are dropped at once, the others (SYSV, POSIX,
 * KMOD, SERVED, WIN32) after dead_client_grace_ms without a message.
 * Clients whose creator pid is unknown (ASHMEM, foreign ids, a version-1
 * SERVED server or one in another pid namespace) or in this process are
 * never dropped here.  run() and the event loop call it every ~100 ms.
 * Returns clients dropped, or <0.
 */
int llmp_broker_check_clients(struct llmp_broker *b);
/* Ask run() to return (async-signal-safe, any thread). */
void llmp_broker_stop(struct llmp_broker *b);
unsigned llmp_broker_nclients(const struct llmp_broker *b);
/* Broadcast EXITING and free everything. */
void llmp_broker_free(struct llmp_broker *b);

#ifdef __cplusplus
}
#endif
#endif /* LLMP_LLMP_H */
