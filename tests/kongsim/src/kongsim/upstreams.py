"""Upstreams and targets: Kong 3.9.3's schemas (``kong/db/schema/entities/upstreams.lua`` and
``targets.lua``), the upstream shorthands and the target normalisation of ``kong/tools/ip.lua``
(``normalize_ip``, ``format_host``) used by ``kong/db/dao/targets.lua``."""

from __future__ import annotations

import ipaddress
import re
from typing import Any

from kongsim.schema import (
    EntitySchema,
    Errors,
    Field,
    _header_name,
    _host,
    _path,
    t_tags,
    t_ts,
    t_uuid,
)

TARGET_DEFAULT_PORT = 8000
HASH_ON = ("none", "consumer", "ip", "header", "cookie", "path", "query_arg", "uri_capture")
ALGORITHMS = ("consistent-hashing", "least-connections", "round-robin", "latency")
INVALID_TARGET = "Invalid target; not a valid hostname or ip address"
_NAME = re.compile(r"^[A-Za-z0-9\-._]+$")
_IPV4ISH = re.compile(r"^[\d.]+$")


def normalize_ip(value: str) -> dict[str, Any] | None:
    """``{type: ipv4|ipv6|name, host, port}`` or ``None`` when ``value`` is not a valid host
    (``kong/tools/ip.lua`` normalize_ip): IPv4 loses leading zeros, IPv6 is fully expanded in
    lower case, names keep their case; digits-and-dots that are no IPv4 address are invalid."""
    if not isinstance(value, str) or not value:
        return None
    port: int | None = None
    if value.startswith("["):
        host, sep, rest = value[1:].partition("]")
        if not sep:
            return None
        if rest:
            if not rest.startswith(":") or not rest[1:].isdigit():
                return None
            port = int(rest[1:])
        return _v6(host, port)
    if value.count(":") > 1:
        return _v6(value, None)
    host, sep, port_text = value.partition(":")
    if sep:
        if not port_text.isdigit():
            return None
        port = int(port_text)
    if port is not None and port > 65535:
        return None
    if _IPV4ISH.match(host):
        parts = host.split(".")
        if len(parts) != 4 or any(not p or int(p) > 255 for p in parts):
            return None
        return {"type": "ipv4", "host": ".".join(str(int(p)) for p in parts), "port": port}
    if not _NAME.match(host) or any(seg.endswith("-") for seg in host.split(".")):
        return None
    return {"type": "name", "host": host, "port": port}


def _v6(host: str, port: int | None) -> dict[str, Any] | None:
    try:
        addr = ipaddress.IPv6Address(host)
    except ValueError:
        return None
    if port is not None and port > 65535:
        return None
    return {"type": "ipv6", "host": addr.exploded.lower(), "port": port}


def format_target(value: str) -> str | None:
    """``host:port`` as Kong stores a target (default port 8000, IPv6 in brackets)."""
    parsed = normalize_ip(value)
    if parsed is None:
        return None
    host = f"[{parsed['host']}]" if parsed["type"] == "ipv6" else parsed["host"]
    return f"{host}:{parsed['port'] if parsed['port'] is not None else TARGET_DEFAULT_PORT}"


def split_target(target: str) -> tuple[str, int, str]:
    """A stored ``host:port`` as (host without brackets, port, type)."""
    parsed = normalize_ip(target)
    assert parsed is not None
    return parsed["host"], int(parsed["port"] or TARGET_DEFAULT_PORT), parsed["type"]


def _upstream_name(value: str) -> str | None:
    parsed = normalize_ip(value)
    if parsed is None:
        return f"Invalid name ('{value}'); must be a valid hostname"
    if parsed["type"] != "name":
        return f"Invalid name ('{value}'); no ip addresses allowed"
    if parsed["port"] is not None:
        return f"Invalid name ('{value}'); no port allowed"
    return None


def _host_with_port(value: str) -> str | None:
    """``typedefs.host_with_optional_port``."""
    if normalize_ip(value) is None:
        return f"invalid hostname: {value}"
    return None


def _sni(value: str) -> str | None:
    parsed = normalize_ip(value)
    if parsed is not None and parsed["type"] != "name":
        return "must not be an IP"
    if parsed is not None and parsed["port"] is not None:
        return "must not have a port"
    return _host(value)


def _cookie_name(value: str) -> str | None:
    if not re.fullmatch(r"[A-Za-z0-9_\-]+", value):
        return f"bad cookie name '{value}', allowed characters are A-Z, a-z, 0-9, '_', and '-'"
    return None


def _statuses(default: list[int]) -> Field:
    return Field("array", default=default, elements=Field("integer", between=(100, 999)))


def _counter() -> Field:
    return Field("integer", default=0, between=(0, 255))


def _seconds(default: float) -> Field:
    return Field("number", default=default, between=(0, 65535))


_CHECK_TYPES = ("tcp", "http", "https", "grpc", "grpcs")

HEALTHCHECKS = Field(
    "record",
    fields=[
        (
            "active",
            Field(
                "record",
                fields=[
                    ("type", Field("string", default="http", one_of=_CHECK_TYPES)),
                    ("timeout", _seconds(1)),
                    ("concurrency", Field("integer", default=10, between=(1, 2**31))),
                    ("http_path", Field("string", default="/", len_min=1, validators=[_path])),
                    ("https_sni", Field("string", validators=[_sni])),
                    ("https_verify_certificate", Field("boolean", default=True)),
                    (
                        "headers",
                        Field(
                            "map",
                            keys=Field("string", validators=[_header_name]),
                            values=Field("array", elements=Field("string")),
                        ),
                    ),
                    (
                        "healthy",
                        Field(
                            "record",
                            fields=[
                                ("interval", _seconds(0)),
                                ("http_statuses", _statuses([200, 302])),
                                ("successes", _counter()),
                            ],
                        ),
                    ),
                    (
                        "unhealthy",
                        Field(
                            "record",
                            fields=[
                                ("interval", _seconds(0)),
                                (
                                    "http_statuses",
                                    _statuses([429, 404, 500, 501, 502, 503, 504, 505]),
                                ),
                                ("tcp_failures", _counter()),
                                ("timeouts", _counter()),
                                ("http_failures", _counter()),
                            ],
                        ),
                    ),
                ],
            ),
        ),
        (
            "passive",
            Field(
                "record",
                fields=[
                    ("type", Field("string", default="http", one_of=_CHECK_TYPES)),
                    (
                        "healthy",
                        Field(
                            "record",
                            fields=[
                                (
                                    "http_statuses",
                                    _statuses(
                                        [
                                            200,
                                            201,
                                            202,
                                            203,
                                            204,
                                            205,
                                            206,
                                            207,
                                            208,
                                            226,
                                            *range(300, 309),
                                        ]
                                    ),
                                ),
                                ("successes", _counter()),
                            ],
                        ),
                    ),
                    (
                        "unhealthy",
                        Field(
                            "record",
                            fields=[
                                ("http_statuses", _statuses([429, 500, 503])),
                                ("tcp_failures", _counter()),
                                ("timeouts", _counter()),
                                ("http_failures", _counter()),
                            ],
                        ),
                    ),
                ],
            ),
        ),
        ("threshold", Field("number", default=0, between=(0, 100))),
    ],
)


def _entity_error(field: str) -> list[str]:
    return [f"failed conditional validation given value of field '{field}'"]


def _upstream_checks(data: dict[str, Any]) -> Errors | None:
    """The conditional entity checks of upstreams.lua, in its order."""
    errors: Errors = {}
    entity: list[str] = []
    hash_on, fallback = data.get("hash_on"), data.get("hash_fallback")

    def need(if_field: str, then_field: str) -> None:
        if data.get(then_field) is None:
            entity.extend(_entity_error(if_field))
            errors[then_field] = "required field missing"

    def only(if_field: str, allowed: tuple[str, ...]) -> None:
        if fallback not in allowed:
            entity.extend(_entity_error(if_field))
            errors["hash_fallback"] = "expected one of: " + ", ".join(allowed)

    if hash_on == "header":
        need("hash_on", "hash_on_header")
    if fallback == "header":
        need("hash_fallback", "hash_fallback_header")
    if hash_on == "cookie" or fallback == "cookie":
        need("hash_on" if hash_on == "cookie" else "hash_fallback", "hash_on_cookie")
    if hash_on in ("none", "cookie"):
        only("hash_on", ("none",))
    elif hash_on in ("consumer", "ip", "path"):
        only("hash_on", tuple(h for h in HASH_ON if h != hash_on))
    for side in ("hash_on", "hash_fallback"):
        if data.get(side) == "query_arg":
            need(side, f"{side}_query_arg")
        if data.get(side) == "uri_capture":
            need(side, f"{side}_uri_capture")
    for a, b in (
        ("hash_on_header", "hash_fallback_header"),
        ("hash_on_query_arg", "hash_fallback_query_arg"),
        ("hash_on_uri_capture", "hash_fallback_uri_capture"),
    ):
        if data.get(a) is not None and data.get(a) == data.get(b):
            entity.append(f"values of these fields must be distinct: '{a}', '{b}'")
    if entity:
        errors["@entity"] = list(dict.fromkeys(entity))
    return errors or None


def _min1() -> Field:
    return Field("string", len_min=1)


UPSTREAMS = EntitySchema(
    name="upstreams",
    admin_name="upstreams",
    endpoint_key="name",
    fields=[
        ("id", t_uuid()),
        ("created_at", t_ts()),
        ("updated_at", t_ts()),
        ("name", Field("string", required=True, unique=True, validators=[_upstream_name])),
        ("algorithm", Field("string", default="round-robin", one_of=ALGORITHMS)),
        ("hash_on", Field("string", default="none", one_of=HASH_ON)),
        ("hash_fallback", Field("string", default="none", one_of=HASH_ON)),
        ("hash_on_header", Field("string", validators=[_header_name])),
        ("hash_fallback_header", Field("string", validators=[_header_name])),
        ("hash_on_cookie", Field("string", validators=[_cookie_name])),
        ("hash_on_cookie_path", Field("string", default="/", validators=[_path])),
        ("hash_on_query_arg", _min1()),
        ("hash_fallback_query_arg", _min1()),
        ("hash_on_uri_capture", _min1()),
        ("hash_fallback_uri_capture", _min1()),
        ("slots", Field("integer", default=10000, between=(10, 2**16))),
        ("healthchecks", HEALTHCHECKS),
        ("tags", t_tags()),
        ("host_header", Field("string", validators=[_host_with_port])),
        ("client_certificate", Field("foreign", reference="certificates")),
        ("use_srv_name", Field("boolean", default=False)),
    ],
    checks=[_upstream_checks],
)

TARGETS = EntitySchema(
    name="targets",
    admin_name="targets",
    endpoint_key="target",
    cache_key=("upstream", "target"),
    fields=[
        ("id", t_uuid()),
        # auto_timestamp_ms: seconds with a millisecond fraction
        ("created_at", Field("number", auto=True)),
        ("updated_at", Field("number", auto=True)),
        ("upstream", Field("foreign", reference="upstreams", required=True)),
        ("target", Field("string", required=True)),
        ("weight", Field("integer", default=100, between=(0, 65535))),
        ("tags", t_tags()),
    ],
)


def upstream_shorthands(data: dict[str, Any]) -> None:
    """upstreams.lua ``shorthand_fields``, on the input only and in this order: least-connections
    or latency clear ``hash_on``; ``hash_on`` (null -> ``none``) then picks the algorithm."""
    if data.get("algorithm") in ("least-connections", "latency"):
        data["hash_on"] = None
    if "hash_on" in data:
        value = data["hash_on"]
        if value is None:
            data["hash_on"] = "none"
        elif value == "none":
            data["algorithm"] = "round-robin"
        elif isinstance(value, str):
            data["algorithm"] = "consistent-hashing"


def normalize_target(data: dict[str, Any]) -> Errors | None:
    """``kong/db/dao/targets.lua`` format_target, before schema validation."""
    value = data.get("target")
    if value is None:
        return None
    if not isinstance(value, str):
        return {"target": "expected a string"}
    formatted = format_target(value)
    if formatted is None:
        return {"target": INVALID_TARGET}
    data["target"] = formatted
    return None


def healthchecks_on(upstream: dict[str, Any]) -> bool:
    """``is_upstream_using_healthcheck`` (runloop/balancer/healthcheckers.lua)."""
    checks = upstream.get("healthchecks") or {}
    active = checks.get("active") or {}
    passive = (checks.get("passive") or {}).get("unhealthy") or {}
    return any(
        (
            (active.get("healthy") or {}).get("interval"),
            (active.get("unhealthy") or {}).get("interval"),
            passive.get("tcp_failures"),
            passive.get("timeouts"),
            passive.get("http_failures"),
        )
    )
