"""The engine is chosen once at import; a missing C engine must not pass silently."""

import os
import subprocess
import sys

import fastpool
from fastpool import _engine

from conftest import EXPECT_C


def test_c_engine_loaded_when_expected():
    # `make test` and CI set FASTPOOL_EXPECT_C=1: a broken or missing build fails here.
    if EXPECT_C:
        assert _engine.LOAD_ERROR is None, _engine.LOAD_ERROR
        assert fastpool.BACKEND == "c"
    else:
        assert fastpool.BACKEND in ("c", "python")


def test_no_extensions_forces_python():
    env = dict(os.environ, FASTPOOL_NO_EXTENSIONS="1")
    out = subprocess.run(
        [sys.executable, "-c", "import fastpool; print(fastpool.BACKEND)"],
        env=env, capture_output=True, text=True, check=True,
    )
    assert out.stdout.strip() == "python"
