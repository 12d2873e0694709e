"""Unit-test fixtures: an in-memory Kong Admin API behind a mocked open_url.

The mock sits at the module_utils boundary (the `open_url` that KongClient._request() calls), so
every test also exercises the client's status-to-error mapping. FakeKong keeps just enough of
Kong 3.9's Admin API semantics for the modules: PUT upserts and replaces whole entities with
schema defaults, PATCH merges, 404 `{"message":"Not found"}`, 409 on duplicate keys, nested
key-auth routes, tag filters and pagination (see the Kong 3.9 reference, 1.1-1.5).
"""

import copy
import hashlib
import io
import ipaddress
import json
import re
import ssl
import sys
import uuid
from pathlib import Path
from unittest import mock
from urllib.error import HTTPError
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
import yaml

# `collections/` holds ansible_collections/ai_gateway/kong -> ../../ai_gateway.
COLLECTIONS = Path(__file__).resolve().parents[3]
if str(COLLECTIONS) not in sys.path:
    sys.path.insert(0, str(COLLECTIONS))

from ansible.module_utils import basic  # noqa: E402
from ansible.module_utils.testing import patch_module_args  # noqa: E402

DEFAULTS = {
    "services": {
        "protocol": "http",
        "port": 80,
        "path": None,
        "retries": 5,
        "connect_timeout": 60000,
        "write_timeout": 60000,
        "read_timeout": 60000,
        "tags": None,
        "enabled": True,
        "tls_verify": None,
        "tls_verify_depth": None,
        "ca_certificates": None,
        "client_certificate": None,
    },
    "routes": {
        "service": None,
        "protocols": ["http", "https"],
        "methods": None,
        "hosts": None,
        "paths": None,
        "headers": None,
        "snis": None,
        "sources": None,
        "destinations": None,
        "strip_path": True,
        "preserve_host": False,
        "regex_priority": 0,
        "path_handling": "v0",
        "https_redirect_status_code": 426,
        "request_buffering": True,
        "response_buffering": True,
        "tags": None,
    },
    "consumers": {"username": None, "custom_id": None, "tags": None},
    "plugins": {
        "instance_name": None,
        "service": None,
        "route": None,
        "consumer": None,
        "enabled": True,
        "protocols": ["grpc", "grpcs", "http", "https"],
        "tags": None,
    },
    "key-auths": {"tags": None, "ttl": None},
    "upstreams": {
        "algorithm": "round-robin",
        "hash_on": "none",
        "hash_fallback": "none",
        "hash_on_cookie_path": "/",
        "slots": 10000,
        "healthchecks": None,
        "tags": None,
        "use_srv_name": False,
    },
    "targets": {"weight": 100, "tags": None},
    "certificates": {"cert_alt": None, "key_alt": None, "snis": [], "tags": None},
    "ca_certificates": {"tags": None},
}
KEYS = {
    "services": "name",
    "routes": "name",
    "consumers": "username",
    "plugins": "instance_name",
    "upstreams": "name",
    "targets": "target",
    "certificates": "id",  # no endpoint key: /certificates/{id or SNI name}
    "ca_certificates": "cert_digest",
}
PLUGIN_SCHEMAS = {
    "key-auth": [
        {"key_names": {"type": "array", "default": ["apikey"]}},
        {"hide_credentials": {"type": "boolean", "default": False}},
        {"anonymous": {"type": "string"}},
        {"key_in_header": {"type": "boolean", "default": True}},
    ],
    "rate-limiting": [
        {"minute": {"type": "number"}},
        {"hour": {"type": "number"}},
        {"policy": {"type": "string", "default": "local"}},
        {
            "redis": {
                "type": "record",
                "fields": [
                    {"host": {"type": "string"}},
                    {"port": {"type": "integer", "default": 6379}},
                    {"password": {"type": "string"}},
                ],
            }
        },
    ],
    "request-transformer": [
        {
            name: {
                "type": "record",
                "fields": [{"headers": {"type": "array", "default": []}}],
            }
        }
        for name in ("remove", "add", "append")
    ],
}


def fill_config(fields, given):
    out = {}
    for entry in fields:
        ((name, spec),) = entry.items()
        if spec.get("type") == "record":
            out[name] = fill_config(spec["fields"], (given or {}).get(name) or {})
        else:
            out[name] = copy.deepcopy((given or {}).get(name, spec.get("default")))
    return out


class FakeResponse:
    def __init__(self, status, body):
        self.status = status
        self._body = b"" if body is None else json.dumps(body).encode()

    def getcode(self):
        return self.status

    def read(self):
        return self._body


class FakeKong:
    """An in-memory Kong 3.9 Admin API. `calls` records every (method, path, body)."""

    def __init__(self, version="3.9.3", database="postgres"):
        self.version = version
        self.database = database
        self.tables = {name: {} for name in DEFAULTS}
        self.calls = []
        self.errors = {}  # (method, path) -> (status, body): canned failures
        self.config_text = None
        self.config_hash = "0" * 32
        self.health = {}  # target id -> health set by hand

    # ----- helpers for tests ---------------------------------------------------------------
    def writes(self):
        return [c for c in self.calls if c[0] != "GET"]

    def add(self, table, **fields):
        return self._create(table, fields)[1]

    def rows(self, table):
        return list(self.tables[table].values())

    # ----- emulation -----------------------------------------------------------------------
    def _create(self, table, body):
        row = copy.deepcopy(DEFAULTS[table])
        row.update(copy.deepcopy(body))
        row.setdefault("id", str(uuid.uuid4()))
        row["created_at"] = row["updated_at"] = 1764226000
        if table == "plugins" and row["name"] in PLUGIN_SCHEMAS:
            row["config"] = fill_config(PLUGIN_SCHEMAS[row["name"]], body.get("config"))
        if table == "certificates":
            row["snis"] = sorted(row.get("snis") or [])  # Kong sorts them in every answer
        if table == "ca_certificates":
            row["cert_digest"] = hashlib.sha256(ssl.PEM_cert_to_DER_cert(row["cert"])).hexdigest()
        if table == "key-auths" and not row.get("key"):
            row["key"] = uuid.uuid4().hex  # Kong: 32 random characters
        unique = [KEYS.get(table, "key")] + (["custom_id"] if table == "consumers" else [])
        for other in self.tables[table].values():
            for key in unique:
                if other["id"] != row["id"] and row.get(key) and other.get(key) == row.get(key):
                    return 409, {
                        "code": 5,
                        "name": "unique constraint violation",
                        "message": "UNIQUE violation detected on '{%s=\"%s\"}'" % (key, row[key]),
                        "fields": {key: row[key]},
                    }
        self.tables[table][row["id"]] = row
        return 200, row

    def _find(self, table, ref):
        rows = self.tables[table]
        if ref in rows:
            return rows[ref]
        if table == "certificates":
            return next((r for r in rows.values() if ref in r["snis"]), None)
        key = KEYS.get(table, "key")
        return next((r for r in rows.values() if r.get(key) == ref), None)

    def _page(self, rows, query):
        tags = query.get("tags", [None])[0]
        if tags:
            wanted = tags.split(",")
            rows = [r for r in rows if set(wanted) <= set(r.get("tags") or [])]
        return 200, {"data": rows, "next": None}

    def handle(self, method, path, query, body):
        parts = [unquote(p) for p in path.strip("/").split("/") if p]
        if (method, path) in self.errors:
            return self.errors[(method, path)]
        if method == "GET" and not parts:
            return 200, {
                "version": self.version,
                "edition": "community",
                "hostname": "fake",
                "node_id": "00000000-0000-4000-8000-000000000000",
                "configuration": {"database": self.database},
                "plugins": {"available_on_server": {"key-auth": {}}, "enabled_in_cluster": []},
            }
        if parts == ["status"]:
            status = {"server": {"connections_active": 1}}
            if self.database == "off":
                status["configuration_hash"] = self.config_hash
            else:
                status["database"] = {"reachable": True}
            return 200, status
        if parts == ["config"]:
            return self._config(method, query, body)
        if parts[:2] == ["schemas", "plugins"]:
            if parts[2] in PLUGIN_SCHEMAS:
                return 200, {
                    "fields": [{"config": {"type": "record", "fields": PLUGIN_SCHEMAS[parts[2]]}}]
                }
            return 404, {"message": "No plugin named '%s'" % parts[2]}
        if method != "GET" and self.database == "off":
            return 405, {
                "code": 12,
                "name": "operation unsupported",
                "message": "cannot create '%s' entities when not using a database" % parts[0],
            }
        if parts[0] == "consumers" and len(parts) >= 3 and parts[2] == "key-auth":
            return self._key_auth(method, parts, query, body)
        if parts[0] == "upstreams" and len(parts) >= 3:
            return self._targets(method, parts, query, body)
        if parts[0] == "targets":
            return 404, {"message": "Not found"}  # disabled in Kong (endpoints.disable)
        if len(parts) == 3 and parts[2] == "plugins":
            parent = self._find(parts[0], parts[1])
            if parent is None:
                return 404, {"message": "Not found"}
            field = parts[0][:-1]
            rows = [
                r
                for r in self.tables["plugins"].values()
                if (r.get(field) or {}).get("id") == parent["id"]
            ]
            return self._page(rows, query)
        table = parts[0]
        if table not in self.tables:
            return 404, {"message": "Not found"}
        if len(parts) == 1:
            if method == "GET":
                rows = list(self.tables[table].values())
                if "custom_id" in query:
                    rows = [r for r in rows if r.get("custom_id") == query["custom_id"][0]]
                return self._page(rows, query)
            if method == "POST":
                status, row = self._create(table, body)
                return (201 if status == 200 else status), row
            return 405, {"message": "Method not allowed"}
        current = self._find(table, parts[1])
        if method == "GET":
            return (200, current) if current else (404, {"message": "Not found"})
        if method == "DELETE":
            if current:
                del self.tables[table][current["id"]]
            return 204, None
        if method == "PATCH":
            if current is None:
                return 404, {"message": "Not found"}
            merged = dict(current, **body)
            return self._create(table, merged)
        if method == "PUT":
            new = dict(body)
            if current is not None:
                new["id"] = current["id"]
            elif table in KEYS and not _is_uuid(parts[1]):
                new[KEYS[table]] = parts[1]
            else:
                new["id"] = parts[1]
            if table in KEYS and not _is_uuid(parts[1]):
                new[KEYS[table]] = parts[1]  # the name in the URL wins
            return self._create(table, new)
        return 405, {"message": "Method not allowed"}

    def _key_auth(self, method, parts, query, body):
        consumer = self._find("consumers", parts[1])
        if consumer is None:
            return 404, {"message": "Not found"}
        mine = [
            r for r in self.tables["key-auths"].values() if r["consumer"]["id"] == consumer["id"]
        ]
        if len(parts) == 3:
            if method == "GET":
                return self._page(mine, query)
            status, row = self._create("key-auths", dict(body, consumer={"id": consumer["id"]}))
            return (201 if status == 200 else status), row
        cred = next((r for r in mine if parts[3] in (r["id"], r["key"])), None)
        if cred is None:
            return 404, {"message": "Not found"}
        if method == "GET":
            return 200, cred
        if method == "DELETE":
            del self.tables["key-auths"][cred["id"]]
            return 204, None
        if method == "PATCH":
            return self._create("key-auths", dict(cred, **body))
        return 405, {"message": "Method not allowed"}

    # ----- upstreams and targets (kong/api/routes/upstreams.lua, targets.lua) ----------------
    def _targets(self, method, parts, query, body):
        upstream = self._find("upstreams", parts[1])
        if upstream is None:
            return 404, {"message": "Not found"}
        mine = [t for t in self.tables["targets"].values() if t["upstream"]["id"] == upstream["id"]]
        if parts[2] == "health":
            rows = [dict(t, health=self._health(upstream, t)) for t in mine]
            return 200, {
                "data": rows,
                "next": None,
                "node_id": "00000000-0000-4000-8000-000000000000",
            }
        if len(parts) == 3:
            if method == "GET":
                return self._page(mine, query)
            if method == "POST":
                row = dict(body, upstream={"id": upstream["id"]})
                row["target"] = kong_target(row.get("target"))
                if any(t["target"] == row["target"] for t in mine):
                    return 409, {
                        "code": 5,
                        "name": "unique constraint violation",
                        "message": "UNIQUE",
                    }
                status, row = self._create("targets", row)
                return (201 if status == 200 else status), row
            return 405, {"message": "Method not allowed"}
        target = next((t for t in mine if parts[3] in (t["id"], t["target"])), None)
        if target is None:
            return 404, {"message": "Not found"}
        if len(parts) == 5 and parts[4] in ("healthy", "unhealthy") and method == "PUT":
            if self.healthchecks_off(upstream):
                return 400, {"message": "no healthchecker found for %s" % upstream["name"]}
            self.health[target["id"]] = parts[4].upper()
            return 204, None
        if method == "GET":
            return 200, target
        if method == "DELETE":
            del self.tables["targets"][target["id"]]
            return 204, None
        if method in ("PATCH", "PUT"):  # both update only (targets.lua)
            return self._create("targets", dict(target, **body))
        return 405, {"message": "Method not allowed"}

    def _health(self, upstream, target):
        if self.healthchecks_off(upstream) or target.get("weight") == 0:
            return "HEALTHCHECKS_OFF"
        return self.health.get(target["id"], "HEALTHY")

    @staticmethod
    def healthchecks_off(upstream):
        checks = upstream.get("healthchecks") or {}
        active = checks.get("active") or {}
        unhealthy = (checks.get("passive") or {}).get("unhealthy") or {}
        return not (
            (active.get("healthy") or {}).get("interval")
            or (active.get("unhealthy") or {}).get("interval")
            or any(unhealthy.get(k) for k in ("tcp_failures", "timeouts", "http_failures"))
        )

    def _config(self, method, query, body):
        if self.database != "off":
            return 400, {
                "message": "this endpoint is only available when Kong is configured to not use "
                "a database"
            }
        if method == "GET":
            return 200, {"config": self.config_text or "_format_version: '3.0'\n"}
        text = body["config"]
        new_hash = hashlib.md5(text.encode()).hexdigest()  # noqa: S324 - Kong's hash
        if not any(v for k, v in yaml.safe_load(text).items() if not k.startswith("_")):
            new_hash = "0" * 32  # Kong's hash of a configuration without entities
        if query.get("check_hash") and new_hash == self.config_hash:
            return 304, None
        self.config_text, self.config_hash = text, new_hash
        return 201, {}

    # ----- the open_url replacement --------------------------------------------------------
    def open_url(self, url, method="GET", data=None, headers=None, **kwargs):
        self.last_kwargs = dict(kwargs, headers=headers)
        parts = urlsplit(url)
        body = json.loads(data) if data else None
        self.calls.append((method, parts.path, body))
        status, payload = self.handle(method, parts.path, parse_qs(parts.query), body)
        if status >= 300:
            raw = b"" if payload is None else json.dumps(payload).encode()
            raise HTTPError(url, status, "error", {}, io.BytesIO(raw))
        return FakeResponse(status, payload)


def kong_target(text):
    """A target as Kong 3.9 stores it: default port 8000, IPv4 without leading zeros, IPv6
    expanded and bracketed (kong/tools/ip.lua), written independently of the modules' code."""
    host, port = text, 8000
    bracketed = re.match(r"^\[(.+)\](?::(\d+))?$", text)
    if bracketed:
        host, port = bracketed.group(1), int(bracketed.group(2) or 8000)
    elif text.count(":") == 1:
        host, port = text.split(":")[0], int(text.split(":")[1])
    if re.match(r"^[0-9.]+$", host):
        host = ".".join(str(int(p)) for p in host.split("."))
    elif ":" in host:
        return "[%s]:%d" % (ipaddress.IPv6Address(host).exploded, port)
    return "%s:%d" % (host, port)


def _is_uuid(value):
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


class ModuleExit(Exception):
    def __init__(self, result, failed):
        super().__init__(result.get("msg"))
        self.result = result
        self.failed = failed


@pytest.fixture
def kong():
    fake = FakeKong()
    with mock.patch(
        "ansible_collections.ai_gateway.kong.plugins.module_utils.kong.open_url",
        side_effect=fake.open_url,
    ):
        yield fake


@pytest.fixture
def run_module():
    """run_module(module, args, check=False) -> the module's result (failed=True on fail_json)."""

    def exit_json(self, **kwargs):
        raise ModuleExit(kwargs, False)

    def fail_json(self, msg, **kwargs):
        kwargs["msg"] = msg
        raise ModuleExit(kwargs, True)

    def run(module, args, check=False):
        args = dict(args, _ansible_check_mode=check, _ansible_diff=True)
        with (
            patch_module_args(args),
            mock.patch.object(basic.AnsibleModule, "exit_json", exit_json),
            mock.patch.object(basic.AnsibleModule, "fail_json", fail_json),
        ):
            try:
                module.main()
            except ModuleExit as done:
                result = done.result
                result["failed"] = done.failed
                return result
        raise AssertionError("the module neither exited nor failed")

    return run
