"""The comparison of issues 3 and 4: fastpool against the floor, on the embedded server and nginx.

    .venv/bin/python bench/compare.py [-n 20000] [--rounds 5] [--duration 0.5] [--json FILE]

Targets: fastpool's embedded server (plain HTTP and HTTPS/TLS 1.3, in this process, its own C
thread) and nginx (plain and HTTPS/TLS 1.3; one worker, access log off, keep-alive for the
whole run; started through tests/support/nginx.py with the test PKI of tests/support/certs.py).
Both serve the same 137-byte ticker body at /api/v3/ticker.

For each target, with the machinery of ``fastpool bench`` (one process per client, shuffled
interleaved rounds, warm-up excluded, every response's status and length checked):

- sequential latency: fastpool.Pool on the C and the pure engine, fastpool.AsyncPool (C),
  the floor (a raw C client on one pre-opened connection), httpx;
- throughput with 1, 4, 16 and 64 requests in flight: AsyncPool, aiohttp, httpx (async),
  pyreqwest (async), and the floor (N C threads) as the ceiling.

Then the targets of the issues, pass or fail beside each (per target):

    C engine p50 <= 1.10 x floor p50           (issue 3)
    C engine p99.9 <= 2 x floor p99.9          (issue 3)
    pure engine p50 <= 1.6 x floor p50         (issue 3)
    AsyncPool p50 <= 1.35 x floor p50          (issue 4)
    AsyncPool at 16 in flight >= 2 x aiohttp req/s   (issue 4)

and the embedded server's cost against nginx, as the floor sees it (issue 3 asks for a raw C
client within 1.2 x of the same client against nginx).

nginx missing (apt-get install -y nginx-light): the nginx targets are skipped, said so.
Every server and worker process is stopped on exit, Ctrl-C included.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import socket
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from fastpool._bench import options as bench_options  # noqa: E402
from fastpool._bench import report  # noqa: E402
from fastpool._bench.clients import BY_NAME  # noqa: E402
from fastpool._bench.modes import Runner  # noqa: E402
from fastpool._bench.output import Progress, format_table  # noqa: E402
from fastpool._bench.server import EMBEDDED_PATH, Target  # noqa: E402
from fastpool._bench.worker import Worker, WorkerError  # noqa: E402

LATENCY_CLIENTS = ("floor", "fastpool", "fastpool-py", "fastpool-async", "httpx")
THROUGHPUT_CLIENTS = ("floor", "fastpool-async", "aiohttp", "httpx-async", "pyreqwest-async")


def _target(name: str, url: str, tls: bool, ca_file, body_len: int) -> Target:
    host, port = url.split("://", 1)[1].rsplit(":", 1)
    ca_pem = Path(ca_file).read_bytes() if ca_file else None
    return Target(kind=name, url=url + EMBEDDED_PATH, base=url, path=EMBEDDED_PATH,
                  host=host, port=int(port), ip=host, family=int(socket.AF_INET), tls=tls,
                  tls_version="1.3" if tls else None, ca_file=ca_file, ca_pem=ca_pem,
                  status=200, length=body_len, remote=False, body_size=body_len)


def _start_workers(names, loop: str) -> tuple:
    workers, absent = {}, {}
    for n in names:
        w = Worker(BY_NAME[n], loop)
        w.launch()
        workers[n] = w
    for n in list(workers):
        try:
            workers[n].handshake()
        except WorkerError as exc:
            workers.pop(n).stop(kill=True)
            absent[n] = str(exc)
    return workers, absent


def _row(tables, mode, client, setting=None):
    for t in tables:
        if t["mode"] == mode and (setting is None or t["setting"] == setting):
            for r in t["rows"]:
                if r["client"] == client and r["status"] == "ok":
                    return r
    return None


def check_targets(tables: list) -> list:
    """(description, measured text, passed: True/False/None) for each issue target."""
    out = []
    floor = _row(tables, "latency", "floor")

    def ratio(client, key, limit, what):
        row = _row(tables, "latency", client)
        if row is None or floor is None:
            why = "not measured" if row is None else "no floor"
            out.append((what, why, None))
            return
        value = row["summary"][key] / floor["summary"][key]
        out.append((what, f"{value:.2f}x ({row['summary'][key] / 1e3:.1f} vs "
                          f"{floor['summary'][key] / 1e3:.1f} µs)", value <= limit))

    ratio("fastpool", "p50", 1.10, "C engine p50 <= 1.10x floor")
    ratio("fastpool", "p999", 2.0, "C engine p99.9 <= 2x floor p99.9")
    ratio("fastpool-py", "p50", 1.6, "pure engine p50 <= 1.6x floor")
    ratio("fastpool-async", "p50", 1.35, "AsyncPool p50 <= 1.35x floor")
    a = _row(tables, "throughput", "fastpool-async", 16)
    b = _row(tables, "throughput", "aiohttp", 16)
    what = "AsyncPool req/s at 16 in flight >= 2x aiohttp"
    if a is None or b is None:
        out.append((what, "not measured", None))
    else:
        value = a["req_per_s"] / b["req_per_s"]
        out.append((what, f"{value:.2f}x ({a['req_per_s']:,.0f} vs {b['req_per_s']:,.0f} req/s)",
                    value >= 2.0))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n\n", 1)[1])
    ap.add_argument("-n", "--requests", type=int, default=20_000,
                    help="sequential requests per client and target (default 20000)")
    ap.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default 5)")
    ap.add_argument("--warmup", type=int, default=1000, help="warm-up requests (default 1000)")
    ap.add_argument("--duration", type=float, default=0.5,
                    help="seconds per client per throughput round (default 0.5)")
    ap.add_argument("--inflight", default="1,4,16,64", help="in-flight levels (default 1,4,16,64)")
    ap.add_argument("--targets", default="embedded,embedded-tls,nginx,nginx-tls",
                    help="which targets (default: all four)")
    ap.add_argument("--loop", default="auto", choices=("auto", "asyncio", "uvloop"))
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--json", metavar="FILE", help="every table and check, as JSON")
    ap.add_argument("-q", "--quiet", action="store_true", help="no progress line")
    args = ap.parse_args()
    wanted = [t.strip() for t in args.targets.split(",") if t.strip()]

    from support.certs import generate_certs
    from support.nginx import TICKER_BODY, NginxServer, NginxUnavailable, find_nginx

    from fastpool._bench._server import EmbeddedServer

    o = bench_options.parse(["-n", str(args.requests), "--rounds", str(args.rounds),
                             "--warmup", str(args.warmup), "--duration", str(args.duration),
                             "--inflight", args.inflight, "--loop", args.loop, "-q"])
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2 ** 31)
    rng = random.Random(seed)
    progress = Progress(not args.quiet and sys.stderr.isatty())
    tmp = tempfile.mkdtemp(prefix="fastpool-compare-")
    servers, nginx, workers = [], None, {}
    by_kind: dict = {}   # target kind -> embedded server (its counters: the keep-alive check)
    notes: list = []
    results: dict = {}
    interrupted = False
    t0 = time.monotonic()
    try:
        targets = []
        if "embedded" in wanted:
            s = EmbeddedServer(body=TICKER_BODY).start()
            servers.append(s)
            by_kind["embedded"] = s
            targets.append(_target("embedded", s.url, False, None, len(TICKER_BODY)))
        if "embedded-tls" in wanted:
            s = EmbeddedServer(body=TICKER_BODY, tls=True, tls_min="1.3",
                                     tls_max="1.3").start()
            servers.append(s)
            by_kind["embedded-tls"] = s
            ca = s.write_ca(os.path.join(tmp, "embedded-ca.pem"))
            targets.append(_target("embedded-tls", s.url, True, ca, len(TICKER_BODY)))
        if {"nginx", "nginx-tls"} & set(wanted):
            try:
                find_nginx()
                certs = generate_certs(Path(tmp) / "certs")
                nginx = NginxServer(certs, Path(tmp) / "nginx", keepalive_requests=10_000_000,
                                    keepalive_timeout=600, ipv6=False, cert_listeners=False,
                                    error_log_level="warn",
                                    extra_http="  access_log off;\n").start()
                if "nginx" in wanted:
                    targets.append(_target("nginx", f"http://127.0.0.1:{nginx.port('plain')}",
                                           False, None, len(TICKER_BODY)))
                if "nginx-tls" in wanted:
                    targets.append(_target("nginx-tls",
                                           f"https://127.0.0.1:{nginx.port('tls13')}", True,
                                           str(certs.ca), len(TICKER_BODY)))
            except NginxUnavailable as exc:
                notes.append(f"nginx targets skipped: {exc}")
        names = sorted(set(LATENCY_CLIENTS) | set(THROUGHPUT_CLIENTS))
        progress.step("starting the workers")
        workers, absent = _start_workers(names, args.loop)
        lat_runner_workers = {n: w for n, w in workers.items() if n in LATENCY_CLIENTS}
        tp_runner_workers = {n: w for n, w in workers.items() if n in THROUGHPUT_CLIENTS}
        for target in targets:
            o.clients = LATENCY_CLIENTS
            lat = Runner(o, lat_runner_workers,
                         {n: why for n, why in absent.items() if n in LATENCY_CLIENTS},
                         progress, rng, tmp, server=by_kind.get(target.kind))
            lat.latency(target)
            o.clients = THROUGHPUT_CLIENTS
            tp = Runner(o, tp_runner_workers,
                        {n: why for n, why in absent.items() if n in THROUGHPUT_CLIENTS},
                        progress, rng, tmp, server=by_kind.get(target.kind))
            tp.throughput(target)
            results[target.kind] = {"target": target, "tables": lat.tables + tp.tables}
    except KeyboardInterrupt:
        interrupted = True
        sys.stderr.write("\ninterrupted: stopping every worker and server\n")
        return 130
    finally:
        progress.clear()
        for w in workers.values():
            w.stop(kill=interrupted)  # a worker mid-measurement does not hear "exit"
        if nginx is not None:
            nginx.stop()
        for s in servers:
            s.stop()
        shutil.rmtree(tmp, ignore_errors=True)

    doc = {"date": report.now_iso(), "wall_time_s": round(time.monotonic() - t0, 1),
           "seed": seed, "machine": report.machine(),
           "versions": report.versions({}), "targets": {}, "notes": notes}
    m = doc["machine"]
    print(f"bench/compare.py — {m['cpu_model']} × {m['cpu_count']}, Linux {m['kernel']}, "
          f"Python {doc['versions']['python']}")
    print(f"{args.requests} sequential requests per client over {args.rounds} rounds; "
          f"throughput {args.duration} s per client per round; seed {seed}\n")
    for kind, res in results.items():
        t: Target = res["target"]
        print(f"=== {kind}: {t.base} ({'HTTPS, TLS 1.3' if t.tls else 'plain HTTP'}) ===\n")
        for table in res["tables"]:
            print(format_table(table) + "\n")
        checks = check_targets(res["tables"])
        print("targets:")
        for what, measured, ok in checks:
            mark = "n/a " if ok is None else ("PASS" if ok else "FAIL")
            print(f"  [{mark}] {what:<46} {measured}")
        print()
        doc["targets"][kind] = {
            "url": t.url,
            "tables": [report.table_json(x, False) for x in res["tables"]],
            "checks": [{"target": w, "measured": mtxt, "passed": ok} for w, mtxt, ok in checks]}
    cost = []
    for plain, name in ((("embedded", "nginx"), "plain"), (("embedded-tls", "nginx-tls"), "TLS")):
        if plain[0] in results and plain[1] in results:
            a = _row(results[plain[0]]["tables"], "latency", "floor")
            b = _row(results[plain[1]]["tables"], "latency", "floor")
            if a and b:
                r50 = a["summary"]["p50"] / b["summary"]["p50"]
                r99 = a["summary"]["p99"] / b["summary"]["p99"]
                cost.append((name, a, b, r50, r99))
    if cost:
        print("embedded server vs nginx, as the floor sees it (p50 / p99, µs):")
        for name, a, b, r50, r99 in cost:
            print(f"  {name:<6} embedded {a['summary']['p50'] / 1e3:.1f} / "
                  f"{a['summary']['p99'] / 1e3:.1f}   nginx {b['summary']['p50'] / 1e3:.1f} / "
                  f"{b['summary']['p99'] / 1e3:.1f}   ratio {r50:.2f} / {r99:.2f}   "
                  f"[{'PASS' if r50 <= 1.2 else 'FAIL'}] embedded floor p50 <= 1.2x nginx's")
            doc.setdefault("embedded_vs_nginx", {})[name] = {"p50_ratio": round(r50, 3),
                                                           "p99_ratio": round(r99, 3)}
    for n in notes:
        print(f"note: {n}")
    print(f"wall time {doc['wall_time_s']} s")
    if args.json:
        Path(args.json).write_text(json.dumps(doc, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
