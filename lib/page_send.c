// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * The LLMP page layer, writer side: one sender's chain of pages
 * (allocation, commit, end-of-page, back-pressure, reuse of retired pages,
 * the broker's history bound and its anchor redirect) and the reattach of
 * a restarted writer.  Documentation/protocol.rst explains the memory
 * ordering; every atomic below names its pair.
 */
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#if defined(__linux__)
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

#include "page.h"

static void page_wake(struct llmp_page *pg)
{
#if defined(__linux__)
	uint32_t *w = (uint32_t *)(void *)&pg->current_msg_id;

#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
	w++;
#endif
	/* shared futex: the sleepers are other processes; EFAULT on a mapping that refuses it */
	(void)syscall(SYS_futex, w, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
#else
	(void)pg;
#endif
}

static uint64_t next_pow2(uint64_t x)
{
	uint64_t r = 1;

	while (r < x && r < (1ULL << 63))
		r <<= 1;
	return r;
}

/* ---- sender --------------------------------------------------------------- */

/*
 * Write into page sp from now on, after used bytes and message cur_id.  The
 * mirrors come from us, never back from the page: readers map it writable
 * (they count themselves on it), so a hostile one could change size_total
 * and make us write past the mapping.
 */
static void sender_use_page(struct llmp_sender *s, const struct llmp_spage *sp, uint64_t used,
			    uint64_t total, uint64_t cur_id)
{
	s->base = (char *)sp->pg;
	s->pg = sp->pg;
	s->map_size = sp->size;
	s->used = used;
	s->total = total;
	s->cur_id = cur_id;
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
	llmp_eop_store(e, &info);
	/* chain position of the page named (for the readers' skip count); under the seqlock */
	__atomic_store_n(&e->flags, (uint32_t)(s->chain_len - s->npages + 1), __ATOMIC_RELAXED);
	/* pairs with the acquire load of broker at the start of recv_follow */
	__atomic_store_n(&e->broker, seq + 2, __ATOMIC_RELEASE);
}

/* HISTORY: drop the oldest non-first pages while more than history_bytes are kept. */
static void sender_trim_history(struct llmp_sender *s)
{
	s->held = false;
	while (s->npages > 2 &&
	       (s->kept_bytes > s->history_bytes || s->npages - 1 > s->history_pages)) {
		struct llmp_spage victim = s->pages[1];

		/* pages[1] is chain index chain_len - npages + 1 (the anchor is 0) */
		if (s->may_drop && !s->may_drop(s->may_drop_ctx, s->chain_len - s->npages + 1)) {
			s->held = true;
			return;
		}

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

bool llmp_sender_retrim(struct llmp_sender *s)
{
	if (s->mode == LLMP_SENDER_HISTORY)
		sender_trim_history(s);
	return !s->held;
}

/* The current page is full: chain a new page with an END_OF_PAGE record. */
static int sender_eop(struct llmp_sender *s)
{
	struct llmp_spage np;
	struct llmp_page_info info;
	struct llmp_msg *e;
	/* 64-bit arithmetic: a 32-bit size_t would wrap before the check */
	uint64_t want64 = 2 * s->max_alloc + LLMP_EOP_MSG_SIZE + LLMP_PAGE_HEADER_LEN;
	size_t want;
	int ret;

	if (want64 < s->initial_size - 1)
		want64 = s->initial_size - 1;
	want64 = next_pow2(want64);
	if (want64 > LLMP_SHMEM_MAX_SIZE)
		return llmp_err(-EMSGSIZE, "sender %u: a %llu-byte page is too large", s->id,
				(unsigned long long)want64);
	want = (size_t)want64;
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
	llmp_eop_store(e, &info);
	s->used += LLMP_EOP_MSG_SIZE;
	s->pg->size_used = s->used;
	e->message_id = s->cur_id + 1;
	/* publishes the EOP, any deferred batch and the new page's header; pairs with the acquire fence in next() */
	__atomic_store_n(&s->pg->current_msg_id, s->cur_id + 1, __ATOMIC_RELEASE);
	s->unpublished = 0;
	if (s->wake_readers)
		page_wake(s->pg); /* its sleepers follow the EOP to the new page */
	if (s->mode == LLMP_SENDER_HISTORY && s->npages == 2)
		s->anchor_eop = e;

	sender_use_page(s, &np, 0, np.size - LLMP_PAGE_HEADER_LEN, 0);
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
	sender_use_page(s, &sp, 0, sp.size - LLMP_PAGE_HEADER_LEN, 0);
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
		uint64_t len, padded;

		if ((off & 7) || off > lim - LLMP_MSG_HEADER_LEN)
			return llmp_err(-EBADMSG, "reattach: message %llu out of the page",
					(unsigned long long)id);
		m = MSG_AT(sp->pg, off);
		/* read once: the length checked is the length we step by */
		len = m->buf_len;
		padded = m->buf_len_padded;
		if (m->message_id != id || len > padded || padded > lim - off - LLMP_MSG_HEADER_LEN)
			return llmp_err(-EBADMSG, "reattach: message %llu at offset %zu is corrupt",
					(unsigned long long)id, off);
		*last = off;
		off += LLMP_MSG_HEADER_LEN + padded;
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
		uint64_t cur_id, total, max_alloc;

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
			llmp_eop_load(MSG_AT(sp.pg, last), &info);
			memset(&cur, 0, sizeof(cur));
			cur.kind = d->kind;
			cur.size = info.map_size;
			memcpy(cur.id, info.id, LLMP_SHMEM_ID_LEN);
			cur.id[LLMP_SHMEM_ID_LEN - 1] = 0;
			llmp_shmem_put(sp.shm);
			continue;
		}
		/* read once and bounded by the mapping (page_check read it before) */
		total = sp.pg->size_total;
		if (total > sp.size - LLMP_PAGE_HEADER_LEN)
			total = sp.size - LLMP_PAGE_HEADER_LEN;
		if (end - LLMP_PAGE_HEADER_LEN + LLMP_EOP_MSG_SIZE > total) {
			ret = llmp_err(-EBADMSG, "reattach: page has no room left for its EOP");
			goto fail_put;
		}
		/* roll back an allocation that was never committed */
		sp.pg->size_used = end - LLMP_PAGE_HEADER_LEN;
		MSG_AT(sp.pg, end)->tag = LLMP_TAG_UNSET;
		max_alloc = sp.pg->max_alloc_size;
		if (max_alloc > sp.size)
			max_alloc = sp.size;
		sp.pg->max_alloc_size = max_alloc;
		ret = sender_push(s, &sp);
		if (ret < 0)
			goto fail_put;
		sender_use_page(s, &sp, end - LLMP_PAGE_HEADER_LEN, total, cur_id);
		s->max_alloc = max_alloc;
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
	s->wake_due = s->wake_readers;
}

void llmp_sender_wake(struct llmp_sender *s)
{
	if (!s->wake_due)
		return;
	s->wake_due = false;
	page_wake(s->pg);
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
