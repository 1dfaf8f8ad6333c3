// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * llmp-client: register with a broker over TCP, send a file or stdin lines
 * as messages, print the messages the broker broadcasts.
 *
 *   llmp-client [options] send [FILE]    FILE as one message, or each stdin line
 *   llmp-client [options] recv           print messages until -n/-w says stop
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "llmp/broker.h"
#include "llmp/llmp.h"
#include "llmp/shmem.h"
#include "tool.h"

#define DEFAULT_TAG 0x5130C11Eu

static void usage(FILE *f)
{
	fprintf(f,
		"usage: llmp-client [options] send [FILE] | recv\n"
		"  -a, --addr ADDR       broker address (default 127.0.0.1)\n"
		"  -p, --port N          broker port (default %d)\n"
		"  -P, --provider KIND   shared memory kind; must match the broker's\n"
		"  -T, --tag N           tag of sent messages (default 0x%X)\n"
		"  -n, --count N         recv: stop after N messages\n"
		"  -w, --wait MS         recv: stop after MS ms without a message (default: wait forever)\n"
		"  -s, --skip-own        recv: do not print this client's own messages\n"
		"  -N, --from-now        recv: only messages broadcast after joining (not the history)\n"
		"  -h, --help\n",
		LLMP_TCP_DEFAULT_PORT, DEFAULT_TAG);
}

static void print_msg(const struct llmp_msg_view *v)
{
	const unsigned char *b = v->buf;
	size_t show = v->len < 96 ? v->len : 96;

	printf("from %u", v->sender);
	if (v->broker)
		printf(" via link %u", v->broker);
	printf(" tag 0x%08x flags 0x%x len %zu: ", v->tag, v->flags, v->len);
	for (size_t i = 0; i < show; i++) {
		if (b[i] >= 0x20 && b[i] < 0x7f && b[i] != '\\')
			putchar(b[i]);
		else
			printf("\\x%02x", b[i]);
	}
	printf("%s\n", show < v->len ? "..." : "");
	fflush(stdout);
}

/* Our broker's control segment: poked after each send so a sleeping broker wakes. */
static struct llmp_waker *waker;

static int send_one(struct llmp_client *c, uint32_t tag, const void *buf, size_t len)
{
	int ret = llmp_client_send(c, tag, 0, buf, len);

	if (ret == 0 && waker)
		ret = llmp_waker_poke(waker) < 0 ? -EIO : 0;
	return ret;
}

static int do_send(struct llmp_client *c, uint32_t tag, const char *file)
{
	FILE *f = stdin;
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;
	int ret = 0;
	unsigned long sent = 0;

	if (file) {
		long sz;
		char *buf;

		f = fopen(file, "rb");
		if (!f) {
			fprintf(stderr, "llmp-client: %s: %s\n", file, strerror(errno));
			return -errno;
		}
		if (fseek(f, 0, SEEK_END) || (sz = ftell(f)) < 0 || fseek(f, 0, SEEK_SET)) {
			fclose(f);
			fprintf(stderr, "llmp-client: %s: cannot size the file\n", file);
			return -EIO;
		}
		buf = malloc(sz ? (size_t)sz : 1);
		if (!buf || fread(buf, 1, (size_t)sz, f) != (size_t)sz) {
			free(buf);
			fclose(f);
			fprintf(stderr, "llmp-client: %s: read failed\n", file);
			return -EIO;
		}
		fclose(f);
		ret = send_one(c, tag, buf, (size_t)sz);
		free(buf);
		if (ret < 0)
			return ret;
		fprintf(stderr, "llmp-client: sent %ld bytes as one message\n", sz);
		return 0;
	}
	while ((n = getline(&line, &cap, f)) >= 0) {
		if (n > 0 && line[n - 1] == '\n')
			n--;
		ret = send_one(c, tag, line, (size_t)n);
		if (ret < 0)
			break;
		sent++;
	}
	free(line);
	if (ret == 0)
		fprintf(stderr, "llmp-client: sent %lu messages\n", sent);
	return ret;
}

static int do_recv(struct llmp_client *c, unsigned long count, int wait_ms)
{
	unsigned long got = 0;
	struct llmp_msg_view v;
	int ret;

	while (!count || got < count) {
		ret = llmp_client_recv_wait(c, &v, wait_ms);
		if (ret < 0)
			return ret == -ESHUTDOWN ? 0 : ret;
		if (ret == 0)
			break;
		print_msg(&v);
		got++;
	}
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "addr", required_argument, 0, 'a' },
		{ "port", required_argument, 0, 'p' },
		{ "provider", required_argument, 0, 'P' },
		{ "tag", required_argument, 0, 'T' },
		{ "count", required_argument, 0, 'n' },
		{ "wait", required_argument, 0, 'w' },
		{ "skip-own", no_argument, 0, 's' },
		{ "from-now", no_argument, 0, 'N' },
		{ "help", no_argument, 0, 'h' },
		{ 0, 0, 0, 0 },
	};
	unsigned long port = LLMP_TCP_DEFAULT_PORT, tag = DEFAULT_TAG, count = 0, wait_ms = 0;
	const char *addr = "127.0.0.1";
	enum llmp_shmem_kind kind = LLMP_SHMEM_DEFAULT;
	struct llmp_provider *p = NULL;
	struct llmp_client *cl = NULL;
	bool skip_own = false, has_wait = false, from_now = false;
	int c, ret;

	while ((c = getopt_long(argc, argv, "a:p:P:T:n:w:sNh", lo, NULL)) != -1) {
		switch (c) {
		case 'a':
			addr = optarg;
			break;
		case 'p':
			if (parse_ulong(optarg, 65535, &port) < 0)
				goto bad;
			break;
		case 'P':
			if (llmp_shmem_kind_from_name(optarg, &kind) < 0)
				goto bad;
			break;
		case 'T':
			if (parse_ulong(optarg, 0xffffffffUL, &tag) < 0)
				goto bad;
			break;
		case 'n':
			if (parse_ulong(optarg, TOOL_MAX_BYTES, &count) < 0)
				goto bad;
			break;
		case 'w':
			if (parse_ulong(optarg, 1u << 30, &wait_ms) < 0)
				goto bad;
			has_wait = true;
			break;
		case 's':
			skip_own = true;
			break;
		case 'N':
			from_now = true;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind >= argc || (strcmp(argv[optind], "send") && strcmp(argv[optind], "recv")))
		goto bad;
	bool sending = !strcmp(argv[optind], "send");
	const char *file = NULL;
	if (sending && optind + 1 < argc)
		file = argv[optind + 1];
	if (optind + 1 + (file ? 1 : 0) != argc)
		goto bad;

	ret = llmp_provider_new(kind, &p);
	if (ret < 0)
		goto fail;
	struct llmp_client_opts o = { .struct_size = sizeof(o), .send_timeout_ms = -1,
				      .skip_own = skip_own, .join_at_newest = from_now };
	ret = llmp_client_connect_tcp(p, addr, (uint16_t)port, &o, &cl);
	if (ret < 0)
		goto fail;
	fprintf(stderr, "llmp-client: registered as client %u with %s:%lu\n", llmp_client_id(cl),
		addr, port);
	/* Not fatal: a LibAFL broker has no control segment, it polls. */
	if (sending && llmp_waker_connect_tcp(p, addr, (uint16_t)port, &waker) < 0)
		waker = NULL;
	ret = sending ? do_send(cl, (uint32_t)tag, file)
		      : do_recv(cl, count, has_wait ? (int)wait_ms : -1);
	/*
	 * Sent is not delivered: exit only once the broker holds the page with
	 * the last message (a LibAFL broker maps a new client's page a loop
	 * round later), or say that it does not.
	 */
	if (ret == 0 && sending && llmp_client_wait_safe(cl, 10000) < 0) {
		fprintf(stderr, "llmp-client: the broker did not take the messages within 10 s: "
			"they may be lost\n");
		ret = -ETIMEDOUT;
	}
	if (ret < 0)
		goto fail;
	llmp_waker_free(waker);
	llmp_client_free(cl);
	llmp_provider_free(p);
	return 0;
bad:
	fprintf(stderr, "llmp-client: bad arguments\n");
	usage(stderr);
	return 2;
fail:
	fprintf(stderr, "llmp-client: %s\n", llmp_strerror_last());
	llmp_waker_free(waker);
	if (cl)
		llmp_client_free(cl);
	if (p)
		llmp_provider_free(p);
	return 1;
}
