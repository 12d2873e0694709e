"""The HTTP surface on the embedded default (the demo model): endpoints, bad inputs, request ids,
consumer identity, the gateway secret and the body limit."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from conftest import GATEWAY_SECRET, Gateway, LogLines, serve, sse_events

DEMO = "ai-gateway-demo"


async def test_health(demo_gateway: Gateway) -> None:
    live = await demo_gateway.client.get("/health/live")
    ready = await demo_gateway.client.get("/health/ready")
    assert live.status_code == 200
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready", "models": 1}


async def test_models_lists_the_demo_model(demo_gateway: Gateway) -> None:
    resp = await demo_gateway.client.get("/v1/models")
    assert resp.status_code == 200
    body = resp.json()
    assert body["object"] == "list"
    assert [m["id"] for m in body["data"]] == [DEMO]
    assert body["data"][0]["object"] == "model"


async def test_demo_chat_answers_without_a_provider(demo_gateway: Gateway) -> None:
    resp = await demo_gateway.chat(DEMO)
    assert resp.status_code == 200
    body = resp.json()
    assert body["object"] == "chat.completion"
    assert "demo model" in body["choices"][0]["message"]["content"]
    assert body["usage"]["completion_tokens"] > 0


async def test_demo_chat_streams(demo_gateway: Gateway) -> None:
    resp = await demo_gateway.chat(DEMO, stream=True, stream_options={"include_usage": True})
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/event-stream")
    events = sse_events(resp.text)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert "demo model" in text
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"]["completion_tokens"] > 0


async def test_demo_stream_without_usage_has_no_usage_chunk(demo_gateway: Gateway) -> None:
    resp = await demo_gateway.chat(DEMO, stream=True)
    chunks = [json.loads(e) for e in sse_events(resp.text)[:-1]]
    assert all(c["choices"] for c in chunks)
    assert not any("usage" in c for c in chunks)


async def test_demo_embeddings(demo_gateway: Gateway) -> None:
    resp = await demo_gateway.client.post(
        "/v1/embeddings", json={"model": DEMO, "input": ["a b", "c"]}
    )
    assert resp.status_code == 200
    body = resp.json()
    assert [d["index"] for d in body["data"]] == [0, 1]
    assert all(isinstance(x, float) for x in body["data"][0]["embedding"])


async def test_metrics_exposition(demo_gateway: Gateway) -> None:
    await demo_gateway.chat(DEMO)
    text = await demo_gateway.metrics()
    for name in (
        "llm_api_requests_total",
        "llm_api_request_duration_seconds_bucket",
        "llm_api_upstream_duration_seconds_bucket",
        "llm_api_tokens_total",
    ):
        assert name in text
    assert 'direction="out",model="ai-gateway-demo"' in text


def _error(resp: httpx.Response, status: int) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    err: dict[str, Any] = resp.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    return err


BAD_CHAT_BODIES = [
    ("not json", b"{model: 1", None, "invalid_json"),
    ("empty body", b"", None, "invalid_json"),
    ("array", b"[1, 2]", None, "invalid_type"),
    ("missing model", {"messages": [{"role": "user", "content": "x"}]}, "model", None),
    ("model not a string", {"model": 3, "messages": []}, "model", "invalid_type"),
    ("missing messages", {"model": DEMO}, "messages", "missing_required_parameter"),
    ("messages not a list", {"model": DEMO, "messages": "hi"}, "messages", "invalid_type"),
    ("empty messages", {"model": DEMO, "messages": []}, "messages", "empty_array"),
    ("message not an object", {"model": DEMO, "messages": ["hi"]}, "messages[0]", None),
    ("bad role", {"model": DEMO, "messages": [{"role": "x", "content": "y"}]}, None, None),
    (
        "content wrong type",
        {"model": DEMO, "messages": [{"role": "user", "content": 5}]},
        "messages[0].content",
        "invalid_type",
    ),
    (
        "user without content",
        {"model": DEMO, "messages": [{"role": "user"}]},
        "messages[0].content",
        None,
    ),
    ("temperature string", {"temperature": "hot"}, "temperature", "invalid_type"),
    ("temperature range", {"temperature": 7}, "temperature", "invalid_value"),
    ("max_tokens float", {"max_tokens": 1.5}, "max_tokens", "invalid_type"),
    ("max_tokens bool", {"max_tokens": True}, "max_tokens", "invalid_type"),
    ("stream not bool", {"stream": "yes"}, "stream", "invalid_type"),
    ("stop wrong type", {"stop": 3}, "stop", "invalid_type"),
    ("stream_options wrong type", {"stream_options": []}, "stream_options", "invalid_type"),
]


@pytest.mark.parametrize(
    ("body", "param", "code"),
    [pytest.param(b, p, c, id=name) for name, b, p, c in BAD_CHAT_BODIES],
)
async def test_bad_chat_input_is_a_clean_400(
    demo_gateway: Gateway, body: Any, param: str | None, code: str | None
) -> None:
    if isinstance(body, dict) and "model" not in body and "messages" not in body:
        body = {"model": DEMO, "messages": [{"role": "user", "content": "x"}], **body}
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    resp = await demo_gateway.client.post(
        "/v1/chat/completions", content=content, headers={"content-type": "application/json"}
    )
    err = _error(resp, 400)
    assert err["type"] == "invalid_request_error"
    if param is not None:
        assert err["param"] == param
        assert param in err["message"]
    if code is not None:
        assert err["code"] == code


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": DEMO}, "input"),
        ({"model": DEMO, "input": ""}, "input"),
        ({"model": DEMO, "input": []}, "input"),
        ({"model": DEMO, "input": [1, "a"]}, "input"),
        ({"model": DEMO, "input": "x", "encoding_format": "hex"}, "encoding_format"),
        ({"model": DEMO, "input": "x", "dimensions": "8"}, "dimensions"),
    ],
)
async def test_bad_embeddings_input_is_a_clean_400(
    demo_gateway: Gateway, body: dict[str, Any], param: str
) -> None:
    err = _error(await demo_gateway.client.post("/v1/embeddings", json=body), 400)
    assert err["param"] == param


async def test_unknown_model_is_404_model_not_found(demo_gateway: Gateway) -> None:
    err = _error(await demo_gateway.chat("no-such-model"), 404)
    assert err["code"] == "model_not_found"
    assert err["param"] == "model"
    emb = await demo_gateway.client.post("/v1/embeddings", json={"model": "nope", "input": "x"})
    assert _error(emb, 404)["code"] == "model_not_found"


async def test_unknown_route_and_method_are_openai_shaped(demo_gateway: Gateway) -> None:
    assert _error(await demo_gateway.client.get("/v1/nothing"), 404)["code"] == "not_found"
    wrong = await demo_gateway.client.get("/v1/chat/completions")
    assert _error(wrong, 405)["code"] == "method_not_allowed"


async def test_body_over_the_limit_is_413() -> None:
    async with serve(None, max_body_bytes=2048) as gw:
        big = {"model": DEMO, "messages": [{"role": "user", "content": "x" * 4096}]}
        err = _error(await gw.client.post("/v1/chat/completions", json=big), 413)
        assert err["code"] == "request_too_large"

        async def chunked() -> Any:  # no Content-Length: the limit applies while reading
            for _ in range(8):
                yield b"x" * 1024

        resp = await gw.client.post("/v1/chat/completions", content=chunked())
        assert _error(resp, 413)["code"] == "request_too_large"
        small = await gw.chat(DEMO)
        assert small.status_code == 200


async def test_huge_body_with_default_limit_is_413(demo_gateway: Gateway) -> None:
    huge = b'{"model": "ai-gateway-demo", "messages": "' + b"x" * (21 * 1024 * 1024) + b'"}'
    resp = await demo_gateway.client.post("/v1/chat/completions", content=huge)
    assert _error(resp, 413)["code"] == "request_too_large"


async def test_kong_request_id_is_reused(demo_gateway: Gateway, logs: LogLines) -> None:
    rid = "d2f6a1c0-kong-42"
    resp = await demo_gateway.client.post(
        "/v1/chat/completions",
        json={"model": DEMO, "messages": [{"role": "user", "content": "hi"}]},
        headers={"X-Kong-Request-Id": rid},
    )
    assert resp.headers["x-request-id"] == rid
    assert (await logs.for_request(rid))["status"] == 200


async def test_every_response_has_a_request_id(demo_gateway: Gateway) -> None:
    ok = await demo_gateway.chat(DEMO)
    bad = await demo_gateway.chat("nope")
    ids = {ok.headers["x-request-id"], bad.headers["x-request-id"]}
    assert len(ids) == 2
    assert all(len(i) == 32 for i in ids)


async def test_consumer_identity_in_logs_and_metrics(logs: LogLines) -> None:
    # Kong's consumer headers count only with the gateway secret (test_security.py), and only
    # configured consumers get a label of their own.
    config = {
        "model_list": [
            {
                "model_name": DEMO,
                "litellm_params": {"model": "openai/demo", "mock_response": "Hello from the demo"},
            }
        ],
        "consumers": ["alice"],
    }
    async with serve(config, gateway_secret=GATEWAY_SECRET) as gw:
        await _consumer_identity(gw, logs)


async def _consumer_identity(demo_gateway: Gateway, logs: LogLines) -> None:
    resp = await demo_gateway.client.post(
        "/v1/chat/completions",
        json={"model": DEMO, "messages": [{"role": "user", "content": "one two three"}]},
        headers={
            "X-Consumer-Username": "alice",
            "X-Consumer-ID": "c-123",
            "X-Gateway-Secret": GATEWAY_SECRET,
        },
    )
    line = await logs.for_request(resp.headers["x-request-id"])
    assert line["consumer"] == "alice"
    assert line["consumer_id"] == "c-123"
    assert line["model"] == DEMO
    assert line["status"] == 200
    assert line["tokens_in"] == 3
    assert line["tokens_out"] > 0
    assert isinstance(line["latency_ms"], float)
    assert "upstream_latency_ms" in line
    text = await demo_gateway.metrics()
    assert 'consumer="alice",endpoint="/v1/chat/completions",model="ai-gateway-demo"' in text
    assert 'consumer="alice",direction="in",model="ai-gateway-demo"} 3.0' in text


async def test_gateway_secret_guards_v1_only(logs: LogLines) -> None:
    async with serve(None, gateway_secret=GATEWAY_SECRET) as gw:
        missing = await gw.chat(DEMO)
        assert _error(missing, 401)["code"] == "invalid_gateway_secret"
        wrong = await gw.client.get("/v1/models", headers={"X-Gateway-Secret": "nope"})
        assert _error(wrong, 401)["type"] == "authentication_error"
        right = await gw.client.get("/v1/models", headers={"X-Gateway-Secret": GATEWAY_SECRET})
        assert right.status_code == 200
        assert (await gw.client.get("/health/ready")).status_code == 200
        assert (await gw.client.get("/health/live")).status_code == 200
    assert not any(GATEWAY_SECRET in line for line in logs.lines())


async def test_gateway_secret_header_name_is_configurable() -> None:
    async with serve(None, gateway_secret="s3cret-value", gateway_secret_header="X-Other") as gw:
        ok = await gw.client.get("/v1/models", headers={"X-Other": "s3cret-value"})
        assert ok.status_code == 200
        default = await gw.client.get("/v1/models", headers={"X-Gateway-Secret": "s3cret-value"})
        assert default.status_code == 401


async def test_200_concurrent_requests_all_succeed(demo_gateway: Gateway) -> None:
    import asyncio

    results = await asyncio.gather(
        *(demo_gateway.chat(DEMO, stream=bool(i % 2)) for i in range(200))
    )
    assert [r.status_code for r in results] == [200] * 200
