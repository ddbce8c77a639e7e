"""The C parser/writer (csrc/fp_http.c) tested directly through cffi, without the Cython layer.

The library is compiled twice, with SSE4.2 and without (scalar), and every test runs on both.
Every input is placed so that it ends exactly where an unreadable guard page begins: a read one
byte past the caller's length segfaults the test run instead of passing silently. Every parse
goes through `check`, which also feeds the input byte by byte and split at every point and
asserts the results are identical (fp_http.h: the result does not depend on the split).
"""

from __future__ import annotations

import dataclasses
import mmap
import os
import re
import shutil
import subprocess
from pathlib import Path

import cffi
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fastpool._model import codes as _codes
from fastpool._model.limits import Limits

ROOT = Path(__file__).resolve().parents[1]
HEADER = ROOT / "csrc" / "fp_http.h"
SOURCE = ROOT / "csrc" / "fp_http.c"

NEED_MORE = -1
PAGE = mmap.PAGESIZE


def _header_cdef() -> str:
    """The declarations of fp_http.h as cffi reads them: the header itself is the contract."""
    text = HEADER.read_text()
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    text = re.sub(r"#ifdef __cplusplus.*?#endif", "", text, flags=re.S)
    return "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))


ffi = cffi.FFI()
ffi.cdef(_header_cdef())
ffi.cdef(
    """
    void *mmap(void *addr, size_t length, int prot, int flags, int fd, long offset);
    int mprotect(void *addr, size_t len, int prot);
    """
)
libc = ffi.dlopen(None)
PROT_NONE, PROT_RW, MAP_PRIVATE_ANON = 0, 3, 0x22

def _codes_from_header() -> dict[str, int]:
    body = re.search(r"enum \{(.*?)\};", HEADER.read_text(), flags=re.S).group(1)
    body = re.sub(r"/\*.*?\*/", "", body, flags=re.S)
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"(FP_\w+)\s*=\s*(-?\d+)", body)}


C = _codes_from_header()
globals().update(C)  # FP_E_VERSION etc. as module constants


# ---- builds ----------------------------------------------------------------------------------

def _cpu_has_sse42() -> bool:
    try:
        with open("/proc/cpuinfo") as f:
            return any("sse4_2" in line.split() for line in f if line.startswith("flags"))
    except OSError:
        return False


BUILDS = {
    "sse42": ["-msse4.2"],
    "scalar": ["-mno-sse4.2"],
}
if os.environ.get("FASTPOOL_TEST_ASAN") == "1":
    # Needs the ASan runtime preloaded into the interpreter: `make test-c-asan`.
    BUILDS["asan"] = ["-msse4.2", "-fsanitize=address,undefined", "-fno-sanitize-recover=all",
                      "-fno-omit-frame-pointer"]


def _compile(name: str, flags: list[str], outdir: Path) -> Path:
    out = outdir / f"libfp_http_{name}.so"
    cmd = ["gcc", "-std=c11", "-O2", "-g", "-Wall", "-Wextra", "-Werror", "-shared", "-fPIC",
           *flags, str(SOURCE), "-o", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}\n{proc.stderr}")
    return out


@pytest.fixture(scope="session")
def libdir(tmp_path_factory) -> Path:
    if shutil.which("gcc") is None:
        pytest.fail("gcc is required to build csrc/fp_http.c for the C API tests")
    return tmp_path_factory.mktemp("fp_http_build")


_LIBS: dict[str, object] = {}
_PATHS: dict[str, Path] = {}
_FAILED: dict[str, str] = {}


@pytest.fixture(scope="session", params=list(BUILDS))
def lib(request, libdir):
    name = request.param
    if name == "sse42" and not _cpu_has_sse42():
        pytest.skip("this CPU has no SSE4.2")
    if name in _FAILED:
        pytest.fail(_FAILED[name])
    if name not in _LIBS:
        try:
            path = _compile(name, BUILDS[name], libdir)
        except RuntimeError as exc:
            _FAILED[name] = f"build {name} failed (-Werror): {exc}"
            pytest.fail(_FAILED[name])
        _LIBS[name] = ffi.dlopen(str(path))
        _PATHS[name] = path
    return _LIBS[name]


# ---- guarded memory ----------------------------------------------------------------------------

class Guarded:
    """Read-write pages followed by a PROT_NONE page; data is placed to end at the boundary."""

    def __init__(self, size: int) -> None:
        self.size = -(-size // PAGE) * PAGE
        addr = libc.mmap(ffi.NULL, self.size + PAGE, PROT_RW, MAP_PRIVATE_ANON, -1, 0)
        assert addr != ffi.cast("void *", -1), "mmap failed"
        self.base = ffi.cast("char *", addr)
        self.end = self.base + self.size
        assert libc.mprotect(self.end, PAGE, PROT_NONE) == 0, "mprotect failed"

    def put(self, data: bytes):
        assert len(data) <= self.size
        p = self.end - len(data)
        if data:
            ffi.memmove(p, data, len(data))
        return p

    def pack(self, items: list[bytes]) -> list:
        """Places items back to back, the last one ending at the guard page."""
        total = sum(len(x) for x in items)
        p = self.end - total
        ptrs = []
        for x in items:
            if x:
                ffi.memmove(p, x, len(x))
            ptrs.append(p)
            p += len(x)
        return ptrs


DATA = Guarded(4 << 20)
SPANS = Guarded(1 << 16)
WIN = Guarded(1 << 20)
WOUT = Guarded(1 << 20)


def limits(lib, **kw):
    lim = ffi.new("fp_limits *")
    lib.fp_limits_default(lim)
    for k, v in kw.items():
        setattr(lim, k, v)
    return lim


def spans_for(lim):
    return ffi.cast("fp_span *", SPANS.end - ffi.sizeof("fp_span") * lim.max_headers)


# ---- the response driver -----------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Res:
    code: int
    status: int = 0
    version: int = 0
    reason: bytes = b""
    headers: tuple = ()
    body: bytes = b""
    keep_alive: bool = False
    interim: int = 0
    trailing: bytes = b""
    head: bytes = b""
    content_length: int = -1
    chunked: bool = False


def run(lib, data: bytes, cuts=(), *, head_request=False, eof=False, **lim_kw) -> Res:
    """Feeds data in the pieces given by the cut points, calling fp_resp_parse after each
    piece (and after completion too: the result must then stay the same), then fp_resp_eof
    when asked. The buffer is moved to end at the guard page before every call, which also
    checks that the parser keeps offsets, never pointers."""
    lim = limits(lib, **lim_kw)
    spans = spans_for(lim)
    r = ffi.new("fp_resp *")
    lib.fp_resp_init(r, lim, int(head_request))
    content = b""
    fed = 0
    final = None
    rc = NEED_MORE
    for cut in [*cuts, len(data)]:
        if cut <= fed:
            continue
        content += data[fed:cut]
        fed = cut
        buf = DATA.put(content)
        plen = ffi.new("size_t *", len(content))
        rc = lib.fp_resp_parse(r, buf, plen, spans)
        assert plen[0] <= len(content)
        content = ffi.buffer(buf, plen[0])[:]
        if final is not None:
            assert rc == final, "a finished parse must keep returning the same result"
        elif rc != NEED_MORE:
            final = rc
    if rc == NEED_MORE and eof:
        buf = DATA.put(content)
        rc = lib.fp_resp_eof(r, buf, len(content))
        assert rc != NEED_MORE
        assert lib.fp_resp_eof(r, buf, len(content)) == rc
        plen = ffi.new("size_t *", len(content))
        assert lib.fp_resp_parse(r, buf, plen, spans) == rc, "eof results are sticky"
    if rc < 0:
        return Res(rc)
    assert r.head_off + r.head_len == r.body_off
    assert r.body_off + r.body_len == rc <= len(content)
    h = r.head
    head = content[r.head_off: r.head_off + r.head_len]
    assert 0 < h.num_headers + 1 and h.num_headers <= lim.max_headers
    hdrs = tuple(
        (head[s.name_off: s.name_off + s.name_len], head[s.value_off: s.value_off + s.value_len])
        for s in (spans[i] for i in range(h.num_headers))
    )
    return Res(
        code=rc, status=h.status, version=h.minor_version,
        reason=head[h.reason_off: h.reason_off + h.reason_len], headers=hdrs,
        body=content[r.body_off: r.body_off + r.body_len], keep_alive=bool(r.keep_alive),
        interim=r.interim, trailing=content[rc:], head=head,
        content_length=h.content_length, chunked=bool(h.chunked),
    )


def check(lib, data: bytes, **kw) -> Res:
    """Parses data whole, byte by byte and split at every point; all must agree."""
    whole = run(lib, data, **kw)
    n = len(data)
    step = 1 if n <= 4096 else n // 700
    assert run(lib, data, range(step, n, step), **kw) == whole, "byte-by-byte differs"
    points = range(1, n) if n <= 1200 else range(1, n, n // 300)
    for k in points:
        got = run(lib, data, [k], **kw)
        assert got == whole, f"split at {k} differs: {got} != {whole}"
    return whole


def code(lib, data: bytes, **kw) -> int:
    return check(lib, data, **kw).code


def resp(head: str | bytes, body: bytes = b"") -> bytes:
    """Builds a response from a head written with \\n line ends (turned into CRLF)."""
    if isinstance(head, str):
        head = head.encode("latin-1")
    return head.replace(b"\n", b"\r\n") + body


OK_HEAD = "HTTP/1.1 200 OK\n"
TCHAR = set(b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
VALUE_OK = {0x09, 0x20} | set(range(0x21, 0x7F)) | set(range(0x80, 0x100))


# ---- contract: codes, limits, builds -------------------------------------------------------------

def test_codes_match_python_table():
    header_codes = {v for k, v in C.items() if k.startswith("FP_E_")}
    assert header_codes == set(_codes.PARSE_ERRORS) | set(_codes.WRITE_ERRORS)
    assert C["FP_NEED_MORE"] == _codes.NEED_MORE == -1


def test_limits_default_match_python(lib):
    lim = ffi.new("fp_limits *")
    lib.fp_limits_default(lim)
    d = Limits()
    assert (lim.max_headers, lim.max_line, lim.max_head, lim.max_interim, lim.max_body) == (
        d.max_headers, d.max_line_size, d.max_head_size, d.max_interim, d.max_body_size)


def test_builds_really_differ(lib):
    # The two builds must exercise two code paths: only the SSE4.2 ones contain pcmpestri.
    objdump = shutil.which("objdump")
    if objdump is None:
        pytest.skip("objdump (binutils) not installed")
    name = next(k for k, v in _LIBS.items() if v is lib)
    asm = subprocess.run([objdump, "-d", str(_PATHS[name])], capture_output=True, text=True,
                         check=True).stdout
    assert ("pcmpestri" in asm) == ("-msse4.2" in BUILDS[name])


# ---- valid responses of every framing ------------------------------------------------------------

def test_content_length(lib):
    data = resp("HTTP/1.1 200 OK\nContent-Type: application/json\nContent-Length: 13\n\n",
                b'{"price":1.5}')
    r = check(lib, data)
    assert r.code == len(data)
    assert (r.status, r.version, r.reason, r.keep_alive, r.interim) == (200, 1, b"OK", True, 0)
    assert r.headers == ((b"Content-Type", b"application/json"), (b"Content-Length", b"13"))
    assert r.body == b'{"price":1.5}' and r.content_length == 13 and r.trailing == b""


def test_content_length_zero_and_trailing_bytes(lib):
    data = resp("HTTP/1.1 200 OK\nContent-Length: 0\n\n", b"HTTP/1.1 200 OK\r\n")
    r = check(lib, data)
    assert r.body == b"" and r.trailing == b"HTTP/1.1 200 OK\r\n"
    assert r.code == len(data) - len(r.trailing)


def test_content_length_leading_zeros_and_ows(lib):
    r = check(lib, resp("HTTP/1.1 200 OK\nContent-Length: \t 0005 \t\n\n", b"hello"))
    assert r.content_length == 5 and r.body == b"hello"
    r = check(lib, resp("HTTP/1.1 200 OK\ncontent-LENGTH: 9223372036854775807\n\n"),
              max_body=2**63 - 1)
    assert r.code == NEED_MORE


def test_chunked_with_extensions_and_trailers(lib):
    body = (b"5;name=value;x=\"q\"\r\nhello\r\n"
            b"6 \t; ext\r\n world\r\n"
            b"000A\r\n0123456789\r\n"
            b"0;last\r\nX-Trailer: 1\r\nChecksum: abc\r\n\r\n")
    data = resp("HTTP/1.1 200 OK\nTransfer-Encoding: chunked\n\n", body) + b"NEXT"
    r = check(lib, data)
    assert r.body == b"hello world0123456789" and r.chunked and r.keep_alive
    assert r.trailing == b"NEXT"
    head_len = len(r.head)
    assert r.code == head_len + len(r.body)


def test_chunked_bare_lf_lines_and_case(lib):
    body = b"a\n0123456789\r\nA\r\nabcdefghij\r\n0\n\n"
    r = check(lib, resp("HTTP/1.1 200 OK\nTransfer-Encoding: ChUnKeD\n\n") + body)
    assert r.body == b"0123456789abcdefghij"


def test_chunked_empty_body(lib):
    r = check(lib, resp("HTTP/1.1 200 OK\nTransfer-Encoding:  chunked  \n\n", b"0\r\n\r\n"))
    assert r.body == b"" and r.trailing == b"" and r.code > 0


def test_close_delimited(lib):
    data = resp("HTTP/1.1 200 OK\nContent-Type: text/plain\n\n", b"all of it")
    assert code(lib, data) == NEED_MORE
    r = check(lib, data, eof=True)
    assert r.body == b"all of it" and not r.keep_alive and r.code == len(data)
    r = check(lib, resp("HTTP/1.0 200 OK\n\n"), eof=True)
    assert r.body == b"" and not r.keep_alive and r.version == 0


@pytest.mark.parametrize("status", [204, 304])
def test_no_body_statuses(lib, status):
    data = resp(f"HTTP/1.1 {status} X\nContent-Length: 10\n\n", b"trailing!!")
    r = check(lib, data)
    assert r.body == b"" and r.trailing == b"trailing!!" and r.keep_alive
    r = check(lib, resp(f"HTTP/1.1 {status} X\nTransfer-Encoding: chunked\n\n", b"5\r\n"))
    assert r.body == b"" and r.trailing == b"5\r\n" and r.chunked


def test_head_request(lib):
    data = resp("HTTP/1.1 200 OK\nContent-Length: 1000\n\n")
    r = check(lib, data, head_request=True)
    assert r.body == b"" and r.code == len(data) and r.keep_alive and r.content_length == 1000
    r = check(lib, resp("HTTP/1.1 200 OK\n\n", b"x"), head_request=True)
    assert r.body == b"" and r.trailing == b"x" and r.keep_alive
    assert check(lib, resp("HTTP/1.1 200 OK\nTransfer-Encoding: chunked\n\n"),
                 head_request=True).body == b""


def test_interim_responses_skipped(lib):
    data = resp("HTTP/1.1 100 Continue\n\nHTTP/1.1 103 Early Hints\nLink: </a.css>; rel=preload\n\n"
                "HTTP/1.1 201 Created\nContent-Length: 2\n\n", b"ok")
    r = check(lib, data)
    assert (r.status, r.reason, r.interim, r.body) == (201, b"Created", 2, b"ok")
    assert r.head.startswith(b"HTTP/1.1 201") and r.headers == ((b"Content-Length", b"2"),)


def test_max_interim_boundary(lib):
    one = resp("HTTP/1.1 100 Continue\n\n")
    final = resp("HTTP/1.1 200 OK\nContent-Length: 0\n\n")
    assert check(lib, one * 8 + final).interim == 8
    assert code(lib, one * 9 + final) == FP_E_TOO_MANY_INTERIM
    assert code(lib, one * 2 + final, max_interim=2) == len(one) * 2 + len(final)
    assert code(lib, one * 3, max_interim=2) == FP_E_TOO_MANY_INTERIM
    assert code(lib, one + final, max_interim=0) == FP_E_TOO_MANY_INTERIM
    assert code(lib, resp("HTTP/1.1 199 X\n\n"), max_interim=0) == FP_E_TOO_MANY_INTERIM


def test_unsolicited_101(lib):
    assert code(lib, resp("HTTP/1.1 101 Switching Protocols\nUpgrade: websocket\n\n")) == \
        FP_E_UNSOLICITED_101
    assert code(lib, resp("HTTP/1.1 100 Continue\n\nHTTP/1.1 101 X\n\n")) == FP_E_UNSOLICITED_101
    # Checked before the interim bound: a 101 is a 101 even when max_interim is spent.
    assert code(lib, resp("HTTP/1.1 101 X\n\n"), max_interim=0) == FP_E_UNSOLICITED_101


def test_interim_heads_follow_field_rules(lib):
    assert code(lib, resp("HTTP/1.1 100 Continue\nContent-Length: x\n\n")) == FP_E_CL_INVALID
    assert code(lib, resp("HTTP/1.1 103 Hints\nContent-Length: 1\nTransfer-Encoding: chunked\n\n")) \
        == FP_E_CL_AND_TE
    assert code(lib, resp("HTTP/1.1 100 Continue\nBad Name: 1\n\n")) == FP_E_HEADER_WS


def test_reason_phrase_forms(lib):
    assert check(lib, resp("HTTP/1.1 200\nContent-Length: 0\n\n")).reason == b""
    assert check(lib, resp("HTTP/1.1 200 \nContent-Length: 0\n\n")).reason == b""
    r = check(lib, resp("HTTP/1.1 299  odd\treason \xe9\nContent-Length: 0\n\n"))
    assert (r.status, r.reason) == (299, b" odd\treason \xe9")
    assert check(lib, resp("HTTP/1.1 999 X\nContent-Length: 0\n\n")).status == 999


def test_header_values_trimmed_and_empty(lib):
    r = check(lib, resp("HTTP/1.1 200 OK\nA:\nB: \t \nC:x\nD: \tv w\t \nContent-Length: 0\n\n"))
    assert r.headers[:4] == ((b"A", b""), (b"B", b""), (b"C", b"x"), (b"D", b"v w"))


def test_bare_lf_line_endings(lib):
    data = b"HTTP/1.1 200 OK\nContent-Length: 3\nX: y\r\n\nabc"
    r = check(lib, data)
    assert r.body == b"abc" and r.headers == ((b"Content-Length", b"3"), (b"X", b"y"))


# ---- keep-alive -----------------------------------------------------------------------------------

@pytest.mark.parametrize("version,conn,expected", [
    ("1.1", None, True),
    ("1.1", "close", False),
    ("1.1", "Close", False),
    ("1.1", "keep-alive", True),
    ("1.1", "foo, CLOSE ", False),
    ("1.1", "closed", True),
    ("1.1", "close-ish, x", True),
    ("1.1", " , ,close,, ", False),
    ("1.1", "Keep-Alive, Upgrade", True),
    ("1.0", None, False),
    ("1.0", "keep-alive", True),
    ("1.0", "KEEP-ALIVE", True),
    ("1.0", "keep-alive, close", False),
    ("1.0", "upgrade,\tkeep-alive\t", True),
    ("1.0", "keep-alives", False),
])
def test_keep_alive(lib, version, conn, expected):
    head = f"HTTP/{version} 200 OK\nContent-Length: 0\n"
    if conn is not None:
        head += f"Connection: {conn}\n"
    assert check(lib, resp(head + "\n")).keep_alive is expected


def test_keep_alive_multiple_connection_lines(lib):
    r = check(lib, resp("HTTP/1.0 200 OK\nConnection: keep-alive\nContent-Length: 0\n"
                        "Connection: close\n\n"))
    assert not r.keep_alive
    r = check(lib, resp("HTTP/1.0 200 OK\nConnection: x\nConnection: Keep-Alive\n"
                        "Content-Length: 0\n\n"))
    assert r.keep_alive


def test_close_delimited_never_keeps_alive(lib):
    assert not check(lib, resp("HTTP/1.1 200 OK\nConnection: keep-alive\n\n"), eof=True).keep_alive
    assert check(lib, resp("HTTP/1.0 204 No Content\nConnection: keep-alive\n\n")).keep_alive


@pytest.mark.parametrize("name", [b"content-length", b"transfer-encoding", b"connection"])
def test_special_names_match_exactly(lib, name):
    values = {b"content-length": b"x", b"transfer-encoding": b"gzip", b"connection": b"close"}
    special = {b"content-length": FP_E_CL_INVALID, b"transfer-encoding": FP_E_TE_UNSUPPORTED}
    value = values[name]

    def outcome(n):
        data = b"HTTP/1.1 200 OK\r\n" + n + b": " + value + b"\r\nContent-Type: t\r\n\r\n"
        r = run(lib, data, head_request=True)
        return r.code if r.code < 0 else (r.keep_alive, r.headers[0][0])

    for i in range(len(name)):
        # Any case of the name is the name...
        mixed = name[:i] + name[i:i + 1].upper() + name[i + 1:]
        assert outcome(mixed) == special.get(name, (False, mixed))
        # ...and a name differing in one byte (case-folding partners included) is not.
        for c in (b"x", b"_", b"^", b"~", bytes([name[i] ^ 0x20]) if name[i] != 0x2D else b"."):
            other = name[:i] + c + name[i + 1:]
            if other.lower() != name:
                assert outcome(other) == (True, other), other
    assert outcome(name.upper()) == special.get(name, (False, name.upper()))


# ---- errors: status line ------------------------------------------------------------------------

@pytest.mark.parametrize("line,expected", [
    (b"HTTP/2.0 200 OK", FP_E_VERSION),
    (b"http/1.1 200 OK", FP_E_VERSION),
    (b"HTTP/1.2 200 OK", FP_E_VERSION),
    (b"HTTP/1.1\t200 OK", FP_E_VERSION),
    (b"HTTP/1.1", FP_E_VERSION),
    (b"HTTP/1.", FP_E_VERSION),
    (b"", FP_E_VERSION),
    (b" HTTP/1.1 200 OK", FP_E_VERSION),
    (b"HTTP/1.1 20 OK", FP_E_STATUS),
    (b"HTTP/1.1 099 OK", FP_E_STATUS),
    (b"HTTP/1.1 000", FP_E_STATUS),
    (b"HTTP/1.1 2000 OK", FP_E_STATUS),
    (b"HTTP/1.1 20", FP_E_STATUS),
    (b"HTTP/1.1 ", FP_E_STATUS),
    (b"HTTP/1.1 2x0 OK", FP_E_STATUS),
    (b"HTTP/1.1 200\tOK", FP_E_STATUS),
    (b"HTTP/1.1 +20 OK", FP_E_STATUS),
    (b"HTTP/1.1 200 O\x00K", FP_E_REASON),
    (b"HTTP/1.1 200 OK\r", FP_E_REASON),
    (b"HTTP/1.1 200 O\x7fK", FP_E_REASON),
    (b"HTTP/1.1 200 \x1b[31mred", FP_E_REASON),
])
def test_status_line_errors(lib, line, expected):
    assert code(lib, line + b"\r\nContent-Length: 0\r\n\r\n") == expected


def test_leading_empty_line_is_version_error(lib):
    assert code(lib, b"\r\nHTTP/1.1 200 OK\r\n\r\n") == FP_E_VERSION
    assert code(lib, b"\nHTTP/1.1 200 OK\r\n\r\n") == FP_E_VERSION


@pytest.mark.parametrize("b", range(256))
def test_reason_byte_sweep(lib, b):
    # Every byte at a lane of the first SIMD block and in the scalar tail.
    for pos in (0, 5, 15, 40):
        reason = bytearray(b"R" * 48)
        reason[pos] = b
        data = b"HTTP/1.1 200 " + bytes(reason) + b"\r\nContent-Length: 0\r\n\r\n"
        got = run(lib, data).code
        if b == 0x0A:
            assert got == FP_E_HEADER_NO_COLON  # the line ends there; the rest is a field line
        elif b in VALUE_OK:
            assert got == len(data)
        else:
            assert got == FP_E_REASON, (b, pos)


# ---- errors: field lines --------------------------------------------------------------------------

@pytest.mark.parametrize("line,expected", [
    (b": x", FP_E_HEADER_NAME),
    (b":", FP_E_HEADER_NAME),
    (b"Fo\"o: x", FP_E_HEADER_NAME),
    (b"Foo\r: x", FP_E_HEADER_NAME),
    (b"Foo@: x", FP_E_HEADER_NAME),
    (b"F(o): x", FP_E_HEADER_NAME),
    (b"\xc3\xa9: x", FP_E_HEADER_NAME),
    (b"Foo", FP_E_HEADER_NO_COLON),
    (b"Content-Length", FP_E_HEADER_NO_COLON),
    (b"Foo\r", FP_E_HEADER_NAME),
    (b"Foo : x", FP_E_HEADER_WS),
    (b"Foo\t: x", FP_E_HEADER_WS),
    (b"Foo bar: x", FP_E_HEADER_WS),
    (b"X: a\x00b", FP_E_HEADER_VALUE),
    (b"X: a\rb", FP_E_HEADER_VALUE),
    (b"X: a\x7f", FP_E_HEADER_VALUE),
    (b"X: \x1b", FP_E_HEADER_VALUE),
    (b"X: v\r", FP_E_HEADER_VALUE),
    (b" X: y", FP_E_OBS_FOLD),
    (b"\tcontinued", FP_E_OBS_FOLD),
    (b" ", FP_E_OBS_FOLD),
])
def test_field_line_errors(lib, line, expected):
    data = b"HTTP/1.1 200 OK\r\nA: b\r\n" + line + b"\r\nContent-Length: 0\r\n\r\n"
    assert code(lib, data) == expected


@pytest.mark.parametrize("b", range(256))
def test_field_name_and_value_byte_sweep(lib, b):
    for pos in (0, 3, 15, 16, 33):
        name = bytearray(b"X-Long-Header-Name-Here-0123456789")
        name[pos] = b
        data = b"HTTP/1.1 200 OK\r\n" + bytes(name) + b": v\r\nContent-Length: 0\r\n\r\n"
        got = run(lib, data).code
        if b in TCHAR:
            assert got == len(data)
        elif b == 0x3A:  # ':' ends the name early; the rest becomes part of the value
            assert got == (FP_E_HEADER_NAME if pos == 0 else len(data))
        elif b == 0x0A:
            # At 0 the line is empty: the head ends there and the body is close-delimited.
            assert got == (NEED_MORE if pos == 0 else FP_E_HEADER_NO_COLON)
        elif b in (0x20, 0x09):
            assert got == (FP_E_OBS_FOLD if pos == 0 else FP_E_HEADER_WS)
        else:
            assert got == FP_E_HEADER_NAME, (b, pos)
        value = bytearray(b"v" * 40)
        value[pos] = b
        data = b"HTTP/1.1 200 OK\r\nX: " + bytes(value) + b"\r\nContent-Length: 0\r\n\r\n"
        got = run(lib, data).code
        if b == 0x0A:
            assert got == FP_E_HEADER_NO_COLON
        elif b in VALUE_OK:
            assert got == len(data)
        else:
            assert got == FP_E_HEADER_VALUE, (b, pos)


# ---- errors: framing semantics ----------------------------------------------------------------------

@pytest.mark.parametrize("value", [
    b"-1", b"+1", b"1,1", b"1, 1", b"1 1", b"", b"abc", b"0x10", b"9223372036854775808",
    b"99999999999999999999", b"1.0", b"\xd9\xa1",
])
def test_content_length_invalid(lib, value):
    assert code(lib, b"HTTP/1.1 200 OK\r\nContent-Length: " + value + b"\r\n\r\n") == \
        FP_E_CL_INVALID


def test_content_length_limits_of_value(lib):
    big = b"9223372036854775807"
    assert code(lib, b"HTTP/1.1 200 OK\r\nContent-Length: " + big + b"\r\n\r\n",
                max_body=2**63 - 1) == NEED_MORE
    assert code(lib, b"HTTP/1.1 200 OK\r\nContent-Length: 000000000000000000000000001\r\n\r\nx") > 0


def test_content_length_multiple(lib):
    assert code(lib, resp("HTTP/1.1 200 OK\nContent-Length: 1\nContent-Length: 1\n\nx")) == \
        FP_E_CL_MULTIPLE
    assert code(lib, resp("HTTP/1.1 200 OK\nContent-Length: 1\ncontent-length: 2\n\nx")) == \
        FP_E_CL_MULTIPLE
    # CL_INVALID is checked first, on the second line too.
    assert code(lib, resp("HTTP/1.1 200 OK\nContent-Length: 1\nContent-Length: y\n\nx")) == \
        FP_E_CL_INVALID


def test_cl_and_te(lib):
    assert code(lib, resp("HTTP/1.1 200 OK\nContent-Length: 1\nTransfer-Encoding: chunked\n\n")) \
        == FP_E_CL_AND_TE
    assert code(lib, resp("HTTP/1.1 200 OK\nTransfer-Encoding: chunked\nContent-Length: 1\n\n")) \
        == FP_E_CL_AND_TE
    # Even where the framing would not use either.
    assert code(lib, resp("HTTP/1.1 204 OK\nTransfer-Encoding: chunked\nContent-Length: 1\n\n"),
                head_request=True) == FP_E_CL_AND_TE


@pytest.mark.parametrize("head", [
    "HTTP/1.1 200 OK\nTransfer-Encoding: gzip\n\n",
    "HTTP/1.1 200 OK\nTransfer-Encoding: gzip, chunked\n\n",
    "HTTP/1.1 200 OK\nTransfer-Encoding: chunked, gzip\n\n",
    "HTTP/1.1 200 OK\nTransfer-Encoding: chunked\nTransfer-Encoding: chunked\n\n",
    "HTTP/1.1 200 OK\nTransfer-Encoding: chunked;q=1\n\n",
    "HTTP/1.1 200 OK\nTransfer-Encoding: \n\n",
    "HTTP/1.1 200 OK\nTransfer-Encoding: chunk ed\n\n",
    "HTTP/1.0 200 OK\nTransfer-Encoding: chunked\n\n",
    "HTTP/1.0 200 OK\nContent-Length: 1\nTransfer-Encoding: chunked\n\n",
])
def test_te_unsupported(lib, head):
    assert code(lib, resp(head)) == FP_E_TE_UNSUPPORTED


# ---- errors: chunked ----------------------------------------------------------------------------

CHUNKED_HEAD = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"


@pytest.mark.parametrize("body,expected", [
    (b"x\r\n", FP_E_CHUNK_SIZE),
    (b"\r\n", FP_E_CHUNK_SIZE),
    (b";ext\r\n", FP_E_CHUNK_SIZE),
    (b"00000000000000001\r\nx\r\n0\r\n\r\n", FP_E_CHUNK_SIZE),  # 17 digits
    (b"8000000000000000\r\n", FP_E_CHUNK_SIZE),
    (b"FFFFFFFFFFFFFFFF\r\n", FP_E_CHUNK_SIZE),
    (b"1 2\r\n", FP_E_CHUNK_SIZE),
    (b"-1\r\n", FP_E_CHUNK_SIZE),
    (b"0x1\r\n", FP_E_CHUNK_SIZE),
    (b" 1\r\n", FP_E_CHUNK_SIZE),
    (b"1\x00\r\n", FP_E_CHUNK_SIZE),
    (b"1;a\x00\r\n", FP_E_CHUNK_EXT),
    (b"1;\x7f\r\n", FP_E_CHUNK_EXT),
    (b"1 ;a=b\rc\r\n", FP_E_CHUNK_EXT),
    (b"1\r\naX", FP_E_CHUNK_CRLF),
    (b"1\r\na\rX", FP_E_CHUNK_CRLF),
    (b"1\r\na\n0\r\n\r\n", FP_E_CHUNK_CRLF),
    (b"2\r\nabc\r\n", FP_E_CHUNK_CRLF),
    (b"1\r\na\r\n0\r\nBad Trailer: x\r\n\r\n", FP_E_HEADER_WS),
    (b"1\r\na\r\n0\r\n folded\r\n\r\n", FP_E_OBS_FOLD),
    (b"1\r\na\r\n0\r\nX: \x01\r\n\r\n", FP_E_HEADER_VALUE),
    (b"1\r\na\r\n0\r\nnocolon\r\n\r\n", FP_E_HEADER_NO_COLON),
    (b"1\r\na\r\n0\r\n:x\r\n\r\n", FP_E_HEADER_NAME),
])
def test_chunked_errors(lib, body, expected):
    assert code(lib, CHUNKED_HEAD + body) == expected


def test_chunk_size_digits_boundary(lib):
    r = check(lib, CHUNKED_HEAD + b"0000000000000001\r\nx\r\n0000000000000000\r\n\r\n")
    assert r.body == b"x"
    assert code(lib, CHUNKED_HEAD + b"7FFFFFFFFFFFFFFF\r\n", max_body=2**63 - 1) == NEED_MORE
    assert code(lib, CHUNKED_HEAD + b"7FFFFFFFFFFFFFFF\r\n") == FP_E_BODY_TOO_LARGE


def test_trailers_are_not_interpreted(lib):
    body = b"1\r\na\r\n0\r\nContent-Length: nonsense\r\nTransfer-Encoding: gzip\r\n\r\n"
    r = check(lib, CHUNKED_HEAD + body)
    assert r.body == b"a" and r.headers == ((b"Transfer-Encoding", b"chunked"),)


# ---- limits at their exact boundaries ------------------------------------------------------------

@pytest.mark.parametrize("eol", [b"\r\n", b"\n"])
def test_max_line_status_and_field(lib, eol):
    ml = 64
    status = b"HTTP/1.1 200 " + b"r" * (ml - 13)
    assert len(status) == ml
    tail = eol + b"Content-Length: 0" + eol + eol
    assert code(lib, status + tail, max_line=ml) > 0
    assert code(lib, status + b"r" + tail, max_line=ml) == FP_E_LINE_TOO_LONG
    field = b"X: " + b"v" * (ml - 3)
    base = b"HTTP/1.1 200 OK" + eol
    assert code(lib, base + field + tail, max_line=ml) > 0
    assert code(lib, base + field + b"v" + tail, max_line=ml) == FP_E_LINE_TOO_LONG


def test_max_line_incomplete_line(lib):
    ml = 32
    base = b"HTTP/1.1 200 OK\r\n"
    # max_line + 1 bytes without LF may still be content + CR: wait for more.
    assert code(lib, base + b"X" * (ml + 1), max_line=ml) == NEED_MORE
    assert code(lib, base + b"X" * (ml + 2), max_line=ml) == FP_E_LINE_TOO_LONG
    assert code(lib, b"H" * (ml + 2), max_line=ml) == FP_E_LINE_TOO_LONG
    assert code(lib, b"H" * (ml + 1), max_line=ml) == NEED_MORE
    # The CR really may be that last byte: content exactly max_line, then CR LF.
    line = b"X: " + b"v" * (ml - 3)
    assert code(lib, base + line + b"\r\n\r\n", max_line=ml, head_request=True) > 0
    # A line too long is that, whatever else is wrong with it (check 1 comes first).
    assert code(lib, base + b"X : " + b"v" * ml + b"\r\n\r\n", max_line=ml) == FP_E_LINE_TOO_LONG


def test_max_line_chunk_and_trailer_lines(lib):
    ml = 40
    ext = b"1;" + b"e" * (ml - 2)
    assert len(ext) == ml
    assert check(lib, CHUNKED_HEAD + ext + b"\r\na\r\n0\r\n\r\n", max_line=ml).body == b"a"
    assert code(lib, CHUNKED_HEAD + ext + b"e\r\na\r\n0\r\n\r\n", max_line=ml) == \
        FP_E_LINE_TOO_LONG
    assert code(lib, CHUNKED_HEAD + b"1" * (ml + 2), max_line=ml) == FP_E_LINE_TOO_LONG
    assert code(lib, CHUNKED_HEAD + b"0" * 10 + b";" + b"x" * (ml - 10), max_line=ml) == NEED_MORE
    tr = b"T: " + b"t" * (ml - 3)
    assert check(lib, CHUNKED_HEAD + b"0\r\n" + tr + b"\r\n\r\n", max_line=ml).code > 0
    assert code(lib, CHUNKED_HEAD + b"0\r\n" + tr + b"t\r\n\r\n", max_line=ml) == \
        FP_E_LINE_TOO_LONG


def test_max_head(lib):
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nX: abc\r\n\r\n"
    assert code(lib, head, max_head=len(head)) == len(head)
    assert code(lib, head, max_head=len(head) - 1) == FP_E_HEAD_TOO_LARGE
    # Each head of an interim sequence has its own budget.
    interim = b"HTTP/1.1 100 Continue\r\n\r\n"
    assert code(lib, interim + head, max_head=len(head)) == len(interim) + len(head)
    # Checked before the line's syntax (check 2 before check 3).
    bad = b"HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n"
    assert code(lib, bad, max_head=len(b"HTTP/1.1 200 OK\r\n") + 5) == FP_E_HEAD_TOO_LARGE
    assert code(lib, bad) == FP_E_HEADER_WS


def test_max_head_trailer_section(lib):
    trailers = b"A: " + b"a" * 60 + b"\r\nB: 2\r\n\r\n"
    assert len(trailers) > len(CHUNKED_HEAD)  # so the limit bites on the trailers only
    body = b"1\r\nx\r\n0\r\n" + trailers
    assert check(lib, CHUNKED_HEAD + body, max_head=len(trailers)).body == b"x"
    assert code(lib, CHUNKED_HEAD + body, max_head=len(trailers) - 1) == FP_E_HEAD_TOO_LARGE
    assert code(lib, CHUNKED_HEAD + b"0\r\n\r\n", max_head=len(CHUNKED_HEAD)) > 0


def test_max_headers(lib):
    fields = b"".join(b"H%d: v\r\n" % i for i in range(4))
    assert check(lib, b"HTTP/1.1 200 OK\r\n" + fields + b"\r\n", max_headers=4,
                 head_request=True).headers[3] == (b"H3", b"v")
    assert code(lib, b"HTTP/1.1 200 OK\r\n" + fields + b"H4: v\r\n\r\n", max_headers=4) == \
        FP_E_TOO_MANY_HEADERS
    # Syntax (check 3) before the count (check 4); the count before semantics (check 5).
    assert code(lib, b"HTTP/1.1 200 OK\r\n" + fields + b"H 4: v\r\n\r\n", max_headers=4) == \
        FP_E_HEADER_WS
    assert code(lib, b"HTTP/1.1 200 OK\r\n" + fields + b"Content-Length: x\r\n\r\n",
                max_headers=4) == FP_E_TOO_MANY_HEADERS
    assert code(lib, b"HTTP/1.1 200 OK\r\nA: 1\r\nB: 2\r\n\r\n", max_headers=1) == \
        FP_E_TOO_MANY_HEADERS
    many = b"".join(b"H%d: v\r\n" % i for i in range(100))
    assert len(check(lib, b"HTTP/1.1 200 OK\r\n" + many + b"\r\n", head_request=True).headers) \
        == 100
    assert code(lib, b"HTTP/1.1 200 OK\r\n" + many + b"X: y\r\n\r\n") == FP_E_TOO_MANY_HEADERS


def test_max_headers_trailers(lib):
    tr = b"".join(b"T%d: v\r\n" % i for i in range(3))
    assert check(lib, CHUNKED_HEAD + b"0\r\n" + tr + b"\r\n", max_headers=3).code > 0
    assert code(lib, CHUNKED_HEAD + b"0\r\n" + tr + b"T: x\r\n\r\n", max_headers=3) == \
        FP_E_TOO_MANY_HEADERS


def test_max_body(lib):
    h = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n"
    assert check(lib, h + b"0123456789", max_body=10).body == b"0123456789"
    assert code(lib, h, max_body=9) == FP_E_BODY_TOO_LARGE
    chunks = b"4\r\nabcd\r\n6\r\nefghij\r\n0\r\n\r\n"
    assert check(lib, CHUNKED_HEAD + chunks, max_body=10).body == b"abcdefghij"
    assert code(lib, CHUNKED_HEAD + chunks, max_body=9) == FP_E_BODY_TOO_LARGE
    assert code(lib, CHUNKED_HEAD + b"b\r\n", max_body=10) == FP_E_BODY_TOO_LARGE
    assert check(lib, CHUNKED_HEAD + b"0\r\n\r\n", max_body=0).body == b""
    close = b"HTTP/1.1 200 OK\r\n\r\n"
    assert check(lib, close + b"x" * 10, max_body=10, eof=True).body == b"x" * 10
    assert code(lib, close + b"x" * 11, max_body=10) == FP_E_BODY_TOO_LARGE
    assert code(lib, close + b"x" * 11, max_body=10, eof=True) == FP_E_BODY_TOO_LARGE


# ---- resumability -----------------------------------------------------------------------------------

def test_resume_state_is_kept(lib):
    lim = limits(lib)
    h = ffi.new("fp_head *")
    lib.fp_head_init(h)
    spans = spans_for(lim)
    part = b"HTTP/1.1 200 OK\r\nX-A: bcd"
    buf = DATA.put(part)
    assert lib.fp_head_parse(h, buf, len(part), lim, spans) == NEED_MORE
    assert (h.pos, h.scan, h.in_fields) == (17, 8, 1)
    # Validated lines are not looked at again: corrupting them now changes nothing.
    part2 = b"XXXXXXXXXXXXXXXXX" + part[17:] + b"\r\n\r\n"
    buf = DATA.put(part2)
    assert lib.fp_head_parse(h, buf, len(part2), lim, spans) == len(part2)
    assert h.status == 200 and h.num_headers == 1


def test_resume_partial_line_is_not_searched_again(lib):
    lim = limits(lib)
    h = ffi.new("fp_head *")
    lib.fp_head_init(h)
    spans = spans_for(lim)
    part = b"HTTP/1.1 200 OK\r\nX: abcdef"
    buf = DATA.put(part)
    assert lib.fp_head_parse(h, buf, len(part), lim, spans) == NEED_MORE
    assert h.scan == len(part) - 17
    # An LF placed in the already-searched part is not found: the search resumed, so the line
    # ends at the new LF and the stray LF is judged as value content.
    part2 = part[:-1] + b"\n" + b"\r\n\r\n"
    buf = DATA.put(part2)
    assert lib.fp_head_parse(h, buf, len(part2), lim, spans) == FP_E_HEADER_VALUE


def test_every_error_is_split_independent(lib):
    # check() already compares all splits; here inputs whose error depends on a line that is
    # incomplete in most prefixes.
    for data, kw in [
        (b"HTTP/1.1 200 OK\r\n" + b"X" * 100 + b"\r\n\r\n", {"max_line": 50}),
        (b"HTTP/1.1 200 OK\r\n" + b"X: " + b"v" * 60 + b"\r\n\r\n", {"max_head": 50}),
        (CHUNKED_HEAD + b"1" * 60, {"max_line": 50}),
        (CHUNKED_HEAD + b"3\r\nabcXY", {}),
    ]:
        assert code(lib, data, **kw) < NEED_MORE


# ---- in-place chunked decoding ---------------------------------------------------------------------

def decode_stream(lib, body: bytes, cuts, expected: bytes, **lim_kw):
    lim = limits(lib, **lim_kw)
    d = ffi.new("fp_chunked *")
    lib.fp_chunked_init(d)
    content = b""
    fed = 0
    rc = NEED_MORE
    for cut in [*cuts, len(body)]:
        if cut <= fed:
            continue
        content += body[fed:cut]
        fed = cut
        buf = DATA.put(content)
        plen = ffi.new("size_t *", len(content))
        rc = lib.fp_chunked_decode(d, buf, plen, lim)
        content = ffi.buffer(buf, plen[0])[:]
        if rc < NEED_MORE:
            return rc, content
        dec = content[: d.decoded]
        assert expected.startswith(dec)
        tail = content[d.decoded:]
        assert body[:fed].endswith(tail)
        if rc == NEED_MORE:
            # What stays undecoded is at most a partial line: what bounds the work per call.
            assert len(tail) <= lim.max_line + 1
        else:
            assert rc == d.decoded and dec == expected
    return rc, content


def test_chunked_decode_in_place(lib):
    chunks = [b"a" * 100, b"b" * 1, b"c" * 4000, b"d" * 17]
    body = b"".join(b"%x;e=1\r\n%s\r\n" % (len(c), c) for c in chunks) + b"0\r\nT: 1\r\n\r\n"
    expected = b"".join(chunks)
    rest = b"HTTP/1.1 200 OK\r\n"
    for cuts in ([], range(1, len(body) + 1), range(7, len(body), 7), [3, 500, 4100]):
        rc, content = decode_stream(lib, body + rest, list(cuts), expected)
        assert rc == len(expected) and content == expected + rest


def test_chunked_decode_byte_by_byte_stays_bounded(lib):
    body = b"1000;" + b"x" * 200 + b"\r\n" + b"z" * 4096 + b"\r\n0\r\n\r\n"
    rc, content = decode_stream(lib, body, list(range(1, len(body))), b"z" * 4096,
                                max_line=300)
    assert rc == 4096 and content == b"z" * 4096


def test_chunked_decode_errors_sticky(lib):
    lim = limits(lib)
    d = ffi.new("fp_chunked *")
    lib.fp_chunked_init(d)
    data = b"zz\r\n"
    buf = DATA.put(data)
    plen = ffi.new("size_t *", len(data))
    assert lib.fp_chunked_decode(d, buf, plen, lim) == FP_E_CHUNK_SIZE
    good = b"0\r\n\r\n"
    buf = DATA.put(good)
    plen[0] = len(good)
    assert lib.fp_chunked_decode(d, buf, plen, lim) == FP_E_CHUNK_SIZE


def test_resp_chunked_buffer_layout(lib):
    data = CHUNKED_HEAD + b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\nHTTP/1.1 204 X\r\n\r\n"
    r = ffi.new("fp_resp *")
    lim = limits(lib)
    lib.fp_resp_init(r, lim, 0)
    buf = DATA.put(data)
    plen = ffi.new("size_t *", len(data))
    rc = lib.fp_resp_parse(r, buf, plen, spans_for(lim))
    assert rc == len(CHUNKED_HEAD) + 5
    assert ffi.buffer(buf, plen[0])[:] == CHUNKED_HEAD + b"abcde" + b"HTTP/1.1 204 X\r\n\r\n"


# ---- end of input -------------------------------------------------------------------------------------

@pytest.mark.parametrize("head_request", [False, True])
def test_eof_no_response(lib, head_request):
    assert code(lib, b"", eof=True, head_request=head_request) == FP_E_NO_RESPONSE


def test_eof_no_response_direct_and_final(lib):
    # fp_resp_eof on a parser that was never fed, then the error stays.
    lim = limits(lib)
    r = ffi.new("fp_resp *")
    lib.fp_resp_init(r, lim, 0)
    buf = DATA.put(b"")
    assert lib.fp_resp_eof(r, buf, 0) == FP_E_NO_RESPONSE
    data = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
    buf = DATA.put(data)
    plen = ffi.new("size_t *", len(data))
    assert lib.fp_resp_parse(r, buf, plen, spans_for(lim)) == FP_E_NO_RESPONSE


@pytest.mark.parametrize("data", [
    b"H",
    b"HTTP/1.1 200 OK\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nabc",
    b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n",
    CHUNKED_HEAD,
    CHUNKED_HEAD + b"5\r\nab",
    CHUNKED_HEAD + b"5\r\nabcde\r",
    CHUNKED_HEAD + b"0\r\n",
    CHUNKED_HEAD + b"0\r\nT: 1\r\n",
    b"HTTP/1.1 100 Continue\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n",
])
def test_eof_truncated(lib, data):
    assert code(lib, data, eof=True) == FP_E_TRUNCATED


def test_eof_completes_or_keeps(lib):
    data = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokEXTRA"
    r = check(lib, data, eof=True)
    assert r.body == b"ok" and r.trailing == b"EXTRA"
    r = check(lib, b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.0 200 OK\r\nServer: x\r\n\r\nbody", eof=True)
    assert r.body == b"body" and r.interim == 1 and not r.keep_alive
    # An error stays the error, even at end of input.
    assert code(lib, b"HTTP/9.9 200 OK\r\n", eof=True) == FP_E_VERSION


def test_eof_on_head_request_with_partial_head(lib):
    assert code(lib, b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n", eof=True, head_request=True) \
        == FP_E_TRUNCATED


# ---- property tests ----------------------------------------------------------------------------------

_name = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.~!#$",
                min_size=1, max_size=20).filter(
    lambda s: s.lower() not in ("content-length", "transfer-encoding", "connection"))
_value = st.binary(max_size=40).map(
    lambda b: bytes(c for c in b if c in VALUE_OK).strip(b" \t"))


@st.composite
def responses(draw):
    status = draw(st.integers(200, 599).filter(lambda s: s not in (204, 304)))
    minor = draw(st.sampled_from([0, 1]))
    fields = draw(st.lists(st.tuples(_name, _value), max_size=8))
    body = draw(st.binary(max_size=300))
    framing = draw(st.sampled_from(["cl", "chunked", "close"] if minor else ["cl", "close"]))
    head = b"HTTP/1.%d %d %s\r\n" % (minor, status, draw(_value))
    lines = [n.encode() + b":" + draw(st.sampled_from([b"", b" ", b"\t "])) + v +
             draw(st.sampled_from([b"", b" "])) + b"\r\n" for n, v in fields]
    if framing == "cl":
        lines.insert(draw(st.integers(0, len(lines))), b"Content-Length: %d\r\n" % len(body))
        payload = body
    elif framing == "chunked":
        lines.insert(draw(st.integers(0, len(lines))), b"Transfer-Encoding: chunked\r\n")
        cuts = sorted(draw(st.lists(st.integers(0, len(body)), max_size=5)))
        parts, prev = [], 0
        for c in [*cuts, len(body)]:
            if c > prev:
                ext = draw(st.sampled_from([b"", b";a=b", b" ; x"]))
                parts.append(b"%x%s\r\n%s\r\n" % (c - prev, ext, body[prev:c]))
                prev = c
        payload = b"".join(parts) + b"0\r\n" + draw(st.sampled_from([b"", b"T: v\r\n"])) + b"\r\n"
    else:
        payload = body
    trailing = b"" if framing == "close" else draw(st.binary(max_size=10))
    data = head + b"".join(lines) + b"\r\n" + payload + trailing
    return data, body, fields, framing, trailing


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=responses(), seed=st.randoms(use_true_random=False))
def test_property_valid_responses(lib, case, seed):
    data, body, fields, framing, trailing = case
    cuts = sorted(seed.sample(range(1, len(data)), min(len(data) - 1, 4)))
    r = run(lib, data, eof=framing == "close")
    assert r.code > 0 and r.body == body and r.trailing == trailing
    assert [(n.encode(), v) for n, v in fields] == [h for h in r.headers if h[0].lower() not in (
        b"content-length", b"transfer-encoding")]
    assert run(lib, data, cuts, eof=framing == "close") == r
    assert run(lib, data, range(1, len(data)), eof=framing == "close") == r


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=responses(), flips=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)),
                                        min_size=1, max_size=3))
def test_property_mutated_responses_split_independent(lib, case, flips):
    data = bytearray(case[0])
    for pos, b in flips:
        data[pos % len(data)] = b
    data = bytes(data)
    whole = run(lib, data, eof=True, max_line=64, max_head=256, max_headers=6)
    for k in range(1, len(data), max(1, len(data) // 25)):
        assert run(lib, data, [k], eof=True, max_line=64, max_head=256, max_headers=6) == whole


# ---- writer -----------------------------------------------------------------------------------------

def write(lib, method=b"GET", target=b"/", block=b"", fields=(), body=None, cap=None,
          last=None):
    """Calls fp_request_size and fp_write_request with every input in guarded memory (the
    input named by `last` ends at the guard page) and the output ending at another guard page.
    Returns (rc, output or None, size)."""
    body_b = body if body is not None else b""
    items = {"method": method, "target": target, "block": block, "body": body_b}
    for i, (n, v) in enumerate(fields):
        items[f"n{i}"] = n
        items[f"v{i}"] = v
    order = [k for k in items if k != last] + ([last] if last else [])
    ptrs = dict(zip(order, WIN.pack([items[k] for k in order])))
    fs = ffi.new("fp_field[]", max(1, len(fields)))
    for i, (n, v) in enumerate(fields):
        fs[i].name, fs[i].name_len = ptrs[f"n{i}"], len(n)
        fs[i].value, fs[i].value_len = ptrs[f"v{i}"], len(v)
    cl = -1 if body is None else len(body)
    size = lib.fp_request_size(len(method), len(target), len(block), fs, len(fields), cl)
    if cap is None:
        cap = size
    out = WOUT.end - cap
    ffi.memmove(out - 1, b"\xaa" * (cap + 1), cap + 1)
    rc = lib.fp_write_request(out, cap, ptrs["method"], len(method), ptrs["target"], len(target),
                              ptrs["block"], len(block), fs, len(fields),
                              ffi.NULL if body is None else ptrs["body"], cl)
    assert ffi.buffer(out - 1, 1)[:] == b"\xaa", "wrote before the output buffer"
    if rc < 0:
        assert ffi.buffer(out, cap)[:] == b"\xaa" * cap, "an error must leave out untouched"
        return rc, None, size
    assert rc <= cap
    return rc, ffi.buffer(out, rc)[:], size


def write_fields(lib, fields, cap=None):
    flat = [x for f in fields for x in f]
    ptrs = WIN.pack(flat)
    fs = ffi.new("fp_field[]", max(1, len(fields)))
    for i, (n, v) in enumerate(fields):
        fs[i].name, fs[i].name_len = ptrs[2 * i], len(n)
        fs[i].value, fs[i].value_len = ptrs[2 * i + 1], len(v)
    need = sum(len(n) + len(v) + 4 for n, v in fields)
    if cap is None:
        cap = need
    out = WOUT.end - cap
    ffi.memmove(out, b"\xaa" * cap, cap)
    rc = lib.fp_write_fields(out, cap, fs, len(fields))
    if rc < 0:
        assert ffi.buffer(out, cap)[:] == b"\xaa" * cap
        return rc, None
    return rc, ffi.buffer(out, rc)[:]


def check_field(lib, name: bytes, value: bytes) -> int:
    n, v = WIN.pack([name, value])
    f = ffi.new("fp_field *", {"name": n, "name_len": len(name), "value": v,
                               "value_len": len(value)})
    return lib.fp_check_field(f)


def test_write_get_exact_bytes(lib):
    block = b"Host: api.example.com\r\nUser-Agent: fastpool\r\n"
    rc, out, size = write(lib, b"GET", b"/api/v3/ticker?symbol=BTCUSDT", block)
    assert out == b"GET /api/v3/ticker?symbol=BTCUSDT HTTP/1.1\r\n" + block + b"\r\n"
    assert rc == size == len(out)


def test_write_post_exact_bytes(lib):
    rc, out, size = write(lib, b"POST", b"/api/v3/order", b"Host: h\r\n",
                          [(b"X-Sig", b"abc def"), (b"Content-Type", b"application/json")],
                          b'{"q":1}')
    assert out == (b"POST /api/v3/order HTTP/1.1\r\nHost: h\r\nX-Sig: abc def\r\n"
                   b"Content-Type: application/json\r\nContent-Length: 7\r\n\r\n{\"q\":1}")
    assert rc == size


def test_write_empty_body_and_asterisk(lib):
    rc, out, size = write(lib, b"OPTIONS", b"*", b"", [], b"")
    assert out == b"OPTIONS * HTTP/1.1\r\nContent-Length: 0\r\n\r\n" and rc == size


def test_write_size_exact_for_many_shapes(lib):
    for nf in range(4):
        for body in (None, b"", b"x", b"y" * 9, b"z" * 10, b"w" * 12345):
            fields = [(b"F%d" % i, b"v" * i) for i in range(nf)]
            rc, out, size = write(lib, b"PUT", b"/p", b"A: b\r\n", fields, body)
            assert rc == size == len(out)


def test_write_buffer_too_small(lib):
    rc, out, size = write(lib, b"POST", b"/o", b"", [(b"A", b"b")], b"body")
    assert rc == size
    for cap in (0, 1, size // 2, size - 1):
        assert write(lib, b"POST", b"/o", b"", [(b"A", b"b")], b"body", cap=cap)[0] == \
            FP_E_BUFFER
    assert write(lib, b"POST", b"/o", b"", [(b"A", b"b")], b"body", cap=size + 7)[0] == size


def test_write_content_length_dropped(lib):
    for value in (b"4", b" 4 ", b"\t0004", b"4\t"):
        rc, out, size = write(lib, b"POST", b"/o", b"", [(b"content-length", value), (b"A", b"b")],
                              b"body")
        assert out == b"POST /o HTTP/1.1\r\nA: b\r\nContent-Length: 4\r\n\r\nbody"
        assert size == rc + len(b"content-length") + len(value) + 4  # the bound, exactly


@pytest.mark.parametrize("value,body", [
    (b"5", b"body"), (b"3", b"body"), (b"", b"body"), (b"4 4", b"body"), (b"+4", b"body"),
    (b"4,4", b"body"), (b"0", None), (b"4", None), (b"99999999999999999999999", b"body"),
])
def test_write_content_length_mismatch(lib, value, body):
    assert write(lib, b"POST", b"/o", b"", [(b"Content-Length", value)], body)[0] == \
        FP_E_CL_MISMATCH


def test_write_null_body_with_length(lib):
    fs = ffi.new("fp_field[]", 1)
    out = WOUT.end - 100
    m, t = WIN.pack([b"POST", b"/x"])
    assert lib.fp_write_request(out, 100, m, 4, t, 2, ffi.NULL, 0, fs, 0, ffi.NULL, 3) == \
        FP_E_CL_MISMATCH
    assert lib.fp_write_request(out, 100, m, 4, t, 2, ffi.NULL, 0, fs, 0, ffi.NULL, 0) > 0


@pytest.mark.parametrize("name", [b"Host", b"host", b"HOST", b"Connection", b"connection",
                                  b"Transfer-Encoding", b"TRANSFER-encoding"])
def test_write_forbidden_fields(lib, name):
    assert write(lib, fields=[(name, b"x")])[0] == FP_E_FIELD_FORBIDDEN
    assert check_field(lib, name, b"x") == FP_E_FIELD_FORBIDDEN
    assert write_fields(lib, [(b"A", b"b"), (name, b"x")])[0] == FP_E_FIELD_FORBIDDEN
    # Names that merely look alike are fine.
    assert check_field(lib, name + b"s", b"x") == 0


def test_write_fields_block(lib):
    rc, out = write_fields(lib, [(b"Host", b"h")])
    assert rc == FP_E_FIELD_FORBIDDEN
    fields = [(b"User-Agent", b"fastpool/0.1"), (b"Accept", b"*/*"), (b"X-Empty", b"")]
    rc, out = write_fields(lib, fields)
    assert out == b"User-Agent: fastpool/0.1\r\nAccept: */*\r\nX-Empty: \r\n" and rc == len(out)
    assert write_fields(lib, fields, cap=len(out) - 1)[0] == FP_E_BUFFER
    assert write_fields(lib, [])[0] == 0
    # The block goes on every request and the writer adds its own Content-Length.
    assert write_fields(lib, [(b"Content-Length", b"0")])[0] == FP_E_FIELD_FORBIDDEN
    assert write_fields(lib, [(b"A", b"x\ny")])[0] == FP_E_FIELD_VALUE
    assert write_fields(lib, [(b"A B", b"x")])[0] == FP_E_FIELD_NAME


def test_write_validation_order(lib):
    # method, target, then fields in order (name, forbidden, value, Content-Length), buffer.
    assert write(lib, b"G T", b"x", fields=[(b"Host", b"\n")], cap=0)[0] == FP_E_METHOD
    assert write(lib, b"GET", b"x", fields=[(b"Host", b"\n")], cap=0)[0] == FP_E_TARGET
    assert write(lib, fields=[(b"A", b"\n"), (b"Host", b"")], cap=0)[0] == FP_E_FIELD_VALUE
    assert write(lib, fields=[(b"Host", b"\n")], cap=0)[0] == FP_E_FIELD_FORBIDDEN
    assert write(lib, fields=[(b"A B", b"\n")], cap=0)[0] == FP_E_FIELD_NAME
    assert write(lib, fields=[(b"Content-Length", b"1")], cap=0)[0] == FP_E_CL_MISMATCH
    assert write(lib, cap=0)[0] == FP_E_BUFFER


@pytest.mark.parametrize("b", [*range(0x00, 0x21), 0x7F, *range(0x80, 0x100)])
def test_write_forbidden_bytes(lib, b):
    c = bytes([b])
    # method and field name: tokens
    assert write(lib, method=b"G" + c + b"T")[0] == FP_E_METHOD
    assert write(lib, method=c)[0] == FP_E_METHOD
    assert lib.fp_check_method(WIN.put(c), 1) == FP_E_METHOD
    assert write(lib, fields=[(b"X-" + c, b"v")])[0] == FP_E_FIELD_NAME
    assert write(lib, fields=[(c + b"X", b"v")], last="n0")[0] == FP_E_FIELD_NAME
    # target: visible ASCII only
    assert write(lib, target=b"/a" + c + b"b")[0] == FP_E_TARGET
    assert write(lib, target=b"/" + c, last="target")[0] == FP_E_TARGET
    # value: HTAB, SP and obs-text are allowed; every other control and DEL are not
    for value in (c, b"a" + c, c * 20, b"v" * 16 + c, b"v" * 15 + c + b"v" * 15):
        rc = write(lib, fields=[(b"X", value)], last="v0")[0]
        rc2 = write(lib, fields=[(b"X", value)])[0]
        if b in VALUE_OK:
            assert rc > 0 and rc2 > 0
        else:
            assert rc == rc2 == FP_E_FIELD_VALUE


def test_write_good_bytes(lib):
    for b in TCHAR:
        c = bytes([b])
        assert write(lib, method=c + b"X", fields=[(c, b"v")])[0] > 0
    for b in range(0x21, 0x7F):
        assert write(lib, target=b"/" + bytes([b]))[0] > 0


def test_check_target_forms(lib):
    for t, expected in [(b"*", 0), (b"/", 0), (b"/a?b=c&d=%20", 0), (b"", FP_E_TARGET),
                        (b"**", FP_E_TARGET), (b"*/", FP_E_TARGET),
                        (b"http://h/", FP_E_TARGET), (b"a/", FP_E_TARGET), (b"h:80", FP_E_TARGET)]:
        assert lib.fp_check_target(WIN.put(t), len(t)) == expected, t


def test_check_field_rules(lib):
    assert check_field(lib, b"", b"v") == FP_E_FIELD_NAME
    assert check_field(lib, b"X", b"") == 0
    assert check_field(lib, b"X", b" lead and trail\t") == 0
    assert check_field(lib, b"Content-Length", b"whatever") == 0
    assert check_field(lib, b"X", b"caf\xc3\xa9") == 0
    assert check_field(lib, b"X", b"a\r\nInjected: 1") == FP_E_FIELD_VALUE
