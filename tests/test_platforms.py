"""What the README's "Platforms" section promises: fastpool imports where select.poll is
missing (and says why a pool cannot run there), free-threaded CPython without its GIL is
refused with a clear message, and setup.py builds the embedded server on Linux only."""

from __future__ import annotations

import os
import runpy
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(code: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "FASTPOOL_NO_EXTENSIONS"}
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, timeout=120)


# A platform like Windows: no poll() (nor its constants), no MSG_DONTWAIT, no fcntl, and so
# no C engine either (it is built on POSIX systems only).
WITHOUT_POLL = """
import select, socket, sys, warnings
for name in [n for n in dir(select) if n.startswith(("poll", "POLL", "epoll", "EPOLL",
                                                      "kqueue", "KQ_", "devpoll"))]:
    delattr(select, name)
if hasattr(socket, "MSG_DONTWAIT"):
    del socket.MSG_DONTWAIT
sys.modules["fcntl"] = None
sys.modules["fastpool._engine._core"] = None
warnings.simplefilter("ignore")
import fastpool
print(fastpool.BACKEND, fastpool.encode_query({"symbol": "BTCUSDT"}))
try:
    fastpool.Pool("http://127.0.0.1:9", connections=1)
except RuntimeError as exc:
    print("refused:", exc)
"""


def test_import_without_select_poll():
    out = _run(WITHOUT_POLL)
    assert out.returncode == 0, out.stderr[-3000:]
    lines = out.stdout.splitlines()
    assert lines[0] == "python symbol=BTCUSDT", out.stdout
    assert lines[1].startswith("refused:") and "select.poll" in lines[1], out.stdout


FREE_THREADED = """
import sys, sysconfig
real = sysconfig.get_config_var
sysconfig.get_config_var = lambda name: 1 if name == "Py_GIL_DISABLED" else real(name)
sys._is_gil_enabled = lambda: {gil}
try:
    import fastpool
except ImportError as exc:
    print("refused:", exc)
else:
    print("imported", fastpool.BACKEND)
"""


def test_free_threaded_without_the_gil_is_refused():
    out = _run(FREE_THREADED.format(gil=False))
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.startswith("refused:"), out.stdout
    assert "free-threaded" in out.stdout and "PYTHON_GIL=1" in out.stdout, out.stdout


def test_free_threaded_with_the_gil_imports():
    out = _run(FREE_THREADED.format(gil=True))
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.startswith("imported"), out.stdout


def test_this_interpreter_matches_the_rule():
    # On a real free-threaded build (3.13t) the C engine turns the GIL on when it loads;
    # without it (pure engine) the import is refused unless PYTHON_GIL=1.
    import sysconfig

    import fastpool

    if sysconfig.get_config_var("Py_GIL_DISABLED"):
        assert sys._is_gil_enabled()  # type: ignore[attr-defined]
    assert fastpool.BACKEND in ("c", "python")


def test_setup_builds_the_server_on_linux_only():
    setup = runpy.run_path(os.path.join(ROOT, "setup.py"), run_name="fastpool_setup")
    specs = setup["extension_specs"]
    names = {platform: [name for name, _, _ in specs(platform)]
             for platform in ("linux", "darwin", "freebsd14", "win32")}
    assert names["linux"] == ["fastpool._engine._core", "fastpool._bench._server"]
    assert names["darwin"] == names["freebsd14"] == ["fastpool._engine._core"]
    assert names["win32"] == []
    # Every source they name ships in the sdist (MANIFEST.in grafts csrc/).
    for _, pyx, sources in specs("linux"):
        for path in (pyx, *sources):
            assert os.path.exists(os.path.join(ROOT, path)), path
