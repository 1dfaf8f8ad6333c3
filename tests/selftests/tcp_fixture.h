/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * What tcp_test and tcp_reg_test share: the includes of the broker's TCP
 * side and a hex decoder for frames captured from LibAFL.
 */
#ifndef LLMP_TCP_FIXTURE_H
#define LLMP_TCP_FIXTURE_H

#include <arpa/inet.h>
#include <errno.h>
#include <linux/futex.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "kselftest_harness.h"
#include "llmp_test.h"
#include "llmp/broker.h"

/* Decode a hex string (spaces ignored) into out; returns the byte count. */
static inline size_t unhex(const char *s, uint8_t *out, size_t cap)
{
	size_t n = 0;
	int hi = -1;

	for (; *s; s++) {
		int v;

		if (*s == ' ')
			continue;
		v = (*s >= '0' && *s <= '9') ? *s - '0' : (*s | 0x20) - 'a' + 10;
		if (hi < 0) {
			hi = v;
		} else {
			if (n < cap)
				out[n] = (uint8_t)(hi << 4 | v);
			n++;
			hi = -1;
		}
	}
	return n;
}


#endif /* LLMP_TCP_FIXTURE_H */
