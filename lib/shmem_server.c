// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * The shmem server behind the SERVED provider: its loop and its life.
 *
 * One poll() loop serves every client over a Unix stream socket.  Segments
 * are sealed memfds; a CREATE or ATTACH reply passes the memfd with
 * SCM_RIGHTS.  What the requests do (segments, references, fork holds) is
 * lib/served_table.c; where the socket lives is lib/served_sock.c.
 *
 * Client sockets are non-blocking and each has its own input buffer, so a
 * client that sends half a request and stalls blocks nobody.  A request
 * whose framing is broken (bad magic, oversized body) gets an error reply
 * and the connection is closed; any other bad request gets an error reply
 * and the connection stays.  A client that does not read its replies (the
 * socket buffer fills) is dropped.  When a connection closes (exit, crash,
 * SIGKILL) every reference it held goes.
 *
 * Only clients of the server's own user (or root) are served.
 *
 * The loop runs in a thread of the caller (THREAD) or in a forked child
 * process (PROCESS).  The wire format is in served_proto.h.
 */
#include "internal.h"

#if defined(__linux__)

#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "served_server.h"

/* Requests handled per client per poll round (fairness between clients). */
#define SRV_REQS_PER_ROUND 64

struct llmp_shmem_server {
	enum llmp_shmem_server_mode mode;
	pid_t creator;		/* process that started it */
	char *unlink_path;	/* filesystem socket to remove on stop, or NULL */
	struct stat bound;	/* that socket file as we bound it */
	pthread_t thread;	/* THREAD */
	int wake_w;		/* THREAD: write end of the stop pipe */
	pid_t child;		/* PROCESS */
	struct srv_state st;
};

static void client_close(struct srv_state *st, struct srv_client *c)
{
	srv_client_unref(st, c);
	close(c->fd);
	free(c->refs);
	free(c);
}

/* ---- replies --------------------------------------------------------------- */

int srv_reply_err(struct srv_reply *rep, int err, const char *fmt, ...)
{
	va_list ap;

	rep->r.status = err;
	va_start(ap, fmt);
	vsnprintf(rep->msg, sizeof(rep->msg), fmt, ap);
	va_end(ap);
	return err;
}

/* Send one reply; on failure the client is marked dead. */
static void reply_send(struct srv_client *c, uint16_t op, struct srv_reply *rep)
{
	unsigned char buf[sizeof(struct served_hdr) + SERVED_MAX_REPLY_BODY];
	struct served_hdr h;
	size_t mlen = strnlen(rep->msg, SERVED_MAX_MSG);
	size_t len = sizeof(h) + sizeof(rep->r) + mlen;
	union {
		struct cmsghdr align;
		char buf[CMSG_SPACE(sizeof(int))];
	} ctl;
	struct iovec iov = { .iov_base = buf, .iov_len = len };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1 };
	ssize_t n;

	memset(&h, 0, sizeof(h));
	h.magic = SERVED_MAGIC;
	h.version = c->hello ? c->version : SERVED_VERSION;
	h.op = op;
	h.length = (uint32_t)(sizeof(rep->r) + mlen);
	memcpy(buf, &h, sizeof(h));
	memcpy(buf + sizeof(h), &rep->r, sizeof(rep->r));
	memcpy(buf + sizeof(h) + sizeof(rep->r), rep->msg, mlen);
	if (rep->fd >= 0) {
		struct cmsghdr *cm;

		memset(&ctl, 0, sizeof(ctl));
		msg.msg_control = ctl.buf;
		msg.msg_controllen = sizeof(ctl.buf);
		cm = CMSG_FIRSTHDR(&msg);
		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(cm), &rep->fd, sizeof(int));
	}
	do {
		n = sendmsg(c->fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
	} while (n < 0 && errno == EINTR);
	if (n != (ssize_t)len) {
		/* Gone, or not reading its replies: a partial reply cannot be resumed. */
		llmp_log(LLMP_LOG_DEBUG, "shmem server: dropping client fd %d: reply not sent (%s)",
			 c->fd, n < 0 ? strerror(errno) : "socket buffer full");
		c->dead = true;
	}
}

/* Answer one complete request. */
static void handle(struct srv_state *st, struct srv_client *c, const struct served_hdr *h,
		   const unsigned char *body)
{
	struct srv_reply rep;
	uint16_t op = h->op;

	memset(&rep, 0, sizeof(rep));
	rep.fd = -1;
	srv_handle(st, c, h, body, &rep);
	if (rep.r.status < 0)
		llmp_log(LLMP_LOG_DEBUG, "shmem server: client fd %d: %s", c->fd, rep.msg);
	reply_send(c, (op & SERVED_OP_REPLY) ? SERVED_OP_ERROR : (uint16_t)(op | SERVED_OP_REPLY),
		   &rep);
}

/* ---- the loop -------------------------------------------------------------- */

/* Read what client c has sent and answer every complete request. */
static void client_input(struct srv_state *st, struct srv_client *c)
{
	int handled = 0;

	while (!c->dead && handled < SRV_REQS_PER_ROUND) {
		struct served_hdr h;
		size_t want = sizeof(h);
		ssize_t n;

		if (c->have >= sizeof(h)) {
			memcpy(&h, c->in, sizeof(h));
			want += h.length;
		}
		if (c->have < want) {
			n = recv(c->fd, c->in + c->have, want - c->have, MSG_DONTWAIT);
			if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
				if (c->have)
					llmp_log(LLMP_LOG_DEBUG, "shmem server: client fd %d closed "
						 "in the middle of a request", c->fd);
				c->dead = true;
				return;
			}
			if (n < 0) {
				if (errno == EAGAIN)
					return;
				continue;
			}
			c->have += (size_t)n;
			if (c->have < want)
				continue;
		}
		memcpy(&h, c->in, sizeof(h));
		if (c->have == sizeof(h)) {
			/* Header complete: framing checks before waiting for a body. */
			struct srv_reply rep;

			memset(&rep, 0, sizeof(rep));
			rep.fd = -1;
			if (h.magic != SERVED_MAGIC)
				srv_reply_err(&rep, -EBADMSG, "bad magic %#x: not an llmp shmem "
					  "client", h.magic);
			else if (h.length > SERVED_MAX_REQ_BODY)
				srv_reply_err(&rep, -EMSGSIZE, "request body of %u bytes, at most %u",
					  h.length, SERVED_MAX_REQ_BODY);
			if (rep.r.status < 0) {
				llmp_log(LLMP_LOG_DEBUG, "shmem server: client fd %d: %s", c->fd,
					 rep.msg);
				reply_send(c, SERVED_OP_ERROR, &rep);
				c->dead = true; /* the stream cannot be resynchronised */
				return;
			}
			if (h.length)
				continue;
		}
		handle(st, c, &h, c->in + sizeof(h));
		c->have = 0;
		handled++;
	}
}

/* Tell a new connection why it is refused (best effort), then close it. */
static void LLMP_PRINTF(3, 4) refuse(int fd, int err, const char *fmt, ...)
{
	struct srv_client c = { .fd = fd };
	struct srv_reply rep;
	va_list ap;

	memset(&rep, 0, sizeof(rep));
	rep.fd = -1;
	rep.r.status = err;
	va_start(ap, fmt);
	vsnprintf(rep.msg, sizeof(rep.msg), fmt, ap);
	va_end(ap);
	llmp_log(LLMP_LOG_WARN, "shmem server: %s", rep.msg);
	reply_send(&c, SERVED_OP_ERROR, &rep);
	close(fd);
}

static void srv_accept(struct srv_state *st)
{
	for (;;) {
		int fd = accept4(st->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		struct srv_client *c, **cls;

		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			if (errno != EAGAIN)
				llmp_log(LLMP_LOG_WARN, "shmem server: accept: %s", strerror(errno));
			return;
		}
		struct ucred cred;
		socklen_t clen = sizeof(cred);

		/* Only our own user (or root) may use our segments. */
		if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &clen) < 0) {
			refuse(fd, -EACCES, "cannot read the credentials of a new client: %s",
			       strerror(errno));
			continue;
		}
		if (cred.uid != geteuid() && cred.uid != 0) {
			refuse(fd, -EACCES, "refusing pid %d: uid %u is neither %u nor root",
			       (int)cred.pid, (unsigned)cred.uid, (unsigned)geteuid());
			continue;
		}
		if (st->ncls >= SERVED_MAX_CLIENTS) {
			refuse(fd, -EMFILE, "%u clients already, refusing one more",
			       SERVED_MAX_CLIENTS);
			continue;
		}
		c = calloc(1, sizeof(*c));
		cls = realloc(st->cls, (st->ncls + 1) * sizeof(*cls));
		if (!c || !cls) {
			free(c);
			if (cls)
				st->cls = cls;
			close(fd);
			continue;
		}
		st->cls = cls;
		c->fd = fd;
		c->pid = cred.pid > 0 ? (uint32_t)cred.pid : 0;
		st->cls[st->ncls++] = c;
	}
}

static void srv_loop(struct srv_state *st)
{
	struct pollfd *pfd = NULL;
	size_t pcap = 0;

	for (;;) {
		size_t base = st->wake >= 0 ? 2 : 1, n = base + st->ncls;

		if (n > pcap) {
			struct pollfd *np = realloc(pfd, n * sizeof(*np));

			if (!np) {
				/* Retry later rather than lose the clients. */
				struct timespec ts = { 0, 10 * 1000 * 1000 };

				nanosleep(&ts, NULL);
				continue;
			}
			pfd = np;
			pcap = n;
		}
		pfd[0] = (struct pollfd){ .fd = st->lfd, .events = POLLIN };
		if (st->wake >= 0)
			pfd[1] = (struct pollfd){ .fd = st->wake, .events = POLLIN };
		for (size_t i = 0; i < st->ncls; i++)
			pfd[base + i] = (struct pollfd){ .fd = st->cls[i]->fd, .events = POLLIN };
		if (poll(pfd, n, srv_holds_expire(st)) < 0) {
			if (errno == EINTR)
				continue;
			llmp_log(LLMP_LOG_ERROR, "shmem server: poll: %s", strerror(errno));
			break;
		}
		if (st->wake >= 0 && pfd[1].revents)
			break;
		for (size_t i = 0; i < st->ncls; i++) {
			if (pfd[base + i].revents)
				client_input(st, st->cls[i]);
		}
		for (size_t i = 0; i < st->ncls;) {
			if (st->cls[i]->dead) {
				client_close(st, st->cls[i]);
				st->cls[i] = st->cls[--st->ncls];
			} else {
				i++;
			}
		}
		if (pfd[0].revents)
			srv_accept(st);
		srv_holds_expire(st);
	}
	free(pfd);
}

static void srv_state_fini(struct srv_state *st)
{
	for (size_t i = 0; i < st->ncls; i++)
		client_close(st, st->cls[i]);
	free(st->cls);
	st->cls = NULL;
	st->ncls = 0;
	srv_table_fini(st);
	if (st->lfd >= 0)
		close(st->lfd);
	st->lfd = -1;
	if (st->wake >= 0)
		close(st->wake);
	st->wake = -1;
}

static void *srv_thread(void *arg)
{
	struct llmp_shmem_server *s = arg;
	sigset_t all;

	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, NULL);
	srv_loop(&s->st);
	return NULL;
}

static void make_tag(char tag[8])
{
	static const char alpha[] = "abcdefghijklmnopqrstuvwxyz0123456789";
	unsigned char r[6];

	if (getrandom(r, sizeof(r), GRND_NONBLOCK) != (ssize_t)sizeof(r)) {
		struct timespec ts;
		uint64_t x;

		clock_gettime(CLOCK_MONOTONIC, &ts);
		x = (uint64_t)ts.tv_nsec * 0x9E3779B97F4A7C15ULL ^ (uint64_t)getpid() << 20 ^
		    (uint64_t)ts.tv_sec;
		for (size_t i = 0; i < sizeof(r); i++)
			r[i] = (unsigned char)(x >> (8 * i));
	}
	for (size_t i = 0; i < sizeof(r); i++)
		tag[i] = alpha[r[i] % (sizeof(alpha) - 1)];
	tag[6] = 0;
}

/* PROCESS mode: the child's life.  Never returns. */
static void srv_child(struct llmp_shmem_server *s, pid_t parent)
{
	struct sigaction dfl;
	sigset_t none;
	int fd = s->st.lfd;

	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() != parent)
		_exit(0);
	memset(&dfl, 0, sizeof(dfl));
	dfl.sa_handler = SIG_DFL;
	sigaction(SIGTERM, &dfl, NULL);
	sigaction(SIGINT, &dfl, NULL);
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	/* Hold nothing of the parent's but stdio: its clients' sockets, its memfds. */
	if (fd != 3 && fd > 2) {
		if (dup3(fd, 3, O_CLOEXEC) == 3)
			fd = 3;
	}
	if (fd == 3) {
		s->st.lfd = 3;
		syscall(SYS_close_range, 4U, ~0U, 0U);
	}
	srv_loop(&s->st);
	_exit(0);
}

int llmp_shmem_server_start(const char *socket_path, enum llmp_shmem_server_mode mode,
			    struct llmp_shmem_server **out)
{
	struct llmp_shmem_server *s;
	char defpath[sizeof(((struct sockaddr_un *)0)->sun_path)];
	const char *path = socket_path;
	int fd, pfd[2], ret;

	if (!out)
		return llmp_err(-EINVAL, "shmem server: NULL out pointer");
	*out = NULL;
	if (mode != LLMP_SHMEM_SERVER_THREAD && mode != LLMP_SHMEM_SERVER_PROCESS)
		return llmp_err(-EINVAL, "shmem server: invalid mode %d", (int)mode);
	if (!path) {
		ret = llmp_served_default_path(defpath, sizeof(defpath), true);
		if (ret < 0)
			return ret;
		path = defpath;
	}
	s = calloc(1, sizeof(*s));
	if (!s)
		return llmp_err(-ENOMEM, "shmem server: out of memory");
	s->mode = mode;
	s->creator = getpid();
	s->wake_w = -1;
	s->st.wake = -1;
	make_tag(s->st.tag);
	s->st.hold_ms = SERVED_HOLD_MS_DEFAULT;
	{
		const char *e = getenv("LLMP_SHMEM_SERVER_HOLD_MS");
		char *end;
		unsigned long v;

		if (e && *e) {
			errno = 0;
			v = strtoul(e, &end, 10);
			if (errno || *end || v == 0 || v > 3600000UL)
				llmp_log(LLMP_LOG_WARN, "shmem server: ignoring LLMP_SHMEM_SERVER_HOLD_MS"
					 "='%.20s' (1..3600000)", e);
			else
				s->st.hold_ms = (uint32_t)v;
		}
	}
	fd = llmp_served_listen(path, &s->bound);
	if (fd < 0) {
		free(s);
		return fd;
	}
	s->st.lfd = fd;
	if (path[0] != '@') {
		s->unlink_path = strdup(path);
		if (!s->unlink_path) {
			ret = llmp_err(-ENOMEM, "shmem server: out of memory");
			llmp_served_unlink(path, &s->bound);
			goto fail;
		}
	}
	if (mode == LLMP_SHMEM_SERVER_THREAD) {
		if (pipe2(pfd, O_CLOEXEC | O_NONBLOCK) < 0) {
			ret = llmp_err(-errno, "shmem server: pipe: %s", strerror(errno));
			goto fail;
		}
		s->st.wake = pfd[0];
		s->wake_w = pfd[1];
		ret = pthread_create(&s->thread, NULL, srv_thread, s);
		if (ret) {
			ret = llmp_err(-ret, "shmem server: pthread_create: %s", strerror(ret));
			goto fail;
		}
	} else {
		pid_t parent = getpid();
		pid_t pid = fork();

		if (pid < 0) {
			ret = llmp_err(-errno, "shmem server: fork: %s", strerror(errno));
			goto fail;
		}
		if (pid == 0)
			srv_child(s, parent);
		s->child = pid;
		close(s->st.lfd); /* the child listens; keeping a copy would hide its death */
		s->st.lfd = -1;
	}
	llmp_log(LLMP_LOG_INFO, "shmem server: serving on %s (%s, tag %s)", path,
		 mode == LLMP_SHMEM_SERVER_THREAD ? "thread" : "process", s->st.tag);
	*out = s;
	return 0;
fail:
	srv_state_fini(&s->st);
	if (s->wake_w >= 0)
		close(s->wake_w);
	llmp_served_unlink(s->unlink_path, &s->bound);
	free(s->unlink_path);
	free(s);
	return ret;
}

void llmp_shmem_server_stop(struct llmp_shmem_server *s)
{
	if (!s)
		return;
	if (getpid() != s->creator) {
		/* A forked copy: the server belongs to the parent; just drop our fds. */
		if (s->mode == LLMP_SHMEM_SERVER_THREAD) {
			s->st.ncls = 0; /* the copies of its state are not ours to walk */
			s->st.nsegs = 0;
			close(s->wake_w);
		}
		if (s->st.lfd >= 0)
			close(s->st.lfd);
		if (s->st.wake >= 0)
			close(s->st.wake);
		free(s->unlink_path);
		free(s);
		return;
	}
	if (s->mode == LLMP_SHMEM_SERVER_THREAD) {
		char b = 1;
		ssize_t n;

		do {
			n = write(s->wake_w, &b, 1);
		} while (n < 0 && errno == EINTR);
		pthread_join(s->thread, NULL);
		close(s->wake_w);
		srv_state_fini(&s->st);
	} else {
		int status;

		kill(s->child, SIGKILL);
		while (waitpid(s->child, &status, 0) < 0 && errno == EINTR)
			;
	}
	llmp_served_unlink(s->unlink_path, &s->bound);
	free(s->unlink_path);
	free(s);
}

#else /* !__linux__ */

int llmp_shmem_server_start(const char *socket_path, enum llmp_shmem_server_mode mode,
			    struct llmp_shmem_server **out)
{
	(void)socket_path;
	(void)mode;
	if (out)
		*out = NULL;
	return llmp_err(-ENODEV, "shmem server: needs memfd and SCM_RIGHTS (Linux only so far)");
}

void llmp_shmem_server_stop(struct llmp_shmem_server *s)
{
	(void)s;
}

#endif
