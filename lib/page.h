/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * The LLMP page layer: the byte layout LibAFL's ll_mp uses in shared memory,
 * one writer (struct llmp_sender, lib/page_send.c) per chain of pages and
 * any number of readers (struct llmp_receiver, lib/page_recv.c); lib/page.c
 * holds what both share.  See Documentation/protocol.rst.  Not installed.
 */
#ifndef LLMP_PAGE_H
#define LLMP_PAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "internal.h"
#include "llmp/llmp.h"

LLMP_HIDDEN_BEGIN

/* Page header, at offset 0 of every segment (48 bytes). */
struct llmp_page {
	llmp_u64a magic;
	uint32_t sender_id;
	uint16_t receivers_joined; /* atomic */
	uint16_t receivers_left;   /* atomic */
	llmp_u64a current_msg_id;  /* atomic: id of the last committed message */
	llmp_u64a size_total;      /* segment size - 48 */
	llmp_u64a size_used;       /* bytes allocated after the header */
	llmp_u64a max_alloc_size;  /* largest 40 + padded allocated on this chain */
};

/* Message header (40 bytes); the payload follows. */
struct llmp_msg {
	uint32_t tag;
	uint32_t sender;
	uint32_t broker;
	uint32_t flags;
	llmp_u64a message_id;
	llmp_u64a buf_len;
	llmp_u64a buf_len_padded;
	unsigned char buf[];
};

/* END_OF_PAGE and NEW_SHM_CLIENT payload (32 bytes). */
struct llmp_page_info {
	llmp_u64a map_size;
	char id[LLMP_SHMEM_ID_LEN];
	uint8_t pad[4];
};

_Static_assert(sizeof(struct llmp_page) == LLMP_PAGE_HEADER_LEN, "page header is 48 bytes");
_Static_assert(sizeof(struct llmp_msg) == LLMP_MSG_HEADER_LEN, "message header is 40 bytes");
_Static_assert(sizeof(struct llmp_page_info) == 32, "page info is 32 bytes");

#define LLMP_EOP_PAYLOAD_LEN 32u
/* Smallest page we create: header, one EOP record and some room. */
#define LLMP_PAGE_MIN_SIZE 4096u
/* Retired pages a sender keeps for reuse: at least the default pages in flight. */
#define LLMP_SENDER_CACHE 4u

/* The message header at byte offset off of a page (or of another header). */
#define MSG_AT(base, off) ((struct llmp_msg *)((char *)(base) + (off)))

static inline size_t llmp_align_up(size_t x, size_t a)
{
	return (x + a - 1) & ~(a - 1);
}

/* Padded payload length of a len-byte message whose header sits at addr. */
static inline size_t llmp_msg_padded(uintptr_t addr, size_t len)
{
	uintptr_t end = addr + LLMP_MSG_HEADER_LEN + len;

	return llmp_align_up(end, LLMP_ALIGN) - addr - LLMP_MSG_HEADER_LEN;
}

/* Write a fresh page header into a zeroed or retired segment of map_size bytes. */
int llmp_page_init(void *base, size_t map_size, uint32_t sender_id);
/* Check a mapped page's header (magic, sizes) against the mapping size. */
int llmp_page_check(const void *base, size_t map_size);
/*
 * The 32-byte payload of an END_OF_PAGE record as four relaxed 64-bit
 * words: the broker rewrites its first page's record live, under the
 * seqlock in the record's broker field (see sender_redirect_anchor).
 */
void llmp_eop_store(struct llmp_msg *e, const struct llmp_page_info *info);
void llmp_eop_load(const struct llmp_msg *e, struct llmp_page_info *info);

/* ---- sender: one writer, a chain of pages ----------------------------- */

enum llmp_sender_mode {
	LLMP_SENDER_PRUNE = 0,   /* client: pages freed/reused once the reader left */
	LLMP_SENDER_KEEP_ALL,    /* broker, LibAFL style: every page kept */
	LLMP_SENDER_HISTORY,     /* broker: first page + history_bytes kept */
};

struct llmp_spage {
	struct llmp_shmem *shm;
	struct llmp_page *pg;
	size_t size;
};

struct llmp_sender {
	struct llmp_provider *p;
	uint32_t id;
	enum llmp_sender_mode mode;
	/* current page, cached */
	char *base;
	struct llmp_page *pg;
	size_t map_size;
	uint64_t used;           /* mirror of pg->size_used */
	uint64_t total;          /* copy of pg->size_total */
	uint64_t cur_id;         /* mirror of pg->current_msg_id */
	uint64_t max_alloc;      /* mirror of pg->max_alloc_size */
	struct llmp_msg *pending; /* allocated, not committed */
	bool defer;              /* commits publish in batches: see llmp_sender_flush() */
	bool wake_readers;       /* FUTEX_WAKE readers sleeping on current_msg_id: llmp_sender_wake() */
	bool wake_due;           /* published since the last llmp_sender_wake() */
	unsigned unpublished;    /* committed messages not yet published */
	struct llmp_msg *last;    /* last committed message on the current page */
	/* pages[0..npages-1], oldest first; the last is the current one */
	struct llmp_spage *pages;
	unsigned npages, cap;
	struct llmp_spage cache[LLMP_SENDER_CACHE]; /* PRUNE: retired pages for reuse */
	unsigned ncache;
	size_t initial_size;
	unsigned max_in_flight;  /* PRUNE: pages not yet left by the reader */
	int timeout_ms;          /* PRUNE: wait for the reader; -1 forever, 0 never */
	size_t history_bytes;    /* HISTORY: bytes kept besides the first page */
	unsigned history_pages;  /* HISTORY: pages kept besides the first page */
	size_t kept_bytes;       /* HISTORY: sum of pages[1..] sizes */
	struct llmp_msg *anchor_eop; /* HISTORY: the EOP record of pages[0] */
	uint64_t chain_len;      /* pages ever chained (the first included) */
	uint64_t pages_dropped;
	uint64_t pages_created;
	/*
	 * HISTORY, lossless: asked before a page at chain index idx is dropped;
	 * false keeps it (and every later one) and sets held until a retrim
	 * gets the kept bytes back under the bound.  NULL: drop freely.
	 */
	bool (*may_drop)(void *ctx, uint64_t idx);
	void *may_drop_ctx;
	bool held;
};

struct llmp_sender_cfg {
	enum llmp_sender_mode mode;
	uint32_t id;
	size_t page_size;        /* 0: LLMP_INITIAL_PAGE_SIZE */
	unsigned max_in_flight;  /* 0: 4; at least 2 */
	int timeout_ms;
	size_t history_bytes;
	unsigned history_pages;
};

int llmp_sender_init(struct llmp_sender *s, struct llmp_provider *p,
		     const struct llmp_sender_cfg *cfg);
/*
 * Reattach to an existing page (restart): continue after the message at
 * offset last_off (from the end of the page header), or from the start of
 * the page if has_last is false.  An allocation that was never committed is
 * rolled back.
 */
int llmp_sender_attach(struct llmp_sender *s, struct llmp_provider *p,
		       const struct llmp_sender_cfg *cfg, const struct llmp_shmem_desc *d,
		       bool has_last, uint64_t last_off);
void llmp_sender_fini(struct llmp_sender *s);
void llmp_sender_set_id(struct llmp_sender *s, uint32_t id);
/* HISTORY: drop what may_drop lets go now; true if the kept bytes are within the bound. */
bool llmp_sender_retrim(struct llmp_sender *s);
/* Allocate a len-byte message (tag UNINITIALIZED); -EBUSY if one is pending. */
int llmp_sender_alloc(struct llmp_sender *s, size_t len, struct llmp_msg **out);
/* Commit the pending message (publish).  overwrite_sender: sender field = s->id. */
int llmp_sender_commit(struct llmp_sender *s, bool overwrite_sender);
/* Shrink the pending message to new_len (<= its length). */
int llmp_sender_shrink(struct llmp_sender *s, size_t new_len);
/*
 * With s->defer set, commits only assign ids and every 64th publishes;
 * flush publishes the rest (one release store for the whole batch).
 */
void llmp_sender_flush(struct llmp_sender *s);
/*
 * If wake_readers and something was published since the last call, wake
 * the readers that sleep (FUTEX_WAIT, shared) on the low 32 bits of the
 * current page's current_msg_id (llmp_client_event_fd()'s watchers).  An
 * end of page wakes the old page's sleepers at once.  One syscall per call
 * at most, so a broker calls it once per pass.
 */
void llmp_sender_wake(struct llmp_sender *s);
/*
 * Allocate, fill and commit in one step (the broker's forward path): the
 * same bytes as alloc + memcpy + commit without overwriting the sender
 * field; with s->defer set, published like any deferred commit.
 */
int llmp_sender_put(struct llmp_sender *s, uint32_t tag, uint32_t sender, uint32_t broker,
		    uint32_t flags, const void *buf, size_t len);
void llmp_sender_cancel(struct llmp_sender *s);
int llmp_sender_send(struct llmp_sender *s, uint32_t tag, uint32_t flags,
		     const void *buf, size_t len);
/* The reader mapped the current page (it may be released by the writer). */
bool llmp_sender_safe_to_unmap(const struct llmp_sender *s);
/* Offset (from the end of the page header) of the last committed message; false if none. */
bool llmp_sender_last_offset(const struct llmp_sender *s, uint64_t *off);
const struct llmp_shmem_desc *llmp_sender_desc(const struct llmp_sender *s);
const struct llmp_shmem_desc *llmp_sender_first_desc(const struct llmp_sender *s);

/* ---- receiver ----------------------------------------------------------- */

struct llmp_receiver {
	struct llmp_provider *p;
	struct llmp_shmem *shm;
	char *base;
	struct llmp_page *pg;
	size_t map_size;
	uint64_t last_id;        /* id of the last message read on this page */
	uint64_t cached_cur;     /* last loaded current_msg_id */
	size_t next_off;         /* page offset of the next header */
	size_t last_off;         /* page offset of the last message read (0: none) */
	int sticky;              /* -ESHUTDOWN after EXITING, or a fatal error */
	bool has_anchor;         /* stale receivers resume through the anchor's EOP */
	struct llmp_shmem_desc anchor;
	uint32_t anchor_seq;     /* redirect count of the anchor's EOP we have accounted for */
/*
 * Mappings of pages we left, oldest first: a writer recycles its segments,
 * and a reader that still maps the one named next skips an mmap, populating
 * its page tables and a munmap.  The broker cycles through its whole kept
 * history (64 MiB of 1 MiB pages by default), so up to LLMP_RECV_CACHE
 * mappings are kept while they total at most LLMP_RECV_CACHE_BYTES; the
 * newest LLMP_RECV_CACHE_MIN whatever their size.
 */
#define LLMP_RECV_CACHE 128
#define LLMP_RECV_CACHE_MIN 8
#define LLMP_RECV_CACHE_BYTES ((size_t)128 << 20)
	struct llmp_shmem *rcache[LLMP_RECV_CACHE];
	unsigned nrcache;
	size_t rcache_bytes;     /* sum of the sizes of rcache[] */
	uint64_t pages_seen;
	uint64_t stale_count;
	uint64_t page_index;     /* position of our page in the chain (anchor = 0) */
	bool index_known;        /* false after a reattach to a page past the anchor */
	bool resync;             /* on the anchor after -ESTALE, page_index still the old one */
	uint64_t pages_skipped;  /* history pages never read because we fell behind */
/* END_OF_PAGE records a reader follows in a row without a message: more is a loop */
#define LLMP_RECV_MAX_FOLLOWS 16
	char visited[LLMP_RECV_MAX_FOLLOWS][LLMP_SHMEM_ID_LEN]; /* pages entered since the last */
	unsigned nvisited;       /* message returned, the one we left first (span_enter) */
};

/*
 * Map the page d.  has_last/last_off as for llmp_sender_attach (offset of
 * the last message already read).  join: bump receivers_joined (the
 * broker does for client pages).  anchor: the page a stale reader resumes
 * from (the broker's first broadcast page), or NULL.
 */
int llmp_receiver_init(struct llmp_receiver *r, struct llmp_provider *p,
		       const struct llmp_shmem_desc *d, bool has_last, uint64_t last_off,
		       bool join, const struct llmp_shmem_desc *anchor);
void llmp_receiver_fini(struct llmp_receiver *r);
/*
 * Next committed message other than END_OF_PAGE (followed transparently):
 * 1 and *out, 0 none yet, -ESHUTDOWN (EXITING seen; sticky), -ESTALE (this
 * reader fell out of the kept history: returned once, the next call
 * continues at the oldest kept page), -EBADMSG/other negative: corrupt page.
 */
struct llmp_rmsg {
	struct llmp_msg *m;	/* the header in shared memory */
	const void *buf;	/* m->buf */
	size_t len;		/* checked payload length (read once) */
	uint32_t tag, sender, flags, broker;
};
int llmp_receiver_next(struct llmp_receiver *r, struct llmp_rmsg *out);
const struct llmp_shmem_desc *llmp_receiver_desc(const struct llmp_receiver *r);

/* Wait helper: spin, then yield/sleep, until deadline (ns; 0 = forever). */
uint64_t llmp_now_ns(void);
void llmp_backoff(unsigned *round);

LLMP_HIDDEN_END

#endif /* LLMP_PAGE_H */
