#!/usr/bin/env bash
# check_headers.sh INCLUDE_DIR CC CXX - every public header compiles on its own
# as C11 and as C++11 with -Wall -Wextra -Werror -pedantic.
set -euo pipefail
inc=$1 cc=$2 cxx=${3:-}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0 n=0
for h in "$inc"/sluice/*.h; do
  name=sluice/${h##*/}
  printf '#include <%s>\nint sl_abi_probe_%s;\n' "$name" "$(basename "$h" .h)" >"$tmp/t.c"
  if ! "$cc" -std=c11 -Wall -Wextra -Werror -pedantic -I"$inc" -c "$tmp/t.c" -o "$tmp/t.o" 2>"$tmp/err"; then
    echo "C11: $name does not compile alone:" >&2; cat "$tmp/err" >&2; fail=1
  fi
  if [ -n "$cxx" ]; then
    cp "$tmp/t.c" "$tmp/t.cpp"
    if ! "$cxx" -std=c++11 -Wall -Wextra -Werror -pedantic -I"$inc" -c "$tmp/t.cpp" -o "$tmp/t.o" 2>"$tmp/err"; then
      echo "C++: $name does not compile alone:" >&2; cat "$tmp/err" >&2; fail=1
    fi
  fi
  n=$((n + 1))
done
[ -n "$cxx" ] || { echo "no C++ compiler found" >&2; exit 1; }
[ "$fail" -eq 0 ] || exit 1
echo "$n public headers compile alone as C11 and C++11"
