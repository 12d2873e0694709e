"""Quotas over TLS (rediss://) verified against a private CA (`quotas.redis_ca_file`): the lean
client, the quotas' start, `llm-api usage` and the config's checks, against a real redis-server
that listens with TLS only (no plain port) on loopback, with a certificate from a test CA."""

from __future__ import annotations

import datetime
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

import pytest
import redis
from conftest import free_port
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from llm_api.config import ConfigError, parse_config
from llm_api.quotas import Quotas
from llm_api.resp import LeanRedis
from llm_api.usage import collect
from prometheus_client import CollectorRegistry
from redis_server import start_redis

PASSWORD = "redis-tls-pass-7731"


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def make_ca(cn: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(_name(cn))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    return cert, key


@dataclass
class TlsFiles:
    ca: Path
    other_ca: Path
    cert: Path
    key: Path
    not_pem: Path


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    """A CA, Redis's certificate from it (localhost, 127.0.0.1), and another CA."""
    d = tmp_path_factory.mktemp("redis-tls")
    ca, ca_key = make_ca("llm_api test CA")
    other, _ = make_ca("another CA")
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("localhost"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(IPv4Address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    files = TlsFiles(
        d / "ca.crt", d / "other-ca.crt", d / "redis.crt", d / "redis.key", d / "not-pem.crt"
    )
    files.ca.write_bytes(_pem(ca))
    files.other_ca.write_bytes(_pem(other))
    files.cert.write_bytes(_pem(cert))
    files.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    files.key.chmod(0o600)
    files.not_pem.write_text("this is no certificate\n")
    return files


@pytest.fixture(scope="module")
def tls_redis(tmp_path_factory: pytest.TempPathFactory, tls_files: TlsFiles) -> Iterator[int]:
    """redis-server with TLS only (`port 0`, `tls-port`), a password, no client certificates."""
    port = free_port()
    args = ["--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1"]
    args += ["--tls-cert-file", str(tls_files.cert), "--tls-key-file", str(tls_files.key)]
    args += ["--tls-ca-cert-file", str(tls_files.ca), "--tls-auth-clients", "no"]
    args += ["--requirepass", PASSWORD, "--save", "", "--appendonly", "no"]
    args += ["--loglevel", "warning", "--dir", str(tmp_path_factory.mktemp("redis-tls-data"))]
    client = redis.Redis(
        port=port, password=PASSWORD, ssl=True, ssl_ca_certs=str(tls_files.ca), socket_timeout=2
    )
    proc = start_redis(args, client)
    yield port
    proc.terminate()
    proc.wait(10)


def url(port: int, scheme: str = "rediss", host: str = "127.0.0.1") -> str:
    return f"{scheme}://:{PASSWORD}@{host}:{port}/0"


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
async def test_rediss_with_the_ca_file_verifies_and_authenticates(
    tls_redis: int, tls_files: TlsFiles, host: str
) -> None:
    client = LeanRedis(url(tls_redis, host=host), 5, ca_file=str(tls_files.ca))
    try:
        assert await client.call("PING") == b"PONG"
        assert await client.call("SET", "tls-key", "v") == b"OK"
        assert await client.call("GET", "tls-key") == b"v"
    finally:
        await client.aclose()


@pytest.mark.parametrize("ca", ["system", "other"])
async def test_a_server_certificate_from_another_ca_is_refused(
    tls_redis: int, tls_files: TlsFiles, ca: str
) -> None:
    """Without quotas.redis_ca_file only the system's store is trusted; with another CA's file
    only that CA: either way the private CA's certificate fails verification."""
    ca_file = None if ca == "system" else str(tls_files.other_ca)
    client = LeanRedis(url(tls_redis), 5, ca_file=ca_file)
    with pytest.raises(ssl.SSLCertVerificationError):
        await client.call("PING")
    assert not client.connected


async def test_a_plain_connection_to_the_tls_port_fails(tls_redis: int) -> None:
    client = LeanRedis(url(tls_redis, scheme="redis"), 2)
    # Redis drops a client that does not start with a TLS handshake.
    with pytest.raises(ConnectionError):
        await client.call("PING")
    assert not client.connected


def quota_config(port: int, **quotas: Any) -> Any:
    data = {
        "model_list": [
            {"model_name": "m", "litellm_params": {"model": "openai/m", "mock_response": "hi"}}
        ],
        "quotas": {"redis_url": url(port), **quotas},
    }
    return parse_config(data, "test.yaml", env={})


async def test_the_quotas_connect_over_tls_with_their_ca_file(
    tls_redis: int, tls_files: TlsFiles
) -> None:
    config = quota_config(tls_redis, redis_ca_file=str(tls_files.ca))
    quotas = Quotas(config, CollectorRegistry())
    await quotas.start()
    try:
        assert quotas.redis is not None
        assert quotas.redis.connected
        assert quotas.redis_errors.labels("connect")._value.get() == 0
    finally:
        await quotas.stop()


async def test_llm_api_usage_reads_over_tls_with_the_ca_file(
    tls_redis: int, tls_files: TlsFiles
) -> None:
    writer = redis.Redis(
        port=tls_redis, password=PASSWORD, ssl=True, ssl_ca_certs=str(tls_files.ca)
    )
    writer.hset("llm_api:usage:{alice}:2026-12-01", mapping={"m\trequests": 3, "m\tin": 40})
    config = quota_config(tls_redis, redis_ca_file=str(tls_files.ca))
    rows = await collect(config.quotas, "2026-12-01", "alice")
    assert [(r["consumer"], r["model"], r["requests"], r["in"]) for r in rows] == [
        ("alice", "m", 3, 40)
    ]


def test_the_ca_file_is_checked_when_the_config_loads(tls_files: TlsFiles) -> None:
    with pytest.raises(ConfigError, match=r"quotas\.redis_ca_file: only a rediss://"):
        parse_config(
            {
                "model_list": [
                    {"model_name": "m", "litellm_params": {"model": "openai/m"}},
                ],
                "quotas": {
                    "redis_url": f"redis://:{PASSWORD}@127.0.0.1:6379/0",
                    "redis_ca_file": str(tls_files.ca),
                },
            },
            "test.yaml",
            env={},
        )
    with pytest.raises(ConfigError, match=r"quotas\.redis_ca_file: .*holds no PEM certificate"):
        quota_config(6379, redis_ca_file=str(tls_files.not_pem))
    with pytest.raises(ConfigError, match=r"quotas\.redis_ca_file: cannot read .*missing\.crt"):
        quota_config(6379, redis_ca_file=str(tls_files.ca.parent / "missing.crt"))
    broken = tls_files.ca.parent / "broken.crt"
    broken.write_text("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
    with pytest.raises(ConfigError, match=r"quotas\.redis_ca_file: .*not a valid PEM CA"):
        quota_config(6379, redis_ca_file=str(broken))
    good = quota_config(6379, redis_ca_file=str(tls_files.ca))
    assert good.quotas.redis_ca_file == str(tls_files.ca)
    # The password in the URL stays out of every message.
    with pytest.raises(ConfigError) as err:
        quota_config(6379, redis_ca_file=str(tls_files.not_pem))
    assert PASSWORD not in str(err.value)
