/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/* Helpers shared by the llmp selftests (header-only; include after the harness). */
#ifndef LLMP_TEST_H
#define LLMP_TEST_H

#include <dirent.h>
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/shm.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include "llmp/llmp.h"
#include "llmp/shmem.h"
#include "uapi/linux/llmp.h"

/* The provider kinds the userspace tests run on, unless LLMP_TEST_KINDS names others. */
static inline int llmp_test_kind_available(enum llmp_shmem_kind kind)
{
	struct llmp_provider *p;

	if (llmp_provider_new(kind, &p) < 0)
		return 0;
	llmp_provider_free(p);
	return 1;
}

/* xorshift64*: reproducible pseudo-random numbers for test data. */
static inline uint64_t llmp_test_rand(uint64_t *s)
{
	uint64_t x = *s;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*s = x;
	return x * 0x2545F4914F6CDD1DULL;
}

/* FNV-1a over a buffer: payload checksums. */
static inline uint64_t llmp_test_fnv(const void *buf, size_t len)
{
	const unsigned char *b = buf;
	uint64_t h = 0xcbf29ce484222325ULL;

	for (size_t i = 0; i < len; i++)
		h = (h ^ b[i]) * 0x100000001b3ULL;
	return h;
}

/* CLOCK_MONOTONIC in milliseconds. */
static inline int64_t llmp_test_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A kind whose segments any process attaches by name: POSIX, else SysV; -1 if neither. */
static inline int llmp_test_named_kind(enum llmp_shmem_kind *k)
{
	if (llmp_test_kind_available(LLMP_SHMEM_POSIX)) {
		*k = LLMP_SHMEM_POSIX;
		return 0;
	}
	if (llmp_test_kind_available(LLMP_SHMEM_SYSV)) {
		*k = LLMP_SHMEM_SYSV;
		return 0;
	}
	return -1;
}

/*
 * Remove the SysV or POSIX segments that process pid created and left
 * behind (it was killed, or an earlier image of it); returns how many.
 */
static inline int llmp_test_remove_orphans(enum llmp_shmem_kind kind, pid_t pid)
{
	int n = 0;

	if (kind == LLMP_SHMEM_SYSV) {
		struct shm_info info;
		int max = shmctl(0, SHM_INFO, (struct shmid_ds *)(void *)&info);

		for (int i = 0; i <= max; i++) {
			struct shmid_ds ds;
			int id = shmctl(i, SHM_STAT, &ds);

			if (id >= 0 && ds.shm_cpid == pid && shmctl(id, IPC_RMID, NULL) == 0)
				n++;
		}
	} else if (kind == LLMP_SHMEM_POSIX) {
		char prefix[64];
		DIR *d = opendir("/dev/shm");
		struct dirent *e;

		snprintf(prefix, sizeof(prefix), "libafl_%d_", (int)pid);
		while (d && (e = readdir(d))) {
			char name[300];

			if (strncmp(e->d_name, prefix, strlen(prefix)))
				continue;
			snprintf(name, sizeof(name), "/%s", e->d_name);
			if (shm_unlink(name) == 0)
				n++;
		}
		if (d)
			closedir(d);
	}
	return n;
}

/* /dev/llmp's live segments (all users, LLMP_IOC_STATS), or -1 without the module. */
static inline long llmp_test_kmod_segments(void)
{
	struct llmp_stats st;
	int fd = open("/dev/llmp", O_RDWR | O_CLOEXEC);
	long n = -1;

	memset(&st, 0, sizeof(st));
	if (fd >= 0 && ioctl(fd, LLMP_IOC_STATS, &st) == 0)
		n = (long)st.segments_live;
	if (fd >= 0)
		close(fd);
	return n;
}

/* Path of a tool built beside this test binary (build/tools/NAME), or NULL. */
static inline const char *llmp_test_tool_path(const char *name, char *buf, size_t cap)
{
	char self_path[4096];
	ssize_t n = readlink("/proc/self/exe", self_path, sizeof(self_path) - 1);
	char *slash;

	if (n <= 0)
		return NULL;
	self_path[n] = 0;
	slash = strrchr(self_path, '/');
	if (!slash)
		return NULL;
	*slash = 0;
	snprintf(buf, cap, "%s/../tools/%s", self_path, name);
	return access(buf, X_OK) == 0 ? buf : NULL;
}

/*
 * The library's log lines that contain `match`, each appended with a newline
 * to buf (cap bytes, kept NUL-terminated; what does not fit is left out),
 * from whichever thread logs: for a test to search and to print when it
 * fails.  llmp_set_log(llmp_test_log_cb, &capture, level).
 */
struct llmp_test_log {
	char *buf;
	size_t cap;
	const char *match;
	pthread_mutex_t lock;
};
#define LLMP_TEST_LOG(b, m) { .buf = (b), .cap = sizeof(b), .match = (m), \
			      .lock = PTHREAD_MUTEX_INITIALIZER }

static inline void llmp_test_log_cb(void *ctx, enum llmp_log_level level, const char *msg)
{
	struct llmp_test_log *l = ctx;
	size_t n, m = strlen(msg);

	(void)level;
	if (!strstr(msg, l->match))
		return;
	pthread_mutex_lock(&l->lock);
	n = strlen(l->buf);
	if (n + m + 2 <= l->cap) {
		memcpy(l->buf + n, msg, m);
		memcpy(l->buf + n + m, "\n", 2);
	}
	pthread_mutex_unlock(&l->lock);
}

/* Whether a captured line contains s. */
static inline bool llmp_test_log_has(struct llmp_test_log *l, const char *s)
{
	bool r;

	pthread_mutex_lock(&l->lock);
	r = strstr(l->buf, s) != NULL;
	pthread_mutex_unlock(&l->lock);
	return r;
}

/* A loopback TCP port nobody listens on (bound, read, closed), or 0. */
static inline uint16_t llmp_test_free_port(void)
{
	struct sockaddr_in a = { .sin_family = AF_INET };
	socklen_t al = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	uint16_t port = 0;

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
	    getsockname(fd, (struct sockaddr *)&a, &al) == 0)
		port = ntohs(a.sin_port);
	if (fd >= 0)
		close(fd);
	return port;
}

/* A TCP connection to 127.0.0.1:port, or -1. */
static inline int llmp_test_tcp_dial(uint16_t port)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port) };
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
		if (fd >= 0)
			close(fd);
		return -1;
	}
	return fd;
}

/*
 * How many times slower than a real CPU this machine runs the tests: the
 * integer in LLMP_TEST_TIMEOUT_SCALE (1..100, default 1).  The VM harness
 * sets it for software emulation (tests/vm/run.sh); a loaded CI host may
 * set it too.  Harness timeouts, and long waits a test scales itself, are
 * multiplied by it; what the tests assert does not change.
 */
static inline int llmp_test_timeout_scale(void)
{
	const char *s = getenv("LLMP_TEST_TIMEOUT_SCALE");
	long v = s ? strtol(s, NULL, 10) : 1;

	return v >= 1 && v <= 100 ? (int)v : 1;
}

/* Multiply every registered test's harness timeout by llmp_test_timeout_scale(). */
static inline void llmp_test_scale_timeouts(void)
{
	int k = llmp_test_timeout_scale();

	for (struct __fixture_metadata *f = __fixture_list; f && k > 1; f = f->next)
		for (struct __test_metadata *t = f->tests; t; t = t->next)
			t->timeout *= k;
}

/* The harness's main(), with the timeouts scaled before any test runs. */
#undef TEST_HARNESS_MAIN
#define TEST_HARNESS_MAIN \
	static void __attribute__((constructor)) \
	__constructor_order_last(void) \
	{ \
		if (!__constructor_order) \
			__constructor_order = _CONSTRUCTOR_ORDER_BACKWARD; \
	} \
	int main(int argc, char **argv) { \
		llmp_test_scale_timeouts(); \
		return test_harness_run(argc, argv); \
	}

#endif /* LLMP_TEST_H */
