"""Fail closed (issue #11): no gateway secret off loopback, no empty secret, Kong's consumer
headers believed only with the secret, a bounded `consumer` label, /metrics for listed
scrapers only, secrets from the environment."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from conftest import GATEWAY_SECRET, PROVIDER_ENV, PROVIDER_KEY, LogLines, free_port, serve
from llm_api.app import create_app
from llm_api.settings import Settings

DEMO = "ai-gateway-demo"
CONFIG: dict[str, Any] = {
    "model_list": [
        {
            "model_name": DEMO,
            "litellm_params": {"model": "openai/demo", "mock_response": "Hello there friend"},
        }
    ],
    "consumers": ["alice"],
}


def run_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLM_API_")} | env
    env.setdefault("LLM_API_PORT", str(free_port()))
    return subprocess.run(
        [sys.executable, "-m", "llm_api.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.0.0.5", "gateway.internal"])  # noqa: S104
def test_no_secret_off_loopback_refuses_to_start(host: str) -> None:
    proc = run_cli({"LLM_API_HOST": host})
    assert proc.returncode == 2
    assert "LLM_API_GATEWAY_SECRET" in proc.stderr
    assert "LLM_API_ALLOW_NO_GATEWAY_SECRET" in proc.stderr
    with pytest.raises(RuntimeError, match="LLM_API_GATEWAY_SECRET"):
        create_app(Settings(host=host))


def test_the_explicit_setting_or_a_secret_allows_a_non_loopback_address() -> None:
    assert Settings(host="0.0.0.0", allow_no_gateway_secret=True).exposure_error() is None  # noqa: S104
    assert Settings(host="0.0.0.0", gateway_secret="x" * 20).exposure_error() is None  # noqa: S104
    for host in ("127.0.0.1", "::1", "localhost", "127.0.0.53"):
        assert Settings(host=host).exposure_error() is None


def test_an_empty_secret_is_refused() -> None:
    for value in ("", "   "):
        proc = run_cli({"LLM_API_GATEWAY_SECRET": value})
        assert proc.returncode == 2
        assert "invalid setting LLM_API_GATEWAY_SECRET: " in proc.stderr
        assert "must not be empty" in proc.stderr


def test_bad_metrics_networks_are_refused() -> None:
    proc = run_cli({"LLM_API_METRICS_ALLOW": "10.0.0.0/8,not-a-net"})
    assert proc.returncode == 2
    assert "LLM_API_METRICS_ALLOW" in proc.stderr
    assert "not-a-net" in proc.stderr


def chat(consumer: str, secret: str | None) -> dict[str, Any]:
    headers = {"X-Consumer-Username": consumer, "X-Consumer-ID": f"id-{consumer}"}
    if secret is not None:
        headers["X-Gateway-Secret"] = secret
    body = {"model": DEMO, "messages": [{"role": "user", "content": "one two three"}]}
    return {"json": body, "headers": headers}


async def test_consumer_headers_need_the_secret(logs: LogLines) -> None:
    async with serve(CONFIG) as gw:  # no secret configured: nobody can name a consumer
        resp = await gw.client.post("/v1/chat/completions", **chat("alice", "anything"))
        assert resp.status_code == 200
        line = await logs.for_request(resp.headers["x-request-id"])
        assert (line["consumer"], line["consumer_id"]) == ("anonymous", None)
        assert 'consumer="alice"' not in await gw.metrics()
    async with serve(CONFIG, gateway_secret=GATEWAY_SECRET) as gw:
        resp = await gw.client.post("/v1/chat/completions", **chat("alice", GATEWAY_SECRET))
        line = await logs.for_request(resp.headers["x-request-id"])
        assert (line["consumer"], line["consumer_id"]) == ("alice", "id-alice")
        wrong = await gw.client.post("/v1/chat/completions", **chat("alice", "wrong"))
        assert wrong.status_code == 401
        text = await gw.metrics()
        assert (
            'consumer="alice",endpoint="/v1/chat/completions",model="ai-gateway-demo",status="200"'
            in text
        )
        assert (
            'consumer="anonymous",endpoint="/v1/chat/completions",model="unknown",status="401"'
            not in text
        )


async def test_the_consumer_label_is_bounded(logs: LogLines) -> None:
    async with serve(CONFIG, gateway_secret=GATEWAY_SECRET) as gw:
        for i in range(30):
            resp = await gw.client.post("/v1/chat/completions", **chat(f"c{i}", GATEWAY_SECRET))
            assert resp.status_code == 200
        line = await logs.for_request(resp.headers["x-request-id"])
        assert line["consumer"] == "c29"  # the log keeps the real name
        await gw.client.post("/v1/chat/completions", **chat("alice", GATEWAY_SECRET))
        text = await gw.metrics()
    labels = {
        part.split('"')[1]
        for line in text.splitlines()
        if line.startswith("llm_api_") and not line.startswith("#")
        for part in line.split(",")
        if part.startswith("consumer=") or "{consumer=" in part
    }
    assert labels == {"alice", "other"}
    assert (
        'llm_api_tokens_total{consumer="other",direction="in",model="ai-gateway-demo"} 90.0' in text
    )


@pytest.mark.parametrize(
    ("allow", "status"), [("10.0.0.0/8, 192.168.1.7", 403), ("127.0.0.0/8", 200)]
)
async def test_metrics_only_for_listed_scrapers(allow: str, status: int) -> None:
    async with serve(CONFIG, metrics_allow=allow) as gw:
        resp = await gw.client.get("/metrics")
        assert resp.status_code == status
        if status == 403:
            assert resp.json()["error"]["code"] == "forbidden"
        assert (await gw.client.get("/health/ready")).status_code == 200


def test_secrets_come_from_the_environment(tmp_path: Path) -> None:
    """Provider keys, the Redis URL and the gateway secret can live in an environment file
    (systemd EnvironmentFile=, mode 0600) rather than in the config: `os.environ/NAME`."""
    config = {
        "model_list": [
            {
                "model_name": "m",
                "litellm_params": {
                    "model": "openai/m",
                    "api_base": "http://127.0.0.1:9/v1",
                    "api_key": f"os.environ/{PROVIDER_ENV}",
                },
            }
        ],
        "quotas": {"redis_url": "os.environ/LLM_API_REDIS_URL"},
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    port = free_port()
    env = {
        "LLM_API_CONFIG": str(path),
        "LLM_API_PORT": str(port),
        "LLM_API_HOST": "127.0.0.1",
        "LLM_API_GATEWAY_SECRET": GATEWAY_SECRET,
        PROVIDER_ENV: PROVIDER_KEY,
    }
    missing = run_cli(env)
    assert missing.returncode == 2
    assert "quotas.redis_url: environment variable LLM_API_REDIS_URL is not set" in missing.stderr
    env["LLM_API_REDIS_URL"] = "redis://:redis-pw-4242@127.0.0.1:9/0"
    full = {k: v for k, v in os.environ.items() if not k.startswith("LLM_API_")} | env
    proc = subprocess.Popen(
        [sys.executable, "-m", "llm_api.cli"], env=full, stderr=subprocess.PIPE, text=True
    )
    try:
        for _ in range(600):
            try:
                ok = httpx.get(f"http://127.0.0.1:{port}/health/ready").status_code == 200
            except httpx.HTTPError:
                ok = False
            if ok or proc.poll() is not None:
                break
            subprocess.run(["sleep", "0.1"], check=True)
        assert ok
        resp = httpx.get(
            f"http://127.0.0.1:{port}/v1/models", headers={"X-Gateway-Secret": GATEWAY_SECRET}
        )
        assert resp.status_code == 200
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    for secret in (PROVIDER_KEY, GATEWAY_SECRET, "redis-pw-4242"):
        assert secret not in err


async def test_time_to_first_token_is_measured_for_streams() -> None:
    async with serve(CONFIG) as gw:
        resp = await gw.chat(DEMO, stream=True)
        assert resp.status_code == 200
        plain = await gw.chat(DEMO)
        assert plain.status_code == 200
        text = await gw.metrics()
    line = next(
        x for x in text.splitlines() if x.startswith("llm_api_time_to_first_token_seconds_count")
    )
    assert line.endswith(" 1.0")  # the stream only
