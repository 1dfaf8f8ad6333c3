/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * The campaign secret (Documentation/security.rst, "Campaign secret"): the
 * secret file, the challenge and the two proofs, and the three TCP frames
 * that carry them.  Used by the listener (lib/tcp.c), the registering
 * client (lib/tcp_client.c) and the B2B dialler (lib/b2b_dial.c).  Not
 * installed.
 */
#ifndef LLMP_AUTH_H
#define LLMP_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "internal.h"
#include "sha256.h"

LLMP_HIDDEN_BEGIN

#define LLMP_AUTH_KEY_LEN LLMP_SHA256_LEN
#define LLMP_AUTH_NONCE_LEN 32
#define LLMP_AUTH_PROOF_LEN LLMP_SHA256_LEN
/* A secret file holds at least this many bytes (after trailing whitespace), at most MAX. */
#define LLMP_SECRET_MIN 16
#define LLMP_SECRET_MAX 4096

/*
 * Ours, not LibAFL's (a LibAFL broker hangs up on them), like EXT_QUERY:
 *   request  AUTH_HELLO     {client nonce [32]}
 *   response AUTH_CHALLENGE {broker nonce [32], broker proof [32]}
 *   request  AUTH_PROOF     {client proof [32]}          (no answer)
 * then the ordinary request on the same connection.
 */
#define LLMP_TCP_REQ_AUTH_HELLO 0x4C41u
#define LLMP_TCP_REQ_AUTH_PROOF 0x4C42u
#define LLMP_TCP_RESP_AUTH_CHALLENGE 0x4C41u
/* Longest auth frame body: a 3-byte varint and two 32-byte arrays. */
#define LLMP_AUTH_FRAME_MAX (3 + 2 * 32)

/*
 * Read the secret file at path into key (SHA-256 of its contents without
 * trailing whitespace).  The file must be a regular file owned by us (or
 * root), readable by nobody else (mode & 077 == 0), and hold
 * LLMP_SECRET_MIN..LLMP_SECRET_MAX bytes.  0, or -errno with the reason
 * recorded (llmp_strerror_last()).
 */
int llmp_secret_load(const char *path, uint8_t key[LLMP_AUTH_KEY_LEN]);
/*
 * The client side's secret: the file LLMP_SECRET_FILE names.  1 loaded,
 * 0 the variable is unset or empty, <0 the file is unusable (fail closed).
 */
int llmp_secret_from_env(uint8_t key[LLMP_AUTH_KEY_LEN]);
/* A fresh random nonce: 0 or -errno. */
int llmp_auth_nonce(uint8_t nonce[LLMP_AUTH_NONCE_LEN]);
/* The broker's (broker true) or the client's proof for this pair of nonces. */
void llmp_auth_proof(const uint8_t key[LLMP_AUTH_KEY_LEN], bool broker,
		     const uint8_t nc[LLMP_AUTH_NONCE_LEN], const uint8_t nb[LLMP_AUTH_NONCE_LEN],
		     uint8_t out[LLMP_AUTH_PROOF_LEN]);

/* The auth frame type a frame body starts with, or 0 if it is none of them. */
uint32_t llmp_auth_frame_type(const uint8_t *body, size_t len);
/*
 * Encode type with its arrays (a, and b for AUTH_CHALLENGE) into buf: the
 * body length, or -ENOSPC.  Decode exactly len bytes of that type into a
 * (and b): 0, or -EBADMSG.
 */
int llmp_auth_encode(uint32_t type, const uint8_t *a, const uint8_t *b, uint8_t *buf, size_t cap);
int llmp_auth_decode(uint32_t type, const uint8_t *body, size_t len, uint8_t *a, uint8_t *b);

LLMP_HIDDEN_END

#endif /* LLMP_AUTH_H */
