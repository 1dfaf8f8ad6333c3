// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * SERVED provider: segments handed out by an llmp shmem server
 * (lib/shmem_server.c) over a Unix stream socket.
 *
 * The provider holds one connection.  CREATE and ATTACH replies carry a
 * sealed memfd; we check its size and seals, map it and close the fd (the
 * mapping keeps the memory alive; the server keeps the segment findable by
 * id as long as some connection holds a reference).  Releasing a mapping
 * sends RELEASE.  Closing the connection (provider_free, exit, crash) drops
 * every reference this process held.
 *
 * Fork: a child must not talk over its parent's connection, so it opens its
 * own.  pre_fork takes the provider's lock (no other thread is in the
 * middle of a request when the process forks) and asks the server for a
 * fork hold, a copy of our references; the child's post_fork connects and
 * adopts the hold, so it holds every segment it inherited even if the
 * parent released them meanwhile.  Without a hold (no pre_fork, or it
 * expired) the child re-registers its segments with ATTACH by id, at
 * post_fork or at its first request.
 *
 * Whom we talk to: before anything else, the server's credentials
 * (SO_PEERCRED) must name our effective uid or root, since the server sees
 * every segment it hands out.  The default socket lives in a directory only
 * we can write (lib/served_sock.c), so no other user can claim its name.
 *
 * Creator pids (protocol version 2): the server tells which process created
 * a segment, as it sees that process.  We use them (m->priv holds the pid,
 * read by llmp_shmem_creator_pid()) only when the server sees our own pid
 * as we do, i.e. the pids it reports name processes of our pid namespace;
 * otherwise, and with a version-1 server, the creator is unknown (0).
 */
#include "internal.h"

#if defined(__linux__)

#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include "served_proto.h"

/* How long a client waits for a reply before giving up on the server. */
#define SERVED_TIMEOUT_S 30

struct served {
	pthread_mutex_t lock;
	int sock;	/* -1 when not connected (after a transport error) */
	pid_t pid;	/* process that opened sock */
	uint16_t version;
	uint32_t server_pid;
	bool pids_ok;		/* creator pids from the server are valid here */
	char *path;
	struct llmp_shmem **held; /* mappings registered with the server */
	size_t nheld, cap;
	uint32_t hold;		/* fork hold taken by pre_fork, 0 if none */
	bool fork_locked;	/* pre_fork took the lock */
};

/* One reply as the client sees it. */
struct served_answer {
	struct served_reply r;
	char msg[SERVED_MAX_MSG + 1];
	int fd; /* passed descriptor or -1 */
};

static int send_all(int fd, const void *buf, size_t len)
{
	const char *b = buf;

	while (len) {
		ssize_t n = send(fd, b, len, MSG_NOSIGNAL);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		b += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Receive exactly len bytes; keep the first passed fd in *fd, close any other. */
static int recv_all(int sock, void *buf, size_t len, int *fd)
{
	char *b = buf;

	while (len) {
		union {
			struct cmsghdr align;
			char buf[CMSG_SPACE(sizeof(int) * 4)];
		} ctl;
		struct iovec iov = { .iov_base = b, .iov_len = len };
		struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1,
				      .msg_control = ctl.buf, .msg_controllen = sizeof(ctl.buf) };
		ssize_t n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return errno == EAGAIN ? -ETIMEDOUT : -errno;
		}
		for (struct cmsghdr *cm = CMSG_FIRSTHDR(&msg); cm; cm = CMSG_NXTHDR(&msg, cm)) {
			if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
				continue;
			size_t nfd = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);

			for (size_t i = 0; i < nfd; i++) {
				int f;

				memcpy(&f, CMSG_DATA(cm) + i * sizeof(int), sizeof(int));
				if (*fd < 0)
					*fd = f;
				else
					close(f);
			}
		}
		if (n == 0)
			return -ECONNRESET;
		b += n;
		len -= (size_t)n;
	}
	return 0;
}

static void served_disconnect(struct served *s)
{
	if (s->sock >= 0)
		close(s->sock);
	s->sock = -1;
}

/*
 * One request, one reply.  Returns 0 with *a filled (a->r.status may be a
 * negative errno from the server), or a negative errno for a transport or
 * protocol failure, after which the connection is closed.
 */
static int served_call(struct served *s, uint16_t op, const void *body, uint32_t len,
		       struct served_answer *a)
{
	unsigned char req[sizeof(struct served_hdr) + SERVED_MAX_REQ_BODY];
	struct served_hdr h;
	int ret;

	memset(a, 0, sizeof(*a));
	a->fd = -1;
	if (s->sock < 0)
		return llmp_err(-ENOTCONN, "served: not connected to the shmem server at %s",
				s->path);
	memset(&h, 0, sizeof(h));
	h.magic = SERVED_MAGIC;
	h.version = op == SERVED_OP_HELLO ? SERVED_VERSION : s->version;
	h.op = op;
	h.length = len;
	memcpy(req, &h, sizeof(h));
	if (len)
		memcpy(req + sizeof(h), body, len);
	ret = send_all(s->sock, req, sizeof(h) + len);
	if (ret < 0 && ret != -EPIPE && ret != -ECONNRESET) {
		served_disconnect(s);
		return llmp_err(ret, "served: sending to the shmem server at %s: %s", s->path,
				strerror(-ret));
	}
	/*
	 * The server hung up: it may have said why first (a refusal), and
	 * that reply is still queued for us.  Reading cannot block: the peer
	 * is closed.
	 */
	ret = recv_all(s->sock, &h, sizeof(h), &a->fd);
	if (ret == 0) {
		/* SERVED_OP_ERROR: the server refused the connection or our framing. */
		if (h.magic != SERVED_MAGIC ||
		    (h.op != (op | SERVED_OP_REPLY) && h.op != SERVED_OP_ERROR) ||
		    h.length < sizeof(a->r) || h.length > SERVED_MAX_REPLY_BODY)
			ret = -EBADMSG;
	}
	if (ret == 0) {
		unsigned char rb[SERVED_MAX_REPLY_BODY];

		ret = recv_all(s->sock, rb, h.length, &a->fd);
		if (ret == 0) {
			memcpy(&a->r, rb, sizeof(a->r));
			memcpy(a->msg, rb + sizeof(a->r), h.length - sizeof(a->r));
			a->msg[h.length - sizeof(a->r)] = 0;
			if (a->r.status > 0 || a->r.status < -4095 ||
			    (h.op == SERVED_OP_ERROR && a->r.status == 0))
				ret = -EBADMSG;
		}
	}
	if (ret == 0 && a->r.status < 0 && a->fd >= 0) {
		close(a->fd);
		a->fd = -1;
	}
	if (ret == 0 && h.op == SERVED_OP_ERROR) {
		/* The server closes the connection after such a reply. */
		served_disconnect(s);
		return llmp_err(a->r.status, "served: the shmem server at %s: %s", s->path, a->msg);
	}
	if (ret < 0) {
		if (a->fd >= 0)
			close(a->fd);
		a->fd = -1;
		served_disconnect(s);
		if (ret == -EBADMSG)
			return llmp_err(ret, "served: malformed reply from the shmem server at %s",
					s->path);
		return llmp_err(ret, "served: no reply from the shmem server at %s: %s", s->path,
				strerror(-ret));
	}
	return 0;
}

static int served_connect(struct served *s)
{
	struct served_hello hi = { .min_version = SERVED_VERSION_MIN,
				   .max_version = SERVED_VERSION };
	struct timeval tv = { .tv_sec = SERVED_TIMEOUT_S };
	struct served_answer a;
	struct sockaddr_un sa;
	socklen_t len;
	int fd, ret;

	ret = llmp_served_sockaddr(s->path, &sa, &len);
	if (ret < 0)
		return ret;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return llmp_err(-errno, "served: socket: %s", strerror(errno));
	if (connect(fd, (struct sockaddr *)&sa, len) < 0) {
		ret = -errno;
		close(fd);
		return llmp_err(ret, "served: no shmem server at %s: %s", s->path, strerror(-ret));
	}
	/* Before a byte goes either way: a server of another user would see our segments. */
	ret = llmp_served_peer_check(fd, s->path);
	if (ret < 0) {
		close(fd);
		return ret;
	}
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	s->sock = fd;
	s->pid = getpid();
	ret = served_call(s, SERVED_OP_HELLO, &hi, sizeof(hi), &a);
	if (ret < 0)
		return ret;
	if (a.r.status < 0) {
		served_disconnect(s);
		return llmp_err(a.r.status, "served: the shmem server at %s refused HELLO: %s",
				s->path, a.msg);
	}
	if (a.r.value < SERVED_VERSION_MIN || a.r.value > SERVED_VERSION) {
		served_disconnect(s);
		return llmp_err(-EPROTONOSUPPORT, "served: the shmem server at %s chose version %u",
				s->path, a.r.value);
	}
	s->version = (uint16_t)a.r.value;
	s->server_pid = a.r.pid;
	/* the server names us as we name ourselves: same pid namespace view */
	s->pids_ok = s->version >= SERVED_VERSION_PIDS && a.r.size == (uint64_t)getpid();
	if (s->version >= SERVED_VERSION_PIDS && !s->pids_ok)
		llmp_log(LLMP_LOG_INFO, "served: the shmem server at %s sees this process as pid "
			 "%llu, not %ld (another pid namespace): creator pids unknown", s->path,
			 (unsigned long long)a.r.size, (long)getpid());
	return 0;
}

/* The id in a reply: NUL-terminated, printable. */
static int reply_id_ok(const struct served_answer *a)
{
	size_t n = strnlen(a->r.id, LLMP_SHMEM_ID_LEN);

	if (n == 0 || n == LLMP_SHMEM_ID_LEN)
		return 0;
	for (size_t i = 0; i < n; i++) {
		if (a->r.id[i] < 0x21 || a->r.id[i] > 0x7e)
			return 0;
	}
	return 1;
}

/* The passed fd must be a memfd of at least need bytes that nobody can shrink. */
static int check_fd(struct served *s, int fd, uint64_t need)
{
	struct stat st;
	int seals;

	if (fd < 0)
		return llmp_err(-EBADMSG, "served: the shmem server at %s sent no descriptor",
				s->path);
	if (fstat(fd, &st) < 0)
		return llmp_err(-errno, "served: fstat of a passed segment: %s", strerror(errno));
	seals = fcntl(fd, F_GET_SEALS);
	if (seals < 0 || !(seals & F_SEAL_SHRINK))
		return llmp_err(-EBADMSG, "served: the passed segment is not sealed against "
				"shrinking");
	if ((uint64_t)st.st_size < need)
		return llmp_err(-EBADMSG, "served: the passed segment has %lld bytes, need %llu",
				(long long)st.st_size, (unsigned long long)need);
	return 0;
}

static void release_id(struct served *s, const char *id)
{
	struct served_id req;
	struct served_answer a;

	memset(&req, 0, sizeof(req));
	memcpy(req.id, id, strnlen(id, LLMP_SHMEM_ID_LEN - 1));
	if (served_call(s, SERVED_OP_RELEASE, &req, sizeof(req), &a) == 0 && a.r.status < 0)
		llmp_log(LLMP_LOG_WARN, "served: releasing %s: %s", req.id, a.msg);
}

/* Register id on the current connection; *fd receives the passed memfd. */
static int attach_id(struct served *s, const char *id, struct served_answer *a)
{
	struct served_id req;
	int ret;

	memset(&req, 0, sizeof(req));
	memcpy(req.id, id, strnlen(id, LLMP_SHMEM_ID_LEN - 1));
	ret = served_call(s, SERVED_OP_ATTACH, &req, sizeof(req), a);
	if (ret < 0)
		return ret;
	if (a->r.status < 0)
		return llmp_err(a->r.status, "served: attaching %s: %s", req.id, a->msg);
	return 0;
}

static int held_add(struct served *s, struct llmp_shmem *m)
{
	if (s->nheld == s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 16;
		struct llmp_shmem **n = realloc(s->held, cap * sizeof(*n));

		if (!n)
			return llmp_err(-ENOMEM, "served: out of memory");
		s->held = n;
		s->cap = cap;
	}
	s->held[s->nheld++] = m;
	return 0;
}

static void held_del(struct served *s, struct llmp_shmem *m)
{
	for (size_t i = 0; i < s->nheld; i++) {
		if (s->held[i] == m) {
			s->held[i] = s->held[--s->nheld];
			return;
		}
	}
}

/*
 * In a child after fork: drop the parent's connection (our copy only) and
 * open our own.  Then take over the fork hold pre_fork made (the parent's
 * references at the fork, which are exactly the mappings we inherited), or
 * without one register every segment we still map.  A segment the server
 * no longer knows stays mapped here but is dropped from the list.
 */
static int served_reconnect_child(struct served *s)
{
	uint32_t hold = s->hold;
	int ret;

	if (s->sock >= 0)
		close(s->sock); /* the parent's connection lives on in the parent */
	s->sock = -1;
	s->hold = 0;
	ret = served_connect(s);
	if (ret < 0) {
		s->pid = getpid();
		s->nheld = 0; /* nothing is registered for this process */
		return ret;
	}
	if (hold) {
		struct served_adopt req = { .hold = hold };
		struct served_answer a;

		ret = served_call(s, SERVED_OP_ADOPT, &req, sizeof(req), &a);
		if (ret < 0)
			return ret;
		if (a.r.status == 0)
			return 0;
		llmp_log(LLMP_LOG_WARN, "served: after fork: %s; registering segments one by one",
			 a.msg);
	}
	for (size_t i = 0; i < s->nheld;) {
		struct llmp_shmem *m = s->held[i];
		struct served_answer a;

		ret = attach_id(s, m->desc.id, &a);
		if (ret == 0) {
			if (a.fd >= 0)
				close(a.fd);
			i++;
			continue;
		}
		llmp_log(LLMP_LOG_WARN, "served: after fork, %s stays mapped but is no longer "
			 "known to the server", m->desc.id);
		s->held[i] = s->held[--s->nheld];
		if (s->sock < 0)
			return ret;
	}
	return 0;
}

/* Before any request: a forked child that skipped post_fork gets its own connection. */
static int served_ready(struct served *s)
{
	if (s->pid != getpid())
		return served_reconnect_child(s);
	return 0;
}

/* Remember the creator the server reported, if its pids mean something here. */
static void served_set_creator(const struct served *s, struct llmp_shmem *m,
			       const struct served_answer *a)
{
	m->priv = (void *)(intptr_t)(s->pids_ok && a->r.pid <= 0x7fffffffu ? a->r.pid : 0);
}

static int served_map(struct llmp_shmem *m, int fd, uint64_t size)
{
	void *addr = mmap(NULL, (size_t)size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);

	if (addr == MAP_FAILED)
		return llmp_err(-errno, "served: mmap of %llu bytes: %s",
				(unsigned long long)size, strerror(errno));
	m->addr = addr;
	m->size = (size_t)size;
	m->fd = -1;
	llmp_shmem_note_file(m, fd);
	return 0;
}

static int served_probe(void)
{
	return 0;
}

static int served_provider_init(struct llmp_provider *p)
{
	char defpath[sizeof(((struct sockaddr_un *)0)->sun_path)];
	const char *path = p->socket_path;
	struct served *s;
	int ret;

	if (!path)
		path = getenv("LLMP_SHMEM_SERVER");
	if (!path || !*path) {
		/* the private directory: an existing one is checked, a missing one means no server */
		ret = llmp_served_default_path(defpath, sizeof(defpath), false);
		if (ret < 0)
			return ret;
		path = defpath;
	}
	s = calloc(1, sizeof(*s));
	if (!s)
		return llmp_err(-ENOMEM, "served: out of memory");
	s->sock = -1;
	s->path = strdup(path);
	if (!s->path) {
		free(s);
		return llmp_err(-ENOMEM, "served: out of memory");
	}
	pthread_mutex_init(&s->lock, NULL);
	ret = served_connect(s);
	if (ret < 0) {
		pthread_mutex_destroy(&s->lock);
		free(s->path);
		free(s);
		return ret;
	}
	p->priv = s;
	return 0;
}

static void served_provider_fini(struct llmp_provider *p)
{
	struct served *s = p->priv;

	served_disconnect(s); /* the server drops every reference we still hold */
	pthread_mutex_destroy(&s->lock);
	free(s->held);
	free(s->path);
	free(s);
}

static int served_create(struct llmp_provider *p, size_t size, struct llmp_shmem *m)
{
	struct served *s = p->priv;
	struct served_create req = { .size = size };
	struct served_answer a;
	int ret;

	pthread_mutex_lock(&s->lock);
	ret = served_ready(s);
	if (ret == 0)
		ret = served_call(s, SERVED_OP_CREATE, &req, sizeof(req), &a);
	if (ret < 0)
		goto out;
	if (a.r.status < 0) {
		ret = llmp_err(a.r.status, "served: creating %zu bytes: %s", size, a.msg);
		goto out;
	}
	if (!reply_id_ok(&a) || a.r.size != size) {
		ret = llmp_err(-EBADMSG, "served: the shmem server at %s answered CREATE with a "
			       "bad id or size", s->path);
	} else {
		ret = check_fd(s, a.fd, size);
	}
	if (ret == 0)
		ret = served_map(m, a.fd, size);
	if (ret == 0) {
		memcpy(m->desc.id, a.r.id, LLMP_SHMEM_ID_LEN);
		served_set_creator(s, m, &a);
		ret = held_add(s, m);
		if (ret < 0)
			munmap(m->addr, m->size);
	}
	if (a.fd >= 0)
		close(a.fd);
	if (ret < 0 && reply_id_ok(&a))
		release_id(s, a.r.id);
out:
	pthread_mutex_unlock(&s->lock);
	return ret;
}

static int served_attach(struct llmp_provider *p, const struct llmp_shmem_desc *d,
			 struct llmp_shmem *m)
{
	struct served *s = p->priv;
	struct served_answer a;
	int ret;

	pthread_mutex_lock(&s->lock);
	ret = served_ready(s);
	if (ret == 0)
		ret = attach_id(s, d->id, &a);
	if (ret < 0)
		goto out;
	if (a.r.size < d->size)
		ret = llmp_err(-EINVAL, "served: description says %llu bytes, segment %s has %llu",
			       (unsigned long long)d->size, d->id, (unsigned long long)a.r.size);
	else
		ret = check_fd(s, a.fd, d->size);
	if (ret == 0)
		ret = served_map(m, a.fd, d->size);
	if (ret == 0) {
		memcpy(m->desc.id, d->id, LLMP_SHMEM_ID_LEN);
		served_set_creator(s, m, &a);
		ret = held_add(s, m);
		if (ret < 0)
			munmap(m->addr, m->size);
	}
	if (a.fd >= 0)
		close(a.fd);
	if (ret < 0)
		release_id(s, d->id);
out:
	pthread_mutex_unlock(&s->lock);
	return ret;
}

static void served_release(struct llmp_provider *p, struct llmp_shmem *m)
{
	struct served *s = p->priv;
	bool registered = false;

	if (m->addr)
		munmap(m->addr, m->size);
	m->addr = NULL;
	pthread_mutex_lock(&s->lock);
	if (served_ready(s) == 0) {
		for (size_t i = 0; i < s->nheld; i++)
			registered |= s->held[i] == m;
	}
	held_del(s, m);
	if (registered)
		release_id(s, m->desc.id);
	pthread_mutex_unlock(&s->lock);
}

static int served_pre_fork(struct llmp_provider *p)
{
	struct served *s = p->priv;
	struct served_answer a;

	/* Held until post_fork: the child must not inherit a half-done request. */
	pthread_mutex_lock(&s->lock);
	s->fork_locked = true;
	s->hold = 0;
	/*
	 * A fork hold keeps our segments alive for the child until it has its
	 * own connection.  Without one (old server, error) the child registers
	 * them one by one, which the parent can race by releasing first.
	 */
	if (served_ready(s) == 0 && served_call(s, SERVED_OP_HOLD, NULL, 0, &a) == 0) {
		if (a.r.status == 0)
			s->hold = a.r.value;
		else
			llmp_log(LLMP_LOG_WARN, "served: pre_fork: %s", a.msg);
	}
	return 0;
}

static int served_post_fork(struct llmp_provider *p, bool child)
{
	struct served *s = p->priv;
	int ret = 0;

	if (child) {
		/* Only this thread exists in the child, and it took the lock in pre_fork. */
		ret = served_reconnect_child(s);
	}
	s->hold = 0; /* the parent leaves it to the child (or to its expiry) */
	if (s->fork_locked) {
		s->fork_locked = false;
		pthread_mutex_unlock(&s->lock);
	}
	return ret;
}

const struct llmp_shmem_ops llmp_shmem_served_ops = {
	.kind = LLMP_SHMEM_SERVED,
	.probe = served_probe,
	.provider_init = served_provider_init,
	.provider_fini = served_provider_fini,
	.create = served_create,
	.attach = served_attach,
	.release = served_release,
	.pre_fork = served_pre_fork,
	.post_fork = served_post_fork,
};

#else

LLMP_SHMEM_UNAVAILABLE_OPS(served, LLMP_SHMEM_SERVED,
			   "served provider: needs memfd and SCM_RIGHTS (Linux only so far)");

#endif
