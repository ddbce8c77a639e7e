"""The hedge and choice feature modes of `fastpool bench` (fastpool/_bench/features/hedge.py,
choice.py), with tiny counts: the tables' structure and honesty, the python engine, the
standalone main(), and the server child always stopped. No timing asserts: the only latency
bounds checked are lower bounds the server's hold guarantees."""

from __future__ import annotations

import math
import subprocess

import pytest
from conftest import load_engine

from fastpool._bench.features import (
    FEATURE_MODES,
    FeatureTable,
    Settings,
    choice,
    common,
    hedge,
    runner,
)

LATENCY = ["p50", "p99", "p99.9", "max"]


@pytest.fixture
def children(monkeypatch) -> list[subprocess.Popen]:
    """Every child the modes start (holding_server calls common.python_child)."""
    started: list[subprocess.Popen] = []
    real = common.python_child

    def spy(*args, **kwargs):
        proc = real(*args, **kwargs)
        started.append(proc)
        return proc

    monkeypatch.setattr(common, "python_child", spy)
    return started


def _all_stopped(started: list[subprocess.Popen]) -> None:
    assert started, "no server child was started"
    for proc in started:
        assert proc.returncode is not None, f"server child {proc.pid} left running"


def _positive(table: FeatureTable, columns: list[str]) -> None:
    for name in columns:
        for value in table.column(name):
            assert isinstance(value, float) and math.isfinite(value) and value > 0, (name, value)


def _count(value) -> int:
    assert isinstance(value, int) and not isinstance(value, bool) and value >= 0, value
    return value


@pytest.fixture
def quick_choice(monkeypatch) -> None:
    """choice's warm-ups and its pause for the slow-connection check, cut to a token (the
    default run's 1.2 s pause per pool would make each test ~10 s): structure only."""
    monkeypatch.setattr(choice, "WARMUP", 10)
    monkeypatch.setattr(choice, "CHECK_PAUSE", 0.01)


# ---- hedge ---------------------------------------------------------------------------------

def test_hedge_modes_registered():
    assert FEATURE_MODES["hedge"] == "hedge" and FEATURE_MODES["choice"] == "choice"
    assert runner("hedge") is hedge.run and runner("choice") is choice.run


def test_hedge_table_c_engine(children):
    load_engine("c")
    # 300 measured GETs per client: the server holds every 100th, so each client meets ~3
    tables = hedge.run(Settings(requests=300, rounds=1))
    _all_stopped(children)
    assert len(tables) == 1
    t = tables[0]
    assert t.mode == "hedge" and t.columns == hedge.COLUMNS
    assert "300" in t.title and "1 in 100" in t.title and "50 ms" in t.title
    assert "after=0.002" in t.title and "engine c" in t.title
    labels = [r[0] for r in t.rows]
    expected = [hedge.FLOOR]
    drivers = ["Pool", "AsyncPool/asyncio"]
    if common.uvloop_installed():
        drivers.append("AsyncPool/uvloop")
    else:
        assert any("uvloop" in n and "not installed" in n for n in t.notes)
    for d in drivers:
        expected += [f"{d} unhedged", f"{d} hedged"]
    assert labels == expected
    _positive(t, LATENCY + ["cpu/req"])
    hedged_copies = 0
    for row in t.rows:
        label = row[0]
        hedges, won, opened = (_count(t.cell(label, c)) for c in ("hedges", "won", "opened"))
        slow = _count(t.cell(label, ">10ms"))
        assert t.cell(label, "p50") <= t.cell(label, "p99") <= t.cell(label, "p99.9") \
            <= t.cell(label, "max")
        if label.endswith(" hedged"):
            assert hedges >= won >= 0
            hedged_copies += hedges
        else:
            assert hedges == 0 and won == 0, label
            # nothing cuts a held answer short: the stall shows in full (a lower bound)
            assert slow >= 1 and t.cell(label, "max") >= 50_000, label
    assert hedged_copies >= 1   # a 50 ms hold against a 2 ms hedge delay
    assert t.cell(hedge.FLOOR, "opened") == 0


def test_hedge_python_engine_has_no_floor(children):
    load_engine("python")
    [t] = hedge.run(Settings(requests=200, rounds=1, engine="python"))
    _all_stopped(children)
    labels = [r[0] for r in t.rows]
    assert hedge.FLOOR not in labels
    assert "Pool unhedged" in labels and "Pool hedged" in labels
    assert any("floor" in n and "C engine" in n for n in t.notes)
    assert "engine python" in t.title
    _positive(t, LATENCY + ["cpu/req"])
    assert t.format().splitlines()[0] == t.title


def test_hedge_main_prints_the_table(children, capsys):
    load_engine("python")
    hedge.main(["-n", "50", "--stall-every", "10", "--stall-ms", "20", "--after", "p95",
                "--engine", "python", "--only", "Pool "])
    _all_stopped(children)
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("hedge: 50 sequential GETs") and "1 in 10" in out[0]
    assert "after=p95" in out[0]
    assert out[1].split()[:2] == ["client", "p50"]
    # --only "Pool ": the sync pool's two rows, not AsyncPool's
    assert [line.split("  ")[0] for line in out[2:4]] == ["Pool unhedged", "Pool hedged"]
    assert not any(line.startswith("AsyncPool") for line in out)


def test_hedge_stops_the_server_when_a_client_raises(children, monkeypatch):
    load_engine("python")

    def broken(*args):
        raise RuntimeError("client failed")

    monkeypatch.setattr(hedge, "run_sync", broken)
    with pytest.raises(RuntimeError, match="client failed"):
        hedge.run(Settings(requests=10, rounds=1, engine="python"))
    _all_stopped(children)


# ---- choice --------------------------------------------------------------------------------

def _choice_labels(drivers, ks) -> list[str]:
    return [f"{name} {choose}, {k} {worker}{'s' if k > 1 else ''}"
            for k in ks for name, worker in drivers for choose in ("hottest", "fastest")]


def test_choice_table(children, quick_choice):
    load_engine("c")
    logged: list[str] = []
    [t] = choice.run(Settings(requests=40, rounds=1, log=logged.append))
    _all_stopped(children)
    assert t.mode == "choice" and t.columns == choice.COLUMNS
    assert "40 GETs per pool" in t.title and "127.0.0.2 held 1 ms" in t.title
    assert "engine c" in t.title and "plain HTTP" in t.title
    labels = [r[0] for r in t.rows]
    assert labels == _choice_labels([("Pool", "thread"), ("AsyncPool/asyncio", "task")], (1, 4))
    assert sum("fastest" in label for label in labels) == 4
    assert any("floor" in n for n in t.notes)
    assert len(logged) == len(labels)
    _positive(t, ["p50", "p90", "p99", "cpu/req"])
    for label in labels:
        assert t.cell(label, "p50") <= t.cell(label, "p90") <= t.cell(label, "p99")
        slow = t.cell(label, "slow %")
        assert isinstance(slow, float) and 0.0 <= slow <= 100.0
        _count(t.cell(label, "rotated"))


def test_choice_python_engine_main(children, quick_choice, capsys):
    load_engine("python")
    choice.main(["-n", "20", "--slow-ms", "2", "--concurrency", "2", "--engine", "python",
                 "--drivers", "asyncio"])
    _all_stopped(children)
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("choice: 20 GETs per pool") and "held 2 ms" in out[0]
    assert "engine python" in out[0]
    assert out[1].split()[:2] == ["client", "p50"]
    assert [line.split("  ")[0] for line in out[2:4]] == [
        "AsyncPool/asyncio hottest, 2 tasks", "AsyncPool/asyncio fastest, 2 tasks"]


def test_choice_main_rejects_an_unknown_driver(children):
    with pytest.raises(SystemExit):
        choice.main(["--drivers", "sync,curl"])
    assert not children   # refused before the server started


def test_choice_stops_the_server_when_a_client_raises(children, monkeypatch):
    def broken(*args):
        raise RuntimeError("client failed")

    monkeypatch.setitem(choice.DRIVERS, "sync", ("Pool", broken, "thread"))
    with pytest.raises(RuntimeError, match="client failed"):
        choice.run(Settings(requests=10, rounds=1))
    _all_stopped(children)


# ---- the server child ----------------------------------------------------------------------

def test_stop_child_kills_a_child_that_ignores_stdin():
    proc = common.python_child("import time; time.sleep(60)")
    common.stop_child(proc, timeout=0.2)
    assert proc.returncode is not None


def test_holding_server_holds_only_the_slow_address():
    import socket
    import time

    with common.holding_server(0.05, slow_address="127.0.0.2") as port:
        took = {}
        for address in ("127.0.0.1", "127.0.0.2"):
            with socket.create_connection((address, port), timeout=5) as s:
                t = time.monotonic()
                s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                assert s.recv(4096).startswith(b"HTTP/1.1 200 OK")
                took[address] = time.monotonic() - t
        assert took["127.0.0.2"] >= 0.05   # the hold is a lower bound
