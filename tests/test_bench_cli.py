"""`fastpool bench` end to end, with tiny request counts (behaviour only: no timing asserts).

Most runs call the CLI in-process (``fastpool._bench.main``); the clients still run in their
own worker processes, as they do for users. A few runs go through ``python -m fastpool`` to
cover the entry point, exit codes and Ctrl-C.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from bench_helpers import child_pids, embedded_server_or_skip

from fastpool._bench import main as bench_main
from fastpool._bench import options, report, stats
from fastpool._bench.clients import BY_NAME, CLIENT_NAMES, presence

ROOT = Path(__file__).resolve().parent.parent
TINY = ["-n", "30", "--rounds", "2", "--warmup", "5", "--duration", "0.05", "--cold-reps", "2",
        "--reconnect-reps", "2", "--gaps", "1ms", "--sporadic-count", "2", "--seed", "7", "-q"]


def _pure_loads() -> bool:
    try:
        import fastpool._engine._pure  # noqa: F401
    except ImportError:
        return False
    return True


def _run_cli(args, env=None, timeout=120) -> subprocess.CompletedProcess:
    e = dict(os.environ)
    e["PYTHONPATH"] = str(ROOT) + (os.pathsep + e["PYTHONPATH"] if e.get("PYTHONPATH") else "")
    e.update(env or {})
    return subprocess.run([sys.executable, "-m", "fastpool", *args], capture_output=True,
                          text=True, env=e, timeout=timeout, cwd=str(ROOT))


def _rows(doc: dict, mode: str) -> dict:
    return {r["label"]: r for t in doc["tables"] if t["mode"] == mode for r in t["rows"]}


def _hide(tmp_path: Path, module: str) -> dict:
    """Environment in which `import module` fails as if it were not installed."""
    d = tmp_path / "hide"
    (d / module).mkdir(parents=True)
    (d / module / "__init__.py").write_text(
        f"raise ModuleNotFoundError({f'No module named {module!r} (hidden by the test)'!r}, "
        f"name={module!r})\n")
    return {"PYTHONPATH": f"{d}{os.pathsep}{ROOT}"}


# ---- the command line ----------------------------------------------------------------------

def test_help_explains_every_option():
    r = _run_cli(["bench", "--help"])
    assert r.returncode == 0, r.stderr
    for action in options.build_parser()._actions:
        for flag in action.option_strings:
            assert flag in r.stdout
        if action.option_strings and action.help is not argparse_suppress():
            assert action.help, f"{action.option_strings} has no help"
    for name in CLIENT_NAMES:
        assert name in r.stdout
    for mode in options.MODES:
        assert mode in r.stdout


def argparse_suppress():
    import argparse

    return argparse.SUPPRESS


def test_fastpool_without_command_shows_usage():
    r = _run_cli([])
    assert r.returncode == 2
    assert "bench" in r.stdout
    r = _run_cli(["nonsense"])
    assert r.returncode == 2 and "unknown command" in r.stderr


@pytest.mark.parametrize("url, message", [
    ("ftp://127.0.0.1/x", "scheme"),
    ("https://", "no host"),
    ("127.0.0.1:8443/x", "full URL"),
    ("https://127.0.0.1:99999/", "Port out of range"),
    ("http://127.0.0.1:8080/x#frag", "fragment"),
])
def test_bad_url_is_a_clear_usage_error(url, message, capsys):
    assert bench_main([url, "-q"]) == options.EXIT_USAGE
    err = capsys.readouterr().err
    assert "fastpool bench: error:" in err and message in err


def test_bad_url_exit_code_through_the_entry_point():
    r = _run_cli(["bench", "gopher://127.0.0.1/"])
    assert r.returncode == 2
    assert "scheme must be http or https" in r.stderr
    assert "Traceback" not in r.stderr


def test_remote_host_refused_without_explicit_request_count(capsys):
    # 192.0.2.1 is TEST-NET-1: an IP literal, so the refusal needs no resolver and no packet
    assert bench_main(["https://192.0.2.1/api", "-q"]) == options.EXIT_USAGE
    err = capsys.readouterr().err
    assert "not on this machine" in err and "--requests" in err


def test_remote_rule_and_option_parsing():
    o = options.parse(["https://192.0.2.1/api", "-n", "50"])
    assert o.remote and o.requests == 50 and o.requests_given
    assert "sizes" not in options.parse(["https://127.0.0.1:1/x", "--mode", "all"]).modes
    with pytest.raises(options.UsageError):
        options.parse(["https://127.0.0.1:1/x", "--modes", "sizes"])
    o = options.parse(["--mode", "all"])
    assert o.modes == options.MODES and o.inflight == (1, 4, 16, 64)
    o = options.parse([])
    assert o.modes == ("latency", "sporadic", "throughput", "cold") and o.inflight == (16,)
    assert options.parse(["--sizes", "137,4k,1MiB"]).sizes == (137, 4096, 1 << 20)
    assert options.parse(["--skip", "httpx"]).clients == tuple(
        c for c in CLIENT_NAMES if c != "httpx")
    assert options.is_loopback_host("localhost") and options.is_loopback_host("::1")
    assert not options.is_loopback_host("192.0.2.1")
    with pytest.raises(options._ArgparseExit):
        options.parse(["--clients", "nosuchclient"])


def test_percentiles_are_exact_order_statistics():
    s = stats.summarize(list(range(1, 1001)))
    assert s == {"count": 1000, "min": 1, "p50": 500, "p90": 900, "p99": 990, "p999": 999,
                 "max": 1000, "mean": 500}
    assert stats.slower(30, 20) == 1.5 and stats.slower_rate(50.0, 100.0) == 2.0


# ---- end to end ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def engines_run(tmp_path_factory):
    """One tiny run of every fastpool client (both engines), the floor and httpx, in every
    mode, through the real entry point."""
    embedded_server_or_skip()
    out = tmp_path_factory.mktemp("bench") / "run.json"
    r = _run_cli(["bench", *TINY, "--mode", "all", "--inflight", "1,4", "--sizes", "137,64k",
                  "--clients", "floor,fastpool,fastpool-async,fastpool-py,fastpool-py-async,httpx",
                  "--json", str(out), "--samples"], timeout=240)
    return r, json.loads(out.read_text()) if out.exists() else None


def test_cli_end_to_end_on_both_engines(engines_run):
    r, doc = engines_run
    assert r.returncode == 0, r.stdout + r.stderr
    assert doc is not None
    assert "sequential latency" in r.stdout and "× floor" in r.stdout
    lat = _rows(doc, "latency")
    for name in ("floor", "fastpool", "fastpool-async", "httpx"):
        assert lat[name]["status"] == "ok", lat[name]
        assert lat[name]["summary"]["count"] == 30
    pure = "ok" if _pure_loads() else "unavailable"
    for name in ("fastpool-py", "fastpool-py-async"):
        assert lat[name]["status"] == pure, lat[name]
    assert lat["floor"]["x_floor"] == 1.0 and lat["fastpool"]["x_fastpool"] == 1.0
    assert {t["mode"] for t in doc["tables"]} == set(options.PEER_MODES)
    assert {f["mode"] for f in doc["features"]} == set(options.FEATURE_MODES)
    assert all(f["rows"] for f in doc["features"]), doc["features"]
    tp = [t for t in doc["tables"] if t["mode"] == "throughput"]
    assert [t["setting"] for t in tp] == [1, 4]
    for t in tp:
        rows = {x["label"]: x for x in t["rows"]}
        assert rows["fastpool-async"]["req_per_s"] > 0 and rows["floor"]["req_per_s"] > 0
    rec = _rows(doc, "reconnect")
    assert rec["fastpool (full)"]["status"] == "ok"
    # the engine reports each handshake; a full one never resumes, a cached session does
    assert rec["fastpool (full)"]["note"].startswith("resumed 0/")
    assert rec["floor (resumed)"]["note"] == "resumed 2/2"
    assert rec["httpx (own)"]["status"] == "ok"
    assert [t["setting"] for t in doc["tables"] if t["mode"] == "sizes"] == [137, 65536]
    assert doc["target"]["tls"] and doc["target"]["tls_version"] == "1.3"


def test_json_report_follows_its_documented_schema(engines_run):
    r, doc = engines_run
    report.validate(doc)
    assert doc["schema"] == report.SCHEMA
    assert doc["command"].split()[-1] == "--samples" and "bench" in doc["command"]
    assert doc["versions"]["python"] == ".".join(map(str, sys.version_info[:3]))
    assert doc["versions"]["openssl_python"].startswith("OpenSSL")
    assert doc["versions"]["openssl_c_engine"]
    assert doc["versions"]["clients"]["httpx"]
    assert doc["machine"]["cpu_count"] >= 1 and doc["machine"]["kernel"]
    assert doc["seed"] == 7
    for t in doc["tables"]:
        for row in t["rows"]:
            if row["status"] == "ok":
                assert len(row["samples_ns"]) == row["summary"]["count"]
    # the checker catches what the schema forbids
    broken = json.loads(json.dumps(doc))
    del broken["machine"]["kernel"]
    with pytest.raises(ValueError, match="kernel"):
        report.validate(broken)
    broken = json.loads(json.dumps(doc))
    row = broken["tables"][0]["rows"][0]
    row["summary"]["p50"] = row["summary"]["max"] + 1
    with pytest.raises(ValueError, match="order"):
        report.validate(broken)


def test_missing_optional_client_is_reported_not_fatal(tmp_path):
    embedded_server_or_skip()
    out = tmp_path / "r.json"
    r = _run_cli(["bench", *TINY, "--modes", "latency", "--clients", "fastpool,aiohttp",
                  "--json", str(out)], env=_hide(tmp_path, "aiohttp"))
    assert r.returncode == 0, r.stdout + r.stderr
    # listed once, under the tables, with what installs it; not a row of every table
    listed = [x for x in r.stdout.splitlines() if "aiohttp" in x and "--clients" not in x]
    assert listed == ["not installed: aiohttp (pip install 'fastpool[bench]')"], r.stdout
    doc = json.loads(out.read_text())
    report.validate(doc)
    assert doc["clients"]["aiohttp"]["status"] == "not installed"
    assert doc["clients"]["aiohttp"]["install"] == "pip install 'fastpool[bench]'"
    assert doc["clients"]["fastpool"]["status"] == "ran"
    assert "aiohttp" not in _rows(doc, "latency")


def test_presence_of_an_absent_module():
    spec = BY_NAME["pycurl"]
    gone = type(spec)(**{**spec.__dict__, "module": "fastpool_no_such_module_xyz"})
    assert presence(gone).startswith("not installed")
    assert presence(BY_NAME["httpx"]) is None


def test_a_worker_never_launched_answers_with_a_worker_error():
    # post() before launch() used to raise AttributeError: the "not running" message reads the
    # worker's stderr file, which only launch() creates
    from fastpool._bench.worker import Worker, WorkerError

    w = Worker(BY_NAME["httpx"], "auto")
    with pytest.raises(WorkerError, match="not running"):
        w.post({"cmd": "latency", "count": 1})
    with pytest.raises(WorkerError, match="not running"):
        w.reply(1.0)
    w.stop()   # nothing to stop: a no-op


def test_wrong_responses_fail_the_client_instead_of_being_measured(capsys):
    embedded_server_or_skip()
    code = bench_main([*TINY, "--modes", "latency", "--clients", "floor,fastpool,httpx",
                       "--expect-length", "5"])
    out = capsys.readouterr().out
    assert code == options.EXIT_FAILED
    for name in ("floor", "fastpool", "httpx"):
        line = next(x for x in out.splitlines() if x.startswith(f"  {name} "))
        assert "failed" in line and "wrong response" in line


def test_url_on_this_machine(tmp_path, capsys):
    embedded_server_or_skip()
    from fastpool._bench._server import EmbeddedServer
    with EmbeddedServer(tls=True, body_size=321) as srv:
        ca = srv.write_ca(str(tmp_path / "ca.pem"))
        out = tmp_path / "u.json"
        code = bench_main([f"{srv.url}/some/path?x=1", "--cafile", ca, *TINY,
                           "--modes", "latency,cold", "--clients", "floor,fastpool,httpx",
                           "--json", str(out)])
        served = srv.stats()["requests"]
    assert code == 0, capsys.readouterr()
    doc = json.loads(out.read_text())
    report.validate(doc)
    assert doc["target"]["kind"] == "url" and doc["target"]["length"] == 321
    assert doc["target"]["status"] == 200 and not doc["target"]["remote"]
    assert all(r["status"] == "ok" for r in _rows(doc, "latency").values())
    assert served > 3 * 30


def test_plot_without_matplotlib_is_a_clear_error(tmp_path):
    embedded_server_or_skip()
    r = _run_cli(["bench", *TINY, "--plot", str(tmp_path / "x.png")],
                 env=_hide(tmp_path, "matplotlib"))
    assert r.returncode == options.EXIT_MISSING
    assert "matplotlib" in r.stderr and "pip install" in r.stderr
    assert not (tmp_path / "x.png").exists()


def test_plot_writes_a_png(tmp_path, capsys):
    embedded_server_or_skip()
    pytest.importorskip("matplotlib")
    png = tmp_path / "cdf.png"
    assert bench_main([*TINY, "--modes", "latency", "--clients", "floor,fastpool",
                       "--plot", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_ctrl_c_stops_every_worker(tmp_path):
    embedded_server_or_skip()
    e = dict(os.environ)
    e["PYTHONPATH"] = str(ROOT)
    proc = subprocess.Popen(
        [sys.executable, "-m", "fastpool", "bench", "-n", "2000000", "--modes", "latency",
         "--clients", "fastpool,httpx", "--progress"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=e, cwd=str(ROOT))
    try:
        kids: set = set()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(kids) < 2:
            kids = child_pids(proc.pid)
            time.sleep(0.05)
        assert len(kids) >= 2, "the workers did not start"
        time.sleep(1.0)  # into the measurement
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == options.EXIT_INTERRUPTED, err
    assert b"interrupted" in err
    alive = {k for k in kids if os.path.exists(f"/proc/{k}")}
    assert not alive, f"worker processes left behind: {alive}"


# ---- the feature modes ---------------------------------------------------------------------


def test_feature_modes_run_without_peer_workers(tmp_path, capsys):
    """--modes of features only: fastpool's own tables, no client worker started, a JSON
    report that follows the schema."""
    embedded_server_or_skip()
    out = tmp_path / "f.json"
    before = child_pids(os.getpid())
    code = bench_main(["--modes", "pipeline,hedge,choice,busy-poll", "-n", "40", "-r", "1",
                       "-q", "--json", str(out)])
    text = capsys.readouterr().out
    assert code == 0, text
    doc = json.loads(out.read_text())
    report.validate(doc)
    modes = [f["mode"] for f in doc["features"]]  # (busy-poll: a table per idle gap)
    assert modes == sorted(modes, key=list(options.FEATURE_MODES).index)
    assert {f["mode"] for f in doc["features"]} == set(options.FEATURE_MODES)
    assert doc["tables"] == [] and doc["clients"] == {}
    for f in doc["features"]:
        assert f["rows"] and f["title"] in text
        for row in f["rows"]:
            assert len(row) == len(f["columns"]) and isinstance(row[0], str)
    assert set(doc["mode_wall_s"]) == set(options.FEATURE_MODES)
    assert child_pids(os.getpid()) <= before  # every server child was stopped


def test_feature_mode_that_fails_is_a_failed_run(monkeypatch, capsys):
    """A feature mode that raises fails the run (exit code 1) with its error in the notes,
    and the modes after it still run."""
    from fastpool._bench import cli
    from fastpool._bench.features import FeatureTable

    def fake(mode):
        def run(settings):
            if mode == "pipeline":
                raise RuntimeError("a burst failed")
            t = FeatureTable(mode, f"{mode} title", ["client", "p50 us"])
            t.add("Pool", 1.0)
            return [t]
        return run

    monkeypatch.setattr(cli, "runner", fake)
    code = bench_main(["--modes", "pipeline,hedge", "-n", "5", "-q"])
    text = capsys.readouterr().out
    assert code == options.EXIT_FAILED
    assert "the pipeline mode failed: RuntimeError: a burst failed" in text
    assert "hedge title" in text


def test_feature_modes_are_not_in_the_default_run():
    assert not set(options.parse([]).modes) & set(options.FEATURE_MODES)
    assert set(options.parse(["--mode", "all"]).modes) >= set(options.FEATURE_MODES)
    o = options.parse(["--modes", "hedge", "-r", "2"])
    assert o.modes == ("hedge",) and o.feature_rounds == 2
    assert options.parse(["--modes", "hedge"]).feature_rounds == 3
    with pytest.raises(options._ArgparseExit):
        options.parse(["--modes", "hedges"])
