/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/* Internal helpers shared by the library's files.  Not installed. */
#ifndef LLMP_INTERNAL_H
#define LLMP_INTERNAL_H

#include <errno.h>
#include <stdarg.h>
#include "llmp/shmem.h"

#if defined(_WIN32)
/* POSIX errno values mingw-w64 lacks; above the ones it defines (up to 140). */
#ifndef ESTALE
#define ESTALE 200
#endif
#ifndef ESHUTDOWN
#define ESHUTDOWN 201
#endif
#endif

/*
 * Everything declared in internal headers is hidden from libllmp.so, even
 * when its name starts with llmp_ (the version script exports llmp_*).
 * Internal headers other than this one wrap their declarations the same way.
 */
#if defined(__GNUC__) && !defined(_WIN32)
#define LLMP_HIDDEN_BEGIN _Pragma("GCC visibility push(hidden)")
#define LLMP_HIDDEN_END _Pragma("GCC visibility pop")
#else
#define LLMP_HIDDEN_BEGIN
#define LLMP_HIDDEN_END
#endif

LLMP_HIDDEN_BEGIN

#if defined(__GNUC__) && defined(_WIN32)
#define LLMP_PRINTF(a, b) __attribute__((format(gnu_printf, a, b)))
#define LLMP_LIKELY(x) __builtin_expect(!!(x), 1)
#define LLMP_UNLIKELY(x) __builtin_expect(!!(x), 0)
#elif defined(__GNUC__)
#define LLMP_PRINTF(a, b) __attribute__((format(printf, a, b)))
#define LLMP_LIKELY(x) __builtin_expect(!!(x), 1)
#define LLMP_UNLIKELY(x) __builtin_expect(!!(x), 0)
#else
#define LLMP_PRINTF(a, b)
#define LLMP_LIKELY(x) (x)
#define LLMP_UNLIKELY(x) (x)
#endif

/* Log through the user's callback (if any) at level. */
void llmp_log(enum llmp_log_level level, const char *fmt, ...) LLMP_PRINTF(2, 3);
/*
 * Record an error: formats the message, stores it as this thread's last
 * error, logs it at LLMP_LOG_ERROR and returns err (a negative errno), so a
 * failing path reads:  return llmp_err(-EINVAL, "bad size %zu", size);
 */
int llmp_err(int err, const char *fmt, ...) LLMP_PRINTF(2, 3);
/*
 * Between these, llmp_err() still records the last error but logs it at
 * LLMP_LOG_DEBUG: for probes whose failure is an answer, not an error
 * (e.g. "is /dev/llmp usable?" when choosing the default provider).
 */
void llmp_log_probe_begin(void);
void llmp_log_probe_end(void);

/*
 * A 64-bit word of a structure in shared memory: 8-byte aligned on every
 * target (a plain uint64_t member is only 4-byte aligned on i386), so the
 * layout and the lock-free atomics are those of x86-64 (lib/layout_check.h).
 */
typedef uint64_t llmp_u64a __attribute__((aligned(8)));

/* ---- shared-memory back ends ------------------------------------------- */

struct llmp_provider;
struct llmp_shmem;

/*
 * One back end.  create/attach fill m->addr, m->size and m->desc (kind, id,
 * size) and may use m->fd / m->handle / m->priv; release undoes them
 * (unmap, close, and destroy if m->owner).  Functions return 0 or -errno
 * and report the reason through llmp_err().
 */
struct llmp_shmem_ops {
	enum llmp_shmem_kind kind;
	/* 0 if usable on this machine now, -ENODEV (with a reason) otherwise. */
	int (*probe)(void);
	int (*provider_init)(struct llmp_provider *p);	/* may be NULL */
	void (*provider_fini)(struct llmp_provider *p);	/* may be NULL */
	int (*create)(struct llmp_provider *p, size_t size, struct llmp_shmem *m);
	int (*attach)(struct llmp_provider *p, const struct llmp_shmem_desc *d,
		      struct llmp_shmem *m);
	void (*release)(struct llmp_provider *p, struct llmp_shmem *m);
	int (*pre_fork)(struct llmp_provider *p);		/* may be NULL */
	int (*post_fork)(struct llmp_provider *p, bool child);	/* may be NULL */
};

struct llmp_provider {
	enum llmp_shmem_kind kind;
	const struct llmp_shmem_ops *ops;
	void *priv;		/* back-end state */
	char *socket_path;	/* SERVED: server socket path (owned) */
};

struct llmp_shmem {
	struct llmp_provider *p;
	void *addr;
	size_t size;
	struct llmp_shmem_desc desc;
	int fd;			/* -1 if none */
	bool owner;		/* created here: destroy on release where needed */
	void *handle;		/* back-end handle (e.g. Win32 HANDLE) */
	void *priv;		/* back-end state */
	/* The object as create/attach found it (llmp_shmem_note_file): identity, owner. */
	bool file_known;
	uint32_t file_uid, file_gid, file_mode;
	uint64_t file_dev, file_ino;
};

/*
 * Ops for a back end that does not exist on this platform (e.g. SYSV on
 * Windows): every call fails with -ENODEV and says why.  Use inside the
 * #else branch of the back end's platform guard.
 */
#define LLMP_SHMEM_UNAVAILABLE_OPS(name, KIND, why)                                  \
	static int name##_unavail_probe(void)                                        \
	{                                                                            \
		return llmp_err(-ENODEV, "%s", why);                                 \
	}                                                                            \
	static int name##_unavail_create(struct llmp_provider *p, size_t size,       \
					 struct llmp_shmem *m)                       \
	{                                                                            \
		(void)p; (void)size; (void)m;                                        \
		return name##_unavail_probe();                                       \
	}                                                                            \
	static int name##_unavail_attach(struct llmp_provider *p,                    \
					 const struct llmp_shmem_desc *d,            \
					 struct llmp_shmem *m)                       \
	{                                                                            \
		(void)p; (void)d; (void)m;                                           \
		return name##_unavail_probe();                                       \
	}                                                                            \
	static void name##_unavail_release(struct llmp_provider *p, struct llmp_shmem *m) \
	{                                                                            \
		(void)p; (void)m;                                                    \
	}                                                                            \
	const struct llmp_shmem_ops llmp_shmem_##name##_ops = {                      \
		.kind = KIND,                                                        \
		.probe = name##_unavail_probe,                                       \
		.create = name##_unavail_create,                                     \
		.attach = name##_unavail_attach,                                     \
		.release = name##_unavail_release,                                   \
	}

#if !defined(_WIN32)
/* Release for fd-backed kinds: munmap m->addr, close m->fd (either may be unset). */
void llmp_shmem_release_fd_mapping(struct llmp_provider *p, struct llmp_shmem *m);
#endif

/*
 * A watch on a peer process (lib/pidwatch.c).  Start with { .fd = -1 }.
 * set: watch pid (<= 0 or our own pid: unknown, never "dead"); 1 if it has
 * already exited, else 0.  dead: 1 once it has exited (a zombie counts).
 */
struct llmp_pidwatch {
	long pid;
	int fd;		/* pidfd, -1: none (kill(pid, 0) instead) */
};
int llmp_pidwatch_set(struct llmp_pidwatch *w, long pid);
int llmp_pidwatch_dead(const struct llmp_pidwatch *w);
void llmp_pidwatch_close(struct llmp_pidwatch *w);
/*
 * 1 if pid has exited or is exiting: gone, a zombie (/proc/<pid>/stat state
 * Z or X), or without an address space any more; else 0 (alive, or not
 * known here).  For a "does it map X?" check that must not mistake a dying
 * process, whose maps are already empty, for another one.
 */
int llmp_pid_exiting(long pid);

extern const struct llmp_shmem_ops llmp_shmem_kmod_ops;
extern const struct llmp_shmem_ops llmp_shmem_memfd_ops;
extern const struct llmp_shmem_ops llmp_shmem_posix_ops;
extern const struct llmp_shmem_ops llmp_shmem_sysv_ops;
extern const struct llmp_shmem_ops llmp_shmem_ashmem_ops;
extern const struct llmp_shmem_ops llmp_shmem_win32_ops;
extern const struct llmp_shmem_ops llmp_shmem_served_ops;

/*
 * The pid of the process that created segment m, read from its id (MEMFD
 * "m<pid>:...", POSIX "/libafl_<pid>_<n>", WIN32 "llmp_<pid>_<n>"), from the
 * kernel (SYSV IPC_STAT shm_cpid), or told at attach (KMOD SEG_INFO, SERVED
 * server v2); 0 when unknown (ASHMEM, foreign names, another pid namespace).
 */
long llmp_shmem_creator_pid(const struct llmp_shmem *m);
/*
 * Restart after exec: take over the destruction of a POSIX/SYSV segment our
 * pid created when no mapping of this process image owns it (the owner was
 * an earlier image).  1 adopted, 0 not (other kind, not ours, owned here).
 */
int llmp_shmem_adopt(struct llmp_shmem *m);

/* ---- segment identity and owner (lib/shmem_ident.c) ----------------------- */

/*
 * What a segment is, whatever its id's spelling: a file (device + inode:
 * MEMFD, POSIX, SERVED, ASHMEM), a SysV shmid, or a /dev/llmp segment id.
 * Two mappings of the same memory have equal identities.
 */
enum llmp_ident_space { LLMP_IDENT_NONE = 0, LLMP_IDENT_FILE, LLMP_IDENT_SYSV, LLMP_IDENT_KMOD };
struct llmp_shmem_ident {
	uint32_t space;
	uint64_t a, b;
};

/*
 * Who is at the other end of a socket (lib/peercred.c).  local: a Unix
 * socket or a loopback TCP peer; known: uid (and gid if gid_known) valid.
 */
struct llmp_peer_cred {
	bool local, known, gid_known;
	uint32_t uid, gid;
	long pid;
};
/* Fill *c for the connected socket fd: 0 (c->known may still be false), or -errno. */
int llmp_peer_cred_get(int fd, struct llmp_peer_cred *c);

/* Providers: record what fstat(fd) says of the object just mapped from fd. */
void llmp_shmem_note_file(struct llmp_shmem *m, int fd);
/* The identity of the mapped segment: 0, or <0 when it cannot be told (e.g. WIN32). */
int llmp_shmem_ident(const struct llmp_shmem *m, struct llmp_shmem_ident *id);
bool llmp_shmem_ident_eq(const struct llmp_shmem_ident *x, const struct llmp_shmem_ident *y);
/* Owner uid of the segment (creator, or file owner): 0 with *uid, or <0 unknown. */
int llmp_shmem_owner_uid(const struct llmp_shmem *m, uint32_t *uid);
/*
 * Could the peer have opened (read and written) the mapped segment m itself?
 * 0 yes; -EACCES no, with the reason in why; root may open everything.
 */
int llmp_shmem_may_open(const struct llmp_shmem *m, const struct llmp_peer_cred *peer,
			char *why, size_t cap);
/*
 * Is d spelled the one way its provider writes it (MEMFD with its
 * generation when there is room, decimal shmids without leading zeros, ...)?
 * 0, or -EINVAL: an alias the broker refuses.
 */
int llmp_shmem_id_canonical(const struct llmp_shmem_desc *d);

LLMP_HIDDEN_END

#endif /* LLMP_INTERNAL_H */
