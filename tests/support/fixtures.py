"""pytest fixtures over the test peers (loaded for every test by tests/conftest.py).

    certs           session  CertSet: the test PKI, generated once per session
    nginx           session  NginxServer with default keep-alive settings, shared: count
                             connections with ``nginx.access_log.mark()`` / ``wait_for``
    nginx_factory   function factory(**NginxServer kwargs) -> started NginxServer, fresh
                             directory; every instance is stopped at teardown
    fault_server    function factory(behavior, **FaultServer kwargs) -> started FaultServer;
                             every instance is closed at teardown (fails the test if a thread
                             leaked or the behavior raised)

A missing nginx skips the nginx tests, or fails them when FASTPOOL_REQUIRE_NGINX=1 (CI).
"""

from __future__ import annotations

import pytest

from .certs import CertSet, generate_certs
from .faults import BehaviorLike, FaultServer
from .nginx import NginxServer, NginxUnavailable, find_nginx, nginx_required

__all__ = ["certs", "fault_server", "nginx", "nginx_binary", "nginx_factory"]


@pytest.fixture(scope="session")
def certs(tmp_path_factory) -> CertSet:
    """The test PKI (see support.certs), generated once per session."""
    return generate_certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="session")
def nginx_binary() -> str:
    """Path of nginx; skips (or fails under FASTPOOL_REQUIRE_NGINX=1) when missing."""
    try:
        return find_nginx()
    except NginxUnavailable as exc:
        if nginx_required():
            pytest.fail(f"FASTPOOL_REQUIRE_NGINX=1 but {exc}", pytrace=False)
        pytest.skip(str(exc))


@pytest.fixture(scope="session")
def nginx(certs, nginx_binary, tmp_path_factory) -> NginxServer:
    """One nginx for the whole session with default settings (keepalive_requests 1000,
    keepalive_timeout 75 s). Shared: use access_log.mark() to look only at your requests."""
    server = NginxServer(certs, tmp_path_factory.mktemp("nginx"), binary=nginx_binary)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def nginx_factory(certs, nginx_binary, tmp_path_factory):
    """``nginx_factory(keepalive_requests=100, keepalive_timeout=1.0, ...)`` -> a started
    NginxServer of its own (kwargs as NginxServer); all are stopped at teardown."""
    started: list[NginxServer] = []

    def make(**kwargs) -> NginxServer:
        kwargs.setdefault("binary", nginx_binary)
        server = NginxServer(certs, tmp_path_factory.mktemp("nginx"), **kwargs)
        started.append(server)
        server.start()
        return server

    yield make
    for server in started:
        server.stop()


@pytest.fixture
def fault_server():
    """``fault_server(behavior, tls=None, host="127.0.0.1", ...)`` -> a started FaultServer
    (kwargs as FaultServer); all are closed at teardown, which fails the test if a thread
    leaked or a behavior raised unexpectedly."""
    started: list[FaultServer] = []

    def make(behavior: BehaviorLike, **kwargs) -> FaultServer:
        server = FaultServer(behavior, **kwargs)
        started.append(server)
        return server.start()

    yield make
    errors = []
    for server in started:
        try:
            server.close(check=True)
        except RuntimeError as exc:
            errors.append(str(exc))
    if errors:
        pytest.fail("\n".join(errors), pytrace=False)
