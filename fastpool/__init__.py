"""fastpool: a pool of pre-opened, pre-handshaked HTTP/1.1 keep-alive connections."""

from ._engine import BACKEND
from ._errors import *  # noqa: F401,F403
from ._errors import __all__ as _error_names
from ._limits import Limits

__version__ = "0.1.0"

__all__ = ["BACKEND", "Limits", "__version__", *_error_names]
