"""playbooks/site.yml refuses bad inventories before anything changes, naming the variable.

Each case writes a small inventory of local hosts and runs the real site.yml in check mode: one
of the plays that only check (the gateways', llm_api's and Redis's inputs) must fail with a
message naming the variable to fix, and no task may have run in a later play.
"""

from __future__ import annotations

import sys

import pytest
from conftest import ROOT, RunPlaybook, assert_refused, pem_pair

FIRST_PLAY = "Check the inventory before anything changes"
# The plays that only check (the gateways', llm_api's, then Redis's inputs); nothing after them
# may run.
CHECK_PLAYS = (
    FIRST_PLAY,
    "Check llm_api's inputs before anything changes",
    "Check Redis's inputs before anything changes",
)

GOOD_LLM = {"llm1": {"llm_api_listen_host": "10.0.2.21", "llm_api_listen_port": 8080}}


def inventory(
    llm_hosts: dict, gateway_vars: dict | None = None, redis_hosts: dict | None = None
) -> dict:
    children = {
        "gateways": {"hosts": {"gw1": gateway_vars or {}}},
        "llm_api": {"hosts": llm_hosts},
    }
    if redis_hosts is not None:
        children["redis"] = {"hosts": redis_hosts}
    return {
        "all": {
            "vars": {"ansible_connection": "local", "ansible_python_interpreter": sys.executable},
            "children": children,
        }
    }


GW_CERT, GW_KEY = pem_pair("gw1")
OTHER_CERT, OTHER_KEY = pem_pair("other.example")
OLD_CERT, OLD_KEY = pem_pair("gw1", days=(-60, -1))


def tls(**gateway_vars: object) -> dict:
    return inventory(GOOD_LLM, gateway_vars)


DB_CERT, DB_KEY = pem_pair("db1")
# For db1 and the address the gateways connect to (kong_pg_host).
PG_CERT, PG_KEY = pem_pair("db1", "10.0.3.31")


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
# A certificate for every name of llm_api_tls_names (llm1, its address, the upstream's name).
LLM_GOOD_CERT, LLM_GOOD_KEY = pem_pair("llm1", "10.0.2.21", "llm-api.upstream")
LLM_VAULT = {
    "llm_api_tls_cert": LLM_GOOD_CERT,
    "llm_api_tls_key": LLM_GOOD_KEY,
    "llm_api_tls_ca_cert": LLM_GOOD_CERT,
}


def llm_tls(**llm_vars: str) -> dict:
    return inventory({"llm1": {**GOOD_LLM["llm1"], **llm_vars}})


# Redis on r1 (10.0.3.41), with TLS and a certificate from the vault for its names; Kong's rate
# limits and llm_api's quotas there, over TLS.
REDIS_CERT, REDIS_KEY = pem_pair("r1", "10.0.3.41")
REDIS_OLD_CERT, REDIS_OLD_KEY = pem_pair("r1", "10.0.3.41", days=(-60, -1))
REDIS_URL = "rediss://:a-redis-password-for-the-test@10.0.3.41:6379/0"


def redis_tls(
    redis_vars: dict | None = None, gateway_vars: dict | None = None, llm_vars: dict | None = None
) -> dict:
    redis = {
        "ansible_host": "10.0.3.41",
        "ansible_connection": "local",
        "redis_listen_host": "10.0.3.41",
        "redis_tls": True,
        "redis_tls_cert": REDIS_CERT,
        "redis_tls_key": REDIS_KEY,
        "redis_tls_ca_cert": REDIS_CERT,
        **(redis_vars or {}),
    }
    gateway = {
        "kong_gateway_rate_limit_policy": "redis",
        "kong_gateway_redis_host": "10.0.3.41",
        "ai_gateway_redis_tls": True,
        **(gateway_vars or {}),
    }
    llm = {
        **GOOD_LLM["llm1"],
        "llm_api_redis_url": REDIS_URL,
        "llm_api_redis_ca_cert": REDIS_CERT,
        **(llm_vars or {}),
    }
    return inventory({"llm1": llm}, gateway, {"r1": redis})


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
        postgres(kong_pg_ssl_cert=PG_CERT, kong_pg_ssl_cert_key=PG_KEY),
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
    "a PostgreSQL certificate without the address the gateways connect to": (
        postgres(
            kong_pg_ssl_cert=DB_CERT, kong_pg_ssl_cert_key=DB_KEY, kong_trusted_ca_certs=[DB_CERT]
        ),
        ["kong_pg_ssl_cert does not cover kong_pg_host (10.0.3.31)", "DNS:db1"],
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
    "Redis: a key that does not match its certificate": (
        redis_tls({"redis_tls_key": OTHER_KEY}),
        ["redis_tls_key does not match redis_tls_cert"],
    ),
    "Redis: an expired certificate": (
        redis_tls({"redis_tls_cert": REDIS_OLD_CERT, "redis_tls_key": REDIS_OLD_KEY}),
        ["redis_tls_cert expired on"],
    ),
    "Redis: a CA that is not PEM": (
        redis_tls({"redis_tls_ca_cert": "not a CA"}),
        ["redis_tls_ca_cert", "is missing or not PEM"],
    ),
    "Redis: a certificate without the names clients connect to": (
        redis_tls({"redis_tls_names": ["r1", "10.0.3.41", "redis.internal"]}),
        ["redis_tls_cert does not cover redis.internal from redis_tls_names"],
    ),
    "Redis: a certificate without the name Kong verifies": (
        redis_tls(gateway_vars={"kong_gateway_redis_server_name": "redis.internal"}),
        [
            "redis_tls_cert of r1 does not cover kong_gateway_redis_server_name (redis.internal)",
            "DNS:r1, IP:10.0.3.41",
        ],
    ),
    "Redis: a certificate without the host of llm_api's URL": (
        redis_tls(llm_vars={"llm_api_redis_url": REDIS_URL.replace("10.0.3.41", "redis.internal")}),
        ["redis_tls_cert of r1 does not cover redis.internal, the host of llm_api_redis_url"],
    ),
    "llm_api: a CA of Redis's that is not PEM": (
        redis_tls(llm_vars={"llm_api_redis_ca_cert": "not a CA"}),
        ["llm_api_redis_ca_cert is not a PEM certificate"],
    ),
    "llm_api: a certificate without the name Kong verifies": (
        inventory(
            {"llm1": {**GOOD_LLM["llm1"], **LLM_VAULT}},
            {"kong_gateway_upstream_name": "llm.internal"},
        ),
        ["llm_api_tls_cert of llm1 does not cover llm.internal (kong_gateway_upstream_name"],
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


KEYS = (GW_KEY, OTHER_KEY, OLD_KEY, DB_KEY, PG_KEY, LLM_KEY, LLM_GOOD_KEY, REDIS_KEY, REDIS_OLD_KEY)


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_fails_first(case: str, ansible_playbook: RunPlaybook) -> None:
    inv, expected = CASES[case]
    run = ansible_playbook(inv, ROOT / "playbooks" / "site.yml", "--check")
    plays = [line for line in run.stdout.splitlines() if line.startswith("PLAY [")]
    assert plays, run.stdout
    assert all(any(name in play for name in CHECK_PLAYS) for play in plays), plays
    # Private keys never reach the output, whatever the failure.
    assert_refused(run, expected, KEYS)


def test_good_tls_inputs_pass_the_checks(ansible_playbook: RunPlaybook) -> None:
    """Certificates from the vault that are right for every name clients use pass every check
    play: the run gets to the first play that installs (which then stops at its own preflight,
    the inventory having no redis_password)."""
    gateway = {
        "kong_database": "postgres",
        "kong_pg_host": "10.0.3.31",
        "kong_pg_server": "db1",
        "kong_pg_password": "pg-password-for-the-test",
        "kong_pg_ssl_cert": PG_CERT,
        "kong_pg_ssl_cert_key": PG_KEY,
        "kong_trusted_ca_certs": [PG_CERT, REDIS_CERT],
    }
    run = ansible_playbook(
        redis_tls(gateway_vars=gateway, llm_vars=LLM_VAULT),
        ROOT / "playbooks" / "site.yml",
        "--check",
    )
    plays = [line for line in run.stdout.splitlines() if line.startswith("PLAY [")]
    assert all(any(name in play for name in CHECK_PLAYS) for play in plays[:3]), plays
    assert "PLAY [Install and run Redis]" in plays[3], run.stdout
    assert "redis_password must be set" in run.stdout, run.stdout
    assert "changed:" not in run.stdout
    for key in KEYS:
        assert key.splitlines()[1] not in run.stdout
