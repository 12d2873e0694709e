"""kong_info: version, mode, status and tagged entities, read-only, secrets masked."""

import json

from ansible_collections.ai_gateway.kong.plugins.modules import kong_info

URL = "http://kong.test:8001"


def test_reports_node_and_tagged_entities(kong, run_module):
    kong.add("services", name="mine", host="m", tags=["gw"])
    kong.add("services", name="theirs", host="t")
    alice = kong.add("consumers", username="alice", tags=["gw"])
    kong.add("key-auths", consumer={"id": alice["id"]}, key="topsecret", tags=["gw"])
    result = run_module(
        kong_info, {"admin_url": URL, "entities": ["services", "key-auths"], "tags": ["gw"]}
    )
    assert result["changed"] is False
    assert (result["version"], result["edition"], result["database"]) == (
        "3.9.3",
        "community",
        "postgres",
    )
    assert result["status"]["database"] == {"reachable": True}
    assert [s["name"] for s in result["entities"]["services"]] == ["mine"]
    assert result["entities"]["key-auths"][0]["key"] == "********"
    assert kong.writes() == []


def test_old_kong_is_refused(kong, run_module):
    kong.version = "2.8.1"
    result = run_module(kong_info, {"admin_url": URL})
    assert result["failed"] is True
    assert "needs Kong 3.0 or newer" in result["msg"]


def test_every_kind_is_masked(kong, run_module):
    kong.add(
        "plugins",
        name="request-transformer",
        config={"add": {"headers": ["X-Gateway-Secret:info-s3cret"]}},
    )
    kong.add("plugins", name="rate-limiting", config={"redis": {"password": "info-redis-pw"}})
    result = run_module(kong_info, {"admin_url": URL, "entities": ["plugins"]})
    text = json.dumps(result)
    assert "info-s3cret" not in text
    assert "info-redis-pw" not in text
    headers = [p for p in result["entities"]["plugins"] if p["name"] == "request-transformer"]
    assert headers[0]["config"]["add"]["headers"] == ["X-Gateway-Secret:********"]


def test_a_missing_listing_endpoint_fails_with_kongs_message(kong, run_module):
    kong.errors[("GET", "/key-auths")] = (404, {"message": "Not found"})
    result = run_module(kong_info, {"admin_url": URL, "entities": ["key-auths"]})
    assert result["failed"] is True
    assert "GET /key-auths failed: HTTP 404 not found: Not found" in result["msg"]


def test_targets_are_listed_per_upstream(kong, run_module):
    for name in ("a", "b"):
        up = kong.add("upstreams", name=name)
        kong.add("targets", upstream={"id": up["id"]}, target="%s.test:1" % name, tags=["gw"])
        kong.add("targets", upstream={"id": up["id"]}, target="%s.test:2" % name)
    result = run_module(
        kong_info, {"admin_url": URL, "entities": ["upstreams", "targets"], "tags": ["gw"]}
    )
    assert sorted(t["target"] for t in result["entities"]["targets"]) == ["a.test:1", "b.test:1"]
    assert "/targets" not in [c[1] for c in kong.calls]


def test_certificates_are_listed_with_their_keys_masked(kong, run_module):
    kong.add(
        "certificates", cert="CERT", key="PRIVATE-KEY-TEXT", key_alt="ALT-KEY-TEXT", snis=["a"]
    )
    result = run_module(kong_info, {"admin_url": URL, "entities": ["certificates"]})
    (cert,) = result["entities"]["certificates"]
    assert (cert["cert"], cert["key"], cert["key_alt"]) == ("CERT", "********", "********")
    assert "KEY-TEXT" not in json.dumps(result)


def test_upstream_health_is_read_per_upstream_and_none_for_a_missing_one(kong, run_module):
    up = kong.add(
        "upstreams",
        name="llm",
        healthchecks={"active": {"healthy": {"interval": 5}, "unhealthy": {"interval": 5}}},
    )
    kong.add("targets", upstream={"id": up["id"]}, target="10.0.0.1:8080", weight=100)
    kong.add("targets", upstream={"id": up["id"]}, target="10.0.0.2:8080", weight=0)
    result = run_module(
        kong_info,
        {
            "admin_url": URL,
            "admin_headers": {"Kong-Admin-Token": "info-admin-token"},
            "upstream_health": ["llm", "gone"],
        },
    )
    assert result["changed"] is False
    rows = sorted((t["target"], t["weight"], t["health"]) for t in result["upstream_health"]["llm"])
    assert rows == [("10.0.0.1:8080", 100, "HEALTHY"), ("10.0.0.2:8080", 0, "HEALTHCHECKS_OFF")]
    assert result["upstream_health"]["gone"] is None
    assert "info-admin-token" not in json.dumps(result)
    assert kong.writes() == []


def test_no_upstream_health_is_read_unless_asked(kong, run_module):
    kong.add("upstreams", name="llm")
    result = run_module(kong_info, {"admin_url": URL})
    assert result["upstream_health"] == {}
    assert not [c for c in kong.calls if c[1].endswith("/health")]
