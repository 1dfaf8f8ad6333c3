/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * What liveness_test and liveness_restart_test share: the forked sender
 * child, the `live` fixture (a broker and a receiver in the test process,
 * one variant per provider kind that tells a page's creator), and the
 * counts of live and mapped segments per kind (SERVED from its server's
 * STAT, KMOD from LLMP_IOC_STATS and debugfs).
 */
#ifndef LLMP_LIVENESS_FIXTURE_H
#define LLMP_LIVENESS_FIXTURE_H

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/shm.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "kselftest_harness.h"
#include "llmp_test.h"
#include "llmp/broker.h"
#include "uapi/linux/llmp.h"
/* The served wire format (internal), reached through include/ as in shmem_served_test. */
#include "llmp/../../lib/served_proto.h"

#define TAG_DATA 0x4c560001u
#define TAG_DONE 0x4c560002u
#define TAG_HELLO 0x4c560003u
#define MAXC 4
#define GRACE_MS 600
/*
 * How late a drop may come after the grace period before a test calls it
 * missing.  Generous on purpose: the tests assert that a dead client is
 * dropped, never how fast a loaded or emulated host gets there.
 */
#define SLACK_MS 15000
#define ENV_PREFIX "LLMPLV"

extern char **environ;

/* A data message: sequence number, sender number, checksum of the filler. */
struct payload {
	uint32_t seq;
	uint32_t sno;
	uint64_t sum;
	uint8_t fill[];
};

static inline size_t msg_len(uint32_t seq)
{
	return sizeof(struct payload) + (seq * 7u) % 200u;
}

static inline void fill_msg(uint8_t *buf, uint32_t sno, uint32_t seq)
{
	struct payload *pl = (struct payload *)buf;
	size_t n = msg_len(seq) - sizeof(*pl);

	pl->seq = seq;
	pl->sno = sno;
	for (size_t i = 0; i < n; i++)
		pl->fill[i] = (uint8_t)(seq * 31u + sno * 7u + i);
	pl->sum = llmp_test_fnv(pl->fill, n);
}

/* ---- the sender child ------------------------------------------------------ */

enum child_end { END_PAUSE, END_EXIT };

struct child_cfg {
	enum llmp_shmem_kind kind;
	const struct llmp_shmem_desc *bcast;
	uint32_t sno;
	uint32_t first, count;  /* sequence numbers first..first+count-1 */
	int wfd, rfd;           /* to / from the parent */
	unsigned delay_us;      /* between messages */
	enum child_end end;
	bool from_env;          /* reattach (llmp_client_from_env) instead of registering */
	bool save_env;          /* after sending: wait_safe, to_env, send the env to the parent */
};

static inline void write_env(int fd)
{
	for (char **e = environ; *e; e++)
		if (!strncmp(*e, ENV_PREFIX, strlen(ENV_PREFIX))) {
			size_t n = strlen(*e) + 1;

			if (write(fd, *e, n) != (ssize_t)n)
				_exit(90);
		}
	if (write(fd, "", 1) != 1)
		_exit(90);
}

static inline int run_child(const struct child_cfg *cfg)
{
	struct llmp_client_opts o = { .struct_size = sizeof(o), .page_size = 64 << 10,
				      .send_timeout_ms = 20000 };
	struct llmp_provider *p;
	struct llmp_client *c;
	struct llmp_shmem_desc od;
	uint8_t buf[256];
	int32_t id;
	char byte;

	if (llmp_provider_new(cfg->kind, &p) < 0)
		return 70;
	if (cfg->from_env) {
		if (llmp_client_from_env(p, ENV_PREFIX, &o, &c) < 0)
			return 71;
		if (read(cfg->rfd, &byte, 1) != 1) /* go */
			return 72;
	} else {
		if (llmp_client_new(p, cfg->bcast, &o, &c) < 0 || llmp_client_out_desc(c, &od) < 0)
			return 73;
		if (write(cfg->wfd, &od, sizeof(od)) != sizeof(od) ||
		    read(cfg->rfd, &id, sizeof(id)) != sizeof(id) || id <= 0)
			return 74;
		llmp_client_set_id(c, (uint32_t)id);
	}
	for (uint32_t i = cfg->first; i < cfg->first + cfg->count; i++) {
		fill_msg(buf, cfg->sno, i);
		if (llmp_client_send(c, TAG_DATA, 0, buf, msg_len(i)) < 0)
			return 75;
		if (cfg->delay_us)
			usleep(cfg->delay_us);
	}
	if (cfg->save_env) {
		if (llmp_client_wait_safe(c, 20000) < 0 || llmp_client_to_env(c, ENV_PREFIX) < 0)
			return 76;
		write_env(cfg->wfd);
	} else if (write(cfg->wfd, "k", 1) != 1) {
		return 77;
	}
	if (cfg->end == END_PAUSE)
		for (;;)
			pause();
	{
		uint32_t n = cfg->first + cfg->count;

		if (llmp_client_send(c, TAG_DONE, 0, &n, sizeof(n)) < 0)
			return 78;
	}
	llmp_client_free(c);
	llmp_provider_free(p);
	return 0;
}

/* ---- the test process: broker, receiver, bookkeeping -------------------------- */

struct track {
	pid_t pid;
	int wfd, rfd;        /* to / from the child */
	uint32_t id;         /* client id at the broker */
	uint32_t next;       /* next expected sequence number */
	bool done;
	uint32_t done_n;
};

FIXTURE(live)
{
	struct llmp_provider *p;
	struct llmp_broker *b;
	struct llmp_client *r;    /* receiver in this process (never dropped) */
	struct llmp_shmem_desc bd;
	struct track t[MAXC + 1];
	pid_t dead[MAXC + 2];
	unsigned ndead;
	int bad;                  /* first ordering / checksum violation, as a code */
	char why[200];
	struct llmp_shmem_server *srv; /* SERVED: this test's server */
	long base_segs;           /* SERVED/KMOD: live segments before the broker existed */
};

FIXTURE_VARIANT(live)
{
	enum llmp_shmem_kind kind;
};

FIXTURE_VARIANT_ADD(live, memfd) { .kind = LLMP_SHMEM_MEMFD };
FIXTURE_VARIANT_ADD(live, sysv) { .kind = LLMP_SHMEM_SYSV };
FIXTURE_VARIANT_ADD(live, posix) { .kind = LLMP_SHMEM_POSIX };
FIXTURE_VARIANT_ADD(live, served) { .kind = LLMP_SHMEM_SERVED };
FIXTURE_VARIANT_ADD(live, kmod) { .kind = LLMP_SHMEM_KMOD };

/* ---- SERVED and KMOD: who created a segment, how many live ------------------ */

static char served_path[64]; /* this test's server ("" without one) */

/* Exactly len bytes from fd; a passed descriptor is closed. */
static inline int recv_exact(int fd, void *buf, size_t len)
{
	char *b = buf;

	while (len) {
		union {
			struct cmsghdr a;
			char c[CMSG_SPACE(sizeof(int) * 4)];
		} ctl;
		struct iovec iov = { b, len };
		struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.c,
				      .msg_controllen = sizeof(ctl.c) };
		ssize_t n = recvmsg(fd, &msg, MSG_CMSG_CLOEXEC);

		if (n <= 0)
			return -1;
		for (struct cmsghdr *cm = CMSG_FIRSTHDR(&msg); cm; cm = CMSG_NXTHDR(&msg, cm)) {
			if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
				continue;
			for (size_t i = 0; i < (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int); i++) {
				int pfd;

				memcpy(&pfd, CMSG_DATA(cm) + i * sizeof(int), sizeof(int));
				close(pfd);
			}
		}
		b += n;
		len -= (size_t)n;
	}
	return 0;
}

/* One request on a raw served connection (version 2); the reply's status. */
static inline int served_rpc(int fd, uint16_t op, const void *body, uint32_t len,
		      struct served_reply *r)
{
	unsigned char buf[sizeof(struct served_hdr) + SERVED_MAX_REPLY_BODY];
	struct served_hdr h = { .magic = SERVED_MAGIC, .version = SERVED_VERSION_PIDS, .op = op,
				.length = len };

	memcpy(buf, &h, sizeof(h));
	if (len)
		memcpy(buf + sizeof(h), body, len);
	if (send(fd, buf, sizeof(h) + len, MSG_NOSIGNAL) != (ssize_t)(sizeof(h) + len) ||
	    recv_exact(fd, &h, sizeof(h)) < 0 || h.op != (op | SERVED_OP_REPLY) ||
	    h.length < sizeof(*r) || h.length > SERVED_MAX_REPLY_BODY ||
	    recv_exact(fd, buf, h.length) < 0)
		return -EBADMSG;
	memcpy(r, buf, sizeof(*r));
	return r->status;
}

static char served_why[160]; /* why the last served_raw() failed */

/* One attempt of served_raw(); the reason in served_why on failure. */
static inline int served_raw_once(void)
{
	struct served_hello hi = { .min_version = SERVED_VERSION_PIDS,
				   .max_version = SERVED_VERSION_PIDS };
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct timeval tv = { .tv_sec = 20 };
	struct served_reply r;
	size_t n = strlen(served_path);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0), ret;

	if (fd < 0 || n < 2) {
		snprintf(served_why, sizeof(served_why), "socket: %s, path '%s'",
			 fd < 0 ? strerror(errno) : "ok", served_path);
		goto fail;
	}
	memcpy(sa.sun_path + 1, served_path + 1, n - 1); /* abstract: leading NUL */
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	if (connect(fd, (struct sockaddr *)&sa,
		    (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n)) < 0) {
		snprintf(served_why, sizeof(served_why), "connect %s: %s", served_path,
			 strerror(errno));
		goto fail;
	}
	errno = 0;
	ret = served_rpc(fd, SERVED_OP_HELLO, &hi, sizeof(hi), &r);
	if (ret != 0) {
		snprintf(served_why, sizeof(served_why), "HELLO to %s: status %d (errno %s)",
			 served_path, ret, strerror(errno));
		goto fail;
	}
	return fd;
fail:
	if (fd >= 0)
		close(fd);
	return -1;
}

/*
 * A raw connection to this test's server that spoke HELLO (version 2), or
 * -1 (reason in served_why).  A few tries, each waiting up to 20 s for the
 * reply: an emulated guest may be slow, and a failure here says nothing
 * about the broker under test.
 */
static inline int served_raw(void)
{
	int fd = -1;

	for (int i = 0; i < 3 && fd < 0; i++) {
		if (i)
			usleep(100000);
		fd = served_raw_once();
		if (fd < 0)
			fprintf(stderr, "# served_raw: %s\n", served_why);
	}
	return fd;
}

/* Segments the server holds, or -1. */
static inline long served_segments(void)
{
	struct served_reply r;
	int fd = served_raw();
	long n = -1;

	if (fd >= 0 && served_rpc(fd, SERVED_OP_STAT, NULL, 0, &r) == 0)
		n = r.value;
	if (fd >= 0)
		close(fd);
	return n;
}

/* SERVED: distinct segments this process maps that pid created (asked of the server). */
static inline int served_mapped_of(pid_t pid)
{
	char line[512], seen[64][LLMP_SHMEM_ID_LEN];
	unsigned nseen = 0;
	FILE *f = fopen("/proc/self/maps", "r");
	int fd = served_raw(), n = 0;

	while (f && fd >= 0 && fgets(line, sizeof(line), f)) {
		const char *q = strstr(line, "/memfd:llmp-served:");
		struct served_id req;
		struct served_reply r;
		size_t k = 0;
		unsigned i;

		if (!q)
			continue;
		q += strlen("/memfd:llmp-served:");
		memset(&req, 0, sizeof(req));
		while (q[k] && q[k] != ' ' && q[k] != '\n' && k < LLMP_SHMEM_ID_LEN - 1) {
			req.id[k] = q[k];
			k++;
		}
		for (i = 0; i < nseen && strcmp(seen[i], req.id); i++)
			;
		if (i < nseen || nseen == 64)
			continue;
		memcpy(seen[nseen++], req.id, LLMP_SHMEM_ID_LEN);
		if (served_rpc(fd, SERVED_OP_ATTACH, &req, sizeof(req), &r) != 0)
			continue; /* mapped, but the server forgot it: nobody holds it */
		n += r.pid == (uint32_t)pid;
		served_rpc(fd, SERVED_OP_RELEASE, &req, sizeof(req), &r);
	}
	if (f)
		fclose(f);
	if (fd >= 0)
		close(fd);
	return fd < 0 ? -1 : n;
}

/* KMOD: live segments pid created (debugfs, as the init pid namespace sees it), or -1. */
static inline int kmod_created_by(pid_t pid)
{
	FILE *f = fopen("/sys/kernel/debug/llmp/segments", "r");
	char line[256];
	int n = 0;

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f)) {
		unsigned id, uid;
		unsigned long long size;
		int cpid;

		if (sscanf(line, "%u %llu %u %d", &id, &size, &uid, &cpid) == 4 && cpid == pid)
			n++;
	}
	fclose(f);
	return n;
}

static inline long live_segments(enum llmp_shmem_kind kind)
{
	return kind == LLMP_SHMEM_SERVED ? served_segments() :
	       kind == LLMP_SHMEM_KMOD ? llmp_test_kmod_segments() : -1;
}

/* Wait (up to 3 s) until the kind counts want live segments; the last count. */
static inline long wait_segments(enum llmp_shmem_kind kind, long want)
{
	long n = -1;

	for (int i = 0; i < 300; i++) {
		n = live_segments(kind);
		if (n == want)
			break;
		usleep(10000);
	}
	return n;
}

static inline bool counted_kind(enum llmp_shmem_kind kind)
{
	return kind == LLMP_SHMEM_SERVED || kind == LLMP_SHMEM_KMOD;
}

static int drops_logged;

/* This harness runs the test after a SKIP in setup: return at once then. */
#define NEED_PROVIDER() do { if (!self->p) return; } while (0)

static inline void log_cb(void *ctx, enum llmp_log_level level, const char *msg)
{
	(void)ctx;
	if (strstr(msg, "died; dropped"))
		drops_logged++;
	if (level <= LLMP_LOG_WARN)
		fprintf(stderr, "# llmp: %s\n", msg);
}

FIXTURE_SETUP(live)
{
	struct llmp_broker_opts bo = { .struct_size = sizeof(bo),
				       .dead_client_grace_ms = GRACE_MS };
	int ret;

	memset(self->t, 0, sizeof(self->t));
	for (unsigned i = 0; i <= MAXC; i++)
		self->t[i].wfd = self->t[i].rfd = -1;
	served_path[0] = '\0';
	if (variant->kind == LLMP_SHMEM_SERVED) {
		/* a server process of our own; the children find it through the environment */
		snprintf(served_path, sizeof(served_path), "@llmp-liveness-%d", (int)getpid());
		ASSERT_EQ(0, llmp_shmem_server_start(served_path, LLMP_SHMEM_SERVER_PROCESS,
						     &self->srv)) TH_LOG("%s", llmp_strerror_last());
		ASSERT_EQ(0, setenv("LLMP_SHMEM_SERVER", served_path, 1));
	}
	ret = llmp_provider_new(variant->kind, &self->p);
	if (ret == -ENODEV) {
		self->p = NULL;
		SKIP(return, "%s provider not available here: %s",
		     llmp_shmem_kind_name(variant->kind), llmp_strerror_last());
	}
	ASSERT_EQ(0, ret) TH_LOG("%s", llmp_strerror_last());
	drops_logged = 0;
	llmp_set_log(log_cb, NULL, LLMP_LOG_INFO);
	self->base_segs = live_segments(variant->kind);
	if (counted_kind(variant->kind))
		ASSERT_LE(0, self->base_segs);
	ASSERT_EQ(0, llmp_broker_new(self->p, &bo, &self->b)) TH_LOG("%s", llmp_strerror_last());
	ASSERT_EQ(0, llmp_broker_broadcast_desc(self->b, &self->bd));
	ASSERT_EQ(0, llmp_client_new(self->p, &self->bd, NULL, &self->r))
		TH_LOG("%s", llmp_strerror_last());
}

FIXTURE_TEARDOWN(live)
{
	for (unsigned i = 0; i <= MAXC; i++) {
		if (self->t[i].pid > 0) {
			kill(self->t[i].pid, SIGKILL);
			waitpid(self->t[i].pid, NULL, 0);
			llmp_test_remove_orphans(variant->kind, self->t[i].pid);
		}
		if (self->t[i].wfd >= 0)
			close(self->t[i].wfd);
		if (self->t[i].rfd >= 0)
			close(self->t[i].rfd);
	}
	if (self->r)
		llmp_client_free(self->r);
	if (self->b)
		llmp_broker_free(self->b);
	for (unsigned i = 0; i < self->ndead; i++)
		llmp_test_remove_orphans(variant->kind, self->dead[i]);
	if (self->p)
		llmp_provider_free(self->p);
	if (self->srv) {
		llmp_shmem_server_stop(self->srv);
		unsetenv("LLMP_SHMEM_SERVER");
	}
	llmp_set_log(NULL, NULL, LLMP_LOG_WARN);
}

/*
 * SERVED/KMOD: free the broker and the receiver; then every segment is
 * gone, the dead clients' included: the live count is what it was before.
 */
static inline int release_all(FIXTURE_DATA(live) *self, enum llmp_shmem_kind kind)
{
	llmp_client_free(self->r);
	self->r = NULL;
	llmp_broker_free(self->b);
	self->b = NULL;
	return counted_kind(kind) ? wait_segments(kind, self->base_segs) == self->base_segs : 1;
}

/*
 * Fork a sender (slot i), register it (unless from_env) and remember it.
 * Returns 0, or -1.
 */
static inline int start_child(FIXTURE_DATA(live) *self, unsigned i, struct child_cfg *cfg)
{
	int c2p[2], p2c[2];
	pid_t pid;

	if (pipe(c2p) < 0 || pipe(p2c) < 0)
		return -1;
	fflush(NULL);
	pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		close(c2p[0]);
		close(p2c[1]);
		cfg->wfd = c2p[1];
		cfg->rfd = p2c[0];
		cfg->bcast = &self->bd;
		_exit(run_child(cfg));
	}
	close(c2p[1]);
	close(p2c[0]);
	memset(&self->t[i], 0, sizeof(self->t[i]));
	self->t[i].pid = pid;
	self->t[i].rfd = c2p[0];
	self->t[i].wfd = p2c[1];
	self->t[i].next = cfg->first;
	if (!cfg->from_env) {
		struct llmp_shmem_desc od;
		int32_t id;

		if (read(c2p[0], &od, sizeof(od)) != sizeof(od))
			return -1;
		id = llmp_broker_add_client(self->b, &od);
		if (id <= 0 || write(p2c[1], &id, sizeof(id)) != sizeof(id))
			return -1;
		self->t[i].id = (uint32_t)id;
	}
	return 0;
}

static inline void set_bad(FIXTURE_DATA(live) *self, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static inline void set_bad(FIXTURE_DATA(live) *self, const char *fmt, ...)
{
	va_list ap;

	if (self->bad)
		return;
	self->bad = 1;
	va_start(ap, fmt);
	vsnprintf(self->why, sizeof(self->why), fmt, ap);
	va_end(ap);
}

/* One broker pass, then read everything the receiver has; checks order and sums. */
static inline int pump(FIXTURE_DATA(live) *self)
{
	struct llmp_msg_view v;
	int ret = llmp_broker_once(self->b), r;

	if (ret < 0)
		return ret;
	while ((r = llmp_client_recv(self->r, &v)) == 1) {
		struct track *t = NULL;

		for (unsigned i = 0; i <= MAXC; i++)
			if (self->t[i].pid != 0 && self->t[i].id == v.sender)
				t = &self->t[i];
		if (!t) {
			set_bad(self, "message from unknown sender %u tag %x", v.sender, v.tag);
			continue;
		}
		if (v.tag == TAG_DONE && v.len == sizeof(uint32_t)) {
			t->done = true;
			memcpy(&t->done_n, v.buf, sizeof(t->done_n));
			continue;
		}
		if (v.tag != TAG_DATA || v.len < sizeof(struct payload)) {
			set_bad(self, "sender %u: tag %x len %u", v.sender, v.tag, (uint32_t)v.len);
			continue;
		}
		{
			const struct payload *pl = v.buf;

			if (pl->seq != t->next || v.len != msg_len(pl->seq))
				set_bad(self, "sender %u: seq %u, expected %u", v.sender, pl->seq,
					t->next);
			else if (pl->sum != llmp_test_fnv(pl->fill, v.len - sizeof(*pl)))
				set_bad(self, "sender %u: seq %u: bad checksum", v.sender,
					pl->seq);
			t->next = pl->seq + 1;
		}
	}
	/* -ESHUTDOWN: the broker said EXITING (after run() returned) */
	return r < 0 && r != -ESHUTDOWN ? r : ret;
}

/* Lines of /proc/self/maps naming a segment created by pid (MEMFD, POSIX). */
static inline int maps_of(enum llmp_shmem_kind kind, pid_t pid)
{
	char want[64], line[512];
	FILE *f = fopen("/proc/self/maps", "r");
	int n = 0;

	if (kind == LLMP_SHMEM_MEMFD)
		snprintf(want, sizeof(want), "/memfd:llmp-%d-", (int)pid);
	else
		snprintf(want, sizeof(want), "/dev/shm/libafl_%d_", (int)pid);
	while (f && fgets(line, sizeof(line), f))
		n += strstr(line, want) != NULL;
	if (f)
		fclose(f);
	return n;
}

/* SYSV: attachments of the segments pid created (the creator's and ours). */
static inline int sysv_nattch_of(pid_t pid)
{
	struct shm_info info;
	int max = shmctl(0, SHM_INFO, (struct shmid_ds *)(void *)&info), n = 0;

	for (int i = 0; i <= max; i++) {
		struct shmid_ds ds;

		if (shmctl(i, SHM_STAT, &ds) >= 0 && ds.shm_cpid == pid)
			n += (int)ds.shm_nattch;
	}
	return n;
}

/*
 * Segments pid created that are still mapped (SYSV: attachments, MEMFD and
 * POSIX: our mappings, SERVED: our mappings by the server's creator, KMOD:
 * live segments by the module's creator; -1 if that cannot be read).
 */
static inline int mapped_of(enum llmp_shmem_kind kind, pid_t pid)
{
	switch (kind) {
	case LLMP_SHMEM_SYSV: return sysv_nattch_of(pid);
	case LLMP_SHMEM_SERVED: return served_mapped_of(pid);
	case LLMP_SHMEM_KMOD: return kmod_created_by(pid);
	default: return maps_of(kind, pid);
	}
}

/* Reap a killed child: remember its pid for the segment clean-up. */
static inline void forget(FIXTURE_DATA(live) *self, unsigned i, bool reap)
{
	if (reap)
		waitpid(self->t[i].pid, NULL, 0);
	self->dead[self->ndead++] = self->t[i].pid;
	self->t[i].pid = -self->t[i].pid; /* keep the id for late messages */
}

#endif /* LLMP_LIVENESS_FIXTURE_H */
