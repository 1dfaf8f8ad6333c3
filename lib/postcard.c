// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * The postcard encoding of LibAFL's TCP frames: requests, responses and
 * broker-to-broker messages.  Every byte comes from a peer we do not
 * trust: decoders check each length against what is left and reject any
 * byte that a canonical encoder would not have written.
 */
#include <errno.h>
#include <string.h>

#include "llmp/broker.h"
#include "postcard.h"

/* ---- primitives ---------------------------------------------------------- */

static int get_varint(struct llmp_pc_rd *r, unsigned maxbytes, uint64_t *v)
{
	uint64_t x = 0;

	for (unsigned i = 0; i < maxbytes; i++) {
		uint8_t b;

		if (r->off >= r->len)
			return -EBADMSG; /* truncated */
		b = r->p[r->off++];
		x |= (uint64_t)(b & 0x7f) << (7 * i);
		if (!(b & 0x80)) {
			/* A last byte of 0 after the first is an overlong encoding. */
			if (i > 0 && b == 0)
				return -EBADMSG;
			/* The last possible byte may only hold the remaining bits. */
			if (i == maxbytes - 1 && (b >> (maxbytes == LLMP_PC_VARINT64_MAX ? 1 : 4)))
				return -EBADMSG;
			*v = x;
			return 0;
		}
	}
	return -EBADMSG; /* continuation bit on the last allowed byte */
}

int llmp_pc_get_u64(struct llmp_pc_rd *r, uint64_t *v)
{
	return get_varint(r, LLMP_PC_VARINT64_MAX, v);
}

int llmp_pc_get_u32(struct llmp_pc_rd *r, uint32_t *v)
{
	uint64_t x;
	int ret = get_varint(r, LLMP_PC_VARINT32_MAX, &x);

	if (ret < 0)
		return ret;
	*v = (uint32_t)x;
	return 0;
}

int llmp_pc_get_raw(struct llmp_pc_rd *r, void *dst, size_t n)
{
	if (n > r->len - r->off)
		return -EBADMSG;
	memcpy(dst, r->p + r->off, n);
	r->off += n;
	return 0;
}

int llmp_pc_get_bytes(struct llmp_pc_rd *r, size_t max, const uint8_t **b, size_t *n)
{
	uint64_t l;

	if (llmp_pc_get_u64(r, &l) < 0)
		return -EBADMSG;
	if (l > max || l > r->len - r->off)
		return -EBADMSG;
	*b = r->p + r->off;
	*n = (size_t)l;
	r->off += (size_t)l;
	return 0;
}

void llmp_pc_put_raw(struct llmp_pc_wr *w, const void *src, size_t n)
{
	if (w->err)
		return;
	if (n > w->cap - w->off) {
		w->err = -ENOSPC;
		return;
	}
	if (n)
		memcpy(w->p + w->off, src, n);
	w->off += n;
}

void llmp_pc_put_u64(struct llmp_pc_wr *w, uint64_t v)
{
	uint8_t b[LLMP_PC_VARINT64_MAX];
	size_t n = 0;

	do {
		b[n] = v & 0x7f;
		v >>= 7;
		if (v)
			b[n] |= 0x80;
		n++;
	} while (v);
	llmp_pc_put_raw(w, b, n);
}

void llmp_pc_put_bytes(struct llmp_pc_wr *w, const void *src, size_t n)
{
	llmp_pc_put_u64(w, n);
	llmp_pc_put_raw(w, src, n);
}

int llmp_pc_utf8_ok(const uint8_t *s, size_t n)
{
	size_t i = 0;

	while (i < n) {
		uint8_t c = s[i];
		unsigned need;
		uint32_t cp, min;

		if (c < 0x80) {
			i++;
			continue;
		} else if ((c & 0xe0) == 0xc0) {
			need = 1, cp = c & 0x1f, min = 0x80;
		} else if ((c & 0xf0) == 0xe0) {
			need = 2, cp = c & 0x0f, min = 0x800;
		} else if ((c & 0xf8) == 0xf0) {
			need = 3, cp = c & 0x07, min = 0x10000;
		} else {
			return 0;
		}
		if (need > n - i - 1)
			return 0;
		for (unsigned k = 1; k <= need; k++) {
			if ((s[i + k] & 0xc0) != 0x80)
				return 0;
			cp = (cp << 6) | (s[i + k] & 0x3f);
		}
		if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
			return 0;
		i += need + 1;
	}
	return 1;
}

/* ---- messages ------------------------------------------------------------ */

static void put_desc(struct llmp_pc_wr *w, const struct llmp_wire_desc *d)
{
	llmp_pc_put_u64(w, d->size);
	llmp_pc_put_raw(w, d->id, sizeof(d->id));
}

static int get_desc(struct llmp_pc_rd *r, struct llmp_wire_desc *d)
{
	if (llmp_pc_get_u64(r, &d->size) < 0)
		return -EBADMSG;
	return llmp_pc_get_raw(r, d->id, sizeof(d->id));
}

static int get_text(struct llmp_pc_rd *r, struct llmp_wire_msg *m)
{
	const uint8_t *b;
	size_t n;

	if (llmp_pc_get_bytes(r, r->len, &b, &n) < 0 || !llmp_pc_utf8_ok(b, n))
		return -EBADMSG;
	m->text = (const char *)b;
	m->text_len = n;
	return 0;
}

static int wr_done(struct llmp_pc_wr *w, const char *what)
{
	if (w->err)
		return llmp_err(w->err, "wire: %s does not fit in %zu bytes", what, w->cap);
	return (int)w->off;
}

static int rd_done(struct llmp_pc_rd *r, int ret, const char *what)
{
	if (ret == 0 && r->off != r->len)
		ret = -EBADMSG;
	if (ret < 0)
		return llmp_err(-EBADMSG, "wire: malformed %s at byte %zu of %zu", what,
				r->off, r->len);
	return 0;
}

static int wr_init(struct llmp_pc_wr *w, void *buf, size_t cap)
{
	if (!buf && cap)
		return -EINVAL;
	if (cap > LLMP_TCP_MAX_FRAME)
		cap = LLMP_TCP_MAX_FRAME;
	w->p = buf;
	w->cap = cap;
	w->off = 0;
	w->err = 0;
	return 0;
}

static int text_ok(const struct llmp_wire_msg *m)
{
	return (m->text || !m->text_len) && m->text_len <= LLMP_TCP_MAX_FRAME;
}

int llmp_wire_encode_req(const struct llmp_wire_msg *m, void *buf, size_t cap)
{
	struct llmp_pc_wr w;

	if (!m || wr_init(&w, buf, cap) < 0)
		return llmp_err(-EINVAL, "wire: encode request: NULL argument");
	llmp_pc_put_u64(&w, m->type);
	switch (m->type) {
	case LLMP_TCP_REQ_LOCAL_CLIENT_HELLO:
		put_desc(&w, &m->desc);
		break;
	case LLMP_TCP_REQ_REMOTE_BROKER_HELLO:
		if (!text_ok(m))
			return llmp_err(-EINVAL, "wire: encode request: bad hostname");
		llmp_pc_put_bytes(&w, m->text, m->text_len);
		break;
	case LLMP_TCP_REQ_CLIENT_QUIT:
		llmp_pc_put_u64(&w, m->id);
		break;
	case LLMP_TCP_REQ_EXT_QUERY:
		break;
	default:
		return llmp_err(-EINVAL, "wire: encode request: unknown type %u", m->type);
	}
	return wr_done(&w, "request");
}

int llmp_wire_decode_req(const void *buf, size_t len, struct llmp_wire_msg *m)
{
	struct llmp_pc_rd r = { buf, len, 0 };
	int ret;

	if (!m || (!buf && len))
		return llmp_err(-EINVAL, "wire: decode request: NULL argument");
	memset(m, 0, sizeof(*m));
	ret = llmp_pc_get_u32(&r, &m->type);
	if (ret == 0) {
		switch (m->type) {
		case LLMP_TCP_REQ_LOCAL_CLIENT_HELLO:
			ret = get_desc(&r, &m->desc);
			break;
		case LLMP_TCP_REQ_REMOTE_BROKER_HELLO:
			ret = get_text(&r, m);
			break;
		case LLMP_TCP_REQ_CLIENT_QUIT:
			ret = llmp_pc_get_u32(&r, &m->id);
			break;
		case LLMP_TCP_REQ_EXT_QUERY:
			break;
		default:
			ret = -EBADMSG;
		}
	}
	return rd_done(&r, ret, "request");
}

int llmp_wire_encode_resp(const struct llmp_wire_msg *m, void *buf, size_t cap)
{
	struct llmp_pc_wr w;

	if (!m || wr_init(&w, buf, cap) < 0)
		return llmp_err(-EINVAL, "wire: encode response: NULL argument");
	if ((m->type == LLMP_TCP_RESP_BROKER_CONNECT_HELLO || m->type == LLMP_TCP_RESP_ERROR) &&
	    !text_ok(m))
		return llmp_err(-EINVAL, "wire: encode response: bad text");
	llmp_pc_put_u64(&w, m->type);
	switch (m->type) {
	case LLMP_TCP_RESP_BROKER_CONNECT_HELLO:
		put_desc(&w, &m->desc);
		llmp_pc_put_bytes(&w, m->text, m->text_len);
		break;
	case LLMP_TCP_RESP_LOCAL_CLIENT_ACCEPTED:
	case LLMP_TCP_RESP_REMOTE_BROKER_ACCEPTED:
		llmp_pc_put_u64(&w, m->id);
		break;
	case LLMP_TCP_RESP_ERROR:
		llmp_pc_put_bytes(&w, m->text, m->text_len);
		break;
	case LLMP_TCP_RESP_EXT_INFO:
		put_desc(&w, &m->desc);
		llmp_pc_put_u64(&w, m->id);
		break;
	default:
		return llmp_err(-EINVAL, "wire: encode response: unknown type %u", m->type);
	}
	return wr_done(&w, "response");
}

int llmp_wire_decode_resp(const void *buf, size_t len, struct llmp_wire_msg *m)
{
	struct llmp_pc_rd r = { buf, len, 0 };
	int ret;

	if (!m || (!buf && len))
		return llmp_err(-EINVAL, "wire: decode response: NULL argument");
	memset(m, 0, sizeof(*m));
	ret = llmp_pc_get_u32(&r, &m->type);
	if (ret == 0) {
		switch (m->type) {
		case LLMP_TCP_RESP_BROKER_CONNECT_HELLO:
			ret = get_desc(&r, &m->desc);
			if (ret == 0)
				ret = get_text(&r, m);
			break;
		case LLMP_TCP_RESP_LOCAL_CLIENT_ACCEPTED:
		case LLMP_TCP_RESP_REMOTE_BROKER_ACCEPTED:
			ret = llmp_pc_get_u32(&r, &m->id);
			break;
		case LLMP_TCP_RESP_ERROR:
			ret = get_text(&r, m);
			break;
		case LLMP_TCP_RESP_EXT_INFO:
			ret = get_desc(&r, &m->desc);
			if (ret == 0)
				ret = llmp_pc_get_u32(&r, &m->id);
			break;
		default:
			ret = -EBADMSG;
		}
	}
	return rd_done(&r, ret, "response");
}

int llmp_wire_encode_b2b_head(const struct llmp_wire_b2b *m, void *buf, size_t cap)
{
	struct llmp_pc_wr w;

	if (!m || wr_init(&w, buf, cap) < 0)
		return llmp_err(-EINVAL, "wire: encode b2b: NULL argument");
	if (m->len > LLMP_TCP_MAX_FRAME - 32 || (!m->buf && m->len))
		return llmp_err(-EINVAL, "wire: encode b2b: bad payload (%zu bytes)", m->len);
	llmp_pc_put_u64(&w, m->client_id);
	llmp_pc_put_u64(&w, m->tag);
	llmp_pc_put_u64(&w, m->flags);
	llmp_pc_put_u64(&w, m->len);
	return wr_done(&w, "b2b message");
}

int llmp_wire_encode_b2b(const struct llmp_wire_b2b *m, void *buf, size_t cap)
{
	int n = llmp_wire_encode_b2b_head(m, buf, cap);

	if (n < 0)
		return n;
	if (m->len > cap - (size_t)n)
		return llmp_err(-ENOSPC, "wire: b2b message does not fit in %zu bytes", cap);
	if (m->len)
		memcpy((uint8_t *)buf + n, m->buf, m->len);
	return n + (int)m->len;
}

int llmp_wire_decode_b2b(const void *buf, size_t len, struct llmp_wire_b2b *m)
{
	struct llmp_pc_rd r = { buf, len, 0 };
	const uint8_t *b = NULL;
	int ret;

	if (!m || (!buf && len))
		return llmp_err(-EINVAL, "wire: decode b2b: NULL argument");
	memset(m, 0, sizeof(*m));
	ret = llmp_pc_get_u32(&r, &m->client_id);
	if (ret == 0)
		ret = llmp_pc_get_u32(&r, &m->tag);
	if (ret == 0)
		ret = llmp_pc_get_u32(&r, &m->flags);
	if (ret == 0)
		ret = llmp_pc_get_bytes(&r, r.len, &b, &m->len);
	m->buf = b;
	return rd_done(&r, ret, "b2b message");
}

void llmp_wire_put_len(void *hdr4, uint32_t len)
{
	uint8_t *h = hdr4;

	h[0] = len >> 24;
	h[1] = len >> 16;
	h[2] = len >> 8;
	h[3] = len;
}

int llmp_wire_get_len(const void *hdr4, uint32_t max, uint32_t *len)
{
	const uint8_t *h = hdr4;
	uint32_t l = (uint32_t)h[0] << 24 | (uint32_t)h[1] << 16 | (uint32_t)h[2] << 8 | h[3];

	*len = l;
	if (l > max)
		return llmp_err(-EMSGSIZE, "wire: frame of %u bytes exceeds the %u-byte cap", l, max);
	return 0;
}

void llmp_wire_desc_from_shmem(const struct llmp_shmem_desc *d, struct llmp_wire_desc *w)
{
	w->size = d->size;
	memcpy(w->id, d->id, sizeof(w->id));
}

int llmp_wire_desc_to_shmem(const struct llmp_wire_desc *w, enum llmp_shmem_kind kind,
			    struct llmp_shmem_desc *d)
{
	memset(d, 0, sizeof(*d));
	d->kind = kind;
	d->size = w->size;
	memcpy(d->id, w->id, sizeof(d->id));
	return llmp_shmem_desc_check(d);
}
