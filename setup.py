"""Build of fastpool's C engine.

The C engine (fastpool._engine._core: Cython over csrc/) is built when a compiler, Cython and the
OpenSSL headers are present. When it cannot be built, installation still succeeds with the
pure-Python engine and says so; FASTPOOL_NO_EXTENSIONS=1 skips the attempt.

The engine builds on POSIX systems (Linux; macOS and the BSDs through csrc/'s POSIX
fallbacks); the embedded benchmark and test server (fastpool._bench._server: epoll, eventfd,
accept4) on Linux only. Why the engine was not built is kept in the package
(fastpool/_engine/C_ENGINE_NOT_BUILT.txt), for the warning at import and `python -m fastpool
info`: pip shows a build's output only when the build fails.

Environment knobs (build time):
  FASTPOOL_NO_EXTENSIONS=1   build nothing, install the pure engine only
  FASTPOOL_REQUIRE_C=1       fail the build instead of falling back (CI uses this)
  FASTPOOL_CFLAGS / FASTPOOL_LDFLAGS   extra flags (make asan passes the sanitizers here)
  FASTPOOL_OPENSSL_DIR       OpenSSL's prefix (include/, lib/) when not in the default paths
"""

import os
import platform
import shlex
import subprocess
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext
from setuptools.command.build_py import build_py

HERE = os.path.dirname(os.path.abspath(__file__))
#: The production engine: parser and writer, connections, TLS, latency histogram.
CORE_SOURCES = ["csrc/fp_http.c", "csrc/fp_conn.c", "csrc/fp_tls.c", "csrc/fp_hist.c"]
#: The embedded benchmark and test server, a separate extension (not in the engine's).
SERVER_SOURCES = ["csrc/fp_server.c"]
CORE = "fastpool._engine._core"
SERVER = "fastpool._bench._server"
#: fastpool/_engine/__init__.py reads it (the same name there).
NOT_BUILT_MARKER = "C_ENGINE_NOT_BUILT.txt"
#: Why no C engine is built at all (set by _ext_modules), or None.
NOT_BUILDING = None


def _cpu_has(flag):
    """SSE4.2 is used when the building machine has it: the package is built where it runs."""
    if platform.machine() not in ("x86_64", "AMD64", "i686"):
        return False
    try:
        with open("/proc/cpuinfo") as f:
            return any(flag in line.split() for line in f if line.startswith("flags"))
    except OSError:
        return False


def _openssl_dirs():
    """(include_dirs, library_dirs) for OpenSSL: FASTPOOL_OPENSSL_DIR (a prefix holding
    include/ and lib/), else on macOS Homebrew's or MacPorts' (the system has no OpenSSL
    headers there), else the compiler's default paths (Linux: libssl-dev)."""
    prefixes = [os.environ["FASTPOOL_OPENSSL_DIR"]] if os.environ.get("FASTPOOL_OPENSSL_DIR") \
        else (["/opt/homebrew/opt/openssl@3", "/usr/local/opt/openssl@3", "/opt/local"]
              if sys.platform == "darwin" else [])
    for prefix in prefixes:
        if os.path.exists(os.path.join(prefix, "include", "openssl", "ssl.h")):
            return [os.path.join(prefix, "include")], [os.path.join(prefix, "lib")]
    return [], []


def _extension(name, pyx, sources):
    cflags = ["-O3", "-std=c11", "-Wall", "-Wextra", "-Wno-unused-parameter",
              "-Wno-unused-function", "-Wno-missing-field-initializers", "-fvisibility=hidden"]
    if _cpu_has("sse4_2"):
        cflags.append("-msse4.2")
    cflags += shlex.split(os.environ.get("FASTPOOL_CFLAGS", ""))
    ldflags = shlex.split(os.environ.get("FASTPOOL_LDFLAGS", ""))
    ssl_include, ssl_lib = _openssl_dirs()
    return Extension(
        name,
        sources=[pyx] + sources,
        include_dirs=["csrc", *ssl_include],
        library_dirs=ssl_lib,
        libraries=["ssl", "crypto", "pthread"],
        extra_compile_args=cflags,
        extra_link_args=ldflags,
        define_macros=[("_GNU_SOURCE", "1")],
    )


def _not_built(directory, reason):
    """Records next to where the C engine would be why it is not (the import-time warning
    and `python -m fastpool info` name it: pip shows a build's output only on failure)."""
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, NOT_BUILT_MARKER), "w", encoding="utf-8") as f:
        f.write(reason.strip().replace("\n", " ")[:2000] + "\n")


def _built(directory):
    try:
        os.remove(os.path.join(directory, NOT_BUILT_MARKER))
    except FileNotFoundError:
        pass


def _first_error(cmd):
    """What a failed compiler or linker command says, in one line: run again with its output
    captured (a failure is quick), the first line that names an error."""
    tool = os.path.basename(str(cmd[0]))
    try:
        out = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             errors="replace", timeout=300)
    except OSError as exc:
        return f"{tool}: {exc.strerror or exc}"
    except subprocess.TimeoutExpired:
        return f"{tool} did not finish"
    lines = [line.strip() for line in out.stdout.splitlines() if line.strip()]
    errors = [line for line in lines if "error" in line.lower()]
    detail = (errors or lines or [f"exit status {out.returncode}"])[0]
    return f"{tool} failed: {detail}"


class OptionalBuildExt(build_ext):
    """Falls back to the pure engine, loudly, when the C engine cannot be built."""

    def run(self):
        self._failed = set()
        self._inplace = self.inplace  # setuptools clears it while it builds, then copies
        try:
            super().run()
        except Exception as exc:  # compiler missing, headers missing, Cython missing
            if CORE not in self._failed:  # else its own failure is the one to report
                self._fallback(None, exc)

    def build_extension(self, ext):
        self._tool_error = None
        # distutils runs the compiler through spawn() (older) or call() (newer), the linker
        # through spawn()
        runners = {name: getattr(self.compiler, name) for name in ("spawn", "call")
                   if hasattr(self.compiler, name)}
        for name, run in runners.items():
            setattr(self.compiler, name,
                    lambda cmd, *a, _run=run, **kw: self._spawn(_run, cmd, *a, **kw))
        try:
            super().build_extension(ext)
        except Exception as exc:
            self._failed.add(ext.name)
            self._fallback(ext, exc)
        else:
            if ext.name == CORE:
                _built(self._engine_dir())
        finally:
            for name in runners:
                delattr(self.compiler, name)  # the class's own again

    def _spawn(self, run, cmd, *args, **kwargs):
        """The compiler's own run; when it fails, its first error line is kept for the
        marker (distutils' exception has only the command and its exit status; the
        compiler's message, "openssl/ssl.h: No such file or directory", is the cause)."""
        try:
            return run(cmd, *args, **kwargs)
        except Exception:
            self._tool_error = _first_error(cmd)
            raise

    def copy_extensions_to_source(self):
        # --inplace (and editable installs): only what was built can be copied.
        built = self.extensions
        self.extensions = [ext for ext in built if ext.name not in self._failed]
        try:
            super().copy_extensions_to_source()
        finally:
            self.extensions = built

    def _engine_dir(self):
        """Where the engine goes: the source tree (--inplace, editable) or the build's."""
        if getattr(self, "_inplace", self.inplace):
            return self.get_finalized_command("build_py").get_package_dir("fastpool._engine")
        return os.path.dirname(self.get_ext_fullpath(CORE))

    def _fallback(self, ext, exc):
        if os.environ.get("FASTPOOL_REQUIRE_C") == "1":
            raise exc
        cause = getattr(self, "_tool_error", None) or f"{type(exc).__name__}: {exc}"
        bar = "*" * 78
        if ext is not None and ext.name != CORE:
            sys.stderr.write(f"\n{bar}\n fastpool: {ext.name} (the embedded benchmark and test "
                             f"server) could not be built ({cause}).\n{bar}\n\n")
            return
        _not_built(self._engine_dir(), cause)
        sys.stderr.write(
            f"\n{bar}\n fastpool: the C engine could not be built ({cause}).\n"
            " Installing the pure-Python engine (fastpool.BACKEND == 'python'): same API and\n"
            " behaviour, higher latency. Install gcc, python3-dev and libssl-dev, then\n"
            " reinstall to get the C engine; `python -m fastpool info` tells which engine runs.\n"
            f"{bar}\n\n"
        )


class BuildPy(build_py):
    """Records, in the built package, why no C engine is built at all (no Cython,
    FASTPOOL_NO_EXTENSIONS=1, an unsupported platform)."""

    def run(self):
        super().run()
        if NOT_BUILDING is not None and not self.editable_mode:
            _not_built(os.path.join(self.build_lib, "fastpool", "_engine"), NOT_BUILDING)


def extension_specs(platform=sys.platform):
    """(name, pyx, sources) of the extensions this platform builds: the engine on POSIX
    systems, the embedded server (epoll, eventfd, accept4) on Linux only."""
    if platform.startswith("win"):
        return []
    specs = [(CORE, "fastpool/_engine/_core.pyx", CORE_SOURCES)]
    if platform.startswith("linux"):
        specs.append((SERVER, "fastpool/_bench/_server.pyx", SERVER_SOURCES))
    return specs


def _ext_modules():
    """The extensions to build; sets NOT_BUILDING when the C engine is not even tried."""
    global NOT_BUILDING
    if os.environ.get("FASTPOOL_NO_EXTENSIONS") == "1":
        NOT_BUILDING = "FASTPOOL_NO_EXTENSIONS=1 was set when fastpool was built"
        sys.stderr.write("fastpool: FASTPOOL_NO_EXTENSIONS=1, building the pure engine only\n")
        return []
    specs = extension_specs()
    if not specs:
        NOT_BUILDING = f"the C engine is built on POSIX systems only, not on {sys.platform}"
        sys.stderr.write(f"fastpool: {NOT_BUILDING}; installing the pure engine only\n")
        return []
    try:
        from Cython.Build import cythonize
    except ImportError as exc:
        if os.environ.get("FASTPOOL_REQUIRE_C") == "1":
            raise
        NOT_BUILDING = f"Cython is not installed ({exc})"
        sys.stderr.write("fastpool: Cython is not installed; installing the pure engine only\n")
        return []
    return cythonize(
        [_extension(name, pyx, sources) for name, pyx, sources in specs],
        compiler_directives={
            "language_level": "3",
            "boundscheck": False,
            "wraparound": False,
            "cdivision": True,
            "initializedcheck": False,
            # freethreading_compatible stays False (Cython's default): the engine and the
            # pool's hot path rely on the GIL, so on a free-threaded CPython importing the
            # engine turns the GIL on, and fastpool/__init__.py refuses an interpreter that
            # runs without it.
        },
        annotate=os.environ.get("FASTPOOL_ANNOTATE") == "1",
    )


if __name__ == "__main__":
    setup(ext_modules=_ext_modules(),
          cmdclass={"build_ext": OptionalBuildExt, "build_py": BuildPy})
