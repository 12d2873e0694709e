"""The Admin API (``kong/api/endpoints.lua`` and ``kong/api/routes/*.lua`` of Kong 3.9.3).

One catch-all handler resolves the URL into a generated endpoint (collection, entity, nested
collection, nested entity, foreign link) or one of Kong's extra endpoints, as Kong's endpoint
generator does for every DAO.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import socket
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, quote

from aiohttp import web

from kongsim import KONG_VERSION
from kongsim.dao import DAO, public
from kongsim.entities import ENTITIES
from kongsim.errors import HTTPError, KongError, method_not_allowed, not_found, schema_violation
from kongsim.schema import Field, is_uuid

if TYPE_CHECKING:
    from kongsim.server import Node

# URL name -> entity name (``admin_api_name``) and nested names (``admin_api_nested_name``).
COLLECTIONS = {
    "services": "services",
    "routes": "routes",
    "consumers": "consumers",
    "plugins": "plugins",
    "key-auths": "keyauth_credentials",
    "upstreams": "upstreams",
}
NESTED = {
    ("services", "routes"): ("routes", "service"),
    ("services", "plugins"): ("plugins", "service"),
    ("routes", "plugins"): ("plugins", "route"),
    ("consumers", "plugins"): ("plugins", "consumer"),
    ("consumers", "key-auth"): ("keyauth_credentials", "consumer"),
}
NESTED_NAME = {"keyauth_credentials": "key-auth"}
FOREIGN_LINKS = {
    ("routes", "service"),
    ("plugins", "route"),
    ("plugins", "service"),
    ("plugins", "consumer"),
    ("keyauth_credentials", "consumer"),
}
TAG_CHARS = r"[ !-+\-.0-9:-~\u0080-\U0010ffff]"
TAGS_AND = re.compile(rf"^({TAG_CHARS}+(,|$))+$")
TAGS_OR = re.compile(rf"^({TAG_CHARS}+(/|$))+$")
DAO_MAX_TTL = 100000000
NEEDS_BODY = ("POST", "PUT", "PATCH")
ONLY_DBLESS = "this endpoint is only available when Kong is configured to not use a database"


def json_response(status: int, body: Any, headers: dict[str, str] | None = None) -> web.Response:
    if body is None:
        return web.Response(status=status, headers=headers)
    return web.Response(
        status=status,
        body=json.dumps(body, ensure_ascii=False).encode(),
        content_type="application/json",
        charset="utf-8",
        headers=headers,
    )


def _set_path(target: dict[str, Any], key: str, value: Any) -> None:
    """Kong's ``normalize_nested_params``: ``a.b=1``, ``a[]=x``, ``a[1]=x``, ``a[b]=x``;
    a repeated key becomes an array."""
    push = key.endswith("[]")
    if push:
        key = key[:-2]
    parts = [p for p in re.split(r"\.|\[|\]", key) if p] or [key]
    node = target
    for part in parts[:-1]:
        nxt = node.get(part)
        if not isinstance(nxt, dict):
            nxt = {}
            node[part] = nxt
        node = nxt
    last = parts[-1]
    if push or last in node:
        current = node.get(last)
        items = current if isinstance(current, list) else ([] if current is None else [current])
        node[last] = [*items, value]
    else:
        node[last] = value


def _digit_dicts_to_lists(value: Any) -> Any:
    if isinstance(value, dict):
        value = {k: _digit_dicts_to_lists(v) for k, v in value.items()}
        if value and all(k.isdigit() for k in value):
            return [value[k] for k in sorted(value, key=int)]
    return value


def nest_params(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        _set_path(out, key, value)
    return _digit_dicts_to_lists(out)


def coerce(fields: list[tuple[str, Field]], data: dict[str, Any]) -> dict[str, Any]:
    """Form values arrive as strings; turn them into the schema's types as Kong does."""
    by_name = dict(fields)
    out = dict(data)
    for name, value in data.items():
        f = by_name.get(name)
        if f is not None:
            out[name] = _coerce_value(f, value)
    return out


def _coerce_value(f: Field, value: Any) -> Any:
    if isinstance(value, str):
        if f.type in ("integer", "number"):
            try:
                number = float(value)
            except ValueError:
                return value
            return int(number) if number.is_integer() else number
        if f.type == "boolean":
            return {"true": True, "false": False}.get(value, value)
        if f.type in ("array", "set"):
            return (
                [] if value == "" else [_coerce_value(f.elements, value) if f.elements else value]
            )
        if f.type == "foreign":
            return {"id": value}
    if isinstance(value, list) and f.elements:
        return [_coerce_value(f.elements, v) for v in value]
    if isinstance(value, dict) and f.type == "record" and f.fields is not None:
        return coerce(f.fields, value)
    return value


class AdminAPI:
    """Builds the aiohttp application for ``admin_listen``."""

    def __init__(self, node: Node):
        self.node = node

    @property
    def dao(self) -> DAO:
        return self.node.dao

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware], client_max_size=16 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self.dispatch)
        return app

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        started = time.monotonic()
        self.node.stats["total_requests"] += 1
        try:
            response = await handler(request)
        except HTTPError as exc:
            response = json_response(exc.status, exc.body, exc.headers)
        except web.HTTPException:
            raise
        except Exception:  # the generic 500 body, as Kong's handle_error
            self.node.log_error("admin API error", exc_info=True)
            response = json_response(500, {"message": "An unexpected error occurred"})
        origin = request.headers.get("Origin")
        response.headers["Access-Control-Allow-Origin"] = origin or "*"
        response.headers["Access-Control-Allow-Credentials"] = "true"
        # Kong.admin_header_filter (kong/init.lua): both headers follow kong.conf `headers`;
        # without a Server header nginx answers with its own `server_tokens off` value.
        enabled = {h.lower() for h in self.node.conf.get("headers") or []}
        if enabled & {"latency_tokens", "x-kong-admin-latency"}:
            latency = int((time.monotonic() - started) * 1000)
            response.headers["X-Kong-Admin-Latency"] = str(latency)
        server = enabled & {"server_tokens", "server"}
        response.headers["Server"] = f"kong/{KONG_VERSION}" if server else "openresty"
        self.node.access_log("admin", request, response.status)
        return response

    # --- request helpers --------------------------------------------------------------------

    async def body(
        self, request: web.Request, fields: list[tuple[str, Field]] | None
    ) -> dict[str, Any]:
        """Parse a POST/PUT/PATCH body as Kong's ``before_filter`` and ``parse_params`` do."""
        ctype = request.headers.get("Content-Type")
        raw = await request.read()
        if not ctype:
            if not raw:
                return {}
            raise HTTPError(415)
        lower = ctype.lower()
        if lower.startswith("application/json"):
            try:
                data = json.loads(raw.decode() if raw else "")
            except (ValueError, UnicodeDecodeError) as exc:
                raise HTTPError(400, {"message": "Cannot parse JSON body"}) from exc
            if not isinstance(data, dict):
                raise HTTPError(400, {"message": "Cannot parse JSON body"})
            return data
        if lower.startswith("application/x-www-form-urlencoded"):
            pairs = parse_qsl(raw.decode(errors="replace"), keep_blank_values=True)
        elif lower.startswith("multipart/form-data"):
            pairs = []
            post = await request.post()
            for key, value in post.items():
                pairs.append((key, value if isinstance(value, str) else value.file.read().decode()))
        else:
            raise HTTPError(415)
        data = nest_params(pairs)
        return coerce(fields, data) if fields else data

    def fields_for(
        self, entity: str, data: dict[str, Any] | None = None, current: dict[str, Any] | None = None
    ) -> list[tuple[str, Field]]:
        fields = list(ENTITIES[entity].fields)
        if entity == "plugins":
            name = (data or {}).get("name") or (current or {}).get("name")
            plugin = self.dao.plugins.get(name) if isinstance(name, str) else None
            if plugin:
                fields = [(n, plugin.config if n == "config" else f) for n, f in fields]
        if entity == "keyauth_credentials":
            fields.append(("ttl", Field("integer")))
        return fields

    async def entity_body(
        self, request: web.Request, entity: str, current: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        ctype = (request.headers.get("Content-Type") or "").lower()
        if ctype.startswith("application/json") or not ctype:
            return await self.body(request, None)
        data = await self.body(request, None)
        return coerce(self.fields_for(entity, data, current), data)

    @staticmethod
    def pop_ttl(entity: str, data: dict[str, Any]) -> Any:
        if "ttl" not in data:
            return None
        ttl = data.pop("ttl")
        if not ENTITIES[entity].ttl:
            raise KongError(
                11,
                f"invalid option (ttl: cannot be used with '{entity}')",
                {"ttl": f"cannot be used with '{entity}'"},
            )
        if (
            not isinstance(ttl, int | float)
            or isinstance(ttl, bool)
            or ttl != int(ttl)
            or not 0 <= ttl <= DAO_MAX_TTL
        ):
            msg = f"must be an integer between 0 and {DAO_MAX_TTL}"
            raise KongError(11, f"invalid option (ttl: {msg})", {"ttl": msg})
        return ttl

    def dbless_write(self, entity: str, operation: str, key: str | None = None) -> KongError:
        field = ""
        if key is not None and not is_uuid(key) and ENTITIES[entity].endpoint_key:
            field = f" by '{ENTITIES[entity].endpoint_key}'"
        return KongError(
            12, f"cannot {operation} '{entity}' entities{field} when not using a database"
        )

    # --- dispatch ---------------------------------------------------------------------------

    async def dispatch(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        segments = [s for s in path.split("/") if s != ""]
        method = request.method
        if method == "OPTIONS":
            headers = {
                "Access-Control-Allow-Methods": "GET, HEAD, PUT, PATCH, POST, DELETE, OPTIONS"
            }
            if request.headers.get("Access-Control-Request-Headers"):
                headers["Access-Control-Allow-Headers"] = request.headers[
                    "Access-Control-Request-Headers"
                ]
            return web.Response(status=204, headers=headers)
        if method == "HEAD":
            method = "GET"
        if not segments:
            return self._only(method, "GET") or self.root()
        head = segments[0]
        if head == "status" and len(segments) == 1:
            return self._only(method, "GET") or await self.status(request)
        if head == "config" and len(segments) == 1:
            return await self.config(request)
        if head == "endpoints" and len(segments) == 1:
            return self._only(method, "GET") or self.endpoints()
        if head == "tags":
            return self._only(method, "GET") or await self.tags(request, segments[1:])
        if head == "schemas":
            return await self.schemas(request, segments[1:])
        if head == "plugins" and len(segments) >= 2 and segments[1] in ("enabled", "schema"):
            if segments[1] == "enabled" and len(segments) == 2:
                return self._only(method, "GET") or json_response(
                    200, {"enabled_plugins": self.dao.enabled_plugins}
                )
            if segments[1] == "schema" and len(segments) == 3:
                return self._only(method, "GET") or self.plugin_schema(segments[2])
        if (
            head == "consumers"
            and len(segments) == 1
            and method == "GET"
            and "custom_id" in request.query
        ):
            return await self.consumer_by_custom_id(request.query["custom_id"])
        if head not in COLLECTIONS:
            raise not_found()
        entity = COLLECTIONS[head]
        if len(segments) == 1:
            return await self.collection(request, entity)
        key = segments[1]
        if len(segments) == 2:
            return await self.entity(request, entity, key)
        if entity == "upstreams":
            from kongsim import admin_upstreams

            return await admin_upstreams.dispatch(self, request, segments)
        sub = segments[2]
        if (entity, sub) in FOREIGN_LINKS and len(segments) == 3:
            return await self.foreign_link(request, entity, key, sub)
        if (head, sub) in NESTED:
            child, fk = NESTED[(head, sub)]
            parent = await self.dao.select(entity, key)
            if len(segments) == 3:
                return await self.nested_collection(request, entity, parent, child, fk, key)
            if len(segments) == 4:
                return await self.nested_entity(request, parent, child, fk, segments[3])
        raise not_found()

    @staticmethod
    def _only(method: str, *allowed: str) -> web.Response | None:
        if method not in allowed:
            raise method_not_allowed()
        return None

    # --- generated endpoints ----------------------------------------------------------------

    def page_args(
        self, request: web.Request, entity: str, *, nested: bool
    ) -> tuple[int, str | None, list[str] | None, str]:
        query = request.query
        size = 100
        if "size" in query:
            try:
                number = float(query["size"])
            except ValueError:
                raise KongError(9, "size must be a number") from None
            if number != int(number) or not 1 <= number <= 1000:
                raise KongError(9, "size must be an integer between 1 and 1000")
            size = int(number)
        tags: list[str] | None = None
        cond = "and"
        if "tags" in query and not nested and ENTITIES[entity].field("tags"):
            value = query.getall("tags")[0]
            if value == "":
                raise KongError(
                    11, "invalid option (tags: cannot be null)", {"tags": "cannot be null"}
                )
            if TAGS_AND.match(value):
                tags = value.split(",")
            elif TAGS_OR.match(value):
                tags, cond = value.split("/"), "or"
            else:
                raise KongError(
                    11,
                    "invalid option (tags: invalid filter syntax)",
                    {"tags": "invalid filter syntax"},
                )
            tags = [t for t in tags if t]
            if len(tags) > 5:
                raise KongError(
                    11,
                    "invalid option (tags: cannot query more than 5 tags)",
                    {"tags": "cannot query more than 5 tags"},
                )
        return size, query.get("offset"), tags, cond

    @staticmethod
    def paginate(
        rows: list[dict[str, Any]], size: int, offset: str | None
    ) -> tuple[list[dict[str, Any]], str | None]:
        start = 0
        if offset is not None:
            try:
                after = base64.b64decode(offset.encode(), validate=True).decode()
            except (binascii.Error, UnicodeDecodeError, ValueError):
                raise KongError(
                    7, f"'{offset}' is not a valid offset: bad base64 encoding"
                ) from None
            if not is_uuid(after):
                raise KongError(7, f"'{offset}' is not a valid offset: bad base64 encoding")
            start = next((i for i, r in enumerate(rows) if r["id"] > after), len(rows))
        page = rows[start : start + size]
        next_offset = None
        if start + size < len(rows):
            next_offset = base64.b64encode(page[-1]["id"].encode()).decode()
        return page, next_offset

    async def collection(self, request: web.Request, entity: str) -> web.Response:
        name = ENTITIES[entity].admin_name
        if request.method in ("GET", "HEAD"):
            size, offset, tags, cond = self.page_args(request, entity, nested=False)
            rows = await self.dao.rows(entity)
            if tags:
                wanted = set(tags)
                rows = [
                    r
                    for r in rows
                    if (
                        wanted <= set(r.get("tags") or [])
                        if cond == "and"
                        else wanted & set(r.get("tags") or [])
                    )
                ]
            page, next_offset = self.paginate(rows, size, offset)
            body: dict[str, Any] = {"data": [public(r) for r in page]}
            if next_offset:
                body["offset"] = next_offset
                extra = ""
                if "tags" in request.query:
                    extra += "&tags=" + quote(request.query.getall("tags")[0], safe="")
                if "size" in request.query:
                    extra += "&size=" + request.query["size"]
                body["next"] = f"/{name}?offset={quote(next_offset, safe='')}{extra}"
            else:
                body["next"] = None
            return json_response(200, body)
        if request.method == "POST":
            data = await self.entity_body(request, entity)
            ttl = self.pop_ttl(entity, data)
            return await self.create(entity, data, ttl)
        raise method_not_allowed()

    async def create(self, entity: str, data: dict[str, Any], ttl: Any) -> web.Response:
        if self.node.dbless:
            self._validate_only(entity, await self.dao.resolve_foreign(entity, data))
            raise self.dbless_write(entity, "create")
        row = await self.dao.insert(entity, data, ttl=ttl)
        await self.node.changed()
        return json_response(201, public(row))

    def _validate_only(self, entity: str, data: dict[str, Any]) -> None:
        probe = dict(data)
        self.dao.normalize_input(entity, probe)
        probe.setdefault("id", "00000000-0000-4000-8000-000000000000")
        if entity == "keyauth_credentials" and probe.get("key") is None:
            probe["key"] = "x"
        _, errors = self.dao.prepare(entity, probe)
        if errors:
            raise schema_violation(errors)

    async def entity(self, request: web.Request, entity: str, key: str) -> web.Response:
        method = request.method
        if method in ("GET", "HEAD"):
            row = await self.dao.select(entity, key)
            if row is None:
                raise not_found()
            return json_response(200, public(row))
        if method == "PUT":
            data = await self.entity_body(request, entity)
            ttl = self.pop_ttl(entity, data)
            return await self.put(entity, key, data, ttl)
        if method == "PATCH":
            current = await self.dao.select(entity, key)
            data = await self.entity_body(request, entity, current)
            ttl = self.pop_ttl(entity, data)
            return await self.patch(entity, key, current, data, ttl)
        if method == "DELETE":
            row = await self.dao.select(entity, key)
            if row is None:
                return web.Response(status=204)
            if self.node.dbless:
                raise self.dbless_write(entity, "remove", key)
            await self.dao.delete(entity, row)
            await self.node.changed()
            return web.Response(status=204)
        raise method_not_allowed()

    async def put(
        self,
        entity: str,
        key: str,
        data: dict[str, Any],
        ttl: Any,
        existing: dict[str, Any] | None = None,
    ) -> web.Response:
        if self.node.dbless:
            probe = dict(data)
            if not is_uuid(key) and ENTITIES[entity].endpoint_key:
                probe[ENTITIES[entity].endpoint_key] = key
            self._validate_only(entity, await self.dao.resolve_foreign(entity, probe))
            raise self.dbless_write(entity, "create or update", key)
        row = await self.dao.upsert(entity, key, data, ttl=ttl, existing=existing)
        await self.node.changed()
        return json_response(200, public(row))

    async def patch(
        self, entity: str, key: str, current: dict[str, Any] | None, data: dict[str, Any], ttl: Any
    ) -> web.Response:
        if current is None:
            raise not_found()
        if self.node.dbless:
            raise self.dbless_write(entity, "update", key)
        row = await self.dao.update(entity, current, data, ttl=ttl)
        await self.node.changed()
        return json_response(200, public(row))

    async def foreign_link(
        self, request: web.Request, entity: str, key: str, fk: str
    ) -> web.Response:
        """``/routes/{r}/service`` and friends: the parent entity seen through the child."""
        row = await self.dao.select(entity, key)
        if row is None:
            raise not_found()
        ref = ENTITIES[entity].field(fk)
        assert ref is not None
        assert ref.reference
        link = row.get(fk)
        parent = await self.dao.get(ref.reference, link["id"]) if link else None
        if request.method in ("GET", "HEAD"):
            if parent is None:
                raise not_found()
            return json_response(200, public(parent))
        if request.method == "DELETE":
            if parent is None:
                raise not_found()
            raise method_not_allowed()
        if request.method == "PATCH":
            if parent is None:
                raise not_found()
            data = await self.entity_body(request, ref.reference, parent)
            return await self.patch(ref.reference, parent["id"], parent, data, None)
        if request.method == "PUT":
            if parent is None:
                raise not_found()
            data = await self.entity_body(request, ref.reference)
            return await self.put(ref.reference, parent["id"], data, None, existing=parent)
        raise method_not_allowed()

    async def nested_collection(
        self,
        request: web.Request,
        parent_entity: str,
        parent: dict[str, Any] | None,
        child: str,
        fk: str,
        key: str,
    ) -> web.Response:
        if parent is None:
            if request.method in ("GET", "HEAD", "POST"):
                raise not_found()
            raise method_not_allowed()
        if request.method in ("GET", "HEAD"):
            size, offset, _, _ = self.page_args(request, child, nested=True)
            rows = await self.dao.children(child, fk, parent["id"])
            page, next_offset = self.paginate(rows, size, offset)
            body: dict[str, Any] = {"data": [public(r) for r in page]}
            if next_offset:
                body["offset"] = next_offset
                nested_name = NESTED_NAME.get(child, ENTITIES[child].admin_name)
                body["next"] = (
                    f"/{ENTITIES[parent_entity].admin_name}/{parent['id']}/{nested_name}"
                    f"?offset={quote(next_offset, safe='')}"
                )
            else:
                body["next"] = None
            return json_response(200, body)
        if request.method == "POST":
            data = await self.entity_body(request, child)
            ttl = self.pop_ttl(child, data)
            data[fk] = {"id": parent["id"]}
            return await self.create(child, data, ttl)
        raise method_not_allowed()

    async def nested_entity(
        self, request: web.Request, parent: dict[str, Any] | None, child: str, fk: str, key: str
    ) -> web.Response:
        if parent is None:
            raise not_found()
        row = await self.dao.select(child, key)
        belongs = row is not None and (row.get(fk) or {}).get("id") == parent["id"]
        method = request.method
        if method in ("GET", "HEAD"):
            if not belongs:
                raise not_found()
            assert row is not None
            return json_response(200, public(row))
        if method == "DELETE":
            if not belongs:
                raise not_found()
            assert row is not None
            if self.node.dbless:
                raise self.dbless_write(child, "remove", key)
            await self.dao.delete(child, row)
            await self.node.changed()
            return web.Response(status=204)
        if method == "PATCH":
            if not belongs:
                raise not_found()
            data = await self.entity_body(request, child, row)
            ttl = self.pop_ttl(child, data)
            data[fk] = {"id": parent["id"]}
            return await self.patch(child, key, row, data, ttl)
        if method == "PUT":
            if row is not None and not belongs:
                raise not_found()
            data = await self.entity_body(request, child)
            ttl = self.pop_ttl(child, data)
            data[fk] = {"id": parent["id"]}
            return await self.put(child, key, data, ttl, existing=row)
        raise method_not_allowed()

    async def consumer_by_custom_id(self, custom_id: str) -> web.Response:
        if custom_id == "":
            raise HTTPError(400, {"message": "custom_id must be an unempty string"})
        rows = await self.dao.store.find("consumers", "custom_id", custom_id)
        return json_response(200, {"data": [public(r) for r in rows[:1]], "next": None})

    # --- other endpoints --------------------------------------------------------------------

    def root(self) -> web.Response:
        node = self.node
        conf = {
            k: ("******" if k in ("pg_password", "pg_ro_password") and v else v)
            for k, v in node.conf.items()
            if isinstance(v, str | int | float | bool | list | dict | type(None))
        }
        body = {
            "tagline": "Welcome to kong",
            "version": KONG_VERSION,
            "edition": "community",
            "hostname": socket.gethostname(),
            "node_id": node.node_id,
            "timers": {"running": 0, "pending": 0},
            "plugins": {
                "available_on_server": {
                    name: {"version": p.version, "priority": p.priority}
                    for name, p in self.dao.plugins.items()
                    if name in self.dao.enabled_plugins
                },
                "enabled_in_cluster": node.plugins_in_use(),
            },
            "lua_version": "LuaJIT 2.1.0-20231117 (simulated)",
            "configuration": conf,
            "pids": {"master": os.getpid(), "workers": [os.getpid()]},
            # Not in Kong: says plainly that this node is the test stand-in.
            "simulator": "kongsim",
        }
        return json_response(200, body)

    async def status(self, request: web.Request) -> web.Response:
        for name in ("unit", "scale"):
            if name in request.query:
                value = request.query[name]
                if name == "unit" and value.lower() not in ("b", "k", "m", "g"):
                    raise HTTPError(
                        400, {"message": f"invalid unit '{value}' (expect 'k/K', 'm/M', or 'g/G')"}
                    )
                if name == "scale":
                    try:
                        int(value)
                    except ValueError:
                        raise HTTPError(400, {"message": f"invalid scale: {value}"}) from None
        stats = self.node.stats
        body: dict[str, Any] = {
            "memory": {
                "workers_lua_vms": [{"http_allocated_gc": "0.00 MiB", "pid": os.getpid()}],
                "lua_shared_dicts": {
                    "kong": {"allocated_slabs": "0.04 MiB", "capacity": "5.00 MiB"},
                    "kong_db_cache": {"allocated_slabs": "0.80 MiB", "capacity": "128.00 MiB"},
                },
            },
            "server": {
                "connections_accepted": stats["total_requests"],
                "connections_active": 1,
                "connections_handled": stats["total_requests"],
                "connections_reading": 0,
                "connections_waiting": 0,
                "connections_writing": 1,
                "total_requests": stats["total_requests"],
            },
        }
        if self.node.dbless:
            body["configuration_hash"] = self.node.config_hash
        else:
            body["database"] = {"reachable": await self.node.db_reachable()}
        return json_response(200, body)

    def endpoints(self) -> web.Response:
        data = [
            "/",
            "/status",
            "/config",
            "/endpoints",
            "/tags",
            "/tags/{tags}",
            "/plugins/enabled",
            "/plugins/schema/{name}",
            "/schemas/{name}",
            "/schemas/{db_entity_name}/validate",
            "/schemas/plugins/{name}",
            "/schemas/plugins/validate",
        ]
        for url, entity in COLLECTIONS.items():
            data += [f"/{url}", f"/{url}/{{{entity}}}"]
        for child, fk in FOREIGN_LINKS:
            data.append(f"/{ENTITIES[child].admin_name}/{{{child}}}/{fk}")
        for (parent, sub), (child, _) in NESTED.items():
            data += [
                f"/{parent}/{{{COLLECTIONS[parent]}}}/{sub}",
                f"/{parent}/{{{COLLECTIONS[parent]}}}/{sub}/{{{child}}}",
            ]
        base = "/upstreams/{upstreams}"
        data += [f"{base}/health", f"{base}/targets", f"{base}/targets/all"]
        data += [f"{base}/targets/{{targets}}{tail}" for tail in ("", "/healthy", "/unhealthy")]
        data += [f"{base}/targets/{{targets}}/{{address}}/{h}" for h in ("healthy", "unhealthy")]
        return json_response(200, {"data": sorted(data)})

    async def tags(self, request: web.Request, rest: list[str]) -> web.Response:
        rows = []
        for entity in ENTITIES:
            for row in await self.dao.rows(entity):
                for tag in row.get("tags") or []:
                    if not rest or tag == rest[0]:
                        rows.append(
                            {
                                "entity_name": entity,
                                "entity_id": row["id"],
                                "tag": tag,
                                "id": row["id"] + tag,
                            }
                        )
        rows.sort(key=lambda r: r["id"])
        size, offset, _, _ = self.page_args(request, "services", nested=True)
        start = int(offset) if offset and offset.isdigit() else 0
        page = rows[start : start + size]
        body: dict[str, Any] = {"data": [{k: v for k, v in r.items() if k != "id"} for r in page]}
        if start + size < len(rows):
            body["offset"] = str(start + size)
            body["next"] = f"/tags{'/' + quote(rest[0]) if rest else ''}?offset={start + size}"
        else:
            body["next"] = None
        return json_response(200, body)

    def plugin_schema(self, name: str) -> web.Response:
        plugin = self.dao.plugins.get(name) if name in self.dao.enabled_plugins else None
        if plugin is None:
            raise HTTPError(404, {"message": f"No plugin named '{name}'"})
        return json_response(200, plugin.config.to_json())

    async def schemas(self, request: web.Request, rest: list[str]) -> web.Response:
        method = request.method
        if len(rest) == 2 and rest[0] == "plugins" and rest[1] == "validate":
            self._only(method, "POST")
            data = await self.entity_body(request, "plugins")
            return self._validate_response("plugins", data)
        if len(rest) == 2 and rest[0] == "plugins":
            self._only(method, "GET")
            plugin = self.dao.plugins.get(rest[1]) if rest[1] in self.dao.enabled_plugins else None
            if plugin is None:
                raise HTTPError(404, {"message": f"No plugin named '{rest[1]}'"})
            return json_response(200, plugin.to_json())
        if len(rest) == 2 and rest[1] == "validate":
            self._only(method, "POST")
            entity = COLLECTIONS.get(rest[0], rest[0])
            if entity not in ENTITIES:
                raise HTTPError(404, {"message": f"No entity named '{rest[0]}'"})
            data = await self.entity_body(request, entity)
            data.pop("ttl", None)
            return self._validate_response(entity, data)
        if len(rest) == 1:
            self._only(method, "GET")
            entity = COLLECTIONS.get(rest[0], rest[0])
            if entity not in ENTITIES:
                raise HTTPError(404, {"message": f"No entity named '{rest[0]}'"})
            return json_response(200, ENTITIES[entity].to_json())
        raise not_found()

    def _validate_response(self, entity: str, data: dict[str, Any]) -> web.Response:
        self._validate_only(entity, data)
        return json_response(200, {"message": "schema validation successful"})

    async def config(self, request: web.Request) -> web.Response:
        if not self.node.dbless:
            raise HTTPError(
                400,
                {"message": ONLY_DBLESS},
            )
        if request.method in ("GET", "HEAD"):
            return json_response(200, {"config": self.node.export_config()})
        if request.method != "POST":
            raise method_not_allowed()
        return await self.node.post_config(request)
