"""Reference checklist items 5-7 and 10 (pagination, tags, plugin defaults, the informational
endpoints, body parsing, headers) in both storage modes."""

from __future__ import annotations

import http.client
import re
from urllib.parse import parse_qs, urlsplit

import pytest


def seed_consumers(admin, uid, count, tags=None):
    admin.seed(
        {
            "consumers": [
                {"username": f"p{i}-{uid}", "tags": tags or [f"t-{uid}"]} for i in range(count)
            ]
        }
    )


def test_pagination_shape_and_next_links(admin, uid):
    seed_consumers(admin, uid, 5)
    seen = []
    resp = admin.get(f"/consumers?size=2&tags=t-{uid}").json()
    assert len(resp["data"]) == 2
    assert isinstance(resp["offset"], str)
    link = urlsplit(resp["next"])
    assert link.path == "/consumers"
    query = parse_qs(link.query)
    assert query["offset"] == [resp["offset"]]
    assert query["tags"] == [f"t-{uid}"]
    assert query["size"] == ["2"]
    pages = 1
    seen += resp["data"]
    while resp["next"]:
        resp = admin.get(resp["next"]).json()
        seen += resp["data"]
        pages += 1
    assert pages == 3
    assert "offset" not in resp
    assert resp["next"] is None
    assert sorted(c["username"] for c in seen) == sorted(f"p{i}-{uid}" for i in range(5))


def test_default_page_size_is_100(admin, uid):
    seed_consumers(admin, uid, 101)
    first = admin.get(f"/consumers?tags=t-{uid}").json()
    assert len(first["data"]) == 100
    assert "size=" not in first["next"]
    assert len(admin.get(first["next"]).json()["data"]) == 1


def test_empty_collection_is_an_array(admin, uid):
    assert admin.get(f"/consumers?tags=nothing-{uid}").json() == {"data": [], "next": None}


@pytest.mark.parametrize(
    ("query", "body"),
    [
        ("size=x", {"code": 9, "name": "invalid size", "message": "size must be a number"}),
        (
            "size=0",
            {
                "code": 9,
                "name": "invalid size",
                "message": "size must be an integer between 1 and 1000",
            },
        ),
        (
            "size=1001",
            {
                "code": 9,
                "name": "invalid size",
                "message": "size must be an integer between 1 and 1000",
            },
        ),
    ],
)
def test_page_size_errors(admin, query, body):
    resp = admin.get(f"/services?{query}")
    assert resp.status == 400
    assert resp.json() == body


def test_bad_offset(admin):
    resp = admin.get("/services?offset=x")
    assert resp.status == 400
    body = resp.json()
    assert (body["code"], body["name"]) == (7, "invalid offset")
    assert body["message"].startswith("'x' is not a valid offset: ")


def test_unknown_query_filters_are_ignored(admin):
    assert admin.get("/services?foo=bar").status == 200


def test_tags_and_or(admin, uid):
    admin.seed(
        {
            "consumers": [
                {"username": f"ab-{uid}", "tags": [f"a-{uid}", f"b-{uid}"]},
                {"username": f"a-{uid}", "tags": [f"a-{uid}"]},
                {"username": f"c-{uid}", "tags": [f"c-{uid}"]},
            ]
        }
    )

    def names(query):
        return sorted(c["username"] for c in admin.get(f"/consumers?tags={query}").json()["data"])

    assert names(f"a-{uid},b-{uid}") == [f"ab-{uid}"]
    assert names(f"a-{uid}/c-{uid}") == sorted([f"ab-{uid}", f"a-{uid}", f"c-{uid}"])
    assert names(f"b-{uid}") == [f"ab-{uid}"]


@pytest.mark.parametrize(
    ("query", "reason"),
    [
        ("a,b/c", "invalid filter syntax"),
        ("", "cannot be null"),
        ("a,b,c,d,e,f", "cannot query more than 5 tags"),
    ],
)
def test_tag_filter_errors(admin, query, reason):
    resp = admin.get(f"/services?tags={query}")
    assert resp.status == 400
    assert resp.json() == {
        "code": 11,
        "name": "invalid options",
        "message": f"invalid option (tags: {reason})",
        "options": {"tags": reason},
    }


def test_tags_ignored_on_nested_collections(admin, uid):
    admin.seed(
        {
            "services": [
                {
                    "name": f"s-{uid}",
                    "host": "a.test",
                    "routes": [{"name": f"r-{uid}", "paths": [f"/{uid}"]}],
                }
            ]
        }
    )
    body = admin.get(f"/services/s-{uid}/routes?tags=other").json()
    assert [r["name"] for r in body["data"]] == [f"r-{uid}"]


def test_tag_validation(pg_admin):
    resp = pg_admin.post("/consumers", json={"username": "tagged", "tags": ["a,b"]})
    assert resp.status == 400
    assert resp.json()["fields"] == {
        "tags": [
            "invalid tag 'a,b': expected printable ascii (except `,` and `/`) or valid utf-8 "
            "sequences"
        ]
    }


def test_plugin_defaults(admin, uid):
    plugins = [
        {"name": "key-auth", "instance_name": f"ka-{uid}"},
        {"name": "rate-limiting", "instance_name": f"rl-{uid}", "config": {"minute": 5}},
    ]
    admin.seed({"services": [{"name": f"s-{uid}", "host": "a.test", "plugins": plugins}]})
    key_auth = admin.get(f"/plugins/ka-{uid}").json()
    assert key_auth["config"] == {
        "key_names": ["apikey"],
        "hide_credentials": False,
        "anonymous": None,
        "key_in_header": True,
        "key_in_query": True,
        "key_in_body": False,
        "run_on_preflight": True,
        "realm": None,
    }
    assert key_auth["protocols"] == ["grpc", "grpcs", "http", "https"]
    assert key_auth["enabled"] is True
    assert (key_auth["route"], key_auth["consumer"]) == (None, None)
    config = admin.get(f"/plugins/rl-{uid}").json()["config"]
    assert config["minute"] == 5
    for period in ("second", "hour", "day", "month", "year"):
        assert config[period] is None
    assert config["policy"] == "local"
    assert config["limit_by"] == "consumer"
    assert config["error_code"] == 429
    assert config["error_message"] == "API rate limit exceeded"
    assert config["fault_tolerant"] is True
    assert config["hide_client_headers"] is False
    assert config["sync_rate"] == -1
    assert config["redis"] == {
        "host": None,
        "port": 6379,
        "timeout": 2000,
        "username": None,
        "password": None,
        "database": 0,
        "ssl": False,
        "ssl_verify": False,
        "server_name": None,
    }


def test_request_transformer_defaults(pg_admin, uid):
    body = pg_admin.post(
        "/plugins",
        json={
            "name": "request-transformer",
            "instance_name": f"rt-{uid}",
            "config": {"add": {"headers": ["x-a:1"]}},
        },
    ).json()
    assert body["config"]["add"] == {"headers": ["x-a:1"], "body": [], "querystring": []}
    assert body["config"]["remove"] == {"headers": [], "body": [], "querystring": []}
    assert body["config"]["replace"]["uri"] is None
    assert body["config"]["http_method"] is None
    pg_admin.delete(f"/plugins/rt-{uid}")


def test_plugin_not_enabled(admin):
    resp = admin.post("/plugins", json={"name": "cors"})
    assert resp.status == 400
    msg = "plugin 'cors' not enabled; add it to the 'plugins' configuration property"
    assert resp.json() == {
        "code": 2,
        "name": "schema violation",
        "message": f"schema violation (name: {msg})",
        "fields": {"name": msg},
    }


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (
            {},
            "schema violation (at least one of these fields must be non-empty: 'config.second', "
            "'config.minute', 'config.hour', 'config.day', 'config.month', 'config.year')",
        ),
        (
            {"minute": 10, "hour": 5},
            "schema violation (config: The limit for hour(5.0) cannot be lower than the limit for "
            "minute(10.0))",
        ),
        (
            {"minute": 1, "limit_by": "header"},
            "2 schema violations (failed conditional validation given value of field "
            "'config.limit_by'; config.header_name: required field missing)",
        ),
        ({"minute": 0}, "schema violation (config.minute: value must be greater than 0)"),
        (
            {"minute": 1, "sync_rate": 1},
            "schema violation (config: sync_rate can only be used with the redis policy)",
        ),
    ],
)
def test_rate_limiting_config_errors(admin, config, message):
    resp = admin.post("/plugins", json={"name": "rate-limiting", "config": config})
    assert resp.status == 400
    assert resp.json()["message"] == message


def test_key_auth_config_errors(admin):
    resp = admin.post(
        "/plugins", json={"name": "key-auth", "config": {"key_names": ["hello\\world"]}}
    )
    assert resp.status == 400
    assert resp.json()["fields"] == {
        "config": {
            "key_names": [
                "bad header name 'hello\\world', allowed characters are A-Z, a-z, 0-9, '_', and '-'"
            ]
        }
    }


def test_key_auth_cannot_be_scoped_to_a_consumer(pg_admin, uid):
    pg_admin.post("/consumers", json={"username": f"c-{uid}"})
    resp = pg_admin.post(f"/consumers/c-{uid}/plugins", json={"name": "key-auth"})
    assert resp.status == 400
    assert resp.json()["fields"] == {"consumer": "value must be null"}


def test_policy_cluster_only_with_a_database(admin):
    resp = admin.post(
        "/schemas/plugins/validate",
        json={"name": "rate-limiting", "config": {"minute": 1, "policy": "cluster"}},
    )
    assert resp.status == (400 if admin.dbless else 200)


def test_root(admin):
    body = admin.get("/").json()
    assert body["tagline"] == "Welcome to kong"
    assert body["version"] == "3.9.3"
    assert body["edition"] == "community"
    assert re.fullmatch(r"[0-9a-f-]{36}", body["node_id"])
    assert set(body["plugins"]["available_on_server"]) == {
        "key-auth",
        "post-function",
        "pre-function",
        "rate-limiting",
        "request-transformer",
    }
    assert body["plugins"]["available_on_server"]["key-auth"]["priority"] == 1250
    assert body["plugins"]["available_on_server"]["rate-limiting"]["priority"] == 910
    assert isinstance(body["plugins"]["enabled_in_cluster"], list)
    assert body["configuration"]["database"] == admin.mode
    assert set(body["pids"]) == {"master", "workers"}
    assert {"timers", "hostname", "lua_version"} <= set(body)
    assert body["simulator"] == "kongsim"


def test_status(admin):
    body = admin.get("/status").json()
    assert set(body["server"]) == {
        "connections_accepted",
        "connections_active",
        "connections_handled",
        "connections_reading",
        "connections_waiting",
        "connections_writing",
        "total_requests",
    }
    assert "memory" in body
    if admin.dbless:
        assert "database" not in body
        assert re.fullmatch(r"[0-9a-f]{32}", body["configuration_hash"])
    else:
        assert body["database"] == {"reachable": True}
        assert "configuration_hash" not in body
    assert admin.get("/status?unit=x").status == 400


def test_plugins_enabled(admin):
    assert admin.get("/plugins/enabled").json() == {
        "enabled_plugins": [
            "key-auth",
            "post-function",
            "pre-function",
            "rate-limiting",
            "request-transformer",
        ]
    }


def test_schemas(admin):
    schema = admin.get("/schemas/plugins/key-auth").json()
    config = next(f["config"] for f in schema["fields"] if "config" in f)
    key_names = next(f["key_names"] for f in config["fields"] if "key_names" in f)
    assert key_names["default"] == ["apikey"]
    assert admin.get("/plugins/schema/rate-limiting").status == 200
    services = admin.get("/schemas/services").json()
    assert any("host" in f for f in services["fields"])
    assert admin.get("/schemas/nope").json() == {"message": "No entity named 'nope'"}
    assert admin.get("/schemas/nope").status == 404
    assert admin.get("/schemas/plugins/nope").json() == {"message": "No plugin named 'nope'"}
    assert admin.get("/plugins/schema/nope").json() == {"message": "No plugin named 'nope'"}


def test_schema_validate_endpoints(admin):
    ok = admin.post("/schemas/routes/validate", json={"paths": ["/a"]})
    assert (ok.status, ok.json()) == (200, {"message": "schema validation successful"})
    bad = admin.post("/schemas/routes/validate", json={"paths": ["a"]})
    assert bad.status == 400
    assert bad.json()["code"] == 2
    plugin = admin.post("/schemas/plugins/validate", json={"name": "key-auth"})
    assert (plugin.status, plugin.json()) == (200, {"message": "schema validation successful"})
    assert admin.post("/schemas/plugins/validate", json={"name": "rate-limiting"}).status == 400


def test_body_content_types(admin):
    unsupported = admin.post(
        "/consumers", data=b"username=x", headers={"Content-Type": "text/plain"}
    )
    assert (unsupported.status, unsupported.body) == (415, b"")
    # urllib would add a form Content-Type: send the request without one by hand
    conn = http.client.HTTPConnection("127.0.0.1", admin.node.admin_port, timeout=10)
    conn.request("POST", "/consumers", body=b"username=x", headers={"Content-Length": "10"})
    assert conn.getresponse().status == 415
    conn.close()
    broken = admin.post("/consumers", data=b"{nope", headers={"Content-Type": "application/json"})
    assert (broken.status, broken.json()) == (400, {"message": "Cannot parse JSON body"})
    empty = admin.post("/consumers", data=b"", headers={"Content-Type": "application/json"})
    assert (empty.status, empty.json()) == (400, {"message": "Cannot parse JSON body"})


def test_admin_headers_and_cors(admin):
    resp = admin.get("/", headers={"Origin": "http://ui.test"})
    assert resp.headers["Server"] == "kong/3.9.3"
    assert resp.headers["X-Kong-Admin-Latency"].isdigit()
    assert resp.headers["Access-Control-Allow-Origin"] == "http://ui.test"
    assert resp.headers["Content-Type"] == "application/json; charset=utf-8"
    assert admin.get("/services").headers["Access-Control-Allow-Origin"] == "*"
    missing = admin.get("/nothing-here")
    assert (missing.status, missing.json()) == (404, {"message": "Not found"})
    assert missing.headers["Server"] == "kong/3.9.3"


def test_endpoints_and_tags_listing(admin, uid):
    seed_consumers(admin, uid, 1, tags=[f"only-{uid}"])
    paths = admin.get("/endpoints").json()["data"]
    assert "/consumers/{consumers}/key-auth" in paths
    rows = admin.get(f"/tags/only-{uid}").json()["data"]
    assert [(r["entity_name"], r["tag"]) for r in rows] == [("consumers", f"only-{uid}")]
