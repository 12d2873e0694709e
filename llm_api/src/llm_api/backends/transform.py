"""The translated fast path: LiteLLM's provider transformation over our own transport.

`litellm.acompletion` spends ~17 ms of CPU per request and ~70 ms per 20-chunk stream
(bench/RESULTS.md), almost all of it around the translation: its wrapper, logging object, cost
calculation, httpx client, `CustomStreamWrapper` and the pydantic objects of every chunk. For the
providers in `FAST_PROVIDERS` this module keeps LiteLLM's translation and drops the rest. It calls
the functions LiteLLM's own provider handler calls, in the same order and with the same arguments
(for Anthropic: `AnthropicChatCompletion.completion` in litellm/llms/anthropic/chat/handler.py,
and `_complete_anthropic` in litellm/main.py, litellm 1.110.2):

- once per deployment: the provider's `BaseConfig`
  (`ProviderConfigManager.get_provider_chat_config`) and the URL (`get_complete_url`, after the
  provider's default base and route);
- per request: `completion()`'s message and parameter fix-ups, `get_optional_params` (OpenAI
  parameters to the provider's, unsupported ones raising or dropped as `drop_params` says),
  `validate_environment` (headers with the key; they depend on the messages and tools),
  `async_transform_request` (which inlines `http://` image URLs, fetching them as LiteLLM does),
  the Anthropic beta filters; then one POST on an aiohttp session;
- the answer: `transform_response` for a plain one, serialised once with orjson; for a stream, the
  provider's iterator's `chunk_parser` on each SSE event, and the OpenAI `chat.completion.chunk`
  events written here (first delta with the role, a last chunk with the finish reason, the usage
  chunk when the client asked for it, `data: [DONE]`), as `CustomStreamWrapper` shapes them;
- errors: the provider's error class, mapped by LiteLLM's `exception_type`, then classified by the
  caller (`to_upstream`) exactly as on the acompletion path. A stream that ends without a finish
  reason is an upstream failure, as on the native path.

LiteLLM's own retries never run (there is no LiteLLM client here); the router retries.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson

from llm_api.backends import DONE, Usage
from llm_api.backends.native import (
    client_timeouts,
    env_proxy,
    json_object,
    post,
    read_all,
    transport_error,
)
from llm_api.backends.sse import KEEPALIVE, SSEFramer, is_comment, parse_event
from llm_api.config import Deployment
from llm_api.errors import Kind, UpstreamError, provider_error

# Providers whose translation this path is proven to reproduce (llm_api/tests/test_fast_path.py
# compares it with acompletion's): provider -> default base URL and request route.
FAST_PROVIDERS = {"anthropic": ("https://api.anthropic.com", "v1/messages")}

ToUpstream = Callable[[BaseException], UpstreamError]


class _NoLogging:
    """Stands in for LiteLLM's logging object: llm_api logs and counts requests itself."""

    def post_call(self, *args: Any, **kwargs: Any) -> None:
        return None


NO_LOGGING = _NoLogging()


def _dumps(obj: Any) -> bytes:
    """JSON for a provider body or a client chunk; LiteLLM's own types may hold pydantic models."""
    try:
        return orjson.dumps(obj, default=_model_dump)
    except TypeError:  # e.g. a non-string dict key, which orjson refuses and json accepts
        return json.dumps(obj, default=_model_dump).encode()


def _model_dump(obj: Any) -> Any:
    dump = getattr(obj, "model_dump", None)
    if dump is None:
        raise TypeError(type(obj).__name__)
    return dump(exclude_none=True)


@dataclass
class _Request:
    """One translated request: what to send, and what the answer's translation needs."""

    headers: dict[str, str]
    data: dict[str, Any]
    messages: list[Any]
    optional_params: dict[str, Any]
    litellm_params: dict[str, Any]
    json_mode: bool


class FastPath:
    """One deployment's translated fast path (built once the deployment is first used)."""

    def __init__(
        self,
        dep: Deployment,
        litellm: Any,
        session: aiohttp.ClientSession,
        to_upstream: ToUpstream,
    ) -> None:
        from litellm.utils import ProviderConfigManager

        self._litellm = litellm
        self._session = session
        self._to_upstream = to_upstream
        self._dep = dep
        self.model = dep.upstream_model
        config = ProviderConfigManager.get_provider_chat_config(
            model=self.model, provider=litellm.LlmProviders(dep.provider)
        )
        if config is None:
            raise ValueError(f"no provider config for {dep.provider!r}")
        self._config: Any = config
        self._timeout, self._stream_timeout = client_timeouts(dep)
        self._drop_params = dep.extra_params.get("drop_params")
        # Deployment-level OpenAI parameters are defaults the request's own override.
        self._defaults = {k: v for k, v in dep.extra_params.items() if k != "drop_params"}
        self.url = self._complete_url()
        self._proxy = env_proxy(self.url)

    def _complete_url(self) -> str:
        from litellm.litellm_core_utils.url_utils import ensure_api_route

        dep = self._dep
        default_base, route = FAST_PROVIDERS[dep.provider]
        # As litellm/main.py's _complete_anthropic: the deployment's base, else LiteLLM's
        # environment variables, else the provider's; the route is appended unless disabled.
        base = (
            dep.api_base
            or os.environ.get("ANTHROPIC_API_BASE")
            or os.environ.get("ANTHROPIC_BASE_URL")
            or default_base
        )
        if os.environ.get("LITELLM_ANTHROPIC_DISABLE_URL_SUFFIX", "").lower() != "true":
            base = ensure_api_route(base, route)
        url: str = self._config.get_complete_url(
            api_base=base,
            api_key=dep.api_key,
            model=self.model,
            optional_params={},
            litellm_params={},
        )
        return url

    async def _translate(self, body: dict[str, Any], stream: bool) -> _Request:
        """The provider request for an OpenAI body; LiteLLM's exceptions are left to the caller."""
        from litellm.anthropic_beta_gated_fields import strip_beta_gated_request_body
        from litellm.anthropic_beta_headers_manager import update_request_with_filtered_beta
        from litellm.utils import (
            get_optional_params,
            validate_and_fix_openai_messages,
            validate_chat_completion_tool_choice,
            validate_openai_optional_params,
        )

        # A private deep copy: the translation edits it in place, and the router may send the
        # same body again (retries, fallbacks).
        params: dict[str, Any] = orjson.loads(orjson.dumps({**self._defaults, **body}))
        model, config, provider = self.model, self._config, self._dep.provider
        # completion()'s fix-ups (litellm/main.py) before the provider sees the messages.
        messages = validate_and_fix_openai_messages(params.pop("messages"))
        messages = list(
            config.translate_developer_role_to_system_role(
                messages,
                model=model,
                custom_llm_provider=provider,
                api_base=self._dep.api_base,
                model_info=None,
            )
        )
        if "tool_choice" in params:
            params["tool_choice"] = validate_chat_completion_tool_choice(
                params["tool_choice"], model=model
            )
        if "stop" in params:
            params["stop"] = validate_openai_optional_params(stop=params["stop"])
        if stream:
            options = params.get("stream_options") or {}
            params.update(stream=True, stream_options={**options, "include_usage": True})
        else:
            params.pop("stream", None)
            params.pop("stream_options", None)
        optional = dict(
            get_optional_params(
                model=model,
                custom_llm_provider=provider,
                messages=messages,
                max_retries=0,
                drop_params=self._drop_params,
                **params,
            )
        )
        # The provider handler's own pops (AnthropicChatCompletion.completion).
        optional.pop("stream", None)
        json_mode = bool(optional.pop("json_mode", False))
        is_vertex_request = optional.pop("is_vertex_request", False)
        litellm_params: dict[str, Any] = {
            "api_base": self._dep.api_base,
            "custom_llm_provider": provider,
            "drop_params": self._drop_params,
        }
        headers = config.validate_environment(
            api_key=self._dep.api_key,
            headers={},
            model=model,
            messages=messages,
            optional_params={**optional, "is_vertex_request": is_vertex_request},
            litellm_params=litellm_params,
            api_base=self.url,
        )
        data = await config.async_transform_request(
            model=model,
            messages=messages,
            optional_params={**optional, "is_vertex_request": is_vertex_request},
            litellm_params=litellm_params,
            headers=headers,
        )
        headers, data = update_request_with_filtered_beta(
            headers=headers, request_data=data, provider=provider, api_base=self.url
        )
        data = dict(
            strip_beta_gated_request_body(
                data, headers, drop_params=self._drop_params, model=model, provider=provider
            )
        )
        if stream:
            data["stream"] = True
        return _Request(headers, data, messages, optional, litellm_params, json_mode)

    async def _send(self, body: dict[str, Any], stream: bool) -> tuple[_Request, Any]:
        """Translate and POST; the open response, or UpstreamError."""
        try:
            req = await self._translate(body, stream)
        except Exception as exc:
            raise self._to_upstream(exc) from None
        timeout = self._stream_timeout if stream else self._timeout
        resp = await post(
            self._session,
            self.url,
            _dumps(req.data),
            req.headers,
            timeout,
            self._http_error,
            self._proxy,
        )
        return req, resp

    def _http_error(self, resp: aiohttp.ClientResponse, body: bytes) -> UpstreamError:
        # As the provider handler raises it: the provider's error class with the body's text.
        error = self._config.get_error_class(
            error_message=body.decode(errors="replace"),
            status_code=resp.status,
            headers=dict(resp.headers),
        )
        mapped = self._to_upstream(error)
        if mapped.kind in (Kind.BAD_REQUEST, Kind.CONTEXT_LENGTH):
            # What the provider said, from its own body (redacted), not LiteLLM's wrapping.
            message, code, param = provider_error(body)
            mapped.message = message or mapped.message
            mapped.code = code or mapped.code
            mapped.param = param or mapped.param
        return mapped

    async def chat(self, body: dict[str, Any]) -> tuple[bytes, Usage | None]:
        import httpx

        req, resp = await self._send(body, stream=False)
        content = await read_all(resp)
        raw = httpx.Response(
            resp.status,
            headers=list(resp.headers.items()),
            content=content,
            request=httpx.Request("POST", self.url),
        )
        model_response = self._litellm.ModelResponse()
        model_response.usage = self._litellm.Usage()
        try:
            result = self._config.transform_response(
                model=self.model,
                raw_response=raw,
                model_response=model_response,
                logging_obj=NO_LOGGING,
                api_key=self._dep.api_key,
                request_data=req.data,
                messages=req.messages,
                optional_params=req.optional_params,
                litellm_params=req.litellm_params,
                encoding=None,
                json_mode=req.json_mode,
            )
        except Exception as exc:
            raise self._to_upstream(exc) from None
        usage = Usage.from_litellm(getattr(result, "usage", None))
        return _dumps(result.model_dump(exclude_none=True)), usage

    async def open_stream(self, body: dict[str, Any], include_usage: bool) -> FastStream:
        from litellm.llms.anthropic.chat.handler import ModelResponseIterator
        from litellm.llms.anthropic.chat.transformation import (
            ANTHROPIC_TOOL_NAME_REVERSE_MAP_KEY,
            JsonModeRequest,
        )

        req, resp = await self._send(body, stream=True)
        optional = req.optional_params
        # As AnthropicChatCompletion.acompletion_stream_function builds it.
        iterator = ModelResponseIterator(
            streaming_response=None,
            sync_stream=False,
            json_mode=req.json_mode,
            speed=optional.get("speed"),
            tool_name_reverse_map=req.litellm_params.get(ANTHROPIC_TOOL_NAME_REVERSE_MAP_KEY),
            response_format_schema=(
                JsonModeRequest.model_validate(optional).tool_schema() if req.json_mode else None
            ),
        )
        return FastStream(resp, iterator, self.model, include_usage, self._to_upstream)


class FastStream:
    """The provider's SSE events, parsed by LiteLLM, written out as OpenAI chunks."""

    def __init__(
        self,
        resp: aiohttp.ClientResponse,
        iterator: Any,
        model: str,
        include_usage: bool,
        to_upstream: ToUpstream,
    ) -> None:
        self.usage: Usage | None = None
        self._resp = resp
        self._iterator = iterator
        self._include_usage = include_usage
        self._to_upstream = to_upstream
        self._head = b'{"id":' + orjson.dumps(iterator.response_id)
        self._head += b',"object":"chat.completion.chunk","created":' + b"%d" % int(time.time())
        self._head += b',"model":' + orjson.dumps(model)
        self._sent_role = False
        self._tool_calls = False
        self._finish: str | None = None
        self._usage_obj: Any = None
        self._content_chunks = 0

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "finish_reason": finish}
        return b"data: " + self._head + b',"choices":[' + _dumps(choice) + b"]}\n\n"

    def _add(self, parsed: Any, out: list[bytes]) -> None:
        """Append the client chunk for one parsed event (if it carries anything)."""
        usage = getattr(parsed, "usage", None)
        if usage is not None:
            self._usage_obj = usage
        choices = getattr(parsed, "choices", None)
        if not choices:
            return
        choice = choices[0]
        if choice.finish_reason:
            self._finish = choice.finish_reason
        delta = choice.delta
        fields: dict[str, Any] = {}
        tool_calls = getattr(delta, "tool_calls", None)
        if delta.content or (tool_calls and delta.content is not None):
            fields["content"] = delta.content  # "" beside tool calls, as CustomStreamWrapper has
        if tool_calls:
            self._tool_calls = True
            fields["tool_calls"] = [_tool_call(tc) for tc in tool_calls]
        for name in ("reasoning_content", "thinking_blocks", "provider_specific_fields"):
            value = getattr(delta, name, None)
            if value is not None and (value or name == "reasoning_content"):
                fields[name] = value
        if not fields:
            return
        if not self._sent_role:
            self._sent_role = True
            fields = {"role": "assistant", **fields}
        self._content_chunks += 1
        out.append(self._chunk(fields))

    def _parse(self, events: list[bytes], out: list[bytes]) -> bool:
        """Parse whole events into client chunks (appended to `out`); True at the last event."""
        for event in events:
            _, payload = parse_event(event)
            if not payload:
                if event and is_comment(event):
                    out.append(KEEPALIVE)
                continue
            obj = json_object(payload)
            if obj.get("type") == "ping":  # Anthropic's keep-alive: passed on as a comment
                out.append(KEEPALIVE)
                continue
            self._add(self._iterator.chunk_parser(obj), out)
            if obj.get("type") == "message_stop":
                return True
        return False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        framer = SSEFramer()
        stopped = False
        try:
            async for data in self._resp.content.iter_any():
                out: list[bytes] = []
                failure = None
                try:
                    stopped = self._parse(framer.feed(data), out)
                except UpstreamError as exc:
                    failure = exc
                except Exception as exc:  # LiteLLM's, e.g. for the provider's "error" event
                    failure = self._to_upstream(exc)
                if out:  # what came before a failure still reaches the client
                    yield b"".join(out)
                if failure is not None:
                    raise failure
                if stopped:
                    break
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise transport_error(exc) from None
        finally:
            self._resp.release()
        if self._finish is None:
            # Closed before the provider said why it stopped: the answer is incomplete.
            raise UpstreamError(Kind.SERVER)
        yield self._tail()

    def _tail(self) -> bytes:
        out: list[bytes] = []
        cut = getattr(self._iterator, "cut_stream_chunk", None)
        if cut is not None:
            self._add(cut(), out)
        finish = self._finish
        if finish == "stop" and self._tool_calls:
            finish = "tool_calls"
        out.append(self._chunk({}, finish))
        if self._usage_obj is not None:
            self.usage = Usage.from_litellm(self._usage_obj)
            if self._include_usage:
                usage = _dumps(self._usage_obj.model_dump(exclude_none=True))
                out.append(b"data: " + self._head + b',"choices":[],"usage":' + usage + b"}\n\n")
        out.append(DONE)
        return b"".join(out)

    def partial_usage(self) -> Usage | None:
        if self.usage is not None:
            return self.usage
        seen = Usage.from_litellm(self._usage_obj)  # Anthropic's message_start: input tokens
        prompt = seen.prompt_tokens if seen is not None else 0
        return Usage(prompt, self._content_chunks)

    async def aclose(self) -> None:
        self._resp.release()


def _tool_call(tc: Any) -> dict[str, Any]:
    """A tool call delta in OpenAI's shape: id, type and name on the first piece only."""
    fn = tc.function
    out: dict[str, Any] = {"index": tc.index}
    if tc.id is not None:
        out["id"] = tc.id
    if tc.type is not None:
        out["type"] = tc.type
    function: dict[str, Any] = {}
    if fn.name is not None:
        function["name"] = fn.name
    function["arguments"] = fn.arguments or ""
    out["function"] = function
    return out
