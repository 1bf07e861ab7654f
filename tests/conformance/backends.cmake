# One line per backend URL the conformance suite runs against (see
# CMakeLists.txt here). Use a URL private to the suite: persistent backends
# keep state between runs, and every behaviour uses fresh topic names.
sl_add_conformance(mem "mem://conf")
sl_add_conformance(mem_persistent "mem://conf?persistent=true")
sl_add_conformance(sqlite "sqlite://${CMAKE_BINARY_DIR}/conformance-data/sqlite.db?sync=normal")
if(EXISTS ${CMAKE_SOURCE_DIR}/src/backends/redis) # real server from scripts/services.sh
  sl_add_conformance(redis "${SL_SERVICE_URL_redis}?prefix=conf:")
  sl_require_service(redis CONFORMANCE redis)
endif()
if(EXISTS ${CMAKE_SOURCE_DIR}/src/backends/amqp) # real RabbitMQ from scripts/services.sh
  sl_add_conformance(amqp "${SL_SERVICE_URL_rabbitmq}?exchange_prefix=conf.&queue_prefix=conf.")
  sl_require_service(rabbitmq CONFORMANCE amqp)
endif()
if(EXISTS ${CMAKE_SOURCE_DIR}/src/backends/postgres) # real PostgreSQL from scripts/services.sh
  # ack=batch, sync=off: a commit per ack or publish waiting for its fsync
  # would make the suite slow (as sqlite runs it with sync=normal); 60s to
  # connect: 50 publishers doing SCRAM at once under a sanitizer are slow;
  # ack=sync is covered by crash_postgres and unit_postgres.
  sl_add_conformance(postgres "${SL_SERVICE_URL_postgres}?connect_timeout=60s&ack=batch&sync=off")
  sl_require_service(postgres CONFORMANCE postgres)
endif()
