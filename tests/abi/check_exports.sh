#!/usr/bin/env bash
# check_exports.sh NM LIBSLUICE.so LIBSLUICE.a - libsluice.so exports exactly
# the library's sl_* symbols: nothing else (internal sli_*, helpers of a
# backend...) and none of them missing (a public function without SL_API).
set -euo pipefail
nm=$1 so=$2 ar=$3
# (__odr_asan.* are AddressSanitizer's markers of exported data, not ours)
exported=$("$nm" -D --defined-only "$so" | awk '{print $NF}' | grep -v '^__odr_asan\.' | sort -u)
bad=$(grep -v '^sl_' <<<"$exported" || true)
if [ -n "$bad" ]; then
  echo "libsluice.so exports symbols outside sl_*:" >&2
  echo "$bad" >&2
  exit 1
fi
# Every global sl_* of the static archive (functions and data) must be exported.
all=$("$nm" -g --defined-only "$ar" 2>/dev/null | awk 'NF==3 && $2 ~ /^[TDRB]$/ {print $3}' | grep '^sl_' | sort -u)
missing=$(comm -23 <(echo "$all") <(echo "$exported"))
if [ -n "$missing" ]; then
  echo "public sl_* symbols not exported (missing SL_API in include/sluice/?):" >&2
  echo "$missing" >&2
  exit 1
fi
n=$(wc -l <<<"$exported")
[ "$n" -gt 50 ] || { echo "only $n symbols exported: is this libsluice?" >&2; exit 1; }
echo "libsluice.so exports $n symbols, all sl_*"
