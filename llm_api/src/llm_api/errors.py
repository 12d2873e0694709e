"""Every error the service returns, in OpenAI's shape; the one place mapping upstream failures.

Upstream failures are classified by HTTP status and exception class, never by message text.
The messages we return are our own, except for a provider's refusal of the request itself
(400/422, context length): its message says which parameter or content was refused, so it is
passed on after `redact` has removed every URL, host, key, account and organisation id (and the
deployment keys llm_api knows). 401/403, 429, 5xx and transport failures stay generic.
"""

from __future__ import annotations

import email.utils
import enum
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

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


# What a provider's message may carry that a client must not see. Hosts are matched only with
# a known top-level domain: OpenAI's messages name parameters such as `tools[0].function.name`.
_TLDS = (
    "com|net|org|io|ai|dev|app|cloud|co|us|eu|de|fr|uk|jp|cn|in|info|biz|xyz|tech|site|"
    "internal|local|localhost|lan|corp|home|svc|example|invalid|test|azure|aws|gcp"
)
_REDACTIONS = (
    (re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"<>()\[\]{}]+"), "[url]"),
    (re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b"), "[redacted]"),
    (re.compile(r"(?i)\bbearer\s+\S+"), "Bearer [redacted]"),
    # Keys and ids by their providers' prefixes: sk-..., sk-ant-..., sk-proj-..., AKIA...,
    # org-..., proj_..., acct_..., user-..., and any long mixed token.
    (re.compile(r"\b(?:sk|pk|rk|ak|key|api[-_]?key)[-_][A-Za-z0-9_-]{6,}"), "[redacted]"),
    (re.compile(r"\b(?:AKIA|ASIA)[A-Z0-9]{12,}\b"), "[redacted]"),
    (
        re.compile(
            r"(?i)\b(?:org|organization|proj|project|acct|account|user|tenant)[-_][A-Za-z0-9]{4,}"
        ),
        "[redacted]",
    ),
    (
        re.compile(r"\b(?=[A-Za-z0-9_-]*\d)(?=[A-Za-z0-9_-]*[A-Za-z])[A-Za-z0-9_-]{24,}\b"),
        "[redacted]",
    ),
    (re.compile(r"\b\d{1,3}(?:\.\d{1,3}){3}(?::\d+)?\b"), "[host]"),
    (re.compile(r"(?i)\b(?:[a-z0-9-]+\.)+(?:" + _TLDS + r")\b(?::\d+)?"), "[host]"),
    (re.compile(r"\blocalhost(?::\d+)?\b"), "[host]"),
    (re.compile(r"\b\d{8,}\b"), "[redacted]"),  # account numbers (AWS: 12 digits)
)
MAX_MESSAGE = 1000


def redact(text: str, secrets: Iterable[str] = (), limit: int = MAX_MESSAGE) -> str:
    """`text` without URLs, hosts, keys, account or organisation ids, and without `secrets`."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "[redacted]")
    for pattern, replacement in _REDACTIONS:
        text = pattern.sub(replacement, text)
    return text[:limit]


@dataclass
class UpstreamError(Exception):
    """A classified upstream failure (raised by every backend, handled by the router).

    `message` and `code` are the provider's (already redacted) for a refused request only;
    `retry_after` is the provider's wait in whole seconds (a string, as the header carries it).
    """

    kind: Kind
    retry_after: str | None = None
    param: str | None = None
    message: str | None = None
    code: str | None = None

    def to_api_error(self, secrets: Iterable[str] = ()) -> ApiError:
        status, etype, message = _UPSTREAM[self.kind]
        headers = {}
        if self.kind is Kind.RATE_LIMIT:
            headers["Retry-After"] = self.retry_after or "1"
        code = self.kind.value
        param = None
        if self.kind in (Kind.BAD_REQUEST, Kind.CONTEXT_LENGTH):
            param = self.param
            if self.message:
                message = "The upstream provider rejected the request: " + redact(
                    self.message, secrets
                )
            if self.kind is Kind.BAD_REQUEST and self.code:
                code = self.code
        return ApiError(status, message, etype, code, param, headers)


def _safe_param(value: object) -> str | None:
    # Only a short parameter path from the provider (`messages[0].content`); else dropped.
    if isinstance(value, str) and 0 < len(value) <= 128 and _PARAM.fullmatch(value):
        return value
    return None


_PARAM = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\[\d+\]|\.[A-Za-z_][A-Za-z0-9_]*)*")
_CODE = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,63}")


def provider_error(body: bytes | str) -> tuple[str | None, str | None, str | None]:
    """(message, code, param) from a provider's error body, OpenAI's shape
    `{"error": {"message", "code", "param"}}` or Anthropic's `{"type": "error", "error":
    {"type", "message"}}`; the message redacted (URLs, hosts, keys, ids), code and param only
    when they are plain identifiers."""
    try:
        obj = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None, None, None
    err = obj.get("error") if isinstance(obj, dict) else None
    if isinstance(err, str):
        return redact(err), None, None
    if not isinstance(err, dict):
        msg = obj.get("message") if isinstance(obj, dict) else None
        return (redact(msg) if isinstance(msg, str) and msg else None), None, None
    msg, code, param = err.get("message"), err.get("code"), err.get("param")
    message = redact(msg) if isinstance(msg, str) and msg.strip() else None
    code_s = code if isinstance(code, str) and _CODE.fullmatch(code) else None
    return message, code_s, _safe_param(param)


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
        return UpstreamError(Kind.SERVER, retry_after=_retry_after(retry_after))
    message, code, param = provider_error(body)
    if code == "context_length_exceeded":
        return UpstreamError(Kind.CONTEXT_LENGTH, param=param or "messages", message=message)
    return UpstreamError(Kind.BAD_REQUEST, param=param, message=message, code=code)


def _retry_after(value: str | None) -> str | None:
    """A Retry-After header (seconds or an HTTP date) as whole seconds, at least 1."""
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            return None
        seconds = (when - datetime.now(UTC)).total_seconds()
        seconds = max(seconds, 0)
    if seconds != seconds or seconds < 0 or seconds > 86400:  # NaN, negative, absurd
        return None
    return str(max(1, int(seconds + 0.999)))
