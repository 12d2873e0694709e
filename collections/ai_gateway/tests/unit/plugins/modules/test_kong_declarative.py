"""kong_declarative: apply, unchanged via the config hash, diff, check mode, errors."""

import json

import pytest
from ansible_collections.ai_gateway.kong.plugins.modules import kong_declarative

URL = "http://kong.test:8001"
CONFIG = {
    "_format_version": "3.0",
    "services": [
        {"name": "llm", "url": "http://u.test:8080", "routes": [{"name": "llm", "paths": ["/llm"]}]}
    ],
    "consumers": [{"username": "alice", "keyauth_credentials": [{"key": "vault-key-123"}]}],
}


@pytest.fixture
def dbless(kong):
    kong.database = "off"
    return kong


def test_apply_then_unchanged(dbless, run_module):
    result = run_module(kong_declarative, {"admin_url": URL, "config": CONFIG})
    assert result["changed"] is True
    posts = [c for c in dbless.calls if c[0] == "POST"]
    assert posts[0][1] == "/config"
    assert json.loads(posts[0][2]["config"]) == CONFIG
    assert result["configuration_hash"] == dbless.config_hash
    assert result["entities"] == {
        "services": 1,
        "routes": 1,
        "consumers": 1,
        "keyauth_credentials": 1,
    }
    dbless.calls.clear()
    again = run_module(kong_declarative, {"admin_url": URL, "config": CONFIG})
    assert again["changed"] is False
    assert [c for c in dbless.calls if c[0] == "POST"] == []


def test_diff_shows_the_changed_entity_field_and_masks_keys(dbless, run_module):
    run_module(kong_declarative, {"admin_url": URL, "config": CONFIG})
    changed = json.loads(json.dumps(CONFIG))
    changed["services"][0]["routes"][0]["paths"] = ["/v2"]
    # What GET /config shows: the config Kong runs, with ids and defaults filled in.
    dbless.config_text = json.dumps(
        {
            "_format_version": "3.0",
            "services": [
                {"id": "s1", "name": "llm", "protocol": "http", "host": "u.test", "port": 8080}
            ],
            "routes": [
                {
                    "id": "r1",
                    "name": "llm",
                    "paths": ["/llm"],
                    "service": {"id": "s1"},
                    "strip_path": True,
                }
            ],
            "consumers": [{"id": "c1", "username": "alice"}],
            "keyauth_credentials": [{"id": "k1", "key": "vault-key-123", "consumer": {"id": "c1"}}],
        }
    )
    result = run_module(kong_declarative, {"admin_url": URL, "config": changed}, check=True)
    assert result["changed"] is True
    assert result["diff"]["before"] == {
        "routes": {"llm": {"name": "llm", "paths": ["/llm"], "service": "llm"}}
    }
    assert result["diff"]["after"] == {
        "routes": {"llm": {"name": "llm", "paths": ["/v2"], "service": "llm"}}
    }
    assert "vault-key-123" not in json.dumps(result["diff"])


def test_check_mode_does_not_post(dbless, run_module):
    result = run_module(kong_declarative, {"admin_url": URL, "config": CONFIG}, check=True)
    assert result["changed"] is True
    assert [c for c in dbless.calls if c[0] == "POST"] == []


def test_yaml_text_and_absent(dbless, run_module):
    text = "_format_version: '3.0'\nconsumers:\n  - username: bob\n"
    assert run_module(kong_declarative, {"admin_url": URL, "config": text})["changed"] is True
    assert dbless.config_text == text
    assert run_module(kong_declarative, {"admin_url": URL, "config": text})["changed"] is False
    gone = run_module(kong_declarative, {"admin_url": URL, "state": "absent"})
    assert gone["changed"] is True
    assert json.loads(dbless.config_text) == {"_format_version": "3.0"}
    assert dbless.config_hash == "0" * 32
    assert run_module(kong_declarative, {"admin_url": URL, "state": "absent"})["changed"] is False


def test_invalid_config_error(dbless, run_module):
    dbless.errors[("POST", "/config")] = (
        400,
        {
            "code": 14,
            "name": "invalid declarative configuration",
            "message": "declarative config is invalid: {}",
            "fields": {"services": [{"port": "value should be between 0 and 65535"}]},
        },
    )
    result = run_module(kong_declarative, {"admin_url": URL, "config": CONFIG})
    assert result["failed"] is True
    assert "invalid declarative configuration" in result["msg"]
    assert '"port": "value should be between 0 and 65535"' in result["msg"]


def test_refuses_a_kong_with_a_database(kong, run_module):
    result = run_module(kong_declarative, {"admin_url": URL, "config": CONFIG})
    assert result["failed"] is True
    assert "uses database=postgres" in result["msg"]


def test_post_with_check_hash_decides_when_status_has_no_hash(dbless, run_module):
    run_module(kong_declarative, {"admin_url": URL, "config": CONFIG})
    # A node that does not publish configuration_hash: Kong's check_hash answers 304.
    dbless.errors[("GET", "/status")] = (200, {"server": {}})
    dbless.calls.clear()
    result = run_module(kong_declarative, {"admin_url": URL, "config": CONFIG})
    assert result["changed"] is False
    posts = [c for c in dbless.calls if c[0] == "POST"]
    assert len(posts) == 1


SECRET_CONFIG = {
    "_format_version": "3.0",
    "services": [
        {
            "name": "llm",
            "url": "http://u.test:8080",
            "routes": [
                {
                    "name": "llm",
                    "paths": ["/llm"],
                    "plugins": [
                        {
                            "name": "request-transformer",
                            "config": {"add": {"headers": ["X-Gateway-Secret:decl-0ld-s3cret"]}},
                        }
                    ],
                }
            ],
            "plugins": [
                {"name": "rate-limiting", "config": {"minute": 5, "redis_password": "decl-pw"}}
            ],
        }
    ],
    "consumers": [{"username": "alice", "keyauth_credentials": [{"key": "decl-key-123"}]}],
}


def test_nested_secrets_are_masked_and_a_changed_one_shows(dbless, run_module):
    dbless.config_text = json.dumps(SECRET_CONFIG)
    changed = json.loads(json.dumps(SECRET_CONFIG).replace("decl-0ld", "decl-new"))
    result = run_module(kong_declarative, {"admin_url": URL, "config": changed}, check=True)
    assert result["changed"] is True
    text = json.dumps(result)
    for secret in ("decl-0ld-s3cret", "decl-new-s3cret", "decl-pw", "decl-key-123"):
        assert secret not in text
    # Only the request-transformer differs, and its header value differs by fingerprint.
    assert list(result["diff"]["after"]) == ["plugins"]
    (name,) = result["diff"]["after"]["plugins"]
    before = result["diff"]["before"]["plugins"][name]["config"]["add"]["headers"][0]
    after = result["diff"]["after"]["plugins"][name]["config"]["add"]["headers"][0]
    assert before.startswith("X-Gateway-Secret:******** (")
    assert before != after


def test_a_missing_config_endpoint_is_a_failure(dbless, run_module):
    dbless.errors[("GET", "/config")] = (404, {"message": "Not found"})
    result = run_module(kong_declarative, {"admin_url": URL, "config": CONFIG})
    assert result["failed"] is True
    assert "GET /config failed: HTTP 404" in result["msg"]
    assert [c for c in dbless.calls if c[0] == "POST"] == []


UPSTREAMS = {
    "_format_version": "3.0",
    "upstreams": [
        {
            "name": "llm.upstream",
            "healthchecks": {"active": {"http_path": "/health/ready"}},
            "targets": [{"target": "10.0.0.1:8080"}, {"target": "010.0.0.2", "weight": 0}],
        }
    ],
    "services": [{"name": "llm", "host": "llm.upstream", "port": 80}],
}


def test_upstreams_with_targets_compare_as_kong_stores_them(dbless, run_module):
    # What GET /config shows: flat targets with ids, Kong's port and defaults filled in.
    dbless.config_text = json.dumps(
        {
            "_format_version": "3.0",
            "upstreams": [
                {
                    "id": "u1",
                    "name": "llm.upstream",
                    "algorithm": "round-robin",
                    "healthchecks": {"active": {"http_path": "/health/ready", "timeout": 1}},
                }
            ],
            "targets": [
                {"id": "t1", "target": "10.0.0.1:8080", "weight": 100, "upstream": {"id": "u1"}},
                {"id": "t2", "target": "10.0.0.2:8000", "weight": 0, "upstream": {"id": "u1"}},
            ],
            "services": [{"id": "s1", "name": "llm", "host": "llm.upstream", "port": 80}],
        }
    )
    result = run_module(kong_declarative, {"admin_url": URL, "config": UPSTREAMS}, check=True)
    assert result["diff"] == {"before": {}, "after": {}}
    changed = json.loads(json.dumps(UPSTREAMS))
    changed["upstreams"][0]["targets"][1]["weight"] = 100
    result = run_module(kong_declarative, {"admin_url": URL, "config": changed}, check=True)
    assert result["diff"]["before"] == {
        "targets": {
            "10.0.0.2:8000@llm.upstream": {
                "target": "10.0.0.2:8000",
                "upstream": "llm.upstream",
                "weight": 0,
            }
        }
    }
    assert result["diff"]["after"]["targets"]["10.0.0.2:8000@llm.upstream"]["weight"] == 100
    assert run_module(kong_declarative, {"admin_url": URL, "config": UPSTREAMS})["entities"] == {
        "upstreams": 1,
        "targets": 2,
        "services": 1,
    }


def test_an_upstream_named_by_an_ip_address_is_refused_before_posting(dbless, run_module):
    config = {"_format_version": "3.0", "upstreams": [{"name": "x.test"}, {"name": "10.0.0.9"}]}
    result = run_module(kong_declarative, {"admin_url": URL, "config": config})
    assert result["failed"] is True
    assert result["msg"].startswith("config upstreams[1].name: '10.0.0.9' is an IP address")
    assert dbless.calls == []
