/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * Small helpers the tools under tools/ share (not installed, not part of
 * libllmp): clocks, sleeps, run-control flags in shared memory, exact-length
 * fd I/O, the bench's word checksum and strict number parsing.
 */
#ifndef LLMP_TOOL_H
#define LLMP_TOOL_H

#include <errno.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* CLOCK_MONOTONIC in nanoseconds. */
static inline uint64_t now_ns(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

/* Sleep ns nanoseconds, resumed after signals. */
static inline void sleep_ns(uint64_t ns)
{
	struct timespec t = { .tv_sec = (time_t)(ns / 1000000000u),
			      .tv_nsec = (long)(ns % 1000000000u) };

	while (nanosleep(&t, &t) && errno == EINTR)
		;
}

static inline void sleep_ms(unsigned ms)
{
	sleep_ns((uint64_t)ms * 1000000u);
}

/*
 * Run-control flags shared between processes (and threads): set once,
 * polled.  The seq_cst store in flag_set() pairs with the seq_cst load in
 * flag_get(); what a flag announces was written before it is set.
 */
static inline void flag_set(_Atomic int *f)
{
	atomic_store(f, 1); /* pairs with flag_get() */
}

static inline bool flag_get(_Atomic int *f)
{
	return atomic_load(f); /* pairs with flag_set() */
}

/* Read (wr false) or write exactly n bytes: 0, -errno, or -EPIPE at EOF. */
static inline int full_io(int fd, void *buf, size_t n, bool wr)
{
	unsigned char *p = buf;

	while (n) {
		ssize_t r = wr ? write(fd, p, n) : read(fd, p, n);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return r < 0 ? -errno : -EPIPE;
		p += r;
		n -= (size_t)r;
	}
	return 0;
}

/* Sum of the whole 64-bit words of p (llmp-bench's and llmp-ring's checksum). */
static inline uint64_t word_sum(const void *p, size_t len)
{
	const unsigned char *b = p;
	uint64_t s = 0;

	for (size_t i = 0; i + 8 <= len; i += 8) {
		uint64_t w;

		memcpy(&w, b + i, 8);
		s += w;
	}
	return s;
}

/* 1 TiB, the cap of the byte-count options; ULONG_MAX where a long is 32 bits. */
#define TOOL_MAX_BYTES ((unsigned long)((1ULL << 40) < ULONG_MAX ? (1ULL << 40) : ULONG_MAX))

/* A whole unsigned number (decimal, 0x hex or 0 octal) up to max: 0, or -1. */
static inline int parse_ulong(const char *s, unsigned long max, unsigned long *out)
{
	char *end;
	unsigned long v;

	errno = 0;
	v = strtoul(s, &end, 0);
	if (errno || end == s || *end || v > max || s[0] == '-')
		return -1;
	*out = v;
	return 0;
}

#endif /* LLMP_TOOL_H */
