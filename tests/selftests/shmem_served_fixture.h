/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * What the shmem_served_*_test binaries share: raw requests to the shmem
 * server over its socket (connect, send, receive, HELLO, id operations),
 * its segment count (STAT) and open memfds, the `served` fixture (one
 * server per test, as a thread of this process or a forked process) and
 * payloads to check bytes against.
 */
#ifndef LLMP_SHMEM_SERVED_FIXTURE_H
#define LLMP_SHMEM_SERVED_FIXTURE_H

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

/* ---- raw protocol helpers -------------------------------------------------- */

static inline int raw_connect(const char *path)
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

static inline int raw_send(int fd, uint32_t magic, uint16_t version, uint16_t op, uint32_t length,
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
static inline int raw_recv(int fd, struct raw_reply *out)
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
static inline int raw_call_v(int fd, uint16_t version, uint16_t op, const void *body, uint32_t len,
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
static inline int raw_call(int fd, uint16_t op, const void *body, uint32_t len, struct raw_reply *r)
{
	return raw_call_v(fd, SERVED_VERSION, op, body, len, r);
}

static inline int raw_hello(int fd)
{
	struct served_hello hi = { .min_version = 1, .max_version = SERVED_VERSION };
	struct raw_reply r;

	return raw_call(fd, SERVED_OP_HELLO, &hi, sizeof(hi), &r);
}

/* Raw client, HELLO done. */
static inline int raw_client(const char *path)
{
	int fd = raw_connect(path);

	if (fd >= 0 && raw_hello(fd) != 0) {
		close(fd);
		return -EPROTO;
	}
	return fd;
}

static inline int raw_id_op(int fd, uint16_t op, const char *id, struct raw_reply *r)
{
	struct served_id req;

	memset(&req, 0, sizeof(req));
	memcpy(req.id, id, strnlen(id, sizeof(req.id) - 1)); /* req is zeroed: NUL-terminated */
	return raw_call(fd, op, &req, sizeof(req), r);
}

/* Server statistics: segments held (or a negative errno); optional pid. */
static inline long server_segments(const char *path, pid_t *pid)
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
static inline long wait_segments(const char *path, long want)
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
static inline int server_memfds(pid_t pid)
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

static inline void fill(void *buf, size_t len, uint64_t seed)
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


#endif /* LLMP_SHMEM_SERVED_FIXTURE_H */
