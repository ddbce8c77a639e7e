# fastpool — developer entry points. Everything runs inside .venv (created on first use).
#
#   make bench         the latency benchmark against the embedded server (the main job)
#   make test          build, lint, then the whole suite on both engines (C and pure Python)
#   make lint          ruff, mypy (--strict on the package) and pyright (a user's script)
#   make asan          the suite again with the C engine built under ASan + UBSan
#   make bench-micro   pytest-benchmark microbenchmarks (parser, writer; peers when present)
#   make bench-c       the C parser's own benchmark (ns and callgrind instructions)
#   make at-most-once  the at-most-once proof at full size (STORM_COUNT requests per mode)
#   make soak          a million requests per driver: RSS, fds, threads sampled; footprint
#   make bench-features pipelining, hedging, a slow gateway address, busy-poll (their benchmarks)
#   make fuzz          libFuzzer on the C parser (FUZZ_SECONDS each for two builds)
#   make deps          system packages (apt-get; CI runs it): compilers, OpenSSL, nginx, clang
PYTHON ?= python3
VENV   ?= .venv
VPY    := $(VENV)/bin/python
PYTEST := $(VPY) -m pytest
ASAN_DIR := build/asan

.PHONY: venv build lint test asan bench bench-micro bench-c fuzz deps clean test-c-api-asan \
	at-most-once soak bench-features

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml setup.py
	test -x $(VPY) || $(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install -q --upgrade pip
	$(VPY) -m pip install -q "setuptools>=77" "Cython>=3.0"
	$(VPY) -m pip install -q --no-build-isolation -e '.[test,bench]'
	touch $@

# Rebuild the C engine in place (incremental); fails loudly instead of falling back.
build: venv
	FASTPOOL_REQUIRE_C=1 $(VPY) setup.py -q build_ext --inplace

lint: venv
	$(VPY) -m ruff check fastpool tests bench setup.py
	$(VPY) -m mypy
	$(VPY) -m pyright

# Both engines run in one session (every behaviour test is parametrized over them);
# FASTPOOL_EXPECT_C=1 turns "C engine missing" into a failure instead of a skip.
test: build lint
	@command -v nginx >/dev/null || test -x /usr/sbin/nginx || \
		echo "NOTE: nginx is not installed: its tests will be skipped (run 'make deps')"
	FASTPOOL_EXPECT_C=1 $(PYTEST) tests

# The C engine rebuilt with AddressSanitizer + UBSan in a copy of the package (so the normal
# in-place build stays untouched), then the suite against it with the runtimes preloaded.
# Leak checking is off: CPython keeps memory until exit by design.
asan: venv
	rm -rf $(ASAN_DIR) && mkdir -p $(ASAN_DIR)
	cp -r fastpool csrc setup.py pyproject.toml README.md LICENSE $(ASAN_DIR)/
	find $(ASAN_DIR)/fastpool \( -name '*.so' -o -name '_core.c' -o -name '_server.c' \) -delete
	cd $(ASAN_DIR) && FASTPOOL_REQUIRE_C=1 \
		FASTPOOL_CFLAGS="-O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined" \
		FASTPOOL_LDFLAGS="-fsanitize=address,undefined" \
		$(abspath $(VPY)) setup.py -q build_ext --inplace
	# From inside the copy: python puts the current directory first on sys.path, so run
	# from here the tests would import the uninstrumented fastpool/ (conftest checks).
	cd $(ASAN_DIR) && FASTPOOL_EXPECT_C=1 FASTPOOL_ASAN=1 FASTPOOL_ASAN_DIR=$(abspath $(ASAN_DIR)) \
		ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:strict_string_checks=1 \
		UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
		LD_PRELOAD="$$(gcc -print-file-name=libasan.so) $$(gcc -print-file-name=libubsan.so)" \
		$(abspath $(VPY)) -m pytest $(abspath tests) -p no:cacheprovider -x -q

# The main job: `fastpool bench` against the embedded HTTPS server, every installed peer.
# niquests is installed here rather than by the `bench` extra: its dependency urllib3-future
# replaces urllib3 in place unless built from source with URLLIB3_NO_OVERRIDE (then the two
# live side by side, and the urllib3 and requests rows still measure urllib3). Best effort:
# without it niquests is listed as not installed.
bench: build
	@$(VPY) -c "import niquests" 2>/dev/null || URLLIB3_NO_OVERRIDE=1 $(VPY) -m pip install -q \
		--no-binary urllib3-future niquests || echo "NOTE: niquests not installed"
	$(VPY) -m fastpool bench

bench-micro: build
	$(PYTEST) bench -q --benchmark-columns=min,median,mean,ops --benchmark-sort=name

bench-c:
	bench/c_bench.sh

# tests/test_at_most_once.py without its time bound: STORM_COUNT POSTs (and PUTs) per mode,
# both engines, Pool and AsyncPool on asyncio and uvloop, plain and TLS, under the seeded
# storm of faults; prints the counts per mode (STORM_SEED=n replays a run). About 17 min on
# 2 cores at 20 000.
STORM_COUNT ?= 20000
at-most-once: build
	FASTPOOL_EXPECT_C=1 FASTPOOL_STORM_COUNT=$(STORM_COUNT) FASTPOOL_STORM_SEED=$(STORM_SEED) \
		$(PYTEST) tests/test_at_most_once.py -p no:randomly -p no:cacheprovider -q -s

# SOAK_REQUESTS GETs per driver through one pool (RSS, fds and threads sampled as it runs),
# then the RSS of one pool holding FOOTPRINT_CONNECTIONS idle TLS connections.
SOAK_REQUESTS ?= 1000000
FOOTPRINT_CONNECTIONS ?= 1000
soak: build
	$(VPY) bench/soak.py --requests $(SOAK_REQUESTS) --drivers sync,asyncio,uvloop
	$(VPY) bench/footprint.py --connections $(FOOTPRINT_CONNECTIONS)

# Issue 13's features, each against a server made for it (README: Beyond every peer).
bench-features: build
	$(VPY) bench/pipeline.py -n 2000 --rounds 5
	$(VPY) bench/hedge.py -n 5000
	$(VPY) bench/slow_connection.py -n 2000
	$(VPY) bench/busy_poll.py --rounds 5

# The C parser's cffi tests under ASan+UBSan (part of `make asan` via the suite too).
test-c-api-asan: venv
	ASAN_OPTIONS=detect_leaks=0 LD_PRELOAD="$$(gcc -print-file-name=libasan.so) $$(gcc -print-file-name=libubsan.so)" \
		FASTPOOL_TEST_ASAN=1 $(PYTEST) tests/test_c_api.py -k asan -p no:cacheprovider

FUZZ_SECONDS ?= 300
fuzz:
	fuzz/run.sh $(FUZZ_SECONDS)

# System packages a fresh Debian/Ubuntu machine lacks (root or sudo).
deps:
	$$( [ "$$(id -u)" = 0 ] || echo sudo ) env DEBIAN_FRONTEND=noninteractive apt-get update -q
	$$( [ "$$(id -u)" = 0 ] || echo sudo ) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
		--no-install-recommends build-essential python3-dev python3-venv libssl-dev \
		nginx-light clang libclang-rt-14-dev valgrind

clean:
	rm -rf build dist *.egg-info
	find fastpool \( -name '*.so' -o -name '_core.c' -o -name '_server.c' -o -name '*.html' \) -delete
	rm -rf \
		.pytest_cache fuzz/corpus-run fuzz/fuzz_http_sse fuzz/fuzz_http_scalar
