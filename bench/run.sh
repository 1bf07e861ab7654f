#!/usr/bin/env bash
# run.sh [BUILD_DIR] - run every benchmark built in BUILD_DIR/bench and check
# that each one ends with its machine-readable line
#   ratio: <workload> ours=<msg/s> peer=<msg/s> ratio=<ours/peer> target=<t>
# bench/bench_notify.sh (the HTTP service against a bare libmicrohttpd, with
# wrk) runs last; bench_http_peer and bench_notify_probe are its helpers.
# Knobs are passed through the environment (see the top of each bench_*.c,
# e.g. SL_BENCH_MESSAGES, SL_BENCH_REPS, SL_BENCH_BATCH, SL_BENCH_PIN).
set -euo pipefail
B=${1:-build-bench}
[ -d "$B/bench" ] || { echo "run.sh: no benchmarks in $B/bench (build first)" >&2; exit 1; }
found=0 failed=0 skipped=0
HERE=$(cd "$(dirname "$0")" && pwd)
for b in "$B"/bench/bench_* "$HERE/bench_notify.sh"; do
  [ -x "$b" ] && [ -f "$b" ] || continue
  case ${b##*/} in bench_http_peer|bench_notify_probe) continue ;; esac # helpers of bench_notify.sh
  found=1
  echo "== $(basename "$b")"
  rc=0
  if [ "$b" = "$HERE/bench_notify.sh" ]; then out=$(bash "$b" "$B") || rc=$?; else out=$("$b") || rc=$?; fi
  printf '%s\n' "$out"
  last=$(printf '%s\n' "$out" | tail -n 1)
  if [ "$rc" -eq 0 ] && [[ $last =~ ^bench_[a-z0-9_]+:\ skipped:\  ]]; then
    skipped=$((skipped + 1)) # e.g. no broker could be started here; it says why
  elif [ "$rc" -ne 0 ] || ! [[ $last =~ ^ratio:\ [a-z0-9_]+\ ours=[0-9]+\ peer=[0-9]+\ ratio=[0-9.]+\ target=[0-9.]+$ ]]; then
    echo "run.sh: $(basename "$b") failed (exit $rc) or did not end with a ratio line" >&2
    failed=$((failed + 1))
  fi
done
[ "$found" -eq 1 ] || { echo "run.sh: no benchmarks found in $B/bench" >&2; exit 1; }
echo "benchmarks: $failed failed, $skipped skipped"
[ "$failed" -eq 0 ] || exit 1
