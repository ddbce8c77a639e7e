"""A user's type checker accepts the documented API: mypy --strict and pyright (strict) on
tests/typing/user_script.py, and pyright --verifytypes over the public API.

The package is seen as a user sees it once installed: a directory on the interpreter's path
holding only fastpool/ (a symlink to the package under test), outside the project's own
configuration, so that py.typed decides what the checkers read and the project's mypy
overrides do not apply.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from conftest import EXPECT_C

import fastpool

SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "typing", "user_script.py")
PACKAGE = os.path.dirname(os.path.realpath(fastpool.__file__))
#: The share of the public API whose types pyright knows (issue 15: 95 %).
MIN_COMPLETENESS = 0.95


@pytest.fixture
def installed(tmp_path):
    """(cwd, env) in which `import fastpool` finds the package under test as installed."""
    site = tmp_path / "site"
    site.mkdir()
    os.symlink(PACKAGE, site / "fastpool")
    work = tmp_path / "work"
    work.mkdir()
    # Nothing of the test run leaks in: not the sanitizer runtimes of `make asan` (node and
    # mypy need neither), not the caller's PYTHONPATH.
    env = {k: v for k, v in os.environ.items()
           if k not in ("LD_PRELOAD", "PYTHONPATH", "MYPYPATH")}
    env["PYTHONPATH"] = str(site)
    env["PYRIGHT_PYTHON_IGNORE_WARNINGS"] = "1"  # no "new version available" lookups
    return work, env


def _pyright(args, cwd, env, timeout=300):
    """Runs pyright (the PyPI wrapper around the bundled pyright, needs node); skips when it
    cannot run at all, fails instead under FASTPOOL_EXPECT_C=1 (CI must check types)."""
    cmd = [sys.executable, "-m", "pyright", "--pythonpath", sys.executable, *args]
    try:
        probe = subprocess.run([sys.executable, "-m", "pyright", "--version"], cwd=cwd,
                               env=env, capture_output=True, text=True, timeout=120)
        runs = probe.returncode == 0 and "pyright" in probe.stdout
        why = (probe.stdout + probe.stderr).strip()[-500:]
    except (OSError, subprocess.TimeoutExpired) as exc:
        runs, why = False, str(exc)
    if not runs:
        message = f"pyright cannot run here (pip install pyright; it needs node): {why}"
        if EXPECT_C:
            pytest.fail(message)
        pytest.skip(message)
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)


def test_user_script_mypy_strict(installed):
    work, env = installed
    (work / "mypy.ini").write_text("[mypy]\n")
    out = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--config-file", str(work / "mypy.ini"),
         "--cache-dir", str(work / ".mypy_cache"), "--no-error-summary", SCRIPT],
        cwd=work, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr


def test_user_script_pyright_strict(installed):
    work, env = installed
    (work / "pyrightconfig.json").write_text(json.dumps({"typeCheckingMode": "strict"}))
    out = _pyright(["--project", str(work / "pyrightconfig.json"), SCRIPT], work, env)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "0 errors" in out.stdout, out.stdout


def test_public_api_types_are_known(installed):
    work, env = installed
    out = _pyright(["--verifytypes", "fastpool", "--ignoreexternal", "--outputjson"], work,
                   env)
    # Exit 1 means "not 100 % complete": the score is what is checked.
    report = json.loads(out.stdout)
    completeness = report["typeCompleteness"]
    assert os.path.realpath(completeness["packageRootDirectory"]) == PACKAGE, completeness
    assert completeness["pyTypedPath"], "no py.typed: a checker would ignore the annotations"
    score = completeness["completenessScore"]
    unknown = [f"{s['name']}: {d['message']}"
               for s in completeness["symbols"] if not s["isTypeKnown"]
               for d in s["diagnostics"]]
    assert score >= MIN_COMPLETENESS, (f"{score:.1%} of the public API has known types "
                                       f"(want {MIN_COMPLETENESS:.0%}):\n" + "\n".join(unknown))
