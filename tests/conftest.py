"""Shared fixtures: every behaviour test runs on the C engine and on the pure engine."""

from __future__ import annotations

import os

import pytest

#: Set by `make test` / CI: the C engine must load, a skip would hide a broken build.
EXPECT_C = os.environ.get("FASTPOOL_EXPECT_C") == "1"
ENGINES = ["c", "python"]


def load_engine(name: str):
    """The engine module for "c" or "python"; skips (or fails, under EXPECT_C) when absent."""
    if name == "python":
        from fastpool import _pure

        return _pure
    try:
        from fastpool import _core
    except ImportError as exc:
        if EXPECT_C:
            pytest.fail(f"the C engine was expected (FASTPOOL_EXPECT_C=1) but did not load: {exc}")
        pytest.skip(f"C engine not built: {exc}")
    if not hasattr(_core, "ResponseParser"):
        # _core.pyx compiles before its parts are bound; an engine without the parser
        # interface is as absent as an unbuilt one.
        if EXPECT_C:
            pytest.fail("the C engine was expected (FASTPOOL_EXPECT_C=1) but has no parser binding")
        pytest.skip("C engine built without the parser binding (fastpool._core.ResponseParser)")
    return _core


@pytest.fixture(params=ENGINES)
def engine(request):
    """The engine module under test (fastpool._core or fastpool._pure)."""
    return load_engine(request.param)
