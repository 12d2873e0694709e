"""playbooks/redis.yml refuses Redis's TLS certificate from the vault when it is unusable, in the
role's preflight, before anything is installed or written, naming the variable; the key never
reaches the output. (playbooks/site.yml runs the same checks in a play of its own before any
change: test_bad_input.py.)"""

from __future__ import annotations

import sys

import pytest
from conftest import ROOT, RunPlaybook, assert_refused
from test_bad_input import GW_CERT, GW_KEY, OLD_CERT, OLD_KEY, OTHER_CERT, OTHER_KEY


def redis_inventory(**redis_vars: object) -> dict:
    host = {
        "ansible_connection": "local",
        "ansible_python_interpreter": sys.executable,
        "ansible_become": False,
        "redis_password": "a-redis-password-for-the-test",
        "redis_listen_host": "127.0.0.1",
        "redis_tls": True,
        **redis_vars,
    }
    return {"all": {"children": {"redis": {"hosts": {"r1": host}}}}}


CASES = {
    "a certificate without its CA": (
        redis_inventory(redis_tls_cert=GW_CERT, redis_tls_key=GW_KEY),
        ["redis_tls_ca_cert is missing or not PEM"],
    ),
    "a key that is not PEM": (
        redis_inventory(
            redis_tls_cert=GW_CERT, redis_tls_key="not a key", redis_tls_ca_cert=GW_CERT
        ),
        ["redis_tls_key is missing or not PEM"],
    ),
    "a key that does not match the certificate": (
        redis_inventory(redis_tls_cert=GW_CERT, redis_tls_key=OTHER_KEY, redis_tls_ca_cert=GW_CERT),
        ["redis_tls_key does not match redis_tls_cert"],
    ),
    "an expired certificate": (
        redis_inventory(redis_tls_cert=OLD_CERT, redis_tls_key=OLD_KEY, redis_tls_ca_cert=OLD_CERT),
        ["redis_tls_cert expired on"],
    ),
    "a certificate not issued by the CA given": (
        redis_inventory(redis_tls_cert=GW_CERT, redis_tls_key=GW_KEY, redis_tls_ca_cert=OTHER_CERT),
        ["redis_tls_cert was not issued by redis_tls_ca_cert"],
    ),
    "a certificate without the names clients connect to": (
        redis_inventory(redis_tls_cert=GW_CERT, redis_tls_key=GW_KEY, redis_tls_ca_cert=GW_CERT),
        ["redis_tls_cert does not cover r1, 127.0.0.1 from redis_tls_names", "DNS:gw1"],
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_redis_certificate_fails_in_preflight(case: str, ansible_playbook: RunPlaybook) -> None:
    inv, expected = CASES[case]
    run = ansible_playbook(inv, ROOT / "playbooks" / "redis.yml", "--check")
    assert "TASK [redis : Install Redis" not in run.stdout
    assert_refused(run, expected, (GW_KEY, OTHER_KEY, OLD_KEY))
