// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * Broker-to-broker links in LibAFL's wire format: after the
 * RemoteBrokerHello handshake both sides stream framed TcpRemoteNewMessage
 * records {client id, tag, flags, payload}.
 *
 * Loops: a link ships only messages that did not come over a link (no
 * FROM_B2B flag) and marks every message it receives FROM_B2B, so a message
 * crosses exactly one link.  In a full mesh (every broker linked to every
 * other, e.g. a triangle) each message reaches every broker exactly once;
 * in a chain A-B-C, A's messages reach B but not C.
 *
 * Compression (optional, per link): payloads of 1 KiB or more that are not
 * compressed yet are sent as raw DEFLATE, level 1, with LLMP_FLAG_COMPRESSED,
 * the way LibAFL's event layer does it; the flag travels end to end and the
 * receiving clients inflate (LibAFL clients do so already).
 */
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#ifdef LLMP_HAVE_ZLIB
#include <zlib.h>
#endif

#include "b2b.h"
#include "broker_internal.h"
#include "tcp.h"

#define COMPRESS_MIN 1024
/* Stop pulling local messages while this much is waiting to be sent. */
#define OUT_HIGH (1u << 20)
#define HANDSHAKE_TIMEOUT_MS 3000
#define DIAL_RETRY_MS 10000

struct llmp_b2b_link {
	struct llmp_broker *b;
	int fd;
	uint32_t remote_id;
	bool compress;
	char peer[64];
	struct llmp_receiver r;
	bool r_ok;
	/* outgoing bytes: out[out_off..out_len) */
	uint8_t *out;
	size_t out_len, out_off, out_cap;
	/* incoming frame */
	uint8_t hdr[4];
	size_t hdr_got;
	uint8_t *body;
	uint32_t body_len;
	size_t body_got;
	uint64_t sent, received;
};

int llmp_b2b_link_new(struct llmp_broker *b, int fd, uint32_t remote_id, bool compress,
		      const char *peer, struct llmp_b2b_link **out)
{
	struct llmp_b2b_link *l;
	struct llmp_shmem_desc d;
	int ret, one = 1;

	*out = NULL;
#ifndef LLMP_HAVE_ZLIB
	if (compress)
		return llmp_err(-EOPNOTSUPP, "b2b: built without zlib: no compression");
#endif
	l = calloc(1, sizeof(*l));
	if (!l)
		return llmp_err(-ENOMEM, "b2b: out of memory");
	l->b = b;
	l->fd = fd;
	l->remote_id = remote_id;
	l->compress = compress;
	snprintf(l->peer, sizeof(l->peer), "%s", peer ? peer : "?");
	ret = llmp_broker_broadcast_desc(b, &d);
	if (ret == 0)
		ret = llmp_receiver_init(&l->r, llmp_broker_provider(b), &d, false, 0, false, &d);
	if (ret < 0) {
		free(l);
		return ret;
	}
	l->r_ok = true;
	/* Non-blocking from here on: the loop drives the link. */
	struct timeval tv = { 0, 0 };
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	llmp_log(LLMP_LOG_INFO, "b2b: link %u to %s up", remote_id, l->peer);
	*out = l;
	return 0;
}

void llmp_b2b_link_free(struct llmp_b2b_link *l)
{
	if (!l)
		return;
	if (l->r_ok)
		llmp_receiver_fini(&l->r);
	close(l->fd);
	free(l->out);
	free(l->body);
	free(l);
}

void llmp_b2b_link_pollfd(const struct llmp_b2b_link *l, struct pollfd *pfd)
{
	pfd->fd = l->fd;
	pfd->events = POLLIN | (l->out_off < l->out_len ? POLLOUT : 0);
	pfd->revents = 0;
}

void llmp_b2b_link_stats(const struct llmp_b2b_link *l, uint64_t *sent, uint64_t *received)
{
	*sent = l->sent;
	*received = l->received;
}

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
	l->out = p;
	l->out_cap = cap;
	return 0;
}

/* Append one framed message to the out buffer. */
static int queue_msg(struct llmp_b2b_link *l, const struct llmp_rmsg *m)
{
	struct llmp_wire_b2b w = { .client_id = m->sender, .tag = m->tag, .flags = m->flags,
				   .buf = m->buf, .len = m->len };
	uint8_t head[32];
	void *z = NULL;
	int n, ret;

#ifdef LLMP_HAVE_ZLIB
	if (l->compress && m->len >= COMPRESS_MIN && !(m->flags & LLMP_FLAG_COMPRESSED)) {
		z_stream zs;
		uLong bound;

		memset(&zs, 0, sizeof(zs));
		if (deflateInit2(&zs, 1, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY) == Z_OK) {
			bound = deflateBound(&zs, (uLong)m->len);
			z = malloc(bound);
			zs.next_in = (Bytef *)m->buf;
			zs.avail_in = (uInt)m->len;
			zs.next_out = z;
			zs.avail_out = (uInt)bound;
			if (z && deflate(&zs, Z_FINISH) == Z_STREAM_END && zs.total_out < m->len) {
				w.buf = z;
				w.len = zs.total_out;
				w.flags |= LLMP_FLAG_COMPRESSED;
			}
			deflateEnd(&zs);
		}
	}
#endif
	n = llmp_wire_encode_b2b_head(&w, head, sizeof(head));
	if (n < 0) {
		free(z);
		return n;
	}
	ret = out_reserve(l, 4 + (size_t)n + w.len);
	if (ret == 0) {
		llmp_wire_put_len(l->out + l->out_len, (uint32_t)(n + w.len));
		memcpy(l->out + l->out_len + 4, head, (size_t)n);
		if (w.len)
			memcpy(l->out + l->out_len + 4 + n, w.buf, w.len);
		l->out_len += 4 + (size_t)n + w.len;
		l->sent++;
	}
	free(z);
	return ret;
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
		if ((m.flags & LLMP_FLAG_FROM_B2B) || m.tag == LLMP_TAG_EXITING ||
		    m.tag == LLMP_TAG_CLIENT_EXIT || m.tag == LLMP_TAG_SLOW_RECEIVER_PANIC)
			continue;
		if (m.len > LLMP_TCP_MAX_FRAME - 32)
			continue;
		ret = queue_msg(l, &m);
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

/* Socket -> local broadcast page. */
static int pull_remote(struct llmp_b2b_link *l)
{
	int moved = 0;

	for (;;) {
		ssize_t n;

		if (l->hdr_got < 4) {
			n = recv(l->fd, l->hdr + l->hdr_got, 4 - l->hdr_got, MSG_DONTWAIT);
		} else {
			n = recv(l->fd, l->body + l->body_got, l->body_len - l->body_got, MSG_DONTWAIT);
		}
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
		struct llmp_wire_b2b w;
		int ret = llmp_wire_decode_b2b(l->body, l->body_len, &w);
		if (ret < 0)
			return ret;
		ret = llmp_broker_forward(l->b, w.client_id, w.tag, w.flags | LLMP_FLAG_FROM_B2B,
					  l->remote_id, w.buf, w.len);
		if (ret < 0)
			return ret;
		l->received++;
		moved++;
		l->hdr_got = 0;
		l->body_got = 0;
		l->body_len = 0;
	}
}

int llmp_b2b_link_step(struct llmp_b2b_link *l)
{
	int a, b, ret;

	a = pull_local(l);
	if (a < 0)
		return a;
	ret = push_out(l);
	if (ret < 0)
		return ret;
	b = pull_remote(l);
	if (b < 0)
		return b;
	return a + b;
}

/* ---- outgoing handshake ---------------------------------------------------- */

static int read_resp(int fd, uint8_t *buf, size_t cap, struct llmp_wire_msg *m)
{
	uint32_t len;
	int ret = llmp_tcp_io_full(fd, buf, 4, false);

	if (ret < 0)
		return llmp_err(ret, "b2b: no answer from the remote broker");
	ret = llmp_wire_get_len(buf, (uint32_t)cap, &len);
	if (ret < 0)
		return ret;
	ret = llmp_tcp_io_full(fd, buf, len, false);
	if (ret < 0)
		return llmp_err(ret, "b2b: the remote broker's answer was cut short");
	return llmp_wire_decode_resp(buf, len, m);
}

int llmp_b2b_dial(const char *addr, uint16_t port, const char *hostname, uint32_t *remote_id)
{
	struct timeval tv = { HANDSHAKE_TIMEOUT_MS / 1000, 0 };
	struct addrinfo hints, *res, *ai;
	struct llmp_wire_msg m, h = { .type = LLMP_TCP_REQ_REMOTE_BROKER_HELLO, .text = hostname,
				      .text_len = strlen(hostname) };
	uint8_t buf[4096];
	char ps[8];
	int fd = -1, ret, n;

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	snprintf(ps, sizeof(ps), "%u", port);
	ret = getaddrinfo(addr ? addr : "127.0.0.1", ps, &hints, &res);
	if (ret)
		return llmp_err(-EHOSTUNREACH, "b2b: cannot resolve %s: %s", addr, gai_strerror(ret));
	/* A refused connection is retried every 50 ms for a while: brokers start in any order. */
	int64_t end = llmp_now_ms() + DIAL_RETRY_MS;
	for (;;) {
		ret = -ECONNREFUSED;
		for (ai = res; ai; ai = ai->ai_next) {
			fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
			if (fd < 0)
				continue;
			setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
			setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
			if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) {
				ret = 0;
				break;
			}
			ret = -errno;
			close(fd);
			fd = -1;
		}
		if (ret != -ECONNREFUSED || llmp_now_ms() >= end)
			break;
		nanosleep(&(struct timespec){ .tv_nsec = 50 * 1000000 }, NULL);
	}
	freeaddrinfo(res);
	if (ret < 0)
		return llmp_err(ret, "b2b: cannot connect to %s:%u", addr ? addr : "127.0.0.1", port);
	ret = read_resp(fd, buf, sizeof(buf), &m);
	if (ret == 0 && m.type != LLMP_TCP_RESP_BROKER_CONNECT_HELLO)
		ret = llmp_err(-EPROTO, "b2b: expected the broker's hello, got response %u", m.type);
	if (ret == 0) {
		n = llmp_wire_encode_req(&h, buf + 4, sizeof(buf) - 4);
		if (n < 0) {
			ret = n;
		} else {
			llmp_wire_put_len(buf, (uint32_t)n);
			ret = llmp_tcp_io_full(fd, buf, 4 + (size_t)n, true);
			if (ret < 0)
				llmp_err(ret, "b2b: cannot send RemoteBrokerHello");
		}
	}
	if (ret == 0)
		ret = read_resp(fd, buf, sizeof(buf), &m);
	if (ret == 0 && m.type == LLMP_TCP_RESP_ERROR)
		ret = llmp_err(-ECONNREFUSED, "b2b: the remote broker refused: %.*s", (int)m.text_len,
			       m.text);
	else if (ret == 0 && m.type != LLMP_TCP_RESP_REMOTE_BROKER_ACCEPTED)
		ret = llmp_err(-EPROTO, "b2b: expected RemoteBrokerAccepted, got response %u", m.type);
	if (ret < 0) {
		close(fd);
		return ret;
	}
	*remote_id = m.id;
	return fd;
}
