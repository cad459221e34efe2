#!/usr/bin/env bash
# Build the helm binary the chart tests (tests/test_chart.py) render and lint with, from
# the Go module proxy, into a cache outside the clone (so a fresh CI clone on the same
# machine reuses it), as scripts/install-kustomize.sh does for kustomize.
# Idempotent; prints the binary's path as its last line. Needs Go >= 1.24.
set -euo pipefail
VERSION="${HELM_VERSION:-v3.22.0}"
CACHE="${GPU_RIGHTSIZER_CACHE:-$HOME/.cache/gpu-rightsizer}"
BIN_DIR="$CACHE/bin/helm-$VERSION"
if [ ! -x "$BIN_DIR/helm" ]; then
  command -v go >/dev/null || { echo "install-helm: go is not on PATH" >&2; exit 1; }
  mkdir -p "$BIN_DIR"
  GOBIN="$BIN_DIR" \
  GOCACHE="${GOCACHE:-$CACHE/gocache}" \
  GOMODCACHE="${GOMODCACHE:-$CACHE/gomod}" \
  GOFLAGS="${GOFLAGS:--modcacherw}" \
    go install "helm.sh/helm/v3/cmd/helm@$VERSION" >&2
fi
echo "$BIN_DIR/helm"
