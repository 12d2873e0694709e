"""kong_key_auth: given and generated keys, stable identity, keys masked everywhere."""

import json

from ansible_collections.ai_gateway.kong.plugins.modules import kong_key_auth

URL = "http://kong.test:8001"
SECRET = "s3cr3t-from-vault-0123456789abcdef"


def consumer(kong, name="alice"):
    return kong.add("consumers", username=name)


def test_given_key_create_no_op_and_masked_diff(kong, run_module):
    alice = consumer(kong)
    args = {"admin_url": URL, "consumer": "alice", "key": SECRET}
    result = run_module(kong_key_auth, args)
    assert result["changed"] is True
    assert kong.writes() == [
        ("POST", "/consumers/%s/key-auth" % alice["id"], {"tags": [], "key": SECRET})
    ]
    assert SECRET not in json.dumps(result)
    assert result["diff"]["after"]["key"].startswith("******** (")
    assert result["credential"]["key"] == "********"
    kong.calls.clear()
    assert run_module(kong_key_auth, args)["changed"] is False
    assert kong.writes() == []


def test_generated_key_is_never_returned_and_found_again_by_tags(kong, run_module):
    consumer(kong)
    args = {"admin_url": URL, "consumer": "alice", "tags": ["primary"], "select_tags": ["gw"]}
    first = run_module(kong_key_auth, args)
    (stored,) = kong.rows("key-auths")
    key = stored["key"]
    assert len(key) == 32
    assert first["credential"]["id"] == stored["id"]
    assert first["credential"]["key"] == "********"
    assert key not in json.dumps(first)
    for _run in range(10):
        again = run_module(kong_key_auth, args)
        assert again["changed"] is False
        assert key not in json.dumps(again)
    assert [r["key"] for r in kong.rows("key-auths")] == [key]


def test_update_tags_keeps_the_key(kong, run_module):
    consumer(kong)
    run_module(kong_key_auth, {"admin_url": URL, "consumer": "alice", "key": SECRET})
    result = run_module(
        kong_key_auth, {"admin_url": URL, "consumer": "alice", "key": SECRET, "tags": ["x"]}
    )
    assert result["changed"] is True
    assert kong.writes()[-1][0] == "PATCH"
    assert result["diff"]["before"]["tags"] is None
    assert result["diff"]["after"]["tags"] == ["x"]
    assert kong.rows("key-auths")[0]["key"] == SECRET


def test_check_mode(kong, run_module):
    consumer(kong)
    result = run_module(
        kong_key_auth, {"admin_url": URL, "consumer": "alice", "key": SECRET}, check=True
    )
    assert result["changed"] is True
    assert kong.writes() == []


def test_delete_and_again(kong, run_module):
    consumer(kong)
    args = {"admin_url": URL, "consumer": "alice", "key": SECRET}
    run_module(kong_key_auth, args)
    assert run_module(kong_key_auth, dict(args, state="absent"))["changed"] is True
    assert kong.rows("key-auths") == []
    assert run_module(kong_key_auth, dict(args, state="absent"))["changed"] is False


def test_unknown_consumer_is_an_error(kong, run_module):
    result = run_module(kong_key_auth, {"admin_url": URL, "consumer": "nobody", "key": SECRET})
    assert result["failed"] is True
    assert "consumer 'nobody' not found" in result["msg"]


def test_kong_error(kong, run_module):
    alice = consumer(kong)
    kong.errors[("POST", "/consumers/%s/key-auth" % alice["id"])] = (
        409,
        {
            "code": 5,
            "name": "unique constraint violation",
            "message": "UNIQUE violation detected on '{key=\"x\"}'",
            "fields": {"key": "x"},
        },
    )
    result = run_module(kong_key_auth, {"admin_url": URL, "consumer": "alice", "key": "x"})
    assert result["failed"] is True
    assert "HTTP 409" in result["msg"]
    # Kong's body quotes the key; the masked copy is returned, and the message quotes it masked.
    assert result["kong_error"]["fields"] == {"key": "********"}
    assert '"key": "********"' in result["msg"]


def test_ambiguous_generated_credentials_are_refused(kong, run_module):
    alice = consumer(kong)
    kong.add("key-auths", consumer={"id": alice["id"]}, key="k1")
    kong.add("key-auths", consumer={"id": alice["id"]}, key="k2")
    result = run_module(kong_key_auth, {"admin_url": URL, "consumer": "alice"})
    assert result["failed"] is True
    assert "has 2 key-auth credentials" in result["msg"]


def test_bulk_with_prune(kong, run_module):
    for name in ("alice", "bob", "carol"):
        consumer(kong, name)
    carol = kong.rows("consumers")[2]
    kong.add("key-auths", consumer={"id": carol["id"]}, key="old", tags=["gw"])
    kong.add("key-auths", consumer={"id": carol["id"]}, key="manual")
    args = {
        "admin_url": URL,
        "select_tags": ["gw"],
        "prune": True,
        "entities": [{"consumer": "alice", "key": SECRET}, {"consumer": "bob"}],
    }
    result = run_module(kong_key_auth, args)
    assert result["changed"] is True
    assert sorted(
        r["key"] for r in kong.rows("key-auths") if r["consumer"]["id"] == carol["id"]
    ) == ["manual"]
    assert "old" not in json.dumps(result["diff"])
    assert [p["key"] for p in result["pruned"]] == ["********"]
    assert [e["key"] for e in result["entities"]] == ["********", "********"]
    assert SECRET not in json.dumps(result)
    assert run_module(kong_key_auth, args)["changed"] is False
