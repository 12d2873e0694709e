"""kong_upstream: Kong's defaults (healthchecks record included), the hash_on shorthand, names."""

import pytest
from ansible_collections.ai_gateway.kong.plugins.modules import kong_upstream

URL = "http://kong.test:8001"
CHECKS = {"active": {"http_path": "/health/ready", "healthy": {"interval": 5, "successes": 2}}}
ARGS = {"admin_url": URL, "name": "llm.upstream", "healthchecks": CHECKS}


def test_create_then_no_op(kong, run_module):
    result = run_module(kong_upstream, ARGS)
    assert result["changed"] is True
    method, path, body = kong.writes()[0]
    assert (method, path) == ("PUT", "/upstreams/llm.upstream")
    # Partial healthchecks are sent whole, with Kong's defaults filled in.
    assert body["healthchecks"]["active"]["http_path"] == "/health/ready"
    assert body["healthchecks"]["active"]["unhealthy"]["http_statuses"][0] == 429
    assert result["upstream"]["algorithm"] == "round-robin"
    kong.calls.clear()
    assert run_module(kong_upstream, ARGS)["changed"] is False
    assert kong.writes() == []


def test_update_diffs_the_nested_field(kong, run_module):
    run_module(kong_upstream, ARGS)
    checks = {"active": {"http_path": "/health/ready", "healthy": {"interval": 10, "successes": 2}}}
    result = run_module(kong_upstream, dict(ARGS, healthchecks=checks))
    assert result["changed"] is True
    before = result["diff"]["before"]["healthchecks"]["active"]["healthy"]
    after = result["diff"]["after"]["healthchecks"]["active"]["healthy"]
    assert (before["interval"], after["interval"]) == (5, 10)


def test_hash_on_implies_consistent_hashing(kong, run_module):
    args = {"admin_url": URL, "name": "sticky", "hash_on": "consumer"}
    result = run_module(kong_upstream, args)
    assert kong.writes()[0][2]["algorithm"] == "consistent-hashing"
    assert result["changed"] is True
    assert run_module(kong_upstream, args)["changed"] is False


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("10.0.0.1", "is an IP address"),
        ("::1", "is an IP address"),
        ("1234", "is an IP address"),
        ("llm:8080", "has a port"),
        ("bad name", "is not a valid host name"),
    ],
)
def test_bad_names_fail_before_any_request(kong, run_module, name, expected):
    result = run_module(kong_upstream, {"admin_url": URL, "name": name})
    assert result["failed"] is True
    assert result["msg"].startswith("name: ")
    assert expected in result["msg"]
    assert kong.writes() == []


def test_contradicting_algorithm_and_hash_on(kong, run_module):
    result = run_module(
        kong_upstream, {"admin_url": URL, "name": "u", "algorithm": "round-robin", "hash_on": "ip"}
    )
    assert result["failed"] is True
    assert "needs algorithm consistent-hashing" in result["msg"]


def test_check_mode_and_delete(kong, run_module):
    assert run_module(kong_upstream, ARGS, check=True)["changed"] is True
    assert kong.writes() == []
    run_module(kong_upstream, ARGS)
    assert run_module(kong_upstream, dict(ARGS, state="absent"))["changed"] is True
    assert kong.rows("upstreams") == []
    assert run_module(kong_upstream, dict(ARGS, state="absent"))["changed"] is False


def test_bulk_prune(kong, run_module):
    kong.add("upstreams", name="old", tags=["gw"])
    kong.add("upstreams", name="manual")
    args = {"admin_url": URL, "select_tags": ["gw"], "prune": True, "entities": [{"name": "new"}]}
    result = run_module(kong_upstream, args)
    assert [p["name"] for p in result["pruned"]] == ["old"]
    assert sorted(u["name"] for u in kong.rows("upstreams")) == ["manual", "new"]
    assert run_module(kong_upstream, args)["changed"] is False


def test_kong_error(kong, run_module):
    kong.errors[("PUT", "/upstreams/u")] = (
        400,
        {
            "code": 2,
            "name": "schema violation",
            "fields": {
                "healthchecks": {"active": {"timeout": "value should be between 0 and 65535"}}
            },
        },
    )
    result = run_module(kong_upstream, {"admin_url": URL, "name": "u"})
    assert result["failed"] is True
    assert "value should be between 0 and 65535" in result["msg"]
