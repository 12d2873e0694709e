"""The entities the simulator stores and the config schemas of the plugins it implements, with
Kong 3.9.3's fields, defaults and checks (``kong/db/schema/entities/*.lua``,
``kong/plugins/{key-auth,rate-limiting,request-transformer}/schema.lua``)."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

from kongsim.schema import (
    HTTP_PROTOCOLS,
    NOTSET,
    PROTOCOLS,
    EntitySchema,
    Errors,
    Field,
    _empty,
    _header_name,
    _host,
    _methods,
    _path,
    _router_path,
    _wildcard_host,
    at_least_one_of,
    t_header_name,
    t_name,
    t_port,
    t_protocols,
    t_tags,
    t_timeout,
    t_ts,
    t_uuid,
)
from kongsim.upstreams import TARGETS, UPSTREAMS


def _service_checks(data: dict[str, Any]) -> Errors | None:
    errors: Errors = {}
    stream = data.get("protocol") in ("tcp", "tls", "tls_passthrough", "udp", "grpc", "grpcs")
    if stream and data.get("path") is not None:
        errors["path"] = "value must be null"
    if data.get("protocol") not in ("https", "tls"):
        for name in ("client_certificate", "tls_verify", "tls_verify_depth", "ca_certificates"):
            if data.get(name) is not None:
                errors[name] = "value must be null"
    if errors:
        errors["@entity"] = ["failed conditional validation given value of field 'protocol'"]
        return errors
    return None


SERVICES = EntitySchema(
    name="services",
    admin_name="services",
    endpoint_key="name",
    fields=[
        ("id", t_uuid()),
        ("created_at", t_ts()),
        ("updated_at", t_ts()),
        ("name", t_name()),
        ("retries", Field("integer", default=5, between=(0, 32767))),
        ("protocol", Field("string", required=True, default="http", one_of=PROTOCOLS)),
        ("host", Field("string", required=True, validators=[_host])),
        ("port", Field("integer", required=True, default=80, between=(0, 65535))),
        ("path", Field("string", validators=[_path])),
        ("connect_timeout", t_timeout()),
        ("write_timeout", t_timeout()),
        ("read_timeout", t_timeout()),
        ("tags", t_tags()),
        ("client_certificate", Field("foreign", reference="certificates")),
        ("tls_verify", Field("boolean")),
        ("tls_verify_depth", Field("integer", between=(0, 64))),
        ("ca_certificates", Field("array", elements=t_uuid())),
        ("enabled", Field("boolean", required=True, default=True)),
    ],
    checks=[_service_checks],
)


def expand_service_url(data: dict[str, Any]) -> Errors | None:
    """The write-only ``url`` shorthand (services.lua shorthand_fields): it sets protocol, host,
    port and path; port 443 implies https, otherwise the scheme decides and 80/443 are defaults."""
    if "url" not in data:
        return None
    url = data.pop("url")
    if not isinstance(url, str):
        return {"url": "expected a string"}
    if not url.strip():
        return {"url": "missing host in url"}
    parts = urlsplit(url.strip())
    if not parts.scheme:
        return {"url": "missing scheme in url"}
    if not parts.hostname:
        return {"url": "missing host in url"}
    data["protocol"] = parts.scheme
    data["host"] = parts.hostname
    try:
        port = parts.port
    except ValueError:
        return {"url": "could not parse url. invalid port"}
    data["port"] = port if port is not None else (443 if parts.scheme == "https" else 80)
    data["path"] = parts.path or None
    return None


def _route_checks(data: dict[str, Any]) -> Errors | None:
    protocols = data.get("protocols") or []
    errors: Errors = {"@entity": []}
    http_like = {"http", "https"} & set(protocols)
    grpc_like = {"grpc", "grpcs"} & set(protocols)
    stream_like = {"tcp", "tls", "udp", "tls_passthrough"} & set(protocols)
    groups = [g for g in (http_like, grpc_like, stream_like) if g]
    if len(groups) > 1:
        sets = []
        for g in ({"http", "https"}, {"tcp", "tls", "udp"}, {"tls_passthrough"}, {"grpc", "grpcs"}):
            present = sorted(g & set(protocols))
            if present:
                sets.append("(" + ", ".join(f"'{p}'" for p in present) + ")")
        return {"protocols": "these sets are mutually exclusive: " + ", ".join(sets)}
    snis = data.get("snis")
    if not _empty(snis) and not ({"grpcs", "https", "tls", "tls_passthrough"} & set(protocols)):
        errors["@entity"].append(
            "'snis' can only be set when 'protocols' is 'grpcs', 'https', 'tls' or "
            "'tls_passthrough'"
        )
    if http_like:
        for name in ("sources", "destinations"):
            if not _empty(data.get(name)):
                errors[name] = f"cannot set '{name}' when 'protocols' is 'http' or 'https'"
        names = ["methods", "hosts", "headers", "paths"]
        proto = "http"
        if "https" in protocols:
            names.append("snis")
            proto = "https"
        if all(_empty(data.get(n)) for n in names):
            quoted = ", ".join(f"'{n}'" for n in names)
            errors["@entity"].append(f"must set one of {quoted} when 'protocols' is '{proto}'")
    elif grpc_like:
        if not _empty(data.get("methods")):
            errors["methods"] = "cannot set 'methods' when 'protocols' is 'grpc' or 'grpcs'"
        names = ["hosts", "headers", "paths"]
        proto = "grpc"
        if "grpcs" in protocols:
            names.append("snis")
            proto = "grpcs"
        if all(_empty(data.get(n)) for n in names):
            quoted = ", ".join(f"'{n}'" for n in names)
            errors["@entity"].append(f"must set one of {quoted} when 'protocols' is '{proto}'")
    elif stream_like:
        for name in ("methods", "hosts", "paths", "headers"):
            if not _empty(data.get(name)):
                errors[name] = (
                    f"cannot set '{name}' when 'protocols' is 'tcp', 'tls', 'tls_passthrough' or "
                    "'udp'"
                )
    if not errors["@entity"]:
        del errors["@entity"]
    return errors or None


def _route_header_name(value: str) -> str | None:
    if re.fullmatch(r"[Hh][Oo][Ss][Tt]", value):
        return "cannot contain 'host' header, which must be specified in the 'hosts' attribute"
    return _header_name(value)


ROUTES = EntitySchema(
    name="routes",
    admin_name="routes",
    endpoint_key="name",
    fields=[
        ("id", t_uuid()),
        ("created_at", t_ts()),
        ("updated_at", t_ts()),
        ("name", t_name()),
        (
            "protocols",
            Field(
                "set",
                required=True,
                len_min=1,
                default=["http", "https"],
                elements=Field("string", one_of=PROTOCOLS),
            ),
        ),
        (
            "https_redirect_status_code",
            Field("integer", required=True, default=426, one_of=(426, 301, 302, 307, 308)),
        ),
        ("strip_path", Field("boolean", required=True, default=True)),
        ("preserve_host", Field("boolean", required=True, default=False)),
        ("request_buffering", Field("boolean", required=True, default=True)),
        ("response_buffering", Field("boolean", required=True, default=True)),
        ("tags", t_tags()),
        ("service", Field("foreign", reference="services")),
        ("snis", Field("set", elements=Field("string", validators=[_wildcard_host]))),
        (
            "sources",
            Field(
                "set",
                elements=Field("record", fields=[("ip", Field("string")), ("port", t_port())]),
            ),
        ),
        (
            "destinations",
            Field(
                "set",
                elements=Field("record", fields=[("ip", Field("string")), ("port", t_port())]),
            ),
        ),
        ("methods", Field("set", elements=Field("string", validators=[_methods]))),
        ("hosts", Field("array", elements=Field("string", validators=[_wildcard_host]))),
        ("paths", Field("array", elements=Field("string", validators=[_router_path]))),
        (
            "headers",
            Field(
                "map",
                keys=Field("string", validators=[_route_header_name]),
                values=Field("array", elements=Field("string")),
            ),
        ),
        ("regex_priority", Field("integer", default=0)),
        ("path_handling", Field("string", default="v0", one_of=("v0", "v1"))),
    ],
    checks=[_route_checks],
)

CONSUMERS = EntitySchema(
    name="consumers",
    admin_name="consumers",
    endpoint_key="username",
    fields=[
        ("id", t_uuid()),
        ("created_at", t_ts()),
        ("updated_at", t_ts()),
        ("username", Field("string", unique=True)),
        ("custom_id", Field("string", unique=True)),
        ("tags", t_tags()),
    ],
    checks=[at_least_one_of("custom_id", "username")],
)

KEYAUTH_CREDENTIALS = EntitySchema(
    name="keyauth_credentials",
    admin_name="key-auths",
    endpoint_key="key",
    ttl=True,
    fields=[
        ("id", t_uuid()),
        ("created_at", t_ts()),
        ("consumer", Field("foreign", reference="consumers", required=True)),
        ("key", Field("string", unique=True, auto=True)),
        ("tags", t_tags()),
    ],
)

PLUGINS = EntitySchema(
    name="plugins",
    admin_name="plugins",
    endpoint_key="instance_name",
    cache_key=("name", "route", "service", "consumer"),
    fields=[
        ("id", t_uuid()),
        ("name", Field("string", required=True)),
        ("instance_name", t_name()),
        ("created_at", t_ts()),
        ("updated_at", t_ts()),
        ("route", Field("foreign", reference="routes", default=None)),
        ("service", Field("foreign", reference="services", default=None)),
        ("consumer", Field("foreign", reference="consumers", default=None)),
        ("config", Field("record", fields=[])),
        (
            "protocols",
            t_protocols(PROTOCOLS, ["grpc", "grpcs", "http", "https"]),
        ),
        ("enabled", Field("boolean", required=True, default=True)),
        ("tags", t_tags()),
    ],
)

ENTITIES: dict[str, EntitySchema] = {
    s.name: s
    for s in (SERVICES, ROUTES, CONSUMERS, PLUGINS, KEYAUTH_CREDENTIALS, UPSTREAMS, TARGETS)
}
# Foreign-key order for inserts (parents first) and cascading deletes.
ORDER = (
    "services",
    "routes",
    "consumers",
    "plugins",
    "keyauth_credentials",
    "upstreams",
    "targets",
)


# --- plugin config schemas -----------------------------------------------------------------


class PluginSchema:
    """A plugin's subschema: its ``config`` record, protocol set and plugin-level checks."""

    def __init__(
        self,
        name: str,
        version: str,
        priority: int,
        config: list[tuple[str, Field]],
        *,
        protocols: Field,
        no_consumer: bool = False,
        checks: list[Any] | None = None,
        config_checks: list[Any] | None = None,
        config_validators: list[Any] | None = None,
        shorthands: dict[str, Any] | None = None,
    ):
        self.name = name
        self.version = version
        self.priority = priority
        self.config = Field(
            "record",
            required=True,
            fields=config,
            entity_checks=config_checks or [],
            validators=config_validators or [],
        )
        self.protocols = protocols
        self.no_consumer = no_consumer
        self.checks = checks or []
        self.shorthands = shorthands or {}

    def to_json(self) -> dict[str, Any]:
        consumer = Field("foreign", reference="consumers", eq_null=self.no_consumer)
        fields: list[dict[str, Any]] = []
        if self.no_consumer:
            fields.append({"consumer": consumer.to_json()})
        fields.append({"protocols": self.protocols.to_json()})
        fields.append({"config": self.config.to_json()})
        return {"fields": fields}


def _plain_array(elem: Field | None = None) -> Field:
    return Field("array", required=True, default=[], elements=elem or Field("string"))


def _rt_header(value: str) -> str | None:
    name = value.split(":", 1)[0]
    if not re.fullmatch(r"[A-Za-z0-9_\-]+", name):
        return f"'{name}' is not a valid header"
    return None


def _rt_colon_value(value: str) -> str | None:
    m = re.match(r"^([^:]+):*(.*)$", value)
    if not m or not m.group(2):
        name = m.group(1) if m else value
        return f"key '{name}' has no value"
    return None


def _rt_colon_header(value: str) -> str | None:
    if not re.match(r"^[^:]+:.*$", value):
        return f"invalid value: {value}"
    return _rt_header(value)


def _rt_rename_header(value: str) -> str | None:
    err = _rt_colon_header(value)
    if err:
        return err
    target = value.split(":", 1)[1]
    if not re.fullmatch(r"[A-Za-z0-9_\-]+", target):
        return f"'{target}' is not a valid header"
    return None


def _rt_record(body: Any, headers: Any, query: Any, uri: bool = False) -> Field:
    fields = [
        ("body", _plain_array(Field("string", validators=body))),
        ("headers", _plain_array(Field("string", validators=headers))),
        ("querystring", _plain_array(Field("string", validators=query))),
    ]
    if uri:
        fields.append(("uri", Field("string")))
    return Field("record", required=True, fields=fields)


REQUEST_TRANSFORMER = PluginSchema(
    "request-transformer",
    "3.9.3",
    801,
    [
        (
            "http_method",
            Field(
                "string",
                validators=[
                    lambda v: None if re.fullmatch(r"[A-Z]+", v) else f"invalid value: {v}"
                ],
            ),
        ),
        ("remove", _rt_record([], [_rt_header], [])),
        ("rename", _rt_record([_rt_colon_value], [_rt_rename_header], [_rt_colon_value])),
        ("replace", _rt_record([_rt_colon_value], [_rt_colon_header], [_rt_colon_value], uri=True)),
        ("add", _rt_record([_rt_colon_value], [_rt_colon_header], [_rt_colon_value])),
        ("append", _rt_record([_rt_colon_value], [_rt_colon_header], [_rt_colon_value])),
    ],
    protocols=t_protocols(PROTOCOLS, ["grpc", "grpcs", "http", "https"]),
)

KEY_AUTH = PluginSchema(
    "key-auth",
    "3.9.3",
    1250,
    [
        (
            "key_names",
            Field(
                "array",
                required=True,
                default=["apikey"],
                elements=Field("string", validators=[_header_name]),
            ),
        ),
        ("hide_credentials", Field("boolean", required=True, default=False)),
        ("anonymous", Field("string")),
        ("key_in_header", Field("boolean", required=True, default=True)),
        ("key_in_query", Field("boolean", required=True, default=True)),
        ("key_in_body", Field("boolean", required=True, default=False)),
        ("run_on_preflight", Field("boolean", required=True, default=True)),
        ("realm", Field("string")),
    ],
    protocols=t_protocols(HTTP_PROTOCOLS, ["grpc", "grpcs", "http", "https"]),
    no_consumer=True,
)

PERIODS = ("second", "minute", "hour", "day", "month", "year")


def _rl_config_validator(config: dict[str, Any]) -> str | None:
    for i, lower in enumerate(PERIODS):
        v1 = config.get(lower)
        if isinstance(v1, int | float):
            for upper in PERIODS[i + 1 :]:
                v2 = config.get(upper)
                if isinstance(v2, int | float) and v2 < v1:
                    return (
                        f"The limit for {upper}({float(v2):.1f}) cannot be lower than the limit "
                        f"for {lower}({float(v1):.1f})"
                    )
    sync_rate = config.get("sync_rate")
    if config.get("policy") != "redis" and sync_rate != -1:
        return "sync_rate can only be used with the redis policy"
    if config.get("policy") == "redis" and sync_rate != -1 and sync_rate < 0.02:
        return "sync_rate must be greater than 0.02, or -1 to disable"
    return None


def _conditional(if_path: str, if_value: str, then_path: str) -> Any:
    def check(data: dict[str, Any]) -> Errors | None:
        from kongsim.schema import _get_path

        if _get_path(data, if_path) == if_value and _get_path(data, then_path) is None:
            errors: Errors = {}
            node = errors
            parts = then_path.split(".")
            for part in parts[:-1]:
                node = node.setdefault(part, {})
            node[parts[-1]] = "required field missing"
            errors["@entity"] = [f"failed conditional validation given value of field '{if_path}'"]
            return errors
        return None

    return check


REDIS = Field(
    "record",
    fields=[
        ("host", Field("string", validators=[_host])),
        ("port", t_port(6379)),
        ("timeout", Field("integer", default=2000, between=(0, 2**31 - 2))),
        ("username", Field("string")),
        ("password", Field("string", len_min=0)),
        ("database", Field("integer", default=0)),
        ("ssl", Field("boolean", default=False)),
        ("ssl_verify", Field("boolean", default=False)),
        ("server_name", Field("string", validators=[_host])),
    ],
)

RATE_LIMITING_SHORTHANDS = {
    f"redis_{name}": name
    for name in (
        "host",
        "port",
        "password",
        "username",
        "ssl",
        "ssl_verify",
        "server_name",
        "timeout",
        "database",
    )
}


def rate_limiting_schema(dbless: bool) -> PluginSchema:
    """``policy = cluster`` is not offered in DB-less mode (schema.lua ``is_dbless()``)."""
    policies = ("local", "redis") if dbless else ("local", "cluster", "redis")
    return PluginSchema(
        "rate-limiting",
        "3.9.3",
        910,
        [
            *((p, Field("number", gt=0)) for p in PERIODS),
            (
                "limit_by",
                Field(
                    "string",
                    default="consumer",
                    one_of=("consumer", "credential", "ip", "service", "header", "path"),
                ),
            ),
            ("header_name", t_header_name()),
            ("path", Field("string", validators=[_path])),
            ("policy", Field("string", default="local", len_min=0, one_of=policies)),
            ("fault_tolerant", Field("boolean", required=True, default=True)),
            ("redis", REDIS),
            ("hide_client_headers", Field("boolean", required=True, default=False)),
            ("error_code", Field("number", default=429, gt=0)),
            ("error_message", Field("string", default="API rate limit exceeded")),
            ("sync_rate", Field("number", required=True, default=-1)),
        ],
        protocols=t_protocols(HTTP_PROTOCOLS, ["grpc", "grpcs", "http", "https"]),
        checks=[
            at_least_one_of(*(f"config.{p}" for p in PERIODS)),
            _conditional("config.policy", "redis", "config.redis.host"),
            _conditional("config.policy", "redis", "config.redis.port"),
            _conditional("config.policy", "redis", "config.redis.timeout"),
            _conditional("config.limit_by", "header", "config.header_name"),
            _conditional("config.limit_by", "path", "config.path"),
        ],
        config_validators=[_rl_config_validator],
        shorthands={"redis": RATE_LIMITING_SHORTHANDS},
    )


def _serverless_schema(name: str, priority: int) -> PluginSchema:
    """``pre-function`` / ``post-function`` (``kong/plugins/pre-function/_schema.lua``): one
    array of Lua strings per phase, each checked with ``loadstring`` at write time."""

    def validate_function(code: str) -> str | None:
        from kongsim.proxy.lua import syntax_error

        err = syntax_error(code)
        return f"error parsing {name}: {err}" if err else None

    phases = ("certificate", "rewrite", "access", "header_filter", "body_filter", "log")
    return PluginSchema(
        name,
        "3.9.3",
        priority,
        [
            (
                phase,
                Field(
                    "array",
                    required=True,
                    default=[],
                    elements=Field("string", validators=[validate_function]),
                ),
            )
            for phase in phases
        ],
        protocols=t_protocols(PROTOCOLS, ["grpc", "grpcs", "http", "https"]),
        no_consumer=True,
        checks=[at_least_one_of(*(f"config.{p}" for p in phases))],
    )


PRE_FUNCTION = _serverless_schema("pre-function", 1000000)
POST_FUNCTION = _serverless_schema("post-function", -1000)


def plugin_schemas(dbless: bool) -> dict[str, PluginSchema]:
    return {
        "key-auth": KEY_AUTH,
        "pre-function": PRE_FUNCTION,
        "post-function": POST_FUNCTION,
        "rate-limiting": rate_limiting_schema(dbless),
        "request-transformer": REQUEST_TRANSFORMER,
    }


def apply_shorthands(plugin: PluginSchema, config: dict[str, Any]) -> None:
    """Deprecated flat ``redis_*`` keys become ``redis.*`` (schema ``shorthand_fields``)."""
    for record, mapping in plugin.shorthands.items():
        for old, new in mapping.items():
            if old in config:
                value = config.pop(old)
                target = config.get(record)
                if not isinstance(target, dict):
                    target = {}
                    config[record] = target
                target[new] = value


__all__ = [
    "ENTITIES",
    "NOTSET",
    "ORDER",
    "apply_shorthands",
    "expand_service_url",
    "plugin_schemas",
]
