// SPDX-License-Identifier: GPL-2.0
/*
 * llmp: /dev/llmp, refcounted shared-memory segments and doorbells for
 * LLMP message passing between fuzzer processes.
 *
 * A segment is a shmem file of fixed, page-rounded size.  Every process
 * that holds it has its own anon-inode fd that owns one reference on the
 * segment object; a mapping owns a reference on the shmem file itself, so
 * the memory lives until the last fd is closed and the last mapping is
 * gone.  Segments are found by (id, key) within the caller's IPC
 * namespace.  A bell is an anon-inode fd with a wait queue; a segment may
 * be bound to a bell with a 32-bit cookie and rung, which queues the
 * cookie once (coalesced) and wakes the bell's readers and pollers.
 *
 * Accounting: a segment is charged to its creator's uid from creation
 * until its last fd is closed *and* its last mapping is gone.  A segment
 * whose fds are all closed but which is still mapped ("mapped only") leaves
 * the id table and waits on llmp_orphans, holding its shmem file, until a
 * reaper (any create, STATS, or a delayed work every second) sees that no
 * mapping holds that file any more.
 *
 * Locking: llmp_segs' xa_lock protects lookups (references are taken with
 * kref_get_unless_zero() under it); seg->bind_lock protects the binding;
 * bell->lock protects the bell's pending list and seg->pend/pend_cookie;
 * a reader holds a reference on each segment whose cookie it took until
 * its copy to userspace succeeded (or it re-queued them).
 * Order: seg->bind_lock, then bell->lock, then the bell's wait queue lock.
 * llmp_acct_lock (a mutex) protects the byte accounting, the user list and
 * llmp_orphans; llmp_bells_lock protects the list of bells shown in debugfs.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/anon_inodes.h>
#include <linux/cred.h>
#include <linux/debugfs.h>
#include <linux/fcntl.h>
#include <linux/file.h>
#include <linux/fs.h>
#include <linux/ipc_namespace.h>
#include <linux/miscdevice.h>
#include <linux/mm.h>
#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/nsproxy.h>
#include <linux/poll.h>
#include <linux/random.h>
#include <linux/sched.h>
#include <linux/seq_file.h>
#include <linux/shmem_fs.h>
#include <linux/slab.h>
#include <linux/spinlock.h>
#include <linux/uaccess.h>
#include <linux/wait.h>
#include <linux/workqueue.h>
#include <linux/xarray.h>

#include <uapi/linux/llmp.h>

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

/* Cookies one read() returns at most; more stay pending for the next read. */
#define LLMP_READ_MAX	256

struct llmp_user {
	struct list_head node;		/* on llmp_users */
	kuid_t uid;
	u64 bytes;
	unsigned int segs;
};

struct llmp_bell {
	struct kref ref;		/* the bell fd + one per bound segment */
	spinlock_t lock;		/* pending list, seg->pend, seg->pend_cookie */
	struct list_head pending;	/* segments rung and not yet read */
	wait_queue_head_t wq;
	struct list_head node;		/* on llmp_bells */
	u32 id;
	pid_t creator_pid;
};

struct llmp_seg {
	struct kref ref;		/* one per segment fd (and transient lookups) */
	u32 id;
	u32 flags;
	u64 key;
	u64 size;
	kuid_t owner;
	pid_t creator_pid;		/* tgid in the initial pid namespace */
	struct pid *creator;		/* for SEG_INFO in the caller's pid ns */
	struct ipc_namespace *ns;	/* compared only, never dereferenced */
	unsigned int ns_inum;
	struct file *shm;		/* the memory; mappings hold it too */
	struct llmp_user *user;
	spinlock_t bind_lock;		/* bell, cookie */
	struct llmp_bell *bell;
	u32 cookie;
	struct list_head pend;		/* on bell->pending, under bell->lock */
	u32 pend_cookie;		/* under bell->lock */
	struct file *owner_file;	/* the fd SEG_CREATE returned: only it binds */
	struct list_head orphan;	/* on llmp_orphans once mapped only */
};

static DEFINE_XARRAY_ALLOC1(llmp_segs);
static u32 llmp_next_id;
static DEFINE_MUTEX(llmp_acct_lock);
static LIST_HEAD(llmp_users);
static u64 llmp_total_bytes;
static LIST_HEAD(llmp_orphans);
static u64 llmp_nr_orphans;
static DEFINE_MUTEX(llmp_bells_lock);
static LIST_HEAD(llmp_bells);
static u32 llmp_next_bell_id;

static atomic64_t stat_created, stat_freed, stat_bytes, stat_bells;
static atomic64_t stat_rings, stat_coalesced;

static struct dentry *llmp_debugfs;

static const struct file_operations llmp_seg_fops;
static const struct file_operations llmp_bell_fops;

/* ---- accounting ---------------------------------------------------------- */

static u64 llmp_limit_total(void)
{
	u64 v = READ_ONCE(max_total_bytes);

	return v ? v : ((u64)totalram_pages() << PAGE_SHIFT) / 2;
}

static u64 llmp_limit_user(void)
{
	u64 v = READ_ONCE(max_user_bytes);

	return v ? v : llmp_limit_total() / 8;
}

static u64 llmp_limit_reserved(void)
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

static int llmp_charge(kuid_t uid, u64 size, struct llmp_user **out)
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

static void llmp_uncharge(struct llmp_user *u, u64 size)
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

/* The end of a segment's memory accounting: its fds and mappings are gone. */
static void llmp_seg_final(struct llmp_seg *seg)
{
	fput(seg->shm);
	atomic64_sub(seg->size, &stat_bytes);
	kfree(seg);
}

/* Uncharge the mapped-only segments whose last mapping went away. */
static void llmp_reap_orphans(void)
{
	struct llmp_seg *seg, *tmp;
	LIST_HEAD(dead);

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
}

static void llmp_reaper_fn(struct work_struct *work);
static DECLARE_DELAYED_WORK(llmp_reaper, llmp_reaper_fn);

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

/* ---- bells --------------------------------------------------------------- */

static void llmp_bell_free(struct kref *ref)
{
	struct llmp_bell *bell = container_of(ref, struct llmp_bell, ref);

	mutex_lock(&llmp_bells_lock);
	list_del(&bell->node);
	mutex_unlock(&llmp_bells_lock);
	atomic64_dec(&stat_bells);
	kfree(bell);
}

static int llmp_bell_release(struct inode *inode, struct file *file)
{
	struct llmp_bell *bell = file->private_data;

	kref_put(&bell->ref, llmp_bell_free);
	return 0;
}

static bool llmp_bell_has_pending(struct llmp_bell *bell)
{
	bool ret;

	spin_lock(&bell->lock);
	ret = !list_empty(&bell->pending);
	spin_unlock(&bell->lock);
	return ret;
}

static void llmp_seg_free(struct kref *ref);

/*
 * A read whose copy to userspace faulted puts the cookies it took back at
 * the head of the pending list, oldest first, unless the segment was rung
 * again meanwhile (then it is pending already) or was rebound or unbound
 * (which drops a pending cookie anyway).  Drops the references taken.
 */
static void llmp_bell_requeue(struct llmp_bell *bell, struct llmp_seg **segs,
			      const u32 *cookies, size_t got)
{
	struct llmp_seg *seg;
	bool queued = false;
	size_t i;

	for (i = got; i-- > 0;) {
		seg = segs[i];
		if (!seg)
			continue;
		spin_lock(&seg->bind_lock);
		if (seg->bell == bell && seg->cookie == cookies[i]) {
			spin_lock(&bell->lock);
			if (list_empty(&seg->pend)) {
				seg->pend_cookie = cookies[i];
				list_add(&seg->pend, &bell->pending);
				queued = true;
			}
			spin_unlock(&bell->lock);
		}
		spin_unlock(&seg->bind_lock);
	}
	if (queued)
		wake_up_interruptible_poll(&bell->wq, EPOLLIN | EPOLLRDNORM);
}

static ssize_t llmp_bell_read(struct file *file, char __user *buf, size_t count,
			      loff_t *ppos)
{
	struct llmp_bell *bell = file->private_data;
	struct llmp_seg **segs, *seg;
	size_t n, got = 0, i;
	u32 *cookies;
	ssize_t ret;

	if (count < sizeof(u32))
		return -EINVAL;
	n = min_t(size_t, count / sizeof(u32), LLMP_READ_MAX);
	/* One allocation: n segment pointers, then n cookies. */
	segs = kmalloc_array(n, sizeof(*segs) + sizeof(u32), GFP_KERNEL);
	if (!segs)
		return -ENOMEM;
	cookies = (u32 *)(segs + n);
	for (;;) {
		spin_lock(&bell->lock);
		while (got < n && !list_empty(&bell->pending)) {
			seg = list_first_entry(&bell->pending, struct llmp_seg, pend);
			cookies[got] = seg->pend_cookie;
			/* Held for a re-queue; a segment being freed cannot be. */
			segs[got++] = kref_get_unless_zero(&seg->ref) ? seg : NULL;
			list_del_init(&seg->pend);
		}
		spin_unlock(&bell->lock);
		if (got)
			break;
		if (file->f_flags & O_NONBLOCK) {
			ret = -EAGAIN;
			goto out;
		}
		if (wait_event_interruptible(bell->wq, llmp_bell_has_pending(bell))) {
			ret = -ERESTARTSYS;
			goto out;
		}
	}
	ret = got * sizeof(u32);
	if (copy_to_user(buf, cookies, ret)) {
		/* No wake-up may be lost to a bad buffer: the next read gets them. */
		llmp_bell_requeue(bell, segs, cookies, got);
		ret = -EFAULT;
	}
	for (i = 0; i < got; i++)
		if (segs[i])
			kref_put(&segs[i]->ref, llmp_seg_free);
out:
	kfree(segs);
	return ret;
}

static __poll_t llmp_bell_poll(struct file *file, poll_table *wait)
{
	struct llmp_bell *bell = file->private_data;

	poll_wait(file, &bell->wq, wait);
	return llmp_bell_has_pending(bell) ? EPOLLIN | EPOLLRDNORM : 0;
}

static long llmp_bell_ioctl(struct file *file, unsigned int cmd, unsigned long arg);

static const struct file_operations llmp_bell_fops = {
	.owner = THIS_MODULE,
	.release = llmp_bell_release,
	.read = llmp_bell_read,
	.poll = llmp_bell_poll,
	.unlocked_ioctl = llmp_bell_ioctl,
	.compat_ioctl = compat_ptr_ioctl,
	.llseek = noop_llseek,
};

/* ---- segments ------------------------------------------------------------ */

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

static void llmp_seg_free(struct kref *ref)
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
	atomic64_inc(&stat_freed);
	/* Still mapped: stay charged until the reaper sees the last mapping go. */
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
	atomic64_inc(queued ? &stat_rings : &stat_coalesced);
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

static int llmp_version(void __user *argp)
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

static long llmp_bell_ioctl(struct file *file, unsigned int cmd, unsigned long arg)
{
	if (cmd == LLMP_IOC_VERSION)
		return llmp_version((void __user *)arg);
	return -ENOTTY;
}

static const struct file_operations llmp_seg_fops = {
	.owner = THIS_MODULE,
	.release = llmp_seg_release,
	.mmap = llmp_seg_mmap,
	.unlocked_ioctl = llmp_seg_ioctl,
	.compat_ioctl = compat_ptr_ioctl,
	.llseek = noop_llseek,
};

/*
 * Give the object (whose reference the caller passes on) a new fd.  The fd
 * is installed only after the reply reached userspace, so a fault leaks
 * nothing.  reply() writes the fd number into the reply.  *filep, if
 * given, is set to the new file before anyone can see it.
 */
static int llmp_install_fd(const char *name, const struct file_operations *fops,
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

static int llmp_seg_create(void __user *argp)
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
	atomic64_inc(&stat_created);
	atomic64_add(seg->size, &stat_bytes);

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

static int llmp_seg_open(void __user *argp)
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

struct llmp_bell_ctx {
	struct llmp_bell_create req;
	void __user *argp;
};

static int llmp_bell_reply(void *ctx, int fd)
{
	struct llmp_bell_ctx *c = ctx;

	c->req.fd = fd;
	return copy_to_user(c->argp, &c->req, sizeof(c->req)) ? -EFAULT : 0;
}

static int llmp_bell_create(void __user *argp)
{
	struct llmp_bell_ctx c;
	struct llmp_bell *bell;

	if (copy_from_user(&c.req, argp, sizeof(c.req)))
		return -EFAULT;
	c.argp = argp;
	if (c.req.reserved[0] || c.req.reserved[1] || c.req.fd)
		return -EINVAL;
	if (c.req.fd_flags & ~(O_CLOEXEC | O_NONBLOCK))
		return -EINVAL;
	bell = kzalloc(sizeof(*bell), GFP_KERNEL);
	if (!bell)
		return -ENOMEM;
	kref_init(&bell->ref);
	spin_lock_init(&bell->lock);
	INIT_LIST_HEAD(&bell->pending);
	init_waitqueue_head(&bell->wq);
	bell->creator_pid = task_tgid_nr(current);
	mutex_lock(&llmp_bells_lock);
	bell->id = ++llmp_next_bell_id;
	list_add_tail(&bell->node, &llmp_bells);
	mutex_unlock(&llmp_bells_lock);
	atomic64_inc(&stat_bells);
	return llmp_install_fd("[llmp-bell]", &llmp_bell_fops, bell, &bell->ref,
			       llmp_bell_free, c.req.fd_flags, llmp_bell_reply, &c, NULL);
}

static void llmp_fill_stats(struct llmp_stats *s)
{
	llmp_reap_orphans();
	memset(s, 0, sizeof(*s));
	s->segments_created = atomic64_read(&stat_created);
	s->segments_freed = atomic64_read(&stat_freed);
	s->segments_live = s->segments_created - s->segments_freed;
	s->bytes_live = atomic64_read(&stat_bytes);
	s->bells_live = atomic64_read(&stat_bells);
	s->rings = atomic64_read(&stat_rings);
	s->rings_coalesced = atomic64_read(&stat_coalesced);
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

/* ---- debugfs ------------------------------------------------------------- */

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

/* ---- module -------------------------------------------------------------- */

static int __init llmp_init(void)
{
	int ret;

	ret = misc_register(&llmp_misc);
	if (ret)
		return ret;
	/* debugfs is optional: errors are not fatal and need no checking. */
	llmp_debugfs = debugfs_create_dir("llmp", NULL);
	debugfs_create_file("segments", 0400, llmp_debugfs, NULL, &llmp_segments_fops);
	debugfs_create_file("bells", 0400, llmp_debugfs, NULL, &llmp_bells_fops);
	debugfs_create_file("stats", 0444, llmp_debugfs, NULL, &llmp_stats_fops);
	return 0;
}

static void __exit llmp_exit(void)
{
	struct llmp_seg *seg, *tmp;
	unsigned long first = 0;

	debugfs_remove_recursive(llmp_debugfs);
	misc_deregister(&llmp_misc);
	/*
	 * Mapped-only segments end their accounting here; their mappings keep
	 * the shmem file and its memory, which need nothing from us.
	 */
	cancel_delayed_work_sync(&llmp_reaper);
	list_for_each_entry_safe(seg, tmp, &llmp_orphans, orphan) {
		list_del(&seg->orphan);
		llmp_uncharge(seg->user, seg->size);
		llmp_seg_final(seg);
	}
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
