// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * The LLMP page layer: page and message layout (byte-compatible with
 * LibAFL's ll_mp), the writer of a chain of pages (allocation, commit,
 * end-of-page, back-pressure, history bound) and the reader (polling with
 * bounds checks, following end-of-page records).  Documentation/protocol.rst
 * explains the memory ordering; every atomic below names its pair.
 */
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#if defined(__linux__)
#include <sys/mman.h>
#endif

#include "page.h"

#define MSG_AT(base, off) ((struct llmp_msg *)((char *)(base) + (off)))

uint64_t llmp_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#elif defined(__aarch64__)
	__asm__ __volatile__("yield");
#endif
}

void llmp_backoff(unsigned *round)
{
	if (*round < 256) {
		cpu_relax();
	} else if (*round < 320) {
		sched_yield();
	} else {
		struct timespec ts = { 0, 50000 };

		nanosleep(&ts, NULL);
	}
	(*round)++;
}

static size_t next_pow2(size_t x)
{
	size_t r = 1;

	while (r < x)
		r <<= 1;
	return r;
}

int llmp_page_init(void *base, size_t map_size, uint32_t sender_id)
{
	struct llmp_page *pg = base;
	struct llmp_msg *first;

	if (!base || map_size < LLMP_PAGE_MIN_SIZE)
		return llmp_err(-EINVAL, "page init: segment of %zu bytes is too small (min %u)",
				map_size, LLMP_PAGE_MIN_SIZE);
	pg->magic = LLMP_PAGE_MAGIC;
	pg->sender_id = sender_id;
	/* published by the release store of the EOP (or registration) that names this page */
	__atomic_store_n(&pg->current_msg_id, 0, __ATOMIC_RELAXED);
	pg->size_total = map_size - LLMP_PAGE_HEADER_LEN;
	pg->size_used = 0;
	pg->max_alloc_size = 0;
	first = MSG_AT(base, LLMP_PAGE_HEADER_LEN);
	first->message_id = 0;
	first->tag = LLMP_TAG_UNSET;
	/* pairs with the sender's acquire loads of joined/left (retire, safe-to-unmap) */
	__atomic_store_n(&pg->receivers_joined, 0, __ATOMIC_RELEASE);
	/* same: part of the re-initialisation published above */
	__atomic_store_n(&pg->receivers_left, 0, __ATOMIC_RELAXED);
	return 0;
}

int llmp_page_check(const void *base, size_t map_size)
{
	const struct llmp_page *pg = base;
	uint64_t magic, total, used;

	if (map_size < LLMP_PAGE_MIN_SIZE)
		return llmp_err(-EBADMSG, "page: mapping of %zu bytes is too small", map_size);
	/* pairs with the release store of the DEINIT magic when a page is dropped */
	magic = __atomic_load_n(&pg->magic, __ATOMIC_ACQUIRE);
	total = pg->size_total;
	used = pg->size_used;
	if (magic != LLMP_PAGE_MAGIC)
		return llmp_err(magic == LLMP_PAGE_MAGIC_DEINIT ? -ESTALE : -EBADMSG,
				"page: bad magic 0x%016llx", (unsigned long long)magic);
	if (total > map_size - LLMP_PAGE_HEADER_LEN ||
	    total < LLMP_MSG_HEADER_LEN + LLMP_EOP_MSG_SIZE || used > total)
		return llmp_err(-EBADMSG, "page: size_total %llu / size_used %llu do not fit a "
				"%zu-byte mapping", (unsigned long long)total,
				(unsigned long long)used, map_size);
	return 0;
}

/* ---- EOP payload as four 64-bit words (the anchor's is rewritten live) ---- */

static void eop_store_info(struct llmp_msg *e, const struct llmp_page_info *info)
{
	uint64_t w[4];
	uint64_t *dst = (uint64_t *)(void *)e->buf;

	memcpy(w, info, sizeof(w));
	for (int i = 0; i < 4; i++)
		/* read under the seqlock in recv_follow (relaxed; the seq word orders) */
		__atomic_store_n(&dst[i], w[i], __ATOMIC_RELAXED);
}

static void eop_load_info(const struct llmp_msg *e, struct llmp_page_info *info)
{
	uint64_t w[4];
	const uint64_t *src = (const uint64_t *)(const void *)e->buf;

	for (int i = 0; i < 4; i++)
		/* written by eop_store_info; ordered by the seq word (broker field) */
		w[i] = __atomic_load_n(&src[i], __ATOMIC_RELAXED);
	memcpy(info, w, sizeof(w));
}

/* ---- sender --------------------------------------------------------------- */

static void sender_use_page(struct llmp_sender *s, const struct llmp_spage *sp)
{
	s->base = (char *)sp->pg;
	s->pg = sp->pg;
	s->map_size = sp->size;
	s->used = sp->pg->size_used;
	s->total = sp->pg->size_total;
	/* our own page: only this sender stores current_msg_id */
	s->cur_id = __atomic_load_n(&sp->pg->current_msg_id, __ATOMIC_RELAXED);
	s->last = NULL;
	s->pending = NULL;
}

static int sender_push(struct llmp_sender *s, const struct llmp_spage *sp)
{
	if (s->npages == s->cap) {
		unsigned ncap = s->cap ? s->cap * 2 : 8;
		struct llmp_spage *np = realloc(s->pages, ncap * sizeof(*np));

		if (!np)
			return llmp_err(-ENOMEM, "sender: out of memory for the page list");
		s->pages = np;
		s->cap = ncap;
	}
	s->pages[s->npages++] = *sp;
	return 0;
}

static void spage_release(struct llmp_spage *sp);

/* A new (or reused) page of at least size bytes, initialised for this sender. */
static int sender_new_page(struct llmp_sender *s, size_t size, struct llmp_spage *out)
{
	struct llmp_shmem *shm;
	int ret;

	/* newest first: the page retired last is the likeliest still in the caches */
	for (unsigned i = s->ncache; i-- > 0;) {
		struct llmp_spage c = s->cache[i];
		bool fits = c.size >= size;

		if (fits) {
			/* pairs with the readers' seq_cst joined increment before their magic check */
			__atomic_thread_fence(__ATOMIC_SEQ_CST);
			/* left pairs with the readers' release increment when they move on,
			 * joined with their seq_cst increment in recv_follow */
			if (__atomic_load_n(&c.pg->receivers_left, __ATOMIC_ACQUIRE) <
			    __atomic_load_n(&c.pg->receivers_joined, __ATOMIC_ACQUIRE))
				continue; /* a reader is still counted on it */
		}
		memmove(s->cache + i, s->cache + i + 1, (s->ncache - i - 1) * sizeof(c));
		s->ncache--;
		if (!fits) {
			/* pages only grow: a smaller one would clog the cache */
			spage_release(&c);
			continue;
		}
		*out = c;
		return llmp_page_init(out->pg, out->size, s->id);
	}
	ret = llmp_shmem_new(s->p, size, &shm);
	if (ret < 0)
		return ret;
	out->shm = shm;
	out->pg = llmp_shmem_addr(shm);
	out->size = llmp_shmem_size(shm);
	ret = llmp_page_init(out->pg, out->size, s->id);
	if (ret < 0) {
		llmp_shmem_put(shm);
		return ret;
	}
	s->pages_created++;
	return 0;
}

static void spage_release(struct llmp_spage *sp)
{
	/* pairs with the acquire load of the magic in recv_follow / llmp_page_check */
	__atomic_store_n(&sp->pg->magic, LLMP_PAGE_MAGIC_DEINIT, __ATOMIC_RELEASE);
	llmp_shmem_put(sp->shm);
}

/* PRUNE: move pages the reader has left to the reuse cache (or free them). */
static void sender_retire(struct llmp_sender *s)
{
	unsigned n = 0;

	while (n + 1 < s->npages &&
	       /* pairs with the receiver's release increment of left in recv_follow */
	       __atomic_load_n(&s->pages[n].pg->receivers_left, __ATOMIC_ACQUIRE) >= 1)
		n++;
	for (unsigned i = 0; i < n; i++) {
		struct llmp_spage *sp = &s->pages[i];

		if (s->ncache < LLMP_SENDER_CACHE) {
			/* nobody reads a retired page; the reuse re-init publishes the next magic */
			__atomic_store_n(&sp->pg->magic, LLMP_PAGE_MAGIC_DEINIT, __ATOMIC_RELAXED);
			s->cache[s->ncache++] = *sp;
		} else {
			spage_release(sp);
		}
	}
	if (n) {
		memmove(s->pages, s->pages + n, (s->npages - n) * sizeof(*s->pages));
		s->npages -= n;
	}
}

/* PRUNE: wait until fewer than max_in_flight pages are unread. */
static int sender_backpressure(struct llmp_sender *s)
{
	uint64_t deadline = 0;
	unsigned round = 0;

	sender_retire(s);
	if (s->npages < s->max_in_flight)
		return 0;
	if (s->timeout_ms == 0)
		return llmp_err(-EAGAIN, "sender %u: %u pages in flight, reader behind",
				s->id, s->npages);
	if (s->timeout_ms > 0)
		deadline = llmp_now_ns() + (uint64_t)s->timeout_ms * 1000000ull;
	for (;;) {
		llmp_backoff(&round);
		sender_retire(s);
		if (s->npages < s->max_in_flight)
			return 0;
		if (deadline && (round & 15) == 0 && llmp_now_ns() > deadline)
			return llmp_err(-EAGAIN, "sender %u: reader did not catch up within %d ms",
					s->id, s->timeout_ms);
	}
}

/* HISTORY: point the first page's EOP at pages[1] (under the seqlock). */
static void sender_redirect_anchor(struct llmp_sender *s)
{
	struct llmp_msg *e = s->anchor_eop;
	struct llmp_page_info info;
	uint32_t seq;

	if (!e || s->npages < 2)
		return;
	memset(&info, 0, sizeof(info));
	info.map_size = s->pages[1].size;
	memcpy(info.id, llmp_shmem_desc(s->pages[1].shm)->id, LLMP_SHMEM_ID_LEN);
	seq = __atomic_load_n(&e->broker, __ATOMIC_RELAXED); /* only we write it */
	/* odd: a rewrite is in progress; readers retry (their acquire load of broker) */
	__atomic_store_n(&e->broker, seq + 1, __ATOMIC_RELAXED);
	/* orders the odd seq before the payload words; pairs with the reader's acquire fence */
	__atomic_thread_fence(__ATOMIC_RELEASE);
	eop_store_info(e, &info);
	/* chain position of the page named (for the readers' skip count); under the seqlock */
	__atomic_store_n(&e->flags, (uint32_t)(s->chain_len - s->npages + 1), __ATOMIC_RELAXED);
	/* pairs with the acquire load of broker at the start of recv_follow */
	__atomic_store_n(&e->broker, seq + 2, __ATOMIC_RELEASE);
}

/* HISTORY: drop the oldest non-first pages while more than history_bytes are kept. */
static void sender_trim_history(struct llmp_sender *s)
{
	while (s->npages > 2 &&
	       (s->kept_bytes > s->history_bytes || s->npages - 1 > s->history_pages)) {
		struct llmp_spage victim = s->pages[1];

		memmove(s->pages + 1, s->pages + 2, (s->npages - 2) * sizeof(*s->pages));
		s->npages--;
		s->kept_bytes -= victim.size;
		/* first re-point the anchor, then mark the victim (readers see one or the other) */
		sender_redirect_anchor(s);
		/* pairs with the acquire load of the magic in recv_follow */
		__atomic_store_n(&victim.pg->magic, LLMP_PAGE_MAGIC_DEINIT, __ATOMIC_RELEASE);
		/* keep it for reuse once every reader that counted itself on it has left */
		if (s->ncache == LLMP_SENDER_CACHE) {
			spage_release(&s->cache[0]);
			memmove(s->cache, s->cache + 1, (LLMP_SENDER_CACHE - 1) * sizeof(s->cache[0]));
			s->ncache--;
		}
		s->cache[s->ncache++] = victim;
		s->pages_dropped++;
	}
}

/* The current page is full: chain a new page with an END_OF_PAGE record. */
static int sender_eop(struct llmp_sender *s)
{
	struct llmp_spage np;
	struct llmp_page_info info;
	struct llmp_msg *e;
	size_t want = 2 * s->max_alloc + LLMP_EOP_MSG_SIZE + LLMP_PAGE_HEADER_LEN;
	int ret;

	if (want < s->initial_size - 1)
		want = s->initial_size - 1;
	want = next_pow2(want);
	if (want > LLMP_SHMEM_MAX_SIZE)
		return llmp_err(-EMSGSIZE, "sender %u: a %zu-byte page is too large", s->id, want);
	if (s->mode == LLMP_SENDER_PRUNE) {
		ret = sender_backpressure(s);
		if (ret < 0)
			return ret;
	}
	ret = sender_new_page(s, want, &np);
	if (ret < 0)
		return ret;
	np.pg->max_alloc_size = s->max_alloc;
	ret = sender_push(s, &np);
	if (ret < 0) {
		spage_release(&np);
		return ret;
	}
	s->chain_len++;

	e = MSG_AT(s->base, LLMP_PAGE_HEADER_LEN + s->used);
	e->tag = LLMP_TAG_END_OF_PAGE;
	e->sender = s->id;
	e->broker = 0;
	e->flags = 0;
	e->buf_len = LLMP_EOP_PAYLOAD_LEN;
	e->buf_len_padded = LLMP_EOP_PAYLOAD_LEN;
	memset(&info, 0, sizeof(info));
	info.map_size = np.size;
	memcpy(info.id, llmp_shmem_desc(np.shm)->id, LLMP_SHMEM_ID_LEN);
	eop_store_info(e, &info);
	s->used += LLMP_EOP_MSG_SIZE;
	s->pg->size_used = s->used;
	e->message_id = s->cur_id + 1;
	/* publishes the EOP, any deferred batch and the new page's header; pairs with the acquire fence in next() */
	__atomic_store_n(&s->pg->current_msg_id, s->cur_id + 1, __ATOMIC_RELEASE);
	s->unpublished = 0;
	if (s->mode == LLMP_SENDER_HISTORY && s->npages == 2)
		s->anchor_eop = e;

	sender_use_page(s, &np);
	if (s->mode == LLMP_SENDER_HISTORY) {
		s->kept_bytes += np.size;
		sender_trim_history(s);
	}
	return 0;
}

static void sender_cfg_apply(struct llmp_sender *s, struct llmp_provider *p,
			     const struct llmp_sender_cfg *cfg)
{
	memset(s, 0, sizeof(*s));
	s->p = p;
	s->mode = cfg->mode;
	s->id = cfg->id;
	s->initial_size = cfg->page_size ? cfg->page_size : LLMP_INITIAL_PAGE_SIZE;
	if (s->initial_size < LLMP_PAGE_MIN_SIZE)
		s->initial_size = LLMP_PAGE_MIN_SIZE;
	s->max_in_flight = cfg->max_in_flight ? cfg->max_in_flight : 4;
	if (s->max_in_flight < 2)
		s->max_in_flight = 2;
	s->timeout_ms = cfg->timeout_ms;
	s->history_bytes = cfg->history_bytes;
	s->history_pages = cfg->history_pages ? cfg->history_pages : 1024;
}

int llmp_sender_init(struct llmp_sender *s, struct llmp_provider *p,
		     const struct llmp_sender_cfg *cfg)
{
	struct llmp_spage sp;
	int ret;

	if (!s || !p || !cfg)
		return llmp_err(-EINVAL, "sender init: NULL argument");
	sender_cfg_apply(s, p, cfg);
	if (s->initial_size > LLMP_SHMEM_MAX_SIZE)
		return llmp_err(-EINVAL, "sender init: page size %zu too large", s->initial_size);
	ret = sender_new_page(s, s->initial_size, &sp);
	if (ret < 0)
		return ret;
	ret = sender_push(s, &sp);
	if (ret < 0) {
		spage_release(&sp);
		return ret;
	}
	s->chain_len = 1;
	sender_use_page(s, &sp);
	return 0;
}

/*
 * Walk the committed messages of a page we write (restart): position after
 * message cur_id.  Returns the offset (from the page start) of the last
 * committed message in *last (0 if none) or -EBADMSG.
 */
static int walk_committed(const struct llmp_spage *sp, uint64_t cur_id, size_t *end,
			  size_t *last)
{
	size_t off = LLMP_PAGE_HEADER_LEN, lim = sp->size;

	*last = 0;
	for (uint64_t id = 1; id <= cur_id; id++) {
		const struct llmp_msg *m;

		if ((off & 7) || off > lim - LLMP_MSG_HEADER_LEN)
			return llmp_err(-EBADMSG, "reattach: message %llu out of the page",
					(unsigned long long)id);
		m = MSG_AT(sp->pg, off);
		if (m->message_id != id || m->buf_len > m->buf_len_padded ||
		    m->buf_len_padded > lim - off - LLMP_MSG_HEADER_LEN)
			return llmp_err(-EBADMSG, "reattach: message %llu at offset %zu is corrupt",
					(unsigned long long)id, off);
		*last = off;
		off += LLMP_MSG_HEADER_LEN + m->buf_len_padded;
	}
	*end = off;
	return 0;
}

int llmp_sender_attach(struct llmp_sender *s, struct llmp_provider *p,
		       const struct llmp_sender_cfg *cfg, const struct llmp_shmem_desc *d,
		       bool has_last, uint64_t last_off)
{
	struct llmp_spage sp;
	struct llmp_shmem_desc cur = *d;
	int ret;

	if (!s || !p || !cfg || !d)
		return llmp_err(-EINVAL, "sender attach: NULL argument");
	sender_cfg_apply(s, p, cfg);
	for (int hops = 0;; hops++) {
		size_t end = 0, last = 0;
		uint64_t cur_id;

		ret = llmp_shmem_attach(p, &cur, &sp.shm);
		if (ret < 0)
			goto fail;
		sp.pg = llmp_shmem_addr(sp.shm);
		sp.size = llmp_shmem_size(sp.shm);
		ret = llmp_page_check(sp.pg, sp.size);
		if (ret < 0)
			goto fail_put;
		/* our own page: the previous incarnation of this sender stored it */
		cur_id = __atomic_load_n(&sp.pg->current_msg_id, __ATOMIC_ACQUIRE);
		ret = walk_committed(&sp, cur_id, &end, &last);
		if (ret < 0)
			goto fail_put;
		if (hops == 0 && has_last && cur_id &&
		    last_off + LLMP_PAGE_HEADER_LEN > last)
			llmp_log(LLMP_LOG_WARN, "sender reattach: saved offset %llu is past the last "
				 "committed message; continuing after message %llu",
				 (unsigned long long)last_off, (unsigned long long)cur_id);
		if (last && MSG_AT(sp.pg, last)->tag == LLMP_TAG_END_OF_PAGE) {
			/* the previous run chained a page after saving: continue there */
			struct llmp_page_info info;

			if (hops >= 16) {
				ret = llmp_err(-ELOOP, "reattach: more than 16 pages chained "
					       "after the saved one");
				goto fail_put;
			}
			eop_load_info(MSG_AT(sp.pg, last), &info);
			memset(&cur, 0, sizeof(cur));
			cur.kind = d->kind;
			cur.size = info.map_size;
			memcpy(cur.id, info.id, LLMP_SHMEM_ID_LEN);
			cur.id[LLMP_SHMEM_ID_LEN - 1] = 0;
			llmp_shmem_put(sp.shm);
			continue;
		}
		if (end - LLMP_PAGE_HEADER_LEN + LLMP_EOP_MSG_SIZE > sp.pg->size_total) {
			ret = llmp_err(-EBADMSG, "reattach: page has no room left for its EOP");
			goto fail_put;
		}
		/* roll back an allocation that was never committed */
		sp.pg->size_used = end - LLMP_PAGE_HEADER_LEN;
		MSG_AT(sp.pg, end)->tag = LLMP_TAG_UNSET;
		if (sp.pg->max_alloc_size > sp.size)
			sp.pg->max_alloc_size = sp.size;
		ret = sender_push(s, &sp);
		if (ret < 0)
			goto fail_put;
		sender_use_page(s, &sp);
		s->max_alloc = sp.pg->max_alloc_size;
		s->last = last ? MSG_AT(sp.pg, last) : NULL;
		if (cfg->id)
			llmp_sender_set_id(s, cfg->id);
		else
			s->id = sp.pg->sender_id;
		return 0;
	}
fail_put:
	llmp_shmem_put(sp.shm);
fail:
	free(s->pages);
	s->pages = NULL;
	return ret;
}

void llmp_sender_fini(struct llmp_sender *s)
{
	if (!s)
		return;
	for (unsigned i = 0; i < s->npages; i++)
		llmp_shmem_put(s->pages[i].shm);
	for (unsigned i = 0; i < s->ncache; i++)
		llmp_shmem_put(s->cache[i].shm);
	free(s->pages);
	s->pages = NULL;
	s->npages = s->ncache = 0;
}

void llmp_sender_set_id(struct llmp_sender *s, uint32_t id)
{
	s->id = id;
	if (s->pg)
		s->pg->sender_id = id;
}

int llmp_sender_alloc(struct llmp_sender *s, size_t len, struct llmp_msg **out)
{
	if (LLMP_UNLIKELY(s->pending))
		return llmp_err(-EBUSY, "sender %u: a message is already allocated", s->id);
	if (LLMP_UNLIKELY(len > LLMP_SHMEM_MAX_SIZE / 4))
		return llmp_err(-EMSGSIZE, "sender %u: %zu-byte message too large", s->id, len);
	for (int attempt = 0; attempt < 3; attempt++) {
		char *slot = s->base + LLMP_PAGE_HEADER_LEN + s->used;
		size_t padded = llmp_msg_padded((uintptr_t)slot, len);
		size_t need = LLMP_MSG_HEADER_LEN + padded;
		struct llmp_msg *m;

		if (need > s->max_alloc) {
			s->max_alloc = need;
			s->pg->max_alloc_size = need;
		}
		if (LLMP_UNLIKELY(s->used + need + LLMP_EOP_MSG_SIZE > s->total)) {
			int ret = sender_eop(s);

			if (ret < 0)
				return ret;
			continue;
		}
		m = (struct llmp_msg *)slot;
		m->broker = 0;
		m->flags = 0;
		m->buf_len = len;
		m->buf_len_padded = padded;
		m->tag = LLMP_TAG_UNINITIALIZED;
		s->used += need;
		if (!s->defer)
			/* a deferring writer updates it when it publishes (same cache line) */
			s->pg->size_used = s->used;
		MSG_AT(slot, need)->tag = LLMP_TAG_UNSET;
		s->pending = m;
		*out = m;
		return 0;
	}
	return llmp_err(-ENOSPC, "sender %u: no page fits a %zu-byte message", s->id, len);
}

/* Make everything committed so far visible to readers. */
static inline void sender_publish(struct llmp_sender *s)
{
	s->unpublished = 0;
	s->pg->size_used = s->used;
	/* publishes the message (and a deferred batch before it); pairs with the acquire fence in llmp_receiver_next */
	__atomic_store_n(&s->pg->current_msg_id, s->cur_id, __ATOMIC_RELEASE);
}

/* Give the filled message m the next id; publish it, or every 64th of a deferring writer. */
static inline void sender_number(struct llmp_sender *s, struct llmp_msg *m)
{
	m->message_id = ++s->cur_id;
	s->last = m;
	if (s->defer && ++s->unpublished < 64)
		return;
	sender_publish(s);
}

int llmp_sender_commit(struct llmp_sender *s, bool overwrite_sender)
{
	struct llmp_msg *m = s->pending;

	if (LLMP_UNLIKELY(!m))
		return llmp_err(-EINVAL, "sender %u: commit without an allocated message", s->id);
	if (LLMP_UNLIKELY(m->tag == LLMP_TAG_UNSET || m->tag == LLMP_TAG_UNINITIALIZED))
		return llmp_err(-EINVAL, "sender %u: commit of a message without a tag", s->id);
	if (overwrite_sender)
		m->sender = s->id;
	s->pending = NULL;
	sender_number(s, m);
	return 0;
}

void llmp_sender_flush(struct llmp_sender *s)
{
	if (s->unpublished)
		sender_publish(s);
}

/* Header fields and payload of an allocated message (its lengths are set). */
static inline void msg_fill(struct llmp_msg *m, uint32_t tag, uint32_t sender, uint32_t broker,
			    uint32_t flags, const void *buf, size_t len)
{
	m->tag = tag;
	m->sender = sender;
	m->broker = broker;
	m->flags = flags;
	if (len)
		memcpy(m->buf, buf, len);
}

int llmp_sender_put(struct llmp_sender *s, uint32_t tag, uint32_t sender, uint32_t broker,
		    uint32_t flags, const void *buf, size_t len)
{
	char *slot = s->base + LLMP_PAGE_HEADER_LEN + s->used;
	size_t padded = llmp_msg_padded((uintptr_t)slot, len);
	size_t need = LLMP_MSG_HEADER_LEN + padded;
	struct llmp_msg *m;
	int ret;

	if (LLMP_UNLIKELY(s->pending || need > s->max_alloc || len > LLMP_SHMEM_MAX_SIZE / 4 ||
			  s->used + need + LLMP_EOP_MSG_SIZE > s->total)) {
		/* the general path: errors, a new largest message, end of page */
		ret = llmp_sender_alloc(s, len, &m);
		if (ret < 0)
			return ret;
		msg_fill(m, tag, sender, broker, flags, buf, len);
		return llmp_sender_commit(s, false);
	}
	m = (struct llmp_msg *)slot;
	m->buf_len = len;
	m->buf_len_padded = padded;
	msg_fill(m, tag, sender, broker, flags, buf, len);
	s->used += need;
	MSG_AT(slot, need)->tag = LLMP_TAG_UNSET;
	sender_number(s, m);
	return 0;
}

int llmp_sender_shrink(struct llmp_sender *s, size_t new_len)
{
	struct llmp_msg *m = s->pending;
	size_t padded;

	if (!m)
		return llmp_err(-EINVAL, "sender %u: shrink without an allocated message", s->id);
	if (new_len > m->buf_len)
		return llmp_err(-EINVAL, "sender %u: shrink to %zu grows a %llu-byte message",
				s->id, new_len, (unsigned long long)m->buf_len);
	padded = llmp_msg_padded((uintptr_t)m, new_len);
	s->used -= m->buf_len_padded - padded;
	s->pg->size_used = s->used;
	m->buf_len = new_len;
	m->buf_len_padded = padded;
	MSG_AT(m, LLMP_MSG_HEADER_LEN + padded)->tag = LLMP_TAG_UNSET;
	return 0;
}

void llmp_sender_cancel(struct llmp_sender *s)
{
	struct llmp_msg *m = s->pending;

	if (!m)
		return;
	m->tag = LLMP_TAG_UNSET;
	s->used -= LLMP_MSG_HEADER_LEN + m->buf_len_padded;
	s->pg->size_used = s->used;
	s->pending = NULL;
}

int llmp_sender_send(struct llmp_sender *s, uint32_t tag, uint32_t flags,
		     const void *buf, size_t len)
{
	struct llmp_msg *m;
	int ret = llmp_sender_alloc(s, len, &m);

	if (ret < 0)
		return ret;
	if (len)
		memcpy(m->buf, buf, len);
	m->tag = tag;
	m->flags = flags;
	return llmp_sender_commit(s, true);
}

bool llmp_sender_safe_to_unmap(const struct llmp_sender *s)
{
	/* pairs with the receiver's release increment of joined */
	return __atomic_load_n(&s->pg->receivers_joined, __ATOMIC_ACQUIRE) >= 1;
}

bool llmp_sender_last_offset(const struct llmp_sender *s, uint64_t *off)
{
	if (!s->last)
		return false;
	*off = (uint64_t)((char *)s->last - s->base) - LLMP_PAGE_HEADER_LEN;
	return true;
}

const struct llmp_shmem_desc *llmp_sender_desc(const struct llmp_sender *s)
{
	return llmp_shmem_desc(s->pages[s->npages - 1].shm);
}

const struct llmp_shmem_desc *llmp_sender_first_desc(const struct llmp_sender *s)
{
	return llmp_shmem_desc(s->pages[0].shm);
}

/* ---- receiver ------------------------------------------------------------ */

static int recv_bad(struct llmp_receiver *r, const char *what, size_t off)
{
	r->sticky = llmp_err(-EBADMSG, "page %.20s: %s at offset %zu", r->shm ?
			     llmp_shmem_desc(r->shm)->id : "?", what, off);
	return r->sticky;
}

static int recv_map(struct llmp_receiver *r, const struct llmp_shmem_desc *d,
		    struct llmp_shmem **out)
{
	struct llmp_shmem *shm;
	int ret = llmp_shmem_attach(r->p, d, &shm);

	if (ret < 0)
		return ret;
	ret = llmp_page_check(llmp_shmem_addr(shm), llmp_shmem_size(shm));
	if (ret < 0) {
		llmp_shmem_put(shm);
		return ret;
	}
	*out = shm;
	return 0;
}

static void recv_use(struct llmp_receiver *r, struct llmp_shmem *shm)
{
	r->shm = shm;
	r->base = llmp_shmem_addr(shm);
	r->pg = (struct llmp_page *)r->base;
	r->map_size = llmp_shmem_size(shm);
	r->last_id = 0;
	r->cached_cur = 0;
	r->next_off = LLMP_PAGE_HEADER_LEN;
	r->last_off = 0;
}

/* Drop the i-th cached mapping from the cache (the caller puts or uses it). */
static void recv_cache_take(struct llmp_receiver *r, unsigned i)
{
	r->rcache_bytes -= llmp_shmem_size(r->rcache[i]);
	memmove(r->rcache + i, r->rcache + i + 1, (r->nrcache - i - 1) * sizeof(r->rcache[0]));
	r->nrcache--;
}

/* Keep the mapping of a page we left: writers recycle their segments. */
static void recv_cache_put(struct llmp_receiver *r, struct llmp_shmem *shm)
{
	while (r->nrcache == LLMP_RECV_CACHE ||
	       (r->nrcache >= LLMP_RECV_CACHE_MIN &&
		r->rcache_bytes + llmp_shmem_size(shm) > LLMP_RECV_CACHE_BYTES)) {
		struct llmp_shmem *old = r->rcache[0];

		recv_cache_take(r, 0);
		llmp_shmem_put(old);
	}
	r->rcache[r->nrcache++] = shm;
	r->rcache_bytes += llmp_shmem_size(shm);
}

/* Map d, from the cache if we still hold a mapping of that very segment. */
static int recv_attach_cached(struct llmp_receiver *r, const struct llmp_shmem_desc *d,
			      struct llmp_shmem **out)
{
	int ret;

	for (unsigned i = 0; i < r->nrcache; i++) {
		const struct llmp_shmem_desc *c = llmp_shmem_desc(r->rcache[i]);

		if (c->kind == d->kind && c->size == d->size &&
		    !strncmp(c->id, d->id, LLMP_SHMEM_ID_LEN)) {
			struct llmp_shmem *hit = r->rcache[i];
			const struct llmp_page *hp = llmp_shmem_addr(hit);

			recv_cache_take(r, i);
			/*
			 * Ids can come back for another segment (a restarted writer
			 * reuses POSIX names and memfd fd numbers).  A page being named
			 * anew was just initialised, so nobody is counted on it yet;
			 * counts left over mean our mapping is of an abandoned segment.
			 * Pairs with the release store of joined in llmp_page_init.
			 *
			 * A broadcast reader (it has an anchor) never follows a
			 * restarted broker, and the broker retires every segment it
			 * frees (DEINIT magic) while it still holds its id, so there
			 * an initialised page is the one named, whoever else joined
			 * it first.  Pairs with the release store of the DEINIT magic
			 * in spage_release, and with the reuse re-initialisation.
			 */
			if (__atomic_load_n(&hp->receivers_joined, __ATOMIC_ACQUIRE) == 0 ||
			    (r->has_anchor &&
			     __atomic_load_n(&hp->magic, __ATOMIC_ACQUIRE) == LLMP_PAGE_MAGIC)) {
				*out = hit;
				return 0;
			}
			llmp_shmem_put(hit);
			break;
		}
	}
	ret = llmp_shmem_attach(r->p, d, out);
#if defined(__linux__) && defined(MADV_POPULATE_READ)
	/* one call instead of a fault per 64 KiB: we are about to read it all */
	if (ret == 0)
		(void)madvise(llmp_shmem_addr(*out), llmp_shmem_size(*out), MADV_POPULATE_READ);
#endif
	return ret;
}

static bool recv_on_anchor(const struct llmp_receiver *r);
static struct llmp_msg *find_eop(const struct llmp_page *pg, size_t lim, size_t *prev);

int llmp_receiver_init(struct llmp_receiver *r, struct llmp_provider *p,
		       const struct llmp_shmem_desc *d, bool has_last, uint64_t last_off,
		       bool join, const struct llmp_shmem_desc *anchor)
{
	struct llmp_shmem *shm;
	int ret;

	if (!r || !p || !d)
		return llmp_err(-EINVAL, "receiver init: NULL argument");
	memset(r, 0, sizeof(*r));
	r->p = p;
	ret = recv_map(r, d, &shm);
	if (ret < 0)
		return ret;
	recv_use(r, shm);
	if (has_last) {
		size_t off;
		const struct llmp_msg *m;

		if (last_off > r->map_size - LLMP_PAGE_HEADER_LEN - LLMP_MSG_HEADER_LEN ||
		    (last_off & 7)) {
			llmp_shmem_put(shm);
			return llmp_err(-EINVAL, "receiver init: offset %llu outside the page",
					(unsigned long long)last_off);
		}
		off = LLMP_PAGE_HEADER_LEN + last_off;
		m = MSG_AT(r->base, off);
		if (m->buf_len > m->buf_len_padded ||
		    m->buf_len_padded > r->map_size - off - LLMP_MSG_HEADER_LEN ||
		    m->message_id == 0) {
			llmp_shmem_put(shm);
			return llmp_err(-EBADMSG, "receiver init: no message at offset %llu",
					(unsigned long long)last_off);
		}
		r->last_id = m->message_id;
		r->cached_cur = r->last_id;
		r->last_off = off;
		r->next_off = off + LLMP_MSG_HEADER_LEN + m->buf_len_padded;
	}
	if (anchor) {
		r->anchor = *anchor;
		r->has_anchor = true;
		/* a reattached reader counts on a page like one that followed an EOP there */
		join = join || !recv_on_anchor(r);
	}
	if (join)
		/* pairs with the sender's acquire loads of joined (safe-to-unmap, reuse) */
		__atomic_fetch_add(&r->pg->receivers_joined, 1, __ATOMIC_SEQ_CST);
	if (anchor) {
		if (recv_on_anchor(r)) {
			/* redirects made before we joined are no loss for us */
			size_t prev;
			struct llmp_msg *e = find_eop(r->pg, r->map_size, &prev);

			if (e)
				/* pairs with the release store of the seq in sender_redirect_anchor */
				r->anchor_seq = (__atomic_load_n(&e->broker, __ATOMIC_ACQUIRE) + 1) & ~1u;
		}
	}
	r->pages_seen = 1;
	r->index_known = !anchor || recv_on_anchor(r);
	return 0;
}

void llmp_receiver_fini(struct llmp_receiver *r)
{
	if (!r)
		return;
	llmp_shmem_put(r->shm);
	r->shm = NULL;
	for (unsigned i = 0; i < r->nrcache; i++)
		llmp_shmem_put(r->rcache[i]);
	r->nrcache = 0;
	r->rcache_bytes = 0;
}

const struct llmp_shmem_desc *llmp_receiver_desc(const struct llmp_receiver *r)
{
	return llmp_shmem_desc(r->shm);
}

static bool recv_on_anchor(const struct llmp_receiver *r)
{
	const struct llmp_shmem_desc *d = llmp_shmem_desc(r->shm);

	return r->has_anchor && !strncmp(d->id, r->anchor.id, LLMP_SHMEM_ID_LEN);
}

/* The committed END_OF_PAGE record of a page, or NULL (page not full yet). */
static struct llmp_msg *find_eop(const struct llmp_page *pg, size_t lim, size_t *prev)
{
	size_t off = LLMP_PAGE_HEADER_LEN;

	*prev = 0;
	/* pairs with the release store that committed the records we walk over */
	uint64_t cur = __atomic_load_n(&pg->current_msg_id, __ATOMIC_ACQUIRE);

	for (uint64_t id = 1; id <= cur; id++) {
		struct llmp_msg *m;

		if ((off & 7) || off > lim - LLMP_MSG_HEADER_LEN)
			return NULL;
		m = MSG_AT(pg, off);
		if (m->message_id != id || m->buf_len > m->buf_len_padded ||
		    m->buf_len_padded > lim - off - LLMP_MSG_HEADER_LEN)
			return NULL;
		if (m->tag == LLMP_TAG_END_OF_PAGE)
			return m;
		*prev = off;
		off += LLMP_MSG_HEADER_LEN + m->buf_len_padded;
	}
	return NULL;
}

/*
 * This reader fell behind the kept history: continue at the EOP record of
 * the anchor page, which names the oldest page still kept.
 */
static int recv_stale(struct llmp_receiver *r)
{
	struct llmp_shmem *shm;
	const struct llmp_page *pg;
	struct llmp_msg *e;
	size_t off, lim, prev;
	int ret;

	ret = recv_map(r, &r->anchor, &shm);
	if (ret < 0) {
		r->sticky = ret;
		return ret;
	}
	pg = llmp_shmem_addr(shm);
	lim = llmp_shmem_size(shm);
	e = find_eop(pg, lim, &prev);
	if (e) {
		llmp_shmem_put(r->shm);
		recv_use(r, shm);
		off = (size_t)((char *)e - r->base);
		r->last_off = prev; /* a restart from here continues at the EOP too */
		r->last_id = e->message_id - 1;
		/* pairs with the release store of current_msg_id that committed e */
		r->cached_cur = __atomic_load_n(&r->pg->current_msg_id, __ATOMIC_ACQUIRE);
		r->next_off = off;
		/* the loss is reported now: later redirects only count from here */
		r->anchor_seq = (__atomic_load_n(&e->broker, __ATOMIC_ACQUIRE) + 1) & ~1u;
		r->stale_count++;
		r->resync = true; /* page_index stays that of the page we fell off */
		return llmp_err(-ESTALE, "receiver fell behind the broker's kept history; "
				"continuing at the oldest kept page");
	}
	llmp_shmem_put(shm);
	r->sticky = llmp_err(-EBADMSG, "stale receiver: the anchor page has no EOP record");
	return r->sticky;
}

/* Undo our count on a page we will not read after all, and unmap it. */
static void recv_unjoin(struct llmp_page *npg, struct llmp_shmem *shm)
{
	if (npg)
		/* balances our joined increment; pairs with the writer's reuse check */
		__atomic_fetch_add(&npg->receivers_left, 1, __ATOMIC_RELEASE);
	if (shm)
		llmp_shmem_put(shm);
}

/* Follow the EOP record m: 1 moved to the next page, 0 retry later, <0 error. */
static int recv_follow(struct llmp_receiver *r, struct llmp_msg *m, uint64_t len, size_t off)
{
	struct llmp_page_info info;
	struct llmp_shmem_desc d;
	struct llmp_shmem *shm;
	struct llmp_page *npg;
	uint32_t s1, fidx;
	uint64_t nidx;
	bool skipped, from_anchor;
	int ret;

	if (len < LLMP_EOP_PAYLOAD_LEN)
		return recv_bad(r, "short END_OF_PAGE record", off);
	/* pairs with the release store of the even seq in sender_redirect_anchor */
	s1 = __atomic_load_n(&m->broker, __ATOMIC_ACQUIRE);
	if (s1 & 1)
		return 0;
	eop_load_info(m, &info);
	/* written with the payload under the seqlock (relaxed; the seq orders it) */
	fidx = __atomic_load_n(&m->flags, __ATOMIC_RELAXED);
	/* pairs with the release fence before the payload rewrite in sender_redirect_anchor */
	__atomic_thread_fence(__ATOMIC_ACQUIRE);
	/* the seq again: unchanged means the words above were not being rewritten */
	if (__atomic_load_n(&m->broker, __ATOMIC_RELAXED) != s1)
		return 0;
	if (info.map_size < LLMP_PAGE_MIN_SIZE || info.map_size > LLMP_SHMEM_MAX_SIZE ||
	    !memchr(info.id, 0, LLMP_SHMEM_ID_LEN) || !info.id[0])
		return recv_bad(r, "END_OF_PAGE names an invalid page", off);
	memset(&d, 0, sizeof(d));
	d.kind = llmp_shmem_desc(r->shm)->kind;
	d.size = info.map_size;
	memcpy(d.id, info.id, LLMP_SHMEM_ID_LEN);

	ret = recv_attach_cached(r, &d, &shm);
	npg = NULL;
	if (ret == 0 && llmp_shmem_size(shm) >= LLMP_PAGE_MIN_SIZE) {
		npg = llmp_shmem_addr(shm);
		/*
		 * Count ourselves on the new page before checking that it is still
		 * ours to read: pairs with the seq_cst fence before the writer's
		 * joined/left loads in sender_new_page (a page is reused only when
		 * nobody is counted on it).
		 */
		__atomic_fetch_add(&npg->receivers_joined, 1, __ATOMIC_SEQ_CST);
	}
	/* after the attach: is our page (and so its successor) still kept? */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	/* pairs with the release store of DEINIT in sender_trim_history / spage_release */
	if (__atomic_load_n(&r->pg->magic, __ATOMIC_ACQUIRE) != LLMP_PAGE_MAGIC) {
		recv_unjoin(npg, ret == 0 ? shm : NULL);
		if (!r->has_anchor)
			return recv_bad(r, "page retired under the reader", off);
		return recv_stale(r);
	}
	/* pairs with the release store of the even seq: a rewrite since s1 means retry */
	if (__atomic_load_n(&m->broker, __ATOMIC_ACQUIRE) != s1) {
		recv_unjoin(npg, ret == 0 ? shm : NULL);
		return 0;
	}
	if (ret < 0) {
		/*
		 * The broker re-points the anchor before it releases a page, and
		 * the seq did not move: the named segment is really missing.
		 */
		r->sticky = ret;
		return ret;
	}
	ret = llmp_page_check(llmp_shmem_addr(shm), llmp_shmem_size(shm));
	if (ret < 0) {
		recv_unjoin(npg, shm);
		/* pairs with the release store of the seq: dropped since we checked? retry */
		if (ret == -ESTALE && __atomic_load_n(&m->broker, __ATOMIC_ACQUIRE) != s1)
			return 0;
		if (ret == -ESTALE && r->has_anchor)
			return recv_stale(r);
		r->sticky = ret;
		return ret;
	}
	/* we are done with the old page; pairs with the acquire loads in sender_retire */
	__atomic_fetch_add(&r->pg->receivers_left, 1, __ATOMIC_RELEASE);
	from_anchor = recv_on_anchor(r);
	skipped = from_anchor && (s1 != r->anchor_seq || r->resync);
	/* the anchor's record names chain position fidx once the broker dropped pages */
	nidx = from_anchor ? (s1 ? fidx : 1) : r->page_index + 1;
	if (from_anchor && r->index_known && nidx > r->page_index + 1 &&
	    (s1 != r->anchor_seq || r->resync))
		r->pages_skipped += nidx - r->page_index - 1;
	if (from_anchor)
		r->index_known = true;
	r->page_index = nidx;
	if (r->resync) {
		/* the -ESTALE was already returned by recv_stale */
		r->resync = false;
		r->anchor_seq = s1;
		skipped = false;
	}
	recv_cache_put(r, r->shm);
	recv_use(r, shm);
	r->pages_seen++;
	if (skipped) {
		/* pages were dropped after we joined: we missed them */
		r->anchor_seq = s1;
		r->stale_count++;
		return llmp_err(-ESTALE, "receiver fell behind the broker's kept history; "
				"continuing at the oldest kept page");
	}
	return 1;
}

int llmp_receiver_next(struct llmp_receiver *r, struct llmp_rmsg *out)
{
	if (LLMP_UNLIKELY(r->sticky))
		return r->sticky;
	for (;;) {
		struct llmp_msg *m;
		size_t off = r->next_off;
		uint64_t len, padded;
		uint32_t tag;

		if (r->last_id == r->cached_cur) {
			/* one load per batch; the fence below makes its message visible */
			uint64_t c = __atomic_load_n(&r->pg->current_msg_id, __ATOMIC_RELAXED);

			if (c == r->last_id)
				return 0;
			/* pairs with the release store of current_msg_id in llmp_sender_commit */
			__atomic_thread_fence(__ATOMIC_ACQUIRE);
			r->cached_cur = c;
		}
		if (LLMP_UNLIKELY((off & 7) || off > r->map_size - LLMP_MSG_HEADER_LEN))
			return recv_bad(r, "message header outside the page", off);
		m = MSG_AT(r->base, off);
		tag = m->tag;
		len = m->buf_len;
		padded = m->buf_len_padded;
		if (LLMP_UNLIKELY(len > padded || padded > r->map_size - off - LLMP_MSG_HEADER_LEN))
			return recv_bad(r, "message length outside the page", off);
		if (LLMP_UNLIKELY(m->message_id != r->last_id + 1))
			return recv_bad(r, "unexpected message id", off);
		if (LLMP_UNLIKELY(tag == LLMP_TAG_UNSET || tag == LLMP_TAG_UNINITIALIZED))
			return recv_bad(r, "unallocated slot committed", off);
		if (LLMP_UNLIKELY(tag == LLMP_TAG_END_OF_PAGE)) {
			int ret = recv_follow(r, m, len, off);

			if (ret <= 0)
				return ret;
			continue;
		}
		if (LLMP_UNLIKELY(tag == LLMP_TAG_EXITING)) {
			r->sticky = -ESHUTDOWN;
			return -ESHUTDOWN;
		}
		r->last_id++;
		r->last_off = off;
		r->next_off = off + LLMP_MSG_HEADER_LEN + padded;
		/* hand out the values we checked, not the shared fields again */
		out->m = m;
		out->buf = m->buf;
		out->len = len;
		out->tag = tag;
		out->sender = m->sender;
		out->flags = m->flags;
		out->broker = m->broker;
		return 1;
	}
}
