"""Retries, fallbacks and cooldowns around one backend call; the same for every path.

Semantics follow LiteLLM's Router settings (router_settings in the config):
- a deployment is picked at random, in proportion to its `weight` (else `rpm`, else `tpm`, as
  LiteLLM's simple-shuffle), among those of the group not cooling down or rate limited;
- a failed call to a model group is retried `max_retries` times (the deployment's, default
  `num_retries`) on rate limits, timeouts, unreachable providers and 5xx, each time on a
  deployment of the group that is not cooling down. Between attempts it waits with exponential
  backoff and full jitter (`retry_backoff_base` doubling up to `retry_backoff_max`, at least
  `retry_after`), or the provider's Retry-After when that is longer and at most
  `max_retry_after` (a longer one ends the retries);
- a 429 marks the deployment rate limited for the provider's Retry-After: the retry goes to
  another deployment of the group, and when there is none the client gets the 429 with the
  provider's Retry-After instead of an immediate retry;
- no retry or fallback starts when it would end after `request_deadline` seconds, and an
  attempt still waiting for its answer (for a stream: its first bytes) at the deadline is cut
  off with an upstream timeout;
- then the group's `fallbacks` (or `context_window_fallbacks` for a context-length error) are
  tried in order, each with its own retries;
- a deployment that fails more than `allowed_fails` times within a minute cools down for
  `cooldown_time` seconds (only in groups of more than one deployment, as LiteLLM does).
"""

from __future__ import annotations

import asyncio
import collections
import random
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from llm_api.backends import Backend
from llm_api.config import Config, Deployment
from llm_api.errors import DEPLOYMENT_FAILURES, RETRYABLE, Kind, UpstreamError
from llm_api.observability import Metrics, RequestContext

T = TypeVar("T")
FAILURE_WINDOW = 60.0


class Router:
    def __init__(self, config: Config, backends: dict[str, Backend], metrics: Metrics) -> None:
        self._backends = backends
        self._metrics = metrics
        self._settings = config.router
        self.groups: dict[str, list[Deployment]] = {}
        for dep in config.deployments:
            self.groups.setdefault(dep.model_name, []).append(dep)
        self._fallbacks = _rules(config.router.fallbacks)
        self._context_fallbacks = _rules(config.router.context_window_fallbacks)
        self._failures: dict[str, collections.deque[float]] = collections.defaultdict(
            collections.deque
        )
        self._cooldown_until: dict[str, float] = {}
        self._limited_until: dict[str, float] = {}

    def has_model(self, name: str) -> bool:
        return name in self.groups

    async def execute(
        self,
        model: str,
        ctx: RequestContext,
        op: Callable[[Backend, Deployment], Awaitable[T]],
    ) -> T:
        """Run `op` on a deployment of `model`, with retries and fallbacks; raise UpstreamError."""
        candidates = [model]
        last: UpstreamError | None = None
        i = 0
        while i < len(candidates):
            group = candidates[i]
            if i:
                if time.perf_counter() - ctx.start > self._settings.request_deadline:
                    break
                ctx.fallbacks += 1
                self._metrics.fallbacks.labels(model).inc()
            i += 1
            try:
                return await self._run_group(group, ctx, op)
            except UpstreamError as exc:
                last = exc
                if exc.kind is Kind.CONTEXT_LENGTH:
                    more = self._context_fallbacks.get(model, [])
                elif exc.kind in DEPLOYMENT_FAILURES:
                    more = self._fallbacks.get(model, [])
                else:
                    raise
                candidates += [g for g in more if g not in candidates]
        assert last is not None
        raise last

    async def _run_group(
        self,
        group: str,
        ctx: RequestContext,
        op: Callable[[Backend, Deployment], Awaitable[T]],
    ) -> T:
        dep = self._pick(group)
        retries = dep.max_retries
        attempt = 0
        while True:
            ctx.attempts += 1
            ctx.deployment = dep.id
            start = time.perf_counter()
            remaining = self._settings.request_deadline - (start - ctx.start)
            try:
                try:
                    async with asyncio.timeout(max(remaining, 0.0)):
                        result = await op(self._backends[dep.transport], dep)
                except TimeoutError:
                    raise UpstreamError(Kind.TIMEOUT) from None
            except asyncio.CancelledError:  # the client went away (or the service stops)
                elapsed = time.perf_counter() - start
                ctx.upstream_seconds += elapsed
                self._metrics.upstream(dep, "cancelled", elapsed)
                raise
            except UpstreamError as exc:
                elapsed = time.perf_counter() - start
                ctx.upstream_seconds += elapsed
                self._metrics.upstream(dep, exc.kind.value, elapsed)
                self._failed(dep, exc)
                if exc.kind not in RETRYABLE or attempt >= retries:
                    raise
                delay = self._retry_delay(group, dep, exc, attempt, ctx)
                if delay is None:
                    raise
                attempt += 1
                ctx.retries += 1
                self._metrics.retries.labels(dep.model_name).inc()
                if delay > 0:
                    await asyncio.sleep(delay)
                dep = self._pick(group)
                continue
            elapsed = time.perf_counter() - start
            ctx.upstream_seconds += elapsed
            self._metrics.upstream(dep, "ok", elapsed)
            return result

    def _retry_delay(
        self, group: str, dep: Deployment, exc: UpstreamError, attempt: int, ctx: RequestContext
    ) -> float | None:
        """How long to wait before retrying after `exc`; None: do not retry."""
        rs = self._settings
        cap = min(rs.retry_backoff_max, rs.retry_backoff_base * (2**attempt))
        delay = max(rs.retry_after, random.uniform(0, cap))  # noqa: S311  (jitter)
        provider_wait = float(exc.retry_after) if exc.retry_after else 0.0
        if exc.kind is Kind.RATE_LIMIT:
            now = time.monotonic()
            self._limited_until[dep.id] = now + (provider_wait or 1.0)
            if not any(self._available(d, now) for d in self.groups[group]):
                return None  # the only deployment(s) said "wait": the client is told so
        elif provider_wait:
            if provider_wait > rs.max_retry_after:
                return None
            delay = max(delay, provider_wait)
        if time.perf_counter() + delay - ctx.start > rs.request_deadline:
            return None
        return delay

    def _available(self, dep: Deployment, now: float) -> bool:
        return (
            self._cooldown_until.get(dep.id, 0.0) <= now
            and self._limited_until.get(dep.id, 0.0) <= now
        )

    def _pick(self, group: str) -> Deployment:
        deps = self.groups[group]
        if len(deps) == 1:
            return deps[0]
        now = time.monotonic()
        healthy = [d for d in deps if self._available(d, now)] or deps
        weights = [d.weight for d in healthy]
        return random.choices(healthy, weights)[0]  # noqa: S311  (load spreading, not security)

    def _failed(self, dep: Deployment, exc: UpstreamError) -> None:
        if exc.kind not in DEPLOYMENT_FAILURES or len(self.groups[dep.model_name]) < 2:
            return
        now = time.monotonic()
        window = self._failures[dep.id]
        window.append(now)
        while window and window[0] < now - FAILURE_WINDOW:
            window.popleft()
        if len(window) > self._settings.allowed_fails:
            self._cooldown_until[dep.id] = now + self._settings.cooldown_time
            window.clear()
            self._metrics.cooldowns.labels(dep.model_name).inc()


def _rules(rules: list[dict[str, list[str]]]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for rule in rules:
        for primary, backups in rule.items():
            out.setdefault(primary, []).extend(backups)
    return out
