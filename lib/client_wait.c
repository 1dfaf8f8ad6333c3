// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * The receiving side of a client: recv, recv_wait, wait_safe, noticing a
 * dead broker, and llmp_client_event_fd() (a pollable fd that turns
 * readable when the broker publishes).  Documentation/protocol.rst
 * ("Waiting for messages", "When the broker dies") has the contract.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#if defined(__linux__)
#include <linux/futex.h>
#include <pthread.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

#include "client_internal.h"
#include "ctl.h"
#include "llmp/broker.h"

uint64_t llmp_coarse_ns(void)
{
#if defined(CLOCK_MONOTONIC_COARSE)
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
#else
	return llmp_now_ns();
#endif
}

void llmp_client_watch_broker(struct llmp_client *c)
{
	long pid = c->in.shm ? llmp_shmem_creator_pid(c->in.shm) : 0;

	c->bw.fd = -1;
	c->bw.pid = 0;
	/* 1: already gone; the first check says so */
	(void)llmp_pidwatch_set(&c->bw, pid);
}

static int gone_err(struct llmp_client *c, bool first)
{
	int ret;

	if (!first)
		llmp_log_probe_begin(); /* said once at ERROR; later calls only set the text */
	ret = llmp_err(-EPIPE, "client %u: the broker (pid %ld) died; nothing sent now reaches it",
		       c->out.id, c->bw.pid);
	if (!first)
		llmp_log_probe_end();
	return ret;
}

int llmp_client_check_broker(struct llmp_client *c)
{
	int zero = 0;

	if (__atomic_load_n(&c->gone, __ATOMIC_RELAXED))
		return gone_err(c, false);
	if (c->bw.pid <= 0)
		return 0;
	__atomic_store_n(&c->next_check_ns, llmp_coarse_ns() + LLMP_CLIENT_CHECK_NS, __ATOMIC_RELAXED);
	if (llmp_pidwatch_dead(&c->bw) <= 0)
		return 0;
	/* only the first to see it logs */
	return gone_err(c, __atomic_compare_exchange_n(&c->gone, &zero, -EPIPE, false,
						       __ATOMIC_RELAXED, __ATOMIC_RELAXED));
}

/* ---- receiving ----------------------------------------------------------- */

static int recv_one(struct llmp_client *c, struct llmp_msg_view *out)
{
	struct llmp_rmsg m;
	int ret;

	if (LLMP_UNLIKELY(c->guard))
		llmp_client_guard_retire(c->guard);
	for (;;) {
		ret = llmp_receiver_next(&c->in, &m);
		/* Moved to another page: tell a lossless broker where we read now. */
		if (LLMP_UNLIKELY(c->in.pages_seen != c->rep_seen) && c->waker) {
			c->rep_seen = c->in.pages_seen;
			llmp_waker_report(c->waker, c->in.index_known ? c->in.page_index + 1 : 0);
		}
		if (ret == 0) {
			if (LLMP_LIKELY(!llmp_client_broker_gone(c)))
				return 0;
			/* what it committed before dying is still read first */
			ret = llmp_receiver_next(&c->in, &m);
			if (ret == 0)
				return llmp_client_check_broker(c);
		}
		if (ret == -ESHUTDOWN) {
			llmp_log_probe_begin(); /* an answer, not an error: only the text */
			ret = llmp_err(-ESHUTDOWN, "client %u: the broker exited (it said EXITING)",
				       c->out.id);
			llmp_log_probe_end();
			return ret;
		}
		if (ret < 0)
			return ret;
		/* Own messages come back from the local broker only (broker 0, not B2B). */
		if (c->skip_own && m.sender == c->out.id && c->out.id != LLMP_BROKER_CLIENT_ID &&
		    m.broker == 0 && !(m.flags & LLMP_FLAG_FROM_B2B))
			continue;
		out->sender = m.sender;
		out->tag = m.tag;
		out->flags = m.flags;
		out->broker = m.broker;
		out->buf = m.buf;
		out->len = m.len;
		if (LLMP_UNLIKELY(c->guard))
			return llmp_client_guard_copy(c->guard, out);
		return 1;
	}
}

#if defined(__linux__)
/*
 * The event fd: a watcher thread sleeps (FUTEX_WAIT) on the low half of
 * current_msg_id of the broadcast page the client reads; our broker wakes
 * that word after each pass that published something (and the old page at
 * an end of page).  When a message is there, the thread makes the eventfd
 * readable and waits until a recv has found nothing left, which reads the
 * eventfd empty again.  The 100 ms timeout of the wait bounds the wake-up
 * on a broker that does not wake (LibAFL's) and is when the thread looks
 * whether the broker still lives.
 */
struct llmp_client_notify {
	pthread_t th;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int efd;
	bool signalled;		/* the eventfd holds a count */
	bool stop;
	uint32_t *waddr;	/* the word the thread sleeps on, NULL: awake */
	bool no_futex;		/* the mapping refuses futexes: nap instead */
};

#define NOTIFY_WAIT_NS (100ll * 1000000ll)
#define NOTIFY_NAP_NS (200ll * 1000ll)

static uint32_t *futex_word(struct llmp_page *pg)
{
	/* the low half of the 64-bit id on a little-endian machine */
	uint32_t *w = (uint32_t *)(void *)&pg->current_msg_id;

#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
	w++;
#endif
	return w;
}

/* Under nt->mu: is there something for recv to say (a message or an error)? */
static bool notify_pending(struct llmp_client *c)
{
	if (c->in.sticky || !c->in.pg)
		return true;
	/* pairs with the broker's release store of current_msg_id */
	if (__atomic_load_n(&c->in.pg->current_msg_id, __ATOMIC_ACQUIRE) != c->in.last_id)
		return true;
	return llmp_client_broker_gone(c) < 0;
}

static void *notify_main(void *arg)
{
	struct llmp_client *c = arg;
	struct llmp_client_notify *nt = c->nt;

	pthread_mutex_lock(&nt->mu);
	while (!nt->stop) {
		struct timespec ts = { 0, NOTIFY_WAIT_NS };
		uint32_t *w, val;
		long r;

		if (nt->signalled) {
			pthread_cond_wait(&nt->cv, &nt->mu);
			continue;
		}
		if (notify_pending(c)) {
			uint64_t one = 1;

			if (write(nt->efd, &one, sizeof(one)) == sizeof(one))
				nt->signalled = true;
			continue;
		}
		w = futex_word(c->in.pg);
		val = __atomic_load_n(w, __ATOMIC_ACQUIRE);
		if (__atomic_load_n(&c->in.pg->current_msg_id, __ATOMIC_ACQUIRE) != c->in.last_id)
			continue;
		nt->waddr = w;
		pthread_mutex_unlock(&nt->mu);
		if (nt->no_futex) {
			ts.tv_nsec = NOTIFY_NAP_NS;
			nanosleep(&ts, NULL);
		} else {
			/* shared (not private): the broker wakes it from its process */
			r = syscall(SYS_futex, w, FUTEX_WAIT, val, &ts, NULL, 0);
			if (r < 0 && errno != EAGAIN && errno != ETIMEDOUT && errno != EINTR &&
			    errno != EFAULT)
				nt->no_futex = true;
		}
		pthread_mutex_lock(&nt->mu);
		nt->waddr = NULL;
	}
	pthread_mutex_unlock(&nt->mu);
	return NULL;
}

/* Under nt->mu, after a recv found nothing: empty the eventfd, wake the watcher. */
static void notify_rearm(struct llmp_client *c)
{
	struct llmp_client_notify *nt = c->nt;
	uint64_t n;

	if (nt->waddr && nt->waddr != futex_word(c->in.pg))
		/* it sleeps on a page we left (a mapping we may still hold) */
		(void)syscall(SYS_futex, nt->waddr, FUTEX_WAKE, 1, NULL, NULL, 0);
	if (!nt->signalled)
		return;
	while (read(nt->efd, &n, sizeof(n)) == sizeof(n))
		;
	nt->signalled = false;
	pthread_cond_signal(&nt->cv);
}

int llmp_client_event_fd(struct llmp_client *c)
{
	struct llmp_client_notify *nt;
	int ret;

	if (!c)
		return llmp_err(-EINVAL, "client event fd: NULL client");
	if (c->nt)
		return c->nt->efd;
	nt = calloc(1, sizeof(*nt));
	if (!nt)
		return llmp_err(-ENOMEM, "client event fd: out of memory");
	nt->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (nt->efd < 0) {
		ret = llmp_err(-errno, "client event fd: eventfd");
		free(nt);
		return ret;
	}
	pthread_mutex_init(&nt->mu, NULL);
	pthread_cond_init(&nt->cv, NULL);
	c->nt = nt;
	ret = pthread_create(&nt->th, NULL, notify_main, c);
	if (ret) {
		c->nt = NULL;
		close(nt->efd);
		pthread_cond_destroy(&nt->cv);
		pthread_mutex_destroy(&nt->mu);
		free(nt);
		return llmp_err(-ret, "client event fd: cannot start the watcher thread");
	}
	return nt->efd;
}

void llmp_client_notify_free(struct llmp_client *c)
{
	struct llmp_client_notify *nt = c->nt;

	if (!nt)
		return;
	pthread_mutex_lock(&nt->mu);
	nt->stop = true;
	pthread_cond_signal(&nt->cv);
	if (nt->waddr)
		(void)syscall(SYS_futex, nt->waddr, FUTEX_WAKE, 1, NULL, NULL, 0);
	pthread_mutex_unlock(&nt->mu);
	pthread_join(nt->th, NULL);
	close(nt->efd);
	pthread_cond_destroy(&nt->cv);
	pthread_mutex_destroy(&nt->mu);
	free(nt);
	c->nt = NULL;
}

int llmp_client_recv(struct llmp_client *c, struct llmp_msg_view *out)
{
	int ret;

	if (LLMP_UNLIKELY(!c || !out))
		return llmp_err(-EINVAL, "client recv: NULL argument");
	if (LLMP_LIKELY(!c->nt))
		return recv_one(c, out);
	pthread_mutex_lock(&c->nt->mu);
	ret = recv_one(c, out);
	if (ret == 0)
		notify_rearm(c);
	pthread_mutex_unlock(&c->nt->mu);
	return ret;
}
#else
int llmp_client_event_fd(struct llmp_client *c)
{
	(void)c;
	return llmp_err(-EOPNOTSUPP, "client event fd: Linux only for now");
}

void llmp_client_notify_free(struct llmp_client *c)
{
	(void)c;
}

int llmp_client_recv(struct llmp_client *c, struct llmp_msg_view *out)
{
	if (LLMP_UNLIKELY(!c || !out))
		return llmp_err(-EINVAL, "client recv: NULL argument");
	return recv_one(c, out);
}
#endif

uint64_t llmp_client_pages_skipped(const struct llmp_client *c)
{
	return c ? c->in.pages_skipped : 0;
}

int llmp_client_recv_wait(struct llmp_client *c, struct llmp_msg_view *out, int timeout_ms)
{
	uint64_t deadline = 0;
	unsigned round = 0;
	int ret;

	if (timeout_ms > 0)
		deadline = llmp_now_ns() + (uint64_t)timeout_ms * 1000000ull;
	for (;;) {
		/* an empty recv also looks whether the broker lives (every 100 ms) */
		ret = llmp_client_recv(c, out);
		if (ret != 0 || timeout_ms == 0)
			return ret;
		if ((round & 15) == 0 && deadline && llmp_now_ns() > deadline)
			return 0;
		llmp_backoff(&round);
	}
}

int llmp_client_wait_safe(struct llmp_client *c, int timeout_ms)
{
	uint64_t deadline = 0;
	unsigned round = 0;
	int ret;

	if (!c)
		return llmp_err(-EINVAL, "client wait safe: NULL argument");
	if (timeout_ms > 0)
		deadline = llmp_now_ns() + (uint64_t)timeout_ms * 1000000ull;
	while (!llmp_sender_safe_to_unmap(&c->out)) {
		if (timeout_ms == 0 || (deadline && llmp_now_ns() > deadline))
			return llmp_err(-ETIMEDOUT, "client %u: the broker has not mapped the "
					"current out page", c->out.id);
		ret = llmp_client_broker_gone(c);
		if (ret < 0)
			return ret;
		llmp_backoff(&round);
	}
	return 0;
}
