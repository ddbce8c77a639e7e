"""The command line of ``fastpool bench``: parsing, validation, and the safety rules.

Everything the user can choose is an :class:`Options`; :func:`parse` turns argv into one or
raises :class:`UsageError` (exit code 2) with a message that says what to change.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import socket
from dataclasses import dataclass, field
from typing import Optional, Sequence

from . import features
from .clients import CLIENT_NAMES, CLIENTS

#: Every mode, in the order a run goes through them.
#: The modes that race fastpool against the peers (each client in its own worker process).
PEER_MODES = ("latency", "sporadic", "throughput", "cold", "reconnect", "sizes")
#: The modes that measure one of fastpool's own features (fastpool._bench.features): fastpool
#: only, in this process, each against a server of its own.
FEATURE_MODES = tuple(features.FEATURE_MODES)
MODES = PEER_MODES + FEATURE_MODES
DEFAULT_MODES = ("latency", "sporadic", "throughput", "cold")
#: Idle gaps of the sporadic mode, ns, and the requests per client after each: a short
#: version in the default run (a 1 s gap costs a second per request), the full one when the
#: mode is asked for (--modes sporadic, --mode all).
DEFAULT_GAPS = (1_000_000, 10_000_000, 100_000_000, 1_000_000_000)
SPORADIC_COUNTS_DEFAULT_RUN = (60, 40, 40, 12)
SPORADIC_COUNTS_FULL = (200, 100, 60, 30)
DEFAULT_INFLIGHT_DEFAULT_RUN = (16,)
DEFAULT_INFLIGHT_ALL = (1, 4, 16, 64)
DEFAULT_SIZES = (137, 4096, 65536, 1048576)
#: Sequential requests per client in the default run: sized so that the whole default run
#: (every client installed here, latency + throughput(16) + cold start) takes well under two
#: minutes on a 2-core machine.
DEFAULT_REQUESTS = 10_000
#: ...and at most this many seconds of them per client (the slowest peers take ~1 ms a
#: request here: 10 000 of theirs would be most of the run). -n N lifts it: then N it is.
DEFAULT_MAX_SECONDS = 3.0
MAX_SIZE = 64 << 20

EXIT_OK = 0
EXIT_FAILED = 1        # the benchmark ran, but a fastpool client failed its checks
EXIT_USAGE = 2         # bad command line, bad URL, refused remote target
EXIT_MISSING = 3       # an optional dependency the user asked for (matplotlib) is missing
EXIT_INTERRUPTED = 130


class UsageError(Exception):
    """A command line that cannot run; the message says why (exit code 2)."""


@dataclass
class Options:
    url: Optional[str] = None
    requests: int = DEFAULT_REQUESTS
    requests_given: bool = False
    max_seconds: float = DEFAULT_MAX_SECONDS   #: 0: no time cap on the latency mode
    rounds: int = 5
    feature_rounds: int = 3                 #: the feature modes' (-r, else 3)
    warmup: int = 500
    modes: tuple = DEFAULT_MODES
    inflight: tuple = DEFAULT_INFLIGHT_DEFAULT_RUN
    duration: float = 0.5
    cold_reps: int = 40
    reconnect_reps: int = 50
    sizes: tuple = DEFAULT_SIZES
    gaps: tuple = DEFAULT_GAPS
    sporadic_counts: tuple = SPORADIC_COUNTS_DEFAULT_RUN
    body_size: int = 137
    clients: tuple = CLIENT_NAMES
    loop: str = "auto"
    tls: str = "1.3"
    plain: bool = False
    cafile: Optional[str] = None
    expect_status: Optional[int] = None
    expect_length: Optional[int] = None     # None: learn it from a probe; -1: do not check
    json_path: Optional[str] = None
    samples: bool = False
    plot_path: Optional[str] = None
    seed: Optional[int] = None
    progress: Optional[bool] = None         # None: when stderr is a terminal
    remote: bool = False                    # the URL's host is not on this machine
    notes: list = field(default_factory=list)
    argv: list = field(default_factory=list)


def _positive_int(text: str) -> int:
    try:
        value = int(text.replace("_", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least 1")
    return value


def _non_negative_int(text: str) -> int:
    try:
        value = int(text.replace("_", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} must not be negative")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0 or value > 3600:
        raise argparse.ArgumentTypeError(f"{text!r} must be above 0 and at most 3600")
    return value


def parse_size(text: str) -> int:
    """Bytes from "137", "4k", "64KiB", "1m", "1MiB" (binary multiples)."""
    t = text.strip().lower().replace("_", "")
    mult = 1
    for suffix, m in (("kib", 1024), ("mib", 1 << 20), ("kb", 1024), ("mb", 1 << 20),
                      ("k", 1024), ("m", 1 << 20), ("b", 1)):
        if t.endswith(suffix):
            t, mult = t[: -len(suffix)], m
            break
    try:
        value = int(t) * mult
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size (e.g. 137, 4k, 1m)") from None
    if not 0 <= value <= MAX_SIZE:
        raise argparse.ArgumentTypeError(f"{text!r}: sizes go from 0 to {MAX_SIZE} bytes")
    return value


def parse_duration(text: str) -> int:
    """Nanoseconds from "1ms", "10 ms", "0.5s", "250us", "1s" (a bare number is seconds)."""
    t = text.strip().lower().replace(" ", "").replace("µ", "u")
    for suffix, mult in (("ns", 1), ("us", 1_000), ("ms", 1_000_000), ("s", 1_000_000_000)):  # noqa: B007 - mult is used after the loop
        if t.endswith(suffix):
            t = t[: -len(suffix)]
            break
    else:
        mult = 1_000_000_000
    try:
        value = round(float(t) * mult)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration (e.g. 1ms, 100ms, 1s)") \
            from None
    if not 0 < value <= 60_000_000_000:
        raise argparse.ArgumentTypeError(f"{text!r}: gaps go from 1 ns to 60 s")
    return value


def _list(kind, choices: Optional[Sequence[str]] = None):
    def convert(text: str) -> tuple:
        items = [p.strip() for p in text.split(",") if p.strip()]
        if not items:
            raise argparse.ArgumentTypeError("an empty list")
        if choices is not None:
            bad = [i for i in items if i not in choices]
            if bad:
                raise argparse.ArgumentTypeError(
                    f"unknown: {', '.join(bad)} (choose from {', '.join(choices)})")
        out = tuple(kind(i) for i in items)
        return tuple(dict.fromkeys(out))  # de-duplicated, order kept
    return convert


def _client_list(text: str) -> tuple:
    return _list(str, CLIENT_NAMES)(text)


def build_parser() -> argparse.ArgumentParser:
    clients_help = "\n".join(f"  {c.name:<18} {c.description}" for c in CLIENTS)
    ap = argparse.ArgumentParser(
        prog="fastpool bench",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "Latency and throughput of fastpool beside a raw C client (the floor) and every\n"
            "Python HTTP client installed.\n\n"
            "Without URL it starts fastpool's embedded HTTPS server (TLS 1.3, with a CA made "
            "for the\nrun) on 127.0.0.1 and measures against it; with URL it GETs that URL's "
            "path.\n\n"
            "Each client runs in its own fresh process, keeps pre-opened keep-alive "
            "connections,\nverifies TLS against the server's CA, and has every response's "
            "status and body length\nchecked: a client that returns wrong responses is "
            "reported as failed, not measured.\nRounds interleave the clients in a new "
            "shuffled order each time, so that drift in the\nmachine hits all of them alike; "
            "warm-up requests are never measured."),
        epilog=(
            "modes:\n"
            "  latency     sequential GETs on one pre-opened connection: p50 ... max\n"
            "  sporadic    one GET after each idle gap (--gaps; default 1ms,10ms,100ms,1s), "
            "what a\n              strategy's occasional order sees: p50 ... max after the "
            "gap, and × its\n              warm p50. A short version (few requests per gap) "
            "is in the default\n              run; --modes sporadic runs the full one "
            "(--sporadic-count)\n"
            "  throughput  requests per second with N requests in flight (async clients: N "
            "tasks;\n              sync clients: N threads; the floor: N C threads, one "
            "connection each)\n"
            "  cold        new client/pool -> first response (connect + TLS handshake "
            "included)\n"
            "  reconnect   a lost connection -> next response: full vs resumed TLS handshake "
            "for\n              fastpool and the floor, each peer's own reconnect otherwise\n"
            "  sizes       sequential latency for each --sizes response body (embedded "
            "server only)\n\n"
            "feature modes (fastpool only, in this process, each against a local server of "
            "its own\nwhatever the URL; in --mode all, not in the default run; -n sets their "
            "count per client\nand round, -r their rounds):\n"
            "  pipeline    a burst of 10 quotes: pool.pipeline() vs 10 sequential GETs vs 10 "
            "concurrent\n              ones (threads, asyncio.gather), against the floor\n"
            "  hedge       hedged vs unhedged GETs against a server that stalls 1 % of its "
            "answers\n              for 50 ms: p99, p99.9, copies sent and won\n"
            "  choice      choose=\"fastest\" vs \"hottest\" over two gateway addresses, one "
            "answering\n              1 ms late: latency and the slow connections replaced\n"
            "  busy-poll   Pool(busy_poll=...) vs the default wait (sync C engine): back to "
            "back and\n              after an idle gap\n\n"
            "clients (missing ones are reported as not installed):\n" + clients_help + "\n\n"
            "ratios: '× floor' and '× fastpool' say how many times slower a client is than "
            "the\nreference: the p50 latency ratio, or (throughput) the reference's req/s over "
            "the client's.\nThe fastpool reference is fastpool (Pool, C engine); in the "
            "throughput mode, fastpool-async.\n\n"
            "CPU/req: user + system CPU time of the client's own process (every thread) over "
            "the\nmeasured requests, per request (getrusage). The embedded server runs in "
            "the parent process\nand is in no row.\n"
            "p50 rounds: the lowest and highest p50 of the interleaved rounds (req/s rounds "
            "in the\nthroughput tables): a wide range means the machine was noisy during the "
            "run.\n\n"
            "checks: before measuring, each client is told to trust a CA that did not sign "
            "the server's\ncertificate and must fail; one that succeeds does not verify TLS "
            "and is not measured. A\nclient that opens a new connection while it is measured "
            "on one (embedded server) is\nreported failed. A URL whose first response is not "
            "2xx is refused unless --expect-status\nsays that status is the one to measure.\n\n"
            "exit codes: 0 ok, 1 a fastpool client failed, 2 usage error or refused target,\n"
            "3 --plot without matplotlib, 130 interrupted.\n\n"
            "A URL whose host is not on this machine is only measured when -n/--requests is "
            "given:\nthen every mode sends at most that many requests per client."),
    )
    ap.add_argument("url", nargs="?", metavar="URL",
                    help="http(s) URL to GET (default: the embedded HTTPS server)")
    ap.add_argument("-n", "--requests", type=_positive_int, metavar="N",
                    help=f"sequential requests per client in the latency mode, over all rounds "
                         f"(default {DEFAULT_REQUESTS}); required for a remote URL")
    ap.add_argument("--max-seconds", type=float, metavar="S",
                    help=f"latency mode: a client stops after S seconds of requests (over all "
                         f"rounds) if it has not made its N by then; 0 for no cap (default "
                         f"{DEFAULT_MAX_SECONDS:g}, or 0 when -n is given)")
    ap.add_argument("-r", "--rounds", type=_positive_int, default=None, metavar="R",
                    help="rounds of every client, in a new shuffled order each round "
                         "(default 5; throughput uses min(R, 3); the feature modes 3)")
    ap.add_argument("-w", "--warmup", type=_non_negative_int, default=None, metavar="W",
                    help="warm-up requests per client before measuring, not counted "
                         "(default 500, or N/5 when N is smaller)")
    ap.add_argument("--mode", choices=("default", "all"), default="default",
                    help="default: latency + a short sporadic + throughput at 16 in flight + "
                         "cold start; all: every mode (the feature modes too), the full "
                         "sporadic, throughput at 1, 4, 16, 64")
    ap.add_argument("--modes", type=_list(str, MODES), metavar="LIST",
                    help=f"comma-separated modes to run instead ({', '.join(MODES)})")
    ap.add_argument("--inflight", type=_list(_positive_int), metavar="LIST",
                    help="requests in flight for the throughput mode (default 16; 1,4,16,64 "
                         "with --mode all or --modes throughput)")
    ap.add_argument("--duration", type=_positive_float, default=0.5, metavar="S",
                    help="seconds each client runs per throughput round (default 0.5)")
    ap.add_argument("--cold-reps", type=_positive_int, default=40, metavar="N",
                    help="cold starts per client (default 40)")
    ap.add_argument("--reconnect-reps", type=_positive_int, default=50, metavar="N",
                    help="reconnects per client and handshake kind (default 50)")
    ap.add_argument("--gaps", type=_list(parse_duration), metavar="LIST",
                    help="idle gaps of the sporadic mode (default 1ms,10ms,100ms,1s)")
    ap.add_argument("--sporadic-count", type=_positive_int, metavar="N",
                    help="requests per client after each gap (default: 60,40,40,12 for the "
                         "four default gaps in the default run, 200,100,60,30 with --modes "
                         "sporadic or --mode all)")
    ap.add_argument("--sizes", type=_list(parse_size), metavar="LIST",
                    help="response body sizes for the sizes mode (default 137,4k,64k,1m)")
    ap.add_argument("--body-size", type=parse_size, default=137, metavar="BYTES",
                    help="the embedded server's response body in the other modes "
                         "(default 137, a ticker)")
    ap.add_argument("--clients", type=_client_list, metavar="LIST",
                    help="comma-separated clients to run (default: all)")
    ap.add_argument("--skip", type=_client_list, metavar="LIST", default=(),
                    help="comma-separated clients not to run")
    ap.add_argument("--loop", choices=("auto", "asyncio", "uvloop"), default="auto",
                    help="event loop of the async clients (default: uvloop when installed)")
    ap.add_argument("--tls", choices=("1.2", "1.3"), default="1.3",
                    help="TLS version of the embedded server (default 1.3)")
    ap.add_argument("--plain", action="store_true",
                    help="embedded server over plain HTTP instead of HTTPS")
    ap.add_argument("--cafile", metavar="PEM",
                    help="CA file to verify the URL's server with (default: the system "
                         "trust store)")
    ap.add_argument("--expect-status", type=int, metavar="CODE",
                    help="status every response must have (default: 200 for the embedded "
                         "server, the first response's status for a URL)")
    ap.add_argument("--expect-length", metavar="BYTES|any",
                    help="body length every response must have, or 'any' (default: the "
                         "configured body, or the first response's length for a URL)")
    ap.add_argument("--json", dest="json_path", metavar="FILE",
                    help="write every figure, versions and the machine to FILE (schema: "
                         "fastpool._bench.report)")
    ap.add_argument("--samples", action="store_true",
                    help="also put every latency sample (ns) in the JSON file")
    ap.add_argument("--plot", dest="plot_path", metavar="FILE.png",
                    help="latency CDF per client, log x axis (needs matplotlib: "
                         "pip install 'fastpool[plot]')")
    ap.add_argument("--seed", type=int, metavar="N",
                    help="seed of the shuffled client order (default: random, recorded in "
                         "the JSON)")
    prog = ap.add_mutually_exclusive_group()
    prog.add_argument("--progress", dest="progress", action="store_true", default=None,
                      help="show progress even when stderr is not a terminal")
    prog.add_argument("-q", "--quiet", dest="progress", action="store_false",
                      help="no progress, even on a terminal")
    return ap


def parse(argv: Sequence[str]) -> Options:
    """Options from the arguments after ``bench``; UsageError when they cannot run."""
    ap = build_parser()
    try:
        ns = ap.parse_args(list(argv))
    except SystemExit as exc:  # argparse printed its message (or --help)
        raise _ArgparseExit(int(exc.code or 0)) from None
    o = Options(argv=list(argv))
    o.url = ns.url
    o.requests_given = ns.requests is not None
    o.requests = ns.requests if ns.requests is not None else DEFAULT_REQUESTS
    o.rounds = min(ns.rounds or 5, o.requests)
    o.feature_rounds = ns.rounds or 3
    if ns.max_seconds is not None:
        if ns.max_seconds < 0:
            raise UsageError("--max-seconds must not be negative")
        o.max_seconds = ns.max_seconds
    else:
        o.max_seconds = 0.0 if o.requests_given else DEFAULT_MAX_SECONDS
    o.warmup = ns.warmup if ns.warmup is not None else min(500, o.requests // 5)
    if ns.modes:
        o.modes = tuple(m for m in MODES if m in ns.modes)
    elif ns.mode == "all":
        o.modes = MODES
    else:
        o.modes = DEFAULT_MODES
    if ns.inflight:
        o.inflight = tuple(sorted(ns.inflight))
    elif ns.mode == "all" or ns.modes:
        o.inflight = DEFAULT_INFLIGHT_ALL
    else:
        o.inflight = DEFAULT_INFLIGHT_DEFAULT_RUN
    if max(o.inflight) > 256:
        raise UsageError("--inflight: at most 256 requests in flight")
    o.duration = ns.duration
    o.cold_reps = ns.cold_reps
    o.reconnect_reps = ns.reconnect_reps
    o.sizes = tuple(ns.sizes) if ns.sizes else DEFAULT_SIZES
    o.gaps = tuple(sorted(ns.gaps)) if ns.gaps else DEFAULT_GAPS
    full = bool(ns.modes) or ns.mode == "all"
    if ns.sporadic_count:
        o.sporadic_counts = (ns.sporadic_count,) * len(o.gaps)
    else:
        o.sporadic_counts = tuple(_sporadic_count(g, full) for g in o.gaps)
    o.body_size = ns.body_size
    chosen = ns.clients or CLIENT_NAMES
    o.clients = tuple(c for c in chosen if c not in ns.skip)
    if not o.clients:
        raise UsageError("no client left to run (--clients / --skip)")
    o.loop = ns.loop
    o.tls = ns.tls
    o.plain = ns.plain
    o.cafile = ns.cafile
    o.expect_status = ns.expect_status
    if ns.expect_length is None:
        o.expect_length = None
    elif ns.expect_length.strip().lower() == "any":
        o.expect_length = -1
    else:
        try:
            o.expect_length = parse_size(ns.expect_length)
        except argparse.ArgumentTypeError as exc:
            raise UsageError(f"--expect-length: {exc}") from None
    o.json_path = ns.json_path
    o.samples = ns.samples
    o.plot_path = ns.plot_path
    o.seed = ns.seed
    o.progress = ns.progress
    if o.expect_status is not None and not 100 <= o.expect_status <= 599:
        raise UsageError(f"--expect-status {o.expect_status}: not an HTTP status")
    if o.url is None:
        if o.cafile:
            raise UsageError("--cafile is for a URL; the embedded server's CA is used otherwise")
    else:
        check_url(o)
        if "sizes" in o.modes:
            if ns.modes:
                raise UsageError("the sizes mode needs the embedded server (no URL): it sets "
                                 "the response size itself")
            o.modes = tuple(m for m in o.modes if m != "sizes")
            o.notes.append("sizes mode skipped: it needs the embedded server (no URL)")
    if o.cafile and not os.path.isfile(o.cafile):
        raise UsageError(f"--cafile {o.cafile!r}: no such file")
    for path, what in ((o.json_path, "--json"), (o.plot_path, "--plot")):
        if path:
            parent = os.path.dirname(os.path.abspath(path))
            if not os.path.isdir(parent):
                raise UsageError(f"{what} {path!r}: directory {parent!r} does not exist")
    return o


def _sporadic_count(gap_ns: int, full: bool) -> int:
    """Requests per client after a gap: the table's for the default gaps, else by its length
    (about what the nearest default gap gets)."""
    counts = SPORADIC_COUNTS_FULL if full else SPORADIC_COUNTS_DEFAULT_RUN
    for g, c in zip(DEFAULT_GAPS, counts):
        if gap_ns <= g:
            return c
    return counts[-1]


class _ArgparseExit(Exception):
    """argparse already printed help or an error; exit with this code."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


def check_url(o: Options) -> None:
    """A usable http(s) URL whose host is on this machine, or --requests given explicitly."""
    from .._model.url import InvalidURL, parse_origin

    assert o.url is not None  # called when a URL was given
    url = o.url.strip()
    if "://" not in url:
        raise UsageError(f"invalid URL {o.url!r}: give a full URL such as "
                         f"https://127.0.0.1:8443/api/v3/ticker")
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    try:
        parse_origin(f"{parts.scheme}://{parts.netloc}")
    except InvalidURL as exc:
        raise UsageError(str(exc)) from None
    if parts.fragment:
        raise UsageError(f"invalid URL {o.url!r}: a fragment (#...) is never sent")
    o.remote = not is_loopback_host(parts.hostname or "")
    if o.remote and not o.requests_given:
        raise UsageError(
            f"{parts.hostname} is not on this machine: fastpool bench does not send a load "
            f"to a remote host unless you choose how much. Pass -n/--requests N (every mode "
            f"then sends at most N requests per client), or measure a server on 127.0.0.1.")


def is_loopback_host(host: str) -> bool:
    """Whether every address of host is a loopback address (IP literals and "localhost"
    need no resolver; other names are resolved once)."""
    host = host.strip("[]")
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    name = host.lower().rstrip(".")
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        return False  # unresolvable: not known to be local (the run fails later, clearly)
    return bool(infos) and all(ipaddress.ip_address(str(i[4][0]).split("%")[0]).is_loopback
                               for i in infos)
