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


def _source_copy(dest, keep_cython_output=False):
    """The package's sources as a fresh checkout has them (no built extension, no marker)."""
    import shutil

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    dest.mkdir(exist_ok=True)
    for name in ("setup.py", "pyproject.toml", "README.md", "LICENSE", "MANIFEST.in"):
        shutil.copy(os.path.join(root, name), dest)
    shutil.copytree(os.path.join(root, "csrc"), dest / "csrc")
    # Cython's output, when kept, keeps its time stamp (copy2): cythonize then skips the
    # translation, which the compiler's failure makes irrelevant anyway.
    skip = ["*.so", "__pycache__", _engine.NOT_BUILT_MARKER, "*.html"]
    if not keep_cython_output:
        skip += ["_core.c", "_server.c"]
    shutil.copytree(os.path.join(root, "fastpool"), dest / "fastpool",
                    ignore=shutil.ignore_patterns(*skip))
    return dest


def _build_env():
    env = {k: v for k, v in os.environ.items()
           if k not in ("FASTPOOL_REQUIRE_C", "FASTPOOL_NO_EXTENSIONS", "LD_PRELOAD")}
    env["CC"] = "/bin/false"  # a compiler that always fails
    return env


def test_build_without_a_compiler_falls_back_loudly(tmp_path):
    # The package's own build with a compiler that always fails: it must succeed (pure
    # engine) and say why, instead of failing the installation.
    src = _source_copy(tmp_path / "src")
    out = subprocess.run([sys.executable, "setup.py", "build_ext", "--inplace"], cwd=src,
                         env=_build_env(), capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "the C engine could not be built" in out.stderr
    assert not list((src / "fastpool").glob("_engine/_core*.so"))
    # ... and keeps the reason where the import-time warning finds it.
    marker = src / "fastpool" / "_engine" / _engine.NOT_BUILT_MARKER
    assert "false failed" in marker.read_text(), marker.read_text()


def test_build_names_the_compilers_own_error(tmp_path):
    # The common case, a header that is not installed (libssl-dev): the marker carries the
    # compiler's message, not distutils' "exit status 1".
    src = _source_copy(tmp_path / "src", keep_cython_output=True)
    env = _build_env()
    del env["CC"]
    env["FASTPOOL_CFLAGS"] = "-include openssl/not_installed_here.h"
    out = subprocess.run([sys.executable, "setup.py", "build_ext", "--inplace"], cwd=src,
                         env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    marker = (src / "fastpool" / "_engine" / _engine.NOT_BUILT_MARKER).read_text()
    assert "openssl/not_installed_here.h: No such file or directory" in marker, marker


def test_wheel_without_a_compiler_installs_and_names_the_cause(tmp_path):
    # What a user without a compiler gets from `pip install`: pip shows the build's output
    # only when the build fails, so the wheel must carry the reason, and the first import
    # (and `python -m fastpool info`) must name it rather than a bare ImportError.
    src = _source_copy(tmp_path / "src", keep_cython_output=True)
    dist = tmp_path / "dist"
    out = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-build-isolation",
                          "--no-deps", "--no-index", "-w", str(dist), str(src)],
                         env=_build_env(), capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, (out.stdout + out.stderr)[-3000:]
    [wheel] = dist.glob("fastpool-*.whl")
    import zipfile

    names = zipfile.ZipFile(wheel).namelist()
    assert f"fastpool/_engine/{_engine.NOT_BUILT_MARKER}" in names
    assert not [n for n in names if n.endswith(".so")], names

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True,
                   timeout=300)
    python = str(venv / "bin" / "python")
    out = subprocess.run([sys.executable, "-m", "pip", "--python", python, "install", "-q",
                          "--no-deps", "--no-index", str(wheel)],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, (out.stdout + out.stderr)[-3000:]

    env = {k: v for k, v in os.environ.items()
           if k not in ("FASTPOOL_NO_EXTENSIONS", "PYTHONPATH", "LD_PRELOAD")}
    out = subprocess.run([python, "-c", "import fastpool; print(fastpool.BACKEND, "
                          "fastpool.__file__)"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    backend, where = out.stdout.split()
    assert backend == "python" and where.startswith(str(venv)), out.stdout
    assert "EngineWarning" in out.stderr, out.stderr
    assert "was not built when fastpool was installed" in out.stderr, out.stderr
    assert "false failed" in out.stderr, out.stderr  # the compiler's own failure

    out = subprocess.run([python, "-m", "fastpool", "info"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "engine: python" in out.stdout and "false failed" in out.stdout, out.stdout


def test_missing_extension_is_named_as_such(tmp_path):
    # A checkout never built (no extension, no marker): the warning says so, not "cannot
    # import name _core".
    src = _source_copy(tmp_path / "src")
    env = {k: v for k, v in os.environ.items() if k not in ("FASTPOOL_NO_EXTENSIONS",)}
    env["PYTHONPATH"] = str(src)
    out = subprocess.run([sys.executable, "-c", "import fastpool; print(fastpool.BACKEND)"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "python"
    assert "no compiled C engine" in out.stderr and "cannot import name" not in out.stderr


def test_extension_that_fails_to_load_is_named_as_such():
    # Built but not loadable (a missing libssl, say): the loader's own error, not "not built".
    code = ("import sys, warnings; sys.modules['fastpool._engine._core'] = None; "
            "warnings.simplefilter('always'); import fastpool; print(fastpool.BACKEND)")
    env = {k: v for k, v in os.environ.items() if k != "FASTPOOL_NO_EXTENSIONS"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True)
    if _engine._has_compiled_core():
        assert "installed but failed to load" in out.stderr, out.stderr
    else:
        assert "not built" in out.stderr or "no compiled C engine" in out.stderr, out.stderr
