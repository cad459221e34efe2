#!/usr/bin/env bash
# Build the helm binary the chart tests (tests/test_chart.py) render and lint with, from
# the Go module proxy, into a cache outside the clone (so a fresh CI clone on the same
# machine reuses it), as scripts/install-kustomize.sh does for kustomize.
# Idempotent; prints the binary's path as its last line. Needs Go >= 1.24.
set -euo pipefail
VERSION="${HELM_VERSION:-v3.22.0}"
# The Kubernetes version helm assumes when it has no cluster to ask (`helm template`,
# `helm install --dry-run=client`, `helm lint`'s deprecation checks). helm's own Makefile
# derives it from its k8s.io/client-go (v0.37.0 in v3.22.0 -> 1.37) and sets it, with the
# version string, by -ldflags; a plain `go install` would leave 1.20 and "v3.22".
KUBE_MINOR="${HELM_KUBE_MINOR:-37}"
CACHE="${GPU_RIGHTSIZER_CACHE:-$HOME/.cache/gpu-rightsizer}"
BIN_DIR="$CACHE/bin/helm-$VERSION-k1.$KUBE_MINOR"
if [ ! -x "$BIN_DIR/helm" ]; then
  command -v go >/dev/null || { echo "install-helm: go is not on PATH" >&2; exit 1; }
  mkdir -p "$BIN_DIR"
  GOBIN="$BIN_DIR" \
  GOCACHE="${GOCACHE:-$CACHE/gocache}" \
  GOMODCACHE="${GOMODCACHE:-$CACHE/gomod}" \
  GOFLAGS="${GOFLAGS:--modcacherw}" \
    go install -trimpath -ldflags "-w -s \
      -X helm.sh/helm/v3/internal/version.version=$VERSION \
      -X helm.sh/helm/v3/internal/version.gitTreeState=clean \
      -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1 \
      -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$KUBE_MINOR \
      -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 \
      -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$KUBE_MINOR" \
      "helm.sh/helm/v3/cmd/helm@$VERSION" >&2
fi
echo "$BIN_DIR/helm"
