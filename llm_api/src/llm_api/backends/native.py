"""The OpenAI-compatible fast path: one shared aiohttp session, bytes passed through.

LiteLLM's per-request machinery costs 4-10 ms of CPU per call (../shared/litellm-facts.md);
for providers that already speak OpenAI's wire format there is nothing to translate, so this
path forwards the request with the deployment's model and key, and returns the provider's bytes
(parsed only for token usage and for stream framing).
"""

from __future__ import annotations

import urllib.request
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

import aiohttp
import orjson
from yarl import URL

from llm_api.backends import DONE, Usage
from llm_api.backends.sse import KEEPALIVE, SSEFramer, is_comment, parse_event
from llm_api.config import NATIVE_REQUEST_OPTIONS, Deployment
from llm_api.errors import Kind, UpstreamError, classify_status
from llm_api.observability import CURRENT_REQUEST, note_upstream_request_id

if TYPE_CHECKING:
    from llm_api.backends.rules import ParamRules

# OpenAI's header for a caller's own request id (echoed in its logs and support requests).
REQUEST_ID_HEADER = "X-Client-Request-Id"


def _headers(dep: Deployment) -> dict[str, str]:
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    if dep.api_key:
        headers["Authorization"] = f"Bearer {dep.api_key}"
    options = dep.extra_params
    if options.get("organization"):
        headers["OpenAI-Organization"] = str(options["organization"])
    headers.update({str(k): str(v) for k, v in (options.get("extra_headers") or {}).items()})
    return headers


Proxy = tuple[str | None, aiohttp.BasicAuth | None]


def env_proxy(url: str) -> Proxy:
    """The proxy for `url` from HTTPS_PROXY/HTTP_PROXY/NO_PROXY (and their lower-case forms),
    with its credentials. Read once per deployment, whose URL is fixed: aiohttp's own
    `trust_env` would re-read the environment and ~/.netrc (in a thread) on every request."""
    proxies = urllib.request.getproxies_environment()
    target = URL(url)
    host = target.host or ""
    proxy = proxies.get(target.scheme)
    bypass = urllib.request.proxy_bypass_environment  # type: ignore[attr-defined]
    if not proxy or not host or bypass(host, proxies):
        return None, None
    proxy_url = URL(proxy)
    return str(proxy_url.with_user(None)), aiohttp.BasicAuth.from_url(proxy_url)


def request_headers(headers: dict[str, str]) -> dict[str, str]:
    """`headers` plus llm_api's request id, so that the provider's logs can be matched."""
    ctx = CURRENT_REQUEST.get()
    if ctx is None:
        return headers
    return {**headers, REQUEST_ID_HEADER: ctx.request_id}


def transport_error(exc: BaseException) -> UpstreamError:
    """Classify a failure to talk to the provider (no HTTP status to go by)."""
    if isinstance(exc, TimeoutError):  # aiohttp's ServerTimeoutError is a TimeoutError too
        return UpstreamError(Kind.TIMEOUT)
    if isinstance(exc, aiohttp.ClientConnectorError | aiohttp.ServerDisconnectedError):
        return UpstreamError(Kind.CONNECTION)  # refused, DNS failure, reset before an answer
    return UpstreamError(Kind.SERVER)  # broken or truncated response


def json_object(data: bytes) -> dict[str, Any]:
    """A provider's JSON object; anything else is a broken answer."""
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise UpstreamError(Kind.SERVER) from None
    if not isinstance(obj, dict):
        raise UpstreamError(Kind.SERVER)
    return obj


def client_timeouts(dep: Deployment) -> tuple[aiohttp.ClientTimeout, aiohttp.ClientTimeout]:
    """The deployment's (plain, stream) timeouts; for streams it bounds each wait for data."""
    stream_timeout = aiohttp.ClientTimeout(
        total=None, sock_connect=dep.timeout, sock_read=dep.stream_timeout
    )
    return aiohttp.ClientTimeout(total=dep.timeout), stream_timeout


async def post(
    session: aiohttp.ClientSession,
    url: str,
    body: bytes,
    headers: dict[str, str],
    client_timeout: aiohttp.ClientTimeout,
    http_error: Callable[[aiohttp.ClientResponse, bytes], UpstreamError],
    proxy: Proxy = (None, None),
) -> aiohttp.ClientResponse:
    """POST `body`; the open response, or UpstreamError (`http_error` classifies a status >= 400
    from the response and its body)."""
    try:
        resp = await session.post(
            url,
            data=body,
            headers=request_headers(headers),
            timeout=client_timeout,
            proxy=proxy[0],
            proxy_auth=proxy[1],
        )
        note_upstream_request_id(resp.headers)
        if resp.status >= 400:
            data = await resp.read()
            resp.release()
            raise http_error(resp, data)
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise transport_error(exc) from None
    return resp


async def read_all(resp: aiohttp.ClientResponse) -> bytes:
    """The whole body of a response, which is then released."""
    try:
        return await resp.read()
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise transport_error(exc) from None
    finally:
        resp.release()


def _status_error(resp: aiohttp.ClientResponse, body: bytes) -> UpstreamError:
    return classify_status(resp.status, body, resp.headers.get("Retry-After"))


class NativeStream:
    """Re-frames the provider's SSE stream into whole events, reads usage, stops at [DONE]."""

    def __init__(self, resp: aiohttp.ClientResponse, include_usage: bool) -> None:
        self.usage: Usage | None = None
        self._resp = resp
        self._include_usage = include_usage
        self._content_chunks = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        framer = SSEFramer()
        done = False
        try:
            async for data in self._resp.content.iter_any():
                out = []
                for ev in framer.feed(data):
                    kept = self._event(ev)
                    if kept is DONE:
                        done = True
                        out.append(kept)
                        break
                    if kept:
                        out.append(kept)
                if out:
                    yield b"".join(out)
                if done:
                    return
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise transport_error(exc) from None
        finally:
            self._resp.release()  # closes the connection unless the body was read to its end
        # The provider closed the stream without [DONE]: the answer is incomplete.
        raise UpstreamError(Kind.SERVER)

    def _event(self, ev: bytes) -> bytes | None:
        _, payload = parse_event(ev)
        if payload is None:
            # A provider's keep-alive comment is passed on (idle timeouts downstream see
            # traffic); event names and ids carry nothing for clients.
            return KEEPALIVE if ev and is_comment(ev) else None
        payload = payload.strip()
        if payload == b"[DONE]":
            return DONE
        if b"\n" in payload:  # several data: lines: one compact line for clients
            payload = orjson.dumps(json_object(payload))
        if payload.startswith(b'{"error"'):
            raise UpstreamError(Kind.SERVER)
        if b'"content":"' in payload:
            self._content_chunks += 1
        if b'"usage"' in payload and b'"usage":null' not in payload:
            obj = json_object(payload)
            if "error" in obj:
                raise UpstreamError(Kind.SERVER)
            usage = Usage.from_openai(obj.get("usage"))
            if usage is not None:
                self.usage = usage
                # We always ask for usage (for metrics); drop the usage-only chunk when the
                # client did not.
                if not self._include_usage and not obj.get("choices"):
                    return None
        return b"data: " + payload + b"\n\n"

    def partial_usage(self) -> Usage | None:
        return self.usage or Usage(0, self._content_chunks)

    async def aclose(self) -> None:
        self._resp.release()


class NativeBackend:
    def __init__(self, session: aiohttp.ClientSession, rules: ParamRules | None = None) -> None:
        self._session = session
        self._rules = rules
        self._prepared: dict[str, tuple[dict[str, str], Any, Any, Proxy]] = {}
        self._defaults: dict[str, dict[str, Any]] = {}

    def not_ready(self) -> str | None:
        return self._rules.not_ready() if self._rules is not None else None

    def _prep(self, dep: Deployment) -> tuple[dict[str, str], Any, Any, Proxy]:
        found = self._prepared.get(dep.id)
        if found is None:
            found = (_headers(dep), *client_timeouts(dep), env_proxy(dep.api_base or ""))
            self._prepared[dep.id] = found
        return found

    async def _post(
        self, dep: Deployment, path: str, payload: dict[str, Any], stream: bool
    ) -> aiohttp.ClientResponse:
        headers, timeout, stream_timeout, proxy = self._prep(dep)
        url, body = f"{dep.api_base}{path}", orjson.dumps(payload)
        timeout = stream_timeout if stream else timeout
        return await post(self._session, url, body, headers, timeout, _status_error, proxy)

    async def _call(
        self, dep: Deployment, path: str, payload: dict[str, Any]
    ) -> tuple[bytes, Usage | None]:
        data = await read_all(await self._post(dep, path, payload, stream=False))
        return data, Usage.from_openai(json_object(data).get("usage"))

    async def chat(self, dep: Deployment, body: dict[str, Any]) -> tuple[bytes, Usage | None]:
        payload = self._payload(dep, body)
        if dep.param_rules and self._rules is not None:
            payload = await self._rules.apply(dep, payload)
        return await self._call(dep, "/chat/completions", payload)

    async def embeddings(self, dep: Deployment, body: dict[str, Any]) -> tuple[bytes, Usage | None]:
        return await self._call(dep, "/embeddings", {**body, "model": dep.upstream_model})

    def _payload(self, dep: Deployment, body: dict[str, Any]) -> dict[str, Any]:
        """The provider's chat body: the deployment's defaults under the client's parameters,
        its `extra_body`, and LiteLLM's rules for the model (o-series, gpt-5) when it has any."""
        defaults = self._defaults.get(dep.id)
        if defaults is None:
            defaults = {k: v for k, v in dep.extra_params.items() if k in NATIVE_REQUEST_OPTIONS}
            defaults.update(dep.extra_params.get("extra_body") or {})
            self._defaults[dep.id] = defaults
        return {**defaults, **body, "model": dep.upstream_model}

    async def open_stream(
        self, dep: Deployment, body: dict[str, Any], include_usage: bool
    ) -> NativeStream:
        options = body.get("stream_options") or {}
        payload = self._payload(dep, body)
        if dep.param_rules and self._rules is not None:
            payload = await self._rules.apply(dep, payload)
        payload.update(stream=True, stream_options={**options, "include_usage": True})
        resp = await self._post(dep, "/chat/completions", payload, stream=True)
        return NativeStream(resp, include_usage)
