// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * The broker's event loop.
 *
 * Busy: llmp_broker_once() back to back, TCP peers served every 64 rounds.
 * After idle_rounds empty passes: serve TCP, then sleep with the
 * announce-then-recheck protocol on the broker's sleep word
 * (llmp_broker_sleep_word()):
 *
 *   broker                                waker (after a commit)
 *   store word = SLEEPING, fence(seq_cst) store current_msg_id (release)
 *   recheck every client page             fence(seq_cst)
 *   wait(word == SLEEPING, fds, nap)      if load(word) == SLEEPING and
 *   store word = AWAKE                       CAS(word, SLEEPING -> AWAKE):
 *                                                 futex_wake(word)
 *
 * The seq_cst store and fence make it impossible for both sides to miss
 * each other: either the recheck sees the message or the waker sees
 * SLEEPING.  The waker flips the word before waking, so a wake that lands
 * before the broker is inside the futex wait makes that wait return at
 * once (the word no longer holds SLEEPING) instead of being lost.
 *
 * The wait: with io_uring, one io_uring_wait covers every TCP socket, the
 * signalfd, the stop eventfd and the nap timeout; with poll(2), the same
 * fds and timeout.  The word itself is watched one of three ways (wake
 * mode, see Documentation/broker.rst "Sleep and wake"):
 *
 *   futex-op      one more io_uring request, IORING_OP_FUTEX_WAIT (6.7+);
 *   futex-bridge  a helper thread FUTEX_WAITs on the word and writes the
 *                 stop eventfd when a waker flips it (poll backend, older
 *                 kernels); parked on a private futex while the loop is awake;
 *   bell          with the KMOD provider: the control segment is bound to a
 *                 /dev/llmp bell, wakers ring it, the bell fd is one more fd
 *                 in the wait set.
 *
 * While a registered client cannot wake the loop (it has no slot in the
 * control segment's poker table: LibAFL's clients; lib/loop_nap.c), a
 * sleep lasts at most the nap, which doubles from 50 us up to max_sleep_us
 * while nothing happens; it bounds that client's latency.  Otherwise (and
 * always with max_sleep_us -1) a sleep ends only on a poke, an fd or a
 * timer.  LLMP_LOOP_NAP_ALWAYS naps every sleep.
 */
#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <stddef.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#ifdef LLMP_HAVE_LIBURING
#include <liburing.h>
#endif

#include "llmp/bell.h"
#include "llmp/broker.h"
#include "tcp.h"
#include "broker_internal.h"
#include "b2b.h"
#include "ctl.h"
#include "loop_internal.h"
#include "nats_internal.h"

/* An option that an older caller's smaller struct may not have: dflt then. */
#define LOOP_OPT(o, f, dflt)                                                                  \
	((o) && (o)->struct_size >= offsetof(struct llmp_loop_opts, f) + sizeof((o)->f) ? (o)->f \
										       : (dflt))

/* Bind our control segment to a new bell: clients then ring instead of FUTEX_WAKE. */
static int setup_bell(struct llmp_loop *lp)
{
	enum llmp_shmem_kind kind = llmp_provider_kind(llmp_broker_provider(lp->b));
	int ret;

	if (kind != LLMP_SHMEM_KMOD)
		return llmp_err(-EOPNOTSUPP, "loop: a bell needs the KMOD provider, the broker uses %s",
				llmp_shmem_kind_name(kind));
	ret = llmp_bell_new(&lp->bell);
	if (ret < 0)
		return ret;
	ret = llmp_bell_bind(lp->ctl_seg, lp->bell, LLMP_CTL_BELL_COOKIE);
	if (ret < 0) {
		llmp_bell_free(lp->bell);
		lp->bell = NULL;
	}
	return ret;
}

/* Pick how the sleep word is watched (after the backend is known). */
static int choose_wake(struct llmp_loop *lp, enum llmp_loop_wake want)
{
	int ret;

	if (!lp->ctl) {
		if (want == LLMP_LOOP_WAKE_BELL)
			return llmp_err(-ENODEV, "loop_new: no control segment to bind to a bell");
		return 0; /* WAKE_NAP */
	}
	if (want == LLMP_LOOP_WAKE_BELL ||
	    (want == LLMP_LOOP_WAKE_AUTO &&
	     llmp_provider_kind(llmp_broker_provider(lp->b)) == LLMP_SHMEM_KMOD)) {
		if (want == LLMP_LOOP_WAKE_AUTO)
			llmp_log_probe_begin(); /* a failure is an answer: logged below at INFO */
		ret = setup_bell(lp);
		if (want == LLMP_LOOP_WAKE_AUTO)
			llmp_log_probe_end();
		if (ret == 0) {
			lp->wake = WAKE_BELL;
			return 0;
		}
		if (want == LLMP_LOOP_WAKE_BELL)
			return ret;
		llmp_log(LLMP_LOG_INFO, "loop: no bell (%s), clients wake the futex word",
			 llmp_strerror_last());
	}
#ifdef LLMP_HAVE_LIBURING
	const char *env = getenv("LLMP_LOOP_NO_FUTEX_OP");
	bool no_op = env && !strcmp(env, "1");

	if (want != LLMP_LOOP_WAKE_BRIDGE && !no_op && lp->backend == LLMP_LOOP_URING &&
	    lp->futex_op) {
		lp->wake = WAKE_FUTEX_OP;
		return 0;
	}
#endif
	lp->wake = WAKE_BRIDGE;
	return 0;
}

int llmp_loop_new(struct llmp_broker *b, const struct llmp_loop_opts *o, struct llmp_loop **out)
{
	struct llmp_loop *lp;
	int ret;

	if (!out)
		return llmp_err(-EINVAL, "loop_new: NULL out pointer");
	*out = NULL;
	if (!b)
		return llmp_err(-EINVAL, "loop_new: NULL broker");
	if (o && o->struct_size < sizeof(uint32_t))
		return llmp_err(-EINVAL, "loop_new: opts.struct_size not set");
	if (o && (o->backend > LLMP_LOOP_POLL || o->stats_interval_ms < 0 || o->max_sleep_us < -1 ||
		  LOOP_OPT(o, wake, LLMP_LOOP_WAKE_AUTO) > LLMP_LOOP_WAKE_BELL ||
		  LOOP_OPT(o, check_clients_ms, 0) < 0 ||
		  LOOP_OPT(o, nap, LLMP_LOOP_NAP_AUTO) > LLMP_LOOP_NAP_ALWAYS))
		return llmp_err(-EINVAL, "loop_new: bad options");
#ifndef LLMP_HAVE_ZLIB
	if (o && o->b2b_compress)
		return llmp_err(-EOPNOTSUPP, "loop_new: built without zlib: no B2B compression");
#endif
#ifndef LLMP_HAVE_ZSTD
	if (LOOP_OPT(o, b2b_zstd, false))
		return llmp_err(-EOPNOTSUPP, "loop_new: built without libzstd: no B2B zstd");
#endif
	lp = calloc(1, sizeof(*lp));
	if (!lp)
		return llmp_err(-ENOMEM, "loop_new: out of memory");
	lp->b = b;
	lp->sigfd = -1;
	lp->idle_rounds = o && o->idle_rounds ? o->idle_rounds : 64;
	lp->max_sleep_us = o && o->max_sleep_us ? o->max_sleep_us : DEFAULT_MAX_SLEEP_US;
	lp->nap_us = MIN_NAP_US;
	lp->nap_policy = LOOP_OPT(o, nap, LLMP_LOOP_NAP_AUTO);
	lp->exit_after = o ? o->exit_after : 0;
	lp->b2b_compress = o ? o->b2b_compress : false;
	lp->b2b_zstd = LOOP_OPT(o, b2b_zstd, false);
	{
		struct llmp_shmem_desc d;

		llmp_b2b_limits_init(&lp->b2b_lim,
				     llmp_broker_broadcast_desc(b, &d) == 0 ? d.size : 0,
				     LOOP_OPT(o, b2b_max_frame, 0), LOOP_OPT(o, b2b_memory, 0),
				     LOOP_OPT(o, b2b_inflate_rate, 0));
	}
	lp->check_ms = LOOP_OPT(o, check_clients_ms, 0) > 0 ? LOOP_OPT(o, check_clients_ms, 0)
							     : LOOP_CHECK_MS;
	if (o) {
		lp->stats_interval_ms = o->stats_interval_ms;
		lp->on_stats = o->on_stats;
		lp->ctx = o->ctx;
	}
	lp->evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (lp->evfd < 0) {
		ret = llmp_err(-errno, "loop_new: eventfd");
		free(lp);
		return ret;
	}
	if (o && o->handle_signals) {
		sigset_t set;

		sigemptyset(&set);
		sigaddset(&set, SIGINT);
		sigaddset(&set, SIGTERM);
		pthread_sigmask(SIG_BLOCK, &set, &lp->oldmask);
		lp->masked = true;
		lp->sigfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
		if (lp->sigfd < 0) {
			ret = llmp_err(-errno, "loop_new: signalfd");
			llmp_loop_free(lp);
			return ret;
		}
	}
	/* The control segment our clients map to wake us (see lib/waker.c). */
	ret = llmp_shmem_new(llmp_broker_provider(b), LLMP_CTL_SIZE, &lp->ctl_seg);
	if (ret == 0) {
		lp->ctl = llmp_shmem_addr(lp->ctl_seg);
		lp->ctl->magic = LLMP_CTL_MAGIC;
		lp->ctl->version = LLMP_CTL_VERSION;
		/* No waker can map it before EXT_QUERY hands out its description. */
		__atomic_store_n(&lp->ctl->sleep_word, LLMP_CTL_RUNNING, __ATOMIC_RELAXED);
	} else {
		llmp_log(LLMP_LOG_WARN, "loop: no control segment, clients cannot wake the broker: %s",
			 llmp_strerror_last());
	}
	lp->backend = LLMP_LOOP_POLL;
#ifdef LLMP_HAVE_LIBURING
	if (!o || o->backend != LLMP_LOOP_POLL) {
		ret = io_uring_queue_init(64, &lp->ring, 0);
		if (ret == 0) {
			struct io_uring_probe *pr = io_uring_get_probe_ring(&lp->ring);

			lp->backend = LLMP_LOOP_URING;
			lp->futex_op = pr && io_uring_opcode_supported(pr, OP_FUTEX_WAIT);
			if (pr)
				io_uring_free_probe(pr);
		} else if (o && o->backend == LLMP_LOOP_URING) {
			llmp_loop_free(lp);
			return llmp_err(ret, "loop_new: io_uring_queue_init");
		} else {
			llmp_log(LLMP_LOG_INFO, "loop: io_uring unavailable (%s), using poll",
				 strerror(-ret));
		}
	}
#else
	if (o && o->backend == LLMP_LOOP_URING) {
		llmp_loop_free(lp);
		return llmp_err(-ENOSYS, "loop_new: built without liburing");
	}
#endif
	ret = choose_wake(lp, LOOP_OPT(o, wake, LLMP_LOOP_WAKE_AUTO));
	if (ret < 0) {
		llmp_loop_free(lp);
		return ret;
	}
	if (lp->wake == WAKE_BELL) {
		/* Before EXT_QUERY hands out the description: version-1 wakers refuse it. */
		lp->ctl->wake = LLMP_CTL_WAKE_BELL;
		lp->ctl->version = LLMP_CTL_VERSION_WAKE;
	}
	*out = lp;
	return 0;
}

/* Count the links of each kind. */
static unsigned nlinks_of(const struct llmp_loop *lp, bool dialled)
{
	unsigned n = 0;

	for (unsigned i = 0; i < lp->nlinks; i++)
		n += llmp_b2b_link_dialled(lp->links[i]) == dialled;
	return n;
}

/* May ss open a link?  (See llmp_b2b_admit().) */
static int admit_link(void *ctx, const struct sockaddr_storage *ss, char *why, size_t cap)
{
	struct llmp_loop *lp = ctx;
	int ret = llmp_b2b_admit(&lp->b2b_allow, lp->links, lp->nlinks, MAX_ACCEPTED, ss, why, cap);

	lp->b2b_refused += ret < 0;
	return ret;
}

int llmp_loop_b2b_allow(struct llmp_loop *lp, const char *spec)
{
	if (!lp)
		return llmp_err(-EINVAL, "loop_b2b_allow: NULL loop");
	return llmp_b2b_allow_add(&lp->b2b_allow, spec);
}

static unsigned b2b_codecs(const struct llmp_loop *lp)
{
	return (lp->b2b_compress ? LLMP_B2B_DEFLATE : 0) | (lp->b2b_zstd ? LLMP_B2B_ZSTD : 0);
}

static int add_link(struct llmp_loop *lp, int fd, const char *peer)
{
	struct llmp_b2b_link *k;
	int ret;

	if (lp->nlinks == MAX_LINKS || nlinks_of(lp, false) >= MAX_ACCEPTED)
		return llmp_err(-ENOSPC, "b2b: at most %d accepted links", MAX_ACCEPTED);
	ret = llmp_b2b_link_new(lp->b, fd, ++lp->next_link_id, b2b_codecs(lp), peer, &lp->b2b_lim,
				&k);
	if (ret < 0)
		return ret;
	lp->links[lp->nlinks++] = k;
	return 0;
}

/* The listener hands over a peer that sent RemoteBrokerHello. */
static int accept_link(void *ctx, int fd, const char *peer, const struct sockaddr_storage *ss)
{
	(void)ss;
	return add_link(ctx, fd, peer);
}

int llmp_loop_add_listener(struct llmp_loop *lp, struct llmp_tcp_listener *l)
{
	if (!lp || !l)
		return llmp_err(-EINVAL, "loop_add_listener: NULL argument");
	if (lp->ntcp == MAX_LISTENERS)
		return llmp_err(-ENOSPC, "loop_add_listener: at most %d listeners", MAX_LISTENERS);
	lp->tcp[lp->ntcp++] = l;
	llmp_tcp_set_b2b_handler(l, admit_link, accept_link, lp);
	if (lp->ctl_seg)
		llmp_tcp_set_ext(l, llmp_shmem_desc(lp->ctl_seg), lp->ctl->version);
	return 0;
}

int llmp_loop_connect_b2b(struct llmp_loop *lp, const char *addr, uint16_t port)
{
	struct llmp_b2b_link *k;
	char host[256];
	int ret;

	if (!lp)
		return llmp_err(-EINVAL, "loop_connect_b2b: NULL loop");
	if (lp->nlinks == MAX_LINKS || nlinks_of(lp, true) >= MAX_DIALLED)
		return llmp_err(-ENOSPC, "b2b: at most %d dialled links", MAX_DIALLED);
	if (gethostname(host, sizeof(host) - 1))
		strcpy(host, "<unknown>");
	host[sizeof(host) - 1] = 0;
	/* Resolved now; connects (and re-dials) from the loop without blocking it. */
	ret = llmp_b2b_link_dial(lp->b, addr, port, host, ++lp->next_link_id, b2b_codecs(lp),
				 &lp->b2b_lim, &k);
	if (ret < 0)
		return ret;
	lp->links[lp->nlinks++] = k;
	return 0;
}

static void drop_link(struct llmp_loop *lp, unsigned i)
{
	llmp_b2b_link_counters(lp->links[i], &lp->b2b_gone);
	llmp_b2b_link_free(lp->links[i]);
	lp->links[i] = lp->links[--lp->nlinks];
}

/* Step every link; a dead one is logged and closed.  Returns messages moved. */
static int links_step(struct llmp_loop *lp)
{
	int moved = 0;

	for (unsigned i = lp->nlinks; i-- > 0;) {
		int ret = llmp_b2b_link_step(lp->links[i]);

		if (ret < 0) {
			llmp_log(LLMP_LOG_WARN, "b2b: link closed: %s", llmp_strerror_last());
			drop_link(lp, i);
			continue;
		}
		moved += ret;
	}
	return moved;
}

const char *llmp_loop_backend_name(const struct llmp_loop *lp)
{
	return lp && lp->backend == LLMP_LOOP_URING ? "io_uring" : "poll";
}

const char *llmp_loop_wake_name(const struct llmp_loop *lp)
{
	static const char *const names[] = { "nap", "futex-op", "futex-bridge", "bell" };

	return lp ? names[lp->wake] : "nap";
}

void llmp_loop_stop(struct llmp_loop *lp)
{
	uint64_t one = 1;

	if (!lp)
		return;
	/* Pairs with the load at the top of each round in llmp_loop_run(). */
	atomic_store_explicit(&lp->stop, 1, memory_order_release);
	/* Wakes a sleeping loop (the eventfd is in its wait set). */
	if (write(lp->evfd, &one, sizeof(one)) < 0) {
		/* counter full: the loop is awake anyway */
	}
}

void llmp_loop_stats(const struct llmp_loop *lp, struct llmp_loop_stats *st)
{
	if (!lp || !st)
		return;
	*st = lp->st;
	st->clients = llmp_broker_nclients(lp->b);
	memset(&st->tcp, 0, sizeof(st->tcp));
	for (unsigned i = 0; i < lp->ntcp; i++) {
		struct llmp_tcp_stats t;

		llmp_tcp_listener_stats(lp->tcp[i], &t);
		st->tcp.accepted += t.accepted;
		st->tcp.registered += t.registered;
		st->tcp.quits += t.quits;
		st->tcp.dropped += t.dropped;
		st->tcp.refused += t.refused;
		st->tcp.accept_pauses += t.accept_pauses;
	}
	struct llmp_b2b_counters bc = lp->b2b_gone;

	st->b2b_links = 0;
	for (unsigned i = 0; i < lp->nlinks; i++) {
		llmp_b2b_link_counters(lp->links[i], &bc);
		st->b2b_links += llmp_b2b_link_up(lp->links[i]);
	}
	st->b2b_sent = bc.sent;
	st->b2b_received = bc.received;
	st->b2b_deflated = bc.deflated;
	st->b2b_zstd = bc.zstd;
	st->b2b_dials = bc.dials;
	st->b2b_reserved = bc.reserved;
	st->b2b_buffered = lp->b2b_lim.buffered;
	st->b2b_throttled = lp->b2b_lim.throttled;
	st->b2b_refused = lp->b2b_refused;
	st->forwarded = llmp_broker_forwarded(lp->b) - lp->fwd_base;
	st->pages_live = llmp_broker_bcast(lp->b)->npages;
	st->uptime_ms = llmp_now_ms() - lp->start_ms;
}


void llmp_loop_free(struct llmp_loop *lp)
{
	if (!lp)
		return;
	llmp_nats_free(lp->nats); /* first: it publishes what is left, then stops its threads */
	lp->nats = NULL;
	llmp_loop_lossless_off(lp); /* the broker outlives us */
	llmp_loop_bridge_stop(lp);
	llmp_bell_free(lp->bell);
	while (lp->nlinks)
		drop_link(lp, lp->nlinks - 1);
	llmp_b2b_forget(lp->b); /* read positions kept for diallers that would come back */
#ifdef LLMP_HAVE_LIBURING
	if (lp->backend == LLMP_LOOP_URING)
		io_uring_queue_exit(&lp->ring);
#endif
	if (lp->sigfd >= 0)
		close(lp->sigfd);
	if (lp->masked)
		pthread_sigmask(SIG_SETMASK, &lp->oldmask, NULL);
	close(lp->evfd);
	free(lp->pfd);
	for (unsigned i = 0; i < lp->ntcp; i++)
		llmp_tcp_set_ext(lp->tcp[i], NULL, 0);
	llmp_shmem_put(lp->ctl_seg);
#ifdef LLMP_HAVE_LIBURING
	free(lp->dyn_live);
#endif
	free(lp);
}

/* Milliseconds until the next timer (stats, TCP deadlines); -1 for none. */
static int next_timeout(struct llmp_loop *lp, int64_t now)
{
	int t = -1;

	if (lp->stats_interval_ms > 0) {
		int64_t left = lp->next_stats - now;

		t = left < 0 ? 0 : (int)(left > 1000000 ? 1000000 : left);
	}
	/*
	 * The dead-client check always bounds the sleep (it was skipped when it
	 * was exactly check_ms away, as right after a check, and a loop that
	 * did not nap then slept until a poke: a client that left without one
	 * was never seen).
	 */
	{
		int64_t c = lp->next_check - now;

		if (c < 0)
			c = 0;
		if (t < 0 || c < t)
			t = (int)c;
	}
	for (unsigned i = 0; i < lp->ntcp; i++) {
		int d = llmp_tcp_timeout_ms(lp->tcp[i], now);

		if (d >= 0 && (t < 0 || d < t))
			t = d;
	}
	for (unsigned i = 0; i < lp->nlinks; i++) {
		int d = llmp_b2b_link_timeout_ms(lp->links[i], now);

		if (d >= 0 && (t < 0 || d < t))
			t = d;
	}
	if (lp->nats) {
		int d = llmp_nats_timeout_ms(lp->nats, now);

		if (d >= 0 && (t < 0 || d < t))
			t = d;
	}
	return t;
}

static void check_signals(struct llmp_loop *lp)
{
	struct signalfd_siginfo si;
	uint64_t v;

	if (read(lp->evfd, &v, sizeof(v)) < 0) {
		/* nothing pending */
	}
	if (lp->sigfd < 0)
		return;
	while (read(lp->sigfd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
		llmp_log(LLMP_LOG_INFO, "loop: signal %u, shutting down", si.ssi_signo);
		/* Pairs with the load at the top of each round in llmp_loop_run(). */
		atomic_store_explicit(&lp->stop, 1, memory_order_release);
	}
}

/* Non-blocking work besides forwarding: signals, TCP, links, stats.  >=0: link messages moved. */
static int service(struct llmp_loop *lp)
{
	int64_t now;
	int moved;

	check_signals(lp);
	for (unsigned i = 0; i < lp->ntcp; i++) {
		int ret = llmp_tcp_listener_service(lp->tcp[i]);

		if (ret < 0)
			return ret;
	}
	moved = links_step(lp);
	if (lp->nats)
		moved += llmp_nats_step(lp->nats);
	now = llmp_now_ms();
	if (now >= lp->next_check) {
		int ret = llmp_broker_check_clients(lp->b);

		if (ret < 0)
			return ret;
		lp->next_check = now + lp->check_ms;
	}
	if (lp->stats_interval_ms > 0 && now >= lp->next_stats) {
		lp->next_stats = now + lp->stats_interval_ms;
		if (lp->on_stats) {
			struct llmp_loop_stats st;

			llmp_loop_stats(lp, &st);
			lp->on_stats(lp->ctx, &st);
		}
	}
	return moved;
}

/*
 * Announce sleep, look once more, wait.  Returns what the second look
 * forwarded (>0), 0 after a wait, <0 on error.
 */
static int sleep_once(struct llmp_loop *lp)
{
	uint32_t *word = llmp_broker_sleep_word(lp->b);
	uint32_t *cword = NULL, prev = LLMP_CTL_RUNNING;
	int timeout = next_timeout(lp, llmp_now_ms());
	int64_t wait_us;
	bool waited = false, nap;
	int ret;

	if (lp->wake == WAKE_BRIDGE && !lp->bridge_on && llmp_loop_bridge_start(lp) < 0) {
		llmp_log(LLMP_LOG_WARN, "loop: clients cannot wake the broker, it naps: %s",
			 llmp_strerror_last());
		lp->wake = WAKE_NAP;
	}
	nap = llmp_loop_needs_nap(lp);
	wait_us = nap ? lp->nap_us : -1;
	/* Announce on the control segment only if the wait below watches it. */
	if (lp->wake != WAKE_NAP)
		cword = &lp->ctl->sleep_word;
	if (timeout >= 0 && (wait_us < 0 || (int64_t)timeout * 1000 < wait_us))
		wait_us = (int64_t)timeout * 1000;
	/* Pairs with a waker's load of the word after its commit (both seq_cst). */
	__atomic_store_n(word, SLEEP_SLEEPING, __ATOMIC_SEQ_CST);
	if (cword)
		/* Pairs with the load in llmp_waker_poke() (both sides fence, seq_cst). */
		__atomic_store_n(cword, LLMP_CTL_SLEEPING, __ATOMIC_SEQ_CST);
	if (lp->wake == WAKE_BRIDGE)
		/* After SLEEPING; pairs with the bridge's load of sleep_seq (then of the word). */
		__atomic_store_n(&lp->sleep_seq, lp->sleep_seq + 1, __ATOMIC_SEQ_CST);
	/* Orders those stores before the loads of current_msg_id in the second look. */
	atomic_thread_fence(memory_order_seq_cst);
	ret = llmp_broker_once(lp->b);
	lp->st.rounds++;
	/* Pairs with the release stores in llmp_loop_stop() and check_signals(). */
	if (ret == 0 && !atomic_load_explicit(&lp->stop, memory_order_acquire)) {
		lp->st.sleeps++;
		waited = true;
		if (lp->wake == WAKE_BRIDGE)
			llmp_loop_bridge_arm(lp);
#ifdef LLMP_HAVE_LIBURING
		if (lp->backend == LLMP_LOOP_URING)
			ret = llmp_loop_wait_uring(lp, cword, wait_us);
		else
#endif
			ret = llmp_loop_wait_poll(lp, wait_us);
		if (lp->bell_ready) {
			uint32_t cookies[8];

			/* Non-blocking: the rings of this sleep (coalesced into one cookie). */
			lp->bell_ready = false;
			if (llmp_bell_read(lp->bell, cookies, 8) < 0)
				llmp_log(LLMP_LOG_WARN, "loop: reading the bell: %s", llmp_strerror_last());
		}
		/* Nap longer next time, up to max_sleep_us, while nothing happens. */
		if (nap) {
			int64_t cap = lp->max_sleep_us > 0 ? lp->max_sleep_us : DEFAULT_MAX_SLEEP_US;

			lp->nap_us = lp->nap_us * 2 > cap ? cap : lp->nap_us * 2;
		}
	} else {
		lp->nap_us = MIN_NAP_US;
	}
	if (cword) {
		/*
		 * Pairs with the waker's load and CAS: from now on it sees the
		 * broker awake and does not wake it.  AWAKE here: a waker
		 * flipped the word during this sleep.
		 */
		prev = __atomic_exchange_n(cword, LLMP_CTL_RUNNING, __ATOMIC_SEQ_CST);
		if (prev == LLMP_CTL_AWAKE && waited)
			lp->st.wakeups++;
	}
	lp->poked = cword && prev == LLMP_CTL_AWAKE && waited;
	/* Same, for the broker's own word. */
	__atomic_store_n(word, SLEEP_AWAKE, __ATOMIC_SEQ_CST);
	return ret;
}

/* LibAFL's exit rule: exit_after clients came and left, and none is left. */
static bool broker_done(struct llmp_loop *lp)
{
	unsigned now = llmp_broker_nclients(lp->b);
	uint32_t seen = llmp_broker_next_id(lp->b) - 1; /* ids start at 1 */

	if (llmp_broker_stop_requested(lp->b))
		return true;
	return lp->exit_after && now == 0 && seen >= lp->exit_after;
}

int llmp_loop_run(struct llmp_loop *lp)
{
	unsigned idle = 0, busy = 0;
	int ret = 0;

	if (!lp)
		return llmp_err(-EINVAL, "loop_run: NULL loop");
	lp->start_ms = llmp_now_ms();
	lp->fwd_base = llmp_broker_forwarded(lp->b);
	lp->next_stats = lp->start_ms + lp->stats_interval_ms;
	/* Pairs with the release stores in llmp_loop_stop() and check_signals(). */
	while (!atomic_load_explicit(&lp->stop, memory_order_acquire)) {
		ret = llmp_broker_once(lp->b);
		lp->st.rounds++;
		if (ret < 0)
			break;
		lp->st.msgs_in += (unsigned)ret;
		if (lp->nlinks)
			ret += links_step(lp);
		if (lp->nats)
			ret += llmp_nats_step(lp->nats);
		if (ret > 0) {
			idle = 0;
			lp->nap_us = MIN_NAP_US; /* traffic: the next sleeps start short */
			if (++busy % BUSY_TCP_EVERY == 0 && (ret = service(lp)) < 0)
				break;
			continue;
		}
		if (broker_done(lp))
			break;
		if (++idle < lp->idle_rounds)
			continue;
		idle = 0;
		ret = service(lp);
		if (ret < 0)
			break;
		if (ret > 0)
			continue;
		/* Pairs with the release stores in llmp_loop_stop() and check_signals(). */
		if (atomic_load_explicit(&lp->stop, memory_order_acquire) || broker_done(lp))
			break;
		ret = sleep_once(lp);
		if (ret < 0)
			break;
		lp->st.msgs_in += (unsigned)ret;
		/*
		 * Woken by a timer, a nap's end or a TCP peer, not by a
		 * client's poke, and nothing arrived: one more empty pass is
		 * enough before the next sleep.  idle_rounds passes over every
		 * client after each stats or liveness tick cost an idle
		 * broker with many clients CPU for nothing.
		 */
		if (ret == 0 && !lp->poked)
			idle = lp->idle_rounds - 1;
		ret = service(lp);
		if (ret < 0)
			break;
	}
	return ret < 0 ? ret : 0;
}
