"""Header decoding from a head and its spans: the pure twin of _core.decode_headers."""

from __future__ import annotations


def header_values(head: bytes, spans: bytes, lower_name: bytes) -> list[str]:
    """[value, ...] of the fields named lower_name, case-insensitively (see _engine)."""
    v = memoryview(spans).cast("I")
    n = len(lower_name)
    return [
        head[v[i + 2]:v[i + 2] + v[i + 3]].decode("latin-1")
        for i in range(0, len(v), 4)
        if v[i + 1] == n and head[v[i]:v[i] + n].lower() == lower_name
    ]


def decode_headers(head: bytes, spans: bytes) -> list[tuple[str, str]]:
    """[(name, value)] as latin-1 str pairs (spans: native uint32 quadruples)."""
    v = memoryview(spans).cast("I")
    return [
        (head[v[i]:v[i] + v[i + 1]].decode("latin-1"),
         head[v[i + 2]:v[i + 2] + v[i + 3]].decode("latin-1"))
        for i in range(0, len(v), 4)
    ]
