"""``fastpool bench``: the benchmark users run to choose, and the proof of fastpool's claim.

It measures fastpool (C and pure-Python engines, sync and async) beside a raw C client on
the same connection engine (the floor: no Python in the loop) and every Python HTTP client
installed, each in its own process, against fastpool's embedded HTTPS server or a URL.

Modules, one job each:

    options   the command line, its checks and the remote-host rule
    clients   which clients exist, whether they are installed, their versions
    server    the target: the embedded server (in this process, its own C thread) or a URL
    worker    one client's process, and the parent's handle on it (pickles over pipes)
    adapters  how each client library sends a GET (runs in the worker)
    measure   the timed loops (run in the worker)
    modes     latency, throughput, cold start, reconnect, sizes: who runs what, when
    stats     percentiles, rates, ratios
    output    progress and the terminal tables
    report    the JSON report and its schema
    plot      latency CDFs (matplotlib, optional)
    cli       the whole run, and its cleanup
"""

from __future__ import annotations

from typing import Optional, Sequence


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Runs ``fastpool bench`` with argv (the arguments after "bench"); the exit code."""
    import sys

    from .cli import run

    return run(sys.argv[2:] if argv is None else argv)
