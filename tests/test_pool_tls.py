"""The TLS matrix: bad server certificates fail the pool's construction with a TLSError
(NotSent) carrying OpenSSL's verify code; good names, IP SANs, mTLS, verify=False, version
bounds and SSL_CERT_FILE work as documented."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings

import pytest
from pool_helpers import (  # noqa: F401
    fd_count,
    new_tag,
    nginx_mark,
    tagged_entries,
    wait_until,
)
from support.certs import BAD_SERVER_CERTS, X509_V_ERR
from support.faults import handshake_close, handshake_stall
from support.nginx import TICKER_BODY

import fastpool

pytestmark = nginx_mark


@pytest.mark.parametrize("name", sorted(BAD_SERVER_CERTS))
def test_bad_server_certificate_fails_construction(nginx, certs, make_pool, name):
    bad = BAD_SERVER_CERTS[name]
    mark = nginx.access_log.mark()
    with pytest.raises(fastpool.TLSError) as info:
        make_pool(nginx.url(f"cert-{name}", "/", host="localhost"), connections=2,
                  verify=str(certs.ca))
    exc = info.value
    assert isinstance(exc, fastpool.NotSentError) and isinstance(exc, fastpool.ConnectError)
    assert exc.verify_code == bad.verify_code, (exc.verify_code, str(exc))
    assert "localhost" in str(exc)
    port = nginx.port(f"cert-{name}")
    assert [e for e in nginx.access_log.entries(mark) if e.server_port == port] == []


@pytest.mark.parametrize("name", sorted(BAD_SERVER_CERTS))
def test_bad_server_certificate_with_verify_false_works_and_warns(nginx, make_pool, name):
    with pytest.warns(fastpool.InsecureWarning):
        pool = make_pool(nginx.url(f"cert-{name}", "/", host="localhost"), connections=1,
                         verify=False)
    r = pool.get("/api/v3/ticker")
    assert r.status_code == 200 and r.content == TICKER_BODY


def test_verify_false_warning_points_at_the_caller(nginx, engine_name):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pool = fastpool.Pool(nginx.url("cert-self-signed", "/"), connections=1, verify=False,
                             engine=engine_name)
    pool.close()
    insecure = [w for w in caught if issubclass(w.category, fastpool.InsecureWarning)]
    assert len(insecure) == 1
    assert insecure[0].filename == __file__  # the line that built the pool, not fastpool's


def test_system_trust_store_does_not_trust_the_test_ca(nginx, make_pool, monkeypatch):
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    with pytest.raises(fastpool.TLSError) as info:
        make_pool(nginx.url("tls", "/"), connections=1, verify=True)
    assert info.value.verify_code == X509_V_ERR["UNABLE_TO_GET_ISSUER_CERT_LOCALLY"]


def test_ssl_cert_file_is_honoured_with_verify_true(nginx, certs, make_pool, monkeypatch):
    monkeypatch.setenv("SSL_CERT_FILE", str(certs.ca))
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    pool = make_pool(nginx.url("tls", "/", host="localhost"), connections=1, verify=True)
    assert pool.get("/api/v3/ticker").content == TICKER_BODY


def test_ssl_cert_file_in_a_fresh_process(nginx, certs, engine_name):
    """SSL_CERT_FILE set before the process starts (how a deployment sets it)."""
    code = (
        "import fastpool, sys\n"
        f"with fastpool.Pool({nginx.url('tls13', '/', host='localhost')!r}, connections=1,"
        f" engine={engine_name!r}) as p:\n"
        "    r = p.get('/api/v3/ticker')\n"
        "    print(r.status_code, len(r.content))\n"
    )
    env = dict(os.environ, SSL_CERT_FILE=str(certs.ca))
    env.pop("SSL_CERT_DIR", None)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["200", "137"]


@pytest.mark.parametrize("verify", ["path", "pathlike", "pem-bytes"])
def test_verify_forms(nginx, certs, make_pool, verify):
    value = {"path": str(certs.ca), "pathlike": certs.ca,
             "pem-bytes": certs.ca.read_bytes()}[verify]
    pool = make_pool(nginx.url("tls", "/"), connections=1, verify=value)
    assert pool.get("/api/v3/ticker").content == TICKER_BODY


def test_verify_missing_ca_file_is_a_tls_error(nginx, certs, make_pool, tmp_path):
    with pytest.raises(fastpool.TLSError):
        make_pool(nginx.url("tls", "/"), connections=1, verify=str(tmp_path / "missing.pem"))


def test_verify_garbage_pem_bytes_is_a_tls_error(nginx, make_pool):
    with pytest.raises(fastpool.TLSError):
        make_pool(nginx.url("tls", "/"), connections=1, verify=b"not a certificate")


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1"])
def test_good_names(nginx, certs, make_pool, host):
    pool = make_pool(nginx.url("tls", "/", host=host), connections=1, verify=str(certs.ca))
    r = pool.get("/api/v3/ticker")
    assert r.content == TICKER_BODY
    assert r.url.startswith(f"https://{host}:")


def test_intermediate_chain(nginx, certs, make_pool):
    pool = make_pool(nginx.url("cert-server-intermediate", "/", host="localhost"),
                     connections=1, verify=str(certs.ca))
    assert pool.get("/api/v3/ticker").content == TICKER_BODY


def test_ip_address_san(nginx, certs, make_pool):
    pool = make_pool(nginx.url("cert-ip-only", "/"), connections=1, verify=str(certs.ca))
    assert pool.get("/api/v3/ticker").content == TICKER_BODY
    # the same certificate has no DNS name: localhost must not match it
    with pytest.raises(fastpool.TLSError) as info:
        make_pool(nginx.url("cert-ip-only", "/", host="localhost"), connections=1,
                  verify=str(certs.ca))
    assert info.value.verify_code == X509_V_ERR["HOSTNAME_MISMATCH"]


def test_ipv6_literal(nginx, certs, make_pool):
    if "tls6" not in nginx.listeners:
        pytest.skip("no IPv6 on this kernel")
    pool = make_pool(nginx.url("tls6", "/"), connections=1, verify=str(certs.ca))
    r = pool.get("/api/v3/ticker")
    assert r.content == TICKER_BODY and r.url.startswith("https://[::1]:")
    plain = make_pool(nginx.url("plain6", "/"), connections=1)
    assert plain.get("/api/v3/ticker").content == TICKER_BODY


def test_mtls_with_a_client_certificate(nginx, certs, make_pool):
    mark = nginx.access_log.mark()
    tag = new_tag()
    pool = make_pool(nginx.url("mtls", "/"), connections=1, verify=str(certs.ca),
                     cert=(str(certs.client.chain), str(certs.client.key)),
                     headers={"X-Test-Tag": tag})
    for _ in range(3):
        r = pool.get("/api/v3/ticker")
        assert r.status_code == 200 and r.headers["x-client-verify"] == "SUCCESS"
    entries = tagged_entries(nginx.access_log, tag, 3, since=mark)
    assert {e.ssl_client_verify for e in entries} == {"SUCCESS"}
    assert len({e.connection for e in entries}) == 1


def test_mtls_with_a_combined_cert_file(nginx, certs, make_pool, tmp_path):
    combined = tmp_path / "client.pem"
    combined.write_bytes(certs.client.chain.read_bytes() + certs.client.key.read_bytes())
    pool = make_pool(nginx.url("mtls", "/"), connections=1, verify=str(certs.ca),
                     cert=str(combined))
    assert pool.get("/api/v3/ticker").headers["x-client-verify"] == "SUCCESS"


@pytest.mark.parametrize("client", ["none", "untrusted"])
def test_mtls_without_a_trusted_client_certificate_is_a_400(nginx, certs, make_pool, client):
    cert = None if client == "none" else (str(certs.client_untrusted.chain),
                                          str(certs.client_untrusted.key))
    pool = make_pool(nginx.url("mtls", "/"), connections=1, verify=str(certs.ca), cert=cert)
    r = pool.get("/api/v3/ticker")
    assert r.status_code == 400
    verify = r.headers["x-client-verify"]
    assert verify == "NONE" if client == "none" else verify.startswith("FAILED")
    with pytest.raises(fastpool.HTTPStatusError):
        r.raise_for_status()
    # nginx closed that connection (Connection: close): the next request is not an error
    assert pool.get("/api/v3/ticker").status_code == 400
    assert pool.stats()["errors"] == 0


def test_mtls_missing_key_file_is_a_tls_error(nginx, certs, make_pool, tmp_path):
    with pytest.raises(fastpool.TLSError):
        make_pool(nginx.url("mtls", "/"), connections=1, verify=str(certs.ca),
                  cert=(str(certs.client.chain), str(tmp_path / "missing.key")))


def test_mtls_mismatched_key_is_a_tls_error(nginx, certs, make_pool):
    with pytest.raises(fastpool.TLSError):
        make_pool(nginx.url("mtls", "/"), connections=1, verify=str(certs.ca),
                  cert=(str(certs.client.chain), str(certs.server.key)))


@pytest.mark.parametrize("listener,tls_min,tls_max", [
    ("tls12", "1.3", None),
    ("tls13", None, "1.2"),
])
def test_version_bounds_that_cannot_meet_fail(nginx, certs, make_pool, listener, tls_min,
                                              tls_max):
    with pytest.raises(fastpool.TLSError) as info:
        make_pool(nginx.url(listener, "/"), connections=1, verify=str(certs.ca),
                  tls_min=tls_min, tls_max=tls_max)
    assert isinstance(info.value, fastpool.NotSentError)
    assert info.value.verify_code == 0  # a protocol failure, not a certificate one


@pytest.mark.parametrize("tls_min,tls_max,expected", [
    ("1.2", "1.2", "TLSv1.2"), ("1.3", None, "TLSv1.3"), (None, None, "TLSv1.3"),
])
def test_version_bounds_negotiate(nginx, certs, make_pool, tls_min, tls_max, expected):
    mark = nginx.access_log.mark()
    tag = new_tag()
    pool = make_pool(nginx.url("tls", "/"), connections=1, verify=str(certs.ca),
                     tls_min=tls_min, tls_max=tls_max, headers={"X-Test-Tag": tag})
    pool.get("/api/v3/ticker")
    (entry,) = tagged_entries(nginx.access_log, tag, 1, since=mark)
    assert entry.ssl_protocol == expected


def test_invalid_tls_version_is_rejected(nginx, certs, make_pool):
    with pytest.raises(ValueError):
        make_pool(nginx.url("tls", "/"), connections=1, verify=str(certs.ca), tls_min="1.1")


def test_plain_listener_spoken_to_with_tls_fails_typed(nginx, certs, make_pool):
    url = nginx.url("plain", "/").replace("http://", "https://")
    with pytest.raises(fastpool.TLSError) as info:
        make_pool(url, connections=1, verify=str(certs.ca))
    assert isinstance(info.value, fastpool.NotSentError)


def test_handshake_closed_by_the_server(fault_server, certs, make_pool):
    server = fault_server(handshake_close(), tls=certs.server)
    before = fd_count()
    with pytest.raises(fastpool.TLSError) as info:
        make_pool(server.url("/"), connections=2, verify=str(certs.ca))
    assert isinstance(info.value, fastpool.NotSentError)
    assert server.requests == []
    server.wait_idle()
    wait_until(lambda: fd_count() <= before, timeout=5, what="the pool's sockets to close")


def test_handshake_stall_is_a_connect_timeout(fault_server, certs, make_pool):
    server = fault_server(handshake_stall(), tls=certs.server)
    with pytest.raises(fastpool.ConnectTimeout) as info:
        make_pool(server.url("/"), connections=2, verify=str(certs.ca),
                  timeout=fastpool.Timeout(5.0, connect=0.2))
    exc = info.value
    assert isinstance(exc, fastpool.NotSentError) and isinstance(exc, fastpool.TimeoutException)
    assert exc.phase == "connect"
    assert server.requests == []


def test_session_resumption_on_reconnect(nginx, certs, make_pool):
    """A connection the server closed (/close) is replaced by a handshake that resumes the
    pool's session: stats and nginx's $ssl_session_reused agree."""
    for listener in ("tls12", "tls13"):
        mark = nginx.access_log.mark()
        tag = new_tag()
        pool = make_pool(nginx.url(listener, "/"), connections=1, verify=str(certs.ca),
                         headers={"X-Test-Tag": tag})
        pool.get("/api/v3/ticker")  # TLS 1.3: the ticket has arrived by now
        for _ in range(3):
            assert pool.get("/close").status_code == 200
        pool.get("/api/v3/ticker")
        entries = tagged_entries(nginx.access_log, tag, 5, since=mark)
        by_conn: dict = {}
        for e in entries:
            by_conn.setdefault(e.connection, []).append(e)
        firsts = [reqs[0] for reqs in by_conn.values()]
        assert len(firsts) == 4, listener
        assert [e.ssl_session_reused for e in firsts] == [False, True, True, True], listener
        s = pool.stats()
        assert s["reconnects"] == 3 and s["resumed"] == 3 and s["errors"] == 0, (listener, s)
