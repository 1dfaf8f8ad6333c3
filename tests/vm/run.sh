#!/bin/sh
# SPDX-License-Identifier: MIT OR Apache-2.0
#
# `make check-vm`: boot QEMU guests that load llmp.ko and run the selftests.
#
# For each kernel in LLMP_VM_KERNELS (default "debian debug"):
#   debian  Debian's linux-image-amd64 (newest /boot/vmlinuz-*); the module is
#           built against /lib/modules/<that version>/build.
#   debug   tinyconfig + tests/vm/debug.config (KASAN, lockdep, kmemleak,
#           failslab), built once into /var/cache/llmp/debug-kernel-<hash> by
#           tests/vm/build-debug-kernel.sh; adds a kmemleak scan and a
#           fault-injection pass.
# it builds llmp.ko against that kernel (from a copy of the sources under
# build/vm/kmod-<kernel>/), an initramfs with busybox, the module, llmp-hold
# and every selftest linked statically, boots it with
#   qemu-system-x86_64 -m 1G -smp 2 -nographic -no-reboot
# (software emulation), prints the guest's serial output (KTAP, indented)
# and ends with "N passed, N failed[, N skipped]". Exit status: 0 if all
# passed, 1 on any failure, missing plan/results (crash) or kernel warning,
# 4 if the VM prerequisites are missing (kselftest's SKIP code).
# `tests/vm/run.sh --prereqs` only checks those and exits 0 (present) or 1.
#
# Environment:
#   LLMP_VM_KERNELS   kernels to run, in order (default "debian debug")
#   LLMP_VM_TESTS     only these test binaries (space separated names)
#   LLMP_VM_DEBUG_TESTS  what the debug kernel runs when LLMP_VM_TESTS is
#                     unset: "kmod" (default: the kmod_* tests, which are
#                     what it is for, and shmem_{desc,kill,provider}_test,
#                     which use the module through the KMOD provider; KASAN
#                     + lockdep under emulation make the protocol suites
#                     take longer than their timeouts) or "all"
#   LLMP_VM_TIMEOUT   seconds per guest run (default 900, debug kernel 1800)
#   LLMP_VM_TEST_TIMEOUT  seconds per test binary inside the guest (default 600)
#   LLMP_VM_TIMEOUT_SCALE  factor for every selftest's harness timeout in the
#                     guest (LLMP_TEST_TIMEOUT_SCALE, see llmp_test.h; default
#                     under tcg: 4 on debian, 8 on debug; 1 otherwise)
#   LLMP_VM_FAILSLAB  1/0: fault-injection pass on the debug kernel (default 1)
#   LLMP_VM_FAILSLAB_PROB   percent of slab allocations that fail (default 5)
#   LLMP_VM_FAILSLAB_SPACE  bytes a test process allocates before any fails (65536)
#   LLMP_VM_DIR       work directory (default build/vm)
#   LLMP_VM_ACCEL     QEMU accelerator (default tcg)
#   LLMP_VM_KMOD_SRC  tree holding Kbuild, kmod/ and include/ (default: this repo)
#   LLMP_VM_EXTRA_TESTS  more static test binaries for the guest's /tests
#   LLMP_VM_APPEND    more kernel command line (name=value without a dot
#                     reaches the tests' environment)
# Serial logs are kept in $LLMP_VM_DIR/<kernel>.log.
set -u

here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
vmdir=${LLMP_VM_DIR:-$top/build/vm}
kernels=${LLMP_VM_KERNELS:-debian debug}
vm_timeout_set=${LLMP_VM_TIMEOUT:-}
test_timeout=${LLMP_VM_TEST_TIMEOUT:-600}
failslab_on=${LLMP_VM_FAILSLAB:-1}
accel=${LLMP_VM_ACCEL:-tcg}
ksrc=${LLMP_VM_KMOD_SRC:-$top}
only=$(echo "${LLMP_VM_TESTS:-}" | tr ' ' ',' | sed 's/^,*//; s/,*$//')

# Problems in the kernel's console output, whatever the guest managed to say.
CONSOLE_BAD='BUG:|WARNING:|Oops|general protection fault|Kernel panic|KASAN:|UBSAN:|possible circular locking|possible recursive locking|sleeping function called|refcount_t:|kmemleak: .*suspected memory leak|list_(add|del) corruption'

log() { echo "# vm: $*"; }

# ---- prerequisites -----------------------------------------------------------
missing=""
command -v qemu-system-x86_64 >/dev/null 2>&1 || missing="$missing qemu-system-x86"
[ -x /bin/busybox ] && /bin/busybox --list 2>/dev/null | grep -qx insmod ||
	missing="$missing busybox-static"
command -v cpio >/dev/null 2>&1 || missing="$missing cpio"
# The -m32 kmod tests (compat ioctls) link the 32-bit static libc.
[ -f /usr/lib32/libc.a ] || missing="$missing gcc-multilib"
if [ "${1:-}" = "--prereqs" ]; then
	# For `make check`: exit 0 when a VM run is possible here, else say why.
	[ -z "$missing" ] || { echo "tests/vm: missing:$missing" >&2; exit 1; }
	ls /boot/vmlinuz-* >/dev/null 2>&1 || { echo "tests/vm: no /boot/vmlinuz-*" >&2; exit 1; }
	exit 0
fi
if [ -n "$missing" ]; then
	echo "KTAP version 1"
	echo "1..0 # SKIP VM prerequisites missing:$missing (make deps / apt-get install)"
	exit 4
fi
if command -v file >/dev/null 2>&1 &&
   ! file -L /bin/busybox | grep -Eq 'statically linked|static-pie linked'; then
	echo "KTAP version 1"
	echo "1..0 # SKIP /bin/busybox is not statically linked (install busybox-static)"
	exit 4
fi

mkdir -p "$vmdir"
static=$vmdir/static

# ---- userspace, linked statically -------------------------------------------
build_userspace() {
	make -s -C "$top" harness >/dev/null || return 1
	# Debian's libnats-dev has no static archive (and the guest no nats-server)
	make -s -C "$top" BUILD="$static" LLMP_NO_NATS=1 lib >/dev/null || return 1
	make -s -C "$top/tests/selftests" LLMP_BUILD="$static" OUTPUT="$static/selftests" \
		EXTRA_LDFLAGS=-static >/dev/null 2>"$static/link.log" ||
		{ cat "$static/link.log"; return 1; }
	# glibc warns about NSS in static programs; nothing else is expected.
	uring=""
	printf '#include <liburing.h>\nint main(void){return 0;}\n' |
		${CC:-gcc} -x c - -o /dev/null -luring 2>/dev/null && uring=-luring
	# shellcheck disable=SC2086 # $uring is empty or one word
	${CC:-gcc} -std=gnu11 -O2 -Wall -Wextra -Werror -D_GNU_SOURCE -I"$top/include" \
		"$here/llmp-hold.c" -o "$static/llmp-hold" "$static/libllmp.a" \
		-pthread -lrt $uring -static || return 1
}

# ---- the kmod tests again, as 32-bit programs ----------------------------------
# They test the module's compat ioctls (the guest runs them as m32/<name>).
# Raw ioctls only, so no 32-bit libllmp is needed: kmod_bell_test's cases of
# the library's wrapper SKIP in this build (LLMP_TEST_RAW_IOCTLS_ONLY).  The
# 6.1 harness's EXPECT casts pointers to uintmax_t and its setjmp around the
# inlined test bodies makes gcc -m32 guess at clobbered locals: both
# warnings are off here, for the harness's sake.
m32=$vmdir/static32
build_m32() {
	rm -rf "$m32"
	mkdir -p "$m32"
	for src in "$top"/tests/selftests/kmod_*_test.c; do
		t=$(basename "$src" .c)
		${CC:-gcc} -m32 -static -std=gnu11 -O2 -g -Wall -Wextra -Werror -Wno-unused-parameter \
			-Wno-sign-compare -Wno-pointer-to-int-cast -Wno-clobbered -Wno-psabi \
			-D_FILE_OFFSET_BITS=64 -D_GNU_SOURCE -DLLMP_TEST_RAW_IOCTLS_ONLY -pthread \
			-I"$top/include" -I"$top/tests/selftests" -I"$top/build/kselftest" \
			"$src" -o "$m32/$t" -lrt 2>"$m32/$t.log" || { cat "$m32/$t.log"; return 1; }
	done
	# The guest's probe: can this kernel exec a 32-bit program at all?
	printf 'int main(void) { return 0; }\n' |
		${CC:-gcc} -m32 -static -x c - -o "$m32/true32" || return 1
}

# ---- the module, against one kernel ------------------------------------------
# build_kmod NAME KDIR KVER: sets ko=<path> or returns 1 with a reason.
build_kmod() {
	src=$vmdir/kmod-$1
	if ! ls "$ksrc"/kmod/*.c >/dev/null 2>&1; then
		echo "no kernel module sources in $ksrc/kmod/"
		return 1
	fi
	mkdir -p "$src"
	rm -rf "$src/kmod" "$src/include"
	cp -a "$ksrc/kmod" "$src/"
	[ -d "$ksrc/include" ] && cp -a "$ksrc/include" "$src/"
	[ -f "$ksrc/Kbuild" ] && cp -a "$ksrc/Kbuild" "$src/"
	# Never reuse objects built for another kernel.
	find "$src" \( -name '*.o' -o -name '*.ko' -o -name '*.mod*' -o -name '.*.cmd' \) \
		-delete 2>/dev/null
	if ! make -s -C "$2" M="$src" modules > "$src/build.log" 2>&1; then
		tail -n 40 "$src/build.log"
		echo "module build against $2 failed"
		return 1
	fi
	ko=$(find "$src" -name llmp.ko | head -n 1)
	[ -n "$ko" ] || { echo "no llmp.ko produced in $src"; return 1; }
	vermagic=$(modinfo -F vermagic "$ko" 2>/dev/null ||
		strings "$ko" | sed -n 's/^vermagic=//p' | head -n 1)
	case "$vermagic" in
	"$3 "*|"$3") ;;
	*) echo "llmp.ko vermagic '$vermagic' does not match the guest kernel $3"; return 1 ;;
	esac
}

# ---- initramfs -----------------------------------------------------------------
build_initramfs() {	# build_initramfs NAME KO [KVER] -> $vmdir/initramfs-NAME.cpio.gz
	root=$vmdir/root-$1
	rm -rf "$root"
	mkdir -p "$root/bin" "$root/sbin" "$root/etc" "$root/tests" "$root/proc" "$root/sys" \
		"$root/dev" "$root/tmp" "$root/root"
	cp /bin/busybox "$root/bin/busybox"
	ln -s busybox "$root/bin/sh"
	cp "$here/init" "$root/init"
	chmod 755 "$root/init"
	cp "$2" "$root/llmp.ko"
	# The socket-diagnostics modules a real host loads on demand (the broker
	# asks NETLINK_SOCK_DIAG who a loopback peer is); the guest has no
	# modprobe tree, so init loads them, in this order.
	mkdir -p "$root/modules"
	for m in inet_diag tcp_diag; do
		f=/lib/modules/${3:-none}/kernel/net/ipv4/$m.ko
		[ -f "$f" ] && cp "$f" "$root/modules/"
	done
	cp "$static/llmp-hold" "$root/bin/llmp-hold"
	for t in "$static"/selftests/*_test ${LLMP_VM_EXTRA_TESTS:-}; do
		[ -x "$t" ] && cp "$t" "$root/tests/"
	done
	mkdir -p "$root/tests/m32"
	for t in "$m32"/kmod_*_test "$m32/true32"; do
		[ -x "$t" ] && cp "$t" "$root/tests/m32/"
	done
	# Captured LibAFL bytes (compat_test looks for vectors/ next to itself).
	[ -d "$top/tests/selftests/vectors" ] && cp -a "$top/tests/selftests/vectors" "$root/tests/"
	printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' \
		> "$root/etc/passwd"
	printf 'root:x:0:\nnogroup:x:65534:\n' > "$root/etc/group"
	(cd "$root" && find . | sort | cpio -o -H newc --quiet -R 0:0) | gzip -1 \
		> "$vmdir/initramfs-$1.cpio.gz"
}

# ---- boot and parse ----------------------------------------------------------
total_pass=0 total_fail=0 total_skip=0

# boot NAME KERNEL_IMAGE EXTRA_APPEND: runs the guest, parses, adds to totals.
boot() {
	name=$1 image=$2 extra=$3
	serial=$vmdir/$name.log
	# The guest gets the host's fd limit, so a test passes or fails on both alike.
	# shellcheck disable=SC3045 # dash and busybox sh have ulimit -n
	append="console=ttyS0 panic=-1 oops=panic loglevel=5 nowatchdog llmp_vm=$name llmp_timeout=$test_timeout llmp_nofile=$(ulimit -n) $extra"
	run_only=$only
	if [ -z "$run_only" ] && [ "$name" = debug ] && [ "${LLMP_VM_DEBUG_TESTS:-kmod}" = kmod ]; then
		# The kmod tests, and the provider tests, which drive the module
		# through libllmp's KMOD provider (the guest's default) with fork,
		# mmap and SIGKILL; the protocol suites time out under KASAN here.
		run_only=$(cd "$static/selftests" && ls kmod_*_test shmem_desc_test shmem_kill_test \
			shmem_provider_test 2>/dev/null | tr '\n' ',' | sed 's/,*$//')
		[ -n "$run_only" ] && log "debug kernel: kmod and provider tests only (LLMP_VM_DEBUG_TESTS=all for every test)"
	fi
	[ -n "$run_only" ] && append="$append llmp_tests=$run_only"
	# Software emulation on a busy host runs the tests tens of times slower
	# than the CPUs their timeouts were set for: the guest scales them.
	if [ -n "${LLMP_VM_TIMEOUT_SCALE:-}" ]; then
		scale=$LLMP_VM_TIMEOUT_SCALE
	elif [ "$accel" = tcg ] && [ "$name" = debug ]; then
		scale=8
	elif [ "$accel" = tcg ]; then
		scale=4
	else
		scale=1
	fi
	append="$append LLMP_TEST_TIMEOUT_SCALE=$scale"
	[ -n "${LLMP_VM_APPEND:-}" ] && append="$append $LLMP_VM_APPEND"
	# KASAN + lockdep under emulation: the debug guest needs more time.
	vm_timeout=${vm_timeout_set:-900}
	[ -z "$vm_timeout_set" ] && [ "$name" = debug ] && vm_timeout=1800
	log "booting $image ($accel), timeout ${vm_timeout}s"
	rcfile=$vmdir/$name.rc
	{ timeout -k 10 "$vm_timeout" qemu-system-x86_64 -accel "$accel" -m 1G -smp 2 \
		-nographic -no-reboot -kernel "$image" -initrd "$vmdir/initramfs-$name.cpio.gz" \
		-append "$append" < /dev/null 2>&1; echo $? > "$rcfile"; } |
		tr -d '\r' | sed 's/\x1b\[[0-9;?]*[A-Za-z]//g; s/\x1bc//g' | tee "$serial" |
		sed 's/^/    /'
	qrc=$(cat "$rcfile")

	problems=0
	# The guest's plan and results: top-level lines only (nested ones are indented).
	plan=$(sed -n 's/^1\.\.\([0-9][0-9]*\)$/\1/p' "$serial" | head -n 1)
	results=$(grep -Ec '^(not )?ok [0-9]+ ' "$serial")
	totals=$(grep '^# llmp-vm: totals ' "$serial" | tail -n 1)
	if [ "$qrc" = 124 ] || [ "$qrc" = 137 ]; then
		echo "    # vm $name: QEMU timed out after ${vm_timeout}s"
		problems=$((problems + 1))
	elif [ "$qrc" != 0 ]; then
		echo "    # vm $name: QEMU exited with $qrc"
		problems=$((problems + 1))
	fi
	if [ -z "$plan" ]; then
		echo "    # vm $name: no KTAP plan from the guest (did it boot?)"
		problems=$((problems + 1))
	elif [ "$results" != "$plan" ]; then
		echo "    # vm $name: $results results for a plan of $plan (guest crashed?)"
		problems=$((problems + 1))
	fi
	if ! grep -q '^# llmp-vm: done' "$serial" || [ -z "$totals" ]; then
		echo "    # vm $name: the guest did not finish"
		problems=$((problems + 1))
	fi
	# Kernel messages on the console (printk lines carry a [ time ] stamp).
	if grep -E '^\[ *[0-9]+\.[0-9]+\]' "$serial" | grep -Eq "$CONSOLE_BAD"; then
		echo "    # vm $name: kernel problems on the console:"
		grep -E '^\[ *[0-9]+\.[0-9]+\]' "$serial" | grep -E "$CONSOLE_BAD" | head -n 20 |
			sed 's/^/    #   /'
		problems=$((problems + 1))
	fi
	p=0 f=0 s=0
	if [ -n "$totals" ]; then
		p=$(echo "$totals" | sed 's/.*pass=\([0-9]*\).*/\1/')
		f=$(echo "$totals" | sed 's/.*fail=\([0-9]*\).*/\1/')
		s=$(echo "$totals" | sed 's/.*skip=\([0-9]*\).*/\1/')
	fi
	total_pass=$((total_pass + p))
	total_fail=$((total_fail + f + problems))
	total_skip=$((total_skip + s))
	echo "    # vm $name: $p passed, $((f + problems)) failed, $s skipped (serial log: $serial)"
	[ $((f + problems)) = 0 ]
}

# The guest gets no kernel modules but ours: what it needs must be built in.
debian_config_ok() {
	[ -r "$1" ] || { echo "no $1 to check the kernel's built-in options"; return 1; }
	for o in SERIAL_8250 SERIAL_8250_CONSOLE BLK_DEV_INITRD RD_GZIP DEVTMPFS PROC_FS \
		SYSFS DEBUG_FS TMPFS SHMEM MODULES MODULE_UNLOAD IO_URING FUTEX EPOLL EVENTFD \
		MEMFD_CREATE SYSVIPC UNIX BINFMT_ELF BINFMT_SCRIPT; do
		grep -qx "CONFIG_$o=y" "$1" ||
			{ echo "$1: CONFIG_$o is not built in (=y): the guest has no other modules"; return 1; }
	done
}

host_fail() {	# host_fail CASE REASON...
	shift
	echo "    # $*"
	total_fail=$((total_fail + 1))
}

nk=0
for k in $kernels; do nk=$((nk + 1)); done
echo "KTAP version 1"
echo "1..$nk"

ub_ok=1
ub_out=$(build_userspace 2>&1) || ub_ok=0
[ -n "$ub_out" ] && echo "$ub_out" | grep -v 'statically linked applications requires at runtime' |
	grep -v 'in function' | sed 's/^/    # build: /'
m32_out=$(build_m32 2>&1) || ub_ok=0
[ -n "$m32_out" ] && echo "$m32_out" | grep -v 'statically linked applications requires at runtime' |
	grep -v 'in function' | sed 's/^/    # build -m32 (gcc-multilib): /'

i=0
for k in $kernels; do
	i=$((i + 1))
	ok=1
	if [ "$ub_ok" = 0 ]; then
		host_fail "$k" "static userspace build failed"
		ok=0
	fi
	case "$k" in
	debian)
		image=$(ls -1 /boot/vmlinuz-* 2>/dev/null | sort -V | tail -n 1)
		kver=${image#/boot/vmlinuz-}
		kdir=/lib/modules/$kver/build
		extra=""
		if [ -z "$image" ]; then
			host_fail "$k" "no /boot/vmlinuz-* (apt-get install linux-image-amd64)"
			ok=0
		elif ! why=$(debian_config_ok "/boot/config-$kver"); then
			host_fail "$k" "$why"
			ok=0
		elif [ ! -d "$kdir" ]; then
			have=$(ls /lib/modules 2>/dev/null | tr '\n' ' ')
			host_fail "$k" "no headers for $kver in $kdir (have: $have): install linux-headers-$kver (linux-headers-amd64 must match linux-image-amd64)"
			ok=0
		fi
		;;
	debug)
		kdir=""
		if tree=$("$here/build-debug-kernel.sh" 2> "$vmdir/debug-kernel-build.log" | tail -n 1) &&
		   [ -f "$tree/arch/x86/boot/bzImage" ]; then
			sed 's/^/    # /' "$vmdir/debug-kernel-build.log" | grep -v '^    # .*warning: override' | tail -n 5
			image=$tree/arch/x86/boot/bzImage
			kdir=$tree
			kver=$(make -s -C "$tree" kernelrelease 2>/dev/null)
			extra=""
			[ "$failslab_on" = 1 ] && extra="llmp_failslab=1 llmp_failslab_prob=${LLMP_VM_FAILSLAB_PROB:-5} llmp_failslab_space=${LLMP_VM_FAILSLAB_SPACE:-65536}"
		else
			tail -n 30 "$vmdir/debug-kernel-build.log" | sed 's/^/    # /'
			host_fail "$k" "debug kernel build failed (log: $vmdir/debug-kernel-build.log)"
			ok=0
		fi
		;;
	*)
		host_fail "$k" "unknown kernel '$k' (LLMP_VM_KERNELS takes: debian debug)"
		ok=0
		;;
	esac
	if [ "$ok" = 1 ]; then
		log "$k: kernel $kver, module against $kdir"
		if ! build_kmod "$k" "$kdir" "$kver" > "$vmdir/kmod-$k.why" 2>&1; then
			sed 's/^/    # /' "$vmdir/kmod-$k.why"
			host_fail "$k" "llmp.ko for $kver could not be built"
			ok=0
		elif ! build_initramfs "$k" "$ko" "$kver"; then
			host_fail "$k" "initramfs build failed"
			ok=0
		fi
	fi
	if [ "$ok" = 1 ] && boot "$k" "$image" "$extra"; then
		echo "ok $i vm_$k"
	else
		echo "not ok $i vm_$k"
	fi
done

if [ "$total_skip" -gt 0 ]; then
	echo "$total_pass passed, $total_fail failed, $total_skip skipped"
else
	echo "$total_pass passed, $total_fail failed"
fi
[ "$total_fail" = 0 ]
