#!/usr/bin/env bash
# cli_smoke.sh - black-box checks of the sluice CLI: demo, bench, pub, sub,
# and that bad arguments exit non-zero with a message naming the problem.
# Run by ctest (tests/e2e/CMakeLists.txt) with SLUICE set to the binary.
set -euo pipefail
: "${SLUICE:?SLUICE must point at the sluice binary}"
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
fails=0

fail() { echo "FAIL: $*" >&2; fails=$((fails + 1)); }

# expect_ok NAME PATTERN CMD... : exit 0 and stdout matches PATTERN (grep -E)
expect_ok() {
  local name=$1 pat=$2; shift 2
  if ! "$@" >"$TMP/out" 2>"$TMP/err" </dev/null; then
    fail "$name: exit $? (stderr: $(head -c 500 "$TMP/err"))"; return
  fi
  grep -Eq -- "$pat" "$TMP/out" || fail "$name: stdout lacks /$pat/: $(head -c 500 "$TMP/out")"
}

# expect_err NAME PATTERN CMD... : exit non-zero and stderr matches PATTERN
expect_err() {
  local name=$1 pat=$2; shift 2
  local rc=0
  "$@" >"$TMP/out" 2>"$TMP/err" </dev/null || rc=$?
  [ "$rc" -ne 0 ] || { fail "$name: exited 0"; return; }
  [ "$rc" -lt 128 ] || { fail "$name: crashed (exit $rc)"; return; }
  grep -Eq -- "$pat" "$TMP/err" || fail "$name: stderr lacks /$pat/: $(head -c 500 "$TMP/err")"
}

# --- demo, help, version
expect_ok demo 'done: audit acked 3, workers acked 3' "$SLUICE" demo
expect_ok help 'bench' "$SLUICE" --help
expect_ok version '^sluice [0-9]' "$SLUICE" version
expect_err unknown_command "unknown command 'nosuch'" "$SLUICE" nosuch

# --- bench: every rate and both percentiles printed, with sane numbers
expect_ok bench_fanout '^end-to-end: +2000 msgs' \
  "$SLUICE" bench mem://smoke --messages 2000 --size 64 --publishers 2 --subscribers 1
for k in publish consume end-to-end; do
  grep -Eq "^$k: +[0-9]+ msgs in +[0-9.]+ s = +[1-9][0-9]* msg/s$" "$TMP/out" ||
    fail "bench: no '$k' rate line: $(cat "$TMP/out")"
done
grep -Eq '^latency: +p50=[0-9.]+ us p99=[0-9.]+ us' "$TMP/out" ||
  fail "bench: no latency line: $(cat "$TMP/out")"
# with 2 subscribers, fan-out delivers every message to each
expect_ok bench_two_subs '^consume: +4000 msgs' \
  "$SLUICE" bench mem://smoke2 --messages 2000 --subscribers 2 --batch 16 --prefetch 8
# in one consumer group they share the 2000 messages
expect_ok bench_group '^consume: +2000 msgs' \
  "$SLUICE" bench mem://smoke3 --messages 2000 --subscribers 3 --group g --size=32
# no progress bar (no terminal): stderr stays empty
[ ! -s "$TMP/err" ] || fail "bench: wrote to stderr without a terminal: $(head -c 200 "$TMP/err")"
expect_ok bench_help '^usage: sluice bench URL' "$SLUICE" bench --help

# --- bench: bad arguments
expect_err bench_no_url 'missing URL' "$SLUICE" bench
expect_err bench_zero_msgs '--messages: 0 is out of range' "$SLUICE" bench mem://x --messages 0
expect_err bench_neg_msgs "--messages: '-5' is not" "$SLUICE" bench mem://x --messages -5
expect_err bench_junk_size "--size: '64k' is not" "$SLUICE" bench mem://x --size 64k
expect_err bench_small_size '--size: 4 is out of range' "$SLUICE" bench mem://x --size 4
expect_err bench_no_value '--publishers needs a value' "$SLUICE" bench mem://x --publishers
expect_err bench_unknown_opt "unknown option '--bogus'" "$SLUICE" bench mem://x --bogus 1
expect_err bench_two_urls "unexpected argument 'mem://y'" "$SLUICE" bench mem://x mem://y
expect_err bench_bad_scheme "unknown scheme 'nosuch'" "$SLUICE" bench nosuch://x --messages 10
expect_err bench_bad_option "nosuchopt" "$SLUICE" bench 'mem://x?nosuchopt=1' --messages 10

# --- pub / sub (mem:// lives in one process: check plumbing and errors)
expect_ok pub_payload '^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-' \
  "$SLUICE" pub mem://p orders --meta k=v hello
printf 'a\nb\nc\n' | "$SLUICE" pub mem://p orders >"$TMP/ids" ||
  fail "pub from stdin exited $?"
[ "$(wc -l <"$TMP/ids")" -eq 3 ] || fail "pub from stdin: want 3 ids, got: $(cat "$TMP/ids")"
"$SLUICE" sub mem://s orders --timeout 50 >"$TMP/out" </dev/null || fail "sub --timeout exited $?"
[ ! -s "$TMP/out" ] || fail "sub on an empty topic printed: $(head -c 200 "$TMP/out")"
expect_err sub_count_not_reached 'got 0 of 2 messages' \
  "$SLUICE" sub mem://s orders --count 2 --timeout 50
expect_err pub_missing_topic 'missing TOPIC' "$SLUICE" pub mem://p
expect_err pub_bad_meta '--meta wants KEY=VALUE' "$SLUICE" pub mem://p t --meta novalue x
expect_err pub_bad_topic 'topic contains a control character' "$SLUICE" pub mem://p $'a\tb' x
expect_err sub_missing_args 'missing URL and TOPIC' "$SLUICE" sub
expect_err sub_bad_count "--count: 'x' is not" "$SLUICE" sub mem://s t --count x
expect_err sub_bad_url 'sl_subscriber_open' "$SLUICE" sub 'mem://a b' t --timeout 10

if [ "$fails" -ne 0 ]; then
  echo "cli_smoke: $fails check(s) failed" >&2
  exit 1
fi
echo "cli_smoke: all checks passed"
