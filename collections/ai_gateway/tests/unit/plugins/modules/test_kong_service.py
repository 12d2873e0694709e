"""kong_service: create, no-op, update with diff, check mode, delete, Kong error, bulk and prune."""

from ansible_collections.ai_gateway.kong.plugins.modules import kong_service

ARGS = {"admin_url": "http://kong.test:8001", "name": "llm", "url": "http://upstream.test:8080/v1"}


def test_create_writes_by_name_and_returns_the_stored_entity(kong, run_module):
    result = run_module(kong_service, ARGS)
    assert result["changed"] is True
    assert kong.writes() == [
        (
            "PUT",
            "/services/llm",
            {
                "name": "llm",
                "protocol": "http",
                "host": "upstream.test",
                "port": 8080,
                "path": "/v1",
                "retries": 5,
                "connect_timeout": 60000,
                "write_timeout": 60000,
                "read_timeout": 60000,
                "enabled": True,
            },
        ),
    ]
    assert result["service"]["id"] == kong.rows("services")[0]["id"]
    assert result["diff"]["before"] is None
    assert result["diff"]["after"]["host"] == "upstream.test"


def test_second_run_is_a_no_op(kong, run_module):
    run_module(kong_service, ARGS)
    kong.calls.clear()
    result = run_module(kong_service, ARGS)
    assert result["changed"] is False
    assert kong.writes() == []


def test_update_shows_exactly_the_changed_field(kong, run_module):
    run_module(kong_service, ARGS)
    result = run_module(kong_service, dict(ARGS, retries=2))
    assert result["changed"] is True
    before, after = result["diff"]["before"], result["diff"]["after"]
    assert {k for k in after if before[k] != after[k]} == {"retries"}
    assert kong.rows("services")[0]["retries"] == 2


def test_options_left_out_return_to_kong_defaults(kong, run_module):
    run_module(kong_service, dict(ARGS, retries=2, tags=["a"]))
    result = run_module(kong_service, ARGS)
    assert result["changed"] is True
    assert kong.rows("services")[0]["retries"] == 5
    assert kong.rows("services")[0]["tags"] is None


def test_empty_list_and_null_are_the_same(kong, run_module):
    kong.add("services", name="llm", host="upstream.test", port=8080, path="/v1", tags=[])
    assert run_module(kong_service, dict(ARGS, tags=[]))["changed"] is False


def test_check_mode_reports_the_change_and_writes_nothing(kong, run_module):
    result = run_module(kong_service, ARGS, check=True)
    assert result["changed"] is True
    assert kong.writes() == []
    assert kong.rows("services") == []


def test_delete_and_delete_again(kong, run_module):
    run_module(kong_service, ARGS)
    result = run_module(
        kong_service, {"admin_url": ARGS["admin_url"], "name": "llm", "state": "absent"}
    )
    assert result["changed"] is True
    assert result["service"] is None
    assert kong.rows("services") == []
    again = run_module(
        kong_service, {"admin_url": ARGS["admin_url"], "name": "llm", "state": "absent"}
    )
    assert again["changed"] is False


def test_kong_error_fails_with_kongs_fields(kong, run_module):
    body = {
        "code": 2,
        "name": "schema violation",
        "message": "schema violation (port: value should be between 0 and 65535)",
        "fields": {"port": "value should be between 0 and 65535"},
    }
    kong.errors[("PUT", "/services/llm")] = (400, body)
    result = run_module(kong_service, dict(ARGS, url=None, host="h", port=70000))
    assert result["failed"] is True
    assert '{"port": "value should be between 0 and 65535"}' in result["msg"]
    assert result["kong_error"] == body


def test_url_and_host_exclude_each_other(kong, run_module):
    result = run_module(kong_service, dict(ARGS, host="other"))
    assert result["failed"] is True
    assert "url is a shorthand" in result["msg"]


def test_bulk_mode_reads_once_and_prunes_only_owned_entities(kong, run_module):
    kong.add("services", name="old", host="o.test", tags=["team"])
    kong.add("services", name="foreign", host="f.test", tags=["other"])
    kong.add("services", name="untagged", host="u.test")
    args = {
        "admin_url": ARGS["admin_url"],
        "select_tags": ["team"],
        "prune": True,
        "entities": [
            {"name": "a", "host": "a.test"},
            {"name": "b", "host": "b.test", "tags": ["x"]},
        ],
    }
    result = run_module(kong_service, args)
    assert result["changed"] is True
    assert sorted(r["name"] for r in kong.rows("services")) == ["a", "b", "foreign", "untagged"]
    assert [p["name"] for p in result["pruned"]] == ["old"]
    assert kong.rows("services")[-1]["tags"] == ["team", "x"]
    assert [e["name"] for e in result["entities"]] == ["a", "b"]
    kong.calls.clear()
    again = run_module(kong_service, args)
    assert again["changed"] is False
    assert kong.writes() == []
    # One GET / and one listing per collection, not one GET per entity.
    assert len(kong.calls) == 3


def test_prune_requires_select_tags(kong, run_module):
    result = run_module(kong_service, dict(ARGS, prune=True))
    assert result["failed"] is True
