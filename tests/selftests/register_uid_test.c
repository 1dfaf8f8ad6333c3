// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * Who may register which page over TCP, and quit which client (issue 8,
 * findings 3 and 12).  Promises guarded:
 *  - a peer registers only pages it could open itself (a root 0600 page is
 *    refused to `nobody`, its own page is not), the refusal is logged and
 *    answered, and the broker keeps serving (finding 3);
 *  - a peer not on loopback registers nothing unless remote clients are
 *    allowed (finding 3);
 *  - ClientQuit is taken only from the registering uid or root (finding 12).
 * The uid tests run as root and fork children that become nobody (65534).
 */
#include "register_fixture.h"

/* ---- uid tests: a broker with a TCP listener, peers in forked children ------ */

struct net {
	struct llmp_provider *p;
	struct llmp_broker *b;
	struct llmp_tcp_listener *l;
	uint16_t port;
};

static int net_open(struct net *n, enum llmp_shmem_kind kind)
{
	struct llmp_broker_opts bo = { .struct_size = sizeof(bo), .page_size = PAGE };
	struct llmp_tcp_listener_opts to = { .struct_size = sizeof(to) };

	memset(n, 0, sizeof(*n));
	if (llmp_provider_new(kind, &n->p) < 0)
		return -1;
	if (llmp_broker_new(n->p, &bo, &n->b) < 0 ||
	    llmp_tcp_listen(n->b, "127.0.0.1", 0, &to, &n->l) < 0)
		return -2;
	n->port = llmp_tcp_listener_port(n->l);
	return 0;
}

static void net_close(struct net *n)
{
	llmp_tcp_listener_free(n->l);
	llmp_broker_free(n->b);
	llmp_provider_free(n->p);
}

static int become_nobody(void)
{
	if (setgroups(0, NULL) < 0 || setgid(NOBODY) < 0 || setuid(NOBODY) < 0)
		return -1;
	return 0;
}

/* Serve the broker until child pid exits; its exit status, or -1. */
static int serve_child(struct net *n, pid_t pid)
{
	int64_t until = llmp_test_now_ms() + 30000;
	int st;

	while (llmp_test_now_ms() < until) {
		pid_t w;

		llmp_tcp_listener_service(n->l);
		llmp_broker_once(n->b);
		w = waitpid(pid, &st, WNOHANG);
		if (w == pid)
			return WIFEXITED(st) ? WEXITSTATUS(st) : 100 + WTERMSIG(st);
		usleep(500);
	}
	kill(pid, SIGKILL);
	waitpid(pid, &st, 0);
	return -1;
}

/* Send LocalClientHello for d: the response type (1 accepted, 3 refused), or -1. */
static int raw_hello(uint16_t port, const struct llmp_shmem_desc *d, uint32_t *id)
{
	struct llmp_wire_msg m = { .type = LLMP_TCP_REQ_LOCAL_CLIENT_HELLO };
	uint8_t buf[4096], hdr[4];
	uint32_t len;
	int fd = llmp_test_tcp_dial(port), n, ret = -1;

	if (fd < 0)
		return -1;
	/* the broker's hello */
	if (recv(fd, hdr, 4, MSG_WAITALL) != 4 || llmp_wire_get_len(hdr, sizeof(buf), &len) < 0 ||
	    recv(fd, buf, len, MSG_WAITALL) != (ssize_t)len)
		goto out;
	llmp_wire_desc_from_shmem(d, &m.desc);
	n = llmp_wire_encode_req(&m, buf + 4, sizeof(buf) - 4);
	if (n < 0)
		goto out;
	llmp_wire_put_len(buf, (uint32_t)n);
	if (send(fd, buf, 4 + (size_t)n, MSG_NOSIGNAL) != 4 + n)
		goto out;
	if (recv(fd, hdr, 4, MSG_WAITALL) != 4 || llmp_wire_get_len(hdr, sizeof(buf), &len) < 0 ||
	    recv(fd, buf, len, MSG_WAITALL) != (ssize_t)len || llmp_wire_decode_resp(buf, len, &m) < 0)
		goto out;
	if (id)
		*id = m.id;
	ret = (int)m.type;
out:
	close(fd);
	return ret;
}

FIXTURE(uid)
{
	struct net n;
	struct llmp_broker *victim; /* another broker of root's, its page 0600 */
	struct llmp_shmem_desc victim_bd;
};

FIXTURE_VARIANT(uid)
{
	enum llmp_shmem_kind kind;
	/*
	 * The peer's uid from /proc/net/tcp, as where sock_diag cannot answer
	 * (no inet_diag modules in a minimal guest, netlink filtered): the
	 * same refusals and acceptances must hold.
	 */
	bool no_sock_diag;
};

FIXTURE_VARIANT_ADD(uid, memfd) { .kind = LLMP_SHMEM_MEMFD };
FIXTURE_VARIANT_ADD(uid, sysv) { .kind = LLMP_SHMEM_SYSV };
FIXTURE_VARIANT_ADD(uid, posix) { .kind = LLMP_SHMEM_POSIX };
FIXTURE_VARIANT_ADD(uid, memfd_procfs) { .kind = LLMP_SHMEM_MEMFD, .no_sock_diag = true };
FIXTURE_VARIANT_ADD(uid, sysv_procfs) { .kind = LLMP_SHMEM_SYSV, .no_sock_diag = true };

FIXTURE_SETUP(uid)
{
	int ret;

	self->n.p = NULL;
	if (geteuid() != 0)
		SKIP(return, "needs root to fork children that become uid %d", NOBODY);
	log_reset();
	if (variant->no_sock_diag)
		setenv("LLMP_TEST_NO_SOCK_DIAG", "1", 1);
	else
		unsetenv("LLMP_TEST_NO_SOCK_DIAG");
	ret = net_open(&self->n, variant->kind);
	if (ret == -1)
		SKIP(return, "provider %s: %s", llmp_shmem_kind_name(variant->kind),
		     llmp_strerror_last());
	ASSERT_EQ(0, ret) TH_LOG("%s", llmp_strerror_last());
	ASSERT_EQ(0, llmp_broker_new(self->n.p, NULL, &self->victim));
	ASSERT_EQ(0, llmp_broker_broadcast_desc(self->victim, &self->victim_bd));
}

FIXTURE_TEARDOWN(uid)
{
	if (!self->n.p)
		return;
	llmp_broker_free(self->victim);
	net_close(&self->n);
	llmp_set_log(NULL, NULL, LLMP_LOG_ERROR);
	unsetenv("LLMP_TEST_NO_SOCK_DIAG");
}

/*
 * Child as nobody: 1) the victim broker's root page is refused, 2) a root
 * segment of ours too, 3) its own page is accepted.  Exit code: the step
 * that went wrong, 0 if none.
 */
static int nobody_registers(enum llmp_shmem_kind kind, uint16_t port,
			    const struct llmp_shmem_desc *victim, const struct llmp_shmem_desc *root_seg)
{
	struct llmp_provider *p;
	struct llmp_shmem *own;
	uint32_t id = 0;

	if (become_nobody() < 0)
		return 2;
	if (raw_hello(port, victim, NULL) != LLMP_TCP_RESP_ERROR)
		return 3;
	if (raw_hello(port, root_seg, NULL) != LLMP_TCP_RESP_ERROR)
		return 4;
	if (llmp_provider_new(kind, &p) < 0 || llmp_shmem_new(p, PAGE, &own) < 0)
		return 5;
	page_init(llmp_shmem_addr(own), PAGE);
	if (raw_hello(port, llmp_shmem_desc(own), &id) != LLMP_TCP_RESP_LOCAL_CLIENT_ACCEPTED ||
	    id == 0)
		return 6;
	/* keep the page (memfd: the fd) until the broker has mapped it: it has, it answered */
	llmp_shmem_put(own);
	llmp_provider_free(p);
	return 0;
}

/* Finding 3: nobody cannot register root's 0600 pages; it can register its own. */
TEST_F(uid, nobody_registers_only_its_own_pages)
{
	struct llmp_shmem *root_seg;
	pid_t pid;
	int st;

	if (!self->n.p)
		return;
	ASSERT_EQ(0, llmp_shmem_new(self->n.p, PAGE, &root_seg));
	page_init(llmp_shmem_addr(root_seg), PAGE);
	pid = fork();
	ASSERT_LE(0, pid);
	if (pid == 0)
		_exit(nobody_registers(variant->kind, self->n.port, &self->victim_bd,
				       llmp_shmem_desc(root_seg)));
	st = serve_child(&self->n, pid);
	EXPECT_EQ(0, st) TH_LOG("child step %d failed; log:\n%s", st, log_buf);
	EXPECT_EQ(1u, llmp_broker_nclients(self->n.b));
	EXPECT_LE(2u, log_count("it could not open it itself"));
	/* the broker still serves: root registers a page of its own */
	pid = fork();
	ASSERT_LE(0, pid);
	if (pid == 0)
		_exit(raw_hello(self->n.port, llmp_shmem_desc(root_seg), NULL) ==
		      LLMP_TCP_RESP_LOCAL_CLIENT_ACCEPTED ? 0 : 1);
	EXPECT_EQ(0, serve_child(&self->n, pid));
	EXPECT_EQ(2u, llmp_broker_nclients(self->n.b));
	llmp_shmem_put(root_seg);
}

static int quit_as(bool nobody, uint16_t port, uint32_t id)
{
	if (nobody && become_nobody() < 0)
		return 2;
	return llmp_tcp_client_quit("127.0.0.1", port, id) < 0 ? 3 : 0;
}

static int fork_quit(struct net *n, bool nobody, uint32_t id)
{
	pid_t pid = fork();

	if (pid < 0)
		return -1;
	if (pid == 0)
		_exit(quit_as(nobody, n->port, id));
	return serve_child(n, pid);
}

/* Finding 12: another uid's ClientQuit is refused and logged; the same uid's works. */
TEST_F(uid, quit_only_from_the_registering_uid)
{
	struct llmp_shmem *root_seg;
	uint32_t nobody_id = 0;
	int root_id, fds[2], done[2];
	pid_t pid;

	if (!self->n.p)
		return;
	ASSERT_EQ(0, llmp_shmem_new(self->n.p, PAGE, &root_seg));
	page_init(llmp_shmem_addr(root_seg), PAGE);
	root_id = llmp_broker_add_client(self->n.b, llmp_shmem_desc(root_seg));
	ASSERT_LT(0, root_id);
	/* nobody registers a page of its own over TCP and tells us its id */
	ASSERT_EQ(0, pipe(fds));
	ASSERT_EQ(0, pipe(done));
	pid = fork();
	ASSERT_LE(0, pid);
	if (pid == 0) {
		struct llmp_provider *p;
		struct llmp_shmem *own;
		uint32_t id = 0;
		char c;

		close(fds[0]);
		close(done[1]);
		if (become_nobody() < 0 || llmp_provider_new(variant->kind, &p) < 0 ||
		    llmp_shmem_new(p, PAGE, &own) < 0)
			_exit(2);
		page_init(llmp_shmem_addr(own), PAGE);
		if (raw_hello(self->n.port, llmp_shmem_desc(own), &id) != 1)
			_exit(3);
		if (write(fds[1], &id, sizeof(id)) != sizeof(id))
			_exit(4);
		/* keep the page alive until the parent is done with it, then remove it */
		(void)!read(done[0], &c, 1);
		llmp_shmem_put(own);
		llmp_provider_free(p);
		_exit(0);
	}
	close(fds[1]);
	close(done[0]);
	for (int64_t until = llmp_test_now_ms() + 20000; !nobody_id;) {
		struct pollfd pf = { .fd = fds[0], .events = POLLIN };

		ASSERT_LT(llmp_test_now_ms(), until);
		llmp_tcp_listener_service(self->n.l);
		llmp_broker_once(self->n.b);
		if (poll(&pf, 1, 1) == 1)
			ASSERT_EQ((ssize_t)sizeof(nobody_id), read(fds[0], &nobody_id, sizeof(nobody_id)));
	}
	ASSERT_EQ(2u, llmp_broker_nclients(self->n.b));

	/* nobody may not remove root's client */
	EXPECT_EQ(0, fork_quit(&self->n, true, (uint32_t)root_id));
	EXPECT_EQ(2u, llmp_broker_nclients(self->n.b));
	EXPECT_LE(1u, log_count("may not remove client"));
	/* nobody may remove its own, on a new connection (LibAFL's way) */
	EXPECT_EQ(0, fork_quit(&self->n, true, nobody_id));
	EXPECT_EQ(1u, llmp_broker_nclients(self->n.b));
	/* root may remove anyone's */
	EXPECT_EQ(0, fork_quit(&self->n, false, (uint32_t)root_id));
	EXPECT_EQ(0u, llmp_broker_nclients(self->n.b));
	close(fds[0]);
	close(done[1]); /* the child removes its page and exits */
	waitpid(pid, NULL, 0);
	llmp_shmem_put(root_seg);
}

/* A non-loopback IPv4 address of this host, or 0. */
static in_addr_t host_addr(void)
{
	struct ifaddrs *ifa, *i;
	in_addr_t a = 0;

	if (getifaddrs(&ifa) < 0)
		return 0;
	for (i = ifa; i && !a; i = i->ifa_next) {
		const struct sockaddr_in *s = (const void *)i->ifa_addr;

		if (s && s->sin_family == AF_INET && (ntohl(s->sin_addr.s_addr) >> 24) != 127)
			a = s->sin_addr.s_addr;
	}
	freeifaddrs(ifa);
	return a;
}

/* LocalClientHello for d from a socket to addr:port (not loopback): the response type. */
static int hello_from(in_addr_t addr, uint16_t port, const struct llmp_shmem_desc *d,
		      struct llmp_tcp_listener *l, struct llmp_broker *b)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(port),
				  .sin_addr.s_addr = addr };
	struct llmp_wire_msg m = { .type = LLMP_TCP_REQ_LOCAL_CLIENT_HELLO };
	uint8_t buf[4096];
	uint32_t len;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0), n, ret = -1;
	size_t got = 0, want = 4, stage = 0;
	int64_t until = llmp_test_now_ms() + 10000;

	if (fd < 0)
		return -1;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 && errno != EINPROGRESS)
		goto out;
	/* stage 0/1: the hello's length/body; 2: send; 3/4: the answer's length/body */
	while (llmp_test_now_ms() < until && stage < 5) {
		ssize_t r;

		llmp_tcp_listener_service(l);
		llmp_broker_once(b);
		if (stage == 2) {
			llmp_wire_desc_from_shmem(d, &m.desc);
			n = llmp_wire_encode_req(&m, buf + 4, sizeof(buf) - 4);
			llmp_wire_put_len(buf, (uint32_t)n);
			if (send(fd, buf, 4 + (size_t)n, MSG_NOSIGNAL) != 4 + n)
				goto out;
			stage = 3;
			got = 0;
			want = 4;
			continue;
		}
		r = recv(fd, buf + got, want - got, 0);
		if (r == 0)
			goto out;
		if (r < 0) {
			usleep(500);
			continue;
		}
		got += (size_t)r;
		if (got < want)
			continue;
		if (stage == 0 || stage == 3) {
			if (llmp_wire_get_len(buf, sizeof(buf), &len) < 0)
				goto out;
			got = 0;
			want = len;
			stage++;
		} else if (stage == 1) {
			stage = 2;
		} else {
			if (llmp_wire_decode_resp(buf, want, &m) < 0)
				goto out;
			ret = (int)m.type;
			stage = 5;
		}
	}
out:
	close(fd);
	return ret;
}

/*
 * Finding 3: a peer that is not on loopback registers nothing unless the
 * operator allows remote clients.  (A connection to this host's own
 * non-loopback address stands in for a remote peer.)
 */
TEST(remote_peers_register_only_when_allowed)
{
	in_addr_t a = host_addr();
	char ip[INET_ADDRSTRLEN];

	if (!a)
		SKIP(return, "no non-loopback IPv4 address on this host");
	inet_ntop(AF_INET, &a, ip, sizeof(ip));
	for (int allow = 0; allow < 2; allow++) {
		struct llmp_broker_opts bo = { .struct_size = sizeof(bo), .page_size = PAGE,
					       .allow_remote_clients = allow };
		struct llmp_tcp_listener_opts to = { .struct_size = sizeof(to) };
		struct llmp_tcp_listener *l;
		struct llmp_provider *p;
		struct llmp_broker *b;
		struct llmp_shmem *pg;

		log_reset();
		ASSERT_EQ(0, llmp_provider_new(LLMP_SHMEM_MEMFD, &p));
		ASSERT_EQ(0, llmp_broker_new(p, &bo, &b));
		ASSERT_EQ(0, llmp_tcp_listen(b, ip, 0, &to, &l));
		ASSERT_EQ(0, llmp_shmem_new(p, PAGE, &pg));
		page_init(llmp_shmem_addr(pg), PAGE);
		EXPECT_EQ(allow ? LLMP_TCP_RESP_LOCAL_CLIENT_ACCEPTED : LLMP_TCP_RESP_ERROR,
			  hello_from(a, llmp_tcp_listener_port(l), llmp_shmem_desc(pg), l, b));
		EXPECT_EQ(allow ? 1u : 0u, llmp_broker_nclients(b));
		if (!allow)
			EXPECT_LE(1u, log_count("remote peers may not register"));
		llmp_tcp_listener_free(l);
		llmp_broker_free(b);
		llmp_shmem_put(pg);
		llmp_provider_free(p);
	}
	llmp_set_log(NULL, NULL, LLMP_LOG_ERROR);
}

TEST_HARNESS_MAIN
