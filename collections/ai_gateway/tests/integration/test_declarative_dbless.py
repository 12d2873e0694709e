"""kong_declarative against the simulator in DB-less mode, through one real playbook run:
apply -> unchanged (check_hash) -> check mode (diff, Kong untouched) -> the change (diff shows
exactly it) -> absent -> absent again; entity modules are refused with a clear message."""

import copy

import pytest

pytestmark = pytest.mark.timeout(600)

CONFIG = {
    "_format_version": "3.0",
    "services": [
        {
            "name": "dl-svc",
            "url": "http://127.0.0.1:9/v1",
            "routes": [{"name": "dl-route", "paths": ["/dl"]}],
            "plugins": [{"name": "key-auth", "config": {"hide_credentials": True}}],
        }
    ],
    "consumers": [{"username": "dl-user", "keyauth_credentials": [{"key": "dl-key-0123456789"}]}],
}


def test_declarative_lifecycle(kong_dbless, admin_dbless, playbook):
    changed = copy.deepcopy(CONFIG)
    changed["services"][0]["routes"][0]["paths"] = ["/dl2"]

    def apply(config, **task):
        return {"name": "Apply", "ai_gateway.kong.kong_declarative": dict(config=config, **task)}

    results = playbook(
        kong_dbless.admin_url,
        [
            apply(CONFIG),
            apply(CONFIG),
            dict(apply(changed), check_mode=True),
            {"name": "Read", "ai_gateway.kong.kong_info": {"entities": ["routes"]}},
            apply(changed),
            {"name": "Absent", "ai_gateway.kong.kong_declarative": {"state": "absent"}},
            {"name": "Absent again", "ai_gateway.kong.kong_declarative": {"state": "absent"}},
            {
                "name": "Entity writes are refused in DB-less mode",
                "ai_gateway.kong.kong_service": {"name": "x", "host": "x.test"},
                "ignore_errors": True,
            },
        ],
    )
    applied, again, checked, read, change, absent, absent_again, refused = results
    assert applied["changed"] is True
    assert again["changed"] is False
    assert checked["changed"] is True
    assert checked["diff"] == {
        "before": {
            "routes": {"dl-route": {"name": "dl-route", "paths": ["/dl"], "service": "dl-svc"}}
        },
        "after": {
            "routes": {"dl-route": {"name": "dl-route", "paths": ["/dl2"], "service": "dl-svc"}}
        },
    }
    # Check mode left Kong on the first configuration.
    assert read["database"] == "off"
    assert read["status"]["configuration_hash"] == applied["configuration_hash"]
    assert [r["paths"] for r in read["entities"]["routes"]] == [["/dl"]]
    assert change["changed"] is True
    assert change["diff"] == checked["diff"]
    assert absent["changed"] is True
    assert absent_again["changed"] is False
    assert admin_dbless.get("/services/dl-svc") is None
    assert refused["failed"] is True
    assert "use ai_gateway.kong.kong_declarative" in refused["msg"]
