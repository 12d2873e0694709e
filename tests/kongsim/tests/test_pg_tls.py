"""``pg_ssl`` / ``pg_ssl_verify`` (``kong-3.9-tls.md`` G) against a PostgreSQL that has TLS on
and accepts TCP clients only over TLS (``hostssl``)."""

from __future__ import annotations

import os
import pathlib
import stat
import threading
from collections.abc import Iterator

import pytest
from kongsim.testing import KongNode, PostgresServer, http, postgres_server
from tlscerts import CA, pem_file


@pytest.fixture(scope="module")
def ca() -> CA:
    return CA("kongsim pg CA")


@pytest.fixture(scope="module")
def tls_pg(ca: CA) -> Iterator[PostgresServer]:
    # pgmoon checks the chain only, not the host name: any name will do
    pair = ca.leaf("db.kongsim.test")
    with postgres_server(tls=(pair.cert, pair.key)) as server:
        yield server


def test_pg_ssl_off_is_refused_by_a_tls_only_server(tls_pg: PostgresServer) -> None:
    node = KongNode(tls_pg.kong_conf(tls_pg.create_database()))
    try:
        with pytest.raises(RuntimeError, match=r"no pg_hba\.conf entry"):
            node.start()
    finally:
        node.close()


def test_pg_ssl_on_stores_over_tls(tls_pg: PostgresServer) -> None:
    conf = {**tls_pg.kong_conf(tls_pg.create_database()), "pg_ssl": "on"}
    with KongNode(conf) as node:
        resp = http("POST", node.admin_url + "/services", json={"name": "s", "url": "http://a"})
        assert resp.status == 201, resp.text
        assert http("GET", node.admin_url + "/services/s").status == 200
        assert http("GET", node.status_url + "/status/ready").status == 200


def test_pg_ssl_verify_checks_the_chain(tls_pg: PostgresServer, ca: CA) -> None:
    db = tls_pg.create_database()
    good = {
        **tls_pg.kong_conf(db),
        "pg_ssl": "on",
        "pg_ssl_verify": "on",
        "lua_ssl_trusted_certificate": pem_file(ca.cert),
    }
    with KongNode(good) as node:
        resp = http("POST", node.admin_url + "/services", json={"name": "v", "url": "http://a"})
        assert resp.status == 201, resp.text
        with open(os.path.join(node.prefix, ".ca_combined"), encoding="utf-8") as fh:
            assert ca.cert in fh.read()
    wrong = {**good, "lua_ssl_trusted_certificate": pem_file(CA("another CA").cert)}
    node = KongNode(wrong, bootstrap=False)
    try:
        with pytest.raises(RuntimeError, match="certificate verify failed"):
            node.start()
    finally:
        node.close()


def test_ca_combined_is_never_seen_half_written(tmp_path: pathlib.Path, ca: CA) -> None:
    """Every PostgreSQL and Redis connection and every health check rebuilds ``.ca_combined``
    while others may be reading it: a reader sees the old file or the new one, whole."""
    from kongsim import tls

    big = tmp_path / "big.pem"
    big.write_text(ca.cert * 400)
    small = tmp_path / "small.pem"
    small.write_text(ca.cert)
    confs = [
        {"prefix": str(tmp_path / "prefix"), "lua_ssl_trusted_certificate": str(p)}
        for p in (big, small)
    ]
    path = tls.trusted_bundle(confs[0])
    whole = {big.read_text(), small.read_text()}
    stop = threading.Event()

    def rewrite() -> None:
        i = 0
        while not stop.is_set():
            tls.trusted_bundle(confs[i % 2])
            i += 1

    writer = threading.Thread(target=rewrite)
    writer.start()
    try:
        seen = set()
        for _ in range(3000):
            with open(path, encoding="utf-8") as fh:
                text = fh.read()
            assert text in whole, f"a reader saw {len(text)} characters of a half-written file"
            seen.add(len(text))
    finally:
        stop.set()
        writer.join()
    assert len(seen) == 2, "the writer never changed the file under the reader"


def test_a_rewritten_file_keeps_its_mode_and_owner(tmp_path: pathlib.Path, ca: CA) -> None:
    """Written through a temporary file, a changed ``.ca_combined`` still keeps the mode and owner
    it had, as when it was rewritten in place: a ``kong`` command run as root leaves it to the
    user Kong runs as."""
    from kongsim import tls

    conf = {"prefix": str(tmp_path / "prefix"), "lua_ssl_trusted_certificate": ca.cert}
    path = tls.trusted_bundle(conf)
    os.chmod(path, 0o640)
    os.chown(path, 65534, 65534)
    conf["lua_ssl_trusted_certificate"] = str(tmp_path / "two.pem")
    (tmp_path / "two.pem").write_text(ca.cert * 2)
    assert tls.trusted_bundle(conf) == path
    with open(path, encoding="utf-8") as fh:
        assert fh.read() == ca.cert * 2
    st = os.stat(path)
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o640, 65534, 65534)
