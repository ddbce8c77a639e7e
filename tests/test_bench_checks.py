"""`fastpool bench` keeps runs honest: CPU per request, the sporadic mode, refusing error
pages, the round-to-round spread, the summary line, the plot, and the checks that keep a
client that does not verify TLS or does not keep its connection alive out of the tables.

Tiny request counts, no timing asserts (benchmarks measure; tests assert behaviour). The
clients still run in their own worker processes, as they do for users.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fastpool._bench import main as bench_main
from fastpool._bench import modes, options, output, report

ROOT = Path(__file__).resolve().parent.parent
TINY = ["-n", "30", "--rounds", "2", "--warmup", "5", "--duration", "0.05", "--cold-reps", "2",
        "--reconnect-reps", "2", "--gaps", "1ms,5ms", "--sporadic-count", "3", "--seed", "7",
        "-q"]


def _core_or_skip():
    try:
        from fastpool._engine import _core
    except ImportError as exc:
        if os.environ.get("FASTPOOL_EXPECT_C") == "1":
            pytest.fail(f"the C engine was expected but did not load: {exc}")
        pytest.skip(f"the embedded server needs the C engine: {exc}")
    return _core


def _run_cli(args, env=None, timeout=180) -> subprocess.CompletedProcess:
    e = dict(os.environ)
    e["PYTHONPATH"] = str(ROOT) + (os.pathsep + e["PYTHONPATH"] if e.get("PYTHONPATH") else "")
    e.update(env or {})
    return subprocess.run([sys.executable, "-m", "fastpool", *args], capture_output=True,
                          text=True, env=e, timeout=timeout, cwd=str(ROOT))


def _tables(doc: dict, mode: str) -> list:
    return [t for t in doc["tables"] if t["mode"] == mode]


def _rows(table: dict) -> dict:
    return {r["label"]: r for r in table["rows"]}


# ---- a whole small run ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """latency + sporadic (gaps of 1 ms and 5 ms) + throughput + cold, for the floor, both
    fastpool drivers on the C engine and httpx, with a plot and the JSON report."""
    _core_or_skip()
    pytest.importorskip("matplotlib")
    d = tmp_path_factory.mktemp("checks")
    r = _run_cli(["bench", *TINY, "--modes", "latency,sporadic,throughput,cold",
                  "--inflight", "2", "--clients", "floor,fastpool,fastpool-async,httpx",
                  "--json", str(d / "run.json"), "--plot", str(d / "run.png")])
    doc = json.loads((d / "run.json").read_text()) if (d / "run.json").exists() else None
    return r, doc, d / "run.png"


def test_every_table_has_cpu_per_request(run):
    r, doc, _ = run
    assert r.returncode == 0, r.stdout + r.stderr
    report.validate(doc)
    assert {t["mode"] for t in doc["tables"]} == {"latency", "sporadic", "throughput", "cold"}
    for t in doc["tables"]:
        for row in t["rows"]:
            assert row["status"] == "ok", row
            assert row["cpu_per_request_ns"] > 0, (t["title"], row["label"])
            assert row["cpu_user_ns"] + row["cpu_sys_ns"] > 0
    assert r.stdout.count("CPU/req") >= len(doc["tables"])


def test_server_cpu_is_measured_apart_from_the_clients(run):
    _, doc, _ = run
    (latency,) = _tables(doc, "latency")
    # the parent (where the embedded server runs) saw every request the clients made
    assert latency["server_cpu_per_request_ns"] > 0
    for row in latency["rows"]:
        assert row["server"]["measure"]["requests"] >= row["summary"]["count"]
        assert row["server"]["measure"]["accepted"] == 0   # on its pre-opened connection
        assert row["server"]["open"]["accepted"] == 1


def test_sporadic_reports_a_table_per_gap(run):
    _, doc, _ = run
    tables = _tables(doc, "sporadic")
    assert [t["setting"] for t in tables] == [1_000_000, 5_000_000]
    for t in tables:
        rows = _rows(t)
        assert set(rows) == {"floor", "fastpool", "fastpool-async", "httpx"}
        for row in rows.values():
            assert row["summary"]["count"] == 3
            assert row["x_warm"] > 0 and row["x_floor"] > 0
            # the client really was idle about the gap before each request
            assert row["idle_ns_mean"] >= 0.9 * t["setting"]
        assert rows["floor"]["x_floor"] == 1.0
    # 1 ms fits one client at a time; 5 ms fits several staggered over it
    assert not any("side by side" in n for n in tables[0]["notes"])
    assert any("side by side" in n for n in tables[1]["notes"])


def test_round_spread_summary_and_legend_are_shown(run):
    r, doc, _ = run
    (latency,) = _tables(doc, "latency")
    for row in latency["rows"]:
        lo, hi = row["p50_range"]
        assert lo <= row["summary"]["p50"] <= hi or lo <= hi
        assert [x["p50"] for x in row["rounds"]] and len(row["rounds"]) == 2
    assert "p50 rounds" in r.stdout and "req/s rounds" in r.stdout
    summary = [x for x in r.stdout.splitlines() if x.startswith("summary: fastpool is ")]
    assert len(summary) == 1 and "httpx" in summary[0] and "p99.9" in summary[0]
    for name in ("floor", "fastpool", "fastpool-async"):
        assert any(x.startswith(f"{name}: ") for x in r.stdout.splitlines()), name


def test_plot_is_a_png_with_both_panels(run):
    _, _, png = run
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    import struct

    width, height = struct.unpack(">II", data[16:24])
    assert height > width * 0.6   # two panels, one above the other


# ---- the figures behind the summary line ------------------------------------------------------

def _table(rows):
    return {"mode": "latency", "metric": "latency", "rows": [
        {"client": c, "label": c, "status": "ok", "summary": {"p50": p50, "p999": p999}}
        for c, p50, p999 in rows]}


def test_summary_line_names_the_fastest_other_client():
    t = _table([("floor", 10, 20), ("fastpool", 20, 40), ("fastpool-async", 15, 30),
                ("pycurl", 40, 100), ("primp", 50, 60)])
    line = output.summary_line([t])
    assert line.startswith("summary: fastpool is 2.00× faster than the fastest other client, "
                           "pycurl, at p50")
    assert "1.50× faster than the fastest there, primp" in line
    t = _table([("fastpool", 20, 40), ("primp", 10, 30)])
    line = output.summary_line([t])
    assert "2.00× slower than the fastest other client, primp" in line
    assert "1.33× slower at p99.9" in line
    assert output.summary_line([_table([("fastpool", 20, 40)])]) is None


def test_sporadic_groups_fill_each_gap_with_staggered_slots():
    slots = {"a": 2, "b": 3, "c": 4, "d": 9}
    assert modes._groups(["a", "b", "c", "d"], slots, 9) == [
        [("a", 0), ("b", 2), ("c", 5)], [("d", 0)]]
    assert modes._groups(["a", "b"], slots, 1) == [[("a", 0)], [("b", 0)]]


def test_gaps_and_sporadic_counts_parse():
    o = options.parse(["--gaps", "1s,250us,10ms"])
    assert o.gaps == (250_000, 10_000_000, 1_000_000_000)
    assert options.parse([]).sporadic_counts == options.SPORADIC_COUNTS_DEFAULT_RUN
    assert options.parse(["--modes", "sporadic"]).sporadic_counts == \
        options.SPORADIC_COUNTS_FULL
    assert options.parse(["--sporadic-count", "7"]).sporadic_counts == (7, 7, 7, 7)
    assert "sporadic" in options.parse([]).modes
    with pytest.raises(options._ArgparseExit):
        options.parse(["--gaps", "soon"])


# ---- refusing what cannot be measured honestly ----------------------------------------------

def test_error_page_is_refused_unless_expected(tmp_path, capsys):
    _core_or_skip()
    from fastpool._bench._server import EmbeddedServer

    with EmbeddedServer(tls=True, status=404, body=b"not here") as srv:
        ca = srv.write_ca(str(tmp_path / "ca.pem"))
        url = f"{srv.url}/api/v3/missing"
        args = [url, "--cafile", ca, *TINY, "--modes", "latency", "--clients", "fastpool"]
        assert bench_main(args) == options.EXIT_USAGE
        err = capsys.readouterr().err
        assert "404 Not Found" in err and "--expect-status 404" in err
        assert bench_main([*args, "--expect-status", "200"]) == options.EXIT_USAGE
        assert "not the 200" in capsys.readouterr().err
        out = tmp_path / "r.json"
        assert bench_main([*args, "--expect-status", "404", "--json", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert doc["target"]["status"] == 404
    assert all(r["status"] == "ok" for r in doc["tables"][0]["rows"])


def test_plain_http_to_a_tls_port_is_refused(capsys):
    _core_or_skip()
    from fastpool._bench._server import EmbeddedServer

    with EmbeddedServer(tls=True) as srv:
        url = f"http://127.0.0.1:{srv.port}/api/v3/ticker"
        assert bench_main([url, *TINY, "--modes", "latency", "--clients", "fastpool"]) == \
            options.EXIT_USAGE
    err = capsys.readouterr().err
    assert "speaks TLS" in err and "https://127.0.0.1:" in err


_FAKE_HTTPR = '''"""A stand-in for httpr (tests/test_bench_checks.py): {what}."""
import http.client
import ssl
from urllib.parse import urlsplit

MODE = {mode!r}


class _Response:
    def __init__(self, status, content):
        self.status_code, self.content = status, content


class Client:
    def __init__(self, verify=True, ca_cert_file=None, **kw):
        self.ctx = ssl.create_default_context(cafile=ca_cert_file)
        if MODE == "noverify":
            self.ctx.check_hostname = False
            self.ctx.verify_mode = ssl.CERT_NONE
        self.conn = None

    def get(self, url, headers=None):
        u = urlsplit(url)
        if self.conn is None or MODE == "noreuse":
            if self.conn is not None:
                self.conn.close()
            self.conn = http.client.HTTPSConnection(u.hostname, u.port, context=self.ctx,
                                                    timeout=30)
        self.conn.request("GET", u.path, headers=headers or {{}})
        r = self.conn.getresponse()
        return _Response(r.status, r.read())

    def close(self):
        if self.conn is not None:
            self.conn.close()
'''


def _fake_httpr(tmp_path: Path, mode: str, what: str) -> dict:
    d = tmp_path / f"fake-{mode}"
    (d / "httpr").mkdir(parents=True)
    (d / "httpr" / "__init__.py").write_text(_FAKE_HTTPR.format(mode=mode, what=what))
    return {"PYTHONPATH": f"{d}{os.pathsep}{ROOT}"}


def test_a_client_that_does_not_verify_tls_is_not_measured(tmp_path):
    _core_or_skip()
    out = tmp_path / "r.json"
    r = _run_cli(["bench", *TINY, "--modes", "latency", "--clients", "floor,fastpool,httpr",
                  "--json", str(out)],
                 env=_fake_httpr(tmp_path, "noverify", "TLS verification off"))
    assert r.returncode == 0, r.stdout + r.stderr
    doc = json.loads(out.read_text())
    report.validate(doc)
    assert doc["clients"]["httpr"]["status"] == "rejected"
    assert "does not verify TLS" in doc["clients"]["httpr"]["reason"]
    assert doc["clients"]["fastpool"]["status"] == doc["clients"]["floor"]["status"] == "ran"
    assert "httpr" not in _rows(doc["tables"][0])
    line = [x for x in r.stdout.splitlines() if x.startswith("not measured: httpr")]
    assert len(line) == 1 and "does not verify TLS" in line[0]


def test_a_client_that_reconnects_for_every_request_is_reported_failed(tmp_path):
    _core_or_skip()
    out = tmp_path / "r.json"
    r = _run_cli(["bench", *TINY, "--modes", "latency", "--clients", "fastpool,httpr",
                  "--json", str(out)],
                 env=_fake_httpr(tmp_path, "noreuse", "a new connection for every request"))
    assert r.returncode == 0, r.stdout + r.stderr
    rows = _rows(json.loads(out.read_text())["tables"][0])
    assert rows["fastpool"]["status"] == "ok"
    assert rows["httpr"]["status"] == "failed" and rows["httpr"]["summary"] is None
    assert "does not keep its connection alive" in rows["httpr"]["error"]
    assert "does not keep its connection alive" in r.stdout


def test_latency_time_cap_cuts_slow_clients_short_and_says_so(tmp_path, capsys):
    _core_or_skip()
    assert options.parse([]).max_seconds == options.DEFAULT_MAX_SECONDS
    assert options.parse(["-n", "100"]).max_seconds == 0   # -n N means N
    out = tmp_path / "r.json"
    # a cap of 1 µs per round: every Python client stops after its first request of a round
    assert bench_main([*TINY, "--max-seconds", "0.000002", "--modes", "latency",
                       "--clients", "floor,fastpool,httpx", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    rows = _rows(json.loads(out.read_text())["tables"][0])
    assert rows["floor"]["summary"]["count"] == 30        # the floor runs its count in C
    for name in ("fastpool", "httpx"):
        assert rows[name]["summary"]["count"] == 2, rows[name]
        assert rows[name]["note"] == "2 requests (2e-06 s cap)"
    assert "as many as it makes in 2e-06 s" in text
