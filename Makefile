# The two commands: `make run` and `make test` (see README.md).
BUILD_DIR ?= build
BUILD_TYPE ?= RelWithDebInfo
JOBS ?= $(shell nproc)
CMAKE_FLAGS ?=

.PHONY: all deps build run test asan-test bench bench-build bench-quick bench-replicas clean format

all: build

deps:
	@scripts/install-deps.sh

build: deps
	cmake -S . -B $(BUILD_DIR) -G Ninja -DCMAKE_BUILD_TYPE=$(BUILD_TYPE) $(CMAKE_FLAGS)
	cmake --build $(BUILD_DIR) -j $(JOBS)

run: build
	@scripts/run-local.sh $(BUILD_DIR)/bin

test: build
	ctest --test-dir $(BUILD_DIR) --output-on-failure -j $(JOBS)

# The same suite built with AddressSanitizer and UndefinedBehaviorSanitizer.
asan-test:
	$(MAKE) test BUILD_DIR=build-asan BUILD_TYPE=Debug CMAKE_FLAGS=-DVARAN_SANITIZE=address,undefined

# Benchmarks, Release build in build-release/ (not part of `make test`).
# `make bench` installs the peers (pdsh, clush, ansible, openssh-server from
# Debian), runs everything and writes BENCHMARKS.md; `make bench-quick` runs
# the fan-out to 20, output_bench with 256 MiB rounds and a 1 GiB flood, a
# shorter exec_bench and fleet scale at 1,000 peripheries only (a few
# minutes) into build-release/BENCHMARKS-quick.md. Both include section 5,
# several core replicas on a PostgreSQL 15 that bench/run.sh starts;
# `make bench-replicas` runs that section alone (about 10 minutes) into
# build-release/BENCHMARKS-replicas.md.
BENCH_TARGETS = agent_bench core_bench exec_bench output_bench output_gen fleet_sim replica_bench varan-core varan-periphery varanctl

bench-build: deps
	cmake -S . -B build-release -G Ninja -DCMAKE_BUILD_TYPE=Release
	cmake --build build-release -j $(JOBS) --target $(BENCH_TARGETS)

bench: bench-build
	bench/run.sh build-release/bin BENCHMARKS.md

bench-quick: bench-build
	bench/run.sh --quick build-release/bin build-release/BENCHMARKS-quick.md
	@cat build-release/BENCHMARKS-quick.md

bench-replicas: bench-build
	bench/run.sh --section replicas build-release/bin build-release/BENCHMARKS-replicas.md

format:
	find common core periphery client tests -name '*.cc' -o -name '*.h' | xargs clang-format -i

clean:
	rm -rf $(BUILD_DIR) build-asan build-release
