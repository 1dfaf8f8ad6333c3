// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * llmp-ring: the speed-of-light baseline for make bench.
 *
 * Two processes (fork) share one anonymous MAP_SHARED mapping that holds a
 * single-producer single-consumer ring of fixed-size slots.  The producer
 * copies each message into the next slot (a sequence number, then the
 * payload) and publishes its head with a release store; the consumer reads
 * every message in place, checks the sequence number and a checksum over
 * the whole payload, and publishes its tail once per drained batch, the way
 * an LLMP reader publishes nothing per message.  There is no broker and no
 * protocol: whatever llmp-bench reaches is compared with this.
 *
 *   llmp-ring [-s size] [-d seconds] [-p]    (-p: pin producer/consumer to CPUs 0/1)
 *
 * Prints one line: name=ring size=... msgs=... msgs_per_s=... MBps=... bad=0
 * and exits non-zero if any message was wrong or missing.
 */
#include <errno.h>
#include <getopt.h>
#include <sched.h>
#include <stdbool.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "tool.h"

#define RING_BYTES (64u << 20)
#define SLOT_HDR 16u /* u64 sequence number, u64 unused: keeps the payload 16-aligned */
#define SEQ_END UINT64_MAX

struct ring_ctl {
	_Alignas(64) _Atomic uint64_t head; /* bytes published by the producer */
	_Alignas(64) _Atomic uint64_t tail; /* bytes released by the consumer */
	_Alignas(64) uint64_t got;          /* consumer results, read after waitpid */
	uint64_t bad;
	uint64_t first_ns, last_ns;
};

static void pin_cpu(int cpu)
{
	cpu_set_t set;

	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	if (sched_setaffinity(0, sizeof(set), &set))
		fprintf(stderr, "llmp-ring: cannot pin to CPU %d: %s\n", cpu, strerror(errno));
}

static void usage(void)
{
	fprintf(stderr, "usage: llmp-ring [-s size] [-d seconds] [-p]\n");
	exit(2);
}

int main(int argc, char **argv)
{
	size_t size = 64;
	double secs = 2.0;
	bool pin = false;
	int opt;

	while ((opt = getopt(argc, argv, "s:d:ph")) != -1) {
		switch (opt) {
		case 's': size = strtoul(optarg, NULL, 0); break;
		case 'd': secs = atof(optarg); break;
		case 'p': pin = true; break;
		default: usage();
		}
	}
	if (size < 8 || size % 8 || size > (16u << 20) || secs <= 0)
		usage();

	const size_t slot = (SLOT_HDR + size + 63) & ~(size_t)63;
	const size_t cap = (RING_BYTES / slot) * slot; /* whole slots: none wraps */
	struct ring_ctl *ctl = mmap(NULL, sizeof(*ctl) + RING_BYTES, PROT_READ | PROT_WRITE,
				    MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (ctl == MAP_FAILED) {
		perror("llmp-ring: mmap");
		return 1;
	}
	unsigned char *ring = (unsigned char *)(ctl + 1);
	unsigned char *payload = malloc(size);
	if (!payload)
		return 1;
	for (size_t i = 0; i < size; i++)
		payload[i] = (unsigned char)(i * 131u + 7u);
	const uint64_t expect = word_sum(payload, size);

	fflush(stdout);
	pid_t pid = fork();
	if (pid < 0) {
		perror("llmp-ring: fork");
		return 1;
	}
	if (pid == 0) {
		uint64_t tail = 0, n = 0, bad = 0;

		if (pin)
			pin_cpu(1);
		for (;;) {
			/* pairs with the producer's release store of head */
			uint64_t head = atomic_load_explicit(&ctl->head, memory_order_acquire);

			if (head == tail)
				continue;
			for (; tail < head; tail += slot) {
				const unsigned char *m = ring + tail % cap;
				uint64_t seq;

				memcpy(&seq, m, 8);
				if (seq == SEQ_END) {
					ctl->last_ns = now_ns();
					ctl->got = n;
					ctl->bad = bad;
					_exit(0);
				}
				if (n == 0)
					ctl->first_ns = now_ns();
				if (seq != n || word_sum(m + SLOT_HDR, size) != expect)
					bad++;
				n++;
			}
			/* pairs with the producer's acquire load of tail: slots are free to reuse */
			atomic_store_explicit(&ctl->tail, tail, memory_order_release);
		}
	}

	if (pin)
		pin_cpu(0);
	uint64_t head = 0, n = 0;
	const uint64_t t0 = now_ns(), stop = t0 + (uint64_t)(secs * 1e9);
	for (;;) {
		if ((n & 255) == 0 && now_ns() >= stop)
			break;
		/* pairs with the consumer's release store of tail */
		while (head + slot - atomic_load_explicit(&ctl->tail, memory_order_acquire) > cap)
			;
		unsigned char *m = ring + head % cap;
		memcpy(m, &n, 8);
		memcpy(m + SLOT_HDR, payload, size);
		head += slot;
		n++;
		/* pairs with the consumer's acquire load of head: the slot is written */
		atomic_store_explicit(&ctl->head, head, memory_order_release);
	}
	/* pairs with the consumer's release store of tail */
	while (head + slot - atomic_load_explicit(&ctl->tail, memory_order_acquire) > cap)
		;
	const uint64_t end = SEQ_END;
	memcpy(ring + head % cap, &end, 8);
	/* pairs with the consumer's acquire load of head */
	atomic_store_explicit(&ctl->head, head + slot, memory_order_release);

	int st;
	if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st)) {
		fprintf(stderr, "llmp-ring: consumer failed\n");
		return 1;
	}
	double el = (double)(ctl->last_ns - ctl->first_ns) / 1e9;
	if (el <= 0)
		el = 1e-9;
	uint64_t lost = n - ctl->got;
	printf("name=ring size=%zu msgs=%llu msgs_per_s=%.0f MBps=%.1f lost=%llu bad=%llu\n", size,
	       (unsigned long long)ctl->got, (double)ctl->got / el,
	       (double)ctl->got * (double)size / el / 1e6, (unsigned long long)lost,
	       (unsigned long long)ctl->bad);
	free(payload);
	return (ctl->bad || lost) ? 1 : 0;
}
