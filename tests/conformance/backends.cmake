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
if(EXISTS ${CMAKE_SOURCE_DIR}/src/backends/kafka) # librdkafka's mock cluster (tests/kafka/kafka_mock.c)
  sl_add_conformance(kafka "kafka://{bootstrap}&timeout=10s&session_timeout=3s"
    LAUNCHER $<TARGET_FILE:sluice-kafka-mock> --)
  # Known gap, shown as "Disabled" by ctest (README, kafka:// section):
  # librdkafka's mock cluster refuses offset commits while a group rebalances
  # (REBALANCE_IN_PROGRESS), so under group churn (members joining and
  # leaving, or dropped for late heartbeats on a loaded machine) a new owner
  # re-delivers messages without knowing they were delivered before.
  set_tests_properties(conformance_kafka_concurrent_close
    conformance_kafka_concurrent_subscribers PROPERTIES DISABLED TRUE)
endif()
