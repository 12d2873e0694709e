"""The OpenAI-compatible fast path: one shared aiohttp session, bytes passed through.

LiteLLM's per-request machinery costs 4-10 ms of CPU per call (../shared/litellm-facts.md);
for providers that already speak OpenAI's wire format there is nothing to translate, so this
path forwards the request with the deployment's model and key, and returns the provider's bytes
(parsed only for token usage and for stream framing).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
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


def _transport_error(exc: BaseException) -> UpstreamError:
    """Classify a failure to talk to the provider (no HTTP status to go by)."""
    if isinstance(exc, TimeoutError):  # aiohttp's ServerTimeoutError is a TimeoutError too
        return UpstreamError(Kind.TIMEOUT)
    if isinstance(exc, aiohttp.ClientConnectorError | aiohttp.ServerDisconnectedError):
        return UpstreamError(Kind.CONNECTION)  # refused, DNS failure, reset before an answer
    return UpstreamError(Kind.SERVER)  # broken or truncated response


class NativeStream:
    """Re-frames the provider's SSE stream into whole events, reads usage, stops at [DONE]."""

    def __init__(self, resp: aiohttp.ClientResponse, include_usage: bool) -> None:
        self.usage: Usage | None = None
        self._resp = resp
        self._include_usage = include_usage

    async def __aiter__(self) -> AsyncIterator[bytes]:
        buf = b""
        done = False
        try:
            async for data in self._resp.content.iter_any():
                buf += data
                if b"\r" in buf:
                    buf = buf.replace(b"\r\n", b"\n")
                *events, buf = buf.split(b"\n\n")
                out = []
                for ev in events:
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
            raise _transport_error(exc) from None
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
            try:
                obj = orjson.loads(payload)
            except orjson.JSONDecodeError:
                raise UpstreamError(Kind.SERVER) from None
            if not isinstance(obj, dict):
                raise UpstreamError(Kind.SERVER)
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
            # For streams the timeout bounds the wait for each piece of data, not the whole.
            stream_timeout = aiohttp.ClientTimeout(
                total=None, sock_connect=dep.timeout, sock_read=dep.stream_timeout
            )
            found = (_headers(dep), aiohttp.ClientTimeout(total=dep.timeout), stream_timeout)
            self._prepared[dep.id] = found
        return found

    async def _post(
        self, dep: Deployment, path: str, payload: dict[str, Any], stream: bool
    ) -> aiohttp.ClientResponse:
        headers, timeout, stream_timeout = self._prep(dep)
        try:
            resp = await self._session.post(
                f"{dep.api_base}{path}",
                data=orjson.dumps(payload),
                headers=headers,
                timeout=stream_timeout if stream else timeout,
            )
            if resp.status >= 400:
                body = await resp.read()
                resp.release()
                raise classify_status(resp.status, body, resp.headers.get("Retry-After"))
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _transport_error(exc) from None
        return resp

    async def _call(
        self, dep: Deployment, path: str, payload: dict[str, Any]
    ) -> tuple[bytes, Usage | None]:
        resp = await self._post(dep, path, payload, stream=False)
        try:
            data = await resp.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _transport_error(exc) from None
        finally:
            resp.release()
        try:
            obj = orjson.loads(data)
        except orjson.JSONDecodeError:
            raise UpstreamError(Kind.SERVER) from None
        if not isinstance(obj, dict):
            raise UpstreamError(Kind.SERVER)
        return data, Usage.from_openai(obj.get("usage"))

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
