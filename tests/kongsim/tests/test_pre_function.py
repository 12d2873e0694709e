"""``pre-function`` / ``post-function``: user Lua run for real (LuaJIT through lupa) in Kong's
default sandbox, in both storage modes; and the gateway's bearer-to-key mapping
(``roles/kong_gateway/templates/bearer_to_apikey.lua.j2``) in front of key-auth, as the
kong_gateway role configures it (reference ``kong-3.9-upstreams-redis.md`` §F)."""

from __future__ import annotations

import json
import pathlib
from collections.abc import Iterator
from typing import Any

import jinja2
import pytest
from conftest import Admin
from kongsim.testing import KongNode, PostgresServer, Response, echo_upstream, free_port, http

ROOT = pathlib.Path(__file__).resolve().parents[3]
MAPPING_TEMPLATE = ROOT / "roles/kong_gateway/templates/bearer_to_apikey.lua.j2"
KEY_NAMES = ["apikey", "x-api-key"]  # the kong_gateway role's default key_names


def mapping(key_names: list[str] = KEY_NAMES) -> str:
    """The role's template rendered as Ansible would (``to_json`` is Ansible's filter)."""
    env = jinja2.Environment(  # noqa: S701 - renders Lua code, not HTML
        undefined=jinja2.StrictUndefined, keep_trailing_newline=True
    )
    env.filters["to_json"] = json.dumps
    template = env.from_string(MAPPING_TEMPLATE.read_text(encoding="utf-8"))
    return template.render(kong_gateway_key_names=key_names)


@pytest.fixture(scope="module")
def upstream() -> Iterator[int]:
    with echo_upstream() as port:
        yield port


@pytest.fixture(scope="module")
def own_pg_node(pg: PostgresServer) -> Iterator[KongNode]:
    with KongNode({**pg.kong_conf(pg.create_database()), "db_update_frequency": 0.5}) as node:
        yield node


@pytest.fixture(scope="module")
def own_dbless_node() -> Iterator[KongNode]:
    with KongNode({"database": "off"}) as node:
        yield node


@pytest.fixture(params=["postgres", "off"])
def admin(request: pytest.FixtureRequest) -> Admin:
    name = "own_pg_node" if request.param == "postgres" else "own_dbless_node"
    return Admin(request.getfixturevalue(name), request.param)


def gateway(uid: str, upstream: int, pre: list[str] | None, **extra: Any) -> dict[str, Any]:
    """The gateway's shape: a route with pre-function (the mapping), key-auth hiding the
    credential, and a consumer with a key."""
    plugins: list[dict[str, Any]] = []
    if pre is not None:
        plugins.append({"name": "pre-function", "config": {"access": pre}})
    plugins.append(
        {"name": "key-auth", "config": {"key_names": KEY_NAMES, "hide_credentials": True}}
    )
    plugins += extra.get("plugins", [])
    return {
        "services": [
            {
                "name": f"s-{uid}",
                "url": extra.get("url", f"http://127.0.0.1:{upstream}"),
                "routes": [{"name": f"r-{uid}", "paths": [f"/{uid}"], "plugins": plugins}],
            }
        ],
        "consumers": [{"username": f"c-{uid}", "keyauth_credentials": [{"key": f"key-{uid}"}]}],
    }


def get(admin: Admin, uid: str, headers: dict[str, str] | None = None) -> Response:
    return http("GET", f"{admin.node.proxy_url}/{uid}/x", headers=headers or {})


def seen(resp: Response) -> dict[str, str]:
    """The headers the echo upstream received (lower-case names)."""
    assert resp.status == 200, resp.text
    return {name.lower(): value for name, value in resp.json()["headers"]}


# --- the bearer mapping the gateway uses ---------------------------------------------------


def test_bearer_token_authenticates_and_never_reaches_upstream(admin, upstream, uid):
    admin.seed(gateway(uid, upstream, [mapping()]))
    resp = get(admin, uid, {"Authorization": f"Bearer key-{uid}"})
    headers = seen(resp)
    assert headers["x-consumer-username"] == f"c-{uid}"
    assert "authorization" not in headers
    assert "apikey" not in headers
    assert f"key-{uid}" not in resp.text
    # The scheme is case-insensitive (RFC 9110), extra blanks are tolerated.
    for value in (f"bearer key-{uid}", f"BEARER   key-{uid}  "):
        assert seen(get(admin, uid, {"Authorization": value}))["x-consumer-username"] == f"c-{uid}"


def test_without_the_mapping_key_auth_ignores_bearer(admin, upstream, uid):
    admin.seed(gateway(uid, upstream, None))
    resp = get(admin, uid, {"Authorization": f"Bearer key-{uid}"})
    assert resp.status == 401
    assert resp.json()["message"] == "No API key found in request"


@pytest.mark.parametrize(
    ("authorization", "message"),
    [
        (None, "No API key found in request"),
        ("Bearer", "No API key found in request"),
        ("Bearer    ", "No API key found in request"),
        ("Basic dXNlcjpwYXNz", "No API key found in request"),
        ("Token key-{uid}", "No API key found in request"),
        ("Bearer wrong-key", "Unauthorized"),
    ],
)
def test_bad_bearer_gets_key_auth_401(admin, upstream, uid, authorization, message):
    admin.seed(gateway(uid, upstream, [mapping()]))
    headers = {"Authorization": authorization.format(uid=uid)} if authorization else {}
    resp = get(admin, uid, headers)
    assert resp.status == 401
    assert resp.headers["WWW-Authenticate"] == "Key"
    assert resp.json()["message"] == message


def test_explicit_key_header_wins_and_bearer_is_still_removed(admin, upstream, uid):
    admin.seed(gateway(uid, upstream, [mapping()]))
    resp = get(admin, uid, {"Authorization": "Bearer something-else", "x-api-key": f"key-{uid}"})
    headers = seen(resp)
    assert headers["x-consumer-username"] == f"c-{uid}"
    assert "authorization" not in headers
    assert "x-api-key" not in headers
    assert "something-else" not in resp.text


def test_mapping_follows_the_role_key_names(admin, upstream, uid):
    """The template maps to the first of ``kong_gateway_key_names``."""
    cfg = gateway(uid, upstream, [mapping(["x-gw-key"])])
    cfg["services"][0]["routes"][0]["plugins"][1]["config"]["key_names"] = ["x-gw-key"]
    admin.seed(cfg)
    headers = seen(get(admin, uid, {"Authorization": f"Bearer key-{uid}"}))
    assert headers["x-consumer-username"] == f"c-{uid}"
    assert "x-gw-key" not in headers


# --- the plugin itself -------------------------------------------------------------------


def test_lua_syntax_error_is_rejected_at_creation(pg_admin_node, uid):
    code = "return function() local x = end"
    resp = http(
        "POST",
        pg_admin_node.admin_url + "/plugins",
        json={"name": "pre-function", "config": {"access": ["return 1", code]}},
    )
    assert resp.status == 400
    err = f"error parsing pre-function: [string \"{code}\"]:1: unexpected symbol near 'end'"
    body = resp.json()
    assert (body["code"], body["name"]) == (2, "schema violation")
    assert body["fields"] == {"config": {"access": [None, err]}}
    assert body["message"].startswith("schema violation (config.access: ")
    assert json.dumps(err)[1:-1] in body["message"]


def test_lua_syntax_error_is_rejected_in_declarative_config(own_dbless_node, uid):
    cfg = {
        "_format_version": "3.0",
        "plugins": [{"name": "post-function", "config": {"access": ["x ="]}}],
    }
    resp = http("POST", own_dbless_node.admin_url + "/config", json=cfg)
    assert resp.status == 400
    err = "error parsing post-function: [string \"x =\"]:1: unexpected symbol near '<eof>'"
    assert resp.json()["fields"]["plugins"][0]["config"]["access"] == [err]


@pytest.fixture
def pg_admin_node(own_pg_node: KongNode) -> KongNode:
    return own_pg_node


def test_schema_defaults(pg_admin_node, uid):
    resp = http(
        "POST",
        pg_admin_node.admin_url + "/plugins",
        json={"name": "post-function", "instance_name": f"p-{uid}", "config": {"access": ["x=1"]}},
    )
    assert resp.status == 201, resp.text
    body = resp.json()
    assert body["config"] == {
        "certificate": [],
        "rewrite": [],
        "access": ["x=1"],
        "header_filter": [],
        "body_filter": [],
        "log": [],
    }
    assert body["protocols"] == ["grpc", "grpcs", "http", "https"]
    http("DELETE", pg_admin_node.admin_url + f"/plugins/p-{uid}")


def test_runtime_error_is_kong_500_and_nothing_is_proxied(admin, uid):
    # The service points at a closed port: a proxied request would end in 502.
    cfg = gateway(uid, 0, ['error("boom")'], url=f"http://127.0.0.1:{free_port()}")
    admin.seed(cfg)
    resp = get(admin, uid, {"apikey": f"key-{uid}"})
    assert resp.status == 500
    body = resp.json()
    assert body["message"] == "An unexpected error occurred"
    assert len(body["request_id"]) == 32


@pytest.mark.parametrize(
    "code",
    [
        'os.execute("true")',  # not in the sandbox
        "string.upper = nil",  # protected module
        'require("os")',  # require is refused
        "setmetatable({}, {})",  # not in the sandbox
        'io.open("/etc/passwd")',
        "return load('return 1')()",
    ],
)
def test_sandbox_refuses_unsafe_code(admin, upstream, uid, code):
    admin.seed(gateway(uid, upstream, [code]))
    resp = get(admin, uid, {"apikey": f"key-{uid}"})
    assert resp.status == 500
    assert resp.json()["message"] == "An unexpected error occurred"


def test_response_exit_ends_the_request(admin, upstream, uid):
    code = (
        'if kong.request.get_header("x-block") then '
        'return kong.response.exit(403, {message = "blocked/here"}, {["X-Why"] = "test"}) end'
    )
    admin.seed(gateway(uid, upstream, [code]))
    resp = get(admin, uid, {"x-block": "1"})
    assert resp.status == 403
    assert resp.body == b'{"message":"blocked\\/here"}'
    assert resp.headers["Content-Type"] == "application/json; charset=utf-8"
    assert resp.headers["X-Why"] == "test"
    assert resp.headers["Server"] == "kong/3.9.3"
    assert "Via" not in resp.headers
    # Without the header the function lets the request go on to key-auth.
    assert get(admin, uid).status == 401


def test_returned_function_keeps_its_upvalues_between_requests(admin, upstream, uid):
    code = (
        'local n = 0 return function() n = n + 1 kong.service.request.set_header("x-count", n) end'
    )
    admin.seed(gateway(uid, upstream, [code]))
    counts = [seen(get(admin, uid, {"apikey": f"key-{uid}"}))["x-count"] for _ in range(3)]
    assert counts == ["1", "2", "3"]


def test_post_function_runs_after_key_auth(admin, upstream, uid):
    post = {
        "name": "post-function",
        "config": {
            "access": [
                'kong.service.request.set_header("x-seen", '
                'kong.request.get_header("x-consumer-username") or "nobody")'
            ]
        },
    }
    admin.seed(gateway(uid, upstream, None, plugins=[post]))
    headers = seen(get(admin, uid, {"apikey": f"key-{uid}"}))
    assert headers["x-seen"] == f"c-{uid}"
