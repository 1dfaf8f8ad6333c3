// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * The userspace shared-memory providers (MEMFD, POSIX, SYSV, ASHMEM):
 * create, attach across fork and fork+exec, sizes, many segments without a
 * leak, id formats and error paths.  Kinds absent on this machine SKIP with
 * the provider's reason.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/shm.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kselftest_harness.h"
#include "llmp_test.h"

#define EXEC_MARKER "LLMP_PT_EXEC_CHILD"
#define EXEC_DESC "LLMP_PT_SEG"

/* Layout used across processes: [0] checksum of bytes 16.., [1] reply. */
static void fill_seg(void *addr, size_t size, uint64_t seed)
{
	unsigned char *b = addr;
	uint64_t s = seed | 1;

	for (size_t i = 16; i < size; i++)
		b[i] = (unsigned char)llmp_test_rand(&s);
	((uint64_t *)addr)[0] = llmp_test_fnv(b + 16, size - 16);
	((uint64_t *)addr)[1] = 0;
}

/* Exit codes of the exec'd child, so the parent can tell what failed. */
enum { CHILD_OK = 0, CHILD_ENV = 10, CHILD_PROV = 11, CHILD_ATTACH = 12, CHILD_SUM = 13 };

static int exec_child_main(void)
{
	struct llmp_shmem_desc d;
	struct llmp_provider *p;
	struct llmp_shmem *m;
	uint64_t *w;

	if (llmp_shmem_desc_from_env(EXEC_DESC, &d) < 0)
		return CHILD_ENV;
	if (llmp_provider_new(d.kind, &p) < 0)
		return CHILD_PROV;
	if (llmp_shmem_attach(p, &d, &m) < 0)
		return CHILD_ATTACH;
	w = llmp_shmem_addr(m);
	if (llmp_shmem_size(m) != d.size ||
	    w[0] != llmp_test_fnv((unsigned char *)w + 16, d.size - 16)) {
		llmp_shmem_put(m);
		llmp_provider_free(p);
		return CHILD_SUM;
	}
	w[1] = ~w[0];
	llmp_shmem_put(m);
	llmp_provider_free(p);
	return CHILD_OK;
}

/* Re-exec'd as a child (see fork_exec_env): attach from the environment, answer, exit. */
static void __attribute__((constructor)) maybe_exec_child(void)
{
	if (getenv(EXEC_MARKER))
		_exit(exec_child_main());
}

static int count_dir(const char *path)
{
	DIR *dir = opendir(path);
	struct dirent *e;
	int n = 0;

	if (!dir)
		return -1;
	while ((e = readdir(dir)))
		if (e->d_name[0] != '.')
			n++;
	closedir(dir);
	return n;
}

/* /dev/shm entries named by this process's POSIX provider ("libafl_<pid>_..."). */
static int count_own_posix(void)
{
	DIR *dir = opendir("/dev/shm");
	struct dirent *e;
	char prefix[32];
	int n = 0;

	if (!dir)
		return 0;
	snprintf(prefix, sizeof(prefix), "libafl_%ld_", (long)getpid());
	while ((e = readdir(dir)))
		if (!strncmp(e->d_name, prefix, strlen(prefix)))
			n++;
	closedir(dir);
	return n;
}

/* System V segments whose creator pid is this process (/proc/sysvipc/shm). */
static int count_own_sysv(void)
{
	FILE *f = fopen("/proc/sysvipc/shm", "r");
	char line[512];
	int n = 0;

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f)) {
		long long key, id, perms, size, cpid;

		if (sscanf(line, "%lld %lld %llo %lld %lld", &key, &id, &perms, &size, &cpid) == 5 &&
		    cpid == getpid())
			n++;
	}
	fclose(f);
	return n;
}

FIXTURE(prov)
{
	struct llmp_provider *p;
	char why[256];
};

FIXTURE_VARIANT(prov)
{
	enum llmp_shmem_kind kind;
};

FIXTURE_VARIANT_ADD(prov, memfd)
{
	.kind = LLMP_SHMEM_MEMFD,
};

FIXTURE_VARIANT_ADD(prov, posix)
{
	.kind = LLMP_SHMEM_POSIX,
};

FIXTURE_VARIANT_ADD(prov, sysv)
{
	.kind = LLMP_SHMEM_SYSV,
};

FIXTURE_VARIANT_ADD(prov, ashmem)
{
	.kind = LLMP_SHMEM_ASHMEM,
};

FIXTURE_SETUP(prov)
{
	int ret = llmp_provider_new(variant->kind, &self->p);

	if (ret == -ENODEV) {
		self->p = NULL;
		snprintf(self->why, sizeof(self->why), "%s", llmp_strerror_last());
		return;
	}
	ASSERT_EQ(0, ret);
	ASSERT_EQ(variant->kind, llmp_provider_kind(self->p));
}

FIXTURE_TEARDOWN(prov)
{
	llmp_provider_free(self->p);
}

/* The harness runs the body after a setup that skipped; stop it here. */
#define NEED_PROVIDER()                                                       \
	do {                                                                  \
		if (!self->p)                                                 \
			SKIP(return, "%s provider: %s",                       \
			     llmp_shmem_kind_name(variant->kind), self->why); \
	} while (0)

TEST_F(prov, create_is_zeroed_and_described)
{
	struct llmp_shmem *m;
	const struct llmp_shmem_desc *d;
	const unsigned char *b;

	NEED_PROVIDER();
	ASSERT_EQ(0, llmp_shmem_new(self->p, 65536, &m));
	d = llmp_shmem_desc(m);
	ASSERT_EQ(variant->kind, d->kind);
	ASSERT_EQ(65536, d->size);
	ASSERT_EQ(65536, llmp_shmem_size(m));
	ASSERT_EQ(0, llmp_shmem_desc_check(d));
	ASSERT_TRUE(llmp_shmem_is_owner(m));
	b = llmp_shmem_addr(m);
	ASSERT_EQ(0, (uintptr_t)b % 4096);
	for (size_t i = 0; i < 65536; i++)
		ASSERT_EQ(0, b[i]);
	llmp_shmem_put(m);
}

TEST_F(prov, id_format)
{
	struct llmp_shmem *m;
	const char *id;
	char want[LLMP_SHMEM_ID_LEN + 16];

	NEED_PROVIDER();
	ASSERT_EQ(0, llmp_shmem_new(self->p, 4096, &m));
	id = llmp_shmem_desc(m)->id;
	ASSERT_LT(strlen(id), LLMP_SHMEM_ID_LEN);
	switch (variant->kind) {
	case LLMP_SHMEM_MEMFD: {
		long pid = -1, fd = -1;
		char path[64], link[128];
		ssize_t n;

		long gen = -1;

		/* m<pid>:<fd>:<low digits of the generation>, 19 characters at most. */
		ASSERT_EQ(3, sscanf(id, "m%ld:%ld:%ld", &pid, &fd, &gen));
		ASSERT_GE(gen, 0);
		ASSERT_EQ(getpid(), pid);
		snprintf(path, sizeof(path), "/proc/self/fd/%ld", fd);
		n = readlink(path, link, sizeof(link) - 1);
		ASSERT_GT(n, 0);
		link[n] = 0;
		ASSERT_EQ(0, strncmp(link, "/memfd:llmp-", 12));
		break;
	}
	case LLMP_SHMEM_POSIX: {
		char path[64];
		struct stat st;
		int n;

		/* LibAFL's form: "/" + the first 18 characters of libafl_<pid>_<n>. */
		n = snprintf(want, sizeof(want), "/libafl_%ld_", (long)getpid());
		ASSERT_EQ(0, strncmp(id, want, strlen(want) < 19 ? strlen(want) : 19));
		ASSERT_LE(strlen(id), 19);
		for (size_t i = (size_t)n; id[i]; i++)
			ASSERT_TRUE(id[i] >= '0' && id[i] <= '9');
		snprintf(path, sizeof(path), "/dev/shm%s", id);
		ASSERT_EQ(0, stat(path, &st));
		ASSERT_EQ(4096, st.st_size);
		ASSERT_EQ(0600, st.st_mode & 0777);
		break;
	}
	case LLMP_SHMEM_SYSV: {
		struct shmid_ds ds;
		char *end;
		long shmid = strtol(id, &end, 10);

		ASSERT_EQ(0, *end);
		snprintf(want, sizeof(want), "%ld", shmid);
		ASSERT_STREQ(want, id); /* plain decimal, exactly as LibAFL writes */
		ASSERT_EQ(0, shmctl((int)shmid, IPC_STAT, &ds));
		ASSERT_EQ(4096, ds.shm_segsz);
		ASSERT_EQ(0600, ds.shm_perm.mode & 0777);
		ASSERT_EQ(getpid(), ds.shm_cpid);
		break;
	}
	default:
		break;
	}
	llmp_shmem_put(m);
}

TEST_F(prov, attach_same_process_sees_writes)
{
	struct llmp_shmem *a, *b;
	uint64_t *wa, *wb;

	NEED_PROVIDER();
	ASSERT_EQ(0, llmp_shmem_new(self->p, 8192, &a));
	ASSERT_EQ(0, llmp_shmem_attach(self->p, llmp_shmem_desc(a), &b));
	ASSERT_FALSE(llmp_shmem_is_owner(b));
	ASSERT_EQ(0, memcmp(llmp_shmem_desc(a), llmp_shmem_desc(b), sizeof(struct llmp_shmem_desc)));
	wa = llmp_shmem_addr(a);
	wb = llmp_shmem_addr(b);
	ASSERT_NE(wa, wb);
	wa[0] = 0x1122334455667788ULL;
	wb[1023] = 0x99;
	ASSERT_EQ(0x1122334455667788ULL, wb[0]);
	ASSERT_EQ(0x99, wa[1023]);
	/* The attacher's release leaves the segment to the owner. */
	llmp_shmem_put(b);
	ASSERT_EQ(0x99, wa[1023]);
	ASSERT_EQ(0, llmp_shmem_attach(self->p, llmp_shmem_desc(a), &b));
	ASSERT_EQ(0x1122334455667788ULL, ((uint64_t *)llmp_shmem_addr(b))[0]);
	llmp_shmem_put(b);
	llmp_shmem_put(a);
}

TEST_F(prov, fork_attach_write_read)
{
	const size_t size = 1 << 20;
	struct llmp_shmem *m, *again;
	uint64_t *w;
	int status;
	pid_t pid;

	NEED_PROVIDER();
	ASSERT_EQ(0, llmp_shmem_new(self->p, size, &m));
	w = llmp_shmem_addr(m);
	fill_seg(w, size, 42);
	ASSERT_EQ(0, llmp_provider_pre_fork(self->p));
	pid = fork();
	ASSERT_GE(pid, 0);
	if (pid == 0) {
		struct llmp_shmem *c;
		uint64_t *cw;
		int rc = 0;

		if (llmp_provider_post_fork(self->p, true) < 0)
			_exit(20);
		/* The inherited mapping works, and so does a fresh attach by id. */
		if (w[0] != llmp_test_fnv((unsigned char *)w + 16, size - 16))
			_exit(21);
		if (llmp_shmem_attach(self->p, llmp_shmem_desc(m), &c) < 0)
			_exit(22);
		cw = llmp_shmem_addr(c);
		if (cw[0] != w[0])
			rc = 23;
		cw[1] = ~cw[0];
		llmp_shmem_put(c);
		/* An inherited owner handle released in a child destroys nothing. */
		llmp_shmem_put(m);
		_exit(rc);
	}
	ASSERT_EQ(0, llmp_provider_post_fork(self->p, false));
	ASSERT_EQ(pid, waitpid(pid, &status, 0));
	ASSERT_TRUE(WIFEXITED(status));
	ASSERT_EQ(0, WEXITSTATUS(status));
	ASSERT_EQ(~w[0], w[1]);
	/* Still attachable after the child's release of its inherited copy. */
	ASSERT_EQ(0, llmp_shmem_attach(self->p, llmp_shmem_desc(m), &again));
	ASSERT_EQ(w[0], ((uint64_t *)llmp_shmem_addr(again))[0]);
	llmp_shmem_put(again);
	llmp_shmem_put(m);
}

TEST_F(prov, fork_exec_env)
{
	const size_t size = 1 << 20;
	struct llmp_shmem *m;
	uint64_t *w;
	int status;
	pid_t pid;

	NEED_PROVIDER();
	ASSERT_EQ(0, llmp_shmem_new(self->p, size, &m));
	w = llmp_shmem_addr(m);
	fill_seg(w, size, 7);
	ASSERT_EQ(0, llmp_shmem_desc_to_env(llmp_shmem_desc(m), EXEC_DESC));
	pid = fork();
	ASSERT_GE(pid, 0);
	if (pid == 0) {
		char *argv[] = { "shmem_provider_test", NULL };

		setenv(EXEC_MARKER, "1", 1);
		execv("/proc/self/exe", argv);
		_exit(99);
	}
	ASSERT_EQ(pid, waitpid(pid, &status, 0));
	ASSERT_TRUE(WIFEXITED(status));
	ASSERT_EQ(CHILD_OK, WEXITSTATUS(status));
	ASSERT_EQ(~w[0], w[1]);
	llmp_shmem_put(m);
}

static void check_size(struct __test_metadata *_metadata, struct llmp_provider *p, size_t size)
{
	struct llmp_shmem *m, *a;
	volatile unsigned char *b, *c;

	ASSERT_EQ(0, llmp_shmem_new(p, size, &m)) {
		TH_LOG("size %zu: %s", size, llmp_strerror_last());
	}
	ASSERT_EQ(size, llmp_shmem_size(m));
	ASSERT_EQ(size, llmp_shmem_desc(m)->size);
	b = llmp_shmem_addr(m);
	ASSERT_EQ(0, b[0]);
	ASSERT_EQ(0, b[size - 1]);
	b[0] = 0xa5;
	b[size - 1] = 0x5a;
	ASSERT_EQ(0, llmp_shmem_attach(p, llmp_shmem_desc(m), &a));
	ASSERT_EQ(size, llmp_shmem_size(a));
	c = llmp_shmem_addr(a);
	ASSERT_EQ(size == 1 ? 0x5a : 0xa5, c[0]);
	ASSERT_EQ(0x5a, c[size - 1]);
	c[size / 2] = 0x77;
	ASSERT_EQ(0x77, b[size / 2]);
	llmp_shmem_put(a);
	llmp_shmem_put(m);
}

TEST_F(prov, sizes_1b_to_256mib)
{
	NEED_PROVIDER();
	check_size(_metadata, self->p, 1);
	check_size(_metadata, self->p, 4096);
	check_size(_metadata, self->p, 4097);
	check_size(_metadata, self->p, 1 << 20);
	check_size(_metadata, self->p, 256u << 20);
}

static int cmp_id(const void *a, const void *b)
{
	return strncmp(a, b, LLMP_SHMEM_ID_LEN);
}

/*
 * 1000 segments, 100 live at a time: every batch has distinct ids, and
 * after each batch no fd, POSIX name or SysV id is left.  Under a loaded
 * emulator this takes minutes: it checks uniqueness by sorting (not 4950
 * comparisons a batch) and its harness timeout is scaled by
 * LLMP_TEST_TIMEOUT_SCALE (llmp_test.h).
 */
TEST_F(prov, thousand_segments_no_leak)
{
	enum { TOTAL = 1000, BATCH = 100 };
	struct llmp_shmem *m[BATCH];
	char ids[BATCH][LLMP_SHMEM_ID_LEN], sorted[BATCH][LLMP_SHMEM_ID_LEN];
	int fds0, posix0, sysv0, made = 0;

	NEED_PROVIDER();
	fds0 = count_dir("/proc/self/fd");
	posix0 = count_own_posix();
	sysv0 = count_own_sysv();
	ASSERT_GT(fds0, 0);
	while (made < TOTAL) {
		for (int i = 0; i < BATCH; i++) {
			ASSERT_EQ(0, llmp_shmem_new(self->p, 4096 + (size_t)i, &m[i])) {
				TH_LOG("segment %d: %s", made + i, llmp_strerror_last());
			}
			((unsigned char *)llmp_shmem_addr(m[i]))[i] = (unsigned char)(made + i);
			memcpy(ids[i], llmp_shmem_desc(m[i])->id, LLMP_SHMEM_ID_LEN);
		}
		/* The batch's ids are pairwise distinct: sorted, no two neighbours equal. */
		memcpy(sorted, ids, sizeof(sorted));
		qsort(sorted, BATCH, sizeof(sorted[0]), cmp_id);
		for (int i = 1; i < BATCH; i++)
			ASSERT_NE(0, strncmp(sorted[i - 1], sorted[i], LLMP_SHMEM_ID_LEN));
		if (variant->kind == LLMP_SHMEM_POSIX)
			ASSERT_EQ(posix0 + BATCH, count_own_posix());
		if (variant->kind == LLMP_SHMEM_SYSV)
			ASSERT_EQ(sysv0 + BATCH, count_own_sysv());
		for (int i = 0; i < BATCH; i++) {
			ASSERT_EQ((unsigned char)(made + i),
				  ((unsigned char *)llmp_shmem_addr(m[i]))[i]);
			llmp_shmem_put(m[i]);
		}
		made += BATCH;
		ASSERT_EQ(fds0, count_dir("/proc/self/fd"));
		ASSERT_EQ(posix0, count_own_posix());
		ASSERT_EQ(sysv0, count_own_sysv());
	}
	/* Released names and ids are really gone (not just unmapped). */
	for (int i = 0; i < BATCH && variant->kind != LLMP_SHMEM_MEMFD; i++) {
		struct llmp_shmem_desc d;
		struct llmp_shmem *x;

		memset(&d, 0, sizeof(d));
		d.kind = variant->kind;
		d.size = 4096;
		memcpy(d.id, ids[i], LLMP_SHMEM_ID_LEN);
		ASSERT_EQ(-ENOENT, llmp_shmem_attach(self->p, &d, &x));
	}
}

TEST_F(prov, bad_sizes)
{
	struct llmp_shmem *m = (void *)1;

	NEED_PROVIDER();
	ASSERT_EQ(-EINVAL, llmp_shmem_new(self->p, 0, &m));
	ASSERT_EQ(NULL, m);
	ASSERT_EQ(-E2BIG, llmp_shmem_new(self->p, SIZE_MAX, &m));
	ASSERT_EQ(-E2BIG, llmp_shmem_new(self->p, (size_t)LLMP_SHMEM_MAX_SIZE + 1, &m));
	ASSERT_NE(NULL, strstr(llmp_strerror_last(), "above the limit"));
	ASSERT_EQ(NULL, m);
}

TEST_F(prov, unknown_and_garbage_ids)
{
	static const char *const unknown[LLMP_SHMEM_KIND_MAX][3] = {
		[LLMP_SHMEM_MEMFD] = { "m1:999999", "m999999:3", "m4194303:7" },
		[LLMP_SHMEM_POSIX] = { "/libafl_1_0", "/llmp_no_such_seg", "/x" },
		[LLMP_SHMEM_SYSV] = { "2147483000", "1999999999", "2147483647" },
	};
	static const char *const garbage[LLMP_SHMEM_KIND_MAX][10] = {
		[LLMP_SHMEM_MEMFD] = { "m", "m1:", "m:1", "m01:2", "m1:2x", "x1:2", "m1:2:",
				       "m1:2:01", "m1:2:3:4", "m0:1" },
		[LLMP_SHMEM_POSIX] = { "noslash", "/a/b", "/", "//", "/..", "/." },
		[LLMP_SHMEM_SYSV] = { "-1", "12a", "+5", "0x10", "99999999999", "007" },
	};
	struct llmp_shmem_desc d;
	struct llmp_shmem *m = NULL;

	NEED_PROVIDER();
	for (int i = 0; i < 3 && unknown[variant->kind][i]; i++) {
		memset(&d, 0, sizeof(d));
		d.kind = variant->kind;
		d.size = 4096;
		strcpy(d.id, unknown[variant->kind][i]);
		ASSERT_EQ(-ENOENT, llmp_shmem_attach(self->p, &d, &m)) {
			TH_LOG("id %s: %s", d.id, llmp_strerror_last());
		}
		ASSERT_EQ(NULL, m);
	}
	for (int i = 0; i < 10 && garbage[variant->kind][i]; i++) {
		memset(&d, 0, sizeof(d));
		d.kind = variant->kind;
		d.size = 4096;
		strcpy(d.id, garbage[variant->kind][i]);
		ASSERT_EQ(-EINVAL, llmp_shmem_attach(self->p, &d, &m)) {
			TH_LOG("id %s: %s", d.id, llmp_strerror_last());
		}
		ASSERT_EQ(NULL, m);
	}
	/* Wrong kind, bad padding, size 0: refused before the back end runs. */
	memset(&d, 0, sizeof(d));
	d.kind = variant->kind == LLMP_SHMEM_SYSV ? LLMP_SHMEM_POSIX : LLMP_SHMEM_SYSV;
	d.size = 4096;
	strcpy(d.id, "1");
	ASSERT_EQ(-EINVAL, llmp_shmem_attach(self->p, &d, &m));
	d.kind = variant->kind;
	d.pad[2] = 1;
	ASSERT_EQ(-EINVAL, llmp_shmem_attach(self->p, &d, &m));
	d.pad[2] = 0;
	d.size = 0;
	ASSERT_EQ(-EINVAL, llmp_shmem_attach(self->p, &d, &m));
	ASSERT_EQ(NULL, m);
}

TEST_F(prov, no_new_attach_after_owner_release)
{
	struct llmp_shmem *m, *a, *x = NULL;
	struct llmp_shmem_desc d;

	NEED_PROVIDER();
	ASSERT_EQ(0, llmp_shmem_new(self->p, 65536, &m));
	d = *llmp_shmem_desc(m);
	((unsigned char *)llmp_shmem_addr(m))[65535] = 0x3c;
	ASSERT_EQ(0, llmp_shmem_attach(self->p, &d, &a));
	llmp_shmem_put(m);
	/* The existing mapping keeps working; the id no longer attaches. */
	ASSERT_EQ(0x3c, ((unsigned char *)llmp_shmem_addr(a))[65535]);
	((unsigned char *)llmp_shmem_addr(a))[0] = 1;
	ASSERT_EQ(-ENOENT, llmp_shmem_attach(self->p, &d, &x)) {
		TH_LOG("%s: %s", d.id, llmp_strerror_last());
	}
	ASSERT_EQ(NULL, x);
	llmp_shmem_put(a);
	if (variant->kind == LLMP_SHMEM_SYSV)
		ASSERT_EQ(0, count_own_sysv()); /* gone with the last detach */
	if (variant->kind == LLMP_SHMEM_POSIX)
		ASSERT_EQ(0, count_own_posix());
}

TEST_F(prov, other_user_cannot_attach)
{
	struct llmp_shmem *m;
	int status;
	pid_t pid;

	NEED_PROVIDER();
	if (geteuid() != 0)
		SKIP(return, "needs root to switch to another user");
	ASSERT_EQ(0, llmp_shmem_new(self->p, 4096, &m));
	pid = fork();
	ASSERT_GE(pid, 0);
	if (pid == 0) {
		struct llmp_shmem *a = NULL;
		int ret;

		if (setgid(65534) < 0 || setuid(65534) < 0)
			_exit(100);
		ret = llmp_shmem_attach(self->p, llmp_shmem_desc(m), &a);
		_exit(ret == -EACCES ? 0 : ret == 0 ? 101 : 102);
	}
	ASSERT_EQ(pid, waitpid(pid, &status, 0));
	ASSERT_TRUE(WIFEXITED(status));
	ASSERT_EQ(0, WEXITSTATUS(status));
	llmp_shmem_put(m);
}

TEST_F(prov, stale_id_does_not_map_a_newer_segment)
{
	struct llmp_shmem *a, *b, *x = NULL;
	struct llmp_shmem_desc old;

	NEED_PROVIDER();
	ASSERT_EQ(0, llmp_shmem_new(self->p, 4096, &a));
	old = *llmp_shmem_desc(a);
	llmp_shmem_put(a);
	/* The next segment may reuse the fd number, shmid slot or name counter. */
	ASSERT_EQ(0, llmp_shmem_new(self->p, 4096, &b));
	((unsigned char *)llmp_shmem_addr(b))[0] = 0x42;
	if (variant->kind == LLMP_SHMEM_MEMFD) {
		long p1, f1, p2, f2;

		ASSERT_EQ(2, sscanf(old.id, "m%ld:%ld", &p1, &f1));
		ASSERT_EQ(2, sscanf(llmp_shmem_desc(b)->id, "m%ld:%ld", &p2, &f2));
		ASSERT_EQ(f1, f2); /* same fd number: only the generation tells them apart */
	}
	ASSERT_NE(0, strcmp(old.id, llmp_shmem_desc(b)->id));
	ASSERT_EQ(-ENOENT, llmp_shmem_attach(self->p, &old, &x)) {
		TH_LOG("stale %s, live %s: %s", old.id, llmp_shmem_desc(b)->id,
		       llmp_strerror_last());
	}
	ASSERT_EQ(NULL, x);
	llmp_shmem_put(b);
}

TEST_F(prov, description_larger_than_segment)
{
	struct llmp_shmem *m, *a = NULL;
	struct llmp_shmem_desc d;

	NEED_PROVIDER();
	ASSERT_EQ(0, llmp_shmem_new(self->p, 8192, &m));
	d = *llmp_shmem_desc(m);
	d.size = 1 << 20;
	ASSERT_EQ(-EBADMSG, llmp_shmem_attach(self->p, &d, &a));
	ASSERT_EQ(NULL, a);
	ASSERT_NE(NULL, strstr(llmp_strerror_last(), "the description says"));
	/* A smaller description maps just that much. */
	d.size = 100;
	ASSERT_EQ(0, llmp_shmem_attach(self->p, &d, &a));
	ASSERT_EQ(100, llmp_shmem_size(a));
	llmp_shmem_put(a);
	llmp_shmem_put(m);
}

static void capture_log(void *ctx, enum llmp_log_level level, const char *msg)
{
	if (level == LLMP_LOG_ERROR)
		snprintf(ctx, 256, "%s", msg);
}

TEST_F(prov, errors_reach_the_log_callback)
{
	struct llmp_shmem_desc d;
	struct llmp_shmem *m;
	char got[256] = "";

	NEED_PROVIDER();
	llmp_set_log(capture_log, got, LLMP_LOG_ERROR);
	memset(&d, 0, sizeof(d));
	d.kind = variant->kind;
	d.size = 4096;
	strcpy(d.id, variant->kind == LLMP_SHMEM_SYSV ? "2147483000" :
		     variant->kind == LLMP_SHMEM_POSIX ? "/llmp_no_such_seg" : "m1:999999");
	ASSERT_EQ(-ENOENT, llmp_shmem_attach(self->p, &d, &m));
	llmp_set_log(NULL, NULL, LLMP_LOG_WARN);
	ASSERT_NE(0, got[0]);
	ASSERT_STREQ(llmp_strerror_last(), got);
	ASSERT_NE(NULL, strstr(got, d.id));
}

/* DEFAULT: KMOD when /dev/llmp is usable, else MEMFD on Linux. */
TEST(default_kind_is_kmod_or_memfd)
{
	struct llmp_provider *p, *k;
	enum llmp_shmem_kind want;

	if (llmp_provider_new(LLMP_SHMEM_KMOD, &k) == 0) {
		want = LLMP_SHMEM_KMOD;
		llmp_provider_free(k);
	} else {
		want = LLMP_SHMEM_MEMFD;
	}
	ASSERT_EQ(want, llmp_shmem_default_kind());
	ASSERT_EQ(0, llmp_provider_new(LLMP_SHMEM_DEFAULT, &p));
	ASSERT_EQ(want, llmp_provider_kind(p));
	llmp_provider_free(p);
}

TEST_HARNESS_MAIN
