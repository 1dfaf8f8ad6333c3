// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * libFuzzer target for the TCP frame parsers (lib/postcard.c).
 *
 * The first input byte picks the parser (request, response, B2B message,
 * or the listener's length prefix); the rest is the frame body.  Beyond
 * "no crash, no sanitizer report", it checks the codec is canonical:
 * whatever decodes must encode back to exactly the same bytes.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "llmp/broker.h"

static uint8_t out[1 << 16];

static void same_or_die(int n, const uint8_t *in, size_t len)
{
	if (n < 0 || (size_t)n != len || memcmp(out, in, len) != 0)
		__builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct llmp_wire_msg m;
	struct llmp_wire_b2b b;
	uint32_t len;

	if (size < 1 || size > sizeof(out))
		return 0;
	const uint8_t *in = data + 1;
	size_t n = size - 1;

	switch (data[0] & 3) {
	case 0:
		if (llmp_wire_decode_req(in, n, &m) == 0)
			same_or_die(llmp_wire_encode_req(&m, out, sizeof(out)), in, n);
		break;
	case 1:
		if (llmp_wire_decode_resp(in, n, &m) == 0)
			same_or_die(llmp_wire_encode_resp(&m, out, sizeof(out)), in, n);
		break;
	case 2:
		if (llmp_wire_decode_b2b(in, n, &b) == 0) {
			if (b.len > n || (b.len && (const uint8_t *)b.buf + b.len != in + n))
				__builtin_trap(); /* the payload must be the tail of the input */
			same_or_die(llmp_wire_encode_b2b(&b, out, sizeof(out)), in, n);
		}
		break;
	default:
		if (n >= 4) {
			int r = llmp_wire_get_len(in, LLMP_TCP_MAX_REQUEST, &len);
			uint32_t be = (uint32_t)in[0] << 24 | (uint32_t)in[1] << 16 |
				      (uint32_t)in[2] << 8 | in[3];

			if (len != be || (r == 0) != (be <= LLMP_TCP_MAX_REQUEST))
				__builtin_trap();
			if (r == 0 && len <= n - 4 && llmp_wire_decode_req(in + 4, len, &m) == 0)
				same_or_die(llmp_wire_encode_req(&m, out, sizeof(out)), in + 4, len);
		}
		break;
	}
	return 0;
}
