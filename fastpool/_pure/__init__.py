"""The pure-Python engine: the same interface and behaviour as fastpool._core (see _engine)."""
