// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * SERVED provider and the shmem server, in both server modes (a thread of
 * this process, a forked server process): sharing across fork and
 * fork+exec, the server's reference counts (STAT and its open memfds),
 * SIGKILLed clients, fork handling, malformed requests over a raw socket,
 * many segments, sizes from 1 byte to 256 MiB.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "kselftest_harness.h"
#include "llmp_test.h"
/*
 * The wire format (internal to the library).  Reached through include/ so
 * that the path also works when this folder is copied into a kernel tree
 * and LLMP_DIR points at the llmp sources.
 */
#include "llmp/../../lib/served_proto.h"

#define CHILD_ENV "LLMP_SERVED_TEST_CHILD"
#define DESC_ENV "LLMP_SERVED_TEST_SEG"

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

/* ---- raw protocol helpers -------------------------------------------------- */

static int raw_connect(const char *path)
{
	struct sockaddr_un sa;
	struct timeval tv = { .tv_sec = 5 };
	socklen_t len;
	size_t n = strlen(path);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return -errno;
	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	memcpy(sa.sun_path, path, n);
	if (path[0] == '@') {
		sa.sun_path[0] = 0;
		len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);
	} else {
		len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + 1);
	}
	if (connect(fd, (struct sockaddr *)&sa, len) < 0) {
		int err = -errno;

		close(fd);
		return err;
	}
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	return fd;
}

static int raw_send(int fd, uint32_t magic, uint16_t version, uint16_t op, uint32_t length,
		    const void *body, size_t body_len)
{
	unsigned char buf[256];
	struct served_hdr h = { .magic = magic, .version = version, .op = op, .length = length };

	memcpy(buf, &h, sizeof(h));
	if (body_len)
		memcpy(buf + sizeof(h), body, body_len);
	return send(fd, buf, sizeof(h) + body_len, MSG_NOSIGNAL) ==
		       (ssize_t)(sizeof(h) + body_len) ? 0 : -errno;
}

struct raw_reply {
	struct served_hdr h;
	struct served_reply r;
	char msg[SERVED_MAX_MSG + 1];
	int fd;
};

/* Read one reply: 0, -ECONNRESET if the server closed, -EAGAIN on timeout. */
static int raw_recv(int fd, struct raw_reply *out)
{
	unsigned char buf[sizeof(struct served_hdr) + SERVED_MAX_REPLY_BODY];
	size_t have = 0, want = sizeof(struct served_hdr);

	memset(out, 0, sizeof(*out));
	out->fd = -1;
	while (have < want) {
		union {
			struct cmsghdr a;
			char b[CMSG_SPACE(sizeof(int))];
		} ctl;
		struct iovec iov = { buf + have, want - have };
		struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.b,
				      .msg_controllen = sizeof(ctl.b) };
		ssize_t n = recvmsg(fd, &msg, MSG_CMSG_CLOEXEC);
		struct cmsghdr *cm;

		if (n < 0)
			return -errno;
		if (n == 0)
			return -ECONNRESET;
		cm = CMSG_FIRSTHDR(&msg);
		if (cm && cm->cmsg_type == SCM_RIGHTS)
			memcpy(&out->fd, CMSG_DATA(cm), sizeof(int));
		have += (size_t)n;
		if (have == sizeof(struct served_hdr)) {
			memcpy(&out->h, buf, sizeof(out->h));
			if (out->h.length < sizeof(out->r) || out->h.length > SERVED_MAX_REPLY_BODY)
				return -EBADMSG;
			want += out->h.length;
		}
	}
	memcpy(&out->r, buf + sizeof(out->h), sizeof(out->r));
	memcpy(out->msg, buf + sizeof(out->h) + sizeof(out->r), want - sizeof(out->h) -
	       sizeof(out->r));
	return 0;
}

/*
 * Request (with header version `version`) and reply on a raw connection;
 * returns the reply status (or a transport error).
 */
static int raw_call_v(int fd, uint16_t version, uint16_t op, const void *body, uint32_t len,
		      struct raw_reply *r)
{
	int ret = raw_send(fd, SERVED_MAGIC, version, op, len, body, len);

	if (ret < 0)
		return ret;
	ret = raw_recv(fd, r);
	if (ret < 0)
		return ret;
	if (r->h.op != (op | SERVED_OP_REPLY))
		return -EBADMSG;
	return r->r.status;
}

/* The same with the newest version. */
static int raw_call(int fd, uint16_t op, const void *body, uint32_t len, struct raw_reply *r)
{
	return raw_call_v(fd, SERVED_VERSION, op, body, len, r);
}

static int raw_hello(int fd)
{
	struct served_hello hi = { .min_version = 1, .max_version = SERVED_VERSION };
	struct raw_reply r;

	return raw_call(fd, SERVED_OP_HELLO, &hi, sizeof(hi), &r);
}

/* Raw client, HELLO done. */
static int raw_client(const char *path)
{
	int fd = raw_connect(path);

	if (fd >= 0 && raw_hello(fd) != 0) {
		close(fd);
		return -EPROTO;
	}
	return fd;
}

static int raw_id_op(int fd, uint16_t op, const char *id, struct raw_reply *r)
{
	struct served_id req;

	memset(&req, 0, sizeof(req));
	strncpy(req.id, id, sizeof(req.id) - 1);
	return raw_call(fd, op, &req, sizeof(req), r);
}

/* Server statistics: segments held (or a negative errno); optional pid. */
static long server_segments(const char *path, pid_t *pid)
{
	struct raw_reply r;
	int fd = raw_client(path);
	long ret;

	if (fd < 0)
		return fd;
	ret = raw_call(fd, SERVED_OP_STAT, NULL, 0, &r);
	if (ret == 0) {
		ret = r.r.value;
		if (pid)
			*pid = (pid_t)r.r.pid;
	}
	close(fd);
	return ret;
}

/* Wait (up to 5 s) until the server holds want segments; returns the last count. */
static long wait_segments(const char *path, long want)
{
	long n = -1;

	for (int i = 0; i < 500; i++) {
		n = server_segments(path, NULL);
		if (n == want)
			break;
		usleep(10000);
	}
	return n;
}

/* Open memfds of the server process named llmp-served:*. */
static int server_memfds(pid_t pid)
{
	char dir[64], p[PATH_MAX], link[PATH_MAX];
	struct dirent *e;
	DIR *d;
	int n = 0;

	snprintf(dir, sizeof(dir), "/proc/%d/fd", (int)pid);
	d = opendir(dir);
	if (!d)
		return -errno;
	while ((e = readdir(d))) {
		ssize_t l;

		snprintf(p, sizeof(p), "%s/%s", dir, e->d_name);
		l = readlink(p, link, sizeof(link) - 1);
		if (l <= 0)
			continue;
		link[l] = 0;
		if (strstr(link, "memfd:llmp-served:"))
			n++;
	}
	closedir(d);
	return n;
}

/* ---- fixture: one server per test, in each mode ---------------------------- */

FIXTURE(served)
{
	char path[108];
	struct llmp_shmem_server *srv;
	struct llmp_provider *p;
	pid_t server_pid;
};

FIXTURE_VARIANT(served)
{
	enum llmp_shmem_server_mode mode;
};

FIXTURE_VARIANT_ADD(served, thread)
{
	.mode = LLMP_SHMEM_SERVER_THREAD,
};

FIXTURE_VARIANT_ADD(served, process)
{
	.mode = LLMP_SHMEM_SERVER_PROCESS,
};

FIXTURE_SETUP(served)
{
	static int seq;

	snprintf(self->path, sizeof(self->path), "@llmp-served-test-%d-%d", (int)getpid(), seq++);
	ASSERT_EQ(0, llmp_shmem_server_start(self->path, variant->mode, &self->srv));
	ASSERT_EQ(0, llmp_provider_new_served(self->path, &self->p));
	ASSERT_EQ(LLMP_SHMEM_SERVED, llmp_provider_kind(self->p));
	ASSERT_EQ(0, server_segments(self->path, &self->server_pid));
	if (variant->mode == LLMP_SHMEM_SERVER_THREAD) {
		ASSERT_EQ(getpid(), self->server_pid);
	} else {
		ASSERT_NE(getpid(), self->server_pid);
	}
}

FIXTURE_TEARDOWN(served)
{
	llmp_provider_free(self->p);
	llmp_shmem_server_stop(self->srv);
}

static void fill(void *buf, size_t len, uint64_t seed)
{
	unsigned char *b = buf;
	size_t i = 0;

	for (; i + 8 <= len; i += 8) {
		uint64_t v = llmp_test_rand(&seed);

		memcpy(b + i, &v, 8);
	}
	for (; i < len; i++)
		b[i] = (unsigned char)llmp_test_rand(&seed);
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

/* ---- bad input ------------------------------------------------------------- */

TEST_F(served, malformed_requests_get_error_replies)
{
	struct served_hello hi = { .min_version = 1, .max_version = SERVED_VERSION };
	struct served_create cr;
	struct raw_reply r;
	struct llmp_shmem *m;
	unsigned char garbage[16];
	struct served_id bad;
	struct served_hdr h = { SERVED_MAGIC, SERVED_VERSION, SERVED_OP_STAT, 0, 1 };
	int fd, stall;

	/* Garbage: bad magic, error reply, then the server hangs up. */
	fd = raw_connect(self->path);
	ASSERT_LE(0, fd);
	memset(garbage, 0x41, sizeof(garbage));
	ASSERT_EQ(sizeof(garbage), send(fd, garbage, sizeof(garbage), MSG_NOSIGNAL));
	ASSERT_EQ(0, raw_recv(fd, &r));
	ASSERT_EQ(SERVED_OP_ERROR, r.h.op);
	ASSERT_EQ(-EBADMSG, r.r.status);
	ASSERT_NE(NULL, strstr(r.msg, "magic"));
	ASSERT_EQ(-ECONNRESET, raw_recv(fd, &r));
	close(fd);

	/* A request before HELLO. */
	fd = raw_connect(self->path);
	ASSERT_LE(0, fd);
	ASSERT_EQ(-EPROTO, raw_call(fd, SERVED_OP_STAT, NULL, 0, &r));
	/* A version range the server does not speak; the connection stays. */
	hi.min_version = 7;
	hi.max_version = 9;
	ASSERT_EQ(-EPROTONOSUPPORT, raw_call(fd, SERVED_OP_HELLO, &hi, sizeof(hi), &r));
	ASSERT_NE(NULL, strstr(r.msg, "7..9"));
	hi.min_version = 1;
	hi.max_version = 50; /* a newer client: the server picks its own version */
	ASSERT_EQ(0, raw_call(fd, SERVED_OP_HELLO, &hi, sizeof(hi), &r));
	ASSERT_EQ(SERVED_VERSION, r.r.value);
	ASSERT_EQ(self->server_pid, (pid_t)r.r.pid);
	/* A request in another version than the negotiated one. */
	ASSERT_EQ(0, raw_send(fd, SERVED_MAGIC, SERVED_VERSION + 1, SERVED_OP_STAT, 0, NULL, 0));
	ASSERT_EQ(0, raw_recv(fd, &r));
	ASSERT_EQ(-EPROTONOSUPPORT, r.r.status);
	/* Unknown op. */
	ASSERT_EQ(-EOPNOTSUPP, raw_call(fd, 77, NULL, 0, &r));
	ASSERT_NE(NULL, strstr(r.msg, "unknown request op 77"));
	/* Short body, long body. */
	ASSERT_EQ(-EINVAL, raw_call(fd, SERVED_OP_CREATE, "abcd", 4, &r));
	ASSERT_EQ(-EINVAL, raw_call(fd, SERVED_OP_CREATE, "0123456789abcdef", 16, &r));
	ASSERT_EQ(-EINVAL, raw_call(fd, SERVED_OP_STAT, "x", 1, &r));
	/* Sizes: 0, above the limit, the largest u64. */
	cr.size = 0;
	ASSERT_EQ(-EINVAL, raw_call(fd, SERVED_OP_CREATE, &cr, sizeof(cr), &r));
	cr.size = SERVED_MAX_SEG_SIZE + 1;
	ASSERT_EQ(-E2BIG, raw_call(fd, SERVED_OP_CREATE, &cr, sizeof(cr), &r));
	ASSERT_EQ(-1, r.fd);
	cr.size = UINT64_MAX;
	ASSERT_EQ(-E2BIG, raw_call(fd, SERVED_OP_CREATE, &cr, sizeof(cr), &r));
	/* Ids: unknown, another server's, not terminated, not printable. */
	ASSERT_EQ(-ENOENT, raw_id_op(fd, SERVED_OP_ATTACH, "nope.1", &r));
	ASSERT_EQ(-ENOENT, raw_id_op(fd, SERVED_OP_ATTACH, "zzzzzz.1", &r));
	ASSERT_EQ(-ENOENT, raw_id_op(fd, SERVED_OP_RELEASE, "nope.1", &r));
	memset(&bad, 'a', sizeof(bad));
	ASSERT_EQ(-EINVAL, raw_call(fd, SERVED_OP_ATTACH, &bad, sizeof(bad), &r));
	memset(&bad, 0, sizeof(bad));
	ASSERT_EQ(-EINVAL, raw_call(fd, SERVED_OP_ATTACH, &bad, sizeof(bad), &r));
	strcpy(bad.id, "a\tb");
	ASSERT_EQ(-EINVAL, raw_call(fd, SERVED_OP_RELEASE, &bad, sizeof(bad), &r));
	/* The reserved header field. */
	ASSERT_EQ(sizeof(h), send(fd, &h, sizeof(h), MSG_NOSIGNAL));
	ASSERT_EQ(0, raw_recv(fd, &r));
	ASSERT_EQ(-EINVAL, r.r.status);
	/* After all that the connection still serves. */
	ASSERT_EQ(0, raw_call(fd, SERVED_OP_STAT, NULL, 0, &r));
	ASSERT_EQ(0, r.r.value);
	/* An oversized body: error reply, then the server hangs up. */
	ASSERT_EQ(0, raw_send(fd, SERVED_MAGIC, SERVED_VERSION, SERVED_OP_CREATE, 1u << 30,
			      NULL, 0));
	ASSERT_EQ(0, raw_recv(fd, &r));
	ASSERT_EQ(SERVED_OP_ERROR, r.h.op);
	ASSERT_EQ(-EMSGSIZE, r.r.status);
	ASSERT_EQ(-ECONNRESET, raw_recv(fd, &r));
	close(fd);

	/* A short header that stalls must not block anyone else. */
	stall = raw_connect(self->path);
	ASSERT_LE(0, stall);
	ASSERT_EQ(7, send(stall, "\x4c\x4c\x4d\x53\x01\x00\x01", 7, MSG_NOSIGNAL));
	ASSERT_EQ(0, llmp_shmem_new(self->p, 4096, &m));
	llmp_shmem_put(m);
	close(stall);

	/* A client that closes in the middle of a request (header + 3 of 8 body bytes). */
	fd = raw_client(self->path);
	ASSERT_LE(0, fd);
	ASSERT_EQ(0, raw_send(fd, SERVED_MAGIC, SERVED_VERSION, SERVED_OP_CREATE, 8, "abc", 3));
	close(fd);

	/* The server still serves a good client, and holds nothing. */
	ASSERT_EQ(0, llmp_shmem_new(self->p, 4096, &m));
	memset(llmp_shmem_addr(m), 1, 4096);
	llmp_shmem_put(m);
	ASSERT_EQ(0, wait_segments(self->path, 0));
	ASSERT_EQ(0, server_memfds(self->server_pid));
}

/* Random requests (some with a valid id, some with bad magic): one reply each, no crash. */
TEST_F(served, random_requests_one_reply_each)
{
	uint64_t seed = 0x5eed;
	struct llmp_shmem *keep;
	struct raw_reply r;
	char id[LLMP_SHMEM_ID_LEN];
	int fd = raw_client(self->path), created = 0;

	ASSERT_LE(0, fd);
	ASSERT_EQ(0, llmp_shmem_new(self->p, 4096, &keep));
	memcpy(id, llmp_shmem_desc(keep)->id, sizeof(id));
	for (int i = 0; i < 2000; i++) {
		unsigned char body[SERVED_MAX_REQ_BODY];
		uint64_t x = llmp_test_rand(&seed);
		/* Every op but HOLD (its holds outlive the connection for a while). */
		static const uint16_t ops[] = { 0, 1, 2, 3, 4, 5, 7, 8, 0x8002, 0xffff };
		uint16_t op = ops[x % (sizeof(ops) / sizeof(ops[0]))];
		uint32_t len = (uint32_t)((x >> 8) % (SERVED_MAX_REQ_BODY + 1));
		uint32_t magic = (x >> 20) % 100 == 0 ? (uint32_t)(x >> 32) : SERVED_MAGIC;
		int ret;

		fill(body, sizeof(body), x);
		if (op == SERVED_OP_CREATE && (x >> 16) % 4 == 0) {
			uint64_t sz = 1 + (x >> 40) % 65536;

			len = 8;
			memcpy(body, &sz, 8);
		} else if ((op == SERVED_OP_ATTACH || op == SERVED_OP_RELEASE) &&
			   (x >> 16) % 2 == 0) {
			len = sizeof(struct served_id);
			memset(body, 0, len);
			memcpy(body, id, strlen(id));
		}
		ASSERT_EQ(0, raw_send(fd, magic, SERVED_VERSION, op, len, body, len));
		ret = raw_recv(fd, &r);
		ASSERT_EQ(0, ret);
		ASSERT_GE(0, r.r.status);
		ASSERT_LT(-4096, r.r.status);
		if (magic != SERVED_MAGIC) {
			ASSERT_EQ(SERVED_OP_ERROR, r.h.op);
			ASSERT_EQ(-EBADMSG, r.r.status);
			close(fd);
			fd = raw_client(self->path);
			ASSERT_LE(0, fd);
			continue;
		}
		if (op & SERVED_OP_REPLY) {
			ASSERT_EQ(SERVED_OP_ERROR, r.h.op);
			ASSERT_EQ(-EOPNOTSUPP, r.r.status);
		} else {
			ASSERT_EQ(op | SERVED_OP_REPLY, r.h.op);
		}
		if (r.fd >= 0) {
			ASSERT_EQ(0, r.r.status);
			ASSERT_TRUE(op == SERVED_OP_CREATE || op == SERVED_OP_ATTACH);
			created += op == SERVED_OP_CREATE;
			close(r.fd);
		}
	}
	ASSERT_LT(0, created);
	close(fd);
	/* Everything the random clients held is gone; our segment is intact. */
	ASSERT_EQ(1, wait_segments(self->path, 1));
	llmp_shmem_put(keep);
	ASSERT_EQ(0, server_segments(self->path, NULL));
}

/* A client that sends requests and never reads the replies is dropped. */
TEST_F(served, client_not_reading_replies_is_dropped)
{
	unsigned char batch[64 * sizeof(struct served_hdr)];
	struct served_hdr h = { SERVED_MAGIC, SERVED_VERSION, SERVED_OP_STAT, 0, 0 };
	struct llmp_shmem *m;
	int fd = raw_client(self->path), dropped = 0;

	ASSERT_LE(0, fd);
	for (size_t i = 0; i < sizeof(batch); i += sizeof(h))
		memcpy(batch + i, &h, sizeof(h));
	for (int i = 0; i < 20000 && !dropped; i++) {
		ssize_t n = send(fd, batch, sizeof(batch), MSG_DONTWAIT | MSG_NOSIGNAL);

		if (n < 0 && (errno == EPIPE || errno == ECONNRESET))
			dropped = 1;
		else if (n < 0)
			usleep(1000);
	}
	ASSERT_TRUE(dropped);
	close(fd);
	ASSERT_EQ(0, llmp_shmem_new(self->p, 4096, &m));
	llmp_shmem_put(m);
}

struct thread_arg {
	struct llmp_provider *p;
	int id, errors;
};

static void *thread_worker(void *arg)
{
	struct thread_arg *t = arg;

	for (int i = 0; i < 200; i++) {
		struct llmp_shmem *a, *b;
		size_t len = 4096 * (1 + (size_t)((t->id + i) % 4));

		if (llmp_shmem_new(t->p, len, &a) < 0) {
			t->errors++;
			continue;
		}
		memset(llmp_shmem_addr(a), t->id + i, len);
		if (llmp_shmem_attach(t->p, llmp_shmem_desc(a), &b) < 0) {
			t->errors++;
		} else {
			if (memcmp(llmp_shmem_addr(a), llmp_shmem_addr(b), len))
				t->errors++;
			llmp_shmem_put(b);
		}
		llmp_shmem_put(a);
	}
	return NULL;
}

/* One provider used from four threads at once. */
TEST_F(served, provider_shared_by_threads)
{
	pthread_t th[4];
	struct thread_arg args[4];

	for (int i = 0; i < 4; i++) {
		args[i] = (struct thread_arg){ .p = self->p, .id = i };
		ASSERT_EQ(0, pthread_create(&th[i], NULL, thread_worker, &args[i]));
	}
	for (int i = 0; i < 4; i++) {
		ASSERT_EQ(0, pthread_join(th[i], NULL));
		ASSERT_EQ(0, args[i].errors);
	}
	ASSERT_EQ(0, server_segments(self->path, NULL));
	ASSERT_EQ(0, server_memfds(self->server_pid));
}

TEST_F(served, api_bad_input)
{
	struct llmp_shmem_desc d;
	struct llmp_shmem *m = (void *)1;

	ASSERT_EQ(-EINVAL, llmp_shmem_new(self->p, 0, &m));
	ASSERT_EQ(NULL, m);
	ASSERT_EQ(-E2BIG, llmp_shmem_new(self->p, (size_t)LLMP_SHMEM_MAX_SIZE + 1, &m));
	memset(&d, 0, sizeof(d));
	d.kind = LLMP_SHMEM_SERVED;
	d.size = 4096;
	strcpy(d.id, "nope.12");
	ASSERT_EQ(-ENOENT, llmp_shmem_attach(self->p, &d, &m));
	ASSERT_NE(NULL, strstr(llmp_strerror_last(), "no segment 'nope.12'"));
	d.kind = LLMP_SHMEM_MEMFD;
	ASSERT_EQ(-EINVAL, llmp_shmem_attach(self->p, &d, &m));
	/* The provider is still fine. */
	ASSERT_EQ(0, llmp_shmem_new(self->p, 1, &m));
	llmp_shmem_put(m);
}

TEST_F(served, server_gone_gives_errors_not_crashes)
{
	struct llmp_shmem *m, *n;
	unsigned char *b;

	ASSERT_EQ(0, llmp_shmem_new(self->p, 4096, &m));
	b = llmp_shmem_addr(m);
	memset(b, 0x77, 4096);
	llmp_shmem_server_stop(self->srv);
	self->srv = NULL;
	/* The mapping outlives the server. */
	for (int i = 0; i < 4096; i++)
		ASSERT_EQ(0x77, b[i]);
	ASSERT_GT(0, llmp_shmem_new(self->p, 4096, &n));
	ASSERT_EQ(-ENOTCONN, llmp_shmem_new(self->p, 4096, &n));
	ASSERT_NE(NULL, strstr(llmp_strerror_last(), "not connected"));
	llmp_shmem_put(m);
}

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

/* ---- a lying server: the provider checks what it is given ------------------ */

enum fake_mode {
	FAKE_UNSEALED,	 /* CREATE: a memfd that can shrink */
	FAKE_SMALL,	 /* CREATE: sealed, but smaller than asked */
	FAKE_NO_FD,	 /* CREATE: success without a descriptor */
	FAKE_BAD_MAGIC,	 /* CREATE: reply header with a bad magic */
	FAKE_HUGE_LEN,	 /* CREATE: reply claims a 1 MiB body */
	FAKE_POS_STATUS, /* CREATE: status 5 */
	FAKE_BAD_ID,	 /* CREATE: id not NUL-terminated */
	FAKE_HANG_UP,	 /* CREATE: close without a reply */
	FAKE_MODES,
	FAKE_PIDS,	 /* honest, with the HELLO and creator pid fields below */
};

struct fake {
	int lfd;
	enum fake_mode mode;
	uint16_t version;    /* FAKE_PIDS: version chosen in HELLO */
	uint64_t hello_size; /* FAKE_PIDS: "your pid" in the HELLO reply */
	uint32_t creator;    /* FAKE_PIDS: creator pid in the CREATE reply */
};

static int fake_send(int fd, uint32_t magic, uint16_t op, uint32_t length,
		     const struct served_reply *r, int pass_fd)
{
	unsigned char buf[sizeof(struct served_hdr) + sizeof(*r)];
	struct served_hdr h = { magic, SERVED_VERSION, op, length, 0 };
	union {
		struct cmsghdr a;
		char b[CMSG_SPACE(sizeof(int))];
	} ctl;
	struct iovec iov = { buf, sizeof(buf) };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1 };

	memcpy(buf, &h, sizeof(h));
	memcpy(buf + sizeof(h), r, sizeof(*r));
	if (pass_fd >= 0) {
		struct cmsghdr *cm;

		memset(&ctl, 0, sizeof(ctl));
		msg.msg_control = ctl.b;
		msg.msg_controllen = sizeof(ctl.b);
		cm = CMSG_FIRSTHDR(&msg);
		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(cm), &pass_fd, sizeof(int));
	}
	return sendmsg(fd, &msg, MSG_NOSIGNAL) == (ssize_t)sizeof(buf) ? 0 : -1;
}

/* Serves one connection: honest HELLO and RELEASE, a lie for CREATE. */
static void *fake_server(void *arg)
{
	struct fake *f = arg;
	int fd = accept4(f->lfd, NULL, NULL, SOCK_CLOEXEC);

	while (fd >= 0) {
		unsigned char body[SERVED_MAX_REQ_BODY];
		struct served_hdr h;
		struct served_reply r;
		uint32_t len = sizeof(r);
		uint32_t magic = SERVED_MAGIC;
		int mfd = -1;

		if (recv(fd, &h, sizeof(h), MSG_WAITALL) != sizeof(h) || h.length > sizeof(body))
			break;
		if (h.length && recv(fd, body, h.length, MSG_WAITALL) != (ssize_t)h.length)
			break;
		memset(&r, 0, sizeof(r));
		r.value = SERVED_VERSION;
		if (f->mode == FAKE_PIDS && h.op == SERVED_OP_HELLO) {
			r.value = f->version;
			r.size = f->hello_size;
		}
		if (f->mode == FAKE_PIDS && h.op == SERVED_OP_CREATE)
			r.pid = f->creator;
		if (h.op == SERVED_OP_CREATE) {
			uint64_t size;

			memcpy(&size, body, sizeof(size));
			strcpy(r.id, "fake.1");
			r.size = size;
			mfd = memfd_create("fake", MFD_CLOEXEC | MFD_ALLOW_SEALING);
			if (mfd < 0 || ftruncate(mfd, (off_t)size) < 0)
				break;
			if (f->mode != FAKE_UNSEALED) {
				if (f->mode == FAKE_SMALL && ftruncate(mfd, (off_t)size / 2) < 0)
					break;
				fcntl(mfd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW);
			}
			if (f->mode == FAKE_NO_FD) {
				close(mfd);
				mfd = -1;
			}
			if (f->mode == FAKE_BAD_MAGIC)
				magic = 0xdeadbeef;
			if (f->mode == FAKE_HUGE_LEN)
				len = 1 << 20;
			if (f->mode == FAKE_POS_STATUS)
				r.status = 5;
			if (f->mode == FAKE_BAD_ID)
				memset(r.id, 'x', sizeof(r.id));
			if (f->mode == FAKE_HANG_UP) {
				close(mfd);
				break;
			}
		}
		if (fake_send(fd, magic, h.op | SERVED_OP_REPLY, len, &r, mfd) < 0) {
			if (mfd >= 0)
				close(mfd);
			break;
		}
		if (mfd >= 0)
			close(mfd);
	}
	if (fd >= 0)
		close(fd);
	return NULL;
}

TEST(provider_checks_the_server)
{
	static const int want[FAKE_MODES] = {
		[FAKE_UNSEALED] = -EBADMSG,  [FAKE_SMALL] = -EBADMSG,
		[FAKE_NO_FD] = -EBADMSG,     [FAKE_BAD_MAGIC] = -EBADMSG,
		[FAKE_HUGE_LEN] = -EBADMSG,  [FAKE_POS_STATUS] = -EBADMSG,
		[FAKE_BAD_ID] = -EBADMSG,    [FAKE_HANG_UP] = -ECONNRESET,
	};
	struct sockaddr_un sa;
	char path[64];
	socklen_t len;

	snprintf(path, sizeof(path), "@llmp-served-test-fake-%d", (int)getpid());
	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	memcpy(sa.sun_path + 1, path + 1, strlen(path) - 1);
	len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(path));
	for (int mode = 0; mode < FAKE_MODES; mode++) {
		struct fake f = { .mode = mode };
		struct llmp_provider *p;
		struct llmp_shmem *m = (void *)1;
		pthread_t th;

		f.lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		ASSERT_LE(0, f.lfd);
		ASSERT_EQ(0, bind(f.lfd, (struct sockaddr *)&sa, len));
		ASSERT_EQ(0, listen(f.lfd, 4));
		ASSERT_EQ(0, pthread_create(&th, NULL, fake_server, &f));
		ASSERT_EQ(0, llmp_provider_new_served(path, &p));
		ASSERT_EQ(want[mode], llmp_shmem_new(p, 8192, &m));
		ASSERT_EQ(NULL, m);
		llmp_provider_free(p);
		ASSERT_EQ(0, pthread_join(th, NULL));
		close(f.lfd);
	}
}

/* Internal to the library (linked statically): the creator a mapping reports. */
long llmp_shmem_creator_pid(const struct llmp_shmem *m);

/*
 * The provider takes a creator pid from the server only when the server
 * speaks version 2 and names us by our own pid in HELLO (same pid
 * namespace view); otherwise the creator is unknown (0).
 */
TEST(creator_pid_trusted_only_from_same_pid_view)
{
	static const struct {
		uint16_t version;
		int64_t hello_delta; /* HELLO "your pid" = getpid() + delta */
		long want;
	} cases[] = {
		{ 2, 0, 4242 },  /* same view: trusted */
		{ 2, 1, 0 },     /* another pid namespace */
		{ 2, -((int64_t)1 << 40), 0 },
		{ 1, 0, 0 },     /* version 1: the field means nothing */
	};
	struct sockaddr_un sa;
	char path[64];
	socklen_t len;

	snprintf(path, sizeof(path), "@llmp-served-test-pids-%d", (int)getpid());
	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	memcpy(sa.sun_path + 1, path + 1, strlen(path) - 1);
	len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(path));
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct fake f = { .mode = FAKE_PIDS, .version = cases[i].version,
				  .hello_size = (uint64_t)((int64_t)getpid() + cases[i].hello_delta),
				  .creator = 4242 };
		struct llmp_provider *p;
		struct llmp_shmem *m;
		pthread_t th;

		f.lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		ASSERT_LE(0, f.lfd);
		ASSERT_EQ(0, bind(f.lfd, (struct sockaddr *)&sa, len));
		ASSERT_EQ(0, listen(f.lfd, 4));
		ASSERT_EQ(0, pthread_create(&th, NULL, fake_server, &f));
		ASSERT_EQ(0, llmp_provider_new_served(path, &p)) TH_LOG("%s", llmp_strerror_last());
		ASSERT_EQ(0, llmp_shmem_new(p, 8192, &m)) TH_LOG("%s", llmp_strerror_last());
		ASSERT_EQ(cases[i].want, llmp_shmem_creator_pid(m)) TH_LOG("case %zu", i);
		llmp_shmem_put(m);
		llmp_provider_free(p);
		ASSERT_EQ(0, pthread_join(th, NULL));
		close(f.lfd);
	}
}

/* A hold nobody adopts (the child died first) expires and frees its segments. */
TEST(fork_hold_expires)
{
	struct llmp_shmem_server *srv;
	struct llmp_provider *p;
	struct llmp_shmem *s;
	char path[64];
	int status;
	pid_t pid;

	snprintf(path, sizeof(path), "@llmp-served-test-hold-%d", (int)getpid());
	setenv("LLMP_SHMEM_SERVER_HOLD_MS", "1500", 1);
	ASSERT_EQ(0, llmp_shmem_server_start(path, LLMP_SHMEM_SERVER_PROCESS, &srv));
	unsetenv("LLMP_SHMEM_SERVER_HOLD_MS");
	ASSERT_EQ(0, llmp_provider_new_served(path, &p));
	ASSERT_EQ(0, llmp_shmem_new(p, 4096, &s));
	ASSERT_EQ(0, llmp_provider_pre_fork(p));
	pid = fork();
	ASSERT_LE(0, pid);
	if (pid == 0)
		_exit(0); /* never calls post_fork */
	ASSERT_EQ(0, llmp_provider_post_fork(p, false));
	ASSERT_EQ(pid, waitpid(pid, &status, 0));
	llmp_shmem_put(s);
	ASSERT_EQ(1, server_segments(path, NULL)); /* the hold */
	ASSERT_EQ(0, wait_segments(path, 0));
	llmp_provider_free(p);
	llmp_shmem_server_stop(srv);
}

/* True while pid exists and is not a zombie. */
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
