"""Upstreams and targets on the Admin API (kong-3.9-upstreams-redis.md sections A and B):
schemas, defaults, errors, target normalisation and the target routes, against a PostgreSQL
node (writes) and a DB-less node (declarative ``upstreams:`` with nested ``targets``)."""

from __future__ import annotations

import pytest
from kongsim.testing import http

NOT_FOUND = {"message": "Not found"}
HEALTHCHECKS_DEFAULT = {
    "active": {
        "type": "http",
        "timeout": 1,
        "concurrency": 10,
        "http_path": "/",
        "https_sni": None,
        "https_verify_certificate": True,
        "headers": None,
        "healthy": {"interval": 0, "http_statuses": [200, 302], "successes": 0},
        "unhealthy": {
            "interval": 0,
            "http_statuses": [429, 404, 500, 501, 502, 503, 504, 505],
            "tcp_failures": 0,
            "timeouts": 0,
            "http_failures": 0,
        },
    },
    "passive": {
        "type": "http",
        "healthy": {
            "http_statuses": [200, 201, 202, 203, 204, 205, 206, 207, 208, 226, *range(300, 309)],
            "successes": 0,
        },
        "unhealthy": {
            "http_statuses": [429, 500, 503],
            "tcp_failures": 0,
            "timeouts": 0,
            "http_failures": 0,
        },
    },
    "threshold": 0,
}


def test_upstream_defaults(pg_admin, uid):
    resp = pg_admin.post("/upstreams", json={"name": f"up-{uid}.test"})
    assert resp.status == 201, resp.text
    body = resp.json()
    assert body["healthchecks"] == HEALTHCHECKS_DEFAULT
    expected = {
        "algorithm": "round-robin",
        "hash_on": "none",
        "hash_fallback": "none",
        "hash_on_header": None,
        "hash_on_cookie": None,
        "hash_on_cookie_path": "/",
        "hash_on_query_arg": None,
        "slots": 10000,
        "tags": None,
        "host_header": None,
        "client_certificate": None,
        "use_srv_name": False,
    }
    assert {k: body[k] for k in expected} == expected
    assert isinstance(body["created_at"], int)
    assert pg_admin.get(f"/upstreams/up-{uid}.test").json() == body
    assert pg_admin.get(f"/upstreams/{body['id']}").json() == body


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("1.2.3.4", "Invalid name ('1.2.3.4'); no ip addresses allowed"),
        ("::1", "Invalid name ('::1'); no ip addresses allowed"),
        ("up.test:80", "Invalid name ('up.test:80'); no port allowed"),
        ("1234", "Invalid name ('1234'); must be a valid hostname"),
        ("bad name", "Invalid name ('bad name'); must be a valid hostname"),
        ("ends-.test", "Invalid name ('ends-.test'); must be a valid hostname"),
    ],
)
def test_upstream_name_errors(pg_admin, name, message):
    resp = pg_admin.post("/upstreams", json={"name": name})
    assert resp.status == 400
    body = resp.json()
    assert body["fields"] == {"name": message}
    assert body["message"] == f"schema violation (name: {message})"


def test_upstream_put_with_ip_name_is_invalid_unique_name(pg_admin):
    resp = pg_admin.put("/upstreams/1.2.3.4", json={})
    assert resp.status == 400
    assert resp.json() == {
        "code": 10,
        "name": "invalid unique name",
        "message": "Invalid name ('1.2.3.4'); no ip addresses allowed",
    }


def test_upstream_duplicate_missing_name_and_collection_delete(pg_admin, uid):
    name = f"dup-{uid}.test"
    assert pg_admin.post("/upstreams", json={"name": name}).status == 201
    dup = pg_admin.post("/upstreams", json={"name": name})
    assert dup.status == 409
    assert dup.json()["message"] == f"UNIQUE violation detected on '{{name=\"{name}\"}}'"
    assert dup.json()["fields"] == {"name": name}
    missing = pg_admin.post("/upstreams", json={})
    assert missing.json()["message"] == "schema violation (name: required field missing)"
    assert pg_admin.delete("/upstreams").status == 405
    assert pg_admin.delete("/upstreams").json() == {"message": "Method not allowed"}


def test_upstream_shorthands_and_conditionals(pg_admin, uid):
    hashed = pg_admin.post(
        "/upstreams", json={"name": f"h-{uid}", "hash_on": "header", "hash_on_header": "X-U"}
    ).json()
    assert hashed["algorithm"] == "consistent-hashing"
    lc = pg_admin.post("/upstreams", json={"name": f"lc-{uid}", "algorithm": "least-connections"})
    assert (lc.json()["algorithm"], lc.json()["hash_on"]) == ("least-connections", "none")
    back = pg_admin.patch(f"/upstreams/h-{uid}", json={"hash_on": "none"}).json()
    assert back["algorithm"] == "round-robin"
    bad = pg_admin.post(
        "/upstreams", json={"name": f"b-{uid}", "hash_on": "header", "hash_fallback": "header"}
    )
    assert bad.status == 400
    assert bad.json()["fields"]["hash_on_header"] == "required field missing"
    assert (
        "failed conditional validation given value of field 'hash_on'"
        in (bad.json()["fields"]["@entity"])
    )


def test_upstream_healthchecks_validation_and_partial_patch(pg_admin, uid):
    bad = pg_admin.post(
        "/upstreams", json={"name": f"v-{uid}", "healthchecks": {"active": {"timeout": 70000}}}
    )
    assert bad.status == 400
    assert bad.json()["fields"] == {
        "healthchecks": {"active": {"timeout": "value should be between 0 and 65535"}}
    }
    for body, error in (
        ({"threshold": 101}, {"threshold": "value should be between 0 and 100"}),
        (
            {"passive": {"unhealthy": {"tcp_failures": 256}}},
            {"passive": {"unhealthy": {"tcp_failures": "value should be between 0 and 255"}}},
        ),
        ({"active": {"http_path": "x"}}, {"active": {"http_path": "should start with: /"}}),
    ):
        resp = pg_admin.post("/upstreams", json={"name": f"v-{uid}", "healthchecks": body})
        assert resp.json()["fields"] == {"healthchecks": error}, body
    pg_admin.post("/upstreams", json={"name": f"p-{uid}"})
    patched = pg_admin.patch(
        f"/upstreams/p-{uid}",
        json={"healthchecks": {"active": {"healthy": {"interval": 5}}, "threshold": 50}},
    ).json()["healthchecks"]
    assert patched["active"]["healthy"] == {
        "interval": 5,
        "http_statuses": [200, 302],
        "successes": 0,
    }
    assert patched["threshold"] == 50
    assert patched["passive"] == HEALTHCHECKS_DEFAULT["passive"]


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("konghq.test", "konghq.test:8000"),
        ("127.0.0.1", "127.0.0.1:8000"),
        ("010.000.000.001:81", "10.0.0.1:81"),
        ("::1", "[0000:0000:0000:0000:0000:0000:0000:0001]:8000"),
        ("[::1]:81", "[0000:0000:0000:0000:0000:0000:0000:0001]:81"),
        ("MiXed.Test:90", "MiXed.Test:90"),
    ],
)
def test_target_normalisation(pg_admin, uid, given, stored):
    pg_admin.post("/upstreams", json={"name": f"n-{uid}"})
    resp = pg_admin.post(f"/upstreams/n-{uid}/targets", json={"target": given})
    assert resp.status == 201, resp.text
    body = resp.json()
    assert body["target"] == stored
    assert body["weight"] == 100
    assert body["upstream"] == {"id": pg_admin.get(f"/upstreams/n-{uid}").json()["id"]}
    assert isinstance(body["created_at"], float)


def test_target_errors(pg_admin, uid):
    up = pg_admin.post("/upstreams", json={"name": f"e-{uid}"}).json()
    base = f"/upstreams/e-{uid}/targets"
    assert pg_admin.post(base, json={}).json()["fields"] == {"target": "required field missing"}
    invalid = pg_admin.post(base, json={"target": "some invalid host name"})
    assert invalid.status == 400
    assert invalid.json()["fields"] == {
        "target": "Invalid target; not a valid hostname or ip address"
    }
    weight = pg_admin.post(base, json={"target": "a.test", "weight": 70000})
    assert weight.json()["fields"] == {"weight": "value should be between 0 and 65535"}
    assert pg_admin.post(base, json={"target": "a.test:80"}).status == 201
    dup = pg_admin.post(base, json={"target": "a.test:80", "weight": 5})
    assert dup.status == 409
    assert dup.json() == {
        "code": 5,
        "name": "unique constraint violation",
        "message": "UNIQUE violation detected on "
        f'\'{{target="a.test:80",upstream={{id="{up["id"]}"}}}}\'',
        "fields": {"target": "a.test:80", "upstream": {"id": up["id"]}},
    }
    assert pg_admin.post("/upstreams/nope.test/targets", json={"target": "x"}).status == 404


def test_target_routes(pg_admin, uid):
    pg_admin.post("/upstreams", json={"name": f"r-{uid}"})
    pg_admin.post("/upstreams", json={"name": f"other-{uid}"})
    base = f"/upstreams/r-{uid}/targets"
    first = pg_admin.post(base, json={"target": "10.0.0.1:80"}).json()
    second = pg_admin.post(base, json={"target": "10.0.0.2:80", "weight": 0}).json()
    listed = pg_admin.get(base).json()
    assert [t["id"] for t in listed["data"]] == [second["id"], first["id"]]  # newest first
    assert listed["next"] is None
    everything = pg_admin.get(base + "/all").json()
    assert sorted(t["id"] for t in everything["data"]) == sorted([first["id"], second["id"]])
    assert pg_admin.get(base + "/10.0.0.1:80").json() == first
    assert pg_admin.get(base + f"/{first['id']}").json() == first
    # lookups compare the stored host:port as given
    assert pg_admin.get(base + "/10.0.0.1").json() == NOT_FOUND
    # another upstream does not see it
    assert pg_admin.get(f"/upstreams/other-{uid}/targets/{first['id']}").status == 404
    # PUT merges like PATCH and cannot create
    put = pg_admin.put(base + "/10.0.0.1:80", json={"weight": 7})
    assert put.status == 200
    assert (put.json()["weight"], put.json()["target"]) == (7, "10.0.0.1:80")
    assert pg_admin.put(base + "/10.9.9.9:80", json={"weight": 7}).json() == NOT_FOUND
    assert pg_admin.patch(base + "/10.0.0.1:80", json={"weight": 9}).json()["weight"] == 9
    for method in ("PUT", "PATCH", "DELETE"):
        assert pg_admin(method, base, json={}).status == 405
    assert pg_admin.delete(base + "/10.9.9.9:80").json() == NOT_FOUND
    assert pg_admin.delete(base + "/10.0.0.2:80").status == 204
    assert [t["id"] for t in pg_admin.get(base).json()["data"]] == [first["id"]]
    assert pg_admin.get(f"/upstreams/nope-{uid}/targets").json() == NOT_FOUND


def test_schema_validate_endpoints(pg_admin):
    ok = pg_admin.post("/schemas/upstreams/validate", json={"name": "v.test", "hash_on": "ip"})
    assert ok.json() == {"message": "schema validation successful"}
    bad = pg_admin.post("/schemas/targets/validate", json={"target": "a b"})
    assert bad.status == 400
    fields = pg_admin.get("/schemas/upstreams").json()["fields"]
    assert {"slots": {"type": "integer", "default": 10000, "between": [10, 65536]}} in fields


def test_targets_top_level_is_not_found(pg_admin):
    for path in ("/targets", "/targets/x", "/targets/x/upstream"):
        assert pg_admin.get(path).json() == NOT_FOUND


def test_deleting_upstream_cascades_to_targets(pg_admin, pg, uid):
    pg_admin.post("/upstreams", json={"name": f"c-{uid}"})
    target = pg_admin.post(f"/upstreams/c-{uid}/targets", json={"target": "c.test"}).json()
    pg_admin.post("/services", json={"name": f"c-{uid}", "host": f"c-{uid}"})
    assert pg_admin.delete(f"/upstreams/c-{uid}").status == 204
    assert pg_admin.get(f"/upstreams/c-{uid}").status == 404
    with pg.connect(pg_admin.node.conf["pg_database"]) as conn:
        left = conn.execute("SELECT count(*) FROM targets WHERE id = %s", (target["id"],))
        assert left.fetchone()[0] == 0
    assert pg_admin.get(f"/services/c-{uid}").status == 200


def test_paginated_targets(pg_admin, uid):
    pg_admin.post("/upstreams", json={"name": f"pg-{uid}"})
    for i in range(3):
        pg_admin.post(f"/upstreams/pg-{uid}/targets", json={"target": f"10.1.0.{i}"})
    page = pg_admin.get(f"/upstreams/pg-{uid}/targets/all?size=2").json()
    assert len(page["data"]) == 2
    assert page["next"].startswith("/upstreams/")
    rest = pg_admin.get(page["next"]).json()
    assert len(rest["data"]) == 1
    assert rest["next"] is None


def test_dbless_declarative_upstreams_with_targets(dbless_admin, uid):
    config = {
        "_format_version": "3.0",
        "upstreams": [
            {
                "name": f"d-{uid}",
                "healthchecks": {"threshold": 10},
                "targets": [{"target": "127.0.0.1"}, {"target": "b.test:81", "weight": 0}],
            }
        ],
    }
    assert dbless_admin.post("/config", json=config).status == 201
    up = dbless_admin.get(f"/upstreams/d-{uid}").json()
    assert up["healthchecks"]["threshold"] == 10
    assert up["algorithm"] == "round-robin"
    targets = dbless_admin.get(f"/upstreams/d-{uid}/targets").json()["data"]
    assert sorted((t["target"], t["weight"]) for t in targets) == [
        ("127.0.0.1:8000", 100),
        ("b.test:81", 0),
    ]
    assert all(t["upstream"] == {"id": up["id"]} for t in targets)
    exported = dbless_admin.get("/config").json()["config"]
    assert "upstreams:" in exported
    assert "targets:" in exported
    # the same target twice (after normalisation) is rejected at load
    dup = dict(config)
    dup["upstreams"] = [
        {"name": f"d-{uid}", "targets": [{"target": "127.0.0.1"}, {"target": "127.0.0.1:8000"}]}
    ]
    resp = dbless_admin.post("/config", json=dup)
    assert resp.status == 400
    assert "already declared" in resp.text
    bad = {"_format_version": "3.0", "upstreams": [{"name": "1.2.3.4"}]}
    resp = dbless_admin.post("/config", json=bad)
    assert resp.status == 400
    assert resp.json()["fields"] == {
        "upstreams": [{"name": "Invalid name ('1.2.3.4'); no ip addresses allowed"}]
    }
    bad_target = {"_format_version": "3.0", "upstreams": [{"name": "u", "targets": [{}]}]}
    resp = dbless_admin.post("/config", json=bad_target)
    assert resp.json()["fields"] == {
        "upstreams": [{"targets": [{"target": "required field missing"}]}]
    }


def test_dbless_writes_are_405(dbless_admin, uid):
    dbless_admin.post(
        "/config",
        json={
            "_format_version": "3.0",
            "upstreams": [{"name": f"w-{uid}", "targets": [{"target": "10.0.0.1:80"}]}],
        },
    )
    create = dbless_admin.post("/upstreams", json={"name": "x.test"})
    assert create.status == 405
    assert create.json()["message"] == (
        "cannot create 'upstreams' entities when not using a database"
    )
    target = dbless_admin.post(f"/upstreams/w-{uid}/targets", json={"target": "10.0.0.2"})
    assert target.status == 405
    assert target.json()["message"] == "cannot create 'targets' entities when not using a database"
    # the input is checked first, as the Admin API does before the write fails
    invalid = dbless_admin.post(f"/upstreams/w-{uid}/targets", json={"target": "a b"})
    assert invalid.status == 400
    assert invalid.json()["fields"] == {
        "target": "Invalid target; not a valid hostname or ip address"
    }
    assert dbless_admin.delete(f"/upstreams/w-{uid}/targets/10.0.0.1:80").status == 405
    assert dbless_admin.get(f"/upstreams/w-{uid}/targets/10.0.0.1:80").status == 200


def test_upstreams_listed_and_tagged(admin, uid):
    config = {
        "upstreams": [{"name": f"t-{uid}", "tags": [f"tag-{uid}"]}],
    }
    if admin.dbless:
        admin.seed(config)
    else:
        assert admin.post("/upstreams", json=config["upstreams"][0]).status == 201
    names = [u["name"] for u in admin.get(f"/upstreams?tags=tag-{uid}").json()["data"]]
    assert names == [f"t-{uid}"]
    tags = admin.get(f"/tags/tag-{uid}").json()["data"]
    assert [t["entity_name"] for t in tags] == ["upstreams"]


def test_dbless_status_listener_serves_upstream_reads(dbless_admin, pg_admin, uid):
    dbless_admin.seed({"upstreams": [{"name": f"s-{uid}", "targets": [{"target": "10.0.0.1:80"}]}]})
    status = dbless_admin.node.status_url
    targets = http("GET", f"{status}/upstreams/s-{uid}/targets").json()["data"]
    assert [t["target"] for t in targets] == ["10.0.0.1:80"]
    assert len(http("GET", f"{status}/upstreams/s-{uid}/targets/all").json()["data"]) == 1
    health = http("GET", f"{status}/upstreams/s-{uid}/health").json()
    assert health["data"][0]["health"] == "HEALTHCHECKS_OFF"
    assert http("GET", f"{status}/upstreams/nope-{uid}/health").status == 404
    # a node with a database serves them on the Admin API only
    pg_admin.post("/upstreams", json={"name": f"s-{uid}"})
    assert http("GET", f"{pg_admin.node.status_url}/upstreams/s-{uid}/targets").status == 404
