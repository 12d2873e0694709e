"""Shared by the playbook tests: run a real playbook against an inventory of local hosts, make
certificates, and check that a playbook refused its input."""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import pathlib
import subprocess
import sys
from collections.abc import Callable, Iterable
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

ROOT = pathlib.Path(__file__).resolve().parents[2]

RunPlaybook = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def ansible_playbook(tmp_path: pathlib.Path) -> RunPlaybook:
    """`ansible_playbook(inventory, playbook, *options)`: writes the inventory (a dict) to
    hosts.json in the test's tmp_path and runs this virtualenv's ansible-playbook with the
    project's ansible.cfg and the default callback, uncoloured; the completed process (text)."""

    def run(inventory: dict[str, Any], playbook: pathlib.Path, *options: str) -> Any:
        hosts = tmp_path / "hosts.json"
        hosts.write_text(json.dumps(inventory))
        env = dict(
            os.environ,
            ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"),
            ANSIBLE_STDOUT_CALLBACK="default",
            ANSIBLE_NOCOLOR="true",
        )
        command = os.path.join(os.path.dirname(sys.executable), "ansible-playbook")
        return subprocess.run(
            [command, "-i", str(hosts), str(playbook), *options],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )

    return run


def pem_pair(*names: str, days: tuple[int, int] = (-1, 30)) -> tuple[str, str]:
    """A self-signed certificate whose subject is names[0] and whose subject alternative names
    are `names` (IP addresses as such), valid from now+days[0] to now+days[1], and its key (PEM)."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    sans: list[x509.GeneralName] = []
    for name in names:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            sans.append(x509.DNSName(name))
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now + datetime.timedelta(days=days[0]))
        .not_valid_after(now + datetime.timedelta(days=days[1]))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode(), key_pem.decode()


def assert_refused(
    run: subprocess.CompletedProcess[str], expected: Iterable[str], keys: Iterable[str]
) -> str:
    """The playbook failed without changing anything, its first failure says every text of
    `expected`, and no line of a private key in `keys` is in the output. The failure line."""
    out = run.stdout
    assert run.returncode != 0, out
    assert "changed:" not in out
    # `fatal: [host]: FAILED! => ...`, or `failed: [host] (item=...) => ...` in a loop.
    failure = next(
        line for line in out.splitlines() if "FAILED!" in line or line.startswith("failed: [")
    )
    for text in expected:
        assert text in failure, failure
    for key in keys:
        assert key.splitlines()[1] not in out
    return failure
