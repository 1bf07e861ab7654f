#!/usr/bin/env bash
# deb.sh OUTDIR - build the Debian packages (debian/) from this checkout:
# the tracked and new, not-ignored files are copied to OUTDIR/src and
# `dpkg-buildpackage -b -us -uc` runs there, so the .deb/.changes/.buildinfo
# files land in OUTDIR and nothing is generated in the source tree.
# Used by `make deb` (OUTDIR=build/deb) and by the ctest package_deb.
set -euo pipefail
out=${1:?usage: deb.sh OUTDIR}
src=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$out"
out=$(cd "$out" && pwd)
case "$out/" in
  "$src/build"*|"$src/build-"*) ;;
  "$src"/*) echo "deb.sh: OUTDIR must be outside the source tree or in a build dir" >&2; exit 2 ;;
esac
rm -rf "$out/src" "$out"/*.deb "$out"/*.changes "$out"/*.buildinfo
mkdir -p "$out/src"
if git -C "$src" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  (cd "$src" && git ls-files -z --cached --others --exclude-standard |
     while IFS= read -r -d '' f; do [ -e "$f" ] && printf '%s\0' "$f"; done |
     xargs -0 cp --parents -t "$out/src")
else
  tar -C "$src" --exclude='./build' --exclude='./build-*' --exclude='./data' -cf - . |
    tar -C "$out/src" -xf -
fi
jobs=${DEB_JOBS:-2}
(cd "$out/src" &&
   DEB_BUILD_OPTIONS="parallel=$jobs nocheck ${DEB_BUILD_OPTIONS:-}" \
   dpkg-buildpackage -b -us -uc)
ls "$out"/*.deb
