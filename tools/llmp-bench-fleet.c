// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * llmp-bench-fleet: a client on broker A to a client on broker B, through
 * a B2B link, core NATS and JetStream, in one run (make bench-fleet).  Per
 * payload size (64 B, 1 KiB, 64 KiB): a flood (msgs/s and MB/s received)
 * and a ping-pong-free one-at-a-time run for latency (p50/p99: send one,
 * wait for it at B).  Starts its own nats-server on a loopback port with a
 * temporary store; the NATS rows are skipped (with the reason) without it.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <linux/tcp.h>
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

#define NSRV 3 /* the fan-out's NATS cluster */

static pid_t nats_pid[NSRV];
static char nats_dir[NSRV][64];

static int wait_port(uint16_t port)
{
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

/*
 * nats-server k (-js, a temporary store) on 127.0.0.1:port; with cport,
 * a member of the cluster "bench" listening for routes there and routed
 * to the ports in routes.  0 once it accepts.
 */
static int nats_start_k(int k, uint16_t port, uint16_t cport, const char *routes)
{
	const char *bin = access("/usr/sbin/nats-server", X_OK) == 0 ? "/usr/sbin/nats-server"
								     : "/usr/bin/nats-server";
	char ps[16], cl[48], name[16];

	if (access(bin, X_OK))
		return -1;
	strcpy(nats_dir[k], "/tmp/llmp-bench-nats-XXXXXX");
	if (!mkdtemp(nats_dir[k]))
		return -1;
	snprintf(ps, sizeof(ps), "%u", port);
	snprintf(cl, sizeof(cl), "nats://127.0.0.1:%u", cport);
	snprintf(name, sizeof(name), "n%d", k);
	nats_pid[k] = fork();
	if (nats_pid[k] == 0) {
		int fd = open("/dev/null", O_WRONLY);

		dup2(fd, 1);
		dup2(fd, 2);
		if (cport)
			execl(bin, bin, "-a", "127.0.0.1", "-p", ps, "-js", "-sd", nats_dir[k], "-n", name,
			      "--cluster_name", "bench", "--cluster", cl, "--routes", routes,
			      (char *)NULL);
		else
			execl(bin, bin, "-a", "127.0.0.1", "-p", ps, "-js", "-sd", nats_dir[k],
			      (char *)NULL);
		_exit(127);
	}
	return nats_pid[k] > 0 ? wait_port(port) : -1;
}

static int nats_start(uint16_t port)
{
	return nats_start_k(0, port, 0, NULL);
}

static void nats_stop(void)
{
	char cmd[256];

	for (int k = 0; k < NSRV; k++) {
		if (nats_pid[k] > 0) {
			kill(nats_pid[k], SIGTERM);
			waitpid(nats_pid[k], NULL, 0);
			nats_pid[k] = 0;
		}
		if (nats_dir[k][0]) {
			snprintf(cmd, sizeof(cmd), "rm -rf '%s'", nats_dir[k]);
			if (system(cmd)) {
				/* best effort */
			}
			nats_dir[k][0] = 0;
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

/* ---- fan-out: one sending broker to 2, 4, 8 receiving brokers ------------ */

#define FAN_N 10000u  /* messages per row */
#define FAN_LEN 1024u /* bytes each */
#define FAN_MAX 8
#define WARM (TAG + 1)

/* Bytes this process's TCP sockets have sent (TCP_INFO of every socket among its fds). */
static uint64_t tcp_sent(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	uint64_t sum = 0;

	while (d && (e = readdir(d))) {
		struct tcp_info ti;
		socklen_t l = sizeof(ti);
		struct stat st;
		int fd = atoi(e->d_name);

		if (e->d_name[0] == '.' || fd == dirfd(d) || fstat(fd, &st) || !S_ISSOCK(st.st_mode))
			continue;
		memset(&ti, 0, sizeof(ti));
		if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &l) == 0 &&
		    l >= offsetof(struct tcp_info, tcpi_bytes_sent) + sizeof(ti.tcpi_bytes_sent))
			sum += ti.tcpi_bytes_sent;
	}
	if (d)
		closedir(d);
	return sum;
}

struct fan_report {
	uint64_t got, t_last; /* TAG messages of the row received; CLOCK_MONOTONIC of the last */
};

/*
 * A receiving broker (a child process): its own broker, loop and client,
 * B2B-accepting or bridged to url.  Writes its port, then 'w' once a WARM
 * message arrived, then its report; exits when the parent closes rfd.
 */
static int fan_child(bool nats, const char *url, int wfd, int rfd)
{
	struct llmp_client_opts co = { .struct_size = sizeof(co), .send_timeout_ms = 30000 };
	struct fan_report rep = { 0 };
	struct llmp_client *rx = NULL;
	struct llmp_msg_view v;
	struct node n;
	uint64_t deadline = now_ns() + 180000000000ull, seq, last;
	bool warm = false;
	char c;

	if (node_new(&n) < 0)
		return 1;
	if (nats) {
		struct llmp_nats_opts o = { .struct_size = sizeof(o), .urls = url, .campaign = "fan",
					    .retry = true };

		if (llmp_loop_attach_nats(n.lp, &o, NULL) < 0)
			return 1;
	}
	pthread_create(&n.t, NULL, run, &n);
	if (llmp_client_connect_tcp(n.p, NULL, n.port, &co, &rx) < 0 ||
	    full_io(wfd, &n.port, sizeof(n.port), true) < 0)
		return 1;
	while (now_ns() < deadline) {
		int r = llmp_client_recv_wait(rx, &v, rep.got ? 5000 : 200);

		if (r == 0 && rep.got)
			break; /* 5 s of silence once the row began */
		if (r != 1 || v.len < 16)
			continue;
		if (v.tag == WARM && !warm) {
			warm = true;
			if (full_io(wfd, "w", 1, true) < 0)
				return 1;
		}
		if (v.tag != TAG)
			continue;
		memcpy(&seq, v.buf, 8);
		memcpy(&last, (const uint8_t *)v.buf + 8, 8);
		rep.got++;
		rep.t_last = now_ns();
		if (seq == last)
			break;
	}
	if (full_io(wfd, &rep, sizeof(rep), true) < 0)
		return 1;
	while (read(rfd, &c, 1) > 0)
		;
	llmp_client_free(rx);
	node_free(&n);
	return 0;
}

static int cmp_f(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/* Read exactly n bytes from fd within ms; 0 or -1. */
static int read_within(int fd, void *buf, size_t n, int ms)
{
	struct pollfd pf = { .fd = fd, .events = POLLIN };

	if (poll(&pf, 1, ms) != 1)
		return -1;
	return full_io(fd, buf, n, false);
}

/* One fan-out row: FAN_N messages from a client on broker A to a client on each of nb brokers. */
static void fan_row(bool nats, unsigned nb, char urls[NSRV][40])
{
	struct llmp_client_opts co = { .struct_size = sizeof(co), .send_timeout_ms = 30000 };
	int up[FAN_MAX][2], down[FAN_MAX][2];
	struct fan_report rep[FAN_MAX];
	pid_t pid[FAN_MAX];
	uint16_t port[FAN_MAX];
	struct llmp_client *tx = NULL;
	static uint8_t buf[FAN_LEN];
	struct node a;
	bool a_up = false;
	unsigned k, warm = 0;
	const char *why = NULL;

	memset(&a, 0, sizeof(a));
	for (k = 0; k < nb; k++) {
		if (pipe(up[k]) < 0 || pipe(down[k]) < 0) {
			perror("llmp-bench-fleet: pipe");
			exit(1);
		}
		fflush(NULL);
		pid[k] = fork();
		if (pid[k] < 0) { /* waitpid(-1) below would reap the nats-servers */
			perror("llmp-bench-fleet: fork");
			exit(1);
		}
		if (pid[k] == 0) {
			for (unsigned j = 0; j < k; j++) { /* the parent's ends of the others' pipes */
				close(up[j][0]);
				close(down[j][1]);
			}
			close(up[k][0]);
			close(down[k][1]);
			_exit(fan_child(nats, urls[(k + 1) % NSRV], up[k][1], down[k][0]));
		}
		close(up[k][1]);
		close(down[k][0]);
	}
	for (k = 0; k < nb && !why; k++)
		if (read_within(up[k][0], &port[k], sizeof(port[k]), 30000) < 0)
			why = "a receiving broker did not start";
	if (!why && node_new(&a) < 0)
		why = llmp_strerror_last();
	a_up = !why;
	for (k = 0; k < nb && !why && !nats; k++)
		if (llmp_loop_connect_b2b(a.lp, "127.0.0.1", port[k]) < 0)
			why = llmp_strerror_last();
	if (!why && nats) {
		struct llmp_nats_opts o = { .struct_size = sizeof(o), .urls = urls[0], .campaign = "fan" };

		if (llmp_loop_attach_nats(a.lp, &o, NULL) < 0)
			why = llmp_strerror_last();
	}
	if (!why) {
		pthread_create(&a.t, NULL, run, &a);
		if (llmp_client_connect_tcp(a.p, NULL, a.port, &co, &tx) < 0)
			why = llmp_strerror_last();
	}
	for (size_t i = 16; i < FAN_LEN; i++)
		buf[i] = (uint8_t)((i * 2654435761u) >> 13);
	/* WARM until every receiver has one (links up, subscriptions across the cluster) */
	for (uint64_t end = now_ns() + 60000000000ull; !why && warm < nb; ) {
		struct pollfd pf[FAN_MAX];
		char c;

		if (now_ns() > end) {
			why = "not every receiver got a warm-up message in 60 s";
			break;
		}
		llmp_client_send(tx, WARM, 0, buf, 16);
		for (k = 0; k < nb; k++)
			pf[k] = (struct pollfd){ .fd = up[k][0], .events = POLLIN };
		if (poll(pf, nb, 50) > 0)
			for (k = 0; k < nb; k++)
				if ((pf[k].revents & POLLIN) && read(up[k][0], &c, 1) == 1)
					warm++;
	}
	if (!why) {
		uint64_t w0 = tcp_sent(), t0 = now_ns(), last = FAN_N, got = 0;
		double rate[FAN_MAX];

		for (uint64_t seq = 1; seq <= FAN_N; seq++) {
			memcpy(buf, &seq, 8);
			memcpy(buf + 8, &last, 8);
			if (llmp_client_send(tx, TAG, 0, buf, FAN_LEN) < 0)
				break;
		}
		for (k = 0; k < nb && !why; k++)
			if (read_within(up[k][0], &rep[k], sizeof(rep[k]), 240000) < 0)
				why = "a receiving broker gave no report";
		if (!why) {
			uint64_t w1 = tcp_sent();

			for (k = 0; k < nb; k++) {
				got += rep[k].got;
				rate[k] = rep[k].t_last > t0 ?
						  (double)rep[k].got / ((double)(rep[k].t_last - t0) / 1e9) :
						  0;
			}
			qsort(rate, nb, sizeof(rate[0]), cmp_f);
			printf("%-9s %7u %12.0f %12.0f %14.0f %10" PRIu64 "/%u\n", nats ? "nats" : "b2b",
			       nb, rate[0], rate[nb / 2], (double)(w1 - w0) / FAN_N, got, nb * FAN_N);
		}
	}
	if (why)
		printf("%-9s %7u  failed: %s\n", nats ? "nats" : "b2b", nb, why);
	fflush(stdout);
	if (tx)
		llmp_client_free(tx);
	if (a_up)
		node_free(&a);
	for (k = 0; k < nb; k++) {
		close(down[k][1]);
		close(up[k][0]);
		waitpid(pid[k], NULL, 0);
	}
}

/* --fanout: B2B links from A to each receiver (the mesh's cost at the sender) vs core NATS. */
static int fanout(void)
{
	static const unsigned nbs[] = { 2, 4, 8 };
	uint16_t port[NSRV], cport[NSRV];
	char urls[NSRV][40], routes[NSRV][160];
	bool have_nats = true;

	for (int k = 0; k < NSRV; k++) {
		port[k] = free_port();
		cport[k] = free_port();
		snprintf(urls[k], sizeof(urls[k]), "nats://127.0.0.1:%u", port[k]);
	}
	for (int k = 0; k < NSRV; k++) {
		routes[k][0] = 0;
		for (int j = 0; j < NSRV; j++)
			if (j != k)
				snprintf(routes[k] + strlen(routes[k]), sizeof(routes[k]) - strlen(routes[k]),
					 "%snats://127.0.0.1:%u", routes[k][0] ? "," : "", cport[j]);
	}
	for (int k = 0; k < NSRV && have_nats; k++)
		have_nats = nats_start_k(k, port[k], cport[k], routes[k]) == 0;
	printf("llmp-bench-fleet --fanout: %u messages of %u B from a client on broker A to a client on\n"
	       "each of N brokers (a process each); NATS: a cluster of %d servers, A on the first;\n"
	       "A sent: what A's process sent over TCP per message (TCP_INFO bytes_sent)\n",
	       FAN_N, FAN_LEN, NSRV);
	printf("%-9s %7s %12s %12s %14s %s\n", "via", "brokers", "min msgs/s", "median msgs/s",
	       "A sent B/msg", "received/sent");
	for (unsigned i = 0; i < sizeof(nbs) / sizeof(nbs[0]); i++) {
		fan_row(false, nbs[i], urls);
		if (have_nats)
			fan_row(true, nbs[i], urls);
		else
			printf("%-9s %7u  skipped: the nats-server cluster could not be started\n", "nats",
			       nbs[i]);
	}
	nats_stop();
	{
		char la[64] = "";
		FILE *f = fopen("/proc/loadavg", "r");

		if (f && fgets(la, sizeof(la), f))
			printf("load average: %s", la);
		if (f)
			fclose(f);
	}
	return 0;
}

int main(int argc, char **argv)
{
	static const size_t sizes[] = { 64, 1024, 65536 };
	static const unsigned counts[] = { 20000, 20000, 500 };
	static const char *const vias[] = { "b2b", "nats", "jetstream" };
	uint16_t nport;
	bool have_nats;
	char url[64];

	if (argc == 2 && !strcmp(argv[1], "--fanout"))
		return fanout();
	if (argc > 1) {
		bool help = !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help");

		fprintf(help ? stdout : stderr,
			"usage: llmp-bench-fleet [--fanout]\n"
			"A client on broker A to a client on broker B through B2B, core NATS and\n"
			"JetStream (64 B, 1 KiB, 64 KiB): msgs/s, MB/s, p50/p99 latency.  --fanout:\n"
			"broker A to 2, 4, 8 brokers (a process each), B2B links against a cluster of\n"
			"three nats-servers: rates and the bytes A sent per message\n"
			"(llmp-bench-fleet(1)).\n");
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
