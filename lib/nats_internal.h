/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * What the NATS bridge files share: the header names of a bridged message,
 * the checks of what arrives (lib/nats_codec.c) and the loop's hooks into
 * the bridge (lib/nats_bridge.c).  Not installed; no libnats types here.
 */
#ifndef LLMP_NATS_INTERNAL_H
#define LLMP_NATS_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "internal.h"
#include "llmp/nats.h"

LLMP_HIDDEN_BEGIN

/* NATS headers of a bridged message */
#define NH_ORIGIN "Llmp-Origin" /* 16 hex digits: the publishing broker's origin id */
#define NH_BOOT "Llmp-Boot"     /* 8 hex digits: that broker's run (random per start) */
#define NH_SEQ "Llmp-Seq"       /* decimal: per-run sequence, 1, 2, ... */
#define NH_CLIENT "Llmp-Client" /* decimal: the sending client's id on its broker */
#define NH_TAG "Llmp-Tag"       /* 8 hex digits, the same as the subject's last token */
#define NH_FLAGS "Llmp-Flags"   /* 8 hex digits: the message's LLMP flags */
#define NH_ENC "Llmp-Enc"       /* absent: raw payload; "zstd": one zstd frame */
#define NH_LEN "Llmp-Len"       /* decimal: the payload's length before compression */
#define NH_MSGID "Nats-Msg-Id"  /* <origin>-<boot>-<seq>: JetStream's de-duplication key */

/* Largest payload accepted from NATS (after decompression). */
#define NATS_MAX_MSG (64u << 20)
/* zstd from this payload size on */
#define NATS_ZSTD_MIN 256
#define NATS_MAX_TAGS 64

struct nats_tags {
	bool exclude;             /* the list names the tags that do NOT cross */
	unsigned n;               /* 0 and !exclude: every tag crosses */
	uint32_t tag[NATS_MAX_TAGS];
};

/* What a foreign message says about itself, once checked. */
struct nats_in {
	uint64_t origin;
	uint32_t boot;
	uint64_t seq;
	uint32_t client, tag, flags;
	bool zstd;
	size_t len;               /* the payload's length after decompression */
};

/* The header values as they came (NULL: absent). */
struct nats_hdrs {
	const char *origin, *client, *tag, *flags, *enc, *len, *boot, *seq;
};

/*
 * What each origin's run (origin, boot) delivered lately: a redelivered
 * message (JetStream after a lost acknowledgement, a failover) is seen
 * again and dropped.  Per origin, the highest sequence and a window of
 * NATS_DEDUP_BITS below it; older sequences are taken (no loss).
 */
#define NATS_DEDUP_BITS 8192
#define NATS_DEDUP_ORIGINS 1024
struct nats_seen {
	uint64_t origin;       /* 0: free slot */
	uint32_t boot;
	uint64_t hi;           /* highest sequence taken */
	uint64_t bits[NATS_DEDUP_BITS / 64]; /* bit (seq % BITS): seq in (hi - BITS, hi] taken */
};
struct nats_dedup {
	struct nats_seen *t;   /* NATS_DEDUP_ORIGINS slots, open addressing */
	unsigned used;
};

/* True if (origin, boot, seq) was taken before; else records it.  Never fails. */
bool nats_dedup_seen(struct nats_dedup *d, uint64_t origin, uint32_t boot, uint64_t seq);
/* Forget that one again (it could not be taken after all: its redelivery must pass). */
void nats_dedup_unmark(struct nats_dedup *d, uint64_t origin, uint32_t boot, uint64_t seq);
void nats_dedup_free(struct nats_dedup *d);

/* "[A-Za-z0-9_-]{1,64}": 0, or -EINVAL with the reason recorded. */
int nats_campaign_check(const char *c);
/* Parse a --nats-tags list; 0 or -EINVAL. */
int nats_tags_parse(const char *spec, struct nats_tags *t);
bool nats_tag_crosses(const struct nats_tags *t, uint32_t tag);
/*
 * The origin id kept in path (16 hex digits and a newline): read it, or
 * make a random one and write it (0600, atomically) when the file does not
 * exist.  A file that exists but does not hold exactly that is an error.
 */
int nats_origin_load(const char *path, uint64_t *id);
/*
 * Check a foreign message: subject llmp.<campaign>.<tag>, headers h, data
 * of data_len bytes.  0 and *in, or -EBADMSG with the reason in why.
 */
int nats_check_in(const char *subject, const char *campaign, const struct nats_hdrs *h,
		  size_t data_len, struct nats_in *in, char *why, size_t cap);

/* The loop's hooks (lib/loop.c), on its thread.  Messages moved (>=0); errors are logged. */
int llmp_nats_step(struct llmp_nats *n);
/* Milliseconds until the bridge wants a step without an event; -1: none. */
int llmp_nats_timeout_ms(const struct llmp_nats *n, int64_t now);
/* Publish what is left (up to 2 s), disconnect, free. */
void llmp_nats_free(struct llmp_nats *n);

LLMP_HIDDEN_END

#endif /* LLMP_NATS_INTERNAL_H */
