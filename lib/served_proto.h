/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * Wire format between a SERVED provider (lib/shmem_served.c) and the shmem
 * server (lib/shmem_server.c), over a Unix stream socket on one host.
 * Documentation/shmem-served.rst describes it in prose.
 *
 * Every message, in both directions, is a 16-byte header followed by
 * `length` bytes of body.  Integers are in host byte order (both ends run
 * on the same machine).  The first 8 bytes (magic, version, op) keep their
 * meaning in every future version, so a peer can always tell an old or a
 * new partner from garbage.
 *
 * A client opens with HELLO (the only request accepted before it); every
 * later request carries the negotiated version in its header.  Each request
 * gets exactly one reply, whose op is the request's op | SERVED_OP_REPLY
 * (or SERVED_OP_ERROR when the request's op could not be read).  Replies
 * to CREATE and ATTACH that succeed carry the segment's memfd as one
 * SCM_RIGHTS file descriptor, attached to the reply's first byte.
 */
#ifndef LLMP_SERVED_PROTO_H
#define LLMP_SERVED_PROTO_H

#include <stdint.h>

#include "llmp/shmem.h"

#define SERVED_MAGIC 0x534d4c4cu /* "LLMS" read as a little-endian u32 */
/*
 * Versions: 1, the first; 2 adds creator pids (HELLO reply size = the
 * client's pid as the server sees it; CREATE/ATTACH reply pid = the pid of
 * the process whose connection created the segment).  A version-1 peer
 * gets and sends exactly the bytes it always did (those fields are 0).
 */
#define SERVED_VERSION 2u	 /* the newest version this build speaks */
#define SERVED_VERSION_MIN 1u
#define SERVED_VERSION_PIDS 2u	 /* first version with creator pids */

enum served_op {
	SERVED_OP_HELLO = 1,   /* body: served_hello; reply value = version, pid = server pid,
				* (v2) size = the client's pid as the server sees it */
	SERVED_OP_CREATE = 2,  /* body: served_create; reply: id, size, fd, (v2) pid = creator */
	SERVED_OP_ATTACH = 3,  /* body: served_id; reply: id, size, fd, (v2) pid = creator */
	SERVED_OP_RELEASE = 4, /* body: served_id; reply value = references left in total */
	SERVED_OP_STAT = 5,    /* body: none; reply value = segments, size = bytes, clients */
	SERVED_OP_HOLD = 6,    /* body: none; reply value = fork hold number (before fork) */
	SERVED_OP_ADOPT = 7,   /* body: served_adopt; the hold's references move here */
	SERVED_OP_REPLY = 0x8000,
	SERVED_OP_ERROR = 0xffff, /* reply to a request whose header was unusable */
};

struct served_hdr {
	uint32_t magic;	  /* SERVED_MAGIC */
	uint16_t version; /* HELLO: the client's highest version; else the negotiated one */
	uint16_t op;	  /* enum served_op */
	uint32_t length;  /* body bytes that follow */
	uint32_t reserved; /* 0 */
};

struct served_hello {
	uint16_t min_version; /* lowest version the client speaks */
	uint16_t max_version; /* highest */
	uint32_t reserved;    /* 0 */
};

struct served_create {
	uint64_t size; /* bytes, 1..SERVED_MAX_SEG_SIZE */
};

struct served_adopt {
	uint32_t hold;	   /* number from a HOLD reply */
	uint32_t reserved; /* 0 */
};

struct served_id {
	char id[LLMP_SHMEM_ID_LEN]; /* NUL-terminated, NUL-padded */
};

struct served_reply {
	int32_t status;	 /* 0 or a negative errno */
	uint32_t value;	 /* per op, see enum served_op */
	uint64_t size;	 /* CREATE/ATTACH: segment bytes; STAT: bytes held;
			  * HELLO (v2): the client's pid in the server's pid namespace */
	uint32_t clients; /* STAT: connected clients */
	uint32_t pid;	 /* HELLO/STAT: the server's pid; CREATE/ATTACH (v2): the
			  * creator's pid in the server's pid namespace, 0 unknown */
	char id[LLMP_SHMEM_ID_LEN]; /* CREATE/ATTACH: the segment's id */
	uint32_t reserved; /* 0 */
	/* followed by (length - sizeof(struct served_reply)) bytes of message text, no NUL */
};

/* The largest request body (ATTACH/RELEASE: one id); longer requests are refused. */
#define SERVED_MAX_REQ_BODY 64u
/* The longest error message a reply carries. */
#define SERVED_MAX_MSG 200u
#define SERVED_MAX_REPLY_BODY (sizeof(struct served_reply) + SERVED_MAX_MSG)
/* Largest segment the server creates. */
#define SERVED_MAX_SEG_SIZE LLMP_SHMEM_MAX_SIZE
/* Server limits: live segments and connected clients. */
#define SERVED_MAX_SEGMENTS 65536u
#define SERVED_MAX_CLIENTS 1000u
/* Fork holds not yet adopted, and how long one waits (ms; env LLMP_SHMEM_SERVER_HOLD_MS). */
#define SERVED_MAX_HOLDS 4096u
#define SERVED_HOLD_MS_DEFAULT 30000u

#ifdef LLMP_INTERNAL_H
#include <stdbool.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
LLMP_HIDDEN_BEGIN
/* lib/served_sock.c */
/*
 * Fill sa and len for socket path: a leading '@' names an abstract socket
 * (Linux), anything else a filesystem path.  -EINVAL (reported) if empty
 * or too long.
 */
int llmp_served_sockaddr(const char *path, struct sockaddr_un *sa, socklen_t *len);
/*
 * The default socket path into buf: $XDG_RUNTIME_DIR/llmp-shmem-server.sock,
 * else ${TMPDIR:-/tmp}/llmp-<euid>/shmem-server.sock.  The directory must be
 * ours, mode 0700 and no symlink (-EPERM otherwise); create: make the
 * second one if it is missing.
 */
int llmp_served_default_path(char *buf, size_t len, bool create);
/* Client: the server on fd must run as our euid or root (-EACCES otherwise). */
int llmp_served_peer_check(int fd, const char *path);
/*
 * Server: bind and listen on path (non-blocking).  A socket file there that
 * nobody answers on is replaced; anything else that is not a socket is left
 * alone (-EEXIST); a live server gives -EADDRINUSE.  *bound identifies the
 * socket file (st_ino 0 for an abstract name).  Returns the fd.
 */
int llmp_served_listen(const char *path, struct stat *bound);
/* Server: remove path if it is still the socket that *bound describes. */
void llmp_served_unlink(const char *path, const struct stat *bound);
LLMP_HIDDEN_END
#endif

_Static_assert(sizeof(struct served_hdr) == 16, "served_hdr is 16 bytes");
_Static_assert(sizeof(struct served_hello) == 8, "served_hello is 8 bytes");
_Static_assert(sizeof(struct served_reply) == 48, "served_reply is 48 bytes");

#endif /* LLMP_SERVED_PROTO_H */
