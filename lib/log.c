// SPDX-License-Identifier: MIT OR Apache-2.0
/* Log callback and per-thread last-error message. */
#include <stdio.h>
#include <string.h>

#include "internal.h"

static llmp_log_fn log_fn;
static void *log_ctx;
static enum llmp_log_level log_max = LLMP_LOG_WARN;
static _Thread_local char last_error[256];
/* >0 while an expected failure is probed: errors are logged at DEBUG. */
static _Thread_local int probing;

void llmp_set_log(llmp_log_fn fn, void *ctx, enum llmp_log_level max_level)
{
	log_fn = fn;
	log_ctx = ctx;
	log_max = max_level;
}

const char *llmp_strerror_last(void)
{
	return last_error;
}


void llmp_log(enum llmp_log_level level, const char *fmt, ...)
{
	char buf[256];
	va_list ap;

	if (!log_fn || level > log_max)
		return;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	log_fn(log_ctx, level, buf);
}

int llmp_err(int err, const char *fmt, ...)
{
	enum llmp_log_level level;
	char buf[200];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	snprintf(last_error, sizeof(last_error), "%s (%s)", buf, strerror(-err));
	/* Back-pressure (-EAGAIN) is an answer the caller expects, not an error. */
	level = probing || err == -EAGAIN ? LLMP_LOG_DEBUG : LLMP_LOG_ERROR;
	if (log_fn && log_max >= level)
		log_fn(log_ctx, level, last_error);
	return err;
}

void llmp_log_probe_begin(void)
{
	probing++;
}

void llmp_log_probe_end(void)
{
	probing--;
}
