"""``fastpool bench``: parse, start the target and the workers, run the modes, report, clean up.

Whatever happens (an error, Ctrl-C, SIGTERM), every worker process is stopped and reaped and
the embedded server is stopped before this returns.
"""

from __future__ import annotations

import json
import random
import shutil
import signal
import sys
import tempfile
import time
from typing import Optional, Sequence

from . import options as opts
from . import plot, report
from .clients import CLIENTS, presence, version_of
from .features import FeatureTable, Settings, runner
from .modes import Runner
from .output import Progress, print_report
from .worker import Worker, WorkerError


def _error(message: str) -> None:
    sys.stderr.write(f"fastpool bench: error: {message}\n")
    sys.stderr.flush()


class _Terminated(BaseException):
    """SIGTERM: unwinds like Ctrl-C so that the cleanup runs."""


def _on_sigterm(signum, frame) -> None:
    raise _Terminated()


def run(argv: Sequence[str]) -> int:
    t0 = time.monotonic()
    date = report.now_iso()
    try:
        o = opts.parse(argv)
    except opts._ArgparseExit as exc:
        return exc.code
    except opts.UsageError as exc:
        _error(str(exc))
        return opts.EXIT_USAGE
    if o.plot_path:
        missing = plot.available()
        if missing:
            _error(missing)
            return opts.EXIT_MISSING
    if o.url is None:
        try:
            from .._engine import _core  # noqa: F401
        except ImportError as exc:
            _error(f"without a URL, fastpool bench measures against its embedded server, which "
                   f"is part of the C engine, and the C engine did not load ({exc}). Build it "
                   f"(make build), or pass the URL of a server to measure.")
            return opts.EXIT_USAGE
        try:
            from . import _server  # noqa: F401
        except ImportError as exc:
            _error(f"without a URL, fastpool bench measures against its embedded server, which "
                   f"is built on Linux only (epoll, eventfd) and did not load here ({exc}). "
                   f"Pass the URL of a server to measure.")
            return opts.EXIT_USAGE
    seed = o.seed if o.seed is not None else random.SystemRandom().randrange(2 ** 31)
    progress = Progress(o.progress if o.progress is not None else sys.stderr.isatty())
    previous_term = signal.signal(signal.SIGTERM, _on_sigterm) \
        if _main_thread() else None
    tmpdir = tempfile.mkdtemp(prefix="fastpool-bench-")
    workers: dict = {}
    absent: dict = {}
    infos: dict = {}
    mode_times: dict = {}
    server = None
    runner: Optional[Runner] = None
    target = None
    interrupted = False
    peer_modes = [m for m in o.modes if m in opts.PEER_MODES]
    feature_modes = [m for m in o.modes if m in opts.FEATURE_MODES]
    features: list[FeatureTable] = []
    failed_features: list[str] = []
    try:
        progress.step("starting the target")
        if o.url is None:
            from .server import Embedded

            server = Embedded(o, o.body_size, tmpdir)
            target = server.target
        else:
            from .server import url_target

            target = url_target(o)
        if peer_modes:  # (the feature modes run fastpool in this process: no workers)
            _start_workers(o, workers, absent, infos, progress)
        runner = Runner(o, workers, absent, progress, random.Random(seed), tmpdir,
                        server=server)
        if peer_modes:
            started = time.monotonic()
            _check_tls(o, runner, target, tmpdir)
            mode_times["checks"] = round(time.monotonic() - started, 2)
        for mode in peer_modes:
            started = time.monotonic()
            if mode == "sizes":
                runner.sizes()
            elif mode == "reconnect":
                runner.reconnect(target, server)
            else:
                getattr(runner, mode)(target)
            mode_times[mode] = round(time.monotonic() - started, 2)
        if feature_modes and o.url is not None:
            o.notes.append("the feature modes (" + ", ".join(feature_modes) + ") ran against "
                           "local servers of their own, not the URL")
        for mode in feature_modes:
            started = time.monotonic()
            progress.step(f"feature mode {mode}")
            features.extend(_run_feature(o, mode, progress, failed_features))
            mode_times[mode] = round(time.monotonic() - started, 2)
    except opts.UsageError as exc:
        progress.clear()
        _stop_all(workers, server, tmpdir)
        _error(str(exc))
        return opts.EXIT_USAGE
    except (KeyboardInterrupt, _Terminated):
        interrupted = True
    finally:
        progress.clear()
        # interrupted: a worker may be mid-measurement and deaf to "exit": kill it at once
        _stop_all(workers, server, tmpdir, kill=interrupted)
        if previous_term is not None:
            signal.signal(signal.SIGTERM, previous_term)
    if interrupted:
        _error("interrupted; every worker and the server were stopped")
        return opts.EXIT_INTERRUPTED

    tables = runner.tables if runner is not None else []
    code = opts.EXIT_OK
    for t in tables:
        for r in t["rows"]:
            if r["status"] == "failed" and (r["client"].startswith("fastpool")
                                            or r["client"] == "floor"):
                code = opts.EXIT_FAILED
    if failed_features:
        code = opts.EXIT_FAILED
    rejected = runner.rejected if runner is not None else {}
    doc = _document(o, date, time.monotonic() - t0, seed, target, tables, absent, infos, code,
                    rejected)
    doc["features"] = [f.as_json() for f in features]
    doc["mode_wall_s"] = mode_times
    print_report(doc, tables, features=features)
    if o.json_path:
        with open(o.json_path, "w", encoding="utf-8") as f:
            json.dump(doc, f, indent=1)
            f.write("\n")
        sys.stdout.write(f"JSON report: {o.json_path}\n")
    if o.plot_path:
        assert target is not None  # set before any mode ran; every exit before that returned
        if plot.write(tables, o.plot_path, target.describe()):
            sys.stdout.write(f"latency plot (CCDF, log axes): {o.plot_path}\n")
        else:
            _error("--plot: no latency samples to plot")
    return code


def _run_feature(o, mode: str, progress: Progress, failed: list) -> list[FeatureTable]:
    """One feature mode's tables; a mode that raises is a fastpool failure (exit code 1),
    reported with its error, and the run goes on with the next mode."""
    from .._engine import BACKEND  # the pool's default engine: C where it loads

    settings = Settings(requests=o.requests if o.requests_given else None,
                        rounds=o.feature_rounds, engine=BACKEND, plain=o.plain,
                        log=lambda text: progress.step(f"{mode}: {text}"))
    try:
        return runner(mode)(settings)
    except Exception as exc:  # noqa: BLE001 - reported, and the run goes on
        failed.append(mode)
        o.notes.append(f"the {mode} mode failed: {type(exc).__name__}: {exc}")
        return []


def _check_tls(o, runner: Runner, target, tmpdir: str) -> None:
    """Every client must refuse a server whose certificate its CA did not sign."""
    if not target.tls:
        o.notes.append("plain HTTP: no TLS, so no verification to check")
        return
    if target.kind == "url" and not target.ca_file:
        o.notes.append("TLS verification not checked: the URL is verified against the system "
                       "trust store (give --cafile to check it against a private CA)")
        return
    from .server import wrong_ca

    try:
        wrong = wrong_ca(target, tmpdir)
    except ImportError as exc:
        o.notes.append(f"TLS verification not checked: it needs the C engine ({exc})")
        return
    runner.verify_tls(wrong)


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def _start_workers(o, workers: dict, absent: dict, infos: dict, progress) -> None:
    """One process per installed client, started together, then each imports its client."""
    for spec in CLIENTS:
        if spec.name not in o.clients:
            continue
        why = presence(spec)
        if why:
            absent[spec.name] = why
            continue
        workers[spec.name] = Worker(spec, o.loop)
    for w in workers.values():
        w.launch()
    for name in list(workers):
        progress.step(f"starting worker: {name}")
        w = workers[name]
        try:
            infos[name] = w.handshake()
        except WorkerError as exc:
            w.stop(kill=True)
            del workers[name]
            absent[name] = str(exc)
            continue
        if infos[name].get("warning") and infos[name]["warning"] not in o.notes:
            o.notes.append(infos[name]["warning"])


def _stop_all(workers: dict, server, tmpdir: str, kill: bool = False) -> None:
    for w in workers.values():
        try:
            w.stop(kill=kill)
        except Exception:  # noqa: BLE001 - stop the rest regardless
            pass
    if server is not None:
        server.stop()
    shutil.rmtree(tmpdir, ignore_errors=True)


def _document(o, date, wall, seed, target, tables, absent, infos, code, rejected) -> dict:
    client_versions = {}
    clients = {}
    for spec in CLIENTS:
        if spec.name not in o.clients or not any(m in opts.PEER_MODES for m in o.modes):
            continue  # (a run of feature modes only runs no client)
        rows = [r for t in tables for r in t["rows"] if r["client"] == spec.name]
        info = infos.get(spec.name, {})
        if spec.name in absent:
            why = absent[spec.name]
            status = "not installed" if why.startswith("not installed") else "unavailable"
            reason = why
        elif spec.name in rejected:
            status, reason = "rejected", rejected[spec.name]
        elif rows and any(r["status"] == "ok" for r in rows):
            status, reason = "ran", None
        else:
            status = "failed"
            reason = next((r["error"] for r in rows if r.get("error")), None)
        version = info.get("version") if info else (version_of(spec) if spec.name not in absent
                                                    else None)
        client_versions[spec.name] = version
        clients[spec.name] = {"kind": spec.kind, "description": spec.description,
                              "status": status, "reason": reason, "version": version,
                              "install": spec.install_hint() if spec.dist else None,
                              "loop": info.get("loop"), "pid": info.get("pid")}
    options = {k: v for k, v in vars(o).items() if k not in ("argv", "notes")}
    options = json.loads(json.dumps(options, default=list))
    tdict = target.as_dict() if target is not None else {}
    tdict.pop("ca_pem", None)
    tdict.pop("ca_file", None)
    if target is not None:
        tdict["description"] = target.describe()
    doc = {
        "schema": report.SCHEMA,
        "command": report.command_line(o.argv),
        "argv": list(o.argv),
        "date": date,
        "wall_time_s": round(wall, 2),
        "exit_code": code,
        "seed": seed,
        "machine": report.machine(),
        "versions": report.versions(client_versions),
        "options": options,
        "target": tdict,
        "clients": clients,
        "tables": [report.table_json(t, o.samples) for t in tables],
        "features": [],
        "notes": list(o.notes),
    }
    return doc

