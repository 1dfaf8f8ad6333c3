// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * llmp-sync: share a fuzzer's corpus over an llmp broker.  Watches a
 * directory with inotify, publishes each new file as a test-case message
 * (llmp/corpus.h), and writes the test cases other instances published
 * into a directory the fuzzer imports (temp file + rename, named after the
 * content hash, never after anything the message says).
 *
 *   llmp-sync afl --out DIR [--import DIR] [--trim SEC] [options]
 *       AFL++: watch DIR/queue, write into DIR.llmp-import (afl-fuzz -F)
 *   llmp-sync dir --corpus DIR [options]
 *       a plain corpus directory (libFuzzer -reload=1): watch and write DIR
 *
 * It waits with poll() on the inotify fd and llmp_client_event_fd(), and
 * when the broker dies (-EPIPE/-ESHUTDOWN) registers again with
 * llmp_client_reconnect_tcp().
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "llmp/broker.h"
#include "llmp/corpus.h"
#include "llmp/llmp.h"
#include "llmp/shmem.h"
#include "tool.h"

#define DEFAULT_MAX_SIZE (1u << 20) /* AFL++'s MAX_FILE */

/* A set of 64-bit keys (open addressing; 0 is stored as 1). */
struct keyset {
	uint64_t *k;
	size_t cap, n;
};

struct sync {
	bool afl;
	const char *watch;  /* the directory whose new files we publish */
	const char *import; /* the directory we write others' test cases into */
	char tmp_prefix[PATH_MAX]; /* temp files: in the import dir's parent */
	const char *addr;
	uint16_t port;
	enum llmp_shmem_kind kind;
	char host[LLMP_TC_HOST_MAX + 1];
	uint32_t instance;
	size_t max_size;
	unsigned trim_s;
	bool from_now, verbose;
	time_t last_mtime; /* afl: the mtime the last import was given */
	time_t touch_after; /* dir: touch the dir once the clock passes this second */
	int ino, wd;
	struct llmp_provider *p;
	struct llmp_client *c;
	int efd;
	struct keyset names; /* watched-dir names handled (published or skipped) */
	struct keyset seen;  /* content hashes published or imported */
	uint64_t published, imported, own, dups, refused, too_big, reconnects, trimmed;
};

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

__attribute__((format(printf, 2, 3))) static void say(const struct sync *s, const char *fmt, ...)
{
	va_list ap;
	struct timespec t;

	if (!s->verbose)
		return;
	clock_gettime(CLOCK_REALTIME, &t);
	fprintf(stderr, "llmp-sync: %lld.%06ld ", (long long)t.tv_sec, t.tv_nsec / 1000);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

/* ---- key sets ------------------------------------------------------------ */

static int set_grow(struct keyset *ks)
{
	size_t cap = ks->cap ? ks->cap * 2 : 1024;
	uint64_t *k = calloc(cap, sizeof(*k));

	if (!k)
		return -ENOMEM;
	for (size_t i = 0; i < ks->cap; i++) {
		if (!ks->k[i])
			continue;
		size_t j = ks->k[i] & (cap - 1);

		while (k[j])
			j = (j + 1) & (cap - 1);
		k[j] = ks->k[i];
	}
	free(ks->k);
	ks->k = k;
	ks->cap = cap;
	return 0;
}

/* 1 if key is in the set (add: added now, 0 returned only when new), <0 no memory. */
static int set_op(struct keyset *ks, uint64_t key, bool add)
{
	if (!key)
		key = 1;
	if (add && (ks->n + 1) * 2 > ks->cap && set_grow(ks) < 0)
		return -ENOMEM;
	if (!ks->cap)
		return 0;
	size_t j = key & (ks->cap - 1);

	while (ks->k[j]) {
		if (ks->k[j] == key)
			return 1;
		j = (j + 1) & (ks->cap - 1);
	}
	if (add) {
		ks->k[j] = key;
		ks->n++;
	}
	return 0;
}

static uint64_t name_key(const char *name)
{
	uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a */

	for (; *name; name++)
		h = (h ^ (unsigned char)*name) * 0x100000001b3ull;
	return h;
}

static uint64_t hash_key(const uint8_t *hash)
{
	uint64_t k;

	memcpy(&k, hash, sizeof(k));
	return k;
}

/* ---- the broker ------------------------------------------------------------ */

static void drop_client(struct sync *s)
{
	if (s->c)
		llmp_client_free(s->c);
	s->c = NULL;
	s->efd = -1;
}

/*
 * Register (again): llmp_client_reconnect_tcp() retries with backoff while
 * no broker answers; it is called in 2 s slices, with SIGINT and SIGTERM
 * let through, so that a signal stops the wait.
 */
static int connect_broker(struct sync *s)
{
	struct llmp_client_opts o = { .struct_size = sizeof(o), .skip_own = true,
				      .join_at_newest = s->from_now };
	sigset_t none, old;
	uint64_t t0 = now_ns();
	bool said = false;
	int ret = -EINTR;

	drop_client(s);
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, &old);
	while (!stop) {
		ret = llmp_client_reconnect_tcp(s->p, s->addr, s->port, &o, 2000, &s->c);
		if (ret == 0) {
			s->efd = llmp_client_event_fd(s->c);
			if (s->efd >= 0)
				break;
			ret = s->efd;
			drop_client(s);
		}
		if (ret != -ETIMEDOUT)
			break;
		if (!said)
			fprintf(stderr, "llmp-sync: waiting for a broker at %s:%u\n", s->addr,
				s->port);
		said = true;
	}
	sigprocmask(SIG_SETMASK, &old, NULL);
	if (stop) {
		drop_client(s);
		return -EINTR;
	}
	if (ret < 0) {
		fprintf(stderr, "llmp-sync: %s\n", llmp_strerror_last());
		return ret;
	}
	fprintf(stderr, "llmp-sync: registered as client %u with %s:%u (%.0f ms)\n",
		llmp_client_id(s->c), s->addr, s->port, (double)(now_ns() - t0) / 1e6);
	return 0;
}

/* ---- publishing ------------------------------------------------------------ */

static int read_file(int dfd, const char *name, size_t max, void **out, size_t *len)
{
	struct stat st;
	int fd = openat(dfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
	int ret = 0;

	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		return -EINVAL;
	}
	if (st.st_size <= 0 || (uint64_t)st.st_size > max) {
		*len = (size_t)st.st_size;
		close(fd);
		return -EFBIG;
	}
	*len = (size_t)st.st_size;
	*out = malloc(*len);
	if (!*out)
		ret = -ENOMEM;
	else if ((ret = full_io(fd, *out, *len, false)) < 0)
		free(*out);
	close(fd);
	return ret;
}

/*
 * Publish watch/name unless handled before or its content is what we
 * imported: 0 done or skipped, -EPIPE/-ESHUTDOWN the broker is gone (name
 * not marked: the rescan after reconnecting publishes it).
 */
static int publish(struct sync *s, int dfd, const char *name)
{
	uint64_t nk = name_key(name);
	size_t nlen = strlen(name), len = 0;
	void *data = NULL, *msg;
	int ret;

	if (name[0] == '.' || set_op(&s->names, nk, false) == 1)
		return 0;
	ret = read_file(dfd, name, s->max_size, &data, &len);
	if (ret < 0) { /* an empty file is not marked: it may be written yet */
		if (ret == -EFBIG && len) {
			s->too_big++;
			set_op(&s->names, nk, true);
		}
		return 0;
	}
	struct llmp_tc t = { .kind = s->afl ? LLMP_TC_KIND_AFL : LLMP_TC_KIND_DIR,
			     .instance = s->instance, .host = s->host, .host_len = strlen(s->host),
			     .name = name, .name_len = nlen > LLMP_TC_NAME_MAX ? LLMP_TC_NAME_MAX : nlen,
			     .data = data, .data_len = len };
	size_t n = llmp_tc_encoded_len(&t);

	msg = malloc(n);
	ret = msg ? llmp_tc_encode(&t, msg, n) : -ENOMEM;
	if (ret == -EINVAL) { /* a name the format refuses: publish it nameless */
		t.name_len = 0;
		n = llmp_tc_encoded_len(&t);
		ret = llmp_tc_encode(&t, msg, n);
	}
	free(data);
	if (ret < 0) {
		free(msg);
		return 0;
	}
	/* the SHA-256 of the bytes is at offset 16 (llmp/corpus.h) */
	uint64_t hk = hash_key((const uint8_t *)msg + 16);

	if (set_op(&s->seen, hk, false) == 1) {
		s->own++;
		say(s, "skip %s: content we imported or published", name);
		set_op(&s->names, nk, true);
		free(msg);
		return 0;
	}
	ret = s->c ? llmp_client_send(s->c, LLMP_TAG_TESTCASE, 0, msg, n) : -EPIPE;
	free(msg);
	if (ret == -EPIPE || ret == -ESHUTDOWN)
		return ret;
	if (ret < 0) {
		fprintf(stderr, "llmp-sync: publish %s: %s\n", name, llmp_strerror_last());
		return 0;
	}
	set_op(&s->names, nk, true);
	set_op(&s->seen, hk, true);
	s->published++;
	say(s, "published %s (%zu bytes)", name, len);
	return 0;
}

/* Publish every file of the watched directory not handled yet. */
static int rescan(struct sync *s)
{
	DIR *d = opendir(s->watch);
	struct dirent *e;
	int ret = 0;

	if (!d)
		return 0;
	while (ret == 0 && (e = readdir(d)))
		if (e->d_type == DT_REG || e->d_type == DT_UNKNOWN)
			ret = publish(s, dirfd(d), e->d_name);
	closedir(d);
	return ret;
}

/* (Re)arm the watch once the directory exists (afl-fuzz creates and may recreate queue/). */
static int arm_watch(struct sync *s)
{
	if (s->wd >= 0)
		return 0;
	s->wd = inotify_add_watch(s->ino, s->watch, IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE | IN_DELETE_SELF |
						    IN_MOVE_SELF | IN_ONLYDIR);
	if (s->wd < 0)
		return 0;
	say(s, "watching %s", s->watch);
	return rescan(s);
}

static int on_inotify(struct sync *s)
{
	char buf[16384] __attribute__((aligned(__alignof__(struct inotify_event))));
	int ret = 0, dfd = -1;

	for (;;) {
		ssize_t n = read(s->ino, buf, sizeof(buf));

		if (n <= 0)
			break;
		for (char *p = buf; p < buf + n;) {
			struct inotify_event *ev = (struct inotify_event *)p;

			p += sizeof(*ev) + ev->len;
			if (ev->mask & (IN_IGNORED | IN_DELETE_SELF | IN_MOVE_SELF)) {
				if (ev->wd == s->wd) {
					inotify_rm_watch(s->ino, s->wd);
					s->wd = -1;
				}
				continue;
			}
			if (ev->wd != s->wd || !ev->len || ret)
				continue;
			if (dfd < 0)
				dfd = open(s->watch, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
			/* created: only a hard link is complete (afl-fuzz links its seeds) */
			struct stat st;

			if (dfd >= 0 && (!(ev->mask & IN_CREATE) ||
					 (fstatat(dfd, ev->name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
					  S_ISREG(st.st_mode) && st.st_nlink > 1)))
				ret = publish(s, dfd, ev->name);
		}
	}
	if (dfd >= 0)
		close(dfd);
	return ret;
}

/* ---- importing --------------------------------------------------------------- */

/*
 * Both fuzzers find new files by whole-second mtimes, so an import that
 * lands in the second of their last scan can stay unseen for good:
 *
 * - afl-fuzz -F skips a file whose mtime is not above the highest mtime it
 *   saw in that directory.  Each import gets an mtime above the previous
 *   one's (now, or one second past the last when several land in a second):
 *   during bursts the stamps run ahead of the clock and catch up after.
 * - libFuzzer -reload rereads the corpus only when the directory's mtime
 *   moved past the second it saw at its last read.  Once the clock passed
 *   the second of our last import, we touch the directory (touch_dir()).
 */
static time_t dir_mtime(const char *dir)
{
	struct stat st;

	return stat(dir, &st) == 0 ? st.st_mtime : time(NULL);
}

static int stamp_afl(struct sync *s, int fd)
{
	time_t now = time(NULL), m = now > s->last_mtime ? now : s->last_mtime + 1;
	struct timespec ts[2] = { { .tv_nsec = UTIME_OMIT }, { .tv_sec = m } };

	if (futimens(fd, ts) < 0)
		return -errno;
	s->last_mtime = m;
	return 0;
}

/* afl: start above every stamp already in the import dir (ours, from before a restart). */
static void load_last_mtime(struct sync *s)
{
	DIR *d = opendir(s->import);
	struct dirent *e;
	struct stat st;

	if (!d)
		return;
	while ((e = readdir(d)))
		if (e->d_name[0] != '.' &&
		    fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
		    S_ISREG(st.st_mode) && st.st_mtime > s->last_mtime)
			s->last_mtime = st.st_mtime;
	closedir(d);
}

static void touch_dir(struct sync *s)
{
	if (!s->touch_after || time(NULL) <= s->touch_after)
		return;
	if (utimensat(AT_FDCWD, s->import, NULL, 0) < 0) {
		fprintf(stderr, "llmp-sync: cannot touch %s: %s\n", s->import, strerror(errno));
		s->touch_after = 0;
		return;
	}
	if (dir_mtime(s->import) > s->touch_after)
		s->touch_after = 0;
}

static int write_import(struct sync *s, const struct llmp_tc *t)
{
	char path[PATH_MAX], tmp[PATH_MAX + 16];
	int fd, ret, n;

	n = snprintf(path, sizeof(path), "%s/", s->import);
	for (unsigned i = 0; i < LLMP_TC_HASH_LEN && n > 0 && (size_t)n + 3 < sizeof(path); i++)
		n += snprintf(path + n, sizeof(path) - (size_t)n, "%02x", t->hash[i]);
	if (n <= 0 || (size_t)n + 3 >= sizeof(path))
		return -ENAMETOOLONG;
	snprintf(tmp, sizeof(tmp), "%sXXXXXX", s->tmp_prefix);
	fd = mkostemp(tmp, O_CLOEXEC);
	if (fd < 0)
		return -errno;
	ret = full_io(fd, (void *)t->data, t->data_len, true);
	if (fchmod(fd, 0644) < 0 && ret == 0)
		ret = -errno;
	if (ret == 0 && s->afl)
		ret = stamp_afl(s, fd);
	if (close(fd) < 0 && ret == 0)
		ret = -errno;
	if (ret == 0 && rename(tmp, path) < 0)
		ret = -errno;
	if (ret < 0)
		unlink(tmp);
	else if (!s->afl)
		s->touch_after = dir_mtime(s->import);
	return ret;
}

static void import_one(struct sync *s, const struct llmp_msg_view *m)
{
	struct llmp_tc t;

	if (m->tag != LLMP_TAG_TESTCASE)
		return;
	if (llmp_tc_decode(m->buf, m->len, &t) < 0) {
		if (s->refused++ < 10)
			fprintf(stderr, "llmp-sync: refused a malformed test case from client %u "
					"(%zu bytes)\n", m->sender, m->len);
		return;
	}
	if (!t.data_len || t.data_len > s->max_size) {
		s->too_big++;
		return;
	}
	uint64_t hk = hash_key(t.hash);

	if (set_op(&s->seen, hk, false) == 1) {
		s->dups++;
		return;
	}
	int ret = write_import(s, &t);

	if (ret < 0) {
		fprintf(stderr, "llmp-sync: cannot write into %s: %s\n", s->import, strerror(-ret));
		return;
	}
	set_op(&s->seen, hk, true);
	s->imported++;
	say(s, "imported %.*s from %.*s/%u (%zu bytes)", (int)t.name_len, t.name, (int)t.host_len,
	    t.host, t.instance, t.data_len);
}

/* Take everything waiting: 0, or -EPIPE/-ESHUTDOWN when the broker is gone. */
static int drain(struct sync *s)
{
	struct llmp_msg_view m;
	int ret;

	while (s->c && (ret = llmp_client_recv(s->c, &m)) != 0) {
		if (ret == -ESTALE) {
			fprintf(stderr, "llmp-sync: fell behind the broker's history: test cases lost\n");
			continue;
		}
		if (ret < 0)
			return ret == -EPIPE || ret == -ESHUTDOWN ? ret : 0;
		import_one(s, &m);
	}
	return 0;
}

/*
 * Remove files imported more than trim_s seconds ago (afl-fuzz took them by
 * then): the ctime tells, the mtime is a stamp (stamp_afl()).
 */
static void trim(struct sync *s)
{
	DIR *d = opendir(s->import);
	struct dirent *e;
	struct stat st;
	time_t now = time(NULL);

	if (!d)
		return;
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.' || strlen(e->d_name) != 2 * LLMP_TC_HASH_LEN)
			continue;
		if (fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
		    S_ISREG(st.st_mode) && st.st_ctime + (time_t)s->trim_s <= now &&
		    st.st_mtime <= now && /* a stamp ahead of the clock: load_last_mtime() */
		    unlinkat(dirfd(d), e->d_name, 0) == 0)
			s->trimmed++;
	}
	closedir(d);
}

/* ---- main ------------------------------------------------------------------------ */

static int run(struct sync *s)
{
	sigset_t block, empty;
	struct sigaction sa = { .sa_handler = on_signal };
	uint64_t last_trim = 0;
	int ret;

	sigemptyset(&block);
	sigaddset(&block, SIGINT);
	sigaddset(&block, SIGTERM);
	sigemptyset(&empty);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigprocmask(SIG_BLOCK, &block, NULL);
	ret = connect_broker(s);
	if (ret < 0)
		return ret == -EINTR ? 0 : ret;
	while (!stop) {
		ret = arm_watch(s);
		if (ret == 0)
			ret = drain(s);
		if (ret == 0)
			touch_dir(s);
		if (ret == 0 && s->trim_s && now_ns() - last_trim > 1000000000ull) {
			trim(s);
			last_trim = now_ns();
		}
		if (ret == 0) {
			struct pollfd fds[2] = { { .fd = s->ino, .events = POLLIN },
						 { .fd = s->efd, .events = POLLIN } };
			struct timespec ts = { .tv_sec = 0, .tv_nsec = 500000000 };
			bool need_tick = s->wd < 0 || s->trim_s || s->touch_after;

			if (ppoll(fds, 2, need_tick ? &ts : NULL, &empty) < 0 && errno != EINTR)
				return -errno;
			if (fds[0].revents & POLLIN)
				ret = on_inotify(s);
			if (ret == 0 && (fds[1].revents & POLLIN))
				ret = drain(s);
		}
		if (ret == -EPIPE || ret == -ESHUTDOWN) {
			fprintf(stderr, "llmp-sync: the broker is gone (%s); registering again\n",
				ret == -EPIPE ? "died" : "exited");
			s->reconnects++;
			ret = connect_broker(s);
			if (ret < 0)
				return ret == -EINTR ? 0 : ret;
			ret = rescan(s); /* what could not be sent while it was gone */
		}
		if (ret < 0 && ret != -EPIPE && ret != -ESHUTDOWN)
			return ret;
	}
	return 0;
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: llmp-sync afl --out DIR [--import DIR] [--trim SEC] [options]\n"
		"       llmp-sync dir --corpus DIR [options]\n"
		"Share a fuzzer's corpus through an llmp broker (Documentation/corpus.rst).\n"
		"  afl: publish new entries of DIR/queue (AFL++'s -o/-M instance dir); write\n"
		"       others' test cases into the import dir (default DIR.llmp-import) that\n"
		"       afl-fuzz reads with -F\n"
		"  dir: publish new files of DIR and write others' test cases into it\n"
		"       (libFuzzer with -reload=1, or any corpus directory)\n"
		"  -a, --addr ADDR        broker address (default 127.0.0.1)\n"
		"  -p, --port PORT        broker TCP port (default %u)\n"
		"  -P, --provider KIND    shared memory kind; must match the broker's\n"
		"      --import DIR       afl: where others' test cases go (created if missing)\n"
		"      --trim SEC         afl: delete imported files after SEC seconds\n"
		"      --max-size BYTES   skip test cases larger than this (default %u)\n"
		"  -H, --host NAME        origin host in published test cases (default hostname)\n"
		"  -i, --instance N       origin instance (default the pid)\n"
		"  -N, --from-now         do not import what the broker kept from before\n"
		"  -v, --verbose          log every test case published or imported\n"
		"  -h, --help\n",
		LLMP_TCP_DEFAULT_PORT, DEFAULT_MAX_SIZE);
}

/* mkdir -p */
static int make_dirs(const char *path)
{
	char buf[PATH_MAX];

	snprintf(buf, sizeof(buf), "%s", path);
	for (char *p = buf + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = 0;
		if (mkdir(buf, 0755) < 0 && errno != EEXIST)
			return -errno;
		*p = '/';
	}
	return mkdir(buf, 0755) < 0 && errno != EEXIST ? -errno : 0;
}

static int setup_dirs(struct sync *s, const char *dir, const char *import, char *qbuf, char *ibuf)
{
	if (s->afl) {
		snprintf(qbuf, PATH_MAX, "%s/queue", dir);
		s->watch = qbuf;
		if (!import) {
			snprintf(ibuf, PATH_MAX, "%s.llmp-import", dir);
			import = ibuf;
		}
	} else {
		s->watch = dir;
		import = dir;
	}
	int ret = make_dirs(import);

	if (ret < 0)
		return ret;
	s->import = realpath(import, NULL); /* freed at exit */
	if (!s->import)
		return -errno;
	/* temp files beside the import dir, never in it: a fuzzer must not read half a file */
	char *slash = strrchr(s->import, '/');

	snprintf(s->tmp_prefix, sizeof(s->tmp_prefix), "%.*s/.%s.llmp-tmp.",
		 (int)(slash - s->import), s->import, slash + 1);
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "out", required_argument, 0, 'o' },    { "corpus", required_argument, 0, 'c' },
		{ "import", required_argument, 0, 'I' }, { "trim", required_argument, 0, 'T' },
		{ "max-size", required_argument, 0, 'M' }, { "addr", required_argument, 0, 'a' },
		{ "port", required_argument, 0, 'p' },   { "provider", required_argument, 0, 'P' },
		{ "host", required_argument, 0, 'H' },   { "instance", required_argument, 0, 'i' },
		{ "from-now", no_argument, 0, 'N' },     { "verbose", no_argument, 0, 'v' },
		{ "help", no_argument, 0, 'h' },         { 0, 0, 0, 0 },
	};
	struct sync s = { .addr = "127.0.0.1", .port = LLMP_TCP_DEFAULT_PORT,
			  .kind = LLMP_SHMEM_DEFAULT, .max_size = DEFAULT_MAX_SIZE, .ino = -1,
			  .wd = -1, .efd = -1, .instance = (uint32_t)getpid() };
	static char qbuf[PATH_MAX], ibuf[PATH_MAX];
	const char *dir = NULL, *import = NULL;
	unsigned long v;
	int c, ret;

	if (argc >= 2 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))) {
		usage(stdout);
		return 0;
	}
	if (argc < 2 || (strcmp(argv[1], "afl") && strcmp(argv[1], "dir")))
		goto bad;
	s.afl = !strcmp(argv[1], "afl");
	gethostname(s.host, sizeof(s.host) - 1);
	optind = 2;
	while ((c = getopt_long(argc, argv, "a:p:P:H:i:Nvh", lo, NULL)) != -1) {
		switch (c) {
		case 'o':
		case 'c':
			if ((c == 'o') != s.afl)
				goto bad;
			dir = optarg;
			break;
		case 'I':
			import = optarg;
			break;
		case 'T':
		case 'M':
			if (parse_ulong(optarg, c == 'T' ? 1u << 30 : LLMP_TC_DATA_MAX, &v) < 0 ||
			    !v)
				goto bad;
			if (c == 'T')
				s.trim_s = (unsigned)v;
			else
				s.max_size = v;
			break;
		case 'a':
			s.addr = optarg;
			break;
		case 'p':
			if (parse_ulong(optarg, 65535, &v) < 0 || !v)
				goto bad;
			s.port = (uint16_t)v;
			break;
		case 'P':
			if (llmp_shmem_kind_from_name(optarg, &s.kind) < 0)
				goto bad;
			break;
		case 'H':
			if (!*optarg || strlen(optarg) > LLMP_TC_HOST_MAX || strchr(optarg, '/'))
				goto bad;
			snprintf(s.host, sizeof(s.host), "%s", optarg);
			break;
		case 'i':
			if (parse_ulong(optarg, 0xffffffffUL, &v) < 0)
				goto bad;
			s.instance = (uint32_t)v;
			break;
		case 'N':
			s.from_now = true;
			break;
		case 'v':
			s.verbose = true;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			goto bad;
		}
	}
	if (!dir || optind != argc || (!s.afl && (import || s.trim_s)))
		goto bad;
	if (!s.host[0] || strchr(s.host, '/'))
		snprintf(s.host, sizeof(s.host), "localhost");
	ret = setup_dirs(&s, dir, import, qbuf, ibuf);
	if (ret < 0) {
		fprintf(stderr, "llmp-sync: import directory: %s\n", strerror(-ret));
		return 1;
	}
	if (s.afl)
		load_last_mtime(&s);
	s.ino = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	if (s.ino < 0) {
		perror("llmp-sync: inotify");
		return 1;
	}
	ret = llmp_provider_new(s.kind, &s.p);
	if (ret == 0)
		ret = run(&s);
	if (ret < 0 && ret != -EINTR)
		fprintf(stderr, "llmp-sync: %s\n", llmp_strerror_last());
	if (s.c)
		llmp_client_wait_safe(s.c, 1000);
	drop_client(&s);
	llmp_provider_free(s.p);
	close(s.ino);
	printf("llmp-sync: published %" PRIu64 " imported %" PRIu64 " own %" PRIu64
	       " duplicates %" PRIu64 " refused %" PRIu64 " too-big %" PRIu64 " reconnects %" PRIu64
	       " trimmed %" PRIu64 "\n",
	       s.published, s.imported, s.own, s.dups, s.refused, s.too_big, s.reconnects, s.trimmed);
	free(s.names.k);
	free(s.seen.k);
	free((char *)s.import);
	return ret < 0 && ret != -EINTR ? 1 : 0;
bad:
	fprintf(stderr, "llmp-sync: bad arguments\n");
	usage(stderr);
	return 2;
}
