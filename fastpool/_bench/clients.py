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
    #: how a user gets it (None: the `bench` extra)
    install: Optional[str] = None

    def install_hint(self) -> str:
        return self.install or BENCH_EXTRA


#: What installs every peer that installs cleanly (pyproject.toml, the `bench` extra).
BENCH_EXTRA = "pip install 'fastpool[bench]'"
#: niquests depends on urllib3-future, whose wheel replaces the `urllib3` package in place
#: (a .pth file copies it over urllib3 at every interpreter start): the urllib3 and requests
#: rows would then measure urllib3-future. Built from source with URLLIB3_NO_OVERRIDE, it
#: installs beside urllib3 instead, so it is not in the extra.
NIQUESTS_INSTALL = ("URLLIB3_NO_OVERRIDE=1 pip install niquests --no-binary urllib3-future "
                    "(so that it does not replace urllib3)")

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
    ClientSpec("primp", "sync", "primp", "primp", "Primp", "primp.Client (Rust reqwest)"),
    ClientSpec("rnet", "sync", "rnet", "rnet", "RnetSync", "rnet BlockingClient (Rust wreq)"),
    ClientSpec("rnet-async", "async", "rnet", "rnet", "RnetAsync", "rnet.Client (Rust wreq)"),
    ClientSpec("curl_cffi", "sync", "curl_cffi", "curl_cffi", "CurlCffi",
               "curl_cffi.requests.Session (libcurl)"),
    ClientSpec("httpr", "sync", "httpr", "httpr", "Httpr", "httpr.Client (Rust reqwest)"),
    ClientSpec("niquests", "sync", "niquests", "niquests", "Niquests", "niquests.Session",
               install=NIQUESTS_INSTALL),
    ClientSpec("aiosonic", "async", "aiosonic", "aiosonic", "Aiosonic", "aiosonic.HTTPClient"),
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
    return "not installed"


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


def shadowed_urllib3() -> Optional[str]:
    """A warning when the `urllib3` that imports is urllib3-future (versions x.y.9NN), which
    replaces urllib3 in place: the urllib3 and requests rows then do not measure urllib3."""
    import urllib3

    version = getattr(urllib3, "__version__", "")
    parts = version.split(".")
    if len(parts) < 3 or not parts[2].isdigit() or int(parts[2]) < 900:
        return None
    return (f"the urllib3 package here is urllib3-future {version} (a niquests dependency "
            f"that replaced it in place): the urllib3 and requests rows measure "
            f"urllib3-future. To measure urllib3: pip uninstall urllib3-future, pip install "
            f"--force-reinstall urllib3, then {NIQUESTS_INSTALL}")
