"""Token quotas and usage accounting against a real redis-server (issue #13): the config's
validation, reservations settled to the real usage, OpenAI's 429 and headers, exactness across
two llm_api processes, a Redis outage (allow / deny), the per-day totals and `llm-api usage`."""

from __future__ import annotations

import asyncio
import json
import os
import random
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from conftest import (
    GATEWAY_SECRET,
    PROVIDER_ENV,
    PROVIDER_KEY,
    FakeProvider,
    Gateway,
    deployment,
    free_port,
    serve,
    sse_events,
)
from llm_api.config import ConfigError, parse_config
from llm_api.errors import ApiError
from llm_api.quotas import Quotas, reset_text
from prometheus_client import CollectorRegistry
from redis_server import RedisServer

MODEL = "native-ok"
PRICED = "native-priced"
IN_PRICE, OUT_PRICE = 0.000002, 0.000008


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_up(redis_server: RedisServer) -> RedisServer:
    """The module's Redis, running and empty."""
    if redis_server.proc is None:
        redis_server.start()
    redis_server.client().flushall()
    return redis_server


def config(provider_url: str, redis_url: str, **quotas: Any) -> dict[str, Any]:
    priced = deployment("native", "native-ok", provider_url)
    priced["model_name"] = PRICED
    priced["model_info"] = {"input_cost_per_token": IN_PRICE, "output_cost_per_token": OUT_PRICE}
    return {
        "model_list": [
            deployment("native", MODEL, provider_url),
            deployment("native", "native-midstream", provider_url),
            deployment("native", "native-stall", provider_url, timeout=5),
            priced,
        ],
        "consumers": ["alice"],
        "quotas": {"redis_url": redis_url} | quotas,
    }


def who(consumer: str) -> dict[str, str]:
    return {"X-Gateway-Secret": GATEWAY_SECRET, "X-Consumer-Username": consumer}


def body(words: int = 5, max_tokens: int | None = 10, model: str = MODEL, **extra: Any) -> dict:
    text = " ".join(random.choice(["alpha", "beta", "gamma", "delta"]) for _ in range(words))
    out: dict[str, Any] = {"model": model, "messages": [{"role": "user", "content": text}]}
    if max_tokens is not None:
        out["max_tokens"] = max_tokens
    return out | extra


async def post(gw: Gateway, consumer: str, payload: dict[str, Any]) -> httpx.Response:
    return await gw.client.post("/v1/chat/completions", json=payload, headers=who(consumer))


def used(server: RedisServer, consumer: str, window: str = "m") -> int:
    """Tokens held in `consumer`'s `window` counters (every window, in case a minute turned)."""
    client = server.client()
    return sum(
        int(client.get(k) or 0) for k in client.keys(f"llm_api:quota:{{{consumer}}}:{window}:*")
    )


async def settled(
    server: RedisServer, consumer: str, expected: int, quotas: Quotas | None = None
) -> int:
    """The counter once the settlement has run (it runs after the response); with `quotas`,
    once the replica has also returned its leases (`Quotas.sync`)."""
    for _ in range(300):
        if quotas is not None:
            await quotas.sync()
        if used(server, consumer) == expected:
            break
        await asyncio.sleep(0.01)
    return used(server, consumer)


# --- the config -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("quotas", "field"),
    [
        ({"default": {"tokens_per_minute": 0}}, "quotas.default.tokens_per_minute"),
        (
            {"consumers": [{"name": "a", "tokens_per_day": -5}]},
            "quotas.consumers[0].tokens_per_day",
        ),
        (
            {"consumers": [{"name": "a", "tokens_per_minute": "many"}]},
            "quotas.consumers[0].tokens_per_minute",
        ),
        ({"consumers": [{"name": "a", "tokens_per_minute": 1.5}]}, "quotas.consumers[0]"),
        (
            {"consumers": [{"name": "a", "tokens_per_minute": 5}, {"name": "a"}]},
            "quotas.consumers[1].name: consumer 'a' is listed twice",
        ),
        ({"redis_url": "redis://:pw-123456@/0"}, "quotas.redis_url: the URL has no host"),
        ({"redis_url": "http://cache:6379"}, "quotas.redis_url"),
        ({"on_redis_error": "maybe"}, "quotas.on_redis_error"),
        ({"lease_share": 0.9}, "quotas.lease_share"),
        ({"lease_share": -0.1}, "quotas.lease_share"),
        ({"lease_share": "half"}, "quotas.lease_share"),
    ],
)
def test_bad_quotas_are_refused_naming_the_field(quotas: dict[str, Any], field: str) -> None:
    cfg = config("http://127.0.0.1:9", "redis://127.0.0.1:6379/0")
    cfg["quotas"] |= quotas
    with pytest.raises(ConfigError) as err:
        parse_config(cfg, "config.yaml", {PROVIDER_ENV: PROVIDER_KEY})
    assert f"config.yaml: {field}" in str(err.value)
    assert "pw-123456" not in str(err.value)


def test_redis_url_comes_from_the_environment() -> None:
    cfg = config("http://127.0.0.1:9", "os.environ/LLM_API_REDIS_URL")
    env = {PROVIDER_ENV: PROVIDER_KEY, "LLM_API_REDIS_URL": "redis://:pw-7788@cache:6379/1"}
    parsed = parse_config(cfg, "config.yaml", env)
    assert parsed.quotas is not None
    assert parsed.quotas.redis_url == "redis://:pw-7788@cache:6379/1"
    assert "pw-7788" in parsed.secrets  # redacted from every log record
    assert "pw-7788" not in repr(parsed)
    with pytest.raises(ConfigError, match=r"quotas\.redis_url: environment variable LLM_API_REDIS"):
        parse_config(cfg, "config.yaml", {PROVIDER_ENV: PROVIDER_KEY})


def test_the_cli_refuses_a_bad_quota_at_start(tmp_path: Path) -> None:
    cfg = config("http://127.0.0.1:9", "redis://127.0.0.1:6379/0")
    cfg["quotas"]["consumers"] = [{"name": "a", "tokens_per_minute": 0}]
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    env = os.environ | {"LLM_API_CONFIG": str(path), PROVIDER_ENV: PROVIDER_KEY}
    env["LLM_API_PORT"] = str(free_port())
    proc = subprocess.run(
        [sys.executable, "-m", "llm_api.cli"], env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2
    assert "quotas.consumers[0].tokens_per_minute" in proc.stderr


def test_reset_is_written_like_openai() -> None:
    assert reset_text(0) == "0s"
    assert reset_text(12) == "0.012s"
    assert reset_text(7660) == "7.66s"
    assert reset_text(360_000) == "6m0s"
    assert reset_text(3_723_000) == "1h2m3s"


# --- one replica ------------------------------------------------------------------------------


async def test_served_answers_and_the_429_carry_openai_headers(
    provider: FakeProvider, redis_up: RedisServer
) -> None:
    cfg = config(
        provider.url, redis_up.url, consumers=[{"name": "alice", "tokens_per_minute": 120}]
    )
    async with serve(cfg, gateway_secret=GATEWAY_SECRET) as gw:
        first = await post(gw, "alice", body(words=5, max_tokens=10))
        assert first.status_code == 200
        assert first.headers["x-ratelimit-limit-tokens"] == "120"
        remaining = int(first.headers["x-ratelimit-remaining-tokens"])
        assert 0 < remaining < 120
        assert first.headers["x-ratelimit-reset-tokens"].endswith("s")
        # Settled to the real usage, the window holds more than the reservation left.
        spent = first.json()["usage"]["total_tokens"]
        assert await settled(redis_up, "alice", spent) == spent
        assert 120 - spent > remaining
        # More than what is left: refused before any provider call, in OpenAI's shape.
        provider.clear()
        refused = await post(gw, "alice", body(words=5, max_tokens=500))
        assert refused.status_code == 429
        assert refused.json() == {
            "error": {
                "message": refused.json()["error"]["message"],
                "type": "tokens",
                "param": None,
                "code": "rate_limit_exceeded",
            }
        }
        assert "tokens per minute" in refused.json()["error"]["message"]
        assert refused.headers["x-ratelimit-limit-tokens"] == "120"
        assert int(refused.headers["x-ratelimit-remaining-tokens"]) == 120 - spent
        assert int(refused.headers["retry-after"]) >= 1
        # Never sent to the provider (its own request log: the shared provider's counters also
        # see other tests' slow answers arriving late).
        asked = [r for r in provider.requests() if (r.get("body") or {}).get("max_tokens") == 500]
        assert asked == []
        # A consumer without a quota of its own and no default: served, no headers.
        other = await post(gw, "bob", body())
        assert other.status_code == 200
        assert "x-ratelimit-limit-tokens" not in other.headers
        metrics = await gw.metrics()
        assert 'llm_api_quota_rejections_total{consumer="alice",window="minute"} 1.0' in metrics


async def test_reservations_settle_to_the_real_usage(
    provider: FakeProvider, redis_up: RedisServer
) -> None:
    cfg = config(provider.url, redis_up.url, default={"tokens_per_minute": 100000})
    async with serve(cfg, gateway_secret=GATEWAY_SECRET) as gw:
        quotas = gw.app.state.gateway.quotas
        # Plain: the counter ends at the provider's usage, not at the estimate.
        payload = body(words=7, max_tokens=12)
        resp = await post(gw, "c-plain", payload)
        usage = resp.json()["usage"]
        assert quotas.estimate(payload, True) > usage["total_tokens"]
        spent = usage["total_tokens"]
        assert await settled(redis_up, "c-plain", spent, quotas) == spent
        # Streams, with and without the client asking for usage.
        for consumer, opts in (("c-stream", {"include_usage": True}), ("c-stream2", None)):
            payload = body(words=9, max_tokens=6, stream=True)
            if opts:
                payload["stream_options"] = opts
            resp = await post(gw, consumer, payload)
            assert resp.status_code == 200
            assert await settled(redis_up, consumer, 9 + 6, quotas) == 9 + 6
        # No max_tokens: the estimate uses the default cap, then settles to the real 20 words.
        payload = body(words=3, max_tokens=None)
        assert quotas.estimate(payload, True) > quotas.config.default_max_tokens
        resp = await post(gw, "c-default", payload)
        assert await settled(redis_up, "c-default", 3 + 20, quotas) == 3 + 20
        # A stream the provider cuts short: no usage came, the reservation is kept whole.
        payload = body(words=4, max_tokens=15, model="native-midstream", stream=True)
        resp = await post(gw, "c-cut", payload)
        assert "error" in sse_events(resp.text)[-1]
        estimate = quotas.estimate(payload, True)
        assert await settled(redis_up, "c-cut", estimate, quotas) == estimate
        # An upstream failure before any answer: nothing was served, the reservation is released.
        provider.control("fail")
        resp = await post(gw, "c-failed", body())
        assert resp.status_code == 502
        provider.control("ok")
        assert await settled(redis_up, "c-failed", 0, quotas) == 0
        # A client that goes away in the middle of a stream: kept whole as well.
        await gw.client.post(f"{provider.url}/__control", json={"mode": "ok", "chunk_delay": 0.5})
        payload = body(words=4, max_tokens=15, model="native-ok", stream=True)
        with pytest.raises(httpx.ReadTimeout):
            await gw.client.post(
                "/v1/chat/completions", json=payload, headers=who("c-gone"), timeout=0.3
            )
        await gw.client.post(f"{provider.url}/__control", json={"mode": "ok", "chunk_delay": 0})
        estimate = quotas.estimate(payload, True)
        for _ in range(500):
            if used(redis_up, "c-gone") and not quotas._tasks:
                break
            await asyncio.sleep(0.01)
        assert await settled(redis_up, "c-gone", estimate, quotas) == estimate

        # A client that goes away while a non-streamed answer is generated: the provider's request
        # is cancelled, no usage came, the reservation is kept whole (not released).
        async def closed() -> float:
            lines = (await gw.metrics()).splitlines()
            found = [x for x in lines if x.startswith("llm_api_requests_total") and '"499"' in x]
            return sum(float(x.split()[-1]) for x in found)

        closed_before = await closed()
        await gw.client.post(f"{provider.url}/__control", json={"plain_delay": 0.5})
        payload = body(words=6, max_tokens=15, model="native-ok")
        with pytest.raises(httpx.ReadTimeout):
            await gw.client.post(
                "/v1/chat/completions", json=payload, headers=who("c-gone-plain"), timeout=0.3
            )
        await gw.client.post(f"{provider.url}/__control", json={"plain_delay": 0})
        estimate = quotas.estimate(payload, True)
        for _ in range(500):  # the request has ended (499) and its settlement is done
            if await closed() > closed_before and not quotas._tasks:
                break
            await asyncio.sleep(0.01)
        assert await settled(redis_up, "c-gone-plain", estimate, quotas) == estimate


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
async def test_the_settlement_reaches_redis_before_the_answer_ends(
    provider: FakeProvider, redis_up: RedisServer, stream: bool
) -> None:
    """A client near its limit may send its next request, through another replica, the moment
    it has the whole answer (for a stream: its [DONE]); that replica must find the unused tokens
    returned. So the settlement is in Redis before that message is handed to the server, however
    late this process runs again (the check below blocks the event loop: nothing queued for
    later can run)."""
    # 300 tokens a minute: room for a few requests of this size, too few for a lease.
    cfg = config(provider.url, redis_up.url, default={"tokens_per_minute": 300})
    async with serve(cfg, gateway_secret=GATEWAY_SECRET) as gw:
        await post(gw, "c-warm", body())  # Redis connected and its script loaded
        request = body(words=7, max_tokens=12)
        if stream:
            request |= {"stream": True, "stream_options": {"include_usage": True}}
        payload = json.dumps(request).encode()
        headers = [(k.lower().encode(), v.encode()) for k, v in who("c-order").items()]
        headers += [
            (b"content-type", b"application/json"),
            (b"content-length", b"%d" % len(payload)),
        ]
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": "/v1/chat/completions",
            "raw_path": b"/v1/chat/completions",
            "query_string": b"",
            "root_path": "",
            "headers": headers,
            "client": ("127.0.0.1", 40000),
            "server": ("127.0.0.1", 8000),
            "state": {},
        }
        answer = b""
        complete = False
        in_redis_when_complete: list[int] = []
        received = False

        async def receive() -> dict[str, Any]:
            nonlocal received
            if not received:
                received = True
                return {"type": "http.request", "body": payload, "more_body": False}
            await asyncio.Event().wait()  # the client stays
            raise AssertionError("unreachable")

        async def send(message: dict[str, Any]) -> None:
            nonlocal answer, complete
            if message["type"] != "http.response.body":
                return
            answer += message.get("body", b"")
            ends = b"data: [DONE]" in answer if stream else not message.get("more_body", False)
            if ends and not complete:
                complete = True
                in_redis_when_complete.append(used(redis_up, "c-order"))

        await gw.app(scope, receive, send)
        if stream:
            events = sse_events(answer.decode())
            assert events[-1] == "[DONE]"
            spent = json.loads(events[-2])["usage"]["total_tokens"]
        else:
            spent = json.loads(answer)["usage"]["total_tokens"]
        assert gw.app.state.gateway.quotas.estimate(request, True) > spent
        assert in_redis_when_complete == [spent]


async def test_usage_totals_cost_and_the_usage_command(
    provider: FakeProvider, redis_up: RedisServer, tmp_path: Path
) -> None:
    cfg = config(provider.url, redis_up.url)
    async with serve(cfg, gateway_secret=GATEWAY_SECRET) as gw:
        for consumer, model in (("alice", PRICED), ("alice", PRICED), ("bob", MODEL)):
            resp = await post(gw, consumer, body(words=10, max_tokens=5, model=model))
            assert resp.status_code == 200
        stream = body(words=10, max_tokens=5, model=PRICED, stream=True)
        assert (await post(gw, "alice", stream)).status_code == 200
        for _ in range(300):
            if not gw.app.state.gateway.quotas._tasks:
                break
            await asyncio.sleep(0.01)
        metrics = await gw.metrics()
    cost = 3 * (10 * IN_PRICE + 5 * OUT_PRICE)
    line = next(x for x in metrics.splitlines() if x.startswith("llm_api_cost_usd_total{"))
    assert 'consumer="alice"' in line
    assert f'model="{PRICED}"' in line
    assert float(line.split()[-1]) == pytest.approx(cost)
    # bob is no configured consumer: his label is `other`; his model has no price: unknown.
    assert 'llm_api_cost_unknown_requests_total{consumer="other",model="native-ok"} 1.0' in metrics
    assert 'llm_api_cost_usd_total{consumer="other"' not in metrics
    check_usage_command(cfg, tmp_path, cost)


def check_usage_command(cfg: dict[str, Any], tmp_path: Path, cost: float) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    env = os.environ | {"LLM_API_CONFIG": str(path), PROVIDER_ENV: PROVIDER_KEY}
    cmd = [sys.executable, "-m", "llm_api.cli", "usage"]
    out = subprocess.run([*cmd, "--json"], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    rows = {(r["consumer"], r["model"]): r for r in json.loads(out.stdout)}
    alice = rows[("alice", PRICED)]
    assert (alice["requests"], alice["in"], alice["out"]) == (3, 30, 15)
    assert alice["cost"] == pytest.approx(cost)
    bob = rows[("bob", MODEL)]
    assert (bob["requests"], bob["in"], bob["out"], bob["cost"], bob["unpriced"]) == (
        1,
        10,
        5,
        None,
        1,
    )
    only = subprocess.run(
        [*cmd, "--consumer", "bob"], env=env, capture_output=True, text=True, timeout=60
    )
    assert only.returncode == 0
    print(only.stdout)
    assert "bob" in only.stdout
    assert "unknown" in only.stdout
    assert "alice" not in only.stdout
    past = subprocess.run(
        [*cmd, "--json", "--day", "2001-01-01"], env=env, capture_output=True, text=True, timeout=60
    )
    assert json.loads(past.stdout) == []
    bad = subprocess.run([*cmd, "--day", "yesterday"], env=env, capture_output=True, text=True)
    assert bad.returncode == 2
    assert "--day" in bad.stderr


async def test_settlements_survive_a_lost_script_cache(redis_up: RedisServer) -> None:
    """Settlements go out in pipelines of EVALSHA; a Redis that lost its scripts (restarted
    between a reservation and its settlement) gets the script loaded again."""
    cfg = config("http://127.0.0.1:9", redis_up.url, default={"tokens_per_minute": 1000})
    quotas = Quotas(parse_config(cfg, "t", {PROVIDER_ENV: PROVIDER_KEY}), CollectorRegistry())
    await quotas.start()
    try:
        reservations = [
            (await quotas.reserve("c-lost", body(words=5, max_tokens=10), True))[0]
            for _ in range(3)
        ]
        # Reserved in Redis: the three amounts, or more (a lease the replica took with them).
        assert used(redis_up, "c-lost") >= sum(r.amount for r in reservations)
        redis_up.client().script_flush()
        for res in reservations:
            quotas.settle(res, MODEL, True, 5, 3, None)
        # The first reservation also took a lease that the other two came from: returned here.
        await asyncio.wait_for(quotas.sync(), 10)
        assert used(redis_up, "c-lost") == 3 * 8
        assert quotas.misses.labels("settle")._value.get() == 0
    finally:
        await quotas.stop()


async def test_counters_expire_and_a_refusal_leaves_them_as_they_were(
    redis_up: RedisServer,
) -> None:
    """Every key the script writes expires (the windows a little after their end, the usage
    totals after the retention), whichever call created it; a refused reservation takes nothing;
    a settlement never leaves a window below zero."""
    cfg = config(
        "http://127.0.0.1:9",
        redis_up.url,
        default={"tokens_per_minute": 100, "tokens_per_day": 1000},
        usage_retention_days=3,
    )
    quotas = Quotas(parse_config(cfg, "t", {PROVIDER_ENV: PROVIDER_KEY}), CollectorRegistry())
    client = redis_up.client()
    await quotas.start()
    try:
        res, _ = await quotas.reserve("c-ttl", body(words=5, max_tokens=60), True)
        before = used(redis_up, "c-ttl")
        assert before == res.amount
        with pytest.raises(ApiError) as refused:
            await quotas.reserve("c-ttl", body(words=5, max_tokens=60), True)
        assert refused.value.status == 429
        assert used(redis_up, "c-ttl") == before
        assert used(redis_up, "c-ttl", "d") == before
        quotas.settle(res, MODEL, True, 5, 3, None)
        await asyncio.wait_for(quotas.sync(), 10)  # the usage totals written too
        assert used(redis_up, "c-ttl") == 8
        for key in client.keys("llm_api:quota:{c-ttl}:*"):
            ttl = client.pttl(key)
            if key.endswith(":epoch"):  # the counters' epoch (leases): two days
                assert 0 < ttl <= 2 * 86_400_000, (key, ttl)
                continue
            span = 60_000 if ":m:" in key else 86_400_000
            assert span < ttl <= span + 120_000, (key, ttl)
        (usage_key,) = client.keys("llm_api:usage:{c-ttl}:*")
        assert 0 < client.ttl(usage_key) <= 3 * 86400
        # A window that expired before its settlement: nothing negative is left behind.
        client.delete(*client.keys("llm_api:quota:{c-ttl}:*"))
        res, _ = await quotas.reserve("c-ttl", body(words=5, max_tokens=60), True)
        client.delete(*client.keys("llm_api:quota:{c-ttl}:m:*"))
        quotas.settle(res, MODEL, True, 5, 3, None)
        await asyncio.wait_for(quotas.drain(), 10)
        assert used(redis_up, "c-ttl") == 0
        assert all(client.pttl(k) > 0 for k in client.keys("llm_api:quota:{c-ttl}:*"))
    finally:
        await quotas.stop()


# --- leases and batched accounting -----------------------------------------------------------


def script_calls(server: RedisServer) -> int:
    stats = server.client().info("commandstats")
    return sum(int(stats.get(f"cmdstat_{c}", {}).get("calls", 0)) for c in ("evalsha", "eval"))


@pytest.mark.parametrize("share", [1 / 16, 0])
async def test_a_replica_serves_from_its_lease(
    provider: FakeProvider, redis_up: RedisServer, share: float
) -> None:
    """Far from its limit, a consumer's requests are served from the replica's lease: a few
    Redis calls for many requests (none per request), the headers counting down, and once the
    lease is returned and the accounting written, Redis holds exactly what the answers used.
    With lease_share 0 every request reserves (and settles) in Redis."""
    cfg = config(
        provider.url,
        redis_up.url,
        consumers=[{"name": "alice", "tokens_per_minute": 1_000_000, "tokens_per_day": 10**9}],
        lease_share=share,
    )
    async with serve(cfg, gateway_secret=GATEWAY_SECRET) as gw:
        quotas = gw.app.state.gateway.quotas
        redis_up.client().config_resetstat()
        spent, remaining, largest = 0, [], 0
        for _ in range(40):
            payload = body(words=6, max_tokens=10)
            largest = max(largest, quotas.estimate(payload, True))
            resp = await post(gw, "alice", payload)
            assert resp.status_code == 200
            spent += resp.json()["usage"]["total_tokens"]
            remaining.append(int(resp.headers["x-ratelimit-remaining-tokens"]))
        calls = script_calls(redis_up)
        # What this consumer can still spend: the limit less what was used and reserved.
        assert remaining == sorted(remaining, reverse=True)
        assert all(1_000_000 - spent - largest <= r < 1_000_000 for r in remaining)
        await quotas.sync()
        assert used(redis_up, "alice") == spent
        assert used(redis_up, "alice", "d") == spent
    (key,) = redis_up.client().keys("llm_api:usage:{alice}:*")
    totals = redis_up.client().hgetall(key)
    assert int(totals[f"{MODEL}\trequests"]) == 40
    assert int(totals[f"{MODEL}\tin"]) + int(totals[f"{MODEL}\tout"]) == spent
    print(f"\nlease_share {share}: 40 requests, {calls} script calls to Redis")
    if share:
        assert calls <= 8
    else:
        assert calls >= 40


async def test_an_unused_lease_goes_back_by_itself(
    provider: FakeProvider, redis_up: RedisServer
) -> None:
    """A replica's lease ends after a few seconds at most: what it did not use is returned to
    Redis for every replica, without another request coming."""
    cfg = config(
        provider.url, redis_up.url, consumers=[{"name": "alice", "tokens_per_minute": 100_000}]
    )
    async with serve(cfg, gateway_secret=GATEWAY_SECRET) as gw:
        resp = await post(gw, "alice", body(words=6, max_tokens=10))
        spent = resp.json()["usage"]["total_tokens"]
        assert used(redis_up, "alice") > spent  # the lease, beside the answer's tokens
        for _ in range(60):
            if used(redis_up, "alice") == spent:
                break
            await asyncio.sleep(0.1)
        assert used(redis_up, "alice") == spent


async def test_a_lease_dropped_with_its_connection_is_returned_after_it(
    provider: FakeProvider, redis_up: RedisServer
) -> None:
    """A lost connection to Redis (its data intact) stops the replica serving from its lease;
    once connected again, the tokens that lease had not used go back to Redis."""
    cfg = config(provider.url, redis_up.url, consumers=[{"name": "alice", "tokens_per_day": 10**7}])
    async with serve(cfg, gateway_secret=GATEWAY_SECRET) as gw:
        first = await post(gw, "alice", body(words=6, max_tokens=10))
        spent = first.json()["usage"]["total_tokens"]
        assert used(redis_up, "alice", "d") > spent  # a lease is held
        redis_up.client().client_kill_filter(_type="normal", skipme=True)
        await asyncio.sleep(0.2)
        second = await post(gw, "alice", body(words=6, max_tokens=10))  # connects again
        assert second.status_code == 200
        spent += second.json()["usage"]["total_tokens"]
        await gw.app.state.gateway.quotas.sync()
        assert used(redis_up, "alice", "d") == spent


async def test_quotas_work_with_the_redis_roles_acl(
    provider: FakeProvider, redis_up: RedisServer
) -> None:
    """The redis role's user may run no administrative or dangerous command (`-@admin
    -@dangerous`): llm_api's connection set-up, reservations, leases and accounting use none."""
    admin = redis_up.client()
    admin.acl_setuser(
        "llm",
        enabled=True,
        passwords=["+acl-test-pw"],
        keys=["*"],
        channels=["*"],
        commands=["+@all", "-@admin", "-@dangerous"],
    )
    try:
        url = f"redis://llm:acl-test-pw@127.0.0.1:{redis_up.port}/0"
        cfg = config(provider.url, url, consumers=[{"name": "alice", "tokens_per_minute": 10**6}])
        async with serve(cfg, gateway_secret=GATEWAY_SECRET) as gw:
            for _ in range(3):
                resp = await post(gw, "alice", body(words=6, max_tokens=10))
                assert resp.status_code == 200
                assert "x-ratelimit-remaining-tokens" in resp.headers
            await gw.app.state.gateway.quotas.sync()
            assert "llm_api_quota_redis_errors_total{" not in await gw.metrics()
        assert admin.keys("llm_api:usage:{alice}:*")
    finally:
        admin.acl_deluser("llm")


async def test_usage_written_while_redis_is_down_is_kept_until_it_returns(
    provider: FakeProvider, redis_up: RedisServer
) -> None:
    """The per-day totals go to Redis in batches; a batch Redis cannot take is kept and written
    once Redis is back: nothing is lost."""
    cfg = config(provider.url, redis_up.url)  # no limits: accounting only
    async with serve(cfg, gateway_secret=GATEWAY_SECRET) as gw:
        redis_up.stop()
        for _ in range(3):
            assert (await post(gw, "bob", body(words=4, max_tokens=5))).status_code == 200
        await asyncio.sleep(2.5)  # a flush or two fail meanwhile
        assert 'llm_api_quota_redis_errors_total{operation="account"}' in await gw.metrics()
        redis_up.start()
        client = redis_up.client()
        keys: list[str] = []
        for _ in range(50):
            keys = client.keys("llm_api:usage:{bob}:*")
            if keys:
                break
            await asyncio.sleep(0.1)
        assert keys, "the kept usage was not written once Redis came back"
        assert int(client.hget(keys[0], f"{MODEL}\trequests") or 0) == 3


# --- Redis outages ----------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["allow", "deny"])
async def test_redis_stopped_mid_run(
    provider: FakeProvider, redis_up: RedisServer, mode: str
) -> None:
    cfg = config(
        provider.url,
        redis_up.url,
        on_redis_error=mode,
        consumers=[{"name": "alice", "tokens_per_minute": 1_000_000}],
    )
    async with serve(cfg, gateway_secret=GATEWAY_SECRET) as gw:

        async def burst(n: int) -> list[httpx.Response]:
            return await asyncio.gather(
                *(post(gw, "alice", body(stream=bool(i % 2))) for i in range(n))
            )

        assert {r.status_code for r in await burst(10)} == {200}
        before = await settled(redis_up, "alice", used(redis_up, "alice"))
        assert before > 0
        redis_up.stop()
        during = await burst(20)
        if mode == "allow":
            assert {r.status_code for r in during} == {200}
        else:
            assert {r.status_code for r in during} == {503}
            assert during[0].json() == {
                "error": {
                    "message": "Token quotas cannot be checked right now; try again shortly.",
                    "type": "server_error",
                    "param": None,
                    "code": "quota_unavailable",
                }
            }
        metrics = await gw.metrics()
        assert 'llm_api_quota_redis_errors_total{operation="reserve"}' in metrics
        if mode == "allow":
            misses = [x for x in metrics.splitlines() if x.startswith("llm_api_quota_misses_total")]
            assert sum(float(x.split()[-1]) for x in misses) >= 20
        assert (await gw.client.get("/health/ready")).status_code == 200
        # Redis comes back (empty: it keeps no data): counting resumes after the back-off.
        redis_up.start()
        await asyncio.sleep(1.2)
        resp = await post(gw, "alice", body(words=5, max_tokens=10))
        assert resp.status_code == 200
        assert "x-ratelimit-remaining-tokens" in resp.headers
        total = resp.json()["usage"]["total_tokens"]
        quotas = gw.app.state.gateway.quotas
        assert await settled(redis_up, "alice", total, quotas) == total


# --- exactness across replicas ----------------------------------------------------------------


class Replica:
    """llm_api as the `llm-api` command runs it, in a process of its own."""

    def __init__(self, config_path: Path, env: dict[str, str]) -> None:
        self.port = free_port()
        env = (
            os.environ | env | {"LLM_API_PORT": str(self.port), "LLM_API_CONFIG": str(config_path)}
        )
        self.proc = subprocess.Popen([sys.executable, "-m", "llm_api.cli"], env=env)
        self.url = f"http://127.0.0.1:{self.port}"

    def wait_ready(self) -> None:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/health/ready").status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        raise RuntimeError("an llm_api replica did not start")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(20)


TURNS_LIMIT = 400  # test_a_request_through_the_other_replica_finds_the_unused_tokens


@pytest.fixture
async def replicas(
    provider: FakeProvider, redis_up: RedisServer, tmp_path: Path
) -> AsyncIterator[tuple[list[str], int]]:
    limit = 8000
    # deny: a Redis call that fails on a loaded machine shows as a 503 (the test fails) instead
    # of an unmetered answer.
    cfg = config(
        provider.url,
        redis_up.url,
        consumers=[
            {"name": "team", "tokens_per_minute": limit},
            {"name": "turns", "tokens_per_minute": TURNS_LIMIT},
        ],
        on_redis_error="deny",
        redis_timeout=10,
    )
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    env = {PROVIDER_ENV: PROVIDER_KEY, "LLM_API_GATEWAY_SECRET": GATEWAY_SECRET}
    env |= {"LLM_API_ACCESS_LOG": "false", "LLM_API_LOG_LEVEL": "warning"}
    started = [Replica(path, env), Replica(path, env)]
    try:
        for r in started:
            r.wait_ready()
        yield [r.url for r in started], limit
    finally:
        for r in started:
            r.stop()


async def test_two_replicas_never_serve_more_than_the_limit(
    replicas: tuple[list[str], int], redis_up: RedisServer
) -> None:
    urls, limit = replicas
    # One run inside one UTC minute of Redis's clock (the window): start with 25 s left at least.
    now = float(redis_up.client().time()[0])
    if now % 60 > 35:
        await asyncio.sleep(60 - now % 60 + 0.5)
    clients = [
        httpx.AsyncClient(base_url=u, timeout=60, limits=httpx.Limits(max_connections=60))
        for u in urls
    ]
    served: list[tuple[float, int]] = []  # (when the request was sent, tokens in its usage)
    refused: list[float] = []  # when a 429 arrived
    rng = random.Random(13)

    async def client(i: int) -> None:
        http = clients[i % 2]
        while True:
            stream = rng.random() < 0.5
            payload = body(words=rng.randint(20, 80), max_tokens=rng.randint(5, 20))
            if stream:
                payload |= {"stream": True, "stream_options": {"include_usage": True}}
            sent = time.monotonic()
            resp = await http.post("/v1/chat/completions", json=payload, headers=who("team"))
            if resp.status_code == 429:
                refused.append(time.monotonic())
                return
            assert resp.status_code == 200, resp.text
            if stream:
                usage = json.loads(sse_events(resp.text)[-2])["usage"]
            else:
                usage = resp.json()["usage"]
            served.append((sent, usage["total_tokens"]))

    try:
        await asyncio.wait_for(asyncio.gather(*(client(i) for i in range(50))), 120)
    finally:
        for c in clients:
            await c.aclose()
    total = sum(t for _, t in served)
    first_429 = min(refused)
    before = sum(t for sent, t in served if sent < first_429)
    print(
        f"\ntwo replicas, 50 clients, limit {limit} tokens/minute: {len(served)} answers, "
        f"{total} tokens served ({total / limit:.1%} of the limit), {before} tokens "
        f"({before / limit:.1%}) by requests sent before the first 429; {len(refused)} 429s"
    )
    assert len(refused) == 50
    assert total <= limit
    assert before >= 0.8 * limit


async def test_a_request_through_the_other_replica_finds_the_unused_tokens(
    replicas: tuple[list[str], int], redis_up: RedisServer
) -> None:
    """One client near its limit, its requests in turn through each replica: each reservation
    already sees the previous answer settled to its real usage (the unused part of its
    reservation returned at once: this close to the limit no replica holds a lease), so the
    client is served exactly as long as the quota has room for its reservation, then refused."""
    urls, _ = replicas
    now = float(redis_up.client().time()[0])
    if now % 60 > 45:  # inside one minute window
        await asyncio.sleep(60 - now % 60 + 0.5)
    payload = {  # the same reservation every time
        "model": MODEL,
        "max_tokens": 20,
        "messages": [{"role": "user", "content": "alpha beta gamma delta alpha"}],
    }
    usage: list[int] = []
    remaining: list[int] = []
    async with httpx.AsyncClient(timeout=30) as http:
        for turn in range(100):
            resp = await http.post(
                f"{urls[turn % 2]}/v1/chat/completions", json=payload, headers=who("turns")
            )
            if resp.status_code == 429:
                break
            assert resp.status_code == 200, resp.text
            usage.append(resp.json()["usage"]["total_tokens"])
            remaining.append(int(resp.headers["x-ratelimit-remaining-tokens"]))
    reservation = TURNS_LIMIT - remaining[0]
    assert reservation > usage[0]  # the estimate holds back more than the answer used
    # What each request found: the limit, minus every earlier answer's real usage, minus its
    # own reservation. A settlement still on its way (or tokens parked in a lease) would show
    # as less.
    expected = [TURNS_LIMIT - sum(usage[:n]) - reservation for n in range(len(usage))]
    print(f"\nreservation {reservation}, usage {usage}, remaining {remaining}")
    assert remaining == expected
    # Refused only once what is left cannot cover the reservation.
    assert len(usage) < 100
    assert TURNS_LIMIT - sum(usage) < reservation
