// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * llmp-broker: run an LLMP broker that LibAFL clients and llmp clients
 * register with over TCP.  See Documentation/man/llmp-broker.1.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_B2B 16
#define MAX_B2B_ALLOW 64
/* long-only options */
enum { OPT_SECRET_FILE = 0x80, OPT_SECRET_REQUIRED, OPT_MAX_CLIENTS = 0x100, OPT_ALLOW_REMOTE, OPT_B2B_ALLOW, OPT_B2B_MAX_FRAME, OPT_B2B_MEMORY,
       OPT_B2B_INFLATE, OPT_DEDUP };
/* long-only options of the loop's sleep and lossless policies */
enum { OPT_NAP = 0x200, OPT_LOSSLESS };
/* long-only options of the NATS bridge */
enum { OPT_NATS = 0x300, OPT_CAMPAIGN, OPT_NATS_CREDS, OPT_NATS_TLS_CA, OPT_NATS_TAGS,
       OPT_NATS_RETRY, OPT_NATS_STREAM, OPT_NATS_MAX_BYTES, OPT_NATS_MAX_AGE, OPT_NATS_REPLICAS,
       OPT_NATS_STATE };

#include "llmp/auth.h"
#include "llmp/broker.h"
#include "llmp/corpus.h"
#include "llmp/llmp.h"
#include "llmp/nats.h"
#include "llmp/shmem.h"
#include "tool.h"

struct stats_ctx {
	struct llmp_dedup *dedup; /* --dedup: its counters join the stats line */
	uint64_t last_in;
	uint64_t last_fwd;
	int64_t last_ms;
	struct llmp_nats *nats;
};

static void usage(FILE *f)
{
	fprintf(f,
		"usage: llmp-broker [options]\n"
		"  -p, --port N            TCP port (default %d; 0 picks a free one)\n"
		"  -b, --bind ADDR         address to listen on (default 127.0.0.1)\n"
		"  -P, --provider KIND     shared memory: default, kmod, memfd, posix, sysv, served\n"
		"  -B, --b2b HOST:PORT     link to the broker there (repeatable; link every pair of brokers)\n"
		"  -z, --compress[=CODEC]  compress B2B payloads: deflate (the default: 1 KiB or more,\n"
		"                          LibAFL's COMPRESSED flag) or zstd (256 bytes or more, with\n"
		"                          our brokers that use zstd too; deflate with other peers)\n"
		"  -s, --stats-interval S  print a stats line every S seconds (default 10; 0: never)\n"
		"  -x, --exit-after N      exit once N clients have come and gone\n"
		"  -l, --loop KIND         event loop: auto, uring, poll (default auto)\n"
		"  -t, --peer-timeout MS   drop a TCP peer that has not finished its request (default 3000)\n"
		"  -m, --max-sleep-us US   longest idle nap between looks at clients that cannot wake the\n"
		"                          broker (LibAFL's), 1 or more (default 1000; -1: never nap)\n"
		"      --nap WHEN          auto (default): nap only while such a client is registered,\n"
		"                          else sleep until woken; always: nap whenever idle\n"
		"      --lossless[=STUCK_MS]\n"
		"                          hold senders back rather than let a receiver of ours fall\n"
		"                          behind the history; one that does not move on for STUCK_MS\n"
		"                          (default 5000) is no longer waited for (it gets -ESTALE)\n"
		"  -g, --dead-client-grace-ms MS\n"
		"                          drop a SysV/POSIX client this long after its process died\n"
		"                          and its page went quiet (default 2000; memfd: at once)\n"
		"  -H, --history BYTES     broadcast bytes kept for late joiners (default 64 MiB)\n"
		/* registration (issue 8: who may register which page) */
		"      --max-clients N     refuse registrations beyond N live clients (default 1024)\n"
		"      --allow-remote-clients\n"
		"                          let TCP peers on other hosts register pages (their uid\n"
		"                          cannot be checked; default: only local peers)\n"
		"  campaign secret (Documentation/security.rst, \"Campaign secret\"):\n"
		"      --secret-file FILE  TCP peers prove the secret in FILE (mode 0600, 16+ bytes);\n"
		"                          our clients set LLMP_SECRET_FILE to the same file.  LibAFL\n"
		"                          peers, which cannot, are still served from loopback\n"
		"      --secret-required   ... and not even from loopback\n"
		"  B2B peers (Documentation/broker.rst, \"Hostile peers\"):\n"
		"      --b2b-allow ADDR[/PREFIX]\n"
		"                          accept links from these addresses (repeatable; default:\n"
		"                          loopback only; the --b2b peers may always link)\n"
		"      --b2b-max-frame BYTES   largest B2B frame or zstd output (default 32 x page size)\n"
		"      --b2b-memory BYTES  bytes all links may buffer at once (default 4 x max frame)\n"
		"      --b2b-inflate-rate BYTES  zstd bytes a link may inflate per second (default 64 MiB)\n"
		"  NATS (Documentation/fleet.rst: brokers on many hosts):\n"
		"      --nats URL[,URL...] bridge to these NATS servers (failover in turn)\n"
		"      --campaign NAME     subjects llmp.NAME.<tag>; stream LLMP_NAME (required with --nats)\n"
		"      --nats-creds FILE   a NATS .creds file, or one line user:password, or a token\n"
		"      --nats-tls-ca FILE  TLS to the servers, trusting these CA certificates (PEM)\n"
		"      --nats-tags LIST    tags that cross: 0x10,0x11 (only these) or !0x12 (all but);\n"
		"                          default all (control tags never cross)\n"
		"      --nats-retry        servers unreachable at start: serve locally, keep retrying\n"
		"      --nats-stream       JetStream: retained stream, durable consumer per broker\n"
		"      --nats-max-bytes N  the stream's size limit when it is created (default none)\n"
		"      --nats-max-age S    the stream's age limit in seconds (default none)\n"
		"      --nats-replicas N   copies of the stream in a NATS cluster (default 1)\n"
		"      --nats-state FILE   keeps this broker's origin id across restarts\n"
		"                          (default ./llmp-nats-NAME.id)\n"
		"      --dedup[=MIB]       drop test cases (Documentation/corpus.rst) whose content\n"
		"                          was forwarded before; remember up to MIB MiB of hashes\n"
		"                          (default 16, oldest forgotten first)\n"
		"  -v, --verbose           log registrations and dropped peers\n"
		"  -h, --help\n",
		LLMP_TCP_DEFAULT_PORT);
}

static void log_cb(void *ctx, enum llmp_log_level level, const char *msg)
{
	static const char *const names[] = { "error", "warn", "info", "debug" };

	(void)ctx;
	fprintf(stderr, "llmp-broker: %s: %s\n", names[level & 3], msg);
}

static void on_stats(void *vctx, const struct llmp_loop_stats *st)
{
	struct stats_ctx *c = vctx;
	double secs = (double)(st->uptime_ms - c->last_ms) / 1000.0;
	double rate = secs > 0 ? (double)(st->forwarded - c->last_fwd) / secs : 0.0;
	double rate_in = secs > 0 ? (double)(st->msgs_in - c->last_in) / secs : 0.0;

	printf("stats: up %" PRId64 " s, clients %u, msgs/s in %.0f out %.0f, forwarded %" PRIu64
	       ", pages %u, sleeps %" PRIu64 ", wakeups %" PRIu64 ", tcp registered %" PRIu64
	       " quits %" PRIu64 " dropped %" PRIu64 ", b2b links %u sent %" PRIu64
	       " received %" PRIu64 " deflated %" PRIu64 " zstd %" PRIu64 " dials %" PRIu64
	       " reserved-dropped %" PRIu64 "\n",
	       st->uptime_ms / 1000, st->clients, rate_in, rate, st->forwarded, st->pages_live,
	       st->sleeps, st->wakeups,
	       st->tcp.registered, st->tcp.quits, st->tcp.dropped, st->b2b_links, st->b2b_sent,
	       st->b2b_received, st->b2b_deflated, st->b2b_zstd, st->b2b_dials,
	       st->b2b_reserved);
	if (c->nats) {
		struct llmp_nats_stats ns;

		llmp_nats_stats(c->nats, &ns);
		printf("stats: nats %s, published %" PRIu64 " received %" PRIu64 " own %" PRIu64
		       " filtered %" PRIu64 " bad %" PRIu64 " too-big %" PRIu64 " lost %" PRIu64
		       " overflow %" PRIu64 " pending %u reconnects %" PRIu64 "\n",
		       ns.connected ? "up" : "down", ns.published, ns.received, ns.own, ns.filtered,
		       ns.bad, ns.too_big, ns.lost, ns.overflow, ns.pending, ns.reconnects);
	}
	if (c->dedup) {
		struct llmp_dedup_stats ds;

		llmp_dedup_stats(c->dedup, &ds);
		printf("stats: dedup test cases %" PRIu64 " passed %" PRIu64 " duplicates %" PRIu64
		       " invalid %" PRIu64 " hashes %" PRIu64 "/%" PRIu64 " evicted %" PRIu64 "\n",
		       ds.seen, ds.passed, ds.dropped, ds.invalid, ds.entries, ds.capacity, ds.evicted);
	}
	fflush(stdout);
	c->last_fwd = st->forwarded;
	c->last_in = st->msgs_in;
	c->last_ms = st->uptime_ms;
}

int main(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "port", required_argument, 0, 'p' },
		{ "bind", required_argument, 0, 'b' },
		{ "provider", required_argument, 0, 'P' },
		{ "b2b", required_argument, 0, 'B' },
		{ "compress", optional_argument, 0, 'z' },
		{ "stats-interval", required_argument, 0, 's' },
		{ "exit-after", required_argument, 0, 'x' },
		{ "loop", required_argument, 0, 'l' },
		{ "peer-timeout", required_argument, 0, 't' },
		{ "max-sleep-us", required_argument, 0, 'm' },
		{ "dead-client-grace-ms", required_argument, 0, 'g' },
		{ "history", required_argument, 0, 'H' },
		{ "nap", required_argument, 0, OPT_NAP },
		{ "lossless", optional_argument, 0, OPT_LOSSLESS },
		/* registration: long options only */
		{ "max-clients", required_argument, 0, OPT_MAX_CLIENTS },
		{ "allow-remote-clients", no_argument, 0, OPT_ALLOW_REMOTE },
		{ "secret-file", required_argument, 0, OPT_SECRET_FILE },
		{ "secret-required", no_argument, 0, OPT_SECRET_REQUIRED },
		/* B2B limits against hostile peers */
		{ "b2b-allow", required_argument, 0, OPT_B2B_ALLOW },
		{ "b2b-max-frame", required_argument, 0, OPT_B2B_MAX_FRAME },
		{ "b2b-memory", required_argument, 0, OPT_B2B_MEMORY },
		{ "b2b-inflate-rate", required_argument, 0, OPT_B2B_INFLATE },
		/* NATS bridge */
		{ "nats", required_argument, 0, OPT_NATS },
		{ "campaign", required_argument, 0, OPT_CAMPAIGN },
		{ "nats-creds", required_argument, 0, OPT_NATS_CREDS },
		{ "nats-tls-ca", required_argument, 0, OPT_NATS_TLS_CA },
		{ "nats-tags", required_argument, 0, OPT_NATS_TAGS },
		{ "nats-retry", no_argument, 0, OPT_NATS_RETRY },
		{ "nats-stream", no_argument, 0, OPT_NATS_STREAM },
		{ "nats-max-bytes", required_argument, 0, OPT_NATS_MAX_BYTES },
		{ "nats-max-age", required_argument, 0, OPT_NATS_MAX_AGE },
		{ "nats-replicas", required_argument, 0, OPT_NATS_REPLICAS },
		{ "nats-state", required_argument, 0, OPT_NATS_STATE },
		{ "dedup", optional_argument, 0, OPT_DEDUP },
		{ "verbose", no_argument, 0, 'v' },
		{ "help", no_argument, 0, 'h' },
		{ 0, 0, 0, 0 },
	};
	unsigned long port = LLMP_TCP_DEFAULT_PORT, stats_s = 10, exit_after = 0, peer_ms = 3000;
	unsigned long max_sleep = 0, grace_ms = 0, history = 0;
	bool no_nap = false, nap_always = false;
	unsigned long lossless_ms = 0;
	const char *bind_addr = "127.0.0.1";
	enum llmp_shmem_kind kind = LLMP_SHMEM_DEFAULT;
	enum llmp_loop_backend backend = LLMP_LOOP_AUTO;
	struct llmp_provider *p = NULL;
	struct llmp_broker *b = NULL;
	struct llmp_tcp_listener *l = NULL;
	struct llmp_loop *lp = NULL;
	struct stats_ctx sc = { 0 };
	struct llmp_loop_stats st;
	int c, ret, verbose = 0;
	const char *b2b[MAX_B2B];
	unsigned nb2b = 0;
	bool compress = false, zstd = false;
	unsigned long max_clients = 0;  /* registration */
	bool allow_remote = false;
	const char *secret_file = NULL; /* campaign secret */
	bool secret_required = false;
	const char *b2b_allow[MAX_B2B_ALLOW];
	unsigned nallow = 0;
	unsigned long b2b_max_frame = 0, b2b_memory = 0, b2b_inflate = 0;
	struct llmp_nats_opts no = { .struct_size = sizeof(no) };
	unsigned long nats_ul = 0;
	char nats_state[300];
	unsigned long dedup_mib = 0; /* 0: no dedup hook */
	struct llmp_dedup *dedup = NULL;

	while ((c = getopt_long(argc, argv, "p:b:P:B:zs:x:l:t:m:g:H:vh", lo, NULL)) != -1) {
		switch (c) {
		case 'p':
			if (parse_ulong(optarg, 65535, &port) < 0)
				goto bad;
			break;
		case 'b':
			bind_addr = optarg;
			break;
		case 'P':
			if (llmp_shmem_kind_from_name(optarg, &kind) < 0)
				goto bad;
			break;
		case 's':
			if (parse_ulong(optarg, 86400, &stats_s) < 0)
				goto bad;
			break;
		case 'x':
			if (parse_ulong(optarg, 1u << 30, &exit_after) < 0)
				goto bad;
			break;
		case 'l':
			if (!strcmp(optarg, "auto"))
				backend = LLMP_LOOP_AUTO;
			else if (!strcmp(optarg, "uring") || !strcmp(optarg, "io_uring"))
				backend = LLMP_LOOP_URING;
			else if (!strcmp(optarg, "poll"))
				backend = LLMP_LOOP_POLL;
			else
				goto bad;
			break;
		case 't':
			if (parse_ulong(optarg, 3600000, &peer_ms) < 0 || peer_ms == 0)
				goto bad;
			break;
		case 'B':
			if (nb2b == MAX_B2B)
				goto bad;
			b2b[nb2b++] = optarg;
			break;
		case 'z':
			compress = true;
			if (optarg && !strcmp(optarg, "zstd"))
				zstd = true;
			else if (optarg && strcmp(optarg, "deflate"))
				goto bad;
			break;
		case 'm':
			/* -1: no nap at all, sleep until a poke, a peer or a timer */
			if (!strcmp(optarg, "-1"))
				no_nap = true;
			else if (parse_ulong(optarg, 10000000, &max_sleep) < 0)
				goto bad;
			else if (max_sleep == 0) {
				/* 0 would read as "never sleep": a spinning broker is not what anyone wants */
				fprintf(stderr, "llmp-broker: --max-sleep-us 0: give the longest nap in "
					"microseconds (1 or more), or -1 for no limit\n");
				goto bad;
			}
			else
				no_nap = false;
			break;
		case OPT_LOSSLESS:
			lossless_ms = 5000;
			if (optarg && (parse_ulong(optarg, 3600000, &lossless_ms) < 0 || lossless_ms == 0))
				goto bad;
			break;
		case OPT_NAP:
			if (!strcmp(optarg, "always"))
				nap_always = true;
			else if (!strcmp(optarg, "auto"))
				nap_always = false;
			else
				goto bad;
			break;
		case 'g':
			if (parse_ulong(optarg, 86400000, &grace_ms) < 0 || grace_ms == 0)
				goto bad;
			break;
		case 'H':
			if (parse_ulong(optarg, TOOL_MAX_BYTES, &history) < 0 || history == 0)
				goto bad;
			break;
		case OPT_MAX_CLIENTS:
			if (parse_ulong(optarg, 1u << 20, &max_clients) < 0 || max_clients == 0)
				goto bad;
			break;
		case OPT_ALLOW_REMOTE:
			allow_remote = true;
			break;
		case OPT_SECRET_FILE:
			secret_file = optarg;
			break;
		case OPT_SECRET_REQUIRED:
			secret_required = true;
			break;
		case OPT_B2B_ALLOW:
			if (nallow == MAX_B2B_ALLOW)
				goto bad;
			b2b_allow[nallow++] = optarg;
			break;
		case OPT_B2B_MAX_FRAME:
			if (parse_ulong(optarg, LLMP_TCP_MAX_FRAME, &b2b_max_frame) < 0)
				goto bad;
			break;
		case OPT_B2B_MEMORY:
			if (parse_ulong(optarg, TOOL_MAX_BYTES, &b2b_memory) < 0)
				goto bad;
			break;
		case OPT_B2B_INFLATE:
			if (parse_ulong(optarg, TOOL_MAX_BYTES, &b2b_inflate) < 0)
				goto bad;
			break;
		case OPT_NATS:
			no.urls = optarg;
			break;
		case OPT_CAMPAIGN:
			no.campaign = optarg;
			break;
		case OPT_NATS_CREDS:
			no.creds_file = optarg;
			break;
		case OPT_NATS_TLS_CA:
			no.tls_ca_file = optarg;
			break;
		case OPT_NATS_TAGS:
			no.tags = optarg;
			break;
		case OPT_NATS_RETRY:
			no.retry = true;
			break;
		case OPT_NATS_STREAM:
			no.stream = true;
			break;
		case OPT_NATS_MAX_BYTES:
			/* 1 PiB (4 GiB - 1 where unsigned long has 32 bits) */
			if (parse_ulong(optarg, (unsigned long)(ULONG_MAX > (1ull << 50) ? 1ull << 50 : ULONG_MAX),
					&nats_ul) < 0)
				goto bad;
			no.stream_max_bytes = (int64_t)nats_ul;
			break;
		case OPT_NATS_MAX_AGE:
			if (parse_ulong(optarg, 100ul * 365 * 86400, &nats_ul) < 0)
				goto bad;
			no.stream_max_age_s = (int64_t)nats_ul;
			break;
		case OPT_NATS_REPLICAS:
			if (parse_ulong(optarg, 5, &nats_ul) < 0 || nats_ul == 0)
				goto bad;
			no.stream_replicas = (unsigned)nats_ul;
			break;
		case OPT_NATS_STATE:
			no.state_file = optarg;
			break;
		case OPT_DEDUP:
			dedup_mib = LLMP_DEDUP_DEFAULT_BYTES >> 20;
			if (optarg && (parse_ulong(optarg, 1u << 20, &dedup_mib) < 0 || dedup_mib == 0))
				goto bad;
			break;
		case 'v':
			verbose = 1;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind != argc)
		goto bad;
	if (secret_required && !secret_file) {
		fprintf(stderr, "llmp-broker: --secret-required needs --secret-file\n");
		goto bad;
	}
	if (!no.urls != !no.campaign) {
		fprintf(stderr, "llmp-broker: --nats and --campaign go together\n");
		goto bad;
	}
	if (no.urls && !no.state_file) {
		snprintf(nats_state, sizeof(nats_state), "llmp-nats-%.200s.id", no.campaign);
		no.state_file = nats_state;
	}
	llmp_set_log(log_cb, NULL, verbose ? LLMP_LOG_INFO : LLMP_LOG_WARN);

	ret = llmp_provider_new(kind, &p);
	if (ret < 0)
		goto fail;
	struct llmp_broker_opts bo = { .struct_size = sizeof(bo),
				       .history_bytes = (size_t)history,
				       .dead_client_grace_ms = (unsigned)grace_ms,
				       .max_clients = (unsigned)max_clients,
				       .allow_remote_clients = allow_remote };
	ret = llmp_broker_new(p, &bo, &b);
	if (ret < 0)
		goto fail;
	if (secret_file) {
		ret = llmp_broker_set_secret(b, secret_file, secret_required ? LLMP_SECRET_REQUIRED : 0);
		if (ret < 0)
			goto fail;
	}
	if (dedup_mib) {
		ret = llmp_dedup_new((size_t)dedup_mib << 20, &dedup);
		if (ret < 0 || (ret = llmp_dedup_attach(dedup, b)) < 0)
			goto fail;
		sc.dedup = dedup;
	}
	struct llmp_tcp_listener_opts to = { .struct_size = sizeof(to), .peer_timeout_ms = (int)peer_ms };
	ret = llmp_tcp_listen(b, bind_addr, (uint16_t)port, &to, &l);
	if (ret < 0)
		goto fail;
	struct llmp_loop_opts oo = { .struct_size = sizeof(oo), .backend = backend,
				     .handle_signals = true,
				     .stats_interval_ms = (int)(stats_s * 1000),
				     .on_stats = on_stats, .ctx = &sc,
				     .max_sleep_us = no_nap ? -1 : (int)max_sleep, .exit_after = (unsigned)exit_after,
				     .b2b_compress = compress, .b2b_zstd = zstd,
				     .b2b_max_frame = b2b_max_frame, .b2b_memory = b2b_memory,
				     .b2b_inflate_rate = b2b_inflate,
				     .nap = nap_always ? LLMP_LOOP_NAP_ALWAYS : LLMP_LOOP_NAP_AUTO };
	ret = llmp_loop_new(b, &oo, &lp);
	if (ret < 0)
		goto fail;
	ret = llmp_loop_add_listener(lp, l);
	if (ret < 0)
		goto fail;
	if (lossless_ms) {
		ret = llmp_loop_set_lossless(lp, (int)lossless_ms);
		if (ret < 0)
			goto fail;
	}
	for (unsigned i = 0; i < nallow; i++) {
		ret = llmp_loop_b2b_allow(lp, b2b_allow[i]);
		if (ret < 0)
			goto fail;
	}
	for (unsigned i = 0; i < nb2b; i++) {
		char host[256];
		const char *colon = strrchr(b2b[i], ':');
		unsigned long bport;

		if (!colon || colon == b2b[i] || (size_t)(colon - b2b[i]) >= sizeof(host) ||
		    parse_ulong(colon + 1, 65535, &bport) < 0) {
			fprintf(stderr, "llmp-broker: --b2b wants HOST:PORT, got %s\n", b2b[i]);
			ret = -EINVAL;
			goto fail;
		}
		memcpy(host, b2b[i], (size_t)(colon - b2b[i]));
		host[colon - b2b[i]] = 0;
		ret = llmp_loop_connect_b2b(lp, host, (uint16_t)bport);
		if (ret < 0)
			goto fail;
		printf("llmp-broker: dialling %s (the loop connects, and re-dials when the link breaks)\n",
		       b2b[i]);
	}
	if (no.urls) {
		ret = llmp_loop_attach_nats(lp, &no, &sc.nats);
		if (ret < 0)
			goto fail;
		printf("llmp-broker: NATS bridge to %s, campaign %s (%s)\n", no.urls, no.campaign,
		       no.stream ? "JetStream" : "core NATS");
	}
	printf("llmp-broker: listening on %s:%u (provider %s, loop %s)\n", bind_addr,
	       llmp_tcp_listener_port(l), llmp_shmem_kind_name(llmp_provider_kind(p)),
	       llmp_loop_backend_name(lp));
	fflush(stdout);
	ret = llmp_loop_run(lp);
	if (ret < 0)
		goto fail;
	llmp_loop_stats(lp, &st);
	printf("llmp-broker: stopped after %" PRId64 " ms: %" PRIu64 " messages forwarded, %" PRIu64
	       " clients registered over TCP, %" PRIu64 " peers dropped\n",
	       st.uptime_ms, st.forwarded, st.tcp.registered, st.tcp.dropped);
	if (dedup) {
		struct llmp_dedup_stats ds;

		llmp_dedup_stats(dedup, &ds);
		printf("llmp-broker: dedup: %" PRIu64 " test cases, %" PRIu64 " passed, %" PRIu64
		       " duplicates dropped, %" PRIu64 " invalid, %" PRIu64 " evicted\n",
		       ds.seen, ds.passed, ds.dropped, ds.invalid, ds.evicted);
	}
	llmp_loop_free(lp);
	llmp_tcp_listener_free(l);
	llmp_broker_free(b);
	llmp_dedup_free(dedup);
	llmp_provider_free(p);
	return 0;
bad:
	fprintf(stderr, "llmp-broker: bad arguments\n");
	usage(stderr);
	return 2;
fail:
	fprintf(stderr, "llmp-broker: %s\n", llmp_strerror_last());
	llmp_loop_free(lp);
	llmp_tcp_listener_free(l);
	llmp_broker_free(b);
	llmp_dedup_free(dedup);
	llmp_provider_free(p);
	return 1;
}
