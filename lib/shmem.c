// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * The provider layer: dispatch to a back end, descriptions, environment.
 * Back ends live in shmem_<kind>.c and fill struct llmp_shmem_ops.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#if !defined(_WIN32)
#include <pthread.h>
#include <sys/mman.h>
#include <sys/shm.h>
#include <unistd.h>

/* The release of the fd-backed kinds (memfd, kmod, ashmem): unmap, close. */
void llmp_shmem_release_fd_mapping(struct llmp_provider *p, struct llmp_shmem *m)
{
	(void)p;
	if (m->addr)
		munmap(m->addr, m->size);
	if (m->fd >= 0)
		close(m->fd);
	m->addr = NULL;
	m->fd = -1;
}
#endif

/* ---- owners of POSIX and SYSV segments in this process image ------------ */

/* Kinds whose segments stay until their creator destroys them. */
static bool creator_destroys(uint32_t kind)
{
	return kind == LLMP_SHMEM_POSIX || kind == LLMP_SHMEM_SYSV;
}

#if !defined(_WIN32)
/*
 * The owning mappings this process image holds, by kind and id.  A segment
 * our pid created but that no mapping here owns was made by an earlier image
 * of this process, whose owner flag an exec lost: llmp_shmem_adopt() takes
 * over its destruction.  A second mapping of a segment this image still owns
 * must not (the segment would be destroyed twice, or under the owner).
 */
struct owned_seg {
	uint32_t kind;
	char id[LLMP_SHMEM_ID_LEN];
};

static pthread_mutex_t owned_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t owned_once = PTHREAD_ONCE_INIT;
static struct owned_seg *owned;
static size_t nowned, owned_cap;

/* A fork while another thread holds owned_lock must not leave it held in the child. */
static void owned_prepare(void)
{
	pthread_mutex_lock(&owned_lock);
}

static void owned_release(void)
{
	pthread_mutex_unlock(&owned_lock);
}

static void owned_init(void)
{
	pthread_atfork(owned_prepare, owned_release, owned_release);
}

/* Index of (kind, id) in owned, or nowned.  Caller holds owned_lock. */
static size_t owned_find(uint32_t kind, const char *id)
{
	size_t i;

	for (i = 0; i < nowned; i++) {
		if (owned[i].kind == kind && !strncmp(owned[i].id, id, LLMP_SHMEM_ID_LEN))
			break;
	}
	return i;
}

/* Record m as its segment's owner here: 0, or -ENOMEM.  Caller holds owned_lock. */
static int owned_add(const struct llmp_shmem *m)
{
	if (nowned == owned_cap) {
		size_t cap = owned_cap ? owned_cap * 2 : 16;
		struct owned_seg *n = realloc(owned, cap * sizeof(*n));

		if (!n)
			return -ENOMEM;
		owned = n;
		owned_cap = cap;
	}
	owned[nowned].kind = m->desc.kind;
	memcpy(owned[nowned].id, m->desc.id, LLMP_SHMEM_ID_LEN);
	nowned++;
	return 0;
}

static int owned_register(const struct llmp_shmem *m)
{
	int ret;

	if (!creator_destroys(m->desc.kind))
		return 0;
	pthread_once(&owned_once, owned_init);
	pthread_mutex_lock(&owned_lock);
	ret = owned_add(m);
	pthread_mutex_unlock(&owned_lock);
	return ret;
}

static void owned_unregister(const struct llmp_shmem *m)
{
	size_t i;

	if (!m->owner || !creator_destroys(m->desc.kind))
		return;
	pthread_mutex_lock(&owned_lock);
	i = owned_find(m->desc.kind, m->desc.id);
	if (i < nowned)
		owned[i] = owned[--nowned];
	if (!nowned) {
		free(owned);
		owned = NULL;
		owned_cap = 0;
	}
	pthread_mutex_unlock(&owned_lock);
}

int llmp_shmem_adopt(struct llmp_shmem *m)
{
	int ret = 0;

	if (!m)
		return llmp_err(-EINVAL, "shmem adopt: NULL");
	if (m->owner || !creator_destroys(m->desc.kind) ||
	    llmp_shmem_creator_pid(m) != (long)getpid())
		return 0;
	pthread_once(&owned_once, owned_init);
	pthread_mutex_lock(&owned_lock);
	if (owned_find(m->desc.kind, m->desc.id) == nowned) {
		ret = owned_add(m);
		if (ret == 0) {
			m->owner = true;
			m->priv = (void *)(intptr_t)getpid(); /* who may destroy, as at create */
			ret = 1;
		}
	}
	pthread_mutex_unlock(&owned_lock);
	if (ret < 0)
		return llmp_err(ret, "shmem adopt: out of memory");
	if (ret > 0)
		llmp_log(LLMP_LOG_DEBUG, "shmem: %s %.19s was made by an earlier image of this "
			 "process: adopted, destroyed at its release",
			 llmp_shmem_kind_name(m->desc.kind), m->desc.id);
	return ret;
}
#else
static int owned_register(const struct llmp_shmem *m)
{
	(void)m;
	return 0;
}

static void owned_unregister(const struct llmp_shmem *m)
{
	(void)m;
}

int llmp_shmem_adopt(struct llmp_shmem *m)
{
	(void)creator_destroys;
	return m ? 0 : llmp_err(-EINVAL, "shmem adopt: NULL");
}
#endif

#if defined(_WIN32)
/* mingw has no setenv(); _putenv_s copies both strings. */
static int setenv(const char *name, const char *value, int overwrite)
{
	(void)overwrite;
	if (_putenv_s(name, value)) {
		errno = EINVAL;
		return -1;
	}
	return 0;
}
#endif

static const char *const kind_names[LLMP_SHMEM_KIND_MAX] = {
	[LLMP_SHMEM_DEFAULT] = "default", [LLMP_SHMEM_KMOD] = "kmod",
	[LLMP_SHMEM_MEMFD] = "memfd",     [LLMP_SHMEM_POSIX] = "posix",
	[LLMP_SHMEM_SYSV] = "sysv",       [LLMP_SHMEM_ASHMEM] = "ashmem",
	[LLMP_SHMEM_WIN32] = "win32",     [LLMP_SHMEM_SERVED] = "served",
};

static const struct llmp_shmem_ops *ops_of(enum llmp_shmem_kind kind)
{
	switch (kind) {
	case LLMP_SHMEM_KMOD: return &llmp_shmem_kmod_ops;
	case LLMP_SHMEM_MEMFD: return &llmp_shmem_memfd_ops;
	case LLMP_SHMEM_POSIX: return &llmp_shmem_posix_ops;
	case LLMP_SHMEM_SYSV: return &llmp_shmem_sysv_ops;
	case LLMP_SHMEM_ASHMEM: return &llmp_shmem_ashmem_ops;
	case LLMP_SHMEM_WIN32: return &llmp_shmem_win32_ops;
	case LLMP_SHMEM_SERVED: return &llmp_shmem_served_ops;
	default: return NULL;
	}
}

const char *llmp_shmem_kind_name(enum llmp_shmem_kind kind)
{
	if ((unsigned)kind >= LLMP_SHMEM_KIND_MAX)
		return NULL;
	return kind_names[kind];
}

int llmp_shmem_kind_from_name(const char *name, enum llmp_shmem_kind *out)
{
	if (!name || !out)
		return llmp_err(-EINVAL, "shmem kind: NULL argument");
	for (unsigned i = 0; i < LLMP_SHMEM_KIND_MAX; i++) {
		if (!strcmp(name, kind_names[i])) {
			*out = (enum llmp_shmem_kind)i;
			return 0;
		}
	}
	return llmp_err(-EINVAL, "unknown shmem kind '%.32s' (default, kmod, memfd, posix, sysv, "
			"ashmem, win32, served)", name);
}

enum llmp_shmem_kind llmp_shmem_default_kind(void)
{
#if defined(_WIN32)
	return LLMP_SHMEM_WIN32;
#elif defined(__ANDROID__)
	return LLMP_SHMEM_ASHMEM;
#else
	int ret = -ENODEV;

	if (llmp_shmem_kmod_ops.probe) {
		llmp_log_probe_begin();
		ret = llmp_shmem_kmod_ops.probe();
		llmp_log_probe_end();
	}
	if (ret == 0)
		return LLMP_SHMEM_KMOD;
#if defined(__linux__)
	return LLMP_SHMEM_MEMFD;
#else
	return LLMP_SHMEM_POSIX;
#endif
#endif
}

static int provider_alloc(enum llmp_shmem_kind kind, const char *socket_path,
			  struct llmp_provider **out)
{
	const struct llmp_shmem_ops *ops;
	struct llmp_provider *p;
	int ret;

	if (!out)
		return llmp_err(-EINVAL, "provider: NULL out pointer");
	*out = NULL;
	if (kind == LLMP_SHMEM_DEFAULT)
		kind = llmp_shmem_default_kind();
	ops = ops_of(kind);
	if (!ops)
		return llmp_err(-EINVAL, "provider: invalid shmem kind %d", (int)kind);
	if (ops->probe) {
		ret = ops->probe();
		if (ret < 0)
			return ret;
	}
	p = calloc(1, sizeof(*p));
	if (!p)
		return llmp_err(-ENOMEM, "provider: out of memory");
	p->kind = kind;
	p->ops = ops;
	if (socket_path) {
		p->socket_path = strdup(socket_path);
		if (!p->socket_path) {
			free(p);
			return llmp_err(-ENOMEM, "provider: out of memory");
		}
	}
	if (ops->provider_init) {
		ret = ops->provider_init(p);
		if (ret < 0) {
			free(p->socket_path);
			free(p);
			return ret;
		}
	}
	*out = p;
	return 0;
}

int llmp_provider_new(enum llmp_shmem_kind kind, struct llmp_provider **out)
{
	return provider_alloc(kind, NULL, out);
}

int llmp_provider_new_served(const char *socket_path, struct llmp_provider **out)
{
	return provider_alloc(LLMP_SHMEM_SERVED, socket_path, out);
}

enum llmp_shmem_kind llmp_provider_kind(const struct llmp_provider *p)
{
	return p->kind;
}

void llmp_provider_free(struct llmp_provider *p)
{
	if (!p)
		return;
	if (p->ops->provider_fini)
		p->ops->provider_fini(p);
	free(p->socket_path);
	free(p);
}

int llmp_provider_pre_fork(struct llmp_provider *p)
{
	if (!p)
		return llmp_err(-EINVAL, "pre_fork: NULL provider");
	return p->ops->pre_fork ? p->ops->pre_fork(p) : 0;
}

int llmp_provider_post_fork(struct llmp_provider *p, bool child)
{
	if (!p)
		return llmp_err(-EINVAL, "post_fork: NULL provider");
	return p->ops->post_fork ? p->ops->post_fork(p, child) : 0;
}

static struct llmp_shmem *shmem_alloc(struct llmp_provider *p)
{
	struct llmp_shmem *m = calloc(1, sizeof(*m));

	if (m) {
		m->p = p;
		m->fd = -1;
	}
	return m;
}

int llmp_shmem_new(struct llmp_provider *p, size_t size, struct llmp_shmem **out)
{
	struct llmp_shmem *m;
	int ret;

	if (!out)
		return llmp_err(-EINVAL, "shmem_new: NULL out pointer");
	*out = NULL;
	if (!p)
		return llmp_err(-EINVAL, "shmem_new: NULL provider");
	if (size == 0)
		return llmp_err(-EINVAL, "shmem_new: size 0");
	if ((unsigned long long)size > LLMP_SHMEM_MAX_SIZE)
		return llmp_err(-E2BIG, "shmem_new: size %zu above the limit %llu", size,
				(unsigned long long)LLMP_SHMEM_MAX_SIZE);
	m = shmem_alloc(p);
	if (!m)
		return llmp_err(-ENOMEM, "shmem_new: out of memory");
	ret = p->ops->create(p, size, m);
	if (ret < 0) {
		free(m);
		return ret;
	}
	m->owner = true;
	m->desc.kind = p->kind;
	m->desc.size = m->size;
	if (owned_register(m) < 0) {
		p->ops->release(p, m);
		free(m);
		return llmp_err(-ENOMEM, "shmem_new: out of memory");
	}
	*out = m;
	return 0;
}

int llmp_shmem_desc_check(const struct llmp_shmem_desc *d)
{
	size_t n;

	if (!d)
		return llmp_err(-EINVAL, "shmem desc: NULL");
	if (d->kind == LLMP_SHMEM_DEFAULT || d->kind >= LLMP_SHMEM_KIND_MAX)
		return llmp_err(-EINVAL, "shmem desc: invalid kind %u", d->kind);
	if (d->reserved || d->pad[0] || d->pad[1] || d->pad[2] || d->pad[3])
		return llmp_err(-EINVAL, "shmem desc: reserved bytes not zero");
	if (d->size == 0 || d->size > LLMP_SHMEM_MAX_SIZE)
		return llmp_err(-EINVAL, "shmem desc: bad size %llu", (unsigned long long)d->size);
	n = strnlen(d->id, LLMP_SHMEM_ID_LEN);
	if (n == 0 || n == LLMP_SHMEM_ID_LEN)
		return llmp_err(-EINVAL, "shmem desc: id empty or not NUL-terminated");
	for (size_t i = 0; i < n; i++) {
		if (d->id[i] < 0x21 || d->id[i] > 0x7e)
			return llmp_err(-EINVAL, "shmem desc: id has a non-printable byte");
	}
	for (size_t i = n; i < LLMP_SHMEM_ID_LEN; i++) {
		if (d->id[i])
			return llmp_err(-EINVAL, "shmem desc: id not NUL-padded");
	}
	return 0;
}

int llmp_shmem_attach(struct llmp_provider *p, const struct llmp_shmem_desc *d,
		      struct llmp_shmem **out)
{
	struct llmp_shmem *m;
	int ret;

	if (!out)
		return llmp_err(-EINVAL, "shmem_attach: NULL out pointer");
	*out = NULL;
	if (!p)
		return llmp_err(-EINVAL, "shmem_attach: NULL provider");
	ret = llmp_shmem_desc_check(d);
	if (ret < 0)
		return ret;
	if (d->kind != p->kind)
		return llmp_err(-EINVAL, "shmem_attach: description of kind %s given to a %s provider",
				llmp_shmem_kind_name(d->kind), llmp_shmem_kind_name(p->kind));
	m = shmem_alloc(p);
	if (!m)
		return llmp_err(-ENOMEM, "shmem_attach: out of memory");
	ret = p->ops->attach(p, d, m);
	if (ret < 0) {
		free(m);
		return ret;
	}
	m->desc = *d;
	m->desc.size = m->size;
	*out = m;
	return 0;
}

void *llmp_shmem_addr(const struct llmp_shmem *m)
{
	return m->addr;
}

size_t llmp_shmem_size(const struct llmp_shmem *m)
{
	return m->size;
}

const struct llmp_shmem_desc *llmp_shmem_desc(const struct llmp_shmem *m)
{
	return &m->desc;
}

bool llmp_shmem_is_owner(const struct llmp_shmem *m)
{
	return m->owner;
}

void llmp_shmem_put(struct llmp_shmem *m)
{
	if (!m)
		return;
	owned_unregister(m);
	m->p->ops->release(m->p, m);
	free(m);
}

/* ---- environment ---------------------------------------------------------- */

#define ENV_NAME_MAX 200

static int env_name(char *buf, size_t len, const char *name, const char *suffix)
{
	int n = snprintf(buf, len, "%s%s", name, suffix);

	if (n < 0 || (size_t)n >= len)
		return llmp_err(-ENAMETOOLONG, "env: variable name too long");
	return 0;
}

int llmp_shmem_desc_to_env(const struct llmp_shmem_desc *d, const char *name)
{
	char var[ENV_NAME_MAX], val[32];
	int ret;

	if (!name || !*name || strchr(name, '='))
		return llmp_err(-EINVAL, "env: bad variable name");
	ret = llmp_shmem_desc_check(d);
	if (ret < 0)
		return ret;
	if (env_name(var, sizeof(var), name, "") < 0)
		return -ENAMETOOLONG;
	if (setenv(var, d->id, 1))
		return llmp_err(-errno, "env: setenv %s", var);
	snprintf(val, sizeof(val), "%llu", (unsigned long long)d->size);
	env_name(var, sizeof(var), name, "_SIZE");
	if (setenv(var, val, 1))
		return llmp_err(-errno, "env: setenv %s", var);
	env_name(var, sizeof(var), name, "_KIND");
	if (setenv(var, llmp_shmem_kind_name(d->kind), 1))
		return llmp_err(-errno, "env: setenv %s", var);
	return 0;
}

int llmp_shmem_desc_from_env(const char *name, struct llmp_shmem_desc *d)
{
	char var[ENV_NAME_MAX];
	const char *id, *size, *kind;
	enum llmp_shmem_kind k = LLMP_SHMEM_SYSV;
	unsigned long long sz;
	char *end;

	if (!name || !*name || !d)
		return llmp_err(-EINVAL, "env: bad arguments");
	if (env_name(var, sizeof(var), name, "") < 0)
		return -ENAMETOOLONG;
	id = getenv(var);
	if (!id)
		return llmp_err(-ENOENT, "env: %s is not set", var);
	env_name(var, sizeof(var), name, "_SIZE");
	size = getenv(var);
	if (!size)
		return llmp_err(-ENOENT, "env: %s is not set", var);
	env_name(var, sizeof(var), name, "_KIND");
	kind = getenv(var);
	if (kind && llmp_shmem_kind_from_name(kind, &k) < 0)
		return -EINVAL;
	if (strlen(id) >= LLMP_SHMEM_ID_LEN)
		return llmp_err(-EINVAL, "env: %s: id longer than %d characters", name,
				LLMP_SHMEM_ID_LEN - 1);
	if (*size < '0' || *size > '9')
		return llmp_err(-EINVAL, "env: %s_SIZE is not a decimal number", name);
	errno = 0;
	sz = strtoull(size, &end, 10);
	if (errno || *end)
		return llmp_err(-EINVAL, "env: %s_SIZE is not a decimal number", name);
	memset(d, 0, sizeof(*d));
	d->kind = k;
	d->size = sz;
	memcpy(d->id, id, strlen(id));
	return llmp_shmem_desc_check(d);
}

/* A positive decimal pid at s, ending at a character in stops: the pid, or 0. */
static long parse_pid(const char *s, const char *stops)
{
	unsigned long long v = 0; /* 10 digits fit; long is 32 bits on Windows */
	const char *q = s;

	while (*q >= '0' && *q <= '9' && q - s < 10)
		v = v * 10 + (*q++ - '0');
	if (q == s || !*q || !strchr(stops, *q) || v == 0 || v > 0x7fffffffULL)
		return 0;
	return (long)v;
}

long llmp_shmem_creator_pid(const struct llmp_shmem *m)
{
	const struct llmp_shmem_desc *d;
	char id[LLMP_SHMEM_ID_LEN + 1];

	if (!m)
		return 0;
	d = &m->desc;
	memcpy(id, d->id, LLMP_SHMEM_ID_LEN);
	id[LLMP_SHMEM_ID_LEN] = '\0';
	switch (d->kind) {
	case LLMP_SHMEM_MEMFD:
		return id[0] == 'm' ? parse_pid(id + 1, ":") : 0;
	case LLMP_SHMEM_POSIX:
		return strncmp(id, "/libafl_", 8) ? 0 : parse_pid(id + 8, "_");
	case LLMP_SHMEM_WIN32:
		/* "llmp_<pid>_<n>" (lib/shmem_win32.c); the pid is a Windows process id */
		return strncmp(id, "llmp_", 5) ? 0 : parse_pid(id + 5, "_");
	case LLMP_SHMEM_KMOD:
	case LLMP_SHMEM_SERVED:
		/* told at create/attach by the module (SEG_INFO) or the server (v2) */
		return (long)(intptr_t)m->priv;
#if !defined(_WIN32)
	case LLMP_SHMEM_SYSV: {
		struct shmid_ds ds;
		long sid = 0;
		size_t k;

		/* the whole id is a decimal shmid */
		for (k = 0; id[k] >= '0' && id[k] <= '9' && k < 10; k++)
			sid = sid * 10 + (id[k] - '0');
		if (!k || id[k] || sid > 0x7fffffffL || shmctl((int)sid, IPC_STAT, &ds) < 0)
			return 0;
		return (long)ds.shm_cpid;
	}
#endif
	default:
		return 0;
	}
}
