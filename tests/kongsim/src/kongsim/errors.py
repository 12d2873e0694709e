"""Kong's error bodies (``kong/db/errors.lua``) and their HTTP codes (``endpoints.lua``)."""

from __future__ import annotations

from typing import Any

CODES = {
    1: ("invalid primary key", 400),
    2: ("schema violation", 400),
    3: ("primary key violation", 400),
    4: ("foreign key violation", 400),
    5: ("unique constraint violation", 409),
    6: ("not found", 404),
    7: ("invalid offset", 400),
    8: ("database error", 500),
    9: ("invalid size", 400),
    10: ("invalid unique %s", 400),
    11: ("invalid options", 400),
    12: ("operation unsupported", 405),
    13: ("foreign keys unresolved", 400),
    14: ("invalid declarative configuration", 400),
    19: ("referenced by others", 400),
}


class HTTPError(Exception):
    """A plain Admin API answer: ``status`` and a JSON body (``None`` for an empty body)."""

    def __init__(self, status: int, body: Any = None, headers: dict[str, str] | None = None):
        super().__init__(status)
        self.status = status
        self.body = body
        self.headers = headers or {}


class KongError(HTTPError):
    """A DAO error rendered as ``{"code","name","message","fields"|"options"}``."""

    def __init__(self, code: int, message: str, fields: Any = None, *, name: str | None = None):
        default_name, status = CODES[code]
        body: dict[str, Any] = {"code": code, "name": name or default_name, "message": message}
        if fields is not None:
            body["options" if code == 11 else "fields"] = fields
        super().__init__(status, body)
        self.code = code
        self.fields = fields


def not_found() -> HTTPError:
    return HTTPError(404, {"message": "Not found"})


def method_not_allowed() -> HTTPError:
    return HTTPError(405, {"message": "Method not allowed"})


def lua_literal(value: Any) -> str:
    """A value as Kong prints it in messages (penlight's ``pl.pretty.write`` on one line)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "{" + ",".join(lua_literal(v) for v in value) + "}"
    if isinstance(value, dict):
        ints = sorted(k for k in value if isinstance(k, int))
        if ints and ints == list(range(1, len(value) + 1)):
            return lua_literal([value[k] for k in ints])
        parts = [f"[{k}]={lua_literal(value[k])}" for k in ints]
        for key in sorted(k for k in value if not isinstance(k, int)):
            name = key if key.isidentifier() else f'["{key}"]'
            parts.append(f"{name}={lua_literal(value[key])}")
        return "{" + ",".join(parts) + "}"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _pretty(value: Any, indent: str = "") -> str:
    """Multi-line ``pl.pretty.write`` used for nested field errors in messages."""
    if not isinstance(value, dict | list):
        return lua_literal(value)
    inner = indent + "  "
    items = value.items() if isinstance(value, dict) else enumerate(value, start=1)
    lines = []
    for key, val in items:
        text = _pretty(val, inner)
        if isinstance(value, dict):
            name = key if isinstance(key, str) and key.isidentifier() else f'["{key}"]'
            lines.append(f"{inner}{name} = {text}")
        else:
            lines.append(f"{inner}{text}")
    return "{\n" + ",\n".join(lines) + "\n" + indent + "}"


def _to_json_fields(errors: Any) -> Any:
    """Error trees use 1-based int keys for array elements; JSON shows them as arrays."""
    if isinstance(errors, dict):
        if errors and all(isinstance(k, int) for k in errors):
            size = max(errors)
            return [_to_json_fields(errors.get(i)) for i in range(1, size + 1)]
        return {k: _to_json_fields(v) for k, v in errors.items()}
    return errors


def schema_violation(errors: dict[str, Any]) -> KongError:
    """Kong's ``schema_violation``: entity errors first, then fields in sorted order, one level
    of nesting as ``field.sub: msg`` and deeper levels pretty-printed."""
    buf: list[str] = list(errors.get("@entity", []))
    for name in sorted((k for k in errors if k != "@entity"), key=str):
        value = errors[name]
        if isinstance(value, dict):
            for sub in sorted(value, key=lambda k: (isinstance(k, str), k)):
                sub_value = value[sub]
                if sub == "@entity" and isinstance(sub_value, list):
                    text = _pretty(sub_value)
                elif isinstance(sub_value, dict):
                    text = _pretty(_to_json_fields(sub_value))
                else:
                    text = str(sub_value)
                buf.append(f"{name}.{sub}: {text}")
        else:
            buf.append(f"{name}: {value}")
    if len(buf) == 1:
        message = f"schema violation ({buf[0]})"
    else:
        message = f"{len(buf)} schema violations ({'; '.join(buf)})"
    return KongError(2, message, _to_json_fields(errors))
