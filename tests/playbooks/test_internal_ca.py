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
import sys

from conftest import ROOT, RunPlaybook
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.x509.oid import ExtendedKeyUsageOID

sys.path.insert(0, str(ROOT / "molecule" / "shared" / "files"))
import changed_tasks  # the scenarios' reader of ansible-playbook output (a script, not a package)

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


def module_runs(stdout: str, task: str) -> list[str]:
    """The hosts `internal_ca : <task>` ran for (ok or changed, not skipped), in order, read by
    the scenarios' reader of ansible-playbook output."""
    return changed_tasks.changed_tasks(stdout.splitlines(), changed_tasks.RAN).get(
        f"internal_ca : {task}", []
    )


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


def test_each_ca_is_checked_once_per_run(
    ansible_playbook: RunPlaybook, tmp_path: pathlib.Path
) -> None:
    """Every issue.yml includes the CA's creation; within one run, across `serial` batches and
    plays, its module runs happen once per CA directory (they cost a second of the controller's
    CPU each time)."""
    common = {"ansible_connection": "local"}
    inventory = {
        "all": {
            "hosts": {
                "gw1": {**common, "internal_ca_dir": str(tmp_path / "ca1")},
                "gw2": {**common, "internal_ca_dir": str(tmp_path / "ca1")},
                "other": {**common, "internal_ca_dir": str(tmp_path / "ca2")},
            }
        }
    }
    play = tmp_path / "play.yml"
    play.write_text(
        PLAY.replace("hosts: all", "hosts: all\n  serial: 1")
        + PLAY.replace("hosts: all", "hosts: gw2").replace("Issue\n", "Issue again\n", 1)
    )

    run = ansible_playbook(inventory, play)
    assert run.returncode == 0, run.stdout + run.stderr
    assert module_runs(run.stdout, "Create the internal CA's private key") == ["gw1", "other"]
    for name in ("gw1", "gw2"):
        assert (tmp_path / "ca1" / f"{name}.crt").is_file()
    assert (tmp_path / "ca2" / "other.crt").is_file()


def test_a_matching_certificate_is_kept_without_the_modules_and_anything_else_reissued(
    ansible_playbook: RunPlaybook, tmp_path: pathlib.Path
) -> None:
    """The second run reads the issued files in-process and skips the three modules; other
    names, or a certificate file that does not parse, go through them again."""
    ca_dir = tmp_path / "ca"
    host = {"ansible_connection": "local", "internal_ca_dir": str(ca_dir)}
    inventory = {"all": {"hosts": {"gw1": {**host, "internal_ca_names": ["gw1", "10.0.0.1"]}}}}
    play = tmp_path / "play.yml"
    play.write_text(PLAY)
    assert ansible_playbook(inventory, play).returncode == 0
    issued = (ca_dir / "gw1.crt").read_bytes()

    again = ansible_playbook(inventory, play)
    assert again.returncode == 0, again.stdout + again.stderr
    modules = ("Create the certificate's private key", "Sign the certificate with the internal CA")
    for task in modules:
        assert module_runs(again.stdout, task) == [], again.stdout
    assert (ca_dir / "gw1.crt").read_bytes() == issued

    # Another name: the modules run and the certificate covers it.
    inventory["all"]["hosts"]["gw1"]["internal_ca_names"] = ["gw1", "10.0.0.1", "gw1.example"]
    renamed = ansible_playbook(inventory, play)
    assert renamed.returncode == 0, renamed.stdout + renamed.stderr
    assert module_runs(renamed.stdout, "Sign the certificate with the internal CA") == ["gw1"]
    sans = load(ca_dir / "gw1.crt").extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert sans.value.get_values_for_type(x509.DNSName) == ["gw1", "gw1.example"]

    # A certificate that does not parse: issued again, not a failed run.
    broken_pem = "-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n"
    (ca_dir / "gw1.crt").write_text(broken_pem)
    broken = ansible_playbook(inventory, play)
    assert broken.returncode == 0, broken.stdout + broken.stderr
    assert module_runs(broken.stdout, "Sign the certificate with the internal CA") == ["gw1"]
    assert issued_by(load(ca_dir / "gw1.crt"), load(ca_dir / "ca.crt"))
