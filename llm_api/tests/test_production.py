"""Production conditions (issue 12), over real HTTP against the fake provider: a client that
goes away, long pauses in a stream, provider messages, proxies, retries, deployment options,
readiness, logs and metrics."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from conftest import (
    PATHS,
    PROVIDER_ENV,
    PROVIDER_KEY,
    FakeProvider,
    Gateway,
    LogLines,
    deployment,
    free_port,
    serve,
    sse_events,
)
from llm_api.backends import translated
from llm_api.backends.native import NativeBackend, NativeStream
from llm_api.backends.sse import SSEFramer, is_comment, parse_event
from llm_api.backends.translated import uses_fast_path
from llm_api.config import ConfigError, RouterSettings, parse_config
from llm_api.errors import Kind, UpstreamError
from llm_api.observability import Metrics, RequestContext
from llm_api.router import Router

from llm_api import router as router_module

ROUTER = {"num_retries": 0, "timeout": 10}
LEAK_KEY = "sk-proj-LeakedKey0123456789abcdefXYZ"
STREAM_EVENTS = 23  # the fake provider's OpenAI stream: role, 20 words, finish, [DONE]
CHUNK_DELAY = 0.25


def config(*entries: dict[str, Any], **router: Any) -> dict[str, Any]:
    return {"model_list": list(entries), "router_settings": {**ROUTER, **router}}


async def wait_for(check: Any, seconds: float = 10) -> Any:
    """Poll `check` (a function, or a coroutine function) until it returns something truthy
    (a bounded wait, not a timing claim)."""
    deadline = time.monotonic() + seconds
    while True:
        found = check()
        if asyncio.iscoroutine(found):
            found = await found
        if found or time.monotonic() > deadline:
            return found
        await asyncio.sleep(0.05)


async def ready(gw: Gateway, seconds: float = 60) -> bool:
    """Wait until the gateway (served in this event loop) reports ready."""

    async def check() -> bool:
        return (await gw.client.get("/health/ready")).status_code == 200

    return bool(await wait_for(check, seconds))


# --- client disconnect --------------------------------------------------------------------


@contextlib.asynccontextmanager
async def warm_gateway(
    provider: FakeProvider, path: str, model: str, *, stream: bool
) -> AsyncIterator[Gateway]:
    """llm_api serving `model` on `path`; on LiteLLM's paths once LiteLLM is imported and its
    first call's lazy imports are done (one request answered), with the provider's record clear."""
    async with serve(config(deployment(path, model, provider.url, timeout=10))) as gw:
        if path != "native":
            await ready(gw)
            assert (await gw.chat(model, stream=stream)).status_code == 200
            provider.clear()
        yield gw


async def assert_provider_left(
    gw: Gateway, provider: FakeProvider, logs: LogLines, rid: str, sent_at_close: int
) -> dict[str, Any]:
    """The provider saw its connection closed within a second of the client leaving, and the
    request is logged and counted as 499 client_closed. Returns its access-log line."""
    gone = await wait_for(lambda: [s for s in provider.streams() if s["client_gone"]])
    assert gone, provider.streams()
    # It did at most 1 s / CHUNK_DELAY steps (stream events or slow-answer steps) after the
    # client closed, not the rest of the answer.
    assert gone[0]["gone_after_events"] - sent_at_close <= 1 / CHUNK_DELAY
    assert gone[0]["gone_after_events"] < gone[0]["events"]
    line: dict[str, Any] = await logs.for_request(rid)
    assert line["status"] == 499
    assert line["error"] == "client_closed"
    assert 'status="499"' in await gw.metrics()
    return line


@pytest.mark.parametrize("path", PATHS)
async def test_client_disconnect_stops_the_provider_stream(
    provider: FakeProvider, logs: LogLines, path: str
) -> None:
    model = f"{path}-gone"
    async with warm_gateway(provider, path, model, stream=True) as gw:
        provider.set(chunk_delay=CHUNK_DELAY)
        body = {"model": model, "messages": [{"role": "user", "content": "hi"}], "stream": True}
        async with gw.client.stream("POST", "/v1/chat/completions", json=body) as resp:
            assert resp.status_code == 200
            rid = resp.headers["x-request-id"]
            async for line in resp.aiter_lines():
                if line.startswith("data: {"):
                    break  # the first chunk: the client goes away
            async with httpx.AsyncClient() as client:
                (stream,) = (await client.get(f"{provider.url}/__streams")).json()
            sent_at_close = stream["sent"]
        line = await assert_provider_left(gw, provider, logs, rid, sent_at_close)
        assert line["tokens_out"] is not None


async def post_and_leave(
    gw: Gateway, body: dict[str, Any], request_id: str, provider: Any, steps: int = 1
) -> int:
    """POST `body` on a raw connection, wait until the provider is answering it (`steps` done
    of a slow answer; 0: the request has arrived), then close the connection: the client goes
    away. Returns how many steps the provider had done when the client closed."""
    host, port = gw.url.removeprefix("http://").split(":")
    _reader, writer = await asyncio.open_connection(host, int(port))
    data = json.dumps(body).encode()
    head = (
        f"POST /v1/chat/completions HTTP/1.1\r\nhost: {host}\r\n"
        f"content-type: application/json\r\ncontent-length: {len(data)}\r\n"
        f"x-kong-request-id: {request_id}\r\n\r\n"
    )
    writer.write(head.encode() + data)
    await writer.drain()
    started = await wait_for(lambda: [s for s in provider.streams() if s["sent"] >= steps])
    assert started, "the provider never started answering"
    (record,) = provider.streams()
    writer.close()
    await writer.wait_closed()
    return int(record["sent"])


@pytest.mark.parametrize("path", PATHS)
async def test_client_disconnect_cancels_a_plain_request(
    provider: FakeProvider, logs: LogLines, path: str
) -> None:
    model = f"{path}-gone"
    async with warm_gateway(provider, path, model, stream=False) as gw:
        # A normal non-streamed request is unaffected: answered whole, after the provider's
        # 20 slow steps.
        provider.set(plain_delay=0.02)
        resp = await gw.chat(model)
        assert resp.status_code == 200
        assert resp.json()["usage"]["completion_tokens"] == 20
        (record,) = provider.streams()
        assert record["completed"]
        assert not record["client_gone"]
        line = await logs.for_request(resp.headers["x-request-id"])
        assert line["status"] == 200
        provider.clear()
        # A client that goes away while the provider generates its answer.
        provider.set(plain_delay=CHUNK_DELAY)
        body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
        rid = f"gone-plain-{path}"
        sent_at_close = await post_and_leave(gw, body, rid, provider)
        line = await assert_provider_left(gw, provider, logs, rid, sent_at_close)
        assert line["tokens_out"] is None  # nothing was received
        assert 'outcome="cancelled"' in await gw.metrics()


async def test_client_disconnect_before_a_streams_first_byte(
    provider: FakeProvider, logs: LogLines
) -> None:
    # The provider sends nothing (not even headers) for 20 s: llm_api waits in open_stream.
    model = "native-stall-gone"
    provider.control("ok", stall_seconds=20)
    async with serve(config(deployment("native", model, provider.url, timeout=30))) as gw:
        body = {"model": model, "messages": [{"role": "user", "content": "hi"}], "stream": True}
        await post_and_leave(gw, body, "gone-before-stream", provider, steps=0)
        gone = await wait_for(lambda: [s for s in provider.streams() if s["client_gone"]])
        assert gone, provider.streams()
        assert not gone[0]["completed"]
        line = await logs.for_request("gone-before-stream")
        assert line["status"] == 499
        assert line["error"] == "client_closed"


# --- heartbeats and provider keep-alives --------------------------------------------------


async def test_a_40_second_gap_reaches_the_client_as_heartbeats(provider: FakeProvider) -> None:
    # The real gap of the issue (40 s, longer than common idle timeouts of 30 s); a heartbeat
    # every 10 s (the default is 15 s) so that several arrive. Run once, on the native path.
    entry = deployment("native", "gap", provider.url, timeout=10, stream_timeout=60)
    async with serve(config(entry), heartbeat_seconds=10) as gw:
        provider.set(gap_seconds=40, gap_after=2, keepalive_seconds=0)
        resp = await gw.chat("gap", stream=True)
    assert resp.status_code == 200
    assert resp.text.count(": keep-alive\n\n") >= 3
    events = sse_events(resp.text)
    assert events[-1] == "[DONE]"
    text = "".join(json.loads(e)["choices"][0]["delta"].get("content") or "" for e in events[:-1])
    assert text == "".join(f"word{i} " for i in range(20))


@pytest.mark.parametrize("path", ["native", "anthropic"])
async def test_provider_keepalives_are_passed_on(provider: FakeProvider, path: str) -> None:
    entry = deployment(path, "ka", provider.url, timeout=10)
    async with serve(config(entry), heartbeat_seconds=0) as gw:  # llm_api's own: off
        if path != "native":
            await ready(gw)
        provider.set(gap_seconds=1.0, gap_after=2, keepalive_seconds=0.25)
        resp = await gw.chat("ka", stream=True)
    assert resp.status_code == 200
    assert ": keep-alive\n\n" in resp.text
    assert sse_events(resp.text)[-1] == "[DONE]"


# --- provider messages --------------------------------------------------------------------


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
async def test_provider_400_message_arrives_redacted(
    provider: FakeProvider, logs: LogLines, path: str, stream: bool
) -> None:
    entry = deployment(path, "p-leak", provider.url)
    async with serve(config(entry)) as gw:
        resp = await gw.chat("p-leak", stream=stream)
    assert resp.status_code == 400
    err = resp.json()["error"]
    message = err["message"]
    assert "Invalid value for 'temperature'" in message
    assert "greater than the maximum of 2" in message
    for secret in (LEAK_KEY, "LeakedKey", "fake-provider.example", "https://", "AbCdEf123456"):
        assert secret not in message, secret
        assert secret not in "\n".join(logs.lines())
    assert PROVIDER_KEY not in message
    if path != "anthropic":  # Anthropic's errors have neither param nor code
        assert err["param"] == "temperature"
        assert err["code"] == "invalid_value"


@pytest.mark.parametrize("marker", ["err401", "err403", "err500"])
async def test_auth_and_server_errors_stay_generic(provider: FakeProvider, marker: str) -> None:
    async with serve(config(deployment("native", f"n-{marker}", provider.url))) as gw:
        resp = await gw.chat(f"n-{marker}")
    message = resp.json()["error"]["message"]
    assert message.startswith("The upstream provider")
    assert "API key" not in message
    assert "server had an error" not in message
    assert "not allowed" not in message


# --- egress proxy -------------------------------------------------------------------------


async def test_proxy_environment_is_honoured(
    provider: FakeProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    far = deployment("native", "far", "http://upstream.invalid")  # only the proxy reaches it
    near = deployment("native", "near", provider.url)  # 127.0.0.1: in NO_PROXY
    async with serve(config(far, near)) as gw:
        monkeypatch.setenv("HTTP_PROXY", provider.url)
        monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
        far_resp = await gw.chat("far")
        near_resp = await gw.chat("near")
    assert far_resp.status_code == 200, far_resp.text
    assert near_resp.status_code == 200
    seen = {r["body"]["model"]: r.get("proxied_host") for r in provider.requests()}
    assert seen == {"far": "upstream.invalid", "near": None}


# --- retries ------------------------------------------------------------------------------


async def test_a_429_from_the_only_deployment_is_answered_not_retried(
    provider: FakeProvider,
) -> None:
    async with serve(
        config(deployment("native", "only-err429", provider.url), num_retries=3)
    ) as gw:
        resp = await gw.chat("only-err429")
    assert resp.status_code == 429
    assert resp.headers["retry-after"] == "1"  # the provider's
    assert provider.stats()["POST /v1/chat/completions"] == 1


async def test_a_429_is_retried_on_another_deployment(provider: FakeProvider) -> None:
    limited = deployment("native", "two-err429", provider.url, weight=1_000_000)
    other = deployment("native", "two", provider.url, weight=1)
    other["model_name"] = "two-err429"
    async with serve(config(limited, other, num_retries=1)) as gw:
        resp = await gw.chat("two-err429")
    assert resp.status_code == 200
    assert [r["body"]["model"] for r in provider.requests()] == ["two-err429", "two"]


async def test_deployment_weights_are_honoured(provider: FakeProvider) -> None:
    heavy = deployment("native", "w-heavy", provider.url, weight=1_000_000_000)
    light = deployment("native", "w-light", provider.url, rpm=1)  # rpm: a weight too
    heavy["model_name"] = light["model_name"] = "weighted"
    async with serve(config(heavy, light)) as gw:
        for _ in range(20):
            assert (await gw.chat("weighted")).status_code == 200
    assert {r["body"]["model"] for r in provider.requests()} == {"w-heavy"}


class FlakyBackend:
    """Fails with the given errors, then answers."""

    def __init__(self, errors: list[UpstreamError]) -> None:
        self.errors = errors
        self.calls = 0

    async def chat(self, dep: Any, body: Any) -> tuple[bytes, None]:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return b"{}", None


def _router(backend: FlakyBackend, **settings: Any) -> Router:
    entry = {"model_name": "m", "litellm_params": {"model": "openai/m", "api_base": "http://x"}}
    cfg = parse_config(
        {"model_list": [entry], "router_settings": {"num_retries": 3, **settings}}, "test"
    )
    return Router(cfg, {"native": backend}, Metrics())  # type: ignore[dict-item]


class _RouterAsyncio:
    """asyncio as llm_api.router alone sees it: sleep records the wait instead of waiting.

    Patching asyncio.sleep itself would reach every task on the session's loop: a server's main
    loop that wakes during the test would spin on the no-op sleep and never yield again.
    """

    def __init__(self) -> None:
        self.waits: list[float] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(asyncio, name)

    async def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)


async def _run(router: Router, monkeypatch: pytest.MonkeyPatch) -> list[float]:
    fake = _RouterAsyncio()
    monkeypatch.setattr(router_module, "asyncio", fake)
    waits = fake.waits
    ctx = RequestContext("rid", "c", None, "/v1/chat/completions")
    await router.execute("m", ctx, lambda backend, dep: backend.chat(dep, {}))
    return waits


async def test_retries_back_off_exponentially_with_jitter(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    backend = FlakyBackend([UpstreamError(Kind.SERVER) for _ in range(3)])
    waits = await _run(_router(backend, retry_backoff_base=1, retry_backoff_max=3), monkeypatch)
    assert backend.calls == 4
    assert len(waits) == 3
    assert all(0 <= w <= cap for w, cap in zip(waits, (1, 2, 3), strict=True))
    assert len(set(waits)) > 1  # jitter


async def test_retry_after_is_honoured_up_to_its_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    backend = FlakyBackend([UpstreamError(Kind.SERVER, retry_after="7")])
    waits = await _run(_router(backend, retry_backoff_base=0.1), monkeypatch)
    assert waits == [7.0]
    backend = FlakyBackend([UpstreamError(Kind.SERVER, retry_after="60")])
    with pytest.raises(UpstreamError):  # longer than max_retry_after: no retry
        await _run(_router(backend, max_retry_after=30), monkeypatch)
    assert backend.calls == 1


async def test_no_retry_past_the_request_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    backend = FlakyBackend([UpstreamError(Kind.SERVER, retry_after="5")])
    with pytest.raises(UpstreamError):
        await _run(_router(backend, request_deadline=2), monkeypatch)
    assert backend.calls == 1


class SlowBackend:
    """Answers after `seconds` (a provider that is slow, not failing)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.calls = 0

    async def chat(self, dep: Any, body: Any) -> tuple[bytes, None]:
        self.calls += 1
        await asyncio.sleep(self.seconds)
        return b"{}", None


async def test_the_deadline_cuts_an_attempt_still_running() -> None:
    backend = SlowBackend(30)
    router = _router(backend, request_deadline=0.2)  # type: ignore[arg-type]
    ctx = RequestContext("rid", "c", None, "/v1/chat/completions")
    with pytest.raises(UpstreamError) as info:
        await router.execute("m", ctx, lambda backend, dep: backend.chat(dep, {}))
    assert info.value.kind is Kind.TIMEOUT
    assert backend.calls == 1  # past the deadline: no retry either


# --- deployment options -------------------------------------------------------------------


def test_native_options_not_applied_are_rejected_naming_the_key() -> None:
    entry = {"model_name": "m", "litellm_params": {"model": "openai/m", "top_k": 5}}
    with pytest.raises(ConfigError, match=r"model_list\[0\]\.litellm_params\.top_k: not applied"):
        parse_config({"model_list": [entry]}, "cfg.yaml")
    bad_weight = {"model_name": "m", "litellm_params": {"model": "openai/m", "weight": 0}}
    with pytest.raises(ConfigError, match=r"litellm_params\.weight: must be a number"):
        parse_config({"model_list": [bad_weight]}, "cfg.yaml")


def test_routing_keys_keep_an_anthropic_deployment_on_the_fast_path() -> None:
    params = {"model": "anthropic/claude", "api_key": "k", "weight": 2, "rpm": 10}
    cfg = parse_config({"model_list": [{"model_name": "c", "litellm_params": params}]}, "cfg")
    dep = cfg.deployments[0]
    assert dep.weight == 2.0
    assert dep.extra_params == {}
    assert uses_fast_path(dep)


async def test_native_options_are_applied(provider: FakeProvider) -> None:
    entry = deployment(
        "native",
        "opts",
        provider.url,
        temperature=0.3,
        max_tokens=50,
        organization="org-team",
        extra_headers={"X-Team": "blue"},
        extra_body={"top_k": 4},
        weight=3,
    )
    async with serve(config(entry)) as gw:
        assert (await gw.chat("opts", max_tokens=10)).status_code == 200
    (req,) = provider.requests()
    assert req["headers"]["openai-organization"] == "org-team"
    assert req["headers"]["x-team"] == "blue"
    body = req["body"]
    assert (body["temperature"], body["max_tokens"], body["top_k"]) == (0.3, 10, 4)
    assert "weight" not in body


async def test_litellm_per_model_rules_on_the_native_path(provider: FakeProvider) -> None:
    plain_cfg = config(deployment("native", "gpt-4o-mini", provider.url))
    plain = parse_config(plain_cfg, "cfg", {PROVIDER_ENV: "k"})
    assert not plain.needs_litellm  # no rules: LiteLLM is never imported
    entry = deployment("native", "gpt-5-mini", provider.url)
    cfg_dict = config(entry)
    assert parse_config(cfg_dict, "cfg", {PROVIDER_ENV: "k"}).needs_litellm
    async with serve(cfg_dict) as gw:
        await ready(gw)
        assert (await gw.chat("gpt-5-mini", max_tokens=10)).status_code == 200
        assert (await gw.chat("gpt-5-mini", max_tokens=10, stream=True)).status_code == 200
    for req in provider.requests():
        assert req["body"]["max_completion_tokens"] == 10
        assert "max_tokens" not in req["body"]


# --- API surface, readiness ---------------------------------------------------------------


async def test_models_retrieve(provider: FakeProvider) -> None:
    async with serve(config(deployment("native", "org/model-a", provider.url))) as gw:
        client = openai.AsyncOpenAI(base_url=f"{gw.url}/v1", api_key="unused", max_retries=0)
        model = await client.models.retrieve("org/model-a")
        assert (model.id, model.object) == ("org/model-a", "model")
        with pytest.raises(openai.NotFoundError) as info:
            await client.models.retrieve("nope")
        assert info.value.code == "model_not_found"
        await client.close()


async def test_ready_waits_for_litellm(
    provider: FakeProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    release = threading.Event()
    real = translated.import_litellm

    def slow_import() -> Any:
        release.wait(30)
        return real()

    monkeypatch.setattr(translated, "import_litellm", slow_import)
    async with serve(config(deployment("anthropic", "claude", provider.url))) as gw:
        resp = await gw.client.get("/health/ready")
        assert resp.status_code == 503
        assert resp.json()["reason"] == "litellm_importing"
        release.set()
        assert await ready(gw)


async def test_not_ready_when_litellm_fails_to_import(
    provider: FakeProvider, monkeypatch: pytest.MonkeyPatch, logs: LogLines
) -> None:
    def broken() -> Any:
        raise ImportError("no litellm here")

    monkeypatch.setattr(translated, "import_litellm", broken)
    async with serve(config(deployment("anthropic", "claude", provider.url))) as gw:

        async def failed() -> bool:
            return "import_failed" in (await gw.client.get("/health/ready")).text

        await wait_for(failed)
        resp = await gw.client.get("/health/ready")
    assert (resp.status_code, resp.json()["reason"]) == (503, "litellm_import_failed")
    assert any("LiteLLM could not be imported" in line for line in logs.lines())


async def test_image_sized_body_fits_the_default_limit(provider: FakeProvider) -> None:
    image = "data:image/png;base64," + "A" * (4 * 1024 * 1024)  # a ~3 MB image, base64
    content = [{"type": "text", "text": "what is it"}, {"type": "image_url"}]
    content[1]["image_url"] = {"url": image}
    async with serve(config(deployment("native", "vision", provider.url))) as gw:
        resp = await gw.client.post(
            "/v1/chat/completions",
            json={"model": "vision", "messages": [{"role": "user", "content": content}]},
        )
    assert resp.status_code == 200, resp.text[:200]


# --- logs and metrics ---------------------------------------------------------------------


async def test_unexpected_exception_is_logged_with_type_and_redacted_traceback(
    provider: FakeProvider, logs: LogLines, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def boom(self: Any, dep: Any, body: Any) -> Any:
        raise RuntimeError(f"broken at https://secret-host.example/v1 with {PROVIDER_KEY}")

    monkeypatch.setattr(NativeBackend, "chat", boom)
    async with serve(config(deployment("native", "n", provider.url))) as gw:
        resp = await gw.chat("n")
    assert resp.status_code == 500
    assert resp.json()["error"]["code"] == "internal_error"
    (line,) = [json.loads(x) for x in logs.lines() if '"unexpected error"' in x]
    assert line["exc_type"] == "builtins.RuntimeError"
    assert "Traceback" in line["traceback"]
    assert "in boom" in line["traceback"]
    assert PROVIDER_KEY not in line["traceback"]
    assert "secret-host" not in line["traceback"]


@pytest.mark.parametrize("path", PATHS)
async def test_request_ids_both_ways_and_ttft(
    provider: FakeProvider, logs: LogLines, path: str
) -> None:
    async with serve(config(deployment(path, "ids", provider.url))) as gw:
        if path != "native":
            await ready(gw)
        resp = await gw.chat("ids", stream=True)
        metrics = await gw.metrics()
    rid = resp.headers["x-request-id"]
    (req,) = provider.requests()
    assert req["headers"]["x-client-request-id"] == rid
    line = await logs.for_request(rid)
    assert line["upstream_request_id"] == "req_fake"
    assert 'llm_api_time_to_first_token_seconds_count{model="ids"} 1.0' in metrics


def test_one_scrape_counts_every_worker(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "LLM_API_WORKERS": "2", "LLM_API_PORT": str(port)}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "llm_api.cli"], env=env, stderr=subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180  # two worker processes start (slowly on a busy host)
        while True:
            try:
                if httpx.get(f"{url}/health/ready").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline
            assert proc.poll() is None
            time.sleep(0.1)
        body = {"model": "ai-gateway-demo", "messages": [{"role": "user", "content": "hi"}]}
        for _ in range(30):  # a new connection each: the workers share the listening socket
            with httpx.Client() as client:
                assert client.post(f"{url}/v1/chat/completions", json=body).status_code == 200
        text = httpx.get(f"{url}/metrics").text
        counted = sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith("llm_api_requests_total{")
            and 'endpoint="/v1/chat/completions"' in line
        )
        assert counted == 30
    finally:
        proc.terminate()
        proc.wait(20)


def test_router_settings_defaults() -> None:
    rs = RouterSettings()
    assert (rs.retry_backoff_base, rs.retry_backoff_max) == (0.25, 8.0)
    assert (rs.max_retry_after, rs.request_deadline) == (30.0, 300.0)


# --- the SSE parser -----------------------------------------------------------------------


def test_sse_parser_frames_and_joins_multiline_data() -> None:
    framer = SSEFramer()
    # CRLF split across reads, a comment, an event name, two data lines, a one-line event.
    events = framer.feed(b': ping\r\n\r\nevent: message_start\r\ndata: {"a":\r')
    events += framer.feed(b"\ndata: 1}\r\n\r\ndata:[DONE]\n\n")
    assert [parse_event(e) for e in events] == [
        (None, None),
        (b"message_start", b'{"a":\n1}'),
        (None, b"[DONE]"),
    ]
    assert is_comment(events[0])


def test_native_stream_passes_multiline_data_as_one_event() -> None:
    stream = NativeStream(None, include_usage=False)  # type: ignore[arg-type]
    out = stream._event(b'data: {"choices":[{"delta":\ndata: {"content":"hi"}}]}')
    assert out == b'data: {"choices":[{"delta":{"content":"hi"}}]}\n\n'
    assert stream._event(b": keep-alive") == b": keep-alive\n\n"
