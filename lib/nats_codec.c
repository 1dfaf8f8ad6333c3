// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * The NATS bridge's checks, without libnats: campaign names, the tag
 * filter, the origin id's state file and the validation of every message
 * that arrives from NATS (anyone who may publish on the subject can send
 * anything: each field is parsed strictly and checked against the others).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "broker_internal.h"
#include "nats_internal.h"

int nats_campaign_check(const char *c)
{
	size_t n = c ? strlen(c) : 0;

	if (n == 0 || n > 64)
		return llmp_err(-EINVAL, "nats: a campaign name needs 1 to 64 characters");
	for (size_t i = 0; i < n; i++) {
		char ch = c[i];

		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		      (ch >= '0' && ch <= '9') || ch == '_' || ch == '-'))
			return llmp_err(-EINVAL, "nats: campaign \"%s\": only letters, digits, "
					"'_' and '-' (it is a subject token)", c);
	}
	return 0;
}

/* s is all digits of the base (16: hex, any case), at most max_digits: 0 and *out. */
static int parse_num(const char *s, int base, size_t max_digits, uint64_t max, uint64_t *out)
{
	uint64_t v = 0;
	size_t n = 0;

	if (!s)
		return -1;
	if (base == 16 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X'))
		s += 2;
	for (; *s; s++, n++) {
		int d;

		if (*s >= '0' && *s <= '9')
			d = *s - '0';
		else if (base == 16 && *s >= 'a' && *s <= 'f')
			d = *s - 'a' + 10;
		else if (base == 16 && *s >= 'A' && *s <= 'F')
			d = *s - 'A' + 10;
		else
			return -1;
		if (n >= max_digits || v > (max - (uint64_t)d) / (uint64_t)base)
			return -1;
		v = v * (uint64_t)base + (uint64_t)d;
	}
	if (n == 0)
		return -1;
	*out = v;
	return 0;
}

int nats_tags_parse(const char *spec, struct nats_tags *t)
{
	const char *p = spec;

	memset(t, 0, sizeof(*t));
	if (!spec || !*spec || !strcmp(spec, "all"))
		return 0;
	if (*p == '!') {
		t->exclude = true;
		p++;
	}
	while (*p) {
		char tok[24];
		size_t k = strcspn(p, ",");
		uint64_t v;

		if (k == 0 || k >= sizeof(tok) || t->n == NATS_MAX_TAGS)
			return llmp_err(-EINVAL, "nats: bad tag list \"%s\" (at most %d hex tags, "
					"comma-separated, '!' first to exclude)", spec, NATS_MAX_TAGS);
		memcpy(tok, p, k);
		tok[k] = 0;
		if (parse_num(tok, 16, 8, UINT32_MAX, &v) < 0)
			return llmp_err(-EINVAL, "nats: bad tag \"%s\" in \"%s\" (hex, e.g. 0x5c1)",
					tok, spec);
		if (llmp_tag_reserved((uint32_t)v))
			return llmp_err(-EINVAL, "nats: tag 0x%x is reserved, it never crosses",
					(unsigned)v);
		t->tag[t->n++] = (uint32_t)v;
		p += k;
		if (*p == ',')
			p++;
	}
	if (t->n == 0)
		return llmp_err(-EINVAL, "nats: empty tag list \"%s\"", spec);
	return 0;
}

bool nats_tag_crosses(const struct nats_tags *t, uint32_t tag)
{
	bool listed = false;

	if (llmp_tag_reserved(tag))
		return false;
	if (t->n == 0)
		return true;
	for (unsigned i = 0; i < t->n && !listed; i++)
		listed = t->tag[i] == tag;
	return t->exclude ? !listed : listed;
}

int nats_origin_load(const char *path, uint64_t *id)
{
	char buf[64], tmp[4096];
	ssize_t n;
	int fd;

	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd >= 0) {
		n = read(fd, buf, sizeof(buf) - 1);
		close(fd);
		if (n != 17 || buf[16] != '\n')
			return llmp_err(-EINVAL, "nats: state file %s does not hold an origin id "
					"(16 hex digits and a newline); remove it for a new id", path);
		buf[16] = 0;
		if (parse_num(buf, 16, 16, UINT64_MAX, id) < 0 || *id == 0)
			return llmp_err(-EINVAL, "nats: state file %s: \"%s\" is not an origin id",
					path, buf);
		return 0;
	}
	if (errno != ENOENT)
		return llmp_err(-errno, "nats: state file %s: %s", path, strerror(errno));
	do {
		if (getrandom(id, sizeof(*id), 0) != (ssize_t)sizeof(*id))
			return llmp_err(-EIO, "nats: getrandom failed");
	} while (*id == 0);
	if (snprintf(tmp, sizeof(tmp), "%s.tmp%d", path, (int)getpid()) >= (int)sizeof(tmp))
		return llmp_err(-ENAMETOOLONG, "nats: state file path too long");
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0)
		return llmp_err(-errno, "nats: cannot create %s: %s", tmp, strerror(errno));
	n = snprintf(buf, sizeof(buf), "%016llx\n", (unsigned long long)*id);
	if (write(fd, buf, (size_t)n) != n || fsync(fd) < 0) {
		int e = errno ? errno : EIO;

		close(fd);
		unlink(tmp);
		return llmp_err(-e, "nats: cannot write %s: %s", tmp, strerror(e));
	}
	close(fd);
	if (rename(tmp, path) < 0) {
		int e = errno;

		unlink(tmp);
		return llmp_err(-e, "nats: cannot rename %s to %s: %s", tmp, path, strerror(e));
	}
	llmp_log(LLMP_LOG_INFO, "nats: new origin id %016llx kept in %s",
		 (unsigned long long)*id, path);
	return 0;
}

#define BAD(...) (snprintf(why, cap, __VA_ARGS__), -EBADMSG)

int nats_check_in(const char *subject, const char *campaign, const struct nats_hdrs *h,
		  size_t data_len, struct nats_in *in, char *why, size_t cap)
{
	size_t cl = strlen(campaign);
	uint64_t v, stag;

	memset(in, 0, sizeof(*in));
	if (!subject || strncmp(subject, "llmp.", 5) || strncmp(subject + 5, campaign, cl) ||
	    subject[5 + cl] != '.')
		return BAD("subject outside the campaign");
	if (strlen(subject + 6 + cl) != 8 || parse_num(subject + 6 + cl, 16, 8, UINT32_MAX, &stag) < 0)
		return BAD("subject's tag token is not 8 hex digits");
	if (parse_num(h->origin, 16, 16, UINT64_MAX, &in->origin) < 0 || in->origin == 0)
		return BAD("no valid " NH_ORIGIN " header");
	if (parse_num(h->boot, 16, 8, UINT32_MAX, &v) < 0)
		return BAD("no valid " NH_BOOT " header");
	in->boot = (uint32_t)v;
	if (parse_num(h->seq, 10, 20, UINT64_MAX, &in->seq) < 0 || in->seq == 0)
		return BAD("no valid " NH_SEQ " header");
	if (parse_num(h->client, 10, 10, UINT32_MAX, &v) < 0)
		return BAD("no valid " NH_CLIENT " header");
	in->client = (uint32_t)v;
	if (parse_num(h->tag, 16, 8, UINT32_MAX, &v) < 0)
		return BAD("no valid " NH_TAG " header");
	in->tag = (uint32_t)v;
	if (in->tag != stag)
		return BAD(NH_TAG " 0x%x differs from the subject's 0x%x", in->tag, (unsigned)stag);
	if (llmp_tag_reserved(in->tag))
		return BAD("reserved tag 0x%x", in->tag);
	if (parse_num(h->flags, 16, 8, UINT32_MAX, &v) < 0)
		return BAD("no valid " NH_FLAGS " header");
	/* Ours between brokers: the bridge sets FROM_B2B itself; ZSTD is only the B2B codec's. */
	if (v & (LLMP_FLAG_ZSTD | LLMP_FLAG_FROM_B2B))
		return BAD("flags 0x%x carry bits only brokers set", (unsigned)v);
	in->flags = (uint32_t)v;
	if (parse_num(h->len, 10, 10, NATS_MAX_MSG, &v) < 0)
		return BAD("no valid " NH_LEN " header (at most %u)", NATS_MAX_MSG);
	in->len = (size_t)v;
	if (!h->enc) {
		if (in->len != data_len)
			return BAD(NH_LEN " %zu but %zu bytes came", in->len, data_len);
	} else if (!strcmp(h->enc, "zstd")) {
		in->zstd = true;
		if (data_len == 0)
			return BAD("an empty zstd payload");
	} else {
		return BAD("unknown " NH_ENC " \"%.16s\"", h->enc);
	}
	return 0;
}

static struct nats_seen *seen_slot(struct nats_dedup *d, uint64_t origin)
{
	unsigned i = (unsigned)((origin * 0x9E3779B97F4A7C15ull) >> 54) % NATS_DEDUP_ORIGINS;

	for (unsigned k = 0; k < NATS_DEDUP_ORIGINS; k++, i = (i + 1) % NATS_DEDUP_ORIGINS) {
		if (d->t[i].origin == origin)
			return &d->t[i];
		if (!d->t[i].origin) {
			if (d->used == NATS_DEDUP_ORIGINS - 1)
				return NULL; /* keep one free slot: lookups end */
			d->used++;
			memset(&d->t[i], 0, sizeof(d->t[i]));
			d->t[i].origin = origin;
			return &d->t[i];
		}
	}
	return NULL;
}

bool nats_dedup_seen(struct nats_dedup *d, uint64_t origin, uint32_t boot, uint64_t seq)
{
	struct nats_seen *s;
	uint64_t bit = seq % NATS_DEDUP_BITS;

	if (!d->t) {
		d->t = calloc(NATS_DEDUP_ORIGINS, sizeof(*d->t));
		if (!d->t)
			return false; /* no memory: take everything (no loss) */
	}
	s = seen_slot(d, origin);
	if (!s)
		return false; /* table full: take everything */
	if (s->boot != boot) {
		/* That broker restarted (or it is the first message): a new run of sequences. */
		s->boot = boot;
		s->hi = 0;
		memset(s->bits, 0, sizeof(s->bits));
	}
	if (seq > s->hi) {
		if (seq - s->hi >= NATS_DEDUP_BITS) {
			memset(s->bits, 0, sizeof(s->bits));
		} else {
			for (uint64_t q = s->hi + 1; q < seq; q++)
				s->bits[(q % NATS_DEDUP_BITS) / 64] &= ~(1ull << (q % 64));
		}
		s->hi = seq;
		s->bits[bit / 64] |= 1ull << (bit % 64);
		return false;
	}
	if (s->hi - seq >= NATS_DEDUP_BITS)
		return false; /* older than the window: taken (a duplicate is possible, a loss is not) */
	if (s->bits[bit / 64] & (1ull << (bit % 64)))
		return true;
	s->bits[bit / 64] |= 1ull << (bit % 64);
	return false;
}

void nats_dedup_unmark(struct nats_dedup *d, uint64_t origin, uint32_t boot, uint64_t seq)
{
	struct nats_seen *s = d->t ? seen_slot(d, origin) : NULL;
	uint64_t bit = seq % NATS_DEDUP_BITS;

	if (s && s->boot == boot && seq <= s->hi && s->hi - seq < NATS_DEDUP_BITS)
		s->bits[bit / 64] &= ~(1ull << (bit % 64));
}

void nats_dedup_free(struct nats_dedup *d)
{
	free(d->t);
	d->t = NULL;
	d->used = 0;
}
