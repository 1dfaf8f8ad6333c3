// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * LLMP_DEBUG_RECV (issue 10, feature 8): with it set, a received buffer
 * used after the next recv faults at once (a child that reads it dies of
 * SIGSEGV) instead of silently showing other bytes, every payload still
 * arrives byte-exact and 8-byte aligned, a copy cannot be written, and ten thousand receives
 * leave the process's mappings bounded.  Without it, nothing changes: the
 * same stale read does not fault (the promise of the default is speed, and
 * the test shows the mode is what makes the difference).
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kselftest_harness.h"
#include "llmp_test.h"

#define TAG 0x6A4D0001u

FIXTURE(guard)
{
	struct llmp_provider *p;
	struct llmp_broker *b;
	struct llmp_client *tx, *rx;
};

FIXTURE_VARIANT(guard)
{
	bool debug;
};

FIXTURE_VARIANT_ADD(guard, debug) { .debug = true };
FIXTURE_VARIANT_ADD(guard, plain) { .debug = false };

static int add(FIXTURE_DATA(guard) *self, struct llmp_client **c)
{
	struct llmp_shmem_desc bd, od;
	int id;

	if (llmp_broker_broadcast_desc(self->b, &bd) < 0 ||
	    llmp_client_new(self->p, &bd, NULL, c) < 0 || llmp_client_out_desc(*c, &od) < 0)
		return -1;
	id = llmp_broker_add_client(self->b, &od);
	if (id > 0)
		llmp_client_set_id(*c, (uint32_t)id);
	return id;
}

FIXTURE_SETUP(guard)
{
	if (variant->debug)
		setenv(LLMP_DEBUG_RECV_ENV, "1", 1);
	else
		unsetenv(LLMP_DEBUG_RECV_ENV);
	ASSERT_EQ(0, llmp_provider_new(LLMP_SHMEM_MEMFD, &self->p));
	ASSERT_EQ(0, llmp_broker_new(self->p, NULL, &self->b));
	ASSERT_LT(0, add(self, &self->tx));
	ASSERT_LT(0, add(self, &self->rx));
}

FIXTURE_TEARDOWN(guard)
{
	llmp_client_free(self->tx);
	llmp_client_free(self->rx);
	if (self->b)
		llmp_broker_free(self->b);
	if (self->p)
		llmp_provider_free(self->p);
	unsetenv(LLMP_DEBUG_RECV_ENV);
}

static void fill(uint8_t *buf, size_t len, uint32_t seed)
{
	for (size_t i = 0; i < len; i++)
		buf[i] = (uint8_t)(seed * 131u + i * 7u);
}

/* The next message of ours (tag TAG) for rx, pumping the broker: 1, or <= 0. */
static int next(FIXTURE_DATA(guard) *self, struct llmp_msg_view *v)
{
	for (int i = 0; i < 1000; i++) {
		int ret = llmp_client_recv(self->rx, v);

		if (ret < 0)
			return ret;
		if (ret == 1 && v->tag == TAG)
			return 1;
		if (ret == 0)
			(void)llmp_broker_once(self->b);
	}
	return 0;
}

/* How a child that reads (or writes) the buffer ends: its signal, or 0. */
static int touch_in_child(const void *buf, size_t len, bool write)
{
	pid_t pid = fork();
	int st;

	if (pid == 0) {
		volatile const uint8_t *p = buf;
		unsigned sum = 0;

		/* die of the signal itself, also where a sanitizer catches it */
		signal(SIGSEGV, SIG_DFL);

		for (size_t i = 0; i < len; i++)
			sum += p[i];
		if (write)
			((volatile uint8_t *)buf)[0] = 1;
		_exit(sum == 0xFFFFFFFFu);
	}
	if (pid < 0 || waitpid(pid, &st, 0) != pid)
		return -1;
	return WIFSIGNALED(st) ? WTERMSIG(st) : 0;
}

TEST_F(guard, stale_buffer_faults_only_in_debug_mode)
{
	static uint8_t a[5000], b[64];
	struct llmp_msg_view v1, v2;

	fill(a, sizeof(a), 1);
	fill(b, sizeof(b), 2);
	ASSERT_EQ(0, llmp_client_send(self->tx, TAG, 0, a, sizeof(a)));
	ASSERT_EQ(0, llmp_client_send(self->tx, TAG, 0, b, sizeof(b)));
	ASSERT_EQ(1, next(self, &v1));
	ASSERT_EQ(sizeof(a), v1.len);
	ASSERT_EQ(0, memcmp(v1.buf, a, sizeof(a)));
	/* valid until the next recv: readable in both modes; a debug copy is read-only */
	EXPECT_EQ(0, touch_in_child(v1.buf, v1.len, false));
	if (variant->debug)
		EXPECT_EQ(SIGSEGV, touch_in_child(v1.buf, v1.len, true));
	ASSERT_EQ(1, next(self, &v2));
	ASSERT_EQ(sizeof(b), v2.len);
	EXPECT_EQ(0, memcmp(v2.buf, b, sizeof(b)));
	/* v1 is stale now */
	EXPECT_EQ(variant->debug ? SIGSEGV : 0, touch_in_child(v1.buf, v1.len, false));
	EXPECT_EQ(0, touch_in_child(v2.buf, v2.len, false));
	/* even an empty recv ends v2's life */
	EXPECT_EQ(0, llmp_client_recv(self->rx, &v1));
	EXPECT_EQ(variant->debug ? SIGSEGV : 0, touch_in_child(v2.buf, 1, false));
}

/* Every size arrives byte-exact, the empty payload too. */
TEST_F(guard, payloads_are_exact)
{
	static const size_t sizes[] = { 0, 1, 15, 16, 17, 4095, 4096, 4097, 65536, 200000 };
	static uint8_t buf[200000];
	struct llmp_msg_view v;

	for (unsigned i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		fill(buf, sizes[i], i);
		ASSERT_EQ(0, llmp_client_send(self->tx, TAG, 0, buf, sizes[i]));
		ASSERT_EQ(1, next(self, &v));
		ASSERT_EQ(sizes[i], v.len);
		EXPECT_NE(NULL, v.buf);
		EXPECT_EQ(llmp_test_fnv(buf, sizes[i]), llmp_test_fnv(v.buf, v.len))
			TH_LOG("size %zu", sizes[i]);
		EXPECT_EQ(0u, (uintptr_t)v.buf % 8); /* as on the page */
	}
}

static long maps(void)
{
	FILE *f = fopen("/proc/self/maps", "r");
	long n = 0;
	int ch;

	if (!f)
		return -1;
	while ((ch = fgetc(f)) != EOF)
		n += ch == '\n';
	fclose(f);
	return n;
}

/* Retired buffers are given back: 10,000 receives keep the mappings bounded. */
TEST_F(guard, mappings_stay_bounded)
{
	struct llmp_msg_view v;
	uint64_t sent = 0, got = 0, sum_tx = 0, sum_rx = 0;
	long before = maps(), after;

	ASSERT_LT(0, before);
	while (got < 10000) {
		while (sent < 10000 && sent - got < 500) {
			uint64_t x = sent * 2654435761u;

			if (llmp_client_send(self->tx, TAG, 0, &x, sizeof(x)) < 0)
				break;
			sum_tx += x;
			sent++;
		}
		ASSERT_EQ(1, next(self, &v));
		ASSERT_EQ(sizeof(uint64_t), v.len);
		sum_rx += *(const uint64_t *)v.buf;
		got++;
	}
	EXPECT_EQ(sum_tx, sum_rx);
	after = maps();
	TH_LOG("mappings: %ld before, %ld after 10000 receives", before, after);
	/* 256 kept reservations (merged or not) and a few pages of the history */
	EXPECT_GT(before + 300, after);
}

TEST_HARNESS_MAIN
