"""A/B of two copies of the pure parser (fastpool/_engine/_pure/_http.py) in one process.

    .venv/bin/python bench/pure_parse_ab.py OLD_HTTP_PY [NEW_HTTP_PY]

OLD (and NEW, by default the worktree's own module) are loaded as separate modules and timed
interleaved, round after round, on bench/test_micro_parse.py's responses, whole and in 4 KB
pieces (a socket's reads), each with .spans read as Connection._take does, so machine noise
hits both alike. Prints the median per call (us) of each, and new/old. Measures; asserts only
that both give the same body.
"""

from __future__ import annotations

import importlib.util
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
import test_micro_parse as micro  # noqa: E402


def load(path: str, name: str):
    spec = importlib.util.spec_from_file_location(f"fastpool._engine._pure.{name}", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def per_call(fn, n: int) -> float:
    t = time.perf_counter_ns()
    for _ in range(n):
        fn()
    return (time.perf_counter_ns() - t) / n / 1000


def main() -> None:
    here = os.path.join(os.path.dirname(__file__), "..", "fastpool", "_engine", "_pure", "_http.py")
    old = load(sys.argv[1], "_http_old")
    new = load(sys.argv[2] if len(sys.argv) > 2 else here, "_http_new")
    cases = dict(micro.PARSE_CASES)
    tiny = b"".join(b"%x\r\n%s\r\n" % (1 + i % 7, b"x" * (1 + i % 7)) for i in range(500))
    cases["tiny-500"] = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + tiny
                         + b"0\r\n\r\n", None, 1)
    print(f"{'case':<22}{'old us':>10}{'new us':>10}{'new/old':>9}")
    for name, (data, _body, _n) in cases.items():
        for mode in ("whole", "4k"):
            pieces = [data] if mode == "whole" else [
                data[i:i + 4096] for i in range(0, len(data), 4096)]

            def run(mod, pieces=pieces):
                p = mod.ResponseParser()
                for piece in pieces:
                    p.feed(piece)
                r = p.result()
                r.spans  # noqa: B018 (Connection._take reads it for every response)
                return r.body

            assert run(old) == run(new)
            n = max(1, int(20000 / max(1.0, per_call(lambda: run(new), 50))))
            a, b = [], []
            for _ in range(15):
                a.append(per_call(lambda: run(old), n))
                b.append(per_call(lambda: run(new), n))
            ma, mb = statistics.median(a), statistics.median(b)
            print(f"{name + ' ' + mode:<22}{ma:>10.2f}{mb:>10.2f}{mb / ma:>9.3f}")


if __name__ == "__main__":
    main()
