// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * Where a SERVED server's socket lives and who is on the other end of it:
 * socket addresses, the default path in a private directory
 * ($XDG_RUNTIME_DIR, else ${TMPDIR:-/tmp}/llmp-<euid>/, created 0700 and
 * checked), binding a server socket without ever removing anything but a
 * stale socket, and the client's check of the server's credentials.
 * Shared by the provider (lib/shmem_served.c) and the server
 * (lib/shmem_server.c).
 */
#include "internal.h"

#if defined(__linux__)

#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "served_proto.h"

int llmp_served_sockaddr(const char *path, struct sockaddr_un *sa, socklen_t *len)
{
	size_t n;

	if (!path || !*path)
		return llmp_err(-EINVAL, "shmem server: empty socket path");
	n = strlen(path);
	memset(sa, 0, sizeof(*sa));
	sa->sun_family = AF_UNIX;
	if (path[0] == '@') {
		if (n < 2 || n > sizeof(sa->sun_path))
			return llmp_err(-EINVAL, "shmem server: abstract socket name '%.40s' is "
					"empty or longer than %zu bytes", path,
					sizeof(sa->sun_path) - 1);
		memcpy(sa->sun_path + 1, path + 1, n - 1);
		*len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);
	} else {
		if (n >= sizeof(sa->sun_path))
			return llmp_err(-ENAMETOOLONG, "shmem server: socket path '%.40s...' longer "
					"than %zu bytes", path, sizeof(sa->sun_path) - 1);
		memcpy(sa->sun_path, path, n);
		*len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + 1);
	}
	return 0;
}

/* ---- the default path ------------------------------------------------------ */

/*
 * dir must be a directory itself (not a symlink to one), owned by our
 * effective uid, with mode 0700: nobody else can place or replace a socket
 * in it.  what names the directory in messages.
 */
static int private_dir_check(const char *dir, const char *what)
{
	struct stat st;
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);

	if (fd < 0) {
		int err = errno;

		if (err == ELOOP || err == ENOTDIR)
			return llmp_err(-EPERM, "served: %s %s is a symlink or not a directory: "
					"refusing it", what, dir);
		return llmp_err(-err, "served: %s %s: %s", what, dir, strerror(err));
	}
	if (fstat(fd, &st) < 0) {
		int err = errno;

		close(fd);
		return llmp_err(-err, "served: fstat of %s %s: %s", what, dir, strerror(err));
	}
	close(fd);
	if (st.st_uid != geteuid())
		return llmp_err(-EPERM, "served: %s %s belongs to uid %u, not to us (uid %u): "
				"refusing it (its owner could put a server of its own there)", what,
				dir, (unsigned)st.st_uid, (unsigned)geteuid());
	if ((st.st_mode & 07777) != 0700)
		return llmp_err(-EPERM, "served: %s %s has mode %04o, not 0700: refusing it", what,
				dir, (unsigned)(st.st_mode & 07777));
	return 0;
}

/* Create dir 0700 if it is missing (whatever the umask); an existing one is left alone. */
static int private_dir_make(const char *dir)
{
	int fd;

	if (mkdir(dir, 0700) < 0)
		return errno == EEXIST ? 0 : llmp_err(-errno, "served: mkdir %s: %s", dir,
						      strerror(errno));
	fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd >= 0) {
		if (fchmod(fd, 0700) < 0)
			llmp_log(LLMP_LOG_WARN, "served: chmod 0700 %s: %s", dir, strerror(errno));
		close(fd);
	}
	return 0;
}

int llmp_served_default_path(char *buf, size_t len, bool create)
{
	const char *xdg = getenv("XDG_RUNTIME_DIR"), *what, *name;
	char dir[PATH_MAX];
	int n, ret;

	if (!buf || !len)
		return llmp_err(-EINVAL, "served: no buffer for the default socket path");
	buf[0] = '\0';
	if (xdg && *xdg) {
		if (xdg[0] != '/')
			return llmp_err(-EINVAL, "served: XDG_RUNTIME_DIR '%.60s' is not an absolute "
					"path", xdg);
		n = snprintf(dir, sizeof(dir), "%s", xdg);
		what = "$XDG_RUNTIME_DIR";
		name = "llmp-shmem-server.sock";
	} else {
		const char *tmp = getenv("TMPDIR");

		if (!tmp || tmp[0] != '/')
			tmp = "/tmp";
		n = snprintf(dir, sizeof(dir), "%s/llmp-%u", tmp, (unsigned)geteuid());
		what = "the private directory";
		name = "shmem-server.sock";
	}
	if (n < 0 || (size_t)n >= sizeof(dir))
		return llmp_err(-ENAMETOOLONG, "served: default socket directory too long");
	if (create && xdg && *xdg)
		create = false; /* the session's directory exists or is not ours to make */
	if (create) {
		ret = private_dir_make(dir);
		if (ret < 0)
			return ret;
	}
	ret = private_dir_check(dir, what);
	if (ret < 0)
		return ret;
	n = snprintf(buf, len, "%s/%s", dir, name);
	if (n < 0 || (size_t)n >= len || (size_t)n >= sizeof(((struct sockaddr_un *)0)->sun_path))
		return llmp_err(-ENAMETOOLONG, "served: default socket path %s/%s is too long (at "
				"most 107 bytes): set LLMP_SHMEM_SERVER or give a path", dir, name);
	return 0;
}

int llmp_shmem_server_default_path(char *buf, size_t len)
{
	return llmp_served_default_path(buf, len, true);
}

/* ---- the client's side ------------------------------------------------------- */

int llmp_served_peer_check(int fd, const char *path)
{
	struct ucred cred;
	socklen_t clen = sizeof(cred);

	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &clen) < 0)
		return llmp_err(-errno, "served: cannot read the credentials of the shmem server "
				"at %s: %s", path, strerror(errno));
	if (cred.uid != geteuid() && cred.uid != 0)
		return llmp_err(-EACCES, "served: the shmem server at %s runs as uid %u (pid %d), "
				"neither our uid %u nor root: refusing it (it would see every "
				"segment it hands us)", path, (unsigned)cred.uid, (int)cred.pid,
				(unsigned)geteuid());
	return 0;
}

/* ---- the server's side ------------------------------------------------------- */

static const char *file_kind(mode_t m)
{
	return S_ISREG(m) ? "a regular file" : S_ISDIR(m) ? "a directory" :
	       S_ISLNK(m) ? "a symlink" : S_ISFIFO(m) ? "a FIFO" :
	       S_ISCHR(m) || S_ISBLK(m) ? "a device" : "not a socket";
}

/*
 * Something is at path: remove it if, and only if, it is a socket nobody
 * answers on (a dead server's).  0 removed (or gone already), else a
 * negative errno: -EEXIST for anything that is not a socket, -EADDRINUSE
 * for a socket that is live or cannot be probed.
 */
static int stale_socket_remove(const char *path, const struct sockaddr_un *sa, socklen_t len)
{
	struct stat st, again;
	int probe, cerr = 0;

	if (lstat(path, &st) < 0)
		return errno == ENOENT ? 0 : llmp_err(-errno, "shmem server: lstat %s: %s", path,
						      strerror(errno));
	if (!S_ISSOCK(st.st_mode))
		return llmp_err(-EEXIST, "shmem server: %s exists and is %s, not a socket: "
				"refusing to replace it (remove it, or choose another path)", path,
				file_kind(st.st_mode));
	probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (probe < 0)
		return llmp_err(-errno, "shmem server: socket: %s", strerror(errno));
	if (connect(probe, (const struct sockaddr *)sa, len) < 0)
		cerr = errno;
	close(probe);
	if (cerr == 0)
		return llmp_err(-EADDRINUSE, "shmem server: a server already listens on %s", path);
	if (cerr != ECONNREFUSED)
		return llmp_err(-EADDRINUSE, "shmem server: cannot tell whether the socket %s is "
				"stale (%s): leaving it", path, strerror(cerr));
	/* still the socket we probed (not swapped for something else meanwhile) */
	if (lstat(path, &again) < 0 || again.st_dev != st.st_dev || again.st_ino != st.st_ino)
		return llmp_err(-EADDRINUSE, "shmem server: %s changed while we looked at it", path);
	if (unlink(path) < 0 && errno != ENOENT)
		return llmp_err(-errno, "shmem server: removing the stale socket %s: %s", path,
				strerror(errno));
	llmp_log(LLMP_LOG_INFO, "shmem server: removed the stale socket %s", path);
	return 0;
}

int llmp_served_listen(const char *path, struct stat *bound)
{
	struct sockaddr_un sa;
	socklen_t len;
	int fd, ret;

	memset(bound, 0, sizeof(*bound));
	ret = llmp_served_sockaddr(path, &sa, &len);
	if (ret < 0)
		return ret;
	for (int tries = 0;; tries++) {
		int err;

		fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
		if (fd < 0)
			return llmp_err(-errno, "shmem server: socket: %s", strerror(errno));
		if (bind(fd, (struct sockaddr *)&sa, len) == 0)
			break;
		err = errno;
		close(fd);
		if (err == EADDRINUSE && path[0] != '@' && tries == 0) {
			ret = stale_socket_remove(path, &sa, len);
			if (ret < 0)
				return ret;
			continue;
		}
		if (err == EADDRINUSE)
			return llmp_err(-EADDRINUSE, "shmem server: a server already listens on %s",
					path);
		return llmp_err(-err, "shmem server: bind %s: %s", path, strerror(err));
	}
	if (path[0] != '@' && lstat(path, bound) < 0)
		memset(bound, 0, sizeof(*bound));
	if (listen(fd, 128) < 0) {
		int err = errno;

		close(fd);
		llmp_served_unlink(path, bound);
		return llmp_err(-err, "shmem server: listen on %s: %s", path, strerror(err));
	}
	return fd;
}

void llmp_served_unlink(const char *path, const struct stat *bound)
{
	struct stat st;

	if (!path || path[0] == '@' || !bound->st_ino)
		return;
	/* only the socket we bound: never a file someone put there after us */
	if (lstat(path, &st) == 0 && S_ISSOCK(st.st_mode) && st.st_dev == bound->st_dev &&
	    st.st_ino == bound->st_ino)
		unlink(path);
}

#else /* !__linux__ */

int llmp_shmem_server_default_path(char *buf, size_t len)
{
	if (buf && len)
		buf[0] = '\0';
	return llmp_err(-ENODEV, "shmem server: needs memfd and SCM_RIGHTS (Linux only so far)");
}

#endif
