/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * What the b2b_*_test binaries share: the `link` fixture (one broker node
 * from llmp_node.h, its loop with the codecs a test asks for), raw B2B
 * frames written and read by hand, the captured log, a free port and
 * payloads that compress.
 */
#ifndef LLMP_B2B_FIXTURE_H
#define LLMP_B2B_FIXTURE_H

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/mman.h>
#include <sys/shm.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
/* Without zlib or libzstd the library refuses those codecs (-EOPNOTSUPP) and their tests SKIP. */
#ifdef LLMP_HAVE_ZLIB
#include <zlib.h>
#endif
#ifdef LLMP_HAVE_ZSTD
#include <zstd.h>
#endif

#include "kselftest_harness.h"
#include "llmp_test.h"
#include "llmp_node.h"
#include "llmp/broker.h"

#define TAG 0x51300321u
#define NB 3
#define PER_CLIENT 40
/* Codec bits of a node in the fixture's variants. */
#define C_DEFLATE 1
#define C_ZSTD 2
#define C_POLL 4 /* not a codec: the loop uses poll(2) instead of io_uring */

/* Decode a hex string (spaces ignored) into out; returns the byte count. */
static inline size_t unhex(const char *s, uint8_t *out, size_t cap)
{
	size_t n = 0;
	unsigned v;

	while (*s && n < cap) {
		if (*s == ' ') {
			s++;
			continue;
		}
		if (sscanf(s, "%2x", &v) != 1)
			break;
		out[n++] = (uint8_t)v;
		s += 2;
	}
	return n;
}

/* Exactly one length-prefixed frame from fd into buf (5 s timeout set by the caller). */
static inline int read_frame(int fd, uint8_t *buf, uint32_t cap, uint32_t *len)
{
	if (recv(fd, buf, 4, MSG_WAITALL) != 4 || llmp_wire_get_len(buf, cap, len) < 0)
		return -1;
	return recv(fd, buf, *len, MSG_WAITALL) == (ssize_t)*len ? 0 : -1;
}

static inline int send_b2b(int fd, uint32_t client, uint32_t tag, uint32_t flags, const void *p, size_t n)
{
	struct llmp_wire_b2b w = { .client_id = client, .tag = tag, .flags = flags, .buf = p, .len = n };
	static uint8_t buf[70000];
	int k = llmp_wire_encode_b2b(&w, buf + 4, sizeof(buf) - 4);

	if (k < 0)
		return -1;
	llmp_wire_put_len(buf, (uint32_t)k);
	return send(fd, buf, 4 + (size_t)k, MSG_NOSIGNAL) == 4 + k ? 0 : -1;
}

/* Log lines of the library about links ("b2b: ..."). */
static char b2b_log[16384];
static struct llmp_test_log b2b_capture = LLMP_TEST_LOG(b2b_log, "b2b:");

static inline bool log_has(const char *s)
{
	return llmp_test_log_has(&b2b_capture, s);
}

/* ---- nodes: a broker, its listener and its loop on a thread (llmp_node.h) ---------- */

/* A broker on port (0: any), its loop with the given codecs; 0 or a negative errno. */
static inline int node_init(struct llmp_node *n, enum llmp_shmem_kind kind, uint16_t port, int codecs)
{
	struct llmp_broker_opts bo = { .struct_size = sizeof(bo), .page_size = 1 << 18 };
	struct llmp_loop_opts oo = { .struct_size = sizeof(oo),
				     .backend = (codecs & C_POLL) ? LLMP_LOOP_POLL : LLMP_LOOP_AUTO,
				     .b2b_compress = !!(codecs & C_DEFLATE),
				     .b2b_zstd = !!(codecs & C_ZSTD) };

	return llmp_node_init(n, kind, port, &bo, &oo);
}
/* One broker per test, with the codecs the test asks for (LINK_NODE). */
FIXTURE(link)
{
	struct llmp_node n[1];
	enum llmp_shmem_kind kind;
	bool ok;
};

FIXTURE_SETUP(link)
{
	memset(self->n, 0, sizeof(self->n));
	b2b_log[0] = 0;
	llmp_set_log(llmp_test_log_cb, &b2b_capture, LLMP_LOG_DEBUG);
	self->ok = llmp_test_named_kind(&self->kind) == 0;
}

FIXTURE_TEARDOWN(link)
{
	llmp_node_fini(&self->n[0]);
	llmp_set_log(NULL, NULL, LLMP_LOG_WARN);
}

#define LINK_NODE(codecs)                                                                   \
	do {                                                                                \
		int r_;                                                                     \
		if (!self->ok)                                                              \
			SKIP(return, "neither POSIX nor System V shared memory works here"); \
		r_ = node_init(&self->n[0], self->kind, 0, (codecs));                       \
		if (r_ == -EOPNOTSUPP)                                                      \
			SKIP(return, "codec not built in: %s", llmp_strerror_last());       \
		ASSERT_EQ(0, r_) TH_LOG("%s", llmp_strerror_last());                        \
	} while (0)

static inline void fill(uint8_t *buf, size_t len, int broker, int i)
{
	/* Compressible, and different for every (broker, i). */
	memset(buf, 'a' + broker, len);
	snprintf((char *)buf, len, "b%d m%d ", broker, i);
}

#endif /* LLMP_B2B_FIXTURE_H */
