"""What the feature modes share: the process's CPU time, a percentile, and the settings a
mode gets from ``fastpool bench`` (or from its standalone script's own options)."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from dataclasses import dataclass
from typing import Any, Callable, Optional

import fastpool


@dataclass
class Settings:
    """What ``fastpool bench`` passes to a feature mode. ``requests`` None: the mode's own
    default count (sized for a default run of a few seconds to a minute per mode)."""

    requests: Optional[int] = None
    rounds: int = 3
    engine: str = "c"                      #: "c" or "python" (the floor needs "c")
    plain: bool = False                    #: HTTP instead of HTTPS where the mode has TLS
    log: Callable[[str], None] = lambda text: None   #: progress (one line, rewritten)


def cpu_seconds() -> float:
    """This process's user + system CPU time, all threads (seconds)."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def pct(values: Any, q: float) -> float:
    """The q-quantile (0..1) of values, nearest rank; nan for no values."""
    s = sorted(values)
    if not s:
        return float("nan")
    return float(s[min(len(s) - 1, max(0, int(round(q * (len(s) - 1)))))])


def python_child(code: str, *args: str, text: bool = True) -> subprocess.Popen:
    """``python -c code args...`` with stdin and stdout piped, able to import this fastpool
    (whether it is installed or run from a checkout)."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(fastpool.__file__)))
    path = os.environ.get("PYTHONPATH")
    env = dict(os.environ, PYTHONPATH=root + (os.pathsep + path if path else ""))
    return subprocess.Popen([sys.executable, "-c", code, *args], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=text, env=env)


def uvloop_installed() -> bool:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return False
    return True


# The embedded server in a child process (its CPU is then not this process's). argv: "tls" or
# "plain", the body size, the CPU to pin it to (-1: none). The CA file lives in the child's
# temporary directory, which goes when the child stops (pools read it when they open).
_SERVER = """
import json, os, sys, tempfile
if int(sys.argv[3]) >= 0:
    os.sched_setaffinity(0, {int(sys.argv[3])})
from fastpool._bench._server import EmbeddedServer
tls = sys.argv[1] == "tls"
with tempfile.TemporaryDirectory() as tmp, EmbeddedServer(tls=tls,
                                                          body_size=int(sys.argv[2])) as srv:
    ca = srv.write_ca(os.path.join(tmp, "ca.pem")) if tls else ""
    print(json.dumps([srv.url, ca]), flush=True)
    sys.stdin.read()
"""


def start_server(plain: bool, *, body_size: int = 137,
                 cpu: Optional[int] = None) -> tuple[str, str, subprocess.Popen]:
    """The embedded server (HTTPS, TLS 1.3, unless plain) in a child process, pinned to cpu if
    given: (its url, its CA file or "" when plain, the process). It serves until
    ``stop_child(process)``."""
    import json

    proc = python_child(_SERVER, "plain" if plain else "tls", str(body_size),
                        str(-1 if cpu is None else cpu))
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError("the embedded server's child process did not start "
                               "(is fastpool._bench._server built?)")
        url, ca = json.loads(line)
    except BaseException:
        stop_child(proc)
        raise
    return str(url), str(ca), proc


def stop_child(proc: subprocess.Popen, timeout: float = 10.0) -> None:
    """Stops a child of python_child: closes its stdin (its cue to exit), waits up to timeout
    seconds, then kills it; reaped either way."""
    if proc.stdin is not None:
        try:
            proc.stdin.close()
        except OSError:  # a child already gone: a broken pipe on the flush
            pass
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    if proc.stdout is not None:
        proc.stdout.close()


def floor_connection(pool: Any) -> Any:
    """The raw C connection of a ``fastpool.Pool(url, connections=1, engine="c")`` (opened
    when the pool was), for ``_core.floor_latencies``: the floor, no Python per request."""
    return pool._policy.idle[0][0]
