#!/bin/sh
# make image: the root Dockerfile built with buildah, on a machine that
# reaches no container registry, for linux/amd64 and linux/arm64 as one
# manifest list. Run from the repository root by mk/k8s.mk:
#
#   k8stest/image.sh OUT_DIR TAG VERSION [CONTEXT]
#
# CONTEXT is the build context, the repository root by default.
#
# Everything buildah keeps (its image store, its cache mounts, its temporary
# files) is under OUT_DIR, with the vfs storage driver (plain directories).
# Results:
#   OUT_DIR/oci/             OCI layout: the manifest list, named TAG
#   OUT_DIR/genlbridge.tar   the same layout as one archive (ctr images import)
#
# The Dockerfile's builder stage is GO_IMAGE; this script makes it from the
# machine's own Go (which must be the version go.mod names), busybox-static
# and the host's CA bundle, as localhost/genlbridge-go:VERSION. The final
# stage is FROM scratch: nothing to pull for either platform.
set -eu

# In a mount namespace of its own, with /var/lib read-only: buildah would
# otherwise create /var/lib/containers/cache (its blob cache, kept in memory
# when it cannot). Nothing mounted in it outlives the script.
if [ -z "${GENLBRIDGE_IMAGE_NS:-}" ]; then
	GENLBRIDGE_IMAGE_NS=1 exec unshare --mount --propagation private "$0" "$@"
fi
out=$1 tag=$2 version=$3 context=${4:-.}
mkdir -p "$out/storage" "$out/run" "$out/tmp"
out=$(cd "$out" && pwd)
# mount(8) keeps its table (utab) and its lock in /run/mount by default.
export LIBMOUNT_UTAB="$out/utab"
mount --bind /var/lib /var/lib
mount -o remount,bind,ro /var/lib
export TMPDIR="$out/tmp"
# buildah sets up its network backend even for --network host, and would
# make /etc/cni/net.d (a lock file) for it: its configuration goes here.
mkdir -p "$out/cni"
printf '[network]\nnetwork_config_dir = "%s"\ncni_plugin_dirs = ["/usr/lib/cni"]\n' "$out/cni" >"$out/containers.conf"
export CONTAINERS_CONF="$out/containers.conf"
bah() { buildah --root "$out/storage" --runroot "$out/run" --storage-driver vfs "$@"; }

gover=$(sed -n 's/^go \([0-9.]*\)$/\1/p' go.mod)
have=$(go env GOVERSION)
if [ "$have" != "go$gover" ]; then
	echo "image.sh: go.mod names go $gover, this machine's go is $have: the builder image must be the same version" >&2
	exit 1
fi
builder=localhost/genlbridge-go:$gover

if ! bah inspect --type image "$builder" >/dev/null 2>&1; then
	echo "==> the builder image $builder, from $(go env GOROOT), busybox-static and the CA bundle"
	root="$out/tmp/builder-root"
	rm -rf "$root"
	mkdir -p "$root/bin" "$root/usr/local" "$root/etc/ssl/certs" "$root/tmp" "$root/root" "$root/go"
	chmod 1777 "$root/tmp"
	cp /bin/busybox "$root/bin/busybox"
	for a in $("$root/bin/busybox" --list); do
		[ -e "$root/bin/$a" ] || ln -s busybox "$root/bin/$a"
	done
	# The toolchain without its own tests: 100 MB less to copy.
	tar -C "$(go env GOROOT)/.." --exclude=go/test --exclude='go/pkg/linux_*_race' -cf - "$(basename "$(go env GOROOT)")" |
		tar -C "$root/usr/local" -xf -
	[ -d "$root/usr/local/go" ] || mv "$root/usr/local/$(basename "$(go env GOROOT)")" "$root/usr/local/go"
	cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/"
	printf 'root:x:0:0:root:/root:/bin/sh\nnonroot:x:65532:65532:nonroot:/home/nonroot:/bin/false\n' >"$root/etc/passwd"
	printf 'root:x:0:\nnonroot:x:65532:\n' >"$root/etc/group"
	ctr=$(bah from --pull-never scratch)
	bah copy "$ctr" "$root/" / >/dev/null
	bah config --env PATH=/usr/local/go/bin:/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
		--env GOPATH=/go --env GOTOOLCHAIN=local --workingdir /go \
		--os linux --arch "$(go env GOARCH)" "$ctr"
	bah commit --rm "$ctr" "$builder" >/dev/null
	rm -rf "$root"
fi

image=localhost/genlbridge:$tag
bah manifest rm "$image" >/dev/null 2>&1 || true
bah rmi "$image" >/dev/null 2>&1 || true
echo "==> $image for linux/amd64 and linux/arm64"
# BUILDPLATFORM is given: buildah 1.28 (Debian 12) leaves it empty in
# `FROM --platform=$BUILDPLATFORM` and would look for an arm64 builder.
bah build --isolation chroot --network host --pull-never \
	--platform linux/amd64,linux/arm64 --manifest "$image" \
	--build-arg BUILDPLATFORM="linux/$(go env GOARCH)" \
	--build-arg GO_IMAGE="$builder" --build-arg VERSION="$version" \
	-f "$context/Dockerfile" "$context"

rm -rf "$out/oci" "$out/genlbridge.tar"
bah manifest push --all --format oci "$image" "oci:$out/oci:$tag" >/dev/null
tar -C "$out/oci" -cf "$out/genlbridge.tar" .
bah rmi --prune >/dev/null 2>&1 || true
echo "==> $out/oci (genlbridge:$tag) and $out/genlbridge.tar"
