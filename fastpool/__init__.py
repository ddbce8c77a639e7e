"""fastpool: a pool of pre-opened, pre-handshaked HTTP/1.1 keep-alive connections.

    with fastpool.Pool("https://api.example.com", connections=4) as pool:
        r = pool.get("/api/v3/ticker", params={"symbol": "BTCUSDT"})
"""

from ._async_pool import AsyncPool
from ._connect import InsecureWarning, ResolveError
from ._engine import BACKEND, EngineWarning
from ._errors import *  # noqa: F401,F403
from ._errors import __all__ as _error_names
from ._headers import Headers
from ._limits import Limits
from ._pool import Pool
from ._response import HTTPStatusError, Request, Response, Timings
from ._timeout import Timeout
from ._url import InvalidURL

__version__ = "0.1.0"

__all__ = [
    "BACKEND", "EngineWarning", "Pool", "AsyncPool", "Response", "Request", "Headers", "Timeout", "Timings", "Limits",
    "HTTPStatusError", "InvalidURL", "ResolveError", "InsecureWarning", "__version__",
    *_error_names,
]
