"""The runtime side of the implemented plugins: pre-function, key-auth, rate-limiting,
request-transformer, post-function.

Plugins run in Kong's priority order (pre-function 1000000, key-auth 1250, rate-limiting 910,
request-transformer 801, post-function -1000). For each plugin name one configuration applies
to a request, chosen by
``lookup_cfg`` in ``kong/runloop/plugins_iterator.lua``: consumer+route+service,
consumer+route, consumer+service, route+service, consumer, route, service, global. The
consumer is the one authenticated by the plugins that ran before, so a consumer-scoped
rate-limiting instance applies once key-auth has identified the consumer. Disabled plugins and
plugins whose ``protocols`` hold no HTTP protocol are left out, as Kong leaves them out.
"""

from __future__ import annotations

import calendar
import json
import logging
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode

from multidict import CIMultiDict

from .redis import RedisConf, RedisError, RedisPools
from .uri import parse_query, remove_query_arg

log = logging.getLogger("kongsim")

Entity = dict[str, Any]

PRIORITIES = {
    "pre-function": 1000000,
    "key-auth": 1250,
    "rate-limiting": 910,
    "request-transformer": 801,
    "post-function": -1000,
}
SERVERLESS = frozenset(("pre-function", "post-function"))
_HTTP_PROTOCOLS = frozenset(("http", "https", "grpc", "grpcs"))


class PluginExit(Exception):
    """A plugin ends the request with a Kong-generated error (``kong.response.error``)."""

    def __init__(
        self,
        status: int,
        message: str,
        headers: Mapping[str, str] | None = None,
        body: bytes | None = None,
    ):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = dict(headers or {})
        # ``kong.response.exit`` from user Lua: this body (or none) as it is, no template.
        self.body = body
        self.raw = False


@dataclass
class RequestState:
    """What plugins read and change while a request passes through (Kong's ``ngx.ctx`` and
    the service request)."""

    method: str
    path: str  # normalised, without query
    query: str  # raw query string sent upstream (without "?")
    has_query: bool
    headers: CIMultiDict[str]  # the headers sent upstream, plugins change them
    client_ip: str  # the forwarded IP (after real-ip processing)
    route: Entity
    service: Entity | None
    body: bytes | None = None
    body_changed: bool = False
    consumer: Entity | None = None
    credential: Entity | None = None
    response_headers: dict[str, str] = field(default_factory=dict)


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except (ValueError, AttributeError, TypeError):
        return False
    return len(value) == 36


def _number(value: float) -> str:
    """Render a number as Lua's ``tostring`` does for integral values."""
    if value.__class__ is int:
        return str(value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _id(ref: Mapping[str, Any] | None) -> str | None:
    return ref.get("id") if ref else None


@dataclass(frozen=True)
class Instance:
    """One plugin entity with its configuration compiled for the request path."""

    name: str
    plugin: Entity
    conf: Any


def _compile(name: str, plugin: Entity) -> Any:
    config = plugin.get("config") or {}
    if name == "key-auth":
        return KeyAuthConf.build(config)
    if name == "rate-limiting":
        return RateLimitConf.build(config, plugin)
    if name in SERVERLESS:
        return ServerlessConf.build(config)
    return TransformerConf.build(config)


class PluginIndex:
    """Lookups built once per snapshot: credentials by key, consumers by id/username, plugin
    instances by scope."""

    def __init__(
        self,
        plugins: Iterable[Entity],
        consumers: Mapping[str, Entity],
        credentials: Iterable[Entity],
    ):
        self.consumers = consumers
        self.consumers_by_username = {
            c["username"]: c for c in consumers.values() if c.get("username") is not None
        }
        self.credentials_by_key = {c["key"]: c for c in credentials if c.get("key") is not None}
        self.combos: dict[str, dict[tuple[str | None, str | None, str | None], Instance]] = {}
        for plugin in plugins:
            name = plugin.get("name")
            if name not in PRIORITIES or plugin.get("enabled") is False:
                continue
            if not _HTTP_PROTOCOLS.intersection(plugin.get("protocols") or _HTTP_PROTOCOLS):
                continue
            key = (
                _id(plugin.get("route")),
                _id(plugin.get("service")),
                _id(plugin.get("consumer")),
            )
            self.combos.setdefault(name, {})[key] = Instance(name, plugin, _compile(name, plugin))
        self.names = sorted(self.combos, key=lambda n: -PRIORITIES[n])
        self._cache: dict[tuple[str, str | None, str | None, str | None], Instance | None] = {}

    def lookup(
        self, name: str, route_id: str | None, service_id: str | None, consumer_id: str | None
    ) -> Instance | None:
        key = (name, route_id, service_id, consumer_id)
        try:
            return self._cache[key]
        except KeyError:
            pass
        found = self._lookup(name, route_id, service_id, consumer_id)
        if len(self._cache) > 10000:
            self._cache.clear()
        self._cache[key] = found
        return found

    def _lookup(
        self, name: str, route_id: str | None, service_id: str | None, consumer_id: str | None
    ) -> Instance | None:
        combos = self.combos.get(name)
        if not combos:
            return None
        candidates = []
        if route_id and service_id and consumer_id:
            candidates.append((route_id, service_id, consumer_id))
        if route_id and consumer_id:
            candidates.append((route_id, None, consumer_id))
        if service_id and consumer_id:
            candidates.append((None, service_id, consumer_id))
        if route_id and service_id:
            candidates.append((route_id, service_id, None))
        if consumer_id:
            candidates.append((None, None, consumer_id))
        if route_id:
            candidates.append((route_id, None, None))
        if service_id:
            candidates.append((None, service_id, None))
        candidates.append((None, None, None))
        for candidate in candidates:
            found = combos.get(candidate)
            if found:
                return found
        return None

    def load_consumer(self, ident: str, by_username: bool) -> Entity | None:
        if _is_uuid(ident):
            found = self.consumers.get(ident)
            if found:
                return found
        if by_username:
            return self.consumers_by_username.get(ident)
        return None


# ---------------------------------------------------------------------------------------
# key-auth (kong/plugins/key-auth/handler.lua, 3.9.3)

_ERR_DUPLICATE = "Duplicate API key found"
_ERR_NO_KEY = "No API key found in request"
_ERR_INVALID = "Unauthorized"


def _header_values(headers: CIMultiDict[str], name: str) -> list[str]:
    # ngx.req.get_headers() lower-cases names; its lookup falls back to the name with
    # underscores turned into dashes.
    values = headers.getall(name, [])
    if not values and "_" in name:
        values = headers.getall(name.replace("_", "-"), [])
    return values


def _parse_body(state: RequestState) -> dict[str, Any]:
    """``kong.request.get_body``: form, JSON object or multipart fields; empty on errors."""
    body = state.body or b""
    content_type = (state.headers.get("Content-Type") or "").lower()
    try:
        if "application/x-www-form-urlencoded" in content_type:
            fields: dict[str, Any] = {}
            for name, value in parse_qsl(body.decode("latin-1"), keep_blank_values=True):
                current = fields.get(name)
                if current is None:
                    fields[name] = value
                elif isinstance(current, list):
                    current.append(value)
                else:
                    fields[name] = [current, value]
            return fields
        if "application/json" in content_type:
            parsed = json.loads(body)
            return parsed if isinstance(parsed, dict) else {}
        if "multipart/form-data" in content_type:
            return _parse_multipart(body, state.headers.get("Content-Type") or "")
    except (ValueError, UnicodeDecodeError):
        return {}
    return {}


def _parse_multipart(body: bytes, content_type: str) -> dict[str, Any]:
    from email.parser import BytesParser
    from email.policy import HTTP

    message = BytesParser(policy=HTTP).parsebytes(
        b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + body
    )
    fields: dict[str, Any] = {}
    if not message.is_multipart():
        return fields
    for part in message.iter_parts():  # type: ignore[attr-defined]
        name = part.get_param("name", header="content-disposition")
        if name:
            payload = part.get_payload(decode=True) or b""
            fields[str(name)] = payload.decode("latin-1")
    return fields


def _remove_body_field(state: RequestState, name: str) -> None:
    content_type = (state.headers.get("Content-Type") or "").lower()
    body = state.body or b""
    if "application/x-www-form-urlencoded" in content_type:
        pairs = parse_qsl(body.decode("latin-1"), keep_blank_values=True)
        state.body = urlencode([(k, v) for k, v in pairs if k != name]).encode("latin-1")
        state.body_changed = True
    elif "application/json" in content_type:
        try:
            parsed = json.loads(body)
        except ValueError:
            return
        if isinstance(parsed, dict):
            parsed.pop(name, None)
            state.body = json.dumps(parsed, separators=(",", ":")).encode()
            state.body_changed = True


def _set_consumer(state: RequestState, consumer: Entity | None, credential: Entity | None) -> None:
    state.consumer = consumer
    state.credential = credential
    headers = state.headers
    for header, value in (
        ("X-Consumer-ID", consumer and consumer.get("id")),
        ("X-Consumer-Custom-ID", consumer and consumer.get("custom_id")),
        ("X-Consumer-Username", consumer and consumer.get("username")),
        ("X-Credential-Identifier", credential and credential.get("id")),
    ):
        if value is not None:
            headers[header] = str(value)
        else:
            headers.popall(header, None)
    if credential:
        headers.popall("X-Anonymous-Consumer", None)
    else:
        headers["X-Anonymous-Consumer"] = "true"


@dataclass(frozen=True)
class KeyAuthConf:
    key_names: tuple[str, ...]
    in_header: bool
    in_query: bool
    in_body: bool
    hide: bool
    anonymous: str | None
    run_on_preflight: bool
    www_auth: dict[str, str]

    @classmethod
    def build(cls, config: Mapping[str, Any]) -> KeyAuthConf:
        realm = config.get("realm")
        return cls(
            key_names=tuple(config.get("key_names") or ()),
            in_header=config.get("key_in_header", True) is not False,
            in_query=config.get("key_in_query", True) is not False,
            in_body=bool(config.get("key_in_body")),
            hide=bool(config.get("hide_credentials")),
            anonymous=config.get("anonymous") or None,
            run_on_preflight=config.get("run_on_preflight", True) is not False,
            www_auth={"WWW-Authenticate": f'Key realm="{realm}"' if realm else "Key"},
        )


def _authenticate(conf: KeyAuthConf, state: RequestState, index: PluginIndex) -> None:
    """Raise :class:`PluginExit` (401) unless a valid key is found; set the consumer."""
    www_auth = conf.www_auth
    query: dict[str, Any] | None = None
    body: dict[str, Any] | None = None
    key: str | None = None
    for name in conf.key_names:
        value: Any = None
        if conf.in_header:
            values = _header_values(state.headers, name)
            if len(values) == 1:
                value = values[0]
            elif values:
                value = values
        if value is None and conf.in_query:
            if query is None:
                query = parse_query(state.query)
            value = query.get(name)
        if value is None and conf.in_body:
            if body is None:
                body = _parse_body(state)
            value = body.get(name)
        if isinstance(value, str):
            key = value
            if conf.hide:
                if state.query:
                    state.query = remove_query_arg(state.query, name)
                state.headers.popall(name, None)
                if conf.in_body:
                    _remove_body_field(state, name)
            break
        if isinstance(value, list):
            raise PluginExit(401, _ERR_DUPLICATE, www_auth)
    if not key:
        raise PluginExit(401, _ERR_NO_KEY, www_auth)
    credential = index.credentials_by_key.get(key)
    if credential is not None:
        expires_at = credential.get("expires_at")
        if expires_at is not None and expires_at <= time.time():
            credential = None
    if credential is None:
        raise PluginExit(401, _ERR_INVALID, www_auth)
    consumer = index.consumers.get(_id(credential.get("consumer")) or "")
    _set_consumer(state, consumer, credential)


def key_auth(conf: KeyAuthConf, state: RequestState, index: PluginIndex) -> None:
    if not conf.run_on_preflight and state.method == "OPTIONS":
        return
    anonymous = conf.anonymous
    if not anonymous:
        _authenticate(conf, state, index)
        return
    # "logical OR": an earlier auth plugin already authenticated the request.
    if state.credential is not None:
        return
    try:
        _authenticate(conf, state, index)
    except PluginExit:
        consumer = index.load_consumer(anonymous, by_username=True)
        if consumer is None:
            # kong.client.authenticate(nil, nil) raises, and the plugin runner turns the
            # error into a 500.
            raise PluginExit(500, "An unexpected error occurred") from None
        _set_consumer(state, consumer, None)


# ---------------------------------------------------------------------------------------
# rate-limiting (kong/plugins/rate-limiting/handler.lua and policies/init.lua, 3.9.3)

PERIODS = ("second", "minute", "hour", "day", "month", "year")
EXPIRATION = {
    "second": 1,
    "minute": 60,
    "hour": 3600,
    "day": 86400,
    "month": 2592000,
    "year": 31536000,
}
_X_LIMIT = {p: f"X-RateLimit-Limit-{p.capitalize()}" for p in PERIODS}
_X_REMAINING = {p: f"X-RateLimit-Remaining-{p.capitalize()}" for p in PERIODS}
_EMPTY_UUID = "00000000-0000-0000-0000-000000000000"


_starts_cache: dict[int, dict[str, int]] = {}


def period_starts(now: int) -> dict[str, int]:
    """``kong.tools.timestamp.get_timestamps``: the UTC calendar start of each period, in
    seconds (Kong uses milliseconds; the buckets are the same)."""
    found = _starts_cache.get(now)
    if found is None:
        if len(_starts_cache) > 8:
            _starts_cache.clear()
        found = _starts_cache[now] = _period_starts(now)
    return found


def _period_starts(now: int) -> dict[str, int]:
    t = time.gmtime(now)
    return {
        "second": now,
        "minute": now - t.tm_sec,
        "hour": now - t.tm_sec - 60 * t.tm_min,
        "day": calendar.timegm((t.tm_year, t.tm_mon, t.tm_mday, 0, 0, 0)),
        "month": calendar.timegm((t.tm_year, t.tm_mon, 1, 0, 0, 0)),
        "year": calendar.timegm((t.tm_year, 1, 1, 0, 0, 0)),
    }


class RateCounters:
    """The ``local`` policy's shared-dict counters of one node."""

    def __init__(self, clock: Callable[[], float] = time.time):
        self.clock = clock
        self._counts: dict[tuple[str, str, str, str, int], int] = {}
        self._expires: dict[tuple[str, str, str, str, int], int] = {}
        self._next_purge = 0

    def usage(self, key: tuple[str, str, str, str, int]) -> int:
        return self._counts.get(key, 0)

    def increment(self, keys: Iterable[tuple[str, str, str, str, int]], now: int) -> None:
        for key in keys:
            self._counts[key] = self._counts.get(key, 0) + 1
            self._expires.setdefault(key, key[4] + EXPIRATION[key[3]])
        if now >= self._next_purge:
            self._next_purge = now + 1
            for key, expiry in list(self._expires.items()):
                if expiry < now:
                    del self._expires[key]
                    self._counts.pop(key, None)


@dataclass(frozen=True)
class _Limit:
    period: str
    limit: Any
    window: int
    x_limit: str
    x_remaining: str


@dataclass(frozen=True)
class RateLimitConf:
    limits: tuple[_Limit, ...]
    limit_by: str
    header_name: str | None
    path: str | None
    hide: bool
    error_code: int
    error_message: str
    route_id: str
    service_id: str
    fault_tolerant: bool
    redis: RedisConf | None  # set with ``policy: redis``

    @classmethod
    def build(cls, config: Mapping[str, Any], plugin: Entity) -> RateLimitConf:
        limits = tuple(
            _Limit(p, config[p], EXPIRATION[p], _X_LIMIT[p], _X_REMAINING[p])
            for p in PERIODS
            if config.get(p) is not None
        )
        return cls(
            limits=limits,
            limit_by=config.get("limit_by") or "consumer",
            header_name=config.get("header_name"),
            path=config.get("path"),
            hide=bool(config.get("hide_client_headers")),
            error_code=int(config.get("error_code") or 429),
            error_message=str(config.get("error_message") or "API rate limit exceeded"),
            # The local policy's counter keys carry the plugin's own route and service ids
            # (``get_local_key`` in policies/init.lua), not the request's.
            route_id=_id(plugin.get("route")) or _EMPTY_UUID,
            service_id=_id(plugin.get("service")) or _EMPTY_UUID,
            fault_tolerant=config.get("fault_tolerant", True) is not False,
            redis=(
                RedisConf.build(config.get("redis") or {})
                if config.get("policy") == "redis"
                else None
            ),
        )


def _identifier(conf: RateLimitConf, state: RequestState) -> str:
    limit_by = conf.limit_by
    identifier: str | None = None
    if limit_by == "consumer":
        identifier = _id(state.consumer) or _id(state.credential)
    elif limit_by == "service":
        identifier = _id(state.service)
    elif limit_by == "credential":
        identifier = _id(state.credential)
    elif limit_by == "header":
        name = conf.header_name
        identifier = state.headers.get(name) if name else None
    elif limit_by == "path" and state.path == conf.path:
        identifier = state.path
    return identifier or state.client_ip


def _decide(
    conf: RateLimitConf, state: RequestState, now: int, usage: list[tuple[_Limit, Any]]
) -> None:
    """The handler's headers and verdict from each period's remaining count; raises
    :class:`PluginExit` when a period's limit is used up."""
    stop: str | None = None
    for entry, remaining in usage:
        if remaining <= 0:
            stop = entry.period
    if not conf.hide:
        starts = period_starts(now)
        headers = state.response_headers
        best: _Limit | None = None
        best_remaining: Any = 0
        reset = 1
        for entry, remaining in usage:
            if stop is None or stop == entry.period:
                remaining = remaining - 1
            if remaining < 0:
                remaining = 0
            if (
                best is None
                or remaining < best_remaining
                or (remaining == best_remaining and entry.window > best.window)
            ):
                best, best_remaining = entry, remaining
                reset = max(1, entry.window - (now - starts[entry.period]))
            headers[entry.x_limit] = _number(entry.limit)
            headers[entry.x_remaining] = _number(remaining)
        assert best is not None
        headers["RateLimit-Limit"] = _number(best.limit)
        headers["RateLimit-Remaining"] = _number(best_remaining)
        headers["RateLimit-Reset"] = str(reset)
        if stop is not None:
            headers["Retry-After"] = str(reset)
    if stop is not None:
        raise PluginExit(conf.error_code, conf.error_message)


def rate_limiting(conf: RateLimitConf, state: RequestState, counters: RateCounters) -> None:
    """``policy: local`` (and ``cluster``, counted the same way in the node's memory)."""
    if not conf.limits:
        return
    now = int(counters.clock())
    identifier = _identifier(conf, state)
    starts = period_starts(now)
    usage: list[tuple[_Limit, Any]] = []
    keys = []
    for entry in conf.limits:
        key = (conf.route_id, conf.service_id, identifier, entry.period, starts[entry.period])
        keys.append(key)
        usage.append((entry, entry.limit - counters.usage(key)))
    # Blocked requests are not counted: Kong returns before scheduling the increment.
    _decide(conf, state, now, usage)
    counters.increment(keys, now)


# policies/init.lua, redis ``usage()``: count this request and return the count before it, so
# that rejected requests are counted too; the expiry is the period length from the first hit.
_INCR_SCRIPT = """
local cache_key, expiration = KEYS[1], ARGV[1]
local result_incr = redis.call("incr", cache_key)
if result_incr == 1 then
  redis.call("expire", cache_key, expiration)
end
return result_incr - 1
"""


def redis_key(conf: RateLimitConf, identifier: str, period: str, period_start: int) -> str:
    """``get_local_key``: ``ratelimit:<route_id>:<service_id>:<identifier>:<start_ms>:<period>``."""
    return (
        f"ratelimit:{conf.route_id}:{conf.service_id}:{identifier}:{period_start * 1000}:{period}"
    )


async def rate_limiting_redis(
    conf: RateLimitConf, state: RequestState, pools: RedisPools, now: int
) -> None:
    """``policy: redis`` with ``sync_rate = -1`` (realtime): one ``EVAL`` per period and
    request. A ``sync_rate`` above 0 is served the same way (exact counts, where Kong batches
    them per worker and so lets a few more requests through)."""
    if not conf.limits or conf.redis is None:
        return
    identifier = _identifier(conf, state)
    starts = period_starts(now)
    usage: list[tuple[_Limit, Any]] = []
    try:
        for entry in conf.limits:
            key = redis_key(conf, identifier, entry.period, starts[entry.period])
            used = await pools.call(conf.redis, "EVAL", _INCR_SCRIPT, 1, key, entry.window)
            usage.append((entry, entry.limit - int(used or 0)))
    except RedisError as exc:
        if not conf.fault_tolerant:
            # handler.lua: error(err); the plugin runner answers 500.
            log.error("[rate-limiting] failed to get usage: %s", exc)
            raise PluginExit(500, "An unexpected error occurred") from None
        # fault_tolerant: logged, then proxied without any rate-limit header.
        log.error("failed to get usage: %s", exc)
        return
    _decide(conf, state, now, usage)


# ---------------------------------------------------------------------------------------
# request-transformer, headers only (kong/plugins/request-transformer/access.lua)


def _pairs(entries: Iterable[str] | None) -> list[tuple[str, str]]:
    result = []
    for entry in entries or []:
        name, _, value = entry.partition(":")
        result.append((name, value.lstrip(":")))
    return result


def _section(conf: Mapping[str, Any], name: str) -> list[tuple[str, str]]:
    section = conf.get(name) or {}
    return _pairs(section.get("headers") or [])


@dataclass(frozen=True)
class TransformerConf:
    remove: list[tuple[str, str]]
    rename: list[tuple[str, str]]
    replace: list[tuple[str, str]]
    add: list[tuple[str, str]]
    append: list[tuple[str, str]]

    @classmethod
    def build(cls, config: Mapping[str, Any]) -> TransformerConf:
        return cls(*(_section(config, s) for s in ("remove", "rename", "replace", "add", "append")))


def request_transformer(conf: TransformerConf, state: RequestState) -> None:
    """Kong's order: remove, rename, replace, add, append."""
    headers = state.headers
    for name, _ in conf.remove:
        if name.lower() != "host":
            headers.popall(name, None)
    for old, new in conf.rename:
        if old.lower() == "host" or old == new:
            continue
        values = headers.getall(old, [])
        if values:
            headers.popall(old)
            for value in values:
                headers.add(new, value)
    for name, value in conf.replace:
        if name.lower() == "host":
            headers["Host"] = value
        elif name in headers:
            headers[name] = value
    for name, value in conf.add:
        if name.lower() != "host" and name not in headers:
            headers[name] = value
    for name, value in conf.append:
        if name.lower() != "host":
            headers.add(name, value)


# ---------------------------------------------------------------------------------------
# pre-function / post-function (kong/plugins/pre-function/_handler.lua): user Lua, see lua.py


@dataclass(frozen=True)
class ServerlessConf:
    rewrite: tuple[str, ...]
    access: tuple[str, ...]

    @classmethod
    def build(cls, config: Mapping[str, Any]) -> ServerlessConf:
        return cls(
            rewrite=tuple(config.get("rewrite") or ()),
            access=tuple(config.get("access") or ()),
        )


def serverless(
    engine: Any, name: str, codes: tuple[str, ...], state: RequestState, variables: Any
) -> None:
    """Run one phase's functions. ``kong.response.exit`` ends the request with the user's
    answer; a Lua error is logged and ends it with Kong's 500 (the plugin runner's
    ``An unexpected error occurred``), nothing proxied."""
    if not codes:
        return
    from .lua import LuaExit, LuaFailure, RequestView

    view = RequestView(state.headers, state.response_headers, variables, state.path)
    try:
        engine.run(codes, view)
    except LuaFailure as exc:
        log.error("[%s] %s", name, exc)
        raise PluginExit(500, "An unexpected error occurred") from None
    except LuaExit as exc:
        if exc.message is not None:  # kong.response.error: Kong's error template
            raise PluginExit(exc.status, exc.message, exc.headers) from None
        out = PluginExit(exc.status, "", exc.headers, exc.body)
        out.raw = True
        raise out from None
