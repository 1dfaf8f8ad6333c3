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

#include "broker_state.h"

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
	b->out.wake_readers = true; /* for llmp_client_event_fd() */
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
	llmp_sender_wake(&b->out);
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

bool llmp_broker_client_live(const struct llmp_broker *b, uint32_t id)
{
	const struct bclient *c = b && id ? find_client((struct llmp_broker *)b, id) : NULL;

	return c && !c->gone;
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
	ret = llmp_broker_register_page(b, &d, &owner, who);
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
			int bad = llmp_broker_check_new_page(b, c);

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
		int ret;

		/* Lossless: the history is full of pages a receiver still reads; take nothing. */
		if (LLMP_UNLIKELY(b->out.held) && !llmp_sender_retrim(&b->out))
			break;
		ret = drain(b, i);
		if (ret < 0)
			return ret;
		total += ret;
	}
	if (b->removals)
		reap(b);
	llmp_sender_wake(&b->out);
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
			llmp_broker_watch_creator(c); /* a page made by someone else, e.g. a restarted client */
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
			llmp_broker_watch_creator(c);
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
	memset(b->secret, 0, sizeof(b->secret));
	free(b);
}
