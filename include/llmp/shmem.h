/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * llmp shared-memory providers: one API over several back ends.
 *
 * A provider (struct llmp_provider) creates segments of a kind and attaches
 * to existing segments by description.  A description is plain data that can
 * be copied into a page, a TCP frame or the environment, and is enough for
 * another process to attach to the same memory.
 *
 * Every function returns 0 (or a documented positive value) on success and a
 * negative errno on failure; the reason is also passed to the log callback
 * (see llmp_set_log()) and kept in llmp_strerror_last().
 */
#ifndef LLMP_SHMEM_H
#define LLMP_SHMEM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Bytes of the printable id field, as in the LLMP protocol (19 chars + NUL). */
#define LLMP_SHMEM_ID_LEN 20

enum llmp_shmem_kind {
	LLMP_SHMEM_DEFAULT = 0, /* KMOD when /dev/llmp is usable, else the platform default */
	LLMP_SHMEM_KMOD = 1,    /* /dev/llmp (Linux kernel module) */
	LLMP_SHMEM_MEMFD = 2,   /* memfd_create; attach by /proc/<pid>/fd or inherited fd */
	LLMP_SHMEM_POSIX = 3,   /* shm_open names in /dev/shm */
	LLMP_SHMEM_SYSV = 4,    /* shmget; LibAFL's Linux default */
	LLMP_SHMEM_ASHMEM = 5,  /* Android /dev/ashmem */
	LLMP_SHMEM_WIN32 = 6,   /* Windows named file mappings */
	LLMP_SHMEM_SERVED = 7,  /* fds handed out by an llmp shmem server over a Unix socket */
	LLMP_SHMEM_KIND_MAX
};

/*
 * Description of a segment.  Fixed size, no pointers: copyable between
 * processes.  id is a NUL-terminated printable string of at most 19
 * characters; for SYSV it is the decimal shmid and for POSIX the shm_open
 * name, exactly as LibAFL writes them.
 */
struct llmp_shmem_desc {
	uint32_t kind;     /* enum llmp_shmem_kind, never DEFAULT in a valid desc */
	uint32_t reserved; /* must be 0 */
	uint64_t size;     /* bytes */
	char id[LLMP_SHMEM_ID_LEN];
	uint8_t pad[4];    /* must be 0 */
};

struct llmp_provider; /* opaque */
struct llmp_shmem;    /* opaque: one mapping of one segment in this process */

/* ---- logging and errors ------------------------------------------------ */

enum llmp_log_level { LLMP_LOG_ERROR = 0, LLMP_LOG_WARN = 1, LLMP_LOG_INFO = 2, LLMP_LOG_DEBUG = 3 };
typedef void (*llmp_log_fn)(void *ctx, enum llmp_log_level level, const char *msg);
/* Install a process-wide log callback (NULL: silent, the default). */
void llmp_set_log(llmp_log_fn fn, void *ctx, enum llmp_log_level max_level);
/* The message of the last error reported by the library on this thread ("" if none). */
const char *llmp_strerror_last(void);

/* ---- kinds ------------------------------------------------------------- */

/* "default", "kmod", "memfd", "posix", "sysv", "ashmem", "win32", "served"; NULL if invalid. */
const char *llmp_shmem_kind_name(enum llmp_shmem_kind kind);
/* Parse a kind name (as above); -EINVAL if unknown. */
int llmp_shmem_kind_from_name(const char *name, enum llmp_shmem_kind *out);
/* The kind DEFAULT resolves to on this machine right now. */
enum llmp_shmem_kind llmp_shmem_default_kind(void);

/* ---- providers --------------------------------------------------------- */

/*
 * Create a provider.  -ENODEV if the kind is not available on this platform
 * or machine (e.g. KMOD without /dev/llmp), -EINVAL for an invalid kind.
 * SERVED connects to the server socket named by $LLMP_SHMEM_SERVER, or the
 * default path (llmp_shmem_server_default_path()); use
 * llmp_provider_new_served() to choose.  A path starting with '@' names an
 * abstract socket.  The provider refuses a server that runs as neither our
 * effective uid nor root (-EACCES).
 */
int llmp_provider_new(enum llmp_shmem_kind kind, struct llmp_provider **out);
/* A SERVED provider talking to the server at socket_path (NULL: as above). */
int llmp_provider_new_served(const char *socket_path, struct llmp_provider **out);
enum llmp_shmem_kind llmp_provider_kind(const struct llmp_provider *p);
/* Free a provider.  Segments must have been released first. */
void llmp_provider_free(struct llmp_provider *p);

/*
 * Fork handling.  Call pre_fork() before fork() and post_fork() in both the
 * parent (child=false) and the child (child=true).  Segments mapped before
 * the fork stay valid in both.  A no-op for kinds that need nothing.
 */
int llmp_provider_pre_fork(struct llmp_provider *p);
int llmp_provider_post_fork(struct llmp_provider *p, bool child);

/* ---- segments ---------------------------------------------------------- */

/*
 * Largest segment size the library accepts (bytes): 1 TiB, or 1 GiB in a
 * 32-bit process (its address space holds no more; a larger size read from
 * a 64-bit peer is refused, never truncated).
 */
#if SIZE_MAX > 0xffffffffu
#define LLMP_SHMEM_MAX_SIZE (1ULL << 40)
#else
#define LLMP_SHMEM_MAX_SIZE (1ULL << 30)
#endif

/* Create a zero-filled segment of size bytes (1..LLMP_SHMEM_MAX_SIZE) and map it. */
int llmp_shmem_new(struct llmp_provider *p, size_t size, struct llmp_shmem **out);
/* Map an existing segment by description.  -ENOENT unknown id, -EINVAL bad desc. */
int llmp_shmem_attach(struct llmp_provider *p, const struct llmp_shmem_desc *d,
		      struct llmp_shmem **out);
void *llmp_shmem_addr(const struct llmp_shmem *m);
size_t llmp_shmem_size(const struct llmp_shmem *m);
const struct llmp_shmem_desc *llmp_shmem_desc(const struct llmp_shmem *m);
/* True if this mapping created the segment (and destroys it on release). */
bool llmp_shmem_is_owner(const struct llmp_shmem *m);
/*
 * Unmap and release.  The creator's release destroys segments of kinds that
 * need explicit removal (SYSV, POSIX).  NULL is a no-op.
 */
void llmp_shmem_put(struct llmp_shmem *m);

/* ---- descriptions ------------------------------------------------------ */

/* Validate a description (kind, id string, size, zero padding). */
int llmp_shmem_desc_check(const struct llmp_shmem_desc *d);
/*
 * Environment, LibAFL style: NAME = id, NAME_SIZE = decimal size, and
 * NAME_KIND = kind name (ours; absent means SYSV, LibAFL's Linux default).
 */
int llmp_shmem_desc_to_env(const struct llmp_shmem_desc *d, const char *name);
int llmp_shmem_desc_from_env(const char *name, struct llmp_shmem_desc *d);

/* ---- the shmem server (for SERVED) -------------------------------------- */

/*
 * The default socket path of a shmem server (used when none is given):
 * $XDG_RUNTIME_DIR/llmp-shmem-server.sock, else
 * ${TMPDIR:-/tmp}/llmp-<euid>/shmem-server.sock, the directory created
 * with mode 0700 if missing.  Either directory must belong to our
 * effective uid, have mode 0700 and not be a symlink, else -EPERM.  Writes
 * the path into buf (at most 108 bytes are needed); -ENAMETOOLONG if longer.
 */
int llmp_shmem_server_default_path(char *buf, size_t len);

enum llmp_shmem_server_mode {
	LLMP_SHMEM_SERVER_THREAD = 0,  /* serve from a thread of this process */
	LLMP_SHMEM_SERVER_PROCESS = 1, /* serve from a forked child process */
};
struct llmp_shmem_server; /* opaque */
/*
 * Start a server on socket_path (NULL: the default path).  -EADDRINUSE if
 * one runs there; -EEXIST if a file that is not a socket is there (only a
 * stale socket that nobody answers on is replaced).
 */
int llmp_shmem_server_start(const char *socket_path, enum llmp_shmem_server_mode mode,
			    struct llmp_shmem_server **out);
/*
 * Stop it, free every segment it still holds, remove its socket.  Call it in
 * the process that started the server; in a forked child it only closes that
 * child's copies and the server keeps running.
 */
void llmp_shmem_server_stop(struct llmp_shmem_server *s);

#ifdef __cplusplus
}
#endif
#endif /* LLMP_SHMEM_H */
