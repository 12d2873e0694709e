"""kong.conf loading as Kong 3.9.3 does it (``kong/conf_loader``): defaults, then the file, then
``KONG_*`` environment variables, each value typed by Kong's ``CONF_PARSERS`` rules.

One deliberate difference: Kong silently drops keys it does not know; the simulator reports them
as errors (``kong check`` fails), so a typo in a role's template is caught in tests.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any

from kongsim.confdata import DEFAULTS, PARSERS

DEFAULT_PATHS = ("/etc/kong/kong.conf", "/etc/kong.conf")

# Namespaces whose keys are free-form (nginx directives injected into nginx.conf, vault and
# plugin-server settings): `DYNAMIC_KEY_NAMESPACES` in kong/conf_loader/constants.lua.
DYNAMIC_PREFIXES = (
    "nginx_main_",
    "nginx_events_",
    "nginx_http_",
    "nginx_upstream_",
    "nginx_proxy_",
    "nginx_location_",
    "nginx_status_",
    "nginx_admin_",
    "nginx_stream_",
    "nginx_supstream_",
    "nginx_sproxy_",
    "pluginserver_",
    "vault_",
    "nginx_wasm_",
)

# Aliases resolved by Kong before validation (`alias.replacement` in CONF_PARSERS).
ALIASES = {"nginx_main_daemon": "nginx_daemon", "nginx_main_user": "nginx_user"}

# The plugins this simulator implements; "bundled" means all of them.
IMPLEMENTED_PLUGINS = (
    "key-auth",
    "post-function",
    "pre-function",
    "rate-limiting",
    "request-transformer",
)

LISTEN_FLAGS = (
    "ssl",
    "http2",
    "proxy_protocol",
    "deferred",
    "bind",
    "reuseport",
    "backlog=%d+",
    "ipv6only=on",
    "ipv6only=off",
    "so_keepalive=on",
    "so_keepalive=off",
    "so_keepalive=%w*:%w*:%d*",
)
_FLAG_RE = re.compile(
    r"^(ssl|http2|proxy_protocol|deferred|bind|reuseport|backlog=\d+|ipv6only=(on|off)"
    r"|so_keepalive=(on|off|\w*:\w*:\d*))$"
)
LISTENERS = ("proxy_listen", "admin_listen", "status_listen")

HEADER_TOKENS = {
    "server_tokens",
    "latency_tokens",
    "x-kong-request-id",
    "server",
    "via",
    "x-kong-proxy-latency",
    "x-kong-upstream-latency",
    "x-kong-upstream-status",
    "x-kong-admin-latency",
    "x-kong-response-latency",
    "x-kong-status",
    "off",
}


class ConfError(Exception):
    """A kong.conf that cannot be loaded; ``errors`` lists every problem found."""

    def __init__(self, errors: list[str]):
        super().__init__("\n".join(errors))
        self.errors = errors


@dataclass
class Listener:
    ip: str
    port: int
    ssl: bool = False
    http2: bool = False
    flags: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"ip": self.ip, "port": self.port, "ssl": self.ssl, "http2": self.http2}


def is_known_key(key: str) -> bool:
    return key in DEFAULTS or key in PARSERS or key in ALIASES or key.startswith(DYNAMIC_PREFIXES)


def find_conf_file(path: str | None) -> str | None:
    """The file Kong would read: ``-c`` if given (must exist), else the first default path."""
    if path:
        if not os.path.isfile(path):
            raise ConfError([f"no file at: {path}"])
        return path
    for candidate in DEFAULT_PATHS:
        if os.path.isfile(candidate):
            return candidate
    return None


def read_conf_file(path: str) -> dict[str, str]:
    """``key = value`` lines; ``#`` starts a comment unless escaped as ``\\#``. The node's own
    ``.kong_env`` also escapes backslashes and newlines (multi-line values such as
    ``declarative_config_string``)."""
    values: dict[str, str] = {}
    kong_env = os.path.basename(path) == ".kong_env"
    with open(path, encoding="utf-8") as fh:
        for raw in fh:
            line = re.sub(r"(?<!\\)#.*$", "", raw).strip()
            if kong_env:
                line = re.sub(r"\\(.)", lambda m: "\n" if m.group(1) == "n" else m.group(1), line)
            else:
                line = line.replace("\\#", "#")
            if not line:
                continue
            if "=" not in line:
                raise ConfError([f"could not load config file: invalid line '{line}'"])
            key, value = line.split("=", 1)
            values[key.strip().lower()] = value.strip()
    return values


def parse_value(value: Any, typ: str | None) -> Any:
    """Kong's ``parse_value``: booleans from on/true, numbers, comma-separated arrays."""
    if isinstance(value, str):
        value = value.strip()
    if typ == "boolean":
        return value is True or value in ("on", "true")
    if typ == "ngx_boolean":
        return "on" if value in ("on", True) else "off"
    if typ == "number":
        try:
            number = float(value)
        except (TypeError, ValueError):
            return None
        return int(number) if number.is_integer() else number
    if typ == "array" and isinstance(value, str):
        items = [item.strip() for item in value.split(",")]
        return [item for item in items if item] if value else []
    if value == "":
        return None
    return value


def parse_listen(name: str, values: list[str]) -> list[Listener]:
    flags = "] [".join(LISTEN_FLAGS)
    usage = f"{name} must be of form: [off] | <ip>:<port> [{flags}], [... next entry ...]"
    if not values:
        raise ConfError([usage])
    if values[0].strip() == "off":
        return []
    listeners = []
    for entry in values:
        parts = entry.split()
        match = re.fullmatch(r"\[?([^\]]*?)\]?:(\d+)", parts[0]) if parts else None
        if not match or not all(_FLAG_RE.match(flag) for flag in parts[1:]):
            raise ConfError([usage])
        listeners.append(
            Listener(
                ip=match.group(1),
                port=int(match.group(2)),
                ssl="ssl" in parts[1:],
                http2="http2" in parts[1:],
                flags=parts[1:],
            )
        )
    return listeners


def load(
    path: str | None = None,
    env: dict[str, str] | None = None,
    overrides: dict[str, Any] | None = None,
    *,
    strict: bool = True,
) -> dict[str, Any]:
    """Load and validate a configuration; raise :class:`ConfError` listing every problem.

    Returns the typed configuration (Kong's ``conf`` table) plus derived entries:
    ``proxy_listeners``/``admin_listeners``/``status_listeners`` (lists of dicts),
    ``loaded_plugins`` (the enabled plugin names), ``kong_env`` and ``nginx_pid`` paths, and
    ``conf_path`` (the file read, or ``None``).
    """
    environ = os.environ if env is None else env
    conf_path = find_conf_file(path)
    from_file = read_conf_file(conf_path) if conf_path else {}
    errors: list[str] = []
    raw: dict[str, Any] = dict(DEFAULTS)
    for key, value in from_file.items():
        key = ALIASES.get(key, key)
        if not is_known_key(key):
            errors.append(f"unknown property '{key}' in {conf_path}")
            continue
        raw[key] = value
    for name, value in environ.items():
        if name.upper().startswith("KONG_"):
            key = ALIASES.get(name[5:].lower(), name[5:].lower())
            if is_known_key(key):
                raw[key] = value
    for key, value in (overrides or {}).items():
        raw[ALIASES.get(key, key)] = value

    conf: dict[str, Any] = {}
    for key, value in raw.items():
        typ, enum = PARSERS.get(key, (None, None))
        if typ is None and key in ("nginx_daemon",):
            typ = "ngx_boolean"
        parsed = parse_value(value, typ) if value is not None else None
        if parsed is not None and enum and parsed not in enum:
            errors.append(f"{key} has an invalid value: '{parsed}' ({', '.join(enum)})")
        conf[key] = parsed

    for key in ("headers", "headers_upstream"):
        for entry in conf.get(key) or []:
            if entry.lower() not in HEADER_TOKENS:
                errors.append(f"{key}: invalid entry '{entry}'")
    for entry in conf.get("trusted_ips") or []:
        if entry != "unix:" and not re.fullmatch(r"[0-9a-fA-F.:]+(/\d+)?", entry):
            errors.append(
                "trusted_ips must be a comma separated list in the form of IPv4 or IPv6 "
                "address or CIDR block or 'unix:', got '" + entry + "'"
            )
    if conf.get("database") == "off" and conf.get("role") == "control_plane":
        errors.append('in-memory storage can not be used when role = "control_plane"')
    for name in LISTENERS:
        try:
            conf[name.replace("_listen", "_listeners")] = [
                listener.as_dict() for listener in parse_listen(name, conf.get(name) or [])
            ]
        except ConfError as exc:
            errors.extend(exc.errors)
    freq = conf.get("db_update_frequency")
    if freq is not None and freq <= 0:
        errors.append("db_update_frequency must be greater than 0")
    if errors and strict:
        raise ConfError(errors)

    plugins = conf.get("plugins") or []
    conf["loaded_plugins"] = [
        name for name in IMPLEMENTED_PLUGINS if "bundled" in plugins or name in plugins
    ]
    prefix = os.path.abspath(str(conf.get("prefix") or DEFAULTS["prefix"]))
    conf["prefix"] = prefix
    conf["kong_env"] = os.path.join(prefix, ".kong_env")
    conf["nginx_pid"] = os.path.join(prefix, "pids", "nginx.pid")
    conf["conf_path"] = conf_path
    return conf


def prefix_path(conf: dict[str, Any], value: str | None) -> str | None:
    """A log path as Kong resolves it: relative paths live under the prefix; ``off`` is None."""
    if not value or value == "off":
        return None
    return value if os.path.isabs(value) else os.path.join(conf["prefix"], value)


def write_kong_env(conf: dict[str, Any], raw_overrides: dict[str, Any] | None = None) -> None:
    """Write ``<prefix>/.kong_env``, the running node's resolved configuration (as Kong does)."""
    lines = []
    for key in sorted(conf):
        if key not in DEFAULTS and not is_known_key(key):
            continue
        value = conf[key]
        if value is None:
            continue
        if isinstance(value, bool):
            value = "on" if value else "off"
        elif isinstance(value, list):
            value = ", ".join(str(item) for item in value)
        text = str(value).replace("\\", "\\\\").replace("\n", "\\n").replace("#", "\\#")
        lines.append(f"{key} = {text}")
    os.makedirs(conf["prefix"], exist_ok=True)
    with open(conf["kong_env"], "w", encoding="utf-8") as fh:
        fh.write("\n".join(lines) + "\n")
    os.chmod(conf["kong_env"], 0o600)
