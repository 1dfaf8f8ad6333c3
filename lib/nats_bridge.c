// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * The NATS bridge's data path, on the loop's thread: local broadcast
 * history -> NATS (asynchronous, a bounded window in flight), and foreign
 * messages NATS delivered -> the broadcast page (one writer: the loop).
 *
 * libnats calls us on its own threads (message, publish-ack and connection
 * callbacks).  They touch only the bridge's queue (a mutex), atomic
 * counters and the loop's eventfd, which wakes the loop; the broadcast
 * page and the read position belong to the loop's thread alone.
 * Connecting, the stream and the consumer are in lib/nats_conn.c.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "nats_internal.h"
#include "loop_internal.h"

#ifndef LLMP_HAVE_NATS

int llmp_loop_attach_nats(struct llmp_loop *lp, const struct llmp_nats_opts *o,
			  struct llmp_nats **out)
{
	(void)lp;
	(void)o;
	if (out)
		*out = NULL;
	return llmp_err(-EOPNOTSUPP, "nats: built without libnats (install libnats-dev and rebuild)");
}

void llmp_nats_stats(const struct llmp_nats *n, struct llmp_nats_stats *st)
{
	(void)n;
	if (st)
		memset(st, 0, sizeof(*st));
}

int llmp_nats_step(struct llmp_nats *n)
{
	(void)n;
	return 0;
}

int llmp_nats_timeout_ms(const struct llmp_nats *n, int64_t now)
{
	(void)n;
	(void)now;
	return -1;
}

void llmp_nats_free(struct llmp_nats *n)
{
	(void)n;
}

#else /* LLMP_HAVE_NATS */

#include "nats_conn.h"

/* Log a drop: the first, then one in every 1000 of that kind. */
#define RATE_LOG(cnt, ...)                                                     \
	do {                                                                   \
		if (atomic_fetch_add(&(cnt), 1) % 1000 == 0)                   \
			llmp_log(LLMP_LOG_WARN, __VA_ARGS__);                  \
	} while (0)

void nats_wake(struct llmp_nats *n)
{
	uint64_t one = 1;

	if (write(n->evfd, &one, sizeof(one)) < 0) {
		/* counter full: the loop is awake anyway */
	}
}

/* libnats thread: a message on our subscription. */
void nats_on_msg(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
	struct llmp_nats *n = closure;
	bool wake = false, keep = false;

	(void)nc;
	(void)sub;
	pthread_mutex_lock(&n->qlock);
	if (!n->closing && n->qn < NATS_QCAP) {
		n->q[(n->qhead + n->qn) % NATS_QCAP] = msg;
		wake = n->qn++ == 0;
		keep = true;
	}
	pthread_mutex_unlock(&n->qlock);
	if (!keep) {
		/* JetStream: not acked, so delivered again later; core: gone (at most once). */
		if (!n->stream)
			RATE_LOG(n->c.overflow, "nats: queue full (%d messages): a foreign message "
				 "dropped", NATS_QCAP);
		natsMsg_Destroy(msg);
	}
	if (wake)
		nats_wake(n);
}

/* A copy of msg (subject, headers, data), for publishing it again. */
static natsMsg *msg_copy(natsMsg *msg)
{
	const char **keys = NULL;
	natsMsg *c = NULL;
	int k = 0;

	if (natsMsg_Create(&c, natsMsg_GetSubject(msg), NULL, natsMsg_GetData(msg),
			   natsMsg_GetDataLength(msg)) != NATS_OK)
		return NULL;
	if (natsMsgHeader_Keys(msg, &keys, &k) == NATS_OK) {
		for (int i = 0; i < k; i++) {
			const char *v = NULL;

			if (natsMsgHeader_Get(msg, keys[i], &v) == NATS_OK)
				natsMsgHeader_Set(c, keys[i], v);
		}
		free((void *)keys);
	}
	return c;
}

/* libnats thread: JetStream's answer to one of our publishes. */
void nats_on_puback(jsCtx *js, natsMsg *msg, jsPubAck *pa, jsPubAckErr *pae, void *closure)
{
	struct llmp_nats *n = closure;

	(void)pa;
	if (pae && !atomic_load(&n->stop_retry) &&
	    (pae->Err == NATS_TIMEOUT || pae->Err == NATS_NO_RESPONDERS ||
	     pae->Err == NATS_CONNECTION_CLOSED || pae->Err == NATS_CONNECTION_DISCONNECTED)) {
		/* Same Nats-Msg-Id: the stream keeps one copy if the first did arrive. */
		natsMsg *c = msg_copy(msg);

		if (c && js_PublishMsgAsync(js, &c, &n->po) == NATS_OK) {
			atomic_fetch_add(&n->c.retried, 1);
			return;
		}
		natsMsg_Destroy(c);
	}
	if (pae)
		RATE_LOG(n->c.pub_failed, "nats: publish to the stream failed: %s (%s)",
			 natsStatus_GetText(pae->Err), pae->ErrText ? pae->ErrText : "");
	else
		atomic_fetch_add(&n->c.published, 1);
	atomic_fetch_sub(&n->pending, 1);
	/* Pairs with the store in room(): the loop stopped publishing, a slot is free. */
	if (atomic_load(&n->blocked) && atomic_exchange(&n->blocked, false))
		nats_wake(n);
}

/* ---- local history -> NATS ------------------------------------------------------ */

/* Build the NATS message for local message m into *out (NULL: not published, counted). */
static int build_out(struct llmp_nats *n, const struct llmp_rmsg *m, natsMsg **out)
{
	const void *data = m->buf;
	size_t len = m->len;
	char subj[96], v[64];
	natsMsg *msg = NULL;
	bool z = false;

	*out = NULL;
#ifdef LLMP_HAVE_ZSTD
	if (len >= NATS_ZSTD_MIN) {
		size_t bound = ZSTD_compressBound(len);

		if (bound > n->zcap) {
			uint8_t *p = realloc(n->z, bound);

			if (!p)
				return llmp_err(-ENOMEM, "nats: out of memory");
			n->z = p;
			n->zcap = bound;
		}
		size_t k = ZSTD_compressCCtx(n->zc, n->z, n->zcap, data, len, 1);

		if (!ZSTD_isError(k) && k < len) {
			data = n->z;
			len = k;
			z = true;
		}
	}
#endif
	/* Headers take under 512 bytes. */
	if ((int64_t)len + 512 > n->max_payload) {
		RATE_LOG(n->c.too_big, "nats: a %zu-byte message (tag 0x%x) is over the server's "
			 "max_payload of %lld bytes: not published", m->len, m->tag,
			 (long long)n->max_payload);
		return 0;
	}
	snprintf(subj, sizeof(subj), "llmp.%s.%08x", n->campaign, m->tag);
	if (natsMsg_Create(&msg, subj, NULL, data, (int)len) != NATS_OK)
		return llmp_err(-ENOMEM, "nats: cannot create a message");
	n->seq++;
	natsMsgHeader_Set(msg, NH_ORIGIN, n->origin_hex);
	natsMsgHeader_Set(msg, NH_BOOT, n->boot_hex);
	snprintf(v, sizeof(v), "%llu", (unsigned long long)n->seq);
	natsMsgHeader_Set(msg, NH_SEQ, v);
	snprintf(v, sizeof(v), "%u", m->sender);
	natsMsgHeader_Set(msg, NH_CLIENT, v);
	snprintf(v, sizeof(v), "%08x", m->tag);
	natsMsgHeader_Set(msg, NH_TAG, v);
	snprintf(v, sizeof(v), "%08x", m->flags);
	natsMsgHeader_Set(msg, NH_FLAGS, v);
	snprintf(v, sizeof(v), "%zu", m->len);
	natsMsgHeader_Set(msg, NH_LEN, v);
	if (z) {
		natsMsgHeader_Set(msg, NH_ENC, "zstd");
		atomic_fetch_add(&n->c.zstd, 1);
	}
	snprintf(v, sizeof(v), "%s-%s-%llu", n->origin_hex, n->boot_hex, (unsigned long long)n->seq);
	natsMsgHeader_Set(msg, NH_MSGID, v);
	*out = msg;
	return 0;
}

/* Hand n->held to NATS: 1 sent, 0 not now (kept), <0 error. */
static int send_held(struct llmp_nats *n)
{
	natsStatus s;

	if (n->stream) {
		atomic_fetch_add(&n->pending, 1);
		s = js_PublishMsgAsync(n->js, &n->held, &n->po);
		if (s != NATS_OK) {
			atomic_fetch_sub(&n->pending, 1);
			return 0;
		}
	} else {
		s = natsConnection_PublishMsg(n->nc, n->held);
		if (s != NATS_OK)
			return 0;
		natsMsg_Destroy(n->held);
		n->held = NULL;
		atomic_fetch_add(&n->c.published, 1);
	}
	n->held = NULL;
	return 1;
}

/* May more go out now?  Connected, and the window (core: the send buffer) has room. */
static bool room(struct llmp_nats *n)
{
	if (!atomic_load(&n->connected) || (n->stream && !n->ready))
		return false;
	if (n->stream) {
		if (atomic_load(&n->pending) < n->window)
			return true;
		/* Pairs with the exchange in nats_on_puback(): the next ack wakes the loop. */
		atomic_store(&n->blocked, true);
		return atomic_load(&n->pending) < n->window;
	}
	return natsConnection_Buffered(n->nc) < (int)NATS_CORE_BUFFER;
}

static int push_out(struct llmp_nats *n)
{
	struct llmp_rmsg m;
	int moved = 0, ret;

	while (room(n)) {
		if (n->held) {
			ret = send_held(n);
			if (ret <= 0)
				return ret < 0 ? ret : moved;
			moved++;
			continue;
		}
		ret = llmp_receiver_next(&n->r, &m);
		if (ret == -ESTALE) {
			uint64_t skipped = n->r.pages_skipped - n->skipped_seen;

			n->skipped_seen = n->r.pages_skipped;
			atomic_fetch_add(&n->c.lost, 1);
			atomic_fetch_add(&n->c.lost_pages, skipped);
			llmp_log(LLMP_LOG_WARN, "nats: the bridge fell out of the broadcast history: "
				 "%llu page(s) of local messages were never published",
				 (unsigned long long)skipped);
			continue;
		}
		if (ret <= 0)
			return ret < 0 ? ret : moved;
		/* Only what local clients sent: nothing from NATS or a link, no control tags. */
		if ((m.flags & LLMP_FLAG_FROM_B2B) || llmp_tag_reserved(m.tag))
			continue;
		if (!nats_tag_crosses(&n->tags, m.tag) || (m.flags & LLMP_FLAG_ZSTD)) {
			atomic_fetch_add(&n->c.filtered, 1);
			continue;
		}
		ret = build_out(n, &m, &n->held);
		if (ret < 0)
			return ret;
	}
	return moved;
}

/* ---- NATS -> broadcast page ----------------------------------------------------- */

static const char *hdr(natsMsg *msg, const char *key)
{
	const char *v = NULL;

	return natsMsgHeader_Get(msg, key, &v) == NATS_OK ? v : NULL;
}

/* Done with a foreign message: JetStream hears it was taken (also when dropped: poison). */
static void done_in(struct llmp_nats *n, natsMsg *msg)
{
	if (n->stream)
		natsMsg_Ack(msg, NULL);
	natsMsg_Destroy(msg);
}

/* One foreign message: checked, decompressed, on the broadcast page.  1 moved, 0 dropped. */
static int take_in(struct llmp_nats *n, natsMsg *msg)
{
	struct nats_hdrs h = { hdr(msg, NH_ORIGIN), hdr(msg, NH_CLIENT), hdr(msg, NH_TAG),
			       hdr(msg, NH_FLAGS), hdr(msg, NH_ENC), hdr(msg, NH_LEN),
			       hdr(msg, NH_BOOT), hdr(msg, NH_SEQ) };
	const void *data = natsMsg_GetData(msg);
	size_t len = (size_t)natsMsg_GetDataLength(msg);
	struct nats_in in;
	char why[160];
	int ret;

	ret = nats_check_in(natsMsg_GetSubject(msg), n->campaign, &h, len, &in, why, sizeof(why));
	if (ret == 0 && in.origin == n->origin) {
		atomic_fetch_add(&n->c.own, 1);
		done_in(n, msg);
		return 0;
	}
	if (ret == 0 && !nats_tag_crosses(&n->tags, in.tag)) {
		atomic_fetch_add(&n->c.filtered, 1);
		done_in(n, msg);
		return 0;
	}
	if (ret == 0 && in.zstd) {
#ifdef LLMP_HAVE_ZSTD
		unsigned long long fsz = ZSTD_getFrameContentSize(data, len);

		if (fsz != in.len) {
			ret = -EBADMSG;
			snprintf(why, sizeof(why), "zstd frame says %lld bytes, " NH_LEN " %zu",
				 (long long)fsz, in.len);
		} else {
			if (in.len > n->dcap) {
				uint8_t *p = realloc(n->d, in.len);

				if (!p) {
					done_in(n, msg);
					return llmp_err(-ENOMEM, "nats: out of memory");
				}
				n->d = p;
				n->dcap = in.len;
			}
			size_t k = ZSTD_decompressDCtx(n->zd, n->d, in.len, data, len);

			if (ZSTD_isError(k) || k != in.len) {
				ret = -EBADMSG;
				snprintf(why, sizeof(why), "corrupt zstd payload");
			}
			data = n->d;
			len = in.len;
		}
#else
		ret = -EBADMSG;
		snprintf(why, sizeof(why), "zstd payload, and this build has no libzstd");
#endif
	}
	if (ret < 0) {
		RATE_LOG(n->c.bad, "nats: dropped a message on %.80s: %s (%llu dropped so far)",
			 natsMsg_GetSubject(msg), why,
			 (unsigned long long)atomic_load(&n->c.bad) + 1);
		done_in(n, msg);
		return 0;
	}
	if (nats_dedup_seen(&n->dedup, in.origin, in.boot, in.seq)) {
		atomic_fetch_add(&n->c.dup, 1);
		done_in(n, msg);
		return 0;
	}
	/* The broker field holds 32 bits: the origin id's low half. */
	ret = llmp_broker_forward(n->b, in.client, in.tag, in.flags | LLMP_FLAG_FROM_B2B,
				  (uint32_t)in.origin, data, len);
	if (ret < 0) {
		llmp_log(LLMP_LOG_WARN, "nats: a foreign message could not be forwarded: %s",
			 llmp_strerror_last());
		nats_dedup_unmark(&n->dedup, in.origin, in.boot, in.seq);
		if (n->stream)
			natsMsg_Nak(msg, NULL);
		natsMsg_Destroy(msg);
		return 0;
	}
	atomic_fetch_add(&n->c.received, 1);
	done_in(n, msg);
	if (n->dcap > (1u << 20)) {
		free(n->d);
		n->d = NULL;
		n->dcap = 0;
	}
	return 1;
}

static int pull_in(struct llmp_nats *n)
{
	natsMsg *batch[256];
	unsigned k = 0;
	int moved = 0;

	pthread_mutex_lock(&n->qlock);
	while (k < 256 && n->qn) {
		batch[k++] = n->q[n->qhead];
		n->qhead = (n->qhead + 1) % NATS_QCAP;
		n->qn--;
	}
	pthread_mutex_unlock(&n->qlock);
	for (unsigned i = 0; i < k; i++) {
		int ret = take_in(n, batch[i]);

		if (ret < 0) {
			while (++i < k)
				natsMsg_Destroy(batch[i]);
			return ret;
		}
		moved += ret;
	}
	return moved;
}

int llmp_nats_step(struct llmp_nats *n)
{
	int moved = 0, ret;

	if (!n->ready && atomic_load(&n->connected))
		nats_setup(n);
	ret = pull_in(n);
	if (ret > 0)
		moved += ret;
	if (ret < 0)
		llmp_log(LLMP_LOG_WARN, "nats: taking foreign messages: %s", llmp_strerror_last());
	ret = push_out(n);
	if (ret > 0)
		moved += ret;
	if (ret < 0 && !n->recv_err_logged) {
		n->recv_err_logged = true;
		llmp_log(LLMP_LOG_ERROR, "nats: reading the broadcast history: %s; nothing more is "
			 "published", llmp_strerror_last());
	}
	return moved;
}

int llmp_nats_timeout_ms(const struct llmp_nats *n, int64_t now)
{
	if (!n->ready && atomic_load(&n->connected))
		return n->next_setup > now ? (int)(n->next_setup - now) : 0;
	/* A publish refused for a moment (send buffer full): look again soon. */
	if (n->held && atomic_load(&n->connected))
		return 5;
	return -1;
}

void llmp_nats_stats(const struct llmp_nats *n, struct llmp_nats_stats *st)
{
	if (!st)
		return;
	memset(st, 0, sizeof(*st));
	if (!n)
		return;
	st->origin = n->origin;
	st->connected = atomic_load(&n->connected);
	st->published = atomic_load(&n->c.published);
	st->received = atomic_load(&n->c.received);
	st->own = atomic_load(&n->c.own);
	st->filtered = atomic_load(&n->c.filtered);
	st->bad = atomic_load(&n->c.bad);
	st->too_big = atomic_load(&n->c.too_big);
	st->lost = atomic_load(&n->c.lost);
	st->lost_pages = atomic_load(&n->c.lost_pages);
	st->overflow = atomic_load(&n->c.overflow);
	st->retried = atomic_load(&n->c.retried);
	st->zstd = atomic_load(&n->c.zstd);
	st->reconnects = atomic_load(&n->c.reconnects);
	st->dup = atomic_load(&n->c.dup);
	st->pending = atomic_load(&n->pending);
	if (st->connected && n->nc &&
	    natsConnection_GetConnectedUrl(n->nc, st->server, sizeof(st->server)) != NATS_OK)
		st->server[0] = 0;
}

#endif /* LLMP_HAVE_NATS */
