// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * Restart and reattach mid-stream: a client process saves where it stands
 * with llmp_client_to_env(), replaces itself with a new program image
 * (exec of this binary in another role) and the new image continues with
 * llmp_client_from_env().  Sending: the broker sees one continuous stream,
 * none lost, none twice.  Receiving: the new image reads exactly the
 * messages after the last one the old image read.
 *
 * memfd is not a variant: a memfd segment is reached through the creator's
 * /proc/<pid>/fd entry and the library opens it close-on-exec, so it does
 * not survive an exec (restarting with memfd needs fork, as the stress and
 * bench tools do).  With SYSV and POSIX the segments outlive the old
 * image, and the exec loses its owner flags: the new image adopts the
 * pages its pid created (the current out page, and the older ones the old
 * image named in the environment), so once the restarted client has exited
 * no segment created by the child's pid is left in /dev/shm or in the SysV
 * table.  The test counts them (and removes any, to keep the machine clean).
 * SERVED (a server process per test) and KMOD (SKIP without /dev/llmp; run
 * in the VM) free a segment with its last holder: what the broker holds
 * survives the exec, and a receiver that never registered gets a fresh out
 * page when its saved one went with the old image.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/shm.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "kselftest_harness.h"
#include "llmp_test.h"

#define SEQ_TAG(s) (0x40000000u | ((uint32_t)(s) & 0xffffffu))
#define NMSG 3000
#define SEND_FIRST 1234   /* messages the sender's first image sends (default) */
#define RECV_FIRST 777    /* messages the receiver's first image reads */
#define PAGE 4096
#define ENV_PREFIX "LLMP_RT"

static size_t msg_len(int seq)
{
	return (size_t)(seq * 37) % 701;
}

static uint8_t pat(int seq, size_t i)
{
	return (uint8_t)(seq * 131 + i * 7 + (i >> 8));
}

static void fill(uint8_t *b, int seq)
{
	for (size_t i = 0; i < msg_len(seq); i++)
		b[i] = pat(seq, i);
}

/* 0 if v is message seq. */
static int check_msg(const struct llmp_msg_view *v, int seq)
{
	const uint8_t *b = v->buf;

	if (v->tag != SEQ_TAG(seq) || v->len != msg_len(seq))
		return -1;
	for (size_t i = 0; i < v->len; i++)
		if (b[i] != pat(seq, i))
			return -1;
	return 0;
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- the child roles (run after exec) ------------------------------------ */

static int env_int(const char *name)
{
	const char *s = getenv(name);

	return s ? atoi(s) : -1;
}

static void reexec(const char *role)
{
	char *argv[] = { (char *)"restart_test", NULL };

	setenv("LLMP_RT_ROLE", role, 1);
	execv("/proc/self/exe", argv);
	_exit(90);
}

static int role_main(const char *role)
{
	struct llmp_client_opts o = { .struct_size = sizeof(o), .page_size = PAGE,
				      .send_timeout_ms = -1 };
	enum llmp_shmem_kind kind;
	struct llmp_provider *p;
	struct llmp_client *c;
	struct llmp_shmem_desc bd, od;
	struct llmp_msg_view v;
	int wfd = env_int("LLMP_RT_WFD"), rfd = env_int("LLMP_RT_RFD");
	int send_first = getenv("LLMP_RT_SEND_FIRST") ? env_int("LLMP_RT_SEND_FIRST") : SEND_FIRST;
	uint8_t buf[701];
	char byte;

	if (llmp_shmem_kind_from_name(getenv("LLMP_RT_KIND"), &kind) < 0 ||
	    llmp_provider_new(kind, &p) < 0)
		return 70;
	if (!strcmp(role, "send1")) {
		int32_t id;

		if (llmp_shmem_desc_from_env("LLMP_RT_BCAST", &bd) < 0 ||
		    llmp_client_new(p, &bd, &o, &c) < 0 || llmp_client_out_desc(c, &od) < 0)
			return 71;
		if (write(wfd, &od, sizeof(od)) != sizeof(od) ||
		    read(rfd, &id, sizeof(id)) != sizeof(id) || id <= 0)
			return 72;
		llmp_client_set_id(c, (uint32_t)id);
		for (int i = 0; i < send_first; i++) {
			fill(buf, i);
			if (llmp_client_send(c, SEQ_TAG(i), 0, buf, msg_len(i)) < 0)
				return 73;
		}
		/* An allocation in flight at the restart is rolled back, not sent. */
		{
			void *zb;

			if (llmp_client_alloc(c, 100, &zb) < 0)
				return 74;
			memset(zb, 0xEE, 100);
		}
		/* The broker has mapped the current page: it survives us. */
		if (llmp_client_wait_safe(c, 20000) < 0 || llmp_client_to_env(c, ENV_PREFIX) < 0)
			return 75;
		reexec("send2"); /* no free: the old image just disappears */
	}
	if (!strcmp(role, "send2")) {
		if (llmp_client_from_env(p, ENV_PREFIX, &o, &c) < 0) {
			fprintf(stderr, "send2: from_env: %s\n", llmp_strerror_last());
			return 76;
		}
		for (int i = send_first; i < NMSG; i++) {
			fill(buf, i);
			if (llmp_client_send(c, SEQ_TAG(i), 0, buf, msg_len(i)) < 0)
				return 77;
		}
		/* done; stay until the parent has everything */
		if (write(wfd, "d", 1) != 1 || read(rfd, &byte, 1) != 1)
			return 78;
		llmp_client_free(c);
		llmp_provider_free(p);
		return 0;
	}
	if (!strcmp(role, "recv1")) {
		if (llmp_shmem_desc_from_env("LLMP_RT_BCAST", &bd) < 0 ||
		    llmp_client_new(p, &bd, &o, &c) < 0)
			return 81;
		for (int i = 0; i < RECV_FIRST; i++) {
			if (llmp_client_recv_wait(c, &v, 20000) != 1)
				return 82;
			if (check_msg(&v, i) < 0)
				return 83;
		}
		if (llmp_client_to_env(c, ENV_PREFIX) < 0)
			return 84;
		reexec("recv2");
	}
	if (!strcmp(role, "recv2")) {
		if (llmp_client_from_env(p, ENV_PREFIX, &o, &c) < 0) {
			fprintf(stderr, "recv2: from_env: %s\n", llmp_strerror_last());
			return 85;
		}
		for (int i = RECV_FIRST; i < NMSG; i++) {
			int r = llmp_client_recv_wait(c, &v, 20000);

			if (r != 1) {
				fprintf(stderr, "recv2: message %d: %d %s\n", i, r, llmp_strerror_last());
				return 86;
			}
			if (check_msg(&v, i) < 0) {
				fprintf(stderr, "recv2: expected message %d, got tag %#x len %zu\n", i,
					v.tag, v.len);
				return 87;
			}
		}
		/* nothing more: no message seen twice at the end either */
		if (llmp_client_recv_wait(c, &v, 100) != 0)
			return 88;
		if (write(wfd, "d", 1) != 1 || read(rfd, &byte, 1) != 1)
			return 89;
		llmp_client_free(c);
		llmp_provider_free(p);
		return 0;
	}
	return 79;
}

/* ---- the test side ---------------------------------------------------------- */

/* The broker's last error/warning, shown when a test fails. */
static char last_log[512];

static void log_cb(void *ctx, enum llmp_log_level level, const char *msg)
{
	if (level <= LLMP_LOG_WARN)
		snprintf(last_log, sizeof(last_log), "%s", msg);
}

FIXTURE(restart)
{
	struct llmp_shmem_server *srv; /* SERVED: this test's server */
	struct llmp_provider *p;
	struct llmp_broker *b;
	struct llmp_client *c;
	pid_t child;
	int wfd, rfd; /* parent ends */
	long kmod_base; /* KMOD: live segments before the broker existed */
};

FIXTURE_VARIANT(restart)
{
	enum llmp_shmem_kind kind;
};

FIXTURE_VARIANT_ADD(restart, sysv) { .kind = LLMP_SHMEM_SYSV };
FIXTURE_VARIANT_ADD(restart, posix) { .kind = LLMP_SHMEM_POSIX };
FIXTURE_VARIANT_ADD(restart, served) { .kind = LLMP_SHMEM_SERVED };
FIXTURE_VARIANT_ADD(restart, kmod) { .kind = LLMP_SHMEM_KMOD };

FIXTURE_SETUP(restart)
{
	/* all history kept: this test is about reattaching, not the history bound */
	struct llmp_broker_opts bo = { .struct_size = sizeof(bo), .page_size = PAGE,
				       .keep_all_history = true };
	int r;

	self->wfd = self->rfd = -1;
	if (variant->kind == LLMP_SHMEM_SERVED) {
		/* a server process of our own; the exec'd children find it in the environment */
		char path[64];

		snprintf(path, sizeof(path), "@llmp-restart-%d", (int)getpid());
		ASSERT_EQ(0, llmp_shmem_server_start(path, LLMP_SHMEM_SERVER_PROCESS, &self->srv))
			TH_LOG("%s", llmp_strerror_last());
		ASSERT_EQ(0, setenv("LLMP_SHMEM_SERVER", path, 1));
	}
	r = llmp_provider_new(variant->kind, &self->p);
	if (r == -ENODEV) {
		self->p = NULL;
		SKIP(return, "%s provider not available here: %s",
		     llmp_shmem_kind_name(variant->kind), llmp_strerror_last());
	}
	ASSERT_EQ(0, r) TH_LOG("llmp_provider_new: %s", llmp_strerror_last());
	if (variant->kind == LLMP_SHMEM_KMOD) {
		self->kmod_base = llmp_test_kmod_segments();
		ASSERT_LE(0, self->kmod_base) TH_LOG("LLMP_IOC_STATS failed");
	}
	ASSERT_EQ(0, llmp_broker_new(self->p, &bo, &self->b)) TH_LOG("%s", llmp_strerror_last());
	llmp_set_log(log_cb, NULL, LLMP_LOG_WARN);
}

FIXTURE_TEARDOWN(restart)
{
	if (self->child > 0) {
		kill(self->child, SIGKILL);
		waitpid(self->child, NULL, 0);
		llmp_test_remove_orphans(variant->kind, self->child);
	}
	if (self->wfd >= 0)
		close(self->wfd);
	if (self->rfd >= 0)
		close(self->rfd);
	if (self->c)
		llmp_client_free(self->c);
	if (self->b)
		llmp_broker_free(self->b);
	if (self->p)
		llmp_provider_free(self->p);
	if (self->srv) {
		llmp_shmem_server_stop(self->srv);
		unsetenv("LLMP_SHMEM_SERVER");
	}
}

/*
 * What the child left: SysV and POSIX segments its pid created and nobody
 * destroyed (the restarted image must destroy its first image's pages).
 * KMOD: after the child exited and the test freed its client and broker,
 * the module's live segments are back at the count before the test (they
 * are refcounted, so only a reference kept by someone can hold them).
 * SERVED segments are refcounted by the server the same way; this test
 * does not count them (liveness_test does, through the server's STAT).
 */
static void check_left(struct __test_metadata *_metadata, FIXTURE_DATA(restart) *self,
		       enum llmp_shmem_kind kind)
{
	int orphans = llmp_test_remove_orphans(kind, self->child);
	long n = -1;

	self->child = 0;
	ASSERT_EQ(0, orphans) TH_LOG("segments of the child's pid left after it exited");
	if (kind != LLMP_SHMEM_KMOD)
		return;
	llmp_client_free(self->c);
	self->c = NULL;
	llmp_broker_free(self->b);
	self->b = NULL;
	for (int i = 0; i < 300 && (n = llmp_test_kmod_segments()) != self->kmod_base; i++)
		usleep(10000);
	ASSERT_EQ(self->kmod_base, n) TH_LOG("/dev/llmp segments live: %ld, before the test %ld",
					     n, self->kmod_base);
}

static pid_t spawn(FIXTURE_DATA(restart) *self, enum llmp_shmem_kind kind, const char *role)
{
	struct llmp_shmem_desc bd;
	int to_child[2], from_child[2];
	pid_t pid;

	if (llmp_broker_broadcast_desc(self->b, &bd) < 0 || pipe(to_child) || pipe(from_child))
		return -1;
	pid = fork();
	if (pid == 0) {
		char num[16];

		close(to_child[1]);
		close(from_child[0]);
		snprintf(num, sizeof(num), "%d", from_child[1]);
		setenv("LLMP_RT_WFD", num, 1);
		snprintf(num, sizeof(num), "%d", to_child[0]);
		setenv("LLMP_RT_RFD", num, 1);
		setenv("LLMP_RT_KIND", llmp_shmem_kind_name(kind), 1);
		if (llmp_shmem_desc_to_env(&bd, "LLMP_RT_BCAST") < 0)
			_exit(91);
		reexec(role);
	}
	close(to_child[0]);
	close(from_child[1]);
	self->wfd = to_child[1];
	self->rfd = from_child[0];
	return pid;
}

static int read_byte_nb(int fd)
{
	fd_set s;
	struct timeval tv = { 0, 0 };
	char b;

	FD_ZERO(&s);
	FD_SET(fd, &s);
	if (select(fd + 1, &s, NULL, NULL, &tv) != 1)
		return 0;
	return read(fd, &b, 1) == 1 ? 1 : -1;
}

static void sender_case(struct __test_metadata *_metadata, FIXTURE_DATA(restart) *self,
			const FIXTURE_VARIANT(restart) *variant, int send_first)
{
	struct llmp_client_opts o = { .struct_size = sizeof(o), .page_size = PAGE };
	struct llmp_shmem_desc bd, od;
	struct llmp_msg_view v;
	double until;
	char num[16];
	int32_t id;
	int got = 0, done = 0, st;

	if (!self->p)
		return;
	ASSERT_EQ(0, llmp_broker_broadcast_desc(self->b, &bd));
	ASSERT_EQ(0, llmp_client_new(self->p, &bd, &o, &self->c));
	snprintf(num, sizeof(num), "%d", send_first);
	setenv("LLMP_RT_SEND_FIRST", num, 1);
	self->child = spawn(self, variant->kind, "send1");
	ASSERT_LT(0, self->child);
	ASSERT_EQ((ssize_t)sizeof(od), read(self->rfd, &od, sizeof(od)));
	id = llmp_broker_add_client(self->b, &od);
	ASSERT_LT(0, id) TH_LOG("%s", llmp_strerror_last());
	ASSERT_EQ((ssize_t)sizeof(id), write(self->wfd, &id, sizeof(id)));

	until = now_s() + 25;
	while (got < NMSG || !done) {
		int r = llmp_broker_once(self->b);

		ASSERT_LE(0, r) TH_LOG("%s", llmp_strerror_last());
		while ((r = llmp_client_recv(self->c, &v)) == 1) {
			ASSERT_EQ((uint32_t)id, v.sender);
			ASSERT_LT(got, NMSG) TH_LOG("message beyond the stream: tag %#x", v.tag);
			ASSERT_EQ(0, check_msg(&v, got))
				TH_LOG("expected message %d, got tag %#x len %zu", got, v.tag, v.len);
			got++;
		}
		ASSERT_EQ(0, r) TH_LOG("after %d messages: %s", got, llmp_strerror_last());
		r = read_byte_nb(self->rfd);
		ASSERT_LE(0, r) TH_LOG("the child died (sent %d)", got);
		done |= r;
		ASSERT_LT(now_s(), until) TH_LOG("got %d of %d, child done %d, %u clients; broker log: %s",
						 got, NMSG, done, llmp_broker_nclients(self->b),
						 last_log);
	}
	ASSERT_EQ(1, write(self->wfd, "k", 1));
	/* Its EXITING: the broker forgets the client; nothing else arrives. */
	until = now_s() + 10;
	while (llmp_broker_nclients(self->b)) {
		ASSERT_LE(0, llmp_broker_once(self->b));
		ASSERT_LT(now_s(), until);
	}
	ASSERT_EQ(0, llmp_client_recv(self->c, &v));
	ASSERT_EQ(self->child, waitpid(self->child, &st, 0));
	ASSERT_TRUE(WIFEXITED(st));
	ASSERT_EQ(0, WEXITSTATUS(st));
	check_left(_metadata, self, variant->kind);
}

TEST_F(restart, sender_restarts_mid_stream)
{
	sender_case(_metadata, self, variant, SEND_FIRST);
}

TEST_F(restart, sender_restarts_before_sending)
{
	sender_case(_metadata, self, variant, 0);
}

TEST_F(restart, receiver_restarts_mid_stream)
{
	struct llmp_client_opts o = { .struct_size = sizeof(o), .page_size = PAGE,
				      .send_timeout_ms = LLMP_NO_WAIT };
	struct llmp_shmem_desc bd, od;
	uint8_t buf[701];
	double until;
	int st, r;

	if (!self->p)
		return;
	ASSERT_EQ(0, llmp_broker_broadcast_desc(self->b, &bd));
	ASSERT_EQ(0, llmp_client_new(self->p, &bd, &o, &self->c));
	ASSERT_EQ(0, llmp_client_out_desc(self->c, &od));
	ASSERT_LT(0, llmp_broker_add_client(self->b, &od));
	/* Half the stream before the receiver starts, the rest while it runs. */
	for (int i = 0; i < NMSG; i++) {
		fill(buf, i);
		while ((r = llmp_client_send(self->c, SEQ_TAG(i), 0, buf, msg_len(i))) == -EAGAIN)
			ASSERT_LE(0, llmp_broker_once(self->b));
		ASSERT_EQ(0, r) TH_LOG("%s", llmp_strerror_last());
		ASSERT_LE(0, llmp_broker_once(self->b));
		if (i == NMSG / 2) {
			self->child = spawn(self, variant->kind, "recv1");
			ASSERT_LT(0, self->child);
		}
		if (i > NMSG / 2 && i % 100 == 0)
			usleep(1000);
	}
	while ((r = llmp_broker_once(self->b)) > 0)
		;
	ASSERT_EQ(0, r);
	until = now_s() + 25;
	while ((r = read_byte_nb(self->rfd)) == 0) {
		ASSERT_LT(now_s(), until);
		usleep(1000);
	}
	if (r != 1) {
		ASSERT_EQ(self->child, waitpid(self->child, &st, 0));
		self->child = 0;
		ASSERT_EQ(1, r) TH_LOG("the receiver failed: status %#x (exit %d)", st,
				       WIFEXITED(st) ? WEXITSTATUS(st) : -1);
	}
	ASSERT_EQ(1, write(self->wfd, "k", 1));
	ASSERT_EQ(self->child, waitpid(self->child, &st, 0));
	ASSERT_TRUE(WIFEXITED(st));
	ASSERT_EQ(0, WEXITSTATUS(st)) TH_LOG("receiver exit %d", WEXITSTATUS(st));
	check_left(_metadata, self, variant->kind);
}

TEST_F(restart, receiver_reattach_at_every_position)
{
	/*
	 * In one process: a receiver reads k messages, saves itself, and a
	 * second client made from the environment continues: exactly messages
	 * k.. for every k from 0 through several page boundaries (4 KiB pages
	 * hold 10 of these 300-byte messages).
	 */
	struct llmp_client_opts o = { .struct_size = sizeof(o), .page_size = PAGE,
				      .send_timeout_ms = LLMP_NO_WAIT };
	struct llmp_shmem_desc bd, od;
	struct llmp_msg_view v;
	uint8_t buf[300];
	const int n = 45;
	int r;

	if (!self->p)
		return;
	ASSERT_EQ(0, llmp_broker_broadcast_desc(self->b, &bd));
	ASSERT_EQ(0, llmp_client_new(self->p, &bd, &o, &self->c));
	ASSERT_EQ(0, llmp_client_out_desc(self->c, &od));
	ASSERT_LT(0, llmp_broker_add_client(self->b, &od));
	for (int i = 0; i < n; i++) {
		memset(buf, i, sizeof(buf));
		ASSERT_EQ(0, llmp_client_send(self->c, SEQ_TAG(i), 0, buf, sizeof(buf)));
		ASSERT_LE(0, llmp_broker_once(self->b));
	}
	for (int k = 0; k <= n; k++) {
		struct llmp_client *r1, *r2;

		ASSERT_EQ(0, llmp_client_new(self->p, &bd, &o, &r1));
		for (int i = 0; i < k; i++) {
			ASSERT_EQ(1, llmp_client_recv(r1, &v));
			ASSERT_EQ(SEQ_TAG(i), v.tag);
		}
		ASSERT_EQ(0, llmp_client_to_env(r1, "LLMP_RT_POS"));
		r = llmp_client_from_env(self->p, "LLMP_RT_POS", &o, &r2);
		ASSERT_EQ(0, r) TH_LOG("k=%d: %s", k, llmp_strerror_last());
		for (int i = k; i < n; i++) {
			r = llmp_client_recv(r2, &v);
			ASSERT_EQ(1, r) TH_LOG("k=%d: message %d: %d %s", k, i, r, llmp_strerror_last());
			ASSERT_EQ(SEQ_TAG(i), v.tag) TH_LOG("k=%d: expected %d, got %#x", k, i, v.tag);
			ASSERT_EQ(300u, v.len);
			ASSERT_EQ((uint8_t)i, ((const uint8_t *)v.buf)[299]);
		}
		ASSERT_EQ(0, llmp_client_recv(r2, &v)) TH_LOG("k=%d: extra message", k);
		llmp_client_free(r2);
		llmp_client_free(r1);
	}
}

/* ---- a segment name used again ---------------------------------------------- */

static void put32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }
static void put64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }

/* A 64 KiB page holding one message "text" (id 1), then optionally an EOP to next. */
static void fake_page(uint8_t *pg, const char *text, const struct llmp_shmem_desc *next)
{
	size_t len = strlen(text);

	memset(pg, 0, 4096);
	put64(pg, LLMP_PAGE_MAGIC);
	put32(pg + 8, 1);
	put64(pg + 16, 1);
	put64(pg + 24, 65536 - 48);
	put64(pg + 32, 80);
	put64(pg + 40, 80);
	put32(pg + 48, 0x61);
	put32(pg + 48 + 4, 1);
	put64(pg + 48 + 16, 1);
	put64(pg + 48 + 24, len);
	put64(pg + 48 + 32, 40);
	memcpy(pg + 48 + 40, text, len);
	if (next) {
		put32(pg + 128, LLMP_TAG_END_OF_PAGE);
		put32(pg + 128 + 4, 1);
		put64(pg + 128 + 16, 2);
		put64(pg + 128 + 24, 32);
		put64(pg + 128 + 32, 32);
		put64(pg + 128 + 40, next->size);
		memcpy(pg + 128 + 48, next->id, LLMP_SHMEM_ID_LEN);
		put64(pg + 32, 80 + 128);
		/* publishes the EOP: pairs with the reader's acquire fence */
		__atomic_store_n((uint64_t *)(pg + 16), 2, __ATOMIC_RELEASE);
	}
}

TEST(posix_name_used_again_is_a_new_page)
{
	/*
	 * POSIX segment names are "/libafl_<pid>_<n>": a process that exec()s
	 * (same pid, counter back at 0) or a later process with a recycled pid
	 * names new segments like old ones.  A client chain P0 -> P1 -> P2 is
	 * read by the broker; then P1 is removed and a new segment created
	 * under the same name, with another message, and P2 chains to it.  The
	 * broker must read the new segment, not a mapping it kept of the old
	 * P1 (which would replay old messages, or see the retired magic and
	 * drop the client).  This is what an exec-restarted POSIX client runs
	 * into when its new image reuses a name its old image had released.
	 */
	struct llmp_broker_opts bo = { .struct_size = sizeof(bo) };
	struct llmp_client_opts o = { .struct_size = sizeof(o), .send_timeout_ms = LLMP_NO_WAIT };
	struct llmp_shmem *p0, *p1, *p2;
	struct llmp_provider *p;
	struct llmp_broker *b;
	struct llmp_client *rx;
	struct llmp_shmem_desc bd, d1;
	struct llmp_msg_view v;
	static const char *const want[] = { "zero", "one", "two", "three" };
	char name[LLMP_SHMEM_ID_LEN + 1], got[8][16], why[256];
	size_t gl[8];
	uint8_t *np;
	int fd, n = 0, r = 0;

	if (llmp_provider_new(LLMP_SHMEM_POSIX, &p) < 0)
		SKIP(return, "posix provider not available here: %s", llmp_strerror_last());
	ASSERT_EQ(0, llmp_broker_new(p, &bo, &b));
	ASSERT_EQ(0, llmp_broker_broadcast_desc(b, &bd));
	ASSERT_EQ(0, llmp_client_new(p, &bd, &o, &rx));
	ASSERT_EQ(0, llmp_shmem_new(p, 65536, &p0));
	ASSERT_EQ(0, llmp_shmem_new(p, 65536, &p1));
	ASSERT_EQ(0, llmp_shmem_new(p, 65536, &p2));
	fake_page(llmp_shmem_addr(p2), "two", NULL);
	fake_page(llmp_shmem_addr(p1), "one", llmp_shmem_desc(p2));
	fake_page(llmp_shmem_addr(p0), "zero", llmp_shmem_desc(p1));
	ASSERT_EQ(1, llmp_broker_add_client(b, llmp_shmem_desc(p0)));
	while ((r = llmp_broker_once(b)) > 0)
		;
	ASSERT_EQ(0, r);

	/*
	 * P1 is retired (its writer marks it, as the library does when it
	 * releases a page) and goes away; a new segment takes its name.
	 */
	d1 = *llmp_shmem_desc(p1);
	memcpy(name, d1.id, LLMP_SHMEM_ID_LEN);
	name[LLMP_SHMEM_ID_LEN] = 0;
	put64(llmp_shmem_addr(p1), LLMP_PAGE_MAGIC_DEINIT);
	llmp_shmem_put(p1);
	fd = shm_open(name, O_RDWR | O_CREAT | O_EXCL, 0600);
	ASSERT_LE(0, fd) TH_LOG("shm_open %s: %s", name, strerror(errno));
	ASSERT_EQ(0, ftruncate(fd, 65536));
	np = mmap(NULL, 65536, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	ASSERT_NE(MAP_FAILED, np);
	close(fd);
	fake_page(np, "three", NULL);
	fake_page(llmp_shmem_addr(p2), "two", &d1);
	for (int k = 0; k < 4; k++)
		ASSERT_LE(0, llmp_broker_once(b));

	while (n < 8 && (r = llmp_client_recv(rx, &v)) == 1) {
		gl[n] = v.len < sizeof(got[0]) ? v.len : sizeof(got[0]) - 1;
		memcpy(got[n], v.buf, gl[n]);
		got[n][gl[n]] = 0;
		n++;
	}
	snprintf(why, sizeof(why), "%s", llmp_strerror_last());
	/* clean up first: the asserts below may end the test */
	munmap(np, 65536);
	shm_unlink(name);
	llmp_client_free(rx);
	llmp_broker_free(b);
	llmp_shmem_put(p2);
	llmp_shmem_put(p0);
	llmp_provider_free(p);
	for (int i = 0; i < n; i++)
		if (n != 4 || strcmp(got[i], want[i < 4 ? i : 3]))
			TH_LOG("forwarded: %s", got[i]);
	for (int i = 0; i < n && i < 4; i++) {
		ASSERT_STREQ(want[i], got[i])
			TH_LOG("message %d: the broker replayed the page it had kept mapped under "
			       "a name that now belongs to another segment", i);
	}
	ASSERT_EQ(4, n) TH_LOG("last recv %d: %s", r, why);
}

/* The harness's main, renamed: this binary also runs the child roles. */
#define main harness_main
TEST_HARNESS_MAIN
#undef main

int main(int argc, char **argv)
{
	const char *role = getenv("LLMP_RT_ROLE");

	if (role) {
		int code = role_main(role);

		/* a failing role may have no pipe partner left: report by exit code */
		_exit(code);
	}
	return harness_main(argc, argv);
}
