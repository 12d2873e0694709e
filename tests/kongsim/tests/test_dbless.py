"""DB-less mode (reference 1.7 and section 6): entity writes answer 405, ``/config`` loads and
exports the declarative configuration, ``declarative_config`` is read at start."""

from __future__ import annotations

import json

import pytest
import yaml
from kongsim.testing import http, kong_node

OP_UNSUPPORTED = {"code": 12, "name": "operation unsupported"}


@pytest.mark.parametrize(
    ("method", "path", "body", "message"),
    [
        (
            "POST",
            "/routes",
            {"paths": ["/"]},
            "cannot create 'routes' entities when not using a database",
        ),
        (
            "PUT",
            "/routes/8e6a1d32-0000-4000-8000-000000000000",
            {"paths": ["/"]},
            "cannot create or update 'routes' entities when not using a database",
        ),
        (
            "PUT",
            "/services/web",
            {"host": "a.test"},
            "cannot create or update 'services' entities by 'name' when not using a database",
        ),
        (
            "POST",
            "/consumers/bob/key-auth",
            {},
            "cannot create 'keyauth_credentials' entities when not using a database",
        ),
        (
            "PATCH",
            "/consumers/bob",
            {"custom_id": "x"},
            "cannot update 'consumers' entities by 'username' when not using a database",
        ),
        (
            "DELETE",
            "/consumers/bob",
            None,
            "cannot remove 'consumers' entities by 'username' when not using a database",
        ),
    ],
)
def test_entity_writes_are_405(dbless_admin, method, path, body, message):
    dbless_admin.seed({"consumers": [{"username": "bob"}]})
    resp = dbless_admin(method, path, json=body)
    assert resp.status == 405
    assert resp.json() == {**OP_UNSUPPORTED, "message": message}


def test_delete_on_collection_is_method_not_allowed(dbless_admin):
    resp = dbless_admin.delete("/services")
    assert (resp.status, resp.json()) == (405, {"message": "Method not allowed"})


def test_config_is_dbless_only(pg_admin):
    for method in ("GET", "POST"):
        resp = pg_admin(method, "/config", json={} if method == "POST" else None)
        assert resp.status == 400
        assert resp.json() == {
            "message": "this endpoint is only available when Kong is configured to not use a "
            "database"
        }


CONFIG_YAML = """
_format_version: "3.0"
_transform: true
services:
- name: web
  url: http://upstream.test:8080/base
  routes:
  - name: web-route
    paths: [/web]
  plugins:
  - name: key-auth
consumers:
- username: alice
  keyauth_credentials:
  - key: alice-key
"""


def test_post_config_loads_and_get_config_exports(dbless_admin):
    resp = dbless_admin.post(
        "/config", data=CONFIG_YAML, headers={"Content-Type": "application/yaml"}
    )
    assert resp.status == 201
    loaded = resp.json()
    assert len(loaded["services"]) == 1
    route = dbless_admin.get("/routes/web-route").json()
    service = dbless_admin.get("/services/web").json()
    assert route["service"] == {"id": service["id"]}
    assert (service["port"], service["path"]) == (8080, "/base")
    assert (
        dbless_admin.get("/key-auths/alice-key").json()["consumer"]["id"]
        == dbless_admin.get("/consumers/alice").json()["id"]
    )
    exported = yaml.safe_load(dbless_admin.get("/config").json()["config"])
    assert exported["_format_version"] == "3.0"
    assert [s["name"] for s in exported["services"]] == ["web"]
    assert exported["routes"][0]["service"] == service["id"]  # export.lua: bare foreign ids
    status = dbless_admin.get("/status").json()
    assert status["configuration_hash"] != "0" * 32
    assert http("GET", dbless_admin.node.status_url + "/status/ready").status == 200


def test_post_config_forms_and_check_hash(dbless_admin):
    text = "_format_version: '3.0'\nconsumers:\n- username: hash-check\n"
    assert dbless_admin.post("/config?check_hash=1", json={"config": text}).status == 201
    assert dbless_admin.post("/config?check_hash=1", json={"config": text}).status == 304
    assert dbless_admin.post("/config", json={"config": text}).status == 201
    as_object = {"_format_version": "3.0", "consumers": [{"username": "obj"}]}
    assert dbless_admin.post("/config?check_hash=1", json=as_object).status == 201
    # a JSON object body is used as-is, with no hash comparison (kong/api/routes/config.lua)
    assert dbless_admin.post("/config?check_hash=1", json=as_object).status == 201
    assert dbless_admin.get("/consumers/obj").status == 200
    assert dbless_admin.get("/consumers/hash-check").status == 404


def test_post_config_errors(dbless_admin):
    empty = dbless_admin.post("/config")
    assert (empty.status, empty.json()) == (
        400,
        {"message": "expected a declarative configuration"},
    )
    broken = dbless_admin.post("/config", data=b"", headers={"Content-Type": "application/json"})
    assert (broken.status, broken.json()) == (400, {"message": "Cannot parse JSON body"})
    not_object = dbless_admin.post("/config", json={"config": "bobby tables"})
    assert not_object.status == 400
    assert not_object.json() == {
        "code": 14,
        "name": "invalid declarative configuration",
        "message": "declarative config is invalid: "
        '{error="failed parsing declarative configuration: expected an object"}',
        "fields": {"error": "failed parsing declarative configuration: expected an object"},
    }


def test_post_config_validation_error_shape(dbless_admin):
    text = '_format_version: "1.1"\nservices:\n- port: -12\n'
    resp = dbless_admin.post("/config", json={"config": text})
    assert resp.status == 400
    assert resp.json() == {
        "code": 14,
        "name": "invalid declarative configuration",
        "message": 'declarative config is invalid: {services={{host="required field missing",'
        'port="value should be between 0 and 65535"}}}',
        "fields": {
            "services": [
                {"host": "required field missing", "port": "value should be between 0 and 65535"}
            ]
        },
    }
    flat = dbless_admin.post("/config?flatten_errors=1", json={"config": text}).json()
    assert flat["flattened_errors"][0]["entity_type"] == "service"
    fields = {e["field"] for e in flat["flattened_errors"][0]["errors"]}
    assert fields == {"host", "port"}


def test_post_config_uniqueness_and_references(dbless_admin):
    dup = "_format_version: '3.0'\nservices: [{name: foo, host: a.test}, {name: foo, host: b}]"
    body = dbless_admin.post("/config", json={"config": dup}).json()
    assert body["fields"] == {
        "services": [
            None,
            "uniqueness violation: 'services' entity with name set to 'foo' already declared",
        ]
    }
    assert body["message"].endswith(
        "{services={[2]=\"uniqueness violation: 'services' entity with name set to 'foo' "
        'already declared"}}'
    )
    bad_ref = "_format_version: '3.0'\nroutes:\n- name: r\n  paths: [/]\n  service: nowhere\n"
    resp = dbless_admin.post("/config", json={"config": bad_ref})
    assert resp.status == 400
    assert "invalid reference 'service: nowhere'" in resp.text


def test_format_version_is_required(dbless_admin):
    as_json = dbless_admin.post("/config", json={"services": []})
    assert as_json.status == 400
    assert as_json.json()["fields"] == {"_format_version": "required field missing"}
    resp = dbless_admin.post("/config", json={"config": "services: []\n"})
    assert resp.json()["fields"] == {"_format_version": "required field missing"}
    resp = dbless_admin.post("/config", json={"config": "_format_version: '9.9'\n"})
    assert resp.json()["fields"] == {"_format_version": "expected one of: 1.1, 2.1, 3.0"}


def test_declarative_config_loaded_at_start(tmp_path):
    path = tmp_path / "kong.yml"
    path.write_text(CONFIG_YAML)
    with kong_node({"database": "off", "declarative_config": str(path)}) as node:
        assert http("GET", node.admin_url + "/services/web").json()["host"] == "upstream.test"
        assert http("GET", node.status_url + "/status/ready").status == 200
        exported = json.loads(http("GET", node.admin_url + "/config").body)["config"]
        assert "alice-key" in exported


def test_an_empty_configuration_is_not_ready(dbless_admin):
    assert dbless_admin.post("/config", json={"config": '_format_version: "3.0"\n'}).status == 201
    assert dbless_admin.get("/status").json()["configuration_hash"] == "0" * 32
    ready = http("GET", dbless_admin.node.status_url + "/status/ready")
    assert ready.status == 503
    assert ready.json() == {"message": "no configuration available (empty configuration present)"}
