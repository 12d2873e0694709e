"""The translated path: LiteLLM for providers with other wire formats (e.g. `anthropic/...`).

LiteLLM is imported only when the config has such a deployment (the import costs ~3 s of CPU and
~190 MB). Each deployment takes one of two routes, decided once per deployment
(`uses_fast_path`):

- the fast path (`transform.py`): LiteLLM's provider transformation with our own aiohttp
  transport and chunk writer, for the providers in `transform.FAST_PROVIDERS` (`anthropic`), when
  the deployment has no `mock_response` and its extra `litellm_params` are only OpenAI request
  parameters (defaults for every request) and `drop_params`;
- `litellm.acompletion` for every other chat deployment (any other provider, `mock_response`,
  other LiteLLM options such as `extra_headers` or `top_k`), and `litellm.aembedding` for
  embeddings.

LiteLLM's own retries never happen: acompletion gets `max_retries=0` and `num_retries=0`, and the
fast path has no LiteLLM client; the shared router retries, so that every path retries, falls
back and cools down the same way. Exceptions are mapped by class and status code (`classify`),
the fast path's after LiteLLM's own `exception_type`, as acompletion does; LiteLLM reports a
refused connection or a DNS failure as a 500 `InternalServerError`, so the cause chain is checked
for the transport's connection errors.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import os
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson

from llm_api.backends import DONE, Usage
from llm_api.backends.native import REQUEST_ID_HEADER
from llm_api.backends.transform import FAST_PROVIDERS, FastPath, FastStream
from llm_api.config import OPENAI_CHAT_PARAMS, Deployment
from llm_api.errors import Kind, UpstreamError, classify_status, provider_error, redact
from llm_api.observability import (
    CURRENT_REQUEST,
    exception_fields,
    note_upstream_request_id,
    quiet_libraries,
)

# OpenAI request parameters passed on to LiteLLM. Anything else in a client's body is dropped:
# LiteLLM also reads its own control parameters (api_base, api_key, mock_response, headers, ...)
# from the same keyword arguments, and a client must not be able to set those.
CHAT_PARAMS = OPENAI_CHAT_PARAMS
EMBEDDING_PARAMS = frozenset({"input", "dimensions", "encoding_format", "user"})
# A deployment's extra litellm_params the fast path reproduces; any other sends it to acompletion.
FAST_PATH_EXTRA_PARAMS = (CHAT_PARAMS - {"messages", "stream", "stream_options"}) | {"drop_params"}


def uses_fast_path(dep: Deployment) -> bool:
    """Whether `dep`'s chat requests take the fast path rather than `litellm.acompletion`."""
    return (
        dep.provider in FAST_PROVIDERS
        and dep.mock_response is None
        and FAST_PATH_EXTRA_PARAMS.issuperset(dep.extra_params)
    )


def import_litellm() -> Any:
    """Import LiteLLM offline and quiet; returns the module."""
    # No network at import: the bundled cost map, and (>= 1.110) no other automatic fetches.
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    os.environ.setdefault("LITELLM_OFFLINE_MODE", "true")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("LITELLM_LOG", "CRITICAL")
    quiet_libraries()  # before the import too: it logs while importing
    litellm: Any = importlib.import_module("litellm")
    litellm.suppress_debug_info = True  # else a feedback banner is printed on every exception
    litellm.set_verbose = False
    litellm.telemetry = False
    litellm.turn_off_message_logging = True
    # LiteLLM submits every stream chunk to a thread pool for its own logging callbacks; llm_api
    # logs and counts requests itself, so that per-chunk work is pure overhead here.
    litellm.disable_streaming_logging = True
    quiet_libraries()
    return litellm


def start_import() -> asyncio.Future[Any]:
    """Import LiteLLM in a thread (the service serves meanwhile); the future of the module."""
    future: asyncio.Future[Any] = asyncio.ensure_future(asyncio.to_thread(import_litellm))
    future.add_done_callback(_log_import_failure)
    return future


def import_state(future: asyncio.Future[Any]) -> str | None:
    """None once LiteLLM is imported; else why the models that need it cannot be served."""
    if not future.done():
        return "litellm_importing"
    if future.cancelled() or future.exception() is not None:
        return "litellm_import_failed"
    return None


def _log_import_failure(future: asyncio.Future[Any]) -> None:
    if future.cancelled() or future.exception() is None:
        return
    exc = future.exception()
    assert exc is not None
    logging.getLogger("llm_api").error(
        "LiteLLM could not be imported: the models that need it are not served",
        extra={"fields": exception_fields(exc, [])},
    )


def _connection_failure(exc: BaseException) -> bool:
    """True when a connection error (refused, DNS, reset) sits in the exception's cause chain."""
    import httpx  # LiteLLM's dependencies: only imported on this path
    import openai

    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, openai.APITimeoutError):
            return False
        if isinstance(
            cur,
            aiohttp.ClientConnectorError
            | aiohttp.ServerDisconnectedError
            | httpx.ConnectError
            | httpx.RemoteProtocolError
            | openai.APIConnectionError
            | ConnectionError,
        ):
            return True
        cur = cur.__cause__ or cur.__context__
    return False


def _retry_after(exc: BaseException) -> str | None:
    for attr in ("litellm_response_headers", "response"):
        obj = getattr(exc, attr, None)
        headers = getattr(obj, "headers", obj)
        try:
            value = headers.get("retry-after") if headers is not None else None
        except AttributeError:
            value = None
        if value:
            return str(value)
    return None


def classify(litellm: Any, exc: BaseException) -> UpstreamError | None:
    """Map a LiteLLM exception to an UpstreamError; None when it is not an upstream failure."""
    if isinstance(exc, litellm.ContextWindowExceededError):
        message, _, _ = _provider_message(exc)
        return UpstreamError(Kind.CONTEXT_LENGTH, param="messages", message=message)
    if isinstance(exc, litellm.Timeout):
        return UpstreamError(Kind.TIMEOUT)
    if isinstance(exc, litellm.AuthenticationError | litellm.PermissionDeniedError):
        return UpstreamError(Kind.AUTH)
    if isinstance(exc, litellm.RateLimitError):
        return classify_status(429, retry_after=_retry_after(exc))
    if isinstance(exc, litellm.APIConnectionError):
        return UpstreamError(Kind.CONNECTION)
    if isinstance(exc, litellm.BadRequestError | litellm.UnprocessableEntityError):
        message, code, param = _provider_message(exc)
        return UpstreamError(Kind.BAD_REQUEST, param=param, message=message, code=code)
    status = getattr(exc, "status_code", None)
    if isinstance(exc, litellm.APIError | litellm.InternalServerError) or isinstance(status, int):
        if _connection_failure(exc):
            return UpstreamError(Kind.CONNECTION)
        return classify_status(status if isinstance(status, int) and status >= 400 else 500)
    if isinstance(exc, aiohttp.ClientError | ConnectionError):
        return UpstreamError(Kind.CONNECTION)
    return None


def _provider_message(exc: BaseException) -> tuple[str | None, str | None, str | None]:
    """The provider's (message, code, param) inside a LiteLLM exception, redacted.

    The exception is classified by its class; its text is only mined for what the provider
    said: the error body LiteLLM keeps (`body`), else the JSON in its message
    ("litellm.BadRequestError: OpenAIException - {...}"), else the message after that prefix.
    """
    body = getattr(exc, "body", None)
    if isinstance(body, dict) and body:
        found = provider_error(orjson.dumps(body if "error" in body else {"error": body}))
        if found[0]:
            return found
    text = str(getattr(exc, "message", "") or "")
    brace, end = text.find("{"), text.rfind("}")
    if 0 <= brace < end:
        found = provider_error(text[brace : end + 1].encode())
        if found[0]:
            return found
    _, sep, rest = text.partition("Exception - ")
    return (redact(rest.strip()) or None) if sep else None, None, None


def _note_provider_id(obj: Any) -> None:
    """Record the provider's request id LiteLLM kept from the response headers."""
    hidden = getattr(obj, "_hidden_params", None)
    headers = hidden.get("additional_headers") if isinstance(hidden, dict) else None
    if isinstance(headers, dict):
        note_upstream_request_id(
            {
                "x-request-id": headers.get("llm_provider-x-request-id"),
                "request-id": headers.get("llm_provider-request-id"),
            }
        )


def _usage(obj: Any) -> Usage | None:
    return Usage.from_litellm(getattr(obj, "usage", None))


class TranslatedStream:
    def __init__(self, litellm: Any, stream: Any, include_usage: bool) -> None:
        self.usage: Usage | None = None
        self._litellm = litellm
        self._stream = stream
        self._include_usage = include_usage
        self._content_chunks = 0
        _note_provider_id(stream)

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._stream:
                if chunk.choices and getattr(chunk.choices[0].delta, "content", None):
                    self._content_chunks += 1
                usage = _usage(chunk)
                data = chunk.model_dump(exclude_none=True)
                if usage is not None and (usage.prompt_tokens or usage.completion_tokens):
                    self.usage = usage
                    if not self._include_usage:
                        data.pop("usage", None)
                        if not data.get("choices"):
                            continue
                yield b"data: " + orjson.dumps(data) + b"\n\n"
        except Exception as exc:
            mapped = classify(self._litellm, exc)
            if mapped is None:
                raise
            raise mapped from None
        yield DONE

    def partial_usage(self) -> Usage | None:
        return self.usage or Usage(0, self._content_chunks)

    async def aclose(self) -> None:
        # The provider's response under LiteLLM's wrapper: closing it closes the connection of
        # an unfinished stream (a client that went away), where the wrapper's own aclose may not.
        response = getattr(getattr(self._stream, "completion_stream", None), "response", None)
        close_response = getattr(response, "aclose", None)
        if close_response is not None:
            with contextlib.suppress(Exception):
                await close_response()
        close = getattr(self._stream, "aclose", None)
        if close is not None:
            with contextlib.suppress(Exception):  # closing an already failed stream
                await close()


class TranslatedBackend:
    """The fast path or LiteLLM's acompletion/aembedding; LiteLLM is imported in a thread at start.

    The native path serves while the import runs, and readiness reports it (`not_ready`); a
    translated request made in those first seconds waits for it. The fast path posts on
    `session`, the app's shared one (the app closes it).
    """

    def __init__(self, session: aiohttp.ClientSession, litellm_import: asyncio.Future[Any]) -> None:
        self._import = litellm_import
        self._litellm: Any = None
        self._session = session
        self._fast: dict[str, FastPath | None] = {}

    async def _lib(self) -> Any:
        if self._litellm is None:
            self._litellm = await asyncio.shield(self._import)
        return self._litellm

    async def aclose(self) -> None:
        if not self._import.done():
            self._import.cancel()

    def not_ready(self) -> str | None:
        """Readiness: the translated models can be served once LiteLLM is imported."""
        return import_state(self._import)

    async def _fast_path(self, dep: Deployment) -> FastPath | None:
        """The deployment's fast path, built on its first request; None: it uses acompletion."""
        try:
            return self._fast[dep.id]
        except KeyError:
            pass
        fast = None
        if uses_fast_path(dep):
            litellm = await self._lib()
            fast = FastPath(dep, litellm, self._session, lambda exc: self._upstream_error(dep, exc))
        self._fast[dep.id] = fast
        return fast

    def _upstream_error(self, dep: Deployment, exc: BaseException) -> UpstreamError:
        """Map a fast-path failure as acompletion would: LiteLLM's exception_type, then classify."""
        if isinstance(exc, UpstreamError):
            return exc
        from litellm.litellm_core_utils import exception_mapping_utils

        exception_type: Any = exception_mapping_utils.exception_type
        try:
            mapped: BaseException = exception_type(
                model=dep.litellm_model, custom_llm_provider=dep.provider, original_exception=exc
            )
        except Exception as raised:  # it raises what it maps, and returns what it passes on
            mapped = raised
        return classify(self._litellm, mapped) or UpstreamError(Kind.SERVER)

    def _kwargs(
        self, dep: Deployment, body: dict[str, Any], stream: bool, allowed: frozenset[str]
    ) -> dict[str, Any]:
        kwargs = {**dep.extra_params, **{k: v for k, v in body.items() if k in allowed}}
        kwargs.update(
            model=dep.litellm_model,
            timeout=dep.stream_timeout if stream else dep.timeout,
            max_retries=0,  # the openai SDK's own retries (default 2) would triple every call
            num_retries=0,  # LiteLLM-level retries: the router retries instead
        )
        if dep.api_base:
            kwargs["api_base"] = dep.api_base
        if dep.api_key:
            kwargs["api_key"] = dep.api_key
        if dep.mock_response is not None:
            kwargs["mock_response"] = dep.mock_response
        ctx = CURRENT_REQUEST.get()
        if ctx is not None:
            headers = dict(kwargs.get("extra_headers") or {})
            headers[REQUEST_ID_HEADER] = ctx.request_id
            kwargs["extra_headers"] = headers
        return kwargs

    async def _run(self, call: str, kwargs: dict[str, Any]) -> Any:
        litellm = await self._lib()
        try:
            return await getattr(litellm, call)(**kwargs)
        except Exception as exc:
            mapped = classify(self._litellm, exc)
            if mapped is None:
                raise
            raise mapped from None

    async def chat(self, dep: Deployment, body: dict[str, Any]) -> tuple[bytes, Usage | None]:
        fast = await self._fast_path(dep)
        if fast is not None:
            return await fast.chat({k: v for k, v in body.items() if k in CHAT_PARAMS})
        kwargs = self._kwargs(dep, body, False, CHAT_PARAMS)
        kwargs.pop("stream", None)
        kwargs.pop("stream_options", None)
        resp = await self._run("acompletion", kwargs)
        _note_provider_id(resp)
        return orjson.dumps(resp.model_dump(exclude_none=True)), _usage(resp)

    async def open_stream(
        self, dep: Deployment, body: dict[str, Any], include_usage: bool
    ) -> TranslatedStream | FastStream:
        fast = await self._fast_path(dep)
        if fast is not None:
            params = {k: v for k, v in body.items() if k in CHAT_PARAMS}
            return await fast.open_stream(params, include_usage)
        kwargs = self._kwargs(dep, body, True, CHAT_PARAMS)
        options = body.get("stream_options") or {}
        kwargs.update(stream=True, stream_options={**options, "include_usage": True})
        stream = await self._run("acompletion", kwargs)
        return TranslatedStream(self._litellm, stream, include_usage)

    async def embeddings(self, dep: Deployment, body: dict[str, Any]) -> tuple[bytes, Usage | None]:
        kwargs = self._kwargs(dep, body, False, EMBEDDING_PARAMS)
        resp = await self._run("aembedding", kwargs)
        return orjson.dumps(resp.model_dump(exclude_none=True)), _usage(resp)
