// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * llmp-shmem-server: run the SERVED provider's segment server on its own,
 * so unrelated processes (fuzzers started separately) share memfd segments
 * without one of them hosting the server.  Runs until SIGINT or SIGTERM.
 *
 *   llmp-shmem-server [SOCKET_PATH]
 *
 * Default path: $XDG_RUNTIME_DIR/llmp-shmem-server.sock, else
 * ${TMPDIR:-/tmp}/llmp-<euid>/shmem-server.sock (a private directory, see
 * llmp_shmem_server_default_path()).  A leading @ names an abstract socket.
 * Only a stale socket file at the path is ever replaced.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "llmp/shmem.h"

static void log_stderr(void *ctx, enum llmp_log_level level, const char *msg)
{
	(void)ctx;
	(void)level;
	fprintf(stderr, "llmp-shmem-server: %s\n", msg);
}

int main(int argc, char **argv)
{
	char defpath[128];
	const char *path = NULL;
	struct llmp_shmem_server *srv;
	sigset_t set;
	int sig, ret;

	if (argc > 2 || (argc == 2 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")))) {
		fprintf(stderr, "usage: %s [SOCKET_PATH]  (default $XDG_RUNTIME_DIR/"
			"llmp-shmem-server.sock, else ${TMPDIR:-/tmp}/llmp-<uid>/shmem-server.sock;"
			" leading @ = abstract)\n", argv[0]);
		return 2;
	}
	llmp_set_log(log_stderr, NULL, LLMP_LOG_WARN);
	if (argc == 2) {
		path = argv[1];
	} else {
		ret = llmp_shmem_server_default_path(defpath, sizeof(defpath));
		if (ret < 0) {
			fprintf(stderr, "llmp-shmem-server: no default socket path: %s\n",
				llmp_strerror_last());
			return 1;
		}
		path = defpath;
	}

	/* Block the stop signals before the server thread starts, so it inherits the mask. */
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	if (sigprocmask(SIG_BLOCK, &set, NULL)) {
		perror("sigprocmask");
		return 1;
	}
	ret = llmp_shmem_server_start(path, LLMP_SHMEM_SERVER_THREAD, &srv);
	if (ret < 0) {
		fprintf(stderr, "llmp-shmem-server: cannot serve on %s: %s\n", path,
			llmp_strerror_last());
		return 1;
	}
	printf("llmp-shmem-server: serving on %s (set LLMP_SHMEM_SERVER=%s for clients)\n", path,
	       path);
	fflush(stdout);
	do {
		ret = sigwait(&set, &sig);
	} while (ret == EINTR);
	llmp_shmem_server_stop(srv);
	printf("llmp-shmem-server: stopped\n");
	return 0;
}
