// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * LibAFL-compatible TCP registration, the client side: the blocking connect
 * sequence LibAFL's create_attach_to_tcp follows (dial, read the broker's
 * hello, send one request, read the answer), for registration, quit and
 * our extension query.  The broker side is lib/tcp.c.
 */
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "llmp/broker.h"
#include "tcp.h"
#include "postcard.h"
#include "auth.h"
#include "llmp/auth.h"
#include "broker_internal.h"
#include "ctl.h"

static int dial(const char *addr, uint16_t port, int timeout_ms)
{
	int64_t end = llmp_now_ms() + timeout_ms;
	struct timeval tv = { .tv_sec = timeout_ms / 1000, .tv_usec = (timeout_ms % 1000) * 1000 };
	struct addrinfo *res, *ai;
	int ret, fd, one = 1;

	ret = llmp_tcp_resolve(addr, port, false, &res);
	if (ret < 0)
		return ret;
	for (;;) {
		ret = -ECONNREFUSED;
		for (ai = res; ai; ai = ai->ai_next) {
			fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
			if (fd < 0) {
				ret = -errno;
				continue;
			}
			if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) {
				freeaddrinfo(res);
				setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
				setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
				setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
				return fd;
			}
			ret = -errno;
			close(fd);
		}
		/* Like LibAFL: a refused connection is retried every 50 ms (the broker may be starting). */
		if (ret != -ECONNREFUSED || llmp_now_ms() >= end)
			break;
		nanosleep(&(struct timespec){ .tv_nsec = 50 * 1000000 }, NULL);
	}
	freeaddrinfo(res);
	return llmp_err(ret, "tcp: cannot connect to %s:%u", addr ? addr : "127.0.0.1", port);
}

int llmp_tcp_io_full(int fd, void *buf, size_t len, bool wr)
{
	size_t off = 0;

	while (off < len) {
		ssize_t n = wr ? send(fd, (char *)buf + off, len - off, MSG_NOSIGNAL)
			       : recv(fd, (char *)buf + off, len - off, 0);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return (errno == EAGAIN || errno == EWOULDBLOCK) ? -ETIMEDOUT : -errno;
		if (n == 0)
			return -ECONNRESET;
		off += (size_t)n;
	}
	return 0;
}

static int send_frame(int fd, const uint8_t *body, int n)
{
	uint8_t f[4 + 64];

	if (n < 0 || (size_t)n > sizeof(f) - 4)
		return -EINVAL;
	llmp_wire_put_len(f, (uint32_t)n);
	memcpy(f + 4, body, (size_t)n);
	return llmp_tcp_io_full(fd, f, 4 + (size_t)n, true);
}

/* Read one response frame into buf (cap bytes) and decode it. */
static int recv_resp(int fd, uint8_t *buf, size_t cap, struct llmp_wire_msg *m)
{
	uint8_t h[4];
	uint32_t len;
	int ret = llmp_tcp_io_full(fd, h, 4, false);

	if (ret < 0)
		return llmp_err(ret, "tcp: no answer from the broker");
	ret = llmp_wire_get_len(h, (uint32_t)cap, &len);
	if (ret < 0)
		return ret;
	ret = llmp_tcp_io_full(fd, buf, len, false);
	if (ret < 0)
		return llmp_err(ret, "tcp: the broker's answer was cut short");
	return llmp_wire_decode_resp(buf, len, m);
}

/*
 * The campaign secret (lib/auth.h), when LLMP_SECRET_FILE names one: our
 * nonce, the broker's challenge and proof (checked: a broker that cannot
 * prove the secret gets nothing of ours), then our proof.  0 or -errno.
 */
static int prove_secret(int fd, const uint8_t key[LLMP_AUTH_KEY_LEN])
{
	uint8_t f[4 + LLMP_AUTH_FRAME_MAX], nc[LLMP_AUTH_NONCE_LEN], nb[LLMP_AUTH_NONCE_LEN];
	uint8_t proof[LLMP_AUTH_PROOF_LEN], want[LLMP_AUTH_PROOF_LEN];
	struct llmp_wire_msg m;
	uint32_t len;
	int ret, n;

	ret = llmp_auth_nonce(nc);
	if (ret < 0)
		return ret;
	n = llmp_auth_encode(LLMP_TCP_REQ_AUTH_HELLO, nc, NULL, f + 4, sizeof(f) - 4);
	ret = n < 0 ? n : send_frame(fd, f + 4, n);
	if (ret < 0)
		return llmp_err(ret, "tcp: cannot send the campaign secret hello");
	ret = llmp_tcp_io_full(fd, f, 4, false);
	if (ret == 0)
		ret = llmp_wire_get_len(f, sizeof(f) - 4, &len) < 0 ? -EPROTO : 0;
	if (ret == 0)
		ret = llmp_tcp_io_full(fd, f + 4, len, false);
	if (ret < 0)
		return llmp_err(ret == -EPROTO ? ret : -EACCES, "tcp: the broker did not answer the "
				"campaign secret hello (a LibAFL broker, or one without a secret?)");
	if (llmp_auth_decode(LLMP_TCP_RESP_AUTH_CHALLENGE, f + 4, len, nb, proof) < 0) {
		if (llmp_wire_decode_resp(f + 4, len, &m) == 0 && m.type == LLMP_TCP_RESP_ERROR)
			return llmp_err(-EACCES, "tcp: the broker refused the campaign secret: %.*s",
					(int)(m.text_len > 200 ? 200 : m.text_len), m.text);
		return llmp_err(-EPROTO, "tcp: malformed campaign secret challenge");
	}
	llmp_auth_proof(key, true, nc, nb, want);
	if (llmp_memeq_ct(proof, want, sizeof(want)))
		return llmp_err(-EACCES, "tcp: the broker does not know the campaign secret "
				"(wrong %s, or not the broker you meant)", LLMP_SECRET_ENV);
	llmp_auth_proof(key, false, nc, nb, proof);
	n = llmp_auth_encode(LLMP_TCP_REQ_AUTH_PROOF, proof, NULL, f + 4, sizeof(f) - 4);
	ret = n < 0 ? n : send_frame(fd, f + 4, n);
	return ret < 0 ? llmp_err(ret, "tcp: cannot send the campaign secret proof") : 0;
}

static _Thread_local int dial_budget_ms;

void llmp_tcp_dial_budget(int ms)
{
	dial_budget_ms = ms;
}

/*
 * Connect to a broker, read its hello into *m and, with LLMP_SECRET_FILE
 * set, prove the secret: the socket, or -errno.
 */
static int dial_broker(const char *addr, uint16_t port, uint8_t *buf, size_t cap,
		       struct llmp_wire_msg *m)
{
	uint8_t key[LLMP_AUTH_KEY_LEN];
	int secret = llmp_secret_from_env(key);
	int fd, ret;

	if (secret < 0)
		return secret;
	fd = dial(addr, port, dial_budget_ms > 0 ? dial_budget_ms : LLMP_TCP_CONNECT_TIMEOUT_MS);
	if (fd < 0)
		return fd;
	ret = recv_resp(fd, buf, cap, m);
	if (ret == 0 && m->type != LLMP_TCP_RESP_BROKER_CONNECT_HELLO)
		ret = llmp_err(-EPROTO, "tcp: expected the broker's hello, got response %u", m->type);
	if (ret == 0 && secret)
		ret = prove_secret(fd, key);
	memset(key, 0, sizeof(key));
	if (ret < 0) {
		close(fd);
		return ret;
	}
	return fd;
}

/*
 * The broker's page id does not fit our provider: name the provider whose
 * spelling it has, so the user learns the fix (the same -P on both sides).
 */
static int kind_mismatch(const struct llmp_wire_desc *w, enum llmp_shmem_kind ours)
{
	static const enum llmp_shmem_kind kinds[] = { LLMP_SHMEM_KMOD, LLMP_SHMEM_MEMFD,
						       LLMP_SHMEM_POSIX, LLMP_SHMEM_SYSV };
	struct llmp_shmem_desc d = { .size = 1 };
	size_t n = strnlen((const char *)w->id, sizeof(w->id));

	memcpy(d.id, w->id, n < sizeof(d.id) ? n : sizeof(d.id) - 1);
	d.kind = ours;
	if (llmp_shmem_id_canonical(&d) == 0)
		return 0;
	for (unsigned i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
		d.kind = kinds[i];
		if (kinds[i] != ours && llmp_shmem_id_canonical(&d) == 0)
			return llmp_err(-EPROTOTYPE, "tcp: the broker's pages are %s segments (id '%s'), "
					"this client uses %s: use the broker's provider (llmp-client "
					"-P %s)", llmp_shmem_kind_name(kinds[i]), d.id,
					llmp_shmem_kind_name(ours), llmp_shmem_kind_name(kinds[i]));
	}
	return 0;
}

int llmp_client_connect_tcp(struct llmp_provider *p, const char *addr, uint16_t port,
			    const struct llmp_client_opts *opts, struct llmp_client **out)
{
	uint8_t buf[4096], req[64];
	struct llmp_wire_msg m, hello = { .type = LLMP_TCP_REQ_LOCAL_CLIENT_HELLO };
	struct llmp_shmem_desc bd, od;
	struct llmp_client *c = NULL;
	struct llmp_waker *w;
	int fd, ret, n;

	if (!out)
		return llmp_err(-EINVAL, "client_connect_tcp: NULL out pointer");
	*out = NULL;
	if (!p)
		return llmp_err(-EINVAL, "client_connect_tcp: NULL provider");
	fd = dial_broker(addr, port, buf, sizeof(buf), &m);
	if (fd < 0)
		return fd;
	ret = kind_mismatch(&m.desc, llmp_provider_kind(p));
	if (ret == 0)
		ret = llmp_wire_desc_to_shmem(&m.desc, llmp_provider_kind(p), &bd);
	if (ret < 0)
		goto out;
	ret = llmp_client_new(p, &bd, opts, &c);
	if (ret < 0)
		goto out;
	ret = llmp_client_out_desc(c, &od);
	if (ret < 0)
		goto out;
	llmp_wire_desc_from_shmem(&od, &hello.desc);
	n = llmp_wire_encode_req(&hello, req, sizeof(req));
	ret = send_frame(fd, req, n);
	if (ret < 0) {
		llmp_err(ret, "tcp: cannot send the client hello");
		goto out;
	}
	ret = recv_resp(fd, buf, sizeof(buf), &m);
	if (ret < 0)
		goto out;
	if (m.type == LLMP_TCP_RESP_ERROR) {
		ret = llmp_err(-ECONNREFUSED, "tcp: the broker refused: %.*s", (int)m.text_len, m.text);
		goto out;
	}
	if (m.type != LLMP_TCP_RESP_LOCAL_CLIENT_ACCEPTED || m.id == 0) {
		ret = llmp_err(-EPROTO, "tcp: expected LocalClientAccepted, got response %u", m.type);
		goto out;
	}
	llmp_client_set_id(c, m.id);
	/*
	 * Our broker's loop hands out a control segment so that commits wake it
	 * when it sleeps; a LibAFL broker (or a listener without a loop) has
	 * none, and the client then works without pokes.
	 */
	if (llmp_waker_connect_tcp(p, addr, port, &w) == 0)
		llmp_client_set_waker(c, w);
	*out = c;
	c = NULL;
	ret = 0;
out:
	if (c)
		llmp_client_free(c);
	close(fd);
	return ret;
}

int llmp_tcp_client_quit(const char *addr, uint16_t port, uint32_t client_id)
{
	uint8_t buf[4096], req[16];
	struct llmp_wire_msg m, q = { .type = LLMP_TCP_REQ_CLIENT_QUIT, .id = client_id };
	int fd, ret;

	fd = dial_broker(addr, port, buf, sizeof(buf), &m);
	if (fd < 0)
		return fd;
	ret = send_frame(fd, req, llmp_wire_encode_req(&q, req, sizeof(req)));
	if (ret < 0)
		llmp_err(ret, "tcp: cannot send the quit request");
	/* Wait for the broker to close: it has acted on the request by then. */
	if (ret == 0)
		(void)recv(fd, buf, 1, 0);
	close(fd);
	return ret;
}

int llmp_tcp_ext_query(const char *addr, uint16_t port, struct llmp_wire_msg *info)
{
	uint8_t buf[4096], req[16];
	struct llmp_wire_msg m, q = { .type = LLMP_TCP_REQ_EXT_QUERY };
	int fd, ret;

	fd = dial_broker(addr, port, buf, sizeof(buf), &m);
	if (fd < 0)
		return fd;
	ret = send_frame(fd, req, llmp_wire_encode_req(&q, req, sizeof(req)));
	/* A LibAFL broker hangs up on a request it does not know. */
	if (ret == 0 && recv_resp(fd, buf, sizeof(buf), &m) < 0)
		ret = llmp_err(-EOPNOTSUPP, "tcp: the broker has no extensions (not an llmp broker?)");
	if (ret == 0 && m.type != LLMP_TCP_RESP_EXT_INFO)
		ret = llmp_err(-EOPNOTSUPP, "tcp: the broker has no extensions (response %u)", m.type);
	close(fd);
	if (ret == 0) {
		*info = m;
		info->text = NULL;
		info->text_len = 0;
	}
	return ret;
}

/* The broker's control segment, learnt with EXT_QUERY, attached as a waker. */
int llmp_waker_connect_tcp(struct llmp_provider *p, const char *addr, uint16_t port,
			   struct llmp_waker **out)
{
	struct llmp_shmem_desc d;
	struct llmp_wire_msg m;
	int ret;

	if (!out)
		return llmp_err(-EINVAL, "waker_connect_tcp: NULL out pointer");
	*out = NULL;
	if (!p)
		return llmp_err(-EINVAL, "waker_connect_tcp: NULL provider");
	ret = llmp_tcp_ext_query(addr, port, &m);
	if (ret < 0)
		return ret;
	if (m.id != LLMP_CTL_VERSION && m.id != LLMP_CTL_VERSION_WAKE)
		return llmp_err(-EOPNOTSUPP, "waker: the broker's control segment has version %u, "
				"we know %u and %u", m.id, LLMP_CTL_VERSION, LLMP_CTL_VERSION_WAKE);
	ret = llmp_wire_desc_to_shmem(&m.desc, llmp_provider_kind(p), &d);
	if (ret < 0)
		return ret;
	return llmp_waker_attach(p, &d, out);
}
