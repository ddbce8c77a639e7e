"""What a user reads without the source: help() shows real defaults, and every file, module
and name the package's docstrings and comments, the C headers and the README point to
exists."""

from __future__ import annotations

import importlib
import pydoc
import re
from pathlib import Path

import pytest

import fastpool

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("obj", [fastpool.Pool, fastpool.AsyncPool, fastpool.Timeout,
                                 fastpool.Response, fastpool.HTTPStatusError])
def test_help_shows_real_defaults(obj):
    text = pydoc.render_doc(obj, renderer=pydoc.plaintext)
    assert "object at 0x" not in text


def test_help_says_what_an_omitted_timeout_means():
    for cls in (fastpool.Pool, fastpool.AsyncPool):
        assert "= <the pool's timeout>" in pydoc.render_doc(cls, renderer=pydoc.plaintext)
    assert "= <unset>" in pydoc.render_doc(fastpool.Timeout, renderer=pydoc.plaintext)


#: A path in the repository: fastpool/_model/url.py, csrc/fp_http.h, ...
_PATH = re.compile(r"(?<![\w/.])(?:fastpool|csrc|tests|bench|examples)/[\w/.-]*\w"
                   r"\.(?:py|pyx|pxi|pxd|pyi|h|c|md|sh|toml)\b")
#: A top-level document: DESIGN.md, STYLE.md, ...
_DOC = re.compile(r"(?<![\w/.])[A-Z][A-Z_]+\.md\b")
#: A dotted name in the package: fastpool._model.redact.DEFAULT_REDACT, ...
_DOTTED = re.compile(r"(?<![\w.])fastpool(?:\.[A-Za-z_]\w*)+")

#: Pointers in files a helper may not edit, fixed by whoever owns them (then drop them here:
#: the test fails while an entry is no longer needed).
PENDING: set[tuple[str, str]] = set()


def _sources():
    generated = {"_core.c", "_server.c"}
    for pattern in ("fastpool/**/*.py", "fastpool/**/*.pyi", "fastpool/**/*.pyx",
                    "fastpool/**/*.pxi", "csrc/*.h", "csrc/*.c", "README.md"):
        for path in sorted(ROOT.glob(pattern)):
            if path.name not in generated:
                yield path


def _resolves(dotted: str) -> bool:
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        try:
            for name in parts[i:]:
                obj = getattr(obj, name)
        except AttributeError:
            return False
        return True
    return False


def test_every_pointer_exists():
    missing = set()
    for path in _sources():
        rel = path.relative_to(ROOT).as_posix()
        text = path.read_text(encoding="utf-8")
        for ref in _PATH.findall(text) + _DOC.findall(text):
            if not (ROOT / ref).exists():
                missing.add((rel, ref))
        if path.suffix in (".py", ".pyi", ".md"):  # .pyx/.pxi cimport .pxd modules
            for ref in _DOTTED.findall(text):
                if not _resolves(ref):
                    missing.add((rel, ref))
    assert missing - PENDING == set()
    assert PENDING <= missing, "fixed: remove it from PENDING"
