// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * Issue 8, finding 1: a hostile client whose out page chains back onto
 * itself.  An in-process broker serves two honest clients and one hostile
 * client; the test writes an END_OF_PAGE record into the hostile client's
 * page by hand (as a target with memory corruption could) that names
 * - the page itself (a self-loop),
 * - the page itself under another spelling of its id (memfd: without
 *   the generation suffix; the other kinds have one spelling),
 * - a second page whose own END_OF_PAGE names the first (A -> B -> A),
 * - a chain of 20 pages holding only END_OF_PAGE records whose last names
 *   the first again: longer than the 16 pages a reader enters without a
 *   message, so the bound, not the repeat, stops it.
 * The promise guarded: every llmp_broker_once() call returns within a
 * bounded time, the broker drops the offender with a logged reason naming
 * it, and forwards every message of the honest clients, before and after,
 * in order and intact (counted and checksummed at a receiver).
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kselftest_harness.h"
#include "llmp_test.h"

#define PAGE 65536u
#define TAG_HONEST 0x48000000u
#define TAG_X 0x58000001u
#define NHONEST 2
#define PER_ROUND 200
#define ONCE_LIMIT_S 10

enum loop_kind { SELF_LOOP, SELF_ALIAS, TWO_PAGE_LOOP, LONG_LOOP };

/* LONG_LOOP: x -> P1 -> ... -> P20 -> P1, a loop longer than the reader's bound */
#define NCHAIN 20

struct logbuf {
	pthread_mutex_t mu;
	int errors;
	char last[256];
};

static void log_cb(void *ctx, enum llmp_log_level level, const char *msg)
{
	struct logbuf *lb = ctx;

	if (level > LLMP_LOG_WARN)
		return;
	pthread_mutex_lock(&lb->mu);
	if (level == LLMP_LOG_ERROR) {
		lb->errors++;
		snprintf(lb->last, sizeof(lb->last), "%s", msg);
	}
	pthread_mutex_unlock(&lb->mu);
}

FIXTURE(loop)
{
	struct llmp_provider *p;
	struct llmp_broker *b;
	struct llmp_client *h[NHONEST], *x, *rx;
	uint32_t hid[NHONEST], xid;
	struct llmp_shmem *xpage, *other, *chain[NCHAIN];
	struct logbuf lb;
	int sent[NHONEST], seen[NHONEST];
	uint64_t sum_sent[NHONEST], sum_seen[NHONEST];
	int x_seen;
};

FIXTURE_VARIANT(loop)
{
	enum llmp_shmem_kind kind;
};

FIXTURE_VARIANT_ADD(loop, memfd) { .kind = LLMP_SHMEM_MEMFD };
FIXTURE_VARIANT_ADD(loop, sysv) { .kind = LLMP_SHMEM_SYSV };
FIXTURE_VARIANT_ADD(loop, posix) { .kind = LLMP_SHMEM_POSIX };

static int new_client(FIXTURE_DATA(loop) *self, struct llmp_client **c, uint32_t *id)
{
	struct llmp_client_opts o = { .struct_size = sizeof(o), .page_size = PAGE,
				      .send_timeout_ms = LLMP_NO_WAIT };
	struct llmp_shmem_desc bd, od;
	int r;

	if ((r = llmp_broker_broadcast_desc(self->b, &bd)) < 0 ||
	    (r = llmp_client_new(self->p, &bd, &o, c)) < 0)
		return r;
	if (!id)
		return 0;
	if ((r = llmp_client_out_desc(*c, &od)) < 0)
		return r;
	if ((r = llmp_broker_add_client(self->b, &od)) < 0)
		return r;
	*id = (uint32_t)r;
	llmp_client_set_id(*c, *id);
	return 0;
}

FIXTURE_SETUP(loop)
{
	struct llmp_broker_opts bo = { .struct_size = sizeof(bo), .page_size = PAGE };
	struct llmp_shmem_desc od;
	int r = llmp_provider_new(variant->kind, &self->p);

	if (r == -ENODEV) {
		self->p = NULL;
		SKIP(return, "%s provider not available here: %s",
		     llmp_shmem_kind_name(variant->kind), llmp_strerror_last());
	}
	ASSERT_EQ(0, r) TH_LOG("llmp_provider_new: %s", llmp_strerror_last());
	pthread_mutex_init(&self->lb.mu, NULL);
	ASSERT_EQ(0, llmp_broker_new(self->p, &bo, &self->b)) TH_LOG("%s", llmp_strerror_last());
	for (int i = 0; i < NHONEST; i++)
		ASSERT_EQ(0, new_client(self, &self->h[i], &self->hid[i]));
	ASSERT_EQ(0, new_client(self, &self->x, &self->xid));
	ASSERT_EQ(0, new_client(self, &self->rx, NULL));
	ASSERT_EQ(0, llmp_client_out_desc(self->x, &od));
	ASSERT_EQ(0, llmp_shmem_attach(self->p, &od, &self->xpage));
	llmp_set_log(log_cb, &self->lb, LLMP_LOG_WARN);
}

FIXTURE_TEARDOWN(loop)
{
	llmp_set_log(NULL, NULL, LLMP_LOG_WARN);
	if (self->rx)
		llmp_client_free(self->rx);
	for (int i = 0; i < NHONEST; i++)
		if (self->h[i])
			llmp_client_free(self->h[i]);
	if (self->b)
		llmp_broker_free(self->b);
	llmp_shmem_put(self->other);
	for (int i = 0; i < NCHAIN; i++)
		llmp_shmem_put(self->chain[i]);
	llmp_shmem_put(self->xpage);
	/* the hostile client last: its page is named by the records we wrote */
	if (self->x)
		llmp_client_free(self->x);
	if (self->p)
		llmp_provider_free(self->p);
}

struct once_call {
	struct llmp_broker *b;
	int ret;
};

static void *once_thread(void *arg)
{
	struct once_call *oc = arg;

	oc->ret = llmp_broker_once(oc->b);
	return NULL;
}

/* One llmp_broker_once(), which must return within ONCE_LIMIT_S seconds. */
static int once_bounded(struct __test_metadata *_metadata, struct llmp_broker *b, int *ret)
{
	struct once_call oc = { .b = b };
	struct timespec until;
	pthread_t t;

	if (pthread_create(&t, NULL, once_thread, &oc))
		return -1;
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += ONCE_LIMIT_S;
	if (pthread_timedjoin_np(t, NULL, &until)) {
		TH_LOG("llmp_broker_once did not return within %d s: the broker hangs",
		       ONCE_LIMIT_S);
		return -1;
	}
	*ret = oc.ret;
	return 0;
}

/* Serve until the broker is idle. */
static void serve(struct __test_metadata *_metadata, FIXTURE_DATA(loop) *self)
{
	for (int rounds = 0; rounds < 10000; rounds++) {
		int r;

		ASSERT_EQ(0, once_bounded(_metadata, self->b, &r));
		ASSERT_LE(0, r) TH_LOG("llmp_broker_once: %d %s", r, llmp_strerror_last());
		if (r == 0)
			return;
	}
	ASSERT_TRUE(false) TH_LOG("the broker never became idle");
}

static void payload(int who, int seq, uint8_t *buf, size_t len)
{
	uint64_t s = (uint64_t)who << 32 | (uint32_t)seq;

	s = s * 0x9E3779B97F4A7C15ULL + 1;
	for (size_t i = 0; i < len; i++)
		buf[i] = (uint8_t)llmp_test_rand(&s);
}

static void send_honest(struct __test_metadata *_metadata, FIXTURE_DATA(loop) *self, int n)
{
	uint8_t buf[512];

	for (int k = 0; k < n; k++) {
		for (int i = 0; i < NHONEST; i++) {
			int seq = self->sent[i]++;
			size_t len = 16 + (size_t)(seq * 37 % 480);

			payload(i, seq, buf, len);
			self->sum_sent[i] += llmp_test_fnv(buf, len);
			ASSERT_EQ(0, llmp_client_send(self->h[i], TAG_HONEST + (uint32_t)seq, 0,
						      buf, len)) TH_LOG("%s", llmp_strerror_last());
		}
		if (k % 50 == 49)
			serve(_metadata, self);
	}
}

/* Read the broadcast: honest messages in order and intact, x's at most once. */
static void receive(struct __test_metadata *_metadata, FIXTURE_DATA(loop) *self)
{
	struct llmp_msg_view v;
	uint8_t want[512];
	int r;

	while ((r = llmp_client_recv(self->rx, &v)) == 1) {
		int i;

		if (v.sender == self->xid) {
			ASSERT_EQ(TAG_X, v.tag);
			ASSERT_EQ(3u, v.len);
			ASSERT_EQ(0, memcmp(v.buf, "x-1", 3));
			self->x_seen++;
			continue;
		}
		for (i = 0; i < NHONEST && v.sender != self->hid[i]; i++)
			;
		ASSERT_LT(i, NHONEST) TH_LOG("message from unknown sender %u", v.sender);
		ASSERT_EQ(TAG_HONEST + (uint32_t)self->seen[i], v.tag) TH_LOG("client %d out of order", i);
		ASSERT_EQ(16 + (size_t)(self->seen[i] * 37 % 480), v.len);
		payload(i, self->seen[i], want, v.len);
		ASSERT_EQ(0, memcmp(want, v.buf, v.len)) TH_LOG("client %d message %d corrupt", i,
								 self->seen[i]);
		self->sum_seen[i] += llmp_test_fnv(v.buf, v.len);
		self->seen[i]++;
	}
	ASSERT_EQ(0, r) TH_LOG("receiver: %d %s", r, llmp_strerror_last());
}

static void put32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }
static void put64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }
static uint64_t get64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return v; }

/* An END_OF_PAGE record with message id mid at slot naming (id, size). */
static void write_eop(uint8_t *slot, uint64_t mid, uint32_t sender, const char *id, uint64_t size)
{
	memset(slot, 0, LLMP_EOP_MSG_SIZE);
	put32(slot, LLMP_TAG_END_OF_PAGE);
	put32(slot + 4, sender);
	put64(slot + 16, mid);
	put64(slot + 24, 32);
	put64(slot + 32, 32);
	put64(slot + 40, size);
	memcpy(slot + 48, id, strnlen(id, LLMP_SHMEM_ID_LEN - 1));
}

/* Make segment m a page holding one END_OF_PAGE record naming (id, size). */
static void eop_page(struct llmp_shmem *m, uint32_t sender, const char *id, uint64_t size)
{
	uint8_t *pb = llmp_shmem_addr(m);

	memset(pb, 0, LLMP_PAGE_HEADER_LEN);
	put64(pb, LLMP_PAGE_MAGIC);
	put32(pb + 8, sender);
	put64(pb + 24, PAGE - LLMP_PAGE_HEADER_LEN);
	put64(pb + 32, LLMP_EOP_MSG_SIZE);
	write_eop(pb + LLMP_PAGE_HEADER_LEN, 1, sender, id, size);
	put64(pb + 16, 1);
}

/* Another spelling of the same segment's id, or NULL if the kind has none. */
static const char *alias_of(const struct llmp_shmem_desc *d, char *buf, size_t cap)
{
	if (d->kind == LLMP_SHMEM_MEMFD) {
		long pid, fd;

		if (sscanf(d->id, "m%ld:%ld", &pid, &fd) != 2)
			return NULL;
		snprintf(buf, cap, "m%ld:%ld", pid, fd);
		return strcmp(buf, d->id) ? buf : NULL;
	}
	return NULL;
}

static void run(struct __test_metadata *_metadata, FIXTURE_DATA(loop) *self, enum loop_kind lk)
{
	const struct llmp_shmem_desc *xd;
	char alias[LLMP_SHMEM_ID_LEN + 2];
	const char *name;
	uint8_t *pg;
	uint64_t used, cur;
	size_t size;

	if (!self->p)
		return;
	xd = llmp_shmem_desc(self->xpage);
	name = xd->id;
	if (lk == SELF_ALIAS) {
		name = alias_of(xd, alias, sizeof(alias));
		if (!name || strlen(name) >= LLMP_SHMEM_ID_LEN)
			SKIP(return, "%s ids have no second spelling", llmp_shmem_kind_name(xd->kind));
	}

	/* Before: everyone's messages are forwarded. */
	ASSERT_EQ(0, llmp_client_send(self->x, TAG_X, 0, "x-1", 3));
	send_honest(_metadata, self, PER_ROUND);
	serve(_metadata, self);
	receive(_metadata, self);
	ASSERT_EQ(1, self->x_seen);
	ASSERT_EQ(NHONEST + 1, (int)llmp_broker_nclients(self->b));

	/* The loop, after x's one message, published as its writer would. */
	pg = llmp_shmem_addr(self->xpage);
	size = llmp_shmem_size(self->xpage);
	used = get64(pg + 32);
	cur = get64(pg + 16);
	ASSERT_EQ(1u, cur);
	ASSERT_LT(LLMP_PAGE_HEADER_LEN + used + LLMP_EOP_MSG_SIZE, size);
	if (lk == TWO_PAGE_LOOP) {
		/* B: a page holding one END_OF_PAGE back to A */
		ASSERT_EQ(0, llmp_shmem_new(self->p, PAGE, &self->other));
		eop_page(self->other, self->xid, xd->id, size);
		name = llmp_shmem_desc(self->other)->id;
	}
	if (lk == LONG_LOOP) {
		for (int i = 0; i < NCHAIN; i++)
			ASSERT_EQ(0, llmp_shmem_new(self->p, PAGE, &self->chain[i]));
		for (int i = 0; i < NCHAIN; i++)
			eop_page(self->chain[i], self->xid,
				 llmp_shmem_desc(self->chain[(i + 1) % NCHAIN])->id, PAGE);
		name = llmp_shmem_desc(self->chain[0])->id;
	}
	write_eop(pg + LLMP_PAGE_HEADER_LEN + used, 2, self->xid, name,
		  lk == TWO_PAGE_LOOP || lk == LONG_LOOP ? PAGE : size);
	put64(pg + 32, used + LLMP_EOP_MSG_SIZE);
	/* publishes the record; pairs with the broker's acquire fence */
	__atomic_store_n((uint64_t *)(void *)(pg + 16), 2, __ATOMIC_RELEASE);

	/* The honest clients go on; every once() returns, x is dropped. */
	send_honest(_metadata, self, PER_ROUND);
	serve(_metadata, self);
	ASSERT_EQ(NHONEST, (int)llmp_broker_nclients(self->b)) TH_LOG("the looping client "
								     "was not dropped");
	pthread_mutex_lock(&self->lb.mu);
	ASSERT_LT(0, self->lb.errors) TH_LOG("dropped without a logged reason");
	TH_LOG("broker logged: %s", self->lb.last);
	{
		char want[32];

		snprintf(want, sizeof(want), "client %u", self->xid);
		ASSERT_NE(NULL, strstr(self->lb.last, want)) TH_LOG("the log does not name "
								   "the offender");
	}
	pthread_mutex_unlock(&self->lb.mu);

	/* After the drop: still forwarding, nothing lost, nothing more from x. */
	send_honest(_metadata, self, PER_ROUND);
	serve(_metadata, self);
	receive(_metadata, self);
	for (int i = 0; i < NHONEST; i++) {
		ASSERT_EQ(3 * PER_ROUND, self->sent[i]);
		ASSERT_EQ(self->sent[i], self->seen[i]) TH_LOG("client %d: messages lost", i);
		ASSERT_EQ(self->sum_sent[i], self->sum_seen[i]);
	}
	ASSERT_EQ(1, self->x_seen);
}

TEST_F(loop, eop_names_its_own_page) { run(_metadata, self, SELF_LOOP); }
TEST_F(loop, eop_names_its_own_page_by_an_alias) { run(_metadata, self, SELF_ALIAS); }
TEST_F(loop, two_pages_name_each_other) { run(_metadata, self, TWO_PAGE_LOOP); }
TEST_F(loop, loop_longer_than_the_bound) { run(_metadata, self, LONG_LOOP); }

TEST_HARNESS_MAIN
