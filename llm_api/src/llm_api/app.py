"""The FastAPI application: `create_app(settings)`, its lifespan, middleware and routes."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import ipaddress
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import aiohttp
import orjson
from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException

from llm_api import __version__
from llm_api.backends import DONE, Backend, Stream, Usage
from llm_api.backends.mock import MockBackend
from llm_api.backends.native import NativeBackend
from llm_api.backends.sse import KEEPALIVE
from llm_api.config import Config, load_config
from llm_api.errors import ApiError, UpstreamError, internal_error, model_not_found
from llm_api.observability import (
    ACCESS_LOGGER,
    CURRENT_REQUEST,
    Metrics,
    Redactor,
    RequestContext,
    exception_fields,
    quiet_libraries,
)
from llm_api.pricing import Prices
from llm_api.quotas import Quotas
from llm_api.router import Router
from llm_api.settings import Settings
from llm_api.validation import parse_json, validate_chat, validate_embeddings

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

ENDPOINTS = frozenset(
    {
        "/v1/chat/completions",
        "/v1/embeddings",
        "/v1/models",
        "/v1/models/{id}",
        "/health/live",
        "/health/ready",
        "/metrics",
    }
)
MAX_REQUEST_ID = 200
log = logging.getLogger(ACCESS_LOGGER)
T = TypeVar("T")


@dataclass
class Gateway:
    """The long-lived objects, built by the lifespan (app.state.gateway)."""

    config: Config
    router: Router
    created: int
    quotas: Quotas
    heartbeat: float
    secrets: list[str]
    """Provider keys and the gateway secret: redacted from provider messages and logs."""
    backends: dict[str, Backend]

    def not_ready(self) -> str | None:
        """Why some configured model cannot be served yet (None: every one can)."""
        for backend in self.backends.values():
            problem = getattr(backend, "not_ready", None)
            reason = problem() if problem is not None else None
            if reason:
                return str(reason)
        return None


class BodyTooLarge(ApiError):
    def __init__(self, limit: int) -> None:
        super().__init__(
            413,
            f"The request body exceeds the limit of {limit} bytes.",
            "invalid_request_error",
            "request_too_large",
        )


def _error_response(err: ApiError) -> Response:
    return Response(err.json(), err.status, err.headers, "application/json")


def _ctx(request: Request) -> RequestContext:
    ctx: RequestContext = request.scope["state"]["ctx"]
    return ctx


def _gateway(request: Request) -> Gateway:
    gw: Gateway | None = getattr(request.app.state, "gateway", None)
    if gw is None:
        raise ApiError(503, "The service is starting.", "server_error", "not_ready")
    return gw


def _set_usage(ctx: RequestContext, usage: Usage | None, reported: bool = True) -> None:
    """Record a request's tokens; `reported`: the provider's own counts (a stream cut short has
    only llm_api's count of what it received, which quotas must not settle to)."""
    if usage is not None:
        ctx.tokens_in, ctx.tokens_out = usage.prompt_tokens, usage.completion_tokens
        ctx.usage_reported = reported


CLIENT_CLOSED = 499  # nginx's (and Kong's log's) status for a client that went away


class SSEResponse(Response):
    """Streams an upstream Stream as SSE; a failure in the middle ends it with an error event.

    Beside the stream, one watcher task waits for the client's `http.disconnect` (uvicorn's
    `send` returns silently once the client is gone, so only `receive` tells) and, while the
    stream has sent nothing for `heartbeat` seconds, sends an SSE comment. A disconnect cancels
    the stream where it waits (reading the provider or writing to the client): the provider
    connection is closed at once, and the request ends as `client_closed` (499) with the tokens
    seen so far. The watcher's timer runs once per heartbeat interval, not once per chunk.
    """

    def __init__(
        self,
        stream: Stream,
        ctx: RequestContext,
        heartbeat: float,
        secrets: list[str],
    ) -> None:
        super().__init__(media_type="text/event-stream")
        self._stream = stream
        self._ctx = ctx
        self._heartbeat = heartbeat
        self._secrets = secrets
        self._last_send = 0.0
        self._client_gone = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"text/event-stream; charset=utf-8"),
                    (b"cache-control", b"no-cache"),
                    (b"x-accel-buffering", b"no"),  # proxies (Kong/nginx) must not buffer
                ],
            }
        )
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None
        self._last_send = loop.time()
        watcher = loop.create_task(self._watch(receive, send, task))
        ctx = self._ctx
        tail = b""
        try:
            async for data in self._stream:
                if self._client_gone:
                    break  # the cancellation was swallowed below us (a library's own handling)
                if ctx.first_chunk is None and data.startswith(b"data:"):
                    ctx.first_chunk = time.perf_counter()
                if data.endswith(DONE):
                    # Clients take [DONE] as the end: it goes out as the last body message,
                    # after the stream's usage is recorded (the reservation is settled before
                    # the last message is sent).
                    tail = data
                    continue
                self._last_send = loop.time()
                await send({"type": "http.response.body", "body": data, "more_body": True})
        except asyncio.CancelledError:
            if not self._client_gone:
                raise
            task.uncancel()
        except UpstreamError as exc:
            err = exc.to_api_error(self._secrets)
            ctx.error_code = exc.kind.value
            tail = b"data: " + err.json() + b"\n\n"
        except Exception as exc:
            err = internal_error(ctx.request_id)
            ctx.error_code = err.code
            fields = {"request_id": ctx.request_id, **exception_fields(exc, self._secrets)}
            log.error("unexpected error in a stream", extra={"fields": fields})
            tail = b"data: " + err.json() + b"\n\n"
        finally:
            watcher.cancel()
            # A heartbeat that failed to send has nothing to add to how the stream ended.
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await watcher
            await self._stream.aclose()
            usage = self._stream.usage
            _set_usage(ctx, usage or self._stream.partial_usage(), reported=usage is not None)
        if self._client_gone:
            ctx.status = CLIENT_CLOSED
            ctx.error_code = "client_closed"
            return
        await send({"type": "http.response.body", "body": tail, "more_body": False})

    async def _watch(self, receive: Receive, send: Send, task: asyncio.Task[Any]) -> None:
        """Cancel `task` when the client disconnects; send heartbeats while the stream waits."""
        loop = asyncio.get_running_loop()
        interval = self._heartbeat or None
        message = asyncio.ensure_future(receive())
        try:
            while True:
                timeout = None
                if interval is not None:
                    timeout = max(self._last_send + interval - loop.time(), 0.0)
                done, _ = await asyncio.wait((message,), timeout=timeout)
                if done:
                    if message.result()["type"] == "http.disconnect":
                        self._client_gone = True
                        task.cancel()
                        return
                    message = asyncio.ensure_future(receive())  # more body: not for us
                    continue
                if interval is not None and loop.time() - self._last_send >= interval:
                    self._last_send = loop.time()
                    await send({"type": "http.response.body", "body": KEEPALIVE, "more_body": True})
        finally:
            if not message.done():
                message.cancel()


class Unsent(Response):
    """What a client that went away gets: nothing; the request ends as `client_closed` (499)."""

    def __init__(self, ctx: RequestContext) -> None:
        super().__init__()
        self._ctx = ctx

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self._ctx.status = CLIENT_CLOSED
        self._ctx.error_code = "client_closed"


class ClientGone(Exception):
    """The client disconnected while llm_api waited for the provider; `result` is the answer
    when it came all the same (a library below swallowed the cancellation), else None."""

    def __init__(self, result: Any = None) -> None:
        super().__init__()
        self.result = result


async def unless_client_leaves(request: Request, call: Awaitable[T]) -> T:
    """Await `call` (a provider's whole answer, or a stream's first bytes) unless the client
    disconnects first: then `call` is cancelled where it waits, which closes the provider's
    connection (no tokens generated for nobody), and ClientGone is raised.

    The body has been read whole, so the next ASGI message can only be `http.disconnect` (and
    asking for it is what makes uvicorn read the socket again): one watcher task waits for it,
    cancelled as soon as the answer is there.
    """
    task = asyncio.current_task()
    assert task is not None
    gone = False

    async def watch() -> None:
        nonlocal gone
        while (await request.receive())["type"] != "http.disconnect":
            pass  # more body: not for us
        gone = True
        task.cancel()

    watcher = asyncio.get_running_loop().create_task(watch())
    try:
        result = await call
    except asyncio.CancelledError:
        if not gone:
            raise
        task.uncancel()
        raise ClientGone() from None
    finally:
        watcher.cancel()
    if gone:  # the answer came, but a library below swallowed the cancellation
        task.uncancel()
        raise ClientGone(result)
    return result


async def answer(
    request: Request, ctx: RequestContext, call: Awaitable[tuple[bytes, Usage | None]]
) -> Response:
    """The provider's whole answer as the response; nothing when the client left meanwhile."""
    try:
        data, usage = await unless_client_leaves(request, call)
    except ClientGone as gone:
        if gone.result is not None:
            _set_usage(ctx, gone.result[1])
        return Unsent(ctx)
    _set_usage(ctx, usage)
    return Response(data, media_type="application/json")


def build_routes() -> APIRouter:
    # Plain Starlette routes taking the raw Request: the body is forwarded as sent (see
    # validation.py), and skipping FastAPI's dependency solving and body models keeps the
    # per-request cost in microseconds.
    api = APIRouter()

    async def chat_completions(request: Request) -> Response:
        ctx = _ctx(request)
        gw = _gateway(request)
        body = parse_json(await request.body())
        model = ctx.model = validate_chat(body)
        if not gw.router.has_model(model):
            raise model_not_found(model)
        if gw.quotas.enabled:
            ctx.reservation, ctx.rate_headers = await gw.quotas.reserve(ctx.consumer, body, True)
        if body.get("stream"):
            ctx.stream = True
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))

            async def open_stream(backend: Backend, dep: Any) -> Stream:
                return await backend.open_stream(dep, body, include_usage)

            try:
                stream = await unless_client_leaves(
                    request, gw.router.execute(model, ctx, open_stream)
                )
            except ClientGone as gone:
                if gone.result is not None:
                    await gone.result.aclose()
                return Unsent(ctx)
            return SSEResponse(stream, ctx, gw.heartbeat, gw.secrets)

        async def chat(backend: Backend, dep: Any) -> tuple[bytes, Usage | None]:
            return await backend.chat(dep, body)

        return await answer(request, ctx, gw.router.execute(model, ctx, chat))

    async def embeddings(request: Request) -> Response:
        ctx = _ctx(request)
        gw = _gateway(request)
        body = parse_json(await request.body())
        model = ctx.model = validate_embeddings(body)
        if not gw.router.has_model(model):
            raise model_not_found(model)
        if gw.quotas.enabled:
            ctx.reservation, ctx.rate_headers = await gw.quotas.reserve(ctx.consumer, body, False)

        async def embed(backend: Backend, dep: Any) -> tuple[bytes, Usage | None]:
            return await backend.embeddings(dep, body)

        return await answer(request, ctx, gw.router.execute(model, ctx, embed))

    def model_object(gw: Gateway, name: str) -> dict[str, object]:
        return {"id": name, "object": "model", "created": gw.created, "owned_by": "ai-gateway"}

    async def models(request: Request) -> Response:
        gw = _gateway(request)
        data = [model_object(gw, name) for name in gw.config.model_names]
        return _json({"object": "list", "data": data})

    async def model(request: Request) -> Response:
        gw = _gateway(request)
        name = request.path_params["model_id"]
        if not gw.router.has_model(name):
            raise model_not_found(name)
        return _json(model_object(gw, name))

    async def live(request: Request) -> Response:
        return _json({"status": "ok"})

    async def ready(request: Request) -> Response:
        gw = getattr(request.app.state, "gateway", None)
        if gw is None:
            return _json({"status": "starting"}, 503)
        reason = gw.not_ready()
        if reason is not None:
            return _json({"status": "not_ready", "reason": reason}, 503)
        return _json({"status": "ready", "models": len(gw.config.model_names)})

    async def metrics(request: Request) -> Response:
        registry = request.app.state.metrics.scrape_registry()
        return Response(generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    api.add_route("/v1/chat/completions", chat_completions, methods=["POST"])
    api.add_route("/v1/embeddings", embeddings, methods=["POST"])
    api.add_route("/v1/models", models, methods=["GET"])
    api.add_route("/v1/models/{model_id:path}", model, methods=["GET"])
    api.add_route("/health/live", live, methods=["GET"])
    api.add_route("/health/ready", ready, methods=["GET"])
    api.add_route("/metrics", metrics, methods=["GET"])
    return api


def _json(obj: object, status: int = 200) -> Response:
    return Response(orjson.dumps(obj), status, media_type="application/json")


class GatewayMiddleware:
    """Request id, gateway secret, body limit, then one log line and the metrics per request."""

    def __init__(
        self,
        app: Any,
        settings: Settings,
        metrics: Metrics,
        fastapi: FastAPI,
        consumers: frozenset[str],
        prices: Prices,
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.fastapi = fastapi
        self.consumers = consumers
        self.prices = prices
        self.metrics_allow = settings.metrics_allow
        self.max_body = settings.max_body_bytes
        self.access_log = settings.access_log
        secret = settings.gateway_secret
        self.secret = secret.get_secret_value().encode() if secret else None
        self.secret_header = settings.gateway_secret_header.lower().encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        kong_id = username = consumer_id = given_secret = length = None
        for name, value in scope["headers"]:
            if name == b"x-kong-request-id":
                kong_id = value
            elif name == b"x-consumer-username":
                username = value
            elif name == b"x-consumer-id":
                consumer_id = value
            elif name == b"content-length":
                length = value
            elif name == self.secret_header:
                given_secret = value
        request_id = _request_id(kong_id)
        path = scope["path"]
        # Kong's consumer headers are believed only on requests that carry the gateway secret
        # (compared in constant time): anyone else could claim any consumer's identity.
        trusted = (
            self.secret is not None
            and given_secret is not None
            and hmac.compare_digest(given_secret, self.secret)
        )
        consumer_id_s = _header_text(consumer_id) if trusted else None
        consumer = (_header_text(username) if trusted else None) or consumer_id_s or "anonymous"
        ctx = RequestContext(
            request_id=request_id,
            consumer=consumer,
            consumer_id=consumer_id_s,
            endpoint=_endpoint(path),
            start=start,
        )
        # A bounded label: configured consumers by name, every other one as `other`.
        if consumer in self.consumers or consumer == "anonymous":
            ctx.consumer_label = consumer
        else:
            ctx.consumer_label = "other"
        scope.setdefault("state", {})["ctx"] = ctx
        token = CURRENT_REQUEST.set(ctx)
        rid_header = (b"x-request-id", request_id.encode())

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                ctx.status = message["status"]
                message["headers"] = [*message.get("headers", ()), rid_header, *ctx.rate_headers]
            res = ctx.reservation
            last = (
                res is not None
                and message["type"] == "http.response.body"
                and not message.get("more_body", False)
            )
            if last and res.near_limit:
                # Near the limit the settlement is written to Redis before the answer's last
                # bytes go out, so the client's next request, through any replica, reaches Redis
                # after it and finds the unused tokens returned instead of being refused while
                # the quota has room (even when this process is not scheduled again for a
                # while). Nothing waits for Redis's reply: its work is not on the answer's path.
                self._settle(ctx)
            await send(message)
            if last:
                # Farther from the limit it is settled here, after the send (a no-op when it was
                # settled above), and goes out with the other Redis commands of this loop pass.
                self._settle(ctx)

        try:
            err = self._reject(path, trusted, length, scope.get("client"))
            if err is not None:
                await self._send_error(err, ctx, send_with_id)
                return
            received = 0

            async def limited_receive() -> Message:
                nonlocal received
                message = await receive()
                if message["type"] == "http.request":
                    received += len(message.get("body", b""))
                    if received > self.max_body:
                        raise BodyTooLarge(self.max_body)
                return message

            await self.app(scope, limited_receive, send_with_id)
        except Exception as exc:
            # Unexpected: only the request id goes out; the log line has the exception's type
            # and its traceback, redacted (it can carry provider URLs and keys).
            gw: Gateway | None = getattr(self.fastapi.state, "gateway", None)
            fields = {"request_id": request_id, **exception_fields(exc, gw.secrets if gw else [])}
            log.error("unexpected error", extra={"fields": fields})
            if ctx.status == 0:
                await self._send_error(internal_error(request_id), ctx, send_with_id)
            ctx.error_code = "internal_error"
        finally:
            CURRENT_REQUEST.reset(token)
            self._finish(ctx, path)

    def _reject(
        self, path: str, trusted: bool, length: bytes | None, client: Any
    ) -> ApiError | None:
        protected = path == "/v1" or path.startswith("/v1/")
        if path == "/metrics" and self.metrics_allow and not _allowed(client, self.metrics_allow):
            return ApiError(403, "Forbidden.", "permission_error", "forbidden")
        if self.secret is not None and protected and not trusted:
            return ApiError(
                401,
                "Missing or invalid gateway secret.",
                "authentication_error",
                "invalid_gateway_secret",
            )
        if length is not None:
            try:
                too_large = int(length) > self.max_body
            except ValueError:
                return ApiError(400, "Invalid Content-Length.", "invalid_request_error")
            if too_large:
                return BodyTooLarge(self.max_body)
        return None

    async def _send_error(self, err: ApiError, ctx: RequestContext, send: Send) -> None:
        ctx.error_code = err.code
        headers = [(b"content-type", b"application/json")]
        headers += [(k.lower().encode(), v.encode()) for k, v in err.headers.items()]
        await send({"type": "http.response.start", "status": err.status, "headers": headers})
        await send({"type": "http.response.body", "body": err.json()})

    def _model_label(self, ctx: RequestContext) -> str | None:
        gw: Gateway | None = getattr(self.fastapi.state, "gateway", None)
        model = ctx.model
        if model is not None and (gw is None or not gw.router.has_model(model)):
            model = "unknown"  # a client's arbitrary model names must not become label values
        return model

    def _price(self, ctx: RequestContext) -> None:
        known = ctx.tokens_in is not None or ctx.tokens_out is not None
        if ctx.cost is None and ctx.status == 200 and known:
            ctx.cost = self.prices.cost(ctx.deployment, ctx.tokens_in or 0, ctx.tokens_out or 0)

    def _settle(self, ctx: RequestContext) -> None:
        """Settle the request's quota reservation, once (at its last send, else at its end)."""
        gw: Gateway | None = getattr(self.fastapi.state, "gateway", None)
        res, ctx.reservation = ctx.reservation, None
        if res is None or gw is None:
            return
        self._price(ctx)
        # A request the client left (a stream in its middle, or while the provider was
        # answering) may have had tokens generated and billed: its reservation is settled like a
        # served answer's (to the provider's usage when it came, else kept whole), never
        # released.
        answered = ctx.status in (200, CLIENT_CLOSED)
        reported = ctx.usage_reported
        gw.quotas.settle(
            res,
            self._model_label(ctx) or "",
            answered,
            ctx.tokens_in if reported else None,
            ctx.tokens_out if reported else None,
            ctx.cost if reported else None,
        )

    def _finish(self, ctx: RequestContext, path: str) -> None:
        latency = time.perf_counter() - ctx.start
        model = self._model_label(ctx)
        self._price(ctx)
        self.metrics.finish(ctx, model or "", latency)
        self._settle(ctx)
        if self.access_log and ctx.endpoint not in ("/health/live", "/health/ready", "/metrics"):
            level = logging.WARNING if ctx.status >= 500 else logging.INFO
            log.log(level, "request", extra={"fields": ctx.log_fields(latency)})


def _allowed(
    client: Any, networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]
) -> bool:
    """Whether the client address (ASGI `client`) is in one of `networks`."""
    if not client:
        return False
    try:
        address = ipaddress.ip_address(client[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in net for net in networks)


def _endpoint(path: str) -> str:
    """The metrics label of a path: a known endpoint, else "other" (bounded label values)."""
    if path in ENDPOINTS:
        return path
    if path.startswith("/v1/models/"):
        return "/v1/models/{id}"
    return "other"


def _header_text(value: bytes | None) -> str | None:
    if not value:
        return None
    return value.decode("latin-1")[:MAX_REQUEST_ID]


def _request_id(kong_id: bytes | None) -> str:
    """Kong's request id when it sent a sane one (printable ASCII), else a new one."""
    if kong_id and len(kong_id) <= MAX_REQUEST_ID and kong_id.isascii():
        text = kong_id.decode()
        if text.isprintable() and " " not in text:
            return text
    return uuid.uuid4().hex


def create_app(settings: Settings | None = None, config: Config | None = None) -> FastAPI:
    """Build the app. The config is loaded here, so a bad one fails before serving anything.

    Also the uvicorn factory (`llm_api.app:create_app`): then settings come from the environment.
    """
    settings = settings or Settings()
    exposure = settings.exposure_error()
    if exposure is not None:
        raise RuntimeError(exposure)
    config = config or load_config(settings.config)
    metrics = Metrics()
    quotas = Quotas(config, metrics.registry)
    prices = Prices(config)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        quiet_libraries()
        connector = aiohttp.TCPConnector(limit=settings.upstream_max_connections, ttl_dns_cache=300)
        # HTTP(S)_PROXY and NO_PROXY apply to every provider, as on LiteLLM's path: resolved once
        # per deployment (backends/native.py: env_proxy), not by aiohttp's trust_env, which
        # re-reads the environment and ~/.netrc in a thread on every request.
        session = aiohttp.ClientSession(connector=connector, trust_env=False)
        rules = translated = None
        backends: dict[str, Backend] = {"mock": MockBackend()}
        if config.needs_litellm:
            # LiteLLM costs ~3 s of CPU and ~190 MB to import: only when a deployment needs it
            # (translation, or a native model with per-model rules), in a thread, so that the
            # native path serves meanwhile; readiness waits for it.
            from llm_api.backends.rules import ParamRules
            from llm_api.backends.translated import TranslatedBackend, start_import

            litellm_import = start_import()
            if any(d.param_rules for d in config.deployments):
                rules = ParamRules(litellm_import)
            if any(d.transport == "litellm" for d in config.deployments):
                translated = backends["litellm"] = TranslatedBackend(session, litellm_import)
        backends["native"] = NativeBackend(session, rules)
        secrets = config.secrets
        if settings.gateway_secret is not None:
            secrets.append(settings.gateway_secret.get_secret_value())
        redactor = Redactor(secrets)
        handlers = list(logging.getLogger().handlers)
        for handler in handlers:
            handler.addFilter(redactor)
        await quotas.start()
        app.state.gateway = Gateway(
            config,
            Router(config, backends, metrics),
            int(time.time()),
            quotas,
            settings.heartbeat_seconds,
            secrets,
            backends,
        )
        try:
            yield
        finally:
            app.state.gateway = None
            await quotas.stop()
            await session.close()
            if translated is not None:
                await translated.aclose()
            elif rules is not None:
                rules.close()
            for handler in handlers:
                handler.removeFilter(redactor)

    app = FastAPI(
        title="llm_api",
        version=__version__,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        # FastAPI's native OpenTelemetry hooks check their providers on every request; the
        # service has its own metrics and logs.
        telemetry={"tracing": False, "metrics": False, "logs": False, "operation_spans": False},
    )
    app.state.metrics = metrics
    app.state.gateway = None
    app.include_router(build_routes())

    async def api_error(request: Request, exc: Exception) -> Response:
        if isinstance(exc, UpstreamError):
            gw: Gateway | None = getattr(request.app.state, "gateway", None)
            err = exc.to_api_error(gw.secrets if gw else ())
            _ctx(request).error_code = exc.kind.value  # bounded label values, not the provider's
            return _error_response(err)
        assert isinstance(exc, ApiError)
        _ctx(request).error_code = exc.code
        return _error_response(exc)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        if exc.status_code == 405:
            err = ApiError(
                405, "Method not allowed.", "invalid_request_error", "method_not_allowed"
            )
        else:
            err = ApiError(exc.status_code, "Not found.", "invalid_request_error", "not_found")
        _ctx(request).error_code = err.code
        return _error_response(err)

    async def validation_error(request: Request, exc: Exception) -> Response:
        err = ApiError(400, "Invalid request.", "invalid_request_error", "invalid_value")
        _ctx(request).error_code = err.code
        return _error_response(err)

    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(UpstreamError, api_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_middleware(
        GatewayMiddleware,
        settings=settings,
        metrics=metrics,
        fastapi=app,
        consumers=frozenset(config.consumers),
        prices=prices,
    )
    return app
