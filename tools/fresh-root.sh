# SPDX-License-Identifier: MIT OR Apache-2.0
# shellcheck shell=bash
#
# Sourced by tools/check-fresh.sh and tools/check-debs.sh (bash, as root,
# with say/die defined and $top the tree): the cached minimal Debian 12 root
# (debootstrap --variant=minbase, built once into LLMP_FRESH_CACHE), unpacked
# into a trial root $R with /proc, /dev and /sys mounted; everything mounted
# is unmounted and $R deleted on exit (LLMP_FRESH_KEEP=1 keeps it).  Defines
# in_root CMD (a plain root shell in $R), step TEXT and took (its duration).
command -v debootstrap >/dev/null || die "debootstrap missing: apt-get install -y debootstrap"

# ---- the mirror apt uses -------------------------------------------------------
apt_mirror() {
	local f=/etc/apt/sources.list.d/debian.sources m=""
	if [ -f "$f" ]; then
		# deb822: the first stanza whose Suites has "bookworm" itself.
		m=$(awk 'BEGIN { RS = "" } /(^|\n)Suites:([^\n]* )?bookworm( |\n|$)/ {
				if (match($0, /(^|\n)URIs: *[^ \n]+/)) {
					s = substr($0, RSTART, RLENGTH); sub(/.*URIs: */, "", s); print s; exit
				} }' "$f")
	fi
	if [ -z "$m" ] && [ -f /etc/apt/sources.list ]; then
		m=$(awk '$1 == "deb" && $3 == "bookworm" { print $2; exit }' /etc/apt/sources.list)
	fi
	echo "${m:-http://deb.debian.org/debian}"
}
mirror=${LLMP_FRESH_MIRROR:-$(apt_mirror)}
arch=$(dpkg --print-architecture)
inputs="debootstrap $(dpkg-query -W -f='${Version}' debootstrap) --variant=minbase --arch=$arch bookworm $mirror"
hash=$(echo "$inputs" | sha256sum | cut -c1-16)
cache=${LLMP_FRESH_CACHE:-/var/cache/llmp}
mkdir -p "$cache"

# ---- the root tarball, built once ---------------------------------------------
tarball=$cache/fresh-root-$hash.tar
if [ ! -f "$tarball" ] && [ -f "$cache/fresh-root.tar" ]; then
	tarball=$cache/fresh-root.tar
fi
if [ ! -f "$tarball" ]; then
	say "building the root: $inputs"
	t0=$(date +%s)
	tmp=$(mktemp -d "$cache/fresh-build.XXXXXX")
	if ! debootstrap --variant=minbase --arch="$arch" bookworm "$tmp" "$mirror" \
		> "$tmp.log" 2>&1; then
		tail -30 "$tmp.log" >&2
		rm -rf "$tmp" "$tmp.log"
		die "debootstrap failed"
	fi
	tar -C "$tmp" -cf "$tarball.tmp" .
	mv "$tarball.tmp" "$tarball"
	rm -rf "$tmp" "$tmp.log"
	say "root built in $(($(date +%s) - t0)) s: $tarball"
fi
say "root: $tarball"

# ---- a trial root, mounted; unmounted and removed on any exit -----------------
R=$(mktemp -d "${LLMP_FRESH_DIR:-/var/tmp}/llmp-fresh.XXXXXX")
mounted=()
cleanup() {
	local rc=$? m busy=0
	for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do
		m=${mounted[i]}
		mountpoint -q "$m" && { umount -R "$m" 2>/dev/null || umount -R -l "$m" || busy=1; }
	done
	if [ "$busy" = 0 ] && ! findmnt -R -n -o TARGET "$R" | grep -q .; then
		if [ "${LLMP_FRESH_KEEP:-0}" = 1 ]; then
			say "kept the trial root: $R"
		else
			rm -rf --one-file-system "$R"
		fi
	else
		echo "${0##*/}: something is still mounted under $R; not deleting it" >&2
		rc=1
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

tar -C "$R" -xf "$tarball"
cp /etc/resolv.conf "$R/etc/resolv.conf"
mount -t proc proc "$R/proc" && mounted+=("$R/proc")
mount --rbind /dev "$R/dev" && mounted+=("$R/dev")
mount --make-rslave "$R/dev"
mount -t sysfs sysfs "$R/sys" && mounted+=("$R/sys")

# Run a command in the root: in R as root, with a plain environment.
in_root() {
	chroot "$R" /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
		HOME=/root LC_ALL=C DEBIAN_FRONTEND=noninteractive /bin/sh -c "$*"
}
step_t=${step_t:-0}
step() { step_t=$(date +%s); say "--- $*"; }
took() { echo "$(($(date +%s) - step_t)) s"; }

