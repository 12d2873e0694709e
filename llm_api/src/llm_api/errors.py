"""Every error the service returns, in OpenAI's shape; the one place mapping upstream failures.

Upstream failures are classified by HTTP status and exception class, never by message text, and
the messages we return are our own: a provider's message may name its host, our key or the
internals, so it never reaches the client or the logs.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import orjson


class Kind(enum.Enum):
    """What went wrong upstream; decides the client status, retries, fallbacks and cooldowns."""

    AUTH = "upstream_auth_failed"
    RATE_LIMIT = "rate_limit_exceeded"
    TIMEOUT = "upstream_timeout"
    CONNECTION = "upstream_unreachable"
    SERVER = "upstream_error"
    CONTEXT_LENGTH = "context_length_exceeded"
    BAD_REQUEST = "upstream_bad_request"


RETRYABLE = frozenset({Kind.RATE_LIMIT, Kind.TIMEOUT, Kind.CONNECTION, Kind.SERVER})
# Failures that say "this deployment is unhealthy" (counted for cooldowns, worth a fallback).
DEPLOYMENT_FAILURES = RETRYABLE | {Kind.AUTH}

_UPSTREAM = {
    Kind.AUTH: (502, "upstream_error", "The upstream provider rejected the gateway's credentials."),
    Kind.RATE_LIMIT: (429, "rate_limit_error", "The upstream provider is rate limiting requests."),
    Kind.TIMEOUT: (504, "upstream_error", "The upstream provider did not answer in time."),
    Kind.CONNECTION: (502, "upstream_error", "The upstream provider could not be reached."),
    Kind.SERVER: (502, "upstream_error", "The upstream provider failed to answer."),
    Kind.CONTEXT_LENGTH: (
        400,
        "invalid_request_error",
        "The messages exceed the model's context length.",
    ),
    Kind.BAD_REQUEST: (400, "invalid_request_error", "The upstream provider rejected the request."),
}


class ApiError(Exception):
    """An error response: HTTP status plus OpenAI's {message, type, param, code}."""

    def __init__(
        self,
        status: int,
        message: str,
        etype: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.etype = etype
        self.code = code
        self.param = param
        self.headers = headers or {}

    def body(self) -> dict[str, object]:
        return {
            "error": {
                "message": self.message,
                "type": self.etype,
                "param": self.param,
                "code": self.code,
            }
        }

    def json(self) -> bytes:
        return orjson.dumps(self.body())


def bad_request(message: str, param: str | None, code: str = "invalid_value") -> ApiError:
    return ApiError(400, message, "invalid_request_error", code, param)


def model_not_found(model: str) -> ApiError:
    return ApiError(
        404,
        f"The model {model!r} does not exist.",
        "invalid_request_error",
        "model_not_found",
        "model",
    )


def internal_error(request_id: str) -> ApiError:
    return ApiError(
        500, f"Internal error (request id {request_id}).", "server_error", "internal_error"
    )


@dataclass
class UpstreamError(Exception):
    """A classified upstream failure (raised by every backend, handled by the router)."""

    kind: Kind
    retry_after: str | None = None
    param: str | None = None

    def to_api_error(self) -> ApiError:
        status, etype, message = _UPSTREAM[self.kind]
        headers = {}
        if self.kind is Kind.RATE_LIMIT:
            headers["Retry-After"] = self.retry_after or "1"
        param = self.param if self.kind in (Kind.BAD_REQUEST, Kind.CONTEXT_LENGTH) else None
        return ApiError(status, message, etype, self.kind.value, param, headers)


def _safe_param(value: object) -> str | None:
    # Only a short identifier-like param name from the provider; anything else is dropped.
    if isinstance(value, str) and len(value) <= 64 and value.replace("_", "").isalnum():
        return value
    return None


def classify_status(
    status: int, body: bytes = b"", retry_after: str | None = None
) -> UpstreamError:
    """Classify an upstream HTTP error status (OpenAI- or Anthropic-shaped body)."""
    if status in (401, 403):
        return UpstreamError(Kind.AUTH)
    if status == 429:
        return UpstreamError(Kind.RATE_LIMIT, retry_after=_retry_after(retry_after))
    if status == 408:
        return UpstreamError(Kind.TIMEOUT)
    if status >= 500 or status == 404:
        # A 404 means the deployment points at a model or path the provider does not have:
        # the gateway's configuration is wrong, not the client's request.
        return UpstreamError(Kind.SERVER)
    code = param = None
    try:
        err = orjson.loads(body).get("error")
        if isinstance(err, dict):
            code, param = err.get("code"), err.get("param")
    except (orjson.JSONDecodeError, AttributeError):
        pass
    if code == "context_length_exceeded":
        return UpstreamError(Kind.CONTEXT_LENGTH, param=_safe_param(param) or "messages")
    return UpstreamError(Kind.BAD_REQUEST, param=_safe_param(param))


def _retry_after(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        return None
    return str(max(1, int(seconds + 0.999))) if seconds >= 0 else None
