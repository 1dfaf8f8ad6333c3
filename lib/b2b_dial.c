// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * Dialled broker-to-broker links: the connect and the handshake are
 * non-blocking steps driven by llmp_b2b_link_step(); while the link is down
 * the loop waits on an epoll fd holding the connecting socket and a timerfd
 * (the retry time or the handshake deadline), so a peer that is down costs
 * no CPU between attempts.  A broken link dials again with backoff and
 * keeps its read position in the broadcast page.
 */
#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "auth.h"
#include "b2b_internal.h"

static uint64_t rng_next(uint64_t *s)
{
	uint64_t x = *s;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*s = x;
	return x * 0x2545F4914F6CDD1DULL;
}

/* Arm the timer for absolute monotonic time at_ms (0: disarm). */
static void timer_at(struct dialer *d, int64_t at_ms)
{
	struct itimerspec its = { { 0, 0 }, { 0, 0 } };
	uint64_t v;

	if (read(d->tfd, &v, sizeof(v)) < 0) {
		/* not expired: nothing to drain */
	}
	if (at_ms > 0) {
		its.it_value.tv_sec = at_ms / 1000;
		its.it_value.tv_nsec = (at_ms % 1000) * 1000000;
	}
	timerfd_settime(d->tfd, TFD_TIMER_ABSTIME, &its, NULL);
}

/* Register the socket in the epoll set for these events (0: remove it). */
static int watch(struct dialer *d, unsigned events)
{
	struct epoll_event ev = { .events = events };
	int op;

	if (events == d->watched)
		return 0;
	op = !events ? EPOLL_CTL_DEL : d->watched ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
	ev.data.fd = d->sock;
	if (epoll_ctl(d->epfd, op, d->sock, &ev) < 0)
		return llmp_err(-errno, "b2b: epoll_ctl");
	d->watched = events;
	return 0;
}

static void close_sock(struct dialer *d)
{
	if (d->sock < 0)
		return;
	watch(d, 0);
	close(d->sock);
	d->sock = -1;
}

/* Wait before the next attempt: the backoff, jittered by +-25 %. */
static void schedule(struct llmp_b2b_link *l, int64_t now)
{
	struct dialer *d = l->d;
	unsigned delay = d->backoff_ms;

	delay = delay * 3 / 4 + (unsigned)(rng_next(&d->rng) % (delay / 2 + 1));
	d->backoff_ms = d->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : d->backoff_ms * 2;
	d->retry_at = now + delay;
	d->st = D_WAIT;
	timer_at(d, d->retry_at);
}

/* An attempt failed (reason in llmp_strerror_last()): log at a rate-limited level, wait. */
static void attempt_failed(struct llmp_b2b_link *l, int64_t now)
{
	struct dialer *d = l->d;
	enum llmp_log_level lv = LLMP_LOG_DEBUG;

	close_sock(d);
	d->fails++;
	d->next_addr++; /* the next address, if the name had several */
	if (d->fails <= LOUD_ATTEMPTS) {
		lv = LLMP_LOG_INFO;
	} else if (now - d->last_warn >= WARN_EVERY_MS) {
		lv = LLMP_LOG_WARN;
		d->last_warn = now;
	}
	schedule(l, now);
	llmp_log(lv, "b2b: dial %s: attempt %u failed (%s); next in %lld ms", l->peer, d->fails,
		 llmp_strerror_last(), (long long)(d->retry_at - now));
}

/* Start a connection (probe or link phase); 0, or <0 when it failed at once. */
static int start_connect(struct llmp_b2b_link *l, int64_t now)
{
	struct dialer *d = l->d;
	unsigned i = d->next_addr % d->naddr;
	int fd, ret;

	fd = socket(d->addr[i].ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return llmp_err(-errno, "b2b: dial %s: socket", l->peer);
	d->sock = fd;
	d->deadline = now + HANDSHAKE_TIMEOUT_MS;
	timer_at(d, d->deadline);
	d->hs_len = d->hs_off = 0;
	if (connect(fd, (struct sockaddr *)&d->addr[i], d->alen[i]) == 0) {
		d->st = D_HELLO;
		return watch(d, EPOLLIN);
	}
	if (errno != EINPROGRESS) {
		ret = -errno;
		return llmp_err(ret, "b2b: cannot connect to %s", l->peer);
	}
	d->st = D_CONNECT;
	return watch(d, EPOLLOUT);
}

/*
 * Read one frame into d->hs and decode it (m NULL: leave it raw, its body at
 * d->hs + 4, d->hs_off - 4 bytes): 1 done, 0 not yet, <0 error.
 */
static int hs_read(struct llmp_b2b_link *l, struct llmp_wire_msg *m)
{
	struct dialer *d = l->d;

	for (;;) {
		uint32_t len = 0;
		size_t want = 4;
		ssize_t n;
		int ret;

		if (d->hs_off >= 4) {
			ret = llmp_wire_get_len(d->hs, sizeof(d->hs) - 4, &len);
			if (ret < 0)
				return llmp_err(ret, "b2b: dial %s: answer too long", l->peer);
			want = 4 + len;
		}
		if (d->hs_off == want && !m)
			return 1;
		if (d->hs_off == want)
			return llmp_wire_decode_resp(d->hs + 4, len, m) < 0
				? llmp_err(-EBADMSG, "b2b: dial %s: malformed answer", l->peer) : 1;
		n = recv(d->sock, d->hs + d->hs_off, want - d->hs_off, MSG_DONTWAIT);
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
			return 0;
		if (n == 0)
			return llmp_err(-ECONNRESET, "b2b: dial %s: connection closed", l->peer);
		if (n < 0)
			return llmp_err(-errno, "b2b: dial %s: recv", l->peer);
		d->hs_off += (size_t)n;
	}
}

/* The handshake is done: the socket becomes the link's. */
static void link_up(struct llmp_b2b_link *l, int64_t now)
{
	struct dialer *d = l->d;
	int fd = d->sock;

	watch(d, 0);
	timer_at(d, 0);
	d->sock = -1;
	d->st = D_UP;
	d->up_since = now;
	b2b_link_attach(l, fd);
	llmp_log(d->fails > LOUD_ATTEMPTS ? LLMP_LOG_WARN : LLMP_LOG_INFO,
		 "b2b: link %u to %s up (attempt %llu%s)", l->link_id, l->peer,
		 (unsigned long long)d->attempts, d->peer_ours ? ", our broker" : "");
	d->fails = 0;
	if (d->peer_ours && b2b_queue_caps(l) < 0)
		l->caps_sent = false; /* out of memory: go on without zstd or resuming */
}

/* A dialled link broke: close it and dial again after the backoff. */
void b2b_link_broken(struct llmp_b2b_link *l, int64_t now)
{
	struct dialer *d = l->d;
	size_t lost = l->out_len - l->out_off;

	close(l->fd);
	l->fd = -1;
	b2b_drop_in(l);
	l->out_off = l->out_len = 0;
	if (now - d->up_since >= STABLE_MS)
		d->backoff_ms = BACKOFF_MIN_MS;
	schedule(l, now);
	llmp_log(LLMP_LOG_WARN, "b2b: link %u to %s lost (%s); %zu unsent bytes dropped, "
		 "re-dialling in %lld ms", l->link_id, l->peer, llmp_strerror_last(), lost,
		 (long long)(d->retry_at - now));
}

/* Send what is in d->hs: 1 done, 0 not yet, <0 error. */
static int hs_write(struct llmp_b2b_link *l)
{
	struct dialer *d = l->d;

	while (d->hs_off < d->hs_len) {
		ssize_t n = send(d->sock, d->hs + d->hs_off, d->hs_len - d->hs_off,
				 MSG_NOSIGNAL | MSG_DONTWAIT);

		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
			return 0;
		if (n <= 0)
			return llmp_err(-ECONNRESET, "b2b: dial %s: send failed", l->peer);
		d->hs_off += (size_t)n;
	}
	return 1;
}

/*
 * The challenge to our campaign secret hello is in d->hs: check the peer's
 * proof, then queue our proof and the RemoteBrokerHello.  0 or <0.
 */
static int hs_prove(struct llmp_b2b_link *l, const uint8_t *key)
{
	struct dialer *d = l->d;
	uint8_t nb[LLMP_AUTH_NONCE_LEN], proof[LLMP_AUTH_PROOF_LEN], want[LLMP_AUTH_PROOF_LEN];
	struct llmp_wire_msg m, q = { .type = LLMP_TCP_REQ_REMOTE_BROKER_HELLO,
				      .text = d->hostname, .text_len = strlen(d->hostname) };
	size_t len = d->hs_off - 4;
	int n, n2;

	d->authing = false;
	if (llmp_auth_decode(LLMP_TCP_RESP_AUTH_CHALLENGE, d->hs + 4, len, nb, proof) < 0) {
		if (llmp_wire_decode_resp(d->hs + 4, len, &m) == 0 && m.type == LLMP_TCP_RESP_ERROR)
			return llmp_err(-EACCES, "b2b: %s refused our campaign secret: %.*s", l->peer,
					(int)(m.text_len > 200 ? 200 : m.text_len), m.text);
		return llmp_err(-EPROTO, "b2b: dial %s: malformed campaign secret challenge", l->peer);
	}
	llmp_auth_proof(key, true, d->nc, nb, want);
	if (llmp_memeq_ct(proof, want, sizeof(want)))
		return llmp_err(-EACCES, "b2b: %s does not know the campaign secret", l->peer);
	llmp_auth_proof(key, false, d->nc, nb, proof);
	n = llmp_auth_encode(LLMP_TCP_REQ_AUTH_PROOF, proof, NULL, d->hs + 4, sizeof(d->hs) - 4);
	if (n < 0)
		return n;
	llmp_wire_put_len(d->hs, (uint32_t)n);
	n2 = llmp_wire_encode_req(&q, d->hs + 8 + n, sizeof(d->hs) - 8 - (size_t)n);
	if (n2 < 0)
		return llmp_err(n2, "b2b: dial %s: cannot encode the request", l->peer);
	llmp_wire_put_len(d->hs + 4 + n, (uint32_t)n2);
	d->hs_len = 8 + (size_t)n + (size_t)n2;
	d->hs_off = 0;
	d->peer_ours = true; /* only our brokers prove a secret */
	d->st = D_REQ;
	return watch(d, EPOLLOUT);
}

/* The probe connection ended: ours if EXT_INFO came back; now the link itself. */
static int probe_done(struct llmp_b2b_link *l, bool ours, int64_t now)
{
	struct dialer *d = l->d;

	d->peer_ours = ours;
	d->probing = false;
	close_sock(d);
	return start_connect(l, now);
}

/* One connect/handshake step; never blocks.  Failures schedule the next attempt. */
static int dial_steps(struct llmp_b2b_link *l, int64_t now)
{
	struct dialer *d = l->d;
	const uint8_t *key = llmp_broker_secret(l->b, NULL);
	struct llmp_wire_msg m;
	int ret;

	if (d->st == D_WAIT) {
		if (now < d->retry_at)
			return 0;
		/* Our brokers get capabilities and the resume token; with a secret, its proof tells. */
		d->probing = !key;
		d->peer_ours = false;
		d->authing = false;
		l->cnt.dials++;
		d->attempts++;
		if (start_connect(l, now) < 0)
			return -1;
	} else if (now >= d->deadline) {
		/* A peer that neither answers nor hangs up on EXT_QUERY is not ours. */
		if (d->probing && d->st == D_RESP)
			return probe_done(l, false, now);
		return llmp_err(-ETIMEDOUT, "b2b: dial %s: no answer within %d ms", l->peer,
				HANDSHAKE_TIMEOUT_MS);
	}
	for (;;) {
		switch (d->st) {
		case D_CONNECT: {
			struct pollfd p = { .fd = d->sock, .events = POLLOUT };
			socklen_t el = sizeof(int);
			int err = 0;

			if (poll(&p, 1, 0) == 0)
				return 0;
			if (getsockopt(d->sock, SOL_SOCKET, SO_ERROR, &err, &el) < 0)
				err = errno;
			if (err)
				return llmp_err(-err, "b2b: cannot connect to %s", l->peer);
			d->st = D_HELLO;
			d->hs_off = 0;
			if (watch(d, EPOLLIN) < 0)
				return -1;
			break;
		}
		case D_HELLO: {
			ret = hs_read(l, &m);
			if (ret <= 0)
				return ret;
			if (m.type != LLMP_TCP_RESP_BROKER_CONNECT_HELLO)
				return llmp_err(-EPROTO, "b2b: dial %s: expected the broker's hello, "
						"got response %u", l->peer, m.type);
			struct llmp_wire_msg q = { .type = LLMP_TCP_REQ_EXT_QUERY };
			if (key) {
				/* The campaign secret first: the RemoteBrokerHello follows the proof. */
				if (llmp_auth_nonce(d->nc) < 0)
					return -1;
				int na = llmp_auth_encode(LLMP_TCP_REQ_AUTH_HELLO, d->nc, NULL, d->hs + 4,
							  sizeof(d->hs) - 4);
				if (na < 0)
					return -1;
				llmp_wire_put_len(d->hs, (uint32_t)na);
				d->hs_len = 4 + (size_t)na;
				d->hs_off = 0;
				d->authing = true;
				d->st = D_REQ;
				if (watch(d, EPOLLOUT) < 0)
					return -1;
				break;
			}
			if (!d->probing) {
				q.type = LLMP_TCP_REQ_REMOTE_BROKER_HELLO;
				q.text = d->hostname;
				q.text_len = strlen(d->hostname);
			}
			int n = llmp_wire_encode_req(&q, d->hs + 4, sizeof(d->hs) - 4);
			if (n < 0)
				return llmp_err(n, "b2b: dial %s: cannot encode the request", l->peer);
			llmp_wire_put_len(d->hs, (uint32_t)n);
			d->hs_len = 4 + (size_t)n;
			d->hs_off = 0;
			d->st = D_REQ;
			if (watch(d, EPOLLOUT) < 0)
				return -1;
			break;
		}
		case D_REQ:
			ret = hs_write(l);
			if (ret <= 0)
				return ret;
			d->st = D_RESP;
			d->hs_off = 0;
			if (watch(d, EPOLLIN) < 0)
				return -1;
			break;
		case D_RESP:
			if (d->authing) {
				ret = hs_read(l, NULL);
				if (ret < 0)
					return llmp_err(-EACCES, "b2b: %s hung up on our campaign secret "
							"hello (a LibAFL broker cannot prove a secret)", l->peer);
				if (ret == 0)
					return 0;
				if (hs_prove(l, key) < 0)
					return -1;
				break;
			}
			ret = hs_read(l, &m);
			if (d->probing) {
				if (ret == 0)
					return 0;
				/* LibAFL hangs up on the unknown request; ours answers EXT_INFO. */
				if (probe_done(l, ret > 0 && m.type == LLMP_TCP_RESP_EXT_INFO, now) < 0)
					return -1;
				break;
			}
			if (ret <= 0)
				return ret;
			if (m.type == LLMP_TCP_RESP_ERROR)
				return llmp_err(-ECONNREFUSED, "b2b: %s refused the link: %.*s", l->peer,
						(int)(m.text_len > 200 ? 200 : m.text_len), m.text);
			if (m.type != LLMP_TCP_RESP_REMOTE_BROKER_ACCEPTED)
				return llmp_err(-EPROTO, "b2b: dial %s: expected RemoteBrokerAccepted, "
						"got response %u", l->peer, m.type);
			link_up(l, now);
			return 0;
		default:
			return 0;
		}
	}
}

int b2b_dial_step(struct llmp_b2b_link *l)
{
	int64_t now = llmp_now_ms();
	int ret;

	/* Failed attempts are logged once, by attempt_failed(), at its own level. */
	llmp_log_probe_begin();
	ret = dial_steps(l, now);
	llmp_log_probe_end();
	if (ret < 0)
		attempt_failed(l, now);
	return 0;
}

void b2b_dialer_free(struct dialer *d)
{
	if (!d)
		return;
	if (d->sock >= 0)
		close(d->sock);
	if (d->tfd >= 0)
		close(d->tfd);
	if (d->epfd >= 0)
		close(d->epfd);
	free(d);
}

int llmp_b2b_link_dial(struct llmp_broker *b, const char *addr, uint16_t port,
		       const char *hostname, uint32_t link_id, unsigned codecs,
		       struct llmp_b2b_limits *lim, struct llmp_b2b_link **out)
{
	struct addrinfo hints, *res, *ai;
	struct llmp_b2b_link *l;
	struct dialer *d;
	char ps[8], peer[80];
	int ret;

	*out = NULL;
	if (!addr)
		addr = "127.0.0.1";
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	snprintf(ps, sizeof(ps), "%u", port);
	ret = getaddrinfo(addr, ps, &hints, &res);
	if (ret)
		return llmp_err(-EHOSTUNREACH, "b2b: cannot resolve %s: %s", addr, gai_strerror(ret));
	snprintf(peer, sizeof(peer), "%s:%u", addr, port);
	ret = b2b_link_alloc(b, link_id, codecs, peer, lim, &l);
	if (ret < 0) {
		freeaddrinfo(res);
		return ret;
	}
	d = calloc(1, sizeof(*d));
	if (!d) {
		freeaddrinfo(res);
		llmp_b2b_link_free(l);
		return llmp_err(-ENOMEM, "b2b: out of memory");
	}
	l->d = d;
	d->sock = -1;
	d->tfd = -1;
	d->epfd = -1;
	for (ai = res; ai && d->naddr < MAX_ADDRS; ai = ai->ai_next) {
		if (ai->ai_addrlen > sizeof(d->addr[0]))
			continue;
		memcpy(&d->addr[d->naddr], ai->ai_addr, ai->ai_addrlen);
		d->alen[d->naddr++] = ai->ai_addrlen;
	}
	freeaddrinfo(res);
	if (!d->naddr) {
		llmp_b2b_link_free(l);
		return llmp_err(-EHOSTUNREACH, "b2b: no usable address for %s", peer);
	}
	snprintf(d->hostname, sizeof(d->hostname), "%s", hostname ? hostname : "<unknown>");
	d->tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	d->epfd = epoll_create1(EPOLL_CLOEXEC);
	struct epoll_event ev = { .events = EPOLLIN };
	ev.data.fd = d->tfd;
	if (d->tfd < 0 || d->epfd < 0 || epoll_ctl(d->epfd, EPOLL_CTL_ADD, d->tfd, &ev) < 0) {
		ret = llmp_err(-errno, "b2b: dial %s: timerfd/epoll", peer);
		llmp_b2b_link_free(l);
		return ret;
	}
	d->backoff_ms = BACKOFF_MIN_MS;
	d->rng = ((uint64_t)llmp_now_ms() << 20) ^ (uint64_t)(uintptr_t)l ^ (uint64_t)getpid() ^ 1;
	d->token = rng_next(&d->rng) | 1;
	d->st = D_WAIT;
	d->retry_at = llmp_now_ms();
	timer_at(d, d->retry_at); /* due now: the loop's next wait returns at once */
	d->up_since = d->retry_at;
	llmp_log(LLMP_LOG_INFO, "b2b: link %u: dialling %s", link_id, peer);
	*out = l;
	return 0;
}

bool llmp_b2b_link_dials(const struct llmp_b2b_link *l, const struct sockaddr_storage *ss)
{
	for (unsigned i = 0; l->d && i < l->d->naddr; i++) {
		if (llmp_b2b_same_addr(&l->d->addr[i], ss))
			return true;
	}
	return false;
}

bool llmp_b2b_link_dialled(const struct llmp_b2b_link *l)
{
	return l->d != NULL;
}
