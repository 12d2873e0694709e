"""kong_plugin: scoped identity, config compared after the plugin's defaults, secrets masked."""

import json

from ansible_collections.ai_gateway.kong.plugins.modules import kong_plugin

URL = "http://kong.test:8001"
ARGS = {"admin_url": URL, "name": "rate-limiting", "service": "llm", "config": {"minute": 60}}


def service(kong):
    return kong.add("services", name="llm", host="upstream.test")


def test_create_scoped_plugin(kong, run_module):
    svc = service(kong)
    result = run_module(kong_plugin, ARGS)
    assert result["changed"] is True
    method, path, body = kong.writes()[0]
    assert (method, path) == ("POST", "/plugins")
    assert body["service"] == {"id": svc["id"]}
    assert body["config"] == {"minute": 60}
    assert result["plugin"]["config"]["policy"] == "local"


def test_no_op_when_only_defaults_differ(kong, run_module):
    service(kong)
    run_module(kong_plugin, ARGS)
    kong.calls.clear()
    result = run_module(kong_plugin, dict(ARGS, config={"minute": 60, "policy": "local"}))
    assert result["changed"] is False
    assert kong.writes() == []


def test_update_puts_by_id_and_diffs_the_config_key(kong, run_module):
    service(kong)
    first = run_module(kong_plugin, ARGS)
    result = run_module(kong_plugin, dict(ARGS, config={"minute": 30}))
    assert result["changed"] is True
    assert kong.writes()[-1][0:2] == ("PUT", "/plugins/%s" % first["plugin"]["id"])
    assert result["diff"]["before"]["config"]["minute"] == 60
    assert result["diff"]["after"]["config"]["minute"] == 30
    assert len(kong.rows("plugins")) == 1


def test_removed_config_key_goes_back_to_the_default(kong, run_module):
    service(kong)
    run_module(kong_plugin, dict(ARGS, config={"minute": 60, "policy": "redis"}))
    result = run_module(kong_plugin, ARGS)
    assert result["changed"] is True
    assert kong.rows("plugins")[0]["config"]["policy"] == "local"


def test_secrets_in_config_are_masked_in_the_diff(kong, run_module):
    service(kong)
    result = run_module(
        kong_plugin, dict(ARGS, config={"minute": 5, "redis": {"host": "r", "password": "hunter2"}})
    )
    assert result["changed"] is True
    assert "hunter2" not in json.dumps(result["diff"])


def test_check_mode(kong, run_module):
    service(kong)
    result = run_module(kong_plugin, ARGS, check=True)
    assert result["changed"] is True
    assert kong.writes() == []


def test_delete_global_plugin(kong, run_module):
    kong.add("plugins", name="key-auth", config={})
    kong.add("plugins", name="key-auth", config={}, service={"id": service(kong)["id"]})
    result = run_module(kong_plugin, {"admin_url": URL, "name": "key-auth", "state": "absent"})
    assert result["changed"] is True
    remaining = kong.rows("plugins")
    assert len(remaining) == 1
    assert remaining[0]["service"] is not None


def test_instance_name_identifies_the_plugin(kong, run_module):
    service(kong)
    args = dict(ARGS, instance_name="llm-limit")
    run_module(kong_plugin, args)
    kong.calls.clear()
    assert run_module(kong_plugin, args)["changed"] is False
    assert kong.calls[1][1] == "/plugins/llm-limit"


def test_unknown_plugin_error(kong, run_module):
    kong.errors[("POST", "/plugins")] = (
        400,
        {
            "code": 2,
            "name": "schema violation",
            "message": "schema violation (name: plugin 'nope' not enabled)",
            "fields": {
                "name": "plugin 'nope' not enabled; add it to the 'plugins' configuration property"
            },
        },
    )
    result = run_module(kong_plugin, {"admin_url": URL, "name": "nope"})
    assert result["failed"] is True
    assert "add it to the 'plugins' configuration property" in result["msg"]


def test_plugin_without_published_schema_compares_what_is_given(kong, run_module):
    kong.add("plugins", name="custom", config={"a": 1, "b": 2})
    assert (
        run_module(kong_plugin, {"admin_url": URL, "name": "custom", "config": {"a": 1}})["changed"]
        is False
    )
    assert (
        run_module(kong_plugin, {"admin_url": URL, "name": "custom", "config": {"a": 3}})["changed"]
        is True
    )
    assert kong.rows("plugins")[0]["config"] == {"a": 3, "b": 2}


def test_delete_when_its_service_is_gone_is_unchanged(kong, run_module):
    result = run_module(kong_plugin, dict(ARGS, state="absent"))
    assert result["failed"] is False
    assert result["changed"] is False
