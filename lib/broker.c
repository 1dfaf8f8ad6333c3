// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * The LLMP broker: one reader per client out page, one broadcast sender
 * (client id 0).  llmp_broker_once() drains every client in turn, lets the
 * hook chain decide, and copies what survives onto the broadcast page.  A
 * client whose page is corrupt is dropped; the others keep being served.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "broker_internal.h"

#define DEFAULT_HISTORY_BYTES (64u << 20)
/* Messages taken from one client before moving to the next (fairness). */
#define DRAIN_BATCH 4096
/* llmp_broker_run() looks for dead clients this often. */
#define CHECK_EVERY_NS (100ull * 1000000ull)
/* llmp_broker_run's idle naps: start short, double while idle, capped. */
#define RUN_NAP_MIN_NS 50000L
#define RUN_NAP_MAX_NS 1000000L
#define DEFAULT_GRACE_MS 2000u
#define DEFAULT_MAX_CLIENTS 1024u
#ifndef EUSERS
#define EUSERS 87 /* Linux's value; mingw's errno.h has none */
#endif

struct bclient {
	uint32_t id;
	bool gone;
	struct llmp_receiver r;
	/* liveness: the creator of the page being read, 0 if unknown or ourselves */
	struct llmp_pidwatch watch;
	uint64_t pid_page;    /* r.pages_seen when pid was read */
	uint64_t msgs;        /* messages taken from this client */
	uint64_t dead_msgs;   /* msgs when the creator was found dead */
	uint64_t dead_since;  /* llmp_now_ns() of that, 0: alive */
	/* what the page being read is (identity, not spelling); space NONE: unknown */
	struct llmp_shmem_ident ident;
	/* who registered it: a quit is taken from that uid or root (reg_known) */
	bool reg_known, reg_remote;
	uint32_t reg_uid;
};

struct hook {
	llmp_hook_fn fn;
	void *ctx;
};

struct llmp_broker {
	struct llmp_provider *p;
	struct llmp_sender out;
	struct bclient *clients;
	unsigned n, cap;
	struct hook *hooks;
	unsigned nhooks;
	uint32_t next_id;
	unsigned exit_after;
	unsigned seen, left;
	int stop;           /* atomic */
	uint32_t sleeping;  /* atomic: the sleep announce word */
	bool exiting_sent;
	bool removals;
	uint64_t forwarded;
	uint64_t grace_ns;      /* dead_client_grace_ms */
	uint64_t next_check;    /* llmp_now_ns() of run()'s next liveness check */
	unsigned max_clients;   /* registrations beyond this many live clients are refused */
	bool cap_logged;        /* the cap was reported since the count last fell below it */
	bool remote_clients;    /* remote TCP peers may register pages */
};

int llmp_broker_new(struct llmp_provider *p, const struct llmp_broker_opts *opts,
		    struct llmp_broker **out)
{
	struct llmp_broker_opts o;
	struct llmp_sender_cfg cfg;
	struct llmp_broker *b;
	int ret;

	if (!p || !out)
		return llmp_err(-EINVAL, "broker new: NULL argument");
	memset(&o, 0, sizeof(o));
	if (opts) {
		if (opts->struct_size && opts->struct_size < offsetof(struct llmp_broker_opts,
								       exit_after))
			return llmp_err(-EINVAL, "broker opts: struct_size %u too small",
					opts->struct_size);
		memcpy(&o, opts, opts->struct_size && opts->struct_size < sizeof(o) ?
		       opts->struct_size : sizeof(o));
	}
	if (o.page_size && (o.page_size < LLMP_PAGE_MIN_SIZE || o.page_size > LLMP_SHMEM_MAX_SIZE))
		return llmp_err(-EINVAL, "broker opts: page_size %zu outside %u..%llu", o.page_size,
				LLMP_PAGE_MIN_SIZE, (unsigned long long)LLMP_SHMEM_MAX_SIZE);
	b = calloc(1, sizeof(*b));
	if (!b)
		return llmp_err(-ENOMEM, "broker new: out of memory");
	memset(&cfg, 0, sizeof(cfg));
	cfg.mode = o.keep_all_history ? LLMP_SENDER_KEEP_ALL : LLMP_SENDER_HISTORY;
	cfg.id = LLMP_BROKER_CLIENT_ID;
	cfg.page_size = o.page_size;
	cfg.history_bytes = o.history_bytes ? o.history_bytes : DEFAULT_HISTORY_BYTES;
	cfg.history_pages = o.history_pages;
	ret = llmp_sender_init(&b->out, p, &cfg);
	if (ret < 0) {
		free(b);
		return ret;
	}
	b->out.defer = true;
	b->p = p;
	b->next_id = 1;
	b->exit_after = o.exit_after;
	b->grace_ns = (uint64_t)(o.dead_client_grace_ms ? o.dead_client_grace_ms :
				 DEFAULT_GRACE_MS) * 1000000ull;
	b->max_clients = o.max_clients ? o.max_clients : DEFAULT_MAX_CLIENTS;
	b->remote_clients = o.allow_remote_clients;
	*out = b;
	return 0;
}

int llmp_broker_broadcast_desc(const struct llmp_broker *b, struct llmp_shmem_desc *d)
{
	if (!b || !d)
		return llmp_err(-EINVAL, "broker broadcast desc: NULL argument");
	*d = *llmp_sender_first_desc(&b->out);
	return 0;
}

/* Is d one of our own broadcast pages?  (A client must not make us read them.) */
static bool own_page(const struct llmp_broker *b, const struct llmp_shmem_desc *d)
{
	const struct llmp_sender *o = &b->out;

	for (unsigned i = 0; i < o->npages + o->ncache; i++) {
		const struct llmp_shmem *m = i < o->npages ? o->pages[i].shm :
					     o->cache[i - o->npages].shm;
		const struct llmp_shmem_desc *od = llmp_shmem_desc(m);

		if (od->kind == d->kind && !strncmp(od->id, d->id, LLMP_SHMEM_ID_LEN))
			return true;
	}
	return false;
}

#if defined(__linux__)
/*
 * Does process pid map the POSIX segment name?  A POSIX name carries the pid
 * as its creator saw it, which is another process when the creator lives in
 * another pid namespace (a container sharing /dev/shm): then we must not
 * watch it.  Read once per page, not per check.
 */
static bool pid_maps_posix(long pid, const char *name)
{
	char path[64], want[LLMP_SHMEM_ID_LEN + 16], line[512];
	bool found = false;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%ld/maps", pid);
	snprintf(want, sizeof(want), "/dev/shm%.*s", LLMP_SHMEM_ID_LEN, name);
	f = fopen(path, "re");
	if (!f)
		return false;
	while (!found && fgets(line, sizeof(line), f)) {
		char *nl = strchr(line, '\n');
		size_t n = strlen(want);

		if (nl)
			*nl = '\0';
		/* the path is the last field; " (deleted)" may follow it */
		for (char *q = strstr(line, want); q && !found; q = strstr(q + 1, want))
			found = q > line && q[-1] == ' ' && (q[n] == '\0' || q[n] == ' ');
	}
	fclose(f);
	return found;
}
#endif

/* Record who created the page c reads now, and watch that process. */
static void watch_creator(struct bclient *c)
{
	long pid = llmp_shmem_creator_pid(c->r.shm);

	c->pid_page = c->r.pages_seen;
	c->dead_since = 0;
	if (pid == c->watch.pid && (c->watch.fd >= 0 || pid == 0))
		return;
	if (llmp_pidwatch_set(&c->watch, pid) > 0) {
		c->dead_since = llmp_now_ns(); /* already gone */
		return;
	}
#if defined(__linux__)
	if (c->watch.fd >= 0 && llmp_shmem_desc(c->r.shm)->kind == LLMP_SHMEM_POSIX &&
	    !pid_maps_posix(c->watch.pid, llmp_shmem_desc(c->r.shm)->id) &&
	    !llmp_pid_exiting(c->watch.pid))
		/* not the creator as we see it (pid namespace, or reused): unknown; a dying
		 * creator maps nothing any more but is still the one its pidfd watches */
		llmp_pidwatch_close(&c->watch);
#endif
}

/* Is the segment id one of our own broadcast pages (cached ones too)? */
static bool own_ident(const struct llmp_broker *b, const struct llmp_shmem_ident *id)
{
	const struct llmp_sender *o = &b->out;

	for (unsigned i = 0; i < o->npages + o->ncache; i++) {
		const struct llmp_shmem *m = i < o->npages ? o->pages[i].shm :
					     o->cache[i - o->npages].shm;
		struct llmp_shmem_ident oid;

		if (llmp_shmem_ident(m, &oid) == 0 && llmp_shmem_ident_eq(&oid, id))
			return true;
	}
	return false;
}

/* The live client (other than skip) whose current page is id, or NULL. */
static const struct bclient *ident_reader(const struct llmp_broker *b,
					  const struct llmp_shmem_ident *id,
					  const struct bclient *skip)
{
	for (unsigned i = 0; i < b->n; i++) {
		const struct bclient *c = &b->clients[i];

		if (c != skip && !c->gone && llmp_shmem_ident_eq(&c->ident, id))
			return c;
	}
	return NULL;
}

/*
 * c's reader moved to another page (END_OF_PAGE): it must be spelled
 * canonically, be neither ours nor a page another client is read through.
 * 0, or -EBADMSG (the client is dropped).
 */
static int check_new_page(struct llmp_broker *b, struct bclient *c)
{
	const struct llmp_shmem_desc *d = llmp_receiver_desc(&c->r);
	const struct bclient *o;
	struct llmp_shmem_ident id;

	if (llmp_shmem_id_canonical(d) < 0)
		return llmp_err(-EBADMSG, "client %u: END_OF_PAGE names page %.20s in a "
				"non-canonical spelling", c->id, d->id);
	if (own_page(b, d))
		return llmp_err(-EBADMSG, "client %u: END_OF_PAGE leads into the broker's "
				"own pages", c->id);
	if (llmp_shmem_ident(c->r.shm, &id) < 0) {
		memset(&c->ident, 0, sizeof(c->ident));
		return 0;
	}
	if (own_ident(b, &id))
		return llmp_err(-EBADMSG, "client %u: END_OF_PAGE leads into the broker's "
				"own pages (page %.20s)", c->id, d->id);
	o = ident_reader(b, &id, c);
	if (o)
		return llmp_err(-EBADMSG, "client %u: END_OF_PAGE leads to page %.20s, which "
				"client %u is read through", c->id, d->id, o->id);
	c->ident = id;
	return 0;
}

/*
 * Register page d for whoever asked: peer NULL is the program itself
 * (llmp_broker_add_client), trusted; otherwise the page must be spelled
 * canonically, be new (not ours, not read for another client) and be one
 * the peer could have opened itself.  who names the asker in the log.
 */
static int register_page(struct llmp_broker *b, const struct llmp_shmem_desc *d,
			 const struct llmp_peer_cred *peer, const char *who)
{
	struct llmp_shmem_ident id;
	const struct bclient *o;
	struct bclient *c;
	uint32_t uid;
	char why[192];
	int ret;

	if (!b || !d)
		return llmp_err(-EINVAL, "broker add client: NULL argument");
	if (b->next_id > INT32_MAX)
		return llmp_err(-EOVERFLOW, "broker: client ids exhausted");
	if (peer && !peer->local && !b->remote_clients)
		return llmp_err(-EACCES, "broker: refused page %.20s from %s: remote peers may "
				"not register pages (allow_remote_clients is off)", d->id, who);
	if (llmp_shmem_id_canonical(d) < 0)
		return llmp_err(-EINVAL, "broker: refused page %.20s from %s: the id is not "
				"spelled as its provider writes it (an alias?)", d->id, who);
	if (own_page(b, d))
		return llmp_err(-EINVAL, "broker: page %.20s is one of the broker's own", d->id);
	if (llmp_broker_nclients(b) >= b->max_clients) {
		if (b->cap_logged)
			llmp_log_probe_begin(); /* said once; the rest at debug level */
		ret = llmp_err(-EUSERS, "broker: refused page %.20s from %s: %u clients, the "
			       "most this broker takes (max_clients)", d->id, who, b->max_clients);
		if (b->cap_logged)
			llmp_log_probe_end();
		b->cap_logged = true;
		return ret;
	}
	b->cap_logged = false;
	if (b->n == b->cap) {
		unsigned ncap = b->cap ? b->cap * 2 : 16;
		struct bclient *nc = realloc(b->clients, ncap * sizeof(*nc));

		if (!nc)
			return llmp_err(-ENOMEM, "broker: out of memory for clients");
		b->clients = nc;
		b->cap = ncap;
	}
	c = &b->clients[b->n];
	memset(c, 0, sizeof(*c));
	ret = llmp_receiver_init(&c->r, b->p, d, false, 0, true, NULL);
	if (ret < 0)
		return ret;
	if (llmp_shmem_ident(c->r.shm, &id) == 0) {
		if (own_ident(b, &id)) {
			ret = llmp_err(-EINVAL, "broker: refused page %.20s from %s: it is one of "
				       "the broker's own", d->id, who);
			goto refuse;
		}
		o = ident_reader(b, &id, NULL);
		if (o) {
			ret = llmp_err(-EEXIST, "broker: refused page %.20s from %s: client %u is "
				       "read through it already", d->id, who, o->id);
			goto refuse;
		}
		c->ident = id;
	} else if (peer) {
		ret = llmp_err(-EACCES, "broker: refused page %.20s from %s: cannot tell which "
			       "segment it is", d->id, who);
		goto refuse;
	}
	if (peer && peer->local && llmp_shmem_may_open(c->r.shm, peer, why, sizeof(why)) < 0) {
		ret = llmp_err(-EACCES, "broker: refused page %.20s from %s: it could not open "
			       "it itself (%s)", d->id, who, why);
		goto refuse;
	}
	if (peer) {
		c->reg_known = peer->known;
		c->reg_uid = peer->uid;
		c->reg_remote = !peer->local;
	} else if (llmp_shmem_owner_uid(c->r.shm, &uid) == 0) {
		c->reg_known = true;
		c->reg_uid = uid;
	}
	c->watch.fd = -1;
	watch_creator(c);
	c->id = b->next_id++;
	b->n++;
	b->seen++;
	llmp_log(LLMP_LOG_INFO, "broker: client %u registered (page %.20s)", c->id, d->id);
	return (int)c->id;
refuse:
	llmp_receiver_fini(&c->r);
	return ret;
}

int llmp_broker_register_desc(struct llmp_broker *b, const struct llmp_shmem_desc *d)
{
	return register_page(b, d, NULL, "the program");
}

int llmp_broker_register_peer(struct llmp_broker *b, const struct llmp_shmem_desc *d,
			      const struct llmp_peer_cred *peer, const char *who)
{
	if (!peer || !who)
		return llmp_err(-EINVAL, "broker register peer: NULL argument");
	return register_page(b, d, peer, who);
}

int llmp_broker_add_client(struct llmp_broker *b, const struct llmp_shmem_desc *out_page)
{
	return llmp_broker_register_desc(b, out_page);
}

uint32_t llmp_broker_next_id(const struct llmp_broker *b)
{
	return b->next_id;
}

int llmp_broker_add_hook(struct llmp_broker *b, llmp_hook_fn fn, void *ctx)
{
	struct hook *nh;

	if (!b || !fn)
		return llmp_err(-EINVAL, "broker add hook: NULL argument");
	nh = realloc(b->hooks, (b->nhooks + 1) * sizeof(*nh));
	if (!nh)
		return llmp_err(-ENOMEM, "broker add hook: out of memory");
	b->hooks = nh;
	b->hooks[b->nhooks].fn = fn;
	b->hooks[b->nhooks].ctx = ctx;
	b->nhooks++;
	return 0;
}

static bool tag_reserved(uint32_t tag)
{
	return tag == LLMP_TAG_UNSET || tag == LLMP_TAG_UNINITIALIZED ||
	       tag == LLMP_TAG_END_OF_PAGE || tag == LLMP_TAG_NEW_SHM_CLIENT;
}

/* Copy onto the broadcast page; published by the next flush (or every 64th). */
static int forward_deferred(struct llmp_broker *b, uint32_t sender, uint32_t tag, uint32_t flags,
			    uint32_t broker_id, const void *buf, size_t len)
{
	int ret;

	if (LLMP_UNLIKELY(tag_reserved(tag)))
		return llmp_err(-EINVAL, "broker forward: tag 0x%08x is reserved", tag);
	ret = llmp_sender_put(&b->out, tag, sender, broker_id, flags, buf, len);
	if (LLMP_LIKELY(ret == 0))
		b->forwarded++;
	return ret;
}

int llmp_broker_forward(struct llmp_broker *b, uint32_t sender, uint32_t tag, uint32_t flags,
			uint32_t broker_id, const void *buf, size_t len)
{
	int ret = forward_deferred(b, sender, tag, flags, broker_id, buf, len);

	llmp_sender_flush(&b->out);
	return ret;
}

int llmp_broker_send(struct llmp_broker *b, uint32_t tag, uint32_t flags,
		     const void *buf, size_t len)
{
	if (!b || (!buf && len))
		return llmp_err(-EINVAL, "broker send: NULL argument");
	return llmp_broker_forward(b, LLMP_BROKER_CLIENT_ID, tag, flags, 0, buf, len);
}

static struct bclient *find_client(struct llmp_broker *b, uint32_t id)
{
	unsigned lo = 0, hi = b->n;

	/* ids are handed out in increasing order and the array stays sorted */
	while (lo < hi) {
		unsigned mid = (lo + hi) / 2;

		if (b->clients[mid].id < id)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < b->n && b->clients[lo].id == id ? &b->clients[lo] : NULL;
}

int llmp_broker_remove_client(struct llmp_broker *b, uint32_t id)
{
	struct bclient *c = b ? find_client(b, id) : NULL;

	if (!c || c->gone)
		return llmp_err(-ENOENT, "broker: no client %u", id);
	c->gone = true;
	b->removals = true;
	b->left++;
	return 0;
}

int llmp_broker_quit_client(struct llmp_broker *b, uint32_t id, const struct llmp_peer_cred *peer,
			    const char *who)
{
	struct bclient *c = b && peer ? find_client(b, id) : NULL;
	bool ok;

	if (!c || c->gone)
		return llmp_err(-ENOENT, "broker: no client %u", id);
	if (peer->local)
		ok = peer->known && (peer->uid == 0 || (c->reg_known && c->reg_uid == peer->uid));
	else
		ok = b->remote_clients && c->reg_remote;
	if (!ok) {
		if (c->reg_known)
			return llmp_err(-EPERM, "broker: %s may not remove client %u (registered by "
					"uid %u)", who, id, c->reg_uid);
		return llmp_err(-EPERM, "broker: %s may not remove client %u (only root may)",
				who, id);
	}
	return llmp_broker_remove_client(b, id);
}

static void reap(struct llmp_broker *b)
{
	unsigned j = 0;

	for (unsigned i = 0; i < b->n; i++) {
		if (b->clients[i].gone) {
			llmp_receiver_fini(&b->clients[i].r);
			llmp_pidwatch_close(&b->clients[i].watch);
			continue;
		}
		if (i != j)
			b->clients[j] = b->clients[i];
		j++;
	}
	b->n = j;
	b->removals = false;
}

/* A hook chain verdict, then the copy to the broadcast page. */
static int deliver(struct llmp_broker *b, uint32_t id, const struct llmp_rmsg *m)
{
	uint32_t tag = m->tag, flags = m->flags;
	const void *buf = m->buf;
	size_t len = m->len;

	for (unsigned h = 0; h < b->nhooks; h++)
		if (b->hooks[h].fn(b->hooks[h].ctx, b, id, &tag, &flags, &buf, &len) ==
		    LLMP_HOOK_DROP)
			return 0;
	if (LLMP_UNLIKELY(tag_reserved(tag) || (!buf && len))) {
		llmp_log(LLMP_LOG_WARN, "broker: hook rewrote a message of client %u to a reserved "
			 "tag 0x%08x; dropped", id, tag);
		return 0;
	}
	return forward_deferred(b, m->sender, tag, flags, m->broker, buf, len);
}

static void new_shm_client(struct llmp_broker *b, unsigned idx, const struct llmp_rmsg *m,
			   enum llmp_shmem_kind kind)
{
	struct llmp_peer_cred owner = { .local = true };
	uint32_t from = b->clients[idx].id;
	struct llmp_page_info info;
	struct llmp_shmem_desc d;
	char who[64];
	int ret;

	if (m->len < sizeof(info)) {
		llmp_log(LLMP_LOG_WARN, "broker: short NEW_SHM_CLIENT from client %u ignored", from);
		return;
	}
	memcpy(&info, m->buf, sizeof(info));
	if (!memchr(info.id, 0, sizeof(info.id)) || info.map_size > LLMP_SHMEM_MAX_SIZE) {
		llmp_log(LLMP_LOG_WARN, "broker: invalid NEW_SHM_CLIENT from client %u ignored",
			 from);
		return;
	}
	memset(&d, 0, sizeof(d));
	d.kind = kind;
	d.size = info.map_size;
	memcpy(d.id, info.id, sizeof(d.id));
	/* The page must be one the owner of the page this came on could open. */
	owner.known = llmp_shmem_owner_uid(b->clients[idx].r.shm, &owner.uid) == 0;
	snprintf(who, sizeof(who), "client %u (NEW_SHM_CLIENT)", from);
	ret = register_page(b, &d, &owner, who);
	if (ret < 0)
		llmp_log(LLMP_LOG_WARN, "broker: NEW_SHM_CLIENT from client %u: page %.20s not "
			 "registered (%d)", from, d.id, ret);
}

/* Drain one client (by index); returns messages handled. */
static int drain(struct llmp_broker *b, unsigned idx)
{
	int handled = 0;

	for (int k = 0; k < DRAIN_BATCH; k++) {
		struct bclient *c = &b->clients[idx];
		struct llmp_rmsg m;
		uint32_t id = c->id, xid;
		uint64_t seen;
		int ret;

		if (c->gone)
			break;
		seen = c->r.pages_seen;
		ret = llmp_receiver_next(&c->r, &m);
		if (LLMP_UNLIKELY(c->r.pages_seen != seen) && ret >= 0) {
			int bad = check_new_page(b, c);

			if (bad < 0)
				ret = bad;
		}
		if (ret == 0)
			break;
		if (ret < 0) {
			if (ret == -ESHUTDOWN)
				llmp_log(LLMP_LOG_INFO, "broker: client %u exited", id);
			else
				llmp_log(LLMP_LOG_ERROR, "broker: client %u dropped: %s (%d)", id,
					 llmp_strerror_last(), ret);
			c->gone = true;
			b->removals = true;
			b->left++;
			break;
		}
		handled++;
		switch (m.tag) {
		case LLMP_TAG_NEW_SHM_CLIENT:
			new_shm_client(b, idx, &m, (enum llmp_shmem_kind)
				       llmp_receiver_desc(&c->r)->kind);
			break;
		case LLMP_TAG_CLIENT_EXIT:
			if (m.len < sizeof(xid)) {
				llmp_log(LLMP_LOG_WARN, "broker: short CLIENT_EXIT from %u", id);
				break;
			}
			memcpy(&xid, m.buf, sizeof(xid));
			if (llmp_broker_remove_client(b, xid) == 0)
				llmp_log(LLMP_LOG_INFO, "broker: client %u removed by client %u",
					 xid, id);
			break;
		case LLMP_TAG_SLOW_RECEIVER_PANIC:
			llmp_log(LLMP_LOG_ERROR, "broker: client %u gave up (slow receiver); dropped",
				 id);
			c->gone = true;
			b->removals = true;
			b->left++;
			break;
		default:
			/*
			 * Without hooks the message goes out as it came: the reader
			 * already refused UNSET, UNINITIALIZED and END_OF_PAGE, and
			 * NEW_SHM_CLIENT is handled above, so no tag check either.
			 */
			if (LLMP_LIKELY(!b->nhooks)) {
				ret = llmp_sender_put(&b->out, m.tag, m.sender, m.broker, m.flags,
						      m.buf, m.len);
				if (LLMP_LIKELY(ret == 0))
					b->forwarded++;
			} else {
				ret = deliver(b, id, &m);
			}
			if (ret == -EMSGSIZE) {
				llmp_log(LLMP_LOG_WARN, "broker: a %zu-byte message of client %u "
					 "is too large to forward; dropped", m.len, id);
				continue;
			}
			if (ret < 0) {
				llmp_sender_flush(&b->out);
				return ret;
			}
		}
	}
	llmp_sender_flush(&b->out);
	b->clients[idx].msgs += (unsigned)handled;
	return handled;
}

int llmp_broker_once(struct llmp_broker *b)
{
	unsigned n;
	int total = 0;

	if (!b)
		return llmp_err(-EINVAL, "broker once: NULL argument");
	n = b->n; /* clients registered during this pass are served next pass */
	for (unsigned i = 0; i < n; i++) {
		int ret = drain(b, i);

		if (ret < 0)
			return ret;
		total += ret;
	}
	if (b->removals)
		reap(b);
	return total;
}

int llmp_broker_check_clients(struct llmp_broker *b)
{
	unsigned n, dropped = 0;
	uint64_t now;

	if (!b)
		return llmp_err(-EINVAL, "broker check clients: NULL argument");
	now = llmp_now_ns();
	n = b->n;
	for (unsigned i = 0; i < n; i++) {
		struct bclient *c = &b->clients[i];
		bool memfd;
		int ret;

		if (c->gone)
			continue;
		if (c->r.pages_seen != c->pid_page)
			watch_creator(c); /* a page made by someone else, e.g. a restarted client */
		if (!llmp_pidwatch_dead(&c->watch)) {
			c->dead_since = 0;
			continue;
		}
		/*
		 * Whatever it committed is forwarded before it is dropped.  A MEMFD
		 * chain is finite now and drained to its end; a SYSV/POSIX one may
		 * have a restarted writer, so one batch per check (the grace period
		 * runs only while nothing new arrives).
		 */
		memfd = c->r.shm && llmp_shmem_desc(c->r.shm)->kind == LLMP_SHMEM_MEMFD;
		do
			ret = drain(b, i);
		while (memfd && ret > 0 && !b->clients[i].gone);
		if (ret < 0)
			return ret;
		c = &b->clients[i];
		if (c->gone)
			continue; /* it said goodbye (EXITING) or its page went bad */
		if (c->r.pages_seen != c->pid_page) {
			watch_creator(c);
			continue;
		}
		if (!memfd) {
			/* SYSV/POSIX pages outlive their creator: a restart may reattach */
			if (!c->dead_since || c->msgs != c->dead_msgs) {
				c->dead_since = now;
				c->dead_msgs = c->msgs;
				continue;
			}
			if (now - c->dead_since < b->grace_ns)
				continue;
		}
		llmp_log(LLMP_LOG_INFO, "broker: client %u (pid %ld) died; dropped", c->id, c->watch.pid);
		c->gone = true;
		b->removals = true;
		b->left++;
		dropped++;
	}
	if (b->removals)
		reap(b);
	return (int)dropped;
}

static int send_exiting(struct llmp_broker *b)
{
	int ret;

	if (b->exiting_sent)
		return 0;
	llmp_sender_cancel(&b->out);
	ret = llmp_broker_forward(b, LLMP_BROKER_CLIENT_ID, LLMP_TAG_EXITING, 0, 0, NULL, 0);
	if (ret == 0)
		b->exiting_sent = true;
	return ret;
}

static bool exit_due(const struct llmp_broker *b)
{
	return b->exit_after && b->left >= b->exit_after && b->n == 0;
}

int llmp_broker_run(struct llmp_broker *b)
{
	unsigned idle = 0, passes = 0;
	long nap_ns = RUN_NAP_MIN_NS;

	if (!b)
		return llmp_err(-EINVAL, "broker run: NULL argument");
	/* pairs with the store in llmp_broker_stop (a flag, no data attached) */
	while (!__atomic_load_n(&b->stop, __ATOMIC_RELAXED)) {
		int ret = llmp_broker_once(b);

		if (ret < 0)
			return ret;
		if ((ret == 0 || (++passes & 63) == 0) && llmp_now_ns() >= b->next_check) {
			int d = llmp_broker_check_clients(b);

			if (d < 0)
				return d;
			b->next_check = llmp_now_ns() + CHECK_EVERY_NS;
		}
		if (exit_due(b))
			break;
		if (ret > 0) {
			idle = 0;
			nap_ns = RUN_NAP_MIN_NS;
			continue;
		}
		if (idle < 320) {
			llmp_backoff(&idle); /* spin, then yield */
			continue;
		}
		/* announce the sleep, then look once more; pairs with the waker's load */
		__atomic_store_n(&b->sleeping, 1, __ATOMIC_SEQ_CST);
		ret = llmp_broker_once(b);
		if (ret == 0) {
			/*
			 * A nap that doubles while nothing arrives, up to 1 ms: an
			 * idle broker costs ~1% of a CPU instead of a 50 us poll's
			 * ~12%, and a message waits at most one nap.  The event loop
			 * (llmp_loop_run) sleeps until woken instead.
			 */
			struct timespec ts = { 0, nap_ns };

			nanosleep(&ts, NULL);
			if (nap_ns < RUN_NAP_MAX_NS)
				nap_ns = nap_ns * 2 < RUN_NAP_MAX_NS ? nap_ns * 2 : RUN_NAP_MAX_NS;
		}
		/* same word: awake */
		__atomic_store_n(&b->sleeping, 0, __ATOMIC_SEQ_CST);
		if (ret < 0)
			return ret;
		idle = ret > 0 ? 0 : 320;
		if (ret > 0)
			nap_ns = RUN_NAP_MIN_NS;
	}
	return send_exiting(b);
}

void llmp_broker_stop(struct llmp_broker *b)
{
	if (b)
		/* read by the loop in llmp_broker_run */
		__atomic_store_n(&b->stop, 1, __ATOMIC_RELAXED);
}

unsigned llmp_broker_nclients(const struct llmp_broker *b)
{
	unsigned n = 0;

	if (!b)
		return 0;
	for (unsigned i = 0; i < b->n; i++)
		n += !b->clients[i].gone;
	return n;
}

struct llmp_sender *llmp_broker_bcast(struct llmp_broker *b)
{
	return &b->out;
}

struct llmp_provider *llmp_broker_provider(const struct llmp_broker *b)
{
	return b->p;
}

bool llmp_broker_stop_requested(const struct llmp_broker *b)
{
	/* written by llmp_broker_stop */
	return __atomic_load_n(&b->stop, __ATOMIC_RELAXED) != 0;
}

uint32_t *llmp_broker_sleep_word(struct llmp_broker *b)
{
	return &b->sleeping;
}

uint64_t llmp_broker_forwarded(const struct llmp_broker *b)
{
	return b->forwarded;
}

uint64_t llmp_broker_pages_dropped(const struct llmp_broker *b)
{
	return b->out.pages_dropped;
}

void llmp_broker_free(struct llmp_broker *b)
{
	if (!b)
		return;
	(void)send_exiting(b);
	for (unsigned i = 0; i < b->n; i++) {
		llmp_receiver_fini(&b->clients[i].r);
		llmp_pidwatch_close(&b->clients[i].watch);
	}
	free(b->clients);
	free(b->hooks);
	llmp_sender_fini(&b->out);
	free(b);
}
