"""The clients ``fastpool bench`` knows: names, what they need, how to find their versions.

This module is imported by the CLI's parent process and is cheap: it never imports a client
library. The code that drives each library lives in :mod:`fastpool._bench.adapters` and runs
only in the client's own worker process.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import Optional


@dataclass(frozen=True)
class ClientSpec:
    name: str              #: CLI name and table label
    kind: str              #: "sync", "async" or "floor"
    module: str            #: what must import for the client to run
    dist: Optional[str]    #: distribution whose version is reported (None: fastpool itself)
    adapter: str           #: class name in fastpool._bench.adapters
    description: str
    engine: Optional[str] = None   #: "c" / "python" for fastpool's own clients
    #: reconnect mode: measured with a full and a resumed TLS handshake (engine level)
    handshakes: bool = False
    #: the row other clients are compared with ("× fastpool") in latency-like modes
    reference: bool = False
    #: runs in the reconnect mode (AsyncPool opens connections with the very call the sync
    #: Pool uses, so its reconnect is the sync row's)
    reconnect: bool = True


CLIENTS: tuple[ClientSpec, ...] = (
    ClientSpec("floor", "floor", "fastpool._engine._core", None, "Floor",
               "raw C client on fastpool's C connection engine; no Python in the loop",
               engine="c", handshakes=True),
    ClientSpec("fastpool", "sync", "fastpool._engine._core", None, "FastpoolSync",
               "fastpool.Pool, C engine", engine="c", handshakes=True, reference=True),
    ClientSpec("fastpool-async", "async", "fastpool._engine._core", None, "FastpoolAsync",
               "fastpool.AsyncPool, C engine", engine="c", reconnect=False),
    ClientSpec("fastpool-py", "sync", "fastpool._engine._pure", None, "FastpoolSync",
               "fastpool.Pool, pure-Python engine", engine="python", handshakes=True),
    ClientSpec("fastpool-py-async", "async", "fastpool._engine._pure", None, "FastpoolAsync",
               "fastpool.AsyncPool, pure-Python engine", engine="python", reconnect=False),
    ClientSpec("httpx", "sync", "httpx", "httpx", "HttpxSync", "httpx.Client (the baseline)"),
    ClientSpec("httpx-async", "async", "httpx", "httpx", "HttpxAsync", "httpx.AsyncClient"),
    ClientSpec("aiohttp", "async", "aiohttp", "aiohttp", "Aiohttp", "aiohttp.ClientSession"),
    ClientSpec("urllib3", "sync", "urllib3", "urllib3", "Urllib3",
               "urllib3 connection pool"),
    ClientSpec("requests", "sync", "requests", "requests", "Requests", "requests.Session"),
    ClientSpec("pycurl", "sync", "pycurl", "pycurl", "Pycurl",
               "pycurl (libcurl easy handle per thread)"),
    ClientSpec("pyreqwest", "sync", "pyreqwest", "pyreqwest", "PyreqwestSync",
               "pyreqwest SyncClient (Rust reqwest)"),
    ClientSpec("pyreqwest-async", "async", "pyreqwest", "pyreqwest", "PyreqwestAsync",
               "pyreqwest Client (Rust reqwest)"),
)

CLIENT_NAMES: tuple[str, ...] = tuple(c.name for c in CLIENTS)
BY_NAME = {c.name: c for c in CLIENTS}
#: The row "× fastpool" compares with: latency-like modes, then throughput.
REFERENCE = "fastpool"
THROUGHPUT_REFERENCE = "fastpool-async"


def presence(spec: ClientSpec) -> Optional[str]:
    """None when the client's module can be found, else why not ("not installed: ...").

    Only looks (no import): the worker process imports it, and reports an import that fails
    anyway (a module that is present but broken, or hidden)."""
    try:
        found = importlib.util.find_spec(spec.module) is not None
    except (ImportError, ValueError) as exc:
        return f"not installed ({exc})"
    if found:
        return None
    if spec.engine == "c":
        return "unavailable: the C engine is not built (make build)"
    return f"not installed (pip install {spec.dist or spec.module})"


def version_of(spec: ClientSpec) -> Optional[str]:
    """The installed version of the client's distribution (fastpool's for its own)."""
    from importlib import metadata

    dist = spec.dist or "fastpool"
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        if spec.dist is None:
            from .. import __version__

            return __version__
        return None
