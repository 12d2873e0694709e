"""HTTPS serving (LLM_API_SSL_CERTFILE / LLM_API_SSL_KEYFILE): what Kong reaches across the
network when llm_api is on another host. A real `llm-api` process with a certificate from a
CA made here: a client trusting that CA gets answers, a plain-HTTP request to the port gets
none, and a certificate without its key is refused before the port is bound."""

from __future__ import annotations

import datetime
import ipaddress
import os
import ssl
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from conftest import free_port
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from llm_api.settings import Settings


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _pem_key(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _ca_and_leaf(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A CA and a leaf for 127.0.0.1 it signed: the paths of ca.crt, leaf.crt, leaf.key."""
    now = datetime.datetime.now(datetime.timezone.utc)  # noqa: UP017
    ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("test CA"))
        .issuer_name(_name("test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    leaf = (
        x509.CertificateBuilder()
        .subject_name(_name("llm-api.upstream"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("llm-api.upstream"),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                ]
            ),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    paths = tmp_path / "ca.crt", tmp_path / "leaf.crt", tmp_path / "leaf.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(_pem_key(key))
    paths[2].chmod(0o600)
    return paths


def test_a_certificate_needs_its_key() -> None:
    with pytest.raises(ValueError, match="LLM_API_SSL_CERTFILE and LLM_API_SSL_KEYFILE"):
        Settings(ssl_certfile=Path("/some/cert.pem"))
    with pytest.raises(ValueError, match="go together"):
        Settings(ssl_keyfile=Path("/some/key.pem"))
    assert Settings().ssl_certfile is None


def test_the_cli_refuses_half_a_pair_before_binding(tmp_path: Path) -> None:
    env = {**os.environ, "LLM_API_SSL_CERTFILE": str(tmp_path / "x.crt")}
    env.pop("LLM_API_SSL_KEYFILE", None)
    proc = subprocess.run(
        [sys.executable, "-m", "llm_api.cli"], env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 2
    assert "invalid settings" in proc.stderr
    assert "LLM_API_SSL_KEYFILE" in proc.stderr


def test_serves_https_only_with_the_configured_certificate(tmp_path: Path) -> None:
    ca_file, cert_file, key_file = _ca_and_leaf(tmp_path)
    port = free_port()
    env = {
        **os.environ,
        "LLM_API_PORT": str(port),
        "LLM_API_WORKERS": "1",
        "LLM_API_SSL_CERTFILE": str(cert_file),
        "LLM_API_SSL_KEYFILE": str(key_file),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "llm_api.cli"], env=env, stderr=subprocess.DEVNULL
    )
    trusting = ssl.create_default_context(cafile=str(ca_file))
    url = f"https://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180  # the app imports LiteLLM (slowly on a busy host)
        while True:
            try:
                if httpx.get(f"{url}/health/ready", verify=trusting).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline
            assert proc.poll() is None
            time.sleep(0.2)
        # the served certificate is the configured one, verified against the CA, name included
        with httpx.Client(verify=trusting) as client:
            assert client.get(f"{url}/health/live").status_code == 200
        # a client that does not trust the CA refuses it
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{url}/health/live")
        # plain HTTP to the TLS port gets no HTTP answer at all
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"http://127.0.0.1:{port}/health/live", timeout=5)
    finally:
        proc.terminate()
        proc.wait(20)
