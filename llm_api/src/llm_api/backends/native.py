"""The OpenAI-compatible fast path: one shared aiohttp session, bytes passed through.

LiteLLM's per-request machinery costs 4-10 ms of CPU per call (../shared/litellm-facts.md);
for providers that already speak OpenAI's wire format there is nothing to translate, so this
path forwards the request with the deployment's model and key, and returns the provider's bytes
(parsed only for token usage and for stream framing).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import orjson

from llm_api.backends import DONE, Usage
from llm_api.config import Deployment
from llm_api.errors import Kind, UpstreamError, classify_status


def _headers(dep: Deployment) -> dict[str, str]:
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    if dep.api_key:
        headers["Authorization"] = f"Bearer {dep.api_key}"
    return headers


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
) -> aiohttp.ClientResponse:
    """POST `body`; the open response, or UpstreamError (`http_error` classifies a status >= 400
    from the response and its body)."""
    try:
        resp = await session.post(url, data=body, headers=headers, timeout=client_timeout)
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


class SSEFramer:
    """Cuts a response's bytes into whole SSE events (without the blank line that ends each)."""

    def __init__(self) -> None:
        self._buf = b""

    def feed(self, data: bytes) -> list[bytes]:
        """The events that `data` completes; an unfinished one waits for the next read."""
        buf = self._buf + data
        if b"\r" in buf:
            buf = buf.replace(b"\r\n", b"\n")
        *events, self._buf = buf.split(b"\n\n")
        return events


class NativeStream:
    """Re-frames the provider's SSE stream into whole events, reads usage, stops at [DONE]."""

    def __init__(self, resp: aiohttp.ClientResponse, include_usage: bool) -> None:
        self.usage: Usage | None = None
        self._resp = resp
        self._include_usage = include_usage

    async def __aiter__(self) -> AsyncIterator[bytes]:
        framer = SSEFramer()
        done = False
        try:
            async for data in self._resp.content.iter_any():
                out = []
                for ev in framer.feed(data):
                    if done:
                        break
                    kept = self._event(ev)
                    if kept is DONE:
                        done = True
                    if kept:
                        out.append(kept)
                if out:
                    yield b"".join(out)
                if done:
                    return
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise transport_error(exc) from None
        finally:
            self._resp.release()
        # The provider closed the stream without [DONE]: the answer is incomplete.
        raise UpstreamError(Kind.SERVER)

    def _event(self, ev: bytes) -> bytes | None:
        if not ev.startswith(b"data:"):
            return None  # comments (": keep-alive") and event names carry nothing for clients
        payload = ev[5:].strip()
        if payload == b"[DONE]":
            return DONE
        if payload.startswith(b'{"error"'):
            raise UpstreamError(Kind.SERVER)
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

    async def aclose(self) -> None:
        self._resp.release()


class NativeBackend:
    def __init__(self, session: aiohttp.ClientSession) -> None:
        self._session = session
        self._prepared: dict[str, tuple[dict[str, str], aiohttp.ClientTimeout, Any]] = {}

    def _prep(self, dep: Deployment) -> tuple[dict[str, str], aiohttp.ClientTimeout, Any]:
        found = self._prepared.get(dep.id)
        if found is None:
            found = (_headers(dep), *client_timeouts(dep))
            self._prepared[dep.id] = found
        return found

    async def _post(
        self, dep: Deployment, path: str, payload: dict[str, Any], stream: bool
    ) -> aiohttp.ClientResponse:
        headers, timeout, stream_timeout = self._prep(dep)
        url, body = f"{dep.api_base}{path}", orjson.dumps(payload)
        timeout = stream_timeout if stream else timeout
        return await post(self._session, url, body, headers, timeout, _status_error)

    async def _call(
        self, dep: Deployment, path: str, payload: dict[str, Any]
    ) -> tuple[bytes, Usage | None]:
        data = await read_all(await self._post(dep, path, payload, stream=False))
        return data, Usage.from_openai(json_object(data).get("usage"))

    async def chat(self, dep: Deployment, body: dict[str, Any]) -> tuple[bytes, Usage | None]:
        return await self._call(dep, "/chat/completions", {**body, "model": dep.upstream_model})

    async def embeddings(self, dep: Deployment, body: dict[str, Any]) -> tuple[bytes, Usage | None]:
        return await self._call(dep, "/embeddings", {**body, "model": dep.upstream_model})

    async def open_stream(
        self, dep: Deployment, body: dict[str, Any], include_usage: bool
    ) -> NativeStream:
        options = body.get("stream_options") or {}
        payload = {
            **body,
            "model": dep.upstream_model,
            "stream": True,
            "stream_options": {**options, "include_usage": True},
        }
        resp = await self._post(dep, "/chat/completions", payload, stream=True)
        return NativeStream(resp, include_usage)


async def close_session(session: aiohttp.ClientSession) -> None:
    await session.close()
    await asyncio.sleep(0)  # let aiohttp's connector finish closing its transports
