// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * The shmem server behind the SERVED provider.
 *
 * One poll() loop serves every client over a Unix stream socket.  Segments
 * are sealed memfds; a CREATE or ATTACH reply passes the memfd with
 * SCM_RIGHTS.  The server counts, per client connection, how many
 * references the client holds on each segment; a segment is freed (its
 * memfd closed) when its last reference goes, by RELEASE or because the
 * holder's connection closed (exit, crash, SIGKILL).
 *
 * Client sockets are non-blocking and each has its own input buffer, so a
 * client that sends half a request and stalls blocks nobody.  A request
 * whose framing is broken (bad magic, oversized body) gets an error reply
 * and the connection is closed; any other bad request gets an error reply
 * and the connection stays.  A client that does not read its replies (the
 * socket buffer fills) is dropped.
 *
 * Only clients of the server's own user (or root) are served.  Fork holds
 * (HOLD/ADOPT) carry a client's references across its fork until the child
 * connects, and expire if it never does.
 *
 * The loop runs in a thread of the caller (THREAD) or in a forked child
 * process (PROCESS).  The wire format is in served_proto.h.
 */
#include "internal.h"

#if defined(__linux__)

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "served_proto.h"

/* Requests handled per client per poll round (fairness between clients). */
#define SRV_REQS_PER_ROUND 64

struct srv_seg {
	uint64_t num;		   /* counter part of the id */
	char id[LLMP_SHMEM_ID_LEN];
	int fd;			   /* sealed memfd */
	uint64_t size;
	uint32_t refs;		   /* sum of every client's count */
	uint32_t creator;	   /* pid of the connection that created it (SO_PEERCRED) */
};

struct srv_ref {
	uint64_t num; /* segment */
	uint32_t count;
};

struct srv_client {
	int fd;
	bool hello;
	bool dead;
	uint16_t version;
	uint32_t pid; /* SO_PEERCRED at accept, in our pid namespace; 0 if not visible */
	size_t have; /* bytes in `in` */
	unsigned char in[sizeof(struct served_hdr) + SERVED_MAX_REQ_BODY];
	struct srv_ref *refs;
	size_t nrefs, cap;
};

/*
 * A fork hold: a copy of one connection's references, taken just before
 * the client forks, so the segments survive until the child has its own
 * connection (ADOPT moves them there), even if the parent releases them or
 * dies first.  Not adopted in time, a hold expires and drops them.
 */
struct srv_hold {
	uint32_t num;
	uint64_t deadline_ms; /* CLOCK_MONOTONIC */
	struct srv_ref *refs;
	size_t nrefs;
};

struct srv_state {
	int lfd;
	int wake;	 /* read end of the stop pipe (THREAD), -1 (PROCESS) */
	char tag[8];	 /* random per server: ids of another server never match */
	uint64_t next;	 /* segment counter */
	struct srv_seg *segs;
	size_t nsegs, segcap;
	uint64_t bytes;
	struct srv_client **cls;
	size_t ncls;
	struct srv_hold *holds;
	size_t nholds;
	uint32_t next_hold;
	uint32_t hold_ms;
};

struct llmp_shmem_server {
	enum llmp_shmem_server_mode mode;
	pid_t creator;		/* process that started it */
	char *unlink_path;	/* filesystem socket to remove on stop, or NULL */
	pthread_t thread;	/* THREAD */
	int wake_w;		/* THREAD: write end of the stop pipe */
	pid_t child;		/* PROCESS */
	struct srv_state st;
};

/* ---- socket addresses (shared with the provider) ------------------------- */

int llmp_served_sockaddr(const char *path, struct sockaddr_un *sa, socklen_t *len)
{
	size_t n;

	if (!path || !*path)
		return llmp_err(-EINVAL, "shmem server: empty socket path");
	n = strlen(path);
	memset(sa, 0, sizeof(*sa));
	sa->sun_family = AF_UNIX;
	if (path[0] == '@') {
		if (n < 2 || n > sizeof(sa->sun_path))
			return llmp_err(-EINVAL, "shmem server: abstract socket name '%.40s' is "
					"empty or longer than %zu bytes", path,
					sizeof(sa->sun_path) - 1);
		memcpy(sa->sun_path + 1, path + 1, n - 1);
		*len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);
	} else {
		if (n >= sizeof(sa->sun_path))
			return llmp_err(-ENAMETOOLONG, "shmem server: socket path '%.40s...' longer "
					"than %zu bytes", path, sizeof(sa->sun_path) - 1);
		memcpy(sa->sun_path, path, n);
		*len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + 1);
	}
	return 0;
}

/* ---- segments -------------------------------------------------------------- */

static struct srv_seg *seg_find(struct srv_state *st, const char *id)
{
	for (size_t i = 0; i < st->nsegs; i++) {
		if (!strncmp(st->segs[i].id, id, LLMP_SHMEM_ID_LEN))
			return &st->segs[i];
	}
	return NULL;
}

static struct srv_seg *seg_by_num(struct srv_state *st, uint64_t num)
{
	for (size_t i = 0; i < st->nsegs; i++) {
		if (st->segs[i].num == num)
			return &st->segs[i];
	}
	return NULL;
}

static void seg_free(struct srv_state *st, struct srv_seg *s)
{
	size_t i = (size_t)(s - st->segs);

	llmp_log(LLMP_LOG_DEBUG, "shmem server: freeing segment %s (%llu bytes)", s->id,
		 (unsigned long long)s->size);
	close(s->fd);
	st->bytes -= s->size;
	st->segs[i] = st->segs[--st->nsegs];
}

/* Drop count references of segment num (freeing it at zero). */
static void seg_unref(struct srv_state *st, uint64_t num, uint32_t count)
{
	struct srv_seg *s = seg_by_num(st, num);

	if (!s)
		return;
	s->refs -= count < s->refs ? count : s->refs;
	if (s->refs == 0)
		seg_free(st, s);
}

/*
 * Give client c one more reference on segment s: -EOVERFLOW at the count's
 * limit, -ENOMEM if the list cannot grow.
 */
static int client_ref(struct srv_client *c, struct srv_seg *s)
{
	if (s->refs == UINT32_MAX)
		return -EOVERFLOW;
	for (size_t i = 0; i < c->nrefs; i++) {
		if (c->refs[i].num == s->num) {
			c->refs[i].count++;
			s->refs++;
			return 0;
		}
	}
	if (c->nrefs == c->cap) {
		size_t cap = c->cap ? c->cap * 2 : 8;
		struct srv_ref *r = realloc(c->refs, cap * sizeof(*r));

		if (!r)
			return -ENOMEM;
		c->refs = r;
		c->cap = cap;
	}
	c->refs[c->nrefs].num = s->num;
	c->refs[c->nrefs].count = 1;
	c->nrefs++;
	s->refs++;
	return 0;
}

static void client_close(struct srv_state *st, struct srv_client *c)
{
	for (size_t i = 0; i < c->nrefs; i++)
		seg_unref(st, c->refs[i].num, c->refs[i].count);
	close(c->fd);
	free(c->refs);
	free(c);
}

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Drop hold i and the references it kept. */
static void hold_drop(struct srv_state *st, size_t i)
{
	struct srv_hold *h = &st->holds[i];

	for (size_t k = 0; k < h->nrefs; k++)
		seg_unref(st, h->refs[k].num, h->refs[k].count);
	free(h->refs);
	st->holds[i] = st->holds[--st->nholds];
}

/* Expire old holds; returns the poll timeout (ms) until the next one, or -1. */
static int holds_expire(struct srv_state *st)
{
	uint64_t now = now_ms(), next = UINT64_MAX;

	for (size_t i = 0; i < st->nholds;) {
		if (st->holds[i].deadline_ms <= now) {
			llmp_log(LLMP_LOG_DEBUG, "shmem server: fork hold %u expired",
				 st->holds[i].num);
			hold_drop(st, i);
			continue;
		}
		if (st->holds[i].deadline_ms < next)
			next = st->holds[i].deadline_ms;
		i++;
	}
	if (next == UINT64_MAX)
		return -1;
	return next - now > INT32_MAX ? INT32_MAX : (int)(next - now);
}

/* ---- replies --------------------------------------------------------------- */

struct srv_reply {
	struct served_reply r;
	char msg[SERVED_MAX_MSG + 1];
	int fd; /* to pass, or -1 */
};

static int LLMP_PRINTF(3, 4) reply_err(struct srv_reply *rep, int err, const char *fmt, ...)
{
	va_list ap;

	rep->r.status = err;
	va_start(ap, fmt);
	vsnprintf(rep->msg, sizeof(rep->msg), fmt, ap);
	va_end(ap);
	return err;
}

/* Send one reply; on failure the client is marked dead. */
static void reply_send(struct srv_client *c, uint16_t op, struct srv_reply *rep)
{
	unsigned char buf[sizeof(struct served_hdr) + SERVED_MAX_REPLY_BODY];
	struct served_hdr h;
	size_t mlen = strnlen(rep->msg, SERVED_MAX_MSG);
	size_t len = sizeof(h) + sizeof(rep->r) + mlen;
	union {
		struct cmsghdr align;
		char buf[CMSG_SPACE(sizeof(int))];
	} ctl;
	struct iovec iov = { .iov_base = buf, .iov_len = len };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1 };
	ssize_t n;

	memset(&h, 0, sizeof(h));
	h.magic = SERVED_MAGIC;
	h.version = c->hello ? c->version : SERVED_VERSION;
	h.op = op;
	h.length = (uint32_t)(sizeof(rep->r) + mlen);
	memcpy(buf, &h, sizeof(h));
	memcpy(buf + sizeof(h), &rep->r, sizeof(rep->r));
	memcpy(buf + sizeof(h) + sizeof(rep->r), rep->msg, mlen);
	if (rep->fd >= 0) {
		struct cmsghdr *cm;

		memset(&ctl, 0, sizeof(ctl));
		msg.msg_control = ctl.buf;
		msg.msg_controllen = sizeof(ctl.buf);
		cm = CMSG_FIRSTHDR(&msg);
		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(cm), &rep->fd, sizeof(int));
	}
	do {
		n = sendmsg(c->fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
	} while (n < 0 && errno == EINTR);
	if (n != (ssize_t)len) {
		/* Gone, or not reading its replies: a partial reply cannot be resumed. */
		llmp_log(LLMP_LOG_DEBUG, "shmem server: dropping client fd %d: reply not sent (%s)",
			 c->fd, n < 0 ? strerror(errno) : "socket buffer full");
		c->dead = true;
	}
}

/* ---- requests -------------------------------------------------------------- */

static int id_ok(const char *id)
{
	size_t n = strnlen(id, LLMP_SHMEM_ID_LEN);

	if (n == 0 || n == LLMP_SHMEM_ID_LEN)
		return 0;
	for (size_t i = 0; i < n; i++) {
		if (id[i] < 0x21 || id[i] > 0x7e)
			return 0;
	}
	return 1;
}

static int do_create(struct srv_state *st, struct srv_client *c, const unsigned char *body,
		     uint32_t len, struct srv_reply *rep)
{
	struct served_create req;
	struct srv_seg *s;
	char name[40];
	int fd;

	if (len != sizeof(req))
		return reply_err(rep, -EINVAL, "CREATE: body of %u bytes, expected %zu", len,
				 sizeof(req));
	memcpy(&req, body, sizeof(req));
	if (req.size == 0)
		return reply_err(rep, -EINVAL, "CREATE: size 0");
	if (req.size > SERVED_MAX_SEG_SIZE)
		return reply_err(rep, -E2BIG, "CREATE: size %llu above the limit %llu",
				 (unsigned long long)req.size,
				 (unsigned long long)SERVED_MAX_SEG_SIZE);
	if (st->nsegs >= SERVED_MAX_SEGMENTS)
		return reply_err(rep, -ENOSPC, "CREATE: server holds its maximum of %u segments",
				 SERVED_MAX_SEGMENTS);
	if (st->nsegs == st->segcap) {
		size_t cap = st->segcap ? st->segcap * 2 : 16;
		struct srv_seg *n = realloc(st->segs, cap * sizeof(*n));

		if (!n)
			return reply_err(rep, -ENOMEM, "CREATE: server out of memory");
		st->segs = n;
		st->segcap = cap;
	}
	s = &st->segs[st->nsegs];
	memset(s, 0, sizeof(*s));
	s->num = ++st->next;
	snprintf(s->id, sizeof(s->id), "%s.%llu", st->tag, (unsigned long long)s->num);
	snprintf(name, sizeof(name), "llmp-served:%s", s->id);
	fd = memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (fd < 0)
		return reply_err(rep, -errno, "CREATE: memfd_create: %s", strerror(errno));
	if (ftruncate(fd, (off_t)req.size) < 0 ||
	    fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) < 0) {
		int err = errno;

		close(fd);
		return reply_err(rep, -err, "CREATE: sizing or sealing %llu bytes: %s",
				 (unsigned long long)req.size, strerror(err));
	}
	s->fd = fd;
	s->size = req.size;
	s->creator = c->pid;
	st->nsegs++;
	st->bytes += req.size;
	if (client_ref(c, s) < 0) {
		seg_free(st, s);
		return reply_err(rep, -ENOMEM, "CREATE: server out of memory");
	}
	memcpy(rep->r.id, s->id, sizeof(s->id));
	rep->r.size = s->size;
	if (c->version >= SERVED_VERSION_PIDS)
		rep->r.pid = s->creator;
	rep->fd = s->fd;
	return 0;
}

static int read_id(const unsigned char *body, uint32_t len, const char *op,
		   struct served_id *req, struct srv_reply *rep)
{
	if (len != sizeof(*req))
		return reply_err(rep, -EINVAL, "%s: body of %u bytes, expected %zu", op, len,
				 sizeof(*req));
	memcpy(req, body, sizeof(*req));
	if (!id_ok(req->id))
		return reply_err(rep, -EINVAL, "%s: id is empty, not NUL-terminated or not "
				 "printable", op);
	return 0;
}

static int do_attach(struct srv_state *st, struct srv_client *c, const unsigned char *body,
		     uint32_t len, struct srv_reply *rep)
{
	struct served_id req;
	struct srv_seg *s;
	int ret = read_id(body, len, "ATTACH", &req, rep);

	if (ret < 0)
		return ret;
	s = seg_find(st, req.id);
	if (!s)
		return reply_err(rep, -ENOENT, "ATTACH: no segment '%s' on this server (released, "
				 "its holders exited, or another server's id)", req.id);
	ret = client_ref(c, s);
	if (ret < 0)
		return reply_err(rep, ret, "ATTACH: %s", ret == -ENOMEM ? "server out of memory" :
				 "too many references on this segment");
	memcpy(rep->r.id, s->id, sizeof(s->id));
	rep->r.size = s->size;
	if (c->version >= SERVED_VERSION_PIDS)
		rep->r.pid = s->creator;
	rep->fd = s->fd;
	return 0;
}

static int do_release(struct srv_state *st, struct srv_client *c, const unsigned char *body,
		      uint32_t len, struct srv_reply *rep)
{
	struct served_id req;
	struct srv_seg *s;
	int ret = read_id(body, len, "RELEASE", &req, rep);

	if (ret < 0)
		return ret;
	s = seg_find(st, req.id);
	if (!s)
		return reply_err(rep, -ENOENT, "RELEASE: no segment '%s' on this server", req.id);
	for (size_t i = 0; i < c->nrefs; i++) {
		if (c->refs[i].num != s->num)
			continue;
		if (--c->refs[i].count == 0)
			c->refs[i] = c->refs[--c->nrefs];
		rep->r.value = s->refs - 1;
		seg_unref(st, s->num, 1);
		return 0;
	}
	return reply_err(rep, -ENOENT, "RELEASE: this connection holds no reference on '%s'",
			 req.id);
}

static int do_hold(struct srv_state *st, struct srv_client *c, uint32_t len,
		   struct srv_reply *rep)
{
	struct srv_hold *h, *nh;

	if (len)
		return reply_err(rep, -EINVAL, "HOLD: body of %u bytes, expected 0", len);
	if (st->nholds >= SERVED_MAX_HOLDS)
		return reply_err(rep, -ENOSPC, "HOLD: %u fork holds wait already", SERVED_MAX_HOLDS);
	for (size_t i = 0; i < c->nrefs; i++) {
		struct srv_seg *s = seg_by_num(st, c->refs[i].num);

		if (s && s->refs > UINT32_MAX - c->refs[i].count)
			return reply_err(rep, -EOVERFLOW, "HOLD: too many references on %s", s->id);
	}
	nh = realloc(st->holds, (st->nholds + 1) * sizeof(*nh));
	if (!nh)
		return reply_err(rep, -ENOMEM, "HOLD: server out of memory");
	st->holds = nh;
	h = &st->holds[st->nholds];
	memset(h, 0, sizeof(*h));
	if (c->nrefs) {
		h->refs = malloc(c->nrefs * sizeof(*h->refs));
		if (!h->refs)
			return reply_err(rep, -ENOMEM, "HOLD: server out of memory");
		memcpy(h->refs, c->refs, c->nrefs * sizeof(*h->refs));
		h->nrefs = c->nrefs;
	}
	for (size_t i = 0; i < h->nrefs; i++)
		seg_by_num(st, h->refs[i].num)->refs += h->refs[i].count;
	if (++st->next_hold == 0)
		st->next_hold = 1;
	h->num = st->next_hold;
	h->deadline_ms = now_ms() + st->hold_ms;
	st->nholds++;
	rep->r.value = h->num;
	return 0;
}

static int do_adopt(struct srv_state *st, struct srv_client *c, const unsigned char *body,
		    uint32_t len, struct srv_reply *rep)
{
	struct served_adopt req;
	struct srv_hold *h = NULL;
	size_t i;

	if (len != sizeof(req))
		return reply_err(rep, -EINVAL, "ADOPT: body of %u bytes, expected %zu", len,
				 sizeof(req));
	memcpy(&req, body, sizeof(req));
	if (req.reserved)
		return reply_err(rep, -EINVAL, "ADOPT: reserved field not zero");
	for (i = 0; i < st->nholds; i++) {
		if (st->holds[i].num == req.hold) {
			h = &st->holds[i];
			break;
		}
	}
	if (!h || !req.hold)
		return reply_err(rep, -ENOENT, "ADOPT: no fork hold %u (adopted already or "
				 "expired)", req.hold);
	if (c->cap < c->nrefs + h->nrefs) {
		struct srv_ref *r = realloc(c->refs, (c->nrefs + h->nrefs) * sizeof(*r));

		if (!r)
			return reply_err(rep, -ENOMEM, "ADOPT: server out of memory");
		c->refs = r;
		c->cap = c->nrefs + h->nrefs;
	}
	/* The references move: segment counts stay as they are. */
	for (size_t k = 0; k < h->nrefs; k++) {
		size_t j;

		for (j = 0; j < c->nrefs; j++) {
			if (c->refs[j].num == h->refs[k].num)
				break;
		}
		if (j == c->nrefs)
			c->refs[c->nrefs++] = (struct srv_ref){ h->refs[k].num, 0 };
		c->refs[j].count += h->refs[k].count;
	}
	h->nrefs = 0;
	rep->r.value = req.hold;
	hold_drop(st, i);
	return 0;
}

static void handle(struct srv_state *st, struct srv_client *c, const struct served_hdr *h,
		   const unsigned char *body)
{
	struct srv_reply rep;
	uint16_t op = h->op;

	memset(&rep, 0, sizeof(rep));
	rep.fd = -1;
	if (h->reserved) {
		reply_err(&rep, -EINVAL, "reserved header field not zero");
	} else if (op == SERVED_OP_HELLO) {
		struct served_hello hi;

		if (h->length != sizeof(hi)) {
			reply_err(&rep, -EINVAL, "HELLO: body of %u bytes, expected %zu", h->length,
				  sizeof(hi));
		} else {
			memcpy(&hi, body, sizeof(hi));
			uint16_t v = hi.max_version < SERVED_VERSION ? hi.max_version : SERVED_VERSION;

			if (hi.reserved || hi.min_version > hi.max_version) {
				reply_err(&rep, -EINVAL, "HELLO: bad version range %u..%u",
					  hi.min_version, hi.max_version);
			} else if (v < hi.min_version || v < SERVED_VERSION_MIN) {
				reply_err(&rep, -EPROTONOSUPPORT, "HELLO: client speaks versions "
					  "%u..%u, server %u..%u", hi.min_version, hi.max_version,
					  SERVED_VERSION_MIN, SERVED_VERSION);
			} else {
				c->hello = true;
				c->version = v;
				rep.r.value = v;
				rep.r.pid = (uint32_t)getpid();
				if (v >= SERVED_VERSION_PIDS)
					rep.r.size = c->pid;
			}
		}
	} else if (!c->hello) {
		reply_err(&rep, -EPROTO, "request op %u before HELLO", op);
	} else if (h->version != c->version) {
		reply_err(&rep, -EPROTONOSUPPORT, "request of version %u on a connection that "
			  "negotiated version %u", h->version, c->version);
	} else if (op == SERVED_OP_CREATE) {
		do_create(st, c, body, h->length, &rep);
	} else if (op == SERVED_OP_ATTACH) {
		do_attach(st, c, body, h->length, &rep);
	} else if (op == SERVED_OP_RELEASE) {
		do_release(st, c, body, h->length, &rep);
	} else if (op == SERVED_OP_HOLD) {
		do_hold(st, c, h->length, &rep);
	} else if (op == SERVED_OP_ADOPT) {
		do_adopt(st, c, body, h->length, &rep);
	} else if (op == SERVED_OP_STAT) {
		if (h->length) {
			reply_err(&rep, -EINVAL, "STAT: body of %u bytes, expected 0", h->length);
		} else {
			rep.r.value = (uint32_t)st->nsegs;
			rep.r.size = st->bytes;
			rep.r.clients = (uint32_t)st->ncls;
			rep.r.pid = (uint32_t)getpid();
		}
	} else {
		reply_err(&rep, -EOPNOTSUPP, "unknown request op %u", op);
	}
	if (rep.r.status < 0)
		llmp_log(LLMP_LOG_DEBUG, "shmem server: client fd %d: %s", c->fd, rep.msg);
	reply_send(c, (op & SERVED_OP_REPLY) ? SERVED_OP_ERROR : (uint16_t)(op | SERVED_OP_REPLY),
		   &rep);
}

/* Read what client c has sent and answer every complete request. */
static void client_input(struct srv_state *st, struct srv_client *c)
{
	int handled = 0;

	while (!c->dead && handled < SRV_REQS_PER_ROUND) {
		struct served_hdr h;
		size_t want = sizeof(h);
		ssize_t n;

		if (c->have >= sizeof(h)) {
			memcpy(&h, c->in, sizeof(h));
			want += h.length;
		}
		if (c->have < want) {
			n = recv(c->fd, c->in + c->have, want - c->have, MSG_DONTWAIT);
			if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
				if (c->have)
					llmp_log(LLMP_LOG_DEBUG, "shmem server: client fd %d closed "
						 "in the middle of a request", c->fd);
				c->dead = true;
				return;
			}
			if (n < 0) {
				if (errno == EAGAIN)
					return;
				continue;
			}
			c->have += (size_t)n;
			if (c->have < want)
				continue;
		}
		memcpy(&h, c->in, sizeof(h));
		if (c->have == sizeof(h)) {
			/* Header complete: framing checks before waiting for a body. */
			struct srv_reply rep;

			memset(&rep, 0, sizeof(rep));
			rep.fd = -1;
			if (h.magic != SERVED_MAGIC)
				reply_err(&rep, -EBADMSG, "bad magic %#x: not an llmp shmem "
					  "client", h.magic);
			else if (h.length > SERVED_MAX_REQ_BODY)
				reply_err(&rep, -EMSGSIZE, "request body of %u bytes, at most %u",
					  h.length, SERVED_MAX_REQ_BODY);
			if (rep.r.status < 0) {
				llmp_log(LLMP_LOG_DEBUG, "shmem server: client fd %d: %s", c->fd,
					 rep.msg);
				reply_send(c, SERVED_OP_ERROR, &rep);
				c->dead = true; /* the stream cannot be resynchronised */
				return;
			}
			if (h.length)
				continue;
		}
		handle(st, c, &h, c->in + sizeof(h));
		c->have = 0;
		handled++;
	}
}

/* Tell a new connection why it is refused (best effort), then close it. */
static void LLMP_PRINTF(3, 4) refuse(int fd, int err, const char *fmt, ...)
{
	struct srv_client c = { .fd = fd };
	struct srv_reply rep;
	va_list ap;

	memset(&rep, 0, sizeof(rep));
	rep.fd = -1;
	rep.r.status = err;
	va_start(ap, fmt);
	vsnprintf(rep.msg, sizeof(rep.msg), fmt, ap);
	va_end(ap);
	llmp_log(LLMP_LOG_WARN, "shmem server: %s", rep.msg);
	reply_send(&c, SERVED_OP_ERROR, &rep);
	close(fd);
}

static void srv_accept(struct srv_state *st)
{
	for (;;) {
		int fd = accept4(st->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		struct srv_client *c, **cls;

		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			if (errno != EAGAIN)
				llmp_log(LLMP_LOG_WARN, "shmem server: accept: %s", strerror(errno));
			return;
		}
		struct ucred cred;
		socklen_t clen = sizeof(cred);

		/* Only our own user (or root) may use our segments. */
		if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &clen) < 0) {
			refuse(fd, -EACCES, "cannot read the credentials of a new client: %s",
			       strerror(errno));
			continue;
		}
		if (cred.uid != geteuid() && cred.uid != 0) {
			refuse(fd, -EACCES, "refusing pid %d: uid %u is neither %u nor root",
			       (int)cred.pid, (unsigned)cred.uid, (unsigned)geteuid());
			continue;
		}
		if (st->ncls >= SERVED_MAX_CLIENTS) {
			refuse(fd, -EMFILE, "%u clients already, refusing one more",
			       SERVED_MAX_CLIENTS);
			continue;
		}
		c = calloc(1, sizeof(*c));
		cls = realloc(st->cls, (st->ncls + 1) * sizeof(*cls));
		if (!c || !cls) {
			free(c);
			if (cls)
				st->cls = cls;
			close(fd);
			continue;
		}
		st->cls = cls;
		c->fd = fd;
		c->pid = cred.pid > 0 ? (uint32_t)cred.pid : 0;
		st->cls[st->ncls++] = c;
	}
}

static void srv_loop(struct srv_state *st)
{
	struct pollfd *pfd = NULL;
	size_t pcap = 0;

	for (;;) {
		size_t base = st->wake >= 0 ? 2 : 1, n = base + st->ncls;

		if (n > pcap) {
			struct pollfd *np = realloc(pfd, n * sizeof(*np));

			if (!np) {
				/* Retry later rather than lose the clients. */
				struct timespec ts = { 0, 10 * 1000 * 1000 };

				nanosleep(&ts, NULL);
				continue;
			}
			pfd = np;
			pcap = n;
		}
		pfd[0] = (struct pollfd){ .fd = st->lfd, .events = POLLIN };
		if (st->wake >= 0)
			pfd[1] = (struct pollfd){ .fd = st->wake, .events = POLLIN };
		for (size_t i = 0; i < st->ncls; i++)
			pfd[base + i] = (struct pollfd){ .fd = st->cls[i]->fd, .events = POLLIN };
		if (poll(pfd, n, holds_expire(st)) < 0) {
			if (errno == EINTR)
				continue;
			llmp_log(LLMP_LOG_ERROR, "shmem server: poll: %s", strerror(errno));
			break;
		}
		if (st->wake >= 0 && pfd[1].revents)
			break;
		for (size_t i = 0; i < st->ncls; i++) {
			if (pfd[base + i].revents)
				client_input(st, st->cls[i]);
		}
		for (size_t i = 0; i < st->ncls;) {
			if (st->cls[i]->dead) {
				client_close(st, st->cls[i]);
				st->cls[i] = st->cls[--st->ncls];
			} else {
				i++;
			}
		}
		if (pfd[0].revents)
			srv_accept(st);
		holds_expire(st);
	}
	free(pfd);
}

static void srv_state_fini(struct srv_state *st)
{
	for (size_t i = 0; i < st->ncls; i++)
		client_close(st, st->cls[i]);
	free(st->cls);
	st->cls = NULL;
	st->ncls = 0;
	while (st->nholds)
		hold_drop(st, st->nholds - 1);
	free(st->holds);
	st->holds = NULL;
	while (st->nsegs)
		seg_free(st, &st->segs[st->nsegs - 1]);
	free(st->segs);
	st->segs = NULL;
	if (st->lfd >= 0)
		close(st->lfd);
	st->lfd = -1;
	if (st->wake >= 0)
		close(st->wake);
	st->wake = -1;
}

static void *srv_thread(void *arg)
{
	struct llmp_shmem_server *s = arg;
	sigset_t all;

	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, NULL);
	srv_loop(&s->st);
	return NULL;
}

static void make_tag(char tag[8])
{
	static const char alpha[] = "abcdefghijklmnopqrstuvwxyz0123456789";
	unsigned char r[6];

	if (getrandom(r, sizeof(r), GRND_NONBLOCK) != (ssize_t)sizeof(r)) {
		struct timespec ts;
		uint64_t x;

		clock_gettime(CLOCK_MONOTONIC, &ts);
		x = (uint64_t)ts.tv_nsec * 0x9E3779B97F4A7C15ULL ^ (uint64_t)getpid() << 20 ^
		    (uint64_t)ts.tv_sec;
		for (size_t i = 0; i < sizeof(r); i++)
			r[i] = (unsigned char)(x >> (8 * i));
	}
	for (size_t i = 0; i < sizeof(r); i++)
		tag[i] = alpha[r[i] % (sizeof(alpha) - 1)];
	tag[6] = 0;
}

/* Bind and listen on path; -EADDRINUSE if a live server answers there. */
static int srv_listen(const char *path, bool *unlink_it)
{
	struct sockaddr_un sa;
	socklen_t len;
	int fd, ret, tries = 0;

	*unlink_it = false;
	ret = llmp_served_sockaddr(path, &sa, &len);
	if (ret < 0)
		return ret;
again:
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return llmp_err(-errno, "shmem server: socket: %s", strerror(errno));
	if (bind(fd, (struct sockaddr *)&sa, len) < 0) {
		int err = errno;

		close(fd);
		if (err == EADDRINUSE && path[0] != '@' && tries++ == 0) {
			/* A socket file: remove it if nobody listens (a dead server's). */
			int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
			int cerr = 0;

			if (probe >= 0) {
				if (connect(probe, (struct sockaddr *)&sa, len) < 0)
					cerr = errno;
				close(probe);
			}
			if (cerr == ECONNREFUSED && unlink(path) == 0)
				goto again;
		}
		if (err == EADDRINUSE)
			return llmp_err(-EADDRINUSE, "shmem server: a server already listens on %s",
					path);
		return llmp_err(-err, "shmem server: bind %s: %s", path, strerror(err));
	}
	if (listen(fd, 128) < 0) {
		int err = errno;

		close(fd);
		if (path[0] != '@')
			unlink(path);
		return llmp_err(-err, "shmem server: listen on %s: %s", path, strerror(err));
	}
	*unlink_it = path[0] != '@';
	return fd;
}

/* PROCESS mode: the child's life.  Never returns. */
static void srv_child(struct llmp_shmem_server *s, pid_t parent)
{
	struct sigaction dfl;
	sigset_t none;
	int fd = s->st.lfd;

	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() != parent)
		_exit(0);
	memset(&dfl, 0, sizeof(dfl));
	dfl.sa_handler = SIG_DFL;
	sigaction(SIGTERM, &dfl, NULL);
	sigaction(SIGINT, &dfl, NULL);
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	/* Hold nothing of the parent's but stdio: its clients' sockets, its memfds. */
	if (fd != 3 && fd > 2) {
		if (dup3(fd, 3, O_CLOEXEC) == 3)
			fd = 3;
	}
	if (fd == 3) {
		s->st.lfd = 3;
		syscall(SYS_close_range, 4U, ~0U, 0U);
	}
	srv_loop(&s->st);
	_exit(0);
}

int llmp_shmem_server_start(const char *socket_path, enum llmp_shmem_server_mode mode,
			    struct llmp_shmem_server **out)
{
	struct llmp_shmem_server *s;
	const char *path = socket_path ? socket_path : LLMP_SHMEM_SERVER_DEFAULT_PATH;
	bool unlink_it;
	int fd, pfd[2], ret;

	if (!out)
		return llmp_err(-EINVAL, "shmem server: NULL out pointer");
	*out = NULL;
	if (mode != LLMP_SHMEM_SERVER_THREAD && mode != LLMP_SHMEM_SERVER_PROCESS)
		return llmp_err(-EINVAL, "shmem server: invalid mode %d", (int)mode);
	s = calloc(1, sizeof(*s));
	if (!s)
		return llmp_err(-ENOMEM, "shmem server: out of memory");
	s->mode = mode;
	s->creator = getpid();
	s->wake_w = -1;
	s->st.wake = -1;
	make_tag(s->st.tag);
	s->st.hold_ms = SERVED_HOLD_MS_DEFAULT;
	{
		const char *e = getenv("LLMP_SHMEM_SERVER_HOLD_MS");
		char *end;
		unsigned long v;

		if (e && *e) {
			errno = 0;
			v = strtoul(e, &end, 10);
			if (errno || *end || v == 0 || v > 3600000UL)
				llmp_log(LLMP_LOG_WARN, "shmem server: ignoring LLMP_SHMEM_SERVER_HOLD_MS"
					 "='%.20s' (1..3600000)", e);
			else
				s->st.hold_ms = (uint32_t)v;
		}
	}
	fd = srv_listen(path, &unlink_it);
	if (fd < 0) {
		free(s);
		return fd;
	}
	s->st.lfd = fd;
	if (unlink_it) {
		s->unlink_path = strdup(path);
		if (!s->unlink_path) {
			ret = llmp_err(-ENOMEM, "shmem server: out of memory");
			goto fail;
		}
	}
	if (mode == LLMP_SHMEM_SERVER_THREAD) {
		if (pipe2(pfd, O_CLOEXEC | O_NONBLOCK) < 0) {
			ret = llmp_err(-errno, "shmem server: pipe: %s", strerror(errno));
			goto fail;
		}
		s->st.wake = pfd[0];
		s->wake_w = pfd[1];
		ret = pthread_create(&s->thread, NULL, srv_thread, s);
		if (ret) {
			ret = llmp_err(-ret, "shmem server: pthread_create: %s", strerror(ret));
			goto fail;
		}
	} else {
		pid_t parent = getpid();
		pid_t pid = fork();

		if (pid < 0) {
			ret = llmp_err(-errno, "shmem server: fork: %s", strerror(errno));
			goto fail;
		}
		if (pid == 0)
			srv_child(s, parent);
		s->child = pid;
		close(s->st.lfd); /* the child listens; keeping a copy would hide its death */
		s->st.lfd = -1;
	}
	llmp_log(LLMP_LOG_INFO, "shmem server: serving on %s (%s, tag %s)", path,
		 mode == LLMP_SHMEM_SERVER_THREAD ? "thread" : "process", s->st.tag);
	*out = s;
	return 0;
fail:
	srv_state_fini(&s->st);
	if (s->wake_w >= 0)
		close(s->wake_w);
	if (s->unlink_path)
		unlink(s->unlink_path);
	else if (unlink_it)
		unlink(path);
	free(s->unlink_path);
	free(s);
	return ret;
}

void llmp_shmem_server_stop(struct llmp_shmem_server *s)
{
	if (!s)
		return;
	if (getpid() != s->creator) {
		/* A forked copy: the server belongs to the parent; just drop our fds. */
		if (s->mode == LLMP_SHMEM_SERVER_THREAD) {
			s->st.ncls = 0; /* the copies of its state are not ours to walk */
			s->st.nsegs = 0;
			close(s->wake_w);
		}
		if (s->st.lfd >= 0)
			close(s->st.lfd);
		if (s->st.wake >= 0)
			close(s->st.wake);
		free(s->unlink_path);
		free(s);
		return;
	}
	if (s->mode == LLMP_SHMEM_SERVER_THREAD) {
		char b = 1;
		ssize_t n;

		do {
			n = write(s->wake_w, &b, 1);
		} while (n < 0 && errno == EINTR);
		pthread_join(s->thread, NULL);
		close(s->wake_w);
		srv_state_fini(&s->st);
	} else {
		int status;

		kill(s->child, SIGKILL);
		while (waitpid(s->child, &status, 0) < 0 && errno == EINTR)
			;
	}
	if (s->unlink_path)
		unlink(s->unlink_path);
	free(s->unlink_path);
	free(s);
}

#else /* !__linux__ */

int llmp_shmem_server_start(const char *socket_path, enum llmp_shmem_server_mode mode,
			    struct llmp_shmem_server **out)
{
	(void)socket_path;
	(void)mode;
	if (out)
		*out = NULL;
	return llmp_err(-ENODEV, "shmem server: needs memfd and SCM_RIGHTS (Linux only so far)");
}

void llmp_shmem_server_stop(struct llmp_shmem_server *s)
{
	(void)s;
}

#endif
