#!/usr/bin/env bash
# notify_config_check.sh - `sluice notify config` on the config read through
# sl_config (issue 18): every problem of a file at once, each with file:line
# and in line order, env overrides by name (SLUICE_RABBITMQ_CONNECTION_NUM
# into rabbitMq), sections named in any case, a file of any name, an empty
# section keeping its defaults, the original's empty values, and stray
# SLUICE_* variables that name no key left alone. No server is started.
source "$(dirname "$0")/lib/notify.bash"

cfg() { # cfg ARGS...: run the config check; OUT and ST are its output and status
  OUT=$(env -u SLUICE_QUEUE_URL -u SLUICE_STORE_URL "$@" 2>&1); ST=$?
}

# ---- several problems at once, in line order, each naming its place ----
cat >"$WORK/bad.conf" <<'EOF2'
web:
  threads: lots
  nosuch: 1
bogus:
  a: 1
log:
  level:
    nested: 1
consumers:
  max_failures:
EOF2
cfg "$SLUICE" notify config --config "$WORK/bad.conf"
check "a bad file is refused (status $ST)" [ "$ST" = 2 ]
check "the bad integer names file:line: $OUT" matches "$OUT" "bad.conf:2: web.threads: expected an integer in 0..256, got 'lots'"
check "the unknown key names file:line" matches "$OUT" "bad.conf:3: unknown key 'web.nosuch'"
check "the unknown section names file:line" matches "$OUT" "bad.conf:4: unknown section 'bogus'"
check "a nested value is refused" matches "$OUT" "bad.conf:7: log.level: expected a scalar value"
check "an empty integer is refused" matches "$OUT" "bad.conf:10: consumers.max_failures: empty value"
lines=$(grep -o 'bad.conf:[0-9]*' <<<"$OUT" | cut -d: -f2 | tr '\n' ' ')
check "problems come in line order ($lines)" [ "$lines" = "2 3 4 7 10 " ]

# ---- a good file of any name, sections in any case, env overrides ----
cat >"$WORK/notify.conf" <<'EOF2'
WEB:
  threads: 7
RabbitMQ:
  host: mq.example
  password:
redis:
queue:
  url: mem://q
EOF2
cfg SLUICE_RABBITMQ_CONNECTION_NUM=3 SLUICE_WEB_SERVER_ADDR=127.0.0.1:9 SLUICE_LOG_MAX_BYTES=100 \
  SLUICE_NOTIFY_FAULT_UID=1 "$SLUICE" notify config --config "$WORK/notify.conf"
check "a .conf file with odd-case sections loads (status $ST): $OUT" [ "$ST" = 0 ]
check "web.threads from WEB" matches "$OUT" "threads: 7"
check "rabbitMq.host from RabbitMQ" matches "$OUT" 'host: "mq.example"'
check "the env override reaches rabbitMq.connection_num" matches "$OUT" "connection_num: 3"
check "the env override reaches web.server_addr" matches "$OUT" 'server_addr: "127.0.0.1:9"'
check "an empty password is the empty string" matches "$OUT" 'password: ""'
check "an empty redis section keeps its defaults" matches "$OUT" "port: 6379"
check "the queue from the file" matches "$OUT" 'url: "mem://q"'
check "queue.publish_wait_ms defaults to 5000" matches "$OUT" "publish_wait_ms: 5000"
cfg SLUICE_QUEUE_PUBLISH_WAIT_MS=50 "$SLUICE" notify config --config "$WORK/notify.conf"
check "a publish wait under 100 ms is refused: $OUT" matches "$OUT" "env SLUICE_QUEUE_PUBLISH_WAIT_MS: expected an integer in 100..600000, got '50'"
printf 'web:\n  threads: 0\nqueue:\n  url: mem://q\n' >"$WORK/loops.yaml"
cfg "$SLUICE" notify config --config "$WORK/loops.yaml"
check "web.threads 0 is one loop per usable CPU ($(nproc)): $OUT" matches "$OUT" "threads: $(nproc)"$'\n'
cfg taskset -c 0 "$SLUICE" notify config --config "$WORK/loops.yaml"
check "... counted in the process' CPU affinity" matches "$OUT" "threads: 1"$'\n'

# ---- an empty directory or address is refused, not taken as / or nothing ----
cfg SLUICE_LOG_DIR= SLUICE_WEB_SERVER_ADDR= "$SLUICE" notify config --config "$WORK/notify.conf"
check "an empty log.dir and server_addr are refused (status $ST)" [ "$ST" = 2 ]
check "log.dir named" matches "$OUT" "log.dir must not be empty"
check "web.server_addr named" matches "$OUT" "web.server_addr must not be empty"

# ---- an env value is checked and named ----
cfg SLUICE_WEB_MAX_BODY=lots "$SLUICE" notify config --config "$WORK/notify.conf"
check "a bad env value is refused (status $ST)" [ "$ST" = 2 ]
check "the env error names the variable: $OUT" matches "$OUT" "env SLUICE_WEB_MAX_BODY: expected an integer in 1024..67108864, got 'lots'"
cfg SLUICE_CONSUMERS_BATCH_WAIT_MS=5000 "$SLUICE" notify config --config "$WORK/notify.conf"
check "a batch wait past 1 s is refused (status $ST)" [ "$ST" = 2 ]
check "the batch wait error names its range: $OUT" matches "$OUT" "env SLUICE_CONSUMERS_BATCH_WAIT_MS: expected an integer in 0..1000, got '5000'"
cfg SLUICE_CONSUMERS_BATCH_WAIT_MS=0 "$SLUICE" notify config --config "$WORK/notify.conf"
check "a batch wait of 0 is taken: $OUT" matches "$OUT" "batch_wait_ms: 0"

# ---- YAML that does not parse names file:line:col; a missing file is said ----
printf 'web:\n  threads: [1\n' >"$WORK/syntax.yaml"
cfg "$SLUICE" notify config --config "$WORK/syntax.yaml"
check "a syntax error is refused (status $ST)" [ "$ST" = 2 ]
check "the syntax error names file:line:col: $OUT" matches "$OUT" "syntax.yaml:[0-9]+:[0-9]+: "
cfg "$SLUICE" notify config --config "$WORK/missing.yaml"
check "a missing file is refused (status $ST): $OUT" bash -c "[ $ST != 0 ] && grep -q 'missing.yaml:0: cannot open' <<<'$OUT'"
finish
