"""Certificates made in the tests with ``cryptography``: a CA, leaves it signs, self-signed
pairs, expired CAs, and PEM helpers."""

from __future__ import annotations

import atexit
import contextlib
import datetime
import os
import ssl
import tempfile
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def _key(kind: str) -> Any:
    if kind == "ec":
        return ec.generate_private_key(ec.SECP256R1())
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _pem_key(key: Any) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


@dataclass
class Pair:
    cert: str
    key: str
    der: bytes

    def files(self) -> tuple[str, str]:
        """The pair as two private temporary files (removed when the test run ends)."""
        return pem_file(self.cert), pem_file(self.key)


_TEMP_FILES: list[str] = []


def pem_file(text: str) -> str:
    """`text` in a private temporary file, removed when the test run ends (the nodes under test
    read it until then)."""
    fd, path = tempfile.mkstemp(suffix=".pem")
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    _TEMP_FILES.append(path)
    return path


@atexit.register
def _remove_temp_files() -> None:
    for path in _TEMP_FILES:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


def make_cert(
    cn: str,
    *,
    sans: list[str] | None = None,
    issuer: Pair | None = None,
    issuer_key: Any = None,
    ca: bool = False,
    kind: str = "rsa",
    days: int = 30,
    expired: bool = False,
) -> tuple[Pair, Any]:
    """A certificate for ``cn`` (DNS SANs ``sans``, else ``[cn]`` unless a CA), signed by
    ``issuer`` or self-signed. Returns the pair and its private key object."""
    key = _key(kind)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = datetime.datetime.now(datetime.timezone.utc)  # noqa: UP017 - cryptography 38 API
    start, end = now - datetime.timedelta(days=1), now + datetime.timedelta(days=days)
    if expired:
        start, end = now - datetime.timedelta(days=10), now - datetime.timedelta(days=5)
    issuer_name = x509.load_pem_x509_certificate(issuer.cert.encode()).subject if issuer else name
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if not ca:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(n) for n in (sans or [cn])]),
            critical=False,
        ).add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
    cert = builder.sign(issuer_key or key, hashes.SHA256())
    pem = cert.public_bytes(serialization.Encoding.PEM).decode()
    return Pair(pem, _pem_key(key), cert.public_bytes(serialization.Encoding.DER)), key


class CA:
    """A test CA that signs leaves."""

    def __init__(self, cn: str = "kongsim test CA"):
        self.pair, self._key = make_cert(cn, ca=True, days=365)

    @property
    def cert(self) -> str:
        return self.pair.cert

    def leaf(self, cn: str, *, sans: list[str] | None = None, kind: str = "rsa") -> Pair:
        return make_cert(cn, sans=sans, issuer=self.pair, issuer_key=self._key, kind=kind)[0]

    def client_context(self, **kwargs: Any) -> ssl.SSLContext:
        """A client context that trusts this CA only and checks host names."""
        context = ssl.create_default_context(cadata=self.cert, **kwargs)
        return context


def peer_der(host: str, port: int, server_name: str | None) -> bytes:
    """The certificate a TLS listener presents for ``server_name`` (no SNI with ``None``)."""
    import socket

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with (
        socket.create_connection((host, port), timeout=10) as sock,
        context.wrap_socket(sock, server_hostname=server_name) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return der


def subject_cn(der: bytes) -> str:
    cert = x509.load_der_x509_certificate(der)
    return str(cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)
