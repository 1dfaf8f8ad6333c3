// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * Who is at the other end of a connected socket: the peer's uid, for the
 * broker's registration and quit checks.
 *
 * A Unix socket tells it directly (SO_PEERCRED).  For TCP the kernel knows
 * only when the peer's socket lives on this host: a loopback peer's socket
 * is found by its 4-tuple with NETLINK_SOCK_DIAG (inet_diag, the interface
 * ss(8) uses; no privilege needed) and its owner is the uid that created
 * it.  A socket that is no longer held by any process (closed: orphaned or
 * in TIME_WAIT) reports uid 0 and inode 0; such an answer is "unknown",
 * never root.  Where sock_diag cannot answer (the inet_diag modules are not
 * loaded and cannot be, as in a minimal guest, or netlink is filtered), the
 * same socket is looked up in /proc/net/tcp and tcp6, whose lines carry
 * each socket's owner and inode.  Any other TCP peer is remote: its uid
 * means nothing here.
 */
#include "internal.h"

#if defined(__linux__)

#include <arpa/inet.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

/* 127.0.0.0/8, ::1, or 127.x mapped into IPv6. */
static bool addr_loopback(const struct sockaddr_storage *ss)
{
	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *s = (const void *)ss;

		return (ntohl(s->sin_addr.s_addr) >> 24) == 127;
	}
	if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *s = (const void *)ss;
		const uint8_t *a = s->sin6_addr.s6_addr;

		if (IN6_IS_ADDR_LOOPBACK(&s->sin6_addr))
			return true;
		return IN6_IS_ADDR_V4MAPPED(&s->sin6_addr) && a[12] == 127;
	}
	return false;
}

/* Fill one end of an inet_diag socket id; an IPv4-mapped address becomes IPv4. */
static int diag_end(const struct sockaddr_storage *ss, int *family, __be16 *port, __be32 addr[4])
{
	memset(addr, 0, 16);
	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *s = (const void *)ss;

		*family = AF_INET;
		*port = s->sin_port;
		addr[0] = s->sin_addr.s_addr;
		return 0;
	}
	if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *s = (const void *)ss;

		*port = s->sin6_port;
		if (IN6_IS_ADDR_V4MAPPED(&s->sin6_addr)) {
			*family = AF_INET;
			memcpy(addr, s->sin6_addr.s6_addr + 12, 4);
		} else {
			*family = AF_INET6;
			memcpy(addr, s->sin6_addr.s6_addr, 16);
		}
		return 0;
	}
	return -EAFNOSUPPORT;
}

/*
 * The owner of the TCP socket whose local end is `them` and remote end
 * `us` (the peer's side of our connection): 0 with *uid, -ENOENT not on
 * this host or no longer owned, other <0 netlink errors.
 */
static int diag_uid(const struct sockaddr_storage *them, const struct sockaddr_storage *us,
		    uint32_t *uid)
{
	struct {
		struct nlmsghdr nlh;
		struct inet_diag_req_v2 r;
	} req;
	struct sockaddr_nl sa = { .nl_family = AF_NETLINK };
	struct timeval tv = { .tv_sec = 1 };
	long buf[2048 / sizeof(long)];
	int fam_them, fam_us, fd, ret = -ENOENT;
	ssize_t n;

	memset(&req, 0, sizeof(req));
	if (diag_end(them, &fam_them, &req.r.id.idiag_sport, req.r.id.idiag_src) < 0 ||
	    diag_end(us, &fam_us, &req.r.id.idiag_dport, req.r.id.idiag_dst) < 0 ||
	    fam_them != fam_us)
		return -EAFNOSUPPORT;
	req.nlh.nlmsg_len = sizeof(req);
	req.nlh.nlmsg_type = SOCK_DIAG_BY_FAMILY;
	req.nlh.nlmsg_flags = NLM_F_REQUEST; /* one exact lookup, not a dump */
	req.nlh.nlmsg_seq = 1;
	req.r.sdiag_family = (uint8_t)fam_them;
	req.r.sdiag_protocol = IPPROTO_TCP;
	req.r.idiag_states = ~0u;
	req.r.id.idiag_cookie[0] = INET_DIAG_NOCOOKIE;
	req.r.id.idiag_cookie[1] = INET_DIAG_NOCOOKIE;

	fd = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
	if (fd < 0)
		return -errno;
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	if (sendto(fd, &req, sizeof(req), 0, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		ret = -errno;
		goto out;
	}
	n = recv(fd, buf, sizeof(buf), 0);
	if (n < 0) {
		ret = -errno;
		goto out;
	}
	for (struct nlmsghdr *h = (struct nlmsghdr *)buf; NLMSG_OK(h, (size_t)n);
	     h = NLMSG_NEXT(h, n)) {
		if (h->nlmsg_type == NLMSG_ERROR) {
			const struct nlmsgerr *e = NLMSG_DATA(h);

			if (h->nlmsg_len >= NLMSG_LENGTH(sizeof(*e)) && e->error)
				ret = e->error;
			break;
		}
		if (h->nlmsg_type == SOCK_DIAG_BY_FAMILY &&
		    h->nlmsg_len >= NLMSG_LENGTH(sizeof(struct inet_diag_msg))) {
			const struct inet_diag_msg *m = NLMSG_DATA(h);

			/* inode 0: nobody holds it any more (orphan, TIME_WAIT): uid is 0, not root */
			if (m->idiag_inode == 0) {
				ret = -ENOENT;
				break;
			}
			*uid = m->idiag_uid;
			ret = 0;
			break;
		}
	}
out:
	close(fd);
	return ret;
}


/* One end as /proc/net/tcp prints it: raw address words in %08X, port in host order. */
static void proc_end(const struct sockaddr_storage *ss, bool v6, char *out, size_t cap)
{
	uint8_t a[16] = { 0 };
	uint32_t w[4];
	uint16_t port;

	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *s = (const void *)ss;

		port = ntohs(s->sin_port);
		if (v6) { /* as an IPv4-mapped IPv6 address */
			a[10] = a[11] = 0xff;
			memcpy(a + 12, &s->sin_addr, 4);
		} else {
			memcpy(a, &s->sin_addr, 4);
		}
	} else {
		const struct sockaddr_in6 *s = (const void *)ss;

		port = ntohs(s->sin6_port);
		if (!v6 && IN6_IS_ADDR_V4MAPPED(&s->sin6_addr))
			memcpy(a, s->sin6_addr.s6_addr + 12, 4);
		else
			memcpy(a, s->sin6_addr.s6_addr, 16);
	}
	memcpy(w, a, sizeof(w));
	if (v6)
		snprintf(out, cap, "%08X%08X%08X%08X:%04X", w[0], w[1], w[2], w[3], port);
	else
		snprintf(out, cap, "%08X:%04X", w[0], port);
}

/*
 * The fallback of diag_uid(): the same lookup in /proc/net/tcp and
 * /proc/net/tcp6.  0 with *uid, -ENOENT if no line matches or the socket
 * has no owner (inode 0).
 */
static int proc_uid(const struct sockaddr_storage *them, const struct sockaddr_storage *us,
		    uint32_t *uid)
{
	static const char *const files[2] = { "/proc/net/tcp", "/proc/net/tcp6" };
	int ret = -ENOENT;

	for (int v6 = 0; v6 < 2 && ret == -ENOENT; v6++) {
		char want_l[48], want_r[48], line[512], l[48], r[48];
		unsigned long inode;
		unsigned int u;
		FILE *f;

		proc_end(them, v6, want_l, sizeof(want_l));
		proc_end(us, v6, want_r, sizeof(want_r));
		f = fopen(files[v6], "re");
		if (!f)
			continue;
		while (fgets(line, sizeof(line), f)) {
			if (sscanf(line, " %*u: %47s %47s %*x %*x:%*x %*x:%*x %*x %u %*d %lu", l, r,
				   &u, &inode) != 4)
				continue; /* the header */
			if (strcasecmp(l, want_l) || strcasecmp(r, want_r))
				continue;
			if (inode != 0) {
				*uid = u;
				ret = 0;
			}
			break;
		}
		fclose(f);
	}
	return ret;
}

/* Set once procfs answered where sock_diag could not: skip sock_diag then. */
static atomic_bool diag_broken;

int llmp_peer_cred_get(int fd, struct llmp_peer_cred *c)
{
	struct sockaddr_storage us, them;
	socklen_t ul = sizeof(us), tl = sizeof(them);
	bool forced;
	int ret;

	memset(c, 0, sizeof(*c));
	if (getsockname(fd, (struct sockaddr *)&us, &ul) < 0 ||
	    getpeername(fd, (struct sockaddr *)&them, &tl) < 0)
		return -errno;
	if (us.ss_family == AF_UNIX) {
		struct ucred uc;
		socklen_t l = sizeof(uc);

		c->local = true;
		if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &uc, &l) < 0)
			return -errno;
		c->known = c->gid_known = true;
		c->uid = uc.uid;
		c->gid = uc.gid;
		c->pid = uc.pid;
		return 0;
	}
	if (!addr_loopback(&them))
		return 0; /* remote: no uid */
	c->local = true;
	/* LLMP_TEST_NO_SOCK_DIAG=1: as if sock_diag were missing (tests of the fallback) */
	forced = getenv("LLMP_TEST_NO_SOCK_DIAG") != NULL;
	if (forced || atomic_load_explicit(&diag_broken, memory_order_relaxed))
		ret = -EPROTONOSUPPORT;
	else
		ret = diag_uid(&them, &us, &c->uid);
	if (ret < 0 && ret != -EAFNOSUPPORT) {
		/* no answer from sock_diag (or "not found", which procfs may still know) */
		int pret = proc_uid(&them, &us, &c->uid);

		/*
		 * procfs knows a socket sock_diag did not: sock_diag has no
		 * inet_diag handler here, and each request would make the
		 * kernel try to load one (a modprobe per accept).  Ask procfs
		 * from now on.  Relaxed: a hint, any thread may set it.
		 */
		if (pret == 0 && !forced &&
		    !atomic_exchange_explicit(&diag_broken, true, memory_order_relaxed))
			llmp_log(LLMP_LOG_INFO, "peercred: sock_diag does not answer (%d); peers' "
				 "owners come from /proc/net/tcp", ret);
		if (pret == 0 || ret != -ENOENT)
			ret = pret;
	}
	if (ret == 0)
		c->known = true;
	else
		llmp_log(LLMP_LOG_DEBUG, "peercred: no owner for a loopback peer (%d)", ret);
	return ret == -ENOENT ? 0 : ret;
}

#else

int llmp_peer_cred_get(int fd, struct llmp_peer_cred *c)
{
	(void)fd;
	c->local = c->known = c->gid_known = false;
	c->uid = c->gid = 0;
	c->pid = 0;
	return 0;
}

#endif
