#!/usr/bin/env bash
# Build the real Kubernetes control plane (kube-apiserver, kube-controller-manager,
# kube-scheduler, kubectl) and etcd that the end-to-end tests run against.
#
# Idempotent: binaries land in $GPU_RIGHTSIZER_CACHE/k8s-<version>/bin (default
# ~/.cache/gpu-rightsizer) and the build is skipped when all of them are there.
# Go's build and module caches live in the same cache folder, outside the clone,
# so a fresh clone on the same machine (CI) relinks in seconds instead of ~6 min.
#
# Prints the bin directory as its last line on success.
set -euo pipefail

K8S_VERSION=v1.36.3
K8S_MINOR=36
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
GO_MODULE_DIR="$HERE/go"
CACHE="${GPU_RIGHTSIZER_CACHE:-$HOME/.cache/gpu-rightsizer}"
BIN_DIR="$CACHE/k8s-$K8S_VERSION/bin"
BINARIES=(etcd kube-apiserver kube-controller-manager kube-scheduler kubectl)

die() { echo "build-control-plane: ERROR: $*" >&2; exit 1; }

all_present() {
    local b
    for b in "${BINARIES[@]}"; do [[ -x "$BIN_DIR/$b" ]] || return 1; done
}

if all_present; then
    echo "build-control-plane: up to date ($BIN_DIR)"
    echo "$BIN_DIR"
    exit 0
fi

command -v go >/dev/null || die "go is not installed (need Go >= 1.26.0 for Kubernetes $K8S_VERSION)"
mkdir -p "$CACHE"

# Serialise concurrent builds (e.g. two test runs) on one cache.
if command -v flock >/dev/null; then
    exec 9>"$CACHE/build.lock"
    flock 9
    if all_present; then echo "$BIN_DIR"; exit 0; fi
fi

export GOCACHE="$CACHE/gocache" GOMODCACHE="$CACHE/gomod"
# Static binaries: no C toolchain needed, and they run on any glibc.
export CGO_ENABLED=0
# No VCS stamping: the module sits inside the project's git tree, and stamping
# would make every new commit relink the binaries.
export GOFLAGS="${GOFLAGS:-} -buildvcs=false"
# Without these the binaries report v0.0.0-master, which some clients reject.
LDFLAGS="-X k8s.io/component-base/version.gitVersion=$K8S_VERSION \
 -X k8s.io/component-base/version.gitMajor=1 \
 -X k8s.io/component-base/version.gitMinor=$K8S_MINOR"

# Build into a scratch dir and move into place at the end, so an interrupted build
# never leaves a half-populated bin dir that the next run would take as complete.
STAGE="$(mktemp -d "$CACHE/build.XXXXXX")"
trap 'rm -rf "$STAGE"' EXIT

start=$SECONDS
echo "build-control-plane: building Kubernetes $K8S_VERSION + etcd into $BIN_DIR (cold: ~6-7 min on 2 cores)"
cd "$GO_MODULE_DIR"
go build -ldflags "$LDFLAGS" -o "$STAGE/" \
    k8s.io/kubernetes/cmd/kube-apiserver \
    k8s.io/kubernetes/cmd/kube-controller-manager \
    k8s.io/kubernetes/cmd/kube-scheduler \
    k8s.io/kubernetes/cmd/kubectl \
    || die "go build of the Kubernetes binaries failed after $((SECONDS - start))s"
go build -o "$STAGE/etcd" go.etcd.io/etcd/server/v3 \
    || die "go build of etcd failed after $((SECONDS - start))s"

mkdir -p "$BIN_DIR"
for b in "${BINARIES[@]}"; do
    [[ -x "$STAGE/$b" ]] || die "expected binary $b was not produced"
    mv -f "$STAGE/$b" "$BIN_DIR/$b"
done
echo "build-control-plane: built in $((SECONDS - start))s"
"$BIN_DIR/kube-apiserver" --version
echo "$BIN_DIR"
