#!/usr/bin/env bash
# Build tools/celcheck (kube-apiserver's CEL compiler for webhook matchConditions) into a
# cache outside the clone, rebuilding when its sources change. Prints the binary's path.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
CACHE="${GPU_RIGHTSIZER_CACHE:-$HOME/.cache/gpu-rightsizer}"
SUM="$(cat "$ROOT"/tools/celcheck/{go.mod,go.sum,main.go} | sha256sum | cut -c1-12)"
BIN="$CACHE/bin/celcheck-$SUM"
if [ ! -x "$BIN" ]; then
  command -v go >/dev/null || { echo "build-celcheck: go is not on PATH" >&2; exit 1; }
  mkdir -p "$CACHE/bin"
  cd "$ROOT/tools/celcheck"
  GOCACHE="${GOCACHE:-$CACHE/gocache}" GOMODCACHE="${GOMODCACHE:-$CACHE/gomod}" \
  GOFLAGS="${GOFLAGS:--modcacherw}" go build -o "$BIN.tmp" . >&2
  mv "$BIN.tmp" "$BIN"
fi
echo "$BIN"
