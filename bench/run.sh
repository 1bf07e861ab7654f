#!/usr/bin/env bash
# run.sh BUILD_DIR - run every benchmark and print its ratio lines.
set -euo pipefail
B=${1:-build-bench}
for b in "$B"/bench/bench_*; do
  [ -x "$b" ] || continue
  echo "== $(basename "$b")"
  "$b"
done
