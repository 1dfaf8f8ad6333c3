# SPDX-License-Identifier: MIT OR Apache-2.0
#
# llmp userspace build.  `make` builds libllmp.a, libllmp.so and the tools
# into $(BUILD); `make check` runs the selftests; `make kmod` builds the
# kernel module through Kbuild.  See README.md.

VERSION_MAJOR := 0
VERSION := 0.1.0
PREFIX ?= /usr/local
DESTDIR ?=
LIBDIR ?= $(PREFIX)/lib
INCLUDEDIR ?= $(PREFIX)/include
BINDIR ?= $(PREFIX)/bin
MANDIR ?= $(PREFIX)/share/man

SANITIZE ?=
ifeq ($(SANITIZE),1)
BUILD ?= build/san
SANFLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all
else
BUILD ?= build
SANFLAGS :=
endif
override BUILD := $(abspath $(BUILD))

# The configuration chosen for a build directory (CC, LLMP_NO_URING,
# LLMP_NO_ZLIB, LLMP_NO_ZSTD, LLMP_NO_NATS) is remembered there, in config-choice.mk,
# which the configure step writes: a later make in the same directory that
# does not name them keeps them (a plain `make BUILD=build/m32` stays
# 32-bit); naming one (CC=..., LLMP_NO_ZLIB=0) changes the choice, and
# config-host.h with it, so everything it affects is rebuilt.
explicit = $(filter command environment override,$(firstword $(origin $(1))))
-include $(BUILD)/config-choice.mk
ifeq ($(call explicit,CC),)
ifneq ($(CHOSEN_CC),)
CC := $(CHOSEN_CC)
endif
endif
ifeq ($(origin CC),default)
CC := gcc
endif
AR ?= ar
$(foreach v,LLMP_NO_URING LLMP_NO_ZLIB LLMP_NO_ZSTD LLMP_NO_NATS,$(if $(call explicit,$(v)),,\
	$(eval $(v) := $(CHOSEN_$(v)))))
CONFIGURE = LLMP_NO_URING='$(LLMP_NO_URING)' LLMP_NO_ZLIB='$(LLMP_NO_ZLIB)' \
	LLMP_NO_ZSTD='$(LLMP_NO_ZSTD)' LLMP_NO_NATS='$(LLMP_NO_NATS)' tools/configure.sh $(BUILD) "$(CC)"

OPT ?= -O2 -g
WARN := -Wall -Wextra -Werror -Wshadow -Wno-unused-parameter -Wstrict-prototypes \
	-Wmissing-prototypes -Wpointer-arith -Wformat=2
# CPPFLAGS, CFLAGS and LDFLAGS from the environment or the command line are
# added after ours (dpkg-buildflags: -D_FORTIFY_SOURCE=2, -fstack-protector-
# strong, -Wl,-z,relro, ...); -Werror stays.
CFLAGS_ALL := -std=gnu11 $(OPT) $(WARN) -D_GNU_SOURCE -fPIC -pthread -Iinclude -Ilib \
	$(SANFLAGS) $(CPPFLAGS) $(CFLAGS)
# What this machine has (liburing, zlib, libzstd) is probed by the configure
# step into $(BUILD)/config-host.h, which every object includes and depends
# on, and $(BUILD)/config.mk, read here.  It is remade on every run (cheap)
# but rewritten only when the answer changes; the targets that install
# packages first (check, demo, bench, ...) re-run make after installing, so
# the probe always sees what is installed.
CONFIG_H := $(BUILD)/config-host.h
# Goals that only install packages and start another make probe nothing
# themselves: the make they start does, after the packages are in (and a
# refused install, not as root, leaves no trace).
DEPS_GOALS := deps demo check bench bench-fleet check-vm check-windows check-matrix check-fresh \
	check-debs check-man kmod dkms dkms-check
# The module's goals need no userspace configuration either.
KMOD_GOALS := kmod-build kmod-clean dkms-stage
ifneq ($(MAKECMDGOALS),)
ifeq ($(filter-out $(DEPS_GOALS) $(KMOD_GOALS),$(MAKECMDGOALS)),)
NO_PROBE := 1
endif
endif
ifndef NO_PROBE
-include $(BUILD)/config.mk
endif
$(BUILD)/config.mk: FORCE
	@$(CONFIGURE)
$(CONFIG_H): $(BUILD)/config.mk
	@test -f $@ || $(CONFIGURE)
FORCE:
CFLAGS_ALL += -include $(CONFIG_H)
LDLIBS_ALL := -pthread -lrt $(CONFIG_LIBS) $(LDLIBS)
LDFLAGS_ALL := $(SANFLAGS) $(LDFLAGS)

# Platform back ends guard themselves (#ifdef) and report -ENODEV elsewhere.
LIB_SRCS := $(sort $(wildcard lib/*.c))
LIB_OBJS := $(patsubst lib/%.c,$(BUILD)/lib/%.o,$(LIB_SRCS))
TOOL_SRCS := $(sort $(wildcard tools/*.c))
TOOLS := $(patsubst tools/%.c,$(BUILD)/tools/%,$(TOOL_SRCS))
HEADERS := $(wildcard include/llmp/*.h)

STATIC := $(BUILD)/libllmp.a
SONAME := libllmp.so.$(VERSION_MAJOR)
SHARED := $(BUILD)/libllmp.so.$(VERSION)

.PHONY: FORCE all lib tools deps check check-windows check-vm check-matrix check-fresh check-debs check-man \
	kmod kmod-build kmod-clean dkms dkms-stage dkms-check bench demo \
	install uninstall clean harness selftests example bench-fleet

all: lib tools

lib: $(STATIC) $(SHARED)

$(BUILD)/lib/%.o: lib/%.c $(CONFIG_H) $(HEADERS) $(wildcard lib/*.h include/uapi/linux/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -c $< -o $@

$(STATIC): $(LIB_OBJS)
	@mkdir -p $(dir $@)
	rm -f $@
	$(AR) rcs $@ $^

$(SHARED): $(LIB_OBJS) lib/libllmp.map
	$(CC) -shared -Wl,-soname,$(SONAME) -Wl,--version-script=lib/libllmp.map \
		$(LDFLAGS_ALL) -o $@ $(LIB_OBJS) $(LDLIBS_ALL)
	ln -sf libllmp.so.$(VERSION) $(BUILD)/$(SONAME)
	ln -sf $(SONAME) $(BUILD)/libllmp.so

tools: $(TOOLS)

$(BUILD)/tools/%: tools/%.c tools/tool.h $(CONFIG_H) $(STATIC) $(HEADERS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) $< -o $@ $(LDFLAGS_ALL) $(STATIC) $(LDLIBS_ALL)

# Debian packages the build and the tests need (installs as root, else tells).
# Every goal that needs packages installs them first, through one call of
# tools/deps.sh with its groups (so, not as root, one apt-get line to run).
deps:
	@tools/deps.sh
deps_for = @LLMP_DEPS="$(LLMP_DEPS) $(1)" tools/deps.sh

# kselftest_harness.h from Debian's linux-source tarball, into build/.
harness:
	@tools/get-harness.sh $(abspath build/kselftest)

selftests: lib harness
	$(MAKE) -C tests/selftests CC="$(CC)" LLMP_BUILD=$(BUILD) OUTPUT=$(BUILD)/selftests \
		EXTRA_CFLAGS="$(SANFLAGS)" EXTRA_LDFLAGS="$(SANFLAGS)"

# The README's test command: every userspace selftest, KTAP, "N passed, N failed".
check: deps
	$(MAKE) all selftests
	tools/check-exports.sh $(SHARED)
	tests/run.sh $(BUILD)/selftests
	@if [ -n "$(SANITIZE)" ]; then echo "check: VM tests not run with SANITIZE=1 (the guest runs the plain build)"; \
	elif tests/vm/run.sh --prereqs; then tests/vm/run.sh; \
	else echo "check: VM tests skipped (prerequisites missing)"; fi

check-windows:
	$(call deps_for,windows)
	tests/windows/run.sh

check-vm:
	$(call deps_for,vm)
	tests/vm/run.sh

# The build configurations: without liburing, zlib, zstd (each, and all
# three), clang, and gcc -m32 (with the 32 <-> 64-bit exchange); each
# builds with -Werror into build/matrix/<name> and runs the selftests it
# affects ("N passed, N failed" each, and a total).
check-matrix:
	$(call deps_for,matrix)
	tools/check-matrix.sh

# The README's two commands on a fresh Debian 12 root (debootstrap, chroot):
# as root make demo and make check; as a non-root user the apt-get line.
check-fresh:
	$(call deps_for,fresh)
	tools/check-fresh.sh

# The Debian packages: dpkg-buildpackage into build/debs, lintian, and (as
# root) installed into the fresh Debian 12 root: README example through
# pkg-config, llmp-broker --help, DKMS build (Documentation/testing.rst).
check-debs:
	$(call deps_for,debs fresh)
	tools/check-debs.sh

# The man pages: mandoc -Tlint clean, one for every function of
# include/llmp/*.h, and each section-3 EXAMPLE compiled, linked and run.
check-man:
	$(call deps_for,debs)
	$(MAKE) lib
	tools/check-man.sh $(BUILD)

bench:
	$(call deps_for,bench)
	$(MAKE) all
	tools/bench.sh $(BUILD)

# B2B vs core NATS vs JetStream between two brokers (Documentation/fleet.rst).
bench-fleet: deps
	$(MAKE) all
	$(BUILD)/tools/llmp-bench-fleet

demo: deps
	$(MAKE) all
	tools/demo.sh $(BUILD)

# ---- kernel module ----
KDIR ?= $(shell d=/lib/modules/$$(uname -r)/build; [ -d $$d ] && echo $$d || \
	ls -d /lib/modules/*/build 2>/dev/null | sort -V | tail -1)
kmod:
	$(call deps_for,kmod)
	$(MAKE) kmod-build

kmod-build:
	@test -n "$(KDIR)" || { echo "make kmod: no kernel build dir; install linux-headers-amd64 or set KDIR" >&2; exit 1; }
	$(MAKE) -C $(KDIR) M=$(CURDIR) modules

kmod-clean:
	@test -n "$(KDIR)" && $(MAKE) -C $(KDIR) M=$(CURDIR) clean || true

# DKMS: the module's sources and kmod/dkms.conf into /usr/src/llmp-$(VERSION),
# then `dkms add/build/install` when dkms is installed (and DESTDIR is empty).
DKMS_SRC = $(DESTDIR)/usr/src/llmp-$(VERSION)
# The kernel release to build for: KDIR's, when KDIR is /lib/modules/<release>/build.
DKMS_KVER ?= $(if $(filter /lib/modules/%/build,$(KDIR)),$(patsubst /lib/modules/%/build,%,$(KDIR)),$(shell uname -r))
# (The packages it needs are installed first, except when DESTDIR only stages.)
dkms:
	$(if $(DESTDIR),,$(call deps_for,kmod))
	$(MAKE) dkms-stage

dkms-stage:
	install -d $(DKMS_SRC)/kmod $(DKMS_SRC)/include/uapi/linux
	install -m 644 Kbuild $(DKMS_SRC)/Kbuild
	install -m 644 kmod/Kbuild $(wildcard kmod/*.c kmod/*.h) $(DKMS_SRC)/kmod/
	install -m 644 include/uapi/linux/llmp.h $(DKMS_SRC)/include/uapi/linux/
	sed 's/^PACKAGE_VERSION=.*/PACKAGE_VERSION="$(VERSION)"/' kmod/dkms.conf > $(DKMS_SRC)/dkms.conf
	@if [ -z "$(DESTDIR)" ] && command -v dkms >/dev/null 2>&1; then \
		dkms status llmp/$(VERSION) | grep -q . || dkms add llmp/$(VERSION); \
		dkms build llmp/$(VERSION) -k $(DKMS_KVER) && dkms install llmp/$(VERSION) -k $(DKMS_KVER); \
	else \
		echo "dkms: sources in $(DKMS_SRC); register them with:"; \
		echo "  dkms add llmp/$(VERSION) && dkms build llmp/$(VERSION) -k $(DKMS_KVER) && dkms install llmp/$(VERSION) -k $(DKMS_KVER)"; \
	fi

# The DKMS route end to end in a scratch tree (dkms add/build/install).
dkms-check:
	$(call deps_for,kmod)
	tools/dkms-check.sh $(KDIR)

# ---- install ----
# Every man page in Documentation/man (section 1 tools, section 3 API and its
# .so link pages); the uapi header goes to $(INCLUDEDIR)/llmp/uapi/llmp.h,
# not into the kernel headers' linux/ (Documentation/kmod.rst says why).
MANPAGES = $(sort $(wildcard Documentation/man/*.[1-8]))
install: all
	install -d $(DESTDIR)$(LIBDIR) $(DESTDIR)$(INCLUDEDIR)/llmp $(DESTDIR)$(BINDIR) \
		$(DESTDIR)$(LIBDIR)/pkgconfig
	install -m 644 $(STATIC) $(DESTDIR)$(LIBDIR)/
	install -m 755 $(SHARED) $(DESTDIR)$(LIBDIR)/
	ln -sf libllmp.so.$(VERSION) $(DESTDIR)$(LIBDIR)/$(SONAME)
	ln -sf $(SONAME) $(DESTDIR)$(LIBDIR)/libllmp.so
	install -m 644 $(HEADERS) $(DESTDIR)$(INCLUDEDIR)/llmp/
	install -d $(DESTDIR)$(INCLUDEDIR)/llmp/uapi
	install -m 644 include/uapi/linux/llmp.h $(DESTDIR)$(INCLUDEDIR)/llmp/uapi/llmp.h
	for t in $(TOOLS); do install -m 755 $$t $(DESTDIR)$(BINDIR)/; done
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@LIBDIR@|$(LIBDIR)|' -e 's|@INCLUDEDIR@|$(INCLUDEDIR)|' \
		-e 's|@VERSION@|$(VERSION)|' -e 's|@LIBS_PRIVATE@|-pthread -lrt $(CONFIG_LIBS)|' \
		lib/libllmp.pc.in > $(DESTDIR)$(LIBDIR)/pkgconfig/libllmp.pc
	set -e; for m in $(MANPAGES); do \
		s=$${m##*.}; install -d $(DESTDIR)$(MANDIR)/man$$s; \
		install -m 644 $$m $(DESTDIR)$(MANDIR)/man$$s/; done

uninstall:
	rm -f $(DESTDIR)$(LIBDIR)/libllmp.* $(DESTDIR)$(LIBDIR)/pkgconfig/libllmp.pc
	rm -rf $(DESTDIR)$(INCLUDEDIR)/llmp
	for t in $(notdir $(TOOLS)); do rm -f $(DESTDIR)$(BINDIR)/$$t; done
	for m in $(MANPAGES); do s=$${m##*.}; rm -f $(DESTDIR)$(MANDIR)/man$$s/$${m##*/}; done

clean: kmod-clean
	rm -rf build/lib build/tools build/selftests build/san build/libllmp.* build/win build/config-choice.mk
