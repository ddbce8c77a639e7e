"""Checked by mypy (make lint), not run: both engine modules satisfy the engine Protocol."""

from fastpool._engine import _core, _pure
from fastpool._engine.protocol import Engine

c_engine: Engine = _core
pure_engine: Engine = _pure
