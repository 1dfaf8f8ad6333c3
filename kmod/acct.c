// SPDX-License-Identifier: GPL-2.0
/*
 * llmp.ko's memory accounting: the limits (module parameters), charging a
 * segment's bytes to its creator's uid, and the reaper of mapped-only
 * segments.
 *
 * A segment is charged to its creator's uid from creation until its last
 * fd is closed *and* its last mapping is gone.  A segment whose fds are all
 * closed but which is still mapped ("mapped only") leaves the id table and
 * waits on llmp_orphans, holding its shmem file, until a reaper (any
 * create, STATS, or a delayed work every second) sees that no mapping
 * holds that file any more.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/capability.h>
#include <linux/cred.h>
#include <linux/file.h>
#include <linux/fs.h>
#include <linux/mm.h>
#include <linux/module.h>
#include <linux/sched.h>
#include <linux/slab.h>
#include <linux/workqueue.h>

#include "llmp_internal.h"

static unsigned long long max_total_bytes;
module_param(max_total_bytes, ullong, 0644);
MODULE_PARM_DESC(max_total_bytes,
		 "Bytes of segments all users together may hold (0: half of RAM)");

static unsigned long long max_user_bytes;
module_param(max_user_bytes, ullong, 0644);
MODULE_PARM_DESC(max_user_bytes,
		 "Bytes of segments one uid may hold (0: an eighth of max_total_bytes); CAP_IPC_LOCK is exempt");

static unsigned long long reserved_bytes;
module_param(reserved_bytes, ullong, 0644);
MODULE_PARM_DESC(reserved_bytes,
		 "Bytes of max_total_bytes only CAP_IPC_LOCK may use (0: an eighth of max_total_bytes)");

/* The byte accounting, llmp_users and llmp_orphans. */
DEFINE_MUTEX(llmp_acct_lock);
static LIST_HEAD(llmp_users);
static u64 llmp_total_bytes;
static LIST_HEAD(llmp_orphans);
u64 llmp_nr_orphans;

u64 llmp_limit_total(void)
{
	u64 v = READ_ONCE(max_total_bytes);

	return v ? v : ((u64)totalram_pages() << PAGE_SHIFT) / 2;
}

u64 llmp_limit_user(void)
{
	u64 v = READ_ONCE(max_user_bytes);

	return v ? v : llmp_limit_total() / 8;
}

u64 llmp_limit_reserved(void)
{
	u64 v = READ_ONCE(reserved_bytes);

	return min(v ? v : llmp_limit_total() / 8, llmp_limit_total());
}

/*
 * Privileged creators (CAP_IPC_LOCK in the initial user namespace, as for
 * mlock and SHM_LOCK) have no per-uid limit and may use the reserve, so no
 * number of unprivileged uids can lock them out.
 */
static bool llmp_privileged(void)
{
	return ns_capable_noaudit(&init_user_ns, CAP_IPC_LOCK);
}

int llmp_charge(kuid_t uid, u64 size, struct llmp_user **out)
{
	struct llmp_user *u, *found = NULL;
	bool priv = llmp_privileged();
	u64 total = llmp_limit_total();
	u64 user = llmp_limit_user();
	int ret = 0;

	if (!priv)
		total -= llmp_limit_reserved();
	mutex_lock(&llmp_acct_lock);
	list_for_each_entry(u, &llmp_users, node) {
		if (uid_eq(u->uid, uid)) {
			found = u;
			break;
		}
	}
	if (size > total || llmp_total_bytes > total - size) {
		ret = -ENOSPC;
		goto out;
	}
	if (!priv && (size > user || (found && found->bytes > user - size))) {
		ret = -EDQUOT;
		goto out;
	}
	if (!found) {
		found = kzalloc(sizeof(*found), GFP_KERNEL);
		if (!found) {
			ret = -ENOMEM;
			goto out;
		}
		found->uid = uid;
		list_add(&found->node, &llmp_users);
	}
	found->bytes += size;
	found->segs++;
	llmp_total_bytes += size;
	*out = found;
out:
	mutex_unlock(&llmp_acct_lock);
	return ret;
}

static void llmp_uncharge_locked(struct llmp_user *u, u64 size)
{
	lockdep_assert_held(&llmp_acct_lock);
	u->bytes -= size;
	llmp_total_bytes -= size;
	if (--u->segs == 0) {
		list_del(&u->node);
		kfree(u);
	}
}

void llmp_uncharge(struct llmp_user *u, u64 size)
{
	mutex_lock(&llmp_acct_lock);
	llmp_uncharge_locked(u, size);
	mutex_unlock(&llmp_acct_lock);
}

/*
 * Does a mapping still hold the segment's memory?  Each VMA holds a
 * reference on the shmem file (the segment holds one more); a mapping made
 * through another file of the same inode shows in the inode's i_mmap.  No
 * new mapping can appear once the last segment fd is gone, so "false" is
 * final.
 */
static bool llmp_shm_mapped(struct file *shm)
{
	return file_count(shm) > 1 || mapping_mapped(shm->f_mapping);
}

/*
 * The end of a segment's memory accounting: its fds and mappings are gone.
 * A process's fput() releases the memory before it returns to userspace;
 * in the reaper (a kworker) fput() would leave that to yet another delayed
 * work, and STATS would show the bytes uncharged while they are still
 * allocated: a kthread releases the file synchronously.
 */
void llmp_seg_final(struct llmp_seg *seg)
{
	if (current->flags & PF_KTHREAD)
		__fput_sync(seg->shm);
	else
		fput(seg->shm);
	atomic64_sub(seg->size, &llmp_stat_bytes);
	kfree(seg);
}

static void llmp_reaper_fn(struct work_struct *work);
static DECLARE_DELAYED_WORK(llmp_reaper, llmp_reaper_fn);

/*
 * One reap at a time, from taking the orphans to their release: STATS
 * reaps first and then reads the counters, so it must not overtake the
 * reaper's work between uncharging a segment and releasing its memory
 * (seen under load: bytes_live still counted a segment after the reaper
 * had taken it off the list).
 */
static DEFINE_MUTEX(llmp_reap_lock);

/* Uncharge the mapped-only segments whose last mapping went away. */
void llmp_reap_orphans(void)
{
	struct llmp_seg *seg, *tmp;
	LIST_HEAD(dead);

	mutex_lock(&llmp_reap_lock);
	mutex_lock(&llmp_acct_lock);
	list_for_each_entry_safe(seg, tmp, &llmp_orphans, orphan) {
		if (llmp_shm_mapped(seg->shm))
			continue;
		list_move(&seg->orphan, &dead);
		llmp_nr_orphans--;
		llmp_uncharge_locked(seg->user, seg->size);
	}
	mutex_unlock(&llmp_acct_lock);
	list_for_each_entry_safe(seg, tmp, &dead, orphan)
		llmp_seg_final(seg);
	mutex_unlock(&llmp_reap_lock);
}

static void llmp_reaper_fn(struct work_struct *work)
{
	bool more;

	llmp_reap_orphans();
	mutex_lock(&llmp_acct_lock);
	more = !list_empty(&llmp_orphans);
	mutex_unlock(&llmp_acct_lock);
	if (more)
		schedule_delayed_work(&llmp_reaper, HZ);
}

/*
 * The segment's last fd is gone (llmp_seg_free); uncharge it now, or, if a
 * mapping still holds its memory, once the reaper sees the last one go.
 */
void llmp_seg_retire(struct llmp_seg *seg)
{
	if (llmp_shm_mapped(seg->shm)) {
		mutex_lock(&llmp_acct_lock);
		list_add_tail(&seg->orphan, &llmp_orphans);
		llmp_nr_orphans++;
		mutex_unlock(&llmp_acct_lock);
		schedule_delayed_work(&llmp_reaper, HZ);
		return;
	}
	llmp_uncharge(seg->user, seg->size);
	llmp_seg_final(seg);
}

/*
 * Module exit: mapped-only segments end their accounting here; their
 * mappings keep the shmem file and its memory, which need nothing from us.
 */
void llmp_acct_exit(void)
{
	struct llmp_seg *seg, *tmp;

	cancel_delayed_work_sync(&llmp_reaper);
	list_for_each_entry_safe(seg, tmp, &llmp_orphans, orphan) {
		list_del(&seg->orphan);
		llmp_nr_orphans--;
		llmp_uncharge(seg->user, seg->size);
		llmp_seg_final(seg);
	}
	WARN_ON(!list_empty(&llmp_users));
}
