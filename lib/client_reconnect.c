// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * Registering again after the broker died: llmp_client_connect_tcp() in a
 * loop with backoff, until a broker answers at the address again or the
 * caller's deadline passes.
 */
#include <errno.h>
#include <stdint.h>
#include <time.h>

#include "llmp/broker.h"
#include "internal.h"
#include "tcp.h"

/* Errors of a broker that is down, restarting or half gone: worth another try. */
static bool retryable(int err)
{
	return err == -ECONNREFUSED || err == -ECONNRESET || err == -ETIMEDOUT ||
	       err == -ENOENT || err == -EPIPE || err == -EPROTO || err == -ESHUTDOWN;
}

int llmp_client_reconnect_tcp(struct llmp_provider *p, const char *addr, uint16_t port,
			      const struct llmp_client_opts *opts, int timeout_ms,
			      struct llmp_client **out)
{
	const char *host = addr ? addr : "127.0.0.1";
	int64_t start = llmp_now_ms();
	int64_t end = timeout_ms < 0 ? INT64_MAX : start + timeout_ms;
	unsigned delay_ms = 50, tries = 0;
	int ret;

	if (!p || !out)
		return llmp_err(-EINVAL, "tcp: reconnect needs a provider and an out pointer");
	for (;;) {
		int64_t left = end - llmp_now_ms();

		tries++;
		/* a refused dial is retried inside connect too: keep it within our deadline */
		llmp_tcp_dial_budget(left < 1 ? 1 : left > LLMP_TCP_CONNECT_TIMEOUT_MS ?
				     LLMP_TCP_CONNECT_TIMEOUT_MS : (int)left);
		llmp_log_probe_begin(); /* refusals while the broker is down are expected */
		ret = llmp_client_connect_tcp(p, addr, port, opts, out);
		llmp_log_probe_end();
		llmp_tcp_dial_budget(0);
		if (ret == 0) {
			llmp_log(LLMP_LOG_INFO, "tcp: reconnected to %s:%u as client %u after %lld ms "
				 "(%u tries)", host, port, llmp_client_id(*out),
				 (long long)(llmp_now_ms() - start), tries);
			return 0;
		}
		if (!retryable(ret))
			return llmp_err(ret, "tcp: reconnect to %s:%u: %s", host, port,
					llmp_strerror_last());
		if (llmp_now_ms() + delay_ms >= end)
			return llmp_err(-ETIMEDOUT, "tcp: reconnect to %s:%u: no broker within %d ms "
					"(last: %s)", host, port, timeout_ms, llmp_strerror_last());
		nanosleep(&(struct timespec){ .tv_sec = delay_ms / 1000,
					      .tv_nsec = (long)(delay_ms % 1000) * 1000000 }, NULL);
		delay_ms = delay_ms * 2 > 2000 ? 2000 : delay_ms * 2;
	}
}
