# One line per backend URL the conformance suite runs against (see
# CMakeLists.txt here). Use a URL private to the suite: persistent backends
# keep state between runs, and every behaviour uses fresh topic names.
sl_add_conformance(mem "mem://conf")
sl_add_conformance(mem_persistent "mem://conf?persistent=true")
sl_add_conformance(sqlite "sqlite://${CMAKE_BINARY_DIR}/conformance-data/sqlite.db?sync=normal")
