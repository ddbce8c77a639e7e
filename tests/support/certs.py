"""A test PKI generated with ``cryptography``: one trusted root, good and bad server
certificates, and mTLS client certificates. EC P-256 keys, SHA-256 signatures.

``generate_certs(directory)`` writes every file and returns a :class:`CertSet` of paths. The
pytest fixture ``certs`` (support.fixtures) calls it once per test session.

Trust model for tests: clients trust ``CertSet.ca`` only. Servers use one of the
:class:`CertKey` pairs; ``chain`` is what a server presents (leaf, then intermediates, never the
root), ``key`` its private key. The certificates satisfy ``VERIFY_X509_STRICT`` (AKI/SKI, key
usages, critical basic constraints) so they keep working as stdlib and OpenSSL defaults tighten.

File names, all in the chosen directory::

    ca.pem ca.key                           trusted root CA (the trust anchor)
    intermediate-ca.pem intermediate-ca.key intermediate CA signed by the root
    other-ca.pem other-ca.key               a second root that nobody trusts
    client-ca.pem client-ca.key             root CA for client certificates (nginx mTLS)
    other-client-ca.pem other-client-ca.key a client CA nobody trusts
    <name>.pem       the leaf certificate of pair <name>
    <name>.key       its private key (PKCS#8 PEM, unencrypted)
    <name>-chain.pem the leaf followed by its intermediates (what a server sends)

with <name> one of: server, server-intermediate, server-rsa, expired, not-yet-valid, wrong-host,
ip-only, untrusted, self-signed, client, client-untrusted. ``server-rsa`` is ``server`` with an
RSA 2048 key (key usages for both ECDHE-RSA and static-RSA suites, so a test can show that a
client refuses the latter by its offer, not by the certificate).
"""

from __future__ import annotations

import datetime as _dt
import ipaddress
from dataclasses import dataclass, fields
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = [
    "BAD_SERVER_CERTS",
    "GOOD_SERVER_CERTS",
    "BadCert",
    "CertKey",
    "CertSet",
    "X509_V_ERR",
    "client_context",
    "generate_certs",
]

#: OpenSSL X509_V_ERR_* codes the bad certificates produce (``ssl.SSLCertVerificationError
#: .verify_code``, and ``fastpool.TLSError.verify_code``).
X509_V_ERR = {
    "CERT_NOT_YET_VALID": 9,
    "CERT_HAS_EXPIRED": 10,
    "DEPTH_ZERO_SELF_SIGNED_CERT": 18,
    "SELF_SIGNED_CERT_IN_CHAIN": 19,
    "UNABLE_TO_GET_ISSUER_CERT_LOCALLY": 20,
    "HOSTNAME_MISMATCH": 62,
    "IP_ADDRESS_MISMATCH": 64,
}


@dataclass(frozen=True)
class CertKey:
    """One certificate and its key, as PEM files."""

    name: str
    cert: Path  #: the leaf certificate alone
    key: Path  #: its private key, PKCS#8 PEM, unencrypted
    chain: Path  #: leaf + intermediates: what a server (or mTLS client) presents


@dataclass(frozen=True)
class BadCert:
    """How a client that trusts ``CertSet.ca`` and connects to ``localhost`` must fail."""

    attr: str  #: CertSet attribute holding the CertKey
    verify_code: int  #: OpenSSL X509_V_ERR_* code
    reason: str  #: substring of OpenSSL's verify message (ssl.SSLCertVerificationError)


#: Server certificates a client trusting CertSet.ca must reject when connecting to localhost.
BAD_SERVER_CERTS: dict[str, BadCert] = {
    "expired": BadCert("expired", X509_V_ERR["CERT_HAS_EXPIRED"], "certificate has expired"),
    "not-yet-valid": BadCert(
        "not_yet_valid", X509_V_ERR["CERT_NOT_YET_VALID"], "certificate is not yet valid"
    ),
    "wrong-host": BadCert("wrong_host", X509_V_ERR["HOSTNAME_MISMATCH"], "Hostname mismatch"),
    "untrusted": BadCert(
        "untrusted",
        X509_V_ERR["UNABLE_TO_GET_ISSUER_CERT_LOCALLY"],
        "unable to get local issuer certificate",
    ),
    "self-signed": BadCert(
        "self_signed", X509_V_ERR["DEPTH_ZERO_SELF_SIGNED_CERT"], "self-signed certificate"
    ),
}

#: Server certificates that verify against CertSet.ca, with the host names they are valid for.
GOOD_SERVER_CERTS: dict[str, tuple[str, ...]] = {
    "server": ("localhost", "127.0.0.1", "::1"),
    "server-intermediate": ("localhost", "127.0.0.1", "::1"),
    "ip-only": ("127.0.0.1",),
}


@dataclass(frozen=True)
class CertSet:
    """Paths of a generated test PKI (see the module docstring for the files)."""

    directory: Path
    ca: Path  #: trusted root CA certificate: the only trust anchor clients load
    ca_key: Path
    intermediate_ca: Path  #: intermediate CA (signed by ca) behind ``server_intermediate``
    other_ca: Path  #: untrusted root that signed ``untrusted``
    client_ca: Path  #: CA nginx's mTLS listener trusts for client certificates
    other_client_ca: Path  #: CA that signed ``client_untrusted`` (nginx does not trust it)
    server: CertKey  #: valid: SAN DNS:localhost, IP:127.0.0.1, IP:::1, signed by ca
    server_intermediate: CertKey  #: valid, signed by intermediate_ca; chain includes it
    server_rsa: CertKey  #: as server, with an RSA key (TLS 1.2 ECDHE-RSA / static-RSA suites)
    expired: CertKey  #: right names and issuer, notAfter in the past
    not_yet_valid: CertKey  #: right names and issuer, notBefore in the future
    wrong_host: CertKey  #: signed by ca, SAN DNS:wrong.example only
    ip_only: CertKey  #: signed by ca, SAN IP:127.0.0.1 only (no DNS name)
    untrusted: CertKey  #: right names, signed by other_ca
    self_signed: CertKey  #: right names, self-signed leaf (not a CA)
    client: CertKey  #: mTLS client certificate signed by client_ca
    client_untrusted: CertKey  #: mTLS client certificate signed by other_client_ca

    def pair(self, name: str) -> CertKey:
        """The CertKey by file name (``"not-yet-valid"``) or attribute (``"not_yet_valid"``)."""
        value = getattr(self, name.replace("-", "_"), None)
        if not isinstance(value, CertKey):
            raise KeyError(name)
        return value

    def pairs(self) -> dict[str, CertKey]:
        """Every CertKey by its file name."""
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, CertKey):
                out[value.name] = value
        return out


# --- generation ----------------------------------------------------------------------------

_LOCAL_SAN = [
    x509.DNSName("localhost"),
    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
    x509.IPAddress(ipaddress.ip_address("::1")),
]


def _name(cn: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "fastpool tests"),
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
        ]
    )


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


class _Issuer:
    def __init__(self, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> None:
        self.cert = cert
        self.key = key


def _builder(subject: x509.Name, issuer_name: x509.Name, public_key, not_before, not_after):
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )


def _make_ca(cn: str, now: _dt.datetime, parent: _Issuer | None = None) -> _Issuer:
    key = _key()
    subject = _name(cn)
    issuer_name = parent.cert.subject if parent else subject
    signing_key = parent.key if parent else key
    b = _builder(
        subject,
        issuer_name,
        key.public_key(),
        now - _dt.timedelta(days=2),
        now + _dt.timedelta(days=3650),
    )
    b = b.add_extension(
        x509.BasicConstraints(ca=True, path_length=None if parent is None else 0), critical=True
    ).add_extension(
        x509.KeyUsage(
            digital_signature=True,
            content_commitment=False,
            key_encipherment=False,
            data_encipherment=False,
            key_agreement=False,
            key_cert_sign=True,
            crl_sign=True,
            encipher_only=False,
            decipher_only=False,
        ),
        critical=True,
    )
    aki_source = parent.key.public_key() if parent else key.public_key()
    b = b.add_extension(
        x509.AuthorityKeyIdentifier.from_issuer_public_key(aki_source), critical=False
    )
    return _Issuer(b.sign(signing_key, hashes.SHA256()), key)


def _make_leaf(
    cn: str,
    san: list[x509.GeneralName],
    issuer: _Issuer | None,
    not_before: _dt.datetime,
    not_after: _dt.datetime,
    *,
    client: bool = False,
    rsa_key: bool = False,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A leaf certificate; ``issuer=None`` makes it self-signed."""
    key = rsa.generate_private_key(65537, 2048) if rsa_key else _key()
    subject = _name(cn)
    issuer_name = issuer.cert.subject if issuer else subject
    signing_key = issuer.key if issuer else key
    b = _builder(subject, issuer_name, key.public_key(), not_before, not_after)
    b = (
        b.add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=rsa_key,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH]
            ),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(
                issuer.key.public_key() if issuer else key.public_key()
            ),
            critical=False,
        )
    )
    if san:
        b = b.add_extension(x509.SubjectAlternativeName(san), critical=False)
    return b.sign(signing_key, hashes.SHA256()), key


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _write(path: Path, data: bytes, *, private: bool = False) -> Path:
    path.write_bytes(data)
    path.chmod(0o600 if private else 0o644)
    return path


def _write_pair(
    directory: Path,
    name: str,
    cert: x509.Certificate,
    key: ec.EllipticCurvePrivateKey,
    intermediates: tuple[x509.Certificate, ...] = (),
) -> CertKey:
    cert_path = _write(directory / f"{name}.pem", _pem(cert))
    key_path = _write(directory / f"{name}.key", _key_pem(key), private=True)
    chain = _pem(cert) + b"".join(_pem(c) for c in intermediates)
    chain_path = _write(directory / f"{name}-chain.pem", chain)
    return CertKey(name=name, cert=cert_path, key=key_path, chain=chain_path)


def _write_ca(directory: Path, name: str, ca: _Issuer) -> tuple[Path, Path]:
    return (
        _write(directory / f"{name}.pem", _pem(ca.cert)),
        _write(directory / f"{name}.key", _key_pem(ca.key), private=True),
    )


def generate_certs(directory: str | Path) -> CertSet:
    """Generate the whole test PKI into ``directory`` (created if missing) and return paths.

    Validity windows are relative to now: good certificates are valid from two days ago for
    about a year, ``expired`` ended a day ago, ``not_yet_valid`` starts in a day.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    now = _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0)
    past = now - _dt.timedelta(days=2)
    future = now + _dt.timedelta(days=365)

    root = _make_ca("fastpool test root CA", now)
    inter = _make_ca("fastpool test intermediate CA", now, parent=root)
    other = _make_ca("fastpool UNTRUSTED root CA", now)
    client_ca = _make_ca("fastpool test client CA", now)
    other_client_ca = _make_ca("fastpool UNTRUSTED client CA", now)

    ca_path, ca_key_path = _write_ca(directory, "ca", root)
    inter_path, _ = _write_ca(directory, "intermediate-ca", inter)
    other_path, _ = _write_ca(directory, "other-ca", other)
    client_ca_path, _ = _write_ca(directory, "client-ca", client_ca)
    other_client_ca_path, _ = _write_ca(directory, "other-client-ca", other_client_ca)

    def leaf(name, san, issuer, nb=past, na=future, *, intermediates=(), client=False,
             rsa_key=False):
        # The CN is never a host name: verification must rest on the SAN alone (OpenSSL
        # falls back to the CN for DNS names when a SAN has none, e.g. ip-only).
        cert, key = _make_leaf(f"fastpool test {name}", san, issuer, nb, na, client=client,
                               rsa_key=rsa_key)
        return _write_pair(directory, name, cert, key, intermediates)

    return CertSet(
        directory=directory,
        ca=ca_path,
        ca_key=ca_key_path,
        intermediate_ca=inter_path,
        other_ca=other_path,
        client_ca=client_ca_path,
        other_client_ca=other_client_ca_path,
        server=leaf("server", _LOCAL_SAN, root),
        server_intermediate=leaf(
            "server-intermediate", _LOCAL_SAN, inter, intermediates=(inter.cert,)
        ),
        server_rsa=leaf("server-rsa", _LOCAL_SAN, root, rsa_key=True),
        expired=leaf(
            "expired",
            _LOCAL_SAN,
            root,
            now - _dt.timedelta(days=30),
            now - _dt.timedelta(days=1),
        ),
        not_yet_valid=leaf(
            "not-yet-valid",
            _LOCAL_SAN,
            root,
            now + _dt.timedelta(days=1),
            now + _dt.timedelta(days=30),
        ),
        wrong_host=leaf("wrong-host", [x509.DNSName("wrong.example")], root),
        ip_only=leaf("ip-only", [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))], root),
        untrusted=leaf("untrusted", _LOCAL_SAN, other),
        self_signed=leaf("self-signed", _LOCAL_SAN, None),
        client=leaf("client", [x509.DNSName("client.fastpool.test")], client_ca, client=True),
        client_untrusted=leaf(
            "client-untrusted",
            [x509.DNSName("client.fastpool.test")],
            other_client_ca,
            client=True,
        ),
    )


def client_context(
    ca: Path | None,
    *,
    cert: CertKey | None = None,
    minimum=None,
    maximum=None,
    check_hostname: bool = True,
):
    """A stdlib client ``ssl.SSLContext`` trusting only ``ca`` (None: verify nothing), with an
    optional client certificate and TLS version bounds (``ssl.TLSVersion``)."""
    import ssl

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if ca is None:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    else:
        ctx.load_verify_locations(cafile=str(ca))
        ctx.check_hostname = check_hostname
    if minimum is not None:
        ctx.minimum_version = minimum
    if maximum is not None:
        ctx.maximum_version = maximum
    if cert is not None:
        ctx.load_cert_chain(str(cert.chain), str(cert.key))
    return ctx
