#!/usr/bin/env bash
# deps.sh - install the Debian packages sluice needs to build, test and
# benchmark, and only those missing. Needs root (or sudo) when any is missing.
set -euo pipefail

PKGS=(build-essential cmake ninja-build pkg-config
      libsqlite3-dev sqlite3 uuid-dev libcmocka-dev libzmq3-dev
      libjansson-dev libyaml-dev libjemalloc-dev libmicrohttpd-dev libh2o-evloop-dev zlib1g-dev curl jq
      librabbitmq-dev rabbitmq-server chromium nodejs wrk
      libhiredis-dev redis-server redis-tools
      libmariadb-dev mariadb-server mariadb-client
      libpq-dev postgresql postgresql-client
      libcurl4-openssl-dev libprotobuf-c-dev etcd-server etcd-client
      libjwt-dev libssl-dev openssl
      libgrpc-dev protobuf-c-compiler python3-grpcio python3-grpc-tools python3-protobuf
      clang clang-format libclang-rt-14-dev
      debhelper devscripts dpkg-dev lintian systemd
      libnats-dev nats-server
      librdkafka-dev python3-confluent-kafka
      prometheus)

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
# npm: its own Debian package unless the installed nodejs already ships it.
command -v npm >/dev/null || missing+=(npm)
[ ${#missing[@]} -eq 0 ] && exit 0

echo "deps.sh: installing ${missing[*]}" >&2
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
# No server may be started by its package (policy-rc.d 101): tests start their
# own on private ports (scripts/services.sh).
policy=""
if [ -z "$SUDO" ] && [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
  policy=/usr/sbin/policy-rc.d
fi
trap '[ -z "$policy" ] || rm -f "$policy"' EXIT
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
