"""``fastpool`` command line (also ``python -m fastpool``).

    fastpool bench [URL] [options]     the latency benchmark (fastpool bench --help)
    fastpool info                      which engine runs and why, and the platform
"""

from __future__ import annotations

import os
import sys
from typing import Optional, Sequence

USAGE = """usage: fastpool <command> [options]

commands:
  bench [URL]   latency and throughput of fastpool against a raw C client and every Python
                HTTP client installed (fastpool bench --help for every option)
  info          which engine this installation runs (C or pure Python) and, when it is not
                the C engine, why; the Python, OpenSSL and platform it runs on
"""


def info() -> str:
    """What `fastpool info` prints: the engine and why, the interpreter, OpenSSL, platform."""
    import importlib.metadata
    import platform
    import select
    import ssl
    import sysconfig

    from . import __version__
    from ._bench.report import c_engine_openssl
    from ._engine import BACKEND, LOAD_ERROR

    lines = [f"fastpool {__version__} ({os.path.dirname(os.path.abspath(__file__))})"]
    if BACKEND == "c":
        lines.append("engine: c (the C engine)")
    else:
        lines.append(f"engine: python (the pure-Python engine): the C engine is not available: "
                     f"{LOAD_ERROR}")
    try:
        from ._bench import _server  # noqa: F401
        server = "built"
    except ImportError as exc:
        server = f"not built ({exc})"
    lines.append(f"embedded server (fastpool bench with no URL, the tests): {server}")
    threading = "standard (GIL) build"
    if sysconfig.get_config_var("Py_GIL_DISABLED"):
        enabled = getattr(sys, "_is_gil_enabled", lambda: True)()
        threading = f"free-threaded build, GIL {'on' if enabled else 'off'}"
    lines.append(f"python: {platform.python_implementation()} {platform.python_version()}, "
                 f"{threading} ({sys.executable})")
    lines.append(f"platform: {platform.platform()} ({platform.machine()}); select.poll: "
                 f"{'yes' if hasattr(select, 'poll') else 'no'}")
    c_ssl = c_engine_openssl() if BACKEND == "c" else None
    lines.append(f"OpenSSL: {ssl.OPENSSL_VERSION} (Python's ssl)"
                 + (f", {c_ssl} (the C engine)" if c_ssl else ""))
    extras = []
    for name in ("orjson", "uvloop", "cryptography"):
        try:
            extras.append(f"{name} {importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            extras.append(f"{name} not installed")
    lines.append(f"optional: {', '.join(extras)}")
    return "\n".join(lines) + "\n"



def main(argv: Optional[Sequence[str]] = None) -> int:
    """Runs the command in argv (default sys.argv[1:]); returns the exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        sys.stdout.write(USAGE)
        return 0 if args else 2
    if args[0] in ("-V", "--version"):
        from . import __version__

        sys.stdout.write(f"fastpool {__version__}\n")
        return 0
    if args[0] == "info":
        sys.stdout.write(info())
        return 0
    if args[0] == "bench":
        from ._bench import main as bench

        return bench(args[1:])
    sys.stderr.write(f"fastpool: unknown command {args[0]!r}\n\n{USAGE}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
