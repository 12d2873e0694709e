"""Service settings, read from the environment (prefix ``LLM_API_``)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


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
    """When set, every /v1/* request must carry it in `gateway_secret_header`."""
    gateway_secret_header: str = "X-Gateway-Secret"  # noqa: S105  (a header name)
    upstream_max_connections: int = Field(1000, ge=1)
    """Connections the shared upstream HTTP pool may open, across all providers."""
    access_log: bool = True
    """One JSON line per request on stderr."""

    @field_validator("log_level", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value
