// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * An LLMP client: its own chain of out pages (one writer) and a reader of
 * the broker's broadcast pages.  Restart support saves both positions in
 * the environment.  See Documentation/protocol.rst.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker_internal.h"
#include "client_internal.h"
#include "ctl.h"
#include "llmp/broker.h"


#if defined(_WIN32)
static int setenv(const char *name, const char *value, int overwrite)
{
	(void)overwrite;
	return _putenv_s(name, value) ? -1 : 0;
}
#endif

#define ENV_NULL "_NULL"
#define ENV_NAME_MAX 256
#define DEFAULT_TIMEOUT_MS 10000

static int opts_load(const struct llmp_client_opts *opts, struct llmp_client_opts *o)
{
	memset(o, 0, sizeof(*o));
	if (!opts) {
		o->send_timeout_ms = DEFAULT_TIMEOUT_MS;
		return 0;
	}
	if (opts->struct_size && opts->struct_size < offsetof(struct llmp_client_opts, skip_own))
		return llmp_err(-EINVAL, "client opts: struct_size %u too small", opts->struct_size);
	memcpy(o, opts, opts->struct_size && opts->struct_size < sizeof(*o) ?
	       opts->struct_size : sizeof(*o));
	if (o->page_size && (o->page_size < LLMP_PAGE_MIN_SIZE || o->page_size > LLMP_SHMEM_MAX_SIZE))
		return llmp_err(-EINVAL, "client opts: page_size %zu outside %u..%llu", o->page_size,
				LLMP_PAGE_MIN_SIZE, (unsigned long long)LLMP_SHMEM_MAX_SIZE);
	/* Zero means the default, as opts == NULL does; "never wait" has its own value. */
	if (o->send_timeout_ms == 0)
		o->send_timeout_ms = DEFAULT_TIMEOUT_MS;
	else if (o->send_timeout_ms == LLMP_NO_WAIT)
		o->send_timeout_ms = 0;
	else if (o->send_timeout_ms < -1)
		return llmp_err(-EINVAL, "client opts: send_timeout_ms %d (-1 forever, LLMP_NO_WAIT, "
				"0 the default, or milliseconds)", o->send_timeout_ms);
	return 0;
}

static void cfg_from_opts(const struct llmp_client_opts *o, struct llmp_sender_cfg *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->mode = LLMP_SENDER_PRUNE;
	cfg->page_size = o->page_size;
	cfg->max_in_flight = o->max_pages_in_flight;
	cfg->timeout_ms = o->send_timeout_ms;
}

/*
 * join_at_newest: read past everything the broadcast history holds now,
 * without handing it out, so the first recv returns the first message
 * broadcast after the join.  Pages dropped meanwhile are not this client's
 * loss.  0 or <0.
 */
static int skip_history(struct llmp_client *c)
{
	uint64_t skipped = c->in.pages_skipped;
	struct llmp_rmsg m;
	unsigned stale = 0;
	int ret;

	while ((ret = llmp_receiver_next(&c->in, &m)) != 0) {
		if (ret == -ESTALE && ++stale < 1024)
			continue; /* the history moved on while we read: go on at its start */
		if (ret < 0) {
			c->in.pages_skipped = skipped;
			/* A broker that already exited: the next recv says so again. */
			return ret == -ESHUTDOWN ? 0 : ret;
		}
	}
	c->in.pages_skipped = skipped;
	return 0;
}

/*
 * The last steps of making a client, once its pages are set up: the
 * LLMP_DEBUG_RECV guard and the watch on the broker.  On failure the pages
 * are released (the caller frees c).
 */
static int client_finish(struct llmp_client *c)
{
	int ret = llmp_client_guard_init(c);

	if (ret < 0) {
		llmp_receiver_fini(&c->in);
		llmp_sender_fini(&c->out);
		return ret;
	}
	llmp_client_watch_broker(c);
	return 0;
}

int llmp_client_new(struct llmp_provider *p, const struct llmp_shmem_desc *broadcast,
		    const struct llmp_client_opts *opts, struct llmp_client **out)
{
	struct llmp_client_opts o;
	struct llmp_sender_cfg cfg;
	struct llmp_client *c;
	int ret;

	if (!p || !broadcast || !out)
		return llmp_err(-EINVAL, "client new: NULL argument");
	ret = opts_load(opts, &o);
	if (ret < 0)
		return ret;
	c = calloc(1, sizeof(*c));
	if (!c)
		return llmp_err(-ENOMEM, "client new: out of memory");
	c->p = p;
	c->skip_own = o.skip_own;
	c->timeout_ms = o.send_timeout_ms;
	cfg_from_opts(&o, &cfg);
	ret = llmp_sender_init(&c->out, p, &cfg);
	if (ret < 0)
		goto fail;
	ret = llmp_receiver_init(&c->in, p, broadcast, false, 0, false, broadcast);
	if (ret < 0) {
		llmp_sender_fini(&c->out);
		goto fail;
	}
	ret = client_finish(c);
	if (ret < 0)
		goto fail;
	if (o.join_at_newest) {
		ret = skip_history(c);
		if (ret < 0) {
			llmp_client_guard_free(c);
			llmp_pidwatch_close(&c->bw);
			llmp_receiver_fini(&c->in);
			llmp_sender_fini(&c->out);
			goto fail;
		}
	}
	*out = c;
	return 0;
fail:
	free(c);
	return ret;
}

int llmp_client_out_desc(const struct llmp_client *c, struct llmp_shmem_desc *d)
{
	if (!c || !d)
		return llmp_err(-EINVAL, "client out desc: NULL argument");
	*d = *llmp_sender_first_desc(&c->out);
	return 0;
}

uint32_t llmp_client_id(const struct llmp_client *c)
{
	return c ? c->out.id : 0;
}

void llmp_client_set_id(struct llmp_client *c, uint32_t id)
{
	if (!c)
		return;
	llmp_sender_set_id(&c->out, id);
	if (c->waker && id)
		(void)llmp_waker_claim(c->waker, id); /* -ENOSPC: the loop naps for us */
}

int llmp_client_report_exit(struct llmp_client *c, uint32_t client_id)
{
	int ret;

	if (!c)
		return llmp_err(-EINVAL, "client report exit: NULL client");
	if (client_id == LLMP_BROKER_CLIENT_ID)
		return llmp_err(-EINVAL, "client report exit: id 0 is the broker's");
	ret = llmp_sender_send(&c->out, LLMP_TAG_CLIENT_EXIT, 0, &client_id, sizeof(client_id));
	if (ret == 0 && c->waker)
		(void)llmp_waker_poke(c->waker);
	return ret;
}

int llmp_client_send(struct llmp_client *c, uint32_t tag, uint32_t flags,
		     const void *buf, size_t len)
{
	int ret;

	if (LLMP_UNLIKELY(!c || (!buf && len)))
		return llmp_err(-EINVAL, "client send: NULL argument");
	if (LLMP_UNLIKELY(llmp_tag_reserved(tag)))
		return llmp_err(-EINVAL, "client send: tag 0x%08x is reserved", tag);
	ret = llmp_client_broker_gone(c);
	if (LLMP_UNLIKELY(ret < 0))
		return ret;
	ret = llmp_sender_send(&c->out, tag, flags, buf, len);
	if (ret == 0 && c->waker)
		(void)llmp_waker_poke(c->waker);
	return ret;
}

int llmp_client_alloc(struct llmp_client *c, size_t len, void **buf)
{
	struct llmp_msg *m;
	int ret;

	if (!c || !buf)
		return llmp_err(-EINVAL, "client alloc: NULL argument");
	ret = llmp_client_broker_gone(c);
	if (LLMP_UNLIKELY(ret < 0))
		return ret;
	ret = llmp_sender_alloc(&c->out, len, &m);
	if (ret < 0)
		return ret;
	*buf = m->buf;
	return 0;
}

int llmp_client_commit(struct llmp_client *c, uint32_t tag, uint32_t flags, size_t len)
{
	struct llmp_msg *m;
	int ret;

	if (!c)
		return llmp_err(-EINVAL, "client commit: NULL argument");
	m = c->out.pending;
	if (!m)
		return llmp_err(-EINVAL, "client commit: nothing allocated");
	if (llmp_tag_reserved(tag))
		return llmp_err(-EINVAL, "client commit: tag 0x%08x is reserved", tag);
	if (len != m->buf_len) {
		ret = llmp_sender_shrink(&c->out, len);
		if (ret < 0)
			return ret;
	}
	m->tag = tag;
	m->flags = flags;
	ret = llmp_sender_commit(&c->out, true);
	if (ret == 0 && c->waker)
		(void)llmp_waker_poke(c->waker);
	return ret;
}

void llmp_client_set_waker(struct llmp_client *c, struct llmp_waker *w)
{
	if (!c)
		return;
	if (c->waker != w)
		llmp_waker_free(c->waker);
	c->waker = w;
	c->rep_seen = 0; /* the next recv reports where we read (lossless mode) */
	/* Tell the loop that this client pokes: it need not nap for it. */
	if (w && c->out.id)
		(void)llmp_waker_claim(w, c->out.id); /* -ENOSPC: the loop naps for us */
}

void llmp_client_cancel(struct llmp_client *c)
{
	if (c)
		llmp_sender_cancel(&c->out);
}

int llmp_client_announce(struct llmp_client *c, const struct llmp_shmem_desc *d)
{
	struct llmp_page_info info;

	if (!c || !d)
		return llmp_err(-EINVAL, "client announce: NULL argument");
	if (!memchr(d->id, 0, sizeof(d->id)))
		return llmp_err(-EINVAL, "client announce: id not terminated");
	memset(&info, 0, sizeof(info));
	info.map_size = d->size;
	memcpy(info.id, d->id, sizeof(info.id));
	return llmp_sender_send(&c->out, LLMP_TAG_NEW_SHM_CLIENT, 0, &info, sizeof(info));
}

/* ---- restart: environment ----------------------------------------------- */

static int env_name(char *buf, const char *name, const char *suffix)
{
	int n = snprintf(buf, ENV_NAME_MAX, "%s%s", name, suffix);

	if (n < 0 || n >= ENV_NAME_MAX)
		return llmp_err(-ENAMETOOLONG, "env name '%.64s%s' too long", name, suffix);
	return 0;
}

static int env_set_u64(const char *name, const char *suffix, bool has, uint64_t v)
{
	char key[ENV_NAME_MAX], val[32];
	int ret = env_name(key, name, suffix);

	if (ret < 0)
		return ret;
	if (has)
		snprintf(val, sizeof(val), "%" PRIu64, v);
	else
		snprintf(val, sizeof(val), "%s", ENV_NULL);
	if (setenv(key, val, 1))
		return llmp_err(-errno, "setenv %s failed", key);
	return 0;
}

/* 1 and *v if set to a number, 0 if _NULL, <0 if missing or invalid. */
static int env_get_u64(const char *name, const char *suffix, uint64_t *v)
{
	char key[ENV_NAME_MAX], *end;
	const char *s;
	int ret = env_name(key, name, suffix);

	if (ret < 0)
		return ret;
	s = getenv(key);
	if (!s)
		return llmp_err(-ENOENT, "env %s is not set", key);
	if (!strcmp(s, ENV_NULL))
		return 0;
	errno = 0;
	*v = strtoull(s, &end, 10);
	if (errno || end == s || *end || *s == '-')
		return llmp_err(-EINVAL, "env %s='%.32s' is not a number", key, s);
	return 1;
}

/*
 * Restart by exec and the pages of the old image.  POSIX and SYSV segments
 * stay until their creator destroys them, and an exec loses the old image's
 * mappings and owner flags.  The new image reattaches the current out page
 * and adopts it (llmp_shmem_adopt: same pid, no owner left here), so its
 * release destroys it again.  The other out pages the old image held (those
 * the broker has left, and retired ones kept for reuse) are named in
 * NAME_SENDER_OLD ("id:size,id:size...", ours; LibAFL ignores it): the new
 * image destroys those the broker has left.  A page chained after the
 * saved one by the old image is reattached but not adopted.
 */
#define OLD_PAGES_MAX 32
#define OLD_ENV_LEN (OLD_PAGES_MAX * (LLMP_SHMEM_ID_LEN + 24))

static void old_pages_add(char *buf, size_t *n, const struct llmp_spage *sp)
{
	const struct llmp_shmem_desc *d = llmp_shmem_desc(sp->shm);
	int k;

	if (d->kind != LLMP_SHMEM_POSIX && d->kind != LLMP_SHMEM_SYSV)
		return; /* the other kinds free themselves */
	k = snprintf(buf + *n, OLD_ENV_LEN - *n, "%s%.19s:%llu", *n ? "," : "", d->id,
		     (unsigned long long)d->size);
	if (k > 0 && (size_t)k < OLD_ENV_LEN - *n)
		*n += (size_t)k;
	else
		buf[*n] = '\0'; /* no room: that one stays an orphan */
}

static int old_pages_to_env(const struct llmp_sender *s, const char *name)
{
	char key[ENV_NAME_MAX], val[OLD_ENV_LEN];
	size_t n = 0;
	int ret = env_name(key, name, "_SENDER_OLD");

	if (ret < 0)
		return ret;
	val[0] = '\0';
	for (unsigned i = 0; i < s->ncache; i++)
		old_pages_add(val, &n, &s->cache[i]);
	for (unsigned i = 0; i + 1 < s->npages; i++)
		old_pages_add(val, &n, &s->pages[i]);
	if (setenv(key, n ? val : "-", 1))
		return llmp_err(-errno, "setenv %s failed", key);
	return 0;
}

/* In the new image: destroy the old image's pages the broker has left. */
static void old_pages_from_env(struct llmp_provider *p, uint32_t kind, const char *name)
{
	char key[ENV_NAME_MAX], val[OLD_ENV_LEN];
	const char *e;
	char *save = NULL, *tok;

	if (env_name(key, name, "_SENDER_OLD") < 0 || !(e = getenv(key)) || !strcmp(e, "-"))
		return;
	snprintf(val, sizeof(val), "%s", e);
	for (tok = strtok_r(val, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		struct llmp_shmem_desc d;
		struct llmp_shmem *m;
		struct llmp_page *pg;
		char *colon = strrchr(tok, ':'), *end;
		unsigned long long size;

		if (!colon || colon == tok || (size_t)(colon - tok) >= LLMP_SHMEM_ID_LEN)
			continue;
		errno = 0;
		size = strtoull(colon + 1, &end, 10);
		if (errno || *end || size < sizeof(struct llmp_page))
			continue;
		memset(&d, 0, sizeof(d));
		d.kind = kind;
		d.size = size;
		memcpy(d.id, tok, (size_t)(colon - tok));
		llmp_log_probe_begin(); /* gone already is fine */
		if (llmp_shmem_attach(p, &d, &m) < 0) {
			llmp_log_probe_end();
			continue;
		}
		llmp_log_probe_end();
		pg = llmp_shmem_addr(m);
		/*
		 * Left by the broker (pairs with its release increment of left
		 * when it moves on), or retired: nobody reads it any more.
		 */
		if ((__atomic_load_n(&pg->receivers_left, __ATOMIC_ACQUIRE) >= 1 ||
		     __atomic_load_n(&pg->magic, __ATOMIC_ACQUIRE) == LLMP_PAGE_MAGIC_DEINIT) &&
		    llmp_shmem_adopt(m) == 1)
			/* pairs with the acquire load of the magic in recv_follow / llmp_page_check */
			__atomic_store_n(&pg->magic, LLMP_PAGE_MAGIC_DEINIT, __ATOMIC_RELEASE);
		llmp_shmem_put(m); /* destroys it if adopted */
	}
}

int llmp_client_to_env(const struct llmp_client *c, const char *name)
{
	char key[ENV_NAME_MAX];
	uint64_t off = 0;
	bool has;
	int ret;

	if (!c || !name)
		return llmp_err(-EINVAL, "client to env: NULL argument");
	ret = env_name(key, name, "_SENDER");
	if (ret < 0)
		return ret;
	ret = llmp_shmem_desc_to_env(llmp_sender_desc(&c->out), key);
	if (ret < 0)
		return ret;
	has = llmp_sender_last_offset(&c->out, &off);
	ret = env_set_u64(name, "_SENDER_OFFSET", has, off);
	if (ret < 0)
		return ret;
	ret = env_set_u64(name, "_SENDER_CLIENT_ID", true, c->out.id);
	if (ret < 0)
		return ret;
	ret = old_pages_to_env(&c->out, name);
	if (ret < 0)
		return ret;
	ret = env_name(key, name, "_RECEIVER");
	if (ret < 0)
		return ret;
	ret = llmp_shmem_desc_to_env(llmp_receiver_desc(&c->in), key);
	if (ret < 0)
		return ret;
	has = c->in.last_off != 0;
	off = has ? c->in.last_off - LLMP_PAGE_HEADER_LEN : 0;
	ret = env_set_u64(name, "_RECEIVER_OFFSET", has, off);
	if (ret < 0)
		return ret;
	ret = env_name(key, name, "_BROADCAST");
	if (ret < 0)
		return ret;
	return llmp_shmem_desc_to_env(&c->in.anchor, key);
}

int llmp_client_from_env(struct llmp_provider *p, const char *name,
			 const struct llmp_client_opts *opts, struct llmp_client **out)
{
	struct llmp_shmem_desc sd, rd, bd;
	struct llmp_client_opts o;
	struct llmp_sender_cfg cfg;
	struct llmp_client *c;
	char key[ENV_NAME_MAX];
	uint64_t soff = 0, roff = 0, id = 0;
	int hs, hr, hid, ret;

	if (!p || !name || !out)
		return llmp_err(-EINVAL, "client from env: NULL argument");
	ret = opts_load(opts, &o);
	if (ret < 0)
		return ret;
	if ((ret = env_name(key, name, "_SENDER")) < 0 ||
	    (ret = llmp_shmem_desc_from_env(key, &sd)) < 0)
		return ret;
	if ((ret = env_name(key, name, "_RECEIVER")) < 0 ||
	    (ret = llmp_shmem_desc_from_env(key, &rd)) < 0)
		return ret;
	if ((ret = env_name(key, name, "_BROADCAST")) < 0)
		return ret;
	if (llmp_shmem_desc_from_env(key, &bd) < 0)
		bd = rd; /* written by LibAFL: no anchor; use the receiver page */
	hs = env_get_u64(name, "_SENDER_OFFSET", &soff);
	hr = env_get_u64(name, "_RECEIVER_OFFSET", &roff);
	hid = env_get_u64(name, "_SENDER_CLIENT_ID", &id);
	if (hs < 0 || hr < 0 || hid < 0)
		return hs < 0 ? hs : hr < 0 ? hr : hid;
	if (id > UINT32_MAX)
		return llmp_err(-EINVAL, "client from env: client id %" PRIu64 " too large", id);
	c = calloc(1, sizeof(*c));
	if (!c)
		return llmp_err(-ENOMEM, "client from env: out of memory");
	c->p = p;
	c->skip_own = o.skip_own;
	c->timeout_ms = o.send_timeout_ms;
	cfg_from_opts(&o, &cfg);
	cfg.id = (uint32_t)id;
	ret = llmp_sender_attach(&c->out, p, &cfg, &sd, hs == 1, soff);
	if (ret == -ENOENT && id == 0 && sd.kind != LLMP_SHMEM_POSIX &&
	    sd.kind != LLMP_SHMEM_SYSV) {
		/*
		 * Never registered (client id 0): no broker holds or reads the
		 * saved out page, and a kind that frees a segment with its last
		 * holder (KMOD, SERVED, MEMFD) let it go with the old image at
		 * exec.  Nobody read it: start a fresh one.
		 */
		llmp_log(LLMP_LOG_INFO, "client from env: out page %.19s is gone and no broker "
			 "knew it; starting a new one", sd.id);
		ret = llmp_sender_init(&c->out, p, &cfg);
	}
	if (ret < 0)
		goto fail;
	/* our out pages from before an exec: ours to destroy again (see above) */
	for (unsigned i = 0; i < c->out.npages; i++)
		(void)llmp_shmem_adopt(c->out.pages[i].shm);
	old_pages_from_env(p, sd.kind, name);
	ret = llmp_receiver_init(&c->in, p, &rd, hr == 1, roff, false, &bd);
	if (ret < 0) {
		llmp_sender_fini(&c->out);
		goto fail;
	}
	ret = client_finish(c);
	if (ret < 0)
		goto fail;
	*out = c;
	return 0;
fail:
	free(c);
	return ret;
}

void llmp_client_free(struct llmp_client *c)
{
	bool said_bye;

	if (!c)
		return;
	llmp_sender_cancel(&c->out);
	said_bye = llmp_sender_send(&c->out, LLMP_TAG_EXITING, 0, NULL, 0) == 0;
	if (said_bye && c->waker)
		(void)llmp_waker_poke(c->waker); /* a sleeping broker takes the goodbye now */
	if (said_bye && c->timeout_ms != 0 &&
	    /*
	     * Registered at all?  A broker gave us an id, or joined our page (pairs
	     * with its release increment of joined).  A LibAFL broker maps a new
	     * client's page only a loop round after it answered.
	     */
	    (c->out.id != LLMP_BROKER_CLIENT_ID ||
	     __atomic_load_n(&c->out.pages[0].pg->receivers_joined, __ATOMIC_ACQUIRE)))
		/* let the broker map the page holding EXITING before we release it */
		(void)llmp_client_wait_safe(c, c->timeout_ms < 0 || c->timeout_ms > 1000 ?
					    1000 : c->timeout_ms);
	llmp_client_notify_free(c);
	llmp_client_guard_free(c);
	llmp_pidwatch_close(&c->bw);
	llmp_waker_free(c->waker);
	llmp_receiver_fini(&c->in);
	llmp_sender_fini(&c->out);
	free(c);
}
