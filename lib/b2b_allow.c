// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * Which peers may open a broker-to-broker link to this broker, and how much
 * of it they may use: the allow list (ADDR[/PREFIX] rules, IPv4 or IPv6),
 * loopback when the list is empty, the addresses this broker dials itself,
 * the cap on accepted links, and the links' memory limits.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "b2b.h"

/* The 16 address bytes of ss (IPv4 and IPv4-mapped IPv6 as ::ffff:a.b.c.d); false if not IP. */
static bool addr16(const struct sockaddr_storage *ss, uint8_t out[16])
{
	static const uint8_t mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };

	if (ss->ss_family == AF_INET) {
		memcpy(out, mapped, 12);
		memcpy(out + 12, &((const struct sockaddr_in *)ss)->sin_addr, 4);
		return true;
	}
	if (ss->ss_family == AF_INET6) {
		memcpy(out, &((const struct sockaddr_in6 *)ss)->sin6_addr, 16);
		return true;
	}
	return false;
}

static bool prefix_eq(const uint8_t *a, const uint8_t *b, unsigned bits)
{
	unsigned whole = bits / 8, rest = bits % 8;

	if (memcmp(a, b, whole))
		return false;
	return !rest || ((a[whole] ^ b[whole]) & (uint8_t)(0xff << (8 - rest))) == 0;
}

bool llmp_b2b_is_loopback(const struct sockaddr_storage *ss)
{
	static const uint8_t lo4[16] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 127 };
	static const uint8_t lo6[16] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1 };
	uint8_t a[16];

	return addr16(ss, a) && (prefix_eq(a, lo4, 96 + 8) || !memcmp(a, lo6, 16));
}

int llmp_b2b_allow_add(struct llmp_b2b_allow *al, const char *spec)
{
	char host[INET6_ADDRSTRLEN + 1];
	const char *slash = spec ? strchr(spec, '/') : NULL;
	size_t hl = slash ? (size_t)(slash - spec) : (spec ? strlen(spec) : 0);
	struct llmp_b2b_rule *r;
	unsigned long bits;
	struct in_addr v4;
	char *end;

	if (!spec || !hl || hl >= sizeof(host))
		return llmp_err(-EINVAL, "b2b allow: want ADDR[/PREFIX], got %s", spec ? spec : "NULL");
	if (al->n == LLMP_B2B_MAX_ALLOW)
		return llmp_err(-ENOSPC, "b2b allow: at most %d rules", LLMP_B2B_MAX_ALLOW);
	r = &al->rule[al->n];
	memcpy(host, spec, hl);
	host[hl] = 0;
	if (inet_pton(AF_INET, host, &v4) == 1) {
		memset(r->addr, 0, 10);
		r->addr[10] = r->addr[11] = 0xff;
		memcpy(r->addr + 12, &v4, 4);
		r->bits = 128;
		bits = 32;
		if (slash) {
			bits = strtoul(slash + 1, &end, 10);
			if (!slash[1] || *end || bits > 32)
				return llmp_err(-EINVAL, "b2b allow: bad IPv4 prefix in %s", spec);
		}
		r->bits = 96 + (unsigned)bits;
	} else if (inet_pton(AF_INET6, host, r->addr) == 1) {
		bits = 128;
		if (slash) {
			bits = strtoul(slash + 1, &end, 10);
			if (!slash[1] || *end || bits > 128)
				return llmp_err(-EINVAL, "b2b allow: bad IPv6 prefix in %s", spec);
		}
		r->bits = (unsigned)bits;
	} else {
		return llmp_err(-EINVAL, "b2b allow: %s is no numeric IPv4 or IPv6 address", host);
	}
	al->n++;
	return 0;
}

bool llmp_b2b_allow_match(const struct llmp_b2b_allow *al, const struct sockaddr_storage *ss)
{
	uint8_t a[16];

	if (!al->n)
		return llmp_b2b_is_loopback(ss);
	if (!addr16(ss, a))
		return false;
	for (unsigned i = 0; i < al->n; i++) {
		if (prefix_eq(a, al->rule[i].addr, al->rule[i].bits))
			return true;
	}
	return false;
}

bool llmp_b2b_same_addr(const struct sockaddr_storage *x, const struct sockaddr_storage *y)
{
	uint8_t a[16], b[16];

	return addr16(x, a) && addr16(y, b) && !memcmp(a, b, 16);
}

int llmp_b2b_admit(const struct llmp_b2b_allow *al, struct llmp_b2b_link *const *links, unsigned n,
		   unsigned max_accepted, const struct sockaddr_storage *ss, char *why, size_t cap)
{
	bool ok = llmp_b2b_allow_match(al, ss);
	unsigned accepted = 0;

	for (unsigned i = 0; i < n; i++) {
		ok = ok || llmp_b2b_link_dials(links[i], ss);
		accepted += !llmp_b2b_link_dialled(links[i]);
	}
	if (!ok) {
		snprintf(why, cap, "broker-to-broker links from this address are not allowed here%s",
			 al->n ? "" : " (loopback only; see --b2b-allow)");
		return -EPERM;
	}
	if (accepted >= max_accepted) {
		snprintf(why, cap, "this broker has %u broker-to-broker links already", max_accepted);
		return -ENOSPC;
	}
	return 0;
}

void llmp_b2b_limits_init(struct llmp_b2b_limits *lim, size_t page, size_t max_frame,
			  size_t memory, size_t inflate_rate)
{
	memset(lim, 0, sizeof(*lim));
	lim->max_frame = max_frame;
	if (!lim->max_frame) {
		lim->max_frame = page > LLMP_TCP_MAX_FRAME / 32 ? LLMP_TCP_MAX_FRAME : 32 * page;
		if (lim->max_frame < (1u << 20))
			lim->max_frame = 1u << 20;
	}
	if (lim->max_frame > LLMP_TCP_MAX_FRAME)
		lim->max_frame = LLMP_TCP_MAX_FRAME;
	lim->memory = memory ? memory : 4 * lim->max_frame;
	if (lim->memory < lim->max_frame + (1u << 20))
		lim->memory = lim->max_frame + (1u << 20); /* one whole frame always fits */
	lim->inflate_rate = inflate_rate ? inflate_rate : 64u << 20;
}
