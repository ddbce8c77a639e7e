"""Standalone proof of the native leak behind issue 10 defect 10: socket + ssl only.

    python3 bench/ssl_session_leak.py [--n 1500]

Every read of ``SSLSocket.session`` (and ``SSLObject.session``) leaks one SSL_SESSION (~6.5 KB
with its peer certificate) on CPython versions with gh-116810: PySSL_get_session duplicates
the session (i2d/d2i, a workaround for OpenSSL 1.1.0) and then overwrites the pointer to the
copy with SSL_get1_session's, so the copy is never freed. No Python object remains; RSS grows.

A TLS server runs in a child process (so the RSS measured is the client's alone) with a
self-signed certificate made by the openssl command; the client connects n times per
variant and prints RSS growth per connection over the second half. Variants:

    handshake            connect, handshake, close
    exchange             + one request and response
    session-read-1/3     + 1 (or 3) reads of sock.session per connection
    session-set          + session=<one kept session> on every connection (resumption),
                           the session read once, before the loop
    no-ticket-per-req    a server that issues no tickets (TLS 1.3): 20 requests per
                           connection, sock.session read after each (as the pure engine's
                           _take does while it has no session with a ticket)

Measures; asserts nothing.
"""

from __future__ import annotations

import argparse
import gc
import os
import socket
import ssl
import subprocess
import sys
import tempfile
import time

SERVER = r"""
import socket, ssl, sys, threading
cert, key, tickets, ver = sys.argv[1], sys.argv[2], sys.argv[3] == "1", sys.argv[4]
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(cert, key)
ctx.minimum_version = ctx.maximum_version = getattr(ssl.TLSVersion, ver)
if not tickets:
    ctx.options |= ssl.OP_NO_TICKET
    ctx.num_tickets = 0
srv = socket.create_server(("127.0.0.1", 0))
print(srv.getsockname()[1], flush=True)
RESP = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
def serve(c):
    try:
        t = ctx.wrap_socket(c, server_side=True)
        while True:
            d = t.recv(65536)
            if not d:
                break
            t.sendall(RESP * d.count(b"\r\n\r\n"))
    except OSError:
        pass
    finally:
        c.close()
while True:
    c, _ = srv.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
"""


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def start_server(tmp: str, tickets: bool, version: str):
    cert, key = os.path.join(tmp, "c.pem"), os.path.join(tmp, "k.pem")
    if not os.path.exists(cert):
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:P-256", "-nodes", "-days", "1", "-subj",
                        "/CN=localhost", "-keyout", key, "-out", cert],
                       check=True, capture_output=True)
    proc = subprocess.Popen([sys.executable, "-c", SERVER, cert, key, "1" if tickets else "0",
                             version], stdout=subprocess.PIPE, text=True)
    return proc, int(proc.stdout.readline())


def exchange(sock) -> None:
    sock.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
    data = b""
    while not data.endswith(b"ok"):
        data += sock.recv(65536)


def run(variant: str, n: int, port: int, version: str) -> float:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = ctx.maximum_version = getattr(ssl.TLSVersion, version)
    kept = None
    if variant == "session-set":
        with ctx.wrap_socket(socket.create_connection(("127.0.0.1", port))) as s:
            exchange(s)
            kept = s.session
    marks = []
    resumed = 0
    for i in range(n):
        if i in (n // 2, n - 1):
            gc.collect()
            marks.append(rss())
        s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port)), session=kept)
        resumed += s.session_reused
        if variant != "handshake":
            exchange(s)
        if variant.startswith("session-read-"):
            for _ in range(int(variant[-1])):
                s.session  # noqa: B018 (the read is the point)
        if variant == "no-ticket-per-req":
            for _ in range(20):
                exchange(s)
                s.session  # noqa: B018
        s.close()
    per = (marks[1] - marks[0]) / (n - 1 - n // 2)
    print(f"  {variant:<20} {per:8.0f} B of RSS per connection"
          f"{f'  (resumed {resumed}/{n})' if kept else ''}", flush=True)
    return per


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1500)
    args = ap.parse_args()
    print(sys.version.split()[0], ssl.OPENSSL_VERSION)
    with tempfile.TemporaryDirectory() as tmp:
        for version in ("TLSv1_3", "TLSv1_2"):
            for tickets, variants in ((True, ["handshake", "exchange", "session-read-1",
                                              "session-read-3", "session-set"]),
                                      (False, ["no-ticket-per-req"])):
                if version == "TLSv1_2" and not tickets:
                    continue
                proc, port = start_server(tmp, tickets, version)
                print(f"{version}, server tickets {'on' if tickets else 'off'}:")
                try:
                    for v in variants:
                        run(v, args.n if v != "no-ticket-per-req" else args.n // 5, port,
                            version)
                finally:
                    proc.kill()
                    proc.wait()
                time.sleep(0.1)


if __name__ == "__main__":
    main()
