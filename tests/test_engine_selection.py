"""The engine is chosen once at import; a missing C engine must not pass silently."""

import os
import subprocess
import sys

from conftest import EXPECT_C

import fastpool
from fastpool import _engine


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


def test_missing_c_engine_warns_and_falls_back():
    code = ("import sys, warnings; sys.modules['fastpool._engine._core'] = None; "
            "warnings.simplefilter('always'); import fastpool; print(fastpool.BACKEND)")
    env = {k: v for k, v in os.environ.items() if k != "FASTPOOL_NO_EXTENSIONS"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "python"
    assert "EngineWarning" in out.stderr and "C engine is not available" in out.stderr


def test_chosen_pure_engine_does_not_warn():
    env = dict(os.environ, FASTPOOL_NO_EXTENSIONS="1")
    out = subprocess.run(
        [sys.executable, "-W", "error::UserWarning", "-c",
         "import fastpool; print(fastpool.BACKEND)"],
        env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "python" and out.stderr == ""


def test_build_without_a_compiler_falls_back_loudly(tmp_path):
    # The package's own build with a compiler that always fails: it must succeed (pure
    # engine) and say why, instead of failing the installation.
    import shutil

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    for name in ("setup.py", "pyproject.toml", "README.md"):
        shutil.copy(os.path.join(root, name), tmp_path)
    shutil.copytree(os.path.join(root, "csrc"), tmp_path / "csrc")
    shutil.copytree(os.path.join(root, "fastpool"), tmp_path / "fastpool",
                    ignore=shutil.ignore_patterns("*.so", "_core.c", "__pycache__"))
    env = {k: v for k, v in os.environ.items()
           if k not in ("FASTPOOL_REQUIRE_C", "FASTPOOL_NO_EXTENSIONS")}
    env["CC"] = "/bin/false"
    out = subprocess.run([sys.executable, "setup.py", "build_ext", "--inplace"], cwd=tmp_path,
                         env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "the C engine could not be built" in out.stderr
    assert not list((tmp_path / "fastpool").glob("_core*.so"))
