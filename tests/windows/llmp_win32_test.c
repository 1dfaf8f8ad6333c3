// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * The LLMP protocol on Windows: a broker, clients and their pages over the
 * win32 provider, in one process and across processes.  Run under Windows
 * or wine with the KTAP runner of wtest.h.
 *
 * Pages are small (64 KiB) so that every run crosses many page boundaries:
 * each end-of-page message carries the next page's win32 id, which the
 * other process must open by name.
 *
 * Child modes (this executable started again with an argument):
 *   sender    registers through a mailbox segment, sends N messages, waits
 *             until the broker mapped its last page, exits 0;
 *   receiver  reads the broker's broadcast pages and checks N messages;
 *   bbroker   runs a broker, posts its broadcast page and a hello, then
 *             waits to be killed.
 * They find their segments through descriptions in the environment.  With
 * LLMP_WT_HANG set, the sender posts state 3 after its last message and
 * waits to be killed instead of exiting.
 */
#include <stdatomic.h>

#include "wtest.h"
#include "llmp/llmp.h"

#define ENV_BCAST "LLMP_WT_BCAST"
#define ENV_BOX "LLMP_WT_BOX"
#define ENV_COUNT "LLMP_WT_COUNT"
#define ENV_HANG "LLMP_WT_HANG"
#define TAG_HELLO 0x0D47A002u
#define GRACE_MS 300

#define PAGE (64 * 1024)
#define TAG_DATA 0x0D47A001u
#define MAX_LEN 4000
#define TIMEOUT_MS 60000

/* Child exit statuses (0 = success). */
enum { CHILD_OK = 0, CHILD_SETUP = 10, CHILD_REGISTER, CHILD_SEND, CHILD_SAFE, CHILD_RECV,
       CHILD_ORDER, CHILD_BYTES, CHILD_TIMEOUT };

/*
 * The mailbox a sending child registers through (TCP registration does not
 * build for Windows yet): the child posts its out page, the parent answers
 * with the client id.
 */
struct mailbox {
	atomic_uint state; /* 0 empty, 1 out page posted, 2 id assigned */
	uint32_t id;
	struct llmp_shmem_desc out;
};

/* Message i: its length and its bytes (seeded by i). */
static size_t msg_len(uint32_t i)
{
	return 1 + (i * 131u) % MAX_LEN;
}

static bool msg_ok(uint32_t i, const struct llmp_msg_view *v)
{
	const uint8_t *b = v->buf;

	if (v->tag != TAG_DATA || v->len != msg_len(i))
		return false;
	for (size_t k = 0; k < v->len; k++)
		if (b[k] != wtest_pattern(k, i))
			return false;
	return true;
}

static uint32_t env_count(void)
{
	const char *s = getenv(ENV_COUNT);

	return s ? (uint32_t)strtoul(s, NULL, 10) : 0;
}

static int set_count(uint32_t n)
{
	char buf[16];

	snprintf(buf, sizeof(buf), "%" PRIu32, n);
	return wtest_setenv(ENV_COUNT, buf);
}

static struct llmp_client_opts client_opts(int send_timeout_ms)
{
	struct llmp_client_opts o = {
		.struct_size = sizeof(o),
		.page_size = PAGE,
		.send_timeout_ms = send_timeout_ms,
		.skip_own = true,
	};
	return o;
}

static int new_broker(struct llmp_provider *p, struct llmp_broker **b)
{
	struct llmp_broker_opts o = { .struct_size = sizeof(o), .page_size = PAGE };

	return llmp_broker_new(p, &o, b);
}

/* A client of b in this process, registered with it; returns its id or <0. */
static int local_client(struct llmp_provider *p, struct llmp_broker *b, int send_timeout_ms,
			struct llmp_client **out)
{
	struct llmp_client_opts o = client_opts(send_timeout_ms);
	struct llmp_shmem_desc bd, od;
	int r, id;

	r = llmp_broker_broadcast_desc(b, &bd);
	if (r < 0)
		return r;
	r = llmp_client_new(p, &bd, &o, out);
	if (r < 0)
		return r;
	r = llmp_client_out_desc(*out, &od);
	if (r < 0)
		return r;
	id = llmp_broker_add_client(b, &od);
	if (id > 0)
		llmp_client_set_id(*out, (uint32_t)id);
	return id;
}

/* ---- children ------------------------------------------------------------------ */

static int child_sender(void)
{
	struct llmp_client_opts o = client_opts(30000);
	struct llmp_shmem_desc bd, boxd, od;
	struct llmp_provider *p;
	struct llmp_shmem *boxm;
	struct llmp_client *c;
	struct mailbox *box;
	uint32_t n = env_count();
	static uint8_t buf[MAX_LEN];
	int ret = CHILD_OK;

	if (!n || llmp_provider_new(LLMP_SHMEM_WIN32, &p) < 0 ||
	    llmp_shmem_desc_from_env(ENV_BCAST, &bd) < 0 ||
	    llmp_shmem_desc_from_env(ENV_BOX, &boxd) < 0)
		return CHILD_SETUP;
	if (llmp_shmem_attach(p, &boxd, &boxm) < 0 || llmp_client_new(p, &bd, &o, &c) < 0 ||
	    llmp_client_out_desc(c, &od) < 0)
		return CHILD_SETUP;
	box = llmp_shmem_addr(boxm);
	box->out = od;
	/* release: publishes box->out; pairs with the parent's acquire load of state */
	atomic_store_explicit(&box->state, 1, memory_order_release);
	for (int t = 0;; t++) {
		/* acquire: pairs with the parent's release store of 2 after writing box->id */
		if (atomic_load_explicit(&box->state, memory_order_acquire) == 2)
			break;
		if (t > TIMEOUT_MS)
			return CHILD_REGISTER;
		Sleep(1);
	}
	llmp_client_set_id(c, box->id);
	for (uint32_t i = 0; i < n && ret == CHILD_OK; i++) {
		size_t len = msg_len(i);

		for (size_t k = 0; k < len; k++)
			buf[k] = wtest_pattern(k, i);
		if (llmp_client_send(c, TAG_DATA, 0, buf, len) < 0) {
			printf("# sender: message %" PRIu32 ": %s\n", i, llmp_strerror_last());
			ret = CHILD_SEND;
		}
	}
	if (ret == CHILD_OK && llmp_client_wait_safe(c, 30000) < 0)
		ret = CHILD_SAFE;
	if (ret == CHILD_OK && getenv(ENV_HANG) && *getenv(ENV_HANG)) {
		/* release: all sent; pairs with the parent's acquire load of state */
		atomic_store_explicit(&box->state, 3, memory_order_release);
		Sleep(INFINITE); /* the parent kills us */
	}
	llmp_client_free(c); /* EXITING */
	llmp_shmem_put(boxm);
	llmp_provider_free(p);
	return ret;
}

static int child_receiver(void)
{
	struct llmp_client_opts o = client_opts(LLMP_NO_WAIT);
	struct llmp_shmem_desc bd;
	struct llmp_provider *p;
	struct llmp_client *c;
	struct llmp_msg_view v;
	uint32_t n = env_count(), got = 0;
	int ret = CHILD_OK;

	if (!n || llmp_provider_new(LLMP_SHMEM_WIN32, &p) < 0 ||
	    llmp_shmem_desc_from_env(ENV_BCAST, &bd) < 0 || llmp_client_new(p, &bd, &o, &c) < 0)
		return CHILD_SETUP;
	while (got < n && ret == CHILD_OK) {
		int r = llmp_client_recv_wait(c, &v, TIMEOUT_MS);

		if (r < 0) {
			printf("# receiver: after %" PRIu32 " messages: %s\n", got,
			       llmp_strerror_last());
			ret = CHILD_RECV;
		} else if (r == 0) {
			ret = CHILD_TIMEOUT;
		} else if (v.tag == TAG_DATA) {
			if (v.sender != LLMP_BROKER_CLIENT_ID)
				ret = CHILD_ORDER;
			else if (!msg_ok(got, &v))
				ret = CHILD_BYTES;
			got++;
		}
	}
	llmp_client_free(c);
	llmp_provider_free(p);
	return ret;
}

static int child_bbroker(void)
{
	struct llmp_shmem_desc boxd, bd;
	struct llmp_provider *p;
	struct llmp_shmem *boxm;
	struct llmp_broker *b;
	struct mailbox *box;

	if (llmp_provider_new(LLMP_SHMEM_WIN32, &p) < 0 ||
	    llmp_shmem_desc_from_env(ENV_BOX, &boxd) < 0 || llmp_shmem_attach(p, &boxd, &boxm) < 0 ||
	    new_broker(p, &b) < 0 || llmp_broker_broadcast_desc(b, &bd) < 0 ||
	    llmp_broker_send(b, TAG_HELLO, 0, "hi", 2) < 0)
		return CHILD_SETUP;
	box = llmp_shmem_addr(boxm);
	box->out = bd;
	/* release: publishes box->out; pairs with the parent's acquire load of state */
	atomic_store_explicit(&box->state, 1, memory_order_release);
	Sleep(INFINITE); /* the parent kills us */
	return CHILD_OK;
}

/* ---- tests ----------------------------------------------------------------------- */

static int t_in_process_round_trip(void)
{
	enum { N = 3000 };
	struct llmp_provider *p;
	struct llmp_broker *b;
	struct llmp_client *tx, *rx;
	struct llmp_msg_view v;
	static uint8_t buf[MAX_LEN];
	uint32_t sent = 0, got = 0;
	int id_tx, r;

	CHECK_EQ(0, llmp_provider_new(LLMP_SHMEM_WIN32, &p));
	CHECK_EQ(0, new_broker(p, &b));
	id_tx = local_client(p, b, LLMP_NO_WAIT, &tx);
	CHECK(id_tx > 0);
	CHECK(local_client(p, b, LLMP_NO_WAIT, &rx) > 0);
	while (got < N) {
		/* Send until back-pressure, then let the broker forward and read. */
		while (sent < N) {
			size_t len = msg_len(sent);

			for (size_t k = 0; k < len; k++)
				buf[k] = wtest_pattern(k, sent);
			r = llmp_client_send(tx, TAG_DATA, 0, buf, len);
			if (r == -EAGAIN)
				break;
			CHECK_EQ(0, r);
			sent++;
		}
		CHECK(llmp_broker_once(b) >= 0);
		while ((r = llmp_client_recv(rx, &v)) == 1) {
			CHECK_EQ(TAG_DATA, v.tag);
			CHECK_EQ(id_tx, v.sender);
			if (!msg_ok(got, &v))
				FAIL("message %" PRIu32 " of %d: wrong length or bytes", got, N);
			got++;
		}
		CHECK_EQ(0, r);
	}
	CHECK_EQ(N, sent);
	llmp_client_free(tx);
	llmp_client_free(rx);
	llmp_broker_free(b);
	llmp_provider_free(p);
	return 0;
}

static int t_client_in_second_process(void)
{
	const uint32_t n = 3000;
	struct llmp_provider *p;
	struct llmp_broker *b;
	struct llmp_client *rx;
	struct llmp_shmem *boxm;
	struct llmp_shmem_desc bd;
	struct llmp_msg_view v;
	struct mailbox *box;
	uint32_t got = 0;
	int id = 0, r;
	bool exited = false;
	ULONGLONG deadline;
	HANDLE h;

	CHECK_EQ(0, llmp_provider_new(LLMP_SHMEM_WIN32, &p));
	CHECK_EQ(0, new_broker(p, &b));
	CHECK(local_client(p, b, LLMP_NO_WAIT, &rx) > 0);
	CHECK_EQ(0, llmp_shmem_new(p, sizeof(*box), &boxm));
	box = llmp_shmem_addr(boxm);
	CHECK_EQ(0, llmp_broker_broadcast_desc(b, &bd));
	CHECK_EQ(0, llmp_shmem_desc_to_env(&bd, ENV_BCAST));
	CHECK_EQ(0, llmp_shmem_desc_to_env(llmp_shmem_desc(boxm), ENV_BOX));
	CHECK_EQ(0, set_count(n));
	h = wtest_spawn("sender");
	CHECK(h != NULL);

	/* Serve until the child has exited and everything it sent has been read. */
	deadline = GetTickCount64() + TIMEOUT_MS;
	for (ULONGLONG drain_until = 0; !exited || got < n;) {
		if (exited && !drain_until)
			drain_until = GetTickCount64() + 5000;
		if (drain_until && GetTickCount64() > drain_until)
			break; /* the child is gone and sent no more */
		if (GetTickCount64() > deadline) {
			wtest_wait(h, 0);
			FAIL("timed out: %" PRIu32 " of %" PRIu32 " messages, child %s", got, n,
			     exited ? "exited" : "running");
		}
		/* acquire: pairs with the child's release store of 1 after writing box->out */
		if (!id && atomic_load_explicit(&box->state, memory_order_acquire) == 1) {
			id = llmp_broker_add_client(b, &box->out);
			if (id <= 0) {
				wtest_wait(h, 0);
				FAIL("add_client: %d (%s)", id, llmp_strerror_last());
			}
			box->id = (uint32_t)id;
			/* release: publishes box->id; pairs with the child's acquire load */
			atomic_store_explicit(&box->state, 2, memory_order_release);
		}
		r = llmp_broker_once(b);
		if (r < 0) {
			wtest_wait(h, 0);
			FAIL("broker_once: %d (%s)", r, llmp_strerror_last());
		}
		while ((r = llmp_client_recv(rx, &v)) == 1) {
			if (v.tag != TAG_DATA)
				continue;
			if (v.sender != (uint32_t)id || !msg_ok(got, &v)) {
				wtest_wait(h, 0);
				FAIL("message %" PRIu32 ": sender %" PRIu32 " (want %d), tag %#x, "
				     "len %zu (want %zu), or its bytes", got, v.sender, id, v.tag,
				     v.len, msg_len(got));
			}
			got++;
		}
		CHECK_EQ(0, r);
		if (!exited && WaitForSingleObject(h, 0) == WAIT_OBJECT_0)
			exited = true;
		if (r == 0 && got < n)
			Sleep(0);
	}
	CHECK_EQ(CHILD_OK, wtest_wait(h, 0));
	CHECK_EQ(n, got);
	CHECK(id > 0);
	/* The child's EXITING reaches the broker: only the local receiver is left. */
	deadline = GetTickCount64() + 10000;
	while (llmp_broker_nclients(b) != 1 && GetTickCount64() < deadline)
		CHECK(llmp_broker_once(b) >= 0);
	CHECK_EQ(1, llmp_broker_nclients(b));
	llmp_shmem_put(boxm);
	llmp_client_free(rx);
	llmp_broker_free(b);
	llmp_provider_free(p);
	return 0;
}

static int t_broadcast_to_second_process(void)
{
	const uint32_t n = 3000;
	struct llmp_provider *p;
	struct llmp_broker *b;
	struct llmp_shmem_desc bd;
	static uint8_t buf[MAX_LEN];
	HANDLE h;

	CHECK_EQ(0, llmp_provider_new(LLMP_SHMEM_WIN32, &p));
	CHECK_EQ(0, new_broker(p, &b));
	CHECK_EQ(0, llmp_broker_broadcast_desc(b, &bd));
	CHECK_EQ(0, llmp_shmem_desc_to_env(&bd, ENV_BCAST));
	CHECK_EQ(0, set_count(n));
	h = wtest_spawn("receiver");
	CHECK(h != NULL);
	for (uint32_t i = 0; i < n; i++) {
		size_t len = msg_len(i);

		for (size_t k = 0; k < len; k++)
			buf[k] = wtest_pattern(k, i);
		if (llmp_broker_send(b, TAG_DATA, 0, buf, len) < 0) {
			wtest_wait(h, 0);
			FAIL("broker_send %" PRIu32 ": %s", i, llmp_strerror_last());
		}
	}
	CHECK_EQ(CHILD_OK, wtest_wait(h, TIMEOUT_MS));
	llmp_broker_free(b);
	llmp_provider_free(p);
	return 0;
}

static int t_receiver_child_detects_corruption(void)
{
	/* The receiving child must be able to fail: it expects more than is sent. */
	struct llmp_provider *p;
	struct llmp_broker *b;
	struct llmp_shmem_desc bd;
	uint8_t one = 1;
	HANDLE h;

	CHECK_EQ(0, llmp_provider_new(LLMP_SHMEM_WIN32, &p));
	CHECK_EQ(0, new_broker(p, &b));
	CHECK_EQ(0, llmp_broker_broadcast_desc(b, &bd));
	CHECK_EQ(0, llmp_shmem_desc_to_env(&bd, ENV_BCAST));
	CHECK_EQ(0, set_count(2));
	/* Message 0 must be 1 byte of wtest_pattern(0, 0); send a wrong byte. */
	one = (uint8_t)(wtest_pattern(0, 0) ^ 0x40);
	CHECK_EQ(0, llmp_broker_send(b, TAG_DATA, 0, &one, 1));
	h = wtest_spawn("receiver");
	CHECK(h != NULL);
	CHECK_EQ(CHILD_BYTES, wtest_wait(h, TIMEOUT_MS));
	llmp_broker_free(b);
	llmp_provider_free(p);
	return 0;
}

/*
 * A client process killed (TerminateProcess) after sending: the broker
 * forwards all it sent, drops it within the grace period (its creator pid
 * from the win32 id, watched with a process handle), and releases its page:
 * the mapping is gone once the broker's handle closes.
 */
static int t_killed_client_dropped(void)
{
	const uint32_t n = 20; /* < 64 KiB: all on its first out page */
	struct llmp_broker_opts bo = { .struct_size = sizeof(bo), .page_size = PAGE,
				       .dead_client_grace_ms = GRACE_MS };
	struct llmp_provider *p;
	struct llmp_broker *b;
	struct llmp_client *rx;
	struct llmp_shmem *boxm, *probe;
	struct llmp_shmem_desc bd, od;
	struct llmp_msg_view v;
	struct mailbox *box;
	uint32_t got = 0;
	int id = 0, r, dropped = 0;
	ULONGLONG deadline, t_kill, t_drop = 0;
	HANDLE h;

	CHECK_EQ(0, llmp_provider_new(LLMP_SHMEM_WIN32, &p));
	CHECK_EQ(0, llmp_broker_new(p, &bo, &b));
	CHECK(local_client(p, b, LLMP_NO_WAIT, &rx) > 0);
	CHECK_EQ(0, llmp_shmem_new(p, sizeof(*box), &boxm));
	box = llmp_shmem_addr(boxm);
	CHECK_EQ(0, llmp_broker_broadcast_desc(b, &bd));
	CHECK_EQ(0, llmp_shmem_desc_to_env(&bd, ENV_BCAST));
	CHECK_EQ(0, llmp_shmem_desc_to_env(llmp_shmem_desc(boxm), ENV_BOX));
	CHECK_EQ(0, set_count(n));
	CHECK_EQ(0, wtest_setenv(ENV_HANG, "1"));
	h = wtest_spawn("sender");
	CHECK_EQ(0, wtest_setenv(ENV_HANG, ""));
	CHECK(h != NULL);
	/* register it, then serve until it has sent everything and waits */
	deadline = GetTickCount64() + TIMEOUT_MS;
	for (;;) {
		/* acquire: pairs with the child's release stores of 1 and 3 */
		unsigned st = atomic_load_explicit(&box->state, memory_order_acquire);

		if (GetTickCount64() > deadline) {
			wtest_wait(h, 0);
			FAIL("child state %u after %d ms", st, TIMEOUT_MS);
		}
		if (st == 1 && !id) {
			od = box->out;
			id = llmp_broker_add_client(b, &od);
			if (id <= 0) {
				wtest_wait(h, 0);
				FAIL("add_client: %d (%s)", id, llmp_strerror_last());
			}
			box->id = (uint32_t)id;
			/* release: publishes box->id; pairs with the child's acquire load */
			atomic_store_explicit(&box->state, 2, memory_order_release);
		}
		if (st == 3)
			break;
		CHECK(llmp_broker_once(b) >= 0);
		Sleep(1);
	}
	CHECK_EQ(2, llmp_broker_nclients(b));
	CHECK(TerminateProcess(h, 9));
	CHECK_EQ(WAIT_OBJECT_0, WaitForSingleObject(h, 10000));
	t_kill = GetTickCount64();
	/* its page is still there: the broker holds it */
	CHECK_EQ(0, llmp_shmem_attach(p, &od, &probe));
	llmp_shmem_put(probe);
	while (GetTickCount64() < t_kill + 10000 && !dropped) {
		CHECK(llmp_broker_once(b) >= 0);
		while ((r = llmp_client_recv(rx, &v)) == 1) {
			if (v.tag != TAG_DATA)
				continue;
			if (v.sender != (uint32_t)id || !msg_ok(got, &v))
				FAIL("message %" PRIu32 ": sender %" PRIu32 " tag %#x len %zu", got,
				     v.sender, v.tag, v.len);
			got++;
		}
		CHECK_EQ(0, r);
		r = llmp_broker_check_clients(b);
		CHECK(r >= 0);
		if (r > 0) {
			dropped = r;
			t_drop = GetTickCount64();
		}
		Sleep(5);
	}
	CHECK_EQ(1, dropped);
	CHECK_EQ(n, got);
	CHECK_EQ(1, llmp_broker_nclients(b));
	CHECK(t_drop - t_kill <= GRACE_MS + 1000);
	printf("# killed client dropped %llu ms after TerminateProcess (grace %d ms)\n",
	       (unsigned long long)(t_drop - t_kill), GRACE_MS);
	/* the broker released it: no handle left, the mapping is gone */
	CHECK_EQ(-ENOENT, llmp_shmem_attach(p, &od, &probe));
	wtest_wait(h, 0);
	llmp_shmem_put(boxm);
	llmp_client_free(rx);
	llmp_broker_free(b);
	llmp_provider_free(p);
	return 0;
}

/* A client whose broker process was killed gets -EPIPE instead of waiting out its timeout. */
static int t_broker_killed(void)
{
	struct llmp_client_opts o = client_opts(LLMP_NO_WAIT);
	struct llmp_provider *p;
	struct llmp_shmem *boxm;
	struct llmp_client *c;
	struct llmp_msg_view v;
	struct mailbox *box;
	ULONGLONG deadline, t0;
	int r;
	HANDLE h;

	CHECK_EQ(0, llmp_provider_new(LLMP_SHMEM_WIN32, &p));
	CHECK_EQ(0, llmp_shmem_new(p, sizeof(*box), &boxm));
	box = llmp_shmem_addr(boxm);
	CHECK_EQ(0, llmp_shmem_desc_to_env(llmp_shmem_desc(boxm), ENV_BOX));
	h = wtest_spawn("bbroker");
	CHECK(h != NULL);
	deadline = GetTickCount64() + TIMEOUT_MS;
	/* acquire: pairs with the child's release store of 1 after writing box->out */
	while (atomic_load_explicit(&box->state, memory_order_acquire) != 1) {
		if (GetTickCount64() > deadline || WaitForSingleObject(h, 0) == WAIT_OBJECT_0) {
			wtest_wait(h, 0);
			FAIL("the broker child did not post its page");
		}
		Sleep(1);
	}
	r = llmp_client_new(p, &box->out, &o, &c);
	if (r < 0) {
		wtest_wait(h, 0);
		FAIL("client_new: %s", llmp_strerror_last());
	}
	CHECK_EQ(1, llmp_client_recv_wait(c, &v, 5000));
	CHECK_EQ(TAG_HELLO, v.tag);
	CHECK_EQ(2, v.len);
	/* alive broker, nothing to read: a plain timeout */
	CHECK_EQ(0, llmp_client_recv_wait(c, &v, 300));
	CHECK(TerminateProcess(h, 9));
	CHECK_EQ(WAIT_OBJECT_0, WaitForSingleObject(h, 10000));
	t0 = GetTickCount64();
	r = llmp_client_recv_wait(c, &v, 10000);
	CHECK_EQ(-EPIPE, r);
	CHECK(GetTickCount64() - t0 < 2000);
	CHECK(strstr(llmp_strerror_last(), "broker") != NULL);
	wtest_wait(h, 0);
	llmp_client_free(c);
	llmp_shmem_put(boxm);
	llmp_provider_free(p);
	return 0;
}

/* ---- runner ------------------------------------------------------------------ */

static const struct wtest tests[] = {
	WTEST(t_in_process_round_trip),
	WTEST(t_client_in_second_process),
	WTEST(t_broadcast_to_second_process),
	WTEST(t_receiver_child_detects_corruption),
	WTEST(t_killed_client_dropped),
	WTEST(t_broker_killed),
};

int main(int argc, char **argv)
{
	if (argc > 1 && !strcmp(argv[1], "sender"))
		return child_sender();
	if (argc > 1 && !strcmp(argv[1], "receiver"))
		return child_receiver();
	if (argc > 1 && !strcmp(argv[1], "bbroker"))
		return child_bbroker();
	return wtest_main(tests, sizeof(tests) / sizeof(tests[0]));
}
