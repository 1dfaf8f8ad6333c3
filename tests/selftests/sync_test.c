// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * llmp-sync (tools/llmp-sync.c) against a real llmp-broker: hostile
 * test-case messages (names with "../", "/", NUL, "..", lying lengths, a
 * wrong hash, an oversized test case) never write outside the import dir
 * and do not stop an honest one; two corpus dirs share files, nothing is
 * echoed back, and the sync survives a SIGKILLed broker restarted on the
 * same port; the AFL mode watches a queue/ created later, imports into
 * DIR.llmp-import and trims it; imports are stamped so that afl-fuzz -F
 * and libFuzzer -reload, which both compare whole-second mtimes, see them.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "kselftest_harness.h"
#include "llmp_test.h"
#include "llmp/broker.h"
#include "llmp/corpus.h"

struct env {
	char root[64];
	char broker[8192], sync[8192];
	uint16_t port;
	pid_t bpid;
};

/* Run argv with stdout and stderr into root/log; the child's pid. */
static pid_t spawn(const struct env *e, const char *log, char *const argv[])
{
	pid_t pid = fork();

	if (pid == 0) {
		char path[256];
		int fd;

		snprintf(path, sizeof(path), "%s/%s", e->root, log);
		fd = open(path, O_WRONLY | O_CREAT | O_APPEND, 0644);
		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
		}
		execv(argv[0], argv);
		_exit(127);
	}
	return pid;
}

static int start_broker(struct env *e)
{
	char port[16];

	snprintf(port, sizeof(port), "%u", e->port);
	char *argv[] = { e->broker, "-p", port, NULL };

	e->bpid = spawn(e, "broker.log", argv);
	for (int i = 0; i < 500; i++) {
		int fd = llmp_test_tcp_dial(e->port);

		if (fd >= 0) {
			close(fd);
			return 0;
		}
		usleep(10000);
	}
	return -1;
}

static pid_t start_sync(const struct env *e, const char *mode, const char *opt, const char *dir,
			const char *log, const char *extra1, const char *extra2)
{
	char port[16], path[256];

	snprintf(port, sizeof(port), "%u", e->port);
	snprintf(path, sizeof(path), "%s/%s", e->root, dir);
	char *argv[] = { (char *)e->sync, (char *)mode, (char *)opt, path, "-p", port, "-v",
			 (char *)extra1, (char *)extra2, NULL };

	return spawn(e, log, argv);
}

/* Stop pid with SIGINT and reap it: its exit status. */
static int stop(pid_t pid)
{
	int st = -1;

	kill(pid, SIGINT);
	waitpid(pid, &st, 0);
	return st;
}

static int setup(struct env *e)
{
	snprintf(e->root, sizeof(e->root), "/tmp/llmp-sync-test.XXXXXX");
	if (!mkdtemp(e->root))
		return -1;
	if (!llmp_test_tool_path("llmp-broker", e->broker, sizeof(e->broker)) ||
	    !llmp_test_tool_path("llmp-sync", e->sync, sizeof(e->sync)))
		return 1;
	e->port = llmp_test_free_port();
	return start_broker(e);
}

static void teardown(struct env *e)
{
	char cmd[128];

	if (e->bpid > 0) {
		kill(e->bpid, SIGTERM);
		waitpid(e->bpid, NULL, 0);
	}
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", e->root);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", e->root);
}

/* setup(), or SKIP (after cleaning up) when the tools are not built next to the tests. */
#define SETUP_OR_SKIP(e)                                                            \
	do {                                                                        \
		int r_ = setup(&(e));                                               \
		if (r_ == 1) {                                                      \
			teardown(&(e));                                             \
			SKIP(return, "the tools are not built next to the tests"); \
		}                                                                   \
		ASSERT_EQ(0, r_);                                                   \
	} while (0)

static int write_file(const char *dir, const char *name, const void *buf, size_t len)
{
	char path[512], tmp[520];
	int fd;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	snprintf(tmp, sizeof(tmp), "%s/.%s.t", dir, name); /* dot files are skipped */
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0 || write(fd, buf, len) != (ssize_t)len || close(fd) < 0)
		return -1;
	return rename(tmp, path);
}

/* Bytes of dir/name into buf: the length, or -1. */
static ssize_t read_path(const char *dir, const char *name, void *buf, size_t cap)
{
	char path[512];
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	fd = open(path, O_RDONLY);
	if (fd < 0)
		return -1;
	n = read(fd, buf, cap);
	close(fd);
	return n;
}

/* The import file name of data: hex of its SHA-256 (taken from the encoded header). */
static void hash_name(const void *data, size_t len, char out[65])
{
	static uint8_t buf[LLMP_TC_FIXED_LEN + 8 + 70000];
	struct llmp_tc t = { .host = "h", .host_len = 1, .data = data, .data_len = len };

	if (llmp_tc_encode(&t, buf, sizeof(buf)) < 0)
		out[0] = 0;
	for (int i = 0; i < 32; i++)
		sprintf(out + 2 * i, "%02x", buf[16 + i]);
}

static int count_entries(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	int n = 0;

	if (!d)
		return -1;
	while ((e = readdir(d)))
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
			n++;
	closedir(d);
	return n;
}

/* Wait up to ms for dir/name to exist. */
static bool wait_file(const char *dir, const char *name, int ms)
{
	char path[1024];

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	for (int i = 0; i < ms / 10; i++) {
		if (access(path, F_OK) == 0)
			return true;
		usleep(10000);
	}
	return false;
}

static bool log_has(const struct env *e, const char *log, const char *what)
{
	char buf[65536];
	ssize_t n = read_path(e->root, log, buf, sizeof(buf) - 1);

	if (n < 0)
		return false;
	buf[n] = 0;
	return strstr(buf, what) != NULL;
}

static struct llmp_client *client(const struct env *e, struct llmp_provider **p)
{
	struct llmp_client *c = NULL;

	if (llmp_provider_new(LLMP_SHMEM_DEFAULT, p) < 0)
		return NULL;
	if (llmp_client_connect_tcp(*p, NULL, e->port, NULL, &c) < 0)
		return NULL;
	return c;
}

TEST(hostile_test_cases_stay_in_the_import_dir)
{
	struct env e = { 0 };
	struct llmp_provider *p = NULL;
	char corpus[128], hn[65];
	uint8_t msg[8192], data[4096];

	SETUP_OR_SKIP(e);
	snprintf(corpus, sizeof(corpus), "%s/corpus", e.root);
	pid_t sp = start_sync(&e, "dir", "--corpus", "corpus", "sync.log", "--max-size", "1024");
	struct llmp_client *c = client(&e, &p);

	ASSERT_NE(NULL, c);
	ASSERT_TRUE(wait_file(e.root, "corpus", 5000));
	usleep(300000); /* llmp-sync registered (it replays the history anyway) */

	/* name patched after encoding: the hash covers the bytes, not the name */
	static const struct { const char *enc, *bad; size_t len; } names[] = {
		{ "aaaescape", "../escape", 9 }, { "xetcxpasswd", "/etc/passwd", 11 },
		{ "nulAname", "nul\0name", 8 },  { "zz", "..", 2 },
	};
	memset(data, 'D', sizeof(data));
	for (unsigned i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		struct llmp_tc t = { .host = "evil", .host_len = 4, .name = names[i].enc,
				     .name_len = names[i].len, .data = data, .data_len = 16 + i };
		int n = llmp_tc_encode(&t, msg, sizeof(msg));

		ASSERT_LT(0, n);
		memcpy(msg + LLMP_TC_FIXED_LEN + 4, names[i].bad, names[i].len);
		ASSERT_EQ(0, llmp_client_send(c, LLMP_TAG_TESTCASE, 0, msg, (size_t)n));
	}
	struct llmp_tc t = { .host = "evil", .host_len = 4, .name = "big", .name_len = 3,
			     .data = data, .data_len = 32 };
	int n = llmp_tc_encode(&t, msg, sizeof(msg));

	ASSERT_LT(0, n);
	msg[48 + 5] = 0x01; /* test case length 2^40 + 32 */
	ASSERT_EQ(0, llmp_client_send(c, LLMP_TAG_TESTCASE, 0, msg, (size_t)n));
	msg[48 + 5] = 0;
	msg[16] ^= 0xff; /* a hash that does not match */
	ASSERT_EQ(0, llmp_client_send(c, LLMP_TAG_TESTCASE, 0, msg, (size_t)n));
	/* well formed but above --max-size 1024 */
	t.data_len = 2000;
	n = llmp_tc_encode(&t, msg, sizeof(msg));
	ASSERT_EQ(0, llmp_client_send(c, LLMP_TAG_TESTCASE, 0, msg, (size_t)n));
	/* the honest one, named like a path: the file is named after its hash */
	static const char honest[] = "honest test case";
	struct llmp_tc h = { .host = "good", .host_len = 4, .name = "id:000001,src:..",
			     .name_len = 16, .data = honest, .data_len = sizeof(honest) };

	ASSERT_EQ(0, llmp_tc_send(c, &h));
	hash_name(honest, sizeof(honest), hn);
	ASSERT_TRUE(wait_file(corpus, hn, 10000));
	char got[64];

	ASSERT_EQ((ssize_t)sizeof(honest), read_path(corpus, hn, got, sizeof(got)));
	EXPECT_EQ(0, memcmp(got, honest, sizeof(honest)));
	llmp_client_free(c);
	llmp_provider_free(p);
	EXPECT_EQ(0, stop(sp));
	/* only the honest file in the corpus; only corpus and the logs in root */
	EXPECT_EQ(1, count_entries(corpus));
	EXPECT_EQ(3, count_entries(e.root)); /* corpus, broker.log, sync.log */
	EXPECT_TRUE(log_has(&e, "sync.log", "imported 1 ")) TH_LOG("see %s/sync.log", e.root);
	EXPECT_TRUE(log_has(&e, "sync.log", "refused 6 too-big 1 "));
	EXPECT_EQ(0, access("/etc/passwd", F_OK)); /* still there, and not ours */
	teardown(&e);
}

TEST(two_dirs_share_and_survive_a_broker_restart)
{
	struct env e = { 0 };
	char ca[128], cb[128], hn[65], buf[256];

	SETUP_OR_SKIP(e);
	snprintf(ca, sizeof(ca), "%s/a", e.root);
	snprintf(cb, sizeof(cb), "%s/b", e.root);
	ASSERT_EQ(0, mkdir(ca, 0755));
	ASSERT_EQ(0, write_file(ca, "seed", "old find", 8)); /* there before: published at start */
	pid_t pa = start_sync(&e, "dir", "--corpus", "a", "a.log", NULL, NULL);
	pid_t pb = start_sync(&e, "dir", "--corpus", "b", "b.log", NULL, NULL);

	hash_name("old find", 8, hn);
	ASSERT_TRUE(wait_file(cb, hn, 10000));
	ASSERT_EQ(0, write_file(cb, "fromb", "b's find", 8));
	hash_name("b's find", 8, hn);
	ASSERT_TRUE(wait_file(ca, hn, 10000));
	EXPECT_EQ(8, read_path(ca, hn, buf, sizeof(buf)));
	EXPECT_EQ(0, memcmp(buf, "b's find", 8));

	/* the broker dies and comes back on the same port */
	kill(e.bpid, SIGKILL);
	waitpid(e.bpid, NULL, 0);
	e.bpid = 0;
	usleep(300000);
	ASSERT_EQ(0, start_broker(&e));
	ASSERT_EQ(0, write_file(ca, "after", "after the restart", 17));
	hash_name("after the restart", 17, hn);
	EXPECT_TRUE(wait_file(cb, hn, 20000)) TH_LOG("see %s/a.log, b.log", e.root);
	usleep(300000);
	EXPECT_EQ(0, stop(pa));
	EXPECT_EQ(0, stop(pb));
	/* nothing echoed: a holds seed, after, and b's find; b holds fromb and a's two */
	EXPECT_EQ(3, count_entries(ca));
	EXPECT_EQ(3, count_entries(cb));
	EXPECT_TRUE(log_has(&e, "a.log", "published 2 imported 1 "));
	EXPECT_TRUE(log_has(&e, "b.log", "published 1 imported 2 "));
	EXPECT_TRUE(log_has(&e, "a.log", "reconnects 1 "));
	EXPECT_TRUE(log_has(&e, "b.log", "reconnects 1 "));
	teardown(&e);
}

TEST(afl_mode_queue_import_and_trim)
{
	struct env e = { 0 };
	char q[160], imp[160], cb[128], hn[65];

	SETUP_OR_SKIP(e);
	snprintf(q, sizeof(q), "%s/out/queue", e.root);
	snprintf(imp, sizeof(imp), "%s/out.llmp-import", e.root);
	snprintf(cb, sizeof(cb), "%s/b", e.root);
	/* the output dir does not exist yet: afl-fuzz creates it after we start */
	pid_t pa = start_sync(&e, "afl", "--out", "out", "a.log", "--trim", "2");
	pid_t pb = start_sync(&e, "dir", "--corpus", "b", "b.log", NULL, NULL);

	usleep(300000);
	snprintf(imp, sizeof(imp), "%s/out", e.root);
	ASSERT_EQ(0, mkdir(imp, 0755));
	ASSERT_EQ(0, mkdir(q, 0755));
	ASSERT_EQ(0, write_file(q, "id:000000,orig:seed", "queue entry", 11));
	ASSERT_EQ(0, write_file(q, ".state", "x", 1)); /* dot files are not test cases */
	hash_name("queue entry", 11, hn);
	ASSERT_TRUE(wait_file(cb, hn, 10000));
	EXPECT_EQ(1, count_entries(cb));
	ASSERT_EQ(0, write_file(cb, "libfuzzer-find", "from b", 6));
	snprintf(imp, sizeof(imp), "%s/out.llmp-import", e.root);
	hash_name("from b", 6, hn);
	ASSERT_TRUE(wait_file(imp, hn, 10000));
	/* afl-fuzz saves what it imports into its queue under its own name: not echoed */
	ASSERT_EQ(0, write_file(q, "id:000001,sync:foreign_0,src:000000", "from b", 6));
	/* trimmed within 2 s + the 1 s scan */
	char path[300];

	snprintf(path, sizeof(path), "%s/%s", imp, hn);
	int i;

	for (i = 0; i < 600 && access(path, F_OK) == 0; i++)
		usleep(10000);
	EXPECT_LT(i, 600);
	usleep(300000);
	EXPECT_EQ(0, stop(pa));
	EXPECT_EQ(0, stop(pb));
	EXPECT_TRUE(log_has(&e, "a.log", "published 1 imported 1 own 1 ")) TH_LOG("%s", e.root);
	EXPECT_TRUE(log_has(&e, "a.log", "trimmed 1"));
	EXPECT_EQ(2, count_entries(cb));
	teardown(&e);
}

static time_t mtime_of(const char *dir, const char *name)
{
	char path[1024];
	struct stat st;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	return stat(path, &st) == 0 ? st.st_mtime : -1;
}

/*
 * Guards "nothing lost" for AFL++: afl-fuzz -F skips an import whose mtime
 * is not above the highest it saw, so imports landing in one second must
 * get distinct, increasing stamps, also across a restart of llmp-sync.
 */
TEST(afl_mode_stamps_each_import_above_the_last)
{
	struct env e = { 0 };
	struct llmp_provider *p = NULL;
	char imp[160], hn[6][65], data[6][16];
	time_t m[6];

	SETUP_OR_SKIP(e);
	snprintf(imp, sizeof(imp), "%s/out.llmp-import", e.root);
	pid_t pa = start_sync(&e, "afl", "--out", "out", "a.log", NULL, NULL);
	struct llmp_client *c = client(&e, &p);

	ASSERT_NE(NULL, c);
	for (int i = 0; i < 6; i++) {
		snprintf(data[i], sizeof(data[i]), "burst case %d", i);
		hash_name(data[i], strlen(data[i]), hn[i]);
	}
	/* five in a burst: well within one second */
	for (int i = 0; i < 5; i++) {
		struct llmp_tc t = { .host = "x", .host_len = 1, .data = data[i],
				     .data_len = strlen(data[i]) };

		ASSERT_EQ(0, llmp_tc_send(c, &t));
	}
	time_t lo = time(NULL), hi = 0;

	for (int i = 0; i < 5; i++) {
		ASSERT_TRUE(wait_file(imp, hn[i], 10000)) TH_LOG("see %s/a.log", e.root);
		m[i] = mtime_of(imp, hn[i]);
	}
	int same = 0;

	for (int i = 0; i < 5; i++) {
		for (int k = 0; k < i; k++)
			same += m[i] == m[k];
		if (m[i] > hi)
			hi = m[i];
		EXPECT_LE(lo - 1, m[i]);
	}
	EXPECT_EQ(0, same) TH_LOG("stamps %ld %ld %ld %ld %ld", (long)m[0], (long)m[1], (long)m[2],
				  (long)m[3], (long)m[4]);
	/* a restarted llmp-sync stamps above what it gave before */
	EXPECT_EQ(0, stop(pa));
	pa = start_sync(&e, "afl", "--out", "out", "a2.log", "--from-now", NULL);
	usleep(500000);
	struct llmp_tc t = { .host = "x", .host_len = 1, .data = data[5],
			     .data_len = strlen(data[5]) };

	ASSERT_EQ(0, llmp_tc_send(c, &t));
	ASSERT_TRUE(wait_file(imp, hn[5], 10000)) TH_LOG("see %s/a2.log", e.root);
	EXPECT_LT(hi, mtime_of(imp, hn[5]));
	llmp_client_free(c);
	llmp_provider_free(p);
	EXPECT_EQ(0, stop(pa));
	teardown(&e);
}

/*
 * Guards "nothing lost" for libFuzzer: -reload rereads the corpus only when
 * the directory's mtime moved past the second of its last read, so after an
 * import llmp-sync must move it past the import's second.
 */
TEST(dir_mode_moves_the_dir_mtime_past_the_import)
{
	struct env e = { 0 };
	struct llmp_provider *p = NULL;
	char corpus[128], hn[65];
	static const char data[] = "a find for libFuzzer";

	SETUP_OR_SKIP(e);
	snprintf(corpus, sizeof(corpus), "%s/corpus", e.root);
	pid_t sp = start_sync(&e, "dir", "--corpus", "corpus", "sync.log", NULL, NULL);
	struct llmp_client *c = client(&e, &p);
	struct llmp_tc t = { .host = "x", .host_len = 1, .data = data, .data_len = sizeof(data) };

	ASSERT_NE(NULL, c);
	ASSERT_EQ(0, llmp_tc_send(c, &t));
	hash_name(data, sizeof(data), hn);
	ASSERT_TRUE(wait_file(corpus, hn, 10000));
	time_t f = mtime_of(corpus, hn);
	int i;

	for (i = 0; i < 300 && mtime_of(e.root, "corpus") <= f; i++)
		usleep(10000);
	EXPECT_LT(f, mtime_of(e.root, "corpus")) TH_LOG("import at %ld, dir still at %ld", (long)f,
						       (long)mtime_of(e.root, "corpus"));
	llmp_client_free(c);
	llmp_provider_free(p);
	EXPECT_EQ(0, stop(sp));
	teardown(&e);
}

TEST_HARNESS_MAIN
