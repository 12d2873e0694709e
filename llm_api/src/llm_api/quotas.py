"""Token quotas per consumer, exact across replicas, and usage accounting (tokens, cost).

Before a provider is called, the request's estimate (prompt tokens counted locally plus its
output cap) is reserved in Redis by one Lua script that every replica runs (`SCRIPT`): the check
and the increment are one atomic step, so concurrent requests on any number of replicas can
never reserve more than the budget. When the answer ends, the reservation is settled to the
provider's real usage (released when nothing was served, kept whole when the usage never came:
a stream cut short, a client gone). Windows are the UTC minute and the UTC day of Redis's clock,
so replicas with skewed clocks still share one window.

Leases: far from its limit, a consumer does not need Redis on every request. When a reservation
fits, the script also reserves a lease for the replica (up to LEASE_REQUESTS more requests of
that size, at most `lease_share` of what each limited window has left, and only when it covers
one more such request). The replica then serves that consumer's requests from the lease and
settles them into it, without a Redis call; the lease ends with its window or after
LEASE_SECONDS, and what it did not use goes back to Redis. Every leased token is counted in
Redis, so the limit still holds exactly across replicas; close to the limit leases shrink to
nothing and each request reserves and settles in Redis, its settlement queued as the answer's
last bytes leave, so that the client's next request, through any replica, finds the unused
tokens returned.

Usage (tokens in and out, cost from LiteLLM's local cost map, `pricing.py`) is added up per
consumer, day and model and written to Redis's per-day totals every FLUSH_SECONDS and at
shutdown (`llm-api usage` prints them); a batch Redis cannot take is kept for the next one.

Redis is spoken to through `resp.LeanRedis` (one pipelined connection, the script preloaded,
EVALSHA); nobody waits for the replies of settlements, lease returns and usage batches.
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
# A lease asks for this many more requests of the size of the one that takes it (bounded by the
# config's lease_share of what is left), and lives at most this long.
LEASE_REQUESTS = 32
LEASE_SECONDS = 2.0
# The usage totals go to Redis this often (and at shutdown), one call per consumer and day.
FLUSH_SECONDS = 1.0

# KEYS[1]: the consumer's quota key prefix; KEYS[2]: its usage key prefix (a day is appended).
# reserve: ARGV = 'reserve', amount, minute limit, day limit (0 = none), lease wanted, lease share
#   -> {allowed, minute window, day window, remaining/min, reset ms/min, remaining/day,
#       reset ms/day, denied window (0 none, 1 minute, 2 day), lease granted, epoch}; remaining
#   is -1 without a limit; the epoch names the life of the consumer's counters (it changes when
#   Redis lost them). Once the amount fits, up to `lease wanted` more tokens are reserved as the
#   replica's lease, at most `lease share` of what every limited window has left after it, and
#   only when that covers another request as large (otherwise none).
# settle: ARGV = 'settle', minute window, day window (-1 = the current ones), delta, minute
#   limited, day limited -> 1 (a window never goes below zero)
# account: ARGV = 'account', day (YYYY-MM-DD), retention seconds, then per model: model,
#   requests, tokens in, out, cost ('' = none priced), unpriced requests -> 1
SCRIPT = """
local op = ARGV[1]
local spans = {60000, 86400000}
local tags = {':m:', ':d:'}
if op == 'account' then
  local key = KEYS[2] .. ':' .. ARGV[2]
  local fresh = redis.call('EXISTS', key) == 0
  for j = 4, #ARGV, 6 do
    local model = ARGV[j]
    redis.call('HINCRBY', key, model .. '\\trequests', tonumber(ARGV[j + 1]))
    redis.call('HINCRBY', key, model .. '\\tin', tonumber(ARGV[j + 2]))
    redis.call('HINCRBY', key, model .. '\\tout', tonumber(ARGV[j + 3]))
    if ARGV[j + 4] ~= '' then
      redis.call('HINCRBYFLOAT', key, model .. '\\tcost', ARGV[j + 4])
    end
    if ARGV[j + 5] ~= '0' then
      redis.call('HINCRBY', key, model .. '\\tunpriced', tonumber(ARGV[j + 5]))
    end
  end
  if fresh then
    redis.call('EXPIRE', key, tonumber(ARGV[3]))
  end
  return 1
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if op == 'reserve' then
  local amount = tonumber(ARGV[2])
  local limits = {tonumber(ARGV[3]), tonumber(ARGV[4])}
  local out = {1, 0, 0, -1, 0, -1, 0, 0, 0, ''}
  local keys, used = {}, {}
  -- The consumer's counters' epoch: made anew when Redis lost them (restarted empty).
  local ek = KEYS[1] .. ':epoch'
  out[10] = redis.call('GET', ek)
  if not out[10] then
    out[10] = t[1] .. '.' .. t[2]
    redis.call('SET', ek, out[10], 'EX', 172800)
  end
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
  local lease = tonumber(ARGV[5])
  if out[1] == 1 and lease > 0 then
    local share = tonumber(ARGV[6])
    for i = 1, 2 do
      if keys[i] then
        lease = math.min(lease, math.floor((limits[i] - used[i]) * share))
      end
    end
    if lease >= amount then
      out[9] = lease
    end
  end
  for i = 1, 2 do
    if keys[i] then
      if out[1] == 0 then
        used[i] = redis.call('DECRBY', keys[i], amount)
      elseif out[9] > 0 then
        used[i] = redis.call('INCRBY', keys[i], out[9])
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


_Usage = tuple[tuple[str, str], dict[str, list[Any]]]
"""Usage totals of one consumer and day: ((consumer, day), model -> [requests, tokens in,
tokens out, cost or None, unpriced requests])."""


@dataclass
class Lease:
    """Tokens a replica holds for one consumer, reserved in Redis in both of its limited windows,
    that it hands to that consumer's requests without a Redis call until it expires."""

    minute: int
    day: int
    limited_minute: bool
    limited_day: bool
    available: int
    expires: float
    """time.monotonic() after which the lease serves no request (its windows' end, or sooner)."""
    remaining_minute: int
    remaining_day: int
    """What Redis had left in each window when the lease was granted, the lease excluded."""
    reset_minute: float
    reset_day: float
    """time.monotonic() of each window's end."""
    epoch: bytes = b""
    """The epoch of the consumer's counters the lease was taken from."""


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
    lease: Lease | None = None
    """The replica's lease the amount came from (None: reserved in Redis for this request)."""
    near_limit: bool = False
    """Fewer than LEASE_REQUESTS more requests of this size fit in a limited window: the
    settlement is written to Redis at once (the client's next request may be refused else)."""


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
    """Reserve, settle, account; one per app (its Redis connection lives in the lifespan)."""

    def __init__(self, config: Config, registry: CollectorRegistry) -> None:
        self.config: QuotaConfig | None = config.quotas
        self.counter = TokenCounter()
        self._labels = frozenset(config.consumers)
        self.redis: LeanRedis | None = None
        self._sha = LeanRedis.script_sha(SCRIPT)
        self._down_until = 0.0
        self._key_cache: dict[str, list[str]] = {}
        self._tasks: set[asyncio.Future[Any]] = set()
        """Redis calls under way that nobody awaits (settlements, lease returns, accounting)."""
        self._leases: dict[str, Lease] = {}
        self._orphans: dict[str, list[Lease]] = {}
        """Leases dropped when Redis failed, by consumer: returned at the consumer's next
        reservation if its counters' epoch is still theirs (a Redis that restarted empty counts
        none of them: returning them would take other requests' tokens off its counters)."""
        self._leasing: dict[str, asyncio.Future[None]] = {}
        """Consumers whose lease request is on its way to Redis: done when it has come back."""
        self._usage: dict[tuple[str, str], dict[str, list[Any]]] = {}
        """Accounting not yet written: (consumer, day) -> model -> [requests, in, out, cost or
        None, unpriced]."""
        self._flusher: asyncio.Task[None] | None = None
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
            on_lost=self._drop_leases,
        )
        try:  # connected (and the script loaded) before the first request, when Redis is up
            await self.redis.connect()
        except (ReplyError, OSError):
            self._redis_failed("connect")
        self._flusher = asyncio.ensure_future(self._flush_loop())

    async def drain(self) -> None:
        """Wait until every Redis call under way has been answered (or has failed)."""
        while self._tasks:
            await asyncio.wait(list(self._tasks))

    async def sync(self) -> None:
        """Return every lease's unused tokens, write the accounting and wait for both: Redis
        then holds exactly what the answers used (at shutdown, and for tests)."""
        for consumer in list(self._leases):
            self._return_lease(consumer)
        self._flush_usage()
        await self.drain()

    async def stop(self) -> None:
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
            self._flusher = None
        if self.redis is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.sync(), 5)
            if self._usage:
                self.misses.labels("account").inc(
                    sum(u[0] for per in self._usage.values() for u in per.values())
                )
                log.warning("usage not written: redis unavailable at shutdown")
            await self.redis.aclose()

    async def _flush_loop(self) -> None:
        """Every FLUSH_SECONDS: the accounting written, expired leases returned."""
        while True:
            await asyncio.sleep(FLUSH_SECONDS)
            now = time.monotonic()
            for consumer, lease in list(self._leases.items()):
                if now >= lease.expires:
                    self._return_lease(consumer)
            self._flush_usage()

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
        self._drop_leases()

    def _return_orphans(self, consumer: str, epoch: bytes) -> None:
        for lease in self._orphans.pop(consumer, ()):
            if lease.epoch == epoch:
                self._send_settle(consumer, lease.minute, lease.day, -lease.available, lease)

    def _drop_leases(self) -> None:
        """Redis failed or the connection was lost: no request is served from a lease until
        Redis answers again (on_redis_error applies to them); what the leases did not use goes
        back once it is connected again (if Redis kept its data, those tokens are not lost)."""
        for consumer, lease in self._leases.items():
            if lease.available > 0:
                self._orphans.setdefault(consumer, []).append(lease)
        self._leases.clear()

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
        res.amount = amount = self.estimate(body, chat)
        res.limited_minute, res.limited_day = bool(tpm), bool(tpd)
        served = self._from_lease(res, tpm, tpd)
        if served is not None:
            return res, served
        pending = self._leasing.get(consumer)
        if pending is not None:
            # A lease for this consumer is on its way: wait for it rather than asking Redis too.
            await asyncio.shield(pending)
            served = self._from_lease(res, tpm, tpd)
            if served is not None:
                return res, served
        # One lease request per consumer at a time; the others reserve just their own amount.
        leasing = bool(cfg.lease_share) and consumer not in self._leasing
        want = amount * LEASE_REQUESTS if leasing else 0
        if leasing:
            self._leasing[consumer] = asyncio.get_running_loop().create_future()
        try:
            if not self._redis_ok():
                raise ConnectionError("redis backing off")
            out = await self._eval(
                [*self._keys(consumer), "reserve", amount, tpm, tpd, want, cfg.lease_share]
            )
        except (ReplyError, OSError):
            self._redis_failed("reserve")
            if cfg.on_redis_error == "deny":
                raise QuotaUnavailable() from None
            self.misses.labels("reserve").inc()
            res.missed = True
            res.amount = 0
            return res, []
        finally:
            if leasing:
                self._leasing.pop(consumer).set_result(None)
        allowed, res.minute, res.day = int(out[0]), int(out[1]), int(out[2])
        rem_m, reset_m, rem_d, reset_d, denied, granted = (int(v) for v in out[3:9])
        epoch = out[9]
        if consumer in self._orphans:
            self._return_orphans(consumer, epoch)
        if not allowed:
            window = "minute" if denied == 1 else "day"
            self.rejections.labels(self._label(consumer), window).inc()
            limit = tpm if denied == 1 else tpd
            reset = reset_m if denied == 1 else reset_d
            headers = _tighter(tpm, tpd, rem_m, rem_d, reset_m, reset_d, denied)
            raise ApiError(
                429,
                f"Rate limit reached for tokens per {window}: limit {limit}, remaining "
                f"{rem_m if denied == 1 else rem_d}, requested {amount}. Please try again "
                f"in {reset_text(reset)}.",
                "tokens",
                "rate_limit_exceeded",
                headers={k.decode(): v.decode() for k, v in headers}
                | {"Retry-After": str(max(1, math.ceil(reset / 1000)))},
            )
        left = [r for r, limited in ((rem_m, tpm), (rem_d, tpd)) if limited]
        res.near_limit = min(left) < amount * LEASE_REQUESTS
        if granted and self.redis is not None and self.redis.connected:
            self._lease(consumer, res, granted, (rem_m, reset_m, rem_d, reset_d), epoch)
            rem_m, rem_d = rem_m + granted if tpm else rem_m, rem_d + granted if tpd else rem_d
        return res, _tighter(tpm, tpd, rem_m, rem_d, reset_m, reset_d, 0)

    def _from_lease(self, res: Reservation, tpm: int, tpd: int) -> list[tuple[bytes, bytes]] | None:
        """Take `res.amount` from the consumer's lease: its headers, or None (no lease, expired
        (then returned), or too little left)."""
        lease = self._leases.get(res.consumer)
        if lease is None:
            return None
        now = time.monotonic()
        if now >= lease.expires:
            self._return_lease(res.consumer)  # goes out in the same write as what follows
            return None
        if lease.available < res.amount:
            return None
        lease.available -= res.amount
        res.minute, res.day, res.lease = lease.minute, lease.day, lease
        rem_m = lease.remaining_minute + lease.available
        rem_d = lease.remaining_day + lease.available
        reset_m = int((lease.reset_minute - now) * 1000)
        reset_d = int((lease.reset_day - now) * 1000)
        return _tighter(tpm, tpd, rem_m, rem_d, reset_m, reset_d, 0)

    def _lease(
        self,
        consumer: str,
        res: Reservation,
        granted: int,
        seen: tuple[int, int, int, int],
        epoch: bytes,
    ) -> None:
        """Hold `granted` tokens for `consumer`: added to its lease when that is of the same
        windows (requests that took from it still settle into it), else a new lease."""
        rem_m, reset_m, rem_d, reset_d = seen
        now = time.monotonic()
        ends = [reset_m] * res.limited_minute + [reset_d] * res.limited_day
        # A lease ends with the first of its windows, and after LEASE_SECONDS anyway: what it
        # did not use goes back to Redis, for every replica.
        expires = now + min(LEASE_SECONDS, min(ends) / 1000)
        lease = self._leases.get(consumer)
        if lease is None or (lease.minute, lease.day, lease.epoch) != (res.minute, res.day, epoch):
            self._return_lease(consumer)
            lease = self._leases[consumer] = Lease(
                res.minute, res.day, res.limited_minute, res.limited_day, 0, 0, 0, 0, 0, 0, epoch
            )
        lease.available += granted
        lease.expires = expires
        lease.remaining_minute, lease.remaining_day = rem_m, rem_d
        lease.reset_minute, lease.reset_day = now + reset_m / 1000, now + reset_d / 1000

    def settle(
        self,
        res: Reservation,
        model: str,
        served: bool,
        tokens_in: int | None,
        tokens_out: int | None,
        cost: float | None,
    ) -> None:
        """Settle `res` to the real usage and account it, without waiting for Redis.

        `served`: an answer went out (status 200). Without usage from the provider the
        reservation is kept whole; when nothing was served it is released. Into the replica's
        lease when the amount came from it and it is still current (no Redis call); otherwise
        queued for Redis, and near the limit written at once (not at the end of the loop pass):
        called before the answer's last bytes go out, the client's next request, through any
        replica, then finds the unused tokens returned instead of being refused while the quota
        has room.
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
        if served and known:
            self._account(res, model, tin, tout, cost)
        delta = actual - res.amount
        if delta == 0 or not (res.limited_minute or res.limited_day):
            return
        lease = res.lease
        if lease is not None and self._leases.get(res.consumer) is lease:
            lease.available -= delta
            if lease.available >= 0:
                return
            delta, lease.available = -lease.available, 0  # an overrun beyond the lease
        self._send_settle(res.consumer, res.minute, res.day, delta, res, res.near_limit)

    def _send_settle(
        self,
        consumer: str,
        minute: int,
        day: int,
        delta: int,
        limited: Reservation | Lease,
        at_once: bool = False,
    ) -> None:
        keys_args = [
            *self._keys(consumer),
            "settle",
            minute,
            day,
            delta,
            "1" if limited.limited_minute else "0",
            "1" if limited.limited_day else "0",
        ]
        self._send(keys_args, "settle", None, at_once)

    def _return_lease(self, consumer: str) -> None:
        lease = self._leases.pop(consumer, None)
        if lease is not None and lease.available > 0:
            self._send_settle(consumer, lease.minute, lease.day, -lease.available, lease)

    def _send(
        self, keys_args: list[Any], operation: str, usage: _Usage | None, at_once: bool = False
    ) -> None:
        """Queue a script call whose reply nobody waits for (it goes out at the end of this
        pass of the event loop, with the other commands of the pass, in one write; `at_once`:
        now). `usage`: the totals an `account` call writes, kept for the next flush if it
        fails."""
        redis = self.redis
        if redis is None or not self._redis_ok():
            self._send_failed(operation, usage, skipped=True)
        elif redis.connected:  # queued; its reply handled by a callback: no task, no wait
            fut = redis.send("EVALSHA", self._sha, 2, *keys_args, at_once=at_once)
            self._tasks.add(fut)
            fut.add_done_callback(lambda done: self._sent(done, keys_args, operation, usage))
        else:
            task = asyncio.ensure_future(self._send_connecting(keys_args, operation, usage))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _sent(
        self, fut: asyncio.Future[Any], keys_args: list[Any], operation: str, usage: _Usage | None
    ) -> None:
        exc = ConnectionError("cancelled") if fut.cancelled() else fut.exception()
        redis = self.redis
        if isinstance(exc, ReplyError) and exc.noscript and redis and redis.connected:
            # Redis lost its script cache: this call goes again with the script itself.
            again = redis.send("EVAL", SCRIPT, 2, *keys_args)
            self._tasks.add(again)
            again.add_done_callback(lambda done: self._sent(done, [], operation, usage))
            exc = None
        if exc is not None:
            self._send_failed(operation, usage)
        self._tasks.discard(fut)

    async def _send_connecting(
        self, keys_args: list[Any], operation: str, usage: _Usage | None
    ) -> None:
        try:
            await self._eval(keys_args)
        except (ReplyError, OSError):
            self._send_failed(operation, usage)

    def _send_failed(self, operation: str, usage: _Usage | None, skipped: bool = False) -> None:
        """`skipped`: not tried (Redis is backing off): the back-off is not extended."""
        if skipped:
            self.redis_errors.labels(operation).inc()
        else:
            self._redis_failed(operation)
        if usage is None:
            self.misses.labels(operation).inc()
            return
        # The totals are kept, and written with the next flush: nothing lost.
        key, per_model = usage
        mine = self._usage.setdefault(key, {})
        for model, (requests, tin, tout, cost, unpriced) in per_model.items():
            row = mine.setdefault(model, [0, 0, 0, None, 0])
            row[0] += requests
            row[1] += tin
            row[2] += tout
            if cost is not None:
                row[3] = cost + (row[3] or 0.0)
            row[4] += unpriced

    def _account(
        self, res: Reservation, model: str, tin: int, tout: int, cost: float | None
    ) -> None:
        """Add an answer's usage to what the next flush writes to the per-day totals."""
        day = usage_day(res.day) if res.day >= 0 else datetime.now(UTC).strftime("%Y-%m-%d")
        per_model = self._usage.setdefault((res.consumer, day), {})
        row = per_model.get(model)
        if row is None:
            row = per_model[model] = [0, 0, 0, None, 0]
        row[0] += 1
        row[1] += tin
        row[2] += tout
        if cost is None:
            row[4] += 1
        else:
            row[3] = cost if row[3] is None else row[3] + cost

    def _flush_usage(self) -> None:
        """One `account` call per consumer and day, queued together (one write)."""
        assert self.config is not None
        usage, self._usage = self._usage, {}
        retention = self.config.usage_retention_days * 86400
        for (consumer, day), per_model in usage.items():
            args: list[Any] = [*self._keys(consumer), "account", day, retention]
            for model, (requests, tin, tout, cost, unpriced) in per_model.items():
                args += [model, requests, tin, tout, "" if cost is None else repr(cost), unpriced]
            self._send(args, "account", ((consumer, day), per_model))


def _tighter(
    tpm: int, tpd: int, rem_m: int, rem_d: int, reset_m: int, reset_d: int, denied: int
) -> list[tuple[bytes, bytes]]:
    """The headers speak of the tighter window: the minute's, unless the day has less left (or
    the day is the window that refused)."""
    if tpm and (not tpd or rem_m <= rem_d) and denied != 2:
        return _headers(tpm, rem_m, reset_m)
    return _headers(tpd, rem_d, reset_d)


def _headers(limit: int, remaining: int, reset_ms: int) -> list[tuple[bytes, bytes]]:
    return [
        (b"x-ratelimit-limit-tokens", str(limit).encode()),
        (b"x-ratelimit-remaining-tokens", str(max(remaining, 0)).encode()),
        (b"x-ratelimit-reset-tokens", reset_text(reset_ms).encode()),
    ]
