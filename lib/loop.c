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
 * A sleep lasts at most the nap, which doubles from 50 us up to
 * max_sleep_us while nothing happens; it bounds the latency of clients
 * that do not poke (LibAFL's).  max_sleep_us -1: no nap at all, a sleep
 * ends only on a poke, an fd or a timer (every client pokes).
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

#define MAX_LISTENERS 8
#define MAX_LINKS 128
#define MAX_ACCEPTED 64 /* links other brokers opened; the ones this broker dials count apart */
#define MAX_DIALLED 64
#define MIN_NAP_US 50
#define DEFAULT_MAX_SLEEP_US 1000
#define BUSY_TCP_EVERY 64
/* Dead-client checks (llmp_broker_check_clients) this often by default. */
#define LOOP_CHECK_MS 200
#define SLEEP_AWAKE 0u
#define SLEEP_SLEEPING 1u
/* IORING_OP_FUTEX_WAIT (Linux 6.7); liburing 2.3's headers predate it. */
#define OP_FUTEX_WAIT 51
#define FUTEX2_U32 0x02
/* user_data of the ring's requests */
#define UD_FUTEX 1
#define UD_DYN (1ull << 32) /* + index: TCP peers and links, armed for one wait, then cancelled */
#define UD_CANCEL 3
#define UD_STATIC 16  /* + slot: 0 eventfd, 1 signalfd, 2.. listening sockets, bell: stay armed */
#define SLOT_BELL (2 + MAX_LISTENERS)
#define NSTATIC (3 + MAX_LISTENERS)
/* The bridge thread's gate (lp->gate) */
#define GATE_RUN 0u    /* watching the word (or about to) */
#define GATE_PARKED 1u /* waiting for the loop's next sleep */
#define GATE_QUIT 2u
/* How the sleep word is watched: see the top of this file. */
enum wake_mode { WAKE_NAP, WAKE_FUTEX_OP, WAKE_BRIDGE, WAKE_BELL };

struct llmp_loop {
	struct llmp_broker *b;
	struct llmp_tcp_listener *tcp[MAX_LISTENERS];
	unsigned ntcp;
	struct llmp_b2b_link *links[MAX_LINKS];
	unsigned nlinks;
	uint32_t next_link_id;
	bool b2b_compress;
	bool b2b_zstd;
	struct llmp_b2b_counters b2b_gone; /* counters of closed links */
	struct llmp_b2b_limits b2b_lim;     /* memory limits of the links */
	struct llmp_b2b_allow b2b_allow;    /* who may open a link to us */
	uint64_t b2b_refused;
	struct llmp_shmem *ctl_seg;  /* our control segment (NULL if it could not be made) */
	struct llmp_ctl *ctl;
	enum wake_mode wake;
	struct llmp_bell *bell;      /* WAKE_BELL: bound to ctl_seg */
	unsigned bell_idx;           /* its slot in lp->pfd (poll backend) */
	bool bell_ready;             /* the bell fd polled readable: drain it */
	bool poked;                  /* the last sleep was ended by a client's poke */
	pthread_t bridge;            /* WAKE_BRIDGE: started at the first sleep */
	bool bridge_on;
	pid_t bridge_pid;            /* the process it runs in (a forked child has no bridge) */
	uint32_t gate;               /* GATE_*: futex between the loop and the bridge */
	uint32_t sleep_seq;          /* sleeps announced; the bridge handles each once */
	int check_ms;                /* dead-client checks this often */
	int sigfd;
	int evfd;
	sigset_t oldmask;
	bool masked;
	atomic_int stop;
	enum llmp_loop_backend backend;
#ifdef LLMP_HAVE_LIBURING
	struct io_uring ring;
	bool futex_op;
	bool futex_armed;
	bool armed[NSTATIC];
	bool *dyn_live;     /* per UD_DYN index: armed, no completion yet */
	unsigned dyn_cap;
#endif
	struct pollfd *pfd;
	unsigned pfd_cap;
	int stats_interval_ms;
	llmp_loop_stats_fn on_stats;
	void *ctx;
	unsigned idle_rounds;
	unsigned exit_after;
	int64_t nap_us, max_sleep_us;
	int64_t start_ms, next_stats;
	int64_t next_check;      /* next llmp_broker_check_clients() (dead clients), ms */
	uint64_t fwd_base;       /* llmp_broker_forwarded() when run() started */
	struct llmp_loop_stats st;
};

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
		  LOOP_OPT(o, check_clients_ms, 0) < 0))
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

static void bridge_stop(struct llmp_loop *lp);

void llmp_loop_free(struct llmp_loop *lp)
{
	if (!lp)
		return;
	bridge_stop(lp);
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

/* ---- fds and timers -------------------------------------------------------- */

/* Collect every fd the loop waits on into lp->pfd; returns the count or <0. */
static int collect_fds(struct llmp_loop *lp)
{
	unsigned n = 3 + lp->nlinks;

	for (unsigned i = 0; i < lp->ntcp; i++)
		n += llmp_tcp_nfds(lp->tcp[i]);
	if (n > lp->pfd_cap) {
		struct pollfd *p = realloc(lp->pfd, n * sizeof(*p));

		if (!p)
			return llmp_err(-ENOMEM, "loop: out of memory");
		lp->pfd = p;
		lp->pfd_cap = n;
	}
	n = 0;
	lp->pfd[n++] = (struct pollfd){ .fd = lp->evfd, .events = POLLIN };
	if (lp->sigfd >= 0)
		lp->pfd[n++] = (struct pollfd){ .fd = lp->sigfd, .events = POLLIN };
	if (lp->bell) {
		lp->bell_idx = n;
		lp->pfd[n++] = (struct pollfd){ .fd = llmp_bell_fd(lp->bell), .events = POLLIN };
	}
	for (unsigned i = 0; i < lp->nlinks; i++)
		llmp_b2b_link_pollfd(lp->links[i], &lp->pfd[n++]);
	for (unsigned i = 0; i < lp->ntcp; i++)
		n += llmp_tcp_fill_pollfds(lp->tcp[i], lp->pfd + n, lp->pfd_cap - n);
	return (int)n;
}

#ifdef LLMP_HAVE_LIBURING
/* The peers of listener t (not its listening socket) into lp->pfd; returns the count. */
static unsigned collect_peer_fds(struct llmp_loop *lp, unsigned t)
{
	unsigned n = llmp_tcp_fill_pollfds(lp->tcp[t], lp->pfd, lp->pfd_cap);

	if (n <= 1)
		return 0;
	memmove(lp->pfd, lp->pfd + 1, (n - 1) * sizeof(*lp->pfd));
	return n - 1;
}
#endif

/* Milliseconds until the next timer (stats, TCP deadlines); -1 for none. */
static int next_timeout(struct llmp_loop *lp, int64_t now)
{
	int t = -1;

	if (lp->stats_interval_ms > 0) {
		int64_t left = lp->next_stats - now;

		t = left < 0 ? 0 : (int)(left > 1000000 ? 1000000 : left);
	}
	if (lp->next_check - now < (t < 0 ? lp->check_ms : t))
		t = lp->next_check - now < 0 ? 0 : (int)(lp->next_check - now);
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

/* ---- waiting ---------------------------------------------------------------- */

/* Wait up to wait_us for an fd (poll backend: the word through the bridge's eventfd or the bell). */
static int wait_poll(struct llmp_loop *lp, int64_t wait_us)
{
	struct timespec ts = { (time_t)(wait_us / 1000000), (long)(wait_us % 1000000) * 1000 };
	int n = collect_fds(lp);

	if (n < 0)
		return n;
	/* wait_us < 0: until an fd fires */
	if (ppoll(lp->pfd, (nfds_t)n, wait_us < 0 ? NULL : &ts, NULL) < 0) {
		if (errno != EINTR)
			return llmp_err(-errno, "loop: poll");
		return 0;
	}
	if (lp->bell && lp->pfd[lp->bell_idx].revents)
		lp->bell_ready = true;
	return 0;
}

#ifdef LLMP_HAVE_LIBURING
static struct io_uring_sqe *get_sqe(struct io_uring *ring)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(ring);

	if (!sqe) {
		io_uring_submit(ring);
		sqe = io_uring_get_sqe(ring);
	}
	return sqe;
}

/* Account for one completion. */
static void uring_seen(struct llmp_loop *lp, struct io_uring_cqe *cqe, unsigned *dyn,
		       const unsigned *dyn_n, unsigned *cancels)
{
	uint64_t ud = io_uring_cqe_get_data64(cqe);

	if (ud == UD_FUTEX) {
		lp->futex_armed = false;
	} else if (ud >= UD_DYN && ud - UD_DYN < *dyn_n && lp->dyn_live[ud - UD_DYN]) {
		lp->dyn_live[ud - UD_DYN] = false;
		(*dyn)--;
	} else if (ud == UD_CANCEL) {
		(*cancels)--;
	} else if (ud >= UD_STATIC && ud < UD_STATIC + NSTATIC) {
		lp->armed[ud - UD_STATIC] = false;
		if (ud - UD_STATIC == SLOT_BELL)
			lp->bell_ready = true;
	}
	io_uring_cqe_seen(&lp->ring, cqe);
}

/*
 * One io_uring wait covering every fd, the futex word (kernels with
 * IORING_OP_FUTEX_WAIT) and wait_us.  The loop's own fds (eventfd,
 * signalfd, listening sockets) and the futex stay armed from one sleep to
 * the next, so an idle sleep costs one system call; TCP peers and links
 * come and go, so theirs are armed for this wait and cancelled after it.
 */
static int wait_uring(struct llmp_loop *lp, uint32_t *word, int64_t wait_us)
{
	struct __kernel_timespec ts = { wait_us / 1000000, (wait_us % 1000000) * 1000 };
	struct io_uring_sqe *sqe;
	struct io_uring_cqe *cqe;
	unsigned dyn = 0, dyn_n = 0, cancels = 0, prepped = 0;
	int fds[NSTATIC];
	int ret, err = 0;

	/* Makes lp->pfd large enough for every fd. */
	ret = collect_fds(lp);
	if (ret < 0)
		return ret;
	if ((unsigned)ret > lp->dyn_cap) {
		bool *d = realloc(lp->dyn_live, (size_t)ret * sizeof(*d));

		if (!d)
			return llmp_err(-ENOMEM, "loop: out of memory");
		lp->dyn_live = d;
		lp->dyn_cap = (unsigned)ret;
	}
	fds[0] = lp->evfd;
	fds[1] = lp->sigfd;
	for (unsigned i = 0; i < MAX_LISTENERS; i++)
		fds[2 + i] = i < lp->ntcp ? llmp_tcp_listen_fd(lp->tcp[i]) : -1;
	fds[SLOT_BELL] = lp->bell ? llmp_bell_fd(lp->bell) : -1;
	for (unsigned i = 0; i < NSTATIC; i++) {
		if (fds[i] < 0 || lp->armed[i] || !(sqe = get_sqe(&lp->ring)))
			continue;
		io_uring_prep_poll_add(sqe, fds[i], POLLIN);
		io_uring_sqe_set_data64(sqe, UD_STATIC + i);
		lp->armed[i] = true;
		prepped++;
	}
	if (word && lp->wake == WAKE_FUTEX_OP && !lp->futex_armed && (sqe = get_sqe(&lp->ring))) {
		/* Completes when a waker flips the word and calls FUTEX_WAKE on it. */
		io_uring_prep_rw(OP_FUTEX_WAIT, sqe, FUTEX2_U32, word, 0, SLEEP_SLEEPING);
		sqe->addr3 = FUTEX_BITSET_MATCH_ANY;
		io_uring_sqe_set_data64(sqe, UD_FUTEX);
		lp->futex_armed = true;
		prepped++;
	}
	/* Peers and links. */
	for (unsigned t = 0; t < lp->ntcp + 1; t++) {
		unsigned n;

		if (t < lp->ntcp) {
			n = collect_peer_fds(lp, t);
		} else {
			n = 0;
			for (unsigned i = 0; i < lp->nlinks && i < lp->pfd_cap; i++)
				llmp_b2b_link_pollfd(lp->links[i], &lp->pfd[n++]);
		}
		for (unsigned i = 0; i < n && dyn_n < lp->dyn_cap; i++) {
			sqe = get_sqe(&lp->ring);
			if (!sqe)
				break;
			io_uring_prep_poll_add(sqe, lp->pfd[i].fd, (unsigned)lp->pfd[i].events);
			io_uring_sqe_set_data64(sqe, UD_DYN + dyn_n);
			lp->dyn_live[dyn_n++] = true;
			dyn++;
			prepped++;
		}
	}
	if (prepped) {
		ret = io_uring_submit(&lp->ring);
		if (ret < 0)
			return llmp_err(ret, "loop: io_uring_submit");
	}
	/* wait_us < 0: until a completion */
	ret = io_uring_wait_cqe_timeout(&lp->ring, &cqe, wait_us < 0 ? NULL : &ts);
	if (ret < 0 && ret != -ETIME && ret != -EINTR)
		err = llmp_err(ret, "loop: io_uring_wait_cqe");
	while (io_uring_peek_cqe(&lp->ring, &cqe) == 0)
		uring_seen(lp, cqe, &dyn, &dyn_n, &cancels);
	/* Cancel the peers' and links' polls still armed, each by its own user_data. */
	for (unsigned i = 0; i < dyn_n; i++) {
		if (!lp->dyn_live[i] || !(sqe = get_sqe(&lp->ring)))
			continue;
		io_uring_prep_cancel64(sqe, UD_DYN + i, 0);
		io_uring_sqe_set_data64(sqe, UD_CANCEL);
		cancels++;
	}
	if (cancels)
		io_uring_submit(&lp->ring);
	while (dyn || cancels) {
		ret = io_uring_wait_cqe(&lp->ring, &cqe);
		if (ret == -EINTR)
			continue;
		if (ret < 0)
			return llmp_err(ret, "loop: io_uring_wait_cqe (reap)");
		uring_seen(lp, cqe, &dyn, &dyn_n, &cancels);
	}
	return err;
}
#endif

/* ---- the bridge: the sleep word, watched by a thread ----------------------- */

static long futex_call(uint32_t *addr, int op, uint32_t val)
{
	return syscall(SYS_futex, addr, op, val, NULL, NULL, 0);
}

/*
 * The bridge thread (WAKE_BRIDGE).  For each sleep the loop announces
 * (sleep_seq), it waits on the control word while it holds SLEEPING; when
 * a waker has flipped it to AWAKE it writes the loop's eventfd, once for
 * that sleep.  Then, or when it finds the loop awake by itself (RUNNING),
 * it parks on the gate until the loop announces its next sleep.  It never
 * spins: each turn either blocks in a futex wait or marks the current
 * sleep handled, and a handled sleep parks it.
 */
static void *bridge_main(void *arg)
{
	struct llmp_loop *lp = arg;
	uint32_t *word = &lp->ctl->sleep_word;
	uint32_t handled = 0, run = GATE_RUN, parked = GATE_PARKED, seq, v;
	uint64_t one = 1;

	for (;;) {
		/* Pairs with the seq_cst stores of the gate in bridge_arm() and bridge_stop(). */
		if (__atomic_load_n(&lp->gate, __ATOMIC_SEQ_CST) == GATE_QUIT)
			break;
		/* Pairs with the loop's seq_cst store of sleep_seq in sleep_once(). */
		seq = __atomic_load_n(&lp->sleep_seq, __ATOMIC_SEQ_CST);
		if (seq == handled) {
			/*
			 * Park.  Pairs with bridge_arm(): the loop stores sleep_seq,
			 * then loads the gate; we store the gate, then load
			 * sleep_seq (all seq_cst): one of us sees the other's store.
			 */
			run = GATE_RUN;
			if (!__atomic_compare_exchange_n(&lp->gate, &run, GATE_PARKED, false,
							 __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST))
				continue; /* GATE_QUIT */
			if (__atomic_load_n(&lp->sleep_seq, __ATOMIC_SEQ_CST) != handled) {
				parked = GATE_PARKED;
				/* Unpark ourselves (fails harmlessly if the loop did). */
				__atomic_compare_exchange_n(&lp->gate, &parked, GATE_RUN, false,
							    __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
				continue;
			}
			/* Pairs with the seq_cst CAS/store and FUTEX_WAKE in bridge_arm()/bridge_stop(). */
			while (__atomic_load_n(&lp->gate, __ATOMIC_SEQ_CST) == GATE_PARKED)
				futex_call(&lp->gate, FUTEX_WAIT_PRIVATE, GATE_PARKED);
			continue;
		}
		/*
		 * Pairs with the loop's seq_cst store of SLEEPING (made before
		 * sleep_seq, so this sees that sleep's value or a later one) and
		 * with the waker's seq_cst CAS to AWAKE.
		 */
		v = __atomic_load_n(word, __ATOMIC_SEQ_CST);
		if (v == LLMP_CTL_SLEEPING) {
			/* Until a waker's FUTEX_WAKE; at once if the word no longer holds SLEEPING. */
			futex_call(word, FUTEX_WAIT, LLMP_CTL_SLEEPING);
			continue;
		}
		if (v == LLMP_CTL_AWAKE && write(lp->evfd, &one, sizeof(one)) < 0) {
			/* counter full: the loop has a wake-up pending anyway */
		}
		handled = seq;
	}
	return NULL;
}

/* Start the bridge (at the first sleep, so a fork after llmp_loop_new copies no thread). */
static int bridge_start(struct llmp_loop *lp)
{
	sigset_t all, old;
	int err;

	/* The bridge takes no signal: SIGINT/SIGTERM stay for the signalfd or the caller. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	err = pthread_create(&lp->bridge, NULL, bridge_main, lp);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (err)
		return llmp_err(-err, "loop: cannot start the wake bridge thread: %s", strerror(err));
	lp->bridge_on = true;
	lp->bridge_pid = getpid();
	return 0;
}

/* Before waiting: unpark the bridge if it waits for this sleep. */
static void bridge_arm(struct llmp_loop *lp)
{
	uint32_t parked = GATE_PARKED;

	/* Pairs with the bridge's CAS to GATE_PARKED (see bridge_main()). */
	if (__atomic_load_n(&lp->gate, __ATOMIC_SEQ_CST) == GATE_PARKED &&
	    __atomic_compare_exchange_n(&lp->gate, &parked, GATE_RUN, false, __ATOMIC_SEQ_CST,
					__ATOMIC_SEQ_CST))
		futex_call(&lp->gate, FUTEX_WAKE_PRIVATE, 1);
}

static void bridge_stop(struct llmp_loop *lp)
{
	if (!lp->bridge_on || lp->bridge_pid != getpid())
		return; /* none, or it stayed in the parent of this fork */
	/* Pairs with the bridge's seq_cst loads of the gate. */
	__atomic_store_n(&lp->gate, GATE_QUIT, __ATOMIC_SEQ_CST);
	futex_call(&lp->gate, FUTEX_WAKE_PRIVATE, INT_MAX);
	/* The word holds RUNNING or AWAKE (no sleep is announced): a waiting bridge returns. */
	futex_call(&lp->ctl->sleep_word, FUTEX_WAKE, INT_MAX);
	pthread_join(lp->bridge, NULL);
	lp->bridge_on = false;
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
	int64_t wait_us = lp->max_sleep_us < 0 ? -1 : lp->nap_us;
	bool waited = false;
	int ret;

	if (lp->wake == WAKE_BRIDGE && !lp->bridge_on && bridge_start(lp) < 0) {
		llmp_log(LLMP_LOG_WARN, "loop: clients cannot wake the broker, it naps: %s",
			 llmp_strerror_last());
		lp->wake = WAKE_NAP;
	}
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
			bridge_arm(lp);
#ifdef LLMP_HAVE_LIBURING
		if (lp->backend == LLMP_LOOP_URING)
			ret = wait_uring(lp, cword, wait_us);
		else
#endif
			ret = wait_poll(lp, wait_us);
		if (lp->bell_ready) {
			uint32_t cookies[8];

			/* Non-blocking: the rings of this sleep (coalesced into one cookie). */
			lp->bell_ready = false;
			if (llmp_bell_read(lp->bell, cookies, 8) < 0)
				llmp_log(LLMP_LOG_WARN, "loop: reading the bell: %s", llmp_strerror_last());
		}
		/* Nap longer next time, up to max_sleep_us, while nothing happens. */
		if (lp->max_sleep_us > 0)
			lp->nap_us = lp->nap_us * 2 > lp->max_sleep_us ? lp->max_sleep_us
								  : lp->nap_us * 2;
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
