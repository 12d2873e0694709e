"""kong_route: create, no-op, update with diff, check mode, delete, Kong error; names required."""

from ansible_collections.ai_gateway.kong.plugins.modules import kong_route

URL = "http://kong.test:8001"
ARGS = {
    "admin_url": URL,
    "name": "llm",
    "service": "llm",
    "paths": ["/llm", "~/v[0-9]+/chat$"],
    "methods": ["POST", "GET"],
    "response_buffering": False,
}


def with_service(kong):
    return kong.add("services", name="llm", host="upstream.test")


def test_create_resolves_the_service_by_name(kong, run_module):
    service = with_service(kong)
    result = run_module(kong_route, ARGS)
    assert result["changed"] is True
    assert kong.writes()[0][0:2] == ("PUT", "/routes/llm")
    stored = kong.rows("routes")[0]
    assert stored["service"] == {"id": service["id"]}
    assert stored["paths"] == ["/llm", "~/v[0-9]+/chat$"]
    assert result["route"]["response_buffering"] is False


def test_second_run_is_a_no_op_even_with_methods_reordered(kong, run_module):
    with_service(kong)
    run_module(kong_route, ARGS)
    kong.calls.clear()
    result = run_module(kong_route, dict(ARGS, methods=["GET", "POST"]))
    assert result["changed"] is False
    assert kong.writes() == []


def test_update_diff_shows_the_field(kong, run_module):
    with_service(kong)
    run_module(kong_route, ARGS)
    result = run_module(kong_route, dict(ARGS, strip_path=False))
    before, after = result["diff"]["before"], result["diff"]["after"]
    assert {k for k in after if before[k] != after[k]} == {"strip_path"}
    assert kong.rows("routes")[0]["strip_path"] is False


def test_check_mode_writes_nothing(kong, run_module):
    with_service(kong)
    result = run_module(kong_route, ARGS, check=True)
    assert result["changed"] is True
    assert kong.writes() == []


def test_check_mode_with_a_service_that_an_earlier_task_would_create(kong, run_module):
    result = run_module(kong_route, ARGS, check=True)
    assert result["changed"] is True
    assert result["failed"] is False
    assert kong.writes() == []


def test_missing_service_fails_outside_check_mode(kong, run_module):
    result = run_module(kong_route, ARGS)
    assert result["failed"] is True
    assert "service 'llm' not found" in result["msg"]


def test_delete(kong, run_module):
    with_service(kong)
    run_module(kong_route, ARGS)
    result = run_module(kong_route, {"admin_url": URL, "name": "llm", "state": "absent"})
    assert result["changed"] is True
    assert kong.rows("routes") == []


def test_kong_error(kong, run_module):
    with_service(kong)
    kong.errors[("PUT", "/routes/llm")] = (
        400,
        {
            "code": 2,
            "name": "schema violation",
            "message": "schema violation (x)",
            "fields": {"@entity": ["must set one of 'methods', 'hosts'"]},
        },
    )
    result = run_module(kong_route, ARGS)
    assert result["failed"] is True
    assert "\"@entity\": [\"must set one of 'methods', 'hosts'\"]" in result["msg"]


def test_bulk_entries_need_a_name(kong, run_module):
    with_service(kong)
    result = run_module(
        kong_route, {"admin_url": URL, "entities": [{"paths": ["/x"], "service": "llm"}]}
    )
    assert result["failed"] is True
    assert "name is required for every route" in result["msg"]
