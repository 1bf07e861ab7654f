#!/usr/bin/env bash
# check.sh SRC OUT CC - the Debian packages as a user gets them:
#   1. build them (scripts/deb.sh OUT: nothing generated in SRC)
#   2. lintian reports no error
#   3. unpack libsluice0, libsluice-dev and sluice into a scratch root
#   4. the library: soname libsluice.so.0, exports only sl_* (as abi_exports)
#   5. the -dev package: every public header, a program built with
#      pkg-config --cflags --libs sluice and one built with CMake's
#      find_package(sluice) link the packaged library and run (shared_link.c)
#   6. the sluice package: the CLI loads the packaged /etc/sluice/config.yaml,
#      whose data lives in /var/lib/sluice; the system user is declared
#      (sysusers.d); systemd-analyze verify accepts the unit with no warning;
#      the binary holds no fault-injection switch (SLUICE_NOTIFY_FAULT_*)
# Exit 77 (skip) under SL_SANITIZED=1: one run per CI is enough.
set -euo pipefail
src=$1 out=$2 cc=$3
if [ "${SL_SANITIZED:-0}" = 1 ]; then
  echo "package_deb: skipped under sanitizers (runs once, in the plain build)"
  exit 77
fi
for t in dpkg-buildpackage lintian dpkg systemd-analyze pkg-config cmake objdump nm strings; do
  command -v "$t" >/dev/null || { echo "FAIL: $t is missing (scripts/deps.sh installs it)" >&2; exit 1; }
done
ma=$(dpkg-architecture -qDEB_HOST_MULTIARCH)
ver=$(dpkg-parsechangelog -l "$src/debian/changelog" -SVersion)
arch=$(dpkg-architecture -qDEB_HOST_ARCH)
fail() { echo "FAIL: $*" >&2; exit 1; }

echo "== build"
bash "$src/scripts/deb.sh" "$out" > "$out.log" 2>&1 || { tail -40 "$out.log" >&2; fail "package build (log: $out.log)"; }
for p in libsluice0 libsluice-dev sluice; do
  [ -f "$out/${p}_${ver}_${arch}.deb" ] || fail "no ${p}_${ver}_${arch}.deb"
done

echo "== lintian"
lintian --fail-on error "$out/sluice_${ver}_${arch}.changes" 2>&1 | grep -v 'root privileges' || true
lintian --fail-on error "$out/sluice_${ver}_${arch}.changes" >/dev/null 2>&1 || fail "lintian reports errors"

echo "== unpack"
root="$out/root"
rm -rf "$root" "$out/cmake-user"
mkdir -p "$root"
for p in libsluice0 libsluice-dev sluice; do dpkg -x "$out/${p}_${ver}_${arch}.deb" "$root"; done
lib="$root/usr/lib/$ma"

echo "== libsluice0"
[ -f "$lib/libsluice.so.0" ] || fail "no libsluice.so.0"
dyn=$(objdump -p "$lib/libsluice.so.0") # (not piped into grep -q: pipefail would see objdump's EPIPE)
grep -q 'SONAME *libsluice\.so\.0$' <<<"$dyn" || fail "soname is not libsluice.so.0"
leak=$(nm -D --defined-only "$lib/libsluice.so.0" | awk '{print $NF}' | grep -v '^sl_' || true)
[ -z "$leak" ] || fail "libsluice.so.0 exports symbols outside sl_*: $leak"

echo "== libsluice-dev"
for h in "$src"/include/sluice/*.h; do
  [ -f "$root/usr/include/sluice/$(basename "$h")" ] || fail "header $(basename "$h") not packaged"
done
[ -L "$lib/libsluice.so" ] || fail "no libsluice.so development symlink"
export PKG_CONFIG_PATH="$lib/pkgconfig"
pc_libdir=$(pkg-config --variable=libdir sluice)
[ "$(cd "$pc_libdir" && pwd -P)" = "$(cd "$lib" && pwd -P)" ] || fail "sluice.pc libdir $pc_libdir is not $lib"
# shellcheck disable=SC2046
"$cc" -std=c11 -Wall -Wextra -Werror $(pkg-config --cflags sluice) "$src/tests/abi/shared_link.c" \
  -o "$out/pc-user" $(pkg-config --libs sluice) -ldl || fail "a pkg-config user does not build"
LD_LIBRARY_PATH="$lib" "$out/pc-user" || fail "the pkg-config user does not run"
mkdir -p "$out/cmake-user"
cat > "$out/cmake-user/CMakeLists.txt" <<CM
cmake_minimum_required(VERSION 3.20)
project(sluice_user C)
find_package(sluice 0.1 CONFIG REQUIRED)
add_executable(cmake_user "$src/tests/abi/shared_link.c")
target_link_libraries(cmake_user PRIVATE sluice::sluice \${CMAKE_DL_LIBS})
CM
cmake -S "$out/cmake-user" -B "$out/cmake-user/build" -DCMAKE_PREFIX_PATH="$root/usr" \
  -DCMAKE_C_COMPILER="$cc" > "$out/cmake-user.log" 2>&1 || { cat "$out/cmake-user.log" >&2; fail "find_package(sluice)"; }
cmake --build "$out/cmake-user/build" >> "$out/cmake-user.log" 2>&1 || { cat "$out/cmake-user.log" >&2; fail "a CMake user does not build"; }
LD_LIBRARY_PATH="$lib" "$out/cmake-user/build/cmake_user" || fail "the CMake user does not run"

echo "== sluice"
[ -x "$root/usr/bin/sluice" ] || fail "no /usr/bin/sluice"
# Fault injection (SLUICE_NOTIFY_FAULT_*) is compiled into test builds only.
bin_strings=$(strings -a "$root/usr/bin/sluice") # (not piped into grep -q: pipefail would see EPIPE)
! grep -q 'SLUICE_NOTIFY_FAULT' <<<"$bin_strings" || fail "the packaged sluice holds fault-injection switches"
grep -q 'SLUICE_WEB_SERVER_ADDR\|SLUICE_%s_%s\|notify serve' <<<"$bin_strings" || fail "strings found nothing in sluice (check broken)"
conf="$root/etc/sluice/config.yaml"
[ -f "$conf" ] || fail "no /etc/sluice/config.yaml"
grep -q 'sqlite:///var/lib/sluice/queue.db' "$conf" || fail "queue not in /var/lib/sluice"
grep -q 'sqlite:///var/lib/sluice/notice.db' "$conf" || fail "store not in /var/lib/sluice"
"$root/usr/bin/sluice" notify config --config "$conf" > "$out/config.out" || fail "sluice does not load the packaged config"
grep -q '/var/lib/sluice/queue.db' "$out/config.out" || fail "effective config lost the queue path"
grep -qx 'u sluice - .* /var/lib/sluice' "$root/usr/lib/sysusers.d/sluice.conf" || fail "no system user sluice"
unit=
for u in "$root"/lib/systemd/system/sluice-notify.service "$root"/usr/lib/systemd/system/sluice-notify.service; do
  [ -f "$u" ] && unit=$u
done
[ -n "$unit" ] || fail "no sluice-notify.service"
grep -qx 'User=sluice' "$unit" || fail "the service does not run as sluice"
grep -qx 'StateDirectory=sluice' "$unit" || fail "no StateDirectory=sluice"
grep -qx 'ExecStart=/usr/bin/sluice notify serve --config /etc/sluice/config.yaml' "$unit" || fail "unexpected ExecStart"
# verify checks that ExecStart exists on this machine: point it at the
# unpacked binary; any message (unknown key, bad value) is a failure.
sed "s|^ExecStart=/usr/bin/sluice|ExecStart=$root/usr/bin/sluice|" "$unit" > "$out/sluice-notify.service"
verr=$(systemd-analyze verify "$out/sluice-notify.service" 2>&1) || { echo "$verr" >&2; fail "systemd-analyze verify"; }
[ -z "$verr" ] || { echo "$verr" >&2; fail "systemd-analyze verify warns"; }
echo "package_deb: ok ($(ls "$out"/*.deb | wc -l) packages)"
