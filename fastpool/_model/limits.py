"""Parser limits, shared by both engines (the C engine copies them into ``fp_limits``)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Limits:
    """Bounds on what a response may make fastpool buffer.

    Exceeding one is a ``ProtocolError`` (the response is not trusted further and its
    connection is discarded), never an unbounded allocation.
    """

    #: Header field lines per head (and trailer lines per trailer section).
    max_headers: int = 100
    #: Bytes per line (status line, header line, chunk-size line), excluding CR LF.
    max_line_size: int = 8192
    #: Bytes per head, status line through the blank line; also bounds a trailer section.
    max_head_size: int = 65536
    #: 1xx interim responses skipped before the final one.
    max_interim: int = 8
    #: Decoded body bytes. Exchange snapshots (exchangeInfo, full books) run to tens of MB.
    max_body_size: int = 256 * 1024 * 1024

    def __post_init__(self) -> None:
        for name in ("max_headers", "max_line_size", "max_head_size", "max_interim"):
            value = getattr(self, name)
            if not isinstance(value, int) or not 0 <= value <= 0xFFFFFFFF:
                raise ValueError(f"{name} must be an int in 0..2**32-1, got {value!r}")
        if self.max_headers < 1 or self.max_line_size < 16 or self.max_head_size < 16:
            raise ValueError("max_headers >= 1, max_line_size >= 16, max_head_size >= 16")
        if not isinstance(self.max_body_size, int) or not 0 <= self.max_body_size < 2**63:
            raise ValueError("max_body_size must be an int in 0..2**63-1")


DEFAULT_LIMITS = Limits()
