// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * Which pages the broker reads: registration (by the program, a TCP peer or
 * a NEW_SHM_CLIENT announcement) and the pages a client's END_OF_PAGE moves
 * it to.  A page must be spelled canonically, be new (neither the broker's
 * own nor one another client is read through), stay under max_clients and,
 * for a peer, be one it could have opened itself; its creator is watched
 * for liveness.  See Documentation/broker.rst, "Who may register which page".
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker_state.h"

#ifndef EUSERS
#define EUSERS 87 /* Linux's value; mingw's errno.h has none */
#endif

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
void llmp_broker_watch_creator(struct bclient *c)
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
int llmp_broker_check_new_page(struct llmp_broker *b, struct bclient *c)
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
int llmp_broker_register_page(struct llmp_broker *b, const struct llmp_shmem_desc *d,
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
	llmp_broker_watch_creator(c);
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
	return llmp_broker_register_page(b, d, NULL, "the program");
}

int llmp_broker_register_peer(struct llmp_broker *b, const struct llmp_shmem_desc *d,
			      const struct llmp_peer_cred *peer, const char *who)
{
	if (!peer || !who)
		return llmp_err(-EINVAL, "broker register peer: NULL argument");
	return llmp_broker_register_page(b, d, peer, who);
}

int llmp_broker_add_client(struct llmp_broker *b, const struct llmp_shmem_desc *out_page)
{
	return llmp_broker_register_desc(b, out_page);
}

uint32_t llmp_broker_next_id(const struct llmp_broker *b)
{
	return b->next_id;
}
