// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * A corrupted client page: the test writes garbage into the next slot of a
 * client's out page (as a buggy or hostile process could) and publishes it.
 * The broker, in a child process, must report an error for that client,
 * drop it, keep forwarding a second, healthy client's messages, never
 * crash or read outside a mapping, and exit normally when told to.  A
 * message the bad client committed before the garbage is still delivered.
 */
#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "kselftest_harness.h"
#include "llmp_test.h"

#define TAG_BAD 0x0BAD0001u
#define TAG_GOOD 0x60000000u

struct ctl {
	_Atomic int stop;
	_Atomic int nclients;   /* after the broker's last step */
	_Atomic int errors_logged;
	_Atomic int once_errors;
	char last_err[256];
	char fail[256];
};

enum garbage {
	G_UNSET,
	G_UNINITIALIZED,
	G_HUGE_LEN,
	G_PADDED_LT_LEN,
	G_PADDED_PAST_END,
	G_PADDED_OVERFLOW,
	G_SKIPPED_ID,
	G_EOP_SHORT,
	G_EOP_NO_NUL,
	G_EOP_NO_SUCH_SEGMENT,
	G_EOP_HUGE_SIZE,
	G_EOP_TINY_SIZE,
	G_EOP_NOT_A_PAGE,
};

static void log_cb(void *ctx, enum llmp_log_level level, const char *msg)
{
	struct ctl *ctl = ctx;

	if (level != LLMP_LOG_ERROR)
		return;
	/* relaxed: read by the parent after waitpid() or as a hint while polling */
	atomic_fetch_add_explicit(&ctl->errors_logged, 1, memory_order_relaxed);
	snprintf(ctl->last_err, sizeof(ctl->last_err), "%s", msg);
}

/* The broker process: serve two clients until told to stop. */
static int broker_child(struct ctl *ctl, enum llmp_shmem_kind kind, int wfd, int rfd)
{
	struct llmp_broker_opts bo = { .struct_size = sizeof(bo), .page_size = 65536 };
	struct llmp_provider *p;
	struct llmp_broker *b;
	struct llmp_shmem_desc d;

	if (llmp_provider_new(kind, &p) < 0 || llmp_broker_new(p, &bo, &b) < 0) {
		snprintf(ctl->fail, sizeof(ctl->fail), "broker: %s", llmp_strerror_last());
		return 10;
	}
	if (llmp_broker_broadcast_desc(b, &d) < 0 || write(wfd, &d, sizeof(d)) != sizeof(d))
		return 11;
	for (int i = 0; i < 2; i++) {
		int32_t id;

		if (read(rfd, &d, sizeof(d)) != sizeof(d))
			return 12;
		id = llmp_broker_add_client(b, &d);
		if (write(wfd, &id, sizeof(id)) != sizeof(id) || id <= 0)
			return 13;
	}
	llmp_set_log(log_cb, ctl, LLMP_LOG_ERROR);
	while (!atomic_load(&ctl->stop)) {
		int r = llmp_broker_once(b);

		if (r < 0) {
			atomic_fetch_add(&ctl->once_errors, 1);
			snprintf(ctl->last_err, sizeof(ctl->last_err), "%s", llmp_strerror_last());
		}
		atomic_store(&ctl->nclients, (int)llmp_broker_nclients(b));
		if (r == 0)
			usleep(100);
	}
	llmp_broker_once(b);
	atomic_store(&ctl->nclients, (int)llmp_broker_nclients(b));
	llmp_set_log(NULL, NULL, LLMP_LOG_ERROR);
	llmp_broker_free(b);
	llmp_provider_free(p);
	return 0;
}

FIXTURE(corrupt)
{
	struct llmp_provider *p;
	struct llmp_client *bad, *good, *rx;
	struct llmp_shmem *m, *zero;
	struct ctl *ctl;
	pid_t broker;
	uint32_t id_bad, id_good;
	int good_seq, good_seen;
};

FIXTURE_VARIANT(corrupt)
{
	enum llmp_shmem_kind kind;
};

FIXTURE_VARIANT_ADD(corrupt, memfd) { .kind = LLMP_SHMEM_MEMFD };
FIXTURE_VARIANT_ADD(corrupt, sysv) { .kind = LLMP_SHMEM_SYSV };
FIXTURE_VARIANT_ADD(corrupt, posix) { .kind = LLMP_SHMEM_POSIX };

FIXTURE_SETUP(corrupt)
{
	struct llmp_client_opts o = { .struct_size = sizeof(o), .page_size = 65536,
				      .send_timeout_ms = 5000 };
	struct llmp_shmem_desc bd, od;
	int wp[2], rp[2], r;
	int32_t id;

	r = llmp_provider_new(variant->kind, &self->p);
	if (r == -ENODEV) {
		self->p = NULL;
		SKIP(return, "%s provider not available here: %s",
		     llmp_shmem_kind_name(variant->kind), llmp_strerror_last());
	}
	ASSERT_EQ(0, r) TH_LOG("llmp_provider_new: %s", llmp_strerror_last());
	self->ctl = mmap(NULL, sizeof(struct ctl), PROT_READ | PROT_WRITE,
			 MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	ASSERT_NE(MAP_FAILED, self->ctl);
	ASSERT_EQ(0, pipe(wp));
	ASSERT_EQ(0, pipe(rp));
	self->broker = fork();
	ASSERT_LE(0, self->broker);
	if (self->broker == 0) {
		close(wp[0]);
		close(rp[1]);
		_exit(broker_child(self->ctl, variant->kind, wp[1], rp[0]));
	}
	close(wp[1]);
	close(rp[0]);
	ASSERT_EQ((ssize_t)sizeof(bd), read(wp[0], &bd, sizeof(bd))) TH_LOG("%s", self->ctl->fail);
	ASSERT_EQ(0, llmp_client_new(self->p, &bd, &o, &self->bad)) TH_LOG("%s", llmp_strerror_last());
	ASSERT_EQ(0, llmp_client_new(self->p, &bd, &o, &self->good));
	ASSERT_EQ(0, llmp_client_new(self->p, &bd, &o, &self->rx));
	ASSERT_EQ(0, llmp_client_out_desc(self->bad, &od));
	ASSERT_EQ((ssize_t)sizeof(od), write(rp[1], &od, sizeof(od)));
	ASSERT_EQ((ssize_t)sizeof(id), read(wp[0], &id, sizeof(id)));
	ASSERT_LT(0, id);
	self->id_bad = (uint32_t)id;
	llmp_client_set_id(self->bad, self->id_bad);
	ASSERT_EQ(0, llmp_client_out_desc(self->good, &od));
	ASSERT_EQ((ssize_t)sizeof(od), write(rp[1], &od, sizeof(od)));
	ASSERT_EQ((ssize_t)sizeof(id), read(wp[0], &id, sizeof(id)));
	ASSERT_LT(0, id);
	self->id_good = (uint32_t)id;
	llmp_client_set_id(self->good, self->id_good);
	close(wp[0]);
	close(rp[1]);
	ASSERT_EQ(0, llmp_client_out_desc(self->bad, &od));
	ASSERT_EQ(0, llmp_shmem_attach(self->p, &od, &self->m));
}

FIXTURE_TEARDOWN(corrupt)
{
	if (self->broker > 0) {
		kill(self->broker, SIGKILL);
		waitpid(self->broker, NULL, 0);
	}
	llmp_shmem_put(self->m);
	llmp_shmem_put(self->zero);
	if (self->rx)
		llmp_client_free(self->rx);
	if (self->good)
		llmp_client_free(self->good);
	if (self->bad)
		llmp_client_free(self->bad);
	if (self->p)
		llmp_provider_free(self->p);
	if (self->ctl && self->ctl != MAP_FAILED)
		munmap(self->ctl, sizeof(struct ctl));
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/*
 * Read the broadcast until the good client's messages up to good_seq and
 * (if want_bad) the bad client's one message have arrived.  Returns 0, or
 * a negative code with the reason logged.
 */
static int drain(struct __test_metadata *_metadata, FIXTURE_DATA(corrupt) *self, int want_bad)
{
	double until = now_s() + 10;
	struct llmp_msg_view v;
	int bad_seen = 0;

	while (self->good_seen < self->good_seq || (want_bad && !bad_seen)) {
		int r = llmp_client_recv_wait(self->rx, &v, 100);

		if (r < 0) {
			TH_LOG("receiver: %d %s", r, llmp_strerror_last());
			return r;
		}
		if (r == 0) {
			if (now_s() > until) {
				TH_LOG("timed out: good %d of %d, bad %d", self->good_seen,
				       self->good_seq, bad_seen);
				return -ETIMEDOUT;
			}
			continue;
		}
		if (v.sender == self->id_bad) {
			if (v.tag != TAG_BAD || v.len != 5 || memcmp(v.buf, "bad-1", 5) || bad_seen) {
				TH_LOG("garbage forwarded: tag %#x len %zu", v.tag, v.len);
				return -EPROTO;
			}
			bad_seen = 1;
			continue;
		}
		if (v.sender != self->id_good || v.tag != TAG_GOOD + (uint32_t)self->good_seen ||
		    v.len != 4 || memcmp(v.buf, &self->good_seen, 4)) {
			TH_LOG("unexpected message sender %u tag %#x len %zu (good message %d due)",
			       v.sender, v.tag, v.len, self->good_seen);
			return -EPROTO;
		}
		self->good_seen++;
	}
	return 0;
}

static int send_good(FIXTURE_DATA(corrupt) *self, int n)
{
	for (int i = 0; i < n; i++, self->good_seq++) {
		int r = llmp_client_send(self->good, TAG_GOOD + (uint32_t)self->good_seq, 0,
					 &self->good_seq, 4);

		if (r < 0)
			return r;
	}
	return 0;
}

static void put32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }
static void put64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }

/*
 * Write garbage of kind g into the slot at page offset off of a page of
 * size bytes, as the next message (id 2) of sender: own is a real segment
 * of 64 KiB, zero a zero-filled one.
 */
static void write_garbage(uint8_t *slot, size_t size, size_t off, enum garbage g, uint32_t sender,
			  const struct llmp_shmem_desc *own, const struct llmp_shmem_desc *zero)
{
	memset(slot, 0, 256);
	put32(slot + 0, 0x61u);
	put32(slot + 4, sender);
	put64(slot + 16, 2);
	put64(slot + 24, 8);
	put64(slot + 32, 24);
	switch (g) {
	case G_UNSET:
		put32(slot, LLMP_TAG_UNSET);
		break;
	case G_UNINITIALIZED:
		put32(slot, LLMP_TAG_UNINITIALIZED);
		break;
	case G_HUGE_LEN:
		put64(slot + 24, 1ULL << 40);
		put64(slot + 32, 1ULL << 40);
		break;
	case G_PADDED_LT_LEN:
		put64(slot + 24, 100);
		put64(slot + 32, 24);
		break;
	case G_PADDED_PAST_END:
		put64(slot + 24, 0);
		put64(slot + 32, size - off - LLMP_MSG_HEADER_LEN + 64);
		break;
	case G_PADDED_OVERFLOW:
		put64(slot + 24, 0);
		put64(slot + 32, UINT64_MAX - 16);
		break;
	case G_SKIPPED_ID:
		put64(slot + 16, 7);
		break;
	case G_EOP_SHORT:
		put32(slot, LLMP_TAG_END_OF_PAGE);
		put64(slot + 24, 8);
		put64(slot + 32, 8);
		put64(slot + 40, 65536);
		break;
	case G_EOP_NO_NUL:
	case G_EOP_NO_SUCH_SEGMENT:
	case G_EOP_HUGE_SIZE:
	case G_EOP_TINY_SIZE:
	case G_EOP_NOT_A_PAGE: {
		/* a real segment of the right size, but all zero: no page magic */
		const struct llmp_shmem_desc *d = g == G_EOP_NOT_A_PAGE ? zero : own;

		put32(slot, LLMP_TAG_END_OF_PAGE);
		put64(slot + 24, 32);
		put64(slot + 32, 32);
		put64(slot + 40, 65536);
		/* by default a real segment id: only the field under test is wrong */
		memcpy(slot + 48, d->id, LLMP_SHMEM_ID_LEN);
		if (g == G_EOP_NO_NUL)
			memset(slot + 48, '7', 20);
		if (g == G_EOP_NO_SUCH_SEGMENT) {
			/* well-formed for the kind, but nothing by that id */
			const char *none = d->kind == LLMP_SHMEM_MEMFD ? "m1:999:0" :
					   d->kind == LLMP_SHMEM_POSIX ? "/llmp_no_such_seg" :
					   "2147480001";

			memset(slot + 48, 0, 20);
			memcpy(slot + 48, none, strlen(none));
		}
		if (g == G_EOP_HUGE_SIZE)
			put64(slot + 40, 1ULL << 62);
		if (g == G_EOP_TINY_SIZE)
			put64(slot + 40, 48);
		break;
	}
	}
}

static void run_case(struct __test_metadata *_metadata, FIXTURE_DATA(corrupt) *self,
		     enum garbage g)
{
	uint8_t *pg, *slot;
	size_t size, off;
	uint64_t used, cur;
	int st;

	if (!self->p)
		return;
	/* Before: both clients forward normally. */
	ASSERT_EQ(0, llmp_client_send(self->bad, TAG_BAD, 0, "bad-1", 5));
	ASSERT_EQ(0, send_good(self, 10));
	ASSERT_EQ(0, drain(_metadata, self, 1));

	/* The garbage, in the slot after the bad client's last message. */
	pg = llmp_shmem_addr(self->m);
	size = llmp_shmem_size(self->m);
	memcpy(&used, pg + 32, 8);
	memcpy(&cur, pg + 16, 8);
	ASSERT_EQ(1u, cur);
	off = LLMP_PAGE_HEADER_LEN + used;
	ASSERT_LT(off + 256, size);
	slot = pg + off;
	if (g == G_EOP_NOT_A_PAGE)
		ASSERT_EQ(0, llmp_shmem_new(self->p, 65536, &self->zero));
	write_garbage(slot, size, off, g, self->id_bad, llmp_shmem_desc(self->m),
		      self->zero ? llmp_shmem_desc(self->zero) : NULL);
	/* Publish it as the writer would: pairs with the broker's acquire fence. */
	__atomic_store_n((uint64_t *)(pg + 16), 2, __ATOMIC_RELEASE);

	/* The broker drops the bad client and keeps serving the good one. */
	ASSERT_EQ(0, send_good(self, 10));
	ASSERT_EQ(0, drain(_metadata, self, 0));
	for (double until = now_s() + 10; atomic_load(&self->ctl->nclients) != 1;) {
		ASSERT_LT(now_s(), until) TH_LOG("the bad client was not dropped");
		usleep(1000);
	}
	ASSERT_EQ(0, send_good(self, 10));
	ASSERT_EQ(0, drain(_metadata, self, 0));

	atomic_store(&self->ctl->stop, 1);
	ASSERT_EQ(self->broker, waitpid(self->broker, &st, 0));
	self->broker = 0;
	ASSERT_TRUE(WIFEXITED(st)) TH_LOG("broker killed by signal %d", WTERMSIG(st));
	ASSERT_EQ(0, WEXITSTATUS(st)) TH_LOG("%s", self->ctl->fail);
	ASSERT_EQ(1, atomic_load(&self->ctl->nclients));
	ASSERT_LT(0, atomic_load(&self->ctl->errors_logged) + atomic_load(&self->ctl->once_errors))
		TH_LOG("the broker dropped the client without reporting an error");
	TH_LOG("broker reported: %s", self->ctl->last_err);
	ASSERT_NE(0, self->ctl->last_err[0]);
	/* Nothing after the garbage came from the bad client (checked by drain). */
}

TEST_F(corrupt, unset_tag) { run_case(_metadata, self, G_UNSET); }
TEST_F(corrupt, uninitialized_tag) { run_case(_metadata, self, G_UNINITIALIZED); }
TEST_F(corrupt, huge_buf_len) { run_case(_metadata, self, G_HUGE_LEN); }
TEST_F(corrupt, padded_less_than_len) { run_case(_metadata, self, G_PADDED_LT_LEN); }
TEST_F(corrupt, padded_past_mapping_end) { run_case(_metadata, self, G_PADDED_PAST_END); }
TEST_F(corrupt, padded_overflows) { run_case(_metadata, self, G_PADDED_OVERFLOW); }
TEST_F(corrupt, skipped_message_id) { run_case(_metadata, self, G_SKIPPED_ID); }
TEST_F(corrupt, eop_short_payload) { run_case(_metadata, self, G_EOP_SHORT); }
TEST_F(corrupt, eop_id_not_terminated) { run_case(_metadata, self, G_EOP_NO_NUL); }
TEST_F(corrupt, eop_no_such_segment) { run_case(_metadata, self, G_EOP_NO_SUCH_SEGMENT); }
TEST_F(corrupt, eop_huge_map_size) { run_case(_metadata, self, G_EOP_HUGE_SIZE); }
TEST_F(corrupt, eop_tiny_map_size) { run_case(_metadata, self, G_EOP_TINY_SIZE); }
TEST_F(corrupt, eop_names_a_non_page) { run_case(_metadata, self, G_EOP_NOT_A_PAGE); }

/* ---- the receiving side: a client reading a corrupt broadcast page ------- */

static void page_header(uint8_t *pg, size_t size, uint64_t cur, uint64_t used)
{
	uint64_t magic = LLMP_PAGE_MAGIC;

	memset(pg, 0, 48);
	put64(pg, magic);
	put64(pg + 16, cur);
	put64(pg + 24, size - 48);
	put64(pg + 32, used);
	put64(pg + 40, 128);
}

TEST(client_reading_garbage_gets_an_error)
{
	/*
	 * The broadcast chain a client reads: page A holds an END_OF_PAGE to
	 * page B; B holds one good message, then the garbage.  The client
	 * gets the good message, then an error, the same error again (it stays
	 * stopped), and never reads outside its mappings.
	 */
	static const enum llmp_shmem_kind kinds[] = { LLMP_SHMEM_MEMFD, LLMP_SHMEM_SYSV,
						      LLMP_SHMEM_POSIX };
	int tested = 0;

	for (unsigned k = 0; k < 3; k++) {
		struct llmp_client_opts o = { .struct_size = sizeof(o), .send_timeout_ms = LLMP_NO_WAIT,
					      .page_size = 4096 };
		struct llmp_provider *p;

		if (llmp_provider_new(kinds[k], &p) < 0)
			continue;
		for (int g = G_UNSET; g <= G_EOP_NOT_A_PAGE; g++) {
			struct llmp_shmem *a, *b, *z;
			struct llmp_client *c;
			struct llmp_msg_view v;
			uint8_t *pa, *pb;
			int r1, r2;

			ASSERT_EQ(0, llmp_shmem_new(p, 65536, &a));
			ASSERT_EQ(0, llmp_shmem_new(p, 65536, &b));
			ASSERT_EQ(0, llmp_shmem_new(p, 65536, &z));
			pa = llmp_shmem_addr(a);
			pb = llmp_shmem_addr(b);
			/* A: one END_OF_PAGE record naming B */
			page_header(pa, 65536, 1, 128);
			put32(pa + 48, LLMP_TAG_END_OF_PAGE);
			put64(pa + 48 + 16, 1);
			put64(pa + 48 + 24, 32);
			put64(pa + 48 + 32, 32);
			put64(pa + 48 + 40, 65536);
			memcpy(pa + 48 + 48, llmp_shmem_desc(b)->id, LLMP_SHMEM_ID_LEN);
			/* B: "hello", then the garbage as message 2 */
			page_header(pb, 65536, 2, 80 + 128);
			put32(pb + 48, 0x61);
			put64(pb + 48 + 16, 1);
			put64(pb + 48 + 24, 5);
			put64(pb + 48 + 32, 40);
			memcpy(pb + 48 + 40, "hello", 5);
			write_garbage(pb + 128, 65536, 128, (enum garbage)g, 0, llmp_shmem_desc(b),
				      llmp_shmem_desc(z));

			ASSERT_EQ(0, llmp_client_new(p, llmp_shmem_desc(a), &o, &c))
				TH_LOG("%s", llmp_strerror_last());
			ASSERT_EQ(1, llmp_client_recv(c, &v)) TH_LOG("%s", llmp_strerror_last());
			ASSERT_EQ(5u, v.len);
			ASSERT_EQ(0, memcmp(v.buf, "hello", 5));
			r1 = llmp_client_recv(c, &v);
			ASSERT_GT(0, r1) TH_LOG("%s garbage %d: recv %d", llmp_shmem_kind_name(kinds[k]),
						g, r1);
			ASSERT_NE(-ESHUTDOWN, r1);
			r2 = llmp_client_recv_wait(c, &v, 10);
			ASSERT_EQ(r1, r2) TH_LOG("garbage %d: the error did not stick", g);
			llmp_client_free(c);
			llmp_shmem_put(z);
			llmp_shmem_put(b);
			llmp_shmem_put(a);
			tested++;
		}
		llmp_provider_free(p);
	}
	if (!tested)
		SKIP(return, "no provider available here");
}

TEST(client_on_first_page_eop_to_missing_segment)
{
	/*
	 * The first broadcast page (the one a client is given) ends with an
	 * END_OF_PAGE naming a segment that does not exist, e.g. because the
	 * broker died and its memfd pages went with it.  The client must get
	 * an error, not "nothing yet" forever.
	 */
	static const enum llmp_shmem_kind kinds[] = { LLMP_SHMEM_MEMFD, LLMP_SHMEM_SYSV,
						      LLMP_SHMEM_POSIX };
	int tested = 0;

	for (unsigned k = 0; k < 3; k++) {
		struct llmp_client_opts o = { .struct_size = sizeof(o), .send_timeout_ms = LLMP_NO_WAIT,
					      .page_size = 4096 };
		const char *none = kinds[k] == LLMP_SHMEM_MEMFD ? "m1:999:0" :
				   kinds[k] == LLMP_SHMEM_POSIX ? "/llmp_no_such_seg" : "2147480001";
		struct llmp_provider *p;
		struct llmp_shmem *a;
		struct llmp_client *c;
		struct llmp_msg_view v;
		char why[256];
		uint8_t *pa;
		int r;

		if (llmp_provider_new(kinds[k], &p) < 0)
			continue;
		ASSERT_EQ(0, llmp_shmem_new(p, 65536, &a));
		pa = llmp_shmem_addr(a);
		page_header(pa, 65536, 1, 128);
		put32(pa + 48, LLMP_TAG_END_OF_PAGE);
		put64(pa + 48 + 16, 1);
		put64(pa + 48 + 24, 32);
		put64(pa + 48 + 32, 32);
		put64(pa + 48 + 40, 65536);
		memcpy(pa + 48 + 48, none, strlen(none));
		ASSERT_EQ(0, llmp_client_new(p, llmp_shmem_desc(a), &o, &c));
		r = llmp_client_recv_wait(c, &v, 300);
		snprintf(why, sizeof(why), "%s", llmp_strerror_last());
		llmp_client_free(c);
		llmp_shmem_put(a);
		llmp_provider_free(p);
		ASSERT_GT(0, r) TH_LOG("%s: recv returned %d (\"nothing yet\") for an END_OF_PAGE on the "
				       "first broadcast page naming a missing segment (%s); the page "
				       "layer retries that case forever (recv_follow: "
				       "recv_on_anchor -> return 0)", llmp_shmem_kind_name(kinds[k]),
				       r, why);
		tested++;
	}
	if (!tested)
		SKIP(return, "no provider available here");
}

TEST_HARNESS_MAIN
