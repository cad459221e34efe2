#!/bin/sh
# Fuzz decode + decide for N minutes (default 5): bench/fuzz.sh N_MINUTES [extra libFuzzer flags]
# Needs atheris (pip install atheris: prebuilt wheels for CPython 3.8-3.11 on Linux x86-64;
# elsewhere it builds with clang). Findings go to bench/fuzz-findings/ (crash-*, timeout-*).
set -eu
cd "$(dirname "$0")/.."
MINUTES="${1:-5}"
[ $# -gt 0 ] && shift
PY="${PYTHON:-.venv/bin/python}"
"$PY" -c "import atheris" 2>/dev/null || "$PY" -m pip install -q -e '.[fuzz]'
mkdir -p bench/fuzz-corpus bench/fuzz-findings
exec "$PY" -m bench.fuzz_decide \
    -max_total_time=$((MINUTES * 60)) \
    -timeout=5 -rss_limit_mb=2048 -max_len=65536 \
    -artifact_prefix=bench/fuzz-findings/ \
    -print_final_stats=1 \
    "$@" bench/fuzz-corpus
