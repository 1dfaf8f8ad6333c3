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
		      struct llmp_b2b_link **out)
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
	l->out_off = l->out_len = 0;
}

int llmp_b2b_link_new(struct llmp_broker *b, int fd, uint32_t link_id, unsigned codecs,
		      const char *peer, struct llmp_b2b_link **out)
{
	struct llmp_b2b_link *l;
	int ret = b2b_link_alloc(b, link_id, codecs, peer, out);

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
		pfd->fd = l->fd;
		pfd->events = POLLIN | (l->out_off < l->out_len ? POLLOUT : 0);
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
		if ((m.flags & LLMP_FLAG_FROM_B2B) || llmp_b2b_tag_reserved(m.tag))
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
	if (llmp_b2b_tag_reserved(w.tag)) {
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
		if (ret < 0)
			return ret;
		w.buf = l->z;
		w.len = n;
		w.flags &= ~LLMP_FLAG_ZSTD;
	}
	ret = llmp_broker_forward(l->b, w.client_id, w.tag, w.flags | LLMP_FLAG_FROM_B2B,
				  l->link_id, w.buf, w.len);
	if (ret < 0)
		return ret;
	l->cnt.received++;
	return 1;
}

/* Socket -> local broadcast page. */
static int pull_remote(struct llmp_b2b_link *l)
{
	int moved = 0;

	for (;;) {
		ssize_t n;

		if (l->hdr_got < 4)
			n = recv(l->fd, l->hdr + l->hdr_got, 4 - l->hdr_got, MSG_DONTWAIT);
		else
			n = recv(l->fd, l->body + l->body_got, l->body_len - l->body_got, MSG_DONTWAIT);
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
			return moved;
		if (n == 0)
			return llmp_err(-ECONNRESET, "b2b: link to %s closed", l->peer);
		if (n < 0)
			return llmp_err(-errno, "b2b: link to %s: recv", l->peer);
		if (l->hdr_got < 4) {
			l->hdr_got += (size_t)n;
			if (l->hdr_got < 4)
				continue;
			int ret = llmp_wire_get_len(l->hdr, LLMP_TCP_MAX_FRAME, &l->body_len);
			if (ret < 0)
				return ret;
			free(l->body);
			l->body = malloc(l->body_len ? l->body_len : 1);
			if (!l->body)
				return llmp_err(-ENOMEM, "b2b: out of memory for a %u-byte frame",
						l->body_len);
			l->body_got = 0;
		} else {
			l->body_got += (size_t)n;
		}
		if (l->body_got < l->body_len)
			continue;
		int ret = take_frame(l);
		if (ret < 0)
			return ret;
		moved += ret;
		l->hdr_got = 0;
		l->body_got = 0;
		l->body_len = 0;
	}
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
