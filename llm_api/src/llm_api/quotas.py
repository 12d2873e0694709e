"""Token quotas per consumer, exact across replicas, and usage accounting (tokens, cost).

Before a provider is called, the request's estimate (prompt tokens counted locally plus its
output cap) is reserved in Redis by one Lua script that every replica runs (`SCRIPT`): the check
and the increment are one atomic step, so concurrent requests on any number of replicas can
never reserve more than the budget. When the answer ends, the reservation is settled to the
provider's real usage (released when nothing was served, kept whole when the usage never came:
a stream cut short, a client gone). Windows are the UTC minute and the UTC day of Redis's clock,
so replicas with skewed clocks still share one window.

The same settlement adds the real usage to per-day totals in Redis (`llm-api usage` prints them)
and to Prometheus counters, with the cost from LiteLLM's local cost map (`pricing.py`).

Redis is spoken to through `resp.LeanRedis` (one pipelined connection, the script preloaded,
EVALSHA): the reservation is the only round trip a request waits for. The settlement is queued
as the answer's last bytes leave and goes out in the same pass of the event loop (with the other
requests' commands of that pass, in one write); a callback handles its reply, which nobody waits
for. A client's next request, through any replica, finds the unused tokens returned instead of
being refused while the quota has room.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from prometheus_client import CollectorRegistry, Counter

from llm_api.config import Config, QuotaConfig
from llm_api.errors import ApiError
from llm_api.resp import LeanRedis, ReplyError
from llm_api.tokens import TokenCounter

log = logging.getLogger("llm_api.quotas")

MINUTE_MS, DAY_MS = 60_000, 86_400_000
# After a Redis failure, requests skip Redis for this long (no per-request connect timeouts
# while it is down); then the next request tries again, so counting resumes by itself.
BACKOFF_SECONDS = 1.0

# KEYS[1]: the consumer's quota key prefix; KEYS[2]: its usage key prefix (a day is appended).
# reserve: ARGV = 'reserve', amount, minute limit, day limit (0 = none)
#   -> {allowed, minute window, day window, remaining/min, reset ms/min, remaining/day,
#       reset ms/day, denied window (0 none, 1 minute, 2 day)}; remaining is -1 without a limit.
# settle: ARGV = 'settle', minute window, day window (-1 = the current ones), delta, minute
#   limited, day limited, day (YYYY-MM-DD or ''), model, tokens in, out, cost ('' = unknown),
#   retention seconds -> 1
SCRIPT = """
local op = ARGV[1]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local spans = {60000, 86400000}
local tags = {':m:', ':d:'}
if op == 'reserve' then
  local amount = tonumber(ARGV[2])
  local limits = {tonumber(ARGV[3]), tonumber(ARGV[4])}
  local out = {1, 0, 0, -1, 0, -1, 0, 0}
  local keys, used = {}, {}
  for i = 1, 2 do
    local win = math.floor(now / spans[i])
    out[1 + i] = win
    out[3 + 2 * i] = (win + 1) * spans[i] - now
    if limits[i] > 0 then
      keys[i] = KEYS[1] .. tags[i] .. win
      used[i] = redis.call('INCRBY', keys[i], amount)
      if used[i] == amount then
        redis.call('PEXPIRE', keys[i], spans[i] + 120000)
      end
      if out[1] == 1 and used[i] > limits[i] then
        out[1] = 0
        out[8] = i
      end
    end
  end
  for i = 1, 2 do
    if keys[i] then
      if out[1] == 0 then
        used[i] = redis.call('DECRBY', keys[i], amount)
      end
      out[2 + 2 * i] = math.max(limits[i] - used[i], 0)
    end
  end
  return out
end
local delta = tonumber(ARGV[4])
for i = 1, 2 do
  if ARGV[4 + i] == '1' and delta ~= 0 then
    local win = tonumber(ARGV[1 + i])
    if win < 0 then win = math.floor(now / spans[i]) end
    local key = KEYS[1] .. tags[i] .. win
    local left = redis.call('INCRBY', key, delta)
    if left < 0 then
      redis.call('SET', key, 0, 'PX', spans[i] + 120000)
    elseif left == delta then
      redis.call('PEXPIRE', key, spans[i] + 120000)
    end
  end
end
local day = ARGV[7]
if day ~= '' then
  local key = KEYS[2] .. ':' .. day
  local model = ARGV[8]
  if redis.call('HINCRBY', key, model .. '\\trequests', 1) == 1 then
    redis.call('EXPIRE', key, tonumber(ARGV[12]))
  end
  redis.call('HINCRBY', key, model .. '\\tin', tonumber(ARGV[9]))
  redis.call('HINCRBY', key, model .. '\\tout', tonumber(ARGV[10]))
  if ARGV[11] == '' then
    redis.call('HINCRBY', key, model .. '\\tunpriced', 1)
  else
    redis.call('HINCRBYFLOAT', key, model .. '\\tcost', ARGV[11])
  end
end
return 1
"""


class QuotaUnavailable(ApiError):
    def __init__(self) -> None:
        super().__init__(
            503,
            "Token quotas cannot be checked right now; try again shortly.",
            "server_error",
            "quota_unavailable",
        )


@dataclass
class Reservation:
    """What a request holds in Redis between `reserve` and `settle`."""

    consumer: str
    amount: int = 0
    minute: int = -1
    day: int = -1
    limited_minute: bool = False
    limited_day: bool = False
    missed: bool = False
    """Redis could not be asked (on_redis_error: allow): nothing was reserved."""


def reset_text(ms: int) -> str:
    """A duration the way OpenAI writes `x-ratelimit-reset-tokens` (`59.5s`, `6m0s`, `1h2m3s`)."""
    seconds = max(ms, 0) / 1000
    if seconds < 60:
        return f"{seconds:.3f}".rstrip("0").rstrip(".") + "s"
    whole = math.ceil(seconds)
    h, rest = divmod(whole, 3600)
    m, s = divmod(rest, 60)
    return (f"{h}h" if h else "") + f"{m}m{s}s"


def _key_part(name: str) -> str:
    # Consumer names go into keys: braces (Redis Cluster hash tags) and separators escaped.
    return quote(name, safe="")


@functools.lru_cache(maxsize=8)
def usage_day(day_window: int) -> str:
    return datetime.fromtimestamp(day_window * 86400, UTC).strftime("%Y-%m-%d")


class Quotas:
    """Reserve, settle, account; one per app (its Redis connection pool lives in the lifespan)."""

    def __init__(self, config: Config, registry: CollectorRegistry) -> None:
        self.config: QuotaConfig | None = config.quotas
        self.counter = TokenCounter()
        self._labels = frozenset(config.consumers)
        self.redis: LeanRedis | None = None
        self._sha = LeanRedis.script_sha(SCRIPT)
        self._down_until = 0.0
        self._key_cache: dict[str, list[str]] = {}
        self._tasks: set[asyncio.Future[Any]] = set()
        """Settlements under way (their replies not yet handled)."""
        self.misses = Counter(
            "llm_api_quota_misses",
            "Requests served without a quota check or accounting because Redis failed "
            "(on_redis_error: allow), by operation.",
            ["operation"],
            registry=registry,
        )
        self.rejections = Counter(
            "llm_api_quota_rejections",
            "Requests refused (429) by a token quota, by consumer and window.",
            ["consumer", "window"],
            registry=registry,
        )
        self.redis_errors = Counter(
            "llm_api_quota_redis_errors",
            "Redis calls that failed (or were skipped while Redis was failing), by operation.",
            ["operation"],
            registry=registry,
        )
        self.unsettled = Counter(
            "llm_api_quota_unsettled",
            "Answers without usage from the provider (stream cut, client gone): the reservation "
            "was kept whole.",
            ["consumer"],
            registry=registry,
        )

    @property
    def enabled(self) -> bool:
        return self.config is not None

    async def start(self) -> None:
        if self.config is None:
            return
        await self.counter.load()
        self.redis = LeanRedis(
            self.config.redis_url,
            self.config.redis_timeout,
            (SCRIPT,),
            ca_file=self.config.redis_ca_file,
        )
        try:  # connected (and the script loaded) before the first request, when Redis is up
            await self.redis.connect()
        except (ReplyError, OSError):
            self._redis_failed("connect")

    async def drain(self) -> None:
        """Wait until every settlement under way has been answered (or has failed)."""
        while self._tasks:
            await asyncio.wait(list(self._tasks))

    async def stop(self) -> None:
        if self._tasks:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.drain(), 5)
        if self.redis is not None:
            await self.redis.aclose()

    async def _eval(self, keys_args: list[Any]) -> Any:
        """Run the script (EVALSHA; EVAL when Redis lost its script cache, e.g. SCRIPT FLUSH)."""
        assert self.redis is not None
        try:
            return await self.redis.call("EVALSHA", self._sha, 2, *keys_args)
        except ReplyError as exc:
            if not exc.noscript:
                raise
            return await self.redis.call("EVAL", SCRIPT, 2, *keys_args)

    def _keys(self, consumer: str) -> list[str]:
        keys = self._key_cache.get(consumer)
        if keys is None:
            assert self.config is not None
            part = _key_part(consumer)
            prefix = self.config.key_prefix
            # One hash tag per consumer: its keys stay in one slot on a Redis Cluster.
            keys = [f"{prefix}:quota:{{{part}}}", f"{prefix}:usage:{{{part}}}"]
            if len(self._key_cache) >= 4096:  # consumers are many only under abuse: bounded
                self._key_cache.clear()
            self._key_cache[consumer] = keys
        return keys

    def _label(self, consumer: str) -> str:
        return consumer if consumer in self._labels or consumer == "anonymous" else "other"

    def _redis_ok(self) -> bool:
        return time.monotonic() >= self._down_until

    def _redis_failed(self, operation: str) -> None:
        self.redis_errors.labels(operation).inc()
        if self._redis_ok():
            log.warning("redis unavailable", extra={"fields": {"operation": operation}})
        self._down_until = time.monotonic() + BACKOFF_SECONDS

    def estimate(self, body: dict[str, Any], chat: bool) -> int:
        assert self.config is not None
        prompt = self.counter.prompt_tokens(body, chat)
        if not chat:
            return prompt
        cap = body.get("max_completion_tokens") or body.get("max_tokens")
        if not isinstance(cap, int) or isinstance(cap, bool) or cap <= 0:
            cap = self.config.default_max_tokens
        n = body.get("n")
        choices = n if isinstance(n, int) and not isinstance(n, bool) and n > 1 else 1
        return prompt + cap * choices

    async def reserve(
        self, consumer: str, body: dict[str, Any], chat: bool
    ) -> tuple[Reservation, list[tuple[bytes, bytes]]]:
        """Reserve the request's estimate: (reservation, response headers); raises the 429 (or
        the 503 with on_redis_error: deny)."""
        cfg = self.config
        assert cfg is not None
        limits = cfg.limits(consumer)
        res = Reservation(consumer)
        tpm, tpd = limits.tokens_per_minute or 0, limits.tokens_per_day or 0
        if not tpm and not tpd:
            return res, []
        res.amount = self.estimate(body, chat)
        try:
            if not self._redis_ok():
                raise ConnectionError("redis backing off")
            out = await self._eval([*self._keys(consumer), "reserve", res.amount, tpm, tpd])
        except (ReplyError, OSError):
            self._redis_failed("reserve")
            if cfg.on_redis_error == "deny":
                raise QuotaUnavailable() from None
            self.misses.labels("reserve").inc()
            res.missed = True
            res.amount = 0
            res.limited_minute, res.limited_day = bool(tpm), bool(tpd)
            return res, []
        allowed, res.minute, res.day = int(out[0]), int(out[1]), int(out[2])
        rem_m, reset_m, rem_d, reset_d, denied = (int(v) for v in out[3:8])
        # The headers speak of the tighter window: the minute's, unless the day has less left.
        if tpm and (not tpd or rem_m <= rem_d) and denied != 2:
            headers = _headers(tpm, rem_m, reset_m)
        else:
            headers = _headers(tpd, rem_d, reset_d)
        if not allowed:
            window = "minute" if denied == 1 else "day"
            self.rejections.labels(self._label(consumer), window).inc()
            limit = tpm if denied == 1 else tpd
            reset = reset_m if denied == 1 else reset_d
            raise ApiError(
                429,
                f"Rate limit reached for tokens per {window}: limit {limit}, remaining "
                f"{rem_m if denied == 1 else rem_d}, requested {res.amount}. Please try again "
                f"in {reset_text(reset)}.",
                "tokens",
                "rate_limit_exceeded",
                headers={k.decode(): v.decode() for k, v in headers}
                | {"Retry-After": str(max(1, math.ceil(reset / 1000)))},
            )
        res.limited_minute, res.limited_day = bool(tpm), bool(tpd)
        return res, headers

    def settle(
        self,
        res: Reservation,
        model: str,
        served: bool,
        tokens_in: int | None,
        tokens_out: int | None,
        cost: float | None,
    ) -> None:
        """Settle `res` to the real usage and account it, in a task (off the response's path).

        `served`: an answer went out (status 200). Without usage from the provider the
        reservation is kept whole; when nothing was served it is released.
        """
        if self.config is None:
            return
        known = tokens_in is not None or tokens_out is not None
        tin, tout = tokens_in or 0, tokens_out or 0
        if not served:
            actual = 0
        elif known:
            actual = tin + tout
        else:
            actual = res.amount
            self.unsettled.labels(self._label(res.consumer)).inc()
        delta = actual - res.amount
        account = served and known
        if not account and (delta == 0 or not (res.limited_minute or res.limited_day)):
            return
        keys_args = self._settle_args(res, model, delta, account, tin, tout, cost)
        redis = self.redis
        if redis is None or not self._redis_ok():
            self._settle_failed()
        elif redis.connected:  # queued; its reply handled by a callback: no task, no wait
            self._track(redis.send("EVALSHA", self._sha, 2, *keys_args), keys_args, True)
        else:
            task = asyncio.ensure_future(self._settle_connecting(keys_args))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _track(self, fut: asyncio.Future[Any], keys_args: list[Any], retry: bool) -> None:
        self._tasks.add(fut)
        fut.add_done_callback(lambda done: self._settled(done, keys_args, retry))

    def _settled(self, fut: asyncio.Future[Any], keys_args: list[Any], retry: bool) -> None:
        exc = ConnectionError("cancelled") if fut.cancelled() else fut.exception()
        redis = self.redis
        if isinstance(exc, ReplyError) and exc.noscript and retry and redis and redis.connected:
            # Redis lost its script cache: this settlement goes again with the script itself.
            self._track(redis.send("EVAL", SCRIPT, 2, *keys_args), keys_args, False)
            exc = None
        if exc is not None:
            self._settle_failed()
        self._tasks.discard(fut)

    async def _settle_connecting(self, keys_args: list[Any]) -> None:
        try:
            await self._eval(keys_args)
        except (ReplyError, OSError):
            self._settle_failed()

    def _settle_failed(self) -> None:
        self._redis_failed("settle")
        self.misses.labels("settle").inc()

    def _settle_args(
        self,
        res: Reservation,
        model: str,
        delta: int,
        account: bool,
        tin: int,
        tout: int,
        cost: float | None,
    ) -> list[Any]:
        cfg = self.config
        assert cfg is not None
        day = "" if not account else (usage_day(res.day) if res.day >= 0 else "today")
        args = [
            "settle",
            res.minute,
            res.day,
            delta,
            "1" if res.limited_minute else "0",
            "1" if res.limited_day else "0",
            day,
            model,
            tin,
            tout,
            "" if cost is None else repr(cost),
            cfg.usage_retention_days * 86400,
        ]
        if day == "today":
            args[6] = datetime.now(UTC).strftime("%Y-%m-%d")
        return [*self._keys(res.consumer), *args]


def _headers(limit: int, remaining: int, reset_ms: int) -> list[tuple[bytes, bytes]]:
    return [
        (b"x-ratelimit-limit-tokens", str(limit).encode()),
        (b"x-ratelimit-remaining-tokens", str(max(remaining, 0)).encode()),
        (b"x-ratelimit-reset-tokens", reset_text(reset_ms).encode()),
    ]
