#!/usr/bin/env bash
# Build the kustomize binary the manifest tests render with, from the Go module proxy,
# into a cache outside the clone (so a fresh CI clone on the same machine reuses it).
# Prints the binary's path. Needs Go >= 1.22.
set -euo pipefail
VERSION="${KUSTOMIZE_VERSION:-v5.8.1}"
CACHE="${GPU_RIGHTSIZER_CACHE:-$HOME/.cache/gpu-rightsizer}"
BIN_DIR="$CACHE/bin/kustomize-$VERSION"
if [ ! -x "$BIN_DIR/kustomize" ]; then
  command -v go >/dev/null || { echo "install-kustomize: go is not on PATH" >&2; exit 1; }
  mkdir -p "$BIN_DIR"
  GOBIN="$BIN_DIR" \
  GOCACHE="${GOCACHE:-$CACHE/gocache}" \
  GOMODCACHE="${GOMODCACHE:-$CACHE/gomod}" \
  GOFLAGS="${GOFLAGS:--modcacherw}" \
    go install "sigs.k8s.io/kustomize/kustomize/v5@$VERSION" >&2
fi
echo "$BIN_DIR/kustomize"
