"""``rate-limiting`` ``policy: redis`` over TLS (``kong-3.9-tls.md`` G): ``config.redis.ssl``,
``ssl_verify`` against ``lua_ssl_trusted_certificate`` and ``server_name``, against a
``redis-server`` whose port speaks TLS only, in both storage modes."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import Admin
from kongsim.testing import KongNode, PostgresServer, RedisServer, echo_upstream, http, redis_server
from tlscerts import CA

NAME = "redis.kongsim.test"


@pytest.fixture(scope="module")
def ca() -> CA:
    return CA("kongsim redis CA")


@pytest.fixture(scope="module")
def redis(ca: CA) -> Iterator[RedisServer]:
    pair = ca.leaf(NAME)
    with redis_server(tls=(pair.cert, pair.key, ca.cert)) as server:
        yield server


@pytest.fixture(scope="module")
def upstream() -> Iterator[int]:
    with echo_upstream() as port:
        yield port


@pytest.fixture(scope="module")
def trusted(ca: CA) -> Iterator[str]:
    fd, path = tempfile.mkstemp(suffix=".pem")
    with os.fdopen(fd, "w") as fh:
        fh.write(ca.cert)
    yield path
    os.unlink(path)


@pytest.fixture(scope="module")
def redis_pg_node(pg: PostgresServer, trusted: str) -> Iterator[KongNode]:
    conf = {**pg.kong_conf(pg.create_database()), "lua_ssl_trusted_certificate": trusted}
    with KongNode(conf) as node:
        yield node


@pytest.fixture(scope="module")
def redis_dbless_node(trusted: str) -> Iterator[KongNode]:
    with KongNode({"database": "off", "lua_ssl_trusted_certificate": trusted}) as node:
        yield node


@pytest.fixture(params=["postgres", "off"])
def admin(request: pytest.FixtureRequest) -> Admin:
    name = "redis_pg_node" if request.param == "postgres" else "redis_dbless_node"
    return Admin(request.getfixturevalue(name), request.param)


def _route(uid: str, name: str, redis: dict[str, Any]) -> dict[str, Any]:
    config = {"hour": 2, "policy": "redis", "fault_tolerant": False, "redis": redis}
    return {
        "name": f"{name}-{uid}",
        "paths": [f"/{name}-{uid}"],
        "plugins": [{"name": "rate-limiting", "config": {**config, "limit_by": "ip"}}],
    }


def test_rate_limiting_counts_in_redis_over_tls(
    admin: Admin, redis: RedisServer, upstream: int, uid: str
) -> None:
    routes = [
        _route(uid, "verified", redis.kong_conf(ssl=True, ssl_verify=True, server_name=NAME)),
        _route(uid, "unverified", redis.kong_conf(ssl=True)),
        _route(uid, "plain", redis.kong_conf()),
        _route(uid, "wrongname", redis.kong_conf(ssl=True, ssl_verify=True, server_name="x.test")),
        # no server_name: no SNI, and only the chain is verified
        _route(uid, "noname", redis.kong_conf(ssl=True, ssl_verify=True)),
    ]
    admin.seed(
        {
            "services": [
                {"name": f"s-{uid}", "url": f"http://127.0.0.1:{upstream}", "routes": routes}
            ]
        }
    )
    proxy = admin.node.proxy_url
    for name in ("verified", "unverified", "noname"):
        statuses = [http("GET", f"{proxy}/{name}-{uid}").status for _ in range(3)]
        assert statuses == [200, 200, 429], name
    keys = redis.cli("--scan", "--pattern", "ratelimit:*")
    assert keys.count("\n") + 1 >= 3
    # a plain connection to a TLS-only port, and a certificate without the name asked for,
    # are connection errors: 500 without fault tolerance
    for name in ("plain", "wrongname"):
        resp = http("GET", f"{proxy}/{name}-{uid}")
        assert resp.status == 500, name
