"""The entity modules against the simulator in postgres mode, through real ansible-playbook runs:
create -> unchanged -> one field changed (the diff shows exactly it) -> check mode (Kong
untouched) -> delete -> delete again; tag-scoped pruning; a generated key that stays."""

import json

import pytest

pytestmark = pytest.mark.timeout(600)

KEY = "lifecycle-key-0123456789abcdef"


def entity_tasks(variant=None, state="present", **keywords):
    """One task per entity module; each `variant` changes one more field of each."""
    service = {"name": "lc-svc", "url": "http://127.0.0.1:9/v1"}
    route = {"name": "lc-route", "service": "lc-svc", "paths": ["/lc", "~/lc/v[0-9]+$"]}
    consumer = {"username": "lc-user", "custom_id": "lc-1"}
    key_auth = {"consumer": "lc-user", "key": KEY}
    plugin = {
        "name": "rate-limiting",
        "instance_name": "lc-rl",
        "service": "lc-svc",
        "config": {"minute": 60},
    }
    if variant in ("update", "check"):
        service["retries"] = 3
        route["strip_path"] = False
        consumer["custom_id"] = "lc-2"
        key_auth["tags"] = ["rotated"]
        plugin["config"] = {"minute": 30}
    if variant == "check":
        service["read_timeout"] = 5000
        route["preserve_host"] = True
        consumer["custom_id"] = "lc-3"
        key_auth["tags"] = ["rotated", "other"]
        plugin["config"] = {"minute": 30, "hour": 500}
    tasks = [
        ("kong_service", service),
        ("kong_route", route),
        ("kong_consumer", consumer),
        ("kong_key_auth", key_auth),
        ("kong_plugin", plugin),
    ]
    if state == "absent":
        tasks.reverse()
    return [
        dict({"name": module, "ai_gateway.kong." + module: dict(args, state=state)}, **keywords)
        for module, args in tasks
    ]


READ_ALL = {
    "name": "Read Kong",
    "ai_gateway.kong.kong_info": {
        "entities": ["services", "routes", "consumers", "plugins", "key-auths"]
    },
}


def changed_fields(result):
    before, after = result["diff"]["before"] or {}, result["diff"]["after"] or {}
    return {k for k in set(before) | set(after) if before.get(k) != after.get(k)}


def test_lifecycle(kong_postgres, admin_postgres, playbook):
    # One playbook run (each run costs an ansible-playbook start); every step is its own task.
    results = playbook(
        kong_postgres.admin_url,
        entity_tasks()
        + entity_tasks()
        + entity_tasks("update")
        + [READ_ALL]
        + entity_tasks("check", check_mode=True)
        + [READ_ALL]
        + entity_tasks("update", state="absent")
        + entity_tasks("update", state="absent"),
    )
    steps = [results[i : i + 5] for i in range(0, 15, 5)]
    created, again, updated = steps
    read_before, checked, read_after = results[15], results[16:21], results[21]
    deleted, deleted_again = results[22:27], results[27:32]

    assert [r["changed"] for r in created] == [True] * 5
    service, route, consumer, credential, plugin = (
        r[k]
        for r, k in zip(
            created, ("service", "route", "consumer", "credential", "plugin"), strict=True
        )
    )
    assert service["host"] == "127.0.0.1"
    assert (service["port"], service["path"]) == (9, "/v1")
    assert route["service"] == {"id": service["id"]}
    assert route["paths"] == ["/lc", "~/lc/v[0-9]+$"]
    assert credential["consumer"] == {"id": consumer["id"]}
    assert plugin["config"]["policy"] == "local"  # Kong's default, returned as stored
    # no_log: Ansible masks the key wherever it would print it; the diff never has it.
    assert KEY not in json.dumps(results)

    assert [r["changed"] for r in again] == [False] * 5

    assert [r["changed"] for r in updated] == [True] * 5
    assert [changed_fields(r) for r in updated] == [
        {"retries"},
        {"strip_path"},
        {"custom_id"},
        {"tags"},
        {"config"},
    ]
    before, after = updated[4]["diff"]["before"]["config"], updated[4]["diff"]["after"]["config"]
    assert {k for k in after if before[k] != after[k]} == {"minute"}

    assert [r["changed"] for r in checked] == [True] * 5
    assert [changed_fields(r) for r in checked] == [
        {"read_timeout"},
        {"preserve_host"},
        {"custom_id"},
        {"tags"},
        {"config"},
    ]
    assert read_after["entities"] == read_before["entities"]
    services = {s["name"]: s for s in read_after["entities"]["services"]}
    assert (services["lc-svc"]["retries"], services["lc-svc"]["read_timeout"]) == (3, 60000)

    assert [r["changed"] for r in deleted] == [True] * 5
    assert admin_postgres.get("/services/lc-svc") is None
    assert admin_postgres.get("/routes/lc-route") is None
    assert admin_postgres.get("/consumers/lc-user") is None
    assert admin_postgres.get("/plugins/lc-rl") is None
    assert [r["changed"] for r in deleted_again] == [False] * 5


def test_prune_touches_only_entities_with_the_ownership_tags(
    kong_postgres, admin_postgres, playbook
):
    for name, tags in (("pr-old", ["team-a"]), ("pr-other", ["team-b"]), ("pr-manual", None)):
        admin_postgres.send("PUT", "/services/" + name, {"host": "h.test", "tags": tags})
    results = playbook(
        kong_postgres.admin_url,
        [
            {
                "name": "Declare team-a's services; prune the rest of team-a's",
                "ai_gateway.kong.kong_service": {
                    "select_tags": ["team-a"],
                    "prune": True,
                    "entities": [
                        {"name": "pr-kept", "host": "k.test"},
                        {"name": "pr-kept2", "host": "k.test", "tags": ["extra"]},
                    ],
                },
            },
            {
                "name": "Again",
                "ai_gateway.kong.kong_service": {
                    "select_tags": ["team-a"],
                    "prune": True,
                    "entities": [
                        {"name": "pr-kept", "host": "k.test"},
                        {"name": "pr-kept2", "host": "k.test", "tags": ["extra"]},
                    ],
                },
            },
        ],
    )
    assert results[0]["changed"] is True
    assert [p["name"] for p in results[0]["pruned"]] == ["pr-old"]
    assert results[1]["changed"] is False
    assert admin_postgres.get("/services/pr-old") is None
    assert admin_postgres.get("/services/pr-other")["tags"] == ["team-b"]
    assert admin_postgres.get("/services/pr-manual")["tags"] is None
    assert sorted(admin_postgres.get("/services/pr-kept2")["tags"]) == ["extra", "team-a"]


def test_generated_key_survives_ten_runs(kong_postgres, admin_postgres, playbook):
    admin_postgres.send("PUT", "/consumers/gen-user", {"tags": ["gw"]})
    task = {
        "name": "A key Kong generates",
        "ai_gateway.kong.kong_key_auth": {
            "consumer": "gen-user",
            "tags": ["primary"],
            "select_tags": ["gw"],
        },
    }
    results = playbook(kong_postgres.admin_url, [task] * 11)
    first, rest = results[0], results[1:]
    assert first["changed"] is True
    consumer = admin_postgres.get("/consumers/gen-user")
    stored = admin_postgres.get("/consumers/%s/key-auth" % consumer["id"])["data"]
    (key,) = [c["key"] for c in stored]
    assert len(key) == 32
    assert [r["changed"] for r in rest] == [False] * 10
    # The same credential every time, and its key never in what the module returns.
    assert {r["credential"]["id"] for r in results} == {stored[0]["id"]}
    assert {r["credential"]["key"] for r in results} == {"********"}
    assert key not in json.dumps(results)
