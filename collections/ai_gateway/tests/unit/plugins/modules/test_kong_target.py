"""kong_target: targets found by their normalised address, weights, no port = error, prune."""

import pytest
from ansible_collections.ai_gateway.kong.plugins.modules import kong_target, kong_target_health

URL = "http://kong.test:8001"
ACTIVE = {"active": {"healthy": {"interval": 5}, "unhealthy": {"interval": 5, "tcp_failures": 1}}}


def upstream(kong, name="llm.upstream", **fields):
    return kong.add("upstreams", name=name, **fields)


def test_create_no_op_and_any_spelling_finds_it(kong, run_module):
    up = upstream(kong)
    args = {"admin_url": URL, "upstream": "llm.upstream", "target": "010.0.0.1:8080"}
    result = run_module(kong_target, args)
    assert result["changed"] is True
    assert kong.writes() == [
        ("POST", "/upstreams/%s/targets" % up["id"], {"target": "10.0.0.1:8080", "weight": 100})
    ]
    assert result["target"]["target"] == "10.0.0.1:8080"
    kong.calls.clear()
    assert run_module(kong_target, dict(args, target="10.0.0.1:8080"))["changed"] is False
    assert kong.writes() == []


def test_ipv6_is_stored_expanded(kong, run_module):
    upstream(kong)
    args = {"admin_url": URL, "upstream": "llm.upstream", "target": "[::1]:81"}
    result = run_module(kong_target, args)
    assert result["target"]["target"] == "[0000:0000:0000:0000:0000:0000:0000:0001]:81"
    assert run_module(kong_target, args)["changed"] is False


def test_weight_change_patches_and_diffs(kong, run_module):
    up = upstream(kong)
    args = {"admin_url": URL, "upstream": "llm.upstream", "target": "h.test:8080"}
    created = run_module(kong_target, args)
    result = run_module(kong_target, dict(args, weight=0))
    assert result["changed"] is True
    assert kong.writes()[-1][:2] == (
        "PATCH",
        "/upstreams/%s/targets/%s" % (up["id"], created["target"]["id"]),
    )
    assert (result["diff"]["before"]["weight"], result["diff"]["after"]["weight"]) == (100, 0)
    assert len(kong.rows("targets")) == 1


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("10.0.0.1", "no port (Kong would silently use 8000)"),
        ("llm.test", "no port"),
        ("::1", "no port"),
        ("h.test:http", "is not a number"),
        ("some invalid host", "not a valid hostname or ip address"),
    ],
)
def test_bad_targets_fail_before_any_request(kong, run_module, target, expected):
    upstream(kong)
    result = run_module(
        kong_target, {"admin_url": URL, "upstream": "llm.upstream", "target": target}
    )
    assert result["failed"] is True
    assert "target %r of upstream 'llm.upstream'" % target in result["msg"]
    assert expected in result["msg"]
    assert kong.calls == []


def test_check_mode_and_delete(kong, run_module):
    upstream(kong)
    args = {"admin_url": URL, "upstream": "llm.upstream", "target": "h.test:8080"}
    assert run_module(kong_target, args, check=True)["changed"] is True
    assert kong.writes() == []
    run_module(kong_target, args)
    assert run_module(kong_target, dict(args, state="absent"))["changed"] is True
    assert kong.rows("targets") == []
    assert run_module(kong_target, dict(args, state="absent"))["changed"] is False


def test_unknown_upstream(kong, run_module):
    args = {"admin_url": URL, "upstream": "nope", "target": "h.test:8080"}
    result = run_module(kong_target, args)
    assert result["failed"] is True
    assert "upstream 'nope' not found" in result["msg"]
    assert run_module(kong_target, dict(args, state="absent"))["changed"] is False


def test_bulk_prune_across_upstreams(kong, run_module):
    a, b = upstream(kong, "a.upstream"), upstream(kong, "b.upstream")
    kong.add("targets", upstream={"id": a["id"]}, target="old.test:1", tags=["gw"])
    kong.add("targets", upstream={"id": b["id"]}, target="old.test:2", tags=["gw"])
    kong.add("targets", upstream={"id": b["id"]}, target="manual.test:3")
    args = {
        "admin_url": URL,
        "select_tags": ["gw"],
        "prune": True,
        "entities": [
            {"upstream": "a.upstream", "target": "n1.test:8080"},
            {"upstream": "b.upstream", "target": "n2.test:8080", "weight": 50},
        ],
    }
    result = run_module(kong_target, args)
    assert result["changed"] is True
    assert sorted(p["target"] for p in result["pruned"]) == ["old.test:1", "old.test:2"]
    assert sorted(t["target"] for t in kong.rows("targets")) == [
        "manual.test:3",
        "n1.test:8080",
        "n2.test:8080",
    ]
    assert sorted(result["diff"]["after"]) == [
        "a.upstream/n1.test:8080",
        "a.upstream/old.test:1",
        "b.upstream/n2.test:8080",
        "b.upstream/old.test:2",
    ]
    assert run_module(kong_target, args)["changed"] is False


def test_kong_error(kong, run_module):
    up = upstream(kong)
    kong.errors[("POST", "/upstreams/%s/targets" % up["id"])] = (
        400,
        {
            "code": 2,
            "name": "schema violation",
            "fields": {"weight": "value should be between 0 and 65535"},
        },
    )
    result = run_module(
        kong_target, {"admin_url": URL, "upstream": "llm.upstream", "target": "h.test:1"}
    )
    assert result["failed"] is True
    assert "value should be between 0 and 65535" in result["msg"]


# ----- kong_target_health -------------------------------------------------------------------
def health_args(**kw):
    return dict({"admin_url": URL, "upstream": "llm.upstream", "target": "h.test:8080"}, **kw)


def with_target(kong, checks_on=True):
    up = upstream(kong, healthchecks=ACTIVE if checks_on else None)
    return kong.add("targets", upstream={"id": up["id"]}, target="h.test:8080")


def test_health_unhealthy_then_unchanged_then_back(kong, run_module):
    target = with_target(kong)
    result = run_module(kong_target_health, health_args(health="unhealthy"))
    assert result["changed"] is True
    assert (result["health_before"], result["health"]) == ("HEALTHY", "UNHEALTHY")
    assert kong.writes()[-1][:2] == (
        "PUT",
        "/upstreams/llm.upstream/targets/%s/unhealthy" % target["id"],
    )
    kong.calls.clear()
    assert run_module(kong_target_health, health_args(health="unhealthy"))["changed"] is False
    assert kong.writes() == []
    back = run_module(kong_target_health, health_args(health="healthy"))
    assert back["changed"] is True
    assert back["diff"] == {"before": {"health": "UNHEALTHY"}, "after": {"health": "HEALTHY"}}


def test_health_check_mode_writes_nothing(kong, run_module):
    with_target(kong)
    result = run_module(kong_target_health, health_args(health="unhealthy"), check=True)
    assert result["changed"] is True
    assert kong.writes() == []


def test_health_checks_off_is_a_clear_error(kong, run_module):
    with_target(kong, checks_on=False)
    result = run_module(kong_target_health, health_args(health="unhealthy"))
    assert result["failed"] is True
    assert "health checks are off" in result["msg"]
    assert kong.writes() == []


def test_health_of_an_unknown_target(kong, run_module):
    with_target(kong)
    result = run_module(kong_target_health, health_args(target="other.test:1", health="healthy"))
    assert result["failed"] is True
    assert "target 'other.test:1' not found in upstream 'llm.upstream'" in result["msg"]
