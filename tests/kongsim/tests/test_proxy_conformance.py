"""Reference section 5, item 9 (proxy) against simulator nodes run as real processes, in both
storage modes: entities loaded through the Admin API (PostgreSQL) or ``POST /config``
(DB-less), requests sent to the node's proxy listener, answered by a real upstream.

These tests use nodes of their own: a global plugin or a catch-all route left on a shared node
by another test would change what the proxy answers.
"""

from __future__ import annotations

import json
import socket
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import Admin
from kongsim.testing import KongNode, PostgresServer, Response, echo_upstream, http

REQUEST_ID_LEN = 32


@pytest.fixture(scope="module")
def upstream_port() -> Iterator[int]:
    """The echo upstream (``kongsim.proxy.echo``) in its own process."""
    with echo_upstream() as port:
        yield port


@pytest.fixture(scope="module")
def own_pg_node(pg: PostgresServer) -> Iterator[KongNode]:
    node = KongNode({**pg.kong_conf(pg.create_database()), "db_update_frequency": 0.5})
    node.start()
    try:
        yield node
    finally:
        node.close()


@pytest.fixture(scope="module")
def own_dbless_node() -> Iterator[KongNode]:
    node = KongNode({"database": "off"})
    node.start()
    try:
        yield node
    finally:
        node.close()


@pytest.fixture(params=["postgres", "off"])
def admin(request: pytest.FixtureRequest) -> Admin:
    """This module's nodes, once per storage mode."""
    name = "own_pg_node" if request.param == "postgres" else "own_dbless_node"
    return Admin(request.getfixturevalue(name), request.param)


@pytest.fixture
def pg_admin(own_pg_node: KongNode) -> Admin:
    return Admin(own_pg_node, "postgres")


def proxy(admin: Any, method: str, path: str, **kwargs: Any) -> Response:
    return http(method, admin.node.proxy_url + path, **kwargs)


def echoed(resp: Response) -> dict[str, Any]:
    data = json.loads(resp.body)
    data["header_map"] = {k.lower(): v for k, v in data["headers"]}
    return data


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_routing_headers_and_request_id(admin: Any, upstream_port: int, uid: str) -> None:
    admin.seed(
        {
            "services": [
                {
                    "name": f"svc-{uid}",
                    "url": f"http://127.0.0.1:{upstream_port}/base",
                    "routes": [
                        {"name": f"prefix-{uid}", "paths": [f"/p-{uid}"]},
                        {
                            "name": f"regex-{uid}",
                            "paths": [f"~/r-{uid}/\\d+$"],
                            "strip_path": False,
                        },
                    ],
                }
            ]
        }
    )
    resp = proxy(admin, "GET", f"/p-{uid}/v1/x?q=1", headers={"Via": "1.0 edge"})
    assert resp.status == 200, resp.text
    sent = echoed(resp)
    assert sent["path"] == "/base/v1/x?q=1"
    upstream_headers = sent["header_map"]
    assert upstream_headers["host"] == f"127.0.0.1:{upstream_port}"
    assert upstream_headers["x-forwarded-for"] == "127.0.0.1"
    assert upstream_headers["x-real-ip"] == "127.0.0.1"
    assert upstream_headers["x-forwarded-proto"] == "http"
    assert upstream_headers["x-forwarded-host"] == "127.0.0.1"
    assert upstream_headers["x-forwarded-port"] == str(admin.node.proxy_port)
    assert upstream_headers["x-forwarded-path"] == f"/p-{uid}/v1/x"
    assert upstream_headers["x-forwarded-prefix"] == f"/p-{uid}"
    assert upstream_headers["via"] == "1.0 edge, 1.1 kong/3.9.3"
    request_id = resp.headers["X-Kong-Request-Id"]
    assert len(request_id) == REQUEST_ID_LEN
    assert upstream_headers["x-kong-request-id"] == request_id
    assert resp.headers["Via"] == "1.1 kong/3.9.3"
    assert int(resp.headers["X-Kong-Upstream-Latency"]) >= 0
    assert int(resp.headers["X-Kong-Proxy-Latency"]) >= 0
    regex = proxy(admin, "GET", f"/r-{uid}/42")
    assert regex.status == 200
    assert echoed(regex)["path"] == f"/base/r-{uid}/42"
    assert proxy(admin, "GET", f"/r-{uid}/42/more").status == 404


def test_route_priority_order(admin: Any, upstream_port: int, uid: str) -> None:
    def tagged(name: str, **route: Any) -> dict[str, Any]:
        header = f"X-Route:{name}"
        plugin = {"name": "request-transformer", "config": {"add": {"headers": [header]}}}
        return {"name": f"{name}-{uid}", "strip_path": False, "plugins": [plugin], **route}

    admin.seed(
        {
            "services": [
                {
                    "name": f"prio-{uid}",
                    "url": f"http://127.0.0.1:{upstream_port}",
                    "routes": [
                        tagged("short", paths=[f"/o-{uid}"]),
                        tagged("long", paths=[f"/o-{uid}/long"]),
                        tagged("regex", paths=[f"~/o-{uid}/re[a-z]+$"]),
                        tagged("method", paths=[f"/o-{uid}"], methods=["POST"]),
                    ],
                }
            ]
        }
    )

    def chosen(method: str, path: str) -> str:
        resp = proxy(admin, method, path, data=b"" if method == "POST" else None)
        assert resp.status == 200, resp.text
        return str(echoed(resp)["header_map"]["x-route"])

    assert chosen("GET", f"/o-{uid}/regex") == "regex"
    assert chosen("GET", f"/o-{uid}/long/x") == "long"
    assert chosen("GET", f"/o-{uid}/other") == "short"
    assert chosen("POST", f"/o-{uid}/long/x") == "method"


def test_no_route_404_template(admin: Any) -> None:
    resp = proxy(admin, "GET", "/no-such-route-anywhere")
    assert resp.status == 404
    request_id = resp.headers["X-Kong-Request-Id"]
    assert resp.text == (
        f'{{\n  "message":"no Route matched with those values",\n  "request_id":"{request_id}"\n}}'
    )
    assert resp.headers["Content-Type"] == "application/json; charset=utf-8"
    assert resp.headers["Server"] == "kong/3.9.3"
    assert resp.headers["X-Kong-Response-Latency"] is not None
    assert resp.headers["Via"] is None


def test_key_auth_and_rate_limiting(admin: Any, upstream_port: int, uid: str) -> None:
    admin.seed(
        {
            "services": [
                {
                    "name": f"svc-{uid}",
                    "url": f"http://127.0.0.1:{upstream_port}",
                    "routes": [
                        {
                            "name": f"ka-{uid}",
                            "paths": [f"/ka-{uid}"],
                            "plugins": [
                                {"name": "key-auth"},
                                {"name": "rate-limiting", "config": {"minute": 2}},
                            ],
                        }
                    ],
                }
            ],
            "consumers": [
                {
                    "username": f"alice-{uid}",
                    "custom_id": f"cid-{uid}",
                    "keyauth_credentials": [{"key": f"key-{uid}"}],
                }
            ],
        }
    )
    missing = proxy(admin, "GET", f"/ka-{uid}")
    assert missing.status == 401
    assert missing.json()["message"] == "No API key found in request"
    assert missing.headers["WWW-Authenticate"] == "Key"
    wrong = proxy(admin, "GET", f"/ka-{uid}", headers={"apikey": "wrong"})
    assert wrong.status == 401
    assert wrong.json()["message"] == "Unauthorized"
    assert wrong.headers["WWW-Authenticate"] == "Key"

    consumer = admin.get(f"/consumers/alice-{uid}").json()
    credential = admin.get(f"/consumers/alice-{uid}/key-auth").json()["data"][0]
    # The three calls below must fall in one minute: Kong's windows are UTC calendar buckets.
    left = 60 - time.time() % 60
    if left < 10:
        time.sleep(left + 0.05)
    remaining = []
    for _ in range(2):
        ok = proxy(admin, "GET", f"/ka-{uid}", headers={"apikey": f"key-{uid}"})
        assert ok.status == 200, ok.text
        remaining.append(ok.headers["X-RateLimit-Remaining-Minute"])
        assert ok.headers["X-RateLimit-Limit-Minute"] == "2"
    assert remaining == ["1", "0"]
    sent = echoed(ok)["header_map"]
    assert sent["x-consumer-id"] == consumer["id"]
    assert sent["x-consumer-username"] == f"alice-{uid}"
    assert sent["x-consumer-custom-id"] == f"cid-{uid}"
    assert sent["x-credential-identifier"] == credential["id"]
    blocked = proxy(admin, "GET", f"/ka-{uid}", headers={"apikey": f"key-{uid}"})
    assert blocked.status == 429
    assert blocked.json()["message"] == "API rate limit exceeded"
    assert blocked.json()["request_id"] == blocked.headers["X-Kong-Request-Id"]
    assert blocked.headers["X-RateLimit-Remaining-Minute"] == "0"
    assert blocked.headers["RateLimit-Limit"] == "2"
    assert blocked.headers["RateLimit-Remaining"] == "0"
    assert blocked.headers["Retry-After"] == blocked.headers["RateLimit-Reset"]


def test_upstream_failures(admin: Any, upstream_port: int, uid: str) -> None:
    admin.seed(
        {
            "services": [
                {
                    "name": f"down-{uid}",
                    "url": f"http://127.0.0.1:{_closed_port()}",
                    "retries": 1,
                    "routes": [{"name": f"down-{uid}", "paths": [f"/down-{uid}"]}],
                },
                {
                    "name": f"slow-{uid}",
                    "url": f"http://127.0.0.1:{upstream_port}",
                    "read_timeout": 200,
                    "retries": 0,
                    "routes": [{"name": f"slow-{uid}", "paths": [f"/slow-{uid}"]}],
                },
                {
                    "name": f"dns-{uid}",
                    "url": "http://no-such-host.invalid",
                    "routes": [{"name": f"dns-{uid}", "paths": [f"/dns-{uid}"]}],
                },
            ]
        }
    )
    down = proxy(admin, "GET", f"/down-{uid}")  # urllib sends no Accept: text/plain
    assert down.status == 502
    assert down.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert down.text == (
        "An invalid response was received from the upstream server\n"
        f"request_id: {down.headers['X-Kong-Request-Id']}\n"
    )
    down_json = proxy(admin, "GET", f"/down-{uid}", headers={"Accept": "*/*"})
    assert down_json.json()["message"] == (
        "An invalid response was received from the upstream server"
    )
    slow = proxy(admin, "GET", f"/slow-{uid}?_delay=2", headers={"Accept": "application/json"})
    assert slow.status == 504
    assert slow.json()["message"] == "The upstream server is timing out"
    dns = proxy(admin, "GET", f"/dns-{uid}")
    assert dns.status == 503
    assert dns.headers["Content-Type"] == "application/json; charset=utf-8"
    assert dns.json()["message"] == "name resolution failed"


def test_sse_is_streamed_with_response_buffering_off(
    admin: Any, upstream_port: int, uid: str
) -> None:
    admin.seed(
        {
            "services": [
                {
                    "name": f"sse-{uid}",
                    "url": f"http://127.0.0.1:{upstream_port}",
                    "routes": [
                        {
                            "name": f"sse-{uid}",
                            "paths": [f"/sse-{uid}"],
                            "response_buffering": False,
                        }
                    ],
                }
            ]
        }
    )
    url = f"{admin.node.proxy_url}/sse-{uid}?_sse=3&_gap=1.5"
    started = time.monotonic()
    with urllib.request.urlopen(url, timeout=30) as resp:  # noqa: S310 - loopback
        assert resp.headers["Content-Type"] == "text/event-stream"
        first = resp.readline() + resp.readline()
        first_at = time.monotonic() - started
        rest = resp.read()
        done_at = time.monotonic() - started
    assert first == b"data: event 0\n\n"
    assert rest == b"data: event 1\n\ndata: event 2\n\n"
    # The upstream needs two gaps (3 s) for the last event; the first one did not wait for it.
    assert first_at < done_at
    assert done_at - first_at >= 2.5


def test_expired_credential_is_unauthorized(pg_admin: Any, upstream_port: int, uid: str) -> None:
    pg_admin.seed(
        {
            "services": [
                {
                    "name": f"ttl-{uid}",
                    "url": f"http://127.0.0.1:{upstream_port}",
                    "routes": [
                        {
                            "name": f"ttl-{uid}",
                            "paths": [f"/ttl-{uid}"],
                            "plugins": [{"name": "key-auth"}],
                        }
                    ],
                }
            ],
            "consumers": [{"username": f"ttl-{uid}"}],
        }
    )
    created = pg_admin.post(f"/consumers/ttl-{uid}/key-auth", json={"key": f"k-{uid}", "ttl": 2})
    assert created.status == 201, created.text
    assert proxy(pg_admin, "GET", f"/ttl-{uid}", headers={"apikey": f"k-{uid}"}).status == 200
    time.sleep(3)
    expired = proxy(pg_admin, "GET", f"/ttl-{uid}", headers={"apikey": f"k-{uid}"})
    assert expired.status == 401
    assert expired.json()["message"] == "Unauthorized"


def test_entity_created_on_one_node_is_proxied_by_another(
    pg: Any, upstream_port: int, uid: str
) -> None:
    dbname = pg.create_database()
    conf = {**pg.kong_conf(dbname), "db_update_frequency": 0.5}
    with KongNode(conf) as node_a, KongNode(conf, bootstrap=False) as node_b:
        assert http("GET", f"{node_b.proxy_url}/two-{uid}").status == 404
        created = http(
            "POST",
            f"{node_a.admin_url}/services",
            json={"name": f"two-{uid}", "url": f"http://127.0.0.1:{upstream_port}"},
        )
        assert created.status == 201, created.text
        route = http(
            "POST",
            f"{node_a.admin_url}/services/two-{uid}/routes",
            json={"paths": [f"/two-{uid}"]},
        )
        assert route.status == 201, route.text
        deadline = time.monotonic() + 15
        while True:
            resp = http("GET", f"{node_b.proxy_url}/two-{uid}/x")
            if resp.status == 200 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert resp.status == 200, resp.text
        assert echoed(resp)["path"] == "/x"
