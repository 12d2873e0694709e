"""The `llm-api` command: validate the config, then serve it with uvicorn."""

from __future__ import annotations

import importlib.util
import logging
import logging.config
import os
import shutil
import sys
import tempfile

import uvicorn
from pydantic import ValidationError

from llm_api.config import ConfigError, load_config
from llm_api.observability import logging_config
from llm_api.settings import Settings

log = logging.getLogger("llm_api")

# Longer than Kong's upstream keepalive_timeout (60 s): Kong, not us, closes idle connections,
# so Kong never sends a request on a connection we are closing.
KEEP_ALIVE_SECONDS = 65


def _settings() -> Settings:
    try:
        return Settings()
    except ValidationError as exc:
        first = exc.errors()[0]
        name = "LLM_API_" + ".".join(str(p) for p in first["loc"]).upper()
        where = f" {name}" if first["loc"] else "s"
        sys.stderr.write(f"llm-api: invalid setting{where}: {first['msg']}\n")
        sys.exit(2)


def main(argv: list[str] | None = None) -> None:
    """`llm-api` serves; `llm-api usage ...` prints the usage totals (see usage.py)."""
    args = sys.argv[1:] if argv is None else argv
    if args and args[0] == "usage":
        from llm_api.usage import main as usage_main

        sys.exit(usage_main(args[1:], _settings()))
    if args:
        sys.stderr.write("usage: llm-api [usage [--consumer C] [--day YYYY-MM-DD] [--json]]\n")
        sys.exit(2)
    settings = _settings()
    exposure = settings.exposure_error()
    if exposure is not None:
        sys.stderr.write(f"llm-api: refusing to start: {exposure}\n")
        sys.exit(2)
    logging.config.dictConfig(logging_config(settings.log_level))
    try:
        config = load_config(settings.config)  # fail before binding the port
    except ConfigError as exc:
        log.error("invalid config: %s", exc)
        sys.stderr.flush()
        sys.exit(2)
    log.info(
        "starting",
        extra={
            "fields": {
                "host": settings.host,
                "port": settings.port,
                "tls": settings.ssl_certfile is not None,
                "workers": settings.workers,
                "config": config.source,
                "models": config.model_names,
            }
        },
    )
    metrics_dir = None
    if settings.workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # prometheus_client's multiprocess mode: each worker writes its metrics to files here
        # and a scrape of any worker adds up every worker's. Set before the workers start (they
        # import prometheus_client afresh); a new, empty directory each start.
        metrics_dir = tempfile.mkdtemp(prefix="llm-api-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    try:
        _serve(settings)
    finally:
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)


def _serve(settings: Settings) -> None:
    uvicorn.run(
        "llm_api.app:create_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        log_config=logging_config(settings.log_level),
        access_log=False,
        server_header=False,
        timeout_keep_alive=KEEP_ALIVE_SECONDS,
        loop="uvloop" if importlib.util.find_spec("uvloop") else "asyncio",
        http="httptools" if importlib.util.find_spec("httptools") else "h11",
        # HTTPS when a certificate is set: every worker loads the pair at start (a plain-HTTP
        # request to the port then fails its TLS handshake); a new pair needs a restart.
        ssl_certfile=str(settings.ssl_certfile) if settings.ssl_certfile else None,
        ssl_keyfile=str(settings.ssl_keyfile) if settings.ssl_keyfile else None,
    )


if __name__ == "__main__":
    main()
