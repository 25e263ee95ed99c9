#!/bin/sh
# Helper of mk/vm.mk: installs the VM test's Debian packages, fetches the test
# kernels and builds genl_exmpl.ko against each kernel's own headers.
#
#   vmtest/vm.sh deps PKG...            install the packages that are missing,
#                                       then check that every tool the VM
#                                       scripts call is there
#   vmtest/vm.sh kvers META...          print the kernel release each headers
#                                       meta package (e.g. linux-headers-amd64)
#                                       stands for, one a line
#   vmtest/vm.sh kernels META...        for each: $VM_DIR/<kver>/vmlinuz and
#                                       $VM_DIR/<kver>/genl_exmpl.ko
#
# Versions are resolved with apt and dpkg, never written down here. Run from
# the repository root; VM_DIR defaults to build/vm. Needs root for apt-get.
set -eu
# modinfo and ip live in sbin, which a user's PATH may lack.
PATH=$PATH:/usr/sbin:/sbin

VM_DIR=${VM_DIR:-build/vm}
KMOD_DIR=${KMOD_DIR:-kmod}
# 1: a kmod build warning fails the build (the module must be W=1 clean).
KMOD_WERROR=${KMOD_WERROR:-1}

die() { echo "vm.sh: $*" >&2; exit 1; }

# The commands these scripts and the VM test call, each with the Debian
# package that has it.
TOOLS="modinfo:kmod depmod:kmod modprobe:kmod qemu-system-x86_64:qemu-system-x86 busybox:busybox-static dpkg-deb:dpkg tar:tar xz:xz-utils make:make gcc:gcc ip:iproute2 mkfs.ext4:e2fsprogs zstd:zstd"

# need CMD PKG: fail, naming the command and its package, when CMD is missing.
need() {
	command -v "$1" >/dev/null 2>&1 ||
		die "$1 is missing (Debian package $2; make vm-deps installs it)"
}

# apt_install PKG...: install the packages; the package lists may be missing
# or stale on a new machine.
apt_install() {
	export DEBIAN_FRONTEND=noninteractive
	apt-get install -y --no-install-recommends "$@" ||
		{ apt-get update && apt-get install -y --no-install-recommends "$@"; }
}

# tools: install the package of every missing tool, then check them all.
cmd_tools() {
	missing=
	for t in $TOOLS; do
		c=${t%%:*} p=${t#*:}
		command -v "$c" >/dev/null 2>&1 || missing="$missing $p"
	done
	if [ -n "$missing" ]; then
		echo "vm-deps: installing$missing (for tools the VM test calls)"
		# shellcheck disable=SC2086
		apt_install $missing
	fi
	for t in $TOOLS; do need "${t%%:*}" "${t#*:}"; done
}

installed() { # PKG: is the package installed?
	[ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null)" = installed ]
}

cmd_deps() {
	missing=
	for p in "$@"; do
		installed "$p" || missing="$missing $p"
	done
	if [ -n "$missing" ]; then
		echo "vm-deps: installing$missing"
		# shellcheck disable=SC2086
		apt_install $missing
	else
		echo "vm-deps: all installed:$(printf ' %s' "$@")"
	fi
	cmd_tools
}

# kver META: the kernel release that a headers meta package depends on, from
# the installed package (so that it matches the headers on disk), else apt's
# candidate.
kver() {
	deps=$(dpkg-query -W -f='${Depends}' "$1" 2>/dev/null || true)
	[ -n "$deps" ] || deps=$(apt-cache depends "$1" 2>/dev/null | sed -n 's/^ *Depends: //p')
	k=$(printf '%s\n' "$deps" | tr ',' '\n' | sed -n 's/^ *linux-headers-\([0-9][^ ]*-amd64\)\( .*\)\{0,1\}$/\1/p' | head -n1)
	[ -n "$k" ] || die "cannot tell the kernel release of $1 (is it installed? run make vm-deps)"
	echo "$k"
}

cmd_kvers() {
	for m in "$@"; do kver "$m"; done
}

# fetch_vmlinuz KVER DIR: DIR/vmlinuz, DIR/button.ko (the ACPI button
# driver, whose power button events the VM test reads; uncompressed) and
# DIR/disk/ (the modules a virtio disk with ext4 needs, uncompressed, in
# the order to load them: DIR/disk/order; the power-loss test mounts one),
# from the linux-image package of the same version as the installed
# headers.
fetch_vmlinuz() {
	k=$1 dir=$2
	[ -s "$dir/vmlinuz" ] && [ -s "$dir/button.ko" ] && [ -s "$dir/disk/order" ] && return 0
	need dpkg-deb dpkg
	need tar tar
	ver=$(dpkg-query -W -f='${Version}' "linux-headers-$k" 2>/dev/null) ||
		die "linux-headers-$k is not installed (run make vm-deps)"
	debs=$VM_DIR/debs
	mkdir -p "$debs"
	rm -f "$debs"/linux-image-"$k"*.deb
	# The same version as the headers; failing that (the archive moved on
	# within the same ABI, so vermagic still matches), the current one.
	for want in "=$ver" ""; do
		for pkg in "linux-image-$k" "linux-image-$k-unsigned"; do
			if (cd "$debs" && apt-get download -q -o APT::Sandbox::User=root "$pkg$want" >/dev/null); then
				break 2
			fi
		done
	done
	deb=$(ls "$debs"/linux-image-"$k"*.deb 2>/dev/null | head -n1)
	[ -n "$deb" ] || die "cannot download linux-image-$k (headers version $ver): run apt-get update; if the ABI moved on, upgrade the headers meta packages (apt-get install --only-upgrade linux-headers-...)"
	tmp=$dir/.extract
	rm -rf "$tmp" && mkdir -p "$tmp"
	dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$tmp" --wildcards "./boot/vmlinuz-$k" "./lib/modules/$k/*"
	mv "$tmp/boot/vmlinuz-$k" "$dir/vmlinuz"
	button=$(find "$tmp" -name 'button.ko*' | head -n1)
	[ -n "$button" ] || die "$(basename "$deb") has no drivers/acpi/button.ko"
	unpack_ko "$button" "$dir/button.ko"
	# The disk's modules: what modprobe would load for virtio_pci, virtio_blk and
	# ext4, in its order (those built into the kernel are not listed).
	need depmod kmod
	depmod -b "$tmp" "$k"
	rm -rf "$dir/disk" && mkdir -p "$dir/disk"
	: >"$dir/disk/order"
	modprobe -a -d "$tmp" -S "$k" --show-depends virtio_pci virtio_blk ext4 | while read -r what path _; do
		[ "$what" = insmod ] || continue
		name=$(basename "$path" | sed 's/\.ko.*//')
		grep -qx "$name" "$dir/disk/order" && continue
		unpack_ko "$path" "$dir/disk/$name.ko"
		echo "$name" >>"$dir/disk/order"
	done
	rm -rf "$tmp" "$deb"
	echo "vm-kernels: $dir/vmlinuz, button.ko and the disk's modules ($(tr '\n' ' ' <"$dir/disk/order")) from $(basename "$deb")"
}

# unpack_ko SRC DST: a module, uncompressed (busybox's insmod reads plain
# ones).
unpack_ko() {
	case "$1" in
	*.xz) need xz xz-utils; xz -dc "$1" >"$2" ;;
	*.zst) need zstd zstd; zstd -qdc "$1" >"$2" ;;
	*) cp "$1" "$2" ;;
	esac
}

# build_kmod KVER DIR: DIR/genl_exmpl.ko built against linux-headers-KVER.
build_kmod() {
	k=$1 dir=$2
	kdir=/usr/src/linux-headers-$k
	[ -d "$kdir" ] || die "$kdir missing (run make vm-deps)"
	need make make
	need gcc gcc
	need modinfo kmod
	src=$dir/kmod
	mkdir -p "$src"
	# Copies keep their times, so an unchanged module is not rebuilt.
	cp -p "$KMOD_DIR"/*.c "$KMOD_DIR"/*.h "$KMOD_DIR"/Kbuild "$KMOD_DIR"/Makefile "$src"/
	log=$dir/kmod-build.log
	if ! make -C "$src" KDIR="$kdir" W=1 >"$log" 2>&1; then
		cat "$log" >&2
		die "building genl_exmpl.ko for $k failed"
	fi
	n=$(grep -c 'warning:' "$log" || true)
	echo "$n" >"$dir/kmod-warnings"
	if [ "$n" -gt 0 ]; then
		grep -A3 'warning:' "$log" >&2
		# Rebuild next time, so that the warnings are seen again.
		rm -f "$src"/*.o "$src"/*.ko
		[ "$KMOD_WERROR" = 1 ] && die "genl_exmpl.ko for $k: $n warning(s) with W=1"
	fi
	cp -p "$src/genl_exmpl.ko" "$dir/genl_exmpl.ko"
	magic=$(modinfo -F vermagic "$dir/genl_exmpl.ko") || die "modinfo cannot read $dir/genl_exmpl.ko"
	case "$magic" in
	"$k "*) ;;
	*) die "genl_exmpl.ko for $k has vermagic '$magic', want '$k ...'" ;;
	esac
	echo "vm-kernels: $dir/genl_exmpl.ko ($n warnings with W=1, vermagic $magic)"
}

cmd_kernels() {
	for m in "$@"; do
		k=$(kver "$m")
		dir=$VM_DIR/$k
		mkdir -p "$dir"
		fetch_vmlinuz "$k" "$dir"
		build_kmod "$k" "$dir"
	done
}

[ $# -ge 1 ] || die "usage: vm.sh deps|tools|kvers|kernels ARG..."
cmd=$1
shift
case "$cmd" in
deps) cmd_deps "$@" ;;
tools) cmd_tools ;;
kvers) cmd_kvers "$@" ;;
kernels) cmd_kernels "$@" ;;
*) die "unknown command $cmd" ;;
esac
