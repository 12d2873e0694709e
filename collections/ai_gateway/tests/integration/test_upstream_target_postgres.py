"""kong_upstream and kong_target against the simulator in postgres mode, through real
ansible-playbook runs: create -> unchanged -> weight 0 (the diff shows exactly it) -> check mode
(Kong untouched) -> prune of an undeclared target -> delete."""

import pytest

pytestmark = pytest.mark.timeout(600)

CHECKS = {
    "active": {"http_path": "/health/ready", "healthy": {"interval": 2, "successes": 2}},
    "passive": {"unhealthy": {"tcp_failures": 2}},
}


def upstream(**extra):
    args = {"name": "ut.upstream", "healthchecks": CHECKS, "select_tags": ["ut"]}
    return {"name": "upstream", "ai_gateway.kong.kong_upstream": dict(args, **extra)}


def targets(weights, **extra):
    args = {
        "upstream": "ut.upstream",
        "select_tags": ["ut"],
        "prune": True,
        "entities": [{"target": t, "weight": w} for t, w in weights.items()],
    }
    return dict({"name": "targets", "ai_gateway.kong.kong_target": args}, **extra)


def changed_fields(before, after):
    return {k for k in set(before) | set(after) if before.get(k) != after.get(k)}


def test_upstream_and_targets(kong_postgres, admin_postgres, playbook):
    two = {"127.0.0.1:9101": 100, "127.0.0.1:9102": 100}
    drained = {"127.0.0.1:9101": 100, "127.0.0.1:9102": 0}
    results = playbook(
        kong_postgres.admin_url,
        [
            upstream(),
            targets(two),
            upstream(),
            targets(two),
            targets(drained),
            targets(two, check_mode=True),
            targets({"127.0.0.1:9101": 100}),
        ],
    )
    created_u, created_t, again_u, again_t, drain, checked, pruned = results

    assert created_u["changed"] is True
    stored = created_u["upstream"]
    # Given values laid over Kong's default record; the rest keeps Kong's defaults.
    assert stored["healthchecks"]["active"]["http_path"] == "/health/ready"
    assert stored["healthchecks"]["active"]["unhealthy"]["interval"] == 0
    assert stored["healthchecks"]["passive"]["unhealthy"]["tcp_failures"] == 2
    assert stored["tags"] == ["ut"]
    assert created_t["changed"] is True
    assert sorted(t["target"] for t in created_t["entities"]) == sorted(two)

    assert (again_u["changed"], again_t["changed"]) == (False, False)

    assert drain["changed"] is True
    before, after = drain["diff"]["before"], drain["diff"]["after"]
    assert list(after) == ["127.0.0.1:9102"]
    assert changed_fields(before["127.0.0.1:9102"], after["127.0.0.1:9102"]) == {"weight"}
    assert {t["target"]: t["weight"] for t in drain["entities"]} == drained

    assert checked["changed"] is True
    assert checked["diff"]["after"]["127.0.0.1:9102"]["weight"] == 100

    assert pruned["changed"] is True
    # Pruned with the weight check mode left it at: 0.
    assert [(p["target"], p["weight"]) for p in pruned["pruned"]] == [("127.0.0.1:9102", 0)]
    assert admin_postgres.get("/upstreams/ut.upstream/targets/127.0.0.1:9102") is None
    assert admin_postgres.get("/upstreams/ut.upstream/targets/127.0.0.1:9101")["weight"] == 100

    gone = playbook(kong_postgres.admin_url, [upstream(state="absent"), upstream(state="absent")])
    assert [r["changed"] for r in gone] == [True, False]
    assert admin_postgres.get("/upstreams/ut.upstream") is None
