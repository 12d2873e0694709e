"""The proxy listener: route, run the plugins, call the upstream, stream the answer back.

Phases follow ``kong/init.lua`` and ``kong/runloop/handler.lua`` (3.9.3): the router runs
first (404 ``no Route matched with those values``), then the protocol check (426), then the
plugins in priority order (their errors end the request), then the 503 for a route without a
service, then the balancer (DNS failure 503 ``name resolution failed``) and nginx's
``proxy_pass`` with its retries and the ``kong/error_handlers.lua`` answers (502/504).
"""

from __future__ import annotations

import ipaddress
import os
import time
from collections.abc import Mapping
from typing import Any

from aiohttp import web
from multidict import CIMultiDict

from . import errors
from .plugins import (
    PluginExit,
    PluginIndex,
    RateCounters,
    RequestState,
    key_auth,
    rate_limiting,
    rate_limiting_redis,
    request_transformer,
)
from .redis import RedisPools
from .router import Match, Router
from .settings import SERVER_HEADER, ProxySettings
from .upstream import UpstreamError, UpstreamPool, UpstreamResponse
from .uri import escape

# Headers nginx sets itself with ``proxy_set_header`` (so the client's copies are not sent),
# plus the hop-by-hop and framing headers that are never forwarded as they came.
_OVERRIDDEN = (
    "Host",
    "Connection",
    "Keep-Alive",
    "Upgrade",
    "TE",
    "Via",
    "X-Forwarded-For",
    "X-Forwarded-Proto",
    "X-Forwarded-Host",
    "X-Forwarded-Port",
    "X-Forwarded-Path",
    "X-Forwarded-Prefix",
    "X-Real-IP",
    "Content-Length",
    "Transfer-Encoding",
    "Expect",
    "Proxy",
    "Proxy-Connection",
)
_HOP_BY_HOP_RESPONSE = frozenset(
    ("connection", "keep-alive", "transfer-encoding", "content-length")
)
# Answers of known length up to this size are read whole and sent in one write, as nginx's
# proxy buffers would hold them.
_BUFFER_LIMIT = 1024 * 1024
# nginx retries non-idempotent requests only when nothing was sent yet
# (``proxy_next_upstream`` without ``non_idempotent``).
_NON_IDEMPOTENT = frozenset(("POST", "LOCK", "PATCH"))


class _State:
    """Indexes built from one snapshot version."""

    def __init__(self, snapshot: Any, conf: Mapping[str, Any]):
        self.version = snapshot.version
        self.conf = conf
        self.settings = ProxySettings.from_conf(conf)
        self.router = Router(snapshot.routes, snapshot.services)
        self.index = PluginIndex(snapshot.plugins, snapshot.consumers, snapshot.keyauth_credentials)
        self.body_plugins = any(
            instance.conf.in_body for instance in self.index.combos.get("key-auth", {}).values()
        )


def _ms(start: float, end: float) -> str:
    return str(int((end - start) * 1000))


def _server_name(settings: ProxySettings) -> str:
    # With server_tokens off Kong clears the header and nginx writes its own name.
    return SERVER_HEADER if "server" in settings.enabled_headers else "openresty"


def _valid_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


class ProxyServer:
    """One node's proxy: reads ``runtime.snapshot`` per request, rebuilds on new versions."""

    def __init__(self, runtime: Any):
        self.runtime = runtime
        self.counters = RateCounters()
        self.redis = RedisPools()
        self._state: _State | None = None
        self._pool: UpstreamPool | None = None

    # -- lifecycle -------------------------------------------------------------------

    async def on_startup(self, _app: web.Application) -> None:
        self._pool = UpstreamPool()

    async def on_cleanup(self, _app: web.Application) -> None:
        if self._pool is not None:
            self._pool.close()
        self.redis.close()

    def state(self) -> _State:
        runtime = self.runtime
        snapshot = runtime.snapshot
        state = self._state
        if state is None or state.version != snapshot.version or state.conf is not runtime.conf:
            state = _State(snapshot, runtime.conf)
            self._state = state
        return state

    # -- Kong-generated answers ----------------------------------------------------------

    def _exit(
        self,
        request: web.Request,
        state: _State,
        status: int,
        message: str,
        request_id: str,
        start: float,
        headers: Mapping[str, str] | None = None,
        content_type: str | None = None,
    ) -> web.Response:
        """``kong.response.error`` plus the header filter for a response Kong produced."""
        settings = state.settings
        if content_type is None:
            accept = request.headers.getall("Accept", None)
            content_type = errors.response_type(",".join(accept) if accept else None)
        out = CIMultiDict(headers or {})
        out["Content-Type"] = content_type
        enabled = settings.enabled_headers
        if "x-kong-response-latency" in enabled:
            out["X-Kong-Response-Latency"] = _ms(start, time.monotonic())
        out["Server"] = _server_name(settings)
        if "x-kong-request-id" in enabled:
            out["X-Kong-Request-Id"] = request_id
        return web.Response(
            status=status, body=errors.render(content_type, message, request_id), headers=out
        )

    def _upstream_error(
        self,
        request: web.Request,
        state: _State,
        status: int,
        request_id: str,
        start: float,
        sent_at: float,
        extra: Mapping[str, str],
    ) -> web.Response:
        """``kong/error_handlers.lua``: nginx failed to proxy; the request counts as proxied."""
        settings = state.settings
        content_type = errors.nginx_error_type(
            request.headers.get("Accept"),
            request.headers.get("Content-Type"),
            settings.error_default_type,
        )
        out = CIMultiDict(extra)
        out["Content-Type"] = content_type
        now = time.monotonic()
        self._proxied_headers(out, settings, request_id, start, sent_at, now, None)
        out.setdefault("Server", _server_name(settings))
        return web.Response(
            status=status,
            body=errors.render(content_type, errors.NGINX_MESSAGES[status], request_id),
            headers=out,
        )

    @staticmethod
    def _proxied_headers(
        out: CIMultiDict[str],
        settings: ProxySettings,
        request_id: str,
        start: float,
        sent_at: float,
        first_byte_at: float,
        upstream_via: str | None,
    ) -> None:
        enabled = settings.enabled_headers
        if "x-kong-upstream-latency" in enabled:
            out["X-Kong-Upstream-Latency"] = _ms(sent_at, first_byte_at)
        if "x-kong-proxy-latency" in enabled:
            out["X-Kong-Proxy-Latency"] = _ms(start, sent_at)
        if "via" in enabled:
            via = f"{settings.proxy_http_version} {SERVER_HEADER}"
            out["Via"] = f"{upstream_via}, {via}" if upstream_via else via
        if "x-kong-request-id" in enabled:
            out["X-Kong-Request-Id"] = request_id

    # -- the request path ---------------------------------------------------------------

    def _client_address(self, request: web.Request, settings: ProxySettings) -> tuple[str, str]:
        """(``$realip_remote_addr``, ``$remote_addr``) after nginx's realip module."""
        peer = request.remote or ""
        header = settings.real_ip_header
        if not header or not settings.is_trusted(peer) or header == "proxy_protocol":
            return peer, peer
        values = request.headers.getall(header, [])
        if not values:
            return peer, peer
        if header == "x-forwarded-for":
            addresses = [a.strip() for v in values for a in v.split(",") if a.strip()]
            if settings.real_ip_recursive:
                for address in reversed(addresses):
                    if not settings.is_trusted(address):
                        return peer, address if _valid_ip(address) else peer
                return peer, addresses[0] if addresses and _valid_ip(addresses[0]) else peer
            candidate = addresses[-1] if addresses else ""
        else:
            candidate = values[0].strip()
        return peer, candidate if _valid_ip(candidate) else peer

    async def handle(self, request: web.Request) -> web.StreamResponse:
        response = await self._handle(request)
        # The node writes Kong's proxy access log (``proxy_access_log``) when it offers to.
        access_log = getattr(self.runtime, "access_log", None)
        if access_log is not None:
            access_log("proxy", request, response.status)
        return response

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        start = time.monotonic()
        request_id = os.urandom(16).hex()
        state = self.state()
        settings = state.settings
        headers = request.headers

        raw = request.raw_path
        mark = raw.find("?", 1)
        if mark == -1:
            raw_path, query, has_query = raw, "", False
        else:
            raw_path, query, has_query = raw[:mark], raw[mark + 1 :], True
        raw_path = raw_path.encode("utf-8", "surrogateescape").decode("latin-1")

        sockname = request.transport.get_extra_info("sockname") if request.transport else None
        server_port = sockname[1] if sockname else 0
        host_header = headers.get("Host")
        match = state.router.find(request.method, raw_path, host_header, server_port, headers)
        if match is None:
            return self._exit(
                request, state, 404, "no Route matched with those values", request_id, start
            )

        realip_remote_addr, remote_addr = self._client_address(request, settings)
        trusted = settings.is_trusted(realip_remote_addr)
        # nginx's $host: the Host header without its port, lower-cased; else the server name
        host = host_header.rsplit(":", 1)[0].lower() if host_header else "kong"
        if host_header and host_header.startswith("["):
            host = host_header.split("]", 1)[0].lower() + "]"
        scheme = request.scheme
        forwarded_proto: str = scheme
        forwarded_host: str = host
        forwarded_port: str = str(server_port)
        forwarded_path: str | None = None
        forwarded_prefix: str | None = None
        if trusted:
            forwarded_proto = headers.get("X-Forwarded-Proto") or scheme
            forwarded_host = headers.get("X-Forwarded-Host") or host
            forwarded_port = headers.get("X-Forwarded-Port") or str(server_port)
            forwarded_path = headers.get("X-Forwarded-Path")
            forwarded_prefix = headers.get("X-Forwarded-Prefix")
        if forwarded_path is None:
            forwarded_path = raw_path
        if not forwarded_prefix and match.prefix != "/":
            forwarded_prefix = match.prefix

        route = match.route
        protocols = route.get("protocols") or ()
        if "https" in protocols and "http" not in protocols and forwarded_proto != "https":
            redirect = int(route.get("https_redirect_status_code") or 426)
            if redirect == 426:
                return self._exit(
                    request,
                    state,
                    426,
                    "Please use HTTPS protocol",
                    request_id,
                    start,
                    {"Connection": "Upgrade", "Upgrade": "TLS/1.2, HTTP/1.1"},
                )
            # kong.response.exit(code) with a Location header: no body.
            response = self._exit(request, state, redirect, "", request_id, start)
            response.body = b""
            del response.headers["Content-Type"]
            response.headers["Location"] = f"https://{forwarded_host}{request.raw_path}"
            return response
        if "grpc" in protocols or "grpcs" in protocols:
            content_type = headers.get("Content-Type") or ""
            if not content_type.startswith("application/grpc"):
                return self._exit(
                    request, state, 415, "Non-gRPC request matched gRPC route", request_id, start
                )
            # gRPC needs HTTP/2, which this listener does not speak.
            return self._exit(
                request,
                state,
                426,
                "Please use HTTP2 protocol",
                request_id,
                start,
                {"Connection": "Upgrade", "Upgrade": "HTTP/2"},
            )

        return await self._access(
            request,
            state,
            match,
            request_id,
            start,
            raw_path,
            query,
            has_query,
            remote_addr,
            realip_remote_addr,
            (forwarded_proto, forwarded_host, forwarded_port, forwarded_path, forwarded_prefix),
        )

    async def _read_body(self, request: web.Request, limit: int) -> bytes | None:
        if not request.body_exists:
            return None
        chunks = []
        size = 0
        async for chunk in request.content.iter_any():
            size += len(chunk)
            if limit and size > limit:
                raise _TooLarge()
            chunks.append(chunk)
        return b"".join(chunks)

    async def _access(
        self,
        request: web.Request,
        state: _State,
        match: Match,
        request_id: str,
        start: float,
        raw_path: str,
        query: str,
        has_query: bool,
        remote_addr: str,
        realip_remote_addr: str,
        forwarded: tuple[str, str, str, str, str | None],
    ) -> web.StreamResponse:
        settings = state.settings
        route = match.route
        service = match.service
        headers = request.headers

        limit = settings.client_max_body_size
        if limit and request.content_length is not None and request.content_length > limit:
            return self._nginx_error(request, state, 413, request_id)
        buffered = route.get("request_buffering") is not False or state.body_plugins
        body: bytes | None = None
        if buffered:
            try:
                body = await self._read_body(request, limit)
            except _TooLarge:
                return self._nginx_error(request, state, 413, request_id)

        upstream_headers = CIMultiDict(headers)
        upstream_headers.popall("Host", None)
        plugin_state = RequestState(
            method=request.method,
            path=match.path,
            query=query,
            has_query=has_query,
            headers=upstream_headers,
            client_ip=remote_addr,
            route=route,
            service=service,
            body=body,
        )
        index = state.index
        route_id = route.get("id")
        service_id = service.get("id") if service else None
        try:
            for name in index.names:
                consumer = plugin_state.consumer
                # key-auth cannot be scoped to a consumer (``no_consumer`` in its schema)
                consumer_id = consumer["id"] if consumer and name != "key-auth" else None
                instance = index.lookup(name, route_id, service_id, consumer_id)
                if instance is None:
                    continue
                if name == "key-auth":
                    key_auth(instance.conf, plugin_state, index)
                elif name == "rate-limiting":
                    if instance.conf.redis is not None:
                        now = int(self.counters.clock())
                        await rate_limiting_redis(instance.conf, plugin_state, self.redis, now)
                    else:
                        rate_limiting(instance.conf, plugin_state, self.counters)
                else:
                    request_transformer(instance.conf, plugin_state)
        except PluginExit as exit_:
            extra = dict(plugin_state.response_headers)
            extra.update(exit_.headers)
            return self._exit(request, state, exit_.status, exit_.message, request_id, start, extra)

        if service is None:
            return self._exit(
                request,
                state,
                503,
                "no Service found with those values",
                request_id,
                start,
                plugin_state.response_headers,
            )

        # Upstream request headers, as nginx_kong.lua's proxy_set_header lines build them.
        out = plugin_state.headers
        host_override = out.get("Host")
        connection = headers.get("Connection")
        if connection and connection.lower() not in ("keep-alive", "close", "upgrade"):
            for name in connection.split(","):
                name = name.strip()
                if name:
                    out.popall(name, None)
        for name in _OVERRIDDEN:
            out.popall(name, None)
        upstream_request_id = "x-kong-request-id" in settings.enabled_headers_upstream
        if upstream_request_id:
            out.popall("X-Kong-Request-Id", None)
        te = headers.get("TE")
        if te and "trailers" in [t.strip().lower() for t in te.split(",")]:
            out["TE"] = "trailers"
        service_host = str(service.get("host"))
        scheme = service.get("protocol") or "http"
        port = int(service.get("port") or (443 if scheme == "https" else 80))
        # A Service whose host names an upstream is balanced over its targets; the Host
        # header then follows the target each try picks (set in _proxy).
        # (The node's kongsim.balancer.Balancers; a runtime without one proxies to the host.)
        balancers = getattr(self.runtime, "balancers", None)
        balancer = balancers.by_name.get(service_host) if balancers is not None else None
        target_host = False
        if host_override:
            out["Host"] = host_override
        elif match.upstream_host:
            out["Host"] = match.upstream_host
        elif balancer is not None:
            target_host = True
        elif port in (80, 443):
            out["Host"] = service_host
        else:
            out["Host"] = f"{service_host}:{port}"
        via_in = headers.get("Via")
        version = request.version
        protocol = "2" if version.major == 2 else f"{version.major}.{version.minor}"
        kong_via = f"{protocol} {SERVER_HEADER}"
        out["Via"] = f"{via_in}, {kong_via}" if via_in else kong_via
        xff = headers.get("X-Forwarded-For")
        out["X-Forwarded-For"] = f"{xff}, {realip_remote_addr}" if xff else remote_addr
        proto, fhost, fport, fpath, fprefix = forwarded
        out["X-Forwarded-Proto"] = proto
        out["X-Forwarded-Host"] = fhost
        out["X-Forwarded-Port"] = fport
        out["X-Forwarded-Path"] = fpath
        if fprefix:
            out["X-Forwarded-Prefix"] = fprefix
        out["X-Real-IP"] = remote_addr
        if upstream_request_id:
            out["X-Kong-Request-Id"] = request_id
        out["Connection"] = "keep-alive"

        path = escape(match.upstream_uri)
        if plugin_state.query or request.raw_path.endswith("?"):
            path = f"{path}?{plugin_state.query}"
        body = plugin_state.body
        stream = None
        if body is not None:
            out["Content-Length"] = str(len(body))
        elif not buffered and request.body_exists:
            out["Transfer-Encoding"] = "chunked"
            stream = request.content.iter_any()
        lines = [f"{name}: {value}\r\n" for name, value in out.items()]
        head = f"{request.method} {path} HTTP/1.1\r\n{''.join(lines)}\r\n".encode(
            "utf-8", "surrogateescape"
        )
        return await self._proxy(
            request,
            state,
            match,
            head,
            body,
            stream,
            request_id,
            start,
            plugin_state.response_headers,
            balancer,
            target_host,
        )

    def _nginx_error(
        self, request: web.Request, state: _State, status: int, request_id: str
    ) -> web.Response:
        """An error nginx raises before Kong's phases (e.g. 413): error handler, not proxied."""
        settings = state.settings
        content_type = errors.nginx_error_type(
            request.headers.get("Accept"),
            request.headers.get("Content-Type"),
            settings.error_default_type,
        )
        out = CIMultiDict({"Content-Type": content_type})
        out["Server"] = _server_name(settings)
        if "x-kong-request-id" in settings.enabled_headers:
            out["X-Kong-Request-Id"] = request_id
        return web.Response(
            status=status,
            body=errors.render(content_type, errors.NGINX_MESSAGES[status], request_id),
            headers=out,
        )

    async def _proxy(
        self,
        request: web.Request,
        state: _State,
        match: Match,
        head: bytes,
        body: bytes | None,
        stream: Any,
        request_id: str,
        start: float,
        extra: Mapping[str, str],
        balancer: Any = None,
        target_host: bool = False,
    ) -> web.StreamResponse:
        """nginx's proxy_pass: up to ``retries`` more tries on connection errors and
        timeouts (``proxy_next_upstream error timeout``; POST/PATCH/LOCK only while nothing
        was sent), then the error handler's 502/504.

        With a ``balancer`` each try asks it for the next peer (``Kong.balancer``): no peer
        on the first try is Kong's 503 "failure to get a peer from the ring-balancer", on a
        retry nginx's 503. Failed tries are reported to the passive health checks before the
        retry, the final answer by its status (runloop/handler.lua log phase)."""
        pool = self._pool
        assert pool is not None
        service = match.service
        assert service is not None
        host = str(service.get("host"))
        tls = service.get("protocol") == "https"
        port = int(service.get("port") or (443 if tls else 80))
        retries = service.get("retries")
        tries = 1 + (5 if retries is None else int(retries))
        if stream is not None:
            tries = 1  # an unbuffered body cannot be sent twice
        idempotent = request.method not in _NON_IDEMPOTENT
        connect_timeout = int(service.get("connect_timeout") or 60000) / 1000
        read_timeout = int(service.get("read_timeout") or 60000) / 1000
        status = 502
        sent_at = time.monotonic()
        peer = None
        peer_head = head
        for attempt in range(tries):
            if balancer is not None:
                peer = balancer.get_peer()
                if peer is None:
                    if attempt == 0:
                        return self._exit(
                            request,
                            state,
                            503,
                            "failure to get a peer from the ring-balancer",
                            request_id,
                            start,
                            extra,
                        )
                    return self._nginx_error(request, state, 503, request_id)
                host, port = peer.ip, peer.port
                if target_host:
                    line_end = head.index(b"\r\n") + 2
                    host_line = f"Host: {balancer.host_header(peer, tls)}\r\n".encode()
                    peer_head = head[:line_end] + host_line + head[line_end:]
            sent_at = time.monotonic()
            try:
                upstream = await pool.request(
                    host,
                    port,
                    tls,
                    bool(service.get("tls_verify")),
                    peer_head,
                    body,
                    stream,
                    request.method,
                    connect_timeout,
                    read_timeout,
                )
            except UpstreamError as exc:
                if exc.kind == "dns":
                    # The balancer resolves the name before proxying: kong.response.error.
                    return self._exit(
                        request, state, 503, "name resolution failed", request_id, start, extra
                    )
                status = 504 if exc.kind == "timeout" else 502
                # nginx's default proxy_next_upstream is "error timeout": a malformed answer
                # (invalid_header) is not retried.
                retriable = exc.kind != "invalid" and (idempotent or not exc.sent)
                if attempt + 1 < tries and retriable:
                    if peer is not None:
                        balancer.report(peer, "timeouts" if status == 504 else "tcp_failures")
                    continue
                break
            if peer is not None:
                balancer.report_status(peer, upstream.status)
            return await self._relay(
                request, state, match, upstream, request_id, start, sent_at, extra
            )
        if peer is not None:
            balancer.report_status(peer, status)
        return self._upstream_error(request, state, status, request_id, start, sent_at, extra)

    async def _relay(
        self,
        request: web.Request,
        state: _State,
        match: Match,
        upstream: UpstreamResponse,
        request_id: str,
        start: float,
        sent_at: float,
        extra: Mapping[str, str],
    ) -> web.StreamResponse:
        """Pass the upstream answer on. Bodies of unknown length (SSE, chunked) go out chunk
        by chunk as they arrive; so do all bodies when the route has
        ``response_buffering: false``."""
        first_byte_at = time.monotonic()
        settings = state.settings
        try:
            out: CIMultiDict[str] = CIMultiDict()
            drop: set[str] = set()
            connection = upstream.header("Connection")
            if connection:
                drop.update(n.strip().lower() for n in connection.split(","))
            has_te = "TE" in request.headers
            via = None
            for name, value in upstream.headers:
                lower = name.lower()
                if lower in _HOP_BY_HOP_RESPONSE or lower in drop:
                    continue
                if lower == "trailer" and not has_te:
                    continue
                if lower == "via":
                    via = value
                    continue
                out.add(name, value)
            for name, value in extra.items():
                out[name] = value
            self._proxied_headers(out, settings, request_id, start, sent_at, first_byte_at, via)
            if "x-kong-upstream-status" in settings.enabled_headers:
                out["X-Kong-Upstream-Status"] = str(upstream.status)
            if "Server" not in out:
                out["Server"] = _server_name(settings)
            length = upstream.length
            if (
                length is not None
                and length <= _BUFFER_LIMIT
                and not upstream.complete
                and match.route.get("response_buffering") is not False
            ):
                try:
                    data = await upstream.read()
                except UpstreamError:
                    return self._upstream_error(
                        request, state, 502, request_id, start, sent_at, extra
                    )
                return web.Response(
                    status=upstream.status, reason=upstream.reason, body=data, headers=out
                )
            response = web.StreamResponse(
                status=upstream.status, reason=upstream.reason, headers=out
            )
            if length is not None:
                response.content_length = length
            await response.prepare(request)
            try:
                async for chunk in upstream.iter_chunks():
                    await response.write(chunk)
            except UpstreamError:
                # The upstream broke off mid-body: nginx closes the client connection too.
                response.force_close()
                if request.transport is not None:
                    request.transport.close()
                return response
            await response.write_eof()
            return response
        finally:
            upstream.release()


class _TooLarge(Exception):
    pass


def create_proxy_app(runtime: Any) -> web.Application:
    """The proxy listener's application for one node (see :mod:`kongsim.runtime`)."""
    server = ProxyServer(runtime)
    app = web.Application(client_max_size=0)
    app.on_startup.append(server.on_startup)
    app.on_cleanup.append(server.on_cleanup)
    app.router.add_route("*", "/{tail:.*}", server.handle)
    return app
