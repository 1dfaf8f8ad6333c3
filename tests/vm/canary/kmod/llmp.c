// SPDX-License-Identifier: GPL-2.0
/*
 * Canary stand-in for llmp.ko, used only by tests/vm/selftest.sh to prove
 * that the VM harness notices kernel problems: it registers /dev/llmp and,
 * on request, misbehaves in the ways the harness must catch.
 *
 *   ioctl(fd, LLMP_CANARY_WARN)  WARN_ON
 *   ioctl(fd, LLMP_CANARY_LEAK)  leaks one kmalloc'd object (kmemleak)
 *   ioctl(fd, LLMP_CANARY_OOPS)  NULL pointer dereference
 *   anything else                -ENOTTY
 */
#include <linux/fs.h>
#include <linux/miscdevice.h>
#include <linux/module.h>
#include <linux/slab.h>

#define LLMP_CANARY_WARN 0xC0
#define LLMP_CANARY_LEAK 0xC1
#define LLMP_CANARY_OOPS 0xC2

static long canary_ioctl(struct file *file, unsigned int cmd, unsigned long arg)
{
	void *p;

	switch (cmd) {
	case LLMP_CANARY_WARN:
		WARN_ON(1);
		return 0;
	case LLMP_CANARY_LEAK:
		p = kmalloc(192, GFP_KERNEL);
		if (!p)
			return -ENOMEM;
		/* Forget it: nothing refers to it once this returns. */
		memset(p, 0x5a, 192);
		return 0;
	case LLMP_CANARY_OOPS:
		p = NULL;
		return *(volatile long *)(p + 8);
	}
	return -ENOTTY;
}

static const struct file_operations canary_fops = {
	.owner = THIS_MODULE,
	.unlocked_ioctl = canary_ioctl,
};

static struct miscdevice canary_dev = {
	.minor = MISC_DYNAMIC_MINOR,
	.name = "llmp",
	.fops = &canary_fops,
	.mode = 0666,
};

module_misc_device(canary_dev);
MODULE_DESCRIPTION("llmp VM harness canary (tests only)");
MODULE_LICENSE("GPL");
