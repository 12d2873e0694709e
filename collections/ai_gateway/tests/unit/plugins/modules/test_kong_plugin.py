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


def test_legacy_fields_kong_echoes_are_not_a_change(kong, run_module):
    # Kong 3.9 echoes rate-limiting's deprecated redis_* shorthands on every read.
    service(kong)
    args = dict(ARGS, config={"minute": 60, "policy": "redis", "redis": {"host": "r"}})
    run_module(kong_plugin, args)
    stored = kong.rows("plugins")[0]["config"]
    stored.update(redis_host="r", redis_port=6379, redis_database=0, redis_timeout=2000)
    kong.calls.clear()
    result = run_module(kong_plugin, args)
    assert result["changed"] is False
    assert kong.writes() == []


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


def test_schema_violation_error(kong, run_module):
    kong.errors[("POST", "/plugins")] = (
        400,
        {
            "code": 2,
            "name": "schema violation",
            "message": "schema violation (config.minute: expected a number)",
            "fields": {"config": {"minute": "expected a number"}},
        },
    )
    result = run_module(kong_plugin, dict(ARGS, service=None))
    assert result["failed"] is True
    assert '"minute": "expected a number"' in result["msg"]


def test_plugin_kong_does_not_load_fails_before_any_write(kong, run_module):
    # Kong answers 404 {"message": "No plugin named 'nope'"} on its schema: not "absent".
    result = run_module(kong_plugin, {"admin_url": URL, "name": "nope", "config": {"a": 1}})
    assert result["failed"] is True
    assert "Kong does not load the plugin 'nope'" in result["msg"]
    assert "No plugin named 'nope'" in result["msg"]
    assert result["status"] == 404
    assert kong.writes() == []


def test_a_plugin_kong_does_not_load_can_still_be_deleted(kong, run_module):
    kong.add("plugins", name="custom", config={"a": 1})
    result = run_module(kong_plugin, {"admin_url": URL, "name": "custom", "state": "absent"})
    assert result["changed"] is True
    assert kong.rows("plugins") == []


def test_delete_when_its_service_is_gone_is_unchanged(kong, run_module):
    result = run_module(kong_plugin, dict(ARGS, state="absent"))
    assert result["failed"] is False
    assert result["changed"] is False


TRANSFORMER = {
    "admin_url": URL,
    "name": "request-transformer",
    "instance_name": "llm-secret-header",
    "config": {
        "remove": {"headers": ["X-Gateway-Secret"]},
        "add": {"headers": ["X-Gateway-Secret:shared-0ld-s3cret", "X-Tenant:tenant-s3cret"]},
    },
    "secret_headers": ["X-Tenant"],
}


def rotated(args, old, new):
    config = json.loads(json.dumps(args["config"]).replace(old, new))
    return dict(args, config=config)


def test_secret_header_values_never_leave_the_module(kong, run_module):
    created = run_module(kong_plugin, TRANSFORMER)
    assert created["changed"] is True
    assert kong.rows("plugins")[0]["config"]["add"]["headers"][0].endswith("shared-0ld-s3cret")
    assert created["plugin"]["config"]["add"]["headers"] == [
        "X-Gateway-Secret:********",
        "X-Tenant:********",
    ]
    assert run_module(kong_plugin, TRANSFORMER)["changed"] is False

    result = run_module(kong_plugin, rotated(TRANSFORMER, "shared-0ld", "shared-new"))
    assert result["changed"] is True
    text = json.dumps(result)
    for secret in ("shared-0ld-s3cret", "shared-new-s3cret", "tenant-s3cret"):
        assert secret not in text
    # The diff shows that the gateway secret changed, and that the tenant header did not.
    (old_secret, old_tenant) = result["diff"]["before"]["config"]["add"]["headers"]
    (new_secret, new_tenant) = result["diff"]["after"]["config"]["add"]["headers"]
    assert old_secret.startswith("X-Gateway-Secret:******** (")
    assert old_secret != new_secret
    assert old_tenant == new_tenant


def test_returned_plugin_and_pruned_plugins_mask_passwords(kong, run_module):
    service(kong)
    kong.add(
        "plugins", name="rate-limiting", config={"redis": {"password": "pruned-pw"}}, tags=["gw"]
    )
    args = {
        "admin_url": URL,
        "select_tags": ["gw"],
        "prune": True,
        "entities": [dict(ARGS, config={"minute": 5, "redis": {"host": "r", "password": "rl-pw"}})],
    }
    for entity in args["entities"]:
        entity.pop("admin_url")
    result = run_module(kong_plugin, args)
    assert result["changed"] is True
    assert result["entities"][0]["config"]["redis"]["password"] == "********"
    assert result["pruned"][0]["config"]["redis"]["password"] == "********"
    assert "rl-pw" not in json.dumps(result)
    assert "pruned-pw" not in json.dumps(result)
