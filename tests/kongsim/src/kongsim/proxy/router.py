"""Route matching as Kong 3.9's default ``router_flavor = traditional_compatible``.

Each route becomes one matcher per group of paths (all regex paths in one group, prefix paths
grouped by length: ``split_routes_and_services_by_path`` in ``kong/router/transform.lua``),
with the 64-bit priority of ``get_priority`` (matcher kinds, plain hosts, header count, regex,
regex_priority, prefix length). The ATC router tries matchers from the highest priority down;
equal priorities fall back to the highest matcher UUID (atc-router keeps them in a
``BTreeMap<(priority, uuid)>`` walked in reverse). Routes of disabled services and stream-only
routes are not added, as in ``kong/runloop/handler.lua``.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .uri import normalize, sanitize_postfix, upstream_uri_v0

Entity = dict[str, Any]

_HTTP_PROTOCOLS = frozenset(("http", "https", "grpc", "grpcs"))
_SPLIT_NAMESPACE = uuid.UUID("7f145bf9-0dce-4f91-98eb-debbce4b9f6b")
_MAX_HEADER_COUNT = 255
_MISS = object()


@dataclass(frozen=True)
class Match:
    """What the router hands to the proxy for one request."""

    route: Entity
    service: Entity | None
    path: str  # the normalised request path
    prefix: str | None
    upstream_uri: str
    upstream_host: str | None


@dataclass
class _Matcher:
    route: Entity
    service: Entity | None
    priority: int
    matcher_id: str
    methods: frozenset[str] | None
    hosts: list[tuple[str, str, int | None]] | None
    headers: list[tuple[str, list[tuple[bool, Any]]]] = field(default_factory=list)
    prefixes: list[str] = field(default_factory=list)
    regexes: list[re.Pattern[str]] = field(default_factory=list)
    has_paths: bool = False


def _empty(value: Any) -> bool:
    return value is None or (isinstance(value, list | dict) and len(value) == 0)


def split_host_port(value: str) -> tuple[str, int | None]:
    host, sep, port = value.partition(":")
    if not sep:
        return value, None
    try:
        return host, int(port)
    except ValueError:
        return value, None


def _priority(route: Entity, paths: list[str]) -> int:
    weight = 0
    for name in ("sources", "destinations", "methods", "hosts"):
        if not _empty(route.get(name)):
            weight += 1
    headers = route.get("headers")
    header_count = 0 if _empty(headers) else min(len(headers), _MAX_HEADER_COUNT)
    if header_count:
        weight += 1
    if not _empty(route.get("snis")):
        weight += 1
    hosts = route.get("hosts")
    plain_hosts_only = isinstance(hosts, list) and not any("*" in h for h in hosts)
    uri_length = 0
    regex = False
    if paths:
        weight += 1
        if paths[0].startswith("~"):
            regex = True
        else:
            uri_length = len(paths[0])
    regex_priority = int(route.get("regex_priority") or 0) if regex else 0
    return (
        (weight << 61)
        | (int(plain_hosts_only) << 60)
        | (header_count << 52)
        | (int(regex) << 51)
        | ((regex_priority & 0xFFFFFFFF) << 19)
        | (uri_length & 0x7FFFF)
    )


def _compile_regex(path: str) -> re.Pattern[str]:
    # ``path_val_transform``: drop the ``~``, anchor at the start, and accept the PCRE
    # ``(?<name>`` named groups (Python, like Rust's regex crate, spells them ``(?P<name>``).
    pattern = path[1:].replace("(?<", "(?P<").replace("(?P<=", "(?<=").replace("(?P<!", "(?<!")
    return re.compile("^" + pattern)


def _group_paths(paths: list[str]) -> list[list[str]]:
    groups: dict[int, list[str]] = {}
    for path in paths:
        key = 0 if path.startswith("~") else len(path)
        groups.setdefault(key, []).append(path)
    return list(groups.values())


def _build_matchers(route: Entity, service: Entity | None) -> list[_Matcher]:
    paths = route.get("paths") or []
    groups = _group_paths(paths) if paths else [[]]
    methods = route.get("methods")
    hosts = route.get("hosts")
    compiled_hosts = None
    if not _empty(hosts):
        compiled_hosts = []
        for entry in hosts:
            host, port = split_host_port(entry)
            if host.startswith("*"):
                compiled_hosts.append(("suffix", host[1:], port))
            elif host.endswith("*"):
                compiled_hosts.append(("prefix", host[:-1], port))
            else:
                compiled_hosts.append(("equal", host, port))
    compiled_headers = []
    for name, values in (route.get("headers") or {}).items():
        alternatives: list[tuple[bool, Any]] = []
        for value in values:
            if value.startswith("~*"):
                alternatives.append((True, re.compile(value[2:].lower())))
            else:
                alternatives.append((False, value.lower()))
        compiled_headers.append((name.lower(), alternatives))
    matchers = []
    for index, group in enumerate(groups, start=1):
        matcher_id = route["id"]
        if len(groups) > 1:
            matcher_id = str(uuid.uuid5(_SPLIT_NAMESPACE, f"{route['id']}#{index}"))
        matchers.append(
            _Matcher(
                route=route,
                service=service,
                priority=_priority(route, group),
                matcher_id=matcher_id,
                methods=None if _empty(methods) else frozenset(methods),
                hosts=compiled_hosts,
                headers=compiled_headers,
                prefixes=[p for p in group if not p.startswith("~")],
                regexes=[_compile_regex(p) for p in group if p.startswith("~")],
                has_paths=bool(group),
            )
        )
    return matchers


class Router:
    """Matches (method, path, Host header, headers) to a route, as Kong's router does."""

    def __init__(self, routes: Iterable[Entity], services: Mapping[str, Entity]):
        matchers: list[_Matcher] = []
        for route in routes:
            if not _HTTP_PROTOCOLS.intersection(route.get("protocols") or ()):
                continue
            service_ref = route.get("service")
            service = services.get(service_ref["id"]) if service_ref else None
            if service_ref and service is None:
                continue
            if service is not None and service.get("enabled") is False:
                continue
            matchers.extend(_build_matchers(route, service))
        matchers.sort(key=lambda m: (m.priority, m.matcher_id), reverse=True)
        self._matchers = matchers
        self._uses_headers = any(m.headers for m in matchers)
        self._cache: dict[tuple[str, str, str | None, int], object] = {}

    def _match_one(
        self,
        matcher: _Matcher,
        method: str,
        path: str,
        host: str | None,
        port: int,
        headers: Mapping[str, str] | None,
    ) -> tuple[bool, str | None]:
        if matcher.methods is not None and method not in matcher.methods:
            return False, None
        if matcher.hosts is not None:
            if host is None:
                return False, None
            for kind, value, want_port in matcher.hosts:
                if want_port is not None and want_port != port:
                    continue
                if (
                    (kind == "equal" and host == value)
                    or (kind == "suffix" and host.endswith(value))
                    or (kind == "prefix" and host.startswith(value))
                ):
                    break
            else:
                return False, None
        if matcher.headers:
            assert headers is not None
            for name, alternatives in matcher.headers:
                values = [v.lower() for v in headers.getall(name, ())]  # type: ignore[attr-defined]
                if not values:
                    return False, None
                if not any(
                    (pattern.search(v) if is_regex else v == pattern)
                    for is_regex, pattern in alternatives
                    for v in values
                ):
                    return False, None
        if not matcher.has_paths:
            return True, None
        for prefix in matcher.prefixes:
            if path.startswith(prefix):
                return True, prefix
        for regex in matcher.regexes:
            found = regex.match(path)
            if found:
                return True, found.group(0)
        return False, None

    def _scan(
        self,
        method: str,
        path: str,
        host: str | None,
        port: int,
        headers: Mapping[str, str],
    ) -> tuple[_Matcher, str | None] | None:
        for matcher in self._matchers:
            ok, matched_path = self._match_one(matcher, method, path, host, port, headers)
            if ok:
                return matcher, matched_path
        return None

    def find(
        self,
        method: str,
        raw_path: str,
        host_header: str | None,
        server_port: int,
        headers: Mapping[str, str],
    ) -> Match | None:
        """Match a request; ``raw_path`` is the request target without its query string.

        Without header matchers the answer depends only on (method, path, Host, port), so it
        is cached, like Kong's router LRU cache."""
        if self._uses_headers:
            return self._find(method, raw_path, host_header, server_port, headers)
        key = (method, raw_path, host_header, server_port)
        cached = self._cache.get(key)
        if cached is None:
            cached = self._find(method, raw_path, host_header, server_port, headers) or _MISS
            if len(self._cache) > 5000:
                self._cache.clear()
            self._cache[key] = cached
        return None if cached is _MISS else cached  # type: ignore[return-value]

    def _find(
        self,
        method: str,
        raw_path: str,
        host_header: str | None,
        server_port: int,
        headers: Mapping[str, str],
    ) -> Match | None:
        path = normalize(raw_path, True)
        host, port = split_host_port(host_header) if host_header else (None, None)
        if port is None:
            port = server_port
        found = self._scan(method, path, host, port, headers)
        if found is None:
            return None
        matcher, matched_path = found
        route = matcher.route
        service = matcher.service
        strip_path = bool(route.get("strip_path"))
        prefix = matched_path if strip_path else None
        request_prefix = prefix or "/"
        postfix = sanitize_postfix(path[len(request_prefix) :])
        base = (service.get("path") if service else None) or "/"
        upstream_uri = upstream_uri_v0(strip_path, postfix, path, base)
        return Match(
            route=route,
            service=service,
            path=path,
            prefix=prefix,
            upstream_uri=upstream_uri,
            upstream_host=host_header if route.get("preserve_host") else None,
        )
