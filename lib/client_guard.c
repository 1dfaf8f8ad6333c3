// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * LLMP_DEBUG_RECV: a debug mode that makes a received buffer kept past the
 * next recv fail loudly instead of silently changing.  Each received payload
 * is copied into a fresh read-only mapping, its end at the end of a page;
 * the next recv turns that mapping into an inaccessible reservation (its
 * memory freed), kept for the next LLMP_GUARD_KEEP receives, so a stale
 * pointer faults (SIGSEGV) at its first use.  Costs a copy and three
 * system calls per message: for finding bugs, not for production.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "client_internal.h"

#if defined(__unix__)
#include <sys/mman.h>
#include <unistd.h>

/* retired buffers kept inaccessible before their address space is given back */
#define LLMP_GUARD_KEEP 256

struct llmp_recv_guard {
	void *cur;			/* the buffer the last recv returned, or NULL */
	size_t cur_size;
	void *old[LLMP_GUARD_KEEP];	/* retired, PROT_NONE */
	size_t old_size[LLMP_GUARD_KEEP];
	unsigned next;
	size_t page;
};

static bool env_on(void)
{
	const char *e = getenv(LLMP_DEBUG_RECV_ENV);

	return e && *e && strcmp(e, "0") != 0;
}

int llmp_client_guard_init(struct llmp_client *c)
{
	struct llmp_recv_guard *g;

	if (!env_on())
		return 0;
	g = calloc(1, sizeof(*g));
	if (!g)
		return llmp_err(-ENOMEM, "client: %s: out of memory", LLMP_DEBUG_RECV_ENV);
	g->page = (size_t)sysconf(_SC_PAGESIZE);
	c->guard = g;
	llmp_log(LLMP_LOG_INFO, "client: %s set: every received buffer is a private copy "
		 "that faults once the next recv is called", LLMP_DEBUG_RECV_ENV);
	return 0;
}

void llmp_client_guard_retire(struct llmp_recv_guard *g)
{
	unsigned i = g->next;

	if (!g->cur)
		return;
	/* same addresses, no access, pages given back: a stale read faults */
	if (mmap(g->cur, g->cur_size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED |
		 MAP_NORESERVE, -1, 0) == MAP_FAILED)
		(void)mprotect(g->cur, g->cur_size, PROT_NONE);
	if (g->old[i])
		munmap(g->old[i], g->old_size[i]);
	g->old[i] = g->cur;
	g->old_size[i] = g->cur_size;
	g->next = (i + 1) % LLMP_GUARD_KEEP;
	g->cur = NULL;
}

int llmp_client_guard_copy(struct llmp_recv_guard *g, struct llmp_msg_view *v)
{
	size_t size = (v->len + g->page) & ~(g->page - 1); /* at least one page, room to spare */
	uint8_t *base;
	size_t off;

	base = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (base == MAP_FAILED)
		return llmp_err(-ENOMEM, "client: %s: cannot map a copy of %zu bytes",
				LLMP_DEBUG_RECV_ENV, v->len);
	/* the payload ends as close to the page end as 16-byte alignment allows */
	off = (size - v->len) & ~(size_t)15;
	if (v->len)
		memcpy(base + off, v->buf, v->len);
	mprotect(base, size, PROT_READ);
	g->cur = base;
	g->cur_size = size;
	v->buf = base + off;
	return 1;
}

void llmp_client_guard_free(struct llmp_client *c)
{
	struct llmp_recv_guard *g = c->guard;

	if (!g)
		return;
	if (g->cur)
		munmap(g->cur, g->cur_size);
	for (unsigned i = 0; i < LLMP_GUARD_KEEP; i++)
		if (g->old[i])
			munmap(g->old[i], g->old_size[i]);
	free(g);
	c->guard = NULL;
}
#else
int llmp_client_guard_init(struct llmp_client *c)
{
	const char *e = getenv(LLMP_DEBUG_RECV_ENV);

	if (e && *e && strcmp(e, "0") != 0)
		llmp_log(LLMP_LOG_WARN, "client: %s is not supported on this system; ignored",
			 LLMP_DEBUG_RECV_ENV);
	(void)c;
	return 0;
}

void llmp_client_guard_retire(struct llmp_recv_guard *g)
{
	(void)g;
}

int llmp_client_guard_copy(struct llmp_recv_guard *g, struct llmp_msg_view *v)
{
	(void)g;
	(void)v;
	return 1;
}

void llmp_client_guard_free(struct llmp_client *c)
{
	(void)c;
}
#endif
