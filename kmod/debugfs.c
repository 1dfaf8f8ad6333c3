// SPDX-License-Identifier: GPL-2.0
/*
 * llmp.ko's debugfs files (/sys/kernel/debug/llmp/): the live segments,
 * the bells with their pending counts, and the counters and limits.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/cred.h>
#include <linux/debugfs.h>
#include <linux/fs.h>
#include <linux/seq_file.h>

#include "llmp_internal.h"

static struct dentry *llmp_debugfs;

static int llmp_segments_show(struct seq_file *m, void *v)
{
	struct llmp_seg *seg;
	unsigned long id;

	seq_puts(m, "id size owner_uid creator_pid ipc_ns fds maps flags bound cookie\n");
	xa_lock(&llmp_segs);
	/* Under the xa_lock no segment can be freed (llmp_seg_free erases first). */
	xa_for_each(&llmp_segs, id, seg) {
		seq_printf(m, "%u %llu %u %d %u %u %ld %#x %d %u\n", seg->id, seg->size,
			   from_kuid_munged(&init_user_ns, seg->owner), seg->creator_pid,
			   seg->ns_inum, kref_read(&seg->ref),
			   file_count(seg->shm) - 1, seg->flags, !!READ_ONCE(seg->bell),
			   READ_ONCE(seg->cookie));
	}
	xa_unlock(&llmp_segs);
	return 0;
}
DEFINE_SHOW_ATTRIBUTE(llmp_segments);

static int llmp_bells_show(struct seq_file *m, void *v)
{
	struct llmp_bell *bell;
	struct llmp_seg *seg;
	unsigned int pending;

	seq_puts(m, "id creator_pid refs pending\n");
	mutex_lock(&llmp_bells_lock);
	list_for_each_entry(bell, &llmp_bells, node) {
		pending = 0;
		spin_lock(&bell->lock);
		list_for_each_entry(seg, &bell->pending, pend)
			pending++;
		spin_unlock(&bell->lock);
		seq_printf(m, "%u %d %u %u\n", bell->id, bell->creator_pid,
			   kref_read(&bell->ref), pending);
	}
	mutex_unlock(&llmp_bells_lock);
	return 0;
}
DEFINE_SHOW_ATTRIBUTE(llmp_bells);

static int llmp_stats_show(struct seq_file *m, void *v)
{
	struct llmp_stats s;

	llmp_fill_stats(&s);
	seq_printf(m, "segments_live %llu\nbytes_live %llu\nsegments_created %llu\n",
		   s.segments_live, s.bytes_live, s.segments_created);
	seq_printf(m, "segments_freed %llu\nbells_live %llu\nrings %llu\n",
		   s.segments_freed, s.bells_live, s.rings);
	seq_printf(m, "rings_coalesced %llu\nsegments_mapped_only %llu\n",
		   s.rings_coalesced, s.segments_mapped_only);
	seq_printf(m, "limit_total_bytes %llu\nlimit_user_bytes %llu\nlimit_reserved_bytes %llu\n",
		   llmp_limit_total(), llmp_limit_user(), llmp_limit_reserved());
	return 0;
}
DEFINE_SHOW_ATTRIBUTE(llmp_stats);

/* debugfs is optional: errors are not fatal and need no checking. */
void llmp_debugfs_init(void)
{
	llmp_debugfs = debugfs_create_dir("llmp", NULL);
	debugfs_create_file("segments", 0400, llmp_debugfs, NULL, &llmp_segments_fops);
	debugfs_create_file("bells", 0400, llmp_debugfs, NULL, &llmp_bells_fops);
	debugfs_create_file("stats", 0444, llmp_debugfs, NULL, &llmp_stats_fops);
}

void llmp_debugfs_exit(void)
{
	debugfs_remove_recursive(llmp_debugfs);
}
