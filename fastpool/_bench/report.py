"""The JSON report of ``fastpool bench --json FILE``: its schema, how it is built, a checker.

Schema ``fastpool-bench/2`` (every time is an integer number of nanoseconds; every rate is
requests per second; "× floor"/"× fastpool" figures are "times slower than", see below)::

    {
      "schema": "fastpool-bench/2",
      "command": str,                 # the exact command line, shell-quoted
      "argv": [str],                  # the arguments after "bench"
      "date": str,                    # start, ISO 8601 UTC
      "wall_time_s": float,           # the whole run
      "mode_wall_s": {name: float},   # each mode's share of it ("checks": the TLS check)
      "exit_code": int,
      "seed": int,                    # of the shuffled client order
      "machine": {
        "cpu_model": str, "cpu_count": int, "cpus_allowed": int, "kernel": str,
        "platform": str, "memory_bytes": int | null
      },
      "versions": {
        "python": str, "python_implementation": str,
        "openssl_python": str,        # ssl.OPENSSL_VERSION (the Python clients' TLS)
        "openssl_c_engine": str|null, # the libssl fastpool's C engine runs on
        "fastpool": str, "c_engine": bool,
        "clients": {name: str|null}   # each client's library version
      },
      "options": {...},               # every option after parsing (see fastpool bench --help)
      "target": {
        "kind": "embedded"|"url", "url": str, "description": str, "tls": bool,
        "tls_version": str|null, "status": int, "length": int (-1: not checked),
        "remote": bool, "body_size": int|null
      },
      "clients": {name: {
        "kind": "sync"|"async"|"floor", "description": str,
        "status": "ran"|"not installed"|"unavailable"|"rejected"|"failed",
        "reason": str|null,           # rejected: why (e.g. it does not verify TLS)
        "version": str|null, "install": str|null,   # what installs it
        "loop": str|null, "pid": int|null
      }},
      "tables": [{
        "mode": "latency"|"sporadic"|"throughput"|"cold"|"reconnect"|"sizes",
        "title": str,
        "setting": int|null,          # requests in flight (throughput), body bytes (sizes),
                                      # idle gap ns (sporadic)
        "settings": {...},            # counts, rounds, warm-up, duration of this table
        "metric": "latency"|"throughput",   # what the ratios compare: p50, or req/s
        "reference": str,             # the client of "x_fastpool"
        "notes": [str],               # how to read this table
        "server_cpu_per_request_ns": int,   # latency tables, embedded server only
        "rows": [{
          "client": str, "variant": str|null,  # reconnect: "full", "resumed", "own"
          "label": str, "kind": str,
          "status": "ok"|"failed"|"not installed"|"unavailable", "error": str|null,
          "summary": {"count", "min", "p50", "p90", "p99", "p999", "max", "mean"} | null,
          "req_per_s": float|null,    # throughput: completed / elapsed; else 1 / mean
          "x_floor": float|null,      # row p50 / floor p50 (throughput: floor req/s / row's)
          "x_fastpool": float|null,   # the same against the reference row
          "x_warm": float|null,       # sporadic: p50 after the gap / the client's warm p50
          "rounds": [summary (+ "req_per_s" in throughput, "cpu_ns")],  # per round, in order
          "p50_spread": float|null,   # (max - min) / median of the rounds' p50s
          "p50_range": [int, int]|null,           # lowest and highest round p50
          "req_per_s_range": [float, float]|null, # throughput: lowest and highest round req/s
          "cpu_per_request_ns": int|null,  # (user + system) / requests, the client's process
          "cpu_user_ns": int, "cpu_sys_ns": int,   # over the measured requests
          "idle_ns_mean": int|null,   # sporadic: how long the client was idle, on average
          "server": {"open": {...}, "measure": {...}},   # embedded server: connections
                                      # accepted, requests served, parent CPU ns, around the
                                      # client's commands ("accepted", "requests", "cpu_ns")
          "note": str,
          "samples_ns": [int]         # only with --samples: every latency sample
        }]
      }],
      "features": [{                  # the feature modes (fastpool._bench.features), in order
        "mode": "pipeline"|"hedge"|"choice"|"busy-poll",
        "title": str,                 # what was measured, against what, how often
        "columns": [str],             # the first is the client's; units in the labels
        "rows": [[str | int | float | null]],   # one per client, as the terminal shows it
        "notes": [str]
      }],
      "notes": [str]
    }

Percentiles are exact order statistics (fastpool._bench.stats). A row with status "failed"
has no figures: a client whose responses had a wrong status or body length is not measured.
"""

from __future__ import annotations

import datetime
import os
import platform
import shlex
import ssl
import sys
from typing import Optional

from .options import FEATURE_MODES, PEER_MODES

SCHEMA = "fastpool-bench/2"
MODES = PEER_MODES  #: the modes of "tables" (the feature modes' are in "features")
CLIENT_STATUSES = ("ran", "not installed", "unavailable", "rejected", "failed")

_SUMMARY = ("count", "min", "p50", "p90", "p99", "p999", "max", "mean")
_ROW = {"client": str, "variant": (str, type(None)), "label": str, "kind": str, "status": str,
        "error": (str, type(None)), "summary": (dict, type(None)),
        "req_per_s": (float, int, type(None)), "x_floor": (float, int, type(None)),
        "x_fastpool": (float, int, type(None)), "x_warm": (float, int, type(None)),
        "rounds": list, "p50_spread": (float, int, type(None)),
        "p50_range": (list, type(None)), "req_per_s_range": (list, type(None)),
        "cpu_per_request_ns": (int, type(None)), "cpu_user_ns": int, "cpu_sys_ns": int,
        "idle_ns_mean": (int, type(None)), "server": dict, "note": str}
_TOP = {"schema": str, "command": str, "argv": list, "date": str, "wall_time_s": (float, int),
        "exit_code": int, "seed": int, "machine": dict, "versions": dict, "options": dict,
        "target": dict, "clients": dict, "tables": list, "features": list, "notes": list}


def machine() -> dict:
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = None
    try:
        mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        pass
    try:
        allowed = len(os.sched_getaffinity(0))
    except AttributeError:
        allowed = os.cpu_count() or 1
    return {"cpu_model": model, "cpu_count": os.cpu_count() or 1, "cpus_allowed": allowed,
            "kernel": platform.release(), "platform": platform.platform(),
            "memory_bytes": mem}


def c_engine_openssl() -> Optional[str]:
    """The version string of the libssl the C engine is linked with (it may differ from
    Python's ssl module's), read from the library mapped into this process."""
    try:
        from .._engine import _core  # noqa: F401 - maps libssl into the process
    except ImportError:
        return None
    try:
        import ctypes

        path = None
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as f:
            for line in f:
                name = line.rsplit(" ", 1)[-1].strip()
                if os.path.basename(name).startswith("libssl.so"):
                    path = name
                    break
        if path is None:
            return None
        lib = ctypes.CDLL(path)
        lib.OpenSSL_version.restype = ctypes.c_char_p
        lib.OpenSSL_version.argtypes = [ctypes.c_int]
        return lib.OpenSSL_version(0).decode()
    except (OSError, AttributeError, ValueError):
        return None


def versions(client_versions: dict) -> dict:
    from .. import __version__

    try:
        from .._engine import _core  # noqa: F401

        c_engine = True
    except ImportError:
        c_engine = False
    return {"python": platform.python_version(),
            "python_implementation": platform.python_implementation(),
            "openssl_python": ssl.OPENSSL_VERSION, "openssl_c_engine": c_engine_openssl(),
            "fastpool": __version__, "c_engine": c_engine, "clients": client_versions}


def command_line(argv: list) -> str:
    prog = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "fastpool"
    if prog in ("__main__.py", "-m", "-c", ""):
        head = [os.path.basename(sys.executable), "-m", "fastpool"]
    else:
        head = [prog]
    return shlex.join(head + ["bench"] + list(argv))


def row_json(row: dict, samples: bool) -> dict:
    out = {k: row[k] for k in _ROW}
    if out["req_per_s"] is not None:
        out["req_per_s"] = round(out["req_per_s"], 1)
    if samples:
        out["samples_ns"] = list(row["samples"])
    return out


def table_json(table: dict, samples: bool) -> dict:
    out = {"mode": table["mode"], "title": table["title"], "setting": table["setting"],
           "settings": table["settings"], "metric": table["metric"],
           "reference": table.get("reference", "fastpool"), "notes": table.get("notes", []),
           "rows": [row_json(r, samples) for r in table["rows"]]}
    if table.get("server_cpu_per_request_ns") is not None:
        out["server_cpu_per_request_ns"] = table["server_cpu_per_request_ns"]
    return out


def validate(doc: dict) -> None:
    """Raises ValueError naming the first part of doc that does not follow the schema."""
    def need(obj, key, types, where):
        if key not in obj:
            raise ValueError(f"{where}: missing {key!r}")
        if not isinstance(obj[key], types) or (types is int and isinstance(obj[key], bool)):
            raise ValueError(f"{where}.{key}: {type(obj[key]).__name__} is not {types}")

    for key, types in _TOP.items():
        need(doc, key, types, "report")
    if doc["schema"] != SCHEMA:
        raise ValueError(f"report.schema: {doc['schema']!r}, expected {SCHEMA!r}")
    for key in ("cpu_model", "kernel", "platform"):
        need(doc["machine"], key, str, "machine")
    for key in ("cpu_count", "cpus_allowed"):
        need(doc["machine"], key, int, "machine")
    for key in ("python", "openssl_python", "fastpool"):
        need(doc["versions"], key, str, "versions")
    need(doc["versions"], "clients", dict, "versions")
    need(doc["versions"], "c_engine", bool, "versions")
    for key, types in (("kind", str), ("url", str), ("tls", bool), ("status", int),
                       ("length", int), ("remote", bool), ("description", str)):
        need(doc["target"], key, types, "target")
    for name, c in doc["clients"].items():
        for key in ("kind", "status", "description"):
            need(c, key, str, f"clients.{name}")
        if c["status"] not in CLIENT_STATUSES:
            raise ValueError(f"clients.{name}.status: {c['status']!r}")
    for i, t in enumerate(doc["tables"]):
        where = f"tables[{i}]"
        for key, types in (("mode", str), ("title", str), ("settings", dict), ("metric", str),
                           ("rows", list), ("reference", str)):
            need(t, key, types, where)
        if t["mode"] not in MODES:
            raise ValueError(f"{where}.mode: {t['mode']!r}")
        for j, r in enumerate(t["rows"]):
            rw = f"{where}.rows[{j}]"
            for key, types in _ROW.items():
                need(r, key, types, rw)
            if r["status"] == "ok":
                if r["summary"] is None:
                    raise ValueError(f"{rw}: status ok without a summary")
                for key in _SUMMARY:
                    need(r["summary"], key, int, f"{rw}.summary")
                s = r["summary"]
                if not s["min"] <= s["p50"] <= s["p90"] <= s["p99"] <= s["p999"] <= s["max"]:
                    raise ValueError(f"{rw}.summary: percentiles out of order")
                if r["cpu_per_request_ns"] is None or r["cpu_per_request_ns"] < 0:
                    raise ValueError(f"{rw}: status ok without CPU per request")
            elif r["summary"] is not None:
                raise ValueError(f"{rw}: a {r['status']} row carries figures")
            if "samples_ns" in r and not isinstance(r["samples_ns"], list):
                raise ValueError(f"{rw}.samples_ns: not a list")
    for i, f in enumerate(doc["features"]):
        where = f"features[{i}]"
        for key, types in (("mode", str), ("title", str), ("columns", list), ("rows", list),
                           ("notes", list)):
            need(f, key, types, where)
        if f["mode"] not in FEATURE_MODES:
            raise ValueError(f"{where}.mode: {f['mode']!r}")
        for j, row in enumerate(f["rows"]):
            if not isinstance(row, list) or len(row) != len(f["columns"]):
                raise ValueError(f"{where}.rows[{j}]: not a row of {len(f['columns'])} cells")
            if not all(c is None or isinstance(c, (str, int, float)) for c in row):
                raise ValueError(f"{where}.rows[{j}]: a cell that is not str, number or null")


def now_iso() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
