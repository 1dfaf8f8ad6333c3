// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * Stress: 4 sender processes send LLMP_STRESS_MSGS messages in all
 * (default 10^6) of random sizes from 0 B to twice the page size
 * (LLMP_STRESS_PAGE, default 4 KiB) through a broker (this process) to 2
 * receiver processes.  Every message carries its sender's sequence number
 * (in the tag) and, from 16 bytes up, the sequence number and a checksum of
 * the rest of the payload; the receivers check that nothing is lost,
 * duplicated, reordered, truncated or corrupted.
 *
 * The memfd variant runs the full count; the sysv and posix variants a
 * tenth of it (LLMP_STRESS_SYSV_MSGS / LLMP_STRESS_POSIX_MSGS override):
 * they exercise the same code with another provider, every page switch
 * costs a create/attach per process, and System V segments count against
 * the machine-wide kernel.shmmni limit that concurrent runs share.
 *
 * The hostile variants (issue 8, findings 1, 4 and 6) add a fifth client
 * process that registers like the others and then, in the middle of the
 * flood, attacks the broker through its own out page as a target with
 * memory corruption could: an END_OF_PAGE record naming its own page, or
 * two of its pages naming each other (the reader must not loop forever); a
 * burst of NEW_SHM_CLIENT records naming its own page (the client list
 * must not grow); NEW_SHM_CLIENT naming the broker's own broadcast page by
 * another spelling (the broker must not read its own page as a client).
 * The promise they guard: the broker keeps forwarding every honest
 * message, nothing lost, duplicated or corrupted, the client count stays
 * bounded, and an offender that breaks the page format is dropped.
 *
 * The senders stay within a window of bytes ahead of the slower receiver
 * (shared counters, set well below the broker's broadcast history), so a
 * receiver descheduled for a while never falls out of the kept history:
 * the test checks delivery, not the history policy (slow_receiver_test
 * does that).
 */
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "kselftest_harness.h"
#include "llmp_test.h"

#define NSEND 4
#define NRECV 2
#define NKIDS (NSEND + NRECV + 1) /* the last one is the hostile client, if any */
#define HOSTILE (NSEND + NRECV)
#define NEW_SHM_BURST 200
#define SEQ_TAG(s) (0x40000000u | ((uint32_t)(s) & 0xffffffu))
#define HISTORY (4u << 20)
#define WINDOW (1u << 20)
#define DEADLINE_S 500

struct ctl {
	_Alignas(64) _Atomic uint64_t sent_bytes[NSEND][8];
	_Alignas(64) _Atomic uint64_t recv_bytes[NRECV][8];
	_Atomic int recv_done[NRECV];
	_Atomic int stop;
	uint32_t sender_ids[NSEND];
	uint64_t per_sender;
	size_t page;
	/* results of each receiver */
	uint64_t got[NRECV], lost[NRECV], dup[NRECV], reorder[NRECV], bad[NRECV];
	char err[NRECV + NSEND + 1][200];
	_Atomic int attacked;	/* the hostile client has written its attack */
};

enum hostile {
	H_NONE,
	H_EOP_SELF,		/* END_OF_PAGE naming the page it is on */
	H_EOP_PAIR,		/* page A -> page B -> page A */
	H_NEW_SHM_SELF,		/* NEW_SHM_CLIENT naming its own page, many times */
	H_NEW_SHM_BROADCAST,	/* NEW_SHM_CLIENT naming the broker's page, another spelling */
};

static uint64_t mix(uint64_t x)
{
	x += 0x9E3779B97F4A7C15ULL;
	x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
	x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
	return x ^ (x >> 31);
}

static size_t msg_len(unsigned s, uint64_t seq, size_t page)
{
	return (size_t)(mix(((uint64_t)s << 40) ^ seq) % (2 * page + 1));
}

/* Payload: [seq][checksum of the rest][rest] from 16 bytes up, else a byte pattern. */
static void fill_rest(uint8_t *b, size_t n, uint64_t seed)
{
	size_t i = 0;

	for (; i + 8 <= n; i += 8) {
		uint64_t w = (seed + i) * 0x9E3779B97F4A7C15ULL;

		memcpy(b + i, &w, 8);
	}
	for (; i < n; i++)
		b[i] = (uint8_t)(seed + i * 13);
}

static uint64_t csum(const uint8_t *b, size_t n)
{
	uint64_t h = 0xcbf29ce484222325ULL ^ n;
	size_t i = 0;

	for (; i + 8 <= n; i += 8) {
		uint64_t w;

		memcpy(&w, b + i, 8);
		h = (h ^ w) * 0x100000001b3ULL;
		h ^= h >> 29;
	}
	for (; i < n; i++)
		h = (h ^ b[i]) * 0x100000001b3ULL;
	return h;
}

static void make_payload(uint8_t *b, size_t len, unsigned s, uint64_t seq)
{
	uint64_t seed = mix(seq * 8 + s);

	if (len < 16) {
		fill_rest(b, len, seed);
		return;
	}
	fill_rest(b + 16, len - 16, seed);
	uint64_t c = csum(b + 16, len - 16);
	memcpy(b, &seq, 8);
	memcpy(b + 8, &c, 8);
}

/* 0 if the payload is what sender s wrote as message seq. */
static int check_payload(const uint8_t *b, size_t len, unsigned s, uint64_t seq)
{
	if (len < 16) {
		uint8_t exp[16];

		fill_rest(exp, len, mix(seq * 8 + s));
		return memcmp(b, exp, len) ? -1 : 0;
	}
	uint64_t q, c;
	memcpy(&q, b, 8);
	memcpy(&c, b + 8, 8);
	return (q == seq && c == csum(b + 16, len - 16)) ? 0 : -1;
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint64_t min_recv(struct ctl *ctl)
{
	/* relaxed: a flow-control estimate, no data is passed through it */
	uint64_t m = atomic_load_explicit(&ctl->recv_bytes[0][0], memory_order_relaxed);

	for (int r = 1; r < NRECV; r++) {
		uint64_t x = atomic_load_explicit(&ctl->recv_bytes[r][0], memory_order_relaxed);

		if (x < m)
			m = x;
	}
	return m;
}

static uint64_t sum_sent(struct ctl *ctl)
{
	uint64_t t = 0;

	for (int s = 0; s < NSEND; s++)
		/* relaxed: flow-control estimate only */
		t += atomic_load_explicit(&ctl->sent_bytes[s][0], memory_order_relaxed);
	return t;
}

/* Child side of registration: send our out page description, get our id. */
static int child_register(struct llmp_client *c, int wfd, int rfd)
{
	struct llmp_shmem_desc od;
	int32_t id;

	if (llmp_client_out_desc(c, &od) < 0)
		return -1;
	if (write(wfd, &od, sizeof(od)) != sizeof(od))
		return -1;
	if (read(rfd, &id, sizeof(id)) != sizeof(id) || id <= 0)
		return -1;
	llmp_client_set_id(c, (uint32_t)id);
	return 0;
}

static int run_sender(struct ctl *ctl, enum llmp_shmem_kind kind, const struct llmp_shmem_desc *bd,
		      unsigned s, int wfd, int rfd)
{
	struct llmp_client_opts o = {
		.struct_size = sizeof(o),
		.page_size = ctl->page,
		.send_timeout_ms = -1,
	};
	struct llmp_provider *p;
	struct llmp_client *c;
	uint8_t *buf = malloc(2 * ctl->page + 1);
	char *err = ctl->err[NRECV + s];
	int ret;

	if (!buf || llmp_provider_new(kind, &p) < 0)
		return 10;
	if (llmp_client_new(p, bd, &o, &c) < 0) {
		snprintf(err, 200, "sender %u: client_new: %s", s, llmp_strerror_last());
		return 11;
	}
	if (child_register(c, wfd, rfd) < 0)
		return 12;
	for (uint64_t seq = 0; seq < ctl->per_sender; seq++) {
		size_t len = msg_len(s, seq, ctl->page);

		for (;;) {
			uint64_t sent = sum_sent(ctl), seen = min_recv(ctl);

			if (sent <= seen || sent - seen <= WINDOW)
				break;
			if (atomic_load(&ctl->stop))
				return 13;
			usleep(100);
		}
		if (seq & 1) {
			void *zb;

			ret = llmp_client_alloc(c, len, &zb);
			if (ret == 0) {
				make_payload(zb, len, s, seq);
				ret = llmp_client_commit(c, SEQ_TAG(seq), 0, len);
			}
		} else {
			make_payload(buf, len, s, seq);
			ret = llmp_client_send(c, SEQ_TAG(seq), 0, buf, len);
		}
		if (ret < 0) {
			snprintf(err, 200, "sender %u: message %llu: %s", s,
				 (unsigned long long)seq, llmp_strerror_last());
			return 14;
		}
		/* relaxed: flow-control estimate only */
		atomic_fetch_add_explicit(&ctl->sent_bytes[s][0], len + 128, memory_order_relaxed);
	}
	/* Keep our pages alive until the receivers have everything. */
	while (!atomic_load(&ctl->stop))
		usleep(1000);
	llmp_client_free(c);
	llmp_provider_free(p);
	free(buf);
	return 0;
}

static int run_receiver(struct ctl *ctl, enum llmp_shmem_kind kind,
			const struct llmp_shmem_desc *bd, unsigned r, int wfd, int rfd)
{
	struct llmp_client_opts o = { .struct_size = sizeof(o), .page_size = 4096 };
	uint64_t next[NSEND] = { 0 }, bytes = 0, total = ctl->per_sender * NSEND;
	struct llmp_provider *p;
	struct llmp_client *c;
	struct llmp_msg_view v;
	char *err = ctl->err[r];
	double t_end = now_s() + DEADLINE_S;
	int ret, code = 0;

	if (llmp_provider_new(kind, &p) < 0)
		return 20;
	if (llmp_client_new(p, bd, &o, &c) < 0) {
		snprintf(err, 200, "receiver %u: client_new: %s", r, llmp_strerror_last());
		return 21;
	}
	if (child_register(c, wfd, rfd) < 0)
		return 22;
	while (ctl->got[r] < total) {
		unsigned s;
		uint64_t seq;

		ret = llmp_client_recv_wait(c, &v, 200);
		if (ret == 0) {
			if (now_s() > t_end || atomic_load(&ctl->stop)) {
				snprintf(err, 200, "receiver %u: gave up after %llu of %llu messages", r,
					 (unsigned long long)ctl->got[r], (unsigned long long)total);
				code = 23;
				break;
			}
			continue;
		}
		if (ret < 0) {
			snprintf(err, 200, "receiver %u: recv after %llu messages: %d %s", r,
				 (unsigned long long)ctl->got[r], ret, llmp_strerror_last());
			code = 24;
			break;
		}
		for (s = 0; s < NSEND; s++)
			if (v.sender == ctl->sender_ids[s])
				break;
		if (s == NSEND || (v.tag & 0xff000000u) != 0x40000000u) {
			/* not one of ours (the senders and the broker send nothing else) */
			ctl->bad[r]++;
			if (!err[0])
				snprintf(err, 200, "receiver %u: unexpected message sender %u tag %#x",
					 r, v.sender, v.tag);
			continue;
		}
		seq = v.tag & 0xffffffu;
		/* the tag holds 24 bits of the sequence number */
		seq |= next[s] & ~(uint64_t)0xffffff;
		if (seq < next[s] && next[s] - seq > 0x800000)
			seq += 0x1000000;
		ctl->got[r]++;
		if (seq != next[s]) {
			if (seq < next[s])
				ctl->dup[r]++;
			else
				ctl->lost[r] += seq - next[s];
			if (!err[0])
				snprintf(err, 200, "receiver %u: sender %u: expected %llu, got %llu", r,
					 s, (unsigned long long)next[s], (unsigned long long)seq);
			if (seq < next[s])
				continue;
		}
		if (v.len != msg_len(s, seq, ctl->page) ||
		    check_payload(v.buf, v.len, s, seq) < 0) {
			ctl->bad[r]++;
			if (!err[0])
				snprintf(err, 200, "receiver %u: sender %u message %llu: %zu bytes, "
					 "expected %zu, or checksum wrong", r, s,
					 (unsigned long long)seq, v.len, msg_len(s, seq, ctl->page));
		}
		next[s] = seq + 1;
		bytes += v.len + 128;
		if ((ctl->got[r] & 15) == 0)
			/* relaxed: flow-control estimate only */
			atomic_store_explicit(&ctl->recv_bytes[r][0], bytes, memory_order_relaxed);
	}
	atomic_store_explicit(&ctl->recv_bytes[r][0], UINT64_MAX / 4, memory_order_relaxed);
	for (unsigned s = 0; s < NSEND; s++)
		if (next[s] != ctl->per_sender && !code) {
			ctl->lost[r] += ctl->per_sender - next[s];
			code = 25;
		}
	/* pairs with the parent's load: our counters are written before */
	atomic_store_explicit(&ctl->recv_done[r], 1, memory_order_release);
	while (!atomic_load(&ctl->stop))
		usleep(1000);
	llmp_client_free(c);
	llmp_provider_free(p);
	return code ? code : (ctl->lost[r] || ctl->dup[r] || ctl->bad[r]) ? 26 : 0;
}


/*
 * Append one raw record to a page as its writer would (header, payload,
 * size_used, then current_msg_id with release: pairs with the reader's
 * acquire), bypassing the library's checks: what a scribbling target does.
 */
static int raw_append(uint8_t *pg, size_t size, uint32_t tag, uint32_t sender,
		      const void *payload, size_t len)
{
	uint64_t used, cur, id, blen = len, padded;
	size_t off;
	uint32_t zero = 0;

	memcpy(&used, pg + 32, 8);
	memcpy(&cur, pg + 16, 8);
	off = LLMP_PAGE_HEADER_LEN + used;
	padded = ((off + LLMP_MSG_HEADER_LEN + len + LLMP_ALIGN - 1) & ~(size_t)(LLMP_ALIGN - 1)) -
		 off - LLMP_MSG_HEADER_LEN;
	if (off + LLMP_MSG_HEADER_LEN + padded > size)
		return -ENOSPC;
	id = cur + 1;
	memcpy(pg + off, &tag, 4);
	memcpy(pg + off + 4, &sender, 4);
	memcpy(pg + off + 8, &zero, 4);
	memcpy(pg + off + 12, &zero, 4);
	memcpy(pg + off + 16, &id, 8);
	memcpy(pg + off + 24, &blen, 8);
	memcpy(pg + off + 32, &padded, 8);
	memcpy(pg + off + LLMP_MSG_HEADER_LEN, payload, len);
	used += LLMP_MSG_HEADER_LEN + padded;
	memcpy(pg + 32, &used, 8);
	__atomic_store_n((uint64_t *)(pg + 16), id, __ATOMIC_RELEASE);
	return 0;
}

/* END_OF_PAGE / NEW_SHM_CLIENT payload: map size, then the segment id. */
static void page_info(uint8_t info[32], uint64_t size, const char *id)
{
	memset(info, 0, 32);
	memcpy(info, &size, 8);
	memcpy(info + 8, id, strnlen(id, LLMP_SHMEM_ID_LEN - 1));
}

static int run_hostile(struct ctl *ctl, enum llmp_shmem_kind kind,
		       const struct llmp_shmem_desc *bd, enum hostile h, int wfd, int rfd)
{
	struct llmp_client_opts o = { .struct_size = sizeof(o), .page_size = 1 << 16,
				      .send_timeout_ms = 1000 };
	struct llmp_shmem_desc od, od2;
	struct llmp_provider *p;
	struct llmp_client *c, *c2 = NULL;
	struct llmp_shmem *m = NULL, *m2 = NULL;
	char *err = ctl->err[NRECV + NSEND];
	uint8_t info[32];
	char alias[LLMP_SHMEM_ID_LEN + 1];
	uint32_t me;
	int ret = 0;

	if (llmp_provider_new(kind, &p) < 0 || llmp_client_new(p, bd, &o, &c) < 0) {
		snprintf(err, 200, "hostile: client_new: %s", llmp_strerror_last());
		return 30;
	}
	if (child_register(c, wfd, rfd) < 0)
		return 31;
	me = llmp_client_id(c);
	if (llmp_client_out_desc(c, &od) < 0 || llmp_shmem_attach(p, &od, &m) < 0) {
		snprintf(err, 200, "hostile: attach own page: %s", llmp_strerror_last());
		return 32;
	}
	/* Strike in the middle of the flood. */
	while (sum_sent(ctl) < (ctl->per_sender * NSEND * ctl->page) / 4 &&
	       !atomic_load(&ctl->stop))
		usleep(500);
	switch (h) {
	case H_EOP_SELF:
		page_info(info, llmp_shmem_size(m), od.id);
		ret = raw_append(llmp_shmem_addr(m), llmp_shmem_size(m), LLMP_TAG_END_OF_PAGE, me,
				 info, sizeof(info));
		break;
	case H_EOP_PAIR:
		/* page B: the (never registered) out page of a second client */
		if (llmp_client_new(p, bd, &o, &c2) < 0 || llmp_client_out_desc(c2, &od2) < 0 ||
		    llmp_shmem_attach(p, &od2, &m2) < 0) {
			snprintf(err, 200, "hostile: page B: %s", llmp_strerror_last());
			return 33;
		}
		page_info(info, llmp_shmem_size(m), od.id);
		ret = raw_append(llmp_shmem_addr(m2), llmp_shmem_size(m2), LLMP_TAG_END_OF_PAGE, me,
				 info, sizeof(info));
		page_info(info, llmp_shmem_size(m2), od2.id);
		if (!ret)
			ret = raw_append(llmp_shmem_addr(m), llmp_shmem_size(m),
					 LLMP_TAG_END_OF_PAGE, me, info, sizeof(info));
		break;
	case H_NEW_SHM_SELF:
		page_info(info, llmp_shmem_size(m), od.id);
		for (int i = 0; i < NEW_SHM_BURST && !ret; i++) {
			ret = raw_append(llmp_shmem_addr(m), llmp_shmem_size(m),
					 LLMP_TAG_NEW_SHM_CLIENT, me, info, sizeof(info));
			usleep(200);
		}
		if (ret == -ENOSPC) /* the page is full: that was the burst */
			ret = 0;
		break;
	case H_NEW_SHM_BROADCAST:
		/* memfd "m<pid>:<fd>:<gen>" without its generation; others as they are */
		memcpy(alias, bd->id, LLMP_SHMEM_ID_LEN);
		alias[LLMP_SHMEM_ID_LEN] = 0;
		if (kind == LLMP_SHMEM_MEMFD && strchr(alias + 1, ':') != strrchr(alias, ':'))
			*strrchr(alias, ':') = 0;
		page_info(info, bd->size, alias);
		for (int i = 0; i < 4 && !ret; i++)
			ret = raw_append(llmp_shmem_addr(m), llmp_shmem_size(m),
					 LLMP_TAG_NEW_SHM_CLIENT, me, info, sizeof(info));
		break;
	case H_NONE:
		break;
	}
	if (ret < 0) {
		snprintf(err, 200, "hostile: writing the attack: %d", ret);
		return 34;
	}
	atomic_store(&ctl->attacked, 1);
	while (!atomic_load(&ctl->stop))
		usleep(1000);
	llmp_shmem_put(m2);
	llmp_shmem_put(m);
	if (c2)
		llmp_client_free(c2);
	llmp_client_free(c);
	llmp_provider_free(p);
	return 0;
}

FIXTURE(stress)
{
	struct llmp_provider *p;
	struct llmp_broker *b;
	struct ctl *ctl;
	pid_t pid[NKIDS];
};

FIXTURE_VARIANT(stress)
{
	enum llmp_shmem_kind kind;
	unsigned divisor;
	const char *count_env;
	enum hostile hostile;
	const char *name;	/* LLMP_STRESS_ONLY=<name>[,<name>...] runs only those */
};

FIXTURE_VARIANT_ADD(stress, memfd) { .kind = LLMP_SHMEM_MEMFD, .divisor = 1,
				     .count_env = "LLMP_STRESS_MSGS", .name = "memfd" };
FIXTURE_VARIANT_ADD(stress, sysv) { .kind = LLMP_SHMEM_SYSV, .divisor = 10,
				    .count_env = "LLMP_STRESS_SYSV_MSGS", .name = "sysv" };
FIXTURE_VARIANT_ADD(stress, posix) { .kind = LLMP_SHMEM_POSIX, .divisor = 10,
				     .count_env = "LLMP_STRESS_POSIX_MSGS", .name = "posix" };
#define HOSTILE_VARIANT(k, K, h, H)                                                        \
	FIXTURE_VARIANT_ADD(stress, k##_hostile_##h) {                                     \
		.kind = LLMP_SHMEM_##K, .divisor = 25, .count_env = "LLMP_STRESS_HOSTILE_MSGS", \
		.hostile = H_##H, .name = #k "_hostile_" #h }
HOSTILE_VARIANT(memfd, MEMFD, eop_self, EOP_SELF);
HOSTILE_VARIANT(memfd, MEMFD, eop_pair, EOP_PAIR);
HOSTILE_VARIANT(memfd, MEMFD, new_shm_self, NEW_SHM_SELF);
HOSTILE_VARIANT(memfd, MEMFD, new_shm_broadcast, NEW_SHM_BROADCAST);
HOSTILE_VARIANT(sysv, SYSV, eop_self, EOP_SELF);
HOSTILE_VARIANT(sysv, SYSV, eop_pair, EOP_PAIR);
HOSTILE_VARIANT(sysv, SYSV, new_shm_self, NEW_SHM_SELF);
HOSTILE_VARIANT(sysv, SYSV, new_shm_broadcast, NEW_SHM_BROADCAST);
HOSTILE_VARIANT(posix, POSIX, eop_self, EOP_SELF);
HOSTILE_VARIANT(posix, POSIX, eop_pair, EOP_PAIR);
HOSTILE_VARIANT(posix, POSIX, new_shm_self, NEW_SHM_SELF);
HOSTILE_VARIANT(posix, POSIX, new_shm_broadcast, NEW_SHM_BROADCAST);

/* Is name in the comma-separated list? */
static bool in_list(const char *list, const char *name)
{
	size_t n = strlen(name);

	for (const char *s = list; s && *s; s = strchr(s, ',') ? strchr(s, ',') + 1 : NULL)
		if (!strncmp(s, name, n) && (s[n] == ',' || !s[n]))
			return true;
	return false;
}

FIXTURE_SETUP(stress)
{
	const char *only = getenv("LLMP_STRESS_ONLY");
	int r;

	if (only && *only && !in_list(only, variant->name)) {
		self->p = NULL;
		SKIP(return, "not in LLMP_STRESS_ONLY");
	}
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
}

FIXTURE_TEARDOWN(stress)
{
	for (int i = 0; i < NKIDS; i++) {
		if (self->pid[i] > 0) {
			kill(self->pid[i], SIGKILL);
			waitpid(self->pid[i], NULL, 0);
		}
	}
	if (self->b)
		llmp_broker_free(self->b);
	if (self->p)
		llmp_provider_free(self->p);
	if (self->ctl && self->ctl != MAP_FAILED)
		munmap(self->ctl, sizeof(struct ctl));
}

static uint64_t env_u64(const char *name, uint64_t def)
{
	const char *s = getenv(name);
	char *end;
	unsigned long long v;

	if (!s || !*s)
		return def;
	v = strtoull(s, &end, 0);
	return *end ? def : v;
}

TEST_F_TIMEOUT(stress, four_senders_two_receivers, 600)
{
	struct llmp_broker_opts bo = { .struct_size = sizeof(bo), .history_bytes = HISTORY };
	struct ctl *ctl = self->ctl;
	struct llmp_shmem_desc bd;
	int wp[NKIDS][2], rp[NKIDS][2];
	int nk = NSEND + NRECV + (variant->hostile != H_NONE);
	unsigned max_clients = 0, after_clients;
	uint64_t total = env_u64(variant->count_env,
				 env_u64("LLMP_STRESS_MSGS", 1000000) / variant->divisor);
	uint64_t forwarded = 0;
	double t0, t_end, dt;
	int alive, ret;

	if (!self->p)
		return;
	ctl->page = env_u64("LLMP_STRESS_PAGE", 4096);
	ctl->per_sender = (total + NSEND - 1) / NSEND;
	ASSERT_LT(ctl->per_sender, 1u << 24);
	bo.page_size = ctl->page;
	ASSERT_EQ(0, llmp_broker_new(self->p, &bo, &self->b)) TH_LOG("%s", llmp_strerror_last());
	ASSERT_EQ(0, llmp_broker_broadcast_desc(self->b, &bd));

	for (int i = 0; i < nk; i++) {
		ASSERT_EQ(0, pipe(wp[i]));
		ASSERT_EQ(0, pipe(rp[i]));
		self->pid[i] = fork();
		ASSERT_LE(0, self->pid[i]);
		if (self->pid[i] == 0) {
			close(wp[i][0]);
			close(rp[i][1]);
			if (i == HOSTILE)
				_exit(run_hostile(ctl, variant->kind, &bd, variant->hostile, wp[i][1],
						  rp[i][0]));
			if (i < NSEND)
				_exit(run_sender(ctl, variant->kind, &bd, (unsigned)i, wp[i][1], rp[i][0]));
			_exit(run_receiver(ctl, variant->kind, &bd, (unsigned)(i - NSEND), wp[i][1],
					   rp[i][0]));
		}
		close(wp[i][1]);
		close(rp[i][0]);
	}
	/* Register every client: ids before anyone sends. */
	for (int i = 0; i < nk; i++) {
		struct llmp_shmem_desc od;
		int32_t id;

		ASSERT_EQ((ssize_t)sizeof(od), read(wp[i][0], &od, sizeof(od)))
			TH_LOG("child %d failed before registering: %s", i,
			       ctl->err[i < NSEND ? NRECV + i : i == HOSTILE ? NRECV + NSEND : i - NSEND]);
		id = llmp_broker_add_client(self->b, &od);
		ASSERT_LT(0, id) TH_LOG("%s", llmp_strerror_last());
		if (i < NSEND)
			ctl->sender_ids[i] = (uint32_t)id;
		/* the child reads sender_ids only after this (receivers register last) */
		ASSERT_EQ((ssize_t)sizeof(id), write(rp[i][1], &id, sizeof(id)));
		close(rp[i][1]);
		close(wp[i][0]);
	}
	t0 = now_s();
	t_end = t0 + DEADLINE_S;
	TH_LOG("%s: %llu messages of 0..%zu B, 4 senders, 2 receivers", llmp_shmem_kind_name(variant->kind),
	       (unsigned long long)(ctl->per_sender * NSEND), 2 * ctl->page);
	ret = 0;
	while (!(atomic_load_explicit(&ctl->recv_done[0], memory_order_acquire) &&
		 atomic_load_explicit(&ctl->recv_done[1], memory_order_acquire))) {
		ret = llmp_broker_once(self->b);
		if (ret < 0)
			break;
		forwarded += (uint64_t)ret;
		if (llmp_broker_nclients(self->b) > max_clients)
			max_clients = llmp_broker_nclients(self->b);
		if (ret == 0) {
			int st;
			pid_t w = waitpid(-1, &st, WNOHANG);

			if (w > 0) {
				for (int i = 0; i < nk; i++)
					if (self->pid[i] == w)
						self->pid[i] = 0;
				if (!WIFEXITED(st) || WEXITSTATUS(st)) {
					ret = -ECHILD;
					break;
				}
			}
			if (now_s() > t_end) {
				ret = -ETIMEDOUT;
				break;
			}
			sched_yield();
		}
	}
	dt = now_s() - t0;
	after_clients = llmp_broker_nclients(self->b);
	atomic_store(&ctl->stop, 1);
	for (int i = 0; i < NRECV + NSEND + 1; i++)
		if (ctl->err[i][0])
			TH_LOG("%s", ctl->err[i]);
	ASSERT_LE(0, ret) TH_LOG("broker loop: %d %s", ret, llmp_strerror_last());
	/* Drain the exits while the children free their clients. */
	alive = nk;
	while (alive) {
		int st;
		pid_t w;

		ASSERT_LE(0, llmp_broker_once(self->b));
		w = waitpid(-1, &st, WNOHANG);
		if (w <= 0) {
			ASSERT_LT(now_s(), t_end + 30);
			usleep(200);
			continue;
		}
		for (int i = 0; i < nk; i++) {
			if (self->pid[i] != w)
				continue;
			self->pid[i] = 0;
			alive--;
			ASSERT_TRUE(WIFEXITED(st)) TH_LOG("child %d killed by signal %d", i, WTERMSIG(st));
			ASSERT_EQ(0, WEXITSTATUS(st)) TH_LOG("child %d exit %d", i, WEXITSTATUS(st));
		}
	}
	for (int r = 0; r < NRECV; r++) {
		TH_LOG("receiver %d: %llu messages, lost %llu, dup %llu, bad %llu", r,
		       (unsigned long long)ctl->got[r], (unsigned long long)ctl->lost[r],
		       (unsigned long long)ctl->dup[r], (unsigned long long)ctl->bad[r]);
		ASSERT_EQ(ctl->per_sender * NSEND, ctl->got[r]);
		ASSERT_EQ(0u, ctl->lost[r]);
		ASSERT_EQ(0u, ctl->dup[r]);
		ASSERT_EQ(0u, ctl->bad[r]);
	}
	/* llmp_broker_once() also counts the hostile client's records it handled */
	if (variant->hostile == H_NONE)
		ASSERT_EQ(ctl->per_sender * NSEND, forwarded);
	ASSERT_LE(ctl->per_sender * NSEND, forwarded);
	ASSERT_GE(ctl->per_sender * NSEND + NEW_SHM_BURST + 2, forwarded);
	/* Never more clients than processes registered (findings 4 and 6). */
	TH_LOG("clients: at most %u during the run, %u at its end", max_clients, after_clients);
	ASSERT_LE(max_clients, (unsigned)nk);
	if (variant->hostile != H_NONE)
		ASSERT_EQ(1, atomic_load(&ctl->attacked)) TH_LOG("the attack came too late");
	/* A page that breaks the format costs its writer its registration (finding 1). */
	if (variant->hostile == H_EOP_SELF || variant->hostile == H_EOP_PAIR)
		ASSERT_EQ((unsigned)(NSEND + NRECV), after_clients);
	TH_LOG("%.1f s, %.0f msgs/s through the broker", dt, (double)forwarded / dt);
}

TEST_HARNESS_MAIN
