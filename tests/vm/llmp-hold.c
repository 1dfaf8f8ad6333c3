// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * llmp-hold: create one KMOD segment, write a pattern into it, print its
 * description and "held" on stdout, then keep the segment (fd + mapping)
 * until SIGTERM/SIGINT/SIGKILL. The VM init uses it to check that
 * `rmmod llmp` is refused while a segment is alive and succeeds after.
 *
 *   llmp-hold [SIZE]      exit 0 after a signal, 1 on any error (reason on stderr)
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "llmp/shmem.h"

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

int main(int argc, char **argv)
{
	struct llmp_provider *p;
	struct llmp_shmem *m;
	struct sigaction sa;
	size_t size = 65536;
	unsigned char *b;
	int ret;

	if (argc > 1)
		size = strtoul(argv[1], NULL, 0);
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);

	ret = llmp_provider_new(LLMP_SHMEM_KMOD, &p);
	if (ret < 0) {
		fprintf(stderr, "llmp-hold: KMOD provider: %s (%s)\n", strerror(-ret),
			llmp_strerror_last());
		return 1;
	}
	ret = llmp_shmem_new(p, size, &m);
	if (ret < 0) {
		fprintf(stderr, "llmp-hold: segment of %zu bytes: %s (%s)\n", size,
			strerror(-ret), llmp_strerror_last());
		llmp_provider_free(p);
		return 1;
	}
	b = llmp_shmem_addr(m);
	for (size_t i = 0; i < llmp_shmem_size(m); i++)
		b[i] = (unsigned char)(i * 31 + 7);
	printf("id %s size %zu\nheld\n", llmp_shmem_desc(m)->id, llmp_shmem_size(m));
	fflush(stdout);

	while (!stop)
		pause();

	/* The pattern must still be intact when we let go. */
	ret = 0;
	for (size_t i = 0; i < llmp_shmem_size(m); i++) {
		if (b[i] != (unsigned char)(i * 31 + 7)) {
			fprintf(stderr, "llmp-hold: byte %zu changed\n", i);
			ret = 1;
			break;
		}
	}
	llmp_shmem_put(m);
	llmp_provider_free(p);
	return ret;
}
