"""fastpool: a pool of pre-opened, pre-handshaked HTTP/1.1 keep-alive connections.

    with fastpool.Pool("https://api.example.com", connections=4) as pool:
        r = pool.get("/api/v3/ticker", params={"symbol": "BTCUSDT"})
"""

import sys as _sys
import sysconfig as _sysconfig
from typing import Any as _Any

from ._drivers.aio import AsyncPool
from ._drivers.connect import InsecureWarning, ResolveError
from ._drivers.sync import Pool
from ._engine import BACKEND, EngineWarning
from ._engine import engine as _default_engine
from ._model import forms as _forms
from ._model.auth import Ed25519Signer, HmacSigner, Signed, Signer
from ._model.errors import *  # noqa: F401,F403
from ._model.errors import __all__ as _error_names
from ._model.headers import Headers
from ._model.hedge import Hedge
from ._model.keepwarm import KeepWarm
from ._model.limits import Limits
from ._model.ratelimit import RateLimit
from ._model.response import Request, Response, Timings
from ._model.timeout import Timeout
from ._model.url import InvalidURL
from ._policy.ledger import SharedLedger

__version__ = "0.1.0"


def _refuse_free_threading() -> None:
    """Free-threaded CPython (3.13t) without its GIL is refused, not run unchecked: the pools'
    hot paths and both engines rely on the GIL for their shared state. Loading the C engine
    turns the GIL back on (it does not declare itself free-threading compatible), so this
    refuses the pure engine without the GIL, and PYTHON_GIL=0 forced over the C engine."""
    if not _sysconfig.get_config_var("Py_GIL_DISABLED"):
        return
    is_enabled = getattr(_sys, "_is_gil_enabled", None)
    if is_enabled is None or is_enabled():
        return
    raise ImportError(
        "fastpool does not support free-threaded CPython running without the GIL: its pools "
        "and engines rely on the GIL. Run with the GIL on (PYTHON_GIL=1 or python -X gil=1) "
        "or use a standard (GIL) build of CPython.")


_refuse_free_threading()


def encode_query(params: _Any) -> str:
    """params (dict, pairs, or an already encoded str) as the query string a pool sends
    (without the "?"): exactly the bytes a signature over the query must cover."""
    return _forms.encode_query(params, _default_engine.encode_query)


def encode_form(data: _Any) -> bytes:
    """``data=`` (dict, pairs, str or bytes) as the application/x-www-form-urlencoded body a
    pool sends."""
    return _forms.encode_form(data, _default_engine.encode_query)


__all__ = [
    "BACKEND", "EngineWarning", "Pool", "AsyncPool", "Response", "Request", "Headers", "Timeout",
    "Timings", "Limits", "KeepWarm", "Hedge",
    "InvalidURL", "ResolveError", "InsecureWarning", "__version__",
    "RateLimit", "SharedLedger", "HmacSigner", "Ed25519Signer", "Signer", "Signed",
    "encode_query", "encode_form",
    *_error_names,
]
