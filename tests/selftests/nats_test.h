/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * Helpers of the NATS bridge tests: real nats-server processes on loopback
 * ports (a temporary store directory each), brokers with a bridge on a
 * thread of the test, and a raw NATS text-protocol publisher.
 */
#ifndef LLMP_NATS_TEST_H
#define LLMP_NATS_TEST_H

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "llmp_test.h"
#include "llmp_node.h"
#include "llmp/nats.h"

/* The bridge's log lines ("nats: ..."), kept for a failing test to print. */
static char nlog[1 << 16];
static struct llmp_test_log nlog_capture = LLMP_TEST_LOG(nlog, "nats:");

/* The nats-server binary, or NULL. */
static inline const char *nt_server_bin(void)
{
	static const char *const paths[] = { "/usr/sbin/nats-server", "/usr/bin/nats-server",
					     "/usr/local/bin/nats-server" };

	for (unsigned i = 0; i < sizeof(paths) / sizeof(paths[0]); i++)
		if (access(paths[i], X_OK) == 0)
			return paths[i];
	return NULL;
}

struct nt_server {
	pid_t pid;
	uint16_t port, cport;  /* clients, cluster routes (0: no cluster) */
	char dir[64];          /* JetStream store ("": none) */
};

/*
 * Start nats-server on 127.0.0.1:port with extra arguments (NULL-ended
 * list in extra); waits until it accepts.  0, or -1.
 */
static inline int nt_server_start(struct nt_server *s, uint16_t port, bool js,
				  const char *const *extra)
{
	const char *argv[40];
	char portbuf[16];
	int k = 0;

	s->port = port;
	if (js && !s->dir[0]) {
		strcpy(s->dir, "/tmp/llmp-nats-XXXXXX");
		if (!mkdtemp(s->dir))
			return -1;
	}
	snprintf(portbuf, sizeof(portbuf), "%u", port);
	argv[k++] = nt_server_bin();
	argv[k++] = "-a";
	argv[k++] = "127.0.0.1";
	argv[k++] = "-p";
	argv[k++] = portbuf;
	if (js) {
		argv[k++] = "-js";
		argv[k++] = "-sd";
		argv[k++] = s->dir;
	}
	for (int i = 0; extra && extra[i] && k < 38; i++)
		argv[k++] = extra[i];
	argv[k] = NULL;
	s->pid = fork();
	if (s->pid < 0)
		return -1;
	if (s->pid == 0) {
		int fd = open("/dev/null", O_WRONLY);

		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
		}
		execv(argv[0], (char *const *)argv);
		_exit(127);
	}
	for (int i = 0; i < 1000; i++) {
		int fd = llmp_test_tcp_dial(port);

		if (fd >= 0) {
			close(fd);
			return 0;
		}
		if (waitpid(s->pid, NULL, WNOHANG) == s->pid) {
			s->pid = 0;
			return -1;
		}
		usleep(10000);
	}
	return -1;
}

static inline void nt_server_kill(struct nt_server *s, int sig)
{
	if (s->pid > 0) {
		kill(s->pid, sig);
		waitpid(s->pid, NULL, 0);
	}
	s->pid = 0;
}

/* Kill it and remove its store. */
static inline void nt_server_fini(struct nt_server *s)
{
	char cmd[128];

	nt_server_kill(s, SIGKILL);
	if (s->dir[0]) {
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", s->dir);
		if (system(cmd) != 0)
			fprintf(stderr, "could not remove %s\n", s->dir);
		s->dir[0] = 0;
	}
}

/* nats://127.0.0.1:port */
static inline const char *nt_url(uint16_t port, char *buf, size_t cap)
{
	snprintf(buf, cap, "nats://127.0.0.1:%u", port);
	return buf;
}

/* ---- a raw NATS text-protocol client -------------------------------------------- */

/* Connect, say CONNECT with headers, check the server answers PONG to a PING: fd or -1. */
static inline int nt_raw_connect(uint16_t port)
{
	static const char hello[] =
		"CONNECT {\"verbose\":false,\"pedantic\":false,\"headers\":true,\"no_responders\":true}\r\n"
		"PING\r\n";
	char buf[4096];
	size_t got = 0;
	int fd = llmp_test_tcp_dial(port);
	struct timeval tv = { 5, 0 };

	if (fd < 0)
		return -1;
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	if (send(fd, hello, sizeof(hello) - 1, MSG_NOSIGNAL) != (ssize_t)sizeof(hello) - 1)
		goto fail;
	/* INFO {...}\r\n then PONG\r\n */
	while (got < sizeof(buf) - 1) {
		ssize_t k = recv(fd, buf + got, sizeof(buf) - 1 - got, 0);

		if (k <= 0)
			goto fail;
		got += (size_t)k;
		buf[got] = 0;
		if (strstr(buf, "PONG\r\n"))
			return fd;
	}
fail:
	close(fd);
	return -1;
}

/* HPUB subject with raw header block hdrs (without the final blank line) and payload. */
static inline int nt_raw_hpub(int fd, const char *subject, const char *hdrs, const void *data,
			      size_t len)
{
	char head[1024], hb[2048];
	int hl = snprintf(hb, sizeof(hb), "NATS/1.0\r\n%s\r\n", hdrs);
	int n = snprintf(head, sizeof(head), "HPUB %s %d %zu\r\n", subject, hl, (size_t)hl + len);

	if (send(fd, head, (size_t)n, MSG_NOSIGNAL) != n ||
	    send(fd, hb, (size_t)hl, MSG_NOSIGNAL) != hl ||
	    (len && send(fd, data, len, MSG_NOSIGNAL) != (ssize_t)len) ||
	    send(fd, "\r\n", 2, MSG_NOSIGNAL) != 2)
		return -1;
	return 0;
}

/* Round trip: everything sent before reached the server.  0, or -1 (closed). */
static inline int nt_raw_ping(int fd)
{
	char buf[4096];
	size_t got = 0;

	if (send(fd, "PING\r\n", 6, MSG_NOSIGNAL) != 6)
		return -1;
	while (got < sizeof(buf) - 1) {
		ssize_t k = recv(fd, buf + got, sizeof(buf) - 1 - got, 0);

		if (k <= 0)
			return -1;
		got += (size_t)k;
		buf[got] = 0;
		if (strstr(buf, "PONG\r\n"))
			return 0;
	}
	return -1;
}

#endif /* LLMP_NATS_TEST_H */
