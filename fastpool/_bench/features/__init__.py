"""The feature modes of ``fastpool bench`` (``--modes pipeline,hedge,choice,busy-poll``):
each measures one of fastpool's own features against fastpool without it and against the
floor, on a server of its own whose behaviour the measurement needs (an embedded server in a
child process, a server that stalls some responses, two addresses of which one is slow).

Unlike the peer modes, they run in the ``fastpool bench`` process itself (fastpool only, no
peer workers) with the server in a child process, so the CPU per request is this process's
user + system time and the server's is not counted. The same modules run standalone as
``bench/pipeline.py``, ``bench/hedge.py``, ``bench/slow_connection.py`` and
``bench/busy_poll.py`` (more options there).

    table       FeatureTable: a titled table of rows, for the terminal and the JSON report
    common      CPU time, percentiles, the settings a mode gets from ``fastpool bench``
    pipeline    one pipeline of 10 quotes vs 10 sequential vs 10 concurrent requests
    hedge       hedged vs unhedged requests against a server that stalls 1 % of answers
    choice      choose="fastest" vs "hottest" with one of two gateway addresses slow
    busy_poll   Pool(busy_poll=...) vs the default wait, back to back and after idle gaps
"""

from __future__ import annotations

from typing import Callable

from .common import Settings
from .table import FeatureTable

#: mode name -> module name (imported when the mode runs: each pulls in what it needs)
FEATURE_MODES = {"pipeline": "pipeline", "hedge": "hedge", "choice": "choice",
                 "busy-poll": "busy_poll"}


def runner(mode: str) -> Callable[[Settings], list[FeatureTable]]:
    """The ``run(settings) -> [FeatureTable]`` of a feature mode."""
    import importlib

    module = importlib.import_module(f"{__name__}.{FEATURE_MODES[mode]}")
    run: Callable[[Settings], list[FeatureTable]] = module.run
    return run


__all__ = ["FEATURE_MODES", "FeatureTable", "Settings", "runner"]
