"""Through the fake provider, on every path (native OpenAI, LiteLLM to Anthropic, LiteLLM to
OpenAI): answers, streams, token counts, the error mapping, and that nothing leaks."""

from __future__ import annotations

import asyncio
import json

import pytest
from conftest import (
    PATHS,
    PROVIDER_KEY,
    FakeProvider,
    Gateway,
    LogLines,
    deployment,
    serve,
    sse_events,
)

# Words a client must never see, and the logs must never hold: where the provider lives, its
# key, Python exception class names and tracebacks.
INTERNALS = (
    "Traceback",
    "Exception",
    "Error:",
    "litellm",
    "LiteLLM",
    "aiohttp",
    "httpx",
    "openai.",
    "anthropic.",
    "InternalServerError",
    "APIConnectionError",
)


def assert_no_leak(text: str, provider: FakeProvider) -> None:
    assert f":{provider.port}" not in text
    assert PROVIDER_KEY not in text
    assert PROVIDER_KEY[:12] not in text
    for word in INTERNALS:
        assert word not in text, word


@pytest.mark.parametrize("path", PATHS)
async def test_chat_through_each_path(gateway: Gateway, provider: FakeProvider, path: str) -> None:
    resp = await gateway.chat(f"{path}-ok")
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"]["content"].startswith("word0 word1")
    assert body["usage"]["completion_tokens"] == 20
    wire = "/v1/messages" if path == "anthropic" else "/v1/chat/completions"
    assert provider.stats()[f"POST {wire}"] == 1


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("include_usage", [True, False])
async def test_stream_through_each_path(
    gateway: Gateway, provider: FakeProvider, logs: LogLines, path: str, include_usage: bool
) -> None:
    extra = {"stream_options": {"include_usage": True}} if include_usage else {}
    resp = await gateway.chat(f"{path}-ok", stream=True, **extra)
    assert resp.status_code == 200
    events = sse_events(resp.text)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    text = "".join(
        c["choices"][0]["delta"].get("content") or "" for c in chunks if c.get("choices")
    )
    assert text == "".join(f"word{i} " for i in range(20))
    usage_chunks = [c for c in chunks if c.get("usage")]
    if include_usage:
        assert usage_chunks[-1]["usage"]["completion_tokens"] == 20
    else:
        assert usage_chunks == []
    # Usage is counted either way: the gateway always asks the provider for it.
    line = await logs.for_request(resp.headers["x-request-id"])
    assert line["stream"] is True
    assert line["tokens_out"] == 20
    assert line["tokens_in"] == 2


@pytest.mark.parametrize("model", ["embed", "translated-embed"])
async def test_embeddings(gateway: Gateway, provider: FakeProvider, model: str) -> None:
    resp = await gateway.client.post("/v1/embeddings", json={"model": model, "input": ["a", "b"]})
    assert resp.status_code == 200
    body = resp.json()
    assert len(body["data"]) == 2
    assert len(body["data"][0]["embedding"]) == 8
    assert provider.stats()["POST /v1/embeddings"] == 1


async def test_models_lists_every_group(gateway: Gateway) -> None:
    ids = [m["id"] for m in (await gateway.client.get("/v1/models")).json()["data"]]
    assert "native-ok" in ids
    assert "anthropic-ok" in ids
    assert len(ids) == len(set(ids))


# marker -> (status, code); the same on every path.
ERRORS = {
    "err401": (502, "upstream_auth_failed"),
    "err403": (502, "upstream_auth_failed"),
    "err429": (429, "rate_limit_exceeded"),
    "err500": (502, "upstream_error"),
    "err503": (502, "upstream_error"),
    "stall": (504, "upstream_timeout"),
    "refused": (502, "upstream_unreachable"),
    "ctxlen": (400, "context_length_exceeded"),
}


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("marker", list(ERRORS))
@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
async def test_error_mapping(
    gateway: Gateway,
    provider: FakeProvider,
    logs: LogLines,
    capfd: pytest.CaptureFixture[str],
    path: str,
    marker: str,
    stream: bool,
) -> None:
    status, code = ERRORS[marker]
    resp = await gateway.chat(f"{path}-{marker}", stream=stream)
    assert resp.status_code == status, resp.text
    err = resp.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert err["code"] == code
    if marker == "err429":
        assert int(resp.headers["retry-after"]) >= 1
    if marker == "ctxlen":
        assert err["type"] == "invalid_request_error"
        assert err["param"] == "messages"
    assert_no_leak(resp.text, provider)
    line = await logs.for_request(resp.headers["x-request-id"])
    assert line["status"] == status
    assert line["error"] == code
    assert line["attempts"] == 1  # no hidden retries: num_retries is 0
    for text in logs.lines():
        assert_no_leak(text, provider)
    metrics = await gateway.metrics()
    assert f'model="{path}-{marker}",type="{code}"' in metrics
    out, err = capfd.readouterr()
    assert "Give Feedback" not in out + err  # LiteLLM's banner is off
    assert_no_leak(out + err, provider)


@pytest.mark.parametrize("path", PATHS)
async def test_error_in_the_middle_of_a_stream_ends_it_with_an_error_event(
    gateway: Gateway, provider: FakeProvider, logs: LogLines, path: str
) -> None:
    resp = await gateway.chat(f"{path}-midstream", stream=True)
    assert resp.status_code == 200
    events = sse_events(resp.text)
    assert "[DONE]" not in events
    last = json.loads(events[-1])
    assert last["error"]["code"] in ("upstream_error", "upstream_unreachable")
    assert set(last["error"]) == {"message", "type", "param", "code"}
    contents = [json.loads(e) for e in events[:-1]]
    assert any(c["choices"] and c["choices"][0]["delta"].get("content") for c in contents)
    assert_no_leak(resp.text, provider)
    line = await logs.for_request(resp.headers["x-request-id"])
    assert line["error"] == last["error"]["code"]
    for text in logs.lines():
        assert_no_leak(text, provider)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize(
    ("mode", "status", "code"),
    [
        ("fail", 502, "upstream_error"),
        ("ratelimit", 429, "rate_limit_exceeded"),
        ("unauthorized", 502, "upstream_auth_failed"),
    ],
)
async def test_global_provider_failure_modes(
    gateway: Gateway, provider: FakeProvider, path: str, mode: str, status: int, code: str
) -> None:
    provider.control(mode)
    resp = await gateway.chat(f"{path}-ok")
    assert resp.status_code == status
    assert resp.json()["error"]["code"] == code
    provider.control("ok")
    assert (await gateway.chat(f"{path}-ok")).status_code == 200


@pytest.mark.parametrize("path", PATHS)
async def test_gateway_secret_and_client_headers_never_reach_the_provider(
    fake_provider: FakeProvider, path: str
) -> None:
    config = {"model_list": [deployment(path, "m", fake_provider.url)]}
    async with serve(config, gateway_secret="gw-top-secret-777") as gw:
        fake_provider.clear()
        resp = await gw.client.post(
            "/v1/chat/completions",
            json={"model": "m", "messages": [{"role": "user", "content": "hi"}]},
            headers={
                "X-Gateway-Secret": "gw-top-secret-777",
                "Authorization": "Bearer client-gateway-key",
                "apikey": "client-gateway-key",
            },
        )
        assert resp.status_code == 200, resp.text
    seen = json.dumps(fake_provider.requests())
    assert "gw-top-secret-777" not in seen
    assert "client-gateway-key" not in seen
    assert PROVIDER_KEY in seen  # the provider got the deployment's own key


@pytest.mark.parametrize("path", PATHS)
async def test_retries_then_fallback(
    fake_provider: FakeProvider, logs: LogLines, path: str
) -> None:
    url = fake_provider.url
    config = {
        "model_list": [deployment(path, "primary-err500", url), deployment(path, "backup", url)],
        "router_settings": {"num_retries": 2, "fallbacks": [{"primary-err500": ["backup"]}]},
    }
    async with serve(config) as gw:
        fake_provider.clear()
        resp = await gw.chat("primary-err500")
        assert resp.status_code == 200, resp.text
        line = await logs.for_request(resp.headers["x-request-id"])
        assert line["attempts"] == 4  # 1 + 2 retries on the primary, then the backup
        assert line["retries"] == 2
        assert line["fallbacks"] == 1
        assert line["deployment"] == "backup#1"
        assert fake_provider.stats()["status_500"] == 3
        text = await gw.metrics()
        assert 'llm_api_upstream_retries_total{model="primary-err500"} 2.0' in text
        assert 'llm_api_fallbacks_total{model="primary-err500"} 1.0' in text


@pytest.mark.parametrize("path", PATHS)
async def test_context_window_fallback(fake_provider: FakeProvider, path: str) -> None:
    url = fake_provider.url
    config = {
        "model_list": [deployment(path, "small-ctxlen", url), deployment(path, "large", url)],
        "router_settings": {
            "num_retries": 3,
            "context_window_fallbacks": [{"small-ctxlen": ["large"]}],
        },
    }
    async with serve(config) as gw:
        fake_provider.clear()
        resp = await gw.chat("small-ctxlen")
        assert resp.status_code == 200
        assert fake_provider.stats()["status_400"] == 1  # a context error is not retried


@pytest.mark.parametrize("path", PATHS)
async def test_cooldown_skips_a_failing_deployment(fake_provider: FakeProvider, path: str) -> None:
    url = fake_provider.url
    bad, good = deployment(path, "group", url), deployment(path, "group", url)
    bad["litellm_params"]["model"] += "-err500"
    config = {
        "model_list": [bad, good],
        "router_settings": {"num_retries": 1, "allowed_fails": 0, "cooldown_time": 60},
    }
    async with serve(config) as gw:
        fake_provider.clear()
        results = [await gw.chat("group") for _ in range(10)]
        assert [r.status_code for r in results] == [200] * 10
        assert fake_provider.stats().get("status_500", 0) <= 1
        assert 'llm_api_deployment_cooldowns_total{model="group"}' in await gw.metrics()


async def test_ready_makes_no_provider_call(fake_provider: FakeProvider) -> None:
    config = {"model_list": [deployment(p, f"m-{p}", fake_provider.url) for p in PATHS]}
    fake_provider.clear()
    async with serve(config) as gw:
        ready = await gw.client.get("/health/ready")
        assert ready.status_code == 200
        assert ready.json()["models"] == 3
        models = await gw.client.get("/v1/models")
        assert models.status_code == 200
    assert fake_provider.stats().get("requests", 0) == 0


async def test_200_concurrent_requests_through_providers(
    gateway: Gateway, provider: FakeProvider
) -> None:
    kinds: list[tuple[str, bool]] = [("native-ok", False), ("native-ok", True)]
    kinds += [("anthropic-ok", False), ("anthropic-ok", True)]
    results = await asyncio.gather(
        *(gateway.chat(kinds[i % 4][0], stream=kinds[i % 4][1]) for i in range(200))
    )
    assert [r.status_code for r in results] == [200] * 200
    streamed = [r for i, r in enumerate(results) if kinds[i % 4][1]]
    assert all(sse_events(r.text)[-1] == "[DONE]" for r in streamed)
    assert all(r.json()["usage"]["completion_tokens"] == 20 for r in results if r not in streamed)


@pytest.mark.parametrize("path", ["anthropic", "translated"])
async def test_client_cannot_set_litellm_control_parameters(
    gateway: Gateway, provider: FakeProvider, path: str
) -> None:
    # LiteLLM reads api_base/api_key/mock_response from the same arguments as the request's
    # parameters: a client must not redirect the deployment's key elsewhere or fake answers.
    resp = await gateway.chat(
        f"{path}-ok",
        api_base="http://127.0.0.1:9/v1",
        base_url="http://127.0.0.1:9/v1",
        api_key="client-key",
        mock_response="faked",
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["choices"][0]["message"]["content"].startswith("word0")
    assert provider.stats()["requests"] == 1
