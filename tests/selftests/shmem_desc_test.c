// SPDX-License-Identifier: MIT OR Apache-2.0
/* Kind names, description validation and the environment round trip. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "kselftest_harness.h"
#include "llmp_test.h"

TEST(kind_names_round_trip)
{
	for (int k = 0; k < LLMP_SHMEM_KIND_MAX; k++) {
		enum llmp_shmem_kind back;
		const char *n = llmp_shmem_kind_name(k);

		ASSERT_NE(NULL, n);
		ASSERT_EQ(0, llmp_shmem_kind_from_name(n, &back));
		ASSERT_EQ(k, back);
	}
	ASSERT_EQ(NULL, llmp_shmem_kind_name(LLMP_SHMEM_KIND_MAX));
	enum llmp_shmem_kind k;
	ASSERT_EQ(-EINVAL, llmp_shmem_kind_from_name("tmpfs", &k));
	ASSERT_NE(NULL, strstr(llmp_strerror_last(), "unknown shmem kind"));
}

TEST(desc_check_rejects_garbage)
{
	struct llmp_shmem_desc d;

	memset(&d, 0, sizeof(d));
	d.kind = LLMP_SHMEM_SYSV;
	d.size = 4096;
	strcpy(d.id, "1234");
	ASSERT_EQ(0, llmp_shmem_desc_check(&d));

	d.kind = LLMP_SHMEM_DEFAULT;
	ASSERT_EQ(-EINVAL, llmp_shmem_desc_check(&d));
	d.kind = 99;
	ASSERT_EQ(-EINVAL, llmp_shmem_desc_check(&d));
	d.kind = LLMP_SHMEM_SYSV;
	d.reserved = 1;
	ASSERT_EQ(-EINVAL, llmp_shmem_desc_check(&d));
	d.reserved = 0;
	d.size = 0;
	ASSERT_EQ(-EINVAL, llmp_shmem_desc_check(&d));
	d.size = 4096;
	memset(d.id, 'A', sizeof(d.id)); /* no NUL */
	ASSERT_EQ(-EINVAL, llmp_shmem_desc_check(&d));
	memset(d.id, 0, sizeof(d.id));
	ASSERT_EQ(-EINVAL, llmp_shmem_desc_check(&d)); /* empty */
	strcpy(d.id, "12");
	d.id[5] = 'x'; /* garbage after the NUL */
	ASSERT_EQ(-EINVAL, llmp_shmem_desc_check(&d));
	memset(d.id, 0, sizeof(d.id));
	strcpy(d.id, "a\nb");
	ASSERT_EQ(-EINVAL, llmp_shmem_desc_check(&d));
}

TEST(env_round_trip)
{
	struct llmp_shmem_desc d, back;

	memset(&d, 0, sizeof(d));
	d.kind = LLMP_SHMEM_POSIX;
	d.size = 1048576;
	strcpy(d.id, "/libafl_4242_1234");
	ASSERT_EQ(0, llmp_shmem_desc_to_env(&d, "LLMP_T"));
	ASSERT_STREQ("/libafl_4242_1234", getenv("LLMP_T"));
	ASSERT_STREQ("1048576", getenv("LLMP_T_SIZE"));
	ASSERT_STREQ("posix", getenv("LLMP_T_KIND"));
	ASSERT_EQ(0, llmp_shmem_desc_from_env("LLMP_T", &back));
	ASSERT_EQ(0, memcmp(&d, &back, sizeof(d)));

	/* LibAFL writes no kind: that means System V. */
	unsetenv("LLMP_T_KIND");
	ASSERT_EQ(0, llmp_shmem_desc_from_env("LLMP_T", &back));
	ASSERT_EQ(LLMP_SHMEM_SYSV, back.kind);
}

TEST(env_rejects_garbage)
{
	struct llmp_shmem_desc d;

	unsetenv("LLMP_G");
	ASSERT_EQ(-ENOENT, llmp_shmem_desc_from_env("LLMP_G", &d));
	setenv("LLMP_G", "123", 1);
	unsetenv("LLMP_G_SIZE");
	ASSERT_EQ(-ENOENT, llmp_shmem_desc_from_env("LLMP_G", &d));
	setenv("LLMP_G_SIZE", "12k", 1);
	ASSERT_EQ(-EINVAL, llmp_shmem_desc_from_env("LLMP_G", &d));
	setenv("LLMP_G_SIZE", "-5", 1);
	ASSERT_EQ(-EINVAL, llmp_shmem_desc_from_env("LLMP_G", &d));
	setenv("LLMP_G_SIZE", "0", 1);
	ASSERT_EQ(-EINVAL, llmp_shmem_desc_from_env("LLMP_G", &d));
	setenv("LLMP_G_SIZE", "99999999999999999999999", 1);
	ASSERT_EQ(-EINVAL, llmp_shmem_desc_from_env("LLMP_G", &d));
	setenv("LLMP_G_SIZE", "4096", 1);
	setenv("LLMP_G", "this-id-is-far-too-long-for-llmp", 1);
	ASSERT_EQ(-EINVAL, llmp_shmem_desc_from_env("LLMP_G", &d));
	setenv("LLMP_G", "123", 1);
	setenv("LLMP_G_KIND", "floppy", 1);
	ASSERT_EQ(-EINVAL, llmp_shmem_desc_from_env("LLMP_G", &d));
	setenv("LLMP_G_KIND", "default", 1);
	ASSERT_EQ(-EINVAL, llmp_shmem_desc_from_env("LLMP_G", &d));
	setenv("LLMP_G_KIND", "sysv", 1);
	ASSERT_EQ(0, llmp_shmem_desc_from_env("LLMP_G", &d));
}

TEST(provider_bad_kind)
{
	struct llmp_provider *p = (void *)1;

	ASSERT_EQ(-EINVAL, llmp_provider_new(LLMP_SHMEM_KIND_MAX, &p));
	ASSERT_EQ(NULL, p);
	ASSERT_EQ(-EINVAL, llmp_provider_new(LLMP_SHMEM_MEMFD, NULL));
}

TEST_HARNESS_MAIN
