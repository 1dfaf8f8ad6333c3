/* SPDX-License-Identifier: GPL-2.0 */
/*
 * llmp.ko's shared state: the segment, bell and user objects, the tables
 * and counters, and the functions one part of the module calls in another
 * (dev.c: /dev/llmp and the ioctls; seg.c: segments; acct.c: charging and
 * the reaper; bell.c: bells; debugfs.c: the debugfs files).
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
 * Locking: llmp_segs' xa_lock protects lookups (references are taken with
 * kref_get_unless_zero() under it); seg->bind_lock protects the binding;
 * bell->lock protects the bell's pending list and seg->pend/pend_cookie;
 * a reader holds a reference on each segment whose cookie it took until
 * its copy to userspace succeeded (or it re-queued them).
 * Order: seg->bind_lock, then bell->lock, then the bell's wait queue lock.
 * llmp_acct_lock (a mutex) protects the byte accounting, the user list and
 * llmp_orphans; llmp_bells_lock protects the list of bells shown in debugfs.
 */
#ifndef LLMP_INTERNAL_H
#define LLMP_INTERNAL_H

#include <linux/atomic.h>
#include <linux/fs.h>
#include <linux/kref.h>
#include <linux/list.h>
#include <linux/mutex.h>
#include <linux/spinlock.h>
#include <linux/types.h>
#include <linux/uidgid.h>
#include <linux/wait.h>
#include <linux/xarray.h>

#include <uapi/linux/llmp.h>

struct pid;
struct ipc_namespace;

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

/* dev.c */
extern atomic64_t llmp_stat_created, llmp_stat_freed, llmp_stat_bytes, llmp_stat_bells;
extern atomic64_t llmp_stat_rings, llmp_stat_coalesced;
int llmp_install_fd(const char *name, const struct file_operations *fops,
		    void *priv, struct kref *ref, void (*release)(struct kref *),
		    u32 fd_flags, int (*reply)(void *ctx, int fd), void *ctx,
		    struct file **filep);
int llmp_version(void __user *argp);
void llmp_fill_stats(struct llmp_stats *s);

/* acct.c */
extern struct mutex llmp_acct_lock;
extern u64 llmp_nr_orphans;
u64 llmp_limit_total(void);
u64 llmp_limit_user(void);
u64 llmp_limit_reserved(void);
int llmp_charge(kuid_t uid, u64 size, struct llmp_user **out);
void llmp_uncharge(struct llmp_user *u, u64 size);
void llmp_seg_final(struct llmp_seg *seg);
void llmp_seg_retire(struct llmp_seg *seg);
void llmp_reap_orphans(void);
void llmp_acct_exit(void);

/* seg.c */
extern struct xarray llmp_segs;
extern const struct file_operations llmp_seg_fops;
void llmp_seg_free(struct kref *ref);
int llmp_seg_create(void __user *argp);
int llmp_seg_open(void __user *argp);

/* bell.c */
extern struct mutex llmp_bells_lock;
extern struct list_head llmp_bells;
extern const struct file_operations llmp_bell_fops;
void llmp_bell_free(struct kref *ref);
int llmp_bell_create(void __user *argp);

/* debugfs.c */
void llmp_debugfs_init(void);
void llmp_debugfs_exit(void);

#endif /* LLMP_INTERNAL_H */
