"""The examples a user runs: the strategy against the mock exchange, end to end."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def test_the_strategy_places_cancels_and_reconciles():
    out = subprocess.run([sys.executable, str(EXAMPLES / "strategy.py"), "--orders", "12",
                          "--fail-every", "4"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    lines = out.stdout.splitlines()
    assert sum("ambiguous (" in line and "-> live" in line for line in lines) == 3
    summary = next(line for line in lines if line.startswith("orders:"))
    assert "9 placed, 3 ambiguous (3 live" in summary and "12 cancelled" in summary
    assert "rate limited 0 times" in summary
    assert "Traceback" not in out.stderr
