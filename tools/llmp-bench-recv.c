// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * llmp-bench-recv: how fast a waiting receiver sees a message, by how it
 * waits.  A broker (event loop, sleeping when idle) on a thread, a sender
 * thread that sends time-stamped messages at random gaps (about 1,000 per
 * second), and a receiver that waits in one of four ways:
 *
 *   eventfd   poll(2) on llmp_client_event_fd(), then llmp_client_recv()
 *   poll5ms   llmp_client_recv(), and 5 ms of sleep when it finds nothing
 *             (what a user without the event fd writes, LibAFL's pace)
 *   poll1ms   the same with 1 ms
 *   recvwait  llmp_client_recv_wait() (the library's spin, yield, nap)
 *
 * Per way: one-way latency p50/p99 (send to receive, one clock, so the
 * broker's wake-up is in it) and the receiver's CPU per message, with the
 * ratio of each p50 to poll5ms's of the same run.  The receiver runs in a
 * process of its own (this program, re-executed), so its CPU counts every
 * thread it has.  Every message is
 * checked: count, order and payload sum; a loss fails the run.
 *
 *   llmp-bench-recv [--count N] [--rate MSGS_PER_S] [--ways LIST]
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "llmp/broker.h"
#include "tool.h"

#define TAG 0xBE5C0001u

enum way { EVENTFD, POLL5, POLL1, RECVWAIT, NWAYS };
static const char *const way_names[NWAYS] = { "eventfd", "poll5ms", "poll1ms", "recvwait" };

struct stamp {
	uint64_t seq;
	uint64_t sent_ns;
	uint64_t check; /* seq * a constant: a corrupted payload shows */
};

static unsigned count = 2000;
static double rate = 1000;

struct sender {
	struct llmp_client *c;
	unsigned n;
	int ret;
	_Atomic int go;
};

/* xorshift: the gaps, uniform in [0.5, 1.5] x the mean */
static uint64_t rnd(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

static void *sender_main(void *v)
{
	struct sender *s = v;
	uint64_t seed = 0x9E3779B97F4A7C15ull, mean = (uint64_t)(1e9 / rate);

	while (!flag_get(&s->go))
		sleep_ms(1);
	for (unsigned i = 0; i < s->n; i++) {
		struct stamp st = { .seq = i };

		sleep_ns(mean / 2 + rnd(&seed) % (mean + 1));
		st.sent_ns = now_ns();
		st.check = i * 0x2545F4914F6CDD1Dull;
		s->ret = llmp_client_send(s->c, TAG, 0, &st, sizeof(st));
		if (s->ret < 0)
			return NULL;
	}
	return NULL;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* One message for the receiver, waiting its way: 1, or <0. */
static int wait_one(struct llmp_client *rx, enum way w, int efd, struct llmp_msg_view *m)
{
	int ret;

	for (;;) {
		ret = llmp_client_recv(rx, m);
		if (ret != 0) {
			if (ret == 1 && m->tag != TAG)
				continue;
			return ret;
		}
		switch (w) {
		case EVENTFD: {
			struct pollfd p = { .fd = efd, .events = POLLIN };

			if (poll(&p, 1, 10000) == 0)
				return -ETIMEDOUT;
			break;
		}
		case POLL5:
			sleep_ms(5);
			break;
		case POLL1:
			sleep_ms(1);
			break;
		case RECVWAIT:
			ret = llmp_client_recv_wait(rx, m, 10000);
			if (ret == 1 && m->tag != TAG)
				continue;
			return ret == 0 ? -ETIMEDOUT : ret;
		default:
			return -EINVAL;
		}
	}
}

struct result {
	double p50_us, p99_us, cpu_us;
};

/*
 * The receiver, in a process of its own (so its CPU, the event fd's
 * watcher thread included, is what wait4() reports): connect, say "r" on
 * fd 1, take count messages, write the latencies' p50 and p99 to fd 1.
 */
static int receiver_main(uint16_t port, enum way w)
{
	struct llmp_client_opts ro = { .struct_size = sizeof(ro), .join_at_newest = true };
	uint64_t *lat = calloc(count, sizeof(*lat));
	struct llmp_provider *p;
	struct llmp_client *rx = NULL;
	struct llmp_msg_view m;
	struct result r = { 0 };
	int ret, efd = -1;

	if (!lat)
		return 1;
	/* the receiver starts at the newest message: not at the earlier ways' */
	ret = llmp_provider_new(LLMP_SHMEM_MEMFD, &p);
	if (ret == 0)
		ret = llmp_client_connect_tcp(p, NULL, port, &ro, &rx);
	if (ret == 0 && w == EVENTFD)
		ret = efd = llmp_client_event_fd(rx);
	if (ret >= 0)
		ret = full_io(1, "r", 1, true);
	for (unsigned i = 0; ret >= 0 && i < count; i++) {
		struct stamp st;

		ret = wait_one(rx, w, efd, &m);
		if (ret < 0)
			break;
		if (m.len != sizeof(st)) {
			ret = -EBADMSG;
			break;
		}
		memcpy(&st, m.buf, sizeof(st));
		if (st.seq != i || st.check != i * 0x2545F4914F6CDD1Dull) {
			fprintf(stderr, "llmp-bench-recv: %s: message %u is #%" PRIu64 " or corrupt\n",
				way_names[w], i, st.seq);
			ret = -EBADMSG;
			break;
		}
		lat[i] = now_ns() - st.sent_ns;
	}
	if (ret < 0) {
		fprintf(stderr, "llmp-bench-recv: %s: %s\n", way_names[w], llmp_strerror_last());
		return 1;
	}
	qsort(lat, count, sizeof(*lat), cmp_u64);
	r.p50_us = (double)lat[count / 2] / 1e3;
	r.p99_us = (double)lat[(size_t)((count - 1) * 0.99)] / 1e3;
	llmp_client_free(rx);
	llmp_provider_free(p);
	free(lat);
	return full_io(1, &r, sizeof(r), true) < 0;
}

static int run_way(const char *self, uint16_t port, struct llmp_provider *p, enum way w,
		   struct result *r)
{
	char ports[16], counts[16], ready;
	struct llmp_client *tx = NULL;
	struct sender s = { .n = count };
	struct rusage ru;
	int pfd[2], st, ret = 0;
	pthread_t t;
	pid_t pid;

	snprintf(ports, sizeof(ports), "%u", port);
	snprintf(counts, sizeof(counts), "%u", count);
	if (pipe(pfd) < 0)
		return -errno;
	pid = fork();
	if (pid == 0) {
		dup2(pfd[1], 1);
		close(pfd[0]);
		execl(self, self, "--receiver", way_names[w], "--port", ports, "--count", counts,
		      (char *)NULL);
		_exit(127);
	}
	close(pfd[1]);
	if (pid < 0 || full_io(pfd[0], &ready, 1, false) < 0) {
		ret = -EPIPE;
		goto out;
	}
	ret = llmp_client_connect_tcp(p, NULL, port, NULL, &tx);
	if (ret < 0)
		goto out;
	s.c = tx;
	if (pthread_create(&t, NULL, sender_main, &s)) {
		ret = -EAGAIN;
		goto out;
	}
	flag_set(&s.go);
	pthread_join(t, NULL);
	ret = s.ret;
	if (ret == 0 && full_io(pfd[0], r, sizeof(*r), false) < 0)
		ret = -EPIPE;
out:
	close(pfd[0]);
	if (pid > 0) {
		if (ret < 0)
			kill(pid, SIGTERM);
		if (wait4(pid, &st, 0, &ru) == pid) {
			r->cpu_us = ((double)ru.ru_utime.tv_sec + (double)ru.ru_stime.tv_sec) * 1e6 +
				    (double)ru.ru_utime.tv_usec + (double)ru.ru_stime.tv_usec;
			r->cpu_us /= count;
			if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
				ret = ret < 0 ? ret : -EBADMSG;
		}
	}
	if (ret < 0)
		fprintf(stderr, "llmp-bench-recv: %s: failed (%s)\n", way_names[w], strerror(-ret));
	llmp_client_free(tx);
	return ret;
}

static void *loop_main(void *v)
{
	return (void *)(intptr_t)llmp_loop_run(v);
}

static void usage(void)
{
	fprintf(stderr, "usage: llmp-bench-recv [--count N] [--rate MSGS_PER_S] "
		"[--ways eventfd,poll5ms,poll1ms,recvwait]\n");
	exit(2);
}

int main(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "count", required_argument, NULL, 'n' },
		{ "rate", required_argument, NULL, 'r' },
		{ "ways", required_argument, NULL, 'w' },
		{ "receiver", required_argument, NULL, 'R' },
		{ "port", required_argument, NULL, 'p' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct llmp_loop_opts oo = { .struct_size = sizeof(oo), .max_sleep_us = -1 };
	bool want[NWAYS] = { true, true, true, true };
	struct result res[NWAYS] = { 0 };
	struct llmp_provider *bp, *cp;
	struct llmp_tcp_listener *l;
	enum llmp_shmem_kind kind = LLMP_SHMEM_MEMFD;
	struct llmp_broker *b;
	struct llmp_loop *lp;
	unsigned long v;
	pthread_t t;
	int ch, failed = 0, rway = -1;
	uint16_t rport = 0;
	double load[1];

	while ((ch = getopt_long(argc, argv, "n:r:w:h", lo, NULL)) != -1) {
		switch (ch) {
		case 'R':
			for (int i = 0; i < NWAYS; i++)
				if (!strcmp(optarg, way_names[i]))
					rway = i;
			if (rway < 0)
				usage();
			break;
		case 'p':
			if (parse_ulong(optarg, 65535, &v) < 0 || !v)
				usage();
			rport = (uint16_t)v;
			break;
		case 'n':
			if (parse_ulong(optarg, 10000000, &v) < 0 || v < 10)
				usage();
			count = (unsigned)v;
			break;
		case 'r':
			rate = atof(optarg);
			if (!(rate >= 1 && rate <= 1e6))
				usage();
			break;
		case 'w':
			for (int i = 0; i < NWAYS; i++)
				want[i] = strstr(optarg, way_names[i]) != NULL;
			break;
		default:
			usage();
		}
	}
	if (rway >= 0)
		return receiver_main(rport, (enum way)rway);
	if (llmp_provider_new(kind, &bp) < 0 || llmp_provider_new(kind, &cp) < 0 ||
	    llmp_broker_new(bp, NULL, &b) < 0 || llmp_tcp_listen(b, NULL, 0, NULL, &l) < 0 ||
	    llmp_loop_new(b, &oo, &lp) < 0 || llmp_loop_add_listener(lp, l) < 0) {
		fprintf(stderr, "llmp-bench-recv: broker: %s\n", llmp_strerror_last());
		return 1;
	}
	if (pthread_create(&t, NULL, loop_main, lp)) {
		fprintf(stderr, "llmp-bench-recv: cannot start the broker thread\n");
		return 1;
	}
	if (getloadavg(load, 1) != 1)
		load[0] = -1;
	printf("# llmp-bench-recv: %u messages of %zu B per way at ~%.0f msgs/s (gaps 0.5-1.5x), "
	       "memfd, broker loop sleeping when idle; load average %.2f\n", count,
	       sizeof(struct stamp), rate, load[0]);
	for (int w = 0; w < NWAYS; w++) {
		if (!want[w])
			continue;
		if (run_way("/proc/self/exe", llmp_tcp_listener_port(l), cp, (enum way)w, &res[w]) < 0) {
			failed = 1;
			continue;
		}
		printf("%-9s p50 %8.1f us  p99 %8.1f us  receiver CPU %6.2f us/msg\n", way_names[w],
		       res[w].p50_us, res[w].p99_us, res[w].cpu_us);
	}
	if (want[POLL5] && res[POLL5].p50_us > 0)
		for (int w = 0; w < NWAYS; w++)
			if (want[w] && w != POLL5 && res[w].p50_us > 0)
				printf("# %s/poll5ms: p50 %.3f, p99 %.3f\n", way_names[w],
				       res[w].p50_us / res[POLL5].p50_us,
				       res[w].p99_us / res[POLL5].p99_us);
	llmp_loop_stop(lp);
	pthread_join(t, NULL);
	llmp_loop_free(lp);
	llmp_tcp_listener_free(l);
	llmp_broker_free(b);
	llmp_provider_free(cp);
	llmp_provider_free(bp);
	return failed;
}
