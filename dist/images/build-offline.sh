#!/bin/bash
# Builds the kube-ovn image on a machine that cannot pull from any registry (as root):
#   1. the base image: `debootstrap --variant=minbase bookworm` imported with `podman import`
#      (skipped when $BASE_IMAGE exists; REBUILD_BASE=1 forces it),
#   2. the binaries: `cargo build --release` on the host (PROFILE=dev: a debug build, e.g.
#      the one `cargo test` already made, for a quick image in CI), stripped into
#      dist/images/.bin/,
#   3. the image: `podman build --target prebuilt` of dist/images/Dockerfile on that base
#      (its apt-get reaches the Debian mirror through the host network).
# Prints the image's size and the time each step took.
#
# Environment: IMAGE (localhost/kube-ovn:dev), PROFILE (release), BASE_IMAGE (localhost/kube-ovn-base:bookworm),
# DEBIAN_MIRROR (http://deb.debian.org/debian), CARGO_TARGET_DIR (<repo>/target),
# CONTAINERS_CONF (dist/images/containers.conf: runc, no default ulimits).
set -euo pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)
IMAGE=${IMAGE:-localhost/kube-ovn:dev}
BASE_IMAGE=${BASE_IMAGE:-localhost/kube-ovn-base:bookworm}
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
target_dir=${CARGO_TARGET_DIR:-$repo/target}
PROFILE=${PROFILE:-release}
case "$PROFILE" in
    release) cargo_profile=(--release) profile_dir=release ;;
    dev) cargo_profile=() profile_dir=debug ;;
    *)
        echo "build-offline: PROFILE=$PROFILE is neither release nor dev" >&2
        exit 1
        ;;
esac
export CONTAINERS_CONF=${CONTAINERS_CONF:-$repo/dist/images/containers.conf}

for tool in podman debootstrap cargo strip; do
    if ! command -v "$tool" > /dev/null; then
        echo "build-offline: $tool is missing (apt-get install -y podman buildah debootstrap runc binutils)" >&2
        exit 1
    fi
done

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f s", b - a }'; }

t0=$(now)
if [[ "${REBUILD_BASE:-0}" == "1" ]] || ! podman image exists "$BASE_IMAGE"; then
    work=$(mktemp -d /var/tmp/kube-ovn-base.XXXXXX)
    trap 'rm -rf "$work"' EXIT
    echo "== base: debootstrap --variant=minbase bookworm from $DEBIAN_MIRROR"
    debootstrap --variant=minbase bookworm "$work/rootfs" "$DEBIAN_MIRROR" > "$work/debootstrap.log" 2>&1 || {
        tail -n 20 "$work/debootstrap.log" >&2
        exit 1
    }
    rm -rf "$work"/rootfs/var/cache/apt/archives/*.deb "$work"/rootfs/var/lib/apt/lists/*
    tar -C "$work/rootfs" -c . | podman import --change 'CMD ["/bin/bash"]' - "$BASE_IMAGE" > /dev/null
    rm -rf "$work"
    trap - EXIT
    base_note="built"
else
    base_note="reused (REBUILD_BASE=1 rebuilds it)"
fi
t1=$(now)

echo "== binaries: cargo build (profile $PROFILE)"
(cd "$repo" && cargo build "${cargo_profile[@]}" -p kube-ovn-controller -p kube-ovn-daemon -p kube-ovn-cni \
    -p kube-ovn-ic-controller)
mkdir -p "$repo/dist/images/.bin"
for bin in kube-ovn kube-ovn-controller kube-ovn-daemon kube-ovn-lb-svc kube-ovn-vpc-nat-gw kube-ovn-pinger kube-ovn-leader-checker kube-ovn-ic-controller kubectl-ko; do
    strip -o "$repo/dist/images/.bin/$bin" "$target_dir/$profile_dir/$bin"
done
t2=$(now)

echo "== image: podman build --target prebuilt"
podman build --network host --target prebuilt --build-arg BASE_IMAGE="$BASE_IMAGE" \
    -f "$repo/dist/images/Dockerfile" -t "$IMAGE" "$repo"
t3=$(now)

size=$(podman image inspect --format '{{.Size}}' "$IMAGE")
base_size=$(podman image inspect --format '{{.Size}}' "$BASE_IMAGE")
echo
echo "image $IMAGE: $(awk -v s="$size" 'BEGIN { printf "%.0f MB", s / 1e6 }')" \
     "(base $BASE_IMAGE: $(awk -v s="$base_size" 'BEGIN { printf "%.0f MB", s / 1e6 }'))"
echo "base image: $base_note in $(elapsed "$t0" "$t1")"
echo "binaries (cargo build, profile $PROFILE, strip): $(elapsed "$t1" "$t2")"
echo "podman build: $(elapsed "$t2" "$t3")"
echo "total: $(elapsed "$t0" "$t3")"
