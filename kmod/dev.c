// SPDX-License-Identifier: GPL-2.0
/*
 * llmp.ko's entry points: the /dev/llmp misc device and its ioctl dispatch
 * (native and 32-bit compat), VERSION and STATS, handing a new object an
 * fd, and module load and unload.  The objects live in seg.c and bell.c,
 * the charging in acct.c (see llmp_internal.h for the whole picture).
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/anon_inodes.h>
#include <linux/build_bug.h>
#include <linux/fcntl.h>
#include <linux/file.h>
#include <linux/fs.h>
#include <linux/miscdevice.h>
#include <linux/module.h>
#include <linux/stddef.h>
#include <linux/string.h>
#include <linux/uaccess.h>

#include "llmp_internal.h"

/*
 * compat_ptr_ioctl serves 32-bit callers because every argument struct has
 * the same layout on i386 and x86-64: no pointers, no longs, each __u64 at
 * an offset that is a multiple of 8 (__aligned_u64) and sizes that are
 * multiples of 8.  The ioctl numbers encode the sizes, so a change here
 * would also change the ABI; tests/selftests/kmod_abi.h asserts the same
 * numbers in the 32-bit and 64-bit test builds.
 */
static_assert(sizeof(struct llmp_version) == 16);
static_assert(offsetof(struct llmp_version, features) == 8);
static_assert(sizeof(struct llmp_seg_create) == 48);
static_assert(offsetof(struct llmp_seg_create, flags) == 16);
static_assert(offsetof(struct llmp_seg_create, reserved) == 32);
static_assert(sizeof(struct llmp_seg_open) == 48);
static_assert(offsetof(struct llmp_seg_open, id) == 16);
static_assert(offsetof(struct llmp_seg_open, reserved) == 32);
static_assert(sizeof(struct llmp_bell_create) == 24);
static_assert(offsetof(struct llmp_bell_create, reserved) == 8);
static_assert(sizeof(struct llmp_stats) == 128);
static_assert(offsetof(struct llmp_stats, reserved) == 64);
static_assert(sizeof(struct llmp_seg_info) == 56);
static_assert(offsetof(struct llmp_seg_info, id) == 16);
static_assert(offsetof(struct llmp_seg_info, reserved) == 40);
static_assert(sizeof(struct llmp_seg_bind) == 24);
static_assert(offsetof(struct llmp_seg_bind, reserved) == 8);

atomic64_t llmp_stat_created, llmp_stat_freed, llmp_stat_bytes, llmp_stat_bells;
atomic64_t llmp_stat_rings, llmp_stat_coalesced;

int llmp_version(void __user *argp)
{
	struct llmp_version v;

	memset(&v, 0, sizeof(v));
	v.abi_version = LLMP_ABI_VERSION;
	v.features = LLMP_FEAT_SEGMENTS | LLMP_FEAT_BELLS | LLMP_FEAT_STATS |
		     LLMP_FEAT_CHARGE_MAPPED | LLMP_FEAT_BIND_OWNER;
	if (copy_to_user(argp, &v, sizeof(v)))
		return -EFAULT;
	return 0;
}

/*
 * Give the object (whose reference the caller passes on) a new fd.  The fd
 * is installed only after the reply reached userspace, so a fault leaks
 * nothing.  reply() writes the fd number into the reply.  *filep, if
 * given, is set to the new file before anyone can see it.
 */
int llmp_install_fd(const char *name, const struct file_operations *fops,
		    void *priv, struct kref *ref, void (*release)(struct kref *),
		    u32 fd_flags, int (*reply)(void *ctx, int fd), void *ctx,
		    struct file **filep)
{
	struct file *file;
	int fd, ret;

	fd = get_unused_fd_flags(fd_flags & O_CLOEXEC);
	if (fd < 0) {
		kref_put(ref, release);
		return fd;
	}
	file = anon_inode_getfile(name, fops, priv, O_RDWR | (fd_flags & O_NONBLOCK));
	if (IS_ERR(file)) {
		put_unused_fd(fd);
		kref_put(ref, release);
		return PTR_ERR(file);
	}
	/* From here the file owns the reference. */
	if (filep)
		*filep = file;
	ret = reply(ctx, fd);
	if (ret) {
		put_unused_fd(fd);
		fput(file);
		return ret;
	}
	fd_install(fd, file);
	return 0;
}

void llmp_fill_stats(struct llmp_stats *s)
{
	llmp_reap_orphans();
	memset(s, 0, sizeof(*s));
	s->segments_created = atomic64_read(&llmp_stat_created);
	s->segments_freed = atomic64_read(&llmp_stat_freed);
	s->segments_live = s->segments_created - s->segments_freed;
	s->bytes_live = atomic64_read(&llmp_stat_bytes);
	s->bells_live = atomic64_read(&llmp_stat_bells);
	s->rings = atomic64_read(&llmp_stat_rings);
	s->rings_coalesced = atomic64_read(&llmp_stat_coalesced);
	mutex_lock(&llmp_acct_lock);
	s->segments_mapped_only = llmp_nr_orphans;
	mutex_unlock(&llmp_acct_lock);
}

static int llmp_stats(void __user *argp)
{
	struct llmp_stats s;

	llmp_fill_stats(&s);
	if (copy_to_user(argp, &s, sizeof(s)))
		return -EFAULT;
	return 0;
}

static long llmp_dev_ioctl(struct file *file, unsigned int cmd, unsigned long arg)
{
	void __user *argp = (void __user *)arg;

	switch (cmd) {
	case LLMP_IOC_VERSION:
		return llmp_version(argp);
	case LLMP_IOC_SEG_CREATE:
		return llmp_seg_create(argp);
	case LLMP_IOC_SEG_OPEN:
		return llmp_seg_open(argp);
	case LLMP_IOC_BELL_CREATE:
		return llmp_bell_create(argp);
	case LLMP_IOC_STATS:
		return llmp_stats(argp);
	}
	return -ENOTTY;
}

static const struct file_operations llmp_dev_fops = {
	.owner = THIS_MODULE,
	.unlocked_ioctl = llmp_dev_ioctl,
	.compat_ioctl = compat_ptr_ioctl,
	.llseek = noop_llseek,
};

static struct miscdevice llmp_misc = {
	.minor = MISC_DYNAMIC_MINOR,
	.name = "llmp",
	.fops = &llmp_dev_fops,
	.mode = 0666,
};

static int __init llmp_init(void)
{
	int ret;

	ret = misc_register(&llmp_misc);
	if (ret)
		return ret;
	llmp_debugfs_init();
	return 0;
}

static void __exit llmp_exit(void)
{
	unsigned long first = 0;

	llmp_debugfs_exit();
	misc_deregister(&llmp_misc);
	llmp_acct_exit();
	/*
	 * Every segment and bell holds a module reference through its fd, so
	 * no entry can be left.  Nodes can: an xa_alloc_cyclic() that failed
	 * for want of memory may leave empty interior nodes behind, which only
	 * xa_destroy() frees.
	 */
	WARN_ON(xa_find(&llmp_segs, &first, ULONG_MAX, XA_PRESENT));
	xa_destroy(&llmp_segs);
	WARN_ON(!list_empty(&llmp_bells));
}

module_init(llmp_init);
module_exit(llmp_exit);
MODULE_DESCRIPTION("LLMP shared-memory segments and doorbells");
MODULE_LICENSE("GPL");
