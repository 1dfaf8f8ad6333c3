// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * The NATS bridge's connection: options (servers, credentials and TLS
 * from files, reconnecting forever), the first connect (a clear error, or
 * with retry a background one), the JetStream stream and durable consumer,
 * attaching to the loop and the orderly shutdown.  The data path is in
 * lib/nats_bridge.c.
 */
#ifdef LLMP_HAVE_NATS

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "nats_conn.h"
#include "loop_internal.h"

#define OPT(o, f, dflt)                                                                       \
	((o)->struct_size >= offsetof(struct llmp_nats_opts, f) + sizeof((o)->f) ? (o)->f : (dflt))

static void on_disconnected(natsConnection *nc, void *closure)
{
	struct llmp_nats *n = closure;

	(void)nc;
	if (atomic_exchange(&n->connected, false) && !atomic_load(&n->stop_retry))
		llmp_log(LLMP_LOG_WARN, "nats: disconnected; serving locally, reconnecting");
	nats_wake(n);
}

static void on_connected(natsConnection *nc, void *closure)
{
	struct llmp_nats *n = closure;
	char url[256] = "?";

	natsConnection_GetConnectedUrl(nc, url, sizeof(url));
	atomic_store(&n->connected, true);
	llmp_log(LLMP_LOG_INFO, "nats: connected to %s", url);
	nats_wake(n);
}

static void on_reconnected(natsConnection *nc, void *closure)
{
	struct llmp_nats *n = closure;

	atomic_fetch_add(&n->c.reconnects, 1);
	on_connected(nc, closure);
}

static void on_closed(natsConnection *nc, void *closure)
{
	struct llmp_nats *n = closure;

	(void)nc;
	/* The last callback libnats makes for this connection: free() waits for it. */
	atomic_store(&n->closed, true);
}

static void on_async_error(natsConnection *nc, natsSubscription *sub, natsStatus err, void *closure)
{
	(void)nc;
	(void)sub;
	(void)closure;
	llmp_log(LLMP_LOG_WARN, "nats: %s", natsStatus_GetText(err));
}

/* A .creds file (JWT and seed), else one line "user:password", else one line "token". */
static int set_creds(natsOptions *o, const char *path)
{
	char buf[8192];
	FILE *f = fopen(path, "re");
	natsStatus s;
	size_t k;
	char *colon;

	if (!f)
		return llmp_err(-errno, "nats: credentials file %s: %s", path, strerror(errno));
	k = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[k] = 0;
	if (strstr(buf, "BEGIN NATS USER JWT")) {
		s = natsOptions_SetUserCredentialsFromFiles(o, path, NULL);
	} else {
		buf[strcspn(buf, "\r\n")] = 0;
		if (!buf[0]) {
			explicit_bzero(buf, sizeof(buf));
			return llmp_err(-EINVAL, "nats: credentials file %s is empty", path);
		}
		colon = strchr(buf, ':');
		if (colon) {
			*colon = 0;
			s = natsOptions_SetUserInfo(o, buf, colon + 1);
		} else {
			s = natsOptions_SetToken(o, buf);
		}
	}
	explicit_bzero(buf, sizeof(buf));
	if (s != NATS_OK)
		return llmp_err(-EINVAL, "nats: credentials file %s: %s", path, natsStatus_GetText(s));
	return 0;
}

/* Split "a,b,c" into libnats's server list. */
static int set_servers(natsOptions *o, const char *urls)
{
	char *copy = strdup(urls), *save = NULL, *tok;
	const char *list[16];
	int k = 0;
	natsStatus s;

	if (!copy)
		return llmp_err(-ENOMEM, "nats: out of memory");
	for (tok = strtok_r(copy, ",", &save); tok && k < 16; tok = strtok_r(NULL, ",", &save))
		list[k++] = tok;
	s = k ? natsOptions_SetServers(o, list, k) : NATS_INVALID_ARG;
	free(copy);
	if (s != NATS_OK)
		return llmp_err(-EINVAL, "nats: bad server list \"%s\": %s", urls,
				nats_GetLastError(NULL) ? nats_GetLastError(NULL) : natsStatus_GetText(s));
	return 0;
}

static int make_opts(struct llmp_nats *n, const struct llmp_nats_opts *o)
{
	natsOptions *no = NULL;
	const char *ca = OPT(o, tls_ca_file, NULL);
	const char *creds = OPT(o, creds_file, NULL);
	char name[64];
	int ret;

	if (natsOptions_Create(&no) != NATS_OK)
		return llmp_err(-ENOMEM, "nats: cannot create options");
	n->opts = no;
	ret = set_servers(no, o->urls);
	if (ret < 0)
		return ret;
	snprintf(name, sizeof(name), "llmp-broker %s", n->origin_hex);
	natsOptions_SetName(no, name);
	natsOptions_SetNoEcho(no, true);
	natsOptions_SetSendAsap(no, true);
	natsOptions_SetTimeout(no, 2000);
	natsOptions_SetMaxReconnect(no, -1);
	natsOptions_SetReconnectWait(no, 250);
	natsOptions_SetReconnectJitter(no, 250, 1000);
	natsOptions_SetPingInterval(no, 2000);
	natsOptions_SetMaxPingsOut(no, 2);
	natsOptions_SetDisconnectedCB(no, on_disconnected, n);
	natsOptions_SetReconnectedCB(no, on_reconnected, n);
	natsOptions_SetClosedCB(no, on_closed, n);
	natsOptions_SetErrorHandler(no, on_async_error, n);
	if (creds && (ret = set_creds(no, creds)) < 0)
		return ret;
	if (ca) {
		if (natsOptions_SetSecure(no, true) != NATS_OK ||
		    natsOptions_LoadCATrustedCertificates(no, ca) != NATS_OK)
			return llmp_err(-EINVAL, "nats: TLS with CA file %s: %s", ca,
					nats_GetLastError(NULL) ? nats_GetLastError(NULL) : "failed");
	}
	if (OPT(o, retry, false))
		natsOptions_SetRetryOnFailedConnect(no, true, on_connected, n);
	return 0;
}

int nats_setup(struct llmp_nats *n)
{
	const char *subjects[1] = { n->subject };
	int64_t now = llmp_now_ms();
	jsErrCode jerr = 0;
	natsStatus s;

	if (n->ready || now < n->next_setup)
		return 0;
	n->next_setup = now + NATS_SETUP_RETRY_MS;
	if (natsConnection_GetMaxPayload(n->nc) > 0)
		n->max_payload = natsConnection_GetMaxPayload(n->nc);
	if (!n->stream) {
		s = natsConnection_Subscribe(&n->sub, n->nc, n->subject, nats_on_msg, n);
		if (s != NATS_OK)
			goto fail;
		natsSubscription_SetPendingLimits(n->sub, 65536, 256 << 20);
		n->ready = true;
		return 0;
	}
	if (!n->js) {
		jsOptions jo;

		jsOptions_Init(&jo);
		jo.Wait = 2000;
		jo.PublishAsync.MaxPending = 1 << 20; /* our window is smaller: libnats never stalls */
		jo.PublishAsync.AckHandler = nats_on_puback;
		jo.PublishAsync.AckHandlerClosure = n;
		s = natsConnection_JetStream(&n->js, n->nc, &jo);
		if (s != NATS_OK)
			goto fail;
		jsPubOptions_Init(&n->po);
		n->po.MaxWait = NATS_PUB_WAIT_MS;
	}
	jsStreamInfo *si = NULL;

	s = js_GetStreamInfo(&si, n->js, n->stream_name, NULL, &jerr);
	if (s == NATS_NOT_FOUND) {
		jsStreamConfig sc;

		jsStreamConfig_Init(&sc);
		sc.Name = n->stream_name;
		sc.Subjects = subjects;
		sc.SubjectsLen = 1;
		sc.Storage = js_FileStorage;
		sc.MaxBytes = n->max_bytes > 0 ? n->max_bytes : -1;
		sc.MaxAge = n->max_age_s > 0 ? n->max_age_s * 1000000000LL : 0;
		sc.Replicas = n->replicas ? n->replicas : 1;
		s = js_AddStream(&si, n->js, &sc, NULL, &jerr);
		if (s == NATS_OK)
			llmp_log(LLMP_LOG_INFO, "nats: created stream %s (max %lld bytes, %lld s)",
				 n->stream_name, (long long)sc.MaxBytes, (long long)n->max_age_s);
	}
	jsStreamInfo_Destroy(si);
	if (s != NATS_OK)
		goto fail;
	jsSubOptions so;

	jsSubOptions_Init(&so);
	so.Stream = n->stream_name;
	so.ManualAck = true;
	so.Config.Durable = n->durable;
	so.Config.AckPolicy = js_AckExplicit;
	so.Config.DeliverPolicy = js_DeliverAll;
	so.Config.MaxAckPending = NATS_QCAP;
	so.Config.AckWait = 30LL * 1000000000LL;
	s = js_Subscribe(&n->sub, n->js, n->subject, nats_on_msg, n, NULL, &so, &jerr);
	if (s != NATS_OK)
		goto fail;
	n->ready = true;
	llmp_log(LLMP_LOG_INFO, "nats: consumer %s on stream %s", n->durable, n->stream_name);
	return 0;
fail:
	if (!n->setup_logged)
		llmp_log(LLMP_LOG_WARN, "nats: cannot subscribe yet (retrying every %d ms): %s "
			 "(JetStream error %d)", NATS_SETUP_RETRY_MS,
			 nats_GetLastError(NULL) ? nats_GetLastError(NULL) : natsStatus_GetText(s),
			 (int)jerr);
	n->setup_logged = true;
	return -EAGAIN;
}

static int bridge_init(struct llmp_nats *n, struct llmp_loop *lp, const struct llmp_nats_opts *o)
{
	const char *state = OPT(o, state_file, NULL);
	struct llmp_shmem_desc d;
	uint32_t boot;
	int ret;

	n->b = lp->b;
	n->evfd = lp->evfd;
	pthread_mutex_init(&n->qlock, NULL);
	snprintf(n->campaign, sizeof(n->campaign), "%s", o->campaign);
	snprintf(n->subject, sizeof(n->subject), "llmp.%s.>", o->campaign);
	snprintf(n->stream_name, sizeof(n->stream_name), "LLMP_%s", o->campaign);
	n->stream = OPT(o, stream, false);
	n->max_bytes = OPT(o, stream_max_bytes, 0);
	n->max_age_s = OPT(o, stream_max_age_s, 0);
	n->replicas = OPT(o, stream_replicas, 0);
	n->window = OPT(o, window, 0) ? OPT(o, window, 0) : 1024;
	ret = nats_tags_parse(OPT(o, tags, NULL), &n->tags);
	if (ret < 0)
		return ret;
	if (state) {
		ret = nats_origin_load(state, &n->origin);
		if (ret < 0)
			return ret;
	} else {
		do {
			if (getrandom(&n->origin, sizeof(n->origin), 0) != sizeof(n->origin))
				return llmp_err(-EIO, "nats: getrandom failed");
		} while (!n->origin);
	}
	if (getrandom(&boot, sizeof(boot), 0) != sizeof(boot))
		return llmp_err(-EIO, "nats: getrandom failed");
	snprintf(n->origin_hex, sizeof(n->origin_hex), "%016llx", (unsigned long long)n->origin);
	snprintf(n->boot_hex, sizeof(n->boot_hex), "%08x", boot);
	snprintf(n->durable, sizeof(n->durable), "b%s", n->origin_hex);
#ifdef LLMP_HAVE_ZSTD
	n->zc = ZSTD_createCCtx();
	n->zd = ZSTD_createDCtx();
	if (!n->zc || !n->zd)
		return llmp_err(-ENOMEM, "nats: out of memory for zstd contexts");
#endif
	/* Read from now on, like a B2B link: what local clients send from here is published. */
	ret = llmp_broker_broadcast_desc(n->b, &d);
	if (ret == 0)
		ret = llmp_receiver_init(&n->r, llmp_broker_provider(n->b), &d, false, 0, false, &d);
	if (ret < 0)
		return ret;
	n->r_ok = true;
	return make_opts(n, o);
}

int llmp_loop_attach_nats(struct llmp_loop *lp, const struct llmp_nats_opts *o,
			  struct llmp_nats **out)
{
	struct llmp_nats *n;
	natsStatus s;
	int ret;

	if (out)
		*out = NULL;
	if (!lp || !o || o->struct_size < offsetof(struct llmp_nats_opts, tags))
		return llmp_err(-EINVAL, "nats: NULL loop or options (struct_size not set?)");
	if (lp->nats)
		return llmp_err(-EBUSY, "nats: the loop has a bridge already");
	if (!o->urls || !*o->urls)
		return llmp_err(-EINVAL, "nats: no server URL");
	ret = nats_campaign_check(o->campaign);
	if (ret < 0)
		return ret;
	n = calloc(1, sizeof(*n));
	if (!n)
		return llmp_err(-ENOMEM, "nats: out of memory");
	ret = bridge_init(n, lp, o);
	if (ret < 0) {
		llmp_nats_free(n);
		return ret;
	}
	s = natsConnection_Connect(&n->nc, n->opts);
	if (s == NATS_OK) {
		on_connected(n->nc, n);
	} else if (s == NATS_NOT_YET_CONNECTED) {
		llmp_log(LLMP_LOG_WARN, "nats: no server reachable at %s yet; serving locally, "
			 "retrying", o->urls);
	} else {
		const char *why = nats_GetLastError(NULL);

		ret = llmp_err(s == NATS_CONNECTION_AUTH_FAILED ? -EACCES : -ECONNREFUSED,
			       "nats: cannot connect to %s: %s%s%s", o->urls, natsStatus_GetText(s),
			       why ? ": " : "", why ? why : "");
		llmp_nats_free(n);
		return ret;
	}
	n->max_payload = natsConnection_GetMaxPayload(n->nc);
	if (n->max_payload <= 0)
		n->max_payload = 1 << 20; /* not connected yet: NATS's default */
	if (atomic_load(&n->connected))
		nats_setup(n);
	lp->nats = n;
	if (out)
		*out = n;
	return 0;
}

void llmp_nats_free(struct llmp_nats *n)
{
	if (!n)
		return;
	if (n->nc && atomic_load(&n->connected) && n->ready) {
		/* What local clients sent last: published before we go (up to 2 s). */
		int64_t end = llmp_now_ms() + 2000;

		while (llmp_now_ms() < end && llmp_nats_step(n) > 0)
			;
		if (n->stream && n->js) {
			jsPubOptions po;

			jsPubOptions_Init(&po);
			po.MaxWait = 2000;
			js_PublishAsyncComplete(n->js, &po);
		}
		natsConnection_FlushTimeout(n->nc, 2000);
	}
	atomic_store(&n->stop_retry, true);
	pthread_mutex_lock(&n->qlock);
	n->closing = true;
	pthread_mutex_unlock(&n->qlock);
	if (n->nc) {
		natsConnection_Close(n->nc);
		/* Wait for the closed callback: no callback of ours runs after it. */
		for (int i = 0; i < 2000 && !atomic_load(&n->closed); i++)
			usleep(1000);
	}
	natsSubscription_Destroy(n->sub); /* not unsubscribed: the durable consumer stays */
	jsCtx_Destroy(n->js);
	natsConnection_Destroy(n->nc);
	natsOptions_Destroy(n->opts);
	natsMsg_Destroy(n->held);
	while (n->qn) {
		natsMsg_Destroy(n->q[n->qhead]); /* JetStream: not acked, delivered again */
		n->qhead = (n->qhead + 1) % NATS_QCAP;
		n->qn--;
	}
	if (n->r_ok)
		llmp_receiver_fini(&n->r);
#ifdef LLMP_HAVE_ZSTD
	ZSTD_freeCCtx(n->zc);
	ZSTD_freeDCtx(n->zd);
#endif
	free(n->z);
	free(n->d);
	nats_dedup_free(&n->dedup);
	pthread_mutex_destroy(&n->qlock);
	free(n);
}

#endif /* LLMP_HAVE_NATS */
