"""Per-request context, Prometheus metrics and JSON logs (one line per request)."""

from __future__ import annotations

import logging
import os
import time
import traceback
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from prometheus_client import CollectorRegistry, Counter, Histogram, multiprocess

from llm_api.config import Deployment

ACCESS_LOGGER = "llm_api.access"
# Libraries whose log records carry provider URLs, request options or headers, at any level.
QUIET_LOGGERS = (
    "LiteLLM",
    "LiteLLM Router",
    "LiteLLM Proxy",
    "litellm",
    "openai",
    "anthropic",
    "httpx",
    "httpcore",
    "aiohttp",
    "urllib3",
    "botocore",
    "huggingface_hub",
)
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


@dataclass
class RequestContext:
    """What one request did; filled as it goes, logged and counted once at its end."""

    request_id: str
    consumer: str
    consumer_id: str | None
    endpoint: str
    start: float = field(default_factory=time.perf_counter)
    model: str | None = None
    status: int = 0
    error_code: str | None = None
    stream: bool = False
    deployment: str | None = None
    attempts: int = 0
    retries: int = 0
    fallbacks: int = 0
    upstream_seconds: float = 0.0
    tokens_in: int | None = None
    tokens_out: int | None = None
    usage_reported: bool = False
    """tokens_in/out are the provider's counts (not llm_api's count of a stream cut short)."""
    consumer_label: str = "anonymous"
    """`consumer` as a metric label: a configured consumer, `anonymous` or `other`."""
    cost: float | None = None
    reservation: Any = None
    """The request's token quota reservation (quotas.Reservation), settled at its end."""
    rate_headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    first_chunk: float | None = None
    """Streams: perf_counter() when the first chunk went to the client."""
    upstream_request_id: str | None = None
    """The provider's id for the request (its `x-request-id` or `request-id` header)."""

    def log_fields(self, latency: float) -> dict[str, Any]:
        return {
            "request_id": self.request_id,
            "consumer": self.consumer,
            "consumer_id": self.consumer_id,
            "endpoint": self.endpoint,
            "model": self.model,
            "status": self.status,
            "error": self.error_code,
            "stream": self.stream,
            "deployment": self.deployment,
            "attempts": self.attempts,
            "retries": self.retries,
            "fallbacks": self.fallbacks,
            "latency_ms": round(latency * 1000, 2),
            "upstream_latency_ms": round(self.upstream_seconds * 1000, 2),
            "tokens_in": self.tokens_in,
            "tokens_out": self.tokens_out,
            "cost_usd": self.cost,
            "upstream_request_id": self.upstream_request_id,
        }


CURRENT_REQUEST: ContextVar[RequestContext | None] = ContextVar("llm_api_request", default=None)
"""The request being served (set by the middleware): lets a backend record the provider's
request id and send ours without threading the context through every call."""
UPSTREAM_REQUEST_ID_HEADERS = ("x-request-id", "request-id")  # OpenAI/vLLM, Anthropic
MAX_UPSTREAM_ID = 200


def note_upstream_request_id(headers: Any) -> None:
    """Record the provider's request id from its response headers on the current request."""
    ctx = CURRENT_REQUEST.get()
    if ctx is None:
        return
    for name in UPSTREAM_REQUEST_ID_HEADERS:
        value = headers.get(name)
        if value:
            text = str(value)[:MAX_UPSTREAM_ID]
            if text.isascii() and text.isprintable():
                ctx.upstream_request_id = text
            return


def multiprocess_dir() -> str | None:
    """prometheus_client's multiprocess directory when several workers share /metrics."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


class Metrics:
    """The service's Prometheus metrics, on a registry of their own (one per app)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        # With several workers (PROMETHEUS_MULTIPROC_DIR set by the `llm-api` command) every
        # worker writes its values to files there and a scrape adds up every worker's.
        self.multiprocess = multiprocess_dir() is not None
        r = self.registry
        self.requests = Counter(
            "llm_api_requests",
            "Requests by endpoint, model, HTTP status and consumer.",
            ["endpoint", "model", "status", "consumer"],
            registry=r,
        )
        self.latency = Histogram(
            "llm_api_request_duration_seconds",
            "Time to the end of the response (the whole stream for streams).",
            ["endpoint", "model"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.upstream_latency = Histogram(
            "llm_api_upstream_duration_seconds",
            "Upstream call time per attempt (to the first byte for streams), by outcome.",
            ["model", "provider", "outcome"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.tokens = Counter(
            "llm_api_tokens",
            "Tokens in (prompt) and out (completion), as the provider reported them.",
            ["model", "consumer", "direction"],
            registry=r,
        )
        self.errors = Counter(
            "llm_api_errors",
            "Error responses (and errors ending a stream) by error code.",
            ["endpoint", "model", "type"],
            registry=r,
        )
        self.retries = Counter(
            "llm_api_upstream_retries", "Upstream retries.", ["model"], registry=r
        )
        self.fallbacks = Counter(
            "llm_api_fallbacks", "Fallbacks to another model group.", ["model"], registry=r
        )
        self.ttft = Histogram(
            "llm_api_time_to_first_token_seconds",
            "Streams: time from the request to the first content chunk sent to the client.",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.cost = Counter(
            "llm_api_cost_usd",
            "Cost in USD of the answered requests (LiteLLM's cost map), where the price is known.",
            ["model", "consumer"],
            registry=r,
        )
        self.cost_unknown = Counter(
            "llm_api_cost_unknown_requests",
            "Answered requests whose cost is unknown (no price for the deployment's model).",
            ["model", "consumer"],
            registry=r,
        )
        self._children: dict[tuple[str, str, int, str], tuple[Any, Any]] = {}
        self.cooldowns = Counter(
            "llm_api_deployment_cooldowns", "Deployments put in cooldown.", ["model"], registry=r
        )

    def scrape_registry(self) -> CollectorRegistry:
        """The registry a scrape reads: this process's, or every worker's in multiprocess mode."""
        if not self.multiprocess:
            return self.registry
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return registry

    def upstream(self, dep: Deployment, outcome: str, seconds: float) -> None:
        self.upstream_latency.labels(dep.model_name, dep.provider, outcome).observe(seconds)

    def finish(self, ctx: RequestContext, model_label: str, latency: float) -> None:
        consumer = ctx.consumer_label
        key = (ctx.endpoint, model_label, ctx.status, consumer)
        children = self._children.get(key)
        if children is None:  # labels() costs a lock and a lookup; cache the children
            children = (
                self.requests.labels(ctx.endpoint, model_label, str(ctx.status), consumer),
                self.latency.labels(ctx.endpoint, model_label),
            )
            self._children[key] = children
        children[0].inc()
        children[1].observe(latency)
        if ctx.first_chunk is not None:
            self.ttft.labels(model_label).observe(ctx.first_chunk - ctx.start)
        if ctx.error_code:
            self.errors.labels(ctx.endpoint, model_label, ctx.error_code).inc()
        if ctx.tokens_in:
            self.tokens.labels(model_label, consumer, "in").inc(ctx.tokens_in)
        if ctx.tokens_out:
            self.tokens.labels(model_label, consumer, "out").inc(ctx.tokens_out)
        if ctx.status == 200 and (ctx.tokens_in is not None or ctx.tokens_out is not None):
            if ctx.cost is None:
                self.cost_unknown.labels(model_label, consumer).inc()
            else:
                self.cost.labels(model_label, consumer).inc(ctx.cost)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg, plus a record's `fields`."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            out.update(fields)
        # Tracebacks are never logged: they can carry provider URLs, keys and class names.
        return orjson.dumps(out, default=str).decode()


class Redactor(logging.Filter):
    """Replaces known secrets (provider keys, the gateway secret) in every record it sees."""

    def __init__(self, secrets: list[str]) -> None:
        super().__init__()
        self.secrets = [s for s in secrets if len(s) >= 4]

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.secrets:
            return True
        msg = record.getMessage()
        fields = getattr(record, "fields", None)
        text = [msg]
        if isinstance(fields, dict):
            text += [v for v in fields.values() if isinstance(v, str)]
        if any(s in t for s in self.secrets for t in text):
            for s in self.secrets:
                msg = msg.replace(s, "[REDACTED]")
            record.msg, record.args = msg, None
            if isinstance(fields, dict):
                record.fields = {
                    k: _redact(v, self.secrets) if isinstance(v, str) else v
                    for k, v in fields.items()
                }
        record.exc_info = record.exc_text = None
        return True


def exception_fields(exc: BaseException, secrets: list[str]) -> dict[str, str]:
    """An unexpected exception for a log line: its type and its traceback, redacted (provider
    URLs, hosts, keys and ids removed as from a provider's message, and the known secrets)."""
    from llm_api.errors import redact

    text = "".join(traceback.format_exception(exc))
    return {
        "exc_type": f"{type(exc).__module__}.{type(exc).__qualname__}",
        "traceback": redact(text, secrets, limit=20000),
    }


def _redact(value: str, secrets: list[str]) -> str:
    for s in secrets:
        value = value.replace(s, "[REDACTED]")
    return value


def quiet_libraries() -> None:
    """Silence the HTTP and provider libraries' loggers (see QUIET_LOGGERS)."""
    for name in QUIET_LOGGERS:
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.setLevel(logging.CRITICAL + 1)
        logger.propagate = False


def logging_config(level: str) -> dict[str, Any]:
    """dictConfig for the service and uvicorn: JSON lines on stderr, no uvicorn access log."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": JsonFormatter}},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "json",
                "stream": "ext://sys.stderr",
            }
        },
        "root": {"handlers": ["stderr"], "level": level.upper()},
        "loggers": {
            "uvicorn": {"level": level.upper()},
            "uvicorn.error": {"level": level.upper()},
            "uvicorn.access": {"level": "CRITICAL", "propagate": False},
        },
    }
