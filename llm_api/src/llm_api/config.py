"""The YAML config: LiteLLM's `model_list` format plus `router_settings`, validated at start.

Every error names the bad field (``model_list[1].litellm_params.api_key: ...``), so a bad config
fails the start with a message an operator can act on.
"""

from __future__ import annotations

import os
import ssl
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, StrictInt, ValidationError, field_validator

from llm_api.resp import tls_context

ENV_PREFIX = "os.environ/"
# Providers whose wire format is OpenAI's chat completions: served by the native fast path.
OPENAI_COMPATIBLE = frozenset({"openai", "hosted_vllm", "openai_like"})
DEFAULT_OPENAI_BASE = "https://api.openai.com/v1"

# OpenAI chat request parameters (the ones passed on to LiteLLM, and the ones a deployment may
# set as defaults for every request).
OPENAI_CHAT_PARAMS = frozenset(
    {
        "messages",
        "frequency_penalty",
        "logit_bias",
        "logprobs",
        "top_logprobs",
        "max_tokens",
        "max_completion_tokens",
        "n",
        "presence_penalty",
        "response_format",
        "seed",
        "stop",
        "stream",
        "stream_options",
        "temperature",
        "top_p",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "user",
        "functions",
        "function_call",
        "reasoning_effort",
        "modalities",
        "audio",
        "prediction",
        "service_tier",
    }
)
# A deployment's request defaults (under the client's own parameters) on the native path.
NATIVE_REQUEST_OPTIONS = OPENAI_CHAT_PARAMS - {"messages", "stream", "stream_options"}
# Every extra `litellm_params` key the native path applies: request defaults, headers
# (`extra_headers`, `organization` as OpenAI-Organization), body fields (`extra_body`), and
# `drop_params` (LiteLLM's per-model rules drop what the model does not support).
NATIVE_OPTIONS = NATIVE_REQUEST_OPTIONS | {
    "extra_headers",
    "organization",
    "extra_body",
    "drop_params",
}
# Keys the router applies on every path (LiteLLM's simple-shuffle: `weight`, else `rpm`, else
# `tpm` is the deployment's share of its group); never passed to a provider.
ROUTING_OPTIONS = ("weight", "rpm", "tpm")


class ConfigError(Exception):
    """A config that cannot be served; the message names the file and the field."""


class LiteLLMParams(BaseModel):
    """A deployment's `litellm_params`; unknown keys are passed on to LiteLLM (translated path)."""

    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=3)
    api_base: str | None = None
    api_key: str | None = None
    timeout: float | None = Field(None, gt=0)
    stream_timeout: float | None = Field(None, gt=0)
    max_retries: int | None = Field(None, ge=0, le=10)
    mock_response: str | None = None

    @field_validator("api_base")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is None:
            return value
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("must be an http:// or https:// URL")
        return value.rstrip("/")


class ModelEntry(BaseModel):
    """One `model_list` entry: a deployment of the model group `model_name`."""

    model_config = ConfigDict(extra="forbid")

    model_name: str = Field(min_length=1)
    litellm_params: LiteLLMParams
    model_info: dict[str, Any] = Field(default_factory=dict)
    transport: Literal["auto", "native", "litellm"] = "auto"
    """llm_api's addition: `native` (OpenAI-compatible fast path), `litellm` (LiteLLM's
    translation) or `auto` (native for OpenAI-compatible providers, LiteLLM otherwise)."""


class RouterSettings(BaseModel):
    """Retries, timeouts, fallbacks and cooldowns, the same on every path."""

    model_config = ConfigDict(extra="forbid")

    num_retries: int = Field(0, ge=0, le=10)
    timeout: float = Field(60.0, gt=0)
    stream_timeout: float | None = Field(None, gt=0)
    retry_after: float = Field(0.0, ge=0, le=60)
    """The least wait before a retry (LiteLLM's setting)."""
    retry_backoff_base: float = Field(0.25, ge=0, le=60)
    """llm_api: the first retry waits up to this, each next one up to twice as long (with
    random jitter, capped by `retry_backoff_max`)."""
    retry_backoff_max: float = Field(8.0, ge=0, le=300)
    max_retry_after: float = Field(30.0, ge=0, le=3600)
    """llm_api: a provider's Retry-After up to this is waited before retrying the deployment;
    a longer one ends the retries (the client gets it)."""
    request_deadline: float = Field(300.0, gt=0)
    """llm_api: no retry or fallback starts once it would end after this many seconds from
    the request's arrival."""
    allowed_fails: int = Field(3, ge=0)
    cooldown_time: float = Field(5.0, ge=0)
    fallbacks: list[dict[str, list[str]]] = Field(default_factory=list)
    context_window_fallbacks: list[dict[str, list[str]]] = Field(default_factory=list)
    routing_strategy: Literal["simple-shuffle"] = "simple-shuffle"


PositiveInt = Annotated[StrictInt, Field(gt=0)]


class TokenLimits(BaseModel):
    """Token budgets of one consumer: per UTC minute and per UTC day (unset = no limit)."""

    model_config = ConfigDict(extra="forbid")

    tokens_per_minute: PositiveInt | None = None
    tokens_per_day: PositiveInt | None = None


class ConsumerQuota(TokenLimits):
    name: str = Field(min_length=1, max_length=200)


class QuotasSection(BaseModel):
    """`quotas`: token budgets per consumer, kept in Redis, and usage accounting."""

    model_config = ConfigDict(extra="forbid")

    redis_url: str = Field(min_length=1)
    redis_ca_file: str | None = Field(None, min_length=1)
    on_redis_error: Literal["allow", "deny"] = "allow"
    default: TokenLimits = Field(default_factory=lambda: TokenLimits())
    consumers: list[ConsumerQuota] = Field(default_factory=list)
    default_max_tokens: PositiveInt = 4096
    redis_timeout: float = Field(0.5, gt=0, le=10)
    key_prefix: str = Field("llm_api", min_length=1, pattern=r"^[A-Za-z0-9_.:-]+$")
    usage_retention_days: PositiveInt = 400
    lease_share: float = Field(1 / 16, ge=0, le=0.5)


class ConfigFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model_list: list[ModelEntry] = Field(min_length=1)
    router_settings: RouterSettings = Field(default_factory=lambda: RouterSettings())
    consumers: list[Annotated[str, Field(min_length=1, max_length=200)]] = Field(
        default_factory=list
    )
    quotas: QuotasSection | None = None


@dataclass(frozen=True)
class QuotaConfig:
    """The resolved `quotas` section (redis_url read from the environment when referenced)."""

    redis_url: str = field(repr=False)
    on_redis_error: Literal["allow", "deny"]
    default: TokenLimits
    consumers: dict[str, TokenLimits]
    default_max_tokens: int
    redis_timeout: float
    key_prefix: str
    usage_retention_days: int
    redis_ca_file: str | None = None
    """For rediss://: the CA certificates (PEM) Redis's certificate is verified against."""
    lease_share: float = 1 / 16
    """The share of a window's remaining tokens a replica may hold as a lease (0: none)."""

    def limits(self, consumer: str) -> TokenLimits:
        return self.consumers.get(consumer, self.default)


@dataclass(frozen=True)
class Deployment:
    """A resolved deployment: what each backend needs to call one upstream model."""

    id: str
    model_name: str
    transport: Literal["native", "litellm", "mock"]
    provider: str
    litellm_model: str
    upstream_model: str
    api_base: str | None
    api_key: str | None = field(repr=False)
    timeout: float
    stream_timeout: float
    max_retries: int
    mock_response: str | None
    extra_params: dict[str, Any] = field(default_factory=dict, repr=False)
    model_info: dict[str, Any] = field(default_factory=dict, repr=False)
    weight: float = 1.0
    """The deployment's share of its group's requests (relative to the others')."""
    param_rules: bool = False
    """LiteLLM's per-model parameter rules apply (native OpenAI o-series and gpt-5 models)."""


@dataclass(frozen=True)
class Config:
    deployments: tuple[Deployment, ...]
    router: RouterSettings
    source: str
    consumers: tuple[str, ...] = ()
    """Consumer names that get a `consumer` label value of their own (the rest: `other`)."""
    quotas: QuotaConfig | None = None

    @property
    def model_names(self) -> list[str]:
        """Model groups in config order, without duplicates."""
        return list(dict.fromkeys(d.model_name for d in self.deployments))

    @property
    def needs_litellm(self) -> bool:
        return any(d.transport == "litellm" or d.param_rules for d in self.deployments)

    @property
    def secrets(self) -> list[str]:
        out = [d.api_key for d in self.deployments if d.api_key]
        if self.quotas is not None:
            password = urlsplit(self.quotas.redis_url).password
            out += [password] if password else []
        return out


def _loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _resolve_secret(value: str | None, where: str, env: dict[str, str]) -> str | None:
    if value is None or not value.startswith(ENV_PREFIX):
        return value
    name = value[len(ENV_PREFIX) :]
    if not name:
        raise ConfigError(f"{where}: empty environment variable name in {value!r}")
    if not env.get(name):
        raise ConfigError(f"{where}: environment variable {name} is not set")
    return env[name]


def has_param_rules(model: str) -> bool:
    """Whether LiteLLM has parameter rules for this OpenAI model: the name checks LiteLLM's
    `ProviderConfigManager.get_provider_chat_config` makes first (o-series: "o" and a digit;
    gpt-5/gpt-6 reasoning series, not gpt-5-chat), so LiteLLM is imported only for those."""
    name = model.rsplit("/", 1)[-1]
    if len(name) > 1 and name[0] == "o" and name[1].isdigit():
        return True
    return ("gpt-5" in model or "gpt-6" in model) and "gpt-5-chat" not in name


def _weight(extra: dict[str, Any], where: str, source: str) -> float:
    """Take the routing keys out of `extra`; the deployment's weight (LiteLLM's order)."""
    found = {key: extra.pop(key) for key in ROUTING_OPTIONS if key in extra}
    for key in ROUTING_OPTIONS:
        if key in found:
            value = found[key]
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise ConfigError(f"{source}: {where}.{key}: must be a number greater than 0")
            return float(value)
    return 1.0


def _check_native_options(extra: dict[str, Any], where: str, source: str, transport: str) -> None:
    """Reject every option the native (or mock) path would not apply, naming the key."""
    allowed = NATIVE_OPTIONS if transport == "native" else frozenset()
    for key, value in extra.items():
        if key not in allowed:
            raise ConfigError(
                f"{source}: {where}.{key}: not applied on the {transport} path; "
                + (
                    "set `transport: litellm` for LiteLLM's options"
                    if transport == "native"
                    else "a mock_response deployment takes no other option"
                )
            )
        if key in ("extra_headers", "extra_body") and not isinstance(value, dict):
            raise ConfigError(f"{source}: {where}.{key}: must be a mapping")
        if key == "extra_headers" and not all(
            isinstance(v, str | int | float) and not isinstance(v, bool) for v in value.values()
        ):
            raise ConfigError(f"{source}: {where}.{key}: header values must be strings")
        if key == "organization" and not isinstance(value, str):
            raise ConfigError(f"{source}: {where}.{key}: must be a string")


def parse_config(data: object, source: str, env: dict[str, str] | None = None) -> Config:
    """Validate parsed YAML and resolve it into deployments; raise ConfigError naming the field."""
    env = dict(os.environ) if env is None else env
    try:
        raw = ConfigFile.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = _loc(first["loc"]) or "(top level)"
        raise ConfigError(f"{source}: {where}: {first['msg']}") from None
    rs = raw.router_settings
    deployments = []
    for i, entry in enumerate(raw.model_list):
        p = entry.litellm_params
        where = f"model_list[{i}].litellm_params"
        provider, _, upstream_model = p.model.partition("/")
        if not upstream_model:
            provider, upstream_model = "openai", p.model
        transport: Literal["native", "litellm", "mock"]
        if p.mock_response is not None and entry.transport != "litellm":
            transport = "mock"
        elif entry.transport == "litellm":
            transport = "litellm"
        elif provider in OPENAI_COMPATIBLE:
            transport = "native"
        elif entry.transport == "native":
            raise ConfigError(
                f"{source}: model_list[{i}].transport: 'native' needs an OpenAI-compatible "
                f"provider ({', '.join(sorted(OPENAI_COMPATIBLE))}), not {provider!r}"
            )
        else:
            transport = "litellm"
        api_base = p.api_base
        if transport == "native" and api_base is None:
            if provider != "openai":
                raise ConfigError(f"{source}: {where}.api_base: required for {provider!r}")
            api_base = DEFAULT_OPENAI_BASE
        timeout = p.timeout or rs.timeout
        extra = dict(p.model_extra or {})
        weight = _weight(extra, where, source)
        if transport in ("native", "mock"):
            _check_native_options(extra, where, source, transport)
        deployments.append(
            Deployment(
                id=f"{entry.model_name}#{i}",
                model_name=entry.model_name,
                transport=transport,
                provider=provider,
                litellm_model=p.model,
                upstream_model=upstream_model,
                api_base=api_base,
                api_key=_resolve_secret(p.api_key, f"{source}: {where}.api_key", env),
                timeout=timeout,
                stream_timeout=p.stream_timeout or rs.stream_timeout or timeout,
                max_retries=rs.num_retries if p.max_retries is None else p.max_retries,
                mock_response=p.mock_response,
                model_info=entry.model_info,
                extra_params=extra,
                weight=weight,
                param_rules=transport == "native"
                and provider == "openai"
                and has_param_rules(upstream_model),
            )
        )
    names = {d.model_name for d in deployments}
    for key in ("fallbacks", "context_window_fallbacks"):
        for j, rule in enumerate(getattr(rs, key)):
            for primary, backups in rule.items():
                for name in [primary, *backups]:
                    if name not in names:
                        raise ConfigError(
                            f"{source}: router_settings.{key}[{j}]: unknown model {name!r}"
                        )
    quotas = _quotas(raw.quotas, source, env)
    consumers = list(dict.fromkeys(raw.consumers))
    if quotas is not None:
        consumers += [c for c in quotas.consumers if c not in consumers]
    return Config(
        deployments=tuple(deployments),
        router=rs,
        source=source,
        consumers=tuple(consumers),
        quotas=quotas,
    )


def _quotas(raw: QuotasSection | None, source: str, env: dict[str, str]) -> QuotaConfig | None:
    if raw is None:
        return None
    url = _resolve_secret(raw.redis_url, f"{source}: quotas.redis_url", env) or ""
    # The URL holds the Redis password: errors name the field, never the value.
    try:
        parts = urlsplit(url)
        has_host = bool(parts.hostname)
    except ValueError:
        raise ConfigError(f"{source}: quotas.redis_url: not a valid URL") from None
    if parts.scheme in ("redis", "rediss"):
        if not has_host:
            raise ConfigError(f"{source}: quotas.redis_url: the URL has no host")
    elif parts.scheme == "unix":
        if not parts.path:
            raise ConfigError(f"{source}: quotas.redis_url: the unix:// URL has no socket path")
    else:
        raise ConfigError(
            f"{source}: quotas.redis_url: must be a redis://, rediss:// or unix:// URL"
        )
    if raw.redis_ca_file is not None:
        _check_ca_file(raw.redis_ca_file, parts.scheme, source)
    consumers: dict[str, TokenLimits] = {}
    first: dict[str, int] = {}
    for i, c in enumerate(raw.consumers):
        if c.name in first:
            raise ConfigError(
                f"{source}: quotas.consumers[{i}].name: consumer {c.name!r} is listed twice "
                f"(also quotas.consumers[{first[c.name]}])"
            )
        first[c.name] = i
        consumers[c.name] = TokenLimits(
            tokens_per_minute=c.tokens_per_minute, tokens_per_day=c.tokens_per_day
        )
    return QuotaConfig(
        redis_url=url,
        on_redis_error=raw.on_redis_error,
        default=raw.default,
        consumers=consumers,
        default_max_tokens=raw.default_max_tokens,
        redis_timeout=raw.redis_timeout,
        key_prefix=raw.key_prefix,
        usage_retention_days=raw.usage_retention_days,
        redis_ca_file=raw.redis_ca_file,
        lease_share=raw.lease_share,
    )


def _check_ca_file(path: str, scheme: str, source: str) -> None:
    """`quotas.redis_ca_file` is for a TLS URL and holds PEM certificates that OpenSSL loads: a
    mistake stops the start here rather than failing every quota check later."""
    where = f"{source}: quotas.redis_ca_file"
    if scheme != "rediss":
        raise ConfigError(f"{where}: only a rediss:// (TLS) quotas.redis_url uses a CA file")
    try:
        with open(path, encoding="ascii") as fh:
            text = fh.read()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not a text file"
        raise ConfigError(f"{where}: cannot read {path}: {reason}") from None
    if "-----BEGIN CERTIFICATE-----" not in text:
        raise ConfigError(f"{where}: {path} holds no PEM certificate (-----BEGIN CERTIFICATE-----)")
    try:
        tls_context(path)
    except ssl.SSLError as exc:
        raise ConfigError(f"{where}: {path} is not a valid PEM CA certificate: {exc}") from None


def load_config(path: Path | None, env: dict[str, str] | None = None) -> Config:
    """Load `path`, or the embedded default (the demo model) when it is None."""
    if path is None:
        text = resources.files("llm_api").joinpath("default_config.yaml").read_text()
        source = "embedded default config"
    else:
        source = str(path)
        try:
            text = Path(path).read_text()
        except OSError as exc:
            raise ConfigError(f"{source}: cannot read the config: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{source}: invalid YAML{at}") from None
    return parse_config(data, source, env)
