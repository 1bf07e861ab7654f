#!/usr/bin/env bash
# run.sh BUILD_DIR SECONDS - run every libFuzzer target (BUILD_DIR from
# `make fuzz`, SL_FUZZ=ON) for SECONDS each, starting from its committed
# corpus (tests/fuzz/corpus/<name>, read only: new inputs go to a scratch
# corpus under BUILD_DIR) with its dictionary when there is one. A crash
# stops the run with the reproducer in BUILD_DIR/fuzz-artifacts/: fix the
# bug, then commit the reproducer to the corpus (it replays in make test).
set -euo pipefail
build=${1:?usage: run.sh BUILD_DIR SECONDS}
secs=${2:-30}
here=$(cd "$(dirname "$0")" && pwd)
art="$build/fuzz-artifacts"
mkdir -p "$art"
jobs=${SL_FUZZ_JOBS:-$(nproc)}
fuzz_one() { # fuzz_one BIN: run one target; its own log; exit status = target's
  local bin=$1 name short work dict=()
  name=$(basename "$bin"); short=${name#fuzz_}
  work="$build/fuzz-corpus/$short"
  mkdir -p "$work"
  [ -f "$here/$short.dict" ] && dict=(-dict="$here/$short.dict")
  ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1} \
  UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1} \
    "$bin" -max_total_time="$secs" -max_len=8192 -timeout=10 -rss_limit_mb=2048 \
      -print_final_stats=1 -artifact_prefix="$art/$short-" "${dict[@]}" \
      "$work" "$here/corpus/$short" > "$build/fuzz-$short.log" 2>&1
}
# Targets run $jobs at a time (SL_FUZZ_JOBS, default: one per core).
bins=()
for bin in "$build"/tests/fuzz/fuzz_*; do
  [ -x "$bin" ] || continue
  case "$bin" in *_replay) continue ;; esac
  while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do wait -n || true; done
  echo "== $(basename "$bin"): ${secs}s"
  short=$(basename "$bin"); short=${short#fuzz_}
  rm -f "$build/fuzz-$short.rc"
  (rc=0; fuzz_one "$bin" || rc=$?; echo "$rc" > "$build/fuzz-$short.rc") &
  bins+=("$short")
done
wait
status=0
for short in "${bins[@]}"; do
  if [ "$(cat "$build/fuzz-$short.rc" 2>/dev/null)" != 0 ]; then
    echo "FAIL fuzz_$short: see $build/fuzz-$short.log and $art/" >&2
    tail -40 "$build/fuzz-$short.log" >&2
    status=1
  fi
  echo "fuzz_$short: $(grep -E '^stat::number_of_executed_units' "$build/fuzz-$short.log" || echo 'no stats')"
done
exit $status
