/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * The campaign secret: an optional shared secret, in a file readable only by
 * its owner, that our clients and brokers prove to each other (and the broker
 * to them) when they register or link over TCP.  See
 * Documentation/security.rst ("Campaign secret") for what it promises.
 */
#ifndef LLMP_AUTH_PUBLIC_H
#define LLMP_AUTH_PUBLIC_H

#include "llmp/llmp.h"

#ifdef __cplusplus
extern "C" {
#endif

/*
 * The environment variable that names the client side's secret file: every
 * TCP registration, quit and extension query of this process proves it,
 * and refuses a broker that cannot prove it back.  (A broker's own listener
 * and B2B links use llmp_broker_set_secret() instead.)  An unusable file fails the
 * call (never a silent fallback to no secret).
 */
#define LLMP_SECRET_ENV "LLMP_SECRET_FILE"

/*
 * Refuse peers that do not prove the secret even from loopback.  Without
 * it, LibAFL clients and brokers (which cannot prove a secret) are still
 * served when they connect from loopback; their uid is checked as always.
 */
#define LLMP_SECRET_REQUIRED 0x1u

/*
 * Make the broker's TCP listener and its dialled B2B links use the secret in
 * file path (regular, owned by us or root, mode 0600 or stricter, 16 to
 * 4096 bytes; trailing whitespace is ignored).  path NULL turns it off.
 * 0, -EINVAL (bad argument, file too short or not regular), -EPERM (owner
 * or mode), -EFBIG (too long) or the open()/read() errno.
 */
int llmp_broker_set_secret(struct llmp_broker *b, const char *path, unsigned flags);

#ifdef __cplusplus
}
#endif

#endif /* LLMP_AUTH_PUBLIC_H */
