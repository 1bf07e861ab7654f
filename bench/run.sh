#!/usr/bin/env bash
# run.sh [BUILD_DIR] - run every benchmark built in BUILD_DIR/bench and check
# that each one ends with its machine-readable line
#   ratio: <workload> ours=<msg/s> peer=<msg/s> ratio=<ours/peer> target=<t>
# Knobs are passed through the environment (see the top of each bench_*.c,
# e.g. SL_BENCH_MESSAGES, SL_BENCH_REPS, SL_BENCH_BATCH, SL_BENCH_PIN).
set -euo pipefail
B=${1:-build-bench}
[ -d "$B/bench" ] || { echo "run.sh: no benchmarks in $B/bench (build first)" >&2; exit 1; }
found=0
for b in "$B"/bench/bench_*; do
  [ -x "$b" ] && [ -f "$b" ] || continue
  found=1
  echo "== $(basename "$b")"
  out=$("$b")
  printf '%s\n' "$out"
  last=$(printf '%s\n' "$out" | tail -n 1)
  if ! [[ $last =~ ^ratio:\ [a-z0-9_]+\ ours=[0-9]+\ peer=[0-9]+\ ratio=[0-9.]+\ target=[0-9.]+$ ]]; then
    echo "run.sh: $(basename "$b") did not end with a ratio line" >&2
    exit 1
  fi
done
[ "$found" -eq 1 ] || { echo "run.sh: no benchmarks found in $B/bench" >&2; exit 1; }
