/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * What register_test and register_uid_test share: log capture, hostile
 * page contents written by hand (a page header, a NEW_SHM_CLIENT naming a
 * page), fd counts and an honest round trip that must lose nothing.
 */
#ifndef LLMP_REGISTER_FIXTURE_H
#define LLMP_REGISTER_FIXTURE_H

#include <errno.h>
#include <grp.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kselftest_harness.h"
#include "llmp_test.h"
#include "llmp/broker.h"

#define NOBODY 65534
#define TAG_HONEST 0x4F4E4553u
#define PAGE 65536

/* ---- log capture ----------------------------------------------------------- */

static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static char log_buf[1 << 16];
static size_t log_len;

static inline void log_cb(void *ctx, enum llmp_log_level level, const char *msg)
{
	(void)ctx;
	if (level > LLMP_LOG_WARN)
		return;
	pthread_mutex_lock(&log_lock);
	log_len += (size_t)snprintf(log_buf + log_len, sizeof(log_buf) - log_len, "%s\n", msg);
	if (log_len >= sizeof(log_buf))
		log_len = sizeof(log_buf) - 1;
	pthread_mutex_unlock(&log_lock);
}

static inline void log_reset(void)
{
	pthread_mutex_lock(&log_lock);
	log_len = 0;
	log_buf[0] = 0;
	pthread_mutex_unlock(&log_lock);
	llmp_set_log(log_cb, NULL, LLMP_LOG_WARN);
}

static inline unsigned log_count(const char *needle)
{
	unsigned n = 0;

	pthread_mutex_lock(&log_lock);
	for (const char *p = strstr(log_buf, needle); p; p = strstr(p + 1, needle))
		n++;
	pthread_mutex_unlock(&log_lock);
	return n;
}

/* ---- raw pages -------------------------------------------------------------- */

static inline void put32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }
static inline void put64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }

/* An empty, valid page header on a fresh segment. */
static inline void page_init(void *addr, size_t size)
{
	uint8_t *pg = addr;

	memset(pg, 0, 48);
	put64(pg, LLMP_PAGE_MAGIC);
	put64(pg + 24, size - 48);
}

/* Append message 1: a NEW_SHM_CLIENT naming d (as a hostile client would). */
static inline void page_announce(void *addr, const struct llmp_shmem_desc *d)
{
	uint8_t *pg = addr, *m = pg + 48;

	memset(m, 0, 40 + 32);
	put32(m, LLMP_TAG_NEW_SHM_CLIENT);
	put64(m + 16, 1);
	put64(m + 24, 32);
	put64(m + 32, 32);
	put64(m + 40, d->size);
	memcpy(m + 48, d->id, LLMP_SHMEM_ID_LEN);
	put64(pg + 32, 40 + 32);
	/* publish: pairs with the broker's acquire of current_msg_id */
	__atomic_store_n((uint64_t *)(pg + 16), 1, __ATOMIC_RELEASE);
}

/* d = base with id set to the printf result (cut to 19 characters). */
static inline void __attribute__((format(printf, 3, 4)))
set_id(struct llmp_shmem_desc *d, const struct llmp_shmem_desc *base, const char *fmt, ...)
{
	char tmp[64];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	*d = *base;
	memset(d->id, 0, sizeof(d->id));
	memcpy(d->id, tmp, strnlen(tmp, LLMP_SHMEM_ID_LEN - 1));
}

static inline unsigned count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	unsigned n = 0;

	if (!d)
		return 0;
	while (readdir(d))
		n++;
	closedir(d);
	return n;
}

/* Honest traffic: c sends n messages; r must get exactly those n, each once. */
static inline int honest_roundtrip(struct llmp_broker *b, struct llmp_client *c, struct llmp_client *r,
			    int n, char *why, size_t cap)
{
	int got = 0, other = 0;
	int64_t until = llmp_test_now_ms() + 20000;

	for (int i = 0; i < n; i++) {
		if (llmp_client_send(c, TAG_HONEST, 0, &i, sizeof(i)) < 0) {
			snprintf(why, cap, "send %d: %s", i, llmp_strerror_last());
			return -1;
		}
	}
	while (got < n && llmp_test_now_ms() < until) {
		struct llmp_msg_view v;
		int ret;

		if (llmp_broker_once(b) < 0) {
			snprintf(why, cap, "broker: %s", llmp_strerror_last());
			return -1;
		}
		while ((ret = llmp_client_recv(r, &v)) == 1) {
			int x;

			if (v.tag != TAG_HONEST || v.len != sizeof(x)) {
				other++;
				continue;
			}
			memcpy(&x, v.buf, sizeof(x));
			if (x != got) {
				snprintf(why, cap, "message %d arrived as number %d", x, got);
				return -1;
			}
			got++;
		}
		if (ret < 0) {
			snprintf(why, cap, "recv: %s", llmp_strerror_last());
			return -1;
		}
	}
	/* one more pass: nothing beyond the n may follow (no copies) */
	for (int k = 0; k < 20; k++) {
		struct llmp_msg_view v;

		llmp_broker_once(b);
		while (llmp_client_recv(r, &v) == 1)
			if (v.tag == TAG_HONEST)
				got++;
	}
	if (got != n) {
		snprintf(why, cap, "got %d of %d honest messages", got, n);
		return -1;
	}
	return 0;
}

#endif /* LLMP_REGISTER_FIXTURE_H */
