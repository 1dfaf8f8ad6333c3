// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * The shmem server itself: scale, lifetime, who it is and where its socket
 * lives.  Promises guarded: a thousand segments leave nothing behind; sizes
 * from 1 byte to 256 MiB; concurrent client processes; a second server on a
 * path is refused; filesystem socket paths work; stop in a forked child
 * leaves the parent's server running; other users are refused; a process
 * server dies with its starter; the environment names the server; a server
 * of another uid is refused, the default socket is in a private directory
 * and a directory that is not private is refused (issue 8 finding 5); only
 * a stale socket is replaced (issue 8 finding 14).
 */
#include "shmem_served_fixture.h"

/* ---- scale ----------------------------------------------------------------- */

TEST_F(served, thousand_segments_no_leak)
{
	enum { N = 1000 };
	struct llmp_shmem **m = calloc(N, sizeof(*m));

	ASSERT_NE(NULL, m);
	for (int i = 0; i < N; i++) {
		ASSERT_EQ(0, llmp_shmem_new(self->p, 4096, &m[i]));
		*(int *)llmp_shmem_addr(m[i]) = i;
	}
	ASSERT_EQ(N, server_segments(self->path, NULL));
	ASSERT_EQ(N, server_memfds(self->server_pid));
	for (int i = 0; i < N; i++) {
		ASSERT_EQ(i, *(int *)llmp_shmem_addr(m[i]));
		llmp_shmem_put(m[i]);
	}
	free(m);
	ASSERT_EQ(0, server_segments(self->path, NULL));
	ASSERT_EQ(0, server_memfds(self->server_pid));
}

TEST_F(served, sizes_1B_to_256MiB)
{
	static const size_t sizes[] = { 1, 7, 4095, 4096, 4097, 65537, 1 << 20, 256u << 20 };
	struct llmp_provider *p2;

	ASSERT_EQ(0, llmp_provider_new_served(self->path, &p2));
	for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
		size_t len = sizes[k], step = len > (1 << 20) ? 4093 : 1;
		struct llmp_shmem *a, *b;
		unsigned char *pa, *pb;
		uint64_t seed = len, ha = 0xcbf29ce484222325ULL, hb = ha;

		ASSERT_EQ(0, llmp_shmem_new(self->p, len, &a));
		ASSERT_EQ(len, llmp_shmem_size(a));
		pa = llmp_shmem_addr(a);
		for (size_t i = 0; i < len; i += step)
			pa[i] = (unsigned char)llmp_test_rand(&seed);
		pa[len - 1] = 0xee;
		for (size_t i = 0; i < len; i += step)
			ha = (ha ^ pa[i]) * 0x100000001b3ULL;
		ASSERT_EQ(0, llmp_shmem_attach(p2, llmp_shmem_desc(a), &b));
		ASSERT_EQ(len, llmp_shmem_size(b));
		pb = llmp_shmem_addr(b);
		ASSERT_EQ(0xee, pb[len - 1]);
		for (size_t i = 0; i < len; i += step)
			hb = (hb ^ pb[i]) * 0x100000001b3ULL;
		ASSERT_EQ(ha, hb);
		llmp_shmem_put(b);
		llmp_shmem_put(a);
	}
	llmp_provider_free(p2);
	ASSERT_EQ(0, server_segments(self->path, NULL));
}

/* Several client processes at once, each its own connection, sharing segments. */
TEST_F(served, concurrent_client_processes)
{
	enum { PROCS = 4, ROUNDS = 150 };
	struct llmp_shmem *shared;
	pid_t pids[PROCS];

	ASSERT_EQ(0, llmp_shmem_new(self->p, 4096, &shared));
	memset(llmp_shmem_addr(shared), 0, 4096);
	for (int k = 0; k < PROCS; k++) {
		pids[k] = fork();
		ASSERT_LE(0, pids[k]);
		if (pids[k] == 0) {
			struct llmp_provider *p;
			struct llmp_shmem *a, *b, *sh;

			if (llmp_provider_new_served(self->path, &p) < 0)
				_exit(1);
			if (llmp_shmem_attach(p, llmp_shmem_desc(shared), &sh) < 0)
				_exit(2);
			for (int i = 0; i < ROUNDS; i++) {
				if (llmp_shmem_new(p, 8192, &a) < 0)
					_exit(3);
				memset(llmp_shmem_addr(a), k + 1, 8192);
				if (llmp_shmem_attach(p, llmp_shmem_desc(a), &b) < 0)
					_exit(4);
				if (((unsigned char *)llmp_shmem_addr(b))[8191] != k + 1)
					_exit(5);
				llmp_shmem_put(a);
				llmp_shmem_put(b);
			}
			/* Each process owns its own byte of the shared page. */
			((unsigned char *)llmp_shmem_addr(sh))[k] = (unsigned char)(0xa0 + k);
			llmp_shmem_put(sh);
			llmp_provider_free(p);
			_exit(0);
		}
	}
	for (int k = 0; k < PROCS; k++) {
		int status;

		ASSERT_EQ(pids[k], waitpid(pids[k], &status, 0));
		ASSERT_TRUE(WIFEXITED(status));
		ASSERT_EQ(0, WEXITSTATUS(status));
		ASSERT_EQ(0xa0 + k, ((unsigned char *)llmp_shmem_addr(shared))[k]);
	}
	ASSERT_EQ(1, wait_segments(self->path, 1));
	llmp_shmem_put(shared);
	ASSERT_EQ(0, server_segments(self->path, NULL));
	ASSERT_EQ(0, server_memfds(self->server_pid));
}

/* ---- servers and paths ----------------------------------------------------- */

TEST(second_server_on_a_path_is_refused)
{
	struct llmp_shmem_server *a, *b = (void *)1;
	char path[64];

	snprintf(path, sizeof(path), "@llmp-served-test-busy-%d", (int)getpid());
	ASSERT_EQ(0, llmp_shmem_server_start(path, LLMP_SHMEM_SERVER_THREAD, &a));
	ASSERT_EQ(-EADDRINUSE, llmp_shmem_server_start(path, LLMP_SHMEM_SERVER_PROCESS, &b));
	ASSERT_EQ(NULL, b);
	ASSERT_NE(NULL, strstr(llmp_strerror_last(), "already listens"));
	llmp_shmem_server_stop(a);
	/* Free again once stopped. */
	ASSERT_EQ(0, llmp_shmem_server_start(path, LLMP_SHMEM_SERVER_PROCESS, &a));
	llmp_shmem_server_stop(a);
	ASSERT_EQ(-EINVAL, llmp_shmem_server_start("", LLMP_SHMEM_SERVER_THREAD, &a));
	ASSERT_EQ(-EINVAL, llmp_shmem_server_start("@", LLMP_SHMEM_SERVER_THREAD, &a));
	ASSERT_EQ(-EINVAL, llmp_shmem_server_start(path, 5, &a));
}

TEST(filesystem_socket_path)
{
	struct llmp_shmem_server *s;
	struct llmp_provider *p;
	struct llmp_shmem *m;
	struct sockaddr_un sa;
	struct stat st;
	char path[64];
	int fd;

	snprintf(path, sizeof(path), "/tmp/llmp-served-test-%d.sock", (int)getpid());
	/* A stale socket file of a dead server is replaced. */
	unlink(path);
	fd = socket(AF_UNIX, SOCK_STREAM, 0);
	ASSERT_LE(0, fd);
	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	strcpy(sa.sun_path, path);
	ASSERT_EQ(0, bind(fd, (struct sockaddr *)&sa, sizeof(sa)));
	close(fd);
	ASSERT_EQ(0, stat(path, &st));
	ASSERT_EQ(0, llmp_shmem_server_start(path, LLMP_SHMEM_SERVER_PROCESS, &s));
	ASSERT_EQ(0, llmp_provider_new_served(path, &p));
	ASSERT_EQ(0, llmp_shmem_new(p, 4096, &m));
	llmp_shmem_put(m);
	llmp_provider_free(p);
	llmp_shmem_server_stop(s);
	ASSERT_EQ(-1, stat(path, &st));
	ASSERT_EQ(ENOENT, errno);
}

static int process_alive(pid_t pid)
{
	char p[64], buf[256], *rp;
	int fd, n;

	snprintf(p, sizeof(p), "/proc/%d/stat", (int)pid);
	fd = open(p, O_RDONLY);
	if (fd < 0)
		return 0;
	n = (int)read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = 0;
	rp = strrchr(buf, ')');
	return !(rp && rp[1] == ' ' && (rp[2] == 'Z' || rp[2] == 'X'));
}

/* stop() in a forked child leaves the parent's server running. */
TEST_F(served, stop_in_forked_child_leaves_server)
{
	struct llmp_shmem *m;
	int status;
	pid_t pid;

	ASSERT_EQ(0, llmp_shmem_new(self->p, 4096, &m));
	pid = fork();
	ASSERT_LE(0, pid);
	if (pid == 0) {
		llmp_shmem_server_stop(self->srv);
		_exit(0);
	}
	ASSERT_EQ(pid, waitpid(pid, &status, 0));
	ASSERT_TRUE(WIFEXITED(status));
	ASSERT_EQ(0, WEXITSTATUS(status));
	ASSERT_EQ(1, server_segments(self->path, NULL));
	llmp_shmem_put(m);
	ASSERT_EQ(0, llmp_shmem_new(self->p, 4096, &m));
	llmp_shmem_put(m);
	ASSERT_EQ(0, server_segments(self->path, NULL));
}

/* Another user (not root) is refused, with a reason. */
TEST_F(served, other_users_are_refused)
{
	int status;
	pid_t pid;

	if (geteuid() != 0)
		SKIP(return, "needs root to become another user");
	pid = fork();
	ASSERT_LE(0, pid);
	if (pid == 0) {
		struct llmp_provider *p;
		int ret;

		if (setresgid(65534, 65534, 65534) || setresuid(65534, 65534, 65534))
			_exit(1);
		ret = llmp_provider_new_served(self->path, &p);
		if (ret != -EACCES)
			_exit(2);
		if (!strstr(llmp_strerror_last(), "uid 65534"))
			_exit(3);
		_exit(0);
	}
	ASSERT_EQ(pid, waitpid(pid, &status, 0));
	ASSERT_TRUE(WIFEXITED(status));
	ASSERT_EQ(0, WEXITSTATUS(status));
	/* Our own user still gets served. */
	struct llmp_shmem *m;

	ASSERT_EQ(0, llmp_shmem_new(self->p, 4096, &m));
	llmp_shmem_put(m);
}

/* A PROCESS server dies with the process that started it. */
TEST(process_server_dies_with_its_starter)
{
	int pfd[2], status;
	pid_t pid, server = 0;
	char path[64];

	snprintf(path, sizeof(path), "@llmp-served-test-orphan-%d", (int)getpid());
	ASSERT_EQ(0, pipe(pfd));
	pid = fork();
	ASSERT_LE(0, pid);
	if (pid == 0) {
		struct llmp_shmem_server *srv;
		pid_t sp = 0;

		if (llmp_shmem_server_start(path, LLMP_SHMEM_SERVER_PROCESS, &srv) < 0)
			_exit(1);
		if (server_segments(path, &sp) != 0 || write(pfd[1], &sp, sizeof(sp)) != sizeof(sp))
			_exit(2);
		_exit(0); /* no stop */
	}
	close(pfd[1]);
	ASSERT_EQ(sizeof(server), read(pfd[0], &server, sizeof(server)));
	close(pfd[0]);
	ASSERT_EQ(pid, waitpid(pid, &status, 0));
	ASSERT_TRUE(WIFEXITED(status));
	ASSERT_EQ(0, WEXITSTATUS(status));
	ASSERT_LT(0, server);
	/* Gone, or a zombie waiting for whoever reaps orphans here. */
	for (int i = 0; i < 500 && process_alive(server); i++)
		usleep(10000);
	ASSERT_FALSE(process_alive(server));
	ASSERT_GT(0, server_segments(path, NULL));
}

TEST(env_and_missing_server)
{
	struct llmp_shmem_server *s;
	struct llmp_provider *p = (void *)1;
	char path[64];

	snprintf(path, sizeof(path), "@llmp-served-test-none-%d", (int)getpid());
	ASSERT_EQ(-ECONNREFUSED, llmp_provider_new_served(path, &p));
	ASSERT_EQ(NULL, p);
	ASSERT_NE(NULL, strstr(llmp_strerror_last(), "no shmem server"));
	/* llmp_provider_new(SERVED) finds the server through $LLMP_SHMEM_SERVER. */
	setenv("LLMP_SHMEM_SERVER", path, 1);
	ASSERT_EQ(-ECONNREFUSED, llmp_provider_new(LLMP_SHMEM_SERVED, &p));
	ASSERT_EQ(0, llmp_shmem_server_start(path, LLMP_SHMEM_SERVER_THREAD, &s));
	ASSERT_EQ(0, llmp_provider_new(LLMP_SHMEM_SERVED, &p));
	llmp_provider_free(p);
	llmp_shmem_server_stop(s);
	unsetenv("LLMP_SHMEM_SERVER");
}

/* ---- who the server is, and where its socket lives (issue 8) ---------------- */

/* A fresh directory for one test's sockets, removed by rm_tree(). */
static void make_base(char *base, size_t cap)
{
	snprintf(base, cap, "/tmp/llmp-served-test-XXXXXX");
	if (!mkdtemp(base))
		base[0] = '\0';
}

static void rm_tree(const char *base)
{
	char cmd[300];

	if (!base[0])
		return;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", base);
	if (system(cmd) != 0)
		fprintf(stderr, "# could not remove %s\n", base);
}

/*
 * A server run by `nobody` in a forked child (the parent must be root),
 * serving at path until it is killed.  chown_dir: a directory to give to
 * nobody first (for a filesystem path).  Returns its pid; *ready is 1 once
 * it listens.
 */
static pid_t start_rogue_server(const char *path, const char *chown_dir, int *ready)
{
	int up[2];
	char byte = 0;
	pid_t pid;

	*ready = 0;
	if (pipe(up) < 0)
		return -1;
	if (chown_dir && chown(chown_dir, 65534, 65534) < 0)
		return -1;
	fflush(NULL);
	pid = fork();
	if (pid == 0) {
		struct llmp_shmem_server *srv;

		close(up[0]);
		if (setresgid(65534, 65534, 65534) || setresuid(65534, 65534, 65534))
			_exit(1);
		if (llmp_shmem_server_start(path, LLMP_SHMEM_SERVER_THREAD, &srv) < 0)
			_exit(2);
		if (write(up[1], "r", 1) != 1)
			_exit(3);
		for (;;)
			pause();
	}
	close(up[1]);
	if (pid > 0 && read(up[0], &byte, 1) == 1)
		*ready = 1;
	close(up[0]);
	return pid;
}

/*
 * Issue 8 finding 5: a provider refuses a server that runs as another user
 * (not root): such a server would see every segment it hands out.  Root
 * forks a server that becomes `nobody`, on an abstract name (anyone can
 * claim one) and on a filesystem path; root's provider must refuse both
 * with -EACCES naming uid 65534, whether the path is given or comes from
 * $LLMP_SHMEM_SERVER.
 */
TEST(rogue_server_of_another_uid_is_refused)
{
	char base[64], fspath[128], abspath[64];
	const char *paths[2] = { abspath, fspath };
	struct llmp_provider *p = NULL;

	if (geteuid() != 0)
		SKIP(return, "needs root to run a server as another user (nobody)");
	make_base(base, sizeof(base));
	ASSERT_NE('\0', base[0]);
	snprintf(abspath, sizeof(abspath), "@llmp-served-test-rogue-%d", (int)getpid());
	snprintf(fspath, sizeof(fspath), "%s/rogue.sock", base);
	for (int i = 0; i < 2; i++) {
		int ready, status, ret;
		pid_t pid = start_rogue_server(paths[i], i == 1 ? base : NULL, &ready);

		ASSERT_LT(0, pid);
		ASSERT_EQ(1, ready) TH_LOG("the rogue server did not start on %s", paths[i]);
		ret = llmp_provider_new_served(paths[i], &p);
		EXPECT_EQ(-EACCES, ret) TH_LOG("%s: %s", paths[i], llmp_strerror_last());
		EXPECT_NE(NULL, strstr(llmp_strerror_last(), "uid 65534"))
			TH_LOG("%s", llmp_strerror_last());
		if (ret == 0)
			llmp_provider_free(p);
		setenv("LLMP_SHMEM_SERVER", paths[i], 1);
		p = NULL;
		ret = llmp_provider_new(LLMP_SHMEM_SERVED, &p);
		unsetenv("LLMP_SHMEM_SERVER");
		EXPECT_EQ(-EACCES, ret);
		if (ret == 0)
			llmp_provider_free(p);
		kill(pid, SIGKILL);
		ASSERT_EQ(pid, waitpid(pid, &status, 0));
	}
	rm_tree(base);
}

/* The environment of a test of the default path: only TMPDIR (and maybe XDG_RUNTIME_DIR). */
static void default_env(const char *tmpdir, const char *xdg)
{
	unsetenv("LLMP_SHMEM_SERVER");
	setenv("TMPDIR", tmpdir, 1);
	if (xdg)
		setenv("XDG_RUNTIME_DIR", xdg, 1);
	else
		unsetenv("XDG_RUNTIME_DIR");
}

/*
 * Issue 8 finding 5: with no path given, server and provider meet at a
 * socket in a private directory, not on a name any user can claim:
 * ${TMPDIR}/llmp-<euid>/shmem-server.sock (made 0700), or
 * $XDG_RUNTIME_DIR/llmp-shmem-server.sock.  End to end: bytes written
 * through one default provider are read through another.
 */
TEST(default_path_is_private_and_works)
{
	char base[64], want[160], got[128], xdg[96];
	struct llmp_shmem_server *s;
	struct stat st;

	make_base(base, sizeof(base));
	ASSERT_NE('\0', base[0]);
	snprintf(xdg, sizeof(xdg), "%s/xdg", base);
	ASSERT_EQ(0, mkdir(xdg, 0700));
	for (int round = 0; round < 2; round++) {
		struct llmp_provider *a, *b;
		struct llmp_shmem *m, *n;
		unsigned char *x;

		default_env(base, round ? xdg : NULL);
		if (round)
			snprintf(want, sizeof(want), "%s/llmp-shmem-server.sock", xdg);
		else
			snprintf(want, sizeof(want), "%s/llmp-%u/shmem-server.sock", base,
				 (unsigned)geteuid());
		ASSERT_EQ(0, llmp_shmem_server_default_path(got, sizeof(got)))
			TH_LOG("%s", llmp_strerror_last());
		ASSERT_STREQ(want, got);
		if (!round) {
			/* made by the call above: ours, 0700, a real directory */
			*strrchr(want, '/') = '\0';
			ASSERT_EQ(0, lstat(want, &st));
			ASSERT_TRUE(S_ISDIR(st.st_mode));
			ASSERT_EQ(geteuid(), st.st_uid);
			ASSERT_EQ(0700u, st.st_mode & 07777u);
			strcat(want, "/shmem-server.sock");
		}
		ASSERT_EQ(0, llmp_shmem_server_start(NULL, LLMP_SHMEM_SERVER_PROCESS, &s))
			TH_LOG("%s", llmp_strerror_last());
		ASSERT_EQ(0, lstat(want, &st)) TH_LOG("no socket at %s", want);
		ASSERT_TRUE(S_ISSOCK(st.st_mode));
		ASSERT_EQ(0, llmp_provider_new(LLMP_SHMEM_SERVED, &a)) TH_LOG("%s",
									     llmp_strerror_last());
		ASSERT_EQ(0, llmp_provider_new_served(NULL, &b));
		ASSERT_EQ(0, llmp_shmem_new(a, 8192, &m));
		fill(llmp_shmem_addr(m), 8192, 77 + round);
		ASSERT_EQ(0, llmp_shmem_attach(b, llmp_shmem_desc(m), &n));
		x = llmp_shmem_addr(n);
		ASSERT_EQ(llmp_test_fnv(llmp_shmem_addr(m), 8192), llmp_test_fnv(x, 8192));
		llmp_shmem_put(n);
		llmp_shmem_put(m);
		llmp_provider_free(b);
		llmp_provider_free(a);
		llmp_shmem_server_stop(s);
		ASSERT_EQ(-1, lstat(want, &st)); /* removed at stop */
	}
	rm_tree(base);
}

/* Both ends refuse the default path with -EPERM and a message containing why. */
static void expect_default_refused(struct __test_metadata *_metadata, const char *why)
{
	struct llmp_shmem_server *s = (void *)1;
	struct llmp_provider *p = (void *)1;
	char got[128];

	EXPECT_EQ(-EPERM, llmp_shmem_server_default_path(got, sizeof(got)));
	EXPECT_EQ(-EPERM, llmp_shmem_server_start(NULL, LLMP_SHMEM_SERVER_THREAD, &s));
	EXPECT_NE(NULL, strstr(llmp_strerror_last(), why)) TH_LOG("%s", llmp_strerror_last());
	EXPECT_EQ(NULL, s);
	EXPECT_EQ(-EPERM, llmp_provider_new(LLMP_SHMEM_SERVED, &p));
	EXPECT_NE(NULL, strstr(llmp_strerror_last(), why)) TH_LOG("%s", llmp_strerror_last());
	EXPECT_EQ(NULL, p);
}

/*
 * Issue 8 finding 5: a default directory someone else could write into is
 * refused by server and provider alike: one of another owner (root only),
 * one of mode 0755, a symlink to a good directory, and an
 * $XDG_RUNTIME_DIR that is not private.
 */
TEST(default_dir_not_private_is_refused)
{
	char base[64], dir[96], real[96], xdg[96];

	make_base(base, sizeof(base));
	ASSERT_NE('\0', base[0]);
	default_env(base, NULL);
	snprintf(dir, sizeof(dir), "%s/llmp-%u", base, (unsigned)geteuid());
	snprintf(real, sizeof(real), "%s/real", base);
	snprintf(xdg, sizeof(xdg), "%s/xdg", base);

	ASSERT_EQ(0, mkdir(dir, 0700));
	ASSERT_EQ(0, chmod(dir, 0755));
	expect_default_refused(_metadata, "mode 0755");

	ASSERT_EQ(0, rmdir(dir));
	ASSERT_EQ(0, mkdir(real, 0700));
	ASSERT_EQ(0, symlink(real, dir));
	expect_default_refused(_metadata, "symlink");
	ASSERT_EQ(0, unlink(dir));

	ASSERT_EQ(0, mkdir(xdg, 0700));
	ASSERT_EQ(0, chmod(xdg, 0711));
	default_env(base, xdg);
	expect_default_refused(_metadata, "mode 0711");
	default_env(base, NULL);

	if (geteuid() == 0) {
		ASSERT_EQ(0, mkdir(dir, 0700));
		ASSERT_EQ(0, chown(dir, 65534, 65534));
		expect_default_refused(_metadata, "uid 65534");
	} else {
		TH_LOG("not root: the other-owner case is not run");
	}
	rm_tree(base);
}

/*
 * Issue 8 finding 14: the server replaces only a stale socket at its path.
 * A regular file, a symlink or a directory there is refused (-EEXIST) and
 * left exactly as it was; a live server's socket gives -EADDRINUSE and
 * keeps serving; and stop removes only the socket it bound, not a file
 * that took its place.
 */
TEST(server_removes_only_a_stale_socket)
{
	char base[64], path[96], target[96], buf[16];
	struct llmp_shmem_server *s = NULL, *t = (void *)1;
	struct llmp_provider *p;
	struct stat st;
	int fd;

	make_base(base, sizeof(base));
	ASSERT_NE('\0', base[0]);
	snprintf(path, sizeof(path), "%s/s.sock", base);
	snprintf(target, sizeof(target), "%s/target", base);

	/* a regular file */
	fd = open(path, O_CREAT | O_WRONLY | O_EXCL, 0600);
	ASSERT_LE(0, fd);
	ASSERT_EQ(8, write(fd, "precious", 8));
	close(fd);
	ASSERT_EQ(-EEXIST, llmp_shmem_server_start(path, LLMP_SHMEM_SERVER_THREAD, &t));
	ASSERT_EQ(NULL, t);
	ASSERT_NE(NULL, strstr(llmp_strerror_last(), "regular file")) TH_LOG("%s",
									     llmp_strerror_last());
	fd = open(path, O_RDONLY);
	ASSERT_LE(0, fd) TH_LOG("the server removed a regular file");
	ASSERT_EQ(8, read(fd, buf, sizeof(buf)));
	ASSERT_EQ(0, memcmp(buf, "precious", 8));
	close(fd);
	ASSERT_EQ(0, rename(path, target));

	/* a symlink (to that file) */
	ASSERT_EQ(0, symlink(target, path));
	ASSERT_EQ(-EEXIST, llmp_shmem_server_start(path, LLMP_SHMEM_SERVER_PROCESS, &t));
	ASSERT_NE(NULL, strstr(llmp_strerror_last(), "symlink"));
	ASSERT_EQ(0, lstat(path, &st));
	ASSERT_TRUE(S_ISLNK(st.st_mode));
	ASSERT_EQ(0, stat(target, &st));
	ASSERT_EQ(8, st.st_size);
	ASSERT_EQ(0, unlink(path));

	/* a directory */
	ASSERT_EQ(0, mkdir(path, 0700));
	ASSERT_EQ(-EEXIST, llmp_shmem_server_start(path, LLMP_SHMEM_SERVER_THREAD, &t));
	ASSERT_NE(NULL, strstr(llmp_strerror_last(), "directory"));
	ASSERT_EQ(0, lstat(path, &st));
	ASSERT_TRUE(S_ISDIR(st.st_mode));
	ASSERT_EQ(0, rmdir(path));

	/* a live server's socket: refused, and that server keeps serving */
	ASSERT_EQ(0, llmp_shmem_server_start(path, LLMP_SHMEM_SERVER_PROCESS, &s));
	ASSERT_EQ(-EADDRINUSE, llmp_shmem_server_start(path, LLMP_SHMEM_SERVER_THREAD, &t));
	ASSERT_EQ(0, llmp_provider_new_served(path, &p));
	llmp_provider_free(p);

	/* stop removes its own socket only: here a file took its place */
	ASSERT_EQ(0, unlink(path));
	fd = open(path, O_CREAT | O_WRONLY | O_EXCL, 0600);
	ASSERT_LE(0, fd);
	close(fd);
	llmp_shmem_server_stop(s);
	ASSERT_EQ(0, lstat(path, &st)) TH_LOG("stop removed a file that was not its socket");
	ASSERT_TRUE(S_ISREG(st.st_mode));
	rm_tree(base);
}

/* Issue 8 finding 14, through the tool: llmp-shmem-server refuses a regular file. */
TEST(tool_refuses_a_regular_file)
{
	char base[64], path[96], tool[4200], cmd[4400];
	struct stat st;
	int fd, status;

	if (!llmp_test_tool_path("llmp-shmem-server", tool, sizeof(tool)))
		SKIP(return, "llmp-shmem-server not built beside the tests");
	make_base(base, sizeof(base));
	ASSERT_NE('\0', base[0]);
	snprintf(path, sizeof(path), "%s/file", base);
	fd = open(path, O_CREAT | O_WRONLY | O_EXCL, 0600);
	ASSERT_LE(0, fd);
	ASSERT_EQ(3, write(fd, "abc", 3));
	close(fd);
	snprintf(cmd, sizeof(cmd), "'%s' '%s' 2>/dev/null", tool, path);
	status = system(cmd);
	ASSERT_TRUE(WIFEXITED(status));
	ASSERT_EQ(1, WEXITSTATUS(status));
	ASSERT_EQ(0, lstat(path, &st));
	ASSERT_TRUE(S_ISREG(st.st_mode));
	ASSERT_EQ(3, st.st_size);
	rm_tree(base);
}

TEST_HARNESS_MAIN
