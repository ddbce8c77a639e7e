"""fastpool: a pool of pre-opened, pre-handshaked HTTP/1.1 keep-alive connections.

    with fastpool.Pool("https://api.example.com", connections=4) as pool:
        r = pool.get("/api/v3/ticker", params={"symbol": "BTCUSDT"})
"""

from ._drivers.aio import AsyncPool
from ._drivers.connect import InsecureWarning, ResolveError
from ._drivers.sync import Pool
from ._engine import BACKEND, EngineWarning
from ._model.auth import Ed25519Signer, HmacSigner, Signed, Signer
from ._model.errors import *  # noqa: F401,F403
from ._model.errors import __all__ as _error_names
from ._model.forms import encode_form, encode_query
from ._model.headers import Headers
from ._model.keepwarm import KeepWarm
from ._model.limits import Limits
from ._model.ratelimit import RateLimit
from ._model.response import Request, Response, Timings
from ._model.timeout import Timeout
from ._model.url import InvalidURL
from ._policy.ledger import SharedLedger

__version__ = "0.1.0"

__all__ = [
    "BACKEND", "EngineWarning", "Pool", "AsyncPool", "Response", "Request", "Headers", "Timeout",
    "Timings", "Limits", "KeepWarm",
    "InvalidURL", "ResolveError", "InsecureWarning", "__version__",
    "RateLimit", "SharedLedger", "HmacSigner", "Ed25519Signer", "Signer", "Signed",
    "encode_query", "encode_form",
    *_error_names,
]
