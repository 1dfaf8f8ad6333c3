// SPDX-License-Identifier: GPL-2.0
/*
 * llmp.ko's bells: BELL_CREATE, and the bell fd's read (the cookies of the
 * segments rung since the last read, each once), poll and release.
 * Segments bind to a bell and ring it in seg.c.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/fcntl.h>
#include <linux/fs.h>
#include <linux/module.h>
#include <linux/poll.h>
#include <linux/sched.h>
#include <linux/slab.h>
#include <linux/uaccess.h>

#include "llmp_internal.h"

/* Cookies one read() returns at most; more stay pending for the next read. */
#define LLMP_READ_MAX	256

/* llmp_bells, the list debugfs shows, and llmp_next_bell_id. */
DEFINE_MUTEX(llmp_bells_lock);
LIST_HEAD(llmp_bells);
static u32 llmp_next_bell_id;

void llmp_bell_free(struct kref *ref)
{
	struct llmp_bell *bell = container_of(ref, struct llmp_bell, ref);

	mutex_lock(&llmp_bells_lock);
	list_del(&bell->node);
	mutex_unlock(&llmp_bells_lock);
	atomic64_dec(&llmp_stat_bells);
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

static long llmp_bell_ioctl(struct file *file, unsigned int cmd, unsigned long arg)
{
	if (cmd == LLMP_IOC_VERSION)
		return llmp_version((void __user *)arg);
	return -ENOTTY;
}

const struct file_operations llmp_bell_fops = {
	.owner = THIS_MODULE,
	.release = llmp_bell_release,
	.read = llmp_bell_read,
	.poll = llmp_bell_poll,
	.unlocked_ioctl = llmp_bell_ioctl,
	.compat_ioctl = compat_ptr_ioctl,
	.llseek = noop_llseek,
};

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

int llmp_bell_create(void __user *argp)
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
	atomic64_inc(&llmp_stat_bells);
	return llmp_install_fd("[llmp-bell]", &llmp_bell_fops, bell, &bell->ref,
			       llmp_bell_free, c.req.fd_flags, llmp_bell_reply, &c, NULL);
}
