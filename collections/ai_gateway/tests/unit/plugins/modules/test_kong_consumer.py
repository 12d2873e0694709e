"""kong_consumer: create, no-op, update with diff, check mode, delete, Kong error, custom_id."""

from ansible_collections.ai_gateway.kong.plugins.modules import kong_consumer

URL = "http://kong.test:8001"
ARGS = {"admin_url": URL, "username": "alice", "custom_id": "e-42", "tags": ["team-a"]}


def test_create_and_no_op(kong, run_module):
    result = run_module(kong_consumer, ARGS)
    assert result["changed"] is True
    assert kong.writes() == [
        ("PUT", "/consumers/alice", {"username": "alice", "custom_id": "e-42", "tags": ["team-a"]})
    ]
    assert result["consumer"]["username"] == "alice"
    kong.calls.clear()
    assert run_module(kong_consumer, ARGS)["changed"] is False
    assert kong.writes() == []


def test_update_diff(kong, run_module):
    run_module(kong_consumer, ARGS)
    result = run_module(kong_consumer, dict(ARGS, custom_id="e-43"))
    assert result["diff"]["before"]["custom_id"] == "e-42"
    assert result["diff"]["after"]["custom_id"] == "e-43"
    assert {
        k
        for k in result["diff"]["after"]
        if result["diff"]["before"][k] != result["diff"]["after"][k]
    } == {"custom_id"}


def test_check_mode(kong, run_module):
    result = run_module(kong_consumer, ARGS, check=True)
    assert result["changed"] is True
    assert kong.rows("consumers") == []


def test_delete(kong, run_module):
    run_module(kong_consumer, ARGS)
    result = run_module(kong_consumer, {"admin_url": URL, "username": "alice", "state": "absent"})
    assert result["changed"] is True
    assert kong.rows("consumers") == []


def test_custom_id_only_consumer_is_found_again(kong, run_module):
    args = {"admin_url": URL, "custom_id": "svc-7"}
    assert run_module(kong_consumer, args)["changed"] is True
    assert kong.writes()[0][0:2] == ("POST", "/consumers")
    assert run_module(kong_consumer, args)["changed"] is False
    assert len(kong.rows("consumers")) == 1


def test_kong_conflict_error(kong, run_module):
    kong.add("consumers", username="bob", custom_id="e-42")
    result = run_module(kong_consumer, ARGS)
    assert result["failed"] is True
    assert "HTTP 409 conflict" in result["msg"]
    assert '"custom_id": "e-42"' in result["msg"]


def test_bulk_200_consumers_converge_in_one_listing(kong, run_module):
    args = {
        "admin_url": URL,
        "select_tags": ["gw"],
        "entities": [{"username": "u%03d" % i} for i in range(200)],
    }
    assert run_module(kong_consumer, args)["changed"] is True
    kong.calls.clear()
    result = run_module(kong_consumer, args)
    assert result["changed"] is False
    assert len(result["entities"]) == 200
    assert len(kong.calls) == 2  # GET / and one page of /consumers
