// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * SERVED provider and the shmem server, in both server modes (a thread of
 * this process, a forked server process): what it promises honest users.
 * Promises guarded: bytes shared across fork and fork+exec; the server's
 * reference counts (STAT and its open memfds) per connection, kept for an
 * attached copy when the owner releases, freed when a client is SIGKILLed;
 * fork handling (child reconnects, holds survive the parent's release);
 * creator pids in version-2 replies.  Hostile input is
 * shmem_served_input_test, scale and the server's identity and socket
 * shmem_served_server_test.
 */
#include "shmem_served_fixture.h"

/* ---- the exec'd child ------------------------------------------------------ */

/*
 * fork+exec test: /proc/self/exe is re-run with CHILD_ENV set; this
 * constructor runs before the harness's main.  It attaches by the
 * description in the environment (the server path in $LLMP_SHMEM_SERVER),
 * checks the parent's checksum, then inverts every byte.
 * Exit code: 0 ok, 10+ the step that failed.
 */
static void __attribute__((constructor)) served_exec_child(void)
{
	struct llmp_shmem_desc d;
	struct llmp_provider *p;
	struct llmp_shmem *m;
	const char *sum = getenv(CHILD_ENV);
	unsigned char *b;

	if (!sum)
		return;
	if (llmp_provider_new(LLMP_SHMEM_SERVED, &p) < 0)
		_exit(10);
	if (llmp_shmem_desc_from_env(DESC_ENV, &d) < 0)
		_exit(11);
	if (d.kind != LLMP_SHMEM_SERVED)
		_exit(12);
	if (llmp_shmem_attach(p, &d, &m) < 0)
		_exit(13);
	b = llmp_shmem_addr(m);
	if (llmp_test_fnv(b, llmp_shmem_size(m)) != strtoull(sum, NULL, 16))
		_exit(14);
	for (size_t i = 0; i < llmp_shmem_size(m); i++)
		b[i] = (unsigned char)~b[i];
	llmp_shmem_put(m);
	llmp_provider_free(p);
	_exit(0);
}

/* ---- sharing --------------------------------------------------------------- */

TEST_F(served, create_attach_share_bytes)
{
	struct llmp_provider *p2;
	struct llmp_shmem *a, *b;
	const struct llmp_shmem_desc *d;

	ASSERT_EQ(0, llmp_shmem_new(self->p, 65536, &a));
	d = llmp_shmem_desc(a);
	ASSERT_EQ(LLMP_SHMEM_SERVED, d->kind);
	ASSERT_EQ(65536, d->size);
	ASSERT_EQ(0, llmp_shmem_desc_check(d));
	ASSERT_TRUE(llmp_shmem_is_owner(a));
	ASSERT_EQ(0, ((uintptr_t)llmp_shmem_addr(a)) % 4096);
	/* zero-filled */
	for (size_t i = 0; i < 65536; i++)
		ASSERT_EQ(0, ((unsigned char *)llmp_shmem_addr(a))[i]);
	fill(llmp_shmem_addr(a), 65536, 7);

	ASSERT_EQ(0, llmp_provider_new_served(self->path, &p2));
	ASSERT_EQ(0, llmp_shmem_attach(p2, d, &b));
	ASSERT_FALSE(llmp_shmem_is_owner(b));
	ASSERT_EQ(65536, llmp_shmem_size(b));
	ASSERT_NE(llmp_shmem_addr(a), llmp_shmem_addr(b));
	ASSERT_EQ(llmp_test_fnv(llmp_shmem_addr(a), 65536),
		  llmp_test_fnv(llmp_shmem_addr(b), 65536));
	((unsigned char *)llmp_shmem_addr(b))[100] ^= 0xff;
	ASSERT_EQ(llmp_test_fnv(llmp_shmem_addr(a), 65536),
		  llmp_test_fnv(llmp_shmem_addr(b), 65536));
	ASSERT_EQ(1, server_segments(self->path, NULL));
	ASSERT_EQ(1, server_memfds(self->server_pid));

	/* A smaller description maps a prefix; a larger one is refused. */
	struct llmp_shmem_desc small = *d, big = *d;
	struct llmp_shmem *c;

	small.size = 100;
	ASSERT_EQ(0, llmp_shmem_attach(p2, &small, &c));
	ASSERT_EQ(100, llmp_shmem_size(c));
	ASSERT_EQ(0, memcmp(llmp_shmem_addr(c), llmp_shmem_addr(a), 100));
	llmp_shmem_put(c);
	big.size = 65537;
	ASSERT_EQ(-EINVAL, llmp_shmem_attach(p2, &big, &c));
	ASSERT_NE(NULL, strstr(llmp_strerror_last(), "65537"));

	llmp_shmem_put(a);
	ASSERT_EQ(1, server_segments(self->path, NULL)); /* p2 still holds it */
	llmp_shmem_put(b);
	ASSERT_EQ(0, server_segments(self->path, NULL));
	ASSERT_EQ(0, server_memfds(self->server_pid));
	llmp_provider_free(p2);
}

TEST_F(served, fork_exec_attach_by_env)
{
	struct llmp_shmem *m;
	char sum[32];
	size_t len = 1 << 20;
	int status;
	pid_t pid;

	ASSERT_EQ(0, llmp_shmem_new(self->p, len, &m));
	fill(llmp_shmem_addr(m), len, 42);
	snprintf(sum, sizeof(sum), "%llx",
		 (unsigned long long)llmp_test_fnv(llmp_shmem_addr(m), len));
	ASSERT_EQ(0, llmp_shmem_desc_to_env(llmp_shmem_desc(m), DESC_ENV));
	ASSERT_STREQ("served", getenv(DESC_ENV "_KIND"));
	pid = fork();
	ASSERT_LE(0, pid);
	if (pid == 0) {
		char *argv[] = { "shmem_served_test", NULL };

		setenv(CHILD_ENV, sum, 1);
		setenv("LLMP_SHMEM_SERVER", self->path, 1);
		execv("/proc/self/exe", argv);
		_exit(99);
	}
	ASSERT_EQ(pid, waitpid(pid, &status, 0));
	ASSERT_TRUE(WIFEXITED(status));
	ASSERT_EQ(0, WEXITSTATUS(status));
	/* The child inverted every byte. */
	unsigned char *b = llmp_shmem_addr(m), *want = malloc(len);

	ASSERT_NE(NULL, want);
	fill(want, len, 42);
	for (size_t i = 0; i < len; i++)
		want[i] = (unsigned char)~want[i];
	ASSERT_EQ(0, memcmp(want, b, len));
	free(want);
	/* The child released its reference: only ours is left. */
	ASSERT_EQ(1, server_segments(self->path, NULL));
	llmp_shmem_put(m);
	ASSERT_EQ(0, server_segments(self->path, NULL));
}

/* ---- reference counting ---------------------------------------------------- */

TEST_F(served, refcount_per_connection)
{
	struct raw_reply r;
	struct llmp_shmem *m;
	char id[LLMP_SHMEM_ID_LEN];
	int c1, c2;

	ASSERT_EQ(0, llmp_shmem_new(self->p, 4096, &m));
	memcpy(id, llmp_shmem_desc(m)->id, sizeof(id));
	c1 = raw_client(self->path);
	c2 = raw_client(self->path);
	ASSERT_LE(0, c1);
	ASSERT_LE(0, c2);
	/* c1 attaches twice, c2 once: 4 references. */
	ASSERT_EQ(0, raw_id_op(c1, SERVED_OP_ATTACH, id, &r));
	ASSERT_LE(0, r.fd);
	ASSERT_EQ(4096, r.r.size);
	ASSERT_STREQ(id, r.r.id);
	close(r.fd);
	ASSERT_EQ(0, raw_id_op(c1, SERVED_OP_ATTACH, id, &r));
	close(r.fd);
	ASSERT_EQ(0, raw_id_op(c2, SERVED_OP_ATTACH, id, &r));
	close(r.fd);
	/* RELEASE answers with the references left. */
	ASSERT_EQ(0, raw_id_op(c1, SERVED_OP_RELEASE, id, &r));
	ASSERT_EQ(3, r.r.value);
	llmp_shmem_put(m);
	ASSERT_EQ(1, server_segments(self->path, NULL));
	/* c2 never held a second reference. */
	ASSERT_EQ(0, raw_id_op(c2, SERVED_OP_RELEASE, id, &r));
	ASSERT_EQ(1, r.r.value);
	ASSERT_EQ(-ENOENT, raw_id_op(c2, SERVED_OP_RELEASE, id, &r));
	ASSERT_NE(NULL, strstr(r.msg, "holds no reference"));
	/* c1's last reference goes with its connection. */
	ASSERT_EQ(1, server_segments(self->path, NULL));
	ASSERT_EQ(1, server_memfds(self->server_pid));
	close(c1);
	ASSERT_EQ(0, wait_segments(self->path, 0));
	ASSERT_EQ(0, server_memfds(self->server_pid));
	/* Gone for good: the id is unknown now. */
	ASSERT_EQ(-ENOENT, raw_id_op(c2, SERVED_OP_ATTACH, id, &r));
	ASSERT_EQ(-1, r.fd);
	close(c2);
}

/* The creator's release does not free a segment someone else still holds. */
TEST_F(served, owner_release_keeps_attached_copy)
{
	struct llmp_provider *p2, *p3;
	struct llmp_shmem *m, *b, *c;
	struct llmp_shmem_desc d;

	ASSERT_EQ(0, llmp_provider_new_served(self->path, &p2));
	ASSERT_EQ(0, llmp_shmem_new(p2, 8192, &m));
	d = *llmp_shmem_desc(m);
	fill(llmp_shmem_addr(m), 8192, 11);
	ASSERT_EQ(0, llmp_shmem_attach(self->p, &d, &b));
	llmp_shmem_put(m);
	llmp_provider_free(p2);
	ASSERT_EQ(1, wait_segments(self->path, 1));
	/* Still findable by id from a third connection, with the same bytes. */
	ASSERT_EQ(0, llmp_provider_new_served(self->path, &p3));
	ASSERT_EQ(0, llmp_shmem_attach(p3, &d, &c));
	ASSERT_EQ(0, memcmp(llmp_shmem_addr(b), llmp_shmem_addr(c), 8192));
	llmp_shmem_put(c);
	llmp_provider_free(p3);
	llmp_shmem_put(b);
	ASSERT_EQ(0, server_segments(self->path, NULL));
	ASSERT_EQ(0, server_memfds(self->server_pid));
}

TEST_F(served, sigkill_client_leaves_nothing)
{
	char ids[3][LLMP_SHMEM_ID_LEN];
	int pfd[2], status;
	pid_t pid;

	ASSERT_EQ(0, pipe(pfd));
	pid = fork();
	ASSERT_LE(0, pid);
	if (pid == 0) {
		struct llmp_provider *p;
		struct llmp_shmem *m;

		close(pfd[0]);
		if (llmp_provider_new_served(self->path, &p) < 0)
			_exit(1);
		for (int i = 0; i < 3; i++) {
			if (llmp_shmem_new(p, 4096u << i, &m) < 0)
				_exit(2);
			memset(llmp_shmem_addr(m), 0xab, llmp_shmem_size(m));
			if (write(pfd[1], llmp_shmem_desc(m)->id, LLMP_SHMEM_ID_LEN) !=
			    LLMP_SHMEM_ID_LEN)
				_exit(3);
		}
		for (;;)
			pause();
	}
	close(pfd[1]);
	for (int i = 0; i < 3; i++)
		ASSERT_EQ(LLMP_SHMEM_ID_LEN, read(pfd[0], ids[i], LLMP_SHMEM_ID_LEN));
	close(pfd[0]);
	ASSERT_EQ(3, server_segments(self->path, NULL));
	ASSERT_EQ(3, server_memfds(self->server_pid));
	ASSERT_EQ(0, kill(pid, SIGKILL));
	ASSERT_EQ(pid, waitpid(pid, &status, 0));
	ASSERT_TRUE(WIFSIGNALED(status));
	ASSERT_EQ(0, wait_segments(self->path, 0));
	ASSERT_EQ(0, server_memfds(self->server_pid));
	/* Their ids are unknown now. */
	struct llmp_shmem_desc d;
	struct llmp_shmem *m;

	memset(&d, 0, sizeof(d));
	d.kind = LLMP_SHMEM_SERVED;
	d.size = 4096;
	memcpy(d.id, ids[0], sizeof(d.id));
	ASSERT_EQ(-ENOENT, llmp_shmem_attach(self->p, &d, &m));
	ASSERT_NE(NULL, strstr(llmp_strerror_last(), "no segment"));
}

/* ---- fork ------------------------------------------------------------------ */

TEST_F(served, fork_child_reconnects)
{
	struct llmp_shmem *s, *t;
	struct llmp_shmem_desc td;
	int up[2], down[2], status;
	pid_t pid;
	char go = 0;
	static unsigned char ref[16384];

	ASSERT_EQ(0, llmp_shmem_new(self->p, 16384, &s));
	fill(llmp_shmem_addr(s), 16384, 3);
	fill(ref, 16384, 3);
	ASSERT_EQ(0, pipe(up));
	ASSERT_EQ(0, pipe(down));
	ASSERT_EQ(0, llmp_provider_pre_fork(self->p));
	pid = fork();
	ASSERT_LE(0, pid);
	if (pid == 0) {
		struct llmp_shmem *t2, *s2;
		unsigned char ok;

		close(up[0]);
		close(down[1]);
		if (llmp_provider_post_fork(self->p, true) < 0)
			_exit(1);
		/* The inherited mapping is still good. */
		if (llmp_test_fnv(llmp_shmem_addr(s), 16384) != llmp_test_fnv(ref, 16384))
			_exit(2);
		/* Create and attach over the child's own connection. */
		if (llmp_shmem_new(self->p, 8192, &t2) < 0)
			_exit(3);
		fill(llmp_shmem_addr(t2), 8192, 4);
		if (llmp_shmem_attach(self->p, llmp_shmem_desc(s), &s2) < 0)
			_exit(4);
		llmp_shmem_put(s2);
		if (write(up[1], llmp_shmem_desc(t2), sizeof(struct llmp_shmem_desc)) !=
		    sizeof(struct llmp_shmem_desc))
			_exit(5);
		/* Wait until the parent has dropped s: our reference keeps it. */
		if (read(down[0], &ok, 1) != 1)
			_exit(6);
		if (((unsigned char *)llmp_shmem_addr(s))[0] != 0x5a)
			_exit(7);
		llmp_shmem_put(s);
		llmp_shmem_put(t2);
		llmp_provider_free(self->p);
		_exit(0);
	}
	close(up[1]);
	close(down[0]);
	ASSERT_EQ(0, llmp_provider_post_fork(self->p, false));
	ASSERT_EQ(sizeof(td), read(up[0], &td, sizeof(td)));
	/* The parent's connection still works, and sees the child's segment. */
	ASSERT_EQ(0, llmp_shmem_attach(self->p, &td, &t));
	ASSERT_EQ(8192, llmp_shmem_size(t));
	fill(ref, 8192, 4);
	ASSERT_EQ(0, memcmp(ref, llmp_shmem_addr(t), 8192));
	ASSERT_EQ(2, server_segments(self->path, NULL));
	((unsigned char *)llmp_shmem_addr(s))[0] = 0x5a;
	llmp_shmem_put(s);
	/* The child re-registered s after the fork, so it survives our release. */
	ASSERT_EQ(2, server_segments(self->path, NULL));
	ASSERT_EQ(1, write(down[1], &go, 1));
	ASSERT_EQ(pid, waitpid(pid, &status, 0));
	ASSERT_TRUE(WIFEXITED(status));
	ASSERT_EQ(0, WEXITSTATUS(status));
	ASSERT_EQ(1, wait_segments(self->path, 1)); /* t, held by us */
	llmp_shmem_put(t);
	ASSERT_EQ(0, server_segments(self->path, NULL));
	close(up[0]);
	close(down[1]);
}

/*
 * The race of LibAFL issue #276: the parent releases a segment (and even
 * closes its connection) before the child has connected.  pre_fork's hold
 * keeps the segment for the child.
 */
TEST_F(served, fork_hold_survives_parent_release)
{
	struct llmp_provider *pp;
	struct llmp_shmem *s;
	int down[2], status;
	pid_t pid;
	char go = 1;

	ASSERT_EQ(0, llmp_provider_new_served(self->path, &pp));
	ASSERT_EQ(0, llmp_shmem_new(pp, 4096, &s));
	memset(llmp_shmem_addr(s), 0x3c, 4096);
	ASSERT_EQ(0, pipe(down));
	ASSERT_EQ(0, llmp_provider_pre_fork(pp));
	pid = fork();
	ASSERT_LE(0, pid);
	if (pid == 0) {
		unsigned char ok;

		close(down[1]);
		if (read(down[0], &ok, 1) != 1)
			_exit(1);
		if (llmp_provider_post_fork(pp, true) < 0)
			_exit(2);
		if (((unsigned char *)llmp_shmem_addr(s))[4095] != 0x3c)
			_exit(3);
		/* The adopted reference is ours: releasing it frees the segment. */
		if (server_segments(self->path, NULL) != 1)
			_exit(4);
		llmp_shmem_put(s);
		if (server_segments(self->path, NULL) != 0)
			_exit(5);
		llmp_provider_free(pp);
		_exit(0);
	}
	close(down[0]);
	ASSERT_EQ(0, llmp_provider_post_fork(pp, false));
	llmp_shmem_put(s);
	llmp_provider_free(pp);
	ASSERT_EQ(1, wait_segments(self->path, 1)); /* kept by the hold */
	ASSERT_EQ(1, write(down[1], &go, 1));
	ASSERT_EQ(pid, waitpid(pid, &status, 0));
	ASSERT_TRUE(WIFEXITED(status));
	ASSERT_EQ(0, WEXITSTATUS(status));
	ASSERT_EQ(0, server_segments(self->path, NULL));
	close(down[1]);
}

TEST_F(served, fork_hold_raw_errors)
{
	struct served_adopt ad = { 0, 0 };
	struct raw_reply r;
	int a = raw_client(self->path), b = raw_client(self->path);

	ASSERT_LE(0, a);
	ASSERT_LE(0, b);
	ASSERT_EQ(-EINVAL, raw_call(a, SERVED_OP_HOLD, "x", 1, &r));
	ASSERT_EQ(-ENOENT, raw_call(a, SERVED_OP_ADOPT, &ad, sizeof(ad), &r));
	ad.hold = 12345;
	ASSERT_EQ(-ENOENT, raw_call(a, SERVED_OP_ADOPT, &ad, sizeof(ad), &r));
	ASSERT_NE(NULL, strstr(r.msg, "no fork hold 12345"));
	ASSERT_EQ(-EINVAL, raw_call(a, SERVED_OP_ADOPT, "abc", 3, &r));
	/* a holds one segment; its hold moves to b exactly once. */
	struct served_create cr = { .size = 4096 };

	ASSERT_EQ(0, raw_call(a, SERVED_OP_CREATE, &cr, sizeof(cr), &r));
	close(r.fd);
	ASSERT_EQ(0, raw_call(a, SERVED_OP_HOLD, NULL, 0, &r));
	ad.hold = r.r.value;
	ASSERT_NE(0, ad.hold);
	ad.reserved = 1;
	ASSERT_EQ(-EINVAL, raw_call(b, SERVED_OP_ADOPT, &ad, sizeof(ad), &r));
	ad.reserved = 0;
	ASSERT_EQ(0, raw_call(b, SERVED_OP_ADOPT, &ad, sizeof(ad), &r));
	ASSERT_EQ(-ENOENT, raw_call(b, SERVED_OP_ADOPT, &ad, sizeof(ad), &r));
	close(a);
	usleep(20000);
	ASSERT_EQ(1, server_segments(self->path, NULL)); /* b holds it now */
	close(b);
	ASSERT_EQ(0, wait_segments(self->path, 0));
}

TEST_F(served, fork_without_post_fork_gets_own_connection)
{
	struct llmp_shmem *s;
	int status;
	pid_t pid;

	ASSERT_EQ(0, llmp_shmem_new(self->p, 4096, &s));
	pid = fork();
	ASSERT_LE(0, pid);
	if (pid == 0) {
		struct llmp_shmem *t;

		/* No pre/post_fork: the first request reconnects on its own. */
		if (llmp_shmem_new(self->p, 4096, &t) < 0)
			_exit(1);
		llmp_shmem_put(t);
		llmp_shmem_put(s);
		llmp_provider_free(self->p);
		_exit(0);
	}
	ASSERT_EQ(pid, waitpid(pid, &status, 0));
	ASSERT_TRUE(WIFEXITED(status));
	ASSERT_EQ(0, WEXITSTATUS(status));
	/* The parent's connection and reference are intact. */
	ASSERT_EQ(1, wait_segments(self->path, 1));
	struct llmp_shmem *t;

	ASSERT_EQ(0, llmp_shmem_new(self->p, 4096, &t));
	ASSERT_EQ(2, server_segments(self->path, NULL));
	llmp_shmem_put(t);
	llmp_shmem_put(s);
	ASSERT_EQ(0, server_segments(self->path, NULL));
}

/* ---- creator pids (protocol version 2) ------------------------------------- */

/*
 * Version 2 replies name who created a segment (the pid of the connection
 * that sent CREATE, as the server sees it) and tell a client its own pid as
 * the server sees it; a version-1 connection gets zeros in those fields.
 */
TEST_F(served, creator_pid_in_replies)
{
	struct served_hello h1 = { .min_version = 1, .max_version = 1 };
	struct served_hello h2 = { .min_version = 1, .max_version = SERVED_VERSION_PIDS };
	struct served_create cr = { .size = 8192 };
	struct raw_reply r;
	char id[LLMP_SHMEM_ID_LEN], own[LLMP_SHMEM_ID_LEN];
	int v1, v2, sp[2], st;
	pid_t pid;

	ASSERT_EQ(2u, SERVED_VERSION_PIDS);
	v1 = raw_connect(self->path);
	v2 = raw_connect(self->path);
	ASSERT_LE(0, v1);
	ASSERT_LE(0, v2);
	ASSERT_EQ(0, raw_call_v(v1, 1, SERVED_OP_HELLO, &h1, sizeof(h1), &r));
	ASSERT_EQ(1u, r.r.value);
	ASSERT_EQ(0u, r.r.size);
	ASSERT_EQ(self->server_pid, (pid_t)r.r.pid);
	ASSERT_EQ(0, raw_call_v(v2, 2, SERVED_OP_HELLO, &h2, sizeof(h2), &r));
	ASSERT_EQ(2u, r.r.value);
	ASSERT_EQ((uint64_t)getpid(), r.r.size);
	/* Our own segment: CREATE names us. */
	ASSERT_EQ(0, raw_call_v(v2, 2, SERVED_OP_CREATE, &cr, sizeof(cr), &r));
	ASSERT_EQ((uint32_t)getpid(), r.r.pid);
	ASSERT_LE(0, r.fd);
	close(r.fd);
	memcpy(own, r.r.id, sizeof(own));
	/* A segment created by another process over its own connection. */
	ASSERT_EQ(0, socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp));
	fflush(NULL);
	pid = fork();
	ASSERT_LE(0, pid);
	if (pid == 0) {
		int fd = raw_connect(self->path);
		char b;

		close(sp[0]);
		if (fd < 0 || raw_call_v(fd, 2, SERVED_OP_HELLO, &h2, sizeof(h2), &r) != 0)
			_exit(2);
		if (r.r.size != (uint64_t)getpid())
			_exit(3);
		if (raw_call_v(fd, 2, SERVED_OP_CREATE, &cr, sizeof(cr), &r) != 0 ||
		    r.r.pid != (uint32_t)getpid())
			_exit(4);
		if (write(sp[1], r.r.id, sizeof(r.r.id)) != (ssize_t)sizeof(r.r.id))
			_exit(5);
		/* hold the segment until the parent says so */
		_exit(read(sp[1], &b, 1) == 1 ? 0 : 6);
	}
	close(sp[1]);
	ASSERT_EQ(sizeof(id), read(sp[0], id, sizeof(id)));
	ASSERT_EQ(0, raw_id_op(v2, SERVED_OP_ATTACH, id, &r));
	ASSERT_EQ((uint32_t)pid, r.r.pid);
	ASSERT_EQ(8192u, r.r.size);
	close(r.fd);
	ASSERT_EQ(0, raw_id_op(v2, SERVED_OP_ATTACH, own, &r));
	ASSERT_EQ((uint32_t)getpid(), r.r.pid);
	close(r.fd);
	/* Version 1: the same replies, creator field 0. */
	{
		struct served_id req;

		memset(&req, 0, sizeof(req));
		memcpy(req.id, id, sizeof(req.id));
		ASSERT_EQ(0, raw_call_v(v1, 1, SERVED_OP_ATTACH, &req, sizeof(req), &r));
		ASSERT_EQ(0u, r.r.pid);
		ASSERT_EQ(8192u, r.r.size);
		close(r.fd);
		ASSERT_EQ(0, raw_call_v(v1, 1, SERVED_OP_CREATE, &cr, sizeof(cr), &r));
		ASSERT_EQ(0u, r.r.pid);
		close(r.fd);
	}
	/* The creator exits; we hold its segment, which still names it. */
	ASSERT_EQ(1, write(sp[0], "x", 1));
	ASSERT_EQ(pid, waitpid(pid, &st, 0));
	ASSERT_TRUE(WIFEXITED(st));
	ASSERT_EQ(0, WEXITSTATUS(st));
	close(sp[0]);
	ASSERT_EQ(0, raw_id_op(v2, SERVED_OP_ATTACH, id, &r));
	ASSERT_EQ((uint32_t)pid, r.r.pid);
	close(r.fd);
	ASSERT_EQ(3, server_segments(self->path, NULL));
	close(v1);
	close(v2);
	ASSERT_EQ(0, wait_segments(self->path, 0));
}

TEST_HARNESS_MAIN
