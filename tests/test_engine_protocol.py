"""Both engines satisfy the engine interface (fastpool._engine.protocol), member by member and
signature by signature, and export nothing the other lacks (the C engine's floor loop and its
test hooks aside)."""

from __future__ import annotations

import inspect

import pytest
from conftest import load_engine

from fastpool._engine import protocol

CLASSES = {
    "Connection": protocol.Connection,
    "TLSContext": protocol.TLSContext,
    "Lane": protocol.Lane,
    "Park": protocol.Park,
    "Histogram": protocol.Histogram,
    "ResponseParser": protocol.ResponseParser,
}
FUNCTIONS = ("parse_response", "encode_header_block", "build_request", "encode_query",
             "decode_headers", "header_values")
#: The C engine's own extras: the benchmark floor and hooks its tests use.
C_ONLY = {"floor_latencies", "response_layout_direct", "new_response"}


def _members(proto: type) -> dict:
    """name -> inspect.Signature (methods) or None (attributes, properties) of a Protocol."""
    out: dict = {}
    for klass in proto.__mro__:
        if klass in (object, protocol.Protocol) or klass.__module__ == "typing":
            continue
        for name, value in vars(klass).items():
            if name.startswith("_"):
                continue
            out.setdefault(name, inspect.signature(value) if inspect.isfunction(value) else None)
        for name in getattr(klass, "__annotations__", {}):
            out.setdefault(name, None)
    return out


def _params(sig: inspect.Signature) -> list:
    return [(p.name, p.default is not inspect.Parameter.empty)
            for p in sig.parameters.values() if p.name != "self"]


def test_engine_exports(engine):
    missing = [n for n in protocol.ENGINE_NAMES if not hasattr(engine, n)]
    assert not missing


@pytest.mark.parametrize("name", sorted(CLASSES))
def test_engine_classes_have_every_protocol_member(engine, name):
    cls = getattr(engine, name)
    for member, sig in _members(CLASSES[name]).items():
        if sig is None:
            # Attributes may be set in __init__ (pure engine): check on the class or an
            # instance's annotations by looking at the class first, then its __init__ text.
            if hasattr(cls, member):
                continue
            source = inspect.getsource(cls) if inspect.isclass(cls) else ""
            assert f"self.{member}" in source, f"{name}.{member} is missing"
            continue
        impl = getattr(cls, member, None)
        assert callable(impl), f"{name}.{member} is missing"
        assert _params(inspect.signature(impl)) == _params(sig), f"{name}.{member}"


@pytest.mark.parametrize("name", FUNCTIONS)
def test_engine_functions_match_the_protocol(engine, name):
    sig = inspect.signature(getattr(protocol.Engine, name))
    assert _params(inspect.signature(getattr(engine, name))) == _params(sig)


def test_the_engines_export_the_same_names():
    c, py = load_engine("c"), load_engine("python")

    def public(mod) -> set:
        return {n for n in dir(mod) if not n.startswith("_") and not inspect.ismodule(
            getattr(mod, n))}
    assert public(py) - public(c) == set()
    assert public(c) - public(py) - C_ONLY <= {"Mapping"}  # _query.pxi's import


def test_step_results_agree():
    c, py = load_engine("c"), load_engine("python")
    assert (c.STEP_DONE, c.STEP_WANT_READ, c.STEP_WANT_WRITE) == (
        py.STEP_DONE, py.STEP_WANT_READ, py.STEP_WANT_WRITE)
