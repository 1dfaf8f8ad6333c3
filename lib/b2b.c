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
 * receiving clients inflate (LibAFL clients do so already).  Between two of
 * our brokers that both want it, zstd instead (LLMP_FLAG_ZSTD): the
 * receiving broker decompresses, with a cap on the output, so zstd never
 * reaches a page.  Who speaks zstd is learnt with a capabilities frame
 * (LLMP_TAG_B2B_CAPS) that the dialling side sends first, only after an
 * EXT_QUERY on a separate connection showed that the peer is ours; the
 * accepting side answers it.  A LibAFL peer never sees either.
 *
 * Dialled links re-dial: the connect and the handshake are non-blocking
 * steps driven by llmp_b2b_link_step(); while the link is down the loop
 * waits on an epoll fd holding the connecting socket and a timerfd (the
 * retry time or the handshake deadline), so a peer that is down costs no
 * CPU between attempts.  A dialled link keeps its read position across
 * re-dials.  Its capabilities frame carries a resume token; an accepted
 * link holds the history until the peer's first frame (or HOLD_MS), and
 * when that is a capabilities frame whose token a broken link of the same
 * broker had, it takes that link's read position (parked when the link
 * broke, or taken over from a link still open on a half-open connection),
 * so neither side repeats what it sent before the break.
 */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#ifdef LLMP_HAVE_ZLIB
#include <zlib.h>
#endif
#ifdef LLMP_HAVE_ZSTD
#include <zstd.h>
#endif

#include "b2b.h"
#include "broker_internal.h"
#include "tcp.h"

#define COMPRESS_MIN 1024
#define ZSTD_MIN 256
#define ZSTD_LEVEL 1
/* Stop pulling local messages while this much is waiting to be sent. */
#define OUT_HIGH (1u << 20)
#define HANDSHAKE_TIMEOUT_MS 3000
#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000
/* A link that stayed up this long starts its next re-dial from BACKOFF_MIN_MS. */
#define STABLE_MS 10000
/* Failed attempts in a row logged at INFO; then DEBUG, with a WARN this often. */
#define LOUD_ATTEMPTS 3
#define WARN_EVERY_MS 60000
#define MAX_ADDRS 4
#define CAPS_LEN 12 /* magic (8) + codecs (u32 LE) */
#define CAPS_TOKEN_LEN 20 /* + the dialler's resume token (u64 LE) */
/* An accepted link waits this long for a capabilities frame before it ships the history. */
#define HOLD_MS 1000
/* Read positions of broken accepted links kept for their dialler's return, per broker. */
#define MAX_PARKED 64

enum dial_state {
	D_WAIT,    /* down, next attempt at retry_at */
	D_CONNECT, /* non-blocking connect in progress */
	D_HELLO,   /* reading BrokerConnectHello */
	D_REQ,     /* sending our request */
	D_RESP,    /* reading the answer */
	D_UP,      /* link up: the normal data path */
};

struct dialer {
	struct sockaddr_storage addr[MAX_ADDRS];
	socklen_t alen[MAX_ADDRS];
	unsigned naddr, next_addr;
	char hostname[256];
	enum dial_state st;
	bool probing;    /* this connection asks EXT_QUERY (is the peer ours?) */
	bool peer_ours;  /* EXT_INFO came back on the last probe */
	int sock;        /* the socket being connected, -1 */
	int tfd;         /* timerfd: retry time or handshake deadline */
	int epfd;        /* epoll over sock and tfd: the loop's fd while not up */
	unsigned watched; /* epoll events sock is registered with (0: not in epfd) */
	int64_t deadline, retry_at, up_since, last_warn;
	unsigned backoff_ms;
	unsigned fails;  /* failed attempts since the last success */
	uint64_t attempts;
	uint64_t rng;
	uint64_t token;  /* identifies this link to the accepting broker across re-dials */
	uint8_t hs[1024]; /* handshake frame in or out */
	size_t hs_len, hs_off;
};

struct llmp_b2b_link {
	struct llmp_broker *b;
	int fd;                /* connected socket, -1 while a dialled link is down */
	uint32_t link_id;
	unsigned codecs;       /* LLMP_B2B_* this side wants to send with */
	char peer[80];
	struct llmp_receiver r;
	bool r_ok;
	/* codec agreement (our brokers only) */
	bool caps_sent;        /* we sent our capabilities frame */
	bool caps_got;         /* we got the peer's */
	bool peer_zstd;        /* the peer decodes zstd: we may send it */
	bool got_first;        /* a frame arrived on this connection */
	uint64_t token;        /* accepted link: the dialler's resume token (0: none) */
	struct llmp_b2b_link *live_next; /* in live_list while token != 0 */
	bool replaced;         /* its dialler is back on a new connection, which took the reader */
	/* accepted link, until the first frame or HOLD_MS: nothing is shipped yet */
	bool holding;
	int64_t hold_until;
	int hold_tfd, hold_epfd; /* timerfd at hold_until, epoll of it and the socket */
	uint64_t reserved_drops; /* local messages that carried LLMP_FLAG_ZSTD (not shipped) */
	/* outgoing bytes: out[out_off..out_len) */
	uint8_t *out;
	size_t out_len, out_off, out_cap;
	/* incoming frame */
	uint8_t hdr[4];
	size_t hdr_got;
	uint8_t *body;
	uint32_t body_len;
	size_t body_got;
	/* compression scratch */
	uint8_t *z;
	size_t zcap;
#ifdef LLMP_HAVE_ZSTD
	ZSTD_CCtx *zc;
	ZSTD_DCtx *zd;
#endif
#ifdef LLMP_HAVE_ZLIB
	z_stream zs;           /* kept and reset per message: an init costs more than a deflate */
	bool zs_ok;
#endif
	struct llmp_b2b_counters cnt;
	struct dialer *d;      /* NULL: accepted link */
};

static int link_alloc(struct llmp_broker *b, uint32_t link_id, unsigned codecs, const char *peer,
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
static void link_attach(struct llmp_b2b_link *l, int fd)
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

/*
 * Parked read positions: when an accepted link whose dialler gave a resume
 * token breaks, its broadcast receiver is kept here, so that the dialler's
 * next connection goes on where the old one stopped instead of sending the
 * kept history again.  Brokers of one process may run on several threads.
 */
struct parked {
	struct llmp_broker *b;
	uint64_t token;
	struct llmp_receiver r;
	struct parked *next;
};
static pthread_mutex_t park_lock = PTHREAD_MUTEX_INITIALIZER;
static struct parked *parked_list; /* newest first */
/* Accepted links that have a token (any broker of the process). */
static struct llmp_b2b_link *live_list;

static void live_add(struct llmp_b2b_link *l)
{
	pthread_mutex_lock(&park_lock);
	l->live_next = live_list;
	live_list = l;
	pthread_mutex_unlock(&park_lock);
}

static void live_del(struct llmp_b2b_link *l)
{
	pthread_mutex_lock(&park_lock);
	for (struct llmp_b2b_link **pp = &live_list; *pp; pp = &(*pp)->live_next) {
		if (*pp == l) {
			*pp = l->live_next;
			break;
		}
	}
	pthread_mutex_unlock(&park_lock);
}

/*
 * Another link of the same broker with this token: the old connection of a
 * dialler that is back before this broker saw that connection end (e.g. a
 * half-open one).  Both run on the broker's thread, so the caller may take
 * its reader.
 */
static struct llmp_b2b_link *live_find(const struct llmp_b2b_link *l)
{
	struct llmp_b2b_link *k;

	pthread_mutex_lock(&park_lock);
	for (k = live_list; k; k = k->live_next) {
		if (k != l && k->b == l->b && k->token == l->token && k->r_ok && !k->replaced)
			break;
	}
	pthread_mutex_unlock(&park_lock);
	return k;
}

static void park(struct llmp_b2b_link *l)
{
	struct parked *p = malloc(sizeof(*p)), **pp;
	unsigned n = 0;

	if (!p)
		return; /* out of memory: the dialler gets the history again */
	p->b = l->b;
	p->token = l->token;
	memcpy(&p->r, &l->r, sizeof(p->r));
	l->r_ok = false;
	pthread_mutex_lock(&park_lock);
	p->next = parked_list;
	parked_list = p;
	/* Keep the newest MAX_PARKED of this broker. */
	for (pp = &parked_list; *pp;) {
		struct parked *q = *pp;

		if (q->b == l->b && ++n > MAX_PARKED) {
			*pp = q->next;
			llmp_receiver_fini(&q->r);
			free(q);
			continue;
		}
		pp = &q->next;
	}
	pthread_mutex_unlock(&park_lock);
}

/* Take the parked receiver of (b, token) into r: true if there was one. */
static bool unpark(struct llmp_broker *b, uint64_t token, struct llmp_receiver *r)
{
	struct parked **pp, *q = NULL;

	pthread_mutex_lock(&park_lock);
	for (pp = &parked_list; *pp; pp = &(*pp)->next) {
		if ((*pp)->b == b && (*pp)->token == token) {
			q = *pp;
			*pp = q->next;
			break;
		}
	}
	pthread_mutex_unlock(&park_lock);
	if (!q)
		return false;
	memcpy(r, &q->r, sizeof(*r));
	free(q);
	return true;
}

/* Swap the fresh receiver of a holding link for its dialler's old one. */
static bool unpark_into(struct llmp_b2b_link *l)
{
	struct llmp_b2b_link *old = live_find(l);
	struct llmp_receiver r;

	if (old) {
		memcpy(&r, &old->r, sizeof(r));
		old->r_ok = false;
		old->replaced = true;
	} else if (!unpark(l->b, l->token, &r)) {
		return false;
	}
	llmp_receiver_fini(&l->r);
	memcpy(&l->r, &r, sizeof(r));
	return true;
}

void llmp_b2b_forget(struct llmp_broker *b)
{
	struct parked **pp;

	pthread_mutex_lock(&park_lock);
	for (pp = &parked_list; *pp;) {
		struct parked *q = *pp;

		if (q->b == b) {
			*pp = q->next;
			llmp_receiver_fini(&q->r);
			free(q);
			continue;
		}
		pp = &q->next;
	}
	pthread_mutex_unlock(&park_lock);
}

static void hold_end(struct llmp_b2b_link *l)
{
	l->holding = false;
	if (l->hold_epfd >= 0)
		close(l->hold_epfd);
	if (l->hold_tfd >= 0)
		close(l->hold_tfd);
	l->hold_epfd = l->hold_tfd = -1;
}

int llmp_b2b_link_new(struct llmp_broker *b, int fd, uint32_t link_id, unsigned codecs,
		      const char *peer, struct llmp_b2b_link **out)
{
	struct llmp_b2b_link *l;
	int ret = link_alloc(b, link_id, codecs, peer, out);

	if (ret < 0)
		return ret;
	l = *out;
	link_attach(l, fd);
	/*
	 * Hold the history until the peer's first frame (one of our diallers
	 * sends its capabilities and resume token at once) or HOLD_MS; the loop
	 * waits on an epoll of the socket and a timer meanwhile.
	 */
	l->hold_until = llmp_now_ms() + HOLD_MS;
	l->hold_tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	l->hold_epfd = epoll_create1(EPOLL_CLOEXEC);
	if (l->hold_tfd >= 0 && l->hold_epfd >= 0) {
		struct itimerspec its = { { 0, 0 }, { l->hold_until / 1000,
						      (l->hold_until % 1000) * 1000000 } };
		struct epoll_event ev = { .events = EPOLLIN };

		ev.data.fd = l->hold_tfd;
		l->holding = timerfd_settime(l->hold_tfd, TFD_TIMER_ABSTIME, &its, NULL) == 0 &&
			     epoll_ctl(l->hold_epfd, EPOLL_CTL_ADD, l->hold_tfd, &ev) == 0;
		ev.data.fd = fd;
		l->holding = l->holding && epoll_ctl(l->hold_epfd, EPOLL_CTL_ADD, fd, &ev) == 0;
	}
	if (!l->holding)
		hold_end(l); /* no timer: ship at once, as LibAFL does */
	llmp_log(LLMP_LOG_INFO, "b2b: link %u to %s up", link_id, l->peer);
	return 0;
}

static void dialer_free(struct dialer *d)
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

void llmp_b2b_link_free(struct llmp_b2b_link *l)
{
	if (!l)
		return;
	if (!l->d && l->token)
		live_del(l);
	if (l->r_ok && !l->d && l->token)
		park(l);
	if (l->r_ok)
		llmp_receiver_fini(&l->r);
	if (l->fd >= 0)
		close(l->fd);
	hold_end(l);
	dialer_free(l->d);
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

bool llmp_b2b_tag_reserved(uint32_t tag)
{
	switch (tag) {
	case LLMP_TAG_UNSET:
	case LLMP_TAG_UNINITIALIZED:
	case LLMP_TAG_END_OF_PAGE:
	case LLMP_TAG_NEW_SHM_CLIENT:
	case LLMP_TAG_CLIENT_EXIT:
	case LLMP_TAG_EXITING:
	case LLMP_TAG_SLOW_RECEIVER_PANIC:
	case LLMP_TAG_B2B_CAPS: /* ours, only as the first frame (take_caps) */
		return true;
	default:
		return false;
	}
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

static inline int z_reserve(struct llmp_b2b_link *l, size_t need)
{
	if (need <= l->zcap)
		return 0;
	uint8_t *p = realloc(l->z, need);
	if (!p)
		return llmp_err(-ENOMEM, "b2b: out of memory for a %zu-byte buffer", need);
	l->z = p;
	l->zcap = need;
	return 0;
}

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
static int queue_caps(struct llmp_b2b_link *l)
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
static int queue_msg(struct llmp_b2b_link *l, const struct llmp_rmsg *m)
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

/* The peer's capabilities frame?  1: consumed, 0: an ordinary message. */
static int take_caps(struct llmp_b2b_link *l, const struct llmp_wire_b2b *w)
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
		if (l->token && l->holding && unpark_into(l))
			llmp_log(LLMP_LOG_INFO, "b2b: link %u to %s: the dialler is back; resuming "
				 "where its previous link stopped", l->link_id, l->peer);
		if (l->token)
			live_add(l);
	}
	if (!l->d) {
		int ret = queue_caps(l);

		if (ret < 0)
			return ret;
	}
	return 1;
}

/*
 * A zstd frame from the peer -> l->z.  Only single frames that state their
 * size, at most LLMP_TCP_MAX_FRAME, and that decode to exactly that size.
 */
static int unzstd(struct llmp_b2b_link *l, const struct llmp_wire_b2b *w, size_t *out_len)
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
	if (sz > LLMP_TCP_MAX_FRAME)
		return llmp_err(-EMSGSIZE, "b2b: link to %s: a zstd frame declares %llu bytes, over "
				"the %u-byte cap (a decompression bomb?)", l->peer, sz,
				LLMP_TCP_MAX_FRAME);
	fl = ZSTD_findFrameCompressedSize(w->buf, w->len);
	if (ZSTD_isError(fl) || fl != w->len)
		return llmp_err(-EBADMSG, "b2b: link to %s: corrupt zstd frame (%s)", l->peer,
				ZSTD_isError(fl) ? ZSTD_getErrorName(fl) : "bytes after the frame");
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

/* One whole frame from the peer. */
static int take_frame(struct llmp_b2b_link *l)
{
	struct llmp_wire_b2b w;
	int ret = llmp_wire_decode_b2b(l->body, l->body_len, &w);

	if (ret < 0)
		return llmp_err(ret, "b2b: link to %s: malformed frame", l->peer);
	ret = take_caps(l, &w);
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

		ret = unzstd(l, &w, &n);
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
		hold_end(l);
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

/* ---- dialling -------------------------------------------------------------------- */

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

/* Read one frame into d->hs and decode it: 1 done, 0 not yet, <0 error. */
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
	link_attach(l, fd);
	llmp_log(d->fails > LOUD_ATTEMPTS ? LLMP_LOG_WARN : LLMP_LOG_INFO,
		 "b2b: link %u to %s up (attempt %llu%s)", l->link_id, l->peer,
		 (unsigned long long)d->attempts, d->peer_ours ? ", our broker" : "");
	d->fails = 0;
	if (d->peer_ours && queue_caps(l) < 0)
		l->caps_sent = false; /* out of memory: go on without zstd or resuming */
}

/* A dialled link broke: close it and dial again after the backoff. */
static void link_broken(struct llmp_b2b_link *l, int64_t now)
{
	struct dialer *d = l->d;
	size_t lost = l->out_len - l->out_off;

	close(l->fd);
	l->fd = -1;
	free(l->body);
	l->body = NULL;
	l->hdr_got = l->body_got = 0;
	l->body_len = 0;
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
	struct llmp_wire_msg m;
	int ret;

	if (d->st == D_WAIT) {
		if (now < d->retry_at)
			return 0;
		d->probing = true; /* our brokers get capabilities and the resume token */
		d->peer_ours = false;
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

static int dial_step(struct llmp_b2b_link *l)
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

int llmp_b2b_link_step(struct llmp_b2b_link *l)
{
	int ret;

	if (l->replaced)
		return llmp_err(-ECONNRESET, "b2b: link %u to %s: its dialler came back on a new "
				"connection", l->link_id, l->peer);
	if (l->fd < 0) {
		dial_step(l);
		if (l->fd < 0)
			return 0;
	}
	ret = data_step(l);
	if (ret >= 0 || !l->d || ret == -ENOMEM)
		return ret;
	link_broken(l, llmp_now_ms());
	return 0;
}

int llmp_b2b_link_dial(struct llmp_broker *b, const char *addr, uint16_t port,
		       const char *hostname, uint32_t link_id, unsigned codecs,
		       struct llmp_b2b_link **out)
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
	ret = link_alloc(b, link_id, codecs, peer, &l);
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
