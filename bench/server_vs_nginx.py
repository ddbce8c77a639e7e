"""Sequential request latency: the embedded server vs nginx, measured by the raw C client.

    .venv/bin/python bench/server_vs_nginx.py [--n 100000] [--rounds 3] [--pin]

Builds bench/server_latency.c, starts the embedded server (plain and TLS) in this process
and nginx (one worker, from a temporary config: the same 137-byte body, access_log off,
keepalive_requests 1000000, a P-256 certificate like the embedded server's) on free loopback
ports, then runs the client against each target in turn, alternating targets for --rounds
rounds so that drift in the machine's state hits both alike. Prints the median over rounds
of each percentile, and the ratio embedded / nginx. --pin puts the client on CPU 0 and both
servers on CPU 1. nginx is stopped (SIGQUIT, then SIGKILL if it lingers) before exit, also
on errors and Ctrl-C.

Needs gcc, libssl-dev, nginx (apt-get install -y nginx-light) and the openssl CLI.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)

from fastpool._bench._server import EmbeddedServer  # noqa: E402

METRICS = ("p50", "p90", "p99", "p999", "max")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port}")


def build_client(out_dir: str) -> str:
    exe = os.path.join(out_dir, "server_latency")
    subprocess.run(["gcc", "-O2", "-std=c11", "-Wall", "-Wextra", "-o", exe,
                    os.path.join(HERE, "server_latency.c"), "-lssl", "-lcrypto"], check=True)
    return exe


def make_cert(tmp: str) -> tuple[str, str]:
    cert, key = os.path.join(tmp, "cert.pem"), os.path.join(tmp, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", cert,
                    "-days", "2", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                   check=True, capture_output=True)
    return cert, key


def nginx_conf(tmp, plain_port, tls_port, body, cert, key, pin):
    if any(ch in body for ch in b"'\\$"):
        raise ValueError("the body must not need quoting in nginx.conf")
    affinity = "worker_cpu_affinity 10;" if pin else ""  # bit mask, rightmost = CPU 0
    temp = "\n".join(f"  {d}_temp_path {tmp}/{d};" for d in
                     ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    return f"""
daemon off;
master_process on;
worker_processes 1;
{affinity}
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 256; }}
http {{
  access_log off;
  keepalive_requests 1000000;
  keepalive_timeout 300s;
{temp}
  default_type application/json;
  ssl_protocols TLSv1.2 TLSv1.3;
  server {{
    listen 127.0.0.1:{plain_port};
    listen 127.0.0.1:{tls_port} ssl;
    ssl_certificate {cert};
    ssl_certificate_key {key};
    location / {{ return 200 '{body.decode()}'; }}
  }}
}}
"""


def fetch_body(port: int) -> bytes:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    conn.request("GET", "/")
    body = conn.getresponse().read()
    conn.close()
    return body


def run_client(exe, port, tls, n, warmup, label, pin):
    cmd = [exe, "--port", str(port), "--n", str(n), "--warmup", str(warmup), "--json",
           "--label", label]
    if tls:
        cmd.append("--tls")
    if pin:
        cmd = ["taskset", "-c", "0"] + cmd
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=600)
    return json.loads(out.stdout)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=100_000, help="timed requests per run")
    ap.add_argument("--warmup", type=int, default=2_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--body-size", type=int, default=137)
    ap.add_argument("--pin", action="store_true", help="client on CPU 0, servers on CPU 1")
    ap.add_argument("--nginx", default=shutil.which("nginx") or "/usr/sbin/nginx")
    ap.add_argument("--json", action="store_true", help="also print every run as JSON")
    args = ap.parse_args()
    if not os.path.exists(args.nginx):
        print("nginx not found: apt-get install -y nginx-light", file=sys.stderr)
        return 2

    tmp = tempfile.mkdtemp(prefix="fp-nginx-")
    nginx = None
    servers = []
    try:
        exe = build_client(tmp)
        if args.pin:
            os.sched_setaffinity(0, {1})  # the server threads inherit this thread's mask
        plain = EmbeddedServer(body_size=args.body_size).start()
        tls = EmbeddedServer(tls=True, body_size=args.body_size).start()
        servers = [plain, tls]
        if args.pin:
            os.sched_setaffinity(0, set(range(os.cpu_count() or 1)))
        body = fetch_body(plain.port)
        assert len(body) == args.body_size

        cert, key = make_cert(tmp)
        nplain, ntls = free_port(), free_port()
        conf = os.path.join(tmp, "nginx.conf")
        with open(conf, "w") as f:
            f.write(nginx_conf(tmp, nplain, ntls, body, cert, key, args.pin))
        nginx = subprocess.Popen([args.nginx, "-p", tmp, "-c", conf, "-e",
                                  os.path.join(tmp, "error.log")])
        wait_port(nplain)
        wait_port(ntls)
        assert fetch_body(nplain) == body, "nginx must serve the same body"

        targets = [("embedded", plain.port, False), ("nginx", nplain, False),
                   ("embedded", tls.port, True), ("nginx", ntls, True)]
        runs: dict[tuple[str, bool], list[dict]] = {}
        for r in range(args.rounds):
            order = targets if r % 2 == 0 else targets[::-1]
            for name, port, is_tls in order:
                res = run_client(exe, port, is_tls, args.n, args.warmup, name, args.pin)
                runs.setdefault((name, is_tls), []).append(res)
                if args.json:
                    print(json.dumps(res))

        print(f"\nsequential GET latency, µs (median of {args.rounds} runs of {args.n} "
              f"requests, {args.body_size}-byte body{', pinned' if args.pin else ''})")
        print(f"{'':22}" + "".join(f"{m:>9}" for m in ("p50", "p90", "p99", "p99.9", "max")))
        for is_tls in (False, True):
            med = {}
            for name in ("embedded", "nginx"):
                med[name] = {m: statistics.median(x[m] for x in runs[(name, is_tls)])
                             for m in METRICS}
                proto = runs[(name, is_tls)][0]["proto"]
                label = f"{name} {'TLS' if is_tls else 'plain'}"
                print(f"{label:22}" + "".join(f"{med[name][m]:9.1f}" for m in METRICS)
                      + f"   {proto}, {runs[(name, is_tls)][0]['response_bytes']} B/response")
            print(f"{'  ratio emb/nginx':22}" +
                  "".join(f"{med['embedded'][m] / med['nginx'][m]:9.2f}" for m in METRICS))
        print(f"\nembedded plain stats: {plain.stats()}")
        print(f"embedded tls stats:   {tls.stats()}")
        return 0
    finally:
        if nginx is not None:
            nginx.send_signal(signal.SIGQUIT)  # graceful: the master stops its worker
            try:
                nginx.wait(10)
            except subprocess.TimeoutExpired:
                nginx.kill()
                nginx.wait(10)
        for s in servers:
            s.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
