"""The target endpoints under ``/upstreams/{u}`` (``kong/api/routes/upstreams.lua`` and
``targets.lua`` at 3.9.3): targets are reached only through their upstream, ``POST`` only
creates, ``PUT`` merges like ``PATCH``, a missing target is 404 on every method, plus
``/targets/all``, ``/health`` and the manual ``PUT .../healthy|unhealthy``."""

from __future__ import annotations

import base64
import binascii
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from aiohttp import web

from kongsim.dao import public
from kongsim.errors import HTTPError, KongError, method_not_allowed, not_found
from kongsim.schema import is_uuid
from kongsim.upstreams import normalize_ip

if TYPE_CHECKING:
    from kongsim.admin import AdminAPI

HEALTH_ACTIONS = {"healthy": True, "unhealthy": False}


async def dispatch(api: AdminAPI, request: web.Request, segments: list[str]) -> web.StreamResponse:
    """``segments`` starts with ``upstreams``, ``{u}`` and at least one more part."""
    from kongsim.admin import json_response

    method = "GET" if request.method == "HEAD" else request.method
    upstream = await api.dao.select("upstreams", segments[1])
    rest = segments[2:]
    if rest == ["health"]:
        api._only(method, "GET")
        if upstream is None:
            raise not_found()
        return json_response(200, await health(api, request, upstream))
    if rest[0] != "targets":
        raise not_found()
    if len(rest) == 1:
        return await targets_collection(api, request, method, upstream)
    if rest[1:] == ["all"]:
        api._only(method, "GET")
        if upstream is None:
            raise not_found()
        return json_response(200, await all_targets(api, request, upstream))
    if upstream is None:
        raise not_found()
    target = await find_target(api, upstream, rest[1])
    if len(rest) == 2:
        return await target_entity(api, request, method, upstream, target)
    action = rest[-1]
    if action in HEALTH_ACTIONS and len(rest) in (3, 4):
        api._only(method, "PUT")
        if target is None:
            raise not_found()
        address = rest[2] if len(rest) == 4 else None
        if address is not None and normalize_ip(address) is None:
            raise HTTPError(400, {"message": f"Invalid address: {address}"})
        err = await api.node.post_health(
            upstream["name"], target["target"], address, HEALTH_ACTIONS[action]
        )
        if err:
            raise HTTPError(400, {"message": err})
        return web.Response(status=204)
    raise not_found()


async def find_target(api: AdminAPI, upstream: dict[str, Any], key: str) -> dict[str, Any] | None:
    """By id, or by the stored ``host:port`` string as given (no normalisation:
    ``select_by_upstream_filter`` in kong/db/dao/targets.lua)."""
    for row in await api.dao.children("targets", "upstream", upstream["id"]):
        if (is_uuid(key) and row["id"] == key.lower()) or row["target"] == key:
            return row
    return None


def _ordered(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Newest first: ordered by created_at then id, walked backwards (page_for_upstream)."""
    return sorted(rows, key=lambda r: (r.get("created_at") or 0, r["id"]), reverse=True)


def _page(
    api: AdminAPI, request: web.Request, rows: list[dict[str, Any]], path: str
) -> dict[str, Any]:
    size, offset, _, _ = api.page_args(request, "targets", nested=True)
    start = 0
    if offset is not None:
        try:
            start = int(base64.b64decode(offset.encode(), validate=True).decode())
        except (binascii.Error, UnicodeDecodeError, ValueError):
            raise KongError(7, f"'{offset}' is not a valid offset: bad base64 encoding") from None
    page = rows[start : start + size]
    body: dict[str, Any] = {"data": [public(r) for r in page]}
    if start + size < len(rows):
        token = base64.b64encode(str(start + size).encode()).decode()
        body["offset"] = token
        body["next"] = f"{path}?offset={quote(token, safe='')}"
    else:
        body["next"] = None
    return body


async def targets_collection(
    api: AdminAPI, request: web.Request, method: str, upstream: dict[str, Any] | None
) -> web.Response:
    from kongsim.admin import json_response

    if method not in ("GET", "POST"):
        raise method_not_allowed()
    if upstream is None:
        raise not_found()
    if method == "GET":
        rows = _ordered(await api.dao.children("targets", "upstream", upstream["id"]))
        return json_response(200, _page(api, request, rows, f"/upstreams/{upstream['id']}/targets"))
    data = await api.entity_body(request, "targets")
    ttl = api.pop_ttl("targets", data)
    data["upstream"] = {"id": upstream["id"]}
    # Since 3.0 POST only creates: a second POST of the same target is a 409.
    return await api.create("targets", data, ttl)


async def all_targets(
    api: AdminAPI, request: web.Request, upstream: dict[str, Any]
) -> dict[str, Any]:
    rows = await api.dao.children("targets", "upstream", upstream["id"])
    rows.sort(key=lambda r: r["id"])
    return _page(api, request, rows, f"/upstreams/{upstream['id']}/targets/all")


async def target_entity(
    api: AdminAPI,
    request: web.Request,
    method: str,
    upstream: dict[str, Any],
    target: dict[str, Any] | None,
) -> web.Response:
    from kongsim.admin import json_response

    if method not in ("GET", "PUT", "PATCH", "DELETE"):
        raise method_not_allowed()
    if target is None:
        raise not_found()
    if method == "GET":
        return json_response(200, public(target))
    if method == "DELETE":
        if api.node.dbless:
            raise api.dbless_write("targets", "remove", target["id"])
        await api.dao.delete("targets", target)
        await api.node.changed()
        return web.Response(status=204)
    # PUT behaves as PATCH here: update_entity merges into the stored target.
    data = await api.entity_body(request, "targets", target)
    ttl = api.pop_ttl("targets", data)
    data["upstream"] = {"id": upstream["id"]}
    return await api.patch("targets", target["id"], target, data, ttl)


async def health(api: AdminAPI, request: web.Request, upstream: dict[str, Any]) -> dict[str, Any]:
    """``GET /upstreams/{u}/health``: each target plus this node's view of it; with
    ``?balancer_health=1`` the balancer as a whole."""
    balancers = api.node.balancers
    if request.query.get("balancer_health") in ("1", "true"):
        return {
            "data": balancers.balancer_health(upstream),
            "next": None,
            "node_id": api.node.node_id,
        }
    rows = _ordered(await api.dao.children("targets", "upstream", upstream["id"]))
    body = _page(api, request, rows, f"/upstreams/{upstream['id']}/health")
    for item in body["data"]:
        # A balancer not built yet (eventual consistency) leaves items without health.
        item.update(balancers.target_health(upstream["name"], item) or {})
    body["node_id"] = api.node.node_id
    return body
