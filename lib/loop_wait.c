// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * How the broker's event loop waits while it sleeps: every fd it watches
 * (the stop eventfd, the signalfd, TCP listeners and peers, B2B links, the
 * bell), waited on with ppoll(2) or with one io_uring wait, and the bridge
 * thread that turns a waker's flip of the sleep word into an eventfd write
 * (wake mode futex-bridge).  The sleep protocol itself is in lib/loop.c.
 */
#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "loop_internal.h"

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

/* ---- waiting ---------------------------------------------------------------- */

/* Wait up to wait_us for an fd (poll backend: the word through the bridge's eventfd or the bell). */
int llmp_loop_wait_poll(struct llmp_loop *lp, int64_t wait_us)
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
int llmp_loop_wait_uring(struct llmp_loop *lp, uint32_t *word, int64_t wait_us)
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
		/* Pairs with the seq_cst stores of the gate in llmp_loop_bridge_arm() and llmp_loop_bridge_stop(). */
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
			/* Pairs with the seq_cst CAS/store and FUTEX_WAKE in llmp_loop_bridge_arm()/llmp_loop_bridge_stop(). */
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
int llmp_loop_bridge_start(struct llmp_loop *lp)
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
void llmp_loop_bridge_arm(struct llmp_loop *lp)
{
	uint32_t parked = GATE_PARKED;

	/* Pairs with the bridge's CAS to GATE_PARKED (see bridge_main()). */
	if (__atomic_load_n(&lp->gate, __ATOMIC_SEQ_CST) == GATE_PARKED &&
	    __atomic_compare_exchange_n(&lp->gate, &parked, GATE_RUN, false, __ATOMIC_SEQ_CST,
					__ATOMIC_SEQ_CST))
		futex_call(&lp->gate, FUTEX_WAKE_PRIVATE, 1);
}

void llmp_loop_bridge_stop(struct llmp_loop *lp)
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
