# framework.cmake - the framework parts' suites on their server backends:
# the one store suite (tests/unit/test_store.c) and sync suite
# (tests/unit/test_sync.c) run again with SL_*_BACKENDS naming the backend,
# against the real server of the fixture.
if(TEST unit_store)
  add_test(NAME unit_store_redis COMMAND test_store)
  add_test(NAME unit_store_redis_restart COMMAND test_store)
  set_tests_properties(unit_store_redis PROPERTIES TIMEOUT 120 ENVIRONMENT "SL_STORE_BACKENDS=redis")
  set_tests_properties(unit_store_redis_restart PROPERTIES TIMEOUT 120
    ENVIRONMENT "SL_STORE_BACKENDS=redis;SL_STORE_RESTART=1")
  sl_require_service(redis unit_store_redis unit_store_redis_restart)
  if(EXISTS ${CMAKE_SOURCE_DIR}/src/store/postgres)
    add_test(NAME unit_store_postgres COMMAND test_store)
    add_test(NAME unit_store_postgres_restart COMMAND test_store)
    set_tests_properties(unit_store_postgres PROPERTIES TIMEOUT 120 ENVIRONMENT "SL_STORE_BACKENDS=postgres")
    set_tests_properties(unit_store_postgres_restart PROPERTIES TIMEOUT 120
      ENVIRONMENT "SL_STORE_BACKENDS=postgres;SL_STORE_RESTART=1")
    sl_require_service(postgres unit_store_postgres unit_store_postgres_restart)
  endif()
endif()
if(TEST unit_sync)
  set_tests_properties(unit_sync PROPERTIES TIMEOUT 300)
  add_test(NAME unit_sync_redis COMMAND test_sync)
  add_test(NAME unit_sync_redis_restart COMMAND test_sync)
  set_tests_properties(unit_sync_redis PROPERTIES TIMEOUT 300 ENVIRONMENT "SL_SYNC_BACKENDS=redis")
  set_tests_properties(unit_sync_redis_restart PROPERTIES TIMEOUT 120
    ENVIRONMENT "SL_SYNC_BACKENDS=redis;SL_SYNC_RESTART=1")
  sl_require_service(redis unit_sync_redis unit_sync_redis_restart)
  if(EXISTS ${CMAKE_SOURCE_DIR}/src/sync/etcd)
    add_test(NAME unit_sync_etcd COMMAND test_sync)
    add_test(NAME unit_sync_etcd_restart COMMAND test_sync)
    set_tests_properties(unit_sync_etcd PROPERTIES TIMEOUT 300 ENVIRONMENT "SL_SYNC_BACKENDS=etcd")
    set_tests_properties(unit_sync_etcd_restart PROPERTIES TIMEOUT 120
      ENVIRONMENT "SL_SYNC_BACKENDS=etcd;SL_SYNC_RESTART=1")
    sl_require_service(etcd unit_sync_etcd unit_sync_etcd_restart)
  endif()
endif()
if(TEST unit_config_etcd)
  add_test(NAME unit_config_etcd_restart COMMAND test_config_etcd)
  set_tests_properties(unit_config_etcd_restart PROPERTIES TIMEOUT 120 ENVIRONMENT "SL_CONFIG_RESTART=1")
  sl_require_service(etcd unit_config_etcd unit_config_etcd_restart)
endif()
