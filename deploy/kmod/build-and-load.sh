#!/bin/sh
# build-and-load.sh: builds genl_exmpl.ko against the running kernel's own
# headers and loads it, DKMS-style, from a container.
#
# Used as the init container of deploy/examples/kmod (image built from
# deploy/kmod/Dockerfile). The node's /usr and /lib/modules are mounted
# read-only under $HOST; the build happens in $WORK (an emptyDir); only the
# last step, insmod, needs a privilege: CAP_SYS_MODULE.
#
# Debian's headers are three directories linked by paths that only resolve
# on the host (linux-headers-VER-ARCH includes /usr/src/linux-headers-VER-common
# and links scripts/ and tools/ to /usr/lib/linux-kbuild-VER): the arch tree
# is copied to $WORK and its links pointed under $HOST.
#
# Environment:
#   HOST=/host        where the node's / is mounted (HOST=/ on a host itself)
#   SRC=/usr/src/genl_exmpl   the module's sources (kmod/ of this repository)
#   WORK=/build       a writable directory
#   KVER=$(uname -r)  the kernel to build for
#   MODULE_PARAMS=    parameters for insmod, e.g. "period_ms=1000"
#   SIGN_KEY, SIGN_CERT  sign the module (Secure Boot); see deploy/README.md
#   LOAD=1            LOAD=0 builds only
set -eu

HOST=${HOST:-/host}
SRC=${SRC:-/usr/src/genl_exmpl}
WORK=${WORK:-/build}
KVER=${KVER:-$(uname -r)}
LOAD=${LOAD:-1}
MODULE=genl_exmpl

if [ "$LOAD" = 1 ] && grep -qs "^$MODULE " /proc/modules; then
	echo "$MODULE is already loaded"
	exit 0
fi

# A module installed on the node (DKMS package, or a previous run that
# installed it) is loaded from there.
if [ "$LOAD" = 1 ] && modprobe -d "$HOST" -n "$MODULE" 2>/dev/null; then
	echo "loading the node's $MODULE for $KVER"
	exec modprobe -d "$HOST" "$MODULE" ${MODULE_PARAMS:-}
fi

H="$HOST/usr/src/linux-headers-$KVER"
if [ ! -f "$H/Makefile" ]; then
	echo "no kernel headers for $KVER at $H: install linux-headers-$KVER on the node" >&2
	exit 1
fi

rm -rf "$WORK/kdir" "$WORK/src" "$WORK/tmp"
mkdir -p "$WORK/kdir" "$WORK/src" "$WORK/tmp"
export TMPDIR="$WORK/tmp"
cp -a "$H/." "$WORK/kdir/"
for l in "$WORK"/kdir/*; do
	if [ -L "$l" ]; then
		ln -sfn "$(readlink -f "$H/$(basename "$l")")" "$l"
	fi
done
sed -i "s#^include /usr/src/#include $HOST/usr/src/#" "$WORK/kdir/Makefile"
cp -a "$SRC/." "$WORK/src/"

make -C "$WORK/kdir" M="$WORK/src" modules

if [ -n "${SIGN_KEY:-}" ]; then
	"$WORK/kdir/scripts/sign-file" sha256 "$SIGN_KEY" "${SIGN_CERT:?SIGN_CERT is needed with SIGN_KEY}" "$WORK/src/$MODULE.ko"
fi

if [ "$LOAD" = 1 ]; then
	# shellcheck disable=SC2086 # parameters are words
	insmod "$WORK/src/$MODULE.ko" ${MODULE_PARAMS:-}
	echo "loaded $MODULE into $KVER"
else
	echo "built $WORK/src/$MODULE.ko for $KVER (LOAD=0: not loaded)"
fi
