"""The translated fast path (backends/transform.py) against litellm.acompletion, through the fake
provider's Anthropic Messages API: which deployments take it, that it never calls acompletion,
and that requests, answers, streams, tool calls and errors are the same as on acompletion."""

from __future__ import annotations

import importlib
import json
from collections.abc import AsyncIterator
from typing import Any

import openai
import pytest
from conftest import PROVIDER_KEY, FakeProvider, Gateway, free_port, serve, sse_events
from llm_api.backends import translated
from llm_api.backends.native import SSEFramer
from llm_api.backends.transform import FastStream
from llm_api.config import parse_config
from llm_api.errors import Kind, UpstreamError

# Upstream models: a fake-provider marker each (see tests/fake_provider/fake_provider.py).
MARKERS = (
    "ok",
    "tooluse",
    "err400",
    "err401",
    "err403",
    "err404",
    "err429",
    "err500",
    "err503",
    "err529",
    "ctxlen",
    "stall",
    "midstream",
    "refused",
)
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
# Request bodies whose translation must match acompletion's, byte for byte once parsed.
REQUESTS: dict[str, dict[str, Any]] = {
    "plain": {},
    "sampling": {"temperature": 0.2, "top_p": 0.9, "max_tokens": 50, "stop": ["a", "b"]},
    "system": {
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "hello there"},
        ],
        "user": "alice",
    },
    "developer": {
        "messages": [
            {"role": "developer", "content": "Be brief."},
            {"role": "user", "content": "hello there"},
        ],
        "max_completion_tokens": 30,
    },
    "tools": {"tools": [WEATHER], "tool_choice": "auto"},
    "forced_tool": {
        "tools": [WEATHER],
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        "parallel_tool_calls": False,
    },
    "tool_result": {
        "messages": [
            {"role": "user", "content": "Weather in Paris?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
        ],
        "tools": [WEATHER],
    },
    "json_object": {"response_format": {"type": "json_object"}},
    "json_schema": {
        "response_format": {
            "type": "json_schema",
            "json_schema": {
                "name": "answer",
                "schema": {"type": "object", "properties": {"a": {"type": "string"}}},
            },
        }
    },
    "image": {
        "messages": [
            {
                "role": "user",
                "content": [
                    {
                        "type": "text",
                        "text": "What is this?",
                        "cache_control": {"type": "ephemeral"},
                    },
                    {
                        "type": "image_url",
                        "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="},
                    },
                ],
            }
        ]
    },
    "unsupported": {"logit_bias": {"1": 1}, "n": 1, "seed": 3},
}
# Headers LiteLLM's translation sets (the rest belong to each HTTP client).
TRANSLATED_HEADERS = ("anthropic-version", "anthropic-beta", "x-api-key", "content-type", "accept")


# The `model` of every litellm.acompletion call made while the `pair` gateway serves.
ACOMPLETION_CALLS: list[str] = []


def entry(name: str, upstream: str, url: str, **params: Any) -> dict[str, Any]:
    litellm_params = {"model": f"anthropic/{upstream}", "api_base": url, "timeout": 5}
    litellm_params |= {"api_key": "os.environ/LLM_API_TEST_PROVIDER_KEY"} | params
    return {"model_name": name, "litellm_params": litellm_params}


@pytest.fixture(scope="module")
async def pair(fake_provider: FakeProvider) -> AsyncIterator[Gateway]:
    """`fast-<marker>` (the fast path) and `lite-<marker>` (acompletion) for the same upstream
    model, plus `*-drop` deployments with `drop_params`; acompletion's calls are counted."""
    refused = f"http://127.0.0.1:{free_port()}"
    models = []
    for marker in MARKERS:
        url = refused if marker == "refused" else fake_provider.url
        timeout = 0.5 if marker == "stall" else 5
        for kind in ("fast", "lite"):
            models.append(entry(f"{kind}-{marker}", f"claude-{marker}", url, timeout=timeout))
    for kind in ("fast", "lite"):
        models.append(entry(f"{kind}-drop", "claude-ok", fake_provider.url, drop_params=True))
    config = {"model_list": models, "router_settings": {"num_retries": 0}}
    with pytest.MonkeyPatch.context() as mp:
        real = translated.uses_fast_path
        mp.setattr(translated, "uses_fast_path", lambda dep: real(dep) and "lite" not in dep.id)
        async with serve(config) as gw:
            litellm = importlib.import_module("litellm")
            real_acompletion = litellm.acompletion

            async def counted(**kwargs: Any) -> Any:
                ACOMPLETION_CALLS.append(kwargs["model"])
                return await real_acompletion(**kwargs)

            mp.setattr(litellm, "acompletion", counted)
            yield gw


def without_ids(obj: Any) -> Any:
    """`obj` without the fields that differ on every answer, and without null fields."""
    if isinstance(obj, dict):
        return {
            k: without_ids(v)
            for k, v in obj.items()
            if k not in ("id", "created") and v is not None
        }
    if isinstance(obj, list):
        return [without_ids(v) for v in obj]
    return obj


def chunks(text: str) -> list[Any]:
    events = sse_events(text)
    assert events[-1] == "[DONE]"
    return [json.loads(e) for e in events[:-1]]


def streamed_text(parsed: list[Any]) -> str:
    return "".join(c["choices"][0]["delta"].get("content") or "" for c in parsed if c["choices"])


def last_request(provider: FakeProvider) -> dict[str, Any] | None:
    """What the provider received last (the translated headers only), None if nothing."""
    requests = provider.requests()
    if not requests:
        return None
    seen = requests[-1]
    headers = {k: v for k, v in seen["headers"].items() if k in TRANSLATED_HEADERS}
    return {"path": seen["path"], "headers": headers, "body": seen["body"]}


def test_which_deployments_take_the_fast_path() -> None:
    url = "http://127.0.0.1:9"
    models = [
        entry("claude", "claude-sonnet-4-5", url),
        entry("defaults", "claude-sonnet-4-5", url, temperature=0.1, drop_params=True),
        entry("mocked", "claude-sonnet-4-5", url, mock_response="hi"),
        entry("options", "claude-sonnet-4-5", url, extra_headers={"x-a": "b"}),
        {
            "model_name": "openai-via-litellm",
            "transport": "litellm",
            "litellm_params": {"model": "openai/gpt-4o", "api_base": url},
        },
        {"model_name": "gemini", "litellm_params": {"model": "gemini/gemini-2.0-flash"}},
    ]
    config = parse_config({"model_list": models}, "test", {"LLM_API_TEST_PROVIDER_KEY": "k"})
    fast = {d.model_name: translated.uses_fast_path(d) for d in config.deployments}
    assert fast == {
        "claude": True,
        "defaults": True,
        "mocked": False,
        "options": False,
        "openai-via-litellm": False,
        "gemini": False,
    }


async def test_the_fast_path_never_calls_acompletion(
    pair: Gateway, fake_provider: FakeProvider
) -> None:
    ACOMPLETION_CALLS.clear()
    fake_provider.clear()
    assert (await pair.chat("fast-ok")).status_code == 200
    assert (await pair.chat("fast-ok", stream=True)).status_code == 200
    assert (await pair.chat("fast-tooluse", tools=[WEATHER])).status_code == 200
    assert ACOMPLETION_CALLS == []
    assert fake_provider.stats()["POST /v1/messages"] == 3
    assert (await pair.chat("lite-ok")).status_code == 200
    assert ACOMPLETION_CALLS == ["anthropic/claude-ok"]  # the other deployments do call it


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize("name", list(REQUESTS))
async def test_the_provider_gets_the_same_request(
    pair: Gateway, fake_provider: FakeProvider, name: str, stream: bool
) -> None:
    sent = {}
    for kind in ("fast", "lite"):
        fake_provider.clear()
        resp = await pair.chat(f"{kind}-ok", stream=stream, **REQUESTS[name])
        code = resp.json()["error"]["code"] if resp.status_code != 200 else None
        sent[kind] = (resp.status_code, code, last_request(fake_provider))
    assert sent["fast"] == sent["lite"]
    status, code, request = sent["fast"]
    if name == "unsupported":  # Anthropic has no logit_bias: refused before any request
        assert (status, code, request) == (400, "upstream_bad_request", None)
    else:
        assert status == 200
        assert request is not None
        assert request["headers"]["x-api-key"] == PROVIDER_KEY


@pytest.mark.parametrize("name", ["plain", "tools", "unsupported"])
@pytest.mark.parametrize("kind", ["fast", "lite"])
async def test_drop_params_as_configured(
    pair: Gateway, fake_provider: FakeProvider, name: str, kind: str
) -> None:
    fake_provider.clear()
    resp = await pair.chat(f"{kind}-drop", **REQUESTS[name], reasoning_effort="low")
    assert resp.status_code == 200, resp.text
    request = last_request(fake_provider)
    assert request is not None
    assert "reasoning_effort" not in request["body"]
    assert "logit_bias" not in request["body"]


@pytest.mark.parametrize("model", ["ok", "tooluse"])
async def test_same_answer_as_acompletion(pair: Gateway, model: str) -> None:
    answers = []
    for kind in ("fast", "lite"):
        resp = await pair.chat(f"{kind}-{model}", tools=[WEATHER])
        assert resp.status_code == 200
        answers.append(resp.json())
    assert without_ids(answers[0]) == without_ids(answers[1])
    choice = answers[0]["choices"][0]
    if model == "tooluse":
        assert choice["finish_reason"] == "tool_calls"
        call = choice["message"]["tool_calls"][0]
        assert call["function"]["name"] == "get_weather"
        assert json.loads(call["function"]["arguments"]) == {"city": "Paris"}
    else:
        assert choice["finish_reason"] == "stop"
        assert answers[0]["usage"]["completion_tokens"] == 20


@pytest.mark.parametrize("include_usage", [True, False])
@pytest.mark.parametrize("model", ["ok", "tooluse"])
async def test_same_stream_as_acompletion(pair: Gateway, model: str, include_usage: bool) -> None:
    extra: dict[str, Any] = {"tools": [WEATHER]}
    if include_usage:
        extra["stream_options"] = {"include_usage": True}
    streams = []
    for kind in ("fast", "lite"):
        resp = await pair.chat(f"{kind}-{model}", stream=True, **extra)
        assert resp.status_code == 200
        streams.append(chunks(resp.text))
    fast, lite = streams
    assert without_ids(fast) == without_ids(lite)
    assert len({c["id"] for c in fast}) == 1
    assert fast[0]["choices"][0]["delta"]["role"] == "assistant"
    assert all("role" not in c["choices"][0]["delta"] for c in fast[1:] if c["choices"])
    finish = [c["choices"][0]["finish_reason"] for c in fast if c["choices"]]
    assert finish[-1] == ("tool_calls" if model == "tooluse" else "stop")
    assert [f for f in finish if f] == finish[-1:]
    assert [c for c in fast if "usage" in c] == ([fast[-1]] if include_usage else [])


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize("marker", [m for m in MARKERS if m not in ("ok", "tooluse")])
async def test_same_errors_as_acompletion(
    pair: Gateway, fake_provider: FakeProvider, marker: str, stream: bool
) -> None:
    seen = []
    for kind in ("fast", "lite"):
        resp = await pair.chat(f"{kind}-{marker}", stream=stream)
        if marker == "midstream":
            assert stream or resp.status_code == 200
            events = sse_events(resp.text) if stream else []
            seen.append(json.loads(events[-1])["error"] if stream else None)
            continue
        seen.append((resp.status_code, resp.json(), resp.headers.get("retry-after")))
    assert seen[0] == seen[1]


# What the fast path answers for each provider failure (the same as acompletion, see above).
EXPECTED_ERRORS = {
    "err400": (400, "upstream_bad_request"),
    "err401": (502, "upstream_auth_failed"),
    "err403": (502, "upstream_auth_failed"),
    "err404": (502, "upstream_error"),
    "err429": (429, "rate_limit_exceeded"),
    "err500": (502, "upstream_error"),
    "err503": (502, "upstream_error"),
    "err529": (502, "upstream_error"),
    "ctxlen": (400, "context_length_exceeded"),
    "stall": (504, "upstream_timeout"),
    "refused": (502, "upstream_unreachable"),
}


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize("marker", list(EXPECTED_ERRORS))
async def test_fast_path_error_mapping(pair: Gateway, marker: str, stream: bool) -> None:
    resp = await pair.chat(f"fast-{marker}", stream=stream)
    status, code = EXPECTED_ERRORS[marker]
    assert (resp.status_code, resp.json()["error"]["code"]) == (status, code)
    if marker == "err429":
        assert resp.headers["retry-after"] == "1"


async def test_openai_sdk_reads_the_fast_path(pair: Gateway) -> None:
    client = openai.AsyncOpenAI(base_url=f"{pair.url}/v1", api_key="unused", max_retries=0)
    messages: Any = [{"role": "user", "content": "hello there"}]
    try:
        plain = await client.chat.completions.create(model="fast-ok", messages=messages)
        assert plain.choices[0].message.content == "".join(f"word{i} " for i in range(20))
        assert plain.usage is not None
        assert plain.usage.total_tokens == 22

        stream = await client.chat.completions.create(
            model="fast-ok", messages=messages, stream=True, stream_options={"include_usage": True}
        )
        text, usage = "", None
        async for chunk in stream:
            if chunk.choices:
                text += chunk.choices[0].delta.content or ""
            usage = chunk.usage or usage
        assert text == plain.choices[0].message.content
        assert usage is not None
        assert usage.completion_tokens == 20

        async with client.chat.completions.stream(
            model="fast-tooluse", messages=messages, tools=[WEATHER]
        ) as events:
            final = await events.get_final_completion()
        call = final.choices[0].message.tool_calls
        assert call is not None
        assert call[0].function.name == "get_weather"
        assert json.loads(call[0].function.arguments) == {"city": "Paris"}
        assert final.choices[0].finish_reason == "tool_calls"
    finally:
        await client.close()


class FakeContent:
    def __init__(self, pieces: list[bytes]) -> None:
        self.pieces = pieces

    async def iter_any(self) -> AsyncIterator[bytes]:
        for piece in self.pieces:
            yield piece


class FakeResponse:
    def __init__(self, pieces: list[bytes]) -> None:
        self.content = FakeContent(pieces)
        self.released = False

    def release(self) -> None:
        self.released = True


def anthropic_events(stop: bool = True) -> bytes:
    message = {"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-x"}
    message |= {"content": [], "usage": {"input_tokens": 3, "output_tokens": 1}}
    events: list[tuple[str, dict[str, Any]]] = [
        ("message_start", {"type": "message_start", "message": message}),
        (
            "content_block_start",
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "text", "text": ""},
            },
        ),
        ("ping", {"type": "ping"}),
    ]
    for word in ("Hé ", "là ", "✓"):
        delta = {"type": "text_delta", "text": word}
        events.append(
            ("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": delta})
        )
    events.append(("content_block_stop", {"type": "content_block_stop", "index": 0}))
    if stop:
        delta = {
            "type": "message_delta",
            "delta": {"stop_reason": "end_turn"},
            "usage": {"output_tokens": 3},
        }
        events += [("message_delta", delta), ("message_stop", {"type": "message_stop"})]
    return b"".join(
        f"event: {name}\r\ndata: {json.dumps(data)}\r\n\r\n".encode() for name, data in events
    )


def fast_stream(pieces: list[bytes], include_usage: bool = True) -> tuple[FastStream, FakeResponse]:
    from litellm.llms.anthropic.chat.handler import ModelResponseIterator

    def to_upstream(exc: BaseException) -> UpstreamError:
        return UpstreamError(Kind.SERVER)

    resp = FakeResponse(pieces)
    iterator = ModelResponseIterator(streaming_response=None, sync_stream=False)
    stream = FastStream(resp, iterator, "claude-x", include_usage, to_upstream)  # type: ignore[arg-type]
    return stream, resp


async def collect(stream: FastStream) -> str:
    return "".join([piece.decode() async for piece in stream])


@pytest.mark.parametrize("size", [1, 7, 64, 100_000])
async def test_stream_events_split_anywhere_give_the_same_chunks(size: int) -> None:
    importlib.import_module("litellm")
    data = anthropic_events()
    stream, resp = fast_stream([data[i : i + size] for i in range(0, len(data), size)])
    parsed = chunks(await collect(stream))
    assert streamed_text(parsed) == "Hé là ✓"
    assert parsed[-2]["choices"][0]["finish_reason"] == "stop"
    assert parsed[-1]["usage"]["prompt_tokens"] == 3
    assert parsed[-1]["usage"]["completion_tokens"] == 3
    assert stream.usage is not None
    assert stream.usage.completion_tokens == 3
    assert resp.released


async def test_a_stream_cut_before_its_end_is_an_upstream_error() -> None:
    importlib.import_module("litellm")
    stream, resp = fast_stream([anthropic_events(stop=False)])
    received: list[str] = []

    async def read() -> None:
        async for piece in stream:
            received.append(piece.decode())

    with pytest.raises(UpstreamError) as caught:
        await read()
    assert caught.value.kind is Kind.SERVER
    assert streamed_text([json.loads(e) for e in sse_events("".join(received))]) == "Hé là ✓"
    assert resp.released


def test_sse_framer_keeps_an_unfinished_event() -> None:
    framer = SSEFramer()
    assert framer.feed(b"data: 1\r\n\r\ndata: 2\r") == [b"data: 1"]
    assert framer.feed(b"\n\r\n") == [b"data: 2"]
