"""The proxy application in-process: a hand-built Snapshot, a real upstream on loopback.

Each test states the Kong 3.9.3 behaviour it checks (reference sections 3.x and the plugin
handlers); the simulator runs as a real process in ``test_proxy_conformance.py``.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from kongsim.proxy import create_proxy_app
from kongsim.proxy.echo import EchoUpstream
from kongsim.runtime import Snapshot

REQUEST_ID = re.compile(r"^[0-9a-f]{32}$")


def _id() -> str:
    return str(uuid.uuid4())


def service(port: int, **fields: Any) -> dict[str, Any]:
    entity = {
        "id": _id(),
        "name": None,
        "protocol": "http",
        "host": "127.0.0.1",
        "port": port,
        "path": None,
        "retries": 5,
        "connect_timeout": 60000,
        "write_timeout": 60000,
        "read_timeout": 60000,
        "enabled": True,
        "tags": None,
    }
    entity.update(fields)
    return entity


def route(svc: dict[str, Any] | None, **fields: Any) -> dict[str, Any]:
    entity = {
        "id": _id(),
        "name": None,
        "protocols": ["http", "https"],
        "methods": None,
        "hosts": None,
        "paths": None,
        "headers": None,
        "snis": None,
        "sources": None,
        "destinations": None,
        "strip_path": True,
        "preserve_host": False,
        "request_buffering": True,
        "response_buffering": True,
        "regex_priority": 0,
        "path_handling": "v0",
        "https_redirect_status_code": 426,
        "service": {"id": svc["id"]} if svc else None,
        "tags": None,
    }
    entity.update(fields)
    return entity


def consumer(**fields: Any) -> dict[str, Any]:
    entity = {"id": _id(), "username": None, "custom_id": None, "tags": None}
    entity.update(fields)
    return entity


def credential(owner: dict[str, Any], key: str, **fields: Any) -> dict[str, Any]:
    entity = {
        "id": _id(),
        "consumer": {"id": owner["id"]},
        "key": key,
        "tags": None,
        "expires_at": None,
    }
    entity.update(fields)
    return entity


KEY_AUTH_DEFAULTS = {
    "key_names": ["apikey"],
    "hide_credentials": False,
    "anonymous": None,
    "key_in_header": True,
    "key_in_query": True,
    "key_in_body": False,
    "run_on_preflight": True,
    "realm": None,
}
RATE_LIMITING_DEFAULTS = {
    "second": None,
    "minute": None,
    "hour": None,
    "day": None,
    "month": None,
    "year": None,
    "limit_by": "consumer",
    "header_name": None,
    "path": None,
    "policy": "local",
    "fault_tolerant": True,
    "hide_client_headers": False,
    "error_code": 429,
    "error_message": "API rate limit exceeded",
    "sync_rate": -1,
}
TRANSFORMER_SECTIONS = ("remove", "rename", "replace", "add", "append")


def plugin(name: str, scope: dict[str, Any] | None = None, **config: Any) -> dict[str, Any]:
    defaults: dict[str, Any]
    if name == "key-auth":
        defaults = dict(KEY_AUTH_DEFAULTS)
    elif name == "rate-limiting":
        defaults = dict(RATE_LIMITING_DEFAULTS)
    else:
        defaults = {s: {"headers": [], "querystring": [], "body": []} for s in TRANSFORMER_SECTIONS}
    defaults.update(config)
    entity: dict[str, Any] = {
        "id": _id(),
        "name": name,
        "instance_name": None,
        "config": defaults,
        "protocols": ["grpc", "grpcs", "http", "https"],
        "enabled": True,
        "route": None,
        "service": None,
        "consumer": None,
        "tags": None,
    }
    for kind, target in (scope or {}).items():
        entity[kind] = {"id": target["id"]}
    return entity


@dataclass
class FakeRuntime:
    """What the core's server hands the proxy: a snapshot and a conf."""

    snapshot: Snapshot
    conf: dict[str, Any] = field(default_factory=dict)

    def publish(self, **entities: Any) -> None:
        version = str(int(self.snapshot.version) + 1)
        self.snapshot = build_snapshot(version, **entities)


def build_snapshot(
    version: str = "1",
    services: list[dict[str, Any]] | None = None,
    routes: list[dict[str, Any]] | None = None,
    consumers: list[dict[str, Any]] | None = None,
    plugins: list[dict[str, Any]] | None = None,
    credentials: list[dict[str, Any]] | None = None,
) -> Snapshot:
    return Snapshot(
        version=version,
        services={s["id"]: s for s in services or []},
        routes=list(routes or []),
        consumers={c["id"]: c for c in consumers or []},
        plugins=list(plugins or []),
        keyauth_credentials=list(credentials or []),
    )


async def _start(app: web.Application) -> tuple[web.AppRunner, int]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server = site._server
    assert server is not None
    port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, port


@dataclass
class Env:
    upstream: EchoUpstream
    upstream_port: int
    runtime: FakeRuntime
    proxy_url: str
    client: aiohttp.ClientSession

    async def get(self, path: str, **kwargs: Any) -> tuple[int, Any, bytes]:
        return await self.call("GET", path, **kwargs)

    async def call(self, method: str, path: str, **kwargs: Any) -> tuple[int, Any, bytes]:
        async with self.client.request(method, self.proxy_url + path, **kwargs) as resp:
            return resp.status, resp.headers, await resp.read()


@pytest.fixture
async def env() -> AsyncIterator[Env]:
    upstream = EchoUpstream()
    upstream_runner, upstream_port = await _start(upstream.app())
    runtime = FakeRuntime(build_snapshot("1"))
    proxy_runner, proxy_port = await _start(create_proxy_app(runtime))
    client = aiohttp.ClientSession(auto_decompress=False)
    try:
        yield Env(upstream, upstream_port, runtime, f"http://127.0.0.1:{proxy_port}", client)
    finally:
        await client.close()
        await proxy_runner.cleanup()
        await upstream_runner.cleanup()


async def fresh_window(period: int, needed: float) -> None:
    """Rate-limiting windows are UTC calendar buckets: when fewer than ``needed`` seconds are
    left in the current ``period``, wait for the next one so a sequence stays in one window."""
    left = period - time.time() % period
    if left < needed:
        await asyncio.sleep(left + 0.05)


def echoed(body: bytes) -> dict[str, Any]:
    data = json.loads(body)
    data["header_map"] = {k.lower(): v for k, v in data["headers"]}
    return data


# -- routing ---------------------------------------------------------------------------


async def test_no_route_is_a_json_404_with_request_id(env: Env) -> None:
    status, headers, body = await env.get("/nothing-here")
    assert status == 404
    request_id = headers["X-Kong-Request-Id"]
    assert REQUEST_ID.match(request_id)
    assert body.decode() == (
        f'{{\n  "message":"no Route matched with those values",\n  "request_id":"{request_id}"\n}}'
    )
    assert headers["Content-Type"] == "application/json; charset=utf-8"
    assert headers["Server"] == "kong/3.9.3"
    assert int(headers["X-Kong-Response-Latency"]) >= 0
    assert "Via" not in headers
    assert "X-Kong-Proxy-Latency" not in headers


async def test_error_format_follows_accept(env: Env) -> None:
    status, headers, body = await env.get("/x", headers={"Accept": "text/plain"})
    assert status == 404
    assert headers["Content-Type"] == "text/plain; charset=utf-8"
    assert body.decode() == (
        f"no Route matched with those values\nrequest_id: {headers['X-Kong-Request-Id']}\n"
    )
    _, headers, body = await env.get("/x", headers={"Accept": "text/html;q=0.9, application/xml"})
    assert headers["Content-Type"] == "application/xml; charset=utf-8"
    assert b"<message>no Route matched with those values</message>" in body


@pytest.mark.parametrize(
    ("service_path", "route_path", "strip", "target", "expected"),
    [
        (None, "/api", True, "/api/v1/x?a=1&b", "/v1/x?a=1&b"),
        (None, "/api", True, "/api", "/"),
        ("/base", "/api", True, "/api/v1", "/base/v1"),
        ("/base", "/api", True, "/api", "/base"),
        ("/base", "/api", True, "/api/", "/base/"),
        ("/base/", "/api", True, "/api/v1", "/base/v1"),
        ("/base", "/api", False, "/api/v1", "/base/api/v1"),
        (None, "/api", False, "/api/v1", "/api/v1"),
        (None, "~/items/\\d+", True, "/items/42/detail", "/detail"),
        (None, "/api", True, "/api/a%20b/%7Euser", "/a%20b/~user"),
    ],
)
async def test_strip_path_and_service_path_joining(
    env: Env,
    service_path: str | None,
    route_path: str,
    strip: bool,
    target: str,
    expected: str,
) -> None:
    svc = service(env.upstream_port, path=service_path)
    env.runtime.publish(services=[svc], routes=[route(svc, paths=[route_path], strip_path=strip)])
    status, _, body = await env.get(target)
    assert status == 200
    assert echoed(body)["path"] == expected


async def test_priority_regex_then_longest_prefix_and_more_matchers_first(env: Env) -> None:
    svc = service(env.upstream_port)
    short = route(svc, paths=["/p"], name="short", strip_path=False)
    long = route(svc, paths=["/p/longer"], name="long", strip_path=False)
    regex = route(svc, paths=["~/p/l[a-z]+"], name="regex", strip_path=False)
    with_method = route(svc, paths=["/p"], methods=["POST"], name="method", strip_path=False)
    plugins = [
        plugin(
            "request-transformer",
            {"route": r},
            add={"headers": [f"X-Route:{r['name']}"], "querystring": [], "body": []},
        )
        for r in (short, long, regex, with_method)
    ]
    env.runtime.publish(services=[svc], routes=[short, long, regex, with_method], plugins=plugins)

    async def chosen(method: str, path: str) -> str:
        status, _, body = await env.call(method, path)
        assert status == 200
        return echoed(body)["header_map"]["x-route"]

    assert await chosen("GET", "/p/longer") == "regex"  # regex beats any prefix
    assert await chosen("GET", "/p/l0nger") == "short"
    env.runtime.publish(
        services=[svc], routes=[short, long, with_method], plugins=plugins[:2] + plugins[3:]
    )
    assert await chosen("GET", "/p/longer/x") == "long"  # longest prefix
    assert await chosen("POST", "/p/longer/x") == "method"  # two matcher kinds beat one


async def test_hosts_methods_headers_matching(env: Env) -> None:
    svc = service(env.upstream_port)
    env.runtime.publish(
        services=[svc],
        routes=[
            route(svc, hosts=["*.example.test"], paths=["/h"]),
            route(svc, methods=["PUT"], headers={"x-version": ["v2", "~*^beta"]}),
        ],
    )
    assert (await env.get("/h", headers={"Host": "api.example.test"}))[0] == 200
    assert (await env.get("/h", headers={"Host": "example.test"}))[0] == 404
    assert (await env.call("PUT", "/any", headers={"X-Version": "V2"}))[0] == 200
    assert (await env.call("PUT", "/any", headers={"X-Version": "beta-7"}))[0] == 200
    assert (await env.call("PUT", "/any", headers={"X-Version": "v3"}))[0] == 404
    assert (await env.call("GET", "/any", headers={"X-Version": "v2"}))[0] == 404


async def test_route_without_service_is_503_and_disabled_service_is_404(env: Env) -> None:
    svc = service(env.upstream_port, enabled=False)
    env.runtime.publish(
        services=[svc], routes=[route(None, paths=["/orphan"]), route(svc, paths=["/off"])]
    )
    status, _, body = await env.get("/orphan")
    assert status == 503
    assert json.loads(body)["message"] == "no Service found with those values"
    assert (await env.get("/off"))[0] == 404


async def test_https_only_route_answers_426_over_http(env: Env) -> None:
    svc = service(env.upstream_port)
    env.runtime.publish(services=[svc], routes=[route(svc, paths=["/s"], protocols=["https"])])
    status, headers, body = await env.get("/s")
    assert status == 426
    assert json.loads(body)["message"] == "Please use HTTPS protocol"
    assert headers["Upgrade"] == "TLS/1.2, HTTP/1.1"


async def test_https_redirect_and_grpc_route_mismatch(env: Env) -> None:
    svc = service(env.upstream_port)
    env.runtime.publish(
        services=[svc],
        routes=[
            route(svc, paths=["/r"], protocols=["https"], https_redirect_status_code=301),
            route(svc, paths=["/g"], protocols=["grpc"], strip_path=False),
        ],
    )
    status, headers, body = await env.get("/r/x?y=1", allow_redirects=False)
    assert status == 301
    assert headers["Location"] == "https://127.0.0.1/r/x?y=1"
    assert body == b""
    status, _, body = await env.get("/g")
    assert status == 415
    assert json.loads(body)["message"] == "Non-gRPC request matched gRPC route"


async def test_router_rebuilds_when_the_snapshot_version_changes(env: Env) -> None:
    assert (await env.get("/late"))[0] == 404
    svc = service(env.upstream_port)
    env.runtime.publish(services=[svc], routes=[route(svc, paths=["/late"])])
    assert (await env.get("/late"))[0] == 200


# -- headers ---------------------------------------------------------------------------


async def test_upstream_and_downstream_headers(env: Env) -> None:
    svc = service(env.upstream_port)
    env.runtime.publish(services=[svc], routes=[route(svc, paths=["/api"])])
    status, headers, body = await env.get(
        "/api/x?q=1", headers={"Via": "1.0 corp", "X-Forwarded-Proto": "https"}
    )
    assert status == 200
    sent = echoed(body)["header_map"]
    proxy_port = env.proxy_url.rsplit(":", 1)[1]
    assert sent["host"] == f"127.0.0.1:{env.upstream_port}"
    assert sent["x-forwarded-for"] == "127.0.0.1"
    assert sent["x-real-ip"] == "127.0.0.1"
    assert sent["x-forwarded-proto"] == "http"  # untrusted client: Kong's own value
    assert sent["x-forwarded-host"] == "127.0.0.1"
    assert sent["x-forwarded-port"] == proxy_port
    assert sent["x-forwarded-path"] == "/api/x"
    assert sent["x-forwarded-prefix"] == "/api"
    assert sent["via"] == "1.0 corp, 1.1 kong/3.9.3"
    assert sent["x-kong-request-id"] == headers["X-Kong-Request-Id"]
    assert REQUEST_ID.match(headers["X-Kong-Request-Id"])
    assert headers["Via"] == "1.1 kong/3.9.3"
    assert int(headers["X-Kong-Upstream-Latency"]) >= 0
    assert int(headers["X-Kong-Proxy-Latency"]) >= 0
    assert "X-Kong-Response-Latency" not in headers
    assert headers["Server"].startswith("Python/")  # the upstream's Server passes through
    assert headers["X-Upstream"] == "echo"


async def test_trusted_ips_keep_forwarded_headers_and_preserve_host(env: Env) -> None:
    env.runtime.conf["trusted_ips"] = ["127.0.0.1/32"]
    svc = service(env.upstream_port)
    env.runtime.publish(
        services=[svc], routes=[route(svc, paths=["/"], preserve_host=True, strip_path=False)]
    )
    _, _, body = await env.get(
        "/p",
        headers={
            "Host": "public.test:8443",
            "X-Forwarded-For": "203.0.113.9",
            "X-Forwarded-Proto": "https",
            "X-Real-IP": "203.0.113.9",
        },
    )
    sent = echoed(body)["header_map"]
    assert sent["host"] == "public.test:8443"
    assert sent["x-forwarded-for"] == "203.0.113.9, 127.0.0.1"
    assert sent["x-forwarded-proto"] == "https"
    assert sent["x-real-ip"] == "203.0.113.9"  # realip module: trusted peer's X-Real-IP
    assert "x-forwarded-prefix" not in sent  # matched prefix "/"


async def test_headers_off_removes_kong_headers(env: Env) -> None:
    env.runtime.conf.update(headers=["off"], headers_upstream=["off"])
    svc = service(env.upstream_port)
    env.runtime.publish(services=[svc], routes=[route(svc, paths=["/api"])])
    status, headers, body = await env.get("/api")
    assert status == 200
    for name in ("Via", "X-Kong-Upstream-Latency", "X-Kong-Proxy-Latency", "X-Kong-Request-Id"):
        assert name not in headers
    assert "x-kong-request-id" not in echoed(body)["header_map"]
    status, headers, body = await env.get("/none")
    assert status == 404
    assert headers["Server"] == "openresty"
    assert "X-Kong-Response-Latency" not in headers
    assert json.loads(body)["request_id"]


# -- key-auth ----------------------------------------------------------------------------


def _key_auth_setup(env: Env, **config: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    svc = service(env.upstream_port)
    rt = route(svc, paths=["/ka"])
    alice = consumer(username="alice", custom_id="c-1")
    cred = credential(alice, "alice-key")
    env.runtime.publish(
        services=[svc],
        routes=[rt],
        consumers=[alice],
        credentials=[cred, credential(alice, "old-key", expires_at=time.time() - 1)],
        plugins=[plugin("key-auth", {"route": rt}, **config)],
    )
    return alice, cred


async def test_key_auth_rejections(env: Env) -> None:
    _key_auth_setup(env)
    status, headers, body = await env.get("/ka")
    assert status == 401
    assert headers["WWW-Authenticate"] == "Key"
    assert json.loads(body) == {
        "message": "No API key found in request",
        "request_id": headers["X-Kong-Request-Id"],
    }
    for attempt in ({"apikey": "nope"}, {"apikey": "old-key"}):
        status, headers, body = await env.get("/ka", headers=attempt)
        assert status == 401
        assert json.loads(body)["message"] == "Unauthorized"
        assert headers["WWW-Authenticate"] == "Key"
    status, _, body = await env.get("/ka?apikey=a&apikey=b")
    assert status == 401
    assert json.loads(body)["message"] == "Duplicate API key found"


async def test_key_auth_success_sets_consumer_headers(env: Env) -> None:
    alice, cred = _key_auth_setup(env)
    status, _, body = await env.get("/ka?apikey=alice-key", headers={"X-Consumer-ID": "forged"})
    assert status == 200
    sent = echoed(body)
    assert sent["header_map"]["x-consumer-id"] == alice["id"]
    assert sent["header_map"]["x-consumer-username"] == "alice"
    assert sent["header_map"]["x-consumer-custom-id"] == "c-1"
    assert sent["header_map"]["x-credential-identifier"] == cred["id"]
    assert "x-anonymous-consumer" not in sent["header_map"]
    assert sent["path"] == "/?apikey=alice-key"


async def test_key_auth_hide_credentials_and_realm(env: Env) -> None:
    _key_auth_setup(env, hide_credentials=True, realm="ai", key_names=["apikey", "x-api-key"])
    status, _, body = await env.get("/ka/v?x=1&apikey=alice-key&y=2")
    assert status == 200
    assert echoed(body)["path"] == "/v?x=1&y=2"
    status, _, body = await env.get("/ka", headers={"x-api-key": "alice-key"})
    assert status == 200
    assert "x-api-key" not in echoed(body)["header_map"]
    status, headers, _ = await env.get("/ka")
    assert headers["WWW-Authenticate"] == 'Key realm="ai"'


async def test_key_auth_anonymous_and_preflight(env: Env) -> None:
    svc = service(env.upstream_port)
    rt = route(svc, paths=["/ka"])
    guest = consumer(username="guest")
    env.runtime.publish(
        services=[svc],
        routes=[rt],
        consumers=[guest],
        plugins=[plugin("key-auth", {"route": rt}, anonymous="guest", run_on_preflight=False)],
    )
    status, _, body = await env.get("/ka", headers={"apikey": "wrong"})
    assert status == 200
    sent = echoed(body)["header_map"]
    assert sent["x-anonymous-consumer"] == "true"
    assert sent["x-consumer-id"] == guest["id"]
    assert "x-credential-identifier" not in sent
    status, _, _ = await env.call("OPTIONS", "/ka")
    assert status == 200


async def test_key_auth_key_in_body(env: Env) -> None:
    _key_auth_setup(env, key_in_body=True, hide_credentials=True)
    status, _, body = await env.call("POST", "/ka", data={"apikey": "alice-key", "other": "1"})
    assert status == 200
    assert echoed(body)["body"] == "other=1"


# -- rate-limiting ------------------------------------------------------------------------


async def test_rate_limiting_counts_and_blocks(env: Env) -> None:
    svc = service(env.upstream_port)
    rt = route(svc, paths=["/rl"])
    env.runtime.publish(
        services=[svc],
        routes=[rt],
        plugins=[plugin("rate-limiting", {"service": svc}, minute=3, hour=100)],
    )
    await fresh_window(60, 15)
    remaining = []
    for _ in range(3):
        status, headers, _ = await env.get("/rl")
        assert status == 200
        assert headers["X-RateLimit-Limit-Minute"] == "3"
        assert headers["X-RateLimit-Limit-Hour"] == "100"
        assert headers["RateLimit-Limit"] == "3"
        remaining.append(headers["X-RateLimit-Remaining-Minute"])
        assert 1 <= int(headers["RateLimit-Reset"]) <= 60
    assert remaining == ["2", "1", "0"]
    status, headers, body = await env.get("/rl")
    assert status == 429
    assert json.loads(body) == {
        "message": "API rate limit exceeded",
        "request_id": headers["X-Kong-Request-Id"],
    }
    assert headers["X-RateLimit-Remaining-Minute"] == "0"
    assert headers["X-RateLimit-Remaining-Hour"] == "97"  # blocked requests are not counted
    assert headers["Retry-After"] == headers["RateLimit-Reset"]
    assert headers["RateLimit-Remaining"] == "0"


async def test_rate_limiting_error_settings_and_hidden_headers(env: Env) -> None:
    svc = service(env.upstream_port)
    rt = route(svc, paths=["/rl"])
    env.runtime.publish(
        services=[svc],
        routes=[rt],
        plugins=[
            plugin(
                "rate-limiting",
                {"route": rt},
                second=1,
                limit_by="header",
                header_name="X-Tenant",
                hide_client_headers=True,
                error_code=503,
                error_message="slow down",
            )
        ],
    )
    await fresh_window(1, 0.7)
    first = await env.get("/rl", headers={"X-Tenant": "a"})
    assert first[0] == 200
    assert not [h for h in first[1] if h.lower().startswith(("x-ratelimit", "ratelimit"))]
    other = await env.get("/rl", headers={"X-Tenant": "b"})
    blocked = await env.get("/rl", headers={"X-Tenant": "a"})
    if blocked[0] == 200:  # crossed a second boundary between the two calls: try once more
        other = await env.get("/rl", headers={"X-Tenant": "b"})
        blocked = await env.get("/rl", headers={"X-Tenant": "a"})
    assert other[0] == 200
    assert blocked[0] == 503
    assert json.loads(blocked[2])["message"] == "slow down"
    assert "Retry-After" not in blocked[1]


async def test_consumer_scoped_rate_limit_wins_over_global(env: Env) -> None:
    svc = service(env.upstream_port)
    rt = route(svc, paths=["/rl"])
    alice = consumer(username="alice")
    bob = consumer(username="bob")
    disabled = plugin("rate-limiting", {"consumer": bob}, hour=7)
    disabled["enabled"] = False
    env.runtime.publish(
        services=[svc],
        routes=[rt],
        consumers=[alice, bob],
        credentials=[credential(alice, "ka"), credential(bob, "kb")],
        plugins=[
            plugin("key-auth"),
            plugin("rate-limiting", hour=1000),
            plugin("rate-limiting", {"consumer": alice}, hour=5),
            disabled,
        ],
    )
    assert (await env.get("/rl", headers={"apikey": "ka"}))[1]["X-RateLimit-Limit-Hour"] == "5"
    assert (await env.get("/rl", headers={"apikey": "kb"}))[1]["X-RateLimit-Limit-Hour"] == "1000"


# -- request-transformer -------------------------------------------------------------------


async def test_request_transformer_headers_in_kong_order(env: Env) -> None:
    svc = service(env.upstream_port)
    rt = route(svc, paths=["/rt"])
    sections = {s: {"headers": [], "querystring": [], "body": []} for s in TRANSFORMER_SECTIONS}
    sections["remove"]["headers"] = ["X-Drop"]
    sections["rename"]["headers"] = ["X-Old:X-New"]
    sections["replace"]["headers"] = ["X-Keep:replaced", "X-Absent:never"]
    sections["add"]["headers"] = ["X-Keep:not-added", "X-Added:a:b"]
    sections["append"]["headers"] = ["X-List:two"]
    env.runtime.publish(
        services=[svc], routes=[rt], plugins=[plugin("request-transformer", **sections)]
    )
    _, _, body = await env.get(
        "/rt", headers={"X-Drop": "1", "X-Old": "o", "X-Keep": "k", "X-List": "one"}
    )
    sent = echoed(body)
    names = [k.lower() for k, _ in sent["headers"]]
    assert not {"x-drop", "x-old", "x-absent"}.intersection(names)
    assert sent["header_map"]["x-new"] == "o"
    assert sent["header_map"]["x-keep"] == "replaced"
    assert sent["header_map"]["x-added"] == "a:b"
    assert [v for k, v in sent["headers"] if k.lower() == "x-list"] == ["one", "two"]


# -- upstream failures, bodies, streaming -----------------------------------------------------


def _closed_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_upstream_down_is_502_text_or_json(env: Env) -> None:
    svc = service(_closed_port(), retries=2)
    env.runtime.publish(services=[svc], routes=[route(svc, paths=["/down"])])
    status, headers, body = await env.call("GET", "/down", skip_auto_headers=["Accept"])
    assert status == 502
    assert headers["Content-Type"] == "text/plain; charset=utf-8"
    assert body.decode() == (
        "An invalid response was received from the upstream server\n"
        f"request_id: {headers['X-Kong-Request-Id']}\n"
    )
    assert headers["Via"] == "1.1 kong/3.9.3"
    status, headers, body = await env.get("/down", headers={"Accept": "*/*"})
    assert status == 502
    assert json.loads(body)["message"] == (
        "An invalid response was received from the upstream server"
    )


async def test_read_timeout_is_504_after_retries(env: Env) -> None:
    svc = service(env.upstream_port, read_timeout=150, retries=1)
    env.runtime.publish(services=[svc], routes=[route(svc, paths=["/slow"])])
    status, _, body = await env.get("/slow?_delay=1", headers={"Accept": "application/json"})
    assert status == 504
    assert json.loads(body)["message"] == "The upstream server is timing out"
    assert env.upstream.hits == 2  # the first try plus one retry, as nginx does for GET


async def test_upstream_status_and_large_bodies_pass_through(env: Env) -> None:
    svc = service(env.upstream_port)
    env.runtime.publish(services=[svc], routes=[route(svc, paths=["/b"])])
    status, _, body = await env.get("/b?_status=418")
    assert status == 418
    payload = b"x" * (8 * 1024 * 1024)
    status, _, body = await env.call("POST", "/b", data=payload)
    assert status == 200
    assert echoed(body)["body_length"] == len(payload)


async def test_unbuffered_request_body_is_streamed_chunked(env: Env) -> None:
    svc = service(env.upstream_port)
    env.runtime.publish(services=[svc], routes=[route(svc, paths=["/u"], request_buffering=False)])

    async def body() -> AsyncIterator[bytes]:
        for _ in range(4):
            yield b"y" * 100_000
            await asyncio.sleep(0.01)

    status, _, answer = await env.call("POST", "/u", data=body())
    assert status == 200
    sent = echoed(answer)
    assert sent["body_length"] == 400_000
    assert sent["header_map"]["transfer-encoding"] == "chunked"


async def test_client_max_body_size_answers_413(env: Env) -> None:
    env.runtime.conf["nginx_http_client_max_body_size"] = "1k"
    svc = service(env.upstream_port)
    env.runtime.publish(services=[svc], routes=[route(svc, paths=["/b"])])
    status, _, body = await env.call(
        "POST", "/b", data=b"x" * 2048, headers={"Accept": "application/json"}
    )
    assert status == 413
    assert json.loads(body)["message"] == "Payload too large"


async def test_sse_reaches_the_client_while_the_upstream_is_still_sending(env: Env) -> None:
    svc = service(env.upstream_port)
    env.runtime.publish(
        services=[svc], routes=[route(svc, paths=["/sse"], response_buffering=False)]
    )
    async with env.client.get(env.proxy_url + "/sse?_sse=3&_gap=0.4") as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"] == "text/event-stream"
        first = b""
        while not first.endswith(b"\n\n"):
            first += await resp.content.readany()
        received_first_at = time.monotonic()
        sent_before_first_arrived = len(env.upstream.sse_sent)
        rest = await resp.read()
    assert first == b"data: event 0\n\n"
    assert rest == b"data: event 1\n\ndata: event 2\n\n"
    # The first event arrived before the upstream produced the last one.
    assert sent_before_first_arrived < 3
    assert received_first_at < env.upstream.sse_sent[-1]


async def test_dns_failure_is_503_name_resolution_failed(env: Env) -> None:
    svc = service(80, host="no-such-host.invalid")
    env.runtime.publish(services=[svc], routes=[route(svc, paths=["/dns"])])
    status, headers, body = await asyncio.wait_for(env.get("/dns"), 30)
    assert status == 503
    assert headers["Content-Type"] == "application/json; charset=utf-8"
    assert json.loads(body)["message"] == "name resolution failed"
