/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * The event loop's state, shared by lib/loop.c (the loop, its links and
 * listeners, the sleep protocol) and lib/loop_wait.c (the waits and the
 * bridge thread).  Not installed.
 */
#ifndef LLMP_LOOP_INTERNAL_H
#define LLMP_LOOP_INTERNAL_H

#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#ifdef LLMP_HAVE_LIBURING
#include <liburing.h>
#endif

#include "llmp/bell.h"
#include "llmp/broker.h"
#include "tcp.h"
#include "broker_internal.h"
#include "b2b.h"
#include "ctl.h"

LLMP_HIDDEN_BEGIN

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
	struct llmp_nats *nats;      /* the NATS bridge (lib/nats_*.c), or NULL */
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
	enum llmp_loop_nap nap_policy;
	/* llmp_loop_needs_nap()'s last answer, and what it was computed from */
	bool pk_valid, pk_nap;
	uint32_t pk_gen, pk_next;
	unsigned pk_clients, pk_silent; /* clients then, and how many could not wake the loop */
	/* lossless mode (lib/loop_lossless.c); ll_stuck_ms 0: off */
	int ll_stuck_ms;
	uint32_t *ll_out;       /* ids no longer waited for, sorted */
	unsigned ll_nout, ll_capout;
	uint64_t ll_idx;        /* the oldest kept page it was last asked about */
	int64_t ll_since;       /* since when (ms); 0: not asked yet */
	uint64_t ll_dropped;    /* receivers no longer waited for */
	int64_t start_ms, next_stats;
	int64_t next_check;      /* next llmp_broker_check_clients() (dead clients), ms */
	uint64_t fwd_base;       /* llmp_broker_forwarded() when run() started */
	struct llmp_loop_stats st;
};

/* Wait up to wait_us (<0: until an fd fires) on every fd, with ppoll(2). */
int llmp_loop_wait_poll(struct llmp_loop *lp, int64_t wait_us);
#ifdef LLMP_HAVE_LIBURING
/* The same with one io_uring wait, plus the futex word (futex-op mode) when word is set. */
int llmp_loop_wait_uring(struct llmp_loop *lp, uint32_t *word, int64_t wait_us);
#endif
/*
 * Does the next sleep need a nap (lib/loop_nap.c)?  True while a registered
 * client cannot wake the loop (no poker slot), with LLMP_LOOP_NAP_ALWAYS,
 * or without a control segment; false with max_sleep_us -1.
 */
bool llmp_loop_needs_nap(struct llmp_loop *lp);
/* Lossless mode off: the broadcast sender drops pages freely again. */
void llmp_loop_lossless_off(struct llmp_loop *lp);
/* The bridge thread: started at the first sleep, unparked before each wait, joined at free. */
int llmp_loop_bridge_start(struct llmp_loop *lp);
void llmp_loop_bridge_arm(struct llmp_loop *lp);
void llmp_loop_bridge_stop(struct llmp_loop *lp);

LLMP_HIDDEN_END

#endif /* LLMP_LOOP_INTERNAL_H */
