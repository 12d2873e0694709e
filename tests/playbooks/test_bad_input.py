"""playbooks/site.yml refuses bad inventories before anything changes, naming the variable.

Each case writes a small inventory of local hosts and runs the real site.yml in check mode: the
first play ("Check the inventory before anything changes") must fail with a message naming the
variable to fix, and no task may have run in a later play.
"""

from __future__ import annotations

import datetime
import sys

import pytest
from conftest import ROOT, RunPlaybook
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

FIRST_PLAY = "Check the inventory before anything changes"
# The plays that only check (the gateways', then llm_api's inputs); nothing after them may run.
CHECK_PLAYS = (FIRST_PLAY, "Check llm_api's inputs before anything changes")

GOOD_LLM = {"llm1": {"llm_api_listen_host": "10.0.2.21", "llm_api_listen_port": 8080}}


def inventory(llm_hosts: dict, gateway_vars: dict | None = None) -> dict:
    return {
        "all": {
            "vars": {"ansible_connection": "local", "ansible_python_interpreter": sys.executable},
            "children": {
                "gateways": {"hosts": {"gw1": gateway_vars or {}}},
                "llm_api": {"hosts": llm_hosts},
            },
        }
    }


def pem_pair(name: str, days: tuple[int, int] = (-1, 30)) -> tuple[str, str]:
    """A self-signed certificate for `name` valid from now+days[0] to now+days[1], and its key."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now + datetime.timedelta(days=days[0]))
        .not_valid_after(now + datetime.timedelta(days=days[1]))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode(), key_pem.decode()


GW_CERT, GW_KEY = pem_pair("gw1")
OTHER_CERT, OTHER_KEY = pem_pair("other.example")
OLD_CERT, OLD_KEY = pem_pair("gw1", days=(-60, -1))


def tls(**gateway_vars: object) -> dict:
    return inventory(GOOD_LLM, gateway_vars)


DB_CERT, DB_KEY = pem_pair("db1")


def postgres(**gateway_vars: object) -> dict:
    """Gateways whose PostgreSQL is the host db1 (TLS on by default), with these settings."""
    return tls(
        kong_database="postgres",
        kong_pg_host="10.0.3.31",
        kong_pg_server="db1",
        kong_pg_password="pg-password-for-the-test",
        **gateway_vars,
    )


LLM_CERT, LLM_KEY = pem_pair("llm-api.upstream")


def llm_tls(**llm_vars: str) -> dict:
    return inventory({"llm1": {**GOOD_LLM["llm1"], **llm_vars}})


CASES = {
    "llm_api group without hosts": (
        inventory({}),
        ["kong_gateway_upstream_targets is empty", "'llm_api'"],
    ),
    "a redis policy without a Redis host": (
        inventory(GOOD_LLM, {"kong_gateway_rate_limit_policy": "redis"}),
        ["kong_gateway_redis_host is empty"],
    ),
    "an upstream name that is an IP address": (
        inventory(GOOD_LLM, {"kong_gateway_upstream_name": "10.1.2.3"}),
        ["kong_gateway_upstream_name '10.1.2.3' is not valid"],
    ),
    "a target without a port (inventory)": (
        inventory({"llm1": {"llm_api_listen_host": "10.0.2.21", "llm_api_listen_port": ""}}),
        ["kong_gateway_upstream_targets", "not 10.0.2.21:"],
    ),
    "a target without a port (explicit)": (
        inventory(GOOD_LLM, {"kong_gateway_upstream_targets": [{"target": "llm.example"}]}),
        ["kong_gateway_upstream_targets", "not llm.example "],
    ),
    "a key that does not match its certificate": (
        tls(kong_ssl_cert=GW_CERT, kong_ssl_cert_key=OTHER_KEY),
        ["The key in kong_ssl_cert_key does not match the certificate in kong_ssl_cert"],
    ),
    "an expired certificate": (
        tls(kong_ssl_cert=OLD_CERT, kong_ssl_cert_key=OLD_KEY),
        ["The certificate in kong_ssl_cert expired on"],
    ),
    "a certificate without the host name clients use": (
        tls(kong_ssl_cert=OTHER_CERT, kong_ssl_cert_key=OTHER_KEY),
        ["does not cover gw1 from kong_ssl_names", "DNS:other.example"],
    ),
    "a certificate without its key": (
        tls(kong_ssl_cert=GW_CERT),
        ["give kong_ssl_cert with kong_ssl_cert_key"],
    ),
    "a key that is not PEM": (
        tls(kong_ssl_cert=GW_CERT, kong_ssl_cert_key="not a key"),
        ["kong_ssl_cert_key is not an unencrypted PEM private key"],
    ),
    "a CA file that is not PEM": (
        tls(
            kong_ssl_cert=GW_CERT,
            kong_ssl_cert_key=GW_KEY,
            kong_ssl_ca_cert_file=str(ROOT / "README.md"),
        ),
        ["kong_ssl_ca_cert_file (", "README.md) is not a PEM certificate"],
    ),
    "a certificate not issued by the CA given": (
        tls(kong_ssl_cert=GW_CERT, kong_ssl_cert_key=GW_KEY, kong_ssl_ca_cert=OTHER_CERT),
        ["The certificate in kong_ssl_cert was not issued by kong_ssl_ca_cert (its issuer"],
    ),
    # TLS between hosts (PostgreSQL, Redis).
    "a CA to trust that is not PEM": (
        tls(kong_trusted_ca_certs=[OTHER_CERT, "not a certificate"]),
        ["kong_trusted_ca_certs[1] is not a PEM certificate"],
    ),
    "a PostgreSQL certificate without its key": (
        postgres(kong_pg_ssl_cert=DB_CERT),
        ["give kong_pg_ssl_cert with kong_pg_ssl_cert_key"],
    ),
    "a PostgreSQL key that does not match its certificate": (
        postgres(kong_pg_ssl_cert=DB_CERT, kong_pg_ssl_cert_key=OTHER_KEY),
        ["kong_pg_ssl_cert_key does not match kong_pg_ssl_cert"],
    ),
    "a PostgreSQL certificate whose CA Kong does not trust": (
        postgres(kong_pg_ssl_cert=DB_CERT, kong_pg_ssl_cert_key=DB_KEY),
        [
            "kong_pg_ssl_verify is on, but the CA that issued kong_pg_ssl_cert",
            "kong_trusted_ca_certs",
        ],
    ),
    "an expired PostgreSQL certificate": (
        postgres(
            kong_pg_ssl_cert=OLD_CERT,
            kong_pg_ssl_cert_key=OLD_KEY,
            kong_trusted_ca_certs=[OLD_CERT],
        ),
        ["kong_pg_ssl_cert expired on"],
    ),
    "Redis over TLS with an address for the name Kong verifies": (
        inventory(
            GOOD_LLM,
            {
                "kong_gateway_rate_limit_policy": "redis",
                "kong_gateway_redis_host": "10.0.3.31",
                "ai_gateway_redis_tls": True,
            },
        ),
        ["kong_gateway_redis_ssl is on but kong_gateway_redis_server_name", "is not a host name"],
    ),
    "llm_api: a key that does not match its certificate": (
        llm_tls(llm_api_tls_cert=LLM_CERT, llm_api_tls_key=OTHER_KEY, llm_api_tls_ca_cert=LLM_CERT),
        ["llm_api_tls_key does not match the certificate in llm_api_tls_cert"],
    ),
    "llm_api: a CA that is not PEM": (
        llm_tls(llm_api_tls_cert=LLM_CERT, llm_api_tls_key=LLM_KEY, llm_api_tls_ca_cert="not a CA"),
        ["llm_api_tls_ca_cert is not a PEM certificate"],
    ),
    "llm_api: a certificate without the names Kong verifies": (
        llm_tls(llm_api_tls_cert=LLM_CERT, llm_api_tls_key=LLM_KEY, llm_api_tls_ca_cert=LLM_CERT),
        ["does not cover llm1, 10.0.2.21 from llm_api_tls_names"],
    ),
    "llm_api: a certificate without its CA": (
        llm_tls(llm_api_tls_cert=LLM_CERT, llm_api_tls_key=LLM_KEY),
        ["give llm_api_tls_cert with llm_api_tls_key", "llm_api_tls_ca_cert"],
    ),
    "the CA Kong verifies llm_api with is not PEM": (
        inventory(GOOD_LLM, {"kong_gateway_upstream_ca_cert": "-----BEGIN CERTIFICATE-----\nno"}),
        ["kong_gateway_upstream_ca_cert (or llm_api_tls_ca_cert) is not one PEM certificate"],
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_fails_first(case: str, ansible_playbook: RunPlaybook) -> None:
    inv, expected = CASES[case]
    run = ansible_playbook(inv, ROOT / "playbooks" / "site.yml", "--check")
    out = run.stdout
    assert run.returncode != 0, out
    plays = [line for line in out.splitlines() if line.startswith("PLAY [")]
    assert plays, out
    assert all(any(name in play for name in CHECK_PLAYS) for play in plays), plays
    assert "changed:" not in out
    failure = next(line for line in out.splitlines() if "FAILED!" in line)
    for text in expected:
        assert text in failure, failure
    # Private keys never reach the output, whatever the failure.
    for key in (GW_KEY, OTHER_KEY, OLD_KEY, DB_KEY, LLM_KEY):
        assert key.splitlines()[1] not in out
