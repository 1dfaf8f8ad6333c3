// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * Liveness on Windows: the creator pid read from a win32 segment's id
 * ("llmp_<pid>_<n>"), and the process watch (lib/pidwatch.c: OpenProcess
 * with SYNCHRONIZE, WaitForSingleObject(h, 0)) on a child that exits.
 * Both are internal to the library (linked statically here).
 *
 * Child modes (this executable started again with an argument):
 *   attach   attaches the segment described in the environment and checks
 *            that its creator is the pid in LLMP_WPW_PARENT;
 *   wait     waits until the named event in LLMP_WPW_EVENT is set, exits 7.
 */
#include "wtest.h"
#include "internal.h"

#define ENV_SEG "LLMP_WPW_SEG"
#define ENV_PARENT "LLMP_WPW_PARENT"
#define ENV_EVENT "LLMP_WPW_EVENT"

static int child_attach(void)
{
	struct llmp_provider *p;
	struct llmp_shmem_desc d;
	struct llmp_shmem *m;
	const char *parent = getenv(ENV_PARENT);
	long want = parent ? strtol(parent, NULL, 10) : 0;
	int code = 0;

	if (want <= 0 || llmp_provider_new(LLMP_SHMEM_WIN32, &p) < 0)
		return 10;
	if (llmp_shmem_desc_from_env(ENV_SEG, &d) < 0 || llmp_shmem_attach(p, &d, &m) < 0) {
		llmp_provider_free(p);
		return 11;
	}
	if (llmp_shmem_creator_pid(m) != want)
		code = 12;
	else if (llmp_shmem_is_owner(m))
		code = 13;
	llmp_shmem_put(m);
	llmp_provider_free(p);
	return code;
}

static int child_wait(void)
{
	const char *name = getenv(ENV_EVENT);
	HANDLE ev = name ? OpenEventA(SYNCHRONIZE, FALSE, name) : NULL;

	if (!ev)
		return 20;
	if (WaitForSingleObject(ev, 60000) != WAIT_OBJECT_0)
		return 21;
	CloseHandle(ev);
	return 7;
}

/* Our own segments name us; another process attaching ours sees us too. */
static int t_creator_pid_of_own_segment(void)
{
	struct llmp_provider *p;
	struct llmp_shmem *m;
	char pid[32];
	long code;

	CHECK_EQ(0, llmp_provider_new(LLMP_SHMEM_WIN32, &p));
	CHECK_EQ(0, llmp_shmem_new(p, 65536, &m));
	CHECK_EQ((long)GetCurrentProcessId(), llmp_shmem_creator_pid(m));
	CHECK_EQ(0, llmp_shmem_desc_to_env(llmp_shmem_desc(m), ENV_SEG));
	snprintf(pid, sizeof(pid), "%lu", (unsigned long)GetCurrentProcessId());
	CHECK_EQ(0, wtest_setenv(ENV_PARENT, pid));
	code = wtest_run_child("attach");
	CHECK_EQ(0, code);
	llmp_shmem_put(m);
	llmp_provider_free(p);
	return 0;
}

/* Attach a mapping of this exact name (made here) and return its creator pid, or -1. */
static long creator_of_name(const char *id)
{
	struct llmp_shmem_desc d;
	struct llmp_provider *p;
	struct llmp_shmem *m;
	char name[64];
	long pid = -1;
	HANDLE h;

	snprintf(name, sizeof(name), "Local\\%s", id);
	h = CreateFileMappingA(INVALID_HANDLE_VALUE, NULL, PAGE_READWRITE, 0, 4096, name);
	if (!h)
		return -1;
	memset(&d, 0, sizeof(d));
	d.kind = LLMP_SHMEM_WIN32;
	d.size = 4096;
	strncpy(d.id, id, sizeof(d.id) - 1);
	if (llmp_provider_new(LLMP_SHMEM_WIN32, &p) == 0) {
		if (llmp_shmem_attach(p, &d, &m) == 0) {
			pid = llmp_shmem_creator_pid(m);
			llmp_shmem_put(m);
		}
		llmp_provider_free(p);
	}
	CloseHandle(h);
	return pid;
}

/* Ids that do not name a pid the way we write them give 0 (unknown). */
static int t_creator_pid_parsing(void)
{
	CHECK_EQ(4242, creator_of_name("llmp_4242_1"));
	CHECK_EQ(2147483647L, creator_of_name("llmp_2147483647_9"));
	CHECK_EQ(0, creator_of_name("llmp_2147483648_9")); /* above the pid range */
	CHECK_EQ(0, creator_of_name("llmp_0_1"));
	CHECK_EQ(0, creator_of_name("llmp_12x_1"));
	CHECK_EQ(0, creator_of_name("llmp__1"));
	CHECK_EQ(0, creator_of_name("llmp_77"));	     /* no '_' after the pid */
	CHECK_EQ(0, creator_of_name("libafl_0123456789ab")); /* LibAFL's names carry none */
	CHECK_EQ(0, creator_of_name("xllmp_5_1"));
	CHECK_EQ(0, llmp_shmem_creator_pid(NULL));
	return 0;
}

/* Unknown pids and our own are never "dead". */
static int t_pidwatch_unknown_and_self(void)
{
	struct llmp_pidwatch w = { .fd = -1 };

	CHECK_EQ(0, llmp_pidwatch_set(&w, 0));
	CHECK_EQ(0, llmp_pidwatch_dead(&w));
	CHECK_EQ(0, llmp_pidwatch_set(&w, -5));
	CHECK_EQ(0, llmp_pidwatch_dead(&w));
	CHECK_EQ(0, llmp_pidwatch_set(&w, (long)GetCurrentProcessId()));
	CHECK_EQ(0, llmp_pidwatch_dead(&w));
	CHECK_EQ(-1, w.fd);
	llmp_pidwatch_close(&w);
	CHECK_EQ(0, w.pid);
	return 0;
}

/* A child is alive while it waits, dead from the moment it exited. */
static int t_pidwatch_child_exits(void)
{
	struct llmp_pidwatch w = { .fd = -1 }, late = { .fd = -1 };
	char name[64];
	HANDLE ev, child;
	DWORD code = 0, pid;
	int rounds = 0;

	snprintf(name, sizeof(name), "Local\\llmp_wpw_%lu", (unsigned long)GetCurrentProcessId());
	ev = CreateEventA(NULL, TRUE, FALSE, name);
	CHECK(ev != NULL);
	CHECK_EQ(0, wtest_setenv(ENV_EVENT, name));
	child = wtest_spawn("wait");
	CHECK(child != NULL);
	pid = GetProcessId(child);
	CHECK(pid != 0);
	CHECK_EQ(0, llmp_pidwatch_set(&w, (long)pid));
	CHECK(w.fd != -1);
	CHECK_EQ((long)pid, w.pid);
	for (int i = 0; i < 5; i++) {
		CHECK_EQ(0, llmp_pidwatch_dead(&w));
		Sleep(20);
	}
	/* still running: it exits only when told */
	CHECK_EQ(WAIT_TIMEOUT, WaitForSingleObject(child, 0));
	CHECK(SetEvent(ev));
	while (!llmp_pidwatch_dead(&w) && rounds++ < 3000)
		Sleep(10);
	CHECK_EQ(1, llmp_pidwatch_dead(&w));
	CHECK_EQ(WAIT_OBJECT_0, WaitForSingleObject(child, 0));
	CHECK(GetExitCodeProcess(child, &code));
	CHECK_EQ(7, code);
	/* A watch set after the exit, while a handle keeps the process object: dead at once. */
	CHECK_EQ(0, llmp_pidwatch_set(&late, (long)pid));
	CHECK_EQ(1, llmp_pidwatch_dead(&late));
	llmp_pidwatch_close(&late);
	/*
	 * Every handle of ours closed: set() finds no such process (1), or the
	 * process object still lingers (wine keeps it a little) and is seen
	 * as exited.  (Only an id reused within these milliseconds by a new,
	 * live process would fail here.)
	 */
	llmp_pidwatch_close(&w);
	CloseHandle(child);
	{
		int r = llmp_pidwatch_set(&late, (long)pid);

		CHECK(r == 0 || r == 1);
		CHECK_EQ(1, llmp_pidwatch_dead(&late));
		llmp_pidwatch_close(&late);
	}
	CloseHandle(ev);
	return 0;
}

static const struct wtest tests[] = {
	WTEST(t_creator_pid_of_own_segment),
	WTEST(t_creator_pid_parsing),
	WTEST(t_pidwatch_unknown_and_self),
	WTEST(t_pidwatch_child_exits),
};

int main(int argc, char **argv)
{
	if (argc > 1 && !strcmp(argv[1], "attach"))
		return child_attach();
	if (argc > 1 && !strcmp(argv[1], "wait"))
		return child_wait();
	return wtest_main(tests, sizeof(tests) / sizeof(tests[0]));
}
