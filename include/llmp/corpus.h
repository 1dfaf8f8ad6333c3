/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * The test-case message convention: how fuzzers (AFL++, libFuzzer, LibAFL,
 * any corpus directory) share a new corpus entry over llmp, and the
 * broker's fleet-wide de-duplication of those entries by content hash.
 * See Documentation/corpus.rst.
 *
 * A test case travels as one message with tag LLMP_TAG_TESTCASE whose
 * payload is a small header followed by the test case's bytes.  All
 * integers are little endian:
 *
 *   off  size  field
 *     0     4  magic "LLTC"
 *     4     1  version (1)
 *     5     1  fuzzer kind (enum llmp_tc_kind)
 *     6     2  flags (LLMP_TC_F_*)
 *     8     2  header length: offset of the test case's bytes
 *    10     1  origin host name length (1..64)
 *    11     1  file name length (0..200)
 *    12     4  origin instance (chosen by the publisher, e.g. a pid or -S index)
 *    16    32  SHA-256 of the test case's bytes
 *    48     8  test case length
 *    56    16  only with LLMP_TC_F_STATS: u64 execs, u32 edges, u32 reserved (0)
 *     -     -  host name, then file name (bytes, no NUL)
 *  hlen     -  the test case's bytes
 *
 * A later version-1 publisher may place more bytes between the names and
 * hlen; readers skip them.  Another version number is rejected.
 */
#ifndef LLMP_CORPUS_H
#define LLMP_CORPUS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "llmp/llmp.h"

#ifdef __cplusplus
extern "C" {
#endif

/* "LLTC": not reserved by LibAFL nor by us. */
#define LLMP_TAG_TESTCASE 0x4C4C5443u
#define LLMP_TC_MAGIC "LLTC"
#define LLMP_TC_VERSION 1
#define LLMP_TC_FIXED_LEN 56u
#define LLMP_TC_STATS_LEN 16u
#define LLMP_TC_HOST_MAX 64u
#define LLMP_TC_NAME_MAX 200u
#define LLMP_TC_HASH_LEN 32u
/* Largest test case accepted (AFL++ caps inputs at 1 MiB; libFuzzer's default -max_len is 4 KiB). */
#define LLMP_TC_DATA_MAX (16u * 1024u * 1024u)

#define LLMP_TC_F_STATS 0x1u

enum llmp_tc_kind {
	LLMP_TC_KIND_UNKNOWN = 0,
	LLMP_TC_KIND_AFL = 1,
	LLMP_TC_KIND_LIBFUZZER = 2,
	LLMP_TC_KIND_LIBAFL = 3,
	LLMP_TC_KIND_DIR = 4, /* a plain corpus directory */
};

/*
 * One test case.  After decoding, host, name and data point into the
 * decoded buffer (not NUL-terminated).  For encoding, hash is computed from
 * data (the caller's value is ignored).
 */
struct llmp_tc {
	uint8_t kind;
	uint16_t flags;
	uint32_t instance;
	uint8_t hash[LLMP_TC_HASH_LEN];
	uint64_t execs; /* with LLMP_TC_F_STATS */
	uint32_t edges; /* with LLMP_TC_F_STATS */
	const char *host;
	size_t host_len;
	const char *name;
	size_t name_len;
	const void *data;
	size_t data_len;
};

/* Bytes llmp_tc_encode() writes for t. */
size_t llmp_tc_encoded_len(const struct llmp_tc *t);
/*
 * Write t into buf: its length, -ENOSPC if cap is too small, -EINVAL for
 * an invalid t (host empty or longer than LLMP_TC_HOST_MAX, name longer
 * than LLMP_TC_NAME_MAX, a name or host with '/', NUL or a control byte,
 * data above LLMP_TC_DATA_MAX, unknown flags).
 */
int llmp_tc_encode(const struct llmp_tc *t, void *buf, size_t cap);
/*
 * Parse exactly len bytes: 0, or -EBADMSG on anything malformed (short,
 * wrong magic or version, lengths that disagree, a name or host that
 * encode would refuse, a hash that does not match the bytes).
 */
int llmp_tc_decode(const void *buf, size_t len, struct llmp_tc *t);
/* Encode t and send it with LLMP_TAG_TESTCASE (zero-copy into the out page). */
int llmp_tc_send(struct llmp_client *c, const struct llmp_tc *t);

/* ---- fleet-wide de-duplication: a broker hook ---------------------------- */

struct llmp_dedup; /* opaque */

struct llmp_dedup_stats {
	uint64_t seen;      /* LLMP_TAG_TESTCASE messages the hook saw */
	uint64_t passed;    /* forwarded: content not seen within the budget */
	uint64_t dropped;   /* dropped: same content hash seen before */
	uint64_t invalid;   /* dropped: malformed test-case messages */
	uint64_t evicted;   /* hashes forgotten (oldest first) to stay in the budget */
	uint64_t entries;   /* hashes remembered now */
	uint64_t capacity;  /* hashes the budget holds */
	uint64_t bytes;     /* memory the table uses (fixed at creation) */
};

/* Default budget: 16 MiB (about 600,000 hashes). */
#define LLMP_DEDUP_DEFAULT_BYTES (16u * 1024u * 1024u)

/*
 * A table of content hashes using at most budget bytes (0: the default;
 * at least 4 KiB).  When full, the oldest hash is forgotten.
 */
int llmp_dedup_new(size_t budget, struct llmp_dedup **out);
/* Add the hook to b (the broker does not own d: free it after the broker). */
int llmp_dedup_attach(struct llmp_dedup *d, struct llmp_broker *b);
/*
 * The hook itself: messages with another tag pass untouched; test cases
 * are decoded (malformed ones dropped and logged) and dropped if their
 * hash was seen before.
 */
enum llmp_hook_verdict llmp_dedup_hook(void *ctx, struct llmp_broker *b, uint32_t client_id,
				       uint32_t *tag, uint32_t *flags, const void **buf,
				       size_t *len);
/* Remember hash; 1 if it was new, 0 if already known. */
int llmp_dedup_check(struct llmp_dedup *d, const uint8_t hash[LLMP_TC_HASH_LEN]);
void llmp_dedup_stats(const struct llmp_dedup *d, struct llmp_dedup_stats *st);
void llmp_dedup_free(struct llmp_dedup *d);

#ifdef __cplusplus
}
#endif
#endif /* LLMP_CORPUS_H */
