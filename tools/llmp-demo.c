// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * llmp-demo: a broker and three client processes exchanging messages.
 *
 * The parent process is the broker.  Each client (a forked process)
 * registers with it, then for a few seconds alternately sends a text line
 * "client N: message K" and a binary payload of random length with a
 * checksum, and reads what the other clients sent.  Every client checks
 * that it got every other client's messages exactly once, in order and
 * intact; the parent prints samples, the counts and the throughput.
 *
 *   llmp-demo [--provider KIND] [--seconds S] [--clients N]
 *
 * Exit status 0 only if every message arrived.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "llmp/llmp.h"
#include "tool.h"

#define TAG_TEXT 0xDE000001u
#define TAG_BLOB 0xDE000002u
#define TAG_DONE 0xDE000003u
#define MAX_CLIENTS 8
#define BLOB_MAX 4096
/*
 * A client sends at most this many messages more than the slowest other
 * client has read from it.  LLMP has no end-to-end back-pressure: a reader
 * that falls out of the broker's bounded history (64 MiB by default) loses
 * messages, so the demo keeps what is in flight far below that.
 */
#define WINDOW 2048

struct blob_hdr {
	uint32_t client; /* 1-based demo index */
	uint32_t pad;
	uint64_t seq;
	uint64_t sum; /* checksum() of the bytes after this header */
};

struct done_msg {
	uint32_t client;
	uint32_t pad;
	uint64_t count; /* messages sent before this one */
};

struct client_report {
	pid_t pid;
	uint32_t llmp_id;
	uint64_t sent, sent_lines, sent_blobs, sent_bytes;
	uint64_t got[MAX_CLIENTS + 1];      /* verified, by sender index */
	uint64_t expected[MAX_CLIENTS + 1]; /* from each sender's DONE */
	uint64_t bad, lost, dup, got_bytes;
	uint64_t first_ns, last_ns;
	char first[MAX_CLIENTS + 1][48]; /* first and last text line from each sender */
	char last[MAX_CLIENTS + 1][48];
	int ok;
	char why[160];
};

struct shared {
	_Atomic int go;     /* broker → clients: everyone registered */
	_Atomic int finish; /* broker → clients: all checked, you may exit */
	_Atomic int abort_run;
	_Atomic unsigned checked; /* clients that finished their checks */
	struct client_report c[MAX_CLIENTS + 1];
};

static struct shared *sh;
static unsigned nclients = 3;
static double seconds = 3.0;

/* Checksum of a payload: FNV-1a over 64-bit words, then the tail bytes. */
static uint64_t checksum(const void *p, size_t n)
{
	const unsigned char *b = p;
	uint64_t h = 0xcbf29ce484222325ull ^ n;
	size_t i = 0;

	for (; i + 8 <= n; i += 8) {
		uint64_t w;

		memcpy(&w, b + i, 8);
		h = (h ^ w) * 0x100000001b3ull;
	}
	for (; i < n; i++)
		h = (h ^ b[i]) * 0x100000001b3ull;
	return h ^ (h >> 29);
}

/* Record why this client failed; err is a negative errno, lib: from a library call. */
static int failed_as(struct client_report *r, int err, const char *what, bool lib)
{
	if (lib)
		snprintf(r->why, sizeof(r->why), "%s: %s (%s)", what, strerror(-err),
			 llmp_strerror_last());
	else
		snprintf(r->why, sizeof(r->why), "%s: %s", what, strerror(-err));
	flag_set(&sh->abort_run); /* seq_cst: read by every waiting loop */
	return err;
}

static int failed(struct client_report *r, int err, const char *what)
{
	return failed_as(r, err, what, true);
}

/* Check and count one received message (DONE, a text line or a payload). */
static void take(struct client_report *me, uint64_t *next, const struct llmp_msg_view *v,
		 unsigned *done, uint32_t *ids)
{
	if (v->tag == TAG_DONE) {
		struct done_msg d;

		if (v->len != sizeof(d)) {
			me->bad++;
			return;
		}
		memcpy(&d, v->buf, sizeof(d));
		if (!d.client || d.client > nclients || me->expected[d.client]) {
			me->bad++;
			return;
		}
		me->expected[d.client] = d.count ? d.count : UINT64_MAX; /* 0 sent: mark */
		(*done)++;
		return;
	}
	uint32_t from;
	uint64_t seq;
	if (v->tag == TAG_TEXT) {
		char line[48];
		unsigned c;
		unsigned long long k;
		int used = 0;

		if (v->len == 0 || v->len >= sizeof(line)) {
			me->bad++;
			return;
		}
		memcpy(line, v->buf, v->len);
		line[v->len] = 0;
		if (sscanf(line, "client %u: message %llu%n", &c, &k, &used) != 2 ||
		    (size_t)used != v->len || !c || c > nclients) {
			me->bad++;
			return;
		}
		from = c;
		seq = k;
		if (!me->first[from][0])
			memcpy(me->first[from], line, v->len + 1);
		memcpy(me->last[from], line, v->len + 1);
	} else if (v->tag == TAG_BLOB) {
		struct blob_hdr h;

		if (v->len < sizeof(h)) {
			me->bad++;
			return;
		}
		memcpy(&h, v->buf, sizeof(h));
		if (!h.client || h.client > nclients ||
		    checksum((const unsigned char *)v->buf + sizeof(h), v->len - sizeof(h)) != h.sum) {
			me->bad++;
			return;
		}
		from = h.client;
		seq = h.seq;
	} else {
		return; /* not a demo message */
	}
	if (!ids[from])
		ids[from] = v->sender;
	if (ids[from] != v->sender) {
		me->bad++;
		return;
	}
	if (seq < next[from]) {
		me->dup++;
		return;
	}
	if (seq > next[from])
		me->lost += seq - next[from];
	next[from] = seq + 1;
	/* read by the sender's window check: a count, no data attached */
	__atomic_store_n(&me->got[from], me->got[from] + 1, __ATOMIC_RELAXED);
	me->got_bytes += v->len;
	if (!me->first_ns)
		me->first_ns = now_ns();
}

static int client_main(struct llmp_provider *p, const struct llmp_shmem_desc *bcast, int sock,
		       unsigned idx)
{
	struct client_report *me = &sh->c[idx];
	struct llmp_client_opts co = {
		.struct_size = sizeof(co),
		.send_timeout_ms = 1000,
		.skip_own = true,
	};
	struct llmp_client *c;
	struct llmp_shmem_desc d;
	uint64_t next[MAX_CLIENTS + 1] = { 0 };
	uint32_t ids[MAX_CLIENTS + 1] = { 0 };
	unsigned char blob[sizeof(struct blob_hdr) + BLOB_MAX];
	static unsigned char pool[2 * BLOB_MAX]; /* random bytes; payloads are slices of it */
	unsigned done = 0;
	uint64_t rnd = 0x2545F4914F6CDD1Dull * idx;
	int32_t id;
	int r;

	for (size_t i = 0; i < sizeof(pool); i++) {
		rnd ^= rnd << 13;
		rnd ^= rnd >> 7;
		rnd ^= rnd << 17;
		pool[i] = (unsigned char)(rnd >> 24);
	}

	me->pid = getpid();
	r = llmp_client_new(p, bcast, &co, &c);
	if (r)
		return failed(me, r, "client_new");
	r = llmp_client_out_desc(c, &d);
	if (!r)
		r = full_io(sock, &d, sizeof(d), true);
	if (!r)
		r = full_io(sock, &id, sizeof(id), false);
	if (!r && id <= 0)
		r = id ? id : -EPROTO;
	if (r) {
		llmp_client_free(c);
		return failed(me, r, "registration");
	}
	llmp_client_set_id(c, (uint32_t)id);
	me->llmp_id = (uint32_t)id;
	/* seq_cst loads, pair with the broker's stores after registration */
	while (!flag_get(&sh->go) && !flag_get(&sh->abort_run))
		sleep_ms(1);

	const uint64_t stop = now_ns() + (uint64_t)(seconds * 1e9);
	const uint64_t give_up = stop + 30000000000ull;
	for (uint64_t k = 0;; k++) {
		struct llmp_msg_view v;

		if (now_ns() >= stop)
			break;
		/* Window: wait (reading meanwhile) until the others caught up. */
		for (unsigned spins = 0;; spins++) {
			uint64_t low = UINT64_MAX;

			for (unsigned j = 1; j <= nclients; j++) {
				/* pairs with the reader's relaxed store in take() */
				uint64_t n = __atomic_load_n(&sh->c[j].got[idx], __ATOMIC_RELAXED);

				if (j != idx && n < low)
					low = n;
			}
			if (k < low + WINDOW)
				break;
			while ((r = llmp_client_recv(c, &v)) == 1)
				take(me, next, &v, &done, ids);
			if (r < 0) {
				r = failed(me, r, "recv");
				goto out;
			}
			if ((spins & 63) == 63 && (now_ns() > give_up || flag_get(&sh->abort_run))) {
				r = failed_as(me, -ETIMEDOUT, "waiting for the other clients to read", false);
				goto out;
			}
			sched_yield();
		}
		if (k % 2 == 0) {
			char line[64];
			int n = snprintf(line, sizeof(line), "client %u: message %" PRIu64, idx, k);

			while ((r = llmp_client_send(c, TAG_TEXT, 0, line, (size_t)n)) == -EAGAIN)
				if (now_ns() > give_up)
					break;
			me->sent_lines++;
			me->sent_bytes += (size_t)n;
		} else {
			struct blob_hdr h = { .client = idx, .seq = k };
			size_t len;

			rnd ^= rnd << 13;
			rnd ^= rnd >> 7;
			rnd ^= rnd << 17;
			len = (size_t)(rnd % BLOB_MAX);
			memcpy(blob + sizeof(h), pool + (rnd >> 32) % BLOB_MAX, len);
			h.sum = checksum(blob + sizeof(h), len);
			memcpy(blob, &h, sizeof(h));
			while ((r = llmp_client_send(c, TAG_BLOB, 0, blob, sizeof(h) + len)) == -EAGAIN)
				if (now_ns() > give_up)
					break;
			me->sent_blobs++;
			me->sent_bytes += sizeof(h) + len;
		}
		if (r) {
			r = failed(me, r, "send");
			goto out;
		}
		me->sent = k + 1;
		/* Read whatever the others sent meanwhile. */
		while ((r = llmp_client_recv(c, &v)) == 1)
			take(me, next, &v, &done, ids);
		if (r < 0) {
			r = failed(me, r, "recv");
			goto out;
		}
	}
	struct done_msg dm = { .client = idx, .count = me->sent };
	while ((r = llmp_client_send(c, TAG_DONE, 0, &dm, sizeof(dm))) == -EAGAIN)
		if (now_ns() > give_up)
			break;
	if (r) {
		r = failed(me, r, "send DONE");
		goto out;
	}
	/* Wait for every other client's DONE. */
	while (done < nclients - 1) {
		struct llmp_msg_view v;

		r = llmp_client_recv_wait(c, &v, 100);
		if (r < 0) {
			r = failed(me, r, "recv");
			goto out;
		}
		if (r == 1)
			take(me, next, &v, &done, ids);
		else if (now_ns() > give_up || flag_get(&sh->abort_run)) {
			r = failed_as(me, -ETIMEDOUT, "waiting for the other clients", false);
			goto out;
		}
	}
	me->last_ns = now_ns();
	r = 0;
	me->ok = 1;
	me->lost = 0; /* what never arrived, from each sender's count */
	for (unsigned s = 1; s <= nclients; s++) {
		uint64_t want = me->expected[s] == UINT64_MAX ? 0 : me->expected[s];

		if (s == idx)
			continue;
		if (me->got[s] != want)
			me->ok = 0;
		if (want > me->got[s])
			me->lost += want - me->got[s];
	}
	if (me->bad || me->dup || me->lost)
		me->ok = 0;
	atomic_fetch_add(&sh->checked, 1); /* seq_cst, read by the broker */
	/* Keep the out page alive until everybody has read it. */
	while (!flag_get(&sh->finish) && !flag_get(&sh->abort_run))
		sleep_ms(5);
out:
	llmp_client_free(c);
	return r;
}

struct waiter {
	pid_t pid[MAX_CLIENTS + 1];
	struct llmp_broker *b;
	_Atomic int done, run_over;
	int bad_exits;
};

static void *waiter_main(void *arg)
{
	struct waiter *w = arg;
	unsigned left = nclients;
	const uint64_t deadline = now_ns() + (uint64_t)(seconds * 1e9) + 60000000000ull;

	while (left) {
		int st;
		pid_t pid = waitpid(-1, &st, WNOHANG);

		if (pid > 0) {
			left--;
			if (!WIFEXITED(st) || WEXITSTATUS(st))
				w->bad_exits++;
			continue;
		}
		if (atomic_load(&sh->checked) == nclients) /* pairs with the clients' fetch_add */
			flag_set(&sh->finish);
		if (now_ns() > deadline) {
			flag_set(&sh->abort_run);
			for (unsigned i = 1; i <= nclients; i++)
				kill(w->pid[i], SIGKILL);
		}
		sleep_ms(2);
	}
	flag_set(&w->done); /* seq_cst */
	while (!flag_get(&w->run_over)) {
		llmp_broker_stop(w->b);
		sleep_ms(10);
	}
	return NULL;
}

int main(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "provider", required_argument, NULL, 'p' },
		{ "seconds", required_argument, NULL, 's' },
		{ "clients", required_argument, NULL, 'n' },
		{ 0 },
	};
	enum llmp_shmem_kind kind = LLMP_SHMEM_DEFAULT;
	struct llmp_provider *p = NULL;
	struct llmp_broker *b = NULL;
	struct llmp_shmem_desc bcast;
	static struct waiter w;
	int socks[MAX_CLIENTS + 1];
	pthread_t wt;
	unsigned forked = 0;
	int opt, r;

	while ((opt = getopt_long(argc, argv, "p:s:n:", lo, NULL)) != -1) {
		switch (opt) {
		case 'p':
			if (llmp_shmem_kind_from_name(optarg, &kind))
				goto usage;
			break;
		case 's': seconds = atof(optarg); break;
		case 'n': nclients = (unsigned)strtoul(optarg, NULL, 0); break;
		default: goto usage;
		}
	}
	if (optind != argc || seconds <= 0 || seconds > 600 || nclients < 2 || nclients > MAX_CLIENTS)
		goto usage;
	sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (sh == MAP_FAILED)
		return 1;
	r = llmp_provider_new(kind, &p);
	if (!r)
		r = llmp_broker_new(p, NULL, &b);
	if (!r)
		r = llmp_broker_broadcast_desc(b, &bcast);
	if (r) {
		fprintf(stderr, "llmp-demo: %s (%s)\n", strerror(-r), llmp_strerror_last());
		goto out;
	}
	const char *kname = llmp_shmem_kind_name(llmp_provider_kind(p));
	printf("llmp demo: a broker (pid %d) and %u client processes on the %s provider, %.0f s\n",
	       (int)getpid(), nclients, kname, seconds);
	fflush(stdout);

	for (unsigned i = 1; i <= nclients; i++) {
		int sv[2];
		struct llmp_shmem_desc d;
		int32_t id;

		if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv)) {
			r = -errno;
			break;
		}
		llmp_provider_pre_fork(p);
		pid_t parent = getpid(), pid = fork();
		if (pid == 0) {
			/* never outlive the broker: no orphan left spinning */
			if (prctl(PR_SET_PDEATHSIG, SIGKILL) || getppid() != parent)
				_exit(1);
			llmp_provider_post_fork(p, true);
			close(sv[0]);
			_exit(client_main(p, &bcast, sv[1], i) ? 1 : 0);
		}
		llmp_provider_post_fork(p, false);
		close(sv[1]);
		if (pid < 0) {
			r = -errno;
			close(sv[0]);
			break;
		}
		w.pid[i] = pid;
		socks[forked++] = sv[0];
		r = full_io(sv[0], &d, sizeof(d), false);
		if (r)
			break;
		id = llmp_broker_add_client(b, &d);
		r = full_io(sv[0], &id, sizeof(id), true);
		if (id < 0)
			r = id;
		if (r) {
			fprintf(stderr, "llmp-demo: registering client %u: %s (%s)\n", i, strerror(-r),
				llmp_strerror_last());
			break;
		}
	}
	if (forked < nclients) { /* the waiter expects nclients children */
		flag_set(&sh->abort_run);
		for (unsigned i = 1; i <= forked; i++)
			waitpid(w.pid[i], NULL, 0);
		goto out;
	}
	flag_set(r ? &sh->abort_run : &sh->go); /* seq_cst, read by the clients */
	w.b = b;
	if (pthread_create(&wt, NULL, waiter_main, &w)) {
		flag_set(&sh->abort_run);
		for (unsigned i = 1; i <= nclients; i++)
			waitpid(w.pid[i], NULL, 0);
		r = -EAGAIN;
		goto out;
	}
	int lr = llmp_broker_run(b);
	flag_set(&w.run_over); /* seq_cst, read by the waiter */
	if (lr < 0) {
		fprintf(stderr, "llmp-demo: broker: %s (%s)\n", strerror(-lr), llmp_strerror_last());
		flag_set(&sh->abort_run);
		if (!r)
			r = lr;
	}
	pthread_join(wt, NULL);
	for (unsigned i = 0; i < forked; i++)
		close(socks[i]);

	uint64_t total_sent = 0, total_bytes = 0, first = 0, last = 0;
	bool all_ok = !r && !w.bad_exits;
	for (unsigned i = 1; i <= nclients; i++) {
		struct client_report *c = &sh->c[i];

		total_sent += c->sent;
		total_bytes += c->sent_bytes;
		if (c->first_ns && (!first || c->first_ns < first))
			first = c->first_ns;
		if (c->last_ns > last)
			last = c->last_ns;
		printf("client %u (pid %d, llmp id %u) sent %" PRIu64 " messages: %" PRIu64
		       " text lines, %" PRIu64 " checksummed payloads, %.1f MB\n",
		       i, (int)c->pid, c->llmp_id, c->sent, c->sent_lines, c->sent_blobs,
		       (double)c->sent_bytes / 1e6);
	}
	for (unsigned i = 1; i <= nclients; i++) {
		struct client_report *c = &sh->c[i];
		uint64_t want = 0, got = 0;

		for (unsigned s = 1; s <= nclients; s++) {
			if (s == i)
				continue;
			want += sh->c[s].sent;
			got += c->got[s];
		}
		printf("client %u received %" PRIu64 " of %" PRIu64
		       " messages from the others (%.1f MB), verified: %s",
		       i, got, want, (double)c->got_bytes / 1e6,
		       c->ok && got == want ? "all in order, checksums good" : "FAILED");
		if (c->bad || c->dup || c->lost)
			printf(" (bad %" PRIu64 ", duplicate %" PRIu64 ", lost %" PRIu64 ")", c->bad,
			       c->dup, c->lost);
		printf("\n");
		if (c->why[0])
			printf("  client %u error: %s\n", i, c->why);
		for (unsigned s = 1; s <= nclients; s++)
			if (c->first[s][0])
				printf("    first and last line from client %u: \"%s\" ... \"%s\"\n", s,
				       c->first[s], c->last[s]);
		if (!c->ok || got != want)
			all_ok = false;
	}
	double el = last > first ? (double)(last - first) / 1e9 : 0;
	if (el > 0)
		printf("throughput: %.0f messages/s and %.1f MB/s into the broker, each delivered to "
		       "%u readers\n",
		       (double)total_sent / el, (double)total_bytes / el / 1e6, nclients - 1);
	printf("demo: %s\n", all_ok ? "every message arrived" : "FAILED");
	r = all_ok ? 0 : -EIO;
out:
	if (b)
		llmp_broker_free(b);
	llmp_provider_free(p);
	munmap(sh, sizeof(*sh));
	return r ? 1 : 0;
usage:
	fprintf(stderr, "usage: llmp-demo [--provider KIND] [--seconds S] [--clients N]\n");
	return 2;
}
