#!/usr/bin/env bash
# run.sh BUILD_DIR SECONDS [RUNS] - run every libFuzzer target (BUILD_DIR
# from `make fuzz`, SL_FUZZ=ON) for SECONDS each, starting from its
# committed corpus (tests/fuzz/corpus/<name>, read only: new inputs go to a
# scratch corpus under BUILD_DIR) with its dictionary when there is one. A
# crash stops the run with the reproducer in BUILD_DIR/fuzz-artifacts/: fix
# the bug, then commit the reproducer to the corpus (it replays in make test).
#
# The offline campaign (`make fuzz FUZZ_RUNS=10000000`): with RUNS, each
# target runs until RUNS executions (SECONDS, when not 0, still caps it),
# one target at a time unless SL_FUZZ_JOBS says otherwise, under `nice -n
# 19`; SL_FUZZ_TARGETS="url redis_entry" picks targets. The last line per
# target gives executions, exec/s, coverage and wall time.
set -euo pipefail
build=${1:?usage: run.sh BUILD_DIR SECONDS [RUNS]}
secs=${2:-30}
runs=${3:-}
here=$(cd "$(dirname "$0")" && pwd)
art="$build/fuzz-artifacts"
mkdir -p "$art"
limit=(-max_total_time="$secs")
nice=()
timeout=10
if [ -n "$runs" ]; then
  limit=(-runs="$runs")
  [ "$secs" != 0 ] && limit+=(-max_total_time="$secs")
  nice=(nice -n 19)
  timeout=60 # niced on a busy machine, a target can sit 10 s unscheduled on a fast input
  jobs=${SL_FUZZ_JOBS:-1}
else
  jobs=${SL_FUZZ_JOBS:-$(nproc)}
fi
fuzz_one() { # fuzz_one BIN: run one target; its own log; exit status = target's
  local bin=$1 name short work dict=() t0 rc=0
  name=$(basename "$bin"); short=${name#fuzz_}
  work="$build/fuzz-corpus/$short"
  mkdir -p "$work"
  [ -f "$here/$short.dict" ] && dict=(-dict="$here/$short.dict")
  t0=$(date +%s)
  ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1} \
  UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1} \
    "${nice[@]}" "$bin" "${limit[@]}" -max_len=8192 -timeout="$timeout" -rss_limit_mb=2048 \
      -print_final_stats=1 -artifact_prefix="$art/$short-" "${dict[@]}" \
      "$work" "$here/corpus/$short" > "$build/fuzz-$short.log" 2>&1 || rc=$?
  echo "wall_seconds: $(( $(date +%s) - t0 ))" >> "$build/fuzz-$short.log"
  return $rc
}
# Targets run $jobs at a time (SL_FUZZ_JOBS, default: one per core).
bins=()
for bin in "$build"/tests/fuzz/fuzz_*; do
  [ -x "$bin" ] || continue
  case "$bin" in *_replay) continue ;; esac
  short=$(basename "$bin"); short=${short#fuzz_}
  if [ -n "${SL_FUZZ_TARGETS:-}" ] && [[ " $SL_FUZZ_TARGETS " != *" $short "* ]]; then
    continue
  fi
  while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do wait -n || true; done
  what="${secs}s"
  if [ -n "$runs" ]; then
    what="$runs runs"
    [ "$secs" = 0 ] || what="$what, ${secs}s at most"
  fi
  echo "== $(basename "$bin"): $what"
  rm -f "$build/fuzz-$short.rc"
  (rc=0; fuzz_one "$bin" || rc=$?; echo "$rc" > "$build/fuzz-$short.rc") &
  bins+=("$short")
done
wait
status=0
for short in "${bins[@]}"; do
  log="$build/fuzz-$short.log"
  if [ "$(cat "$build/fuzz-$short.rc" 2>/dev/null)" != 0 ]; then
    echo "FAIL fuzz_$short: see $log and $art/" >&2
    tail -40 "$log" >&2
    status=1
  fi
  execs=$(sed -n 's/^stat::number_of_executed_units: //p' "$log")
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log")
  cov=$(grep -oE 'cov: [0-9]+' "$log" | tail -1 || true)
  echo "fuzz_$short: execs=${execs:-none} exec/s=${rate:-none} ${cov:-cov: none} $(grep '^wall_seconds' "$log" || true)"
done
exit $status
