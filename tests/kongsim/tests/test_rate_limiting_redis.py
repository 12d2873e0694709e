"""``rate-limiting`` with ``policy: redis`` against a real Redis server (reference
``kong-3.9-upstreams-redis.md`` §D): two nodes, in PostgreSQL mode and DB-less, share one count;
the counter key has Kong's format; ``fault_tolerant`` decides what happens when Redis is down.
"""

from __future__ import annotations

import calendar
import time
from collections.abc import Iterator
from typing import Any

import pytest
from kongsim.testing import (
    KongNode,
    PostgresServer,
    RedisServer,
    Response,
    echo_upstream,
    http,
    redis_server,
)

EMPTY_UUID = "00000000-0000-0000-0000-000000000000"
LIMIT = 4


@pytest.fixture(scope="module")
def upstream() -> Iterator[int]:
    with echo_upstream() as port:
        yield port


@pytest.fixture(scope="module")
def redis() -> Iterator[RedisServer]:
    with redis_server(password="s3cret-redis-pass") as server:
        yield server


@pytest.fixture(scope="module")
def pg_pair(pg: PostgresServer) -> Iterator[tuple[KongNode, KongNode]]:
    conf = {**pg.kong_conf(pg.create_database()), "db_update_frequency": 0.2}
    with KongNode(conf) as a, KongNode(conf, bootstrap=False) as b:
        yield a, b


@pytest.fixture(scope="module")
def dbless_pair() -> Iterator[tuple[KongNode, KongNode]]:
    with KongNode({"database": "off"}) as a, KongNode({"database": "off"}) as b:
        yield a, b


def hour_start_ms() -> int:
    t = time.gmtime()
    return calendar.timegm((t.tm_year, t.tm_mon, t.tm_mday, t.tm_hour, 0, 0)) * 1000


def away_from_window_edge() -> None:
    """Counts restart with every hour: a test that counts starts at least 30 s before the end
    of the hour (it waits for the next hour otherwise)."""
    left = 3600 - time.time() % 3600
    if left < 30:
        time.sleep(left + 0.5)


def config(uid: str, upstream: int, rate_limit: dict[str, Any]) -> dict[str, Any]:
    """A service with one route (key-auth + rate-limiting on the route) and one consumer."""
    return {
        "services": [
            {
                "name": f"s-{uid}",
                "url": f"http://127.0.0.1:{upstream}",
                "routes": [
                    {
                        "name": f"r-{uid}",
                        "paths": [f"/{uid}"],
                        "plugins": [
                            {"name": "key-auth"},
                            {"name": "rate-limiting", "config": rate_limit},
                        ],
                    }
                ],
            }
        ],
        "consumers": [{"username": f"c-{uid}", "keyauth_credentials": [{"key": f"k-{uid}"}]}],
    }


def seed(nodes: tuple[KongNode, KongNode], mode: str, *cfgs: dict[str, Any]) -> None:
    """Load the configurations on the cluster (Admin API of the first node) or on each DB-less
    node (one ``POST /config`` holding them all, as it replaces what the node had)."""
    from conftest import Admin

    cfg = {
        "services": [s for c in cfgs for s in c["services"]],
        "consumers": [s for c in cfgs for s in c["consumers"]],
    }
    if mode == "off":
        for node in nodes:
            Admin(node, mode).seed(cfg)
    else:
        Admin(nodes[0], mode).seed(cfg)


def send(node: KongNode, uid: str) -> Response:
    return http("GET", f"{node.proxy_url}/{uid}", headers={"apikey": f"k-{uid}"})


def wait_proxied(node: KongNode, uid: str) -> Response:
    """The first request once ``node`` serves the route and knows the consumer's key (the
    other node of a PostgreSQL cluster follows within ``db_update_frequency``); key-auth runs
    before rate-limiting, so the requests answered 404 or 401 are not counted."""
    deadline = time.monotonic() + 20
    while True:
        resp = send(node, uid)
        if resp.status not in (404, 401) or time.monotonic() > deadline:
            return resp
        time.sleep(0.1)


def ids(nodes: tuple[KongNode, KongNode], uid: str) -> tuple[str, str]:
    route = http("GET", f"{nodes[0].admin_url}/routes/r-{uid}").json()
    consumer = http("GET", f"{nodes[0].admin_url}/consumers/c-{uid}").json()
    return route["id"], consumer["id"]


@pytest.mark.parametrize("mode", ["postgres", "off"])
def test_two_nodes_share_one_count_in_redis(request, mode, redis, upstream, uid):
    nodes = request.getfixturevalue("pg_pair" if mode == "postgres" else "dbless_pair")
    rl = {"hour": LIMIT, "policy": "redis", "redis": redis.kong_conf()}
    seed(nodes, mode, config(uid, upstream, rl))
    a, b = nodes
    away_from_window_edge()
    window = hour_start_ms()
    # Both nodes answer; the first request on B is counted too.
    answers = [wait_proxied(b, uid)]
    answers += [send(node, uid) for node in (a, b, a, b, a)]
    statuses = [r.status for r in answers]
    assert statuses == [200] * LIMIT + [429, 429]
    remaining = [r.headers["X-RateLimit-Remaining-Hour"] for r in answers]
    assert remaining == ["3", "2", "1", "0", "0", "0"]
    assert answers[-1].json()["message"] == "API rate limit exceeded"
    assert answers[-1].headers["RateLimit-Limit"] == str(LIMIT)
    # Kong's key: ratelimit:<route_id>:<service_id>:<identifier>:<period_start_ms>:<period>,
    # the plugin is route-scoped so the service part is all zeros; rejected requests count too.
    route_id, consumer_id = ids(nodes, uid)
    key = f"ratelimit:{route_id}:{EMPTY_UUID}:{consumer_id}:{window}:hour"
    assert redis.cli("GET", key) == "6"
    ttl = int(redis.cli("TTL", key))
    assert 0 < ttl <= 3600


def test_database_and_auth_options(pg_pair, redis, upstream, uid):
    """``config.redis.database`` selects the Redis database the keys land in; the password is
    sent with AUTH (Redis refuses commands without it)."""
    rl = {"hour": LIMIT, "policy": "redis", "redis": redis.kong_conf(database=3)}
    seed(pg_pair, "postgres", config(uid, upstream, rl))
    away_from_window_edge()
    window = hour_start_ms()
    resp = wait_proxied(pg_pair[0], uid)
    assert resp.status == 200
    assert resp.headers["X-RateLimit-Remaining-Hour"] == str(LIMIT - 1)
    route_id, consumer_id = ids(pg_pair, uid)
    key = f"ratelimit:{route_id}:{EMPTY_UUID}:{consumer_id}:{window}:hour"
    assert redis.cli("GET", key, db=3) == "1"
    assert redis.cli("EXISTS", key, db=0) == "0"


def test_wrong_password_is_a_redis_failure(pg_pair, redis, upstream, uid):
    rl = {
        "hour": LIMIT,
        "policy": "redis",
        "fault_tolerant": False,
        "redis": redis.kong_conf(password="not-the-password"),
    }
    seed(pg_pair, "postgres", config(uid, upstream, rl))
    resp = wait_proxied(pg_pair[0], uid)
    assert resp.status == 500
    assert resp.json()["message"] == "An unexpected error occurred"


@pytest.mark.parametrize("mode", ["postgres", "off"])
def test_fault_tolerance_when_redis_is_down(request, mode, upstream, uid):
    nodes = request.getfixturevalue("pg_pair" if mode == "postgres" else "dbless_pair")
    a, b = nodes
    with redis_server() as down:
        tolerant = {"hour": LIMIT, "policy": "redis", "redis": down.kong_conf()}
        strict = {**tolerant, "fault_tolerant": False}
        seed(nodes, mode, config(uid, upstream, tolerant), config(f"{uid}x", upstream, strict))
        assert wait_proxied(b, uid).headers["X-RateLimit-Remaining-Hour"] == str(LIMIT - 1)
        assert wait_proxied(b, f"{uid}x").status == 200
        down.stop()
        # fault_tolerant (the default): proxied, with no rate-limit header at all, for as
        # many requests as are sent.
        for node in (a, b) * LIMIT:
            resp = send(node, uid)
            assert resp.status == 200, resp.text
            assert not [h for h in resp.headers if "ratelimit" in h.lower()]
        # fault_tolerant = false: Kong's 500, nothing proxied.
        resp = send(a, f"{uid}x")
        assert resp.status == 500
        assert resp.json()["message"] == "An unexpected error occurred"
        assert "X-RateLimit-Remaining-Hour" not in resp.headers
        # Redis back (empty: no persistence): the count starts again from there.
        down.start()
        away_from_window_edge()
        statuses = []
        deadline = time.monotonic() + 20
        while True:
            resp = send(a, uid)
            if "X-RateLimit-Remaining-Hour" in resp.headers or time.monotonic() > deadline:
                break
            time.sleep(0.1)  # pooled connections to the old server fail once each
        statuses.append(resp.status)
        statuses += [send(node, uid).status for node in (b, a, b, a)]
        assert statuses == [200] * LIMIT + [429]
