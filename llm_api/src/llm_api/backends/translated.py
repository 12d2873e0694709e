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
import os
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson

from llm_api.backends import DONE, Usage
from llm_api.backends.transform import FAST_PROVIDERS, FastPath, FastStream
from llm_api.config import Deployment
from llm_api.errors import Kind, UpstreamError, classify_status
from llm_api.observability import quiet_libraries

# OpenAI request parameters passed on to LiteLLM. Anything else in a client's body is dropped:
# LiteLLM also reads its own control parameters (api_base, api_key, mock_response, headers, ...)
# from the same keyword arguments, and a client must not be able to set those.
CHAT_PARAMS = frozenset(
    {
        "messages",
        "frequency_penalty",
        "logit_bias",
        "logprobs",
        "top_logprobs",
        "max_tokens",
        "max_completion_tokens",
        "n",
        "presence_penalty",
        "response_format",
        "seed",
        "stop",
        "stream",
        "stream_options",
        "temperature",
        "top_p",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "user",
        "functions",
        "function_call",
        "reasoning_effort",
        "modalities",
        "audio",
        "prediction",
        "service_tier",
    }
)
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
        return UpstreamError(Kind.CONTEXT_LENGTH, param="messages")
    if isinstance(exc, litellm.Timeout):
        return UpstreamError(Kind.TIMEOUT)
    if isinstance(exc, litellm.AuthenticationError | litellm.PermissionDeniedError):
        return UpstreamError(Kind.AUTH)
    if isinstance(exc, litellm.RateLimitError):
        return classify_status(429, retry_after=_retry_after(exc))
    if isinstance(exc, litellm.APIConnectionError):
        return UpstreamError(Kind.CONNECTION)
    if isinstance(exc, litellm.BadRequestError | litellm.UnprocessableEntityError):
        return UpstreamError(Kind.BAD_REQUEST)
    status = getattr(exc, "status_code", None)
    if isinstance(exc, litellm.APIError | litellm.InternalServerError) or isinstance(status, int):
        if _connection_failure(exc):
            return UpstreamError(Kind.CONNECTION)
        return classify_status(status if isinstance(status, int) and status >= 400 else 500)
    if isinstance(exc, aiohttp.ClientError | ConnectionError):
        return UpstreamError(Kind.CONNECTION)
    return None


def _usage(obj: Any) -> Usage | None:
    return Usage.from_litellm(getattr(obj, "usage", None))


class TranslatedStream:
    def __init__(self, litellm: Any, stream: Any, include_usage: bool) -> None:
        self.usage: Usage | None = None
        self._litellm = litellm
        self._stream = stream
        self._include_usage = include_usage

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._stream:
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

    async def aclose(self) -> None:
        close = getattr(self._stream, "aclose", None)
        if close is not None:
            with contextlib.suppress(Exception):  # closing an already failed stream
                await close()


class TranslatedBackend:
    """The fast path or LiteLLM's acompletion/aembedding; LiteLLM is imported in a thread at start.

    The service is ready (and the native path serves) while the import runs; a translated
    request made in those first seconds waits for it. The fast path posts on `session`, the app's
    shared one (the app closes it).
    """

    def __init__(self, session: aiohttp.ClientSession) -> None:
        self._import: asyncio.Future[Any] = asyncio.ensure_future(asyncio.to_thread(import_litellm))
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
