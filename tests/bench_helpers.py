"""Helpers shared by the tests of ``fastpool bench`` (tests/test_bench_*.py)."""

from __future__ import annotations

import os
from typing import Optional

import pytest


def embedded_server_or_skip() -> None:
    """Skips (fails under FASTPOOL_EXPECT_C=1) when the embedded server cannot load: it is
    compiled with the C engine."""
    try:
        from fastpool._bench import _server  # noqa: F401
        from fastpool._engine import _core  # noqa: F401
    except ImportError as exc:
        if os.environ.get("FASTPOOL_EXPECT_C") == "1":
            pytest.fail(f"the C engine was expected but did not load: {exc}")
        pytest.skip(f"the embedded server needs the C engine: {exc}")


def child_pids(pid: Optional[int] = None) -> set[int]:
    """The child processes of pid (default: this process), zombies too: a child not reaped
    is still there."""
    parent = os.getpid() if pid is None else pid
    kids = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:  # gone meanwhile
            continue
        # pid (comm) state ppid ...: comm may hold spaces and parentheses
        if int(stat.rsplit(")", 1)[1].split()[1]) == parent:
            kids.add(int(entry))
    return kids
