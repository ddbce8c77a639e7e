"""Build of fastpool's C engine.

The C engine (fastpool._engine._core: Cython over csrc/) is built when a compiler, Cython and the
OpenSSL headers are present. When it cannot be built, installation still succeeds with the
pure-Python engine and says so; FASTPOOL_NO_EXTENSIONS=1 skips the attempt.

Environment knobs (build time):
  FASTPOOL_NO_EXTENSIONS=1   build nothing, install the pure engine only
  FASTPOOL_REQUIRE_C=1       fail the build instead of falling back (CI uses this)
  FASTPOOL_CFLAGS / FASTPOOL_LDFLAGS   extra flags (make asan passes the sanitizers here)
"""

import os
import platform
import shlex
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

HERE = os.path.dirname(os.path.abspath(__file__))
#: The production engine: parser and writer, connections, TLS, latency histogram.
CORE_SOURCES = ["csrc/fp_http.c", "csrc/fp_conn.c", "csrc/fp_tls.c", "csrc/fp_hist.c"]
#: The embedded benchmark and test server, a separate extension (not in the engine's).
SERVER_SOURCES = ["csrc/fp_server.c"]


def _cpu_has(flag):
    """SSE4.2 is used when the building machine has it: the package is built where it runs."""
    if platform.machine() not in ("x86_64", "AMD64", "i686"):
        return False
    try:
        with open("/proc/cpuinfo") as f:
            return any(flag in line.split() for line in f if line.startswith("flags"))
    except OSError:
        return False


def _extension(name, pyx, sources):
    cflags = ["-O3", "-std=c11", "-Wall", "-Wextra", "-Wno-unused-parameter",
              "-Wno-unused-function", "-Wno-missing-field-initializers", "-fvisibility=hidden"]
    if _cpu_has("sse4_2"):
        cflags.append("-msse4.2")
    cflags += shlex.split(os.environ.get("FASTPOOL_CFLAGS", ""))
    ldflags = shlex.split(os.environ.get("FASTPOOL_LDFLAGS", ""))
    return Extension(
        name,
        sources=[pyx] + sources,
        include_dirs=["csrc"],
        libraries=["ssl", "crypto", "pthread"],
        extra_compile_args=cflags,
        extra_link_args=ldflags,
        define_macros=[("_GNU_SOURCE", "1")],
    )


class OptionalBuildExt(build_ext):
    """Falls back to the pure engine, loudly, when the C engine cannot be built."""

    def run(self):
        try:
            super().run()
        except Exception as exc:  # compiler missing, headers missing, Cython missing
            self._fallback(exc)

    def build_extension(self, ext):
        try:
            super().build_extension(ext)
        except Exception as exc:
            self._fallback(exc)

    def _fallback(self, exc):
        if os.environ.get("FASTPOOL_REQUIRE_C") == "1":
            raise exc
        bar = "*" * 78
        sys.stderr.write(
            f"\n{bar}\n fastpool: the C engine could not be built ({exc}).\n"
            " Installing the pure-Python engine (fastpool.BACKEND == 'python'): same API and\n"
            " behaviour, higher latency. Install gcc, python3-dev and libssl-dev, then\n"
            " reinstall to get the C engine.\n"
            f"{bar}\n\n"
        )


def _ext_modules():
    if os.environ.get("FASTPOOL_NO_EXTENSIONS") == "1":
        sys.stderr.write("fastpool: FASTPOOL_NO_EXTENSIONS=1, building the pure engine only\n")
        return []
    try:
        from Cython.Build import cythonize
    except ImportError:
        if os.environ.get("FASTPOOL_REQUIRE_C") == "1":
            raise
        sys.stderr.write("fastpool: Cython is not installed; installing the pure engine only\n")
        return []
    return cythonize(
        [_extension("fastpool._engine._core", "fastpool/_engine/_core.pyx", CORE_SOURCES),
         _extension("fastpool._bench._server", "fastpool/_bench/_server.pyx", SERVER_SOURCES)],
        compiler_directives={
            "language_level": "3",
            "boundscheck": False,
            "wraparound": False,
            "cdivision": True,
            "initializedcheck": False,
        },
        annotate=os.environ.get("FASTPOOL_ANNOTATE") == "1",
    )


setup(ext_modules=_ext_modules(), cmdclass={"build_ext": OptionalBuildExt})
