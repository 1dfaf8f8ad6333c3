// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * Resuming a link across re-dials, on the accepting side.  A dialled link
 * keeps its read position itself; its capabilities frame carries a resume
 * token.  An accepted link holds the history until the peer's first frame
 * (or HOLD_MS), and when that is a capabilities frame whose token a broken
 * link of the same broker had, it takes that link's read position (parked
 * when the link broke, or taken over from a link still open on a half-open
 * connection), so neither side repeats what it sent before the break.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "b2b_internal.h"

/*
 * Parked read positions: when an accepted link whose dialler gave a resume
 * token breaks, its broadcast receiver is kept here, so that the dialler's
 * next connection goes on where the old one stopped instead of sending the
 * kept history again.  Brokers of one process may run on several threads.
 */
struct parked {
	struct llmp_broker *b;
	uint64_t token;
	struct llmp_receiver r;
	struct parked *next;
};
static pthread_mutex_t park_lock = PTHREAD_MUTEX_INITIALIZER;
static struct parked *parked_list; /* newest first */
/* Accepted links that have a token (any broker of the process). */
static struct llmp_b2b_link *live_list;

void b2b_live_add(struct llmp_b2b_link *l)
{
	pthread_mutex_lock(&park_lock);
	l->live_next = live_list;
	live_list = l;
	pthread_mutex_unlock(&park_lock);
}

void b2b_live_del(struct llmp_b2b_link *l)
{
	pthread_mutex_lock(&park_lock);
	for (struct llmp_b2b_link **pp = &live_list; *pp; pp = &(*pp)->live_next) {
		if (*pp == l) {
			*pp = l->live_next;
			break;
		}
	}
	pthread_mutex_unlock(&park_lock);
}

/*
 * Another link of the same broker with this token: the old connection of a
 * dialler that is back before this broker saw that connection end (e.g. a
 * half-open one).  Both run on the broker's thread, so the caller may take
 * its reader.
 */
static struct llmp_b2b_link *live_find(const struct llmp_b2b_link *l)
{
	struct llmp_b2b_link *k;

	pthread_mutex_lock(&park_lock);
	for (k = live_list; k; k = k->live_next) {
		if (k != l && k->b == l->b && k->token == l->token && k->r_ok && !k->replaced)
			break;
	}
	pthread_mutex_unlock(&park_lock);
	return k;
}

void b2b_park(struct llmp_b2b_link *l)
{
	struct parked *p = malloc(sizeof(*p)), **pp;
	unsigned n = 0;

	if (!p)
		return; /* out of memory: the dialler gets the history again */
	p->b = l->b;
	p->token = l->token;
	memcpy(&p->r, &l->r, sizeof(p->r));
	l->r_ok = false;
	pthread_mutex_lock(&park_lock);
	p->next = parked_list;
	parked_list = p;
	/* Keep the newest MAX_PARKED of this broker. */
	for (pp = &parked_list; *pp;) {
		struct parked *q = *pp;

		if (q->b == l->b && ++n > MAX_PARKED) {
			*pp = q->next;
			llmp_receiver_fini(&q->r);
			free(q);
			continue;
		}
		pp = &q->next;
	}
	pthread_mutex_unlock(&park_lock);
}

/* Take the parked receiver of (b, token) into r: true if there was one. */
static bool unpark(struct llmp_broker *b, uint64_t token, struct llmp_receiver *r)
{
	struct parked **pp, *q = NULL;

	pthread_mutex_lock(&park_lock);
	for (pp = &parked_list; *pp; pp = &(*pp)->next) {
		if ((*pp)->b == b && (*pp)->token == token) {
			q = *pp;
			*pp = q->next;
			break;
		}
	}
	pthread_mutex_unlock(&park_lock);
	if (!q)
		return false;
	memcpy(r, &q->r, sizeof(*r));
	free(q);
	return true;
}

/* Swap the fresh receiver of a holding link for its dialler's old one. */
bool b2b_unpark_into(struct llmp_b2b_link *l)
{
	struct llmp_b2b_link *old = live_find(l);
	struct llmp_receiver r;

	if (old) {
		memcpy(&r, &old->r, sizeof(r));
		old->r_ok = false;
		old->replaced = true;
	} else if (!unpark(l->b, l->token, &r)) {
		return false;
	}
	llmp_receiver_fini(&l->r);
	memcpy(&l->r, &r, sizeof(r));
	return true;
}

void llmp_b2b_forget(struct llmp_broker *b)
{
	struct parked **pp;

	pthread_mutex_lock(&park_lock);
	for (pp = &parked_list; *pp;) {
		struct parked *q = *pp;

		if (q->b == b) {
			*pp = q->next;
			llmp_receiver_fini(&q->r);
			free(q);
			continue;
		}
		pp = &q->next;
	}
	pthread_mutex_unlock(&park_lock);
}

void b2b_hold_end(struct llmp_b2b_link *l)
{
	l->holding = false;
	if (l->hold_epfd >= 0)
		close(l->hold_epfd);
	if (l->hold_tfd >= 0)
		close(l->hold_tfd);
	l->hold_epfd = l->hold_tfd = -1;
}

/*
 * Hold the history until the peer's first frame (one of our diallers sends
 * its capabilities and resume token at once) or HOLD_MS; the loop waits on
 * an epoll of the socket and a timer meanwhile.  Without a timer the link
 * ships at once, as LibAFL does.
 */
void b2b_hold_start(struct llmp_b2b_link *l)
{
	int fd = l->fd;

	l->hold_until = llmp_now_ms() + HOLD_MS;
	l->hold_tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	l->hold_epfd = epoll_create1(EPOLL_CLOEXEC);
	if (l->hold_tfd >= 0 && l->hold_epfd >= 0) {
		struct itimerspec its = { { 0, 0 }, { l->hold_until / 1000,
						      (l->hold_until % 1000) * 1000000 } };
		struct epoll_event ev = { .events = EPOLLIN };

		ev.data.fd = l->hold_tfd;
		l->holding = timerfd_settime(l->hold_tfd, TFD_TIMER_ABSTIME, &its, NULL) == 0 &&
			     epoll_ctl(l->hold_epfd, EPOLL_CTL_ADD, l->hold_tfd, &ev) == 0;
		ev.data.fd = fd;
		l->holding = l->holding && epoll_ctl(l->hold_epfd, EPOLL_CTL_ADD, fd, &ev) == 0;
	}
	if (!l->holding)
		b2b_hold_end(l); /* no timer: ship at once, as LibAFL does */
}
