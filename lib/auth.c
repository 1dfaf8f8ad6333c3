// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * The campaign secret: reading the secret file (and refusing one that others
 * can read), the nonces, the two HMAC-SHA256 proofs and the three auth frames
 * of the TCP handshake, plus llmp_broker_set_secret().  The protocol and the
 * threat model are in Documentation/security.rst.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "auth.h"
#include "broker_state.h"
#include "llmp/auth.h"
#include "postcard.h"

/* Domain separation: a broker's proof never passes as a client's, nor as another protocol's. */
static const char TAG_BROKER[] = "llmp-auth-v1 broker";
static const char TAG_CLIENT[] = "llmp-auth-v1 client";

int llmp_secret_load(const char *path, uint8_t key[LLMP_AUTH_KEY_LEN])
{
	uint8_t buf[LLMP_SECRET_MAX + 1];
	struct stat st;
	size_t len = 0;
	int fd, ret = 0;

	if (!path || !*path)
		return llmp_err(-EINVAL, "secret: no file named");
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0)
		return llmp_err(-errno, "secret: cannot open %s: %s", path, strerror(errno));
	if (fstat(fd, &st) < 0) {
		ret = llmp_err(-errno, "secret: cannot stat %s", path);
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		ret = llmp_err(-EINVAL, "secret: %s is not a regular file", path);
		goto out;
	}
	if (st.st_uid != geteuid() && st.st_uid != 0) {
		ret = llmp_err(-EPERM, "secret: %s belongs to uid %u, not to us (uid %u) or root",
			       path, (unsigned)st.st_uid, (unsigned)geteuid());
		goto out;
	}
	if (st.st_mode & 077) {
		ret = llmp_err(-EPERM, "secret: %s is readable or writable by others (mode %04o); "
			       "chmod 600 it", path, (unsigned)(st.st_mode & 07777));
		goto out;
	}
	for (;;) {
		ssize_t n = read(fd, buf + len, sizeof(buf) - len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			ret = llmp_err(-errno, "secret: cannot read %s", path);
			goto out;
		}
		if (n == 0)
			break;
		len += (size_t)n;
		if (len == sizeof(buf)) {
			ret = llmp_err(-EFBIG, "secret: %s is longer than %u bytes", path,
				       LLMP_SECRET_MAX);
			goto out;
		}
	}
	while (len && (buf[len - 1] == '\n' || buf[len - 1] == '\r' || buf[len - 1] == ' ' ||
		       buf[len - 1] == '\t'))
		len--;
	if (len < LLMP_SECRET_MIN) {
		ret = llmp_err(-EINVAL, "secret: %s holds %zu bytes, fewer than %u (make one with: "
			       "head -c 32 /dev/urandom | base64 > FILE)", path, len, LLMP_SECRET_MIN);
		goto out;
	}
	llmp_sha256(buf, len, key);
out:
	memset(buf, 0, sizeof(buf));
	close(fd);
	return ret;
}

int llmp_secret_from_env(uint8_t key[LLMP_AUTH_KEY_LEN])
{
	const char *path = getenv(LLMP_SECRET_ENV);
	int ret;

	if (!path || !*path)
		return 0;
	ret = llmp_secret_load(path, key);
	if (ret < 0)
		return llmp_err(ret, "%s: %s", LLMP_SECRET_ENV, llmp_strerror_last());
	return 1;
}

int llmp_auth_nonce(uint8_t nonce[LLMP_AUTH_NONCE_LEN])
{
	size_t got = 0;

	while (got < LLMP_AUTH_NONCE_LEN) {
		ssize_t n = getrandom(nonce + got, LLMP_AUTH_NONCE_LEN - got, 0);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return llmp_err(-errno, "auth: getrandom");
		got += (size_t)n;
	}
	return 0;
}

void llmp_auth_proof(const uint8_t key[LLMP_AUTH_KEY_LEN], bool broker,
		     const uint8_t nc[LLMP_AUTH_NONCE_LEN], const uint8_t nb[LLMP_AUTH_NONCE_LEN],
		     uint8_t out[LLMP_AUTH_PROOF_LEN])
{
	const void *part[3] = { broker ? TAG_BROKER : TAG_CLIENT, nc, nb };
	const size_t len[3] = { broker ? sizeof(TAG_BROKER) - 1 : sizeof(TAG_CLIENT) - 1,
				LLMP_AUTH_NONCE_LEN, LLMP_AUTH_NONCE_LEN };

	llmp_hmac_sha256(key, LLMP_AUTH_KEY_LEN, 3, part, len, out);
}

/* How many 32-byte arrays follow each type's varint. */
static unsigned arrays_of(uint32_t type, bool response)
{
	if (response)
		return type == LLMP_TCP_RESP_AUTH_CHALLENGE ? 2 : 0;
	return type == LLMP_TCP_REQ_AUTH_HELLO || type == LLMP_TCP_REQ_AUTH_PROOF ? 1 : 0;
}

uint32_t llmp_auth_frame_type(const uint8_t *body, size_t len)
{
	struct llmp_pc_rd r = { body, len, 0 };
	uint32_t type;

	if (llmp_pc_get_u32(&r, &type) < 0)
		return 0;
	return type == LLMP_TCP_REQ_AUTH_HELLO || type == LLMP_TCP_REQ_AUTH_PROOF ? type : 0;
}

int llmp_auth_encode(uint32_t type, const uint8_t *a, const uint8_t *b, uint8_t *buf, size_t cap)
{
	/* The challenge is the only response; the requests share its number space with it. */
	bool response = b != NULL;
	unsigned n = arrays_of(type, response);
	struct llmp_pc_wr w = { buf, cap, 0, 0 };

	if (!n || !a)
		return llmp_err(-EINVAL, "auth: encode: bad frame type %u", type);
	llmp_pc_put_u64(&w, type);
	llmp_pc_put_raw(&w, a, 32);
	if (n == 2)
		llmp_pc_put_raw(&w, b, 32);
	return w.err ? w.err : (int)w.off;
}

int llmp_auth_decode(uint32_t type, const uint8_t *body, size_t len, uint8_t *a, uint8_t *b)
{
	struct llmp_pc_rd r = { body, len, 0 };
	unsigned n = arrays_of(type, b != NULL);
	uint32_t got;

	if (!n || llmp_pc_get_u32(&r, &got) < 0 || got != type ||
	    llmp_pc_get_raw(&r, a, 32) < 0 || (n == 2 && llmp_pc_get_raw(&r, b, 32) < 0) ||
	    r.off != len)
		return -EBADMSG;
	return 0;
}

int llmp_broker_set_secret(struct llmp_broker *b, const char *path, unsigned flags)
{
	uint8_t key[LLMP_AUTH_KEY_LEN];
	int ret;

	if (!b)
		return llmp_err(-EINVAL, "broker set secret: NULL broker");
	if (flags & ~LLMP_SECRET_REQUIRED)
		return llmp_err(-EINVAL, "broker set secret: unknown flags %#x", flags);
	if (!path) {
		memset(b->secret, 0, sizeof(b->secret));
		b->has_secret = b->secret_required = false;
		return 0;
	}
	ret = llmp_secret_load(path, key);
	if (ret < 0)
		return ret;
	memcpy(b->secret, key, sizeof(key));
	memset(key, 0, sizeof(key));
	b->has_secret = true;
	b->secret_required = flags & LLMP_SECRET_REQUIRED;
	return 0;
}

const uint8_t *llmp_broker_secret(const struct llmp_broker *b, bool *required)
{
	if (required)
		*required = b->has_secret && b->secret_required;
	return b->has_secret ? b->secret : NULL;
}
