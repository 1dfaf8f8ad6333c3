/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * What the /dev/llmp segment tests share (kmod_seg_test.c, kmod_quota_test.c):
 * raw ioctl wrappers, module parameters saved and restored, /proc/meminfo and
 * debugfs readers, and the fixture: an fd of /dev/llmp and the module's
 * counters at the start of the test.  Raw ioctls only, so the 32-bit builds
 * of the guest need no libllmp.
 */
#ifndef KMOD_SEG_FIXTURE_H
#define KMOD_SEG_FIXTURE_H

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/ipc.h>
#include <sys/mman.h>
#include <sys/shm.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kselftest_harness.h"
#include "llmp_test.h"
#include "kmod_abi.h"
#include "uapi/linux/llmp.h"

/* A "# ..." line on stdout that survives the test child's _exit(). */
#define FIGURE(...) do { ksft_print_msg(__VA_ARGS__); fflush(stdout); } while (0)

#define PARAM_DIR "/sys/module/llmp/parameters/"

static inline int dev_open(void)
{
	return open(LLMP_DEVICE_PATH, O_RDWR | O_CLOEXEC);
}

/* ioctl returning 0 or -errno. */
static inline int xioctl(int fd, unsigned long cmd, void *arg)
{
	return ioctl(fd, cmd, arg) < 0 ? -errno : 0;
}

static inline int seg_create(int dev, uint64_t size, uint32_t flags, struct llmp_seg_create *c)
{
	memset(c, 0, sizeof(*c));
	c->size = size;
	c->flags = flags;
	c->fd_flags = O_CLOEXEC;
	return xioctl(dev, LLMP_IOC_SEG_CREATE, c);
}

static inline int seg_open(int dev, uint32_t id, uint64_t key, struct llmp_seg_open *o)
{
	memset(o, 0, sizeof(*o));
	o->id = id;
	o->key = key;
	o->fd_flags = O_CLOEXEC;
	return xioctl(dev, LLMP_IOC_SEG_OPEN, o);
}

static inline int get_stats(int dev, struct llmp_stats *s)
{
	memset(s, 0xa5, sizeof(*s));
	return xioctl(dev, LLMP_IOC_STATS, s);
}

/* A /proc/meminfo field in KiB, or -1. */
static inline long meminfo_kb(const char *field)
{
	char line[256];
	size_t n = strlen(field);
	long v = -1;
	FILE *f = fopen("/proc/meminfo", "r");

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f)) {
		if (!strncmp(line, field, n) && line[n] == ':') {
			v = strtol(line + n + 1, NULL, 10);
			break;
		}
	}
	fclose(f);
	return v;
}

static inline void fill(unsigned char *p, size_t len, uint64_t seed)
{
	for (size_t i = 0; i < len; i++)
		p[i] = (unsigned char)llmp_test_rand(&seed);
}

/* Read a module parameter into buf; 0 or -errno. */
static inline int param_get(const char *name, char *buf, size_t len)
{
	char path[128];
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), PARAM_DIR "%s", name);
	fd = open(path, O_RDONLY);
	if (fd < 0)
		return -errno;
	n = read(fd, buf, len - 1);
	close(fd);
	if (n < 0)
		return -errno;
	buf[n] = 0;
	return 0;
}

static inline int param_set(const char *name, const char *val)
{
	char path[128];
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), PARAM_DIR "%s", name);
	fd = open(path, O_WRONLY);
	if (fd < 0)
		return -errno;
	n = write(fd, val, strlen(val));
	close(fd);
	return n < 0 ? -errno : 0;
}

/* kselftest_harness.h of 6.1 runs the body even after SKIP in the setup. */
#define NEED_DEV() do { \
		if (self->dev < 0) \
			SKIP(return, "no %s: llmp.ko is not loaded", LLMP_DEVICE_PATH); \
	} while (0)

/*
 * Save the three limit parameters (restored by the teardown); 0, or a
 * SKIP reason when they cannot be changed here.
 */
static inline const char *params_save(struct __test_metadata *_metadata, char *user, char *total,
			       char *reserved, int *changed)
{
	if (param_get("max_user_bytes", user, 32) || param_get("max_total_bytes", total, 32))
		return "no " PARAM_DIR;
	/* Older modules have no reserve: the tests that need one fail there. */
	if (param_get("reserved_bytes", reserved, 32))
		reserved[0] = 0;
	if (access(PARAM_DIR "max_user_bytes", W_OK) || geteuid() != 0)
		return "module parameters not writable (needs root)";
	*changed = 1;
	return NULL;
}

#define SAVE_PARAMS() do { \
		const char *why_ = params_save(_metadata, self->old_user, self->old_total, \
					       self->old_reserved, &self->params_changed); \
		if (why_) \
			SKIP(return, "%s", why_); \
	} while (0)

/* One "name value" line of /sys/kernel/debug/llmp/stats; 0 or -errno. */
static inline int debug_stat(const char *name, uint64_t *v)
{
	FILE *f = fopen("/sys/kernel/debug/llmp/stats", "r");
	char line[128];
	size_t n = strlen(name);
	int ret = -ENOENT;

	if (!f)
		return -errno;
	while (fgets(line, sizeof(line), f)) {
		if (!strncmp(line, name, n) && line[n] == ' ') {
			*v = strtoull(line + n + 1, NULL, 10);
			ret = 0;
			break;
		}
	}
	fclose(f);
	return ret;
}

FIXTURE(seg) {
	int dev;
	long page;
	struct llmp_stats base;
	char old_user[32], old_total[32], old_reserved[32];
	int params_changed;
};

FIXTURE_SETUP(seg)
{
	self->dev = dev_open();
	self->params_changed = 0;
	if (self->dev < 0)
		SKIP(return, "no %s (%s): llmp.ko is not loaded", LLMP_DEVICE_PATH,
		     strerror(errno));
	self->page = sysconf(_SC_PAGESIZE);
	ASSERT_EQ(0, get_stats(self->dev, &self->base));
}

FIXTURE_TEARDOWN(seg)
{
	if (self->params_changed) {
		param_set("max_user_bytes", self->old_user);
		param_set("max_total_bytes", self->old_total);
		param_set("reserved_bytes", self->old_reserved);
	}
	if (self->dev >= 0)
		close(self->dev);
}

#endif /* KMOD_SEG_FIXTURE_H */
