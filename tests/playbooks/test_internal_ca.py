"""The internal CA role issues host certificates on the controller, once.

roles/internal_ca runs for real on local hosts: a server certificate for one host (a DNS name and
an address) and a client certificate for another must verify against the CA's certificate with
the names and usage asked for, the CA's key must stay private, and a second run must change
nothing (the same CA and certificates, not new ones).
"""

from __future__ import annotations

import ipaddress
import pathlib
import stat

from conftest import RunPlaybook
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.x509.oid import ExtendedKeyUsageOID

PLAY = """
- name: Issue the hosts' certificates
  hosts: all
  gather_facts: false
  tasks:
    - name: Issue
      ansible.builtin.include_role:
        name: internal_ca
        tasks_from: issue.yml
"""


def load(path: pathlib.Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def issued_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    ca.public_key().verify(  # type: ignore[call-arg, union-attr]
        cert.signature,
        cert.tbs_certificate_bytes,
        padding.PKCS1v15(),
        cert.signature_hash_algorithm,
    )
    return cert.issuer == ca.subject


def test_certificates_are_issued_once_with_the_names_and_usage_asked_for(
    ansible_playbook: RunPlaybook, tmp_path: pathlib.Path
) -> None:
    ca_dir = tmp_path / "ca"
    common = {"ansible_connection": "local", "internal_ca_dir": str(ca_dir)}
    inventory = {
        "all": {
            "hosts": {
                "server1": {
                    **common,
                    "internal_ca_cert_name": "server1-llm",
                    "internal_ca_names": ["llm1.example.internal", "10.1.2.3"],
                },
                "client1": {**common, "internal_ca_usage": "client"},
            }
        }
    }
    play = tmp_path / "play.yml"
    play.write_text(PLAY)

    first = ansible_playbook(inventory, play)
    assert first.returncode == 0, first.stdout + first.stderr
    ca = load(ca_dir / "ca.crt")
    assert stat.S_IMODE((ca_dir / "ca.key").stat().st_mode) == 0o600
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca

    server = load(ca_dir / "server1-llm.crt")
    assert issued_by(server, ca)
    sans = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["llm1.example.internal"]
    assert sans.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("10.1.2.3")]
    usage = server.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [ExtendedKeyUsageOID.SERVER_AUTH]

    client = load(ca_dir / "client1.crt")
    assert issued_by(client, ca)
    usage = client.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert stat.S_IMODE((ca_dir / "client1.key").stat().st_mode) == 0o600

    before = {path.name: path.read_bytes() for path in ca_dir.iterdir()}
    second = ansible_playbook(inventory, play)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "changed=0" in second.stdout
    assert "changed=1" not in second.stdout
    assert {path.name: path.read_bytes() for path in ca_dir.iterdir()} == before
