"""Instructions per request of each driver, counted by valgrind (callgrind): repeatable on a
shared, noisy machine where wall and CPU time are not.

    .venv/bin/python bench/instructions.py [--only pool-c,async-c-asyncio] [-n 2000]

For each client, the client process runs under `valgrind --tool=callgrind` twice (n and 3n
requests after a warm-up, against the embedded server in a separate, uninstrumented
process); the difference divided by 2n is the cost of one request, start-up excluded. The
server's instructions are not counted. Kernel time (syscalls) is not counted either:
compare with bench/drivers.py's CPU per request for that. The floor is bench/drivers.py's:
the C engine's exchange in a C loop on one connection (no Python per request).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

SERVER = """
import sys
from fastpool._bench._server import EmbeddedServer
srv = EmbeddedServer(tls=True, body_size=137).start()
srv.write_ca({ca!r})
print(srv.port, flush=True)
sys.stdin.read()
srv.stop()
"""

CLIENT = """
import asyncio, sys
import fastpool
url, ca, n, kind = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
engine = "python" if "-py" in kind else "c"
if kind == "floor":
    from fastpool._engine import get_engine
    with fastpool.Pool(url, connections=1, verify=ca, engine="c") as pool:
        req = (b"GET /api/v3/ticker HTTP/1.1\\r\\nHost: 127.0.0.1\\r\\n"
               b"User-Agent: fastpool\\r\\n\\r\\n")
        lat, bad = get_engine("c").floor_latencies(pool._policy.idle[0][0], req, 500 + n)
        assert not bad
elif kind.startswith("pool"):
    with fastpool.Pool(url, connections=1, verify=ca, engine=engine) as pool:
        for _ in range(500 + n):
            pool.get("/api/v3/ticker")
else:
    async def main():
        async with fastpool.AsyncPool(url, connections=1, verify=ca, engine=engine) as pool:
            for _ in range(500 + n):
                await pool.get("/api/v3/ticker")
    if kind.endswith("uvloop"):
        import uvloop
        uvloop.run(main())
    else:
        asyncio.run(main())
"""

KINDS = ("floor", "pool-c", "async-c-asyncio", "async-c-uvloop", "pool-py", "async-py-asyncio")


def count(url: str, ca: str, n: int, kind: str, tmp: str) -> int:
    out = os.path.join(tmp, f"cg-{kind}-{n}.out")
    subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
                    sys.executable, "-c", CLIENT, url, ca, str(n), kind],
                   check=True, capture_output=True, cwd=str(ROOT))
    with open(out) as f:
        for line in f:
            m = re.match(r"(?:summary|totals): (\d+)", line)
            if m:
                return int(m.group(1))
    raise RuntimeError(f"no totals in {out}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-n", type=int, default=2000)
    ap.add_argument("--only", default="")
    args = ap.parse_args()
    kinds = [k for k in KINDS if not args.only or k in args.only.split(",")]
    tmp = tempfile.mkdtemp()
    ca = os.path.join(tmp, "ca.pem")
    server = subprocess.Popen([sys.executable, "-c", SERVER.format(ca=ca)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                              cwd=str(ROOT))
    try:
        url = f"https://127.0.0.1:{int(server.stdout.readline())}"
        print(f"{'client':18} {'instructions/request':>22}")
        for kind in kinds:
            low = count(url, ca, args.n, kind, tmp)
            high = count(url, ca, 3 * args.n, kind, tmp)
            print(f"{kind:18} {(high - low) / (2 * args.n):22,.0f}", flush=True)
    finally:
        server.stdin.close()
        server.wait(10)


if __name__ == "__main__":
    main()
