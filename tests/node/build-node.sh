#!/usr/bin/env bash
# Build everything the real-node tier (tests/node) runs besides the control plane:
#   kubelet, kube-proxy     Kubernetes v1.36.3, from tests/e2e/go (the control plane's module)
#   containerd 2.4.2        daemon, runc shim and ctr, from tests/node/go/containerd
#   runc 1.5.3              with seccomp (RuntimeDefault profiles), from tests/node/go/runc
#   fake-nvidia-device-plugin, fake-nvidia-dra-plugin, pause   our own small Go programs (tests/node/go/*)
#   the stand-in base image python:3.11-slim (Debian bookworm's python3, by mmdebstrap)
# and installs the Debian packages the tier needs when they are missing (CI's machine may
# be new). Idempotent: binaries land in $GPU_RIGHTSIZER_CACHE (default
# ~/.cache/gpu-rightsizer) in folders keyed by version, and each step is skipped when its
# output is there. Prints each build's time, and the bin directory as its last line.
set -euo pipefail

K8S_VERSION=v1.36.3
K8S_MINOR=36
CONTAINERD_VERSION=v2.4.2
RUNC_VERSION=v1.5.3
BASE_SUITE=bookworm   # Debian 12: python3 is 3.11, as in the python:3.11-slim the Dockerfile names

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
E2E_GO="$HERE/../e2e/go"
CACHE="${GPU_RIGHTSIZER_CACHE:-$HOME/.cache/gpu-rightsizer}"
K8S_BIN="$CACHE/k8s-$K8S_VERSION/bin"
NODE_BIN="$CACHE/node-containerd-$CONTAINERD_VERSION-runc-$RUNC_VERSION/bin"
TOOLS_BIN="$CACHE/node-tools/bin"
BASE_TAR="$CACHE/node-images/python-3.11-slim-standin-$BASE_SUITE.tar"
APT_PACKAGES=(buildah mmdebstrap libseccomp-dev pkg-config containernetworking-plugins iptables iproute2 util-linux)

die() { echo "build-node: ERROR: $*" >&2; exit 1; }
step() { echo "build-node: $1 in $(( SECONDS - $2 ))s"; }

missing=()
for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    t=$SECONDS
    echo "build-node: installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2 && apt-get install -y -qq "${missing[@]}" >&2 || die "apt-get install ${missing[*]} failed"
    step "Debian packages" $t
fi

command -v go >/dev/null || die "go is not installed (need Go >= 1.26.0)"
mkdir -p "$CACHE"
exec 9>"$CACHE/build-node.lock"
flock 9

export GOCACHE="$CACHE/gocache" GOMODCACHE="$CACHE/gomod"
export GOFLAGS="${GOFLAGS:-} -buildvcs=false"
STAGE="$(mktemp -d "$CACHE/build-node.XXXXXX")"
trap 'rm -rf "$STAGE"' EXIT

# kubelet and kube-proxy: the same module, build cache and version stamp as the control plane.
if [[ ! -x "$K8S_BIN/kubelet" || ! -x "$K8S_BIN/kube-proxy" ]]; then
    t=$SECONDS
    (cd "$E2E_GO" && CGO_ENABLED=0 go build -ldflags "-X k8s.io/component-base/version.gitVersion=$K8S_VERSION \
        -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$K8S_MINOR" \
        -o "$STAGE/" k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kube-proxy) \
        || die "go build of kubelet and kube-proxy failed"
    mkdir -p "$K8S_BIN" && mv -f "$STAGE/kubelet" "$STAGE/kube-proxy" "$K8S_BIN/"
    step "kubelet and kube-proxy $K8S_VERSION built" $t
fi

if [[ ! -x "$NODE_BIN/containerd" || ! -x "$NODE_BIN/containerd-shim-runc-v2" || ! -x "$NODE_BIN/ctr" ]]; then
    t=$SECONDS
    (cd "$HERE/go/containerd" && CGO_ENABLED=0 go build -tags "no_btrfs no_devmapper no_zfs" -o "$STAGE/" \
        github.com/containerd/containerd/v2/cmd/containerd \
        github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2 \
        github.com/containerd/containerd/v2/cmd/ctr) || die "go build of containerd failed"
    mkdir -p "$NODE_BIN" && mv -f "$STAGE/containerd" "$STAGE/containerd-shim-runc-v2" "$STAGE/ctr" "$NODE_BIN/"
    step "containerd $CONTAINERD_VERSION built" $t
fi

if [[ ! -x "$NODE_BIN/runc" ]]; then
    t=$SECONDS
    (cd "$HERE/go/runc" && CGO_ENABLED=1 go build -tags seccomp -o "$STAGE/runc" github.com/opencontainers/runc) \
        || die "go build of runc failed (needs libseccomp-dev and pkg-config)"
    mkdir -p "$NODE_BIN" && mv -f "$STAGE/runc" "$NODE_BIN/"
    step "runc $RUNC_VERSION built" $t
fi

# Our own programs change with the tree: always (re)built, seconds with a warm cache.
t=$SECONDS
mkdir -p "$TOOLS_BIN"
(cd "$HERE/go/deviceplugin" && CGO_ENABLED=0 go build -o "$TOOLS_BIN/fake-nvidia-device-plugin" .) \
    || die "go build of the fake device plugin failed"
(cd "$HERE/go/draplugin" && CGO_ENABLED=0 go build -o "$TOOLS_BIN/fake-nvidia-dra-plugin" .) \
    || die "go build of the fake DRA kubelet plugin failed"
(cd "$HERE/go/pause" && CGO_ENABLED=0 go build -o "$TOOLS_BIN/pause" .) || die "go build of pause failed"
step "fake-nvidia-device-plugin, fake-nvidia-dra-plugin and pause built" $t

# No registry is reachable: the Dockerfile's base image is made from Debian's packages.
if [[ ! -s "$BASE_TAR" ]]; then
    t=$SECONDS
    mkdir -p "$(dirname "$BASE_TAR")"
    # python:3.11-slim has no EXTERNALLY-MANAGED marker (PEP 668); Debian's python3 does,
    # and it would refuse the Dockerfile's `pip install`.
    mmdebstrap --quiet --variant=minbase --include=python3,python3-pip,python3-venv,ca-certificates \
        --customize-hook='rm -f "$1"/usr/lib/python3*/EXTERNALLY-MANAGED' \
        "$BASE_SUITE" "$STAGE/base.tar" >&2 || die "mmdebstrap of the stand-in base image failed"
    mv -f "$STAGE/base.tar" "$BASE_TAR"
    step "stand-in base image rootfs ($BASE_SUITE, mmdebstrap)" $t
fi

echo "$NODE_BIN:$TOOLS_BIN:$K8S_BIN"
