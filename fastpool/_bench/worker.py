"""One client's worker process, and the parent's handle on it.

Every client runs in its own fresh interpreter (``python -m fastpool._bench.worker``) so that
no client measures another's imports, threads, garbage or event loop. The parent keeps the
process for the whole run and sends it one command per measurement, so rounds can interleave
the clients (the others sit blocked on their pipe meanwhile, using no CPU).

Protocol: length-prefixed (4 bytes, big-endian) pickles over the child's stdin and stdout;
the child moves its own stdout to stderr first, so nothing a library prints can corrupt it.
Its stderr goes to a file the parent reads when something fails. Commands (dicts with
"cmd"): init, verify, open, latency, sporadic, throughput, cold, reconnect, close, exit.
Replies: {"ok": True, ...} or {"ok": False, "error": str, "missing": bool}.

The child ignores SIGINT (the parent handles Ctrl-C and stops it), asks the kernel to kill it
if the parent dies (PR_SET_PDEATHSIG), and exits on end of input.
"""

from __future__ import annotations

import os
import pickle
import select
import signal
import struct
import subprocess
import sys
import tempfile
import time
import traceback
from typing import IO, TYPE_CHECKING, Any, Optional

if TYPE_CHECKING:
    import asyncio

    from .adapters import Adapter
    from .clients import ClientSpec

_HEADER = struct.Struct(">I")


class WorkerError(Exception):
    """The worker failed a command (or died, or timed out)."""

    def __init__(self, message: str, missing: bool = False) -> None:
        super().__init__(message)
        self.missing = missing


def _read_exact(fd: int, n: int, deadline: Optional[float]) -> bytes:
    chunks = []
    while n:
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise TimeoutError
        chunk = os.read(fd, min(n, 1 << 20))
        if not chunk:
            raise EOFError
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def _send(fd: int, obj: Any) -> None:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    view = memoryview(_HEADER.pack(len(data)) + data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def _recv(fd: int, deadline: Optional[float] = None) -> Any:
    (n,) = _HEADER.unpack(_read_exact(fd, _HEADER.size, deadline))
    return pickle.loads(_read_exact(fd, n, deadline))


# ---- parent side ----------------------------------------------------------------------------

class Worker:
    """The parent's handle on one client's process."""

    def __init__(self, spec: ClientSpec, loop: str) -> None:
        self.spec = spec
        self.loop = loop
        self.proc: Optional[subprocess.Popen[bytes]] = None
        self.info: dict = {}
        self._err: Optional[IO[bytes]] = None
        self._cmd: Optional[str] = None

    def start(self, timeout: float = 60.0) -> dict:
        """Starts the process and imports the client there; WorkerError(missing=True) when
        the client's library is not installed."""
        self.launch()
        return self.handshake(timeout)

    def launch(self) -> None:
        """Starts the process (it begins importing while other workers start)."""
        if self._err is None or self._err.closed:
            self._err = tempfile.TemporaryFile(prefix="fastpool-bench-")
        env = dict(os.environ)
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "fastpool._bench.worker"], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=self._err, env=env, close_fds=True)

    def handshake(self, timeout: float = 60.0) -> dict:
        """Has the process import its client: its version, event loop and pid."""
        self.info = self.call({"cmd": "init", "client": self.spec.name, "loop": self.loop},
                              timeout)
        return self.info

    def call(self, msg: dict, timeout: float) -> dict:
        """Sends a command; the reply, or WorkerError (the worker is stopped on a timeout or
        a crash)."""
        self.post(msg)
        return self.reply(timeout)

    def post(self, msg: dict) -> None:
        """Sends a command without waiting (several workers then run at once); reply()
        collects the answer."""
        proc = self.proc
        self._cmd = msg.get("cmd")
        if proc is None or proc.poll() is not None:
            raise WorkerError(f"{self.spec.name}: the worker is not running{self._stderr_tail()}")
        assert proc.stdin is not None  # launch() opens it with stdin=PIPE
        try:
            _send(proc.stdin.fileno(), msg)
        except OSError:
            self.stop(kill=True)
            raise WorkerError(f"{self.spec.name}: the worker died before {self._cmd!r}"
                              f"{self._stderr_tail()}") from None

    def reply(self, timeout: float) -> dict:
        """The answer to the last command posted, or WorkerError."""
        proc = self.proc
        if proc is None:
            raise WorkerError(f"{self.spec.name}: the worker is not running")
        assert proc.stdout is not None  # launch() opens it with stdout=PIPE
        try:
            reply = _recv(proc.stdout.fileno(), time.monotonic() + timeout)
        except TimeoutError:
            self.stop(kill=True)
            raise WorkerError(f"{self.spec.name}: no answer to {self._cmd!r} within "
                              f"{timeout:.0f} s; the worker was stopped") from None
        except (EOFError, OSError):
            self.stop(kill=True)
            raise WorkerError(f"{self.spec.name}: the worker died during {self._cmd!r}"
                              f"{self._stderr_tail()}") from None
        if not reply.get("ok"):
            raise WorkerError(reply.get("error", "failed"), missing=reply.get("missing", False))
        return reply

    def _stderr_tail(self) -> str:
        if self._err is None:  # never launched: no output to show
            return ""
        try:
            self._err.seek(0)
            text = self._err.read().decode("utf-8", "replace").strip()
        except (OSError, ValueError):
            return ""
        return f": {text[-600:]}" if text else ""

    def stop(self, kill: bool = False) -> None:
        """Ends the process (politely unless kill) and reaps it; idempotent."""
        proc = self.proc
        if proc is None:
            return
        assert proc.stdin is not None and proc.stdout is not None  # launch(): both PIPE
        try:
            if proc.poll() is None and not kill:
                try:
                    _send(proc.stdin.fileno(), {"cmd": "exit"})
                    proc.wait(5)
                except (OSError, subprocess.TimeoutExpired):
                    pass
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
        finally:
            for f in (proc.stdin, proc.stdout):
                try:
                    f.close()
                except OSError:
                    pass
            self.proc = None


# ---- child side -----------------------------------------------------------------------------

def _die_with_parent() -> None:
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() == 1:  # the parent died before the prctl
        os._exit(1)


class _Child:
    def __init__(self) -> None:
        self.spec: Optional[ClientSpec] = None          # set by init
        self.adapter: Optional[Adapter] = None          # set by open, cleared by close
        self.loop: Optional[asyncio.AbstractEventLoop] = None  # init, async clients only
        self.target: Optional[dict] = None              # set by open

    # What earlier commands set up (the parent sends init first, then open before any
    # measurement); narrowed once per command, never inside a timed loop.

    def _spec(self) -> ClientSpec:
        if self.spec is None:
            raise RuntimeError("no client: 'init' comes first")
        return self.spec

    def _loop(self) -> asyncio.AbstractEventLoop:
        if self.loop is None:
            raise RuntimeError("no event loop: 'init' an async client first")
        return self.loop

    def _opened(self) -> tuple[ClientSpec, Adapter, dict]:
        if self.adapter is None or self.target is None:
            raise RuntimeError("no client is open: 'open' comes first")
        return self._spec(), self.adapter, self.target

    # -- commands --

    def init(self, msg: dict) -> dict:
        import asyncio

        from .clients import BY_NAME, version_of

        self.spec = spec = BY_NAME[msg["client"]]
        try:
            __import__(spec.module)
            from . import adapters  # noqa: F401
        except ImportError as exc:
            name = getattr(exc, "name", None) or ""
            # the client's module itself (or its package) is absent, not something it imports
            missing = isinstance(exc, ModuleNotFoundError) and name != "" and (
                spec.module == name or spec.module.startswith(name + "."))
            if spec.engine == "c":
                why = f"unavailable: the C engine did not load ({exc})"
            elif missing:
                why = "not installed"
            else:
                why = f"unavailable: {type(exc).__name__}: {exc}"
            return {"ok": False, "missing": True, "error": why}
        loop_name = "-"
        if spec.kind == "async":
            want = msg["loop"]
            if want in ("auto", "uvloop"):
                try:
                    import uvloop

                    self.loop = uvloop.new_event_loop()
                    # uvloop sets __version__ but leaves it out of its __all__
                    loop_name = f"uvloop {uvloop.__version__}"  # type: ignore[attr-defined]
                except ImportError:
                    if want == "uvloop":
                        return {"ok": False, "missing": False,
                                "error": "--loop uvloop: uvloop is not installed "
                                         "(pip install uvloop)"}
            if self.loop is None:
                self.loop = asyncio.new_event_loop()
                loop_name = "asyncio"
            asyncio.set_event_loop(self.loop)
        reply = {"ok": True, "version": version_of(spec), "loop": loop_name, "pid": os.getpid(),
                 "warning": None}
        if spec.name in ("urllib3", "requests"):
            from .clients import shadowed_urllib3

            reply["warning"] = shadowed_urllib3()
            if reply["warning"] and spec.name == "urllib3":
                import urllib3

                # set, but left out of urllib3's __all__
                reply["version"] = f"{urllib3.__version__} (urllib3-future)"  # type: ignore[attr-defined]
        return reply

    def _run(self, value: Any) -> Any:
        if self._spec().kind == "async":
            return self._loop().run_until_complete(value)
        return value

    def open(self, msg: dict) -> dict:
        from . import adapters, measure

        self._close()
        spec = self._spec()
        t = self.target = msg["target"]
        n = msg["connections"]
        self.adapter = a = adapters.make(spec.adapter, t, spec.engine)
        kind = spec.kind
        if kind == "async":
            self._loop().run_until_complete(a.open(n))
        else:
            a.open(n)
        warm = msg.get("warmup", 0)
        if warm:
            if kind == "floor":
                assert isinstance(a, adapters.Floor)  # the floor client's adapter
                res = {"bad": 0}
                for conn in a.conns:
                    _lat, bad = a.floor(conn, max(1, warm // len(a.conns)))
                    res["bad"] += bad
                res["first_bad"] = measure._floor_bad(a, res["bad"])
            elif kind == "async":
                res = self._loop().run_until_complete(measure.prime_async(a, n, warm, t))
            else:
                res = measure.prime_sync(a, n, warm, t)
            if res["bad"]:
                return {"ok": False, "error": _bad_message(res, t, "warm-up")}
        return {"ok": True}

    def latency(self, msg: dict) -> dict:
        from . import measure

        spec, a, t = self._opened()
        count = msg["count"]
        warm = msg.get("warmup", 0)
        max_ns = msg.get("max_ns", 0)   # the floor is never near it: it runs its count in C
        if spec.kind == "floor":
            if warm:
                measure.seq_floor(a, warm, t)
            return measure.seq_floor(a, count, t)
        if spec.kind == "async":
            if warm:
                self._run(measure.seq_async(a.request, warm, t))
            return self._run(measure.seq_async(a.request, count, t, max_ns))
        if warm:
            measure.seq_sync(a.request, warm, t)
        return measure.seq_sync(a.request, count, t, max_ns)

    def sporadic(self, msg: dict) -> dict:
        from . import measure

        spec, a, t = self._opened()
        args = (msg["gap_ns"], msg["count"], msg.get("start_ns"), t)
        if spec.kind == "floor":
            return measure.sporadic_floor(a, *args)
        if spec.kind == "async":
            return self._run(measure.sporadic_async(a.request, *args))
        return measure.sporadic_sync(a.request, *args)

    def verify(self, msg: dict) -> dict:
        """A new client told to trust a CA that did not sign the server's certificate, and
        its first request: it must fail. {"accepted": False, "error": why} when it did."""
        from . import adapters, measure

        spec = self._spec()
        a = adapters.make(spec.adapter, msg["target"], spec.engine)
        try:
            if spec.kind == "async":
                loop = self._loop()
                status, length, closer = loop.run_until_complete(a.cold_start())
                loop.run_until_complete(measure.maybe_await(closer()))
            else:
                status, length, closer = a.cold_start()
                closer()
        except Exception as exc:  # noqa: BLE001 - any refusal is what we want
            return {"ok": True, "accepted": False, "error": f"{type(exc).__name__}: {exc}"[:300]}
        return {"ok": True, "accepted": True, "error": f"status {status}, {length} bytes"}

    def throughput(self, msg: dict) -> dict:
        from . import measure

        spec, a, t = self._opened()
        args = (msg["inflight"], msg["duration"], msg["cap"], t)
        if spec.kind == "floor":
            return measure.tp_floor(a, *args)
        if spec.kind == "async":
            return self._run(measure.tp_async(a, *args))
        return measure.tp_sync(a, *args)

    def cold(self, msg: dict) -> dict:
        from . import measure

        spec, a, t = self._opened()
        if spec.kind == "async":
            return self._run(measure.cold_async(a, msg["reps"], t))
        return measure.cold_sync(a, msg["reps"], t)

    def reconnect(self, msg: dict) -> dict:
        from . import measure

        spec, a, t = self._opened()
        reps = msg["reps"]
        if a.handshakes:
            return measure.reconnect_handshakes(a, reps, t)
        if spec.kind == "async":
            return self._run(measure.reconnect_async(a, reps, t))
        return measure.reconnect_sync(a, reps, t)

    def close(self, msg: dict) -> dict:
        self._close()
        return {"ok": True}

    def _close(self) -> None:
        a, self.adapter = self.adapter, None
        if a is not None:
            self._run(a.close()) if self._spec().kind == "async" else a.close()

    # -- loop --

    def serve(self, rfd: int, wfd: int) -> None:
        while True:
            try:
                msg = _recv(rfd)
            except EOFError:
                break
            cmd = msg.get("cmd")
            if cmd == "exit":
                break
            try:
                reply = getattr(self, cmd)(msg)
                if "ok" not in reply:
                    t = self.target or {}
                    if reply.get("bad"):
                        reply = {"ok": False, "error": _bad_message(reply, t, cmd)}
                    else:
                        reply["ok"] = True
            except Exception as exc:  # noqa: BLE001 - every failure goes back to the parent
                reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}",
                         "traceback": traceback.format_exc(limit=8)}
            _send(wfd, reply)
        try:
            self._close()
        except Exception:  # noqa: BLE001 - exiting anyway
            pass


def _bad_message(res: dict, t: dict, what: str) -> str:
    status, length = res.get("first_bad") or ("?", "?")
    want = f"status {t.get('status')}" + (f", {t['length']} bytes" if t.get("length", -1) >= 0
                                          else "")
    return (f"{res['bad']} wrong response(s) during {what}: expected {want}, first wrong one "
            f"was status {status}, {length} bytes")


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _die_with_parent()
    rfd = sys.stdin.fileno()
    wfd = os.dup(sys.stdout.fileno())
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # prints go to stderr, not the pipe
    _Child().serve(rfd, wfd)
    # Daemon threads of some clients may still run: leave without joining them.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
