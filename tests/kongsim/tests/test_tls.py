"""TLS (``kong-3.9-tls.md``): ``ssl`` listeners with configured or generated default
certificates, the certificates / snis / ca_certificates entities, certificate selection by
SNI, https-only routes, and ``https`` Services (verification, CA certificates, depth, client
certificate), in both storage modes. Certificates are made here with ``cryptography``."""

from __future__ import annotations

import base64
import json
import os
import ssl
import stat
import threading
import time
import urllib.error
from collections.abc import Iterator
from http.client import HTTPConnection, HTTPSConnection
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from conftest import Admin
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from kongsim.testing import KongNode, PostgresServer, echo_upstream, free_port, http
from tlscerts import CA, make_cert, peer_der, subject_cn

DEFAULT_SUBJECT = "CN=localhost,OU=IT Department,O=Kong,L=San Francisco,ST=California,C=US"


@pytest.fixture(scope="module")
def ca() -> CA:
    return CA()


@pytest.fixture(scope="module")
def tls_pg_node(pg: PostgresServer) -> Iterator[KongNode]:
    conf = {**pg.kong_conf(pg.create_database()), "db_update_frequency": 0.5}
    with KongNode(conf, tls=True) as node:
        yield node


@pytest.fixture(scope="module")
def tls_dbless_node() -> Iterator[KongNode]:
    with KongNode({"database": "off"}, tls=True) as node:
        yield node


@pytest.fixture(params=["postgres", "off"])
def admin(request: pytest.FixtureRequest) -> Admin:
    name = "tls_pg_node" if request.param == "postgres" else "tls_dbless_node"
    return Admin(request.getfixturevalue(name), request.param, "https")


@pytest.fixture
def pg_admin(tls_pg_node: KongNode) -> Admin:
    return Admin(tls_pg_node, "postgres", "https")


@pytest.fixture(scope="module")
def upstream_port() -> Iterator[int]:
    with echo_upstream() as port:
        yield port


def load(admin: Admin, config: dict[str, Any]) -> None:
    """Certificates, SNIs, CA certificates and services through the Admin API (postgres) or
    one ``POST /config`` (DB-less, which replaces the node's whole configuration)."""
    if admin.dbless:
        resp = admin.post("/config", json={"_format_version": "3.0", **config})
        assert resp.status == 201, resp.text
        return
    for cert in config.get("certificates", []):
        body = dict(cert)
        body["snis"] = [s["name"] for s in body.pop("snis", [])]
        assert admin.post("/certificates", json=body).status == 201
    for ca_cert in config.get("ca_certificates", []):
        assert admin.post("/ca_certificates", json=ca_cert).status == 201
    admin.seed({"services": config.get("services", [])})


# --- listeners -------------------------------------------------------------------------


def test_default_certificates_are_generated_as_kongs(tls_dbless_node: KongNode) -> None:
    ssl_dir = os.path.join(tls_dbless_node.prefix, "ssl")
    for stem in ("kong-default", "admin-kong-default", "status-kong-default"):
        for suffix, key_class in (("", rsa.RSAPrivateKey), ("-ecdsa", ec.EllipticCurvePrivateKey)):
            crt = os.path.join(ssl_dir, f"{stem}{suffix}.crt")
            key_path = os.path.join(ssl_dir, f"{stem}{suffix}.key")
            assert stat.S_IMODE(os.stat(key_path).st_mode) == 0o600
            with open(crt, "rb") as fh:
                cert = x509.load_pem_x509_certificate(fh.read())
            with open(key_path, "rb") as fh:
                key = serialization.load_pem_private_key(fh.read(), None)
            assert isinstance(key, key_class)
            assert cert.subject.rfc4514_string() == DEFAULT_SUBJECT
            assert cert.issuer == cert.subject
            assert (cert.not_valid_after_utc - cert.not_valid_before_utc).days == 7300
            constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints)
            assert constraints.critical
            assert not constraints.value.ca
            with pytest.raises(x509.ExtensionNotFound):
                cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    # proxy and admin pairs are separate key pairs with the same subject
    keys = []
    for stem in ("kong-default", "admin-kong-default"):
        with open(os.path.join(ssl_dir, f"{stem}.key"), "rb") as fh:
            keys.append(fh.read())
    assert keys[0] != keys[1]


@pytest.mark.parametrize("family", ["proxy", "admin", "status"])
def test_every_ssl_listener_serves_its_default_certificate(
    tls_dbless_node: KongNode, family: str
) -> None:
    port = getattr(tls_dbless_node, f"{family}_ssl_port")
    stem = {"proxy": "kong-default", "admin": "admin-kong-default"}.get(
        family, "status-kong-default"
    )
    files = []
    for suffix in ("", "-ecdsa"):
        with open(os.path.join(tls_dbless_node.prefix, "ssl", f"{stem}{suffix}.crt"), "rb") as fh:
            files.append(
                x509.load_pem_x509_certificate(fh.read()).public_bytes(serialization.Encoding.DER)
            )
    assert peer_der("127.0.0.1", port, None) in files
    url = getattr(tls_dbless_node, f"{family}_ssl_url")
    path = {"proxy": "/nothing-here", "admin": "/", "status": "/status"}[family]
    resp = http("GET", url + path)
    assert resp.status == (404 if family == "proxy" else 200)
    assert resp.headers["Server"] == "kong/3.9.3"


def test_configured_certificate_and_verification(ca: CA) -> None:
    """``ssl_cert``/``ssl_cert_key`` as files, ``admin_ssl_*`` inline PEM: a client that
    trusts the CA and checks the host name accepts both."""
    proxy_pair = ca.leaf("proxy.kongsim.test")
    admin_pair = ca.leaf("localhost")
    cert_file, key_file = proxy_pair.files()
    conf = {
        "database": "off",
        "ssl_cert": cert_file,
        "ssl_cert_key": key_file,
        # kong.conf is line-based: inline PEM is given base64-encoded
        "admin_ssl_cert": base64.b64encode(admin_pair.cert.encode()).decode(),
        "admin_ssl_cert_key": base64.b64encode(admin_pair.key.encode()).decode(),
    }
    with KongNode(conf, tls=True) as node:
        assert peer_der("127.0.0.1", node.proxy_ssl_port, None) == proxy_pair.der
        context = ca.client_context()
        resp = http("GET", f"https://localhost:{node.admin_ssl_port}/", context=context)
        assert resp.status == 200
        configuration = resp.json()["configuration"]
        assert configuration["admin_ssl_cert_key"] == "******"
        assert configuration["ssl_cert_key"] == "******"
        assert admin_pair.key.splitlines()[1] not in resp.text
        # the inline PEM went to the prefix, as Kong writes it
        assert os.path.exists(os.path.join(node.prefix, "ssl", "admin-1.crt"))
        # no default proxy pair is made when a certificate is configured
        assert not os.path.exists(os.path.join(node.prefix, "ssl", "kong-default.crt"))
        # the proxy's certificate does not name 127.0.0.1: a verifying client refuses it
        with pytest.raises(urllib.error.URLError) as err:
            http("GET", f"https://127.0.0.1:{node.proxy_ssl_port}/", context=context)
        assert isinstance(err.value.reason, ssl.SSLCertVerificationError)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"ssl_cert": "/nonexistent/cert.pem"}, "ssl_cert_key must be specified"),
        ({"ssl_cert_key": "/nonexistent/key.pem"}, "ssl_cert must be specified"),
        (
            {"ssl_cert": "/nonexistent/cert.pem", "ssl_cert_key": "/nonexistent/key.pem"},
            "ssl_cert: failed loading certificate from /nonexistent/cert.pem",
        ),
        (
            {"status_ssl_cert": "/a.pem,/b.pem", "status_ssl_cert_key": "/a.key"},
            "status_ssl_cert was specified 2 times while status_ssl_cert_key was specified 1 times",
        ),
    ],
)
def test_listener_certificate_errors(extra: dict[str, str], message: str) -> None:
    node = KongNode({"database": "off", **extra}, tls=True)
    try:
        with pytest.raises(RuntimeError) as err:
            node.start()
        assert message in str(err.value)
    finally:
        node.close()


# --- certificates and snis -------------------------------------------------------------


def test_certificates_crud_and_snis(pg_admin: Admin, ca: CA, uid: str) -> None:
    pair = ca.leaf(f"a-{uid}.test")
    other = ca.leaf(f"b-{uid}.test")
    names = [f"z-{uid}.test", f"a-{uid}.test", f"*.w-{uid}.test"]
    resp = pg_admin.post("/certificates", json={"cert": pair.cert, "key": pair.key, "snis": names})
    assert resp.status == 201, resp.text
    cert = resp.json()
    assert cert["snis"] == sorted(names)
    assert cert["key"] == pair.key
    assert cert["cert_alt"] is None
    assert cert["key_alt"] is None
    by_name = pg_admin.get(f"/certificates/a-{uid}.test")
    assert by_name.status == 200
    assert by_name.json()["id"] == cert["id"]
    assert pg_admin.get(f"/certificates/nope-{uid}.test").json() == {"message": "SNI not found"}
    sni = pg_admin.get(f"/snis/a-{uid}.test").json()
    assert sni["certificate"] == {"id": cert["id"]}
    assert sni["tags"] is None
    # duplicates: 409 through /snis and the nested route, 400 through the shorthand
    dup = pg_admin.post("/snis", json={"name": f"a-{uid}.test", "certificate": {"id": cert["id"]}})
    assert dup.status == 409
    assert dup.json()["fields"] == {"name": f"a-{uid}.test"}
    nested = pg_admin.post(f"/certificates/{cert['id']}/snis", json={"name": f"a-{uid}.test"})
    assert nested.status == 409
    taken = pg_admin.post(
        "/certificates", json={"cert": other.cert, "key": other.key, "snis": [f"a-{uid}.test"]}
    )
    assert taken.status == 400
    assert taken.json()["fields"] == {
        "snis": f"a-{uid}.test already associated with existing certificate '{cert['id']}'"
    }
    repeated = pg_admin.post(
        "/certificates", json={"cert": other.cert, "key": other.key, "snis": ["x.test", "x.test"]}
    )
    assert repeated.json()["message"] == "schema violation (snis: x.test is duplicated)"
    # nested create, then the certificate lists it
    added = pg_admin.post(f"/certificates/{cert['id']}/snis", json={"name": f"n-{uid}.test"})
    assert added.status == 201
    assert f"n-{uid}.test" in pg_admin.get(f"/certificates/{cert['id']}").json()["snis"]
    listed = pg_admin.get(f"/certificates/{cert['id']}/snis").json()["data"]
    assert len(listed) == 4
    # PATCH with snis replaces, without keeps; PUT without snis removes them all
    patched = pg_admin.patch(f"/certificates/{cert['id']}", json={"snis": [f"a-{uid}.test"]})
    assert patched.json()["snis"] == [f"a-{uid}.test"]
    assert pg_admin.get(f"/snis/z-{uid}.test").status == 404
    kept = pg_admin.patch(f"/certificates/{cert['id']}", json={"tags": ["t"]})
    assert kept.json()["snis"] == [f"a-{uid}.test"]
    put = pg_admin.put(f"/certificates/{cert['id']}", json={"cert": pair.cert, "key": pair.key})
    assert put.status == 200
    assert put.json()["snis"] == []
    # PUT /certificates/{sni}: a new certificate named by that SNI
    created = pg_admin.put(f"/certificates/p-{uid}.test", json={"cert": pair.cert, "key": pair.key})
    assert created.status == 200
    assert created.json()["snis"] == [f"p-{uid}.test"]
    # DELETE cascades to the SNIs
    assert pg_admin.delete(f"/certificates/p-{uid}.test").status == 204
    assert pg_admin.get(f"/snis/p-{uid}.test").status == 404
    assert pg_admin.get(f"/snis/{uid}.test/certificate").status == 404


def test_certificate_validation_messages(pg_admin: Admin, ca: CA) -> None:
    pair = ca.leaf("v.test")
    other = ca.leaf("w.test")
    ec_pair = ca.leaf("e.test", kind="ec")
    missing = pg_admin.post("/certificates", json={})
    assert missing.json()["message"] == (
        "2 schema violations (cert: required field missing; key: required field missing)"
    )
    bad = pg_admin.post("/certificates", json={"cert": "nope", "key": pair.key}).json()
    assert bad["fields"]["cert"].startswith("invalid certificate: x509.new: ")
    assert set(bad["fields"]) == {"cert"}
    bad_key = pg_admin.post("/certificates", json={"cert": pair.cert, "key": "nope"}).json()
    assert bad_key["fields"]["key"].startswith("invalid key: pkey.new:load_key: ")
    mismatch = pg_admin.post("/certificates", json={"cert": pair.cert, "key": other.key})
    assert mismatch.status == 400
    assert mismatch.json() == {
        "code": 2,
        "name": "schema violation",
        "message": "schema violation (certificate does not match key)",
        "fields": {"@entity": ["certificate does not match key"]},
    }
    half = pg_admin.post(
        "/certificates", json={"cert": pair.cert, "key": pair.key, "cert_alt": ec_pair.cert}
    )
    assert half.json()["fields"]["@entity"] == [
        "all or none of these fields must be set: 'cert_alt', 'key_alt'"
    ]
    same_type = pg_admin.post(
        "/certificates",
        json={"cert": pair.cert, "key": pair.key, "cert_alt": other.cert, "key_alt": other.key},
    )
    assert "need to have different type" in same_type.json()["fields"]["@entity"][0]
    both = pg_admin.post(
        "/certificates",
        json={"cert": pair.cert, "key": pair.key, "cert_alt": ec_pair.cert, "key_alt": ec_pair.key},
    )
    assert both.status == 201
    for name, message in (
        ("a*.test", "wildcard must be leftmost or rightmost character"),
        ("*.a.*", "only one wildcard must be specified"),
        ("10.0.0.1", "must not be an IP"),
        ("a.test:80", "must not have a port"),
    ):
        resp = pg_admin.post(f"/certificates/{both.json()['id']}/snis", json={"name": name})
        assert resp.status == 400
        assert resp.json()["fields"]["name"] == message


def test_dbless_certificates_and_snis(tls_dbless_node: KongNode, ca: CA, uid: str) -> None:
    admin = Admin(tls_dbless_node, "off", "https")
    pair = ca.leaf(f"d-{uid}.test")
    load(
        admin,
        {
            "certificates": [
                {"cert": pair.cert, "key": pair.key, "snis": [{"name": f"d-{uid}.test"}]}
            ]
        },
    )
    certs = admin.get("/certificates").json()["data"]
    assert [c["snis"] for c in certs] == [[f"d-{uid}.test"]]
    assert admin.get(f"/snis/d-{uid}.test").json()["certificate"] == {"id": certs[0]["id"]}
    dup = admin.post(
        "/config",
        json={
            "_format_version": "3.0",
            "certificates": [
                {
                    "cert": pair.cert,
                    "key": pair.key,
                    "snis": [{"name": "x.test"}, {"name": "x.test"}],
                }
            ],
        },
    )
    assert dup.status == 400
    assert "uniqueness violation: 'snis' entity with name set to 'x.test' already declared" in (
        dup.text
    )
    assert admin.post("/certificates", json={"cert": pair.cert, "key": pair.key}).status == 405


def test_certificate_selection_by_sni(admin: Admin, ca: CA, uid: str) -> None:
    exact = ca.leaf(f"exact-{uid}")
    prefix = ca.leaf(f"prefix-{uid}")
    suffix = ca.leaf(f"suffix-{uid}")
    star = ca.leaf(f"star-{uid}")
    load(
        admin,
        {
            "certificates": [
                {"cert": exact.cert, "key": exact.key, "snis": [{"name": f"a.w{uid}.test"}]},
                {"cert": prefix.cert, "key": prefix.key, "snis": [{"name": f"*.w{uid}.test"}]},
                {"cert": suffix.cert, "key": suffix.key, "snis": [{"name": f"a.w{uid}.*"}]},
                {"cert": star.cert, "key": star.key, "snis": [{"name": "*"}]},
            ]
        },
    )
    port = admin.proxy_port
    assert port is not None

    def served(name: str | None) -> str:
        return subject_cn(peer_der("127.0.0.1", port, name))

    assert served(f"a.w{uid}.test") == f"exact-{uid}"  # exact before wildcards
    assert served(f"b.w{uid}.test") == f"prefix-{uid}"
    assert served(f"a.w{uid}.org") == f"suffix-{uid}"
    assert served(f"x.b.w{uid}.test") == f"star-{uid}"  # *.w.test covers one label only
    assert served(None) == "localhost"  # no SNI: the listener's (default) certificate
    # the Admin API never uses the entities
    assert subject_cn(peer_der("127.0.0.1", admin.node.admin_ssl_port or 0, f"a.w{uid}.test")) == (
        "localhost"
    )
    if not admin.dbless:
        # a new SNI applies to the next handshake
        cert = admin.get(f"/certificates/a.w{uid}.test").json()
        admin.post(f"/certificates/{cert['id']}/snis", json={"name": f"new-{uid}.test"})
        assert served(f"new-{uid}.test") == f"exact-{uid}"
        for name in (f"a.w{uid}.test", f"*.w{uid}.test", f"a.w{uid}.*", "*"):
            assert admin.delete(f"/certificates/{name}").status == 204


# --- CA certificates -------------------------------------------------------------------


def test_ca_certificates(pg_admin: Admin, ca: CA, upstream_port: int, uid: str) -> None:
    leaf = ca.leaf("leaf.test")
    expired, _ = make_cert("expired CA", ca=True, expired=True)
    for cert, message in (
        (
            leaf.cert,
            'certificate does not appear to be a CA because it is missing the "CA" '
            "basic constraint",
        ),
        (expired.cert, 'certificate expired, "Not After" time is in the past'),
        (ca.cert + ca.cert, "please submit only one certificate at a time"),
    ):
        resp = pg_admin.post("/ca_certificates", json={"cert": cert})
        assert resp.status == 400
        assert resp.json()["message"] == f"schema violation ({message})"
    assert (
        pg_admin.post("/ca_certificates", json={"cert": "x"})
        .json()["fields"]["cert"]
        .startswith("invalid certificate: x509.new: ")
    )
    own = CA(f"own {uid}")
    created = pg_admin.post("/ca_certificates", json={"cert": own.cert})
    assert created.status == 201
    body = created.json()
    der = x509.load_pem_x509_certificate(own.cert.encode()).public_bytes(serialization.Encoding.DER)
    import hashlib

    assert body["cert_digest"] == hashlib.sha256(der).hexdigest()
    dup = pg_admin.post("/ca_certificates", json={"cert": own.cert})
    assert dup.status == 409
    assert dup.json()["fields"] == {"cert_digest": body["cert_digest"]}
    svc = pg_admin.post(
        "/services",
        json={
            "name": f"ca-{uid}",
            "url": f"https://127.0.0.1:{upstream_port}",
            "ca_certificates": [body["id"]],
        },
    )
    assert svc.status == 201
    refused = pg_admin.delete(f"/ca_certificates/{body['id']}")
    assert refused.status == 400
    assert refused.json()["message"] == (
        f"ca certificate {body['id']} is still referenced by services (id = {svc.json()['id']})"
    )
    plain = pg_admin.post(
        "/services",
        json={"url": "http://a.test", "tls_verify": True},
    ).json()
    assert plain["fields"] == {
        "@entity": ["failed conditional validation given value of field 'protocol'"],
        "tls_verify": "value must be null",
    }
    assert pg_admin.delete(f"/services/{svc.json()['id']}").status == 204
    assert pg_admin.delete(f"/ca_certificates/{body['id']}").status == 204


# --- https-only routes -----------------------------------------------------------------


def test_https_only_routes(admin: Admin, upstream_port: int, uid: str) -> None:
    load(
        admin,
        {
            "services": [
                {
                    "name": f"s-{uid}",
                    "url": f"http://127.0.0.1:{upstream_port}",
                    "routes": [
                        {"name": f"h-{uid}", "paths": [f"/h-{uid}"], "protocols": ["https"]},
                        {
                            "name": f"r-{uid}",
                            "paths": [f"/r-{uid}"],
                            "protocols": ["https"],
                            "https_redirect_status_code": 301,
                        },
                    ],
                }
            ]
        },
    )
    plain = http("GET", f"{admin.node.proxy_url}/h-{uid}", headers={"Accept": "application/json"})
    assert plain.status == 426
    assert plain.json()["message"] == "Please use HTTPS protocol"
    assert plain.headers["Upgrade"] == "TLS/1.2, HTTP/1.1"
    conn = HTTPConnection("127.0.0.1", admin.node.proxy_port, timeout=30)
    try:
        conn.request("GET", f"/r-{uid}?a=1", headers={"Host": "Ex.test:8000"})
        moved = conn.getresponse()
        assert moved.status == 301
        assert moved.headers["Location"] == f"https://ex.test/r-{uid}?a=1"
        assert moved.read() == b""
    finally:
        conn.close()
    secure = http("GET", f"{admin.proxy_url}/h-{uid}")
    assert secure.status == 200, secure.text
    headers = {k.lower(): v for k, v in json.loads(secure.body)["headers"]}
    assert headers["x-forwarded-proto"] == "https"
    assert headers["x-forwarded-port"] == str(admin.proxy_port)


# --- https Services ----------------------------------------------------------------------


class _TLSUpstream:
    """An HTTPS upstream that answers with the SNI it saw and the client certificate's CN."""

    def __init__(self, pair: Any, client_ca: CA | None = None):
        self.sni: list[str | None] = []
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(*pair.files())
        if client_ca is not None:
            context.verify_mode = ssl.CERT_REQUIRED
            context.load_verify_locations(cadata=client_ca.cert)

        def on_sni(_obj: Any, name: str | None, _ctx: Any) -> None:
            self.sni.append(name)

        context.sni_callback = on_sni
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                peer = self.connection.getpeercert()
                cn = None
                if peer:
                    cn = dict(x[0] for x in peer["subject"]).get("commonName")
                body = json.dumps({"client": cn, "sni": outer.sni[-1] if outer.sni else None})
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body.encode())

            def log_message(self, *args: Any) -> None:
                pass

        self.port = free_port()
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> _TLSUpstream:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_https_services_verify_and_client_certificate(admin: Admin, ca: CA, uid: str) -> None:
    other_ca = CA(f"other {uid}")
    client = ca.leaf(f"client-{uid}")
    with _TLSUpstream(ca.leaf("localhost"), client_ca=ca) as up:
        ca_id = "b3b1a2a4-0000-4000-8000-" + uid.rjust(12, "0")
        other_id = "b3b1a2a4-0000-4000-8001-" + uid.rjust(12, "0")
        cert_id = "b3b1a2a4-0000-4000-8002-" + uid.rjust(12, "0")
        base = {"url": f"https://localhost:{up.port}", "retries": 0}

        def svc(name: str, **extra: Any) -> dict[str, Any]:
            return {
                "name": f"{name}-{uid}",
                **base,
                "client_certificate": {"id": cert_id},
                **extra,
                "routes": [{"name": f"{name}-{uid}", "paths": [f"/{name}-{uid}"]}],
            }

        load(
            admin,
            {
                "certificates": [{"id": cert_id, "cert": client.cert, "key": client.key}],
                "ca_certificates": [
                    {"id": ca_id, "cert": ca.cert},
                    {"id": other_id, "cert": other_ca.cert},
                ],
                "services": [
                    svc("noverify"),
                    svc("nocas", tls_verify=True),
                    svc("good", tls_verify=True, ca_certificates=[ca_id]),
                    svc("foreign", tls_verify=True, ca_certificates=[other_id]),
                    svc("depth0", tls_verify=True, tls_verify_depth=0, ca_certificates=[ca_id]),
                    {
                        "name": f"nocert-{uid}",
                        **base,
                        "routes": [{"name": f"nocert-{uid}", "paths": [f"/nocert-{uid}"]}],
                    },
                ],
            },
        )
        url = admin.proxy_url
        ok = http("GET", f"{url}/noverify-{uid}")  # verification is off by default
        assert ok.status == 200, ok.text
        assert ok.json() == {"client": f"client-{uid}", "sni": "localhost"}
        assert http("GET", f"{url}/good-{uid}").status == 200
        for name in ("nocas", "foreign", "depth0"):
            failed = http("GET", f"{url}/{name}-{uid}")
            assert failed.status == 502, name
            assert "An invalid response was received from the upstream server" in failed.text
        # the upstream requires a client certificate: without one the handshake fails
        assert http("GET", f"{url}/nocert-{uid}").status == 502


def test_https_service_through_upstream_targets(admin: Admin, uid: str) -> None:
    ca = CA(f"targets {uid}")
    with _TLSUpstream(ca.leaf(f"u-{uid}.test", sans=[f"u-{uid}.test"])) as up:
        ca_id = "c3b1a2a4-0000-4000-8000-" + uid.rjust(12, "0")
        config = {
            "ca_certificates": [{"id": ca_id, "cert": ca.cert}],
            "services": [
                {
                    "name": f"t-{uid}",
                    "protocol": "https",
                    "host": f"up-{uid}",
                    "port": 443,
                    "tls_verify": True,
                    "ca_certificates": [ca_id],
                    "routes": [{"name": f"t-{uid}", "paths": [f"/t-{uid}"]}],
                }
            ],
            "upstreams": [
                {
                    "name": f"up-{uid}",
                    "host_header": f"u-{uid}.test",
                    "targets": [{"target": f"127.0.0.1:{up.port}"}],
                }
            ],
        }
        if admin.dbless:
            load(admin, config)
        else:
            assert admin.post("/ca_certificates", json=config["ca_certificates"][0]).status == 201
            admin.seed({"upstreams": config["upstreams"], "services": config["services"]})
        resp = http("GET", f"{admin.proxy_url}/t-{uid}")
        assert resp.status == 200, resp.text
        assert resp.json()["sni"] == f"u-{uid}.test"


def test_plain_http_admin_still_answers_with_tls_on(admin: Admin) -> None:
    assert admin.get("/").status == 200
    status = http("GET", f"{admin.node.status_ssl_url}/status/ready")
    assert status.status in (200, 503)


def test_reload_serves_a_replaced_certificate_without_dropping_connections(ca: CA) -> None:
    """``kong reload`` after the certificate files were rewritten (what a configuration tool
    does): new handshakes get the new certificate, an open keep-alive connection goes on; a
    broken file makes the reload fail and the certificate being served stays."""
    old = ca.leaf("proxy.kongsim.test")
    new = ca.leaf("proxy.kongsim.test")
    cert_file, key_file = old.files()
    conf = {"database": "off", "ssl_cert": cert_file, "ssl_cert_key": key_file}
    with KongNode(conf, tls=True) as node:
        port = node.proxy_ssl_port
        assert peer_der("127.0.0.1", port, None) == old.der
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        kept = HTTPSConnection("127.0.0.1", port, context=context, timeout=10)
        kept.request("GET", "/")
        first = kept.getresponse()
        first.read()
        assert first.status == 404
        for path, text in ((cert_file, new.cert), (key_file, new.key)):
            with open(path, "w", encoding="utf-8") as fh:
                fh.write(text)
        assert node.kong("reload").returncode == 0
        served = old.der
        for _ in range(200):
            served = peer_der("127.0.0.1", port, None)
            if served == new.der:
                break
            time.sleep(0.05)
        assert served == new.der
        kept.request("GET", "/")
        again = kept.getresponse()
        again.read()
        assert again.status == 404
        kept.close()
        # a broken certificate file: `kong reload` refuses it, the node keeps serving
        with open(cert_file, "w", encoding="utf-8") as fh:
            fh.write("not a certificate")
        refused = node.kong("reload")
        assert refused.returncode != 0
        assert f"ssl_cert: failed loading certificate from {cert_file}" in refused.stderr
        assert peer_der("127.0.0.1", port, None) == new.der


def test_admin_api_client_certificates_through_injected_directives(ca: CA) -> None:
    """``nginx_admin_ssl_verify_client=on`` + ``nginx_admin_ssl_client_certificate=<ca>``
    (``kong-3.9-tls.md`` E, nginx's ``ssl_verify_client``): over TLS the Admin API answers only
    clients with a certificate the CA issued; without one nginx answers its own 400 page. The
    plain-HTTP listener of the same server block is not concerned."""
    ca_file, _ = ca.pair.files()
    conf = {
        "database": "off",
        "nginx_admin_ssl_verify_client": "on",
        "nginx_admin_ssl_client_certificate": ca_file,
    }
    client = ca.leaf("controller")
    with KongNode(conf, tls=True) as node:
        url = f"{node.admin_ssl_url}/status"
        no_cert = http("GET", url)
        assert no_cert.status == 400
        assert "No required SSL certificate was sent" in no_cert.text
        assert no_cert.headers["Server"] == "openresty"
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        context.load_cert_chain(*client.files())
        with_cert = http("GET", url, context=context)
        assert with_cert.status == 200, with_cert.text
        assert with_cert.headers["Server"] == "kong/3.9.3"
        # a certificate from another CA is refused
        stranger = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        stranger.check_hostname = False
        stranger.verify_mode = ssl.CERT_NONE
        stranger.load_cert_chain(*CA("another CA").leaf("controller").files())
        with pytest.raises((urllib.error.URLError, ssl.SSLError, ConnectionError)):
            http("GET", url, context=stranger)
        assert http("GET", f"{node.admin_url}/status").status == 200
        # the proxy's TLS listener does not ask for client certificates
        assert http("GET", f"{node.proxy_ssl_url}/nothing").status == 404


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            {"nginx_admin_ssl_verify_client": "on"},
            "no ssl_client_certificate for ssl_verify_client",
        ),
        (
            {
                "nginx_admin_ssl_verify_client": "on",
                "nginx_admin_ssl_client_certificate": "/nonexistent/ca.pem",
            },
            'SSL_CTX_load_verify_locations("/nonexistent/ca.pem") failed',
        ),
    ],
)
def test_admin_client_verification_errors_stop_the_start(
    extra: dict[str, str], message: str
) -> None:
    node = KongNode({"database": "off", **extra}, tls=True)
    try:
        with pytest.raises(RuntimeError) as err:
            node.start()
        assert message in str(err.value)
    finally:
        node.close()


@pytest.mark.parametrize(("trust_ca", "expected"), [(True, "HEALTHY"), (False, "UNHEALTHY")])
def test_active_https_checks_verify_against_the_cosocket_trust(
    uid: str, trust_ca: bool, expected: str
) -> None:
    """An ``https`` active check is a cosocket handshake (lua-resty-healthcheck
    ``sslhandshake(nil, https_sni or host, https_verify_certificate)``): it verifies the chain
    against ``lua_ssl_trusted_certificate`` and the name against ``https_sni``. A Service's
    ``ca_certificates`` play no part, so a CA only they name leaves the target unhealthy."""
    ca = CA(f"checks {uid}")
    ca_file, _ = ca.pair.files()
    trusted = f"system,{ca_file}" if trust_ca else "system"
    with (
        _TLSUpstream(ca.leaf("llm-api.upstream")) as up,
        KongNode({"database": "off", "lua_ssl_trusted_certificate": trusted}) as node,
    ):
        ca_id = "c3b1a2a4-0000-4000-8000-" + uid.rjust(12, "0")
        config = {
            "_format_version": "3.0",
            "ca_certificates": [{"id": ca_id, "cert": ca.cert}],
            "upstreams": [
                {
                    "name": "llm-api.upstream",
                    "healthchecks": {
                        "active": {
                            "type": "https",
                            "http_path": "/health",
                            "https_sni": "llm-api.upstream",
                            "https_verify_certificate": True,
                            "healthy": {"interval": 1, "successes": 1},
                            "unhealthy": {"interval": 1, "tcp_failures": 1},
                        }
                    },
                    "targets": [{"target": f"127.0.0.1:{up.port}"}],
                }
            ],
            "services": [
                {
                    "name": "s",
                    "url": "https://llm-api.upstream/v1",
                    "tls_verify": True,
                    "ca_certificates": [ca_id],
                }
            ],
        }
        assert http("POST", f"{node.admin_url}/config", json=config).status == 201
        for _ in range(300):  # until two probes have reached the target
            if len(up.sni) >= 2:
                break
            time.sleep(0.05)
        assert up.sni[:2] == ["llm-api.upstream", "llm-api.upstream"]
        health = http("GET", f"{node.admin_url}/upstreams/llm-api.upstream/health").json()
        assert [t["health"] for t in health["data"]] == [expected]
