// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * Broker-to-broker links in LibAFL's wire format: after the
 * RemoteBrokerHello handshake both sides stream framed TcpRemoteNewMessage
 * records {client id, tag, flags, payload}.  This file is the link's data
 * path: local broadcast page -> socket, socket -> local broadcast page.
 * The frame codecs are in b2b_codec.c, dialling in b2b_dial.c, resuming
 * across re-dials in b2b_resume.c.
 *
 * Loops: a link ships only messages that did not come over a link (no
 * FROM_B2B flag) and marks every message it receives FROM_B2B, so a message
 * crosses exactly one link.  In a full mesh (every broker linked to every
 * other, e.g. a triangle) each message reaches every broker exactly once;
 * in a chain A-B-C, A's messages reach B but not C.  Control tags (the
 * protocol's reserved ones) never cross a link in either direction.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <unistd.h>

#include "b2b_internal.h"

int b2b_link_alloc(struct llmp_broker *b, uint32_t link_id, unsigned codecs, const char *peer,
		   struct llmp_b2b_limits *lim, struct llmp_b2b_link **out)
{
	struct llmp_b2b_link *l;
	struct llmp_shmem_desc d;
	int ret;

	*out = NULL;
#ifndef LLMP_HAVE_ZLIB
	if (codecs & LLMP_B2B_DEFLATE)
		return llmp_err(-EOPNOTSUPP, "b2b: built without zlib: no compression");
#endif
#ifndef LLMP_HAVE_ZSTD
	if (codecs & LLMP_B2B_ZSTD)
		return llmp_err(-EOPNOTSUPP, "b2b: built without libzstd: no zstd");
#endif
	l = calloc(1, sizeof(*l));
	if (!l)
		return llmp_err(-ENOMEM, "b2b: out of memory");
	l->b = b;
	l->fd = -1;
	l->hold_tfd = l->hold_epfd = -1;
	l->link_id = link_id;
	l->codecs = codecs;
	l->lim = lim;
	l->tokens = (double)lim->max_frame;
	l->tokens_at = llmp_now_ms();
	snprintf(l->peer, sizeof(l->peer), "%s", peer ? peer : "?");
#ifdef LLMP_HAVE_ZSTD
	if (codecs & LLMP_B2B_ZSTD) {
		l->zc = ZSTD_createCCtx();
		l->zd = ZSTD_createDCtx();
		if (!l->zc || !l->zd) {
			llmp_b2b_link_free(l);
			return llmp_err(-ENOMEM, "b2b: out of memory for zstd contexts");
		}
	}
#endif
	ret = llmp_broker_broadcast_desc(b, &d);
	if (ret == 0)
		ret = llmp_receiver_init(&l->r, llmp_broker_provider(b), &d, false, 0, false, &d);
	if (ret < 0) {
		llmp_b2b_link_free(l);
		return ret;
	}
	l->r_ok = true;
	*out = l;
	return 0;
}

/*
 * Make fd the link's connected socket: non-blocking, no Nagle, and TCP
 * keepalive (idle 10 s, then 3 probes 5 s apart) plus a 30 s limit on
 * unacknowledged data, so a peer host that vanished without a FIN or RST
 * breaks the link (and a dialled one re-dials) in about half a minute
 * instead of TCP's quarter of an hour.
 */
void b2b_link_attach(struct llmp_b2b_link *l, int fd)
{
	struct timeval tv = { 0, 0 };
	int one = 1, idle = 10, intvl = 5, cnt = 3;
	unsigned user_timeout_ms = 30000;

	l->fd = fd;
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof(intvl));
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt));
	setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &user_timeout_ms, sizeof(user_timeout_ms));
	l->caps_sent = l->caps_got = l->peer_zstd = l->got_first = false;
	l->hdr_got = l->body_got = 0;
	l->body_len = 0;
	l->mem_wait = l->pending = false;
	l->out_off = l->out_len = 0;
}

int llmp_b2b_link_new(struct llmp_broker *b, int fd, uint32_t link_id, unsigned codecs,
		      const char *peer, struct llmp_b2b_limits *lim, struct llmp_b2b_link **out)
{
	struct llmp_b2b_link *l;
	int ret = b2b_link_alloc(b, link_id, codecs, peer, lim, out);

	if (ret < 0)
		return ret;
	l = *out;
	b2b_link_attach(l, fd);
	b2b_hold_start(l);
	llmp_log(LLMP_LOG_INFO, "b2b: link %u to %s up", link_id, l->peer);
	return 0;
}

void llmp_b2b_link_free(struct llmp_b2b_link *l)
{
	if (!l)
		return;
	if (!l->d && l->token)
		b2b_live_del(l);
	if (l->r_ok && !l->d && l->token)
		b2b_park(l);
	if (l->r_ok)
		llmp_receiver_fini(&l->r);
	if (l->fd >= 0)
		close(l->fd);
	b2b_hold_end(l);
	b2b_dialer_free(l->d);
#ifdef LLMP_HAVE_ZSTD
	ZSTD_freeCCtx(l->zc);
	ZSTD_freeDCtx(l->zd);
#endif
#ifdef LLMP_HAVE_ZLIB
	if (l->zs_ok)
		deflateEnd(&l->zs);
#endif
	b2b_acct(l, l->zcap + l->out_cap + l->body_cap, 0);
	free(l->z);
	free(l->out);
	free(l->body);
	free(l);
}

bool llmp_b2b_link_up(const struct llmp_b2b_link *l)
{
	return l->fd >= 0;
}

void llmp_b2b_link_pollfd(const struct llmp_b2b_link *l, struct pollfd *pfd)
{
	if (l->holding) {
		/* Readable on the peer's first bytes or when the hold ends. */
		pfd->fd = l->hold_epfd;
		pfd->events = POLLIN;
	} else if (l->fd >= 0) {
		/* Waiting for a budget: not readable, llmp_b2b_link_timeout_ms() wakes the loop. */
		bool wait = l->mem_wait || l->pending;

		pfd->fd = l->fd;
		pfd->events = (wait ? 0 : POLLIN) | (l->out_off < l->out_len ? POLLOUT : 0);
	} else {
		/* Down: the epoll fd turns readable when the socket or the timer is ready. */
		pfd->fd = l->d->epfd;
		pfd->events = POLLIN;
	}
	pfd->revents = 0;
}

void llmp_b2b_link_counters(const struct llmp_b2b_link *l, struct llmp_b2b_counters *c)
{
	c->sent += l->cnt.sent;
	c->received += l->cnt.received;
	c->deflated += l->cnt.deflated;
	c->zstd += l->cnt.zstd;
	c->dials += l->cnt.dials;
	c->reserved += l->cnt.reserved;
}

/* Local broadcast page -> out buffer. */
static int pull_local(struct llmp_b2b_link *l)
{
	struct llmp_rmsg m;
	int moved = 0, ret;

	while (l->out_len - l->out_off < OUT_HIGH) {
		ret = llmp_receiver_next(&l->r, &m);
		if (ret == -ESTALE) {
			llmp_log(LLMP_LOG_WARN, "b2b: link to %s fell behind the broadcast history; "
				 "messages were skipped", l->peer);
			continue;
		}
		if (ret < 0)
			return ret;
		if (ret == 0)
			break;
		/* Only what local clients sent: nothing that crossed a link, no control tags. */
		if ((m.flags & LLMP_FLAG_FROM_B2B) || llmp_tag_reserved(m.tag))
			continue;
		if (m.len > LLMP_TCP_MAX_FRAME - 32)
			continue;
		/* After our capabilities the peer reads this bit as "zstd": not ours to pass on. */
		if (l->caps_sent && (m.flags & LLMP_FLAG_ZSTD)) {
			if (l->reserved_drops++ % 1000 == 0)
				llmp_log(LLMP_LOG_WARN, "b2b: link to %s: a message with flag 0x%x "
					 "(reserved for zstd between our brokers) not shipped (%llu so far)",
					 l->peer, LLMP_FLAG_ZSTD, (unsigned long long)l->reserved_drops);
			continue;
		}
		ret = b2b_queue_msg(l, &m);
		if (ret < 0)
			return ret;
		moved++;
	}
	return moved;
}

static int push_out(struct llmp_b2b_link *l)
{
	while (l->out_off < l->out_len) {
		ssize_t n = send(l->fd, l->out + l->out_off, l->out_len - l->out_off,
				 MSG_NOSIGNAL | MSG_DONTWAIT);

		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
			return 0;
		if (n <= 0)
			return llmp_err(-ECONNRESET, "b2b: link to %s: send failed", l->peer);
		l->out_off += (size_t)n;
	}
	if (l->out_cap > 4 * KEEP_BUF) {
		/* One big message went out: give its room back. */
		b2b_acct(l, l->out_cap, 0);
		free(l->out);
		l->out = NULL;
		l->out_cap = l->out_off = l->out_len = 0;
	}
	return 0;
}

/* One whole frame from the peer. */
static int take_frame(struct llmp_b2b_link *l)
{
	struct llmp_wire_b2b w;
	int ret = llmp_wire_decode_b2b(l->body, l->body_len, &w);

	if (ret < 0)
		return llmp_err(ret, "b2b: link to %s: malformed frame", l->peer);
	ret = b2b_take_caps(l, &w);
	l->got_first = true;
	if (ret != 0)
		return ret < 0 ? ret : 0;
	if (llmp_tag_reserved(w.tag)) {
		/* A control tag on the broadcast page would stop every receiver, and later joiners. */
		if (l->cnt.reserved++ % 1000 == 0)
			llmp_log(LLMP_LOG_WARN, "b2b: link to %s: dropped a frame with reserved tag "
				 "0x%x from client %u (%llu so far)", l->peer, w.tag, w.client_id,
				 (unsigned long long)l->cnt.reserved);
		return 0;
	}
	/* The bit means zstd only once both sides said what they decode, and we said zstd. */
	if ((w.flags & LLMP_FLAG_ZSTD) && l->caps_got && l->caps_sent &&
	    (l->codecs & LLMP_B2B_ZSTD)) {
		size_t n = 0;

		ret = b2b_unzstd(l, &w, &n);
		if (ret == -EAGAIN) {
			l->pending = true;
			return 0;
		}
		if (ret < 0)
			return ret;
		w.buf = l->z;
		w.len = n;
		w.flags &= ~LLMP_FLAG_ZSTD;
	}
	ret = llmp_broker_forward(l->b, w.client_id, w.tag, w.flags | LLMP_FLAG_FROM_B2B,
				  l->link_id, w.buf, w.len);
	if (l->zcap > KEEP_BUF) {
		b2b_acct(l, l->zcap, 0);
		free(l->z);
		l->z = NULL;
		l->zcap = 0;
	}
	if (ret < 0)
		return ret;
	l->cnt.received++;
	return 1;
}

void b2b_acct(struct llmp_b2b_link *l, size_t old, size_t new_size)
{
	l->lim->buffered = l->lim->buffered - old + new_size;
}

void b2b_drop_in(struct llmp_b2b_link *l)
{
	b2b_acct(l, l->body_cap, 0);
	free(l->body);
	l->body = NULL;
	l->body_cap = 0;
	l->hdr_got = l->body_got = 0;
	l->body_len = 0;
	l->mem_wait = l->pending = false;
}

int b2b_inflate_budget(struct llmp_b2b_link *l, size_t sz)
{
	int64_t now = llmp_now_ms();
	double cap = (double)l->lim->max_frame;

	l->tokens += (double)(now - l->tokens_at) * (double)l->lim->inflate_rate / 1000.0;
	l->tokens_at = now;
	if (l->tokens > cap)
		l->tokens = cap;
	if (l->tokens >= (double)sz) {
		l->tokens -= (double)sz;
		l->pending = false;
		return 0;
	}
	/* Wait until the bucket holds sz; the frame's deadline does not run meanwhile. */
	l->stall_until = now + 1 + (int64_t)(((double)sz - l->tokens) * 1000.0 /
					     (double)l->lim->inflate_rate);
	if (!l->pending)
		l->lim->throttled++;
	l->frame_deadline = l->stall_until + FRAME_BASE_MS;
	return -EAGAIN;
}

/* Room for more of the frame body: 0, or -EAGAIN while the links' memory budget is spent. */
static int body_grow(struct llmp_b2b_link *l)
{
	size_t want = l->body_cap ? l->body_cap * 2 : BODY_MIN;
	uint8_t *p;

	if (want > l->body_len)
		want = l->body_len ? l->body_len : 1;
	if (l->lim->buffered - l->body_cap + want > l->lim->memory) {
		if (!l->mem_wait)
			l->lim->throttled++;
		l->mem_wait = true;
		return -EAGAIN;
	}
	p = realloc(l->body, want);
	if (!p)
		return llmp_err(-ENOMEM, "b2b: out of memory for a %u-byte frame", l->body_len);
	b2b_acct(l, l->body_cap, want);
	l->body = p;
	l->body_cap = want;
	l->mem_wait = false;
	return 0;
}

/* The frame's 4-byte length is in: check it against the cap, start its deadline. */
static int frame_begin(struct llmp_b2b_link *l)
{
	uint32_t max = l->lim->max_frame > UINT32_MAX ? UINT32_MAX : (uint32_t)l->lim->max_frame;

	if (llmp_wire_get_len(l->hdr, max, &l->body_len) < 0)
		return llmp_err(-EMSGSIZE, "b2b: link to %s: a frame of %u bytes, over the %u-byte "
				"cap", l->peer, (uint32_t)l->hdr[0] << 24 | (uint32_t)l->hdr[1] << 16 |
				(uint32_t)l->hdr[2] << 8 | l->hdr[3], max);
	l->frame_deadline += l->body_len / 1024;
	l->body_got = 0;
	return 0;
}

/* A frame was taken: ready for the next one, big buffers given back. */
static void frame_end(struct llmp_b2b_link *l)
{
	if (l->body_cap > KEEP_BUF) {
		b2b_acct(l, l->body_cap, 0);
		free(l->body);
		l->body = NULL;
		l->body_cap = 0;
	}
	l->hdr_got = 0;
	l->body_got = 0;
	l->body_len = 0;
}

/* Socket -> local broadcast page. */
static int pull_remote(struct llmp_b2b_link *l)
{
	int64_t now = llmp_now_ms();
	int moved = 0, ret;

	if (l->pending) {
		if (now < l->stall_until)
			return 0;
		ret = take_frame(l);
		if (ret < 0 || l->pending)
			return ret;
		frame_end(l);
		moved += ret;
	}
	if (l->hdr_got && now > l->frame_deadline)
		return llmp_err(-ETIMEDOUT, "b2b: link to %s: a frame of %u bytes still incomplete "
				"(%zu in) at its deadline", l->peer, l->body_len, l->body_got);
	for (;;) {
		ssize_t n;

		if (l->hdr_got < 4) {
			n = recv(l->fd, l->hdr + l->hdr_got, 4 - l->hdr_got, MSG_DONTWAIT);
		} else {
			size_t room = l->body_cap < l->body_len ? l->body_cap : l->body_len;

			if (l->body_got == room && body_grow(l) < 0)
				return l->mem_wait ? moved : -ENOMEM;
			room = l->body_cap < l->body_len ? l->body_cap : l->body_len;
			n = recv(l->fd, l->body + l->body_got, room - l->body_got, MSG_DONTWAIT);
		}
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
			return moved;
		if (n == 0)
			return llmp_err(-ECONNRESET, "b2b: link to %s closed", l->peer);
		if (n < 0)
			return llmp_err(-errno, "b2b: link to %s: recv", l->peer);
		if (l->hdr_got < 4) {
			if (!l->hdr_got)
				l->frame_deadline = llmp_now_ms() + FRAME_BASE_MS;
			l->hdr_got += (size_t)n;
			if (l->hdr_got < 4)
				continue;
			ret = frame_begin(l);
			if (ret < 0)
				return ret;
		} else {
			l->body_got += (size_t)n;
		}
		if (l->body_got < l->body_len)
			continue;
		ret = take_frame(l);
		if (ret < 0)
			return ret;
		if (l->pending)
			return moved; /* waits for the inflate budget */
		moved += ret;
		frame_end(l);
	}
}

int llmp_b2b_link_timeout_ms(const struct llmp_b2b_link *l, int64_t now)
{
	int64_t at;

	if (l->fd < 0 || l->holding)
		return -1;
	if (l->pending)
		at = l->stall_until;
	else if (l->mem_wait)
		at = now + MEM_RETRY_MS;
	else if (l->hdr_got)
		at = l->frame_deadline + 1;
	else
		return -1;
	return at <= now ? 0 : at - now > 1000000 ? 1000000 : (int)(at - now);
}

static int data_step(struct llmp_b2b_link *l)
{
	int a = 0, b, ret;

	if (l->holding) {
		b = pull_remote(l);
		if (b < 0)
			return b;
		if (!l->got_first && llmp_now_ms() < l->hold_until)
			return b;
		b2b_hold_end(l);
		a = b;
	}
	ret = pull_local(l);
	if (ret < 0)
		return ret;
	a += ret;
	ret = push_out(l);
	if (ret < 0)
		return ret;
	b = pull_remote(l);
	if (b < 0)
		return b;
	/* The caps answer queued while reading goes out now, not at the next step. */
	ret = push_out(l);
	if (ret < 0)
		return ret;
	return a + b;
}

int llmp_b2b_link_step(struct llmp_b2b_link *l)
{
	int ret;

	if (l->replaced)
		return llmp_err(-ECONNRESET, "b2b: link %u to %s: its dialler came back on a new "
				"connection", l->link_id, l->peer);
	if (l->fd < 0) {
		b2b_dial_step(l);
		if (l->fd < 0)
			return 0;
	}
	ret = data_step(l);
	if (ret >= 0 || !l->d || ret == -ENOMEM)
		return ret;
	b2b_link_broken(l, llmp_now_ms());
	return 0;
}
