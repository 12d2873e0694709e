"""The one masker: Kong's secret fields at any depth, secret header values, fingerprints in diffs,
and every secret handed to Ansible's no_log_values."""

import json

from ansible_collections.ai_gateway.kong.plugins.module_utils.masking import (
    MASK,
    Masker,
    is_secret_name,
)

PLUGIN = {
    "name": "rate-limiting",
    "enabled": True,
    "config": {
        "minute": 60,
        "redis_password": "flat-redis-pw",
        "redis": {"host": "r.test", "port": 6379, "password": "nested-redis-pw", "ssl": False},
        "secret_is_base64": True,
        "username": None,
    },
}
TRANSFORMER = {
    "name": "request-transformer",
    "config": {
        "add": {"headers": ["X-Gateway-Secret:shared-s3cret", "X-Plain:visible-value"]},
        "append": {"headers": ["X-Custom:custom-s3cret"], "querystring": ["api_key:qs-s3cret"]},
        "replace": {"headers": ["Authorization:Bearer repl-s3cret"]},
        "remove": {"headers": ["X-Gateway-Secret", "apikey"]},
        "rename": {"headers": ["X-Token-Old:X-Token-New"]},
    },
}
SECRETS = (
    "flat-redis-pw",
    "nested-redis-pw",
    "shared-s3cret",
    "custom-s3cret",
    "qs-s3cret",
    "repl-s3cret",
)


class FakeModule:
    def __init__(self, secret_headers=()):
        self.params = {"secret_headers": list(secret_headers)}
        self.no_log_values = set()


def test_kong_secret_fields_are_masked_at_any_depth_and_the_rest_kept():
    out = Masker().returned([PLUGIN, {"consumer": {"id": "c"}, "key": "k3y-value"}])
    config = out[0]["config"]
    assert config["redis"] == {"host": "r.test", "port": 6379, "password": MASK, "ssl": False}
    assert config["redis_password"] == MASK
    assert config["secret_is_base64"] is True  # a flag named like a secret is no secret
    assert config["username"] is None  # "not set" stays visible
    assert config["minute"] == 60
    assert out[1] == {"consumer": {"id": "c"}, "key": MASK}
    assert PLUGIN["config"]["redis"]["password"] == "nested-redis-pw"  # a copy, not in place


def test_transformer_values_of_secret_headers_are_masked_names_kept():
    module = FakeModule(secret_headers=["x-custom"])
    config = Masker.from_module(module).returned(TRANSFORMER)["config"]
    assert config["add"]["headers"] == ["X-Gateway-Secret:" + MASK, "X-Plain:visible-value"]
    assert config["append"]["headers"] == ["X-Custom:" + MASK]
    assert config["append"]["querystring"] == ["api_key:" + MASK]
    assert config["replace"]["headers"] == ["Authorization:" + MASK]
    assert config["remove"] == TRANSFORMER["config"]["remove"]
    assert config["rename"] == TRANSFORMER["config"]["rename"]


def test_a_header_is_secret_only_when_listed_or_named_like_a_credential():
    masker = Masker()
    plain = masker.returned(TRANSFORMER)["config"]["append"]["headers"]
    assert plain == ["X-Custom:custom-s3cret"]  # not listed in secret_headers
    for name in ("Authorization", "Cookie", "X-Api-Key", "apikey", "X-Auth-Token", "X-Secret"):
        assert is_secret_name(name)
    for name in ("Content-Type", "X-Request-Id", "Host", "X-Forwarded-For", "Monkey"):
        assert not is_secret_name(name)
    assert is_secret_name("X-Tenant", ["x-TENANT"])


def test_route_headers_map():
    route = {"headers": {"x-secret": ["a-route-s3cret"], "x-version": ["2"]}}
    assert Masker().returned(route) == {"headers": {"x-secret": [MASK], "x-version": ["2"]}}


def test_diff_fingerprints_show_a_change_without_the_value():
    masker = Masker()
    before = masker.diff({"config": {"redis": {"password": "old-pw"}}})
    same = masker.diff({"config": {"redis": {"password": "old-pw"}}})
    after = masker.diff({"config": {"redis": {"password": "new-pw"}}})
    old, new = before["config"]["redis"]["password"], after["config"]["redis"]["password"]
    assert old.startswith(MASK + " (")
    assert new.startswith(MASK + " (")
    assert old == same["config"]["redis"]["password"]
    assert old != new
    # Keyed per run: another run (another masker) gives another fingerprint for the same value.
    assert Masker().diff({"password": "old-pw"})["password"] != old
    assert "old-pw" not in json.dumps([before, after])
    assert "new-pw" not in json.dumps(after)


def test_every_secret_met_goes_to_no_log_values():
    module = FakeModule(secret_headers=["X-Custom"])
    masker = Masker.from_module(module)
    masker.protect([PLUGIN, TRANSFORMER])
    assert set(SECRETS) <= module.no_log_values
    assert "visible-value" not in module.no_log_values
    assert "r.test" not in module.no_log_values
    # The whole value of a header ("Bearer ...") and its credential alone are secrets.
    assert "Bearer repl-s3cret" in module.no_log_values


def test_everything_beneath_a_secret_field_is_secret():
    value = {"gcp_service_account_json": {"private_key": "pk", "nested": ["a-secret-item"]}}
    out = Masker().returned(value)
    assert out == {"gcp_service_account_json": {"private_key": MASK, "nested": [MASK]}}
