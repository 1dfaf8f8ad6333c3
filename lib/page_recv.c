// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * The LLMP page layer, reader side: polling one chain of pages with every
 * shared value bounds-checked, following END_OF_PAGE records (and refusing
 * loops), recovering a reader that fell out of the broker's kept history,
 * and counting what it lost.  Documentation/protocol.rst explains the
 * memory ordering; every atomic below names its pair.
 */
#include <string.h>
#if defined(__linux__)
#include <sys/mman.h>
#endif

#include "page.h"

/* ---- receiver ------------------------------------------------------------ */

static int recv_bad(struct llmp_receiver *r, const char *what, size_t off)
{
	r->sticky = llmp_err(-EBADMSG, "page %.20s: %s at offset %zu", r->shm ?
			     llmp_shmem_desc(r->shm)->id : "?", what, off);
	return r->sticky;
}

/*
 * Do the ids a and b of kind k name the same segment, as far as the page
 * layer can tell from them?  Equal spellings do; a memfd id may leave out
 * its generation suffix ("m<pid>:<fd>" aliases "m<pid>:<fd>:<gen>"); the
 * other kinds accept one spelling per segment (no leading zeros, one name).
 */
static bool seg_same(enum llmp_shmem_kind k, const char *a, const char *b)
{
	size_t la, lb, pa, pb;
	const char *ca, *cb;

	if (!strncmp(a, b, LLMP_SHMEM_ID_LEN))
		return true;
	if (k != LLMP_SHMEM_MEMFD || a[0] != 'm' || b[0] != 'm')
		return false;
	la = strnlen(a, LLMP_SHMEM_ID_LEN);
	lb = strnlen(b, LLMP_SHMEM_ID_LEN);
	/* "m<pid>:<fd>" is everything before a second colon */
	ca = memchr(a, ':', la);
	cb = memchr(b, ':', lb);
	if (!ca || !cb)
		return false;
	ca = memchr(ca + 1, ':', la - (size_t)(ca + 1 - a));
	cb = memchr(cb + 1, ':', lb - (size_t)(cb + 1 - b));
	pa = ca ? (size_t)(ca - a) : la;
	pb = cb ? (size_t)(cb - b) : lb;
	/* same pid and fd; different generations are different segments */
	return pa == pb && !memcmp(a, b, pa) && !(ca && cb);
}

/*
 * Pages entered since the reader last returned a message.  An honest
 * writer puts a message on every page it chains (it chains one because a
 * message did not fit), so a page entered twice in one such span, or more
 * than LLMP_RECV_MAX_FOLLOWS of them, is a loop of END_OF_PAGE records
 * (finding 1 of issue 8): refused, or the reader would follow it forever.
 */
static int span_enter(struct llmp_receiver *r, const struct llmp_shmem_desc *d, size_t off)
{
	enum llmp_shmem_kind k = (enum llmp_shmem_kind)d->kind;

	if (r->nvisited == 0) {
		memcpy(r->visited[0], llmp_shmem_desc(r->shm)->id, LLMP_SHMEM_ID_LEN);
		r->nvisited = 1;
	}
	for (unsigned i = 0; i < r->nvisited; i++)
		if (seg_same(k, r->visited[i], d->id)) {
			r->sticky = llmp_err(-ELOOP, "page %.20s: END_OF_PAGE at offset %zu names "
					     "page %.20s, %s without a message in between (a loop)",
					     llmp_shmem_desc(r->shm)->id, off, d->id,
					     i + 1 == r->nvisited ? "the page itself" :
					     "already followed");
			return r->sticky;
		}
	if (r->nvisited == LLMP_RECV_MAX_FOLLOWS) {
		r->sticky = llmp_err(-ELOOP, "page %.20s: more than %u END_OF_PAGE records in a "
				     "row without a message", llmp_shmem_desc(r->shm)->id,
				     LLMP_RECV_MAX_FOLLOWS - 1);
		return r->sticky;
	}
	return 0;
}

static void span_add(struct llmp_receiver *r, const struct llmp_shmem_desc *d)
{
	memcpy(r->visited[r->nvisited++], d->id, LLMP_SHMEM_ID_LEN);
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
static struct llmp_msg *find_eop(const struct llmp_page *pg, size_t lim, size_t *prev,
				 uint64_t *eop_id);

/*
 * Read the anchor's END_OF_PAGE record under its seqlock (the broker field;
 * see sender_redirect_anchor): the even seq, the page named and its chain
 * position (flags).  False if a rewrite stayed in progress for a while.
 */
static bool anchor_read(const struct llmp_msg *e, uint32_t *seq, struct llmp_page_info *info,
			uint32_t *fidx)
{
	unsigned round = 0;

	while (round < 320) {
		/* pairs with the release store of the even seq in sender_redirect_anchor */
		uint32_t s1 = __atomic_load_n(&e->broker, __ATOMIC_ACQUIRE);

		if (!(s1 & 1)) {
			llmp_eop_load(e, info);
			/* written with the payload under the seqlock (relaxed; the seq orders it) */
			*fidx = __atomic_load_n(&e->flags, __ATOMIC_RELAXED);
			/* pairs with the release fence before the rewrite in sender_redirect_anchor */
			__atomic_thread_fence(__ATOMIC_ACQUIRE);
			/* the seq again: unchanged means the words above were not being rewritten */
			if (__atomic_load_n(&e->broker, __ATOMIC_RELAXED) == s1) {
				*seq = s1;
				return true;
			}
		}
		llmp_backoff(&round);
	}
	return false;
}

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
		uint64_t len, padded, id;
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
		/* each shared field read once: the values checked are the values used */
		len = m->buf_len;
		padded = m->buf_len_padded;
		id = m->message_id;
		if (len > padded || padded > r->map_size - off - LLMP_MSG_HEADER_LEN || id == 0) {
			llmp_shmem_put(shm);
			return llmp_err(-EBADMSG, "receiver init: no message at offset %llu",
					(unsigned long long)last_off);
		}
		r->last_id = id;
		r->cached_cur = r->last_id;
		r->last_off = off;
		r->next_off = off + LLMP_MSG_HEADER_LEN + padded;
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
	r->pages_seen = 1;
	r->index_known = !anchor || recv_on_anchor(r);
	if (anchor && recv_on_anchor(r)) {
		/*
		 * Pages the broker dropped before we joined are no loss of ours:
		 * we start as if we had read up to the page before the oldest one
		 * kept (finding 16 of issue 8), and redirects from now on count.
		 */
		size_t prev;
		uint64_t eid;
		struct llmp_msg *e = find_eop(r->pg, r->map_size, &prev, &eid);
		struct llmp_page_info info;
		uint32_t seq, fidx;

		if (e && anchor_read(e, &seq, &info, &fidx)) {
			r->anchor_seq = seq;
			if (seq && fidx)
				r->page_index = fidx - 1;
		} else if (e) {
			/* being rewritten for longer than a rewrite takes: count nothing */
			r->anchor_seq = (__atomic_load_n(&e->broker, __ATOMIC_ACQUIRE) + 1) & ~1u;
			r->index_known = false;
		}
	}
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

/*
 * The committed END_OF_PAGE record of a page (its id in *eop_id, the offset
 * of the message before it in *prev), or NULL (page not full yet).
 */
static struct llmp_msg *find_eop(const struct llmp_page *pg, size_t lim, size_t *prev,
				 uint64_t *eop_id)
{
	size_t off = LLMP_PAGE_HEADER_LEN;

	*prev = 0;
	/* pairs with the release store that committed the records we walk over */
	uint64_t cur = __atomic_load_n(&pg->current_msg_id, __ATOMIC_ACQUIRE);

	for (uint64_t id = 1; id <= cur; id++) {
		uint64_t len, padded;
		struct llmp_msg *m;

		if ((off & 7) || off > lim - LLMP_MSG_HEADER_LEN)
			return NULL;
		m = MSG_AT(pg, off);
		/* read once: the length checked is the length we step by */
		len = m->buf_len;
		padded = m->buf_len_padded;
		if (m->message_id != id || len > padded || padded > lim - off - LLMP_MSG_HEADER_LEN)
			return NULL;
		if (m->tag == LLMP_TAG_END_OF_PAGE) {
			*eop_id = id;
			return m;
		}
		*prev = off;
		off += LLMP_MSG_HEADER_LEN + padded;
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
	uint64_t eid;
	int ret;

	ret = recv_map(r, &r->anchor, &shm);
	if (ret < 0) {
		r->sticky = ret;
		return ret;
	}
	pg = llmp_shmem_addr(shm);
	lim = llmp_shmem_size(shm);
	e = find_eop(pg, lim, &prev, &eid);
	if (e) {
		llmp_shmem_put(r->shm);
		recv_use(r, shm);
		r->nvisited = 0; /* a jump, not a follow: the anchor starts a new span */
		off = (size_t)((char *)e - r->base);
		r->last_off = prev; /* a restart from here continues at the EOP too */
		r->last_id = eid - 1;
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

/*
 * Our page was dropped from the kept history while we read it; we are at
 * its END_OF_PAGE record, so we read all of it.  We lost nothing if the
 * page it names (d, chain position page_index + 1) is still kept: then it
 * is the oldest kept page, the one the anchor's record names.  (A caught-up
 * reader sits here when one huge message makes the broker drop the page
 * before it: finding 17 of issue 8.)  1 still kept, 0 not (or we cannot
 * tell), -EAGAIN the anchor is being rewritten.  The caller counted itself
 * on d before: if the anchor names d now, the broker cannot reuse it
 * under us later.
 */
static int recv_successor_kept(struct llmp_receiver *r, const struct llmp_shmem_desc *d)
{
	struct llmp_page_info info;
	struct llmp_shmem *shm;
	struct llmp_msg *e;
	size_t prev;
	uint64_t eid;
	uint32_t seq, fidx;
	int kept = 0;

	if (!r->has_anchor || !r->index_known || recv_on_anchor(r))
		return 0;
	if (recv_map(r, &r->anchor, &shm) < 0)
		return 0;
	e = find_eop(llmp_shmem_addr(shm), llmp_shmem_size(shm), &prev, &eid);
	if (e && !anchor_read(e, &seq, &info, &fidx))
		kept = -EAGAIN;
	else if (e && seq && fidx == r->page_index + 1 && info.map_size == d->size &&
		 seg_same((enum llmp_shmem_kind)d->kind, info.id, d->id))
		kept = 1;
	llmp_shmem_put(shm);
	return kept;
}

/* Follow the EOP record m: 1 moved to the next page, 0 retry later, <0 error. */
static int recv_follow(struct llmp_receiver *r, struct llmp_msg *m, uint64_t len, size_t off)
{
	struct llmp_page_info info;
	struct llmp_shmem_desc d;
	struct llmp_shmem *shm;
	struct llmp_page *npg;
	uint32_t s1 = 0, fidx = 0;
	uint64_t nidx;
	bool skipped, from_anchor = recv_on_anchor(r);
	int ret;

	if (len < LLMP_EOP_PAYLOAD_LEN)
		return recv_bad(r, "short END_OF_PAGE record", off);
	if (from_anchor) {
		/* only the anchor's record is rewritten: read it under the seqlock */
		/* pairs with the release store of the even seq in sender_redirect_anchor */
		s1 = __atomic_load_n(&m->broker, __ATOMIC_ACQUIRE);
		if (s1 & 1)
			return 0;
		llmp_eop_load(m, &info);
		/* written with the payload under the seqlock (relaxed; the seq orders it) */
		fidx = __atomic_load_n(&m->flags, __ATOMIC_RELAXED);
		/* pairs with the release fence before the payload rewrite in sender_redirect_anchor */
		__atomic_thread_fence(__ATOMIC_ACQUIRE);
		/* the seq again: unchanged means the words above were not being rewritten */
		if (__atomic_load_n(&m->broker, __ATOMIC_RELAXED) != s1)
			return 0;
	} else {
		llmp_eop_load(m, &info);
	}
	if (info.map_size < LLMP_PAGE_MIN_SIZE || info.map_size > LLMP_SHMEM_MAX_SIZE ||
	    !memchr(info.id, 0, LLMP_SHMEM_ID_LEN) || !info.id[0])
		return recv_bad(r, "END_OF_PAGE names an invalid page", off);
	memset(&d, 0, sizeof(d));
	d.kind = llmp_shmem_desc(r->shm)->kind;
	d.size = info.map_size;
	memcpy(d.id, info.id, LLMP_SHMEM_ID_LEN);
	ret = span_enter(r, &d, off);
	if (ret < 0)
		return ret;

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
		int kept = ret == 0 ? recv_successor_kept(r, &d) : 0;

		if (kept <= 0) {
			recv_unjoin(npg, ret == 0 ? shm : NULL);
			if (kept < 0)
				return 0;
			if (!r->has_anchor)
				return recv_bad(r, "page retired under the reader", off);
			return recv_stale(r);
		}
	}
	/* pairs with the release store of the even seq: a rewrite since s1 means retry */
	if (from_anchor && __atomic_load_n(&m->broker, __ATOMIC_ACQUIRE) != s1) {
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
		if (ret == -ESTALE && from_anchor &&
		    __atomic_load_n(&m->broker, __ATOMIC_ACQUIRE) != s1)
			return 0;
		if (ret == -ESTALE && r->has_anchor)
			return recv_stale(r);
		r->sticky = ret;
		return ret;
	}
	/* we are done with the old page; pairs with the acquire loads in sender_retire */
	__atomic_fetch_add(&r->pg->receivers_left, 1, __ATOMIC_RELEASE);
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
	span_add(r, &d);
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
		r->nvisited = 0;
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
