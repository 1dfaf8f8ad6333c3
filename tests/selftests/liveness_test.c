// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * Dead clients and dead brokers.  Clients run in forked processes and are
 * SIGKILLed: the broker (in the test process) must forward everything they
 * committed, drop them (llmp_broker_check_clients), release their pages
 * and keep serving the others.  A SysV client restarted from the
 * environment within the grace period is not dropped.  A client whose
 * broker was SIGKILLed gets -EPIPE from llmp_client_recv_wait().
 *
 * Every provider kind that tells a page's creator runs these: MEMFD, POSIX
 * and SYSV from the id or IPC_STAT, SERVED from its server (protocol
 * version 2; a server process per test) and KMOD from LLMP_IOC_SEG_INFO
 * (SKIP without /dev/llmp; runs in the VM).  For SERVED and KMOD, "pages
 * released" is also checked against the segment counts of the server (STAT)
 * and of the module (LLMP_IOC_STATS): back to the count before the broker
 * existed once the broker and the receiver are freed.
 */
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

static size_t msg_len(uint32_t seq)
{
	return sizeof(struct payload) + (seq * 7u) % 200u;
}

static void fill_msg(uint8_t *buf, uint32_t sno, uint32_t seq)
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

static void write_env(int fd)
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

static int run_child(const struct child_cfg *cfg)
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
static int recv_exact(int fd, void *buf, size_t len)
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
static int served_rpc(int fd, uint16_t op, const void *body, uint32_t len,
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
static int served_raw_once(void)
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
static int served_raw(void)
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
static long served_segments(void)
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
static int served_mapped_of(pid_t pid)
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
static int kmod_created_by(pid_t pid)
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

static long live_segments(enum llmp_shmem_kind kind)
{
	return kind == LLMP_SHMEM_SERVED ? served_segments() :
	       kind == LLMP_SHMEM_KMOD ? llmp_test_kmod_segments() : -1;
}

/* Wait (up to 3 s) until the kind counts want live segments; the last count. */
static long wait_segments(enum llmp_shmem_kind kind, long want)
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

static bool counted_kind(enum llmp_shmem_kind kind)
{
	return kind == LLMP_SHMEM_SERVED || kind == LLMP_SHMEM_KMOD;
}

static int drops_logged;

/* This harness runs the test after a SKIP in setup: return at once then. */
#define NEED_PROVIDER() do { if (!self->p) return; } while (0)

static void log_cb(void *ctx, enum llmp_log_level level, const char *msg)
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
static int release_all(FIXTURE_DATA(live) *self, enum llmp_shmem_kind kind)
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
static int start_child(FIXTURE_DATA(live) *self, unsigned i, struct child_cfg *cfg)
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

static void set_bad(FIXTURE_DATA(live) *self, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static void set_bad(FIXTURE_DATA(live) *self, const char *fmt, ...)
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
static int pump(FIXTURE_DATA(live) *self)
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
static int maps_of(enum llmp_shmem_kind kind, pid_t pid)
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
static int sysv_nattch_of(pid_t pid)
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
static int mapped_of(enum llmp_shmem_kind kind, pid_t pid)
{
	switch (kind) {
	case LLMP_SHMEM_SYSV: return sysv_nattch_of(pid);
	case LLMP_SHMEM_SERVED: return served_mapped_of(pid);
	case LLMP_SHMEM_KMOD: return kmod_created_by(pid);
	default: return maps_of(kind, pid);
	}
}

/* Reap a killed child: remember its pid for the segment clean-up. */
static void forget(FIXTURE_DATA(live) *self, unsigned i, bool reap)
{
	if (reap)
		waitpid(self->t[i].pid, NULL, 0);
	self->dead[self->ndead++] = self->t[i].pid;
	self->t[i].pid = -self->t[i].pid; /* keep the id for late messages */
}

/*
 * (a) A client sends K messages and is SIGKILLed while a second one keeps
 * sending: all K arrive, the dead one is dropped within grace + 1 s and its
 * pages are unmapped; the healthy one is served to its clean exit.
 */
TEST_F_TIMEOUT(live, killed_client_dropped, 120)
{
	const uint32_t K = 150; /* fits in the first out page */
	struct child_cfg dc = { .kind = variant->kind, .sno = 1, .first = 0, .count = K,
				.end = END_PAUSE };
	struct child_cfg hc = { .kind = variant->kind, .sno = 2, .first = 0, .count = 1500,
				.delay_us = 1000, .end = END_EXIT };
	uint64_t t_kill = 0, t_drop = 0, t_end;
	int dropped = 0, st;
	pid_t dpid;
	char byte;

	NEED_PROVIDER();
	ASSERT_EQ(0, start_child(self, 0, &dc));
	ASSERT_EQ(0, start_child(self, 1, &hc));
	dpid = self->t[0].pid;
	ASSERT_EQ(2u, llmp_broker_nclients(self->b));
	/* Wait until the dead-to-be has sent K, but do not read them yet. */
	ASSERT_EQ(1, read(self->t[0].rfd, &byte, 1));
	ASSERT_GT(mapped_of(variant->kind, dpid), 0) TH_LOG("broker does not map its page?");
	ASSERT_EQ(0, kill(dpid, SIGKILL));
	t_kill = llmp_test_now_ms();
	ASSERT_EQ(dpid, waitpid(dpid, &st, 0));
	forget(self, 0, false);
	/*
	 * Nothing of the dead client was read yet: the check itself must
	 * forward its K messages before dropping it (MEMFD: at once).
	 */
	dropped = llmp_broker_check_clients(self->b);
	ASSERT_GE(dropped, 0);
	if (variant->kind == LLMP_SHMEM_MEMFD) {
		ASSERT_EQ(1, dropped);
		t_drop = llmp_test_now_ms();
	} else {
		ASSERT_EQ(0, dropped); /* in its grace period */
	}
	t_end = t_kill + 30000;
	while (llmp_test_now_ms() < t_end && !(t_drop && self->t[1].done &&
				     llmp_broker_nclients(self->b) == 0)) {
		int ret = pump(self);

		ASSERT_GE(ret, 0) TH_LOG("%s", llmp_strerror_last());
		ret = llmp_broker_check_clients(self->b);
		ASSERT_GE(ret, 0);
		if (ret > 0) {
			dropped += ret;
			t_drop = llmp_test_now_ms();
			ASSERT_EQ(1u, llmp_broker_nclients(self->b));
		}
		usleep(200);
	}
	ASSERT_EQ(0, self->bad) TH_LOG("%s", self->why);
	ASSERT_EQ(1, dropped);
	ASSERT_EQ(1, drops_logged);
	ASSERT_NE(0u, t_drop);
	ASSERT_LE(t_drop - t_kill, (uint64_t)GRACE_MS + SLACK_MS) TH_LOG("dropped after %llu ms",
		(unsigned long long)(t_drop - t_kill));
	TH_LOG("%s: dead client dropped %llu ms after SIGKILL (grace %d ms)",
	       llmp_shmem_kind_name(variant->kind), (unsigned long long)(t_drop - t_kill), GRACE_MS);
	/* everything the dead client committed was forwarded, exactly once, in order */
	ASSERT_EQ(K, self->t[0].next);
	/* the healthy client: all of it, then its clean exit */
	ASSERT_TRUE(self->t[1].done);
	ASSERT_EQ(hc.count, self->t[1].done_n);
	ASSERT_EQ(hc.count, self->t[1].next);
	ASSERT_EQ(0u, llmp_broker_nclients(self->b));
	ASSERT_EQ(self->t[1].pid, waitpid(self->t[1].pid, &st, 0));
	ASSERT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) TH_LOG("status %d", st);
	self->t[1].pid = 0;
	/*
	 * The dead client's pages are no longer mapped by the broker.  (Checked
	 * after the other child is gone: it inherited our SysV attachments.)
	 */
	ASSERT_EQ(0, mapped_of(variant->kind, dpid));
	ASSERT_TRUE(release_all(self, variant->kind)) TH_LOG("%ld live segments, %ld before",
		live_segments(variant->kind), self->base_segs);
}

/*
 * (b) Four senders, two SIGKILLed mid-stream: the survivors' messages all
 * arrive once and in order, what arrived of the killed ones is an ordered
 * prefix, and the broker ends with no client.
 */
TEST_F_TIMEOUT(live, stress_kill_two_of_four, 120)
{
	const uint32_t N = 20000;
	uint64_t t_end;
	bool killed = false;

	NEED_PROVIDER();
	for (unsigned i = 0; i < 4; i++) {
		struct child_cfg cfg = { .kind = variant->kind, .sno = i + 1, .count = N,
					 .delay_us = (i == 1 || i == 2) ? 20 : 0,
					 .end = END_EXIT };

		ASSERT_EQ(0, start_child(self, i, &cfg)) TH_LOG("child %u", i);
	}
	ASSERT_EQ(4u, llmp_broker_nclients(self->b));
	t_end = llmp_test_now_ms() + 60000;
	while (llmp_test_now_ms() < t_end) {
		ASSERT_GE(pump(self), 0) TH_LOG("%s", llmp_strerror_last());
		if (!killed && self->t[1].next > N / 4 && self->t[2].next > N / 4) {
			/* kill 1 and 2 mid-stream (one of them reaped only later) */
			ASSERT_LT(self->t[1].next, N);
			ASSERT_LT(self->t[2].next, N);
			ASSERT_EQ(0, kill(self->t[1].pid, SIGKILL));
			ASSERT_EQ(0, kill(self->t[2].pid, SIGKILL));
			forget(self, 1, true);
			forget(self, 2, false);
			killed = true;
		}
		ASSERT_GE(llmp_broker_check_clients(self->b), 0);
		if (killed && self->t[0].done && self->t[3].done &&
		    llmp_broker_nclients(self->b) == 0)
			break;
	}
	waitpid(self->dead[1], NULL, 0);
	ASSERT_TRUE(killed);
	ASSERT_EQ(0, self->bad) TH_LOG("%s", self->why);
	ASSERT_TRUE(self->t[0].done && self->t[3].done);
	ASSERT_EQ(N, self->t[0].next);
	ASSERT_EQ(N, self->t[3].next);
	ASSERT_EQ(N, self->t[0].done_n);
	ASSERT_EQ(N, self->t[3].done_n);
	ASSERT_GT(self->t[1].next, N / 4);
	ASSERT_EQ(0u, llmp_broker_nclients(self->b));
	for (unsigned i = 0; i < 4; i += 3) {
		int st;

		ASSERT_EQ(self->t[i].pid, waitpid(self->t[i].pid, &st, 0));
		ASSERT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) TH_LOG("status %d", st);
		self->t[i].pid = 0;
	}
	/* all children gone (they inherited SysV attachments): nothing of the dead mapped */
	ASSERT_EQ(0, mapped_of(variant->kind, self->dead[0]));
	ASSERT_EQ(0, mapped_of(variant->kind, self->dead[1]));
	ASSERT_TRUE(release_all(self, variant->kind)) TH_LOG("%ld live segments, %ld before",
		live_segments(variant->kind), self->base_segs);
}

/*
 * (e) llmp_broker_run() and the event loop check by themselves: with
 * exit_after = 1 and one client that was SIGKILLed, both return once it is
 * dropped, after forwarding what it committed.
 */
TEST_F_TIMEOUT(live, run_and_loop_drop_dead, 120)
{
	const uint32_t K = 100;

	NEED_PROVIDER();
	for (unsigned mode = 0; mode < 2; mode++) {
		struct llmp_broker_opts bo = { .struct_size = sizeof(bo),
					       .dead_client_grace_ms = GRACE_MS,
					       .exit_after = mode == 0 ? 1 : 0 };
		struct llmp_loop_opts lo = { .struct_size = sizeof(lo), .exit_after = 1 };
		struct child_cfg dc = { .kind = variant->kind, .sno = 1, .count = K,
					.end = END_PAUSE };
		struct llmp_loop *lp = NULL;
		uint64_t t0;
		pid_t dpid;
		char byte;
		int ret;

		llmp_client_free(self->r);
		llmp_broker_free(self->b);
		self->r = NULL;
		self->b = NULL;
		ASSERT_EQ(0, llmp_broker_new(self->p, &bo, &self->b));
		ASSERT_EQ(0, llmp_broker_broadcast_desc(self->b, &self->bd));
		ASSERT_EQ(0, llmp_client_new(self->p, &self->bd, NULL, &self->r));
		ASSERT_EQ(0, start_child(self, mode, &dc));
		dpid = self->t[mode].pid;
		ASSERT_EQ(1, read(self->t[mode].rfd, &byte, 1));
		ASSERT_EQ(0, kill(dpid, SIGKILL));
		ASSERT_EQ(dpid, waitpid(dpid, NULL, 0));
		forget(self, mode, false);
		t0 = llmp_test_now_ms();
		if (mode == 0) {
			ret = llmp_broker_run(self->b);
		} else {
			ASSERT_EQ(0, llmp_loop_new(self->b, &lo, &lp)) TH_LOG("%s",
									    llmp_strerror_last());
			ret = llmp_loop_run(lp);
			llmp_loop_free(lp);
		}
		ASSERT_EQ(0, ret) TH_LOG("%s: %s", mode ? "loop" : "run", llmp_strerror_last());
		ASSERT_LE(llmp_test_now_ms() - t0, (uint64_t)GRACE_MS + SLACK_MS);
		ASSERT_EQ(0u, llmp_broker_nclients(self->b));
		ASSERT_GE(pump(self), 0);
		ASSERT_EQ(0, self->bad) TH_LOG("%s", self->why);
		ASSERT_EQ(K, self->t[mode].next) TH_LOG("%s", mode ? "loop" : "run");
		ASSERT_EQ(0, mapped_of(variant->kind, dpid)) TH_LOG("%s", served_why);
	}
	ASSERT_EQ(2, drops_logged);
}

/*
 * (f) Issue 8 finding 15: a client SIGKILLed while it registers.  The
 * child has handed over its page and waits for its id; it is killed there
 * and left unreaped (a zombie: its /proc/<pid>/maps is empty, its pidfd
 * readable) while the broker registers the page and for as long as the
 * test waits.  A POSIX page outlives its creator, so the registration
 * succeeds, and the broker must see the zombie as dead (not as "a pid that
 * does not map this page") and drop the client after the grace period.
 * The other kinds either drop it the same way or refuse the registration
 * (a memfd cannot be reached through a zombie's /proc/<pid>/fd); either
 * way no client stays behind.
 */
TEST_F_TIMEOUT(live, killed_while_registering_dropped, 120)
{
	struct child_cfg dc = { .kind = variant->kind, .sno = 1, .count = 10, .end = END_PAUSE };
	struct llmp_shmem_desc od;
	siginfo_t si;
	uint64_t t_kill, t_end;
	int c2p[2], p2c[2], id, st;
	pid_t pid;

	NEED_PROVIDER();
	ASSERT_EQ(0, pipe(c2p));
	ASSERT_EQ(0, pipe(p2c));
	fflush(NULL);
	pid = fork();
	ASSERT_LE(0, pid);
	if (pid == 0) {
		close(c2p[0]);
		close(p2c[1]);
		dc.wfd = c2p[1];
		dc.rfd = p2c[0];
		dc.bcast = &self->bd;
		_exit(run_child(&dc)); /* writes its page, then waits for its id */
	}
	close(c2p[1]);
	close(p2c[0]);
	self->t[0].pid = pid;
	self->t[0].rfd = c2p[0];
	self->t[0].wfd = p2c[1];
	ASSERT_EQ(sizeof(od), (size_t)read(c2p[0], &od, sizeof(od)));
	ASSERT_EQ(0, kill(pid, SIGKILL));
	t_kill = llmp_test_now_ms();
	/* a zombie now, and it stays one: WNOWAIT does not reap */
	memset(&si, 0, sizeof(si));
	ASSERT_EQ(0, waitid(P_PID, (id_t)pid, &si, WEXITED | WNOWAIT));
	ASSERT_EQ(pid, si.si_pid);
	id = llmp_broker_add_client(self->b, &od);
	if (variant->kind == LLMP_SHMEM_POSIX)
		ASSERT_LT(0, id) TH_LOG("POSIX page of a zombie: %s", llmp_strerror_last());
	if (id <= 0) {
		TH_LOG("%s: registration refused (%s)", llmp_shmem_kind_name(variant->kind),
		       llmp_strerror_last());
		ASSERT_EQ(0u, llmp_broker_nclients(self->b));
	} else {
		self->t[0].id = (uint32_t)id;
		ASSERT_EQ(1u, llmp_broker_nclients(self->b));
		t_end = t_kill + GRACE_MS + SLACK_MS;
		while (llmp_test_now_ms() < t_end && llmp_broker_nclients(self->b) != 0) {
			ASSERT_GE(pump(self), 0) TH_LOG("%s", llmp_strerror_last());
			ASSERT_LE(0, llmp_broker_check_clients(self->b));
			usleep(1000);
		}
		ASSERT_EQ(0u, llmp_broker_nclients(self->b))
			TH_LOG("%s: the killed client was never dropped",
			       llmp_shmem_kind_name(variant->kind));
		ASSERT_EQ(1, drops_logged);
		/* still unreaped: the drop came from seeing the zombie as dead */
		ASSERT_EQ(0, waitid(P_PID, (id_t)pid, &si, WEXITED | WNOWAIT | WNOHANG));
		ASSERT_EQ(pid, si.si_pid);
		TH_LOG("%s: dropped %llu ms after SIGKILL, the child still a zombie",
		       llmp_shmem_kind_name(variant->kind),
		       (unsigned long long)(llmp_test_now_ms() - t_kill));
	}
	/* at least a second unreaped, as in the soak that found it */
	while (llmp_test_now_ms() < t_kill + 1000)
		usleep(10000);
	ASSERT_EQ(pid, waitpid(pid, &st, 0));
	ASSERT_TRUE(WIFSIGNALED(st));
	forget(self, 0, false);
	ASSERT_EQ(0, self->bad) TH_LOG("%s", self->why);
	/* its page is no longer mapped by the broker (SERVED/KMOD: nor kept alive) */
	ASSERT_EQ(0, mapped_of(variant->kind, pid)) TH_LOG("%s", served_why);
	/* the broker still serves: a new client's messages arrive */
	{
		struct child_cfg hc = { .kind = variant->kind, .sno = 2, .count = 50,
					.end = END_EXIT };

		ASSERT_EQ(0, start_child(self, 1, &hc));
		t_end = llmp_test_now_ms() + 30000;
		while (llmp_test_now_ms() < t_end && !self->t[1].done)
			ASSERT_GE(pump(self), 0);
		ASSERT_TRUE(self->t[1].done);
		ASSERT_EQ(50u, self->t[1].next);
		ASSERT_EQ(self->t[1].pid, waitpid(self->t[1].pid, &st, 0));
		self->t[1].pid = 0;
		ASSERT_EQ(0, self->bad) TH_LOG("%s", self->why);
	}
}

/* Read the environment the child saved (NUL-separated, empty string last). */
static int read_env(int fd, char *buf, size_t cap)
{
	size_t n = 0;

	while (n < cap) {
		if (read(fd, buf + n, 1) != 1)
			return -1;
		if (buf[n] == '\0' && (n == 0 || buf[n - 1] == '\0'))
			return 0;
		n++;
	}
	return -1;
}

/*
 * (c) A SysV/POSIX client killed and restarted from its environment within
 * the grace period goes on without loss and is never dropped.  The grace
 * period here is long (RESTART_GRACE_MS): the restart (fork, attach, first
 * message) must fit in it even on a loaded or emulated host, and the
 * restarted client sends for longer than the grace period, so the test
 * still shows it survives past it.
 */
#define RESTART_GRACE_MS 3000
TEST_F_TIMEOUT(live, restarted_within_grace, 120)
{
	const uint32_t K1 = 200, K2 = 800;
	struct llmp_broker_opts bo = { .struct_size = sizeof(bo),
				       .dead_client_grace_ms = RESTART_GRACE_MS };
	struct child_cfg c1 = { .kind = variant->kind, .sno = 1, .first = 0, .count = K1,
				.end = END_PAUSE, .save_env = true };
	/* K2 * delay_us > RESTART_GRACE_MS + 200 ms: it outlives the grace period */
	struct child_cfg c2 = { .kind = variant->kind, .sno = 1, .first = K1, .count = K2,
				.delay_us = 4500, .end = END_EXIT, .from_env = true };
	char env[4096];
	uint32_t id;
	uint64_t t_go, t_end, t_kill;
	int st;

	NEED_PROVIDER();
	if (variant->kind == LLMP_SHMEM_MEMFD)
		SKIP(return, "memfd pages cannot be reattached once their creator is gone");
	llmp_client_free(self->r);
	llmp_broker_free(self->b);
	self->r = NULL;
	self->b = NULL;
	ASSERT_EQ(0, llmp_broker_new(self->p, &bo, &self->b));
	ASSERT_EQ(0, llmp_broker_broadcast_desc(self->b, &self->bd));
	ASSERT_EQ(0, llmp_client_new(self->p, &self->bd, NULL, &self->r));
	ASSERT_EQ(0, start_child(self, 0, &c1));
	id = self->t[0].id;
	/* the broker must have mapped the page (wait_safe) before the child saves */
	for (uint64_t t = llmp_test_now_ms() + 10000; llmp_test_now_ms() < t;) {
		struct pollfd pfd = { .fd = self->t[0].rfd, .events = POLLIN };

		ASSERT_GE(pump(self), 0);
		if (poll(&pfd, 1, 1) == 1)
			break;
	}
	ASSERT_EQ(0, read_env(self->t[0].rfd, env, sizeof(env)));
	ASSERT_EQ(0, kill(self->t[0].pid, SIGKILL));
	t_kill = llmp_test_now_ms();
	ASSERT_EQ(self->t[0].pid, waitpid(self->t[0].pid, &st, 0));
	forget(self, 0, false);
	/* a while with the creator dead: not dropped */
	for (uint64_t t = llmp_test_now_ms() + 500; llmp_test_now_ms() < t;) {
		ASSERT_GE(pump(self), 0);
		ASSERT_EQ(0, llmp_broker_check_clients(self->b));
		usleep(1000);
	}
	ASSERT_EQ(1u, llmp_broker_nclients(self->b));
	ASSERT_EQ(K1, self->t[0].next);
	/* the restarted process: same page, same id */
	for (char *e = env; *e; e += strlen(e) + 1) {
		char *eq = strchr(e, '=');

		ASSERT_TRUE(eq != NULL);
		*eq = '\0';
		ASSERT_EQ(0, setenv(e, eq + 1, 1));
		*eq = '=';
	}
	ASSERT_EQ(0, start_child(self, 1, &c2));
	self->t[1].id = id;
	self->t[1].next = K1;
	ASSERT_EQ(1, write(self->t[1].wfd, "g", 1));
	t_go = llmp_test_now_ms();
	t_end = t_go + 30000;
	while (llmp_test_now_ms() < t_end && !(self->t[1].done && llmp_broker_nclients(self->b) == 0)) {
		ASSERT_GE(pump(self), 0);
		ASSERT_EQ(0, llmp_broker_check_clients(self->b)) TH_LOG("restarted client dropped");
		usleep(200);
	}
	ASSERT_EQ(0, self->bad) TH_LOG("%s", self->why);
	/* its first process died longer than the grace period ago: never dropped */
	ASSERT_GT(llmp_test_now_ms() - t_kill, (uint64_t)RESTART_GRACE_MS + 200);
	ASSERT_TRUE(self->t[1].done);
	ASSERT_EQ(K1 + K2, self->t[1].done_n);
	ASSERT_EQ(K1 + K2, self->t[1].next);
	ASSERT_EQ(0, drops_logged);
	ASSERT_EQ(0u, llmp_broker_nclients(self->b));
	ASSERT_EQ(self->t[1].pid, waitpid(self->t[1].pid, &st, 0));
	ASSERT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) TH_LOG("status %d", st);
	self->t[1].pid = 0;
}

/*
 * (d) A client whose broker process was SIGKILLed: recv_wait returns
 * -EPIPE within a second instead of waiting out its timeout.
 */
TEST_F(live, broker_killed)
{
	struct llmp_shmem_desc bd;
	struct llmp_client *c = NULL;
	struct llmp_msg_view v;
	int pfd[2], ret, st;
	uint64_t t0;
	pid_t pid;

	NEED_PROVIDER();
	ASSERT_EQ(0, pipe(pfd));
	fflush(NULL);
	pid = fork();
	ASSERT_GE(pid, 0);
	if (pid == 0) {
		struct llmp_provider *p;
		struct llmp_broker *b;

		close(pfd[0]);
		if (llmp_provider_new(variant->kind, &p) < 0 || llmp_broker_new(p, NULL, &b) < 0 ||
		    llmp_broker_broadcast_desc(b, &bd) < 0 ||
		    llmp_broker_send(b, TAG_HELLO, 0, "hi", 2) < 0 ||
		    write(pfd[1], &bd, sizeof(bd)) != sizeof(bd))
			_exit(80);
		_exit(llmp_broker_run(b) < 0 ? 81 : 0);
	}
	close(pfd[1]);
	self->dead[self->ndead++] = pid;
	ASSERT_EQ(sizeof(bd), (size_t)read(pfd[0], &bd, sizeof(bd)));
	close(pfd[0]);
	ASSERT_EQ(0, llmp_client_new(self->p, &bd, NULL, &c)) TH_LOG("%s", llmp_strerror_last());
	ASSERT_EQ(1, llmp_client_recv_wait(c, &v, 5000));
	ASSERT_EQ(TAG_HELLO, v.tag);
	ASSERT_EQ(2u, v.len);
	/* alive broker, nothing to read: a plain timeout */
	ASSERT_EQ(0, llmp_client_recv_wait(c, &v, 300));
	ASSERT_EQ(0, kill(pid, SIGKILL));
	/* not reaped yet: a zombie broker counts as dead */
	t0 = llmp_test_now_ms();
	ret = llmp_client_recv_wait(c, &v, 10000);
	ASSERT_EQ(-EPIPE, ret) TH_LOG("recv_wait: %d %s", ret, llmp_strerror_last());
	ASSERT_LT(llmp_test_now_ms() - t0, 2000u);
	ASSERT_TRUE(strstr(llmp_strerror_last(), "broker") != NULL) TH_LOG("%s", llmp_strerror_last());
	ASSERT_EQ(pid, waitpid(pid, &st, 0));
	ASSERT_TRUE(WIFSIGNALED(st));
	/* reaped: still -EPIPE */
	ASSERT_EQ(-EPIPE, llmp_client_recv_wait(c, &v, 10000));
	llmp_client_free(c);
}

TEST_HARNESS_MAIN
