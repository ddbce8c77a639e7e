"""Micro-benchmark of the parser and writer of one engine: µs per call (best of 5 timeit runs).

    .venv/bin/python bench/micro_http.py            # the pure engine
    .venv/bin/python bench/micro_http.py c          # the C engine
"""

from __future__ import annotations

import sys
import timeit


def response(fields: bytes, body: bytes) -> bytes:
    """A 200 response with the given field lines and a Content-Length that matches body."""
    return (b"HTTP/1.1 200 OK\r\n" + fields + b"Content-Length: %d\r\n" % len(body)
            + b"Connection: keep-alive\r\n\r\n" + body)


# A typical ticker answer.
SMALL = response(b"Content-Type: application/json\r\n",
                 b'{"symbol":"BTCUSDT","price":"97000.01000"}')
# An order acknowledgement behind a typical gateway.
MEDIUM = response(
    b"Date: Mon, 24 Nov 2025 00:14:07 GMT\r\nContent-Type: application/json;charset=UTF-8\r\n"
    b"X-MBX-USED-WEIGHT-1M: 1\r\nX-MBX-ORDER-COUNT-10S: 1\r\nCache-Control: no-cache\r\n",
    b'{"symbol":"BTCUSDT","orderId":28,"clientOrderId":"6gCrw2kRUAF9CvJDGP16IP","status":"NEW"}',
)
# ~2 KB: 13 field lines and a 1.5 KB body.
LARGE = response(
    b"Date: Mon, 24 Nov 2025 00:14:07 GMT\r\nServer: gateway\r\n"
    b"Content-Type: application/json;charset=UTF-8\r\nVary: Accept-Encoding\r\n"
    b"X-MBX-USED-WEIGHT-1M: 21\r\nX-MBX-UUID: 1f6a0c2e-8f1b-4c65-9a0a-5d1f7e2b9c3d\r\n"
    b"Strict-Transport-Security: max-age=31536000\r\nX-Frame-Options: SAMEORIGIN\r\n"
    b"X-Content-Type-Options: nosniff\r\nCache-Control: no-cache, no-store, must-revalidate\r\n",
    b"x" * 1536,
)
CHUNK = 4096
CHUNKED = (  # 64 KB body in 16 chunks of 4 KB
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    + b"".join(b"%x\r\n" % CHUNK + b"y" * CHUNK + b"\r\n" for _ in range(65536 // CHUNK))
    + b"0\r\n\r\n"
)


def two_reads(engine, data: bytes, cut: int):
    """The head cut mid-line: the line machine's cost rather than the whole-head fast path."""
    p = engine.ResponseParser()
    p.feed(data[:cut])
    p.feed(data[cut:])
    return p.result()


def main() -> None:
    name = sys.argv[1] if len(sys.argv) > 1 else "python"
    if name == "c":
        from fastpool import _core as engine
    else:
        from fastpool import _pure as engine
    block = engine.encode_header_block(
        [(b"User-Agent", b"fastpool/0.1"), (b"Accept", b"application/json"),
         (b"X-MBX-APIKEY", b"vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A")]
    )
    fields = [(b"Content-Type", b"application/x-www-form-urlencoded")]
    body = b"symbol=BTCUSDT&side=BUY&type=LIMIT&quantity=1&price=9000&timestamp=1700000000000"
    cases = [
        (f"parse_response {len(SMALL)} B", lambda: engine.parse_response(SMALL)),
        (f"parse_response {len(MEDIUM)} B", lambda: engine.parse_response(MEDIUM)),
        (f"parse_response {len(LARGE)} B", lambda: engine.parse_response(LARGE)),
        (f"parse_response {len(SMALL)} B + .headers",
         lambda: engine.parse_response(SMALL).headers),
        (f"ResponseParser {len(MEDIUM)} B in 2 reads, split in the head",
         lambda: two_reads(engine, MEDIUM, 40)),
        (f"parse_response chunked 64 KB ({65536 // CHUNK} chunks)",
         lambda: engine.parse_response(CHUNKED)),
        ("build_request GET, no body", lambda: engine.build_request(
            b"GET", b"/api/v3/ticker/price?symbol=BTCUSDT", block, (), None)),
        (f"build_request POST, {len(body)} B body", lambda: engine.build_request(
            b"POST", b"/api/v3/order", block, fields, body)),
    ]
    for data in (SMALL, MEDIUM, LARGE, CHUNKED):  # a benchmark of incomplete parses is void
        r = engine.parse_response(data)
        assert r is not None and not r.trailing, data[:40]
    for label, fn in cases:
        number = 2000 if "64 KB" in label else 50000
        best = min(timeit.repeat(fn, number=number, repeat=5)) / number
        print(f"{name:7s} {label:55s} {best * 1e6:8.2f} µs")


if __name__ == "__main__":
    main()
