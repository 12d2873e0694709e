"""KongClient: the one place that talks HTTP and maps statuses to errors."""

import json
import socket

import pytest
from ansible_collections.ai_gateway.kong.plugins.module_utils.kong import (
    KongClient,
    KongError,
    kong_argument_spec,
    parse_version,
)
from ansible_collections.ai_gateway.kong.plugins.modules import kong_service


def client(url="http://kong.test:8001", **kwargs):
    return KongClient(url, **kwargs)


def test_get_returns_the_body_and_404_means_absent(kong):
    kong.add("services", name="a", host="a.test")
    assert client().get("/services/a")["host"] == "a.test"
    assert client().get("/services/missing") is None


def test_schema_violation_fields_are_shown_verbatim(kong):
    fields = {"paths": ["should start with: / (fixed path) or ~/ (regex path)"]}
    kong.errors[("PUT", "/routes/r")] = (
        400,
        {
            "code": 2,
            "name": "schema violation",
            "message": "schema violation (paths.1: should start with: / (fixed path) or "
            "~/ (regex path))",
            "fields": fields,
        },
    )
    with pytest.raises(KongError) as err:
        client().put("/routes/r", {"paths": ["x"]})
    message = str(err.value)
    assert err.value.status == 400
    assert err.value.body["fields"] == fields
    assert "PUT /routes/r" in message
    assert 'fields: {"paths": ["should start with: / (fixed path) or ~/ (regex path)"]}' in message


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (401, {"message": "Unauthorized"}, "refused the request (check admin_headers"),
        (
            409,
            {"code": 5, "name": "unique constraint violation", "message": "UNIQUE"},
            "HTTP 409 conflict",
        ),
        (500, {"message": "An unexpected error occurred"}, "HTTP 500 Kong server error"),
        (
            405,
            {
                "code": 12,
                "name": "operation unsupported",
                "message": "cannot create 'routes' entities",
            },
            "use ai_gateway.kong.kong_declarative",
        ),
    ],
)
def test_error_statuses_are_mapped_in_one_place(kong, status, body, expected):
    kong.errors[("POST", "/routes")] = (status, body)
    with pytest.raises(KongError) as err:
        client().post("/routes", {"name": "r"})
    assert expected in str(err.value)
    assert err.value.status == status


def test_connection_options_reach_open_url(kong):
    c = client(
        admin_headers={"Authorization": "Bearer t0ken"},
        admin_username="admin",
        admin_password="pw",
        client_cert="/c.pem",
        client_key="/k.pem",
        ca_path="/ca.pem",
        validate_certs=False,
        timeout=3,
    )
    c.get("/")
    sent = kong.last_kwargs
    assert sent["headers"]["Authorization"] == "Bearer t0ken"
    assert (sent["url_username"], sent["url_password"], sent["force_basic_auth"]) == (
        "admin",
        "pw",
        True,
    )
    assert (sent["client_cert"], sent["client_key"], sent["ca_path"]) == (
        "/c.pem",
        "/k.pem",
        "/ca.pem",
    )
    assert (sent["validate_certs"], sent["timeout"]) == (False, 3)


@pytest.mark.parametrize("version", ["2.8.4", "1.4.3", "0.14.1"])
def test_kong_older_than_3_is_refused(kong, version):
    kong.version = version
    with pytest.raises(KongError) as err:
        client().node()
    assert "Kong %s at http://kong.test:8001 is not supported" % version in str(err.value)
    assert "3.0 or newer" in str(err.value)


@pytest.mark.parametrize("version", ["3.0.0", "3.9.3", "3.4.3.1", "3.9.1.0-enterprise"])
def test_kong_3_is_accepted(kong, version):
    kong.version = version
    assert client().node()["version"] == version
    assert parse_version(version)[0] == 3


def test_unreachable_admin_api_names_the_url_and_the_cause():
    # A port nobody listens on: the real open_url, a real refused connection.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = "http://127.0.0.1:%d" % port
    with pytest.raises(KongError) as err:
        KongClient(url, timeout=2).get("/")
    assert "Kong Admin API at %s is unreachable" % url in str(err.value)
    assert "Connection refused" in str(err.value)


def test_list_follows_offsets(kong):
    pages = iter(
        [
            (200, {"data": [{"id": "1"}], "offset": "abc", "next": "/consumers?offset=abc"}),
            (200, {"data": [{"id": "2"}], "next": None}),
        ]
    )
    kong.handle = lambda method, path, query, body: next(pages)
    assert [r["id"] for r in client().list("/consumers", tags=["a", "b"])] == ["1", "2"]
    assert kong.calls[0][1] == "/consumers"


@pytest.mark.parametrize(("method", "path"), [("PUT", "/upstreams/u"), ("POST", "/plugins")])
def test_404_on_a_write_is_a_failure_with_kongs_message(kong, method, path):
    kong.errors[(method, path)] = (404, {"message": "Not found"})
    with pytest.raises(KongError) as err:
        client()._request(method, path, body={})
    assert err.value.status == 404
    assert "HTTP 404 not found: Not found" in str(err.value)


def test_404_on_a_listing_is_a_failure_not_an_empty_list(kong):
    # key-auth not loaded: Kong has no /key-auths endpoint at all.
    kong.errors[("GET", "/key-auths")] = (404, {"message": "Not found"})
    with pytest.raises(KongError) as err:
        client().list("/key-auths")
    assert "Kong GET /key-auths failed: HTTP 404 not found: Not found" in str(err.value)


def test_a_404_on_delete_means_already_gone(kong):
    kong.errors[("DELETE", "/consumers/c/key-auth/k")] = (404, {"message": "Not found"})
    assert client().delete("/consumers/c/key-auth/k") is False


def test_unreachable_message_hides_credentials_in_the_url():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(KongError) as err:
        KongClient("http://admin:url-pa55@127.0.0.1:%d" % port, timeout=2).get("/")
    assert "url-pa55" not in str(err.value)
    assert "http://127.0.0.1:%d" % port in str(err.value)


def test_admin_headers_is_no_log():
    spec = kong_argument_spec()
    assert spec["admin_headers"]["no_log"] is True
    assert spec["admin_password"]["no_log"] is True


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"Authorization": ""}, "the value of header 'Authorization' is empty"),
        ({"Authorization": "   "}, "the value of header 'Authorization' is empty"),
        ({"Authorization": None}, "the value of header 'Authorization' is empty"),
        ({"X-Token": "a\r\nX-Evil: 1"}, "contains a line break"),
        ({"Bad Name": "v"}, "'Bad Name' is not a valid HTTP header name"),
    ],
)
def test_bad_admin_headers_fail_before_any_request(kong, run_module, headers, expected):
    result = run_module(
        kong_service,
        {"admin_url": "http://kong.test:8001", "name": "s", "host": "h", "admin_headers": headers},
    )
    assert result["failed"] is True
    assert expected in result["msg"]
    assert kong.calls == []


def test_admin_header_values_stay_out_of_the_result(kong, run_module):
    result = run_module(
        kong_service,
        {
            "admin_url": "http://kong.test:8001",
            "name": "s",
            "host": "h",
            "admin_headers": {"Authorization": "Bearer adm1n-t0ken"},
        },
    )
    assert result["changed"] is True
    assert kong.last_kwargs["headers"]["Authorization"] == "Bearer adm1n-t0ken"
    assert "adm1n-t0ken" not in json.dumps(result)
