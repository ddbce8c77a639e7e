"""Shared fixtures: every behaviour test runs on the C engine and on the pure engine."""

from __future__ import annotations

import os

import pytest

#: Set by `make test` / CI: the C engine must load, a skip would hide a broken build.
EXPECT_C = os.environ.get("FASTPOOL_EXPECT_C") == "1"
ENGINES = ["c", "python"]
#: Set by `make asan`: the sanitizer-instrumented copy of the package that must be under test.
ASAN_DIR = os.environ.get("FASTPOOL_ASAN_DIR")


def pytest_sessionstart(session) -> None:
    if ASAN_DIR:
        import fastpool

        here = os.path.realpath(fastpool.__file__)
        if not here.startswith(os.path.realpath(ASAN_DIR) + os.sep):
            raise pytest.UsageError(f"make asan: fastpool was imported from {here}, not from "
                                    f"the instrumented build in {ASAN_DIR}")


def load_engine(name: str):
    """The engine module for "c" or "python"; skips (or fails, under EXPECT_C) when absent."""
    if name == "python":
        from fastpool._engine import _pure

        return _pure
    try:
        from fastpool._engine import _core
    except ImportError as exc:
        if EXPECT_C:
            pytest.fail(f"the C engine was expected (FASTPOOL_EXPECT_C=1) but did not load: {exc}")
        pytest.skip(f"C engine not built: {exc}")
    return _core


def load_server():
    """fastpool's embedded C server class (the test and benchmark peer, its own extension)."""
    try:
        from fastpool._bench._server import EmbeddedServer
    except ImportError as exc:
        if EXPECT_C:
            pytest.fail(f"the embedded server was expected (FASTPOOL_EXPECT_C=1) but did not "
                        f"load: {exc}")
        pytest.skip(f"embedded server not built: {exc}")
    return EmbeddedServer


@pytest.fixture(params=ENGINES)
def engine_name(request) -> str:
    """"c" or "python", checked loadable (skips, or fails under EXPECT_C, when not)."""
    load_engine(request.param)
    return request.param


@pytest.fixture
def engine(engine_name):
    """The engine module under test (fastpool._engine._core or fastpool._engine._pure)."""
    return load_engine(engine_name)


# Test peers (certs, nginx, fault servers) and the pool drivers (sync / asyncio / uvloop).
pytest_plugins = ["support.fixtures", "support.pools"]
