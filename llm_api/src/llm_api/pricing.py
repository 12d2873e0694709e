"""Prices per token from LiteLLM's local cost map, read as JSON: LiteLLM is not imported.

The map ships inside the litellm package (`model_prices_and_context_window_backup.json`); it is
read once per process, and only the configured deployments' prices are kept. A deployment's
`model_info.input_cost_per_token` / `output_cost_per_token` (LiteLLM's own convention) override
the map. A deployment without a price has an unknown cost: it is counted as unknown, never as 0.
"""

from __future__ import annotations

import functools
import importlib.util
import logging
from pathlib import Path
from typing import Any

import orjson

from llm_api.config import Config, Deployment

log = logging.getLogger("llm_api.pricing")
COST_MAP_FILE = "model_prices_and_context_window_backup.json"


@functools.cache
def cost_map() -> dict[str, Any]:
    """LiteLLM's local cost map ({} when the litellm package or its file is missing)."""
    spec = importlib.util.find_spec("litellm")
    for root in (spec.submodule_search_locations or []) if spec else []:
        path = Path(root) / COST_MAP_FILE
        if path.is_file():
            data = orjson.loads(path.read_bytes())
            return data if isinstance(data, dict) else {}
    log.warning("LiteLLM's cost map was not found: every cost is unknown")
    return {}


def _price(entry: object) -> tuple[float, float] | None:
    if not isinstance(entry, dict):
        return None
    cin, cout = entry.get("input_cost_per_token"), entry.get("output_cost_per_token")
    if isinstance(cin, int | float) and isinstance(cout, int | float):
        return float(cin), float(cout)
    return None


def deployment_price(dep: Deployment, prices: dict[str, Any]) -> tuple[float, float] | None:
    """(USD per input token, per output token) of `dep`, or None when unknown."""
    own = _price(dep.model_info)
    if own is not None:
        return own
    if dep.transport == "mock":
        return (0.0, 0.0)  # answered locally: no provider bills it
    for key in (dep.litellm_model, f"{dep.provider}/{dep.upstream_model}", dep.upstream_model):
        entry = prices.get(key)
        if isinstance(entry, dict):
            listed = entry.get("litellm_provider")
            # A bare name must belong to the deployment's provider (gpt-4o on OpenAI, not Azure).
            if (
                key == dep.upstream_model
                and listed not in (None, dep.provider)
                and dep.provider not in ("hosted_vllm", "openai_like")
            ):
                continue
            found = _price(entry)
            if found is not None:
                return found
    return None


class Prices:
    """The configured deployments' prices, by deployment id."""

    def __init__(self, config: Config, table: dict[str, Any] | None = None) -> None:
        needs_map = any(
            _price(d.model_info) is None and d.transport != "mock" for d in config.deployments
        )
        table = table if table is not None else (cost_map() if needs_map else {})
        self.by_id = {d.id: deployment_price(d, table) for d in config.deployments}

    def cost(self, dep_id: str | None, tokens_in: int, tokens_out: int) -> float | None:
        """USD for these tokens on `dep_id`, or None when its price is unknown."""
        price = self.by_id.get(dep_id) if dep_id else None
        if price is None:
            return None
        return tokens_in * price[0] + tokens_out * price[1]
