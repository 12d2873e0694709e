"""Reference checklist items 1-4 and 7-8 (CRUD status codes, 409s, delete rules, error bodies,
defaults, credential keys and ttl) against a real node; writes need a database, reads run in
both storage modes."""

from __future__ import annotations

import re
import time

import pytest

NOT_FOUND = {"message": "Not found"}


def test_post_201_fills_service_defaults_from_url(pg_admin, uid):
    resp = pg_admin.post("/services", json={"name": f"svc-{uid}", "url": "http://upstream.test"})
    assert resp.status == 201
    body = resp.json()
    assert body["protocol"] == "http"
    assert body["host"] == "upstream.test"
    assert body["port"] == 80
    assert body["path"] is None
    assert body["retries"] == 5
    for key in ("connect_timeout", "write_timeout", "read_timeout"):
        assert body[key] == 60000
    assert body["enabled"] is True
    assert body["tags"] is None
    assert "url" not in body
    assert isinstance(body["created_at"], int)
    assert re.fullmatch(r"[0-9a-f-]{36}", body["id"])


def test_service_url_https_and_path(pg_admin, uid):
    body = pg_admin.post("/services", json={"name": f"s-{uid}", "url": "https://up.test/"}).json()
    assert (body["protocol"], body["port"], body["path"]) == ("https", 443, "/")


def test_route_defaults(pg_admin, uid):
    pg_admin.post("/services", json={"name": f"s-{uid}", "host": "up.test"})
    resp = pg_admin.post(
        f"/services/s-{uid}/routes", json={"name": f"r-{uid}", "paths": [f"/{uid}-a"]}
    )
    assert resp.status == 201
    route = resp.json()
    assert route["protocols"] == ["http", "https"]
    assert route["https_redirect_status_code"] == 426
    assert route["strip_path"] is True
    assert route["preserve_host"] is False
    assert route["request_buffering"] is True
    assert route["response_buffering"] is True
    assert route["regex_priority"] == 0
    assert route["path_handling"] == "v0"
    for key in ("hosts", "methods", "headers", "snis", "sources", "destinations"):
        assert route[key] is None
    assert route["service"] == {"id": pg_admin.get(f"/services/s-{uid}").json()["id"]}


def test_put_upserts_by_name_and_replaces(pg_admin, uid):
    name = f"svc-{uid}"
    created = pg_admin.put(f"/services/{name}", json={"host": "a.test", "retries": 1})
    assert created.status == 200
    assert created.json()["name"] == name
    replaced = pg_admin.put(f"/services/{name}", json={"host": "b.test", "name": "ignored"})
    assert replaced.status == 200
    body = replaced.json()
    assert body["id"] == created.json()["id"]
    assert body["created_at"] == created.json()["created_at"]
    assert body["name"] == name  # the URL's name wins
    assert body["host"] == "b.test"
    assert body["retries"] == 5  # not sent: back to the default (full replacement)


def test_put_route_resets_unsent_fields_to_null(pg_admin, uid):
    pg_admin.post("/routes", json={"name": f"r-{uid}", "hosts": ["h.test"], "methods": ["GET"]})
    body = pg_admin.put(f"/routes/r-{uid}", json={"paths": [f"/{uid}-p"]}).json()
    assert body["hosts"] is None
    assert body["methods"] is None
    assert body["paths"] == [f"/{uid}-p"]


def test_patch_merges(pg_admin, uid):
    pg_admin.post("/services", json={"name": f"s-{uid}", "host": "a.test", "retries": 2})
    resp = pg_admin.patch(f"/services/s-{uid}", json={"port": 8080})
    assert resp.status == 200
    assert (resp.json()["retries"], resp.json()["port"]) == (2, 8080)


def test_patch_plugin_config_merges(pg_admin, uid):
    plugin = pg_admin.post(
        "/plugins",
        json={"name": "rate-limiting", "instance_name": f"rl-{uid}", "config": {"minute": 5}},
    ).json()
    body = pg_admin.patch(f"/plugins/{plugin['id']}", json={"config": {"hour": 100}}).json()
    assert (body["config"]["minute"], body["config"]["hour"]) == (5, 100)
    pg_admin.delete(f"/plugins/{plugin['id']}")


def test_unknown_entity_404(admin, uid):
    for method in ("GET", "PATCH"):
        resp = admin(method, f"/services/missing-{uid}", json={} if method == "PATCH" else None)
        assert resp.status == 404
        assert resp.json() == NOT_FOUND
    assert admin.get("/services/8e6a1d32-0000-4000-8000-000000000000").status == 404


def test_delete_top_level_204_even_if_missing(pg_admin, uid):
    assert pg_admin.delete(f"/services/missing-{uid}").status == 204
    assert pg_admin.delete("/consumers/8e6a1d32-0000-4000-8000-000000000000").status == 204
    pg_admin.post("/consumers", json={"username": f"c-{uid}"})
    resp = pg_admin.delete(f"/consumers/c-{uid}")
    assert resp.status == 204
    assert resp.body == b""
    assert pg_admin.get(f"/consumers/c-{uid}").status == 404


def test_nested_delete_404_if_missing(pg_admin, uid):
    pg_admin.post("/consumers", json={"username": f"c-{uid}"})
    resp = pg_admin.delete(f"/consumers/c-{uid}/key-auth/8e6a1d32-0000-4000-8000-000000000000")
    assert resp.status == 404
    assert resp.json() == NOT_FOUND


def test_collections_have_no_put_patch_delete(admin):
    for method in ("PUT", "PATCH", "DELETE"):
        resp = admin(method, "/services", json={} if method != "DELETE" else None)
        assert resp.status == 405
        assert resp.json() == {"message": "Method not allowed"}


@pytest.mark.parametrize(
    ("path", "field", "first", "second"),
    [
        ("/services", "name", {"host": "a.test"}, {"host": "b.test"}),
        ("/consumers", "username", {}, {}),
        ("/consumers", "custom_id", {}, {}),
        ("/routes", "name", {"hosts": ["dup-first.test"]}, {"hosts": ["dup-second.test"]}),
    ],
)
def test_409_on_unique_fields(pg_admin, uid, path, field, first, second):
    value = f"dup-{uid}"
    assert pg_admin.post(path, json={field: value, **first}).status == 201
    resp = pg_admin.post(path, json={field: value, **second})
    assert resp.status == 409
    assert resp.json() == {
        "code": 5,
        "name": "unique constraint violation",
        "message": f"UNIQUE violation detected on '{{{field}=\"{value}\"}}'",
        "fields": {field: value},
    }


def test_409_on_credential_key(pg_admin, uid):
    pg_admin.post("/consumers", json={"username": f"c-{uid}"})
    assert pg_admin.post(f"/consumers/c-{uid}/key-auth", json={"key": f"k-{uid}"}).status == 201
    resp = pg_admin.post(f"/consumers/c-{uid}/key-auth", json={"key": f"k-{uid}"})
    assert resp.status == 409
    assert resp.json()["message"] == f"UNIQUE violation detected on '{{key=\"k-{uid}\"}}'"


def test_409_on_plugin_scope_tuple(pg_admin, uid):
    route = pg_admin.post("/routes", json={"name": f"r-{uid}", "paths": [f"/{uid}"]}).json()
    assert pg_admin.post(f"/routes/r-{uid}/plugins", json={"name": "key-auth"}).status == 201
    resp = pg_admin.post(f"/routes/r-{uid}/plugins", json={"name": "key-auth"})
    assert resp.status == 409
    rid = route["id"]
    assert resp.json() == {
        "code": 5,
        "name": "unique constraint violation",
        "message": (
            f'UNIQUE violation detected on \'{{consumer=null,name="key-auth",'
            f'route={{id="{rid}"}},service=null}}\''
        ),
        "fields": {"consumer": None, "name": "key-auth", "route": {"id": rid}, "service": None},
    }


def test_delete_service_with_routes_is_refused(pg_admin, uid):
    pg_admin.post("/services", json={"name": f"s-{uid}", "host": "a.test"})
    pg_admin.post(f"/services/s-{uid}/routes", json={"paths": [f"/{uid}-x"]})
    resp = pg_admin.delete(f"/services/s-{uid}")
    assert resp.status == 400
    assert resp.json() == {
        "code": 4,
        "name": "foreign key violation",
        "message": "an existing 'routes' entity references this 'services' entity",
        "fields": {"@referenced_by": "routes"},
    }


def test_delete_consumer_cascades_to_credentials_and_plugins(pg_admin, uid):
    pg_admin.post("/consumers", json={"username": f"c-{uid}"})
    cred = pg_admin.post(f"/consumers/c-{uid}/key-auth", json={}).json()
    plugin = pg_admin.post(
        f"/consumers/c-{uid}/plugins", json={"name": "rate-limiting", "config": {"minute": 1}}
    ).json()
    assert pg_admin.delete(f"/consumers/c-{uid}").status == 204
    assert pg_admin.get(f"/key-auths/{cred['id']}").status == 404
    assert pg_admin.get(f"/plugins/{plugin['id']}").status == 404


def test_delete_route_cascades_to_plugins(pg_admin, uid):
    pg_admin.post("/routes", json={"name": f"r-{uid}", "paths": [f"/{uid}-x"]})
    plugin = pg_admin.post(f"/routes/r-{uid}/plugins", json={"name": "key-auth"}).json()
    assert pg_admin.delete(f"/routes/r-{uid}").status == 204
    assert pg_admin.get(f"/plugins/{plugin['id']}").status == 404


def test_foreign_key_must_exist(pg_admin):
    missing = "8e6a1d32-0000-4000-8000-000000000000"
    resp = pg_admin.post("/routes", json={"paths": ["/x"], "service": {"id": missing}})
    assert resp.status == 400
    assert resp.json() == {
        "code": 4,
        "name": "foreign key violation",
        "message": (
            f"the foreign key '{{id=\"{missing}\"}}' does not reference an existing "
            "'services' entity."
        ),
        "fields": {"service": {"id": missing}},
    }


ROUTE_NO_MATCHER = (
    "must set one of 'methods', 'hosts', 'headers', 'paths', 'snis' when 'protocols' is 'https'"
)


@pytest.mark.parametrize(
    ("path", "body", "message", "fields"),
    [
        (
            "/routes",
            {},
            f"schema violation ({ROUTE_NO_MATCHER})",
            {"@entity": [ROUTE_NO_MATCHER]},
        ),
        (
            "/routes",
            {"protocols": ["http"], "paths": []},
            "schema violation (must set one of 'methods', 'hosts', 'headers', 'paths' when "
            "'protocols' is 'http')",
            None,
        ),
        (
            "/routes",
            {"paths": ["/a"], "protocols": ["ftp"]},
            "schema violation (protocols.1: expected one of: grpc, grpcs, http, https, tcp, "
            "tls, tls_passthrough, udp)",
            {
                "protocols": [
                    "expected one of: grpc, grpcs, http, https, tcp, tls, tls_passthrough, udp"
                ]
            },
        ),
        (
            "/routes",
            {"paths": ["/a"], "regex_priority": "high"},
            "schema violation (regex_priority: expected an integer)",
            {"regex_priority": "expected an integer"},
        ),
        (
            "/routes",
            {"paths": ["a"]},
            "schema violation (paths.1: should start with: / (fixed path) or ~/ (regex path))",
            {"paths": ["should start with: / (fixed path) or ~/ (regex path)"]},
        ),
        (
            "/services",
            {"host": "a.test", "port": 70000},
            "schema violation (port: value should be between 0 and 65535)",
            {"port": "value should be between 0 and 65535"},
        ),
        (
            "/services",
            {},
            "schema violation (host: required field missing)",
            {"host": "required field missing"},
        ),
        (
            "/services",
            {"host": "a.test", "name": "bad name"},
            "schema violation (name: invalid value 'bad name': the only accepted ascii "
            "characters are alphanumerics or ., -, _, and ~)",
            None,
        ),
        (
            "/services",
            {"port": "x", "retries": -1, "host": "a.test"},
            "2 schema violations (port: expected an integer; retries: value should be between "
            "0 and 32767)",
            {"port": "expected an integer", "retries": "value should be between 0 and 32767"},
        ),
        (
            "/consumers",
            {},
            "schema violation (at least one of these fields must be non-empty: 'custom_id', "
            "'username')",
            None,
        ),
        (
            "/services",
            {"host": "a.test", "bogus": 1},
            "schema violation (bogus: unknown field)",
            {"bogus": "unknown field"},
        ),
    ],
)
def test_schema_violation_bodies(admin, path, body, message, fields):
    resp = admin.post(path, json=body)
    assert resp.status == 400
    got = resp.json()
    assert got["code"] == 2
    assert got["name"] == "schema violation"
    assert got["message"] == message
    if fields is not None:
        assert got["fields"] == fields


def test_service_empty_url_is_400(pg_admin):
    assert pg_admin.post("/services", json={"url": ""}).status == 400
    assert pg_admin.post("/services", json={"url": " "}).status == 400


def test_credential_key_generated_32_chars(pg_admin, uid):
    pg_admin.post("/consumers", json={"username": f"c-{uid}"})
    resp = pg_admin.post(f"/consumers/c-{uid}/key-auth")
    assert resp.status == 201
    key = resp.json()["key"]
    assert re.fullmatch(r"[A-Za-z0-9]{32}", key)
    assert resp.json()["consumer"] == {"id": pg_admin.get(f"/consumers/c-{uid}").json()["id"]}
    assert pg_admin.get(f"/key-auths/{key}").json()["id"] == resp.json()["id"]


def test_credential_requires_consumer(pg_admin):
    resp = pg_admin.post("/key-auths", json={"key": "abc"})
    assert resp.status == 400
    assert resp.json()["message"] == "schema violation (consumer: required field missing)"


def test_credential_ttl(pg_admin, uid):
    pg_admin.post("/consumers", json={"username": f"c-{uid}"})
    cred = pg_admin.post(f"/consumers/c-{uid}/key-auth", json={"key": f"t-{uid}", "ttl": 100})
    assert cred.status == 201
    ttl = pg_admin.get(f"/key-auths/t-{uid}").json()["ttl"]
    assert 0 < ttl <= 100
    short = pg_admin.post(f"/consumers/c-{uid}/key-auth", json={"key": f"s-{uid}", "ttl": 1})
    assert short.status == 201
    time.sleep(1.5)
    assert pg_admin.get(f"/key-auths/s-{uid}").status == 404
    # the expired key can be used again
    again = pg_admin.post(f"/consumers/c-{uid}/key-auth", json={"key": f"s-{uid}"})
    assert again.status == 201, again.text
    bad = pg_admin.post(f"/consumers/c-{uid}/key-auth", json={"ttl": -1})
    assert bad.status == 400
    assert (
        bad.json()["message"] == "invalid option (ttl: must be an integer between 0 and 100000000)"
    )


def test_credential_nested_under_other_consumer_is_404(pg_admin, uid):
    pg_admin.post("/consumers", json={"username": f"a-{uid}"})
    pg_admin.post("/consumers", json={"username": f"b-{uid}"})
    cred = pg_admin.post(f"/consumers/a-{uid}/key-auth", json={}).json()
    assert pg_admin.get(f"/consumers/b-{uid}/key-auth/{cred['id']}").status == 404
    assert pg_admin.get(f"/consumers/a-{uid}/key-auth/{cred['id']}").status == 200
    assert pg_admin.get(f"/key-auths/{cred['id']}/consumer").json()["username"] == f"a-{uid}"


def test_nested_collection_of_missing_parent_is_404(admin, uid):
    for path in (f"/services/no-{uid}/routes", f"/consumers/no-{uid}/key-auth"):
        resp = admin.get(path)
        assert resp.status == 404
        assert resp.json() == NOT_FOUND


def test_route_service_link(pg_admin, uid):
    svc = pg_admin.post("/services", json={"name": f"s-{uid}", "host": "a.test"}).json()
    route = pg_admin.post(f"/services/s-{uid}/routes", json={"paths": [f"/{uid}-x"]}).json()
    assert pg_admin.get(f"/routes/{route['id']}/service").json()["id"] == svc["id"]
    resp = pg_admin.delete(f"/routes/{route['id']}/service")
    assert resp.status == 405
    assert resp.json() == {"message": "Method not allowed"}
    orphan = pg_admin.post("/routes", json={"paths": [f"/{uid}-y"]}).json()
    assert pg_admin.get(f"/routes/{orphan['id']}/service").status == 404
    assert pg_admin.get(f"/services/s-{uid}/routes").json()["data"][0]["id"] == route["id"]


def test_name_that_looks_like_uuid_is_an_id(pg_admin):
    fake = "8e6a1d32-0000-4000-8000-00000000abcd"
    body = pg_admin.put(f"/consumers/{fake}", json={"username": "uuid-looking"}).json()
    assert body["id"] == fake
    pg_admin.delete(f"/consumers/{fake}")


def test_form_urlencoded_bodies(pg_admin, uid):
    resp = pg_admin.post(
        "/plugins",
        data={
            "name": "rate-limiting",
            "instance_name": f"rl-{uid}",
            "config.minute": "5",
            "config.hour": "10",
            "protocols[]": ["http", "https"],
        },
    )
    assert resp.status == 201, resp.text
    body = resp.json()
    assert (body["config"]["minute"], body["config"]["hour"]) == (5, 10)
    assert body["protocols"] == ["http", "https"]
    pg_admin.delete(f"/plugins/rl-{uid}")


def test_consumers_by_custom_id(pg_admin, uid):
    pg_admin.post("/consumers", json={"custom_id": f"cid-{uid}"})
    body = pg_admin.get(f"/consumers?custom_id=cid-{uid}").json()
    assert [c["custom_id"] for c in body["data"]] == [f"cid-{uid}"]
    assert body["next"] is None
    assert pg_admin.get("/consumers?custom_id=nobody-" + uid).json() == {"data": [], "next": None}
    resp = pg_admin.get("/consumers?custom_id=")
    assert resp.status == 400
    assert resp.json() == {"message": "custom_id must be an unempty string"}


def test_foreign_keys_resolved_by_unique_fields(pg_admin, uid):
    consumer = pg_admin.post("/consumers", json={"username": f"c-{uid}"}).json()
    resp = pg_admin.post("/key-auths", json={"consumer": {"username": f"c-{uid}"}})
    assert resp.status == 201
    assert resp.json()["consumer"] == {"id": consumer["id"]}
    missing = pg_admin.post("/key-auths", json={"consumer": {"username": f"nobody-{uid}"}})
    assert missing.status == 400
    reason = (
        f"the foreign key cannot be resolved with '{{username=\"nobody-{uid}\"}}' for an "
        "existing 'consumers' entity"
    )
    assert missing.json() == {
        "code": 13,
        "name": "foreign keys unresolved",
        "message": f"foreign key unresolved (consumer.username: {reason})",
        "fields": {"consumer": {"username": reason}},
    }


def test_patch_replaces_maps_and_merges_records(pg_admin, uid):
    route = {"name": f"r-{uid}", "paths": [f"/{uid}"], "headers": {"x-a": ["1"]}}
    pg_admin.post("/routes", json=route)
    body = pg_admin.patch(f"/routes/r-{uid}", json={"headers": {"x-b": ["2"]}}).json()
    assert body["headers"] == {"x-b": ["2"]}


def test_nested_put_and_patch(pg_admin, uid):
    pg_admin.post("/consumers", json={"username": f"c-{uid}"})
    created = pg_admin.put(f"/consumers/c-{uid}/key-auth/k-{uid}", json={"tags": ["a"]})
    assert created.status == 200
    assert created.json()["key"] == f"k-{uid}"  # the URL's key wins
    patched = pg_admin.patch(f"/consumers/c-{uid}/key-auth/k-{uid}", json={"tags": ["b"]})
    assert (patched.status, patched.json()["tags"]) == (200, ["b"])
    assert patched.json()["id"] == created.json()["id"]


def test_foreign_link_patch_updates_the_parent(pg_admin, uid):
    pg_admin.post("/services", json={"name": f"s-{uid}", "host": "a.test"})
    route = pg_admin.post(f"/services/s-{uid}/routes", json={"paths": [f"/{uid}"]}).json()
    resp = pg_admin.patch(f"/routes/{route['id']}/service", json={"retries": 9})
    assert (resp.status, resp.json()["retries"]) == (200, 9)
    assert pg_admin.get(f"/services/s-{uid}").json()["retries"] == 9
