// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * Tests of the win32 shared-memory provider, run under Windows or wine,
 * with the KTAP runner of wtest.h.
 *
 * The cross-process tests start this same executable again with the
 * argument "child": the child reads the segment's description from the
 * environment (llmp_shmem_desc_from_env), attaches, checks a checksum and
 * writes back, and reports through its exit status.
 */
#include "wtest.h"

#define ENV_NAME "LLMP_WTEST_SHM"
#define ENV_SUM "LLMP_WTEST_SUM"
#define ENV_SEED "LLMP_WTEST_SEED"
#define ENV_QUIET "LLMP_WTEST_QUIET" /* set: the child's failure is expected, say nothing */

/* Child exit statuses (0 = success). */
enum { CHILD_OK = 0, CHILD_BAD_ENV = 10, CHILD_NO_PROVIDER, CHILD_ATTACH, CHILD_SIZE, CHILD_SUM };

/* ---- helpers -------------------------------------------------------------- */

static bool all_zero(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i])
			return false;
	return true;
}

/* The child side of the cross-process tests. */
static int child_main(void)
{
	struct llmp_shmem_desc d;
	struct llmp_provider *p;
	struct llmp_shmem *m;
	const char *sum_s = getenv(ENV_SUM), *seed_s = getenv(ENV_SEED);
	bool quiet = getenv(ENV_QUIET) != NULL;
	unsigned long long want;
	uint8_t *buf;
	size_t n;
	int ret;

	if (!sum_s || !seed_s || llmp_shmem_desc_from_env(ENV_NAME, &d) < 0) {
		if (!quiet)
			printf("# child: bad environment: %s\n", llmp_strerror_last());
		return CHILD_BAD_ENV;
	}
	want = strtoull(sum_s, NULL, 16);
	if (llmp_provider_new(LLMP_SHMEM_WIN32, &p) < 0)
		return CHILD_NO_PROVIDER;
	ret = llmp_shmem_attach(p, &d, &m);
	if (ret < 0) {
		if (!quiet)
			printf("# child: attach %s: %s\n", d.id, llmp_strerror_last());
		llmp_provider_free(p);
		return CHILD_ATTACH;
	}
	n = llmp_shmem_size(m);
	buf = llmp_shmem_addr(m);
	if (n != d.size || llmp_shmem_is_owner(m)) {
		ret = CHILD_SIZE;
	} else if (wtest_fnv64(buf, n) != want) {
		if (!quiet)
			printf("# child: checksum %016" PRIx64 ", want %016llx\n", wtest_fnv64(buf, n),
			       want);
		ret = CHILD_SUM;
	} else {
		/* Write back: every byte inverted. */
		for (size_t i = 0; i < n; i++)
			buf[i] = (uint8_t)~buf[i];
		ret = CHILD_OK;
	}
	llmp_shmem_put(m);
	llmp_provider_free(p);
	return ret;
}

/*
 * Create a segment of size bytes here, fill it, let a child attach by the
 * description in the environment, check the sum and invert every byte;
 * then check the inverted bytes here.
 */
static int cross_process(struct llmp_provider *p, size_t size, uint32_t seed)
{
	struct llmp_shmem *m;
	char buf[32];
	uint8_t *b;
	long code;

	CHECK_EQ(0, llmp_shmem_new(p, size, &m));
	b = llmp_shmem_addr(m);
	wtest_fill(b, size, seed);
	snprintf(buf, sizeof(buf), "%016" PRIx64, wtest_fnv64(b, size));
	CHECK_EQ(0, wtest_setenv(ENV_SUM, buf));
	snprintf(buf, sizeof(buf), "%" PRIu32, seed);
	CHECK_EQ(0, wtest_setenv(ENV_SEED, buf));
	CHECK_EQ(0, llmp_shmem_desc_to_env(llmp_shmem_desc(m), ENV_NAME));
	code = wtest_run_child("child");
	if (code != CHILD_OK)
		llmp_shmem_put(m);
	CHECK_EQ(CHILD_OK, code);
	for (size_t i = 0; i < size; i++) {
		if ((unsigned)b[i] + wtest_pattern(i, seed) != 0xffu) { /* b == ~pattern */
			llmp_shmem_put(m);
			FAIL("byte %zu of %zu not written back", i, size);
		}
	}
	llmp_shmem_put(m);
	return 0;
}

/* A description of kind WIN32 with the given id and size. */
static struct llmp_shmem_desc mkdesc(const char *id, uint64_t size)
{
	struct llmp_shmem_desc d;

	memset(&d, 0, sizeof(d));
	d.kind = LLMP_SHMEM_WIN32;
	d.size = size;
	memcpy(d.id, id, strnlen(id, sizeof(d.id) - 1));
	return d;
}

static char logged[256];
static int logged_count;

static void log_cb(void *ctx, enum llmp_log_level level, const char *msg)
{
	(void)ctx;
	if (level == LLMP_LOG_ERROR) {
		snprintf(logged, sizeof(logged), "%s", msg);
		logged_count++;
	}
}

/* ---- tests ---------------------------------------------------------------- */

static int t_provider_new_and_probe(void)
{
	struct llmp_provider *p;

	CHECK_EQ(0, llmp_provider_new(LLMP_SHMEM_WIN32, &p));
	CHECK(p != NULL);
	CHECK_EQ(LLMP_SHMEM_WIN32, llmp_provider_kind(p));
	CHECK_EQ(0, llmp_provider_pre_fork(p));
	CHECK_EQ(0, llmp_provider_post_fork(p, false));
	llmp_provider_free(p);
	CHECK(strcmp(llmp_shmem_kind_name(LLMP_SHMEM_WIN32), "win32") == 0);
	return 0;
}

static int t_default_kind_is_win32(void)
{
	struct llmp_provider *p;
	struct llmp_shmem *m;

	CHECK_EQ(LLMP_SHMEM_WIN32, llmp_shmem_default_kind());
	CHECK_EQ(0, llmp_provider_new(LLMP_SHMEM_DEFAULT, &p));
	CHECK_EQ(LLMP_SHMEM_WIN32, llmp_provider_kind(p));
	CHECK_EQ(0, llmp_shmem_new(p, 4096, &m));
	CHECK_EQ(LLMP_SHMEM_WIN32, llmp_shmem_desc(m)->kind);
	llmp_shmem_put(m);
	llmp_provider_free(p);
	return 0;
}

static int t_posix_kinds_unavailable(void)
{
	static const enum llmp_shmem_kind kinds[] = {
		LLMP_SHMEM_KMOD, LLMP_SHMEM_MEMFD, LLMP_SHMEM_POSIX,
		LLMP_SHMEM_SYSV, LLMP_SHMEM_ASHMEM, LLMP_SHMEM_SERVED,
	};
	struct llmp_provider *p;

	for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
		p = (struct llmp_provider *)1;
		CHECK_EQ(-ENODEV, llmp_provider_new(kinds[i], &p));
		CHECK(p == NULL);
		CHECK(llmp_strerror_last()[0] != '\0');
	}
	CHECK_EQ(-EINVAL, llmp_provider_new(LLMP_SHMEM_KIND_MAX, &p));
	return 0;
}

static int t_create_write_read(void)
{
	struct llmp_provider *p;
	struct llmp_shmem *a, *b;
	const struct llmp_shmem_desc *d;
	uint8_t *pa, *pb;
	const size_t size = 256 * KiB;

	CHECK_EQ(0, llmp_provider_new(LLMP_SHMEM_WIN32, &p));
	CHECK_EQ(0, llmp_shmem_new(p, size, &a));
	d = llmp_shmem_desc(a);
	CHECK_EQ(0, llmp_shmem_desc_check(d));
	CHECK_EQ(LLMP_SHMEM_WIN32, d->kind);
	CHECK_EQ(size, d->size);
	CHECK_EQ(size, llmp_shmem_size(a));
	CHECK(llmp_shmem_is_owner(a));
	pa = llmp_shmem_addr(a);
	CHECK(all_zero(pa, size));
	wtest_fill(pa, size, 7);

	/* A second view of the same segment sees the bytes, and writes through. */
	CHECK_EQ(0, llmp_shmem_attach(p, d, &b));
	CHECK(!llmp_shmem_is_owner(b));
	CHECK_EQ(size, llmp_shmem_size(b));
	CHECK(strcmp(llmp_shmem_desc(b)->id, d->id) == 0);
	pb = llmp_shmem_addr(b);
	CHECK(pb != pa);
	CHECK_EQ(wtest_fnv64(pa, size), wtest_fnv64(pb, size));
	pb[size - 1] ^= 0xff;
	CHECK_EQ((uint8_t)~wtest_pattern(size - 1, 7), pa[size - 1]);
	llmp_shmem_put(b);
	CHECK_EQ(wtest_pattern(0, 7), pa[0]);
	llmp_shmem_put(a);
	llmp_provider_free(p);
	return 0;
}

static int t_id_format(void)
{
	struct llmp_provider *p;
	struct llmp_shmem *a, *b;
	char want[LLMP_SHMEM_ID_LEN];
	const char *ia, *ib;
	int n;

	CHECK_EQ(0, llmp_provider_new(LLMP_SHMEM_WIN32, &p));
	CHECK_EQ(0, llmp_shmem_new(p, 100, &a));
	CHECK_EQ(0, llmp_shmem_new(p, 100, &b));
	ia = llmp_shmem_desc(a)->id;
	ib = llmp_shmem_desc(b)->id;
	n = snprintf(want, sizeof(want), "llmp_%lu_", (unsigned long)GetCurrentProcessId());
	CHECK(strncmp(ia, want, (size_t)n) == 0);
	CHECK(strncmp(ib, want, (size_t)n) == 0);
	CHECK(strlen(ia) <= LLMP_SHMEM_ID_LEN - 1);
	CHECK(strlen(ia) > (size_t)n);
	CHECK(strspn(ia + n, "0123456789") == strlen(ia + n));
	CHECK(strcmp(ia, ib) != 0);
	/* The mapping really is named Local\<id>. */
	{
		char name[64];
		HANDLE h;

		snprintf(name, sizeof(name), "Local\\%s", ia);
		h = OpenFileMappingA(FILE_MAP_READ, FALSE, name);
		CHECK(h != NULL);
		CloseHandle(h);
	}
	llmp_shmem_put(a);
	llmp_shmem_put(b);
	llmp_provider_free(p);
	return 0;
}

/* Parse the counter of an id "llmp_<pid>_<counter>". */
static unsigned long id_counter(const char *id)
{
	const char *u = strrchr(id, '_');

	return u ? strtoul(u + 1, NULL, 10) : 0;
}

static int t_name_collision_skipped(void)
{
	struct llmp_provider *p;
	struct llmp_shmem *a, *b;
	char name[64], id1[LLMP_SHMEM_ID_LEN], id2[LLMP_SHMEM_ID_LEN];
	unsigned long k;
	HANDLE foreign, event;
	uint8_t *f;

	CHECK_EQ(0, llmp_provider_new(LLMP_SHMEM_WIN32, &p));
	CHECK_EQ(0, llmp_shmem_new(p, 4096, &a));
	k = id_counter(llmp_shmem_desc(a)->id);
	llmp_shmem_put(a);
	/* Someone else holds the next name as a mapping, and the one after as an event. */
	snprintf(id1, sizeof(id1), "llmp_%lu_%lu", (unsigned long)GetCurrentProcessId(), k + 1);
	snprintf(id2, sizeof(id2), "llmp_%lu_%lu", (unsigned long)GetCurrentProcessId(), k + 2);
	snprintf(name, sizeof(name), "Local\\%s", id1);
	foreign = CreateFileMappingA(INVALID_HANDLE_VALUE, NULL, PAGE_READWRITE, 0, 4096, name);
	CHECK(foreign != NULL);
	f = MapViewOfFile(foreign, FILE_MAP_ALL_ACCESS, 0, 0, 4096);
	CHECK(f != NULL);
	memset(f, 0xee, 4096);
	snprintf(name, sizeof(name), "Local\\%s", id2);
	event = CreateEventA(NULL, TRUE, FALSE, name);
	CHECK(event != NULL);

	CHECK_EQ(0, llmp_shmem_new(p, 4096, &b));
	CHECK(strcmp(llmp_shmem_desc(b)->id, id1) != 0);
	CHECK(strcmp(llmp_shmem_desc(b)->id, id2) != 0);
	CHECK_EQ(k + 3, id_counter(llmp_shmem_desc(b)->id));
	CHECK(all_zero(llmp_shmem_addr(b), 4096)); /* not the foreign mapping */
	CHECK_EQ(0xee, f[0]);
	llmp_shmem_put(b);
	CHECK_EQ(0xee, f[4095]); /* and the foreign one is untouched */
	UnmapViewOfFile(f);
	CloseHandle(foreign);
	CloseHandle(event);
	llmp_provider_free(p);
	return 0;
}

/* A mapping made the way LibAFL makes it (no namespace prefix) attaches by its id. */
static int t_libafl_style_mapping_attaches(void)
{
	const char *id = "libafl_0123456789ab"; /* libafl_ + 12 hex digits, 19 characters */
	struct llmp_provider *p;
	struct llmp_shmem *m;
	struct llmp_shmem_desc d = mkdesc(id, 65536);
	HANDLE h;
	uint8_t *v;

	CHECK_EQ(19, strlen(id));
	h = CreateFileMappingA(INVALID_HANDLE_VALUE, NULL, PAGE_READWRITE, 0, 65536, id);
	CHECK(h != NULL);
	v = MapViewOfFile(h, FILE_MAP_ALL_ACCESS, 0, 0, 65536);
	CHECK(v != NULL);
	wtest_fill(v, 65536, 19);
	CHECK_EQ(0, llmp_provider_new(LLMP_SHMEM_WIN32, &p));
	CHECK_EQ(0, llmp_shmem_attach(p, &d, &m));
	CHECK_EQ(wtest_fnv64(v, 65536), wtest_fnv64(llmp_shmem_addr(m), 65536));
	((uint8_t *)llmp_shmem_addr(m))[100] ^= 0xff;
	CHECK_EQ(0xff, v[100] ^ wtest_pattern(100, 19));
	llmp_shmem_put(m);
	llmp_provider_free(p);
	UnmapViewOfFile(v);
	CloseHandle(h);
	return 0;
}

static int t_env_round_trip(void)
{
	struct llmp_provider *p;
	struct llmp_shmem *m;
	struct llmp_shmem_desc back;

	CHECK_EQ(0, llmp_provider_new(LLMP_SHMEM_WIN32, &p));
	CHECK_EQ(0, llmp_shmem_new(p, 12345, &m));
	CHECK_EQ(0, llmp_shmem_desc_to_env(llmp_shmem_desc(m), "LLMP_WTEST_RT"));
	CHECK(strcmp(getenv("LLMP_WTEST_RT"), llmp_shmem_desc(m)->id) == 0);
	CHECK(strcmp(getenv("LLMP_WTEST_RT_SIZE"), "12345") == 0);
	CHECK(strcmp(getenv("LLMP_WTEST_RT_KIND"), "win32") == 0);
	CHECK_EQ(0, llmp_shmem_desc_from_env("LLMP_WTEST_RT", &back));
	CHECK(memcmp(&back, llmp_shmem_desc(m), sizeof(back)) == 0);
	llmp_shmem_put(m);
	llmp_provider_free(p);
	return 0;
}

static int t_attach_from_second_process(void)
{
	struct llmp_provider *p;
	int ret;

	CHECK_EQ(0, llmp_provider_new(LLMP_SHMEM_WIN32, &p));
	ret = cross_process(p, 1 * MiB + 3, 0x5eed);
	llmp_provider_free(p);
	return ret;
}

static int t_second_process_sizes(void)
{
	static const size_t sizes[] = { 1, 4097, 64 * MiB };
	struct llmp_provider *p;
	int ret = 0;

	CHECK_EQ(0, llmp_provider_new(LLMP_SHMEM_WIN32, &p));
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]) && !ret; i++)
		ret = cross_process(p, sizes[i], (uint32_t)i + 100);
	llmp_provider_free(p);
	return ret;
}

static int t_child_sees_wrong_checksum(void)
{
	/* The child must be able to fail: give it a wrong checksum. */
	struct llmp_provider *p;
	struct llmp_shmem *m;
	long code;

	CHECK_EQ(0, llmp_provider_new(LLMP_SHMEM_WIN32, &p));
	CHECK_EQ(0, llmp_shmem_new(p, 4096, &m));
	wtest_fill(llmp_shmem_addr(m), 4096, 3);
	CHECK_EQ(0, wtest_setenv(ENV_SUM, "0123456789abcdef"));
	CHECK_EQ(0, wtest_setenv(ENV_SEED, "3"));
	CHECK_EQ(0, llmp_shmem_desc_to_env(llmp_shmem_desc(m), ENV_NAME));
	CHECK_EQ(0, wtest_setenv(ENV_QUIET, "1"));
	code = wtest_run_child("child");
	CHECK_EQ(CHILD_SUM, code);
	/* Nothing written back. */
	CHECK_EQ(wtest_pattern(0, 3), ((uint8_t *)llmp_shmem_addr(m))[0]);
	llmp_shmem_put(m);
	/* And a child told about a segment that is gone cannot attach. */
	CHECK_EQ(CHILD_ATTACH, wtest_run_child("child"));
	CHECK_EQ(0, wtest_setenv(ENV_QUIET, "")); /* an empty value removes the variable */
	CHECK(getenv(ENV_QUIET) == NULL);
	llmp_provider_free(p);
	return 0;
}

static int t_sizes_1B_to_256MiB(void)
{
	static const size_t sizes[] = {
		1, 2, 63, 4095, 4096, 4097, 65535, 65536, 65537, 1 * MiB, 16 * MiB - 1, 64 * MiB,
		256 * MiB,
	};
	struct llmp_provider *p;

	CHECK_EQ(0, llmp_provider_new(LLMP_SHMEM_WIN32, &p));
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		size_t n = sizes[i];
		struct llmp_shmem *m, *v;
		uint8_t *a, *b;

		CHECK_EQ(0, llmp_shmem_new(p, n, &m));
		CHECK_EQ(n, llmp_shmem_size(m));
		CHECK_EQ(n, llmp_shmem_desc(m)->size);
		a = llmp_shmem_addr(m);
		CHECK(all_zero(a, n));
		wtest_fill(a, n, (uint32_t)n);
		CHECK_EQ(0, llmp_shmem_attach(p, llmp_shmem_desc(m), &v));
		CHECK_EQ(n, llmp_shmem_size(v));
		b = llmp_shmem_addr(v);
		CHECK(a != b);
		CHECK_EQ(wtest_pattern(0, (uint32_t)n), b[0]);
		CHECK_EQ(wtest_pattern(n - 1, (uint32_t)n), b[n - 1]);
		CHECK_EQ(wtest_fnv64(a, n), wtest_fnv64(b, n));
		b[n - 1] ^= 0xff; /* and back through the other view */
		CHECK_EQ(0xff, a[n - 1] ^ wtest_pattern(n - 1, (uint32_t)n));
		llmp_shmem_put(v);
		llmp_shmem_put(m);
	}
	llmp_provider_free(p);
	return 0;
}

static int t_above_4GiB(void)
{
	const uint64_t size = 4 * 1024 * MiB + 8192;
	struct llmp_provider *p;
	struct llmp_shmem *m, *v;
	uint8_t *a, *b;
	int ret;

	if (sizeof(size_t) < 8) {
		WTEST_SKIP("32-bit process");
		return 0;
	}
	CHECK_EQ(0, llmp_provider_new(LLMP_SHMEM_WIN32, &p));
	ret = llmp_shmem_new(p, (size_t)size, &m);
	if (ret == -ENOMEM) {
		WTEST_SKIP("no commit for 4 GiB here: %s", llmp_strerror_last());
		llmp_provider_free(p);
		return 0;
	}
	CHECK_EQ(0, ret);
	CHECK_EQ(size, llmp_shmem_desc(m)->size);
	a = llmp_shmem_addr(m);
	/* Touch a few pages only: the high and low halves of the size both count. */
	CHECK_EQ(0, a[size - 1]);
	a[0] = 1;
	a[4 * 1024 * MiB] = 2;
	a[size - 1] = 3;
	CHECK_EQ(0, llmp_shmem_attach(p, llmp_shmem_desc(m), &v));
	b = llmp_shmem_addr(v);
	CHECK_EQ(1, b[0]);
	CHECK_EQ(2, b[4 * 1024 * MiB]);
	CHECK_EQ(3, b[size - 1]);
	llmp_shmem_put(v);
	llmp_shmem_put(m);
	llmp_provider_free(p);
	return 0;
}

static int t_bad_sizes(void)
{
	struct llmp_provider *p;
	struct llmp_shmem *m = (struct llmp_shmem *)1;

	CHECK_EQ(0, llmp_provider_new(LLMP_SHMEM_WIN32, &p));
	CHECK_EQ(-EINVAL, llmp_shmem_new(p, 0, &m));
	CHECK(m == NULL);
	CHECK_EQ(-E2BIG, llmp_shmem_new(p, (size_t)(LLMP_SHMEM_MAX_SIZE + 1), &m));
	CHECK(m == NULL);
	CHECK_EQ(-EINVAL, llmp_shmem_new(NULL, 4096, &m));
	llmp_provider_free(p);
	return 0;
}

static int t_1000_segments(void)
{
	enum { N = 1000 };
	static struct llmp_shmem *segs[N];
	static struct llmp_shmem_desc descs[N];
	static void *addrs[N];
	struct llmp_provider *p;
	struct llmp_shmem *m;
	DWORD handles0 = 0, handles1 = 0;

	CHECK_EQ(0, llmp_provider_new(LLMP_SHMEM_WIN32, &p));
	CHECK(GetProcessHandleCount(GetCurrentProcess(), &handles0));
	for (int i = 0; i < N; i++) {
		CHECK_EQ(0, llmp_shmem_new(p, 4096, &segs[i]));
		descs[i] = *llmp_shmem_desc(segs[i]);
		memcpy(llmp_shmem_addr(segs[i]), &i, sizeof(i));
	}
	for (int i = 0; i < N; i++) {
		int v;

		memcpy(&v, llmp_shmem_addr(segs[i]), sizeof(v));
		CHECK_EQ(i, v);
		for (int j = 0; j < i; j++)
			CHECK(strcmp(descs[i].id, descs[j].id) != 0);
	}
	for (int i = 0; i < N; i++) {
		addrs[i] = llmp_shmem_addr(segs[i]);
		llmp_shmem_put(segs[i]);
	}
	/* Every view is unmapped: its addresses are free again. */
	for (int i = 0; i < N; i++) {
		MEMORY_BASIC_INFORMATION mbi;

		CHECK_EQ(sizeof(mbi), VirtualQuery(addrs[i], &mbi, sizeof(mbi)));
		CHECK_EQ(MEM_FREE, mbi.State);
	}
	/* Windows counts handles; wine reports 0 for both, which proves nothing. */
	CHECK(GetProcessHandleCount(GetCurrentProcess(), &handles1));
	CHECK_EQ(handles0, handles1);
	/* Every segment is gone with its last handle: none can be attached. */
	for (int i = 0; i < N; i++)
		CHECK_EQ(-ENOENT, llmp_shmem_attach(p, &descs[i], &m));
	llmp_provider_free(p);
	return 0;
}

static int t_segment_lives_until_last_handle(void)
{
	struct llmp_provider *p;
	struct llmp_shmem *a, *b, *c;
	struct llmp_shmem_desc d;
	static uint8_t want[8192];

	CHECK_EQ(0, llmp_provider_new(LLMP_SHMEM_WIN32, &p));
	CHECK_EQ(0, llmp_shmem_new(p, 8192, &a));
	d = *llmp_shmem_desc(a);
	wtest_fill(llmp_shmem_addr(a), 8192, 42);
	CHECK_EQ(0, llmp_shmem_attach(p, &d, &b));
	llmp_shmem_put(a); /* the creator goes first */
	wtest_fill(want, sizeof(want), 42);
	CHECK_EQ(wtest_fnv64(want, sizeof(want)), wtest_fnv64(llmp_shmem_addr(b), 8192));
	CHECK_EQ(0, llmp_shmem_attach(p, &d, &c)); /* still there by name */
	llmp_shmem_put(c);
	llmp_shmem_put(b);
	CHECK_EQ(-ENOENT, llmp_shmem_attach(p, &d, &c));
	CHECK(c == NULL);
	llmp_provider_free(p);
	return 0;
}

static int t_attach_unknown_id_fails(void)
{
	struct llmp_provider *p;
	struct llmp_shmem *m = (struct llmp_shmem *)1;
	struct llmp_shmem_desc d = mkdesc("llmp_0_999999999", 4096);

	CHECK_EQ(0, llmp_provider_new(LLMP_SHMEM_WIN32, &p));
	logged_count = 0;
	llmp_set_log(log_cb, NULL, LLMP_LOG_ERROR);
	CHECK_EQ(-ENOENT, llmp_shmem_attach(p, &d, &m));
	llmp_set_log(NULL, NULL, LLMP_LOG_WARN);
	CHECK(m == NULL);
	CHECK_EQ(1, logged_count);
	CHECK(strstr(logged, "Local\\llmp_0_999999999") != NULL);
	CHECK(strstr(llmp_strerror_last(), "OpenFileMappingA") != NULL);
	/* A LibAFL-style id that does not exist either. */
	d = mkdesc("libafl_0123456789ab", 65536);
	CHECK_EQ(-ENOENT, llmp_shmem_attach(p, &d, &m));
	llmp_provider_free(p);
	return 0;
}

static int t_attach_larger_than_segment_refused(void)
{
	struct llmp_provider *p;
	struct llmp_shmem *a, *m = (struct llmp_shmem *)1;
	struct llmp_shmem_desc d;

	CHECK_EQ(0, llmp_provider_new(LLMP_SHMEM_WIN32, &p));
	CHECK_EQ(0, llmp_shmem_new(p, 64 * KiB, &a));
	d = *llmp_shmem_desc(a);
	d.size = 64 * KiB + 4096;
	CHECK_EQ(-EINVAL, llmp_shmem_attach(p, &d, &m));
	CHECK(m == NULL);
	CHECK(strstr(llmp_strerror_last(), "holds 65536 bytes") != NULL);
	d.size = 1 * MiB;
	CHECK_EQ(-EINVAL, llmp_shmem_attach(p, &d, &m));
	/* Smaller than the segment is fine: the view covers it. */
	d.size = 100;
	CHECK_EQ(0, llmp_shmem_attach(p, &d, &m));
	CHECK_EQ(100, llmp_shmem_size(m));
	llmp_shmem_put(m);
	llmp_shmem_put(a);
	llmp_provider_free(p);
	return 0;
}

static int t_garbage_descriptions_rejected(void)
{
	struct llmp_provider *p;
	struct llmp_shmem *a, *m = (struct llmp_shmem *)1;
	struct llmp_shmem_desc good, d;

	CHECK_EQ(0, llmp_provider_new(LLMP_SHMEM_WIN32, &p));
	CHECK_EQ(0, llmp_shmem_new(p, 4096, &a));
	good = *llmp_shmem_desc(a);

	d = good; d.kind = LLMP_SHMEM_SYSV; /* another kind's description */
	CHECK_EQ(-EINVAL, llmp_shmem_attach(p, &d, &m));
	CHECK(m == NULL);
	d = good; d.kind = LLMP_SHMEM_DEFAULT;
	CHECK_EQ(-EINVAL, llmp_shmem_attach(p, &d, &m));
	d = good; d.kind = 77;
	CHECK_EQ(-EINVAL, llmp_shmem_attach(p, &d, &m));
	d = good; d.reserved = 1;
	CHECK_EQ(-EINVAL, llmp_shmem_attach(p, &d, &m));
	d = good; d.pad[3] = 1;
	CHECK_EQ(-EINVAL, llmp_shmem_attach(p, &d, &m));
	d = good; d.size = 0;
	CHECK_EQ(-EINVAL, llmp_shmem_attach(p, &d, &m));
	d = good; d.size = LLMP_SHMEM_MAX_SIZE + 1;
	CHECK_EQ(-EINVAL, llmp_shmem_attach(p, &d, &m));
	d = good; memset(d.id, 'x', sizeof(d.id)); /* not NUL-terminated */
	CHECK_EQ(-EINVAL, llmp_shmem_attach(p, &d, &m));
	d = good; memset(d.id, 0, sizeof(d.id)); /* empty */
	CHECK_EQ(-EINVAL, llmp_shmem_attach(p, &d, &m));
	d = good; d.id[strlen(d.id) + 1] = 'z'; /* garbage after the NUL */
	CHECK_EQ(-EINVAL, llmp_shmem_attach(p, &d, &m));
	d = good; d.id[0] = ' ';
	CHECK_EQ(-EINVAL, llmp_shmem_attach(p, &d, &m));
	d = good; d.id[1] = (char)0xe9;
	CHECK_EQ(-EINVAL, llmp_shmem_attach(p, &d, &m));
	/* A namespace given in the id would escape Local\: refused before any call. */
	d = mkdesc("Global\\x", 4096);
	CHECK_EQ(-EINVAL, llmp_shmem_attach(p, &d, &m));
	CHECK(strstr(llmp_strerror_last(), "backslash") != NULL);
	d = mkdesc("Local\\x", 4096);
	CHECK_EQ(-EINVAL, llmp_shmem_attach(p, &d, &m));
	CHECK_EQ(-EINVAL, llmp_shmem_attach(p, NULL, &m));
	CHECK_EQ(-EINVAL, llmp_shmem_attach(NULL, &good, &m));
	CHECK_EQ(-EINVAL, llmp_shmem_attach(p, &good, NULL));

	/* The good one still works after all that. */
	CHECK_EQ(0, llmp_shmem_attach(p, &good, &m));
	llmp_shmem_put(m);
	llmp_shmem_put(a);
	llmp_provider_free(p);
	return 0;
}

static int t_garbage_env_rejected(void)
{
	struct llmp_shmem_desc d;

	CHECK_EQ(0, wtest_setenv("LLMP_WTEST_G", "llmp_1_2"));
	CHECK_EQ(0, wtest_setenv("LLMP_WTEST_G_SIZE", "4096"));
	CHECK_EQ(0, wtest_setenv("LLMP_WTEST_G_KIND", "win32"));
	CHECK_EQ(0, llmp_shmem_desc_from_env("LLMP_WTEST_G", &d));
	CHECK_EQ(LLMP_SHMEM_WIN32, d.kind);
	CHECK_EQ(4096, d.size);
	CHECK(strcmp(d.id, "llmp_1_2") == 0);

	CHECK_EQ(0, wtest_setenv("LLMP_WTEST_G_SIZE", "12abc"));
	CHECK_EQ(-EINVAL, llmp_shmem_desc_from_env("LLMP_WTEST_G", &d));
	CHECK_EQ(0, wtest_setenv("LLMP_WTEST_G_SIZE", "-1"));
	CHECK_EQ(-EINVAL, llmp_shmem_desc_from_env("LLMP_WTEST_G", &d));
	CHECK_EQ(0, wtest_setenv("LLMP_WTEST_G_SIZE", "0"));
	CHECK_EQ(-EINVAL, llmp_shmem_desc_from_env("LLMP_WTEST_G", &d));
	CHECK_EQ(0, wtest_setenv("LLMP_WTEST_G_SIZE", "99999999999999999999999"));
	CHECK_EQ(-EINVAL, llmp_shmem_desc_from_env("LLMP_WTEST_G", &d));
	CHECK_EQ(0, wtest_setenv("LLMP_WTEST_G_SIZE", "4096"));
	CHECK_EQ(0, wtest_setenv("LLMP_WTEST_G_KIND", "ntfs"));
	CHECK_EQ(-EINVAL, llmp_shmem_desc_from_env("LLMP_WTEST_G", &d));
	CHECK_EQ(0, wtest_setenv("LLMP_WTEST_G_KIND", "win32"));
	CHECK_EQ(0, wtest_setenv("LLMP_WTEST_G", "llmp_an_id_far_too_long_to_fit"));
	CHECK_EQ(-EINVAL, llmp_shmem_desc_from_env("LLMP_WTEST_G", &d));
	CHECK_EQ(-ENOENT, llmp_shmem_desc_from_env("LLMP_WTEST_UNSET", &d));
	CHECK_EQ(-EINVAL, llmp_shmem_desc_from_env("", &d));
	return 0;
}

/* ---- runner ------------------------------------------------------------------ */

static const struct wtest tests[] = {
	WTEST(t_provider_new_and_probe),
	WTEST(t_default_kind_is_win32),
	WTEST(t_posix_kinds_unavailable),
	WTEST(t_create_write_read),
	WTEST(t_id_format),
	WTEST(t_name_collision_skipped),
	WTEST(t_libafl_style_mapping_attaches),
	WTEST(t_env_round_trip),
	WTEST(t_attach_from_second_process),
	WTEST(t_second_process_sizes),
	WTEST(t_child_sees_wrong_checksum),
	WTEST(t_sizes_1B_to_256MiB),
	WTEST(t_above_4GiB),
	WTEST(t_bad_sizes),
	WTEST(t_1000_segments),
	WTEST(t_segment_lives_until_last_handle),
	WTEST(t_attach_unknown_id_fails),
	WTEST(t_attach_larger_than_segment_refused),
	WTEST(t_garbage_descriptions_rejected),
	WTEST(t_garbage_env_rejected),
};

int main(int argc, char **argv)
{
	if (argc > 1 && !strcmp(argv[1], "child"))
		return child_main();
	return wtest_main(tests, sizeof(tests) / sizeof(tests[0]));
}
