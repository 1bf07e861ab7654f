# sluice - top-level wrapper around CMake + Ninja.
#   make run     install deps, build, start the notification service (embedded SQLite)
#   make test    install deps, build, run every test through ctest
#   make bench   build with -O2 and run the benchmarks
#   make test SANITIZE=address,undefined | SANITIZE=thread
#   make install PREFIX=/usr/local
#   make deb     Debian packages (debian/) in build/deb/ (scripts/deb.sh)
#   make fuzz FUZZ_SECONDS=30   every libFuzzer target (clang, ASan+UBSan) for N s
#   make fuzz FUZZ_RUNS=10000000  offline: each target to N executions, one at a time, nice 19
SHELL := /bin/bash
PREFIX ?= /usr/local
SANITIZE ?=
JOBS ?= $(shell nproc)

ifeq ($(SANITIZE),)
BUILD ?= build
BUILD_TYPE ?= RelWithDebInfo
else
BUILD ?= build-$(subst $(comma),-,$(SANITIZE))
BUILD_TYPE ?= Debug
endif
comma := ,

CMAKE_FLAGS = -G Ninja -DCMAKE_BUILD_TYPE=$(BUILD_TYPE) -DSL_SANITIZE=$(SANITIZE) -DCMAKE_INSTALL_PREFIX=$(PREFIX)

.PHONY: all deps build test run bench install clean format deb fuzz fuzz-build

all: build

deps:
	@bash scripts/deps.sh

$(BUILD)/build.ninja:
	cmake -S . -B $(BUILD) $(CMAKE_FLAGS)

build: deps $(BUILD)/build.ninja
	cmake --build $(BUILD) -j $(JOBS)

# Under TSan, reports from inside the uninstrumented gRPC/abseil libraries
# are suppressed (tests/tsan.supp says why).
TSAN_SUPP = $(if $(findstring thread,$(SANITIZE)),TSAN_OPTIONS="$${TSAN_OPTIONS:+$$TSAN_OPTIONS:}suppressions=$(CURDIR)/tests/tsan.supp")

test: build
	cd $(BUILD) && $(TSAN_SUPP) ctest --output-on-failure -j $(JOBS) $(CTEST_ARGS)

run: build
	./$(BUILD)/sluice notify serve --config config/config.yaml

bench: deps
	cmake -S . -B build-bench -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_C_FLAGS_RELEASE="-O2 -DNDEBUG"
	cmake --build build-bench -j $(JOBS)
	bash bench/run.sh build-bench

install: build
	cmake --install $(BUILD) --prefix $(PREFIX)

FUZZ_SECONDS ?= 30
FUZZ_RUNS ?=
fuzz-build: deps
	cmake -S . -B build-fuzz -G Ninja -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=Debug \
	  -DSL_SANITIZE=address,undefined -DSL_FUZZ=ON -DSL_WERROR=OFF
	cmake --build build-fuzz -j $(JOBS) --target fuzz_targets

fuzz: fuzz-build
	bash tests/fuzz/run.sh build-fuzz $(if $(FUZZ_RUNS),$(if $(filter command,$(origin FUZZ_SECONDS)),$(FUZZ_SECONDS),0) $(FUZZ_RUNS),$(FUZZ_SECONDS))

deb: deps
	bash scripts/deb.sh build/deb

format:
	$$(command -v clang-format-14 || echo clang-format) -i $$(git ls-files '*.c' '*.h')

clean:
	rm -rf build build-* 
