"""A small schema engine with Kong 3.9.3's validation messages (``kong/db/schema/init.lua``).

Errors are returned as Kong builds them: a dict from field name to a message, a nested dict
(records, arrays keyed by 1-based index) or, under ``"@entity"``, a list of entity-level messages.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

NOTSET: Any = object()
Errors = dict[str, Any]
Validator = Callable[[Any], str | None]

TYPE_ERRORS = {
    "string": "expected a string",
    "integer": "expected an integer",
    "number": "expected a number",
    "boolean": "expected a boolean",
    "array": "expected an array",
    "set": "expected a set",
    "map": "expected a map",
    "record": "expected a record",
    "foreign": "expected a record",
}


@dataclass
class Field:
    """One field of an entity or record schema; attributes mirror Kong's field attributes."""

    type: str
    default: Any = NOTSET
    required: bool = False
    one_of: tuple[Any, ...] | None = None
    between: tuple[int, int] | None = None
    gt: float | None = None
    len_min: int | None = None
    elements: Field | None = None
    keys: Field | None = None
    values: Field | None = None
    fields: list[tuple[str, Field]] | None = None
    reference: str | None = None
    unique: bool = False
    auto: bool = False
    eq_null: bool = False
    validators: list[Validator] = field(default_factory=list)
    entity_checks: list[Callable[[dict[str, Any]], Errors | None]] = field(default_factory=list)
    description: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The field as ``GET /schemas/...`` shows it."""
        out: dict[str, Any] = {"type": self.type}
        if self.default is not NOTSET:
            out["default"] = self.default
        if self.required:
            out["required"] = True
        if self.one_of:
            out["one_of"] = list(self.one_of)
        if self.between:
            out["between"] = list(self.between)
        if self.gt is not None:
            out["gt"] = self.gt
        if self.len_min is not None:
            out["len_min"] = self.len_min
        if self.unique:
            out["unique"] = True
        if self.auto:
            out["auto"] = True
        if self.reference:
            out["reference"] = self.reference
        if self.eq_null:
            out["eq"] = None
        if self.elements:
            out["elements"] = self.elements.to_json()
        if self.keys:
            out["keys"] = self.keys.to_json()
        if self.values:
            out["values"] = self.values.to_json()
        if self.fields is not None:
            out["fields"] = [{name: f.to_json()} for name, f in self.fields]
        if self.description:
            out["description"] = self.description
        return out


def is_null(value: Any) -> bool:
    return value is None


def _type_ok(typ: str, value: Any) -> bool:
    if typ == "string":
        return isinstance(value, str)
    if typ == "integer":
        return (isinstance(value, int) and not isinstance(value, bool)) or (
            isinstance(value, float) and value.is_integer()
        )
    if typ == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if typ == "boolean":
        return isinstance(value, bool)
    if typ in ("array", "set"):
        return isinstance(value, list)
    if typ in ("map", "record", "foreign"):
        return isinstance(value, dict)
    return True


def _fmt_number(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def validate_field(f: Field, value: Any) -> Any:
    """Validate one non-null value; return ``None`` or an error (string, dict)."""
    if not _type_ok(f.type, value):
        return TYPE_ERRORS.get(f.type, "invalid type")
    if f.type == "integer" and isinstance(value, float):
        value = int(value)
    if f.eq_null:
        return "value must be null"
    if f.between and not f.between[0] <= value <= f.between[1]:
        return f"value should be between {f.between[0]} and {f.between[1]}"
    if f.gt is not None and not value > f.gt:
        return f"value must be greater than {_fmt_number(f.gt)}"
    if f.len_min is not None and len(value) < f.len_min:
        if f.type in ("array", "set") and f.len_min == 1 and not value:
            return "length must be at least 1"
        return f"length must be at least {f.len_min}"
    if f.one_of is not None and value not in f.one_of:
        return "expected one of: " + ", ".join(str(v) for v in f.one_of)
    if f.type in ("array", "set") and f.elements:
        errs: dict[int, Any] = {}
        for i, item in enumerate(value, start=1):
            err = validate_field(f.elements, item) if item is not None else "required field missing"
            if err:
                errs[i] = err
        if errs:
            return errs
    if f.type == "map":
        errs_m: dict[str, Any] = {}
        for k, v in value.items():
            err = validate_field(f.keys, k) if f.keys else None
            if not err and f.values:
                err = validate_field(f.values, v) if v is not None else "required field missing"
            if err:
                errs_m[k] = err
        if errs_m:
            return errs_m
    if f.type == "record" and f.fields is not None:
        rec_errs = validate_record(f.fields, value, f.entity_checks)
        if rec_errs:
            return rec_errs
    if f.type == "foreign":
        if set(value) - {"id"}:
            return {k: "unknown field" for k in value if k != "id"}
        if not is_uuid(value.get("id")):
            return {
                "id": "expected a valid UUID"
                if value.get("id") is not None
                else "required field missing"
            }
    for validator in f.validators:
        err = validator(value)
        if err:
            return err
    return None


def validate_record(
    fields: list[tuple[str, Field]],
    data: dict[str, Any],
    checks: list[Callable[[dict[str, Any]], Errors | None]] | None = None,
) -> Errors:
    """Validate a record (an entity, or a nested record) whose defaults are already filled."""
    errors: Errors = {}
    names = {name for name, _ in fields}
    for key in data:
        if key not in names:
            errors[key] = "unknown field"
    for name, f in fields:
        value = data.get(name)
        if value is None:
            if f.required:
                errors[name] = "required field missing"
            continue
        err = validate_field(f, value)
        if err:
            errors[name] = err
    if not errors:
        for check in checks or []:
            err_c = check(data)
            for key, val in (err_c or {}).items():
                if key == "@entity":
                    errors.setdefault("@entity", []).extend(val)
                elif isinstance(val, dict) and isinstance(errors.get(key), dict):
                    errors[key].update(val)
                else:
                    errors.setdefault(key, val)
    return errors


def fill_defaults(fields: list[tuple[str, Field]], data: dict[str, Any]) -> dict[str, Any]:
    """Kong's ``process_auto_fields`` for defaults: absent fields get their default (records
    are built from their own defaults), explicit ``null`` stays null."""
    out = dict(data)
    for name, f in fields:
        if name not in out:
            if f.default is not NOTSET:
                out[name] = _copy(f.default)
            elif f.type == "record" and f.fields is not None:
                out[name] = fill_defaults(f.fields, {})
            else:
                out[name] = None
        elif f.type == "record" and f.fields is not None and isinstance(out[name], dict):
            out[name] = fill_defaults(f.fields, out[name])
        elif f.type == "integer" and isinstance(out[name], float) and out[name].is_integer():
            out[name] = int(out[name])
    return out


def _copy(value: Any) -> Any:
    if isinstance(value, list):
        return [_copy(v) for v in value]
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    return value


def merge(old: Any, new: Any) -> Any:
    """PATCH semantics (Kong's ``merge_values``): records merge recursively, the rest replaces."""
    if isinstance(old, dict) and isinstance(new, dict):
        out = dict(old)
        for k, v in new.items():
            out[k] = merge(old.get(k), v) if isinstance(v, dict) else v
        return out
    return new


def is_uuid(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    return bool(
        re.fullmatch(
            r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}", value
        )
    )


def new_uuid() -> str:
    return str(uuid.uuid4())


# --- Kong's typedefs -----------------------------------------------------------------------


def _utf8_name(value: str) -> str | None:
    if not re.fullmatch(r"[A-Za-z0-9.\-_~\u0080-\U0010ffff]+", value):
        return (
            f"invalid value '{value}': the only accepted ascii characters are alphanumerics "
            "or ., -, _, and ~"
        )
    return None


def _tag(value: str) -> str | None:
    if not value or not re.fullmatch(r"[ !-+\-.0-9:-~\u0080-\U0010ffff]+", value):
        return (
            f"invalid tag '{value}': expected printable ascii (except `,` and `/`) or valid "
            "utf-8 sequences"
        )
    return None


_PATH_CHARS = re.compile(r"^/[A-Za-z0-9.\-_~/%:@!$&'()*+,;=]*$")


def _path(value: str) -> str | None:
    if not value.startswith("/"):
        return "should start with: /"
    if "//" in value:
        return "must not have empty segments"
    if not _PATH_CHARS.match(value):
        return (
            f"invalid path: '{value}' (characters outside of the reserved list of RFC 3986 found)"
        )
    bad = re.search(r"%(?![0-9A-Fa-f]{2}).{0,2}", value)
    if bad:
        return f"invalid url-encoded value: '{bad.group(0)}'"
    return None


def _router_path(value: str) -> str | None:
    if value.startswith("~/"):
        try:
            # PCRE's named groups (?<name>...) are Python's (?P<name>...)
            re.compile(re.sub(r"\(\?<(?=[A-Za-z_])", "(?P<", value[1:]))
        except re.error as exc:
            return f"invalid regex: '{value[1:]}' (PCRE returned: {exc})"
        return None
    if not value.startswith("/"):
        return "should start with: / (fixed path) or ~/ (regex path)"
    return _path(value)


_HOSTNAME = re.compile(r"^[A-Za-z0-9\-_.*\u0080-\U0010ffff]+(:\d+)?$")


def _host(value: str) -> str | None:
    if not _HOSTNAME.match(value) or value.startswith(".") or ".." in value:
        return f"invalid value: {value}"
    if ":" in value and not value.startswith("["):
        return "must not have a port"
    return None


def _wildcard_host(value: str) -> str | None:
    if value.count("*") > 1:
        return "invalid wildcard: must have at most one wildcard"
    if "*" in value and not (value.startswith("*.") or value.endswith(".*")):
        return "invalid wildcard: must be placed at leftmost or rightmost label"
    base = value.replace("*", "x")
    host, _, port = base.partition(":")
    if not _HOSTNAME.match(host) or (port and not port.isdigit()):
        return f"invalid value: {value}"
    return None


def _header_name(value: str) -> str | None:
    if not re.fullmatch(r"[A-Za-z0-9_\-]+", value):
        return f"bad header name '{value}', allowed characters are A-Z, a-z, 0-9, '_', and '-'"
    return None


def _methods(value: str) -> str | None:
    if not re.fullmatch(r"[A-Z]+", value):
        return f"invalid value: {value}"
    return None


PROTOCOLS = ("grpc", "grpcs", "http", "https", "tcp", "tls", "tls_passthrough", "udp")
HTTP_PROTOCOLS = ("grpc", "grpcs", "http", "https")


def t_uuid() -> Field:
    return Field(
        "string", auto=True, validators=[lambda v: None if is_uuid(v) else "expected a valid UUID"]
    )


def t_ts() -> Field:
    return Field("integer", auto=True)


def t_name() -> Field:
    return Field("string", unique=True, validators=[_utf8_name])


def t_tags() -> Field:
    return Field("set", elements=Field("string", required=True, validators=[_tag]))


def t_timeout(default: int = 60000) -> Field:
    return Field("integer", default=default, between=(1, 2**31 - 2))


def t_port(default: Any = NOTSET) -> Field:
    return Field("integer", default=default, between=(0, 65535))


def t_header_name() -> Field:
    return Field("string", validators=[_header_name])


def t_protocols(allowed: tuple[str, ...], default: list[str]) -> Field:
    return Field(
        "set",
        required=True,
        default=default,
        elements=Field("string", one_of=allowed),
    )


# --- entity-level checks -------------------------------------------------------------------


def _empty(value: Any) -> bool:
    return value is None or value == [] or value == {}


def at_least_one_of(*names: str) -> Callable[[dict[str, Any]], Errors | None]:
    quoted = ", ".join(f"'{n}'" for n in names)

    def check(data: dict[str, Any]) -> Errors | None:
        if all(_empty(_get_path(data, n)) for n in names):
            return {"@entity": [f"at least one of these fields must be non-empty: {quoted}"]}
        return None

    return check


def _get_path(data: dict[str, Any], path: str) -> Any:
    value: Any = data
    for part in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


@dataclass
class EntitySchema:
    """An entity (a DAO in Kong): its fields, checks and Admin API names."""

    name: str
    fields: list[tuple[str, Field]]
    endpoint_key: str | None
    checks: list[Callable[[dict[str, Any]], Errors | None]] = field(default_factory=list)
    admin_name: str = ""
    ttl: bool = False
    # Each unique rule: field names whose combined values must be unique (the plugin cache key).
    cache_key: tuple[str, ...] | None = None

    def field(self, name: str) -> Field | None:
        for fname, f in self.fields:
            if fname == name:
                return f
        return None

    @property
    def unique_fields(self) -> list[str]:
        return [name for name, f in self.fields if f.unique]

    @property
    def foreign_fields(self) -> list[tuple[str, str]]:
        return [
            (name, f.reference) for name, f in self.fields if f.type == "foreign" and f.reference
        ]

    def to_json(self) -> dict[str, Any]:
        return {"fields": [{name: f.to_json()} for name, f in self.fields]}
