"""kong_certificate and kong_ca_certificate: identity by SNI or content, formatting never a change,
private keys never in the output, bad PEM refused before any request."""

import datetime
import json

import pytest
from ansible_collections.ai_gateway.kong.plugins.modules import (
    kong_ca_certificate,
    kong_certificate,
)
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

URL = "http://kong.test:8001"


def make_pair(name, ca=False):
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM).decode()
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    return cert_pem, key_pem


def reformat(pem):
    """The same PEM with other line lengths, CRLF line endings and blank lines around."""
    lines = pem.strip().splitlines()
    body = "".join(lines[1:-1])
    wrapped = [body[i : i + 40] for i in range(0, len(body), 40)]
    return "\r\n\r\n" + "\r\n".join([lines[0], *wrapped, lines[-1]]) + "\r\n\r\n"


@pytest.fixture(scope="module")
def pairs():
    return [make_pair("api.test"), make_pair("api.test")]


def args(pair, **kw):
    return dict({"admin_url": URL, "cert": pair[0], "key": pair[1], "snis": ["api.test"]}, **kw)


def test_create_then_same_content_in_other_formatting_is_no_change(kong, run_module, pairs):
    result = run_module(kong_certificate, args(pairs[0], snis=["b.api.test", "api.test"]))
    assert result["changed"] is True
    method, path, body = kong.writes()[0]
    assert (method, path) == ("POST", "/certificates")
    assert sorted(body["snis"]) == ["api.test", "b.api.test"]
    assert result["certificate"]["key"] == "********"
    assert pairs[0][1] not in json.dumps(result)
    kong.calls.clear()
    again = args((reformat(pairs[0][0]), reformat(pairs[0][1])), snis=["b.api.test", "api.test"])
    assert run_module(kong_certificate, again)["changed"] is False
    assert kong.writes() == []


def test_renewal_replaces_in_place_and_the_diff_shows_digests_and_masked_keys(
    kong, run_module, pairs
):
    first = run_module(kong_certificate, args(pairs[0]))
    result = run_module(kong_certificate, args(pairs[1]))
    assert result["changed"] is True
    assert kong.writes()[-1][:2] == ("PUT", "/certificates/%s" % first["certificate"]["id"])
    before, after = result["diff"]["before"], result["diff"]["after"]
    assert before["cert"].startswith("sha256:")
    assert before["cert"] != after["cert"]
    assert before["key"].startswith("******** (")
    assert before["key"] != after["key"]
    text = json.dumps(result)
    assert pairs[0][1] not in text
    assert pairs[1][1] not in text
    assert len(kong.rows("certificates")) == 1


def test_check_mode_and_delete_by_sni(kong, run_module, pairs):
    assert run_module(kong_certificate, args(pairs[0]), check=True)["changed"] is True
    assert kong.writes() == []
    run_module(kong_certificate, args(pairs[0]))
    gone = {"admin_url": URL, "snis": ["api.test"], "state": "absent"}
    assert run_module(kong_certificate, gone)["changed"] is True
    assert kong.rows("certificates") == []
    assert run_module(kong_certificate, gone)["changed"] is False


def test_certificate_without_snis_is_found_by_content(kong, run_module, pairs):
    plain = {"admin_url": URL, "cert": pairs[0][0], "key": pairs[0][1]}
    assert run_module(kong_certificate, plain)["changed"] is True
    assert run_module(kong_certificate, dict(plain, cert=reformat(pairs[0][0])))["changed"] is False


@pytest.mark.parametrize(
    ("cert", "key", "expected"),
    [
        ("not a certificate", None, "cert: not PEM"),
        (
            None,
            "-----BEGIN PRIVATE KEY-----\n%%%\n-----END PRIVATE KEY-----",
            "key: the PRIVATE KEY block is not valid base64",
        ),
        ("KEY", None, "cert: expected certificates, found PRIVATE KEY"),
        (None, "CERT", "key: expected one PEM private key block"),
    ],
)
def test_bad_pem_fails_before_any_request(kong, run_module, pairs, cert, key, expected):
    swap = {"KEY": pairs[0][1], "CERT": pairs[0][0]}
    cert = swap.get(cert, cert) or pairs[0][0]
    key = swap.get(key, key) or pairs[0][1]
    result = run_module(kong_certificate, args((cert, key)))
    assert result["failed"] is True
    assert expected in result["msg"]
    assert pairs[0][1] not in result["msg"]
    assert kong.calls == []


def test_kong_refuses_a_key_of_another_certificate(kong, run_module, pairs):
    kong.errors[("POST", "/certificates")] = (
        400,
        {
            "code": 2,
            "name": "schema violation",
            "message": "schema violation (certificate does not match key)",
            "fields": {"@entity": ["certificate does not match key"]},
        },
    )
    result = run_module(kong_certificate, args((pairs[0][0], pairs[1][1])))
    assert result["failed"] is True
    assert "certificate does not match key" in result["msg"]
    assert kong.rows("certificates") == []


# ----- kong_ca_certificate ----------------------------------------------------------------
@pytest.fixture(scope="module")
def ca():
    return make_pair("Test CA", ca=True)[0]


def test_ca_certificate_identity_is_its_content(kong, run_module, ca):
    created = run_module(kong_ca_certificate, {"admin_url": URL, "cert": ca, "tags": ["tls"]})
    assert created["changed"] is True
    assert kong.writes()[0][:2] == ("POST", "/ca_certificates")
    kong.calls.clear()
    same = {"admin_url": URL, "cert": reformat(ca), "tags": ["tls"]}
    assert run_module(kong_ca_certificate, same)["changed"] is False
    assert kong.writes() == []
    retagged = run_module(kong_ca_certificate, dict(same, tags=["tls", "internal"]))
    assert retagged["changed"] is True
    assert kong.writes()[-1] == (
        "PATCH",
        "/ca_certificates/%s" % created["ca_certificate"]["id"],
        {"tags": ["internal", "tls"]},
    )
    assert run_module(kong_ca_certificate, dict(same, state="absent"))["changed"] is True
    assert kong.rows("ca_certificates") == []


def test_ca_certificate_bundle_is_refused(kong, run_module, ca, pairs):
    result = run_module(kong_ca_certificate, {"admin_url": URL, "cert": ca + pairs[0][0]})
    assert result["failed"] is True
    assert "expected one certificate, found 2" in result["msg"]
    assert kong.calls == []
