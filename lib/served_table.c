// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * The shmem server's bookkeeping: its segments (sealed memfds), how many
 * references each client connection holds on each, fork holds, and the
 * requests that change them (HELLO, CREATE, ATTACH, RELEASE, STAT, HOLD,
 * ADOPT).  A segment is freed when its last reference goes.  The loop that
 * reads requests and sends the answers is lib/shmem_server.c.
 */
#include "internal.h"

#if defined(__linux__)

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "served_server.h"

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

void srv_client_unref(struct srv_state *st, struct srv_client *c)
{
	for (size_t i = 0; i < c->nrefs; i++)
		seg_unref(st, c->refs[i].num, c->refs[i].count);
	c->nrefs = 0;
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

int srv_holds_expire(struct srv_state *st)
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

/* Answer with segment s: its id, size, creator (protocol 2) and its fd. */
static int reply_seg(const struct srv_client *c, const struct srv_seg *s, struct srv_reply *rep)
{
	memcpy(rep->r.id, s->id, sizeof(s->id));
	rep->r.size = s->size;
	if (c->version >= SERVED_VERSION_PIDS)
		rep->r.pid = s->creator;
	rep->fd = s->fd;
	return 0;
}

static int do_create(struct srv_state *st, struct srv_client *c, const unsigned char *body,
		     uint32_t len, struct srv_reply *rep)
{
	struct served_create req;
	struct srv_seg *s;
	char name[40];
	int fd;

	if (len != sizeof(req))
		return srv_reply_err(rep, -EINVAL, "CREATE: body of %u bytes, expected %zu", len,
				 sizeof(req));
	memcpy(&req, body, sizeof(req));
	if (req.size == 0)
		return srv_reply_err(rep, -EINVAL, "CREATE: size 0");
	if (req.size > SERVED_MAX_SEG_SIZE)
		return srv_reply_err(rep, -E2BIG, "CREATE: size %llu above the limit %llu",
				 (unsigned long long)req.size,
				 (unsigned long long)SERVED_MAX_SEG_SIZE);
	if (st->nsegs >= SERVED_MAX_SEGMENTS)
		return srv_reply_err(rep, -ENOSPC, "CREATE: server holds its maximum of %u segments",
				 SERVED_MAX_SEGMENTS);
	if (st->nsegs == st->segcap) {
		size_t cap = st->segcap ? st->segcap * 2 : 16;
		struct srv_seg *n = realloc(st->segs, cap * sizeof(*n));

		if (!n)
			return srv_reply_err(rep, -ENOMEM, "CREATE: server out of memory");
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
		return srv_reply_err(rep, -errno, "CREATE: memfd_create: %s", strerror(errno));
	if (ftruncate(fd, (off_t)req.size) < 0 ||
	    fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) < 0) {
		int err = errno;

		close(fd);
		return srv_reply_err(rep, -err, "CREATE: sizing or sealing %llu bytes: %s",
				 (unsigned long long)req.size, strerror(err));
	}
	s->fd = fd;
	s->size = req.size;
	s->creator = c->pid;
	st->nsegs++;
	st->bytes += req.size;
	if (client_ref(c, s) < 0) {
		seg_free(st, s);
		return srv_reply_err(rep, -ENOMEM, "CREATE: server out of memory");
	}
	return reply_seg(c, s, rep);
}

/*
 * The segment an ATTACH or RELEASE body names (a struct served_id): 0 with
 * *out set, or the error already written into rep.
 */
static int find_named(struct srv_state *st, const unsigned char *body, uint32_t len,
		      const char *op, struct srv_reply *rep, struct srv_seg **out)
{
	struct served_id req;

	if (len != sizeof(req))
		return srv_reply_err(rep, -EINVAL, "%s: body of %u bytes, expected %zu", op, len,
				 sizeof(req));
	memcpy(&req, body, sizeof(req));
	if (!id_ok(req.id))
		return srv_reply_err(rep, -EINVAL, "%s: id is empty, not NUL-terminated or not "
				 "printable", op);
	*out = seg_find(st, req.id);
	if (!*out)
		return srv_reply_err(rep, -ENOENT, "%s: no segment '%s' on this server (released, "
				 "its holders exited, or another server's id)", op, req.id);
	return 0;
}

static int do_attach(struct srv_state *st, struct srv_client *c, const unsigned char *body,
		     uint32_t len, struct srv_reply *rep)
{
	struct srv_seg *s;
	int ret = find_named(st, body, len, "ATTACH", rep, &s);

	if (ret < 0)
		return ret;
	ret = client_ref(c, s);
	if (ret < 0)
		return srv_reply_err(rep, ret, "ATTACH: %s", ret == -ENOMEM ? "server out of memory" :
				 "too many references on this segment");
	return reply_seg(c, s, rep);
}

static int do_release(struct srv_state *st, struct srv_client *c, const unsigned char *body,
		      uint32_t len, struct srv_reply *rep)
{
	struct srv_seg *s;
	int ret = find_named(st, body, len, "RELEASE", rep, &s);

	if (ret < 0)
		return ret;
	for (size_t i = 0; i < c->nrefs; i++) {
		if (c->refs[i].num != s->num)
			continue;
		if (--c->refs[i].count == 0)
			c->refs[i] = c->refs[--c->nrefs];
		rep->r.value = s->refs - 1;
		seg_unref(st, s->num, 1);
		return 0;
	}
	return srv_reply_err(rep, -ENOENT, "RELEASE: this connection holds no reference on '%s'",
			 s->id);
}

static int do_hold(struct srv_state *st, struct srv_client *c, uint32_t len,
		   struct srv_reply *rep)
{
	struct srv_hold *h, *nh;

	if (len)
		return srv_reply_err(rep, -EINVAL, "HOLD: body of %u bytes, expected 0", len);
	if (st->nholds >= SERVED_MAX_HOLDS)
		return srv_reply_err(rep, -ENOSPC, "HOLD: %u fork holds wait already", SERVED_MAX_HOLDS);
	for (size_t i = 0; i < c->nrefs; i++) {
		struct srv_seg *s = seg_by_num(st, c->refs[i].num);

		if (s && s->refs > UINT32_MAX - c->refs[i].count)
			return srv_reply_err(rep, -EOVERFLOW, "HOLD: too many references on %s", s->id);
	}
	nh = realloc(st->holds, (st->nholds + 1) * sizeof(*nh));
	if (!nh)
		return srv_reply_err(rep, -ENOMEM, "HOLD: server out of memory");
	st->holds = nh;
	h = &st->holds[st->nholds];
	memset(h, 0, sizeof(*h));
	if (c->nrefs) {
		h->refs = malloc(c->nrefs * sizeof(*h->refs));
		if (!h->refs)
			return srv_reply_err(rep, -ENOMEM, "HOLD: server out of memory");
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
		return srv_reply_err(rep, -EINVAL, "ADOPT: body of %u bytes, expected %zu", len,
				 sizeof(req));
	memcpy(&req, body, sizeof(req));
	if (req.reserved)
		return srv_reply_err(rep, -EINVAL, "ADOPT: reserved field not zero");
	for (i = 0; i < st->nholds; i++) {
		if (st->holds[i].num == req.hold) {
			h = &st->holds[i];
			break;
		}
	}
	if (!h || !req.hold)
		return srv_reply_err(rep, -ENOENT, "ADOPT: no fork hold %u (adopted already or "
				 "expired)", req.hold);
	if (c->cap < c->nrefs + h->nrefs) {
		struct srv_ref *r = realloc(c->refs, (c->nrefs + h->nrefs) * sizeof(*r));

		if (!r)
			return srv_reply_err(rep, -ENOMEM, "ADOPT: server out of memory");
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

void srv_handle(struct srv_state *st, struct srv_client *c, const struct served_hdr *h,
		const unsigned char *body, struct srv_reply *rep)
{
	uint16_t op = h->op;

	if (h->reserved) {
		srv_reply_err(rep, -EINVAL, "reserved header field not zero");
	} else if (op == SERVED_OP_HELLO) {
		struct served_hello hi;

		if (h->length != sizeof(hi)) {
			srv_reply_err(rep, -EINVAL, "HELLO: body of %u bytes, expected %zu", h->length,
				  sizeof(hi));
		} else {
			memcpy(&hi, body, sizeof(hi));
			uint16_t v = hi.max_version < SERVED_VERSION ? hi.max_version : SERVED_VERSION;

			if (hi.reserved || hi.min_version > hi.max_version) {
				srv_reply_err(rep, -EINVAL, "HELLO: bad version range %u..%u",
					  hi.min_version, hi.max_version);
			} else if (v < hi.min_version || v < SERVED_VERSION_MIN) {
				srv_reply_err(rep, -EPROTONOSUPPORT, "HELLO: client speaks versions "
					  "%u..%u, server %u..%u", hi.min_version, hi.max_version,
					  SERVED_VERSION_MIN, SERVED_VERSION);
			} else {
				c->hello = true;
				c->version = v;
				rep->r.value = v;
				rep->r.pid = (uint32_t)getpid();
				if (v >= SERVED_VERSION_PIDS)
					rep->r.size = c->pid;
			}
		}
	} else if (!c->hello) {
		srv_reply_err(rep, -EPROTO, "request op %u before HELLO", op);
	} else if (h->version != c->version) {
		srv_reply_err(rep, -EPROTONOSUPPORT, "request of version %u on a connection that "
			  "negotiated version %u", h->version, c->version);
	} else if (op == SERVED_OP_CREATE) {
		do_create(st, c, body, h->length, rep);
	} else if (op == SERVED_OP_ATTACH) {
		do_attach(st, c, body, h->length, rep);
	} else if (op == SERVED_OP_RELEASE) {
		do_release(st, c, body, h->length, rep);
	} else if (op == SERVED_OP_HOLD) {
		do_hold(st, c, h->length, rep);
	} else if (op == SERVED_OP_ADOPT) {
		do_adopt(st, c, body, h->length, rep);
	} else if (op == SERVED_OP_STAT) {
		if (h->length) {
			srv_reply_err(rep, -EINVAL, "STAT: body of %u bytes, expected 0", h->length);
		} else {
			rep->r.value = (uint32_t)st->nsegs;
			rep->r.size = st->bytes;
			rep->r.clients = (uint32_t)st->ncls;
			rep->r.pid = (uint32_t)getpid();
		}
	} else {
		srv_reply_err(rep, -EOPNOTSUPP, "unknown request op %u", op);
	}
}

void srv_table_fini(struct srv_state *st)
{
	while (st->nholds)
		hold_drop(st, st->nholds - 1);
	free(st->holds);
	st->holds = NULL;
	while (st->nsegs)
		seg_free(st, &st->segs[st->nsegs - 1]);
	free(st->segs);
	st->segs = NULL;
}

#endif /* __linux__ */
