// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * LibAFL-compatible TCP registration, the broker side: a non-blocking
 * listener with one small state machine per peer (send hello → read one
 * framed request → answer → close), each with a deadline, so no peer can
 * stall another.  The client side is lib/tcp_client.c.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "llmp/broker.h"
#include "tcp.h"
#include "auth.h"
#include "postcard.h"
#include "broker_internal.h"
#include "b2b.h"

#define HOSTNAME_MAX 256
/* A hello: variant + varint size + 20-byte id + varint length + hostname. */
#define HELLO_MAX (1 + 10 + LLMP_SHMEM_ID_LEN + 2 + HOSTNAME_MAX)
#define REPLY_MAX (4 + 8 + 256)

enum peer_state { PEER_HELLO, PEER_READ, PEER_REPLY };

struct peer {
	int fd;
	enum peer_state state;
	int64_t born;                /* accepted at (ms): the oldest unfinished handshake goes first */
	int64_t deadline;
	struct sockaddr_storage ss;  /* source address: per-source limit, B2B allow list */
	char name[64];               /* address:port, for the log */
	uint8_t out[4 + HELLO_MAX];  /* hello, later the reply */
	size_t out_len, out_off;
	uint8_t hdr[4];
	size_t hdr_got;
	uint32_t body_len;
	size_t body_got;
	bool handoff;                /* after the reply, the socket becomes a B2B link */
	struct llmp_peer_cred cred;  /* who it is, read at accept (the peer may close early) */
	enum { AUTH_NONE, AUTH_CHALLENGED, AUTH_OK } auth; /* campaign secret (lib/auth.c) */
	bool again;                  /* after this reply, read another request */
	uint8_t nc[LLMP_AUTH_NONCE_LEN], nb[LLMP_AUTH_NONCE_LEN];
	uint8_t body[LLMP_TCP_MAX_REQUEST];
};

struct llmp_tcp_listener {
	struct llmp_broker *b;
	int fd;
	uint16_t port;
	int timeout_ms;
	unsigned max_peers;
	char hostname[HOSTNAME_MAX];
	size_t hostname_len;
	struct peer **peers;
	unsigned npeers;
	struct llmp_tcp_stats st;
	int64_t paused_until;        /* out of fds: no accept before this (ms) */
	bool has_ext;                /* answer EXT_QUERY with ext (our extensions) */
	struct llmp_wire_desc ext;
	uint32_t ext_version;
	llmp_b2b_admit_fn b2b_admit; /* may this source link? (NULL: yes) */
	llmp_b2b_accept_fn b2b_fn;   /* NULL: RemoteBrokerHello is refused */
	void *b2b_ctx;
	unsigned per_source;         /* unfinished handshakes from one address before its oldest goes */
	uint64_t evicted;            /* handshakes evicted for newer ones (also in st.dropped) */
	uint32_t b2b_next;
};

void llmp_tcp_set_ext(struct llmp_tcp_listener *l, const struct llmp_shmem_desc *ctl,
		      uint32_t version)
{
	l->has_ext = ctl != NULL;
	if (ctl)
		llmp_wire_desc_from_shmem(ctl, &l->ext);
	l->ext_version = version;
}

void llmp_tcp_set_b2b_handler(struct llmp_tcp_listener *l, llmp_b2b_admit_fn admit,
			      llmp_b2b_accept_fn fn, void *ctx)
{
	l->b2b_admit = admit;
	l->b2b_fn = fn;
	l->b2b_ctx = ctx;
}

int64_t llmp_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- address helpers ------------------------------------------------------ */

int llmp_tcp_resolve(const char *addr, uint16_t port, bool passive, struct addrinfo **res)
{
	struct addrinfo hints;
	char ps[8];
	int r;

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = passive ? AI_PASSIVE : 0;
	snprintf(ps, sizeof(ps), "%u", port);
	r = getaddrinfo(addr ? addr : "127.0.0.1", ps, &hints, res);
	if (r)
		return llmp_err(-EHOSTUNREACH, "tcp: cannot resolve %s: %s", addr ? addr : "127.0.0.1",
				gai_strerror(r));
	return 0;
}

static void peer_name(const struct sockaddr_storage *ss, char *out, size_t cap)
{
	char h[INET6_ADDRSTRLEN] = "?";
	unsigned port = 0;

	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *s = (const void *)ss;

		inet_ntop(AF_INET, &s->sin_addr, h, sizeof(h));
		port = ntohs(s->sin_port);
	} else if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *s = (const void *)ss;

		inet_ntop(AF_INET6, &s->sin6_addr, h, sizeof(h));
		port = ntohs(s->sin6_port);
	}
	snprintf(out, cap, "%s:%u", h, port);
}

/* ---- broker side ---------------------------------------------------------- */

int llmp_tcp_listen(struct llmp_broker *b, const char *addr, uint16_t port,
		    const struct llmp_tcp_listener_opts *opts, struct llmp_tcp_listener **out)
{
	struct llmp_tcp_listener *l;
	struct addrinfo *res, *ai;
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	int ret, fd = -1, one = 1;

	if (!out)
		return llmp_err(-EINVAL, "tcp_listen: NULL out pointer");
	*out = NULL;
	if (!b)
		return llmp_err(-EINVAL, "tcp_listen: NULL broker");
	if (opts && opts->struct_size < sizeof(uint32_t))
		return llmp_err(-EINVAL, "tcp_listen: opts.struct_size not set");
	l = calloc(1, sizeof(*l));
	if (!l)
		return llmp_err(-ENOMEM, "tcp_listen: out of memory");
	l->b = b;
	l->fd = -1;
	l->timeout_ms = 3000;
	l->max_peers = 256;
	if (opts && opts->peer_timeout_ms > 0)
		l->timeout_ms = opts->peer_timeout_ms;
	if (opts && opts->max_peers)
		l->max_peers = opts->max_peers;
	if (opts && opts->hostname)
		snprintf(l->hostname, sizeof(l->hostname), "%s", opts->hostname);
	else if (gethostname(l->hostname, sizeof(l->hostname) - 1))
		strcpy(l->hostname, "<unknown>");
	l->hostname_len = strnlen(l->hostname, sizeof(l->hostname) - 1);
	if (!llmp_pc_utf8_ok((const uint8_t *)l->hostname, l->hostname_len)) {
		free(l);
		return llmp_err(-EINVAL, "tcp_listen: hostname is not valid UTF-8");
	}
	l->per_source = l->max_peers / 4 > 4 ? l->max_peers / 4 : 4;
	l->peers = calloc(l->max_peers, sizeof(*l->peers));
	if (!l->peers) {
		free(l);
		return llmp_err(-ENOMEM, "tcp_listen: out of memory");
	}

	ret = llmp_tcp_resolve(addr, port, true, &res);
	if (ret < 0)
		goto fail;
	ret = -EADDRNOTAVAIL;
	for (ai = res; ai; ai = ai->ai_next) {
		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
			    ai->ai_protocol);
		if (fd < 0) {
			ret = -errno;
			continue;
		}
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, 1024) == 0) {
			ret = 0;
			break;
		}
		ret = -errno;
		close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	if (ret < 0) {
		llmp_err(ret, "tcp_listen: cannot listen on %s:%u", addr ? addr : "127.0.0.1", port);
		goto fail;
	}
	l->fd = fd;
	if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0)
		l->port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
							 : ((struct sockaddr_in *)&ss)->sin_port);
	llmp_log(LLMP_LOG_INFO, "tcp: listening on %s:%u", addr ? addr : "127.0.0.1", l->port);
	*out = l;
	return 0;
fail:
	free(l->peers);
	free(l);
	return ret;
}

uint16_t llmp_tcp_listener_port(const struct llmp_tcp_listener *l)
{
	return l ? l->port : 0;
}

void llmp_tcp_listener_stats(const struct llmp_tcp_listener *l, struct llmp_tcp_stats *st)
{
	if (l && st)
		*st = l->st;
}

static void peer_close(struct llmp_tcp_listener *l, unsigned i)
{
	struct peer *p = l->peers[i];

	close(p->fd);
	free(p);
	l->peers[i] = l->peers[--l->npeers];
	l->peers[l->npeers] = NULL;
}

static void peer_drop(struct llmp_tcp_listener *l, unsigned i, const char *why)
{
	llmp_log(LLMP_LOG_WARN, "tcp: dropped peer %s: %s", l->peers[i]->name, why);
	l->st.dropped++;
	peer_close(l, i);
}

/* Frame a body already written at p->out + 4. */
static void peer_frame(struct peer *p, int n)
{
	llmp_wire_put_len(p->out, (uint32_t)n);
	p->out_len = 4 + (size_t)n;
	p->out_off = 0;
}

static int peer_hello(struct llmp_tcp_listener *l, struct peer *p)
{
	struct llmp_shmem_desc d;
	struct llmp_wire_msg m = { .type = LLMP_TCP_RESP_BROKER_CONNECT_HELLO,
				   .text = l->hostname, .text_len = l->hostname_len };
	int n = llmp_broker_broadcast_desc(l->b, &d);

	if (n < 0)
		return n;
	llmp_wire_desc_from_shmem(&d, &m.desc);
	n = llmp_wire_encode_resp(&m, p->out + 4, sizeof(p->out) - 4);
	if (n < 0)
		return n;
	peer_frame(p, n);
	return 0;
}

#define ACCEPT_PAUSE_MS 100

/* Same source address (the port aside)? */
static bool same_source(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
	if (a->ss_family != b->ss_family)
		return false;
	if (a->ss_family == AF_INET)
		return ((const struct sockaddr_in *)a)->sin_addr.s_addr ==
		       ((const struct sockaddr_in *)b)->sin_addr.s_addr;
	if (a->ss_family == AF_INET6)
		return !memcmp(&((const struct sockaddr_in6 *)a)->sin6_addr,
			       &((const struct sockaddr_in6 *)b)->sin6_addr, sizeof(struct in6_addr));
	return false;
}

/* Drop peer i, the oldest unfinished handshake, for a newcomer (logged now and then). */
static void peer_evict(struct llmp_tcp_listener *l, unsigned i, const char *why)
{
	enum llmp_log_level lv = l->evicted % 1000 == 0 ? LLMP_LOG_WARN : LLMP_LOG_DEBUG;

	llmp_log(lv, "tcp: dropped peer %s: %s (%llu evicted so far)", l->peers[i]->name, why,
		 (unsigned long long)l->evicted + 1);
	l->evicted++;
	l->st.dropped++;
	peer_close(l, i);
}

/*
 * Room for a connection from ss: when that address already has per_source
 * handshakes in progress its oldest one goes, and when the table is full
 * the oldest of all.  Handshakes that finished (sending their reply) stay.
 * A slow or silent peer thus holds a slot only until newer connections need
 * it, and an honest peer, which finishes in milliseconds, always gets one.
 */
static void make_room(struct llmp_tcp_listener *l, const struct sockaddr_storage *ss)
{
	unsigned same = 0, old_same = UINT32_MAX, old_any = UINT32_MAX;

	for (unsigned i = 0; i < l->npeers; i++) {
		const struct peer *p = l->peers[i];

		if (p->state == PEER_REPLY)
			continue;
		if (old_any == UINT32_MAX || p->born < l->peers[old_any]->born)
			old_any = i;
		if (!same_source(&p->ss, ss))
			continue;
		same++;
		if (old_same == UINT32_MAX || p->born < l->peers[old_same]->born)
			old_same = i;
	}
	if (same >= l->per_source && old_same != UINT32_MAX)
		peer_evict(l, old_same, "evicted: too many handshakes from its address");
	else if (l->npeers >= l->max_peers && old_any != UINT32_MAX)
		peer_evict(l, old_any, "evicted: handshake table full");
}

static void accept_all(struct llmp_tcp_listener *l)
{
	if (l->paused_until && llmp_now_ms() < l->paused_until)
		return;
	l->paused_until = 0;
	for (;;) {
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);
		struct peer *p;
		int fd = accept4(l->fd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
		int one = 1;

		if (fd < 0) {
			if (errno == ECONNABORTED || errno == EINTR)
				continue;
			if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
				/* The connection stays queued; polling the socket now would spin. */
				llmp_log(LLMP_LOG_WARN, "tcp: accept: %s; no accepts for %d ms",
					 strerror(errno), ACCEPT_PAUSE_MS);
				l->paused_until = llmp_now_ms() + ACCEPT_PAUSE_MS;
				l->st.accept_pauses++;
			} else if (errno != EAGAIN && errno != EWOULDBLOCK) {
				llmp_log(LLMP_LOG_WARN, "tcp: accept: %s", strerror(errno));
			}
			return;
		}
		l->st.accepted++;
		make_room(l, &ss);
		p = l->npeers < l->max_peers ? calloc(1, sizeof(*p)) : NULL;
		if (!p) {
			char name[64];

			peer_name(&ss, name, sizeof(name));
			llmp_log(LLMP_LOG_WARN, "tcp: dropped peer %s: %s", name,
				 l->npeers < l->max_peers ? "out of memory" : "too many peers in handshake");
			l->st.dropped++;
			close(fd);
			continue;
		}
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		p->fd = fd;
		p->state = PEER_HELLO;
		p->born = llmp_now_ms();
		p->deadline = p->born + l->timeout_ms;
		p->ss = ss;
		peer_name(&ss, p->name, sizeof(p->name));
		(void)llmp_peer_cred_get(fd, &p->cred);
		l->peers[l->npeers++] = p;
		if (peer_hello(l, p) < 0)
			peer_drop(l, l->npeers - 1, "cannot build the hello");
	}
}

/* Answer with an Error response (LibAFL defines it; its peers fail cleanly on it). */
static void peer_refuse(struct llmp_tcp_listener *l, struct peer *p, const char *why)
{
	struct llmp_wire_msg m = { .type = LLMP_TCP_RESP_ERROR, .text = why, .text_len = strlen(why) };
	int n = llmp_wire_encode_resp(&m, p->out + 4, sizeof(p->out) - 4);

	llmp_log(LLMP_LOG_WARN, "tcp: refused peer %s: %s", p->name, why);
	l->st.refused++;
	if (n > 0)
		peer_frame(p, n);
	else
		p->out_len = p->out_off = 0;
	p->state = PEER_REPLY;
}

/* Queue the answer r for peer i: 1, or -1 with the peer dropped. */
static int peer_answer(struct llmp_tcp_listener *l, unsigned i, const struct llmp_wire_msg *r)
{
	struct peer *p = l->peers[i];
	int n = llmp_wire_encode_resp(r, p->out + 4, sizeof(p->out) - 4);

	if (n < 0) {
		peer_drop(l, i, "cannot encode the reply");
		return -1;
	}
	peer_frame(p, n);
	p->state = PEER_REPLY;
	return 1;
}

/* "address:port (uid N)" or "(remote)" / "(uid unknown)", for the log. */
static void peer_who(const struct peer *p, char *out, size_t cap)
{
	if (p->cred.known)
		snprintf(out, cap, "%s (uid %u)", p->name, p->cred.uid);
	else
		snprintf(out, cap, "%s (%s)", p->name, p->cred.local ? "uid unknown" : "remote");
}

/*
 * An auth frame (lib/auth.h) is in p->body: AUTH_HELLO gets the challenge
 * (and the peer stays to prove), AUTH_PROOF is checked and answered by
 * nothing but reading the next request.  Returns as peer_request().
 */
static int peer_auth(struct llmp_tcp_listener *l, unsigned i, uint32_t type)
{
	struct peer *p = l->peers[i];
	const uint8_t *key = llmp_broker_secret(l->b, NULL);
	uint8_t proof[LLMP_AUTH_PROOF_LEN], want[LLMP_AUTH_PROOF_LEN];
	int n;

	if (!key) {
		peer_refuse(l, p, "this broker has no campaign secret (unset LLMP_SECRET_FILE)");
		return 1;
	}
	if (type == LLMP_TCP_REQ_AUTH_HELLO) {
		if (p->auth != AUTH_NONE ||
		    llmp_auth_decode(type, p->body, p->body_len, p->nc, NULL) < 0) {
			peer_drop(l, i, p->auth != AUTH_NONE ? "campaign secret: a second hello"
							     : "campaign secret: malformed hello");
			return -1;
		}
		if (llmp_auth_nonce(p->nb) < 0) {
			peer_drop(l, i, "campaign secret: no random nonce");
			return -1;
		}
		llmp_auth_proof(key, true, p->nc, p->nb, proof);
		n = llmp_auth_encode(LLMP_TCP_RESP_AUTH_CHALLENGE, p->nb, proof, p->out + 4,
				     sizeof(p->out) - 4);
		if (n < 0) {
			peer_drop(l, i, "cannot encode the challenge");
			return -1;
		}
		p->auth = AUTH_CHALLENGED;
		peer_frame(p, n);
		p->state = PEER_REPLY;
		p->again = true;
		return 1;
	}
	/* AUTH_PROOF */
	if (p->auth != AUTH_CHALLENGED || llmp_auth_decode(type, p->body, p->body_len, proof, NULL) < 0) {
		peer_drop(l, i, p->auth != AUTH_CHALLENGED ? "campaign secret: a proof without a challenge"
							   : "campaign secret: malformed proof");
		return -1;
	}
	llmp_auth_proof(key, false, p->nc, p->nb, want);
	if (llmp_memeq_ct(proof, want, sizeof(want))) {
		l->st.refused++;
		llmp_log(LLMP_LOG_WARN, "tcp: refused peer %s: campaign secret: wrong proof", p->name);
		/* No Error text: the peer learns only that the proof failed, and the connection ends. */
		peer_close(l, i);
		return 0;
	}
	p->auth = AUTH_OK;
	p->hdr_got = p->body_got = 0;
	p->body_len = 0;
	return 2;
}

/* May this peer's request be served without a proven secret?  NULL yes, else why not. */
static const char *peer_unproven(const struct llmp_tcp_listener *l, const struct peer *p)
{
	bool required;

	if (!llmp_broker_secret(l->b, &required) || p->auth == AUTH_OK)
		return NULL;
	if (p->auth == AUTH_CHALLENGED)
		return "campaign secret: a request before the proof";
	if (required)
		return "this broker requires the campaign secret (set LLMP_SECRET_FILE)";
	/* LibAFL compatibility: its peers cannot prove a secret, so loopback ones are served. */
	if (!p->cred.local)
		return "this broker requires the campaign secret from other hosts (set LLMP_SECRET_FILE)";
	return NULL;
}

/*
 * A whole request is in p->body: act on it.  Returns 1 served (the peer
 * stays for its reply), 0 served and closed, -1 dropped, 2 read the next
 * request (an auth proof was accepted).
 */
static int peer_request(struct llmp_tcp_listener *l, unsigned i)
{
	struct peer *p = l->peers[i];
	struct llmp_wire_msg m, r = { 0 };
	struct llmp_shmem_desc bd, d;
	const char *unproven;
	uint32_t auth = llmp_auth_frame_type(p->body, p->body_len);
	char who[112];
	int ret;

	if (auth)
		return peer_auth(l, i, auth);
	if (llmp_wire_decode_req(p->body, p->body_len, &m) < 0) {
		peer_drop(l, i, "malformed request");
		return -1;
	}
	unproven = peer_unproven(l, p);
	if (unproven) {
		peer_refuse(l, p, unproven);
		return 1;
	}
	switch (m.type) {
	case LLMP_TCP_REQ_LOCAL_CLIENT_HELLO:
		ret = llmp_broker_broadcast_desc(l->b, &bd);
		if (ret == 0)
			ret = llmp_wire_desc_to_shmem(&m.desc, bd.kind, &d);
		if (ret < 0) {
			peer_refuse(l, p, "invalid page description");
			return 1;
		}
		peer_who(p, who, sizeof(who));
		ret = llmp_broker_register_peer(l->b, &d, &p->cred, who);
		if (ret < 0) {
			peer_refuse(l, p, ret == -EACCES ? "not allowed to register that page" :
					  ret == -EUSERS ? "the broker has all the clients it takes" :
					  ret == -EEXIST ? "that page is registered already" :
					  "cannot map the client's page");
			return 1;
		}
		l->st.registered++;
		llmp_log(LLMP_LOG_INFO, "tcp: client %d registered from %s (page %s)", ret, p->name,
			 d.id);
		r.type = LLMP_TCP_RESP_LOCAL_CLIENT_ACCEPTED;
		r.id = (uint32_t)ret;
		return peer_answer(l, i, &r);
	case LLMP_TCP_REQ_CLIENT_QUIT:
		peer_who(p, who, sizeof(who));
		ret = llmp_broker_quit_client(l->b, m.id, &p->cred, who);
		if (ret < 0)
			llmp_log(LLMP_LOG_WARN, "tcp: peer %s: quit of client %u refused: %s", who,
				 m.id, llmp_strerror_last());
		else
			llmp_log(LLMP_LOG_INFO, "tcp: client %u quit (told by %s)", m.id, who);
		if (ret == -EPERM)
			l->st.refused++;
		else
			l->st.quits++;
		/* LibAFL sends no answer to a quit. */
		peer_close(l, i);
		return 0;
	case LLMP_TCP_REQ_REMOTE_BROKER_HELLO:
		if (!l->b2b_fn) {
			peer_refuse(l, p, "broker-to-broker links are not enabled on this broker");
			return 1;
		}
		if (l->b2b_admit) {
			char why[160];

			if (l->b2b_admit(l->b2b_ctx, &p->ss, why, sizeof(why)) < 0) {
				peer_refuse(l, p, why);
				return 1;
			}
		}
		llmp_log(LLMP_LOG_INFO, "tcp: remote broker %.*s at %s", (int)(m.text_len > 64 ? 64 : m.text_len),
			 m.text, p->name);
		r.type = LLMP_TCP_RESP_REMOTE_BROKER_ACCEPTED;
		r.id = ++l->b2b_next;
		ret = peer_answer(l, i, &r);
		if (ret > 0) /* p is gone if the answer failed */
			p->handoff = true;
		return ret;
	case LLMP_TCP_REQ_EXT_QUERY:
		if (!l->has_ext) {
			peer_refuse(l, p, "no extensions here");
			return 1;
		}
		r.type = LLMP_TCP_RESP_EXT_INFO;
		r.desc = l->ext;
		r.id = l->ext_version;
		return peer_answer(l, i, &r);
	default:
		peer_drop(l, i, "unknown request variant");
		return -1;
	}
}

/* Move one peer forward.  Returns 1 if it finished a request, 0 otherwise. */
static int peer_step(struct llmp_tcp_listener *l, unsigned i, int64_t now)
{
	struct peer *p = l->peers[i];
	ssize_t n;

	if (p->state == PEER_HELLO || p->state == PEER_REPLY) {
		while (p->out_off < p->out_len) {
			n = send(p->fd, p->out + p->out_off, p->out_len - p->out_off, MSG_NOSIGNAL);
			if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
				goto pending;
			if (n <= 0) {
				peer_drop(l, i, "send failed");
				return 0;
			}
			p->out_off += (size_t)n;
		}
		if (p->state == PEER_REPLY && p->handoff) {
			/* The link owns the socket now (or it was refused: close it). */
			if (l->b2b_fn(l->b2b_ctx, p->fd, p->name, &p->ss) < 0)
				close(p->fd);
			free(p);
			l->peers[i] = l->peers[--l->npeers];
			l->peers[l->npeers] = NULL;
			return 0;
		}
		if (p->state == PEER_REPLY && p->again) {
			/* The auth challenge went out: now the proof. */
			p->again = false;
			p->hdr_got = p->body_got = 0;
			p->body_len = 0;
		} else if (p->state == PEER_REPLY) {
			peer_close(l, i);
			return 0;
		}
		p->state = PEER_READ;
	}
	/* PEER_READ: the 4-byte length, then the body. */
	while (p->hdr_got < 4) {
		n = recv(p->fd, p->hdr + p->hdr_got, 4 - p->hdr_got, 0);
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
			goto pending;
		if (n == 0) {
			peer_drop(l, i, p->hdr_got ? "closed inside the frame length" : "closed without a request");
			return 0;
		}
		if (n < 0) {
			peer_drop(l, i, "recv failed");
			return 0;
		}
		p->hdr_got += (size_t)n;
		if (p->hdr_got == 4) {
			uint32_t len = (uint32_t)p->hdr[0] << 24 | (uint32_t)p->hdr[1] << 16 |
				       (uint32_t)p->hdr[2] << 8 | p->hdr[3];

			if (len > LLMP_TCP_MAX_REQUEST) {
				char why[80];

				snprintf(why, sizeof(why), "request length %u over the %u-byte cap", len,
					 LLMP_TCP_MAX_REQUEST);
				peer_drop(l, i, why);
				return 0;
			}
			if (len == 0) {
				peer_drop(l, i, "empty request");
				return 0;
			}
			p->body_len = len;
		}
	}
	while (p->body_got < p->body_len) {
		n = recv(p->fd, p->body + p->body_got, p->body_len - p->body_got, 0);
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
			goto pending;
		if (n <= 0) {
			peer_drop(l, i, n == 0 ? "closed inside the request" : "recv failed");
			return 0;
		}
		/* The first body byte starts the variant: refuse garbage at once. */
		if (p->body_got == 0 && p->body[0] > LLMP_TCP_REQ_CLIENT_QUIT &&
		    p->body[0] != (0x80 | (LLMP_TCP_REQ_EXT_QUERY & 0x7f)) &&
		    p->body[0] != (0x80 | (LLMP_TCP_REQ_AUTH_HELLO & 0x7f)) &&
		    p->body[0] != (0x80 | (LLMP_TCP_REQ_AUTH_PROOF & 0x7f))) {
			peer_drop(l, i, "unknown request variant");
			return 0;
		}
		p->body_got += (size_t)n;
	}
	switch (peer_request(l, i)) {
	case 2:
		/* The proof was right: the request follows on the same connection. */
		return peer_step(l, i, now);
	case 1:
		/* The reply goes out now if the socket takes it, else on a later step. */
		peer_step(l, i, now);
		return 1;
	case 0:
		return 1;
	default:
		return 0;
	}
pending:
	if (now >= p->deadline) {
		peer_drop(l, i, p->state == PEER_READ && (p->hdr_got || p->body_got)
				? "timed out inside a frame" : "timed out");
	}
	return 0;
}

int llmp_tcp_listener_service(struct llmp_tcp_listener *l)
{
	int64_t now;
	int served = 0;

	if (!l)
		return llmp_err(-EINVAL, "tcp_listener_service: NULL listener");
	accept_all(l);
	now = llmp_now_ms();
	/* Backwards: peer_close() moves the last peer into the freed slot. */
	for (unsigned i = l->npeers; i-- > 0;) {
		if (i < l->npeers)
			served += peer_step(l, i, now);
	}
	return served;
}

int llmp_tcp_listen_fd(const struct llmp_tcp_listener *l)
{
	return l->paused_until ? -1 : l->fd;
}

unsigned llmp_tcp_nfds(const struct llmp_tcp_listener *l)
{
	return l ? 1 + l->npeers : 0;
}

unsigned llmp_tcp_fill_pollfds(const struct llmp_tcp_listener *l, struct pollfd *fds, unsigned max)
{
	unsigned n = 0;

	if (!l || !max)
		return 0;
	/* A negative fd is ignored by poll(2); skipped by the io_uring wait. */
	fds[n++] = (struct pollfd){ .fd = l->paused_until ? -1 : l->fd, .events = POLLIN };
	for (unsigned i = 0; i < l->npeers && n < max; i++) {
		const struct peer *p = l->peers[i];

		fds[n++] = (struct pollfd){ .fd = p->fd,
					    .events = p->state == PEER_READ ? POLLIN : POLLOUT };
	}
	return n;
}

int llmp_tcp_timeout_ms(const struct llmp_tcp_listener *l, int64_t now)
{
	int64_t best = -1;

	if (!l)
		return -1;
	if (l->paused_until)
		best = l->paused_until > now ? l->paused_until - now : 0;
	for (unsigned i = 0; i < l->npeers; i++) {
		int64_t left = l->peers[i]->deadline - now;

		if (left < 0)
			left = 0;
		if (best < 0 || left < best)
			best = left;
	}
	return best > 1000000 ? 1000000 : (int)best;
}

void llmp_tcp_listener_free(struct llmp_tcp_listener *l)
{
	if (!l)
		return;
	while (l->npeers)
		peer_close(l, l->npeers - 1);
	if (l->fd >= 0) {
		/*
		 * Stop listening now: an io_uring loop's pending poll holds a
		 * reference to the socket until the ring's asynchronous teardown,
		 * and a broker restarted on the same port meanwhile got EADDRINUSE.
		 */
		shutdown(l->fd, SHUT_RDWR);
		close(l->fd);
	}
	free(l->peers);
	free(l);
}
