// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * Which pages an in-process broker registers (issue 8, findings 4 and 6).
 * Promises guarded:
 *  - a NEW_SHM_CLIENT naming its own page, or any page already read,
 *    registers nothing; the client count is capped (finding 4);
 *  - no spelling of the broker's own page (an alias id, a hard link) is
 *    registered: one message stays one message (finding 6).
 * Who may register over TCP (uids, remote peers) is register_uid_test.
 */
#include "register_fixture.h"

/* ---- fixture: an in-process broker of one kind, with an honest client ----- */

FIXTURE(reg)
{
	struct llmp_provider *p;
	struct llmp_broker *b;
	struct llmp_shmem_desc bd;
	struct llmp_client *honest, *reader;
};

FIXTURE_VARIANT(reg)
{
	enum llmp_shmem_kind kind;
};

FIXTURE_VARIANT_ADD(reg, memfd) { .kind = LLMP_SHMEM_MEMFD };
FIXTURE_VARIANT_ADD(reg, sysv) { .kind = LLMP_SHMEM_SYSV };
FIXTURE_VARIANT_ADD(reg, posix) { .kind = LLMP_SHMEM_POSIX };

static int reg_open(struct llmp_provider *p, const struct llmp_shmem_desc *bd,
		    struct llmp_broker *b, struct llmp_client **out)
{
	struct llmp_client_opts o = { .struct_size = sizeof(o), .page_size = PAGE,
				      .send_timeout_ms = LLMP_NO_WAIT };
	struct llmp_shmem_desc od;
	int id;

	if (llmp_client_new(p, bd, &o, out) < 0 || llmp_client_out_desc(*out, &od) < 0)
		return -1;
	id = llmp_broker_add_client(b, &od);
	if (id <= 0)
		return -1;
	llmp_client_set_id(*out, (uint32_t)id);
	return 0;
}

FIXTURE_SETUP(reg)
{
	struct llmp_broker_opts bo = { .struct_size = sizeof(bo), .page_size = PAGE,
				       .max_clients = 8 };

	log_reset();
	if (llmp_provider_new(variant->kind, &self->p) < 0)
		SKIP(return, "provider %s: %s", llmp_shmem_kind_name(variant->kind),
		     llmp_strerror_last());
	ASSERT_EQ(0, llmp_broker_new(self->p, &bo, &self->b));
	ASSERT_EQ(0, llmp_broker_broadcast_desc(self->b, &self->bd));
	ASSERT_EQ(0, reg_open(self->p, &self->bd, self->b, &self->honest));
	ASSERT_EQ(0, reg_open(self->p, &self->bd, self->b, &self->reader));
}

FIXTURE_TEARDOWN(reg)
{
	if (!self->p)
		return;
	llmp_client_free(self->honest);
	llmp_client_free(self->reader);
	llmp_broker_free(self->b);
	llmp_provider_free(self->p);
	llmp_set_log(NULL, NULL, LLMP_LOG_ERROR);
}

/*
 * Finding 4: a client page whose first message is a NEW_SHM_CLIENT naming
 * that very page.  Before the fix every new reader of it registered another
 * (thousands of clients, every fd).  Now: refused, count and fds bounded,
 * honest messages all forwarded once.
 */
TEST_F(reg, self_announce_registers_nothing)
{
	struct llmp_shmem *evil;
	unsigned fds0, n0;
	char why[256];

	if (!self->p)
		return;
	ASSERT_EQ(0, llmp_shmem_new(self->p, PAGE, &evil));
	page_init(llmp_shmem_addr(evil), PAGE);
	page_announce(llmp_shmem_addr(evil), llmp_shmem_desc(evil));
	ASSERT_LT(0, llmp_broker_add_client(self->b, llmp_shmem_desc(evil)));
	n0 = llmp_broker_nclients(self->b);
	ASSERT_EQ(3u, n0);
	fds0 = count_fds();
	for (int i = 0; i < 200; i++)
		ASSERT_LE(0, llmp_broker_once(self->b));
	EXPECT_EQ(n0, llmp_broker_nclients(self->b));
	EXPECT_GE(fds0 + 2, count_fds());
	EXPECT_LE(1u, log_count("read through it already"));
	ASSERT_EQ(0, honest_roundtrip(self->b, self->honest, self->reader, 100, why, sizeof(why)))
		TH_LOG("%s", why);
	llmp_shmem_put(evil);
}

/* Finding 4: the cap holds, the refusal says so once, the broker goes on. */
TEST_F(reg, client_cap_is_enforced_and_logged_once)
{
	struct llmp_shmem *pages[10];
	int ok = 0, refused = 0;
	char why[256];

	if (!self->p)
		return;
	for (int i = 0; i < 10; i++) {
		int id;

		ASSERT_EQ(0, llmp_shmem_new(self->p, PAGE, &pages[i]));
		page_init(llmp_shmem_addr(pages[i]), PAGE);
		id = llmp_broker_add_client(self->b, llmp_shmem_desc(pages[i]));
		if (id > 0)
			ok++;
		else if (id == -EUSERS)
			refused++;
	}
	/* 2 honest clients + 6 = the cap of 8 */
	EXPECT_EQ(6, ok);
	EXPECT_EQ(4, refused);
	EXPECT_EQ(8u, llmp_broker_nclients(self->b));
	EXPECT_EQ(1u, log_count("max_clients"));
	ASSERT_EQ(0, honest_roundtrip(self->b, self->honest, self->reader, 50, why, sizeof(why)))
		TH_LOG("%s", why);
	for (int i = 0; i < 10; i++)
		llmp_shmem_put(pages[i]);
}

/*
 * Finding 6: every other spelling of the broker's own broadcast page is
 * refused (registration, NEW_SHM_CLIENT), so one message stays one.  Before
 * the fix m<pid>:<fd> (no generation) and a hard link in /dev/shm passed.
 */
TEST_F(reg, own_page_aliases_are_refused)
{
	struct llmp_shmem_desc alias[4];
	char link_path[64] = "";
	struct llmp_shmem *evil;
	unsigned n = 0, n0;
	char why[256];
	long pid, fd;

	if (!self->p)
		return;
	alias[n++] = self->bd; /* the canonical spelling itself */
	switch (variant->kind) {
	case LLMP_SHMEM_MEMFD:
		ASSERT_EQ(2, sscanf(self->bd.id, "m%ld:%ld", &pid, &fd));
		set_id(&alias[n++], &self->bd, "m%ld:%ld", pid, fd);
		set_id(&alias[n++], &self->bd, "m0%ld:%ld", pid, fd);
		break;
	case LLMP_SHMEM_SYSV:
		set_id(&alias[n++], &self->bd, "0%s", self->bd.id);
		set_id(&alias[n++], &self->bd, "+%s", self->bd.id);
		break;
	case LLMP_SHMEM_POSIX: {
		char src[64];

		snprintf(src, sizeof(src), "/dev/shm%s", self->bd.id);
		snprintf(link_path, sizeof(link_path), "/dev/shm/llmp_alias_%d", (int)getpid());
		unlink(link_path);
		ASSERT_EQ(0, link(src, link_path));
		set_id(&alias[n++], &self->bd, "/llmp_alias_%d", (int)getpid());
		set_id(&alias[n++], &self->bd, "/%s", self->bd.id);
		break;
	}
	default:
		break;
	}
	n0 = llmp_broker_nclients(self->b);
	for (unsigned i = 0; i < n; i++) {
		EXPECT_GT(0, llmp_broker_add_client(self->b, &alias[i]))
			TH_LOG("alias %s of %s was registered", alias[i].id, self->bd.id);
	}
	EXPECT_EQ(n0, llmp_broker_nclients(self->b));
	/* The same aliases through NEW_SHM_CLIENT, each on a page of its own. */
	for (unsigned i = 0; i < n; i++) {
		ASSERT_EQ(0, llmp_shmem_new(self->p, PAGE, &evil));
		page_init(llmp_shmem_addr(evil), PAGE);
		page_announce(llmp_shmem_addr(evil), &alias[i]);
		ASSERT_LT(0, llmp_broker_add_client(self->b, llmp_shmem_desc(evil)));
		for (int k = 0; k < 20; k++)
			ASSERT_LE(0, llmp_broker_once(self->b));
		EXPECT_EQ(n0 + 1, llmp_broker_nclients(self->b))
			TH_LOG("NEW_SHM_CLIENT with alias %s registered it", alias[i].id);
		/* hand the slot back: the announcing page is dropped by the test */
		llmp_shmem_put(evil);
		n0 = llmp_broker_nclients(self->b);
	}
	if (link_path[0])
		unlink(link_path);
	/* One honest message is one message, not thousands of copies. */
	ASSERT_EQ(0, honest_roundtrip(self->b, self->honest, self->reader, 20, why, sizeof(why)))
		TH_LOG("%s", why);
}

TEST_HARNESS_MAIN
