# services.cmake - ctest fixtures around scripts/services.sh, so tests that
# need a real server (redis, rabbitmq, mariadb, postgres, nats, etcd) get one started before them
# and stopped after the last of them:
#
#   sl_require_service(<service> TEST...)          # named tests
#   sl_require_service(<service> CONFORMANCE <backend>)  # every conformance_<backend>_*
#
# The first call for a service defines the tests services_start_<service>
# (FIXTURES_SETUP service_<service>) and services_stop_<service>
# (FIXTURES_CLEANUP); the given tests get FIXTURES_REQUIRED, plus
# SL_SERVICE_ENV, SL_SERVICES_SH, SL_<SERVICE>_URL (e.g. SL_REDIS_URL) and
# SL_CONF_RESTART_CMD="<services.sh> restart <service>" in their environment, and
# the lock server_<service> (RESOURCE_LOCK): the tests of one server take
# turns, so one that restarts it takes it away from nobody. If the server cannot be
# started, the start test fails and ctest does not run the tests that need it,
# which count as failed: nothing is skipped silently.
#
# Every build directory gets its own servers: data under <build>/services and
# ports from a base derived from the build path (override with
# -DSL_SERVICES_PORT_BASE=N), so two builds on one machine never stop or
# restart each other's servers. SL_SERVICE_ENV is the environment that points
# scripts/services.sh at them; SL_SERVICE_URL_<service> are their URLs.
string(MD5 _sl_h "${CMAKE_BINARY_DIR}")
string(SUBSTRING "${_sl_h}" 0 4 _sl_h)
math(EXPR _sl_base "20000 + (0x${_sl_h} % 1000) * 10")
set(SL_SERVICES_PORT_BASE ${_sl_base} CACHE STRING "first port of this build's test servers")
set(SL_SERVICES_SH ${CMAKE_SOURCE_DIR}/scripts/services.sh)
math(EXPR _p_redis "${SL_SERVICES_PORT_BASE} + 0")
math(EXPR _p_amqp "${SL_SERVICES_PORT_BASE} + 1")
math(EXPR _p_dist "${SL_SERVICES_PORT_BASE} + 2")
math(EXPR _p_epmd "${SL_SERVICES_PORT_BASE} + 3")
math(EXPR _p_maria "${SL_SERVICES_PORT_BASE} + 4")
math(EXPR _p_pg "${SL_SERVICES_PORT_BASE} + 5")
math(EXPR _p_nats "${SL_SERVICES_PORT_BASE} + 6")
math(EXPR _p_etcd "${SL_SERVICES_PORT_BASE} + 7")
math(EXPR _p_etcd_peer "${SL_SERVICES_PORT_BASE} + 8")
set(SL_SERVICE_ENV "SL_SERVICES_DIR=${CMAKE_BINARY_DIR}/services" "SL_REDIS_PORT=${_p_redis}"
  "SL_RABBITMQ_PORT=${_p_amqp}" "SL_RABBITMQ_DIST_PORT=${_p_dist}" "SL_EPMD_PORT=${_p_epmd}"
  "SL_MARIADB_PORT=${_p_maria}" "SL_POSTGRES_PORT=${_p_pg}" "SL_NATS_PORT=${_p_nats}"
  "SL_ETCD_PORT=${_p_etcd}" "SL_ETCD_PEER_PORT=${_p_etcd_peer}")
set(SL_SERVICE_URL_redis "redis://127.0.0.1:${_p_redis}/0")
set(SL_SERVICE_URL_rabbitmq "amqp://guest:guest@127.0.0.1:${_p_amqp}/")
set(SL_SERVICE_URL_mariadb "mysql://sluice:sluice@127.0.0.1:${_p_maria}/sluice")
set(SL_SERVICE_URL_postgres "postgres://sluice:sluice@127.0.0.1:${_p_pg}/sluice")
set(SL_SERVICE_URL_nats "nats://127.0.0.1:${_p_nats}")
set(SL_SERVICE_URL_etcd "etcd://127.0.0.1:${_p_etcd}")

function(sl_require_service service)
  # Tests are directory-scoped: remember globally which fixtures exist.
  get_property(_defined GLOBAL PROPERTY SL_SERVICE_FIXTURES)
  if(NOT service IN_LIST _defined)
    set_property(GLOBAL APPEND PROPERTY SL_SERVICE_FIXTURES ${service})
    add_test(NAME services_start_${service} COMMAND ${SL_SERVICES_SH} start ${service})
    set_tests_properties(services_start_${service} PROPERTIES
      FIXTURES_SETUP service_${service} TIMEOUT 900 LABELS services ENVIRONMENT "${SL_SERVICE_ENV}")
    add_test(NAME services_stop_${service} COMMAND ${SL_SERVICES_SH} stop ${service})
    set_tests_properties(services_stop_${service} PROPERTIES
      FIXTURES_CLEANUP service_${service} TIMEOUT 120 LABELS services ENVIRONMENT "${SL_SERVICE_ENV}")
  endif()
  string(TOUPPER ${service} _up)
  set(tests ${ARGN})
  if(ARGV1 STREQUAL "CONFORMANCE")
    list(TRANSFORM SL_CONF_BEHAVIOURS PREPEND conformance_${ARGV2}_ OUTPUT_VARIABLE tests)
  endif()
  foreach(t ${tests})
    set_property(TEST ${t} APPEND PROPERTY FIXTURES_REQUIRED service_${service})
    set_property(TEST ${t} APPEND PROPERTY ENVIRONMENT ${SL_SERVICE_ENV}
      "SL_SERVICES_SH=${SL_SERVICES_SH}" "SL_CONF_RESTART_CMD=${SL_SERVICES_SH} restart ${service}"
      "SL_${_up}_URL=${SL_SERVICE_URL_${service}}")
    # Every user of the server holds its lock: a test that restarts it
    # (named "restart") never pulls it from under another test, and tests of
    # other servers and of none keep running alongside (RUN_SERIAL would
    # stop the whole run for each of them).
    set_property(TEST ${t} APPEND PROPERTY RESOURCE_LOCK server_${service})
  endforeach()
endfunction()

# Unit tests of server backends (tests/unit/test_<name>.c) need their server.
if(TEST unit_redis)
  sl_require_service(redis unit_redis)
endif()
if(TEST unit_postgres)
  sl_require_service(postgres unit_postgres)
  target_link_libraries(test_postgres PRIVATE PkgConfig::SLDEP_POSTGRES) # libpq-fe.h
endif()
if(TEST unit_mysql)
  sl_require_service(mariadb unit_mysql)
  target_link_libraries(test_mysql PRIVATE PkgConfig::SLDEP_MYSQL) # mysql.h
endif()
