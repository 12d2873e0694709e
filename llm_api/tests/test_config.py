"""Config loading and validation, error classification, and the `llm-api` command."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from conftest import write_yaml
from llm_api.backends.native import transport_error
from llm_api.config import ConfigError, load_config, parse_config
from llm_api.errors import Kind, classify_status

BASE = {"model": "openai/m", "api_base": "http://127.0.0.1:9/v1", "api_key": "k"}


def config_with(**entry: Any) -> dict[str, Any]:
    return {"model_list": [{"model_name": "m", "litellm_params": dict(BASE), **entry}]}


def test_embedded_default_is_the_demo_model() -> None:
    config = load_config(None)
    assert config.model_names == ["ai-gateway-demo"]
    (dep,) = config.deployments
    assert dep.transport == "mock"
    assert dep.api_key is None
    assert not config.needs_litellm
    # Every retry and timeout is explicit in the default.
    assert config.router.num_retries == 0
    assert dep.timeout == 30


def test_transport_is_chosen_by_provider() -> None:
    data = {
        "model_list": [
            {"model_name": "a", "litellm_params": dict(BASE)},
            {"model_name": "b", "litellm_params": {**BASE, "model": "anthropic/claude"}},
            {"model_name": "c", "transport": "litellm", "litellm_params": dict(BASE)},
        ]
    }
    config = parse_config(data, "t", {})
    assert [d.transport for d in config.deployments] == ["native", "litellm", "litellm"]
    assert config.needs_litellm


def test_api_key_from_the_environment(tmp_path: Path) -> None:
    data = config_with()
    data["model_list"][0]["litellm_params"]["api_key"] = "os.environ/MY_KEY"
    path = write_yaml(tmp_path, data)
    config = load_config(path, {"MY_KEY": "sk-from-env"})
    assert config.deployments[0].api_key == "sk-from-env"
    assert "sk-from-env" not in repr(config.deployments[0])
    with pytest.raises(ConfigError, match=r"model_list\[0\]\.litellm_params\.api_key: .*MY_KEY"):
        load_config(path, {})


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda d: d["model_list"][0]["litellm_params"].pop("model"), "litellm_params.model"),
        (lambda d: d["model_list"][0]["litellm_params"].update(api_base="ftp://x"), "api_base"),
        (lambda d: d["model_list"][0]["litellm_params"].update(timeout=-1), "timeout"),
        (lambda d: d["model_list"][0]["litellm_params"].update(max_retries="x"), "max_retries"),
        (lambda d: d["model_list"][0].update(model_name=""), "model_list[0].model_name"),
        (lambda d: d["model_list"][0].update(transport="grpc"), "model_list[0].transport"),
        (lambda d: d["model_list"][0].update(colour="red"), "model_list[0].colour"),
        (lambda d: d.update(router_settings={"num_retries": -1}), "router_settings.num_retries"),
        (lambda d: d.update(router_settings={"timeout": "slow"}), "router_settings.timeout"),
        (lambda d: d.update(router_settings={"fallbacks": [{"m": ["x"]}]}), "fallbacks[0]"),
        (lambda d: d.update(model_list=[]), "model_list"),
        (lambda d: d.update(extra_section={}), "extra_section"),
    ],
)
def test_bad_config_names_the_field(mutate: Any, field: str) -> None:
    data = config_with()
    mutate(data)
    with pytest.raises(ConfigError) as err:
        parse_config(data, "cfg.yaml", {})
    assert field in str(err.value)
    assert str(err.value).startswith("cfg.yaml: ")


def test_native_transport_needs_an_openai_provider() -> None:
    data = config_with(transport="native")
    data["model_list"][0]["litellm_params"]["model"] = "anthropic/claude"
    with pytest.raises(ConfigError, match=r"model_list\[0\]\.transport"):
        parse_config(data, "t", {})


def test_unreadable_and_invalid_yaml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("model_list: [\n  - {")
    with pytest.raises(ConfigError, match="invalid YAML at line"):
        load_config(bad)
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("just text\n")
    with pytest.raises(ConfigError, match=r"scalar\.yaml"):
        load_config(scalar)


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (401, Kind.AUTH),
        (403, Kind.AUTH),
        (404, Kind.SERVER),
        (408, Kind.TIMEOUT),
        (429, Kind.RATE_LIMIT),
        (500, Kind.SERVER),
        (502, Kind.SERVER),
        (529, Kind.SERVER),
        (400, Kind.BAD_REQUEST),
        (422, Kind.BAD_REQUEST),
    ],
)
def test_classify_status(status: int, kind: Kind) -> None:
    assert classify_status(status, b"{}").kind is kind


def test_classify_context_length_by_code_not_message() -> None:
    body = b'{"error": {"message": "whatever", "code": "context_length_exceeded"}}'
    assert classify_status(400, body).kind is Kind.CONTEXT_LENGTH
    other = b'{"error": {"message": "maximum context length", "code": null}}'
    assert classify_status(400, other).kind is Kind.BAD_REQUEST


def test_retry_after_is_normalised() -> None:
    assert classify_status(429, retry_after="2.5").retry_after == "3"
    # An HTTP date: the seconds until then (a past one: at once, i.e. the least wait, 1 s).
    assert classify_status(429, retry_after="Wed, 21 Oct 2015 07:28:00 GMT").retry_after == "1"
    assert classify_status(429, retry_after="soon").retry_after is None
    assert classify_status(429).to_api_error().headers["Retry-After"] == "1"


def test_dns_failure_is_unreachable() -> None:
    # A real DNS lookup would leave loopback; aiohttp reports it as ClientConnectorDNSError.
    key = aiohttp.client_reqrep.ConnectionKey(
        "no-such-host.invalid", 443, True, True, None, None, None
    )
    exc = aiohttp.ClientConnectorDNSError(key, OSError(-2, "Name or service not known"))
    assert transport_error(exc).kind is Kind.CONNECTION


def test_litellm_internal_server_error_from_a_connection_failure_is_unreachable() -> None:
    import httpx
    from llm_api.backends.translated import classify, import_litellm

    litellm = import_litellm()  # offline: no cost-map fetch

    def raised() -> BaseException:
        try:
            try:
                raise httpx.ConnectError("[Errno -2] Name or service not known")
            except httpx.ConnectError as inner:
                raise litellm.InternalServerError(
                    message="Connection error.", llm_provider="openai", model="m"
                ) from inner
        except litellm.InternalServerError as exc:
            return exc

    mapped = classify(litellm, raised())
    assert mapped is not None
    assert mapped.kind is Kind.CONNECTION
    plain = litellm.InternalServerError(message="boom", llm_provider="openai", model="m")
    mapped_plain = classify(litellm, plain)
    assert mapped_plain is not None
    assert mapped_plain.kind is Kind.SERVER


def _cli(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from llm_api.cli import main; main()"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_cli_refuses_a_bad_config_naming_the_field(tmp_path: Path) -> None:
    data = config_with()
    data["model_list"][0]["litellm_params"]["api_base"] = "not-a-url"
    path = write_yaml(tmp_path, data)
    result = _cli({"LLM_API_CONFIG": str(path), "LLM_API_PORT": "1"})
    assert result.returncode == 2
    assert "model_list[0].litellm_params.api_base" in result.stderr
    assert "Traceback" not in result.stderr


def test_cli_refuses_a_bad_setting() -> None:
    result = _cli({"LLM_API_WORKERS": "zero"})
    assert result.returncode == 2
    assert "LLM_API_WORKERS" in result.stderr


def test_cli_serves_the_embedded_default(tmp_path: Path) -> None:
    """`llm-api` (what `make run` starts): uvicorn with the factory, JSON logs on stderr."""
    import httpx
    from conftest import free_port

    port = free_port()
    env = {**os.environ, "LLM_API_PORT": str(port), "LLM_API_WORKERS": "1"}
    env.pop("LLM_API_CONFIG", None)
    log_path = tmp_path / "stderr.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-c", "from llm_api.cli import main; main()"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
        try:
            url = f"http://127.0.0.1:{port}"
            for _ in range(1200):
                try:
                    if httpx.get(f"{url}/health/ready").status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert proc.poll() is None, log_path.read_text()
                time.sleep(0.1)
            body = {"model": "ai-gateway-demo", "messages": [{"role": "user", "content": "hi"}]}
            resp = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=30)
            assert resp.status_code == 200
        finally:
            proc.terminate()
            proc.wait(30)
    lines = [json.loads(line) for line in log_path.read_text().splitlines() if line.strip()]
    access = [x for x in lines if x["logger"] == "llm_api.access"]
    assert [x["request_id"] for x in access] == [resp.headers["x-request-id"]]
    assert access[0]["model"] == "ai-gateway-demo"
