"""The Grafana dashboard (dashboards/llm_api.json) queries only metrics llm_api exports, each
with a sample name its type has (counters `_total`, histograms `_bucket`/`_sum`/`_count`)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from llm_api.app import create_app
from llm_api.settings import Settings
from prometheus_client import generate_latest

DASHBOARD = Path(__file__).resolve().parents[1] / "dashboards" / "llm_api.json"
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count")}


def queries(dashboard: dict[str, Any]) -> list[str]:
    out = []
    for panel in dashboard["panels"]:
        out += [t["expr"] for t in panel.get("targets", [])]
        for inner in panel.get("panels", []):
            out += [t["expr"] for t in inner.get("targets", [])]
    for var in dashboard["templating"]["list"]:
        if var["type"] == "query":
            out.append(var["query"]["query"])
    return out


def exported() -> dict[str, str]:
    """Every sample name llm_api's /metrics can show, with its family's type."""
    app = create_app(Settings())
    text = generate_latest(app.state.metrics.registry).decode()
    names = {}
    for line in text.splitlines():
        if line.startswith("# TYPE llm_api_"):
            _, _, family, kind = line.split()
            family = family.removesuffix("_total")  # the text format names counters with it
            for suffix in SUFFIXES.get(kind, ("",)):
                names[family + suffix] = kind
    return names


def test_every_dashboard_query_names_an_exported_metric() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    names = exported()
    found = set()
    for expr in queries(dashboard):
        used = set(re.findall(r"\bllm_api_[a-z0-9_]+", expr))
        assert used, f"a query names no llm_api metric: {expr}"
        unknown = used - names.keys()
        assert not unknown, f"not exported by llm_api: {sorted(unknown)} in {expr}"
        found |= used
    print(f"\n{len(queries(dashboard))} queries over {len(found)} metrics: {sorted(found)}")
    # What the issue asks the dashboard to show.
    for needed in (
        "llm_api_requests_total",
        "llm_api_errors_total",
        "llm_api_request_duration_seconds_bucket",
        "llm_api_time_to_first_token_seconds_bucket",
        "llm_api_tokens_total",
        "llm_api_cost_usd_total",
    ):
        assert needed in found, needed


def test_panels_have_unique_ids_and_a_datasource_variable() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    assert any(v["type"] == "datasource" for v in dashboard["templating"]["list"])
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            assert target["datasource"]["uid"] == "${datasource}"
