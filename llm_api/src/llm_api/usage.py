"""`llm-api usage`: the per-day usage totals that llm_api keeps in Redis, as a table or JSON.

Reads the config (`LLM_API_CONFIG`) for `quotas.redis_url` and the key prefix; the totals are
written by every replica when an answer is settled (quotas.py).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote

import orjson
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from llm_api.config import ConfigError, QuotaConfig, load_config
from llm_api.settings import Settings

FIELDS = ("requests", "in", "out", "cost", "unpriced")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="llm-api usage", description=__doc__.split("\n")[0])
    p.add_argument("--consumer", help="only this consumer")
    p.add_argument("--day", help="UTC day, YYYY-MM-DD (default: today)")
    p.add_argument("--json", action="store_true", help="JSON instead of a table")
    return p


async def collect(cfg: QuotaConfig, day: str, consumer: str | None) -> list[dict[str, Any]]:
    """One row per consumer and model: requests, tokens in and out, cost (None when unknown for
    every request), unpriced (requests without a price)."""
    # rediss:// with quotas.redis_ca_file: verified against that CA, not the system's store.
    tls: dict[str, Any] = {"ssl_ca_certs": cfg.redis_ca_file} if cfg.redis_ca_file else {}
    client = aioredis.Redis.from_url(
        cfg.redis_url, socket_timeout=5, socket_connect_timeout=5, decode_responses=True, **tls
    )
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    try:
        pattern = f"{cfg.key_prefix}:usage:{{*}}:{day}"
        async for key in client.scan_iter(match=pattern, count=500):
            name = unquote(key[len(cfg.key_prefix) + len(":usage:{") : -len(f"}}:{day}")])
            if consumer is not None and name != consumer:
                continue
            found: dict[str, str] = await client.hgetall(key)  # type: ignore[assignment]
            for field, value in found.items():
                model, _, what = field.rpartition("\t")
                row = rows.setdefault(
                    (name, model),
                    {"consumer": name, "model": model, "day": day}
                    | {f: 0 for f in FIELDS}
                    | {"cost": None},
                )
                if what == "cost":
                    row["cost"] = (row["cost"] or 0.0) + float(value)
                elif what in FIELDS:
                    row[what] += int(value)
    finally:
        await client.aclose()
    return [rows[k] for k in sorted(rows)]


def table(rows: list[dict[str, Any]]) -> str:
    head = ("consumer", "model", "requests", "tokens in", "tokens out", "cost USD")
    lines = [head]
    for r in rows:
        cost = "unknown" if r["cost"] is None else f"{r['cost']:.6f}"
        if r["cost"] is not None and r["unpriced"]:
            cost += f" + unknown ({r['unpriced']} req)"
        lines.append(
            (r["consumer"], r["model"], str(r["requests"]), str(r["in"]), str(r["out"]), cost)
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    out = []
    for line in lines:
        cells = zip(line, widths, strict=True)
        out.append("  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(cells)))
    return "\n".join(out)


def main(argv: list[str], settings: Settings) -> int:
    args = _parser().parse_args(argv)
    day = args.day or datetime.now(UTC).strftime("%Y-%m-%d")
    try:
        datetime.strptime(day, "%Y-%m-%d")
    except ValueError:
        sys.stderr.write(f"llm-api usage: --day: {day!r} is not YYYY-MM-DD\n")
        return 2
    try:
        config = load_config(settings.config)
    except ConfigError as exc:
        sys.stderr.write(f"llm-api usage: invalid config: {exc}\n")
        return 2
    if config.quotas is None:
        sys.stderr.write("llm-api usage: the config has no quotas section (no Redis to read)\n")
        return 2
    try:
        rows = asyncio.run(collect(config.quotas, day, args.consumer))
    except (RedisError, OSError):
        sys.stderr.write("llm-api usage: cannot read the totals from Redis (quotas.redis_url)\n")
        return 1
    if args.json:
        sys.stdout.write(orjson.dumps(rows, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        sys.stdout.write(table(rows) + "\n")
    return 0
