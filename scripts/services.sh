#!/usr/bin/env bash
# services.sh start|stop|restart|status|clean NAME... - real servers on loopback
# for tests and benchmarks: redis, rabbitmq, mariadb, etcd, postgres, nats.
#
# Each server runs from its Debian package (installed with apt-get when
# missing, and only what is missing), on 127.0.0.1, on a non-default port, with
# all its state under ${SL_SERVICES_DIR:-/tmp/sluice-services}/NAME, so it never
# clashes with a system instance:
#   redis     redis://127.0.0.1:16379/0              (SL_REDIS_PORT)
#             append-only file, fsync every second (SL_REDIS_APPENDFSYNC=always
#             for fsync per write), final fsync on stop
#   rabbitmq  amqp://guest:guest@127.0.0.1:15682/    (SL_RABBITMQ_PORT)
#             node sluice-test@localhost, distribution port 25682
#             (SL_RABBITMQ_DIST_PORT), a private epmd on 14369 (SL_EPMD_PORT)
#             started by this script, a private Erlang cookie (HOME=its dir)
#   mariadb   mysql://sluice:sluice@127.0.0.1:13306/sluice  (SL_MARIADB_PORT)
#             data initialised by mariadb-install-db; user and database
#             "sluice" created on every start (idempotent); a commit is
#             written to the OS at once and fsynced each second
#             (innodb_flush_log_at_trx_commit=2: survives a killed server,
#             not a power cut; SL_MARIADB_FLUSH=1 for an fsync per commit)
#   etcd      etcd://127.0.0.1:12379                  (SL_ETCD_PORT, peer SL_ETCD_PEER_PORT)
#             one-member cluster, v3 API (its JSON gateway answers on the
#             client port), data under the services dir
#   postgres  postgres://sluice:sluice@127.0.0.1:15432/sluice (SL_POSTGRES_PORT)
#             PostgreSQL 15 run as the "postgres" user (data dir owned by it),
#             unix socket in the data dir, local socket trusted for the
#             superuser, TCP with scram-sha-256; role and database "sluice"
#             created on every start (idempotent); stop is a fast shutdown
#   nats      nats://127.0.0.1:14222                  (SL_NATS_PORT)
#             nats-server with JetStream (-js), file store under the services
#             dir, max_payload 8MB, no monitoring port
#
# start   is idempotent: a server already running (its recorded PID alive and
#         still that program) is left alone; a stale PID file is removed. It
#         waits (bounded: SL_SERVICES_WAIT seconds, default 60) until the server
#         accepts connections, then prints its URL on stdout. On failure it
#         prints the end of the server's log and exits non-zero.
# stop    ends exactly the processes this script started (recorded PIDs; TERM,
#         then KILL after a grace period), never anything found by name. Data
#         is kept: restart = stop + start on the same data.
# status  prints "NAME running URL" or "NAME stopped"; exit 1 if any stopped.
# clean   stop, then delete the server's data directory.
#
# Servers are detached (setsid, stdio to log files), so the script can be
# called from ctest fixtures (tests/services.cmake) and returns at once.
set -euo pipefail

BASE=${SL_SERVICES_DIR:-/tmp/sluice-services}
WAIT=${SL_SERVICES_WAIT:-60}
REDIS_PORT=${SL_REDIS_PORT:-16379}
RABBIT_PORT=${SL_RABBITMQ_PORT:-15682}
RABBIT_DIST_PORT=${SL_RABBITMQ_DIST_PORT:-25682}
EPMD_PORT=${SL_EPMD_PORT:-14369}
MARIADB_PORT=${SL_MARIADB_PORT:-13306}
ETCD_PORT=${SL_ETCD_PORT:-12379}
ETCD_PEER_PORT=${SL_ETCD_PEER_PORT:-12380}
POSTGRES_PORT=${SL_POSTGRES_PORT:-15432}
NATS_PORT=${SL_NATS_PORT:-14222}

die() { echo "services.sh: $*" >&2; exit 1; }
say() { echo "services.sh: $*" >&2; }

# ---- helpers ----

need_pkgs() { # install the Debian packages among "$@" that are missing
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  say "installing ${missing[*]}"
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  export DEBIAN_FRONTEND=noninteractive
  # No service may be started by the package itself (policy-rc.d 101).
  local policy=""
  if [ -z "$sudo" ] && [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
    policy=/usr/sbin/policy-rc.d
  fi
  local ok=0
  $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null 2>&1 ||
    { $sudo apt-get update -qq && $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; } ||
    ok=1
  [ -z "$policy" ] || rm -f "$policy"
  [ $ok -eq 0 ] || die "cannot install ${missing[*]}"
}

# cmdline PID: the process's command line, arguments joined by spaces.
cmdline() { tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null; }

# alive PIDFILE PATTERN: the recorded PID runs a program whose command line
# matches PATTERN (so a recycled PID is never mistaken for ours).
alive() {
  local pid
  [ -s "$1" ] || return 1
  pid=$(cat "$1")
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  # While a process execs (the RabbitMQ wrapper becomes the VM through sh,
  # erl and erlexec) its cmdline reads empty for a moment: look again before
  # calling it gone; on a loaded machine that moment can last a while, so
  # only a zombie (whose cmdline stays empty) or 5 s of it end the wait.
  local cmd i state
  for ((i = 0; i < 100; i++)); do
    cmd=$(cmdline "$pid")
    [ -n "$cmd" ] && break
    state=$(sed 's/.*) //' "/proc/$pid/stat" 2>/dev/null) || return 1
    [ "${state%% *}" = Z ] && return 1
    sleep 0.05
  done
  grep -q -- "$2" <<<"$cmd"
}

# kill_pidfile PIDFILE PATTERN GRACE: TERM the recorded process, KILL it after
# GRACE seconds, wait until it is gone, remove the PID file.
kill_pidfile() {
  local f=$1 pat=$2 grace=$3 pid i
  if alive "$f" "$pat"; then
    pid=$(cat "$f")
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < grace * 10; i++)); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
      say "pid $pid did not stop in ${grace}s: KILL"
      kill -KILL "$pid" 2>/dev/null || true
      for ((i = 0; i < 50; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    fi
  fi
  rm -f "$f"
}

# spawn PIDFILE LOG CMD...: run CMD detached, record its PID.
spawn() {
  local pidf=$1 log=$2
  shift 2
  # Close every inherited descriptor above 2 (our lock, ctest's or a caller's
  # pipes) so nobody waits on the server's copy of them.
  setsid bash -c 'for f in /proc/self/fd/*; do n=${f##*/}; [ "$n" -gt 2 ] && eval "exec $n>&-"; done
    exec "$@"' sl-spawn "$@" </dev/null >>"$log" 2>&1 &
  local pid=$! self c i
  echo "$pid" >"$pidf"
  # Until the forked child execs, its command line is this script's, which
  # alive() would not take for the server (a loaded machine can leave the
  # child unscheduled that long, and "exited while starting" followed):
  # wait for the exec, bounded.
  self=$(cmdline $$)
  for ((i = 0; i < 100; i++)); do
    c=$(cmdline "$pid") || break
    [ "$c" != "$self" ] && break
    sleep 0.05
  done
}

# wait_until PIDFILE PATTERN LOG WHAT CHECK...: poll CHECK until it succeeds,
# failing early when the process died, at the latest after $WAIT seconds.
wait_until() {
  local pidf=$1 pat=$2 log=$3 what=$4 i
  shift 4
  for ((i = 0; i < WAIT * 10; i++)); do
    "$@" >/dev/null 2>&1 && return 0
    if ! alive "$pidf" "$pat"; then
      say "$what exited while starting; end of $log:"
      tail -n 30 "$log" >&2 || true
      rm -f "$pidf"
      return 1
    fi
    sleep 0.1
  done
  say "$what did not accept connections within ${WAIT}s; end of $log:"
  tail -n 30 "$log" >&2 || true
  return 1
}

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# ---- redis ----

redis_url() { echo "redis://127.0.0.1:$REDIS_PORT/0"; }
redis_ping() { [ "$(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null)" = PONG ]; }

redis_start() {
  local d=$BASE/redis
  mkdir -p "$d/data"
  if alive "$d/pid" redis-server; then redis_url; return 0; fi
  rm -f "$d/pid"
  need_pkgs redis-server redis-tools
  port_free "$REDIS_PORT" || die "port $REDIS_PORT is taken by something this script did not start"
  spawn "$d/pid" "$d/redis.log" redis-server --bind 127.0.0.1 --port "$REDIS_PORT" \
    --dir "$d/data" --daemonize no --protected-mode no --save "" \
    --appendonly yes --appendfsync "${SL_REDIS_APPENDFSYNC:-everysec}" --logfile "" --databases 16
  wait_until "$d/pid" redis-server "$d/redis.log" redis redis_ping || return 1
  redis_url
}
redis_stop() { kill_pidfile "$BASE/redis/pid" redis-server 20; }
redis_status() { alive "$BASE/redis/pid" redis-server; }

# ---- rabbitmq ----

rabbit_url() { echo "amqp://guest:guest@127.0.0.1:$RABBIT_PORT/"; }
# An AMQP 0-9-1 server answers the protocol header with a frame (type 1).
rabbit_ping() {
  exec 3<>"/dev/tcp/127.0.0.1/$RABBIT_PORT" || return 1
  printf 'AMQP\x00\x00\x09\x01' >&3
  local b
  IFS= read -r -t 3 -N 1 b <&3 || { exec 3<&-; return 1; }
  exec 3<&-
  [ "$b" = $'\x01' ]
}

rabbit_env() {
  local d=$BASE/rabbitmq
  # RUNNING_UNDER_SYSTEMD makes the start script exec the VM (with -noinput)
  # instead of running it behind a signal-forwarding shell that has been seen
  # to exit on its own: the PID we record is then the broker's own.
  export RUNNING_UNDER_SYSTEMD=1
  export HOME=$d/home ERL_EPMD_PORT=$EPMD_PORT
  export RABBITMQ_NODENAME=sluice-test@localhost RABBITMQ_NODE_IP_ADDRESS=127.0.0.1
  export RABBITMQ_NODE_PORT=$RABBIT_PORT RABBITMQ_DIST_PORT=$RABBIT_DIST_PORT
  export RABBITMQ_MNESIA_BASE=$d/mnesia RABBITMQ_LOG_BASE=$d/log
  export RABBITMQ_ENABLED_PLUGINS_FILE=$d/enabled_plugins RABBITMQ_PID_FILE=$d/beam.pid
  export RABBITMQ_CONFIG_FILE=$d/rabbitmq RABBITMQ_ADVANCED_CONFIG_FILE=$d/advanced.config
  export RABBITMQ_CONF_ENV_FILE=$d/rabbitmq-env.conf RABBITMQ_LOGS=$d/log/rabbit.log
}

rabbit_start() {
  local d=$BASE/rabbitmq
  mkdir -p "$d/home" "$d/mnesia" "$d/log"
  if alive "$d/pid" rabbit && alive "$d/epmd.pid" epmd; then rabbit_url; return 0; fi
  rabbit_stop
  need_pkgs rabbitmq-server
  port_free "$RABBIT_PORT" || die "port $RABBIT_PORT is taken by something this script did not start"
  port_free "$EPMD_PORT" || die "port $EPMD_PORT (epmd) is taken by something this script did not start"
  [ -s "$d/home/.erlang.cookie" ] || { head -c 24 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' >"$d/home/.erlang.cookie"; }
  chmod 400 "$d/home/.erlang.cookie"
  [ -e "$d/enabled_plugins" ] || echo '[].' >"$d/enabled_plugins"
  : >"$d/rabbitmq-env.conf"
  printf 'loopback_users = none\nlisteners.tcp.default = 127.0.0.1:%s\n' "$RABBIT_PORT" >"$d/rabbitmq.conf"
  echo '[].' >"$d/advanced.config"
  rabbit_env
  spawn "$d/epmd.pid" "$d/epmd.log" epmd -port "$EPMD_PORT" -address 127.0.0.1
  # Erlang starts an epmd of its own (one we would not track) when ours is not
  # listening yet: wait for ours first.
  local i
  for i in $(seq 100); do port_free "$EPMD_PORT" || break; sleep 0.1; done
  port_free "$EPMD_PORT" && { rabbit_stop; die "epmd did not listen on $EPMD_PORT (see $d/epmd.log)"; }
  # The Debian wrapper would switch to the rabbitmq user; run the real script.
  local srv=/usr/lib/rabbitmq/bin/rabbitmq-server
  [ -x "$srv" ] || srv=$(command -v rabbitmq-server)
  spawn "$d/pid" "$d/rabbitmq.log" "$srv"
  # The wrapper script starts the VM (beam.smp), which writes its own PID to
  # beam.pid. Under load the wrapper has been seen to exit while the VM comes
  # up all the same: wait for the broker, not for the wrapper, and give up
  # only when neither runs.
  local up=1
  for ((i = 0; i < WAIT * 10; i++)); do
    if rabbit_ping >/dev/null 2>&1; then up=0; break; fi
    alive "$d/pid" rabbit || alive "$d/beam.pid" beam || { sleep 0.5; alive "$d/beam.pid" beam || break; }
    sleep 0.1
  done
  if [ $up -ne 0 ]; then
    say "rabbitmq did not start; end of $d/rabbitmq.log:"
    tail -n 30 "$d/rabbitmq.log" >&2 || true
    rabbit_stop
    return 1
  fi
  if alive "$d/beam.pid" beam; then
    cp "$d/beam.pid" "$d/pid"
  fi
  rabbit_url
}
rabbit_stop() {
  local d=$BASE/rabbitmq
  kill_pidfile "$d/pid" rabbit 60
  kill_pidfile "$d/beam.pid" beam 60
  kill_pidfile "$d/epmd.pid" epmd 10
}
rabbit_status() { alive "$BASE/rabbitmq/pid" rabbit && rabbit_ping; }

# ---- mariadb ----

mariadb_url() { echo "mysql://sluice:sluice@127.0.0.1:$MARIADB_PORT/sluice"; }
mariadb_sql() { mariadb --no-defaults -uroot -S "$BASE/mariadb/mysqld.sock" "$@"; }
mariadb_ping() { mariadb_sql -e 'SELECT 1'; }

mariadb_start() {
  local d=$BASE/mariadb
  mkdir -p "$d"
  if alive "$d/pid" mariadbd; then mariadb_url; return 0; fi
  rm -f "$d/pid"
  need_pkgs mariadb-server mariadb-client
  port_free "$MARIADB_PORT" || die "port $MARIADB_PORT is taken by something this script did not start"
  if [ ! -d "$d/data/mysql" ]; then
    rm -rf "$d/data"
    mariadb-install-db --no-defaults --datadir="$d/data" --user=root \
      --auth-root-authentication-method=socket --skip-test-db >"$d/install.log" 2>&1 ||
      { tail -n 30 "$d/install.log" >&2; die "mariadb-install-db failed"; }
  fi
  spawn "$d/pid" "$d/mariadb.log" mariadbd --no-defaults --datadir="$d/data" \
    --socket="$d/mysqld.sock" --port="$MARIADB_PORT" --bind-address=127.0.0.1 --user=root \
    --pid-file="$d/mariadbd.pid" --log-error="$d/mariadb.log" --skip-name-resolve \
    --innodb-flush-log-at-trx-commit="${SL_MARIADB_FLUSH:-2}"
  wait_until "$d/pid" mariadbd "$d/mariadb.log" mariadb mariadb_ping || return 1
  mariadb_sql -e "CREATE DATABASE IF NOT EXISTS sluice;
    CREATE USER IF NOT EXISTS 'sluice'@'127.0.0.1' IDENTIFIED BY 'sluice';
    CREATE USER IF NOT EXISTS 'sluice'@'localhost' IDENTIFIED BY 'sluice';
    GRANT ALL PRIVILEGES ON *.* TO 'sluice'@'127.0.0.1';
    GRANT ALL PRIVILEGES ON *.* TO 'sluice'@'localhost';
    FLUSH PRIVILEGES;" || die "mariadb: cannot create the test user and database"
  mariadb_url
}
mariadb_stop() { kill_pidfile "$BASE/mariadb/pid" mariadbd 60; }
mariadb_status() { alive "$BASE/mariadb/pid" mariadbd && mariadb_ping >/dev/null 2>&1; }

# ---- etcd ----

etcd_url() { echo "etcd://127.0.0.1:$ETCD_PORT"; }
etcd_ping() { curl -sf -m 2 "http://127.0.0.1:$ETCD_PORT/health" | grep -q '"health":"true"'; }

etcd_start() {
  local d=$BASE/etcd
  mkdir -p "$d"
  if alive "$d/pid" etcd; then etcd_url; return 0; fi
  rm -f "$d/pid"
  need_pkgs etcd-server curl
  port_free "$ETCD_PORT" || die "port $ETCD_PORT is taken by something this script did not start"
  port_free "$ETCD_PEER_PORT" || die "port $ETCD_PEER_PORT is taken by something this script did not start"
  local etcd=/usr/bin/etcd
  [ -x "$etcd" ] || etcd=$(command -v etcd)
  spawn "$d/pid" "$d/etcd.log" env ETCD_UNSUPPORTED_ARCH="$(uname -m | sed 's/x86_64/amd64/')" \
    "$etcd" --name sluice-test --data-dir "$d/data" \
    --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster "sluice-test=http://127.0.0.1:$ETCD_PEER_PORT" --initial-cluster-state new \
    --enable-v2=false --log-level warn --logger zap
  wait_until "$d/pid" etcd "$d/etcd.log" etcd etcd_ping || return 1
  etcd_url
}
etcd_stop() { kill_pidfile "$BASE/etcd/pid" etcd 20; }
etcd_status() { alive "$BASE/etcd/pid" etcd && etcd_ping; }

# ---- postgres ----

PG_BIN=/usr/lib/postgresql/15/bin
postgres_url() { echo "postgres://sluice:sluice@127.0.0.1:$POSTGRES_PORT/sluice"; }
# The superuser over the unix socket in the data dir (trusted there only).
postgres_sql() { psql -X -q -v ON_ERROR_STOP=1 -h "$BASE/postgres/data" -p "$POSTGRES_PORT" -U postgres -d postgres "$@"; }
postgres_ping() { postgres_sql -c 'SELECT 1'; }
# Run a command as the postgres user (the server refuses to run as root);
# setpriv execs in place, so the recorded PID is the postmaster's.
PG_AS=(setpriv --reuid=postgres --regid=postgres --init-groups --)

postgres_start() {
  local d=$BASE/postgres
  mkdir -p "$d"
  if alive "$d/pid" "postgres -D"; then postgres_url; return 0; fi
  rm -f "$d/pid"
  need_pkgs postgresql-15 postgresql-client-15
  port_free "$POSTGRES_PORT" || die "port $POSTGRES_PORT is taken by something this script did not start"
  local pre=()
  [ "$(id -u)" -ne 0 ] || pre=("${PG_AS[@]}")
  if [ ! -s "$d/data/PG_VERSION" ]; then
    rm -rf "$d/data"
    mkdir -p "$d/data"
    [ ${#pre[@]} -eq 0 ] || chown postgres:postgres "$d/data"
    chmod 700 "$d/data"
    "${pre[@]}" "$PG_BIN/initdb" -D "$d/data" -U postgres --auth-local=trust --auth-host=scram-sha-256 \
      -E UTF8 --locale=C.UTF-8 >"$d/install.log" 2>&1 ||
      { tail -n 30 "$d/install.log" >&2; die "postgres initdb failed"; }
  fi
  touch "$d/postgres.log"
  [ ${#pre[@]} -eq 0 ] || chown postgres:postgres "$d/postgres.log"
  spawn "$d/pid" "$d/postgres.log" "${pre[@]}" "$PG_BIN/postgres" -D "$d/data" -p "$POSTGRES_PORT" \
    -c listen_addresses=127.0.0.1 -c unix_socket_directories="$d/data" -c max_connections=200 \
    -c fsync=on -c synchronous_commit=on
  wait_until "$d/pid" "postgres -D" "$d/postgres.log" postgres postgres_ping || return 1
  postgres_sql <<'SQL' || die "postgres: cannot create the test role and database"
DO $$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'sluice') THEN
    CREATE ROLE sluice LOGIN PASSWORD 'sluice';
  END IF;
END $$;
ALTER ROLE sluice LOGIN PASSWORD 'sluice';
SELECT 'CREATE DATABASE sluice OWNER sluice'
  WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'sluice') \gexec
SQL
  postgres_url
}
# INT is the fast shutdown (TERM would wait for every client to leave).
postgres_stop() {
  local f=$BASE/postgres/pid
  if alive "$f" "postgres -D"; then kill -INT "$(cat "$f")" 2>/dev/null || true; fi
  kill_pidfile "$f" "postgres -D" 60
}
postgres_status() { alive "$BASE/postgres/pid" "postgres -D" && postgres_ping >/dev/null 2>&1; }

# ---- nats ----

nats_url() { echo "nats://127.0.0.1:$NATS_PORT"; }
# A NATS server greets every client with an INFO line; with JetStream up it
# says "jetstream":true.
nats_ping() {
  exec 3<>"/dev/tcp/127.0.0.1/$NATS_PORT" || return 1
  local line=""
  IFS= read -r -t 3 line <&3 || { exec 3<&-; return 1; }
  exec 3<&-
  [[ $line == INFO* && $line == *'"jetstream":true'* ]]
}

nats_start() {
  local d=$BASE/nats
  mkdir -p "$d/js"
  if alive "$d/pid" nats-server; then nats_url; return 0; fi
  rm -f "$d/pid"
  need_pkgs nats-server
  port_free "$NATS_PORT" || die "port $NATS_PORT is taken by something this script did not start"
  printf 'listen: "127.0.0.1:%s"\nmax_payload: 8MB\njetstream {\n  store_dir: "%s"\n}\n' \
    "$NATS_PORT" "$d/js" >"$d/nats.conf"
  local srv=/usr/sbin/nats-server
  [ -x "$srv" ] || srv=$(command -v nats-server)
  spawn "$d/pid" "$d/nats.log" "$srv" -c "$d/nats.conf"
  wait_until "$d/pid" nats-server "$d/nats.log" nats nats_ping || return 1
  nats_url
}
nats_stop() { kill_pidfile "$BASE/nats/pid" nats-server 20; }
nats_status() { alive "$BASE/nats/pid" nats-server && nats_ping; }

# ---- main ----

usage() { echo "usage: services.sh start|stop|restart|status|clean NAME... (redis rabbitmq mariadb etcd postgres nats)" >&2; exit 2; }

fn_of() {
  case $1 in
    redis) echo redis ;;
    rabbitmq | rabbit | amqp) echo rabbit ;;
    mariadb | mysql) echo mariadb ;;
    etcd) echo etcd ;;
    postgres | postgresql | pg) echo postgres ;;
    nats) echo nats ;;
    *) die "unknown service '$1' (known: redis rabbitmq mariadb etcd postgres nats)" ;;
  esac
}

[ $# -ge 2 ] || usage
cmd=$1
shift
mkdir -p "$BASE"
rc=0
for name in "$@"; do
  f=$(fn_of "$name")
  # One lock per service: concurrent fixtures or scripts never race.
  exec 9>"$BASE/$f.lock"
  flock -w 300 9 || die "$name: lock busy"
  case $cmd in
    start) "${f}_start" || { say "$name: failed to start"; rc=1; } ;;
    stop) "${f}_stop" ;;
    restart) "${f}_stop"; "${f}_start" || { say "$name: failed to restart"; rc=1; } ;;
    status)
      if "${f}_status"; then echo "$name running $("${f}_url")"; else echo "$name stopped"; rc=1; fi ;;
    clean) "${f}_stop"; rm -rf "${BASE:?}/${f/rabbit/rabbitmq}" ;;
    *) usage ;;
  esac
  exec 9>&-
done
exit $rc
