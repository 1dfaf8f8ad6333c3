// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * The bytes of a broker-to-broker link: frames out (with DEFLATE or zstd
 * when it pays), the capabilities frame two of our brokers exchange, zstd
 * frames in, and which tags never cross a link.
 *
 * Compression (optional, per link): payloads of 1 KiB or more that are not
 * compressed yet are sent as raw DEFLATE, level 1, with LLMP_FLAG_COMPRESSED,
 * the way LibAFL's event layer does it; the flag travels end to end and the
 * receiving clients inflate (LibAFL clients do so already).  Between two of
 * our brokers that both want it, zstd instead (LLMP_FLAG_ZSTD): the
 * receiving broker decompresses, with a cap on the output, so zstd never
 * reaches a page.  Who speaks zstd is learnt with a capabilities frame
 * (LLMP_TAG_B2B_CAPS) that the dialling side sends first, only after an
 * EXT_QUERY on a separate connection showed that the peer is ours; the
 * accepting side answers it.  A LibAFL peer never sees either.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "b2b_internal.h"

static int out_reserve(struct llmp_b2b_link *l, size_t more)
{
	size_t need;

	if (l->out_off == l->out_len)
		l->out_off = l->out_len = 0;
	need = l->out_len + more;
	if (need <= l->out_cap)
		return 0;
	size_t cap = l->out_cap ? l->out_cap : 4096;
	while (cap < need)
		cap *= 2;
	uint8_t *p = realloc(l->out, cap);
	if (!p)
		return llmp_err(-ENOMEM, "b2b: out of memory");
	b2b_acct(l, l->out_cap, cap);
	l->out = p;
	l->out_cap = cap;
	return 0;
}

#if defined(LLMP_HAVE_ZLIB) || defined(LLMP_HAVE_ZSTD)
/* The codecs' scratch buffer l->z (only a build with a codec has one to fill). */
static int z_reserve(struct llmp_b2b_link *l, size_t need)
{
	if (need <= l->zcap)
		return 0;
	uint8_t *p = realloc(l->z, need);
	if (!p)
		return llmp_err(-ENOMEM, "b2b: out of memory for a %zu-byte buffer", need);
	b2b_acct(l, l->zcap, need);
	l->z = p;
	l->zcap = need;
	return 0;
}
#endif

/* Append one frame (head of w + its payload) to the out buffer. */
static int queue_frame(struct llmp_b2b_link *l, const struct llmp_wire_b2b *w)
{
	uint8_t head[32];
	int n, ret;

	n = llmp_wire_encode_b2b_head(w, head, sizeof(head));
	if (n < 0)
		return n;
	ret = out_reserve(l, 4 + (size_t)n + w->len);
	if (ret < 0)
		return ret;
	llmp_wire_put_len(l->out + l->out_len, (uint32_t)(n + w->len));
	memcpy(l->out + l->out_len + 4, head, (size_t)n);
	if (w->len)
		memcpy(l->out + l->out_len + 4 + n, w->buf, w->len);
	l->out_len += 4 + (size_t)n + w->len;
	return 0;
}

/* Our capabilities frame: magic, then the codecs we decode (u32 little endian). */
int b2b_queue_caps(struct llmp_b2b_link *l)
{
	uint8_t p[CAPS_TOKEN_LEN];
	uint32_t codecs = (l->codecs & LLMP_B2B_ZSTD) ? LLMP_B2B_CAPS_ZSTD : 0;
	struct llmp_wire_b2b w = { .client_id = 0, .tag = LLMP_TAG_B2B_CAPS, .flags = 0,
				   .buf = p, .len = l->d ? CAPS_TOKEN_LEN : CAPS_LEN };

	memcpy(p, LLMP_B2B_CAPS_MAGIC, 8);
	for (int i = 0; i < 4; i++)
		p[8 + i] = (uint8_t)(codecs >> (8 * i));
	for (int i = 0; l->d && i < 8; i++)
		p[12 + i] = (uint8_t)(l->d->token >> (8 * i));
	l->caps_sent = true;
	return queue_frame(l, &w);
}

/* Append one local message, compressed when it pays. */
int b2b_queue_msg(struct llmp_b2b_link *l, const struct llmp_rmsg *m)
{
	struct llmp_wire_b2b w = { .client_id = m->sender, .tag = m->tag, .flags = m->flags,
				   .buf = m->buf, .len = m->len };
	int ret;

#ifdef LLMP_HAVE_ZSTD
	if (l->peer_zstd && m->len >= ZSTD_MIN && !(m->flags & LLMP_FLAG_COMPRESSED)) {
		size_t bound = ZSTD_compressBound(m->len), zn;

		ret = z_reserve(l, bound);
		if (ret < 0)
			return ret;
		zn = ZSTD_compressCCtx(l->zc, l->z, bound, m->buf, m->len, ZSTD_LEVEL);
		if (!ZSTD_isError(zn) && zn < m->len) {
			w.buf = l->z;
			w.len = zn;
			w.flags |= LLMP_FLAG_ZSTD;
			l->cnt.zstd++;
			goto queue;
		}
	}
#endif
#ifdef LLMP_HAVE_ZLIB
	if ((l->codecs & LLMP_B2B_DEFLATE) && m->len >= COMPRESS_MIN &&
	    !(m->flags & LLMP_FLAG_COMPRESSED) && m->len <= 0xffffffffu) {
		z_stream *zs = &l->zs;

		if (!l->zs_ok) {
			memset(zs, 0, sizeof(*zs));
			l->zs_ok = deflateInit2(zs, 1, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY) == Z_OK;
		} else if (deflateReset(zs) != Z_OK) {
			deflateEnd(zs);
			l->zs_ok = false;
		}
		if (l->zs_ok) {
			uLong bound = deflateBound(zs, (uLong)m->len);

			ret = z_reserve(l, bound);
			if (ret < 0)
				return ret;
			zs->next_in = (Bytef *)m->buf;
			zs->avail_in = (uInt)m->len;
			zs->next_out = l->z;
			zs->avail_out = (uInt)bound;
			if (deflate(zs, Z_FINISH) == Z_STREAM_END && zs->total_out < m->len) {
				w.buf = l->z;
				w.len = zs->total_out;
				w.flags |= LLMP_FLAG_COMPRESSED;
				l->cnt.deflated++;
			}
		}
	}
#endif
#ifdef LLMP_HAVE_ZSTD
queue:
#endif
	ret = queue_frame(l, &w);
	if (ret == 0)
		l->cnt.sent++;
	return ret;
}

/* The peer's capabilities frame?  1: consumed, 0: an ordinary message. */
int b2b_take_caps(struct llmp_b2b_link *l, const struct llmp_wire_b2b *w)
{
	const uint8_t *p = w->buf;
	uint32_t codecs = 0;

	if (w->tag != LLMP_TAG_B2B_CAPS || w->len < CAPS_LEN || memcmp(p, LLMP_B2B_CAPS_MAGIC, 8))
		return 0;
	/* An accepting side takes it as the first frame only; a dialler once, after its own. */
	if (l->d ? (!l->caps_sent || l->caps_got) : l->got_first)
		return 0;
	for (int i = 0; i < 4; i++)
		codecs |= (uint32_t)p[8 + i] << (8 * i);
	l->caps_got = true;
	l->peer_zstd = (codecs & LLMP_B2B_CAPS_ZSTD) && (l->codecs & LLMP_B2B_ZSTD);
	llmp_log(LLMP_LOG_INFO, "b2b: link to %s: peer decodes 0x%x; sending %s", l->peer, codecs,
		 l->peer_zstd ? "zstd" : (l->codecs & LLMP_B2B_DEFLATE) ? "deflate" : "uncompressed");
	if (!l->d && w->len >= CAPS_TOKEN_LEN) {
		for (int i = 0; i < 8; i++)
			l->token |= (uint64_t)p[12 + i] << (8 * i);
		/* Nothing was shipped yet (holding): go on where this dialler's last link stopped. */
		if (l->token && l->holding && b2b_unpark_into(l))
			llmp_log(LLMP_LOG_INFO, "b2b: link %u to %s: the dialler is back; resuming "
				 "where its previous link stopped", l->link_id, l->peer);
		if (l->token)
			b2b_live_add(l);
	}
	if (!l->d) {
		int ret = b2b_queue_caps(l);

		if (ret < 0)
			return ret;
	}
	return 1;
}

/*
 * A zstd frame from the peer -> l->z.  Only single frames that state their
 * size, at most the links' max_frame, and that decode to exactly that size;
 * -EAGAIN when the link's inflate budget cannot pay for it yet.
 */
int b2b_unzstd(struct llmp_b2b_link *l, const struct llmp_wire_b2b *w, size_t *out_len)
{
#ifdef LLMP_HAVE_ZSTD
	unsigned long long sz = ZSTD_getFrameContentSize(w->buf, w->len);
	size_t fl, n;
	int ret;

	if (sz == ZSTD_CONTENTSIZE_ERROR)
		return llmp_err(-EBADMSG, "b2b: link to %s: a zstd-flagged payload is no zstd frame",
				l->peer);
	if (sz == ZSTD_CONTENTSIZE_UNKNOWN)
		return llmp_err(-EBADMSG, "b2b: link to %s: a zstd frame without its content size",
				l->peer);
	if (sz > l->lim->max_frame)
		return llmp_err(-EMSGSIZE, "b2b: link to %s: a zstd frame declares %llu bytes, over "
				"the %zu-byte cap (a decompression bomb?)", l->peer, sz,
				l->lim->max_frame);
	fl = ZSTD_findFrameCompressedSize(w->buf, w->len);
	if (ZSTD_isError(fl) || fl != w->len)
		return llmp_err(-EBADMSG, "b2b: link to %s: corrupt zstd frame (%s)", l->peer,
				ZSTD_isError(fl) ? ZSTD_getErrorName(fl) : "bytes after the frame");
	ret = b2b_inflate_budget(l, (size_t)sz);
	if (ret < 0)
		return ret; /* -EAGAIN: the frame waits for the budget */
	ret = z_reserve(l, sz ? (size_t)sz : 1);
	if (ret < 0)
		return ret;
	n = ZSTD_decompressDCtx(l->zd, l->z, (size_t)sz, w->buf, w->len);
	if (ZSTD_isError(n) || n != sz)
		return llmp_err(-EBADMSG, "b2b: link to %s: corrupt zstd frame (%s)", l->peer,
				ZSTD_isError(n) ? ZSTD_getErrorName(n) : "short output");
	*out_len = n;
	return 0;
#else
	(void)w;
	(void)out_len;
	return llmp_err(-EBADMSG, "b2b: link to %s: zstd frame, built without libzstd", l->peer);
#endif
}
