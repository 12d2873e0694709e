"""Shared fixtures: the fake provider (a subprocess) and llm_api served by uvicorn, both on
loopback on free ports, talked to over real HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
import yaml
from llm_api.app import create_app
from llm_api.config import parse_config
from llm_api.observability import JsonFormatter
from llm_api.settings import Settings

FAKE_PROVIDER = Path(__file__).resolve().parents[2] / "tests" / "fake_provider" / "fake_provider.py"
PROVIDER_KEY = "sk-fake-provider-secret-0123456789"
GATEWAY_SECRET = "gw-secret-for-tests-42"
PROVIDER_ENV = "LLM_API_TEST_PROVIDER_KEY"

# The paths a deployment can take to a provider: the native OpenAI fast path, LiteLLM's
# translation to Anthropic's wire format, and LiteLLM on OpenAI's wire format.
PATHS = ("native", "anthropic", "translated")
MARKERS = ("ok", "err401", "err403", "err429", "err500", "err503", "stall", "ctxlen", "midstream")


def pytest_configure(config: pytest.Config) -> None:
    # LiteLLM must never reach for the network from the tests (its cost map, tokenizers).
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    os.environ.setdefault("LITELLM_OFFLINE_MODE", "true")


def free_port() -> int:
    """A TCP port free on 127.0.0.1 a moment ago, below the kernel's ephemeral range: a port from
    bind(0) can go to another process's outgoing connection before the test's server binds it
    (make test runs several suites at once); ports below the range never do."""
    with open("/proc/sys/net/ipv4/ip_local_port_range", encoding="ascii") as fh:
        low = int(fh.read().split()[0])
    for port in random.sample(range(max(1024, low - 12000), low), 1000):
        with socket.socket() as s, contextlib.suppress(OSError):
            s.bind(("127.0.0.1", port))
            return port
    raise RuntimeError(f"no free TCP port on 127.0.0.1 below {low}")


@dataclass
class FakeProvider:
    port: int
    key: str

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def control(self, mode: str, stall_seconds: float = 30) -> None:
        httpx.post(f"{self.url}/__control", json={"mode": mode, "stall_seconds": stall_seconds})

    def set(self, **settings: Any) -> None:
        """Stream pacing and gaps (see the fake provider's /__control)."""
        httpx.post(f"{self.url}/__control", json=settings).raise_for_status()

    def streams(self) -> list[dict[str, Any]]:
        data: list[dict[str, Any]] = httpx.get(f"{self.url}/__streams").json()
        return data

    def requests(self) -> list[dict[str, Any]]:
        data: list[dict[str, Any]] = httpx.get(f"{self.url}/__requests").json()
        return data

    def stats(self) -> dict[str, int]:
        data: dict[str, int] = httpx.get(f"{self.url}/__stats").json()
        return data

    def clear(self) -> None:
        httpx.delete(f"{self.url}/__requests")
        httpx.delete(f"{self.url}/__streams")
        httpx.delete(f"{self.url}/__stats")


@pytest.fixture(scope="session")
def fake_provider() -> Iterator[FakeProvider]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, str(FAKE_PROVIDER), "--port", str(port), "--api-key", PROVIDER_KEY]
    )
    provider = FakeProvider(port, PROVIDER_KEY)
    deadline = time.monotonic() + 30
    while True:
        try:
            httpx.get(f"{provider.url}/health").raise_for_status()
            break
        except httpx.HTTPError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                raise RuntimeError("the fake provider did not start") from None
            time.sleep(0.05)
    yield provider
    proc.terminate()
    proc.wait(10)


@pytest.fixture
def provider(fake_provider: FakeProvider) -> Iterator[FakeProvider]:
    """The session's fake provider, back in mode "ok" and with empty counters for each test."""
    fake_provider.control("ok")
    fake_provider.clear()
    yield fake_provider
    fake_provider.control("ok")
    fake_provider.set(chunk_delay=0, plain_delay=0, gap_seconds=0, keepalive_seconds=0, gap_after=1)


def deployment(path: str, model: str, api_base: str, **params: Any) -> dict[str, Any]:
    """A model_list entry for `path` (see PATHS)."""
    entry: dict[str, Any] = {"model_name": model, "litellm_params": {}}
    if path == "native":
        entry["litellm_params"] = {"model": f"openai/{model}", "api_base": f"{api_base}/v1"}
    elif path == "translated":
        entry["transport"] = "litellm"
        entry["litellm_params"] = {"model": f"openai/{model}", "api_base": f"{api_base}/v1"}
    else:
        entry["litellm_params"] = {"model": f"anthropic/{model}", "api_base": api_base}
    entry["litellm_params"] |= {"api_key": f"os.environ/{PROVIDER_ENV}", "timeout": 2} | params
    return entry


def provider_config(provider_url: str) -> dict[str, Any]:
    """One deployment per path and fake-provider marker, plus unreachable ones."""
    refused = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    models = []
    for path in PATHS:
        for marker in MARKERS:
            timeout = 0.5 if marker == "stall" else 5
            models.append(deployment(path, f"{path}-{marker}", provider_url, timeout=timeout))
        models.append(deployment(path, f"{path}-refused", refused))
    # Embeddings through the native path.
    models.append(deployment("native", "embed", provider_url))
    models.append(deployment("translated", "translated-embed", provider_url))
    return {
        "model_list": models,
        "router_settings": {
            "num_retries": 0,
            "timeout": 5,
            "retry_after": 0,
            "allowed_fails": 3,
            "cooldown_time": 5,
        },
    }


class Gateway:
    """llm_api under test, served by uvicorn on a free loopback port."""

    def __init__(self, url: str, app: Any) -> None:
        self.url = url
        self.app = app
        self.client = httpx.AsyncClient(
            base_url=url,
            timeout=60,
            # Idle connections are dropped well before uvicorn's 5 s keep-alive timeout closes
            # them: a request must never go out on a connection the server is closing (a
            # ReadError on a loaded machine).
            limits=httpx.Limits(
                max_connections=400, max_keepalive_connections=400, keepalive_expiry=1.0
            ),
        )

    async def chat(self, model: str, stream: bool = False, **extra: Any) -> httpx.Response:
        body = {"model": model, "messages": [{"role": "user", "content": "hello there"}]}
        body |= extra
        if stream:
            body["stream"] = True
        return await self.client.post("/v1/chat/completions", json=body)

    async def metrics(self) -> str:
        return (await self.client.get("/metrics")).text


@contextlib.asynccontextmanager
async def serve(
    config: dict[str, Any] | None,
    env: dict[str, str] | None = None,
    **settings: Any,
) -> AsyncIterator[Gateway]:
    """Serve llm_api with `config` (None: the embedded default) until the block ends."""
    cfg = None
    if config is not None:
        cfg = parse_config(config, "test config", {PROVIDER_ENV: PROVIDER_KEY, **(env or {})})
    app = create_app(Settings(**settings), cfg)
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host="127.0.0.1",
            port=0,
            log_config=None,
            access_log=False,
            lifespan="on",
            loop="asyncio",
            # A connection some test left open must not hold the shutdown (and the session's
            # teardown) for pytest-timeout's 300 s.
            timeout_graceful_shutdown=5,
        )
    )
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
            raise RuntimeError("llm_api did not start")
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    gw = Gateway(f"http://127.0.0.1:{port}", app)
    try:
        yield gw
    finally:
        await gw.client.aclose()
        server.should_exit = True
        await task


@pytest.fixture(scope="session")
async def demo_gateway() -> AsyncIterator[Gateway]:
    """The embedded default config (the demo model), with the gateway secret off."""
    async with serve(None) as gw:
        yield gw


@pytest.fixture(scope="session")
async def gateway(fake_provider: FakeProvider) -> AsyncIterator[Gateway]:
    """Every path and failure marker of the fake provider (see provider_config)."""
    async with serve(provider_config(fake_provider.url)) as gw:
        yield gw


def write_yaml(tmp_path: Path, data: object) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


class LogLines:
    """The log records of a test, as the JSON lines the service would print."""

    def __init__(self, caplog: pytest.LogCaptureFixture) -> None:
        self.caplog = caplog
        self.formatter = JsonFormatter()

    def lines(self) -> list[str]:
        return [self.formatter.format(r) for r in self.caplog.records]

    def access(self) -> list[dict[str, Any]]:
        return [
            json.loads(self.formatter.format(r))
            for r in self.caplog.records
            if r.name == "llm_api.access"
        ]

    async def for_request(self, request_id: str) -> dict[str, Any]:
        """The access line of `request_id` (streams log once the stream has ended)."""
        for _ in range(200):
            for line in self.access():
                if line["request_id"] == request_id:
                    return line
            await asyncio.sleep(0.01)
        raise AssertionError(f"no access log line for {request_id}")


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> LogLines:
    caplog.set_level(logging.DEBUG)
    return LogLines(caplog)


def sse_events(text: str) -> list[str]:
    """The `data:` payloads of an SSE body."""
    return [line[len("data: ") :] for line in text.split("\n") if line.startswith("data: ")]
