/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * What protocol_test and protocol_broker_test share: the `proto` fixture
 * (one variant per provider kind that works here), brokers and registered
 * clients in the test process, pumping the broker, sends under
 * back-pressure, and payload patterns checked byte by byte.
 */
#ifndef LLMP_PROTOCOL_FIXTURE_H
#define LLMP_PROTOCOL_FIXTURE_H

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "kselftest_harness.h"
#include "llmp_test.h"

#define MAXC 8
#define SMALL_PAGE 4096u
/* User tags used here: 0x40000000 | seq (never one of the reserved tags). */
#define SEQ_TAG(s) (0x40000000u | ((uint32_t)(s) & 0xffffffu))

FIXTURE(proto)
{
	struct llmp_provider *p;
	struct llmp_broker *b;
	struct llmp_client *c[MAXC];
	int nc;
};

FIXTURE_VARIANT(proto)
{
	enum llmp_shmem_kind kind;
};

FIXTURE_VARIANT_ADD(proto, memfd) { .kind = LLMP_SHMEM_MEMFD };
FIXTURE_VARIANT_ADD(proto, sysv) { .kind = LLMP_SHMEM_SYSV };
FIXTURE_VARIANT_ADD(proto, posix) { .kind = LLMP_SHMEM_POSIX };

FIXTURE_SETUP(proto)
{
	int r = llmp_provider_new(variant->kind, &self->p);

	if (r == -ENODEV) {
		self->p = NULL;
		SKIP(return, "%s provider not available here: %s",
		     llmp_shmem_kind_name(variant->kind), llmp_strerror_last());
	}
	ASSERT_EQ(0, r) TH_LOG("llmp_provider_new: %s", llmp_strerror_last());
}

FIXTURE_TEARDOWN(proto)
{
	for (int i = self->nc - 1; i >= 0; i--)
		if (self->c[i])
			llmp_client_free(self->c[i]);
	if (self->b)
		llmp_broker_free(self->b);
	if (self->p)
		llmp_provider_free(self->p);
}

/* SKIP() in the setup still runs the body: every body starts with this. */
#define NEED_PROVIDER() do { if (!self->p) return; } while (0)

static inline struct llmp_client_opts copts(size_t page, bool skip_own)
{
	struct llmp_client_opts o = {
		.struct_size = sizeof(o),
		.page_size = page,
		.max_pages_in_flight = 0,
		.send_timeout_ms = LLMP_NO_WAIT, /* broker runs on this thread: never wait */
		.skip_own = skip_own,
	};
	return o;
}

static inline int new_broker(FIXTURE_DATA(proto) *self, size_t page, size_t history, bool keep_all,
		      unsigned exit_after)
{
	struct llmp_broker_opts o = {
		.struct_size = sizeof(o),
		.page_size = page,
		.history_bytes = history,
		.keep_all_history = keep_all,
		.exit_after = exit_after,
	};
	return llmp_broker_new(self->p, &o, &self->b);
}

/* A client on the broker's broadcast page, registered with the broker. */
static inline int new_client(FIXTURE_DATA(proto) *self, const struct llmp_client_opts *o,
		      struct llmp_client **out)
{
	struct llmp_shmem_desc bd, od;
	struct llmp_client *c;
	int r, id;

	if (self->nc >= MAXC)
		return -ENOSPC;
	r = llmp_broker_broadcast_desc(self->b, &bd);
	if (r < 0)
		return r;
	r = llmp_client_new(self->p, &bd, o, &c);
	if (r < 0)
		return r;
	self->c[self->nc++] = c;
	r = llmp_client_out_desc(c, &od);
	if (r < 0)
		return r;
	id = llmp_broker_add_client(self->b, &od);
	if (id <= 0)
		return id < 0 ? id : -EPROTO;
	llmp_client_set_id(c, (uint32_t)id);
	*out = c;
	return id;
}

/* Run broker steps until one forwards nothing; returns the total or <0. */
static inline int pump(struct llmp_broker *b)
{
	int r, total = 0;

	do {
		r = llmp_broker_once(b);
		if (r < 0)
			return r;
		total += r;
	} while (r > 0);
	return total;
}

/* Send, stepping the broker whenever back-pressure says the out pages are full. */
static inline int send_pumped(struct llmp_broker *b, struct llmp_client *c, uint32_t tag,
		       uint32_t flags, const void *buf, size_t len)
{
	for (int tries = 0; tries < 1000; tries++) {
		int r = llmp_client_send(c, tag, flags, buf, len);

		if (r != -EAGAIN)
			return r;
		r = llmp_broker_once(b);
		if (r < 0)
			return r;
	}
	return -ETIMEDOUT;
}

static inline uint8_t pat(uint64_t seq, size_t i)
{
	return (uint8_t)(seq * 131 + i * 7 + (i >> 8));
}

static inline void fill(void *buf, size_t len, uint64_t seq)
{
	uint8_t *b = buf;

	for (size_t i = 0; i < len; i++)
		b[i] = pat(seq, i);
}

/* Index of the first wrong byte, or -1. */
static inline long check(const void *buf, size_t len, uint64_t seq)
{
	const uint8_t *b = buf;

	for (size_t i = 0; i < len; i++)
		if (b[i] != pat(seq, i))
			return (long)i;
	return -1;
}

static inline uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Read a u64 field of a page header through a mapping of the client's out page. */
static inline uint64_t hdr64(const void *page, size_t off)
{
	uint64_t x;

	memcpy(&x, (const char *)page + off, 8);
	return x;
}

static inline uint32_t hdr32(const void *page, size_t off)
{
	uint32_t x;

	memcpy(&x, (const char *)page + off, 4);
	return x;
}

#endif /* LLMP_PROTOCOL_FIXTURE_H */
