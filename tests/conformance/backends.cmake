# One line per backend URL the conformance suite runs against (see
# CMakeLists.txt here). Use a URL private to the suite: persistent backends
# keep state between runs, and every behaviour uses fresh topic names.
sl_add_conformance(mem "mem://conf")
sl_add_conformance(mem_persistent "mem://conf?persistent=true")
sl_add_conformance(sqlite "sqlite://${CMAKE_BINARY_DIR}/conformance-data/sqlite.db?sync=normal")
sl_add_conformance(sqlite_keep "sqlite://${CMAKE_BINARY_DIR}/conformance-data/sqlite-keep.db?sync=normal&retention=1h")
if(EXISTS ${CMAKE_SOURCE_DIR}/src/backends/redis) # real server from scripts/services.sh
  sl_add_conformance(redis "${SL_SERVICE_URL_redis}?prefix=conf:")
  sl_require_service(redis CONFORMANCE redis)
endif()
if(EXISTS ${CMAKE_SOURCE_DIR}/src/backends/amqp) # real RabbitMQ from scripts/services.sh
  sl_add_conformance(amqp "${SL_SERVICE_URL_rabbitmq}?exchange_prefix=conf.&queue_prefix=conf.")
  sl_require_service(rabbitmq CONFORMANCE amqp)
endif()
if(EXISTS ${CMAKE_SOURCE_DIR}/src/backends/nats) # real nats-server -js from scripts/services.sh
  sl_add_conformance(nats "${SL_SERVICE_URL_nats}?stream_prefix=conf-")
  sl_add_conformance(nats_core "${SL_SERVICE_URL_nats}?jetstream=false&subject_prefix=conf.")
  sl_require_service(nats CONFORMANCE nats)
  sl_require_service(nats CONFORMANCE nats_core)
endif()
if(EXISTS ${CMAKE_SOURCE_DIR}/src/backends/http) # the subscriber is the server: no service
  # A port private to this build (below the services' range and the ephemeral
  # ports); the tests take turns on it (RESOURCE_LOCK).
  math(EXPR SL_HTTP_CONF_PORT "${SL_SERVICES_PORT_BASE} - 10000")
  sl_add_conformance(http "http://127.0.0.1:${SL_HTTP_CONF_PORT}/conf")
  foreach(b ${SL_CONF_BEHAVIOURS})
    set_tests_properties(conformance_http_${b} PROPERTIES RESOURCE_LOCK sl_http_conf_port)
  endforeach()
endif()
if(EXISTS ${CMAKE_SOURCE_DIR}/src/backends/kafka) # librdkafka's mock cluster (tests/kafka/kafka_mock.c)
  # timeout=30s: a subscription waits that long for its group to assign it
  # partitions. concurrent_close joins and leaves one group with several
  # members at once; under the sanitizer pass (-j 3 on two cores) one such
  # join took over 10 s. A join that never completes still fails the test.
  sl_add_conformance(kafka "kafka://{bootstrap}&timeout=30s&session_timeout=3s"
    LAUNCHER $<TARGET_FILE:sluice-kafka-mock> --)
endif()
if(EXISTS ${CMAKE_SOURCE_DIR}/src/backends/postgres) # real PostgreSQL from scripts/services.sh
  # ack=batch, sync=off: a commit per ack or publish waiting for its fsync
  # would make the suite slow (as sqlite runs it with sync=normal); 60s to
  # connect: 50 publishers doing SCRAM at once under a sanitizer are slow;
  # ack=sync is covered by crash_postgres and unit_postgres.
  sl_add_conformance(postgres "${SL_SERVICE_URL_postgres}?connect_timeout=60s&ack=batch&sync=off")
  sl_require_service(postgres CONFORMANCE postgres)
endif()
if(EXISTS ${CMAKE_SOURCE_DIR}/src/backends/mysql) # real MariaDB from scripts/services.sh
  # ack=batch: a commit per ack would make the suite slow (as postgres runs
  # it); its own database (schema=), apart from the notify store's tables;
  # 60s to connect: 50 publishers connecting at once under a sanitizer are
  # slow; ack=sync is covered by crash_mysql and unit_mysql.
  sl_add_conformance(mysql "${SL_SERVICE_URL_mariadb}?connect_timeout=60s&ack=batch&schema=sluice_conf")
  sl_require_service(mariadb CONFORMANCE mysql)
endif()
