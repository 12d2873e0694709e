"""The proxy's pure parts against the rules read in Kong 3.9.3's source: URI normalisation and
escaping (``kong/tools/uri.lua``), the upstream URI join (``kong/router/utils.lua``), route
priorities (``kong/router/transform.lua``), Accept negotiation (``kong/tools/http.lua``),
rate-limiting windows (``kong/tools/timestamp.lua``) and the upstream client's framing."""

from __future__ import annotations

import asyncio
import calendar
import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from kongsim.proxy import errors
from kongsim.proxy.plugins import PluginIndex, period_starts
from kongsim.proxy.router import Router
from kongsim.proxy.settings import ProxySettings
from kongsim.proxy.upstream import UpstreamError, UpstreamPool
from kongsim.proxy.uri import escape, normalize, parse_query, remove_query_arg, upstream_uri_v0


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("/a/./b/../c", "/a/c"),
        ("//a///b", "/a/b"),
        ("/%41%2Fb%7e", "/A%2Fb~"),
        ("/a/%2e%2e/b", "/b"),
        ("/x/..", "/"),
    ],
)
def test_normalize(raw: str, expected: str) -> None:
    assert normalize(raw) == expected


def test_escape_keeps_reserved_and_encodes_the_rest() -> None:
    # paths are handled as latin-1 strings of the request's bytes (here UTF-8 for "ü")
    assert escape("/a b/\xc3\xbc?x=[1]") == "/a%20b/%C3%BC?x=[1]"
    assert escape("/plain-path_~.") == "/plain-path_~."


@pytest.mark.parametrize(
    ("strip", "postfix", "req", "base", "expected"),
    [
        (True, "", "/api", "/", "/"),
        (True, "/v1", "/api/v1", "/", "/v1"),
        (True, "v1", "/apiv1", "/", "/v1"),
        (True, "", "/api/", "/base", "/base/"),
        (True, "", "/api", "/base/", "/base"),
        (True, "", "/api/", "/base/", "/base/"),
        (False, "", "/api/v1", "/base", "/base/api/v1"),
        (False, "", "/", "/base", "/base"),
        (False, "", "/api", "/base/", "/base/api"),
    ],
)
def test_upstream_uri_v0(strip: bool, postfix: str, req: str, base: str, expected: str) -> None:
    assert upstream_uri_v0(strip, postfix, req, base) == expected


def test_query_parsing_and_removal() -> None:
    assert parse_query("a=1&b&a=2&c=x+y%21") == {"a": ["1", "2"], "b": True, "c": "x y!"}
    assert remove_query_arg("x=1&apikey=s&y=a%20b&apikey=t", "apikey") == "x=1&y=a+b"


def _route(**fields: object) -> dict[str, object]:
    route: dict[str, object] = {
        "id": str(uuid.uuid4()),
        "protocols": ["http", "https"],
        "strip_path": True,
        "regex_priority": 0,
        "service": None,
    }
    route.update(fields)
    return route


def _name(router: Router, path: str, host: str | None = None, method: str = "GET") -> object:
    match = router.find(method, path, host, 8000, {})  # type: ignore[arg-type]
    return match.route["name"] if match else None


def test_priority_order() -> None:
    router = Router(
        [
            _route(name="prefix", paths=["/a"]),
            _route(name="longer", paths=["/a/b"]),
            _route(name="regex-low", paths=["~/a/b/c"], regex_priority=1),
            _route(name="regex-high", paths=["~/a/b/[a-z]"], regex_priority=5),
            _route(name="wild-host", paths=["/a"], hosts=["*.test"]),
            _route(name="plain-host", paths=["/a"], hosts=["x.test"]),
        ],
        {},
    )
    assert _name(router, "/a/b/c") == "regex-high"
    assert _name(router, "/a/b/1") == "longer"
    assert _name(router, "/a/z") == "prefix"
    assert _name(router, "/a/z", "x.test") == "plain-host"
    assert _name(router, "/a/z", "y.test") == "wild-host"
    # two matcher kinds beat a longer prefix
    assert _name(router, "/a/b/1", "y.test") == "wild-host"


def test_paths_of_different_lengths_are_split_into_matchers() -> None:
    router = Router(
        [
            _route(name="multi", paths=["/s", "/long/path"]),
            _route(name="middle", paths=["/long"]),
        ],
        {},
    )
    assert _name(router, "/long/path/x") == "multi"
    assert _name(router, "/long/x") == "middle"
    assert _name(router, "/s") == "multi"


def test_disabled_service_and_stream_routes_are_not_routed() -> None:
    service = {"id": str(uuid.uuid4()), "enabled": False, "host": "h", "path": None}
    router = Router(
        [
            _route(name="off", paths=["/off"], service={"id": service["id"]}),
            _route(name="tcp", protocols=["tcp"], destinations=[{"port": 1}]),
        ],
        {service["id"]: service},
    )
    assert _name(router, "/off") is None


def test_accept_negotiation() -> None:
    assert errors.response_type(None) == errors.JSON
    assert errors.response_type("*/*") == errors.JSON
    assert errors.response_type("text/*") == errors.PLAIN
    assert errors.response_type("image/png") == errors.JSON
    assert errors.response_type("text/plain;q=0.5, text/html;q=0.8") == errors.HTML
    assert errors.response_type("application/xml;q=0") == errors.JSON
    assert errors.nginx_error_type(None, None, "text/plain") == errors.PLAIN
    assert errors.nginx_error_type(None, "application/json", "text/plain") == errors.JSON


def test_headers_settings() -> None:
    default = ProxySettings.from_conf({})
    assert {"server", "via", "x-kong-proxy-latency", "x-kong-request-id"} <= (
        default.enabled_headers
    )
    off = ProxySettings.from_conf({"headers": "off"})
    assert off.enabled_headers == frozenset()
    trusted = ProxySettings.from_conf({"trusted_ips": "10.0.0.0/8"})
    assert trusted.is_trusted("10.1.2.3")
    assert not trusted.is_trusted("127.0.0.1")


def test_rate_limiting_windows_are_utc_calendar_buckets() -> None:
    now = calendar.timegm((2026, 3, 15, 13, 45, 30))
    starts = period_starts(now)
    assert starts["second"] == now
    assert starts["minute"] == calendar.timegm((2026, 3, 15, 13, 45, 0))
    assert starts["hour"] == calendar.timegm((2026, 3, 15, 13, 0, 0))
    assert starts["day"] == calendar.timegm((2026, 3, 15, 0, 0, 0))
    assert starts["month"] == calendar.timegm((2026, 3, 1, 0, 0, 0))
    assert starts["year"] == calendar.timegm((2026, 1, 1, 0, 0, 0))


def test_plugin_precedence() -> None:
    route, service, consumer = "r", "s", "c"

    def plugin(**scope: str) -> dict[str, object]:
        return {
            "id": str(uuid.uuid4()),
            "name": "rate-limiting",
            "enabled": True,
            "protocols": ["http"],
            "config": {},
            **{k: {"id": v} for k, v in scope.items()},
        }

    scoped = {
        "crs": plugin(consumer=consumer, route=route, service=service),
        "cr": plugin(consumer=consumer, route=route),
        "cs": plugin(consumer=consumer, service=service),
        "rs": plugin(route=route, service=service),
        "c": plugin(consumer=consumer),
        "r": plugin(route=route),
        "s": plugin(service=service),
        "g": plugin(),
    }
    order = list(scoped)
    while order:
        index = PluginIndex([scoped[k] for k in order], {}, [])
        found = index.lookup("rate-limiting", route, service, consumer)
        assert found is not None
        assert found.plugin is scoped[order[0]]
        order.pop(0)


# -- the upstream client ------------------------------------------------------------------


@contextlib.asynccontextmanager
async def _raw_upstream(
    answer: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]],
) -> AsyncIterator[int]:
    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


async def _read_head(reader: asyncio.StreamReader) -> bytes:
    return await reader.readuntil(b"\r\n\r\n")


async def _get(pool: UpstreamPool, port: int, method: str = "GET") -> tuple[int, bytes]:
    head = f"{method} / HTTP/1.1\r\nHost: x\r\n\r\n".encode()
    resp = await pool.request("127.0.0.1", port, False, None, head, None, None, method, 2, 2)
    return resp.status, await resp.read()


async def test_client_close_delimited_chunked_and_keep_alive() -> None:
    connections = 0

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        await _read_head(reader)
        writer.write(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"3\r\nabc\r\n2;ext=1\r\nde\r\n0\r\nX-Trailer: 1\r\n\r\n"
        )
        await _read_head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await _read_head(reader)
        writer.write(b"HTTP/1.0 200 OK\r\n\r\nuntil close")
        writer.close()

    pool = UpstreamPool()
    async with _raw_upstream(answer) as port:
        assert await _get(pool, port) == (200, b"abcde")
        assert await _get(pool, port) == (200, b"ok")
        assert await _get(pool, port) == (200, b"until close")
        assert connections == 1
    pool.close()


async def test_client_passes_a_chunk_on_before_it_is_complete() -> None:
    release = asyncio.Event()

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\na\r\nfirst")
        await writer.drain()
        await release.wait()
        writer.write(b"-half\r\n0\r\n\r\n")
        await writer.drain()

    pool = UpstreamPool()
    async with _raw_upstream(answer) as port:
        head = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
        resp = await pool.request("127.0.0.1", port, False, None, head, None, None, "GET", 2, 2)
        pieces = resp.iter_chunks()
        assert await pieces.__anext__() == b"first"  # half of a 10-byte chunk
        release.set()
        assert [p async for p in pieces] == [b"-half"]
    pool.close()


async def test_stale_kept_alive_connection_is_replaced() -> None:
    connections = 0

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        await _read_head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\na")
        await writer.drain()
        await _read_head(reader)  # the second request on this connection is never answered
        writer.close()

    pool = UpstreamPool()
    async with _raw_upstream(answer) as port:
        assert await _get(pool, port) == (200, b"a")
        assert await _get(pool, port) == (200, b"a")
        assert connections == 2
    pool.close()


async def test_client_errors() -> None:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_head(reader)
        writer.write(b"garbage\r\n\r\n")
        await writer.drain()
        writer.close()

    pool = UpstreamPool()
    async with _raw_upstream(answer) as port:
        with pytest.raises(UpstreamError) as invalid:
            await _get(pool, port)
        assert invalid.value.kind == "invalid"
    with pytest.raises(UpstreamError) as refused:
        await _get(pool, port)
    assert refused.value.kind == "connect"
    assert not refused.value.sent
    pool.close()
