"""kong_upstream, kong_target and kong_target_health against the simulator (postgres), and
kong_declarative with upstreams and targets (DB-less), through real playbook runs: create ->
unchanged -> check mode (diff, Kong untouched) -> change -> manual health -> bad input refused
before anything changes -> prune -> delete."""

import pytest

pytestmark = pytest.mark.timeout(900)

# Passive checks only: health checking is on (manual health is accepted) but nothing probes the
# targets, so their health changes only by hand.
PASSIVE = {"passive": {"unhealthy": {"tcp_failures": 3, "timeouts": 3}}}


def upstream_task(**args):
    return {
        "name": "Upstream",
        "ai_gateway.kong.kong_upstream": dict(
            {"name": "it-llm.upstream", "healthchecks": PASSIVE, "select_tags": ["it-up"]}, **args
        ),
    }


def targets_task(weight=100, **task):
    return dict(
        {
            "name": "Targets",
            "ai_gateway.kong.kong_target": {
                "select_tags": ["it-up"],
                "prune": True,
                "entities": [
                    {"upstream": "it-llm.upstream", "target": "127.0.0.1:9101"},
                    # Kong stores it as 127.0.0.2:9102; this spelling must find it again.
                    {"upstream": "it-llm.upstream", "target": "127.000.0.2:9102", "weight": weight},
                ],
            },
        },
        **task,
    )


def health_task(health):
    return {
        "name": "Health",
        "ai_gateway.kong.kong_target_health": {
            "upstream": "it-llm.upstream",
            "target": "127.0.0.2:9102",
            "health": health,
        },
    }


READ = {"name": "Read", "ai_gateway.kong.kong_info": {"entities": ["upstreams", "targets"]}}


def test_upstream_targets_and_health(kong_postgres, admin_postgres, playbook):
    admin_postgres.send("PUT", "/upstreams/it-other.upstream", {"tags": ["it-up"]})
    other = admin_postgres.get("/upstreams/it-other.upstream")
    admin_postgres.send(
        "POST", "/upstreams/%s/targets" % other["id"], {"target": "stale.test:1", "tags": ["it-up"]}
    )
    results = playbook(
        kong_postgres.admin_url,
        [
            upstream_task(),
            targets_task(),
            upstream_task(),
            targets_task(),
            dict(targets_task(weight=0), check_mode=True),
            READ,
            targets_task(weight=0),
            targets_task(weight=100),
            health_task("unhealthy"),
            health_task("unhealthy"),
            dict(health_task("healthy"), check_mode=True),
            health_task("healthy"),
            {
                "name": "An upstream named by an IP address",
                "ai_gateway.kong.kong_upstream": {"name": "10.1.2.3"},
                "ignore_errors": True,
            },
            {
                "name": "A target without a port",
                "ai_gateway.kong.kong_target": {
                    "entities": [
                        {"upstream": "it-llm.upstream", "target": "127.0.0.3:9103"},
                        {"upstream": "it-llm.upstream", "target": "127.0.0.4"},
                    ]
                },
                "ignore_errors": True,
            },
        ],
    )
    (up, targets, up_again, targets_again, checked, read, zero, back) = results[:8]
    (unhealthy, unhealthy_again, healthy_check, healthy, bad_name, no_port) = results[8:]

    assert up["changed"] is True
    assert up["upstream"]["healthchecks"]["passive"]["unhealthy"]["tcp_failures"] == 3
    assert targets["changed"] is True
    assert [t["target"] for t in targets["entities"]] == ["127.0.0.1:9101", "127.0.0.2:9102"]
    assert [p["target"] for p in targets["pruned"]] == ["stale.test:1"]
    assert up_again["changed"] is False
    assert targets_again["changed"] is False

    assert checked["changed"] is True
    key = "it-llm.upstream/127.0.0.2:9102"
    assert (checked["diff"]["before"][key]["weight"], checked["diff"]["after"][key]["weight"]) == (
        100,
        0,
    )
    assert {
        t["target"]: t["weight"]
        for t in read["entities"]["targets"]
        if t["target"].startswith("127.")
    } == {
        "127.0.0.1:9101": 100,
        "127.0.0.2:9102": 100,
    }
    assert zero["changed"] is True
    assert back["changed"] is True

    assert (unhealthy["changed"], unhealthy["health_before"], unhealthy["health"]) == (
        True,
        "HEALTHY",
        "UNHEALTHY",
    )
    assert unhealthy_again["changed"] is False
    assert healthy_check["changed"] is True
    assert healthy["changed"] is True
    health = admin_postgres.get("/upstreams/it-llm.upstream/health")["data"]
    assert {row["target"]: row["health"] for row in health} == {
        "127.0.0.1:9101": "HEALTHY",
        "127.0.0.2:9102": "HEALTHY",
    }

    assert bad_name["failed"] is True
    assert bad_name["msg"].startswith("name: '10.1.2.3' is an IP address")
    assert "10.1.2.3" not in [u["name"] for u in admin_postgres.get("/upstreams")["data"]]
    assert no_port["failed"] is True
    assert no_port["msg"].startswith(
        "entities[1]: target '127.0.0.4' of upstream 'it-llm.upstream': no port"
    )
    stored = admin_postgres.get("/upstreams/it-llm.upstream/targets")["data"]
    assert sorted(t["target"] for t in stored) == ["127.0.0.1:9101", "127.0.0.2:9102"]

    results = playbook(
        kong_postgres.admin_url,
        [
            targets_task(ignore_errors=False)
            | {
                "ai_gateway.kong.kong_target": {
                    "select_tags": ["it-up"],
                    "prune": True,
                    "entities": [],
                }
            },
            upstream_task(state="absent"),
            upstream_task(state="absent"),
        ],
    )
    pruned, deleted, deleted_again = results
    assert sorted(p["target"] for p in pruned["pruned"]) == ["127.0.0.1:9101", "127.0.0.2:9102"]
    assert deleted["changed"] is True
    assert deleted_again["changed"] is False
    assert admin_postgres.get("/upstreams/it-llm.upstream") is None


DECLARATIVE = {
    "_format_version": "3.0",
    "upstreams": [
        {
            "name": "dl-llm.upstream",
            "healthchecks": PASSIVE,
            "targets": [{"target": "127.0.0.1:9201"}, {"target": "127.0.0.2"}],
        }
    ],
    "services": [
        {
            "name": "dl-up-svc",
            "host": "dl-llm.upstream",
            "routes": [{"name": "dl-up", "paths": ["/dl-up"]}],
        }
    ],
}


def test_declarative_upstreams_and_manual_health(kong_dbless, admin_dbless, playbook):
    changed = {
        **DECLARATIVE,
        "upstreams": [
            dict(
                DECLARATIVE["upstreams"][0],
                targets=[{"target": "127.0.0.1:9201", "weight": 0}, {"target": "127.0.0.2"}],
            )
        ],
    }

    def apply(config, **task):
        return dict(
            {"name": "Apply", "ai_gateway.kong.kong_declarative": {"config": config}}, **task
        )

    results = playbook(
        kong_dbless.admin_url,
        [
            apply(DECLARATIVE),
            apply(DECLARATIVE),
            apply(changed, check_mode=True),
            {
                "name": "Health in DB-less mode",
                "ai_gateway.kong.kong_target_health": {
                    "upstream": "dl-llm.upstream",
                    "target": "127.0.0.2:8000",
                    "health": "unhealthy",
                },
            },
        ],
    )
    applied, again, checked, health = results
    assert applied["changed"] is True
    assert applied["entities"]["targets"] == 2
    assert again["changed"] is False
    key = "127.0.0.1:9201@dl-llm.upstream"
    assert checked["diff"]["before"]["targets"][key]["weight"] == 100
    assert checked["diff"]["after"]["targets"][key]["weight"] == 0
    assert health["changed"] is True
    rows = admin_dbless.get("/upstreams/dl-llm.upstream/health")["data"]
    assert {r["target"]: r["health"] for r in rows}["127.0.0.2:8000"] == "UNHEALTHY"
