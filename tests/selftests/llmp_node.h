/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * Test nodes: a broker with its TCP listener and event loop on a thread of
 * the test, started and stopped at will, with the loop's stats copied out
 * for waits.  Shared by the selftests that need brokers of their own.
 */
#ifndef LLMP_NODE_H
#define LLMP_NODE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <string.h>
#include <unistd.h>

#include "llmp_test.h"
#include "llmp/broker.h"

struct llmp_node {
	struct llmp_provider *p, *cp; /* the broker's provider, and one for the test's clients */
	struct llmp_broker *b;
	struct llmp_tcp_listener *l;
	struct llmp_loop *lp;
	uint16_t port;
	pthread_t t;
	bool running;
	int ret;
	/* copied by the loop's stats callback (its own thread) */
	atomic_uint links_up;
	atomic_ulong dials, registered;
	atomic_ulong refused, buffered, throttled, received, dropped;
	/* asked of the loop's thread by the test: dial this port, allow this rule */
	atomic_int dial_port, dial_ret;
	const char *_Atomic allow;
	atomic_int allow_ret;
};

static inline void llmp_node_stats(void *ctx, const struct llmp_loop_stats *st)
{
	struct llmp_node *n = ctx;

	/* Read by the test thread's waits (counters, no data behind them). */
	atomic_store(&n->links_up, st->b2b_links);
	atomic_store(&n->dials, st->b2b_dials);
	atomic_store(&n->registered, st->tcp.registered);
	atomic_store(&n->refused, st->b2b_refused);
	atomic_store(&n->buffered, st->b2b_buffered);
	atomic_store(&n->throttled, st->b2b_throttled);
	atomic_store(&n->received, st->b2b_received);
	atomic_store(&n->dropped, st->tcp.dropped);
	/* llmp_loop_connect_b2b() and llmp_loop_b2b_allow() belong to the loop's thread. */
	if (atomic_load(&n->dial_port)) {
		atomic_store(&n->dial_ret, llmp_loop_connect_b2b(n->lp, NULL,
								 (uint16_t)atomic_load(&n->dial_port)));
		atomic_store(&n->dial_port, 0);
	}
	if (atomic_load(&n->allow)) {
		atomic_store(&n->allow_ret, llmp_loop_b2b_allow(n->lp, atomic_load(&n->allow)));
		atomic_store(&n->allow, NULL);
	}
}

/* Run llmp_loop_connect_b2b(n, NULL, port) on a running node's loop thread: its result. */
static inline int llmp_node_dial(struct llmp_node *n, uint16_t port)
{
	atomic_store(&n->dial_ret, 1);
	atomic_store(&n->dial_port, port);
	while (atomic_load(&n->dial_ret) == 1)
		usleep(1000);
	return atomic_load(&n->dial_ret);
}

/* Run llmp_loop_b2b_allow(n, spec) on a running node's loop thread: its result. */
static inline int llmp_node_allow(struct llmp_node *n, const char *spec)
{
	atomic_store(&n->allow_ret, 1);
	atomic_store(&n->allow, spec);
	while (atomic_load(&n->allow_ret) == 1)
		usleep(1000);
	return atomic_load(&n->allow_ret);
}

static inline void *llmp_node_thread(void *v)
{
	struct llmp_node *n = v;

	n->ret = llmp_loop_run(n->lp);
	return NULL;
}

/*
 * A broker on loopback port (0: any) with a loop (oo NULL: defaults, stats
 * every 20 ms), not yet running.  0 or a negative errno.
 */
static inline int llmp_node_init(struct llmp_node *n, enum llmp_shmem_kind kind, uint16_t port,
				 const struct llmp_broker_opts *bo, struct llmp_loop_opts *oo)
{
	struct llmp_loop_opts def = { .struct_size = sizeof(def) };
	int r;

	memset(n, 0, sizeof(*n));
	if (!oo)
		oo = &def;
	oo->struct_size = sizeof(*oo);
	if (!oo->stats_interval_ms)
		oo->stats_interval_ms = 20;
	oo->on_stats = llmp_node_stats;
	oo->ctx = n;
	if ((r = llmp_provider_new(kind, &n->p)) < 0 || (r = llmp_provider_new(kind, &n->cp)) < 0 ||
	    (r = llmp_broker_new(n->p, bo, &n->b)) < 0 ||
	    (r = llmp_tcp_listen(n->b, NULL, port, NULL, &n->l)) < 0)
		return r;
	n->port = llmp_tcp_listener_port(n->l);
	if ((r = llmp_loop_new(n->b, oo, &n->lp)) < 0)
		return r;
	return llmp_loop_add_listener(n->lp, n->l);
}

static inline int llmp_node_start(struct llmp_node *n)
{
	if (pthread_create(&n->t, NULL, llmp_node_thread, n))
		return -1;
	n->running = true;
	return 0;
}

static inline int llmp_node_stop(struct llmp_node *n)
{
	if (!n->running)
		return 0;
	llmp_loop_stop(n->lp);
	pthread_join(n->t, NULL);
	n->running = false;
	return n->ret;
}

static inline void llmp_node_fini(struct llmp_node *n)
{
	llmp_node_stop(n);
	llmp_loop_free(n->lp);
	llmp_tcp_listener_free(n->l);
	if (n->b)
		llmp_broker_free(n->b);
	if (n->cp)
		llmp_provider_free(n->cp);
	if (n->p)
		llmp_provider_free(n->p);
	memset(n, 0, sizeof(*n));
}

/* Wait until the node reports `want` B2B links up; false after ms. */
static inline bool llmp_node_wait_links(struct llmp_node *n, unsigned want, int ms)
{
	int64_t end = llmp_test_now_ms() + ms;

	while (atomic_load(&n->links_up) != want) {
		if (llmp_test_now_ms() > end)
			return false;
		usleep(5000);
	}
	return true;
}

#endif /* LLMP_NODE_H */
