"""Service settings, read from the environment (prefix ``LLM_API_``)."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class Settings(BaseSettings):
    """Process-level settings; the models and routing live in the YAML config (`config`)."""

    model_config = SettingsConfigDict(env_prefix="LLM_API_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    workers: int = Field(1, ge=1)
    log_level: Literal["critical", "error", "warning", "info", "debug"] = "info"
    config: Path | None = None
    """Path to the YAML config; unset means the embedded default (the demo model)."""
    max_body_bytes: int = Field(20 * 1024 * 1024, ge=1024)
    """Request body limit: 20 MiB fits a 15 MB image as base64 (or several photos). Kong must
    not set a lower one (its default, `nginx_http_client_max_body_size = 0`, sets none)."""
    heartbeat_seconds: float = Field(15.0, ge=0)
    """An SSE comment is sent when a stream has sent nothing for this long (0: never), so that
    idle timeouts in Kong or a load balancer do not cut a stream that waits for the model."""
    gateway_secret: SecretStr | None = None
    """When set, every /v1/* request must carry it in `gateway_secret_header`, and only then are
    Kong's `X-Consumer-*` headers believed. Required to listen on a non-loopback address."""
    allow_no_gateway_secret: bool = False
    """Serve on a non-loopback address without a gateway secret (a trusted network only)."""
    gateway_secret_header: str = "X-Gateway-Secret"  # noqa: S105  (a header name)
    upstream_max_connections: int = Field(1000, ge=1)
    """Connections the shared upstream HTTP pool may open, across all providers."""
    access_log: bool = True
    """One JSON line per request on stderr."""
    metrics_allow: Annotated[tuple[Network, ...], NoDecode] = ()
    """Client networks allowed to GET /metrics (comma-separated CIDRs); empty = anyone."""
    ssl_certfile: Path | None = None
    """PEM certificate (then its intermediates) to serve HTTPS with; unset = plain HTTP. Kong
    reaches llm_api over the network in TLS when the two are on different hosts."""
    ssl_keyfile: Path | None = None
    """The unencrypted PEM private key of `ssl_certfile` (both or neither)."""

    @field_validator("gateway_secret")
    @classmethod
    def _not_empty(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().strip():
            raise ValueError("must not be empty (unset it to run without a gateway secret)")
        return value

    @field_validator("metrics_allow", mode="before")
    @classmethod
    def _networks(cls, value: object) -> object:
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if isinstance(value, list | tuple):
            out = []
            for item in value:
                try:
                    out.append(ipaddress.ip_network(str(item), strict=False))
                except ValueError:
                    raise ValueError(f"{item!r} is not an IP address or CIDR network") from None
            return tuple(out)
        return value

    def exposure_error(self) -> str | None:
        """Why these settings must not serve (fail closed), or None.

        Listening beyond loopback without a gateway secret would let anyone on the network call
        the providers with the gateway's keys and claim any consumer's identity.
        """
        if self.gateway_secret is not None or self.allow_no_gateway_secret:
            return None
        if is_loopback(self.host):
            return None
        return (
            f"LLM_API_HOST={self.host} is not a loopback address and LLM_API_GATEWAY_SECRET is "
            "not set: set the gateway secret (Kong sends it), listen on 127.0.0.1, or set "
            "LLM_API_ALLOW_NO_GATEWAY_SECRET=true on a trusted network"
        )

    @model_validator(mode="after")
    def _tls_pair(self) -> Settings:
        if (self.ssl_certfile is None) != (self.ssl_keyfile is None):
            raise ValueError(
                "LLM_API_SSL_CERTFILE and LLM_API_SSL_KEYFILE go together (HTTPS needs both)"
            )
        return self

    @field_validator("log_level", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value


def is_loopback(host: str) -> bool:
    """True for `localhost` and loopback addresses; host names and wildcards are not."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
