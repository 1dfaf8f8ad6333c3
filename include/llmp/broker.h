/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * The broker as a service: LibAFL-compatible TCP registration, the wire
 * codec of its frames, and the client side of the TCP handshake.
 *
 * Wire format (as LibAFL's ll_mp speaks it): every frame is a 4-byte
 * big-endian length followed by that many bytes of "postcard" encoding:
 * unsigned integers as LEB128 varints, enum variants as a varint index,
 * strings and byte vectors as varint length + bytes, the 20-byte segment
 * id raw.  See Documentation/broker.rst.
 *
 * Functions return 0 (or a documented non-negative value) on success and a
 * negative errno on failure, with the reason in llmp_strerror_last().
 */
#ifndef LLMP_BROKER_H
#define LLMP_BROKER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "llmp/llmp.h"
#include "llmp/shmem.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- wire codec ----------------------------------------------------------- */

/* Largest frame body accepted (LibAFL's LLMP_TCP_MAX_MSG_LEN). */
#define LLMP_TCP_MAX_FRAME (128u * 1024u * 1024u)
/* Largest request the listener accepts (a valid one is far smaller). */
#define LLMP_TCP_MAX_REQUEST 4096u
/* LibAFL's default broker port. */
#define LLMP_TCP_DEFAULT_PORT 1337

/* A segment description as it travels on the wire: no kind (both ends agree on it). */
struct llmp_wire_desc {
	uint64_t size;
	uint8_t id[LLMP_SHMEM_ID_LEN];
};

enum llmp_tcp_req_type {
	LLMP_TCP_REQ_LOCAL_CLIENT_HELLO = 0,  /* desc: the client's first out page */
	LLMP_TCP_REQ_REMOTE_BROKER_HELLO = 1, /* text: the remote broker's hostname */
	LLMP_TCP_REQ_CLIENT_QUIT = 2,         /* id: the client that quits */
};

enum llmp_tcp_resp_type {
	LLMP_TCP_RESP_BROKER_CONNECT_HELLO = 0,   /* desc: broadcast page, text: hostname */
	LLMP_TCP_RESP_LOCAL_CLIENT_ACCEPTED = 1,  /* id: the new client id */
	LLMP_TCP_RESP_REMOTE_BROKER_ACCEPTED = 2, /* id: the broker id */
	LLMP_TCP_RESP_ERROR = 3,                  /* text: description */
};

/*
 * One request or response.  Which fields count depends on type (see the
 * enums).  After decoding, text points into the decoded buffer (valid UTF-8,
 * not NUL-terminated); for encoding, text/text_len give the string.
 */
struct llmp_wire_msg {
	uint32_t type;
	uint32_t id;
	struct llmp_wire_desc desc;
	const char *text;
	size_t text_len;
};

/* A broker-to-broker message (LibAFL's TcpRemoteNewMessage). */
struct llmp_wire_b2b {
	uint32_t client_id;
	uint32_t tag;
	uint32_t flags;
	const void *buf; /* after decoding: points into the decoded buffer */
	size_t len;
};

/*
 * Encoders write the frame body (no length prefix) into buf and return its
 * length, -ENOSPC if cap is too small, -EINVAL for an invalid message.
 * Decoders parse exactly len bytes and return 0, or -EBADMSG on any
 * malformed byte: unknown variant, truncated or overlong varint, value out
 * of range, invalid UTF-8, trailing bytes.
 */
int llmp_wire_encode_req(const struct llmp_wire_msg *m, void *buf, size_t cap);
int llmp_wire_decode_req(const void *buf, size_t len, struct llmp_wire_msg *m);
int llmp_wire_encode_resp(const struct llmp_wire_msg *m, void *buf, size_t cap);
int llmp_wire_decode_resp(const void *buf, size_t len, struct llmp_wire_msg *m);
int llmp_wire_encode_b2b(const struct llmp_wire_b2b *m, void *buf, size_t cap);
/* Only the part before the payload (for writev); the payload follows it. */
int llmp_wire_encode_b2b_head(const struct llmp_wire_b2b *m, void *buf, size_t cap);
int llmp_wire_decode_b2b(const void *buf, size_t len, struct llmp_wire_b2b *m);

/* Write the 4-byte big-endian length prefix. */
void llmp_wire_put_len(void *hdr4, uint32_t len);
/* Read it: 0, or -EMSGSIZE if above max (bytes). */
int llmp_wire_get_len(const void *hdr4, uint32_t max, uint32_t *len);

/* Convert between wire and local descriptions (the kind comes from the provider). */
void llmp_wire_desc_from_shmem(const struct llmp_shmem_desc *d, struct llmp_wire_desc *w);
int llmp_wire_desc_to_shmem(const struct llmp_wire_desc *w, enum llmp_shmem_kind kind,
			    struct llmp_shmem_desc *d);

#ifdef __cplusplus
}
#endif
#endif /* LLMP_BROKER_H */
