// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * llmp-bench-fleet: a client on broker A to a client on broker B, through
 * a B2B link, core NATS and JetStream, in one run (make bench-fleet).  Per
 * payload size (64 B, 1 KiB, 64 KiB): a flood (msgs/s and MB/s received)
 * and a ping-pong-free one-at-a-time run for latency (p50/p99: send one,
 * wait for it at B).  Starts its own nats-server on a loopback port with a
 * temporary store; the NATS rows are skipped (with the reason) without it.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <unistd.h>

#include "llmp/broker.h"
#include "llmp/llmp.h"
#include "llmp/nats.h"
#include "llmp/shmem.h"
#include "tool.h"

#define TAG 0xbe1u
#define LAT_N 400

struct node {
	struct llmp_provider *p;
	struct llmp_broker *b;
	struct llmp_tcp_listener *l;
	struct llmp_loop *lp;
	uint16_t port;
	pthread_t t;
};

static void *run(void *v)
{
	llmp_loop_run(((struct node *)v)->lp);
	return NULL;
}

static int node_new(struct node *n)
{
	struct llmp_broker_opts bo = { .struct_size = sizeof(bo), .page_size = 1 << 22 };
	int r;

	memset(n, 0, sizeof(*n));
	if ((r = llmp_provider_new(LLMP_SHMEM_DEFAULT, &n->p)) < 0 ||
	    (r = llmp_broker_new(n->p, &bo, &n->b)) < 0 ||
	    (r = llmp_tcp_listen(n->b, NULL, 0, NULL, &n->l)) < 0 ||
	    (r = llmp_loop_new(n->b, NULL, &n->lp)) < 0 ||
	    (r = llmp_loop_add_listener(n->lp, n->l)) < 0)
		return r;
	n->port = llmp_tcp_listener_port(n->l);
	return 0;
}

static void node_free(struct node *n)
{
	if (n->t) {
		llmp_loop_stop(n->lp);
		pthread_join(n->t, NULL);
	}
	llmp_loop_free(n->lp);
	llmp_tcp_listener_free(n->l);
	if (n->b)
		llmp_broker_free(n->b);
	if (n->p)
		llmp_provider_free(n->p);
}

static uint16_t free_port(void)
{
	struct sockaddr_in a = { .sin_family = AF_INET };
	socklen_t al = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	uint16_t port = 0;

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd >= 0 && !bind(fd, (struct sockaddr *)&a, sizeof(a)) &&
	    !getsockname(fd, (struct sockaddr *)&a, &al))
		port = ntohs(a.sin_port);
	if (fd >= 0)
		close(fd);
	return port;
}

static pid_t nats_pid;
static char nats_dir[64];

/* nats-server -js on 127.0.0.1:port; 0 once it accepts. */
static int nats_start(uint16_t port)
{
	const char *bin = access("/usr/sbin/nats-server", X_OK) == 0 ? "/usr/sbin/nats-server"
								     : "/usr/bin/nats-server";
	char ps[16];

	if (access(bin, X_OK))
		return -1;
	strcpy(nats_dir, "/tmp/llmp-bench-nats-XXXXXX");
	if (!mkdtemp(nats_dir))
		return -1;
	snprintf(ps, sizeof(ps), "%u", port);
	nats_pid = fork();
	if (nats_pid == 0) {
		int fd = open("/dev/null", O_WRONLY);

		dup2(fd, 1);
		dup2(fd, 2);
		execl(bin, bin, "-a", "127.0.0.1", "-p", ps, "-js", "-sd", nats_dir, (char *)NULL);
		_exit(127);
	}
	for (int i = 0; i < 500; i++) {
		struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port) };
		int fd = socket(AF_INET, SOCK_STREAM, 0);

		a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		if (!connect(fd, (struct sockaddr *)&a, sizeof(a))) {
			close(fd);
			return 0;
		}
		close(fd);
		usleep(10000);
	}
	return -1;
}

static void nats_stop(void)
{
	char cmd[128];

	if (nats_pid > 0) {
		kill(nats_pid, SIGTERM);
		waitpid(nats_pid, NULL, 0);
	}
	if (nats_dir[0]) {
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", nats_dir);
		if (system(cmd)) {
			/* best effort */
		}
	}
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* Wait for a TAG message at rx carrying sequence `want` (earlier ones skipped); its time. */
static int wait_seq(struct llmp_client *rx, uint64_t want, int ms, uint64_t *t)
{
	struct llmp_msg_view v;
	uint64_t end = now_ns() + (uint64_t)ms * 1000000u, seq;

	while (now_ns() < end) {
		if (llmp_client_recv_wait(rx, &v, 100) != 1 || v.tag != TAG || v.len < 8)
			continue;
		memcpy(&seq, v.buf, 8);
		if (seq >= want) {
			*t = now_ns();
			return seq == want ? 0 : 1;
		}
	}
	return -1;
}

/* One row: flood n messages of len bytes, then LAT_N one at a time. */
static void row(const char *via, struct node *a, struct node *b, size_t len, unsigned n)
{
	struct llmp_client_opts co = { .struct_size = sizeof(co), .send_timeout_ms = 30000 };
	struct llmp_client *tx = NULL, *rx = NULL;
	static uint8_t buf[1 << 17];
	uint64_t lat[LAT_N], t0, t1, seq = 0, got = 0;
	struct llmp_msg_view v;
	unsigned nl = 0;

	if (llmp_client_connect_tcp(a->p, NULL, a->port, &co, &tx) < 0 ||
	    llmp_client_connect_tcp(b->p, NULL, b->port, &co, &rx) < 0) {
		printf("%-9s %7zu  (client: %s)\n", via, len, llmp_strerror_last());
		goto out;
	}
	/* Pseudo-random payload (zstd gains little, as with fuzzer inputs). */
	for (size_t i = 8; i < len; i++)
		buf[i] = (uint8_t)((i * 2654435761u) >> 13);
	/* Warm up until one crosses. */
	for (int i = 0; i < 200; i++) {
		seq++;
		memcpy(buf, &seq, 8);
		llmp_client_send(tx, TAG, 0, buf, len);
		if (wait_seq(rx, seq, 100, &t1) == 0)
			break;
	}
	while (llmp_client_recv(rx, &v) == 1)
		;
	uint64_t first = seq + 1;

	t0 = now_ns();
	for (unsigned i = 0; i < n; i++) {
		seq++;
		memcpy(buf, &seq, 8);
		if (llmp_client_send(tx, TAG, 0, buf, len) < 0)
			break;
	}
	/* Count arrivals until the last one or 3 s of silence. */
	t1 = t0;
	for (;;) {
		uint64_t s;

		if (llmp_client_recv_wait(rx, &v, 3000) != 1)
			break;
		if (v.tag != TAG || v.len < 8)
			continue;
		memcpy(&s, v.buf, 8);
		if (s >= first) {
			got++;
			t1 = now_ns();
		}
		if (s == seq)
			break;
	}
	double secs = (double)(t1 - t0) / 1e9;
	for (unsigned i = 0; i < LAT_N; i++) {
		uint64_t ts = now_ns(), tr;

		seq++;
		memcpy(buf, &seq, 8);
		if (llmp_client_send(tx, TAG, 0, buf, len) < 0)
			break;
		if (wait_seq(rx, seq, 2000, &tr) == 0)
			lat[nl++] = tr - ts;
	}
	qsort(lat, nl, sizeof(lat[0]), cmp_u64);
	printf("%-9s %7zu %10.0f %9.1f %9.1f %9.1f %7" PRIu64 "/%u\n", via, len,
	       secs > 0 ? (double)got / secs : 0.0, secs > 0 ? (double)got * (double)len / secs / 1e6 : 0.0,
	       nl ? (double)lat[nl / 2] / 1e3 : 0.0, nl ? (double)lat[nl * 99 / 100] / 1e3 : 0.0,
	       got, n);
out:
	if (tx)
		llmp_client_free(tx);
	if (rx)
		llmp_client_free(rx);
}

int main(int argc, char **argv)
{
	static const size_t sizes[] = { 64, 1024, 65536 };
	static const unsigned counts[] = { 20000, 20000, 500 };
	static const char *const vias[] = { "b2b", "nats", "jetstream" };
	uint16_t nport;
	bool have_nats;
	char url[64];

	if (argc > 1) {
		bool help = !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help");

		fprintf(help ? stdout : stderr,
			"usage: llmp-bench-fleet\n"
			"A client on broker A to a client on broker B through B2B, core NATS and\n"
			"JetStream (64 B, 1 KiB, 64 KiB): msgs/s, MB/s, p50/p99 latency.  Takes no\n"
			"options; starts its own nats-server (llmp-bench-fleet(1)).\n");
		return help && argc == 2 ? 0 : 2;
	}
	nport = free_port();
	have_nats = nats_start(nport) == 0;

	snprintf(url, sizeof(url), "nats://127.0.0.1:%u", nport);
	printf("llmp-bench-fleet: client on broker A -> client on broker B (two brokers, one process)\n");
	printf("%-9s %7s %10s %9s %9s %9s %s\n", "via", "bytes", "msgs/s", "MB/s", "p50 us", "p99 us",
	       "received/sent");
	for (unsigned m = 0; m < 3; m++) {
		for (unsigned s = 0; s < 3; s++) {
			struct node a, b;
			int r = node_new(&a);

			if (r == 0)
				r = node_new(&b);
			if (r == 0 && m == 0)
				r = llmp_loop_connect_b2b(a.lp, "127.0.0.1", b.port);
			if (r == 0 && m > 0 && !have_nats) {
				printf("%-9s %7zu  skipped: nats-server could not be started\n", vias[m],
				       sizes[s]);
				node_free(&a);
				node_free(&b);
				continue;
			}
			if (r == 0 && m > 0) {
				char camp[32];
				struct llmp_nats_opts o = { .struct_size = sizeof(o), .urls = url,
							    .campaign = camp, .stream = m == 2 };

				snprintf(camp, sizeof(camp), "bench%u%u", m, s);
				r = llmp_loop_attach_nats(a.lp, &o, NULL);
				if (r == 0)
					r = llmp_loop_attach_nats(b.lp, &o, NULL);
			}
			if (r < 0) {
				printf("%-9s %7zu  skipped: %s\n", vias[m], sizes[s], llmp_strerror_last());
			} else {
				pthread_create(&a.t, NULL, run, &a);
				pthread_create(&b.t, NULL, run, &b);
				row(vias[m], &a, &b, sizes[s], counts[s]);
			}
			node_free(&a);
			node_free(&b);
		}
	}
	nats_stop();
	return 0;
}
