// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * llmp-bench: throughput, latency and wake-up figures of libllmp.
 *
 * The parent process runs the broker; senders and receivers are forked
 * client processes that register with it through a socketpair (each sends
 * its out-page description, the broker answers with the client id).
 * Senders write messages for --duration seconds, then an END message with
 * their count; receivers check every message and stop once every sender's
 * END arrived.
 *
 * Every data message is [header][pattern][seq]:
 *   header: u64 seq, u64 CLOCK_MONOTONIC send stamp (0: not sampled),
 *           u32 sender index, u32 length, u64 checksum
 *   pattern: bytes fixed per sender; the last 8 bytes repeat seq.
 * The checksum is the sum of the 64-bit words after the header, which the
 * receiver recomputes over the whole payload and compares with the value it
 * expects for (sender, seq).  Per sender the receiver wants seq exactly one
 * more than the last.  A larger one opens a gap; a smaller one that fills a
 * gap counts as reorder, any other smaller one as dup; what never arrived
 * (END's count minus what did) is lost.
 *
 * Output, one line per run:
 *   provider=memfd size=64 senders=1 receivers=1 msgs=... msgs_per_s=... MBps=...
 *   lost=0 dup=0 p50_us=... p99_us=... reorder=0 bad=0
 *   cpu_ns_per_msg=send:...,broker:...,recv:... broker=run
 * msgs_per_s is measured at each receiver from its first to its last message
 * (the slowest receiver is printed).  In throughput mode the latency is
 * sampled (every 64th message below 1 KiB) and is queueing delay under
 * saturation; with --rate the senders are paced and stamp every message.
 * cpu_ns_per_msg: CPU time per message of the senders (together), the
 * broker thread and receiver 0, waiting included (a process that waits
 * polls); the busiest of the three is the bottleneck, and these figures
 * stay meaningful on a machine where other work competes for the cores.
 *
 * LLMP has no end-to-end back-pressure (a reader that falls out of the
 * broker's bounded history loses messages), so each sender stays at most a
 * window of messages ahead of the slowest receiver: a quarter of the
 * history (--history, default 64 MiB) shared among the senders.
 *
 * --wake: one sender, one receiver.  First the broker thread's CPU time
 * over --idle seconds with no traffic (/proc/<pid>/task/<pid>/schedstat),
 * then --count single messages at random gaps of 5..15 ms, each stamped:
 * the one-way latency of a message that finds the broker idle.  The
 * receiver polls without sleeping, so the figure is the broker's wake-up
 * plus one forward.
 *
 * Exit status: 0 if every message arrived exactly once, in order, intact.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "llmp/broker.h"
#include "llmp/llmp.h"
#include "tool.h"

#define TAG_DATA 0xBE0C0001u
#define TAG_END 0xBE0C0002u
#define HDR_LEN 32u
#define MAX_SENDERS 64
#define MAX_RECEIVERS 16
#define HIST_BUCKETS (64 + 58 * 32)

/*
 * run: llmp_broker_run(); loop: the event loop of llmp/broker.h (sleeps
 * when idle); spin: llmp_broker_once() with sched_yield() when idle;
 * poll1ms: llmp_broker_once() with a fixed 1 ms sleep when idle.
 */
enum broker_mode { BROKER_RUN, BROKER_LOOP, BROKER_SPIN, BROKER_POLL };
static const char *const broker_mode_names[] = { "run", "loop", "spin", "poll1ms" };

struct bench_opts {
	enum llmp_shmem_kind kind;
	size_t size;
	unsigned senders, receivers;
	double duration;
	double rate; /* msgs/s per sender, 0: as fast as possible */
	enum broker_mode broker;
	bool copy;   /* llmp_client_send from a private buffer instead of alloc/commit */
	size_t page_size, history;
	bool wake;
	double idle;
	unsigned count;
};

struct msg_hdr {
	uint64_t seq;
	uint64_t stamp;
	uint32_t sender;
	uint32_t len;
	uint64_t sum;
};

struct end_msg {
	uint32_t sender;
	uint32_t pad;
	uint64_t count;
};

struct rx_result {
	uint64_t got, lost, dup, reorder, bad, other, stale;
	uint64_t first_ns, last_ns;
	uint64_t cpu_ns; /* CPU time from go to the last END (includes polling an empty page) */
	uint64_t hist[HIST_BUCKETS];
	int err;
	char why[160];
};

struct tx_result {
	uint64_t sent;
	uint64_t cpu_ns;     /* CPU time from go to END (includes waiting for the window) */
	uint64_t idle_cpu_ns; /* --wake: broker thread CPU time over the idle phase */
	double idle_secs;
	int err;
	char why[160];
};

struct shared {
	_Atomic int go;     /* parent → all: start sending */
	_Atomic int finish; /* parent → senders: receivers are done, you may exit */
	_Atomic int abort_run; /* anyone → all: give up */
	uint16_t waker_port; /* set before fork: the loop's TCP port for llmp_waker_connect_tcp() */
	_Atomic int waiter_tid; /* the broker process's waiter thread (not counted as broker CPU) */
	_Atomic int wake_done;  /* --wake: sender 0 sent its last message; idle senders send END */
	struct tx_result tx[MAX_SENDERS];
	struct rx_result rx[MAX_RECEIVERS];
	/* flow control: messages of each sender each receiver has taken (atomic) */
	struct {
		_Alignas(64) uint64_t n[MAX_SENDERS];
	} seen[MAX_RECEIVERS];
};

static struct bench_opts o = {
	.kind = LLMP_SHMEM_DEFAULT, .size = 64, .senders = 1, .receivers = 1,
	.duration = 2.0, .broker = BROKER_RUN, .idle = 2.0, .count = 200,
};
static struct shared *sh;
/*
 * How far (in messages) a sender may run ahead of the slowest receiver.
 * LLMP has no end-to-end back-pressure: the broker keeps a bounded
 * broadcast history and a reader that falls out of it loses messages.  A
 * lossless benchmark therefore paces each sender by what the receivers took,
 * keeping everything in flight well inside the broker's history.
 */
static uint64_t window_msgs;
/* --broker loop --no-poke: senders get no waker, the loop's nap bounds the wait. */
static bool no_poke;
/* --broker loop --nap always: nap although every client pokes (the loop's default before 2026-12). */
static bool nap_always;
/* --broker loop --wake-via: how pokes reach the loop (futex: io_uring's op where the kernel has it). */
static enum llmp_loop_wake wake_via = LLMP_LOOP_WAKE_AUTO;
/* --broker loop --check-ms: the loop's dead-client check interval (0: its default). */
static int check_ms;
#define DEFAULT_HISTORY (64u << 20)

static uint64_t cpu_ns(clockid_t id)
{
	struct timespec t;

	clock_gettime(id, &t);
	return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

static double per_msg(uint64_t ns, uint64_t msgs)
{
	return msgs ? (double)ns / (double)msgs : 0;
}

/* The fixed pattern of sender idx: size - HDR_LEN - 8 bytes (the tail holds seq). */
static void fill_pattern(unsigned char *p, size_t n, uint32_t idx)
{
	uint64_t x = 0x9E3779B97F4A7C15ull * (idx + 1);

	for (size_t i = 0; i < n; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		p[i] = (unsigned char)x;
	}
}

static size_t pattern_len(void)
{
	return o.size >= HDR_LEN + 8 ? o.size - HDR_LEN - 8 : 0;
}

/* Expected checksum of (sender, seq): pattern words plus the seq tail. */
static uint64_t expect_sum(uint64_t pat_sum, uint64_t seq)
{
	return o.size >= HDR_LEN + 8 ? pat_sum + seq : 0;
}

/* ---- latency histogram: log-linear, ~3 % buckets, values in ns -------------- */

static unsigned hist_index(uint64_t v)
{
	if (v < 64)
		return (unsigned)v;
	unsigned e = 63u - (unsigned)__builtin_clzll(v); /* >= 6 */
	unsigned sub = (unsigned)(v >> (e - 5)) & 31u;

	return 64 + (e - 6) * 32 + sub;
}

static uint64_t hist_value(unsigned idx)
{
	if (idx < 64)
		return idx;
	unsigned e = (idx - 64) / 32 + 6, sub = (idx - 64) % 32;

	return (uint64_t)(32 + sub) << (e - 5);
}

static double hist_pct(const uint64_t *h, double pct)
{
	uint64_t total = 0, acc = 0;

	for (unsigned i = 0; i < HIST_BUCKETS; i++)
		total += h[i];
	if (!total)
		return 0;
	uint64_t want = (uint64_t)(pct / 100.0 * (double)total);
	if (want >= total)
		want = total - 1;
	for (unsigned i = 0; i < HIST_BUCKETS; i++) {
		acc += h[i];
		if (acc > want)
			return (double)hist_value(i) / 1000.0;
	}
	return 0;
}

/* ---- errors from a child: kept in the shared result, reported by the parent -- */

static int fail_as(char *why, size_t n, int err, const char *what, bool lib)
{
	if (lib)
		snprintf(why, n, "%s: %s (%s)", what, strerror(-err), llmp_strerror_last());
	else
		snprintf(why, n, "%s: %s", what, strerror(-err));
	flag_set(&sh->abort_run); /* seq_cst: read by every spinning loop below */
	return err;
}

/* A library call failed with err (negative errno). */
static int fail(char *why, size_t n, int err, const char *what)
{
	return fail_as(why, n, err, what, true);
}

/* ---- registration --------------------------------------------------------- */

/* Child side: create the client, send its page description, receive the id. */
static int client_join(struct llmp_provider *p, const struct llmp_shmem_desc *bcast, int sock,
		       struct llmp_client **out)
{
	struct llmp_client_opts co = {
		.struct_size = sizeof(co),
		.page_size = o.page_size,
		.send_timeout_ms = 1000,
		.skip_own = true,
	};
	struct llmp_shmem_desc d;
	int32_t id;
	int r = llmp_client_new(p, bcast, &co, out);

	if (r)
		return r;
	r = llmp_client_out_desc(*out, &d);
	if (!r)
		r = full_io(sock, &d, sizeof(d), true);
	if (!r)
		r = full_io(sock, &id, sizeof(id), false);
	if (!r && id <= 0)
		r = id ? id : -EPROTO;
	if (r) {
		llmp_client_free(*out);
		*out = NULL;
		return r;
	}
	llmp_client_set_id(*out, (uint32_t)id);
	return 0;
}

/* Parent side: one registration. */
static int broker_register(struct llmp_broker *b, int sock)
{
	struct llmp_shmem_desc d;
	int r = full_io(sock, &d, sizeof(d), false);
	int32_t id;

	if (r)
		return r;
	id = llmp_broker_add_client(b, &d);
	r = full_io(sock, &id, sizeof(id), true);
	return id < 0 ? id : r;
}

static bool wait_go(void)
{
	/* seq_cst load, pairs with the parent's store of go after registration */
	while (!flag_get(&sh->go)) {
		if (flag_get(&sh->abort_run))
			return false;
		sleep_ns(100000);
	}
	return true;
}

/* ---- sender ----------------------------------------------------------------- */

static int send_one(struct llmp_client *c, const unsigned char *pat, unsigned char *priv,
		    uint32_t idx, uint64_t seq, uint64_t stamp, uint64_t pat_sum, uint64_t give_up)
{
	struct msg_hdr h = { .seq = seq, .stamp = stamp, .sender = idx, .len = (uint32_t)o.size };
	size_t plen = pattern_len();
	int r;

	h.sum = expect_sum(pat_sum, seq);
	for (;;) {
		unsigned char *m = priv;

		if (!o.copy) {
			void *buf;

			r = llmp_client_alloc(c, o.size, &buf);
			if (r == -EAGAIN)
				goto again;
			if (r)
				return r;
			m = buf;
			memcpy(m + HDR_LEN, pat, plen);
		}
		memcpy(m, &h, HDR_LEN < o.size ? HDR_LEN : o.size);
		if (o.size >= HDR_LEN + 8)
			memcpy(m + o.size - 8, &seq, 8);
		if (o.copy)
			r = llmp_client_send(c, TAG_DATA, 0, m, o.size);
		else
			r = llmp_client_commit(c, TAG_DATA, 0, o.size);
		if (r != -EAGAIN)
			return r;
again:
		if (now_ns() > give_up || flag_get(&sh->abort_run))
			return -ETIMEDOUT;
	}
}

/* Wait until seq is inside the window; returns the new limit, 0 if the run is over. */
static uint64_t wait_window(uint32_t idx, uint64_t seq, uint64_t give_up)
{
	for (unsigned spins = 0;; spins++) {
		uint64_t low = UINT64_MAX;

		for (unsigned r = 0; r < o.receivers; r++) {
			/* pairs with the receiver's relaxed store: a count, no data attached */
			uint64_t n = __atomic_load_n(&sh->seen[r].n[idx], __ATOMIC_RELAXED);

			if (n < low)
				low = n;
		}
		if (seq < low + window_msgs)
			return low + window_msgs;
		if ((spins & 63) == 63 && (now_ns() > give_up || flag_get(&sh->abort_run)))
			return 0;
		sched_yield();
	}
}

static int send_end(struct llmp_client *c, uint32_t idx, uint64_t count, uint64_t give_up)
{
	struct end_msg e = { .sender = idx, .count = count };
	int r;

	while ((r = llmp_client_send(c, TAG_END, 0, &e, sizeof(e))) == -EAGAIN)
		if (now_ns() > give_up || flag_get(&sh->abort_run))
			return -ETIMEDOUT;
	return r;
}

/*
 * CPU time (ns) of one thread of process pid, from schedstat, else from
 * stat's utime+stime in clock ticks.
 */
static uint64_t task_cpu_ns(pid_t pid, int tid)
{
	char path[64], buf[1024];
	unsigned long long ns, ut = 0, st = 0;
	FILE *f;
	size_t n;

	snprintf(path, sizeof(path), "/proc/%d/task/%d/schedstat", (int)pid, tid);
	f = fopen(path, "r");
	if (f) {
		int ok = fscanf(f, "%llu", &ns) == 1;

		fclose(f);
		if (ok)
			return ns;
	}
	snprintf(path, sizeof(path), "/proc/%d/task/%d/stat", (int)pid, tid);
	f = fopen(path, "r");
	if (!f)
		return 0;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = 0;
	/* after "(comm)": state is field 3, utime 14, stime 15 */
	char *p = strrchr(buf, ')');
	if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
		return 0;
	return (ut + st) * (1000000000ull / (unsigned long long)sysconf(_SC_CLK_TCK));
}

/*
 * CPU time (ns) of the broker: every thread of process pid but the bench's
 * waiter thread (the loop's wake bridge thread counts).
 */
static uint64_t broker_cpu_ns(pid_t pid)
{
	char path[64];
	struct dirent *e;
	uint64_t sum = 0;
	DIR *d;

	snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
	d = opendir(path);
	if (!d)
		return task_cpu_ns(pid, (int)pid);
	while ((e = readdir(d))) {
		int tid = atoi(e->d_name);

		/* seq_cst load, pairs with the waiter's store of its tid */
		if (tid > 0 && tid != atomic_load(&sh->waiter_tid))
			sum += task_cpu_ns(pid, tid);
	}
	closedir(d);
	return sum;
}

static int sender_main(struct llmp_provider *p, const struct llmp_shmem_desc *bcast, int sock,
		       uint32_t idx)
{
	struct tx_result *res = &sh->tx[idx];
	struct llmp_client *c;
	unsigned char *pat = NULL, *priv = NULL;
	uint64_t seq = 0, pat_sum, give_up;
	int r = client_join(p, bcast, sock, &c);

	if (r)
		return fail(res->why, sizeof(res->why), r, "sender: join");
	pat = calloc(1, pattern_len() + 1);
	priv = calloc(1, o.size + 1);
	if (!pat || !priv) {
		r = fail_as(res->why, sizeof(res->why), -ENOMEM, "sender", false);
		goto out;
	}
	fill_pattern(pat, pattern_len(), idx);
	memcpy(priv + HDR_LEN, pat, pattern_len());
	pat_sum = word_sum(pat, pattern_len());
	if (!wait_go()) {
		r = -ECANCELED;
		goto out;
	}
	if (sh->waker_port) {
		/* the client pokes the broker's sleep word after each commit from now on */
		struct llmp_waker *waker;

		r = llmp_waker_connect_tcp(p, NULL, sh->waker_port, &waker);
		if (r) {
			r = fail(res->why, sizeof(res->why), r, "sender: waker");
			goto out;
		}
		llmp_client_set_waker(c, waker);
	}
	const uint64_t cpu0 = cpu_ns(CLOCK_PROCESS_CPUTIME_ID);

	if (o.wake && idx > 0) {
		/* --wake --senders N: the others only stay registered (idle clients), quietly. */
		while (!flag_get(&sh->wake_done) && !flag_get(&sh->abort_run))
			sleep_ns(50000000);
	} else if (o.wake) {
		/* Idle phase: nobody sends; how much CPU does the broker burn? */
		pid_t broker = getppid();
		for (int i = 0; i < 5000 && !atomic_load(&sh->waiter_tid); i++)
			sleep_ns(1000000); /* broker_cpu_ns() leaves the waiter out */
		uint64_t t0 = now_ns(), c0 = broker_cpu_ns(broker);

		sleep_ns((uint64_t)(o.idle * 1e9));
		res->idle_cpu_ns = broker_cpu_ns(broker) - c0;
		res->idle_secs = (double)(now_ns() - t0) / 1e9;
		unsigned rnd = 12345u + idx;
		for (seq = 0; seq < o.count; seq++) {
			rnd = rnd * 1103515245u + 12345u;
			sleep_ns(5000000u + (uint64_t)((rnd >> 8) % 10000u) * 1000u);
			give_up = now_ns() + 10000000000ull;
			r = send_one(c, pat, priv, idx, seq, now_ns(), pat_sum, give_up);
			if (r) {
				r = fail(res->why, sizeof(res->why), r, "sender: send");
				goto out;
			}
		}
		flag_set(&sh->wake_done); /* seq_cst, read by the idle senders */
	} else {
		const uint64_t t0 = now_ns(), stop = t0 + (uint64_t)(o.duration * 1e9);
		const uint64_t check = o.rate > 0 ? 1 : o.size >= 65536 ? 1 : o.size >= 1024 ? 8 : 64;
		const uint64_t sample = o.rate > 0 || o.size >= 1024 ? 1 : 64;
		const double period = o.rate > 0 ? 1e9 / o.rate : 0;

		uint64_t limit = window_msgs;

		give_up = stop + 30000000000ull;
		for (;; seq++) {
			uint64_t stamp = 0;

			if (seq % check == 0 && now_ns() >= stop)
				break;
			if (seq >= limit && !(limit = wait_window(idx, seq, give_up))) {
				r = fail_as(res->why, sizeof(res->why), -ETIMEDOUT,
					    "sender: receivers stopped taking messages", false);
				goto out;
			}
			if (period > 0) {
				uint64_t due = t0 + (uint64_t)(period * (double)seq), t = now_ns();

				if (due > t)
					sleep_ns(due - t);
			}
			if (seq % sample == 0)
				stamp = now_ns();
			r = send_one(c, pat, priv, idx, seq, stamp, pat_sum, give_up);
			if (r) {
				r = fail(res->why, sizeof(res->why), r, "sender: send");
				goto out;
			}
		}
	}
	give_up = now_ns() + 30000000000ull;
	r = send_end(c, idx, seq, give_up);
	if (r) {
		r = fail(res->why, sizeof(res->why), r, "sender: end");
		goto out;
	}
	res->sent = seq;
	res->cpu_ns = cpu_ns(CLOCK_PROCESS_CPUTIME_ID) - cpu0;
	/* Keep the pages alive until every receiver is through (seq_cst, pairs with the parent). */
	while (!flag_get(&sh->finish) && !flag_get(&sh->abort_run))
		sleep_ns(1000000);
out:
	free(pat);
	free(priv);
	llmp_client_free(c);
	return r;
}

/* ---- receiver -------------------------------------------------------------- */

#define MAX_GAPS 64

struct rx_sender {
	uint64_t next, got, pat_sum;
	uint64_t end_count;
	uint32_t client_id;
	bool ended;
	unsigned ngaps;
	struct { uint64_t from, to; } gaps[MAX_GAPS]; /* seqs skipped so far: [from, to) */
};

/* A seq below next: a late message if it fills a gap (true), else a duplicate. */
static bool fill_gap(struct rx_sender *x, uint64_t seq)
{
	for (unsigned i = 0; i < x->ngaps; i++) {
		if (seq < x->gaps[i].from || seq >= x->gaps[i].to)
			continue;
		if (seq == x->gaps[i].from) {
			x->gaps[i].from++;
		} else if (seq + 1 == x->gaps[i].to) {
			x->gaps[i].to--;
		} else if (x->ngaps < MAX_GAPS) {
			x->gaps[x->ngaps].from = seq + 1;
			x->gaps[x->ngaps++].to = x->gaps[i].to;
			x->gaps[i].to = seq;
		} else {
			return false; /* too fragmented to tell: counted as a duplicate */
		}
		if (x->gaps[i].from == x->gaps[i].to)
			x->gaps[i] = x->gaps[--x->ngaps];
		return true;
	}
	return false;
}

static int receiver_main(struct llmp_provider *p, const struct llmp_shmem_desc *bcast, int sock,
			 uint32_t idx)
{
	struct rx_result *res = &sh->rx[idx];
	struct rx_sender *s = calloc(o.senders, sizeof(*s));
	unsigned char *pat = calloc(1, pattern_len() + 1);
	struct llmp_client *c;
	unsigned ended = 0, empty = 0;
	uint64_t last_msg;
	const uint64_t quiet_limit = (uint64_t)(o.duration + o.idle) * 1000000000ull + 20000000000ull;
	int r;

	if (!s || !pat) {
		free(s);
		free(pat);
		return fail_as(res->why, sizeof(res->why), -ENOMEM, "receiver", false);
	}
	for (uint32_t i = 0; i < o.senders; i++) {
		fill_pattern(pat, pattern_len(), i);
		s[i].pat_sum = word_sum(pat, pattern_len());
	}
	r = client_join(p, bcast, sock, &c);
	if (r) {
		free(s);
		free(pat);
		return fail(res->why, sizeof(res->why), r, "receiver: join");
	}
	if (!wait_go()) {
		r = -ECANCELED;
		goto out;
	}
	if (sh->waker_port) {
		/* A receiver of ours has a waker too: the loop need not nap for it. */
		struct llmp_waker *waker;

		r = llmp_waker_connect_tcp(p, NULL, sh->waker_port, &waker);
		if (r) {
			r = fail(res->why, sizeof(res->why), r, "receiver: waker");
			goto out;
		}
		llmp_client_set_waker(c, waker);
	}
	const uint64_t cpu0 = cpu_ns(CLOCK_PROCESS_CPUTIME_ID);
	last_msg = now_ns();
	while (ended < o.senders) {
		struct llmp_msg_view v;

		r = llmp_client_recv(c, &v);
		if (r == 0) {
			/* Spin a little, then let the library wait. */
			if (++empty < 4096)
				continue;
			/*
			 * --wake measures the broker's wake-up alone: this
			 * receiver keeps polling instead of sleeping.
			 */
			empty = 0;
			r = o.wake ? 0 : llmp_client_recv_wait(c, &v, 50);
			if (r == 0) {
				if (flag_get(&sh->abort_run)) {
					r = -ECANCELED;
					goto out;
				}
				if (now_ns() - last_msg > quiet_limit) {
					r = fail_as(res->why, sizeof(res->why), -ETIMEDOUT,
						    "receiver: waiting for END", false);
					goto out;
				}
				continue;
			}
		}
		if (r == -ESTALE) {
			/* Fell out of the broker's history: the gap shows as lost. */
			res->stale++;
			continue;
		}
		if (r < 0) {
			r = fail(res->why, sizeof(res->why), r, "receiver: recv");
			goto out;
		}
		empty = 0;
		if (v.tag == TAG_END) {
			struct end_msg e;

			if (v.len != sizeof(e)) {
				res->bad++;
				continue;
			}
			memcpy(&e, v.buf, sizeof(e));
			if (e.sender >= o.senders || s[e.sender].ended) {
				res->bad++;
				continue;
			}
			s[e.sender].ended = true;
			s[e.sender].end_count = e.count;
			ended++;
			last_msg = res->last_ns = now_ns();
			continue;
		}
		if (v.tag != TAG_DATA) {
			res->other++;
			continue;
		}
		struct msg_hdr h;
		if (v.len != o.size || v.len < HDR_LEN) {
			res->bad++;
			continue;
		}
		memcpy(&h, v.buf, HDR_LEN);
		if (h.sender >= o.senders || h.len != o.size) {
			res->bad++;
			continue;
		}
		struct rx_sender *x = &s[h.sender];
		uint64_t tail = h.seq;
		if (o.size >= HDR_LEN + 8)
			memcpy(&tail, (const unsigned char *)v.buf + o.size - 8, 8);
		if (tail != h.seq || h.sum != expect_sum(x->pat_sum, h.seq) ||
		    word_sum((const unsigned char *)v.buf + HDR_LEN, o.size - HDR_LEN) != h.sum) {
			res->bad++;
			continue;
		}
		if (!x->client_id)
			x->client_id = v.sender;
		else if (x->client_id != v.sender)
			res->bad++;
		if (h.seq < x->next) {
			if (!fill_gap(x, h.seq)) {
				res->dup++;
				continue;
			}
			res->reorder++; /* arrived after a later one */
		} else if (h.seq > x->next && x->ngaps < MAX_GAPS) {
			x->gaps[x->ngaps].from = x->next;
			x->gaps[x->ngaps++].to = h.seq;
		}
		if (h.seq >= x->next)
			x->next = h.seq + 1;
		x->got++;
		/* read by the sender's wait_window(): a count, relaxed */
		__atomic_store_n(&sh->seen[idx].n[h.sender], x->got, __ATOMIC_RELAXED);
		if (!res->got)
			res->first_ns = now_ns();
		res->got++;
		if (h.stamp) {
			uint64_t t = now_ns();

			res->hist[hist_index(t > h.stamp ? t - h.stamp : 0)]++;
			last_msg = t;
		}
	}
	res->cpu_ns = cpu_ns(CLOCK_PROCESS_CPUTIME_ID) - cpu0;
	for (uint32_t i = 0; i < o.senders; i++)
		res->lost += s[i].end_count > s[i].got ? s[i].end_count - s[i].got : 0;
	r = 0;
out:
	free(s);
	free(pat);
	llmp_client_free(c);
	return r;
}

/* ---- broker (the parent) ----------------------------------------------------- */

struct waiter {
	pid_t pids[MAX_SENDERS + MAX_RECEIVERS];
	unsigned n, nrx; /* receivers first */
	struct llmp_broker *b;
	struct llmp_loop *lp; /* BROKER_LOOP */
	_Atomic int done;     /* waiter → broker loop: every child exited */
	_Atomic int run_over; /* broker loop → waiter: run() returned, stop calling stop() */
	int bad_exits;
	double timeout;
};

static void *waiter_main(void *arg)
{
	struct waiter *w = arg;
	const uint64_t deadline = now_ns() + (uint64_t)(w->timeout * 1e9);
	unsigned left = w->n, rx_left = w->nrx;
	bool killed = false;

	atomic_store(&sh->waiter_tid, (int)syscall(SYS_gettid)); /* read by broker_cpu_ns() */

	while (left) {
		int st;
		pid_t pid = waitpid(-1, &st, WNOHANG);

		if (pid <= 0) {
			if (!killed && (now_ns() > deadline || flag_get(&sh->abort_run))) {
				/* A broken run: wait a moment for the others to notice, then end it. */
				flag_set(&sh->abort_run);
				sleep_ns(2000000000ull);
				for (unsigned i = 0; i < w->n; i++)
					if (w->pids[i] > 0)
						kill(w->pids[i], SIGKILL);
				killed = true;
			}
			sleep_ns(5000000);
			continue;
		}
		for (unsigned i = 0; i < w->n; i++) {
			if (w->pids[i] != pid)
				continue;
			w->pids[i] = -1;
			left--;
			if (i < w->nrx && --rx_left == 0)
				flag_set(&sh->finish); /* seq_cst, read by the senders */
			if (!WIFEXITED(st) || WEXITSTATUS(st))
				w->bad_exits++;
		}
	}
	flag_set(&w->done); /* seq_cst, read by the broker loop */
	while (!flag_get(&w->run_over)) {
		llmp_broker_stop(w->b);
		if (w->lp)
			llmp_loop_stop(w->lp);
		sleep_ns(10000000);
	}
	return NULL;
}

static int broker_loop(struct llmp_broker *b, struct waiter *w)
{
	int r = 0;

	if (o.broker == BROKER_RUN) {
		r = llmp_broker_run(b);
		if (r > 0)
			r = 0;
	} else if (o.broker == BROKER_LOOP) {
		r = llmp_loop_run(w->lp);
		if (r > 0)
			r = 0;
	} else {
		/* seq_cst load, pairs with the waiter's store of done */
		while (!flag_get(&w->done)) {
			r = llmp_broker_once(b);
			if (r < 0)
				break;
			if (r == 0) {
				if (o.broker == BROKER_POLL)
					sleep_ns(1000000);
				else
					sched_yield();
			}
		}
		r = r < 0 ? r : 0;
	}
	flag_set(&w->run_over); /* seq_cst, read by the waiter */
	return r;
}

/* ---- main ------------------------------------------------------------------ */

static void usage(void)
{
	fprintf(stderr,
		"usage: llmp-bench [--provider KIND] [--size BYTES] [--senders N] [--receivers N]\n"
		"                  [--duration SECS] [--rate MSGS_PER_S] [--broker run|loop|spin|poll1ms]\n"
		"                  [--copy] [--page-size BYTES] [--history BYTES]\n"
		"       llmp-bench --wake [--provider KIND] [--broker run|loop|poll1ms] [--idle SECS] [--count N]\n"
		"                  [--senders N (1 sends, N-1 stay idle)] [--wake-via auto|futex|bridge|bell]\n"
		"                  [--check-ms MS (loop: dead-client checks)]\n"
		"--broker loop: clients wake the sleeping loop (llmp_waker_poke) unless --no-poke;\n"
		"  it naps (1 ms) only while a client cannot wake it, or always with --nap always\n"
		"KIND: default memfd sysv posix served kmod.  size: a multiple of 8, >= %u.\n",
		HDR_LEN);
	exit(2);
}

static void parse(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "provider", required_argument, NULL, 'p' },
		{ "size", required_argument, NULL, 's' },
		{ "senders", required_argument, NULL, 'n' },
		{ "receivers", required_argument, NULL, 'r' },
		{ "duration", required_argument, NULL, 'd' },
		{ "rate", required_argument, NULL, 'R' },
		{ "broker", required_argument, NULL, 'b' },
		{ "copy", no_argument, NULL, 'c' },
		{ "page-size", required_argument, NULL, 'P' },
		{ "history", required_argument, NULL, 'H' },
		{ "wake", no_argument, NULL, 'w' },
		{ "idle", required_argument, NULL, 'i' },
		{ "count", required_argument, NULL, 'C' },
		{ "no-poke", no_argument, NULL, 'N' },
		{ "nap", required_argument, NULL, 'Z' },
		{ "wake-via", required_argument, NULL, 'V' },
		{ "check-ms", required_argument, NULL, 'K' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	int c;

	while ((c = getopt_long(argc, argv, "p:s:n:r:d:R:b:cP:H:wi:C:Nh", lo, NULL)) != -1) {
		switch (c) {
		case 'p':
			if (llmp_shmem_kind_from_name(optarg, &o.kind))
				usage();
			break;
		case 's': o.size = strtoul(optarg, NULL, 0); break;
		case 'n': o.senders = (unsigned)strtoul(optarg, NULL, 0); break;
		case 'r': o.receivers = (unsigned)strtoul(optarg, NULL, 0); break;
		case 'd': o.duration = atof(optarg); break;
		case 'R': o.rate = atof(optarg); break;
		case 'b':
			if (!strcmp(optarg, "run"))
				o.broker = BROKER_RUN;
			else if (!strcmp(optarg, "loop"))
				o.broker = BROKER_LOOP;
			else if (!strcmp(optarg, "spin"))
				o.broker = BROKER_SPIN;
			else if (!strcmp(optarg, "poll1ms") || !strcmp(optarg, "poll"))
				o.broker = BROKER_POLL;
			else
				usage();
			break;
		case 'c': o.copy = true; break;
		case 'P': o.page_size = strtoul(optarg, NULL, 0); break;
		case 'H': o.history = strtoul(optarg, NULL, 0); break;
		case 'w': o.wake = true; break;
		case 'i': o.idle = atof(optarg); break;
		case 'C': o.count = (unsigned)strtoul(optarg, NULL, 0); break;
		case 'N': no_poke = true; break;
		case 'Z':
			if (!strcmp(optarg, "always"))
				nap_always = true;
			else if (!strcmp(optarg, "auto"))
				nap_always = false;
			else
				usage();
			break;
		case 'K': check_ms = atoi(optarg); break;
		case 'V':
			if (!strcmp(optarg, "auto"))
				wake_via = LLMP_LOOP_WAKE_AUTO;
			else if (!strcmp(optarg, "futex"))
				wake_via = LLMP_LOOP_WAKE_FUTEX;
			else if (!strcmp(optarg, "bridge"))
				wake_via = LLMP_LOOP_WAKE_BRIDGE;
			else if (!strcmp(optarg, "bell"))
				wake_via = LLMP_LOOP_WAKE_BELL;
			else
				usage();
			break;
		default: usage();
		}
	}
	if (optind != argc || o.size < HDR_LEN || o.size % 8 || o.size > (256u << 20) ||
	    !o.senders || o.senders > MAX_SENDERS || !o.receivers || o.receivers > MAX_RECEIVERS ||
	    o.duration <= 0 || o.rate < 0 || o.idle < 0 || !o.count)
		usage();
	if (o.wake) {
		o.receivers = 1;
		o.duration = 0;
	}
	if (!o.wake)
		o.idle = 0;
	if (!o.history)
		o.history = DEFAULT_HISTORY;
}

int main(int argc, char **argv)
{
	struct llmp_shmem_server *server = NULL;
	struct llmp_tcp_listener *listener = NULL;
	struct llmp_provider *p = NULL;
	struct llmp_broker *b = NULL;
	struct llmp_shmem_desc bcast;
	static struct waiter w;
	pthread_t wt;
	int r, socks[MAX_SENDERS + MAX_RECEIVERS];
	unsigned nchild = 0;

	parse(argc, argv);
	sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (sh == MAP_FAILED) {
		perror("llmp-bench: mmap");
		return 1;
	}
	if (o.kind == LLMP_SHMEM_SERVED) {
		char path[64];

		snprintf(path, sizeof(path), "@llmp-bench-%d", (int)getpid());
		r = llmp_shmem_server_start(path, LLMP_SHMEM_SERVER_PROCESS, &server);
		if (!r)
			r = llmp_provider_new_served(path, &p);
	} else {
		r = llmp_provider_new(o.kind, &p);
	}
	if (r) {
		fprintf(stderr, "llmp-bench: provider %s: %s (%s)\n", llmp_shmem_kind_name(o.kind),
			strerror(-r), llmp_strerror_last());
		llmp_shmem_server_stop(server);
		return r == -ENODEV ? 4 : 1;
	}
	struct llmp_broker_opts bo = {
		.struct_size = sizeof(bo),
		.page_size = o.page_size,
		.history_bytes = o.history,
	};
	size_t footprint = ((LLMP_MSG_HEADER_LEN + o.size + LLMP_ALIGN - 1) & ~(size_t)(LLMP_ALIGN - 1)) + LLMP_ALIGN;
	window_msgs = o.history / 4 / o.senders / footprint;
	if (window_msgs < 2)
		window_msgs = 2;
	r = llmp_broker_new(p, &bo, &b);
	if (!r)
		r = llmp_broker_broadcast_desc(b, &bcast);
	if (r) {
		fprintf(stderr, "llmp-bench: broker: %s (%s)\n", strerror(-r), llmp_strerror_last());
		goto out;
	}
	if (o.broker == BROKER_LOOP) {
		/*
		 * The event loop, and a loopback TCP listener through which the
		 * senders find its control segment (EXT_QUERY) to wake it.
		 */
		struct llmp_loop_opts lo = { .struct_size = sizeof(lo), .backend = LLMP_LOOP_AUTO,
					     .wake = wake_via, .check_clients_ms = check_ms };

		/*
		 * The loop's defaults: clients that poke let it sleep without a
		 * nap; without pokes (or with --nap always) the 1 ms nap bounds latency.
		 */
		lo.nap = nap_always ? LLMP_LOOP_NAP_ALWAYS : LLMP_LOOP_NAP_AUTO;
		r = llmp_loop_new(b, &lo, &w.lp);
		if (!r && !no_poke) {
			/* 65 clients ask for the control segment at once: above the 64 handshakes
			 * per address the default allows (a quarter of max_peers). */
			struct llmp_tcp_listener_opts tlo = { .struct_size = sizeof(tlo),
							      .max_peers = 1024 };

			r = llmp_tcp_listen(b, NULL, 0, &tlo, &listener);
			if (!r)
				r = llmp_loop_add_listener(w.lp, listener);
			if (!r)
				sh->waker_port = llmp_tcp_listener_port(listener);
		}
		if (r) {
			fprintf(stderr, "llmp-bench: event loop: %s (%s)\n", strerror(-r),
				llmp_strerror_last());
			goto out;
		}
	}

	/* Receivers first, so that they are attached before anything is sent. */
	for (unsigned i = 0; i < o.receivers + o.senders; i++) {
		int sv[2];
		bool rx = i < o.receivers;

		if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv)) {
			r = -errno;
			break;
		}
		fflush(NULL);
		llmp_provider_pre_fork(p);
		pid_t parent = getpid(), pid = fork();
		if (pid == 0) {
			/* never outlive the broker: no orphan left spinning */
			if (prctl(PR_SET_PDEATHSIG, SIGKILL) || getppid() != parent)
				_exit(1);
			llmp_provider_post_fork(p, true);
			close(sv[0]);
			r = rx ? receiver_main(p, &bcast, sv[1], i)
			       : sender_main(p, &bcast, sv[1], i - o.receivers);
			_exit(r ? 1 : 0);
		}
		llmp_provider_post_fork(p, false);
		close(sv[1]);
		if (pid < 0) {
			r = -errno;
			close(sv[0]);
			break;
		}
		w.pids[nchild] = pid;
		socks[nchild++] = sv[0];
		r = broker_register(b, sv[0]);
		if (r) {
			fprintf(stderr, "llmp-bench: registering a client: %s (%s)\n", strerror(-r),
				llmp_strerror_last());
			break;
		}
	}
	w.n = nchild;
	w.nrx = nchild < o.receivers ? nchild : o.receivers;
	w.b = b;
	w.timeout = o.duration + o.idle + (o.wake ? o.count * 0.016 : 0) + 60.0;
	if (r)
		flag_set(&sh->abort_run);
	else
		flag_set(&sh->go); /* seq_cst, read by the children's wait_go() */
	if (pthread_create(&wt, NULL, waiter_main, &w)) {
		flag_set(&sh->abort_run);
		for (unsigned i = 0; i < nchild; i++)
			kill(w.pids[i], SIGKILL);
		while (wait(NULL) > 0)
			;
		r = -EAGAIN;
		goto out;
	}
	const uint64_t bcpu0 = cpu_ns(CLOCK_THREAD_CPUTIME_ID);
	int lr = 0;
	if (r)
		flag_set(&w.run_over); /* no loop to stop: let the waiter finish */
	else
		lr = broker_loop(b, &w);
	const uint64_t broker_cpu = cpu_ns(CLOCK_THREAD_CPUTIME_ID) - bcpu0;
	if (lr) {
		fprintf(stderr, "llmp-bench: broker loop: %s (%s)\n", strerror(-lr),
			llmp_strerror_last());
		flag_set(&sh->abort_run);
		/* keep the waiter able to finish: run() is over */
	}
	pthread_join(wt, NULL);
	for (unsigned i = 0; i < nchild; i++)
		close(socks[i]);
	if (!r)
		r = lr;

	/* ---- results ---- */
	uint64_t sent = 0, lost = 0, dup = 0, reorder = 0, bad = 0, msgs = 0;
	double rate = -1;
	static uint64_t hist[HIST_BUCKETS];
	uint64_t tx_cpu = 0;
	for (unsigned i = 0; i < o.senders; i++) {
		if (sh->tx[i].why[0])
			fprintf(stderr, "llmp-bench: sender %u: %s\n", i, sh->tx[i].why);
		sent += sh->tx[i].sent;
		tx_cpu += sh->tx[i].cpu_ns;
	}
	for (unsigned i = 0; i < o.receivers; i++) {
		struct rx_result *x = &sh->rx[i];
		double el = (double)(x->last_ns - x->first_ns) / 1e9;

		if (x->why[0])
			fprintf(stderr, "llmp-bench: receiver %u: %s\n", i, x->why);
		if (x->stale)
			fprintf(stderr, "llmp-bench: receiver %u fell out of the broker's history %" PRIu64
				" times\n", i, x->stale);
		lost += x->lost + (sent > x->got + x->lost ? sent - x->got - x->lost : 0);
		dup += x->dup;
		reorder += x->reorder;
		bad += x->bad;
		if (i == 0 || x->got < msgs)
			msgs = x->got;
		if (el > 0 && (rate < 0 || x->got / el < rate))
			rate = x->got / el;
		for (unsigned k = 0; k < HIST_BUCKETS; k++)
			hist[k] += x->hist[k];
	}
	if (rate < 0)
		rate = 0;
	if (w.bad_exits && !r)
		r = -ECHILD;
	const char *kname = llmp_shmem_kind_name(llmp_provider_kind(p));
	char bname[48], tuning[80] = "";
	if (o.page_size || o.history != DEFAULT_HISTORY)
		snprintf(tuning, sizeof(tuning), " page_size=%zu history=%zu", o.page_size, o.history);
	if (w.lp)
		snprintf(bname, sizeof(bname), "loop-%s-%s%s", llmp_loop_backend_name(w.lp),
			 sh->waker_port ? llmp_loop_wake_name(w.lp) : "nopoke",
			 nap_always ? "-nap1ms" : "");
	else
		snprintf(bname, sizeof(bname), "%s", broker_mode_names[o.broker]);
	if (o.wake) {
		double cpu = sh->tx[0].idle_secs > 0
				     ? (double)sh->tx[0].idle_cpu_ns / 1e9 / sh->tx[0].idle_secs * 100.0
				     : -1;
		struct llmp_loop_stats ls = { 0 };

		if (w.lp)
			llmp_loop_stats(w.lp, &ls); /* run() has returned */
		printf("provider=%s mode=wake broker=%s clients=%u idle_s=%.1f idle_cpu_pct=%.2f msgs=%" PRIu64
		       " lost=%" PRIu64 " dup=%" PRIu64 " p50_us=%.1f p99_us=%.1f reorder=%" PRIu64
		       " bad=%" PRIu64 " sleeps=%" PRIu64 " wakeups=%" PRIu64 "\n",
		       kname, bname, o.senders + o.receivers, sh->tx[0].idle_secs, cpu, msgs, lost,
		       dup, hist_pct(hist, 50), hist_pct(hist, 99), reorder, bad, ls.sleeps,
		       ls.wakeups);
	} else {
		printf("provider=%s size=%zu senders=%u receivers=%u msgs=%" PRIu64
		       " msgs_per_s=%.0f MBps=%.1f lost=%" PRIu64 " dup=%" PRIu64
		       " p50_us=%.1f p99_us=%.1f reorder=%" PRIu64 " bad=%" PRIu64
		       " cpu_ns_per_msg=send:%.0f,broker:%.0f,recv:%.0f broker=%s%s%s%s\n",
		       kname, o.size, o.senders, o.receivers, msgs, rate,
		       rate * (double)o.size / 1e6, lost, dup, hist_pct(hist, 50),
		       hist_pct(hist, 99), reorder, bad, per_msg(tx_cpu, sent),
		       per_msg(broker_cpu, sent), per_msg(sh->rx[0].cpu_ns, sh->rx[0].got),
		       bname,
		       o.copy ? " copy=1" : "", o.rate > 0 ? " paced=1" : "", tuning);
	}
	fflush(stdout);
	if (!r && (lost || dup || reorder || bad || !sent))
		r = -EBADMSG;
out:
	if (w.lp)
		llmp_loop_free(w.lp);
	if (listener)
		llmp_tcp_listener_free(listener);
	if (b)
		llmp_broker_free(b);
	llmp_provider_free(p);
	llmp_shmem_server_stop(server);
	munmap(sh, sizeof(*sh));
	return r ? 1 : 0;
}
