// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * The LLMP protocol through the public API, broker and clients in one
 * process: the broker's side.  Promises guarded: hooks drop and rewrite,
 * the broker's own messages, EXITING gives -ESHUTDOWN (in process and
 * across processes), recv_wait times out then gets, back-pressure
 * (-EAGAIN, timeout), client exit removes the client, exit_after,
 * llmp_broker_run() forwards until stopped (also on a thread beside its
 * clients), the fit rule at the page boundary, bad options refused.  Every
 * test runs on each provider that works here.
 */
#include "protocol_fixture.h"

struct hook_ctx {
	int calls;
	uint32_t last_client;
	char out[64];
};

static enum llmp_hook_verdict hook_drop(void *ctx, struct llmp_broker *b, uint32_t client_id,
					uint32_t *tag, uint32_t *flags, const void **buf, size_t *len)
{
	struct hook_ctx *h = ctx;

	h->calls++;
	h->last_client = client_id;
	return *tag == 0xD0 ? LLMP_HOOK_DROP : LLMP_HOOK_FORWARD;
}

static enum llmp_hook_verdict hook_rewrite(void *ctx, struct llmp_broker *b, uint32_t client_id,
					   uint32_t *tag, uint32_t *flags, const void **buf,
					   size_t *len)
{
	struct hook_ctx *h = ctx;

	h->calls++;
	if (*tag == 0xA0) {
		size_t n = *len < 20 ? *len : 20;

		/* Longer than the original: "<payload>!rewritten". */
		memcpy(h->out, *buf, n);
		memcpy(h->out + n, "!rewritten", 10);
		*buf = h->out;
		*len = n + 10;
		*tag = 0xA1;
		*flags |= LLMP_FLAG_COMPRESSED;
	} else if (*tag == 0xA2) {
		/* Shorter, in place semantics: keep 2 bytes. */
		*len = 2;
	} else if (*tag == 0xA3) {
		/* A hook may not turn a message into protocol control data. */
		*tag = LLMP_TAG_END_OF_PAGE;
	}
	return LLMP_HOOK_FORWARD;
}

TEST_F(proto, hooks_drop_and_rewrite)
{
	struct llmp_client_opts o = copts(0, false);
	struct hook_ctx h1 = { 0 }, h2 = { 0 };
	struct llmp_client *a, *r;
	struct llmp_msg_view v;
	int ida;

	NEED_PROVIDER();
	ASSERT_EQ(0, new_broker(self, 0, 0, false, 0));
	ASSERT_EQ(0, llmp_broker_add_hook(self->b, hook_drop, &h1));
	ASSERT_EQ(0, llmp_broker_add_hook(self->b, hook_rewrite, &h2));
	ASSERT_GT(0, llmp_broker_add_hook(self->b, NULL, NULL));
	ida = new_client(self, &o, &a);
	ASSERT_GT(ida, 0);
	ASSERT_GT(new_client(self, &o, &r), 0);

	ASSERT_EQ(0, llmp_client_send(a, 0xD0, 0, "drop me", 7));
	ASSERT_EQ(0, llmp_client_send(a, 0xA0, 0, "abc", 3));
	ASSERT_EQ(0, llmp_client_send(a, 0xB0, 0x4, "keep", 4));
	ASSERT_EQ(0, llmp_client_send(a, 0xA2, 0, "shorten", 7));
	ASSERT_EQ(0, llmp_client_send(a, 0xD0, 0, "drop me too", 11));
	ASSERT_EQ(0, llmp_client_send(a, 0xA3, 0, "bad rewrite", 11));
	ASSERT_LE(0, pump(self->b));
	ASSERT_EQ(6, h1.calls);
	ASSERT_EQ((uint32_t)ida, h1.last_client);
	ASSERT_EQ(4, h2.calls) TH_LOG("a DROP must end the chain");

	ASSERT_EQ(1, llmp_client_recv(r, &v));
	ASSERT_EQ(0xA1u, v.tag);
	ASSERT_EQ(LLMP_FLAG_COMPRESSED, v.flags);
	ASSERT_EQ(13u, v.len);
	ASSERT_EQ(0, memcmp(v.buf, "abc!rewritten", 13));
	ASSERT_EQ((uint32_t)ida, v.sender);
	ASSERT_EQ(1, llmp_client_recv(r, &v));
	ASSERT_EQ(0xB0u, v.tag);
	ASSERT_EQ(0x4u, v.flags);
	ASSERT_EQ(4u, v.len);
	ASSERT_EQ(0, memcmp(v.buf, "keep", 4));
	ASSERT_EQ(1, llmp_client_recv(r, &v));
	ASSERT_EQ(0xA2u, v.tag);
	ASSERT_EQ(2u, v.len);
	ASSERT_EQ(0, memcmp(v.buf, "sh", 2));
	ASSERT_EQ(0, llmp_client_recv(r, &v)) TH_LOG("a dropped message was forwarded");
	/* The broadcast is intact after the refused rewrite. */
	ASSERT_EQ(0, llmp_client_send(a, 0xB1, 0, "after", 5));
	ASSERT_LE(0, pump(self->b));
	ASSERT_EQ(1, llmp_client_recv(r, &v));
	ASSERT_EQ(0xB1u, v.tag);
	ASSERT_EQ(0, llmp_client_recv(r, &v));
}

TEST_F(proto, broker_send)
{
	struct llmp_client_opts o = copts(0, false);
	struct llmp_client *a, *r;
	struct llmp_msg_view v;
	int ida;

	NEED_PROVIDER();
	ASSERT_EQ(0, new_broker(self, 0, 0, false, 0));
	ida = new_client(self, &o, &a);
	ASSERT_GT(ida, 0);
	ASSERT_GT(new_client(self, &o, &r), 0);
	ASSERT_EQ(0, llmp_broker_send(self->b, 0xB5, 0x1, "from the broker", 15))
		TH_LOG("%s", llmp_strerror_last());
	ASSERT_EQ(0, llmp_client_send(a, 0xC5, 0, "client", 6));
	ASSERT_EQ(1, pump(self->b));
	ASSERT_EQ(0, llmp_broker_send(self->b, 0xB6, 0, NULL, 0));
	/* Both clients see the broker's messages with sender id 0, in order. */
	for (int k = 0; k < 2; k++) {
		struct llmp_client *c = k ? a : r;

		ASSERT_EQ(1, llmp_client_recv(c, &v));
		ASSERT_EQ(LLMP_BROKER_CLIENT_ID, v.sender);
		ASSERT_EQ(0xB5u, v.tag);
		ASSERT_EQ(0x1u, v.flags);
		ASSERT_EQ(15u, v.len);
		ASSERT_EQ(0, memcmp(v.buf, "from the broker", 15));
		ASSERT_EQ(1, llmp_client_recv(c, &v));
		ASSERT_EQ((uint32_t)ida, v.sender);
		ASSERT_EQ(0xC5u, v.tag);
		ASSERT_EQ(1, llmp_client_recv(c, &v));
		ASSERT_EQ(LLMP_BROKER_CLIENT_ID, v.sender);
		ASSERT_EQ(0xB6u, v.tag);
		ASSERT_EQ(0u, v.len);
		ASSERT_EQ(0, llmp_client_recv(c, &v));
	}
}

TEST_F(proto, broker_exit_gives_eshutdown)
{
	struct llmp_client_opts o = copts(0, false);
	struct llmp_client *a, *r;
	struct llmp_msg_view v;

	NEED_PROVIDER();
	ASSERT_EQ(0, new_broker(self, 0, 0, false, 0));
	ASSERT_GT(new_client(self, &o, &a), 0);
	ASSERT_GT(new_client(self, &o, &r), 0);
	ASSERT_EQ(0, llmp_client_send(a, 0x77, 0, "last words", 10));
	ASSERT_EQ(1, pump(self->b));
	llmp_broker_free(self->b);
	self->b = NULL;
	/* Messages before EXITING are still delivered, then -ESHUTDOWN for good. */
	ASSERT_EQ(1, llmp_client_recv(r, &v)) TH_LOG("%s", llmp_strerror_last());
	ASSERT_EQ(0x77u, v.tag);
	ASSERT_EQ(0, memcmp(v.buf, "last words", 10));
	ASSERT_EQ(-ESHUTDOWN, llmp_client_recv(r, &v));
	ASSERT_EQ(-ESHUTDOWN, llmp_client_recv(r, &v));
	ASSERT_EQ(-ESHUTDOWN, llmp_client_recv_wait(r, &v, 1000));
	ASSERT_EQ(1, llmp_client_recv(a, &v));
	ASSERT_EQ(-ESHUTDOWN, llmp_client_recv_wait(a, &v, -1));
}

TEST_F(proto, recv_wait_times_out_then_gets)
{
	struct llmp_client_opts o = copts(0, false);
	struct llmp_client *a, *r;
	struct llmp_msg_view v;
	uint64_t t0, dt;

	NEED_PROVIDER();
	ASSERT_EQ(0, new_broker(self, 0, 0, false, 0));
	ASSERT_GT(new_client(self, &o, &a), 0);
	ASSERT_GT(new_client(self, &o, &r), 0);
	t0 = now_ms();
	ASSERT_EQ(0, llmp_client_recv_wait(r, &v, 100));
	dt = now_ms() - t0;
	ASSERT_GE(dt, 95u);
	ASSERT_LT(dt, 5000u);
	ASSERT_EQ(0, llmp_client_recv_wait(r, &v, 0));
	ASSERT_EQ(0, llmp_client_send(a, 0x88, 0, "w", 1));
	ASSERT_EQ(1, pump(self->b));
	ASSERT_EQ(1, llmp_client_recv_wait(r, &v, 1000));
	ASSERT_EQ(0x88u, v.tag);
}

TEST_F(proto, back_pressure_eagain)
{
	/*
	 * With the broker not running, a sender may fill at most
	 * max_pages_in_flight pages; then send fails with -EAGAIN (timeout 0)
	 * or after the timeout, loses nothing, and resumes once the broker
	 * catches up.
	 */
	struct llmp_client_opts o = copts(SMALL_PAGE, false), o2;
	struct llmp_client *a, *r;
	struct llmp_msg_view v;
	uint8_t buf[500];
	void *zb;
	int sent = 0, ret, read = 0;

	NEED_PROVIDER();
	o.max_pages_in_flight = 2;
	ASSERT_EQ(0, new_broker(self, SMALL_PAGE, 0, true, 0));
	ASSERT_GT(new_client(self, &o, &a), 0);
	o2 = copts(SMALL_PAGE, false);
	ASSERT_GT(new_client(self, &o2, &r), 0);
	for (;;) {
		fill(buf, sizeof(buf), (uint64_t)sent);
		ret = llmp_client_send(a, SEQ_TAG(sent), 0, buf, sizeof(buf));
		if (ret == -EAGAIN)
			break;
		ASSERT_EQ(0, ret) TH_LOG("%s", llmp_strerror_last());
		ASSERT_LT(sent, 1000) TH_LOG("no back-pressure after %d messages", sent);
		sent++;
	}
	/* 7 messages of 540 B fit a 4 KiB page; 2..4 pages may be in flight. */
	ASSERT_GE(sent, 7);
	ASSERT_LE(sent, 4 * 8) TH_LOG("%d messages sent before -EAGAIN", sent);
	ASSERT_EQ(-EAGAIN, llmp_client_send(a, SEQ_TAG(sent), 0, buf, sizeof(buf)));
	/* The zero-copy path is bounded the same way. */
	ASSERT_EQ(-EAGAIN, llmp_client_alloc(a, sizeof(buf), &zb));
	ASSERT_LE(0, pump(self->b));
	/* Room again: the rest goes through, nothing lost or repeated. */
	for (int i = 0; i < 50; i++) {
		fill(buf, sizeof(buf), (uint64_t)sent);
		ASSERT_EQ(0, send_pumped(self->b, a, SEQ_TAG(sent), 0, buf, sizeof(buf)));
		sent++;
	}
	ASSERT_LE(0, pump(self->b));
	while ((ret = llmp_client_recv(r, &v)) == 1) {
		ASSERT_EQ(SEQ_TAG(read), v.tag);
		ASSERT_EQ(-1, check(v.buf, v.len, (uint64_t)read));
		read++;
	}
	ASSERT_EQ(0, ret);
	ASSERT_EQ(sent, read);
}

TEST_F(proto, back_pressure_timeout)
{
	struct llmp_client_opts o = copts(SMALL_PAGE, false);
	struct llmp_client *a;
	uint8_t buf[500] = { 0 };
	uint64_t t0, dt;
	int ret, n = 0;

	NEED_PROVIDER();
	o.max_pages_in_flight = 1;
	o.send_timeout_ms = 200;
	ASSERT_EQ(0, new_broker(self, SMALL_PAGE, 0, false, 0));
	ASSERT_GT(new_client(self, &o, &a), 0);
	do {
		t0 = now_ms();
		ret = llmp_client_send(a, 5, 0, buf, sizeof(buf));
		ASSERT_LT(n++, 1000);
	} while (ret == 0);
	dt = now_ms() - t0;
	ASSERT_EQ(-EAGAIN, ret) TH_LOG("%s", llmp_strerror_last());
	ASSERT_GE(dt, 190u) TH_LOG("gave up after %llu ms, timeout is 200", (unsigned long long)dt);
	ASSERT_LT(dt, 5000u);
}

TEST_F(proto, client_exit_removes_client)
{
	struct llmp_client_opts o = copts(0, false);
	struct llmp_client *a, *r;
	struct llmp_msg_view v;

	NEED_PROVIDER();
	ASSERT_EQ(0, new_broker(self, 0, 0, false, 0));
	ASSERT_GT(new_client(self, &o, &a), 0);
	ASSERT_GT(new_client(self, &o, &r), 0);
	ASSERT_EQ(2u, llmp_broker_nclients(self->b));
	ASSERT_EQ(0, llmp_client_send(a, 0x99, 0, "bye", 3));
	llmp_client_free(a);
	self->c[0] = NULL;
	ASSERT_LE(0, pump(self->b));
	ASSERT_EQ(1u, llmp_broker_nclients(self->b)) TH_LOG("exited client still registered");
	/* Its last message was still forwarded; its EXITING was not. */
	ASSERT_EQ(1, llmp_client_recv(r, &v));
	ASSERT_EQ(0x99u, v.tag);
	ASSERT_EQ(0, memcmp(v.buf, "bye", 3));
	for (;;) {
		int ret = llmp_client_recv(r, &v);

		ASSERT_LE(0, ret) TH_LOG("client's exit broke the broadcast: %d", ret);
		if (ret == 0)
			break;
		ASSERT_NE(LLMP_TAG_EXITING, v.tag);
	}
}

TEST_F(proto, exit_after)
{
	struct llmp_client_opts o = copts(0, false);
	struct llmp_client *a, *c;

	NEED_PROVIDER();
	ASSERT_EQ(0, new_broker(self, 0, 0, false, 2));
	ASSERT_GT(new_client(self, &o, &a), 0);
	ASSERT_GT(new_client(self, &o, &c), 0);
	ASSERT_EQ(0, llmp_client_send(a, 1, 0, "x", 1));
	llmp_client_free(a);
	self->c[0] = NULL;
	llmp_client_free(c);
	self->c[1] = NULL;
	/* Both came and left: run() returns on its own (else the harness times out). */
	ASSERT_EQ(0, llmp_broker_run(self->b)) TH_LOG("%s", llmp_strerror_last());
	ASSERT_EQ(0u, llmp_broker_nclients(self->b));
}

static void *stopper(void *arg)
{
	struct timespec ts = { 0, 50 * 1000 * 1000 };

	nanosleep(&ts, NULL);
	llmp_broker_stop(arg);
	return NULL;
}

TEST_F(proto, run_forwards_until_stopped)
{
	struct llmp_client_opts o = copts(0, false);
	struct llmp_client *a, *r;
	struct llmp_msg_view v;
	pthread_t t;

	NEED_PROVIDER();
	ASSERT_EQ(0, new_broker(self, 0, 0, false, 0));
	ASSERT_GT(new_client(self, &o, &a), 0);
	ASSERT_GT(new_client(self, &o, &r), 0);
	ASSERT_EQ(0, llmp_client_send(a, 0x42, 0, "run", 3));
	ASSERT_EQ(0, pthread_create(&t, NULL, stopper, self->b));
	ASSERT_EQ(0, llmp_broker_run(self->b)) TH_LOG("%s", llmp_strerror_last());
	pthread_join(t, NULL);
	ASSERT_EQ(1, llmp_client_recv(r, &v));
	ASSERT_EQ(0x42u, v.tag);
}

struct runner {
	struct llmp_broker *b;
	int ret;
};

static void *run_thread(void *arg)
{
	struct runner *r = arg;

	r->ret = llmp_broker_run(r->b);
	return NULL;
}

TEST_F(proto, broker_thread_and_clients_in_one_process)
{
	/*
	 * The broker runs llmp_broker_run() on its own thread while this
	 * thread sends 20,000 messages (waiting on back-pressure) and reads
	 * them back through the broadcast page with the blocking receive.
	 * Pages of 4 * SMALL_PAGE still make about 400 page switches on each
	 * side, at a quarter of the segments (what costs most under
	 * emulation); the waits scale with llmp_test_timeout_scale().
	 */
	struct llmp_client_opts o = copts(4 * SMALL_PAGE, false);
	int k = llmp_test_timeout_scale();
	struct runner run = { 0 };
	struct llmp_client *a, *r;
	struct llmp_msg_view v;
	uint8_t buf[600];
	int next = 0, ret;
	pthread_t t;

	NEED_PROVIDER();
	o.send_timeout_ms = 20000 * k;
	o.max_pages_in_flight = 2;
	ASSERT_EQ(0, new_broker(self, 4 * SMALL_PAGE, 0, true, 0));
	ASSERT_GT(new_client(self, &o, &a), 0);
	ASSERT_GT(new_client(self, &o, &r), 0);
	run.b = self->b;
	ASSERT_EQ(0, pthread_create(&t, NULL, run_thread, &run));
	for (int i = 0; i < 20000; i++) {
		size_t len = (size_t)(i * 53) % 600;

		fill(buf, len, (uint64_t)i);
		ret = llmp_client_send(a, SEQ_TAG(i), 0, buf, len);
		if (ret < 0)
			break;
		/* read as we go, so the reader is never far behind */
		while (next <= i && llmp_client_recv(r, &v) == 1) {
			if (v.tag != SEQ_TAG(next) || v.len != (size_t)(next * 53) % 600 ||
			    check(v.buf, v.len, (uint64_t)next) != -1)
				break;
			next++;
		}
	}
	while (next < 20000) {
		ret = llmp_client_recv_wait(r, &v, 5000 * k);
		if (ret != 1 || v.tag != SEQ_TAG(next) || check(v.buf, v.len, (uint64_t)next) != -1)
			break;
		next++;
	}
	llmp_broker_stop(self->b);
	pthread_join(t, NULL);
	ASSERT_EQ(20000, next) TH_LOG("stopped at message %d: %s", next, llmp_strerror_last());
	ASSERT_EQ(0, run.ret);
	/* run() broadcast EXITING when it stopped. */
	ASSERT_EQ(-ESHUTDOWN, llmp_client_recv_wait(r, &v, 5000 * k));
}

TEST_F(proto, client_exit_message_removes_named_client)
{
	struct llmp_client_opts o = copts(0, false);
	struct llmp_client *a, *b2, *r;
	struct llmp_msg_view v;
	uint32_t idb;

	NEED_PROVIDER();
	ASSERT_EQ(0, new_broker(self, 0, 0, false, 0));
	ASSERT_GT(new_client(self, &o, &a), 0);
	idb = (uint32_t)new_client(self, &o, &b2);
	ASSERT_GT(idb, 0u);
	ASSERT_GT(new_client(self, &o, &r), 0);
	ASSERT_EQ(3u, llmp_broker_nclients(self->b));
	/* a says b2 is gone (as LibAFL's restarter does on a client's behalf) */
	ASSERT_EQ(-EINVAL, llmp_client_report_exit(a, 0));
	ASSERT_EQ(0, llmp_client_report_exit(a, idb));
	ASSERT_LE(0, pump(self->b));
	ASSERT_EQ(2u, llmp_broker_nclients(self->b));
	/* b2's later messages are no longer forwarded; the protocol message neither */
	ASSERT_EQ(0, llmp_client_send(b2, 0x55, 0, "late", 4));
	ASSERT_EQ(0, llmp_client_send(a, 0x56, 0, "a", 1));
	ASSERT_LE(0, pump(self->b));
	ASSERT_EQ(1, llmp_client_recv(r, &v));
	ASSERT_EQ(0x56u, v.tag);
	ASSERT_EQ(0, llmp_client_recv(r, &v));
}

TEST_F(proto, fit_rule_at_the_page_boundary)
{
	/*
	 * A message fits while size_used + 40 + padded + 128 <= size_total.
	 * On a fresh 4 KiB page that is 3,880 bytes exactly; one byte more
	 * moves the message to a new page (the first page then holds only the
	 * END_OF_PAGE record).
	 */
	struct llmp_client_opts o = copts(SMALL_PAGE, false);
	struct llmp_shmem_desc od;
	struct llmp_shmem *m1 = NULL, *m2 = NULL;
	struct llmp_client *a, *b2, *r;
	struct llmp_msg_view v;
	static uint8_t buf[3881];
	const char *pg;

	NEED_PROVIDER();
	ASSERT_EQ(0, new_broker(self, SMALL_PAGE, 0, false, 0));
	ASSERT_GT(new_client(self, &o, &a), 0);
	ASSERT_GT(new_client(self, &o, &b2), 0);
	ASSERT_GT(new_client(self, &o, &r), 0);
	fill(buf, sizeof(buf), 9);

	ASSERT_EQ(0, llmp_client_out_desc(a, &od));
	ASSERT_EQ(0, llmp_shmem_attach(self->p, &od, &m1));
	pg = llmp_shmem_addr(m1);
	ASSERT_EQ(0, llmp_client_send(a, 1, 0, buf, 3880));
	ASSERT_EQ(1u, hdr64(pg, 16));
	ASSERT_EQ(3920u, hdr64(pg, 32)); /* stayed on the first page, 128 B left for the EOP */
	ASSERT_EQ(SMALL_PAGE - 48u, hdr64(pg, 24));

	ASSERT_EQ(0, llmp_client_out_desc(b2, &od));
	ASSERT_EQ(0, llmp_shmem_attach(self->p, &od, &m2));
	pg = llmp_shmem_addr(m2);
	ASSERT_EQ(0, send_pumped(self->b, b2, 2, 0, buf, 3881));
	ASSERT_EQ(1u, hdr64(pg, 16)); /* only the END_OF_PAGE record */
	ASSERT_EQ(LLMP_TAG_END_OF_PAGE, hdr32(pg, 48));
	ASSERT_EQ(128u, hdr64(pg, 32));
	ASSERT_EQ(32u, hdr64(pg, 48 + 24));
	ASSERT_EQ(32u, hdr64(pg, 48 + 32));
	/* the next page: 2 x max_alloc (40 + 3944) + 128 + 48 -> 8 KiB (power of two) */
	ASSERT_EQ(8192u, hdr64(pg, 48 + 40));
	ASSERT_EQ(40u + 3944u, hdr64(pg, 40)); /* max_alloc_size counts the message that did not fit */

	ASSERT_LE(0, pump(self->b));
	ASSERT_EQ(1, llmp_client_recv(r, &v));
	ASSERT_EQ(3880u, v.len);
	ASSERT_EQ(-1, check(v.buf, v.len, 9));
	ASSERT_EQ(1, llmp_client_recv(r, &v));
	ASSERT_EQ(3881u, v.len);
	ASSERT_EQ(-1, check(v.buf, v.len, 9));
	llmp_shmem_put(m1);
	llmp_shmem_put(m2);
}

TEST_F(proto, wait_safe_and_bad_options)
{
	struct llmp_client_opts o = copts(0, false);
	struct llmp_broker_opts bo = { .struct_size = sizeof(bo), .page_size = 100 };
	struct llmp_shmem_desc bd, od;
	struct llmp_client *c = NULL;
	struct llmp_broker *b2 = NULL;

	NEED_PROVIDER();
	ASSERT_EQ(-EINVAL, llmp_broker_new(self->p, &bo, &b2));
	ASSERT_EQ(NULL, b2);
	ASSERT_EQ(0, new_broker(self, 0, 0, false, 0));
	ASSERT_EQ(0, llmp_broker_broadcast_desc(self->b, &bd));
	o.page_size = 100; /* below the smallest page */
	ASSERT_EQ(-EINVAL, llmp_client_new(self->p, &bd, &o, &c));
	o.page_size = 0;
	o.send_timeout_ms = -3;
	ASSERT_EQ(-EINVAL, llmp_client_new(self->p, &bd, &o, &c));
	o.send_timeout_ms = LLMP_NO_WAIT;
	ASSERT_EQ(0, llmp_client_new(self->p, &bd, &o, &c));
	self->c[self->nc++] = c;
	/* not registered: the broker has not mapped the out page */
	ASSERT_EQ(-ETIMEDOUT, llmp_client_wait_safe(c, 0));
	ASSERT_EQ(-ETIMEDOUT, llmp_client_wait_safe(c, 50));
	ASSERT_EQ(0, llmp_client_out_desc(c, &od));
	ASSERT_LT(0, llmp_broker_add_client(self->b, &od));
	ASSERT_EQ(0, llmp_client_wait_safe(c, 0));
	/* The broker's own broadcast page is no client page (it would feed itself). */
	ASSERT_GT(0, llmp_broker_add_client(self->b, &bd));
	ASSERT_EQ(1u, llmp_broker_nclients(self->b));
}

TEST_F(proto, broker_process_exit_reaches_client_process)
{
	/*
	 * The broker lives in another process: it forwards one message, then
	 * llmp_broker_free() broadcasts EXITING and the process exits.  The
	 * client here reads the message, then -ESHUTDOWN from the blocking
	 * receive.
	 */
	struct llmp_client_opts o = copts(0, false);
	struct llmp_shmem_desc bd;
	struct llmp_msg_view v;
	int pfd[2], gfd[2], st;
	pid_t pid;

	NEED_PROVIDER();
	ASSERT_EQ(0, pipe(pfd));
	ASSERT_EQ(0, pipe(gfd));
	pid = fork();
	ASSERT_LE(0, pid);
	if (pid == 0) {
		struct llmp_broker_opts bo = { .struct_size = sizeof(bo) };
		struct llmp_provider *p;
		struct llmp_broker *b;
		struct llmp_shmem_desc d;
		int code = 0;
		char c;

		close(pfd[0]);
		close(gfd[1]);
		if (llmp_provider_new(variant->kind, &p) < 0 || llmp_broker_new(p, &bo, &b) < 0 ||
		    llmp_broker_broadcast_desc(b, &d) < 0)
			_exit(1);
		if (write(pfd[1], &d, sizeof(d)) != sizeof(d))
			_exit(2);
		/* wait until the parent has attached, then one message and goodbye */
		if (read(gfd[0], &c, 1) != 1)
			code = 3;
		else if (llmp_broker_send(b, 0x5E, 0, "from afar", 9) < 0)
			code = 4;
		llmp_broker_free(b);
		llmp_provider_free(p);
		_exit(code);
	}
	close(pfd[1]);
	close(gfd[0]);
	ASSERT_EQ((ssize_t)sizeof(bd), read(pfd[0], &bd, sizeof(bd)));
	close(pfd[0]);
	ASSERT_EQ(0, llmp_client_new(self->p, &bd, &o, &self->c[self->nc]))
		TH_LOG("%s", llmp_strerror_last());
	self->nc++;
	ASSERT_EQ(1, write(gfd[1], "g", 1));
	close(gfd[1]);
	ASSERT_EQ(1, llmp_client_recv_wait(self->c[0], &v, 10000)) TH_LOG("%s", llmp_strerror_last());
	ASSERT_EQ(LLMP_BROKER_CLIENT_ID, v.sender);
	ASSERT_EQ(0x5Eu, v.tag);
	ASSERT_EQ(0, memcmp(v.buf, "from afar", 9));
	ASSERT_EQ(-ESHUTDOWN, llmp_client_recv_wait(self->c[0], &v, 10000))
		TH_LOG("%s", llmp_strerror_last());
	ASSERT_EQ(pid, waitpid(pid, &st, 0));
	ASSERT_TRUE(WIFEXITED(st));
	ASSERT_EQ(0, WEXITSTATUS(st));
}

TEST_HARNESS_MAIN
