# fastpool — developer entry points. Everything runs inside .venv (created on first use).
PYTHON ?= python3
VENV   ?= .venv
VPY    := $(VENV)/bin/python
PYTEST := $(VPY) -m pytest

.PHONY: venv build test test-c test-pure asan bench bench-micro fuzz clean bench-c test-c-api-asan

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml setup.py
	test -x $(VPY) || $(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install -q --upgrade pip
	$(VPY) -m pip install -q "setuptools>=64" wheel "Cython>=3.0"
	$(VPY) -m pip install -q --no-build-isolation -e '.[test,bench]'
	touch $@

# Rebuild the C engine in place (incremental).
build: venv
	FASTPOOL_REQUIRE_C=1 $(VPY) setup.py -q build_ext --inplace

test: build
	FASTPOOL_EXPECT_C=1 $(PYTEST) tests

clean:
	rm -rf build dist *.egg-info fastpool/*.so fastpool/_core.c fastpool/_core.html .pytest_cache

# C parser (csrc/fp_http.c) on its own: cffi tests under ASan+UBSan, microbenchmark, fuzzing.
test-c-api-asan: venv
	ASAN_OPTIONS=detect_leaks=0 LD_PRELOAD="$$(gcc -print-file-name=libasan.so) $$(gcc -print-file-name=libubsan.so)" \
		FASTPOOL_TEST_ASAN=1 $(PYTEST) tests/test_c_api.py -k asan -p no:cacheprovider

bench-c:
	bench/c_bench.sh

FUZZ_SECONDS ?= 300
fuzz:
	fuzz/run.sh $(FUZZ_SECONDS)
