/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * A small KTAP test runner for the Windows test programs.
 *
 * kselftest_harness.h needs fork(), which Windows lacks, so each program
 * lists its tests in a table and calls wtest_main(): it prints
 * "TAP version 13", "1..N", then "ok N name", "ok N name # SKIP reason" or
 * "not ok N name" per test, with a "# file:line: ..." line before a
 * failure, and returns 0 only when no test failed.  A test returns 0 (pass,
 * or skip when it called WTEST_SKIP) or -1 through CHECK/CHECK_EQ.
 *
 * Cross-process tests start the same executable again with an argument
 * (wtest_spawn / wtest_wait); the child reports through its exit status.
 */
#ifndef LLMP_WTEST_H
#define LLMP_WTEST_H

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <windows.h>

#include "llmp/shmem.h"

#define KiB (1024ULL)
#define MiB (1024ULL * 1024ULL)

static char wtest_failmsg[512];
static char wtest_skipmsg[200];

static inline int wtest_fail_at(const char *file, int line, const char *fmt, ...)
	__attribute__((format(gnu_printf, 3, 4)));
static inline int wtest_fail_at(const char *file, int line, const char *fmt, ...)
{
	char buf[400];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	snprintf(wtest_failmsg, sizeof(wtest_failmsg), "%s:%d: %s", file, line, buf);
	return -1;
}

#define FAIL(...) return wtest_fail_at(__FILE__, __LINE__, __VA_ARGS__)

#define CHECK(cond)                                                                    \
	do {                                                                           \
		if (!(cond))                                                           \
			FAIL("%s (last error: %s)", #cond, llmp_strerror_last());      \
	} while (0)

#define CHECK_EQ(want, got)                                                            \
	do {                                                                           \
		long long w_ = (long long)(want), g_ = (long long)(got);               \
		if (w_ != g_)                                                          \
			FAIL("%s == %s: want %lld, got %lld (last error: %s)", #want, #got, \
			     w_, g_, llmp_strerror_last());                            \
	} while (0)

/* Mark the running test skipped (it then returns 0). */
#define WTEST_SKIP(...) snprintf(wtest_skipmsg, sizeof(wtest_skipmsg), __VA_ARGS__)

/* ---- data helpers ----------------------------------------------------------- */

static inline uint8_t wtest_pattern(uint64_t i, uint32_t seed)
{
	uint64_t x = (i + 1) * 0x9E3779B97F4A7C15ULL ^ seed;

	return (uint8_t)(x >> 29 ^ x >> 47);
}

static inline void wtest_fill(uint8_t *p, size_t n, uint32_t seed)
{
	for (size_t i = 0; i < n; i++)
		p[i] = wtest_pattern(i, seed);
}

/* FNV-1a, 64 bit. */
static inline uint64_t wtest_fnv64(const uint8_t *p, size_t n)
{
	uint64_t h = 0xcbf29ce484222325ULL;

	for (size_t i = 0; i < n; i++) {
		h ^= p[i];
		h *= 0x100000001b3ULL;
	}
	return h;
}

/* Set (or, with "", remove) an environment variable that children inherit. */
static inline int wtest_setenv(const char *name, const char *val)
{
	return _putenv_s(name, val) ? -1 : 0;
}

/* ---- child processes ---------------------------------------------------------- */

/* Start this executable again with one argument; NULL if that fails. */
static inline HANDLE wtest_spawn(const char *arg)
{
	char exe[MAX_PATH], cmd[MAX_PATH + 64];
	STARTUPINFOA si;
	PROCESS_INFORMATION pi;
	DWORD n;

	n = GetModuleFileNameA(NULL, exe, sizeof(exe));
	if (n == 0 || n >= sizeof(exe))
		return NULL;
	snprintf(cmd, sizeof(cmd), "\"%s\" %s", exe, arg);
	memset(&si, 0, sizeof(si));
	si.cb = sizeof(si);
	memset(&pi, 0, sizeof(pi));
	fflush(stdout);
	if (!CreateProcessA(exe, cmd, NULL, NULL, TRUE, 0, NULL, NULL, &si, &pi))
		return NULL;
	CloseHandle(pi.hThread);
	return pi.hProcess;
}

/* Wait for a child (killing it after timeout_ms) and return its exit status. */
static inline long wtest_wait(HANDLE h, DWORD timeout_ms)
{
	DWORD code = 0;

	if (WaitForSingleObject(h, timeout_ms) != WAIT_OBJECT_0) {
		TerminateProcess(h, 98);
		WaitForSingleObject(h, INFINITE);
		code = 98;
	} else if (!GetExitCodeProcess(h, &code)) {
		code = 97;
	}
	CloseHandle(h);
	return (long)code;
}

/* Spawn with arg and wait (two minutes at most); -1 if it could not start. */
static inline long wtest_run_child(const char *arg)
{
	HANDLE h = wtest_spawn(arg);

	return h ? wtest_wait(h, 120000) : -1;
}

/* ---- the runner ------------------------------------------------------------------ */

struct wtest {
	const char *name;
	int (*fn)(void);
};

/* A table entry for the function t_<name>, reported as <name>. */
#define WTEST(fn) { #fn + 2, fn }

static inline int wtest_main(const struct wtest *tests, size_t n)
{
	int failed = 0;

	setvbuf(stdout, NULL, _IONBF, 0);
	printf("TAP version 13\n");
	printf("1..%zu\n", n);
	for (size_t i = 0; i < n; i++) {
		wtest_failmsg[0] = '\0';
		wtest_skipmsg[0] = '\0';
		if (tests[i].fn() == 0) {
			if (wtest_skipmsg[0])
				printf("ok %zu %s # SKIP %s\n", i + 1, tests[i].name, wtest_skipmsg);
			else
				printf("ok %zu %s\n", i + 1, tests[i].name);
		} else {
			printf("# %s\n", wtest_failmsg);
			printf("not ok %zu %s\n", i + 1, tests[i].name);
			failed++;
		}
	}
	printf("# %zu tests, %d failed\n", n, failed);
	return failed ? 1 : 0;
}

#endif /* LLMP_WTEST_H */
