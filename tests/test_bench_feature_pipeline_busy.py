"""The pipeline and busy-poll feature modes (fastpool/_bench/features/), with tiny counts:
the tables' shape and honesty (rows, positive finite cells, ratios that are the p50 cells'),
the pure engine's variants, the standalone main(), and that no server child outlives a run.
Behaviour only: no timing asserts."""

from __future__ import annotations

import math
import os

import pytest
from bench_helpers import child_pids, embedded_server_or_skip

from fastpool._bench.features import Settings, busy_poll, common, pipeline


def _pure_or_skip() -> None:
    try:
        import fastpool._engine._pure  # noqa: F401
    except ImportError as exc:
        pytest.skip(f"the pure engine does not load: {exc}")


@pytest.fixture
def no_leftover_child():
    if not os.path.isdir("/proc/self"):
        pytest.skip("needs /proc")
    before = child_pids()
    yield
    assert child_pids() - before == set(), "a child process outlived the run"


def _positive(value: object) -> bool:
    return isinstance(value, float) and math.isfinite(value) and value > 0


def test_pipeline_run(no_leftover_child):
    embedded_server_or_skip()
    log: list[str] = []
    (table,) = pipeline.run(Settings(requests=3, rounds=1, log=log.append))
    assert table.mode == "pipeline"
    assert "HTTPS" in table.title and "n=3 bursts x 1 rounds" in table.title
    expected = [c for c in pipeline.CLIENTS
                if common.uvloop_installed() or not c.startswith("uvloop")]
    assert [r[0] for r in table.rows] == expected
    assert table.columns == pipeline.COLUMNS
    floor_p50 = table.cell("floor", "p50 us")
    floor_cpu = table.cell("floor", "CPU us")
    for row in table.rows:
        name = row[0]
        for col in ("p50 us", "p99 us", "CPU us", "p50 x floor", "CPU x floor"):
            assert _positive(table.cell(name, col)), (name, col, row)
        assert table.cell(name, "p50 x floor") == pytest.approx(
            table.cell(name, "p50 us") / floor_p50)
        assert table.cell(name, "CPU x floor") == pytest.approx(
            table.cell(name, "CPU us") / floor_cpu)
    assert table.cell("floor", "p50 x floor") == pytest.approx(1.0)
    assert any("uvloop" in n for n in table.notes) != common.uvloop_installed()
    assert log == ["pipeline: round 1/1 done"]
    assert "sync-pipeline" in table.format()


def test_pipeline_python_engine_has_no_floor(no_leftover_child):
    embedded_server_or_skip()
    _pure_or_skip()
    (table,) = pipeline.run(Settings(requests=2, rounds=1, engine="python", plain=True))
    assert "engine python" in table.title and "HTTP," in table.title
    names = [r[0] for r in table.rows]
    assert "floor" not in names and "sync-pipeline" in names and "asyncio-gather" in names
    assert any("no floor" in n for n in table.notes)
    for name in names:
        assert _positive(table.cell(name, "p50 us")) and _positive(table.cell(name, "CPU us"))
        assert table.cell(name, "p50 x floor") is None
        assert table.cell(name, "CPU x floor") is None


def test_pipeline_main_prints_the_table(capsys, no_leftover_child):
    embedded_server_or_skip()
    pipeline.main(["-n", "2", "--rounds", "1", "--burst", "3", "--plain",
                   "--only", "sync-pipeline,sync-sequential"])
    out = capsys.readouterr()
    lines = out.out.splitlines()
    assert lines[0].startswith("pipeline: HTTP,") and "bursts of 3" in lines[0]
    assert [line.split()[0] for line in lines[2:5]] == ["floor", "sync-pipeline",
                                                         "sync-sequential"]
    assert "round 1/1 done" in out.err


def test_pipeline_stops_the_server_when_a_client_fails(monkeypatch, no_leftover_child):
    embedded_server_or_skip()

    def broken(setup: object, n: int) -> pipeline.Result:
        raise RuntimeError("client failed")

    monkeypatch.setitem(pipeline.CLIENTS, "sync-pipeline", broken)
    with pytest.raises(RuntimeError, match="client failed"):
        pipeline.measure(Settings(rounds=1, plain=True), n=1, only=["sync-pipeline"], warm=1)


def test_busy_poll_run(no_leftover_child):
    embedded_server_or_skip()
    log: list[str] = []
    tables = busy_poll.run(Settings(requests=40, rounds=1, log=log.append))
    assert len(tables) == len(busy_poll.DEFAULT_GAPS) == 2
    back, gapped = tables
    assert "gap none (back to back), 40 requests x 1 rounds" in back.title
    assert "gap 1 ms, 10 requests x 1 rounds" in gapped.title  # count_after(40, 1 ms)
    assert log == ["busy-poll: gap 0 ms: round 1/1 done", "busy-poll: gap 1 ms: round 1/1 done"]
    for table in tables:
        assert table.mode == "busy-poll" and "HTTPS" in table.title
        assert [r[0] for r in table.rows] == ["floor", "pool busy=off", "pool busy=20us",
                                              "pool busy=100us"]
        floor_p50 = table.cell("floor", "p50 us")
        for row in table.rows:
            for col in busy_poll.COLUMNS[1:]:
                assert _positive(table.cell(row[0], col)), (row, col)
            assert table.cell(row[0], "p50 x floor") == pytest.approx(
                table.cell(row[0], "p50 us") / floor_p50)
            assert (table.cell(row[0], "p50 us") <= table.cell(row[0], "p99 us")
                    <= table.cell(row[0], "p99.9 us"))


def test_busy_poll_python_engine_says_c_only(no_leftover_child):
    (table,) = busy_poll.run(Settings(requests=10, rounds=1, engine="python"))
    assert table.mode == "busy-poll" and table.rows == []
    assert any("C engine" in n and "ValueError" in n for n in table.notes)
    assert "not measured" in table.format()


def test_busy_poll_main_prints_the_tables(capsys, no_leftover_child):
    embedded_server_or_skip()
    busy_poll.main(["-n", "20", "--rounds", "1", "--gaps", "0,0.002", "--busy", "50e-6",
                    "--plain", "--hogs", "1"])
    out = capsys.readouterr()
    assert out.out.count("busy-poll: HTTP,") == 2 and "1 hog process(es)" in out.out
    assert "pool busy=50us" in out.out and "pool busy=20us" not in out.out
    assert "gap 2 ms, 5 requests x 1 rounds" in out.out
    assert "gap 2 ms: round 1/1 done" in out.err


def test_busy_poll_count_after():
    assert [busy_poll.count_after(1000, g) for g in (0, 0.001, 0.01)] == [1000, 250, 50]
    assert busy_poll.count_after(3, 0.01) == 1
