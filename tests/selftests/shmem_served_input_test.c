// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * SERVED provider and the shmem server against bad input, both ways.
 * Promises guarded: malformed and random requests over a raw socket each
 * get one error reply and the server keeps serving; a client that does not
 * read its replies is dropped; the provider is safe to share between
 * threads, refuses bad arguments and gives errors (not crashes) once the
 * server is gone; a lying server (unsealed or short memfds, missing fds,
 * bad headers, hang-ups) is caught by the provider, and a creator pid is
 * trusted only from a server with our pid view; an unadopted fork hold
 * expires.
 */
#include "shmem_served_fixture.h"

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

TEST_HARNESS_MAIN
