// SPDX-License-Identifier: GPL-2.0
/*
 * llmp.ko's segments: SEG_CREATE and SEG_OPEN, the segment fd (mmap,
 * release) and its ioctls SEG_INFO, SEG_BIND and SEG_RING, and the id
 * table.  Charging is in acct.c, the bells a segment rings in bell.c.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/capability.h>
#include <linux/cred.h>
#include <linux/fcntl.h>
#include <linux/file.h>
#include <linux/fs.h>
#include <linux/ipc_namespace.h>
#include <linux/mm.h>
#include <linux/module.h>
#include <linux/nsproxy.h>
#include <linux/pid.h>
#include <linux/poll.h>
#include <linux/random.h>
#include <linux/sched.h>
#include <linux/shmem_fs.h>
#include <linux/slab.h>
#include <linux/uaccess.h>

#include "llmp_internal.h"

DEFINE_XARRAY_ALLOC1(llmp_segs);
static u32 llmp_next_id;

/* Drop the binding; the caller puts the returned bell (may be NULL). */
static struct llmp_bell *llmp_seg_unbind_locked(struct llmp_seg *seg)
{
	struct llmp_bell *old = seg->bell;

	lockdep_assert_held(&seg->bind_lock);
	if (old) {
		spin_lock(&old->lock);
		list_del_init(&seg->pend);
		spin_unlock(&old->lock);
	}
	seg->bell = NULL;
	seg->cookie = 0;
	return old;
}

void llmp_seg_free(struct kref *ref)
{
	struct llmp_seg *seg = container_of(ref, struct llmp_seg, ref);
	struct llmp_bell *old;

	/* After this no lookup can find seg (lookups run under the xa_lock). */
	xa_erase(&llmp_segs, seg->id);
	spin_lock(&seg->bind_lock);
	old = llmp_seg_unbind_locked(seg);
	spin_unlock(&seg->bind_lock);
	if (old)
		kref_put(&old->ref, llmp_bell_free);
	put_pid(seg->creator);
	atomic64_inc(&llmp_stat_freed);
	/* Still mapped: stays charged until the reaper sees the last mapping go. */
	llmp_seg_retire(seg);
}

static int llmp_seg_release(struct inode *inode, struct file *file)
{
	struct llmp_seg *seg = file->private_data;

	spin_lock(&seg->bind_lock);
	if (seg->owner_file == file)
		seg->owner_file = NULL;
	spin_unlock(&seg->bind_lock);
	kref_put(&seg->ref, llmp_seg_free);
	return 0;
}

static int llmp_seg_mmap(struct file *file, struct vm_area_struct *vma)
{
	struct llmp_seg *seg = file->private_data;
	unsigned long pages = seg->size >> PAGE_SHIFT;

	/* Segments are for sharing: a private copy would silently diverge. */
	if (!(vma->vm_flags & VM_MAYSHARE))
		return -EINVAL;
	if (vma->vm_pgoff > pages || vma_pages(vma) > pages - vma->vm_pgoff)
		return -EINVAL;
	/* The mapping now holds the shmem file, not this fd (as dma-buf does). */
	vma_set_file(vma, seg->shm);
	return call_mmap(vma->vm_file, vma);
}

/*
 * Only the fd SEG_CREATE returned (and its dups and fork copies: the same
 * open file) may bind or unbind: everyone who learns the id and key can
 * open and ring the segment, but cannot steal or silence its bell.
 */
static bool llmp_seg_is_owner(struct llmp_seg *seg, struct file *file)
{
	bool ret;

	spin_lock(&seg->bind_lock);
	ret = seg->owner_file == file;
	spin_unlock(&seg->bind_lock);
	return ret;
}

static int llmp_seg_bind(struct llmp_seg *seg, struct file *file, void __user *argp)
{
	struct llmp_bell *bell = NULL, *old;
	struct llmp_seg_bind req;
	struct fd f;

	if (copy_from_user(&req, argp, sizeof(req)))
		return -EFAULT;
	if (req.reserved[0] || req.reserved[1])
		return -EINVAL;
	if (req.bell_fd == -1 && req.cookie)
		return -EINVAL;
	if (!llmp_seg_is_owner(seg, file))
		return -EPERM;
	if (req.bell_fd != -1) {
		if (req.bell_fd < 0)
			return -EBADF;
		f = fdget(req.bell_fd);
		if (!f.file)
			return -EBADF;
		if (f.file->f_op != &llmp_bell_fops) {
			fdput(f);
			return -EINVAL;
		}
		bell = f.file->private_data;
		kref_get(&bell->ref);
		fdput(f);
	}

	spin_lock(&seg->bind_lock);
	old = llmp_seg_unbind_locked(seg);
	seg->bell = bell;
	seg->cookie = req.cookie;
	spin_unlock(&seg->bind_lock);
	if (old)
		kref_put(&old->ref, llmp_bell_free);
	return 0;
}

static int llmp_seg_ring(struct llmp_seg *seg)
{
	struct llmp_bell *bell;
	bool queued = false;

	spin_lock(&seg->bind_lock);
	bell = seg->bell;
	if (!bell) {
		spin_unlock(&seg->bind_lock);
		return -ENOTCONN;
	}
	spin_lock(&bell->lock);
	if (list_empty(&seg->pend)) {
		seg->pend_cookie = seg->cookie;
		list_add_tail(&seg->pend, &bell->pending);
		queued = true;
	}
	spin_unlock(&bell->lock);
	/* The binding holds a reference on bell until bind_lock is dropped. */
	if (queued)
		wake_up_interruptible_poll(&bell->wq, EPOLLIN | EPOLLRDNORM);
	spin_unlock(&seg->bind_lock);
	atomic64_inc(queued ? &llmp_stat_rings : &llmp_stat_coalesced);
	return 0;
}

static int llmp_seg_info(struct llmp_seg *seg, void __user *argp)
{
	struct llmp_seg_info info;

	memset(&info, 0, sizeof(info));
	info.size = seg->size;
	info.key = seg->key;
	info.id = seg->id;
	info.flags = seg->flags;
	info.owner_uid = from_kuid_munged(current_user_ns(), seg->owner);
	info.creator_pid = pid_vnr(seg->creator);
	spin_lock(&seg->bind_lock);
	info.bound = !!seg->bell;
	info.cookie = seg->cookie;
	spin_unlock(&seg->bind_lock);
	if (copy_to_user(argp, &info, sizeof(info)))
		return -EFAULT;
	return 0;
}

static long llmp_seg_ioctl(struct file *file, unsigned int cmd, unsigned long arg)
{
	struct llmp_seg *seg = file->private_data;
	void __user *argp = (void __user *)arg;

	switch (cmd) {
	case LLMP_IOC_VERSION:
		return llmp_version(argp);
	case LLMP_IOC_SEG_INFO:
		return llmp_seg_info(seg, argp);
	case LLMP_IOC_SEG_BIND:
		return llmp_seg_bind(seg, file, argp);
	case LLMP_IOC_SEG_RING:
		if (arg)
			return -EINVAL;
		return llmp_seg_ring(seg);
	}
	return -ENOTTY;
}

const struct file_operations llmp_seg_fops = {
	.owner = THIS_MODULE,
	.release = llmp_seg_release,
	.mmap = llmp_seg_mmap,
	.unlocked_ioctl = llmp_seg_ioctl,
	.compat_ioctl = compat_ptr_ioctl,
	.llseek = noop_llseek,
};

struct llmp_create_ctx {
	struct llmp_seg_create req;
	void __user *argp;
};

static int llmp_create_reply(void *ctx, int fd)
{
	struct llmp_create_ctx *c = ctx;

	c->req.fd = fd;
	return copy_to_user(c->argp, &c->req, sizeof(c->req)) ? -EFAULT : 0;
}

int llmp_seg_create(void __user *argp)
{
	struct ipc_namespace *ns = current->nsproxy->ipc_ns;
	struct llmp_create_ctx c;
	struct llmp_seg *seg;
	struct file *shm;
	int ret;

	if (copy_from_user(&c.req, argp, sizeof(c.req)))
		return -EFAULT;
	c.argp = argp;
	if (c.req.reserved[0] || c.req.reserved[1] || c.req.key || c.req.id || c.req.fd)
		return -EINVAL;
	if (c.req.flags & ~LLMP_SEG_FLAGS_ALL || c.req.fd_flags & ~O_CLOEXEC)
		return -EINVAL;
	if (!c.req.size || c.req.size > LLMP_SEG_MAX_SIZE)
		return -EINVAL;
	c.req.size = PAGE_ALIGN(c.req.size);

	seg = kzalloc(sizeof(*seg), GFP_KERNEL);
	if (!seg)
		return -ENOMEM;
	kref_init(&seg->ref);
	spin_lock_init(&seg->bind_lock);
	INIT_LIST_HEAD(&seg->pend);
	INIT_LIST_HEAD(&seg->orphan);
	seg->size = c.req.size;
	seg->flags = c.req.flags;
	seg->key = get_random_u64();
	seg->owner = current_euid();
	seg->creator = get_task_pid(current, PIDTYPE_TGID);
	seg->creator_pid = task_tgid_nr(current);
	seg->ns = ns;
	seg->ns_inum = ns->ns.inum;

	llmp_reap_orphans();
	ret = llmp_charge(seg->owner, seg->size, &seg->user);
	if (ret)
		goto err_free;
	/* Lazily allocated, zero-filled pages charged to the faulting memcg. */
	shm = shmem_file_setup("llmp", seg->size, VM_NORESERVE);
	if (IS_ERR(shm)) {
		ret = PTR_ERR(shm);
		goto err_uncharge;
	}
	seg->shm = shm;
	ret = xa_alloc_cyclic(&llmp_segs, &seg->id, seg, XA_LIMIT(1, INT_MAX),
			      &llmp_next_id, GFP_KERNEL);
	if (ret < 0)
		goto err_fput;
	atomic64_inc(&llmp_stat_created);
	atomic64_add(seg->size, &llmp_stat_bytes);

	c.req.id = seg->id;
	c.req.key = seg->key;
	/* Nobody else can reach seg yet: its key is still unknown outside. */
	return llmp_install_fd("[llmp-seg]", &llmp_seg_fops, seg, &seg->ref,
			       llmp_seg_free, c.req.fd_flags, llmp_create_reply, &c,
			       &seg->owner_file);

err_fput:
	fput(shm);
err_uncharge:
	llmp_uncharge(seg->user, seg->size);
err_free:
	put_pid(seg->creator);
	kfree(seg);
	return ret;
}

struct llmp_open_ctx {
	struct llmp_seg_open req;
	void __user *argp;
};

static int llmp_open_reply(void *ctx, int fd)
{
	struct llmp_open_ctx *c = ctx;

	c->req.fd = fd;
	return copy_to_user(c->argp, &c->req, sizeof(c->req)) ? -EFAULT : 0;
}

int llmp_seg_open(void __user *argp)
{
	struct ipc_namespace *ns = current->nsproxy->ipc_ns;
	struct llmp_open_ctx c;
	struct llmp_seg *seg;

	if (copy_from_user(&c.req, argp, sizeof(c.req)))
		return -EFAULT;
	c.argp = argp;
	if (c.req.reserved[0] || c.req.reserved[1] || c.req.size || c.req.fd || c.req.flags)
		return -EINVAL;
	if (c.req.fd_flags & ~O_CLOEXEC)
		return -EINVAL;

	xa_lock(&llmp_segs);
	seg = xa_load(&llmp_segs, c.req.id);
	/* A wrong key looks exactly like a missing id: ids cannot be probed. */
	if (seg && (seg->ns != ns || seg->ns_inum != ns->ns.inum || seg->key != c.req.key ||
		    !kref_get_unless_zero(&seg->ref)))
		seg = NULL;
	xa_unlock(&llmp_segs);
	if (!seg)
		return -ENOENT;

	if (!(seg->flags & LLMP_SEG_ALLOW_OTHER_UIDS) && !uid_eq(current_euid(), seg->owner) &&
	    !ns_capable(ns->user_ns, CAP_IPC_OWNER)) {
		kref_put(&seg->ref, llmp_seg_free);
		return -EACCES;
	}
	c.req.size = seg->size;
	c.req.flags = seg->flags;
	return llmp_install_fd("[llmp-seg]", &llmp_seg_fops, seg, &seg->ref,
			       llmp_seg_free, c.req.fd_flags, llmp_open_reply, &c, NULL);
}
