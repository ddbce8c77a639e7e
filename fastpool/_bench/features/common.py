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
