"""Declarative configuration (``kong/db/declarative`` and
``kong/db/schema/others/declarative_config.lua``): parse YAML/JSON, flatten nested entities,
resolve references by name, validate every entity with the same schemas as the Admin API, and
export the current state back to YAML."""

from __future__ import annotations

import hashlib
import time
import uuid
from typing import Any

import yaml

from kongsim.dao import DAO, public, random_key
from kongsim.entities import ENTITIES, ORDER
from kongsim.errors import KongError, lua_literal
from kongsim.schema import is_uuid

FORMAT_VERSIONS = ("1.1", "2.1", "3.0")
EMPTY_HASH = "0" * 32
TOP_KEYS = {
    "_format_version",
    "_transform",
    "_comment",
    "_workspace",
    "services",
    "routes",
    "consumers",
    "plugins",
    "keyauth_credentials",
    "upstreams",
    "targets",
}
# Nested collections allowed under each entity, and the foreign key they fill in.
NESTED = {
    "services": {"routes": ("routes", "service"), "plugins": ("plugins", "service")},
    "routes": {"plugins": ("plugins", "route")},
    "upstreams": {"targets": ("targets", "upstream")},
    "consumers": {
        "plugins": ("plugins", "consumer"),
        "keyauth_credentials": ("keyauth_credentials", "consumer"),
    },
}
NAMESPACE = uuid.UUID("fd02801f-0957-4a15-a8d0-0a2cbfd6ac40")


class DeclarativeError(KongError):
    def __init__(self, fields: dict[str, Any], flattened: list[dict[str, Any]] | None = None):
        super().__init__(14, "declarative config is invalid: " + lua_literal(fields), fields)
        self.flattened = flattened or []


def config_hash(text: str | None, rows: dict[str, list[dict[str, Any]]] | None = None) -> str:
    """MD5 of the configuration text; all zeros when the configuration has no entity
    (kong/db/declarative/init.lua ``parse_string`` and import.lua ``config_is_empty``)."""
    if not text or (rows is not None and not any(rows.values())):
        return EMPTY_HASH
    return hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()


def parse_text(text: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise KongError(
            14, f"failed parsing declarative configuration: {exc}", {"error": str(exc)}
        ) from exc


def _ref_key(entity: str, item: dict[str, Any]) -> str | None:
    key = ENTITIES[entity].endpoint_key
    return item.get(key) if key else None


def load(dao: DAO, config: Any) -> dict[str, list[dict[str, Any]]]:
    """Validate a declarative config (already parsed) and return every entity, keyed by
    entity name, in the stored shape. Raises :class:`DeclarativeError` with Kong's error tree."""
    if not isinstance(config, dict):
        raise DeclarativeError(
            {"error": "failed parsing declarative configuration: expected an object"}
        )
    errors: dict[str, Any] = {}
    version = config.get("_format_version")
    if version is None:
        errors["_format_version"] = "required field missing"
    elif str(version) not in FORMAT_VERSIONS:
        errors["_format_version"] = "expected one of: " + ", ".join(FORMAT_VERSIONS)
    for key in config:
        if key not in TOP_KEYS:
            errors[key] = "unknown field"
    if errors:
        raise DeclarativeError(errors)

    # 1. flatten nested entities, remembering where each came from for error paths
    items: dict[str, list[tuple[dict[str, Any], tuple[Any, ...]]]] = {name: [] for name in ORDER}

    def walk(
        entity: str, item: Any, path: tuple[Any, ...], parent: tuple[str, str, Any] | None
    ) -> None:
        if not isinstance(item, dict):
            _set_error(errors, path, "expected a record")
            return
        item = dict(item)
        if parent:
            _, fk, ref = parent
            item[fk] = ref
        for sub, (child, fk) in NESTED.get(entity, {}).items():
            children = item.pop(sub, None)
            if children is None:
                continue
            if not isinstance(children, list):
                _set_error(errors, (*path, sub), "expected an array")
                continue
            ref = (
                {"id": item["id"]}
                if item.get("id")
                else {"__ref": _ref_key(entity, item) or id(item)}
            )
            if "id" not in item:
                item["id"] = _generate_id(entity, item)
                ref = {"id": item["id"]}
            for i, child_item in enumerate(children, start=1):
                walk(child, child_item, (*path, sub, i), (entity, fk, ref))
        items[entity].append((item, path))

    for entity in ORDER:
        section = config.get(entity)
        if section is None:
            continue
        if not isinstance(section, list):
            errors[entity] = "expected an array"
            continue
        for i, item in enumerate(section, start=1):
            walk(entity, item, (entity, i), None)
    if errors:
        raise DeclarativeError(errors)

    # 2. ids, references by name, validation
    now = int(time.time())
    by_key: dict[str, dict[str, str]] = {name: {} for name in ORDER}
    out: dict[str, list[dict[str, Any]]] = {name: [] for name in ORDER}
    flattened: list[dict[str, Any]] = []
    for entity in ORDER:
        for item, _ in items[entity]:
            if entity == "targets":
                continue  # its id depends on the resolved upstream (below)
            item.setdefault("id", _generate_id(entity, item))
            key = _ref_key(entity, item)
            if key is not None:
                by_key[entity][str(key)] = item["id"]
            by_key[entity][item["id"]] = item["id"]
    seen: dict[tuple[str, str, str], tuple[Any, ...]] = {}
    for entity in ORDER:
        schema = ENTITIES[entity]
        for item, path in items[entity]:
            for fname, ref in schema.foreign_fields:
                value = item.get(fname)
                if value is None or ref not in by_key:
                    continue
                target = value.get("id") if isinstance(value, dict) else value
                if (
                    isinstance(value, dict)
                    and "id" not in value
                    and value.get(ENTITIES[ref].endpoint_key or "") is not None
                ):
                    target = value[ENTITIES[ref].endpoint_key]
                resolved = by_key[ref].get(str(target)) if target is not None else None
                if resolved is None:
                    _set_error(
                        errors,
                        path,
                        f"invalid reference '{fname}: {target}' (no such entry in '{ref}')",
                        entity=True,
                    )
                    continue
                item[fname] = {"id": resolved}
            if entity in ("upstreams", "targets"):
                try:
                    dao.normalize_input(entity, item)
                except KongError as exc:
                    _set_error(errors, path, exc.fields)
                    flattened.append(_flat(entity, item, exc.fields))
                    continue
            if entity == "targets" and "id" not in item:
                # one target per upstream: the same target twice collides on its id, as the
                # cache key (upstream, target) makes Kong's generated ids collide
                upstream_ref = (item.get("upstream") or {}).get("id")
                seed = f"targets:{upstream_ref}:{item.get('target')}"
                item["id"] = str(uuid.uuid5(NAMESPACE, seed))
            data = dict(item)
            stamp: float = float(now) if entity == "targets" else now
            data.setdefault("created_at", stamp)
            if schema.field("updated_at"):
                data.setdefault("updated_at", stamp)
            if entity == "keyauth_credentials" and data.get("key") is None:
                data["key"] = random_key()
            row, field_errors = dao.prepare(entity, data)
            if field_errors:
                _set_error(errors, path, field_errors)
                flattened.append(_flat(entity, item, field_errors))
                continue
            duplicate = self_dup = None
            for fname in [*schema.unique_fields, "id"]:
                if row.get(fname) is None:
                    continue
                marker = (entity, fname, str(row[fname]))
                if marker in seen and duplicate is None:
                    label = "primary key" if fname == "id" else fname
                    duplicate = (
                        f"uniqueness violation: '{entity}' entity with {label} set to "
                        f"'{row[fname]}' already declared"
                    )
                    self_dup = fname in ("id", schema.endpoint_key)
                seen[marker] = path
            if duplicate:
                # Kong reports a duplicate id or endpoint key at the entry's position, any other
                # duplicate unique value under the entry's endpoint key (declarative_config.lua).
                key = _ref_key(entity, row)
                where = path if self_dup or key is None else (*path[:-1], key)
                _set_error(errors, where, duplicate)
                continue
            out[entity].append(row)
    if errors:
        raise DeclarativeError(errors, flattened)
    return out


def _generate_id(entity: str, item: dict[str, Any]) -> str:
    key = _ref_key(entity, item)
    if key is not None:
        return str(uuid.uuid5(NAMESPACE, f"{entity}:{key}"))
    return str(uuid.uuid4())


def _set_error(
    errors: dict[str, Any], path: tuple[Any, ...], err: Any, *, entity: bool = False
) -> None:
    node: Any = errors
    for part in path[:-1]:
        node = node.setdefault(part, {})
    last = path[-1]
    if entity:
        existing = node.setdefault(last, {})
        if isinstance(existing, dict):
            existing.setdefault("@entity", []).append(err)
        return
    if isinstance(err, dict) and isinstance(node.get(last), dict):
        node[last].update(err)
    else:
        node[last] = err


def json_errors(errors: Any) -> Any:
    """Error trees keep 1-based int keys for list positions; JSON shows them as arrays."""
    if isinstance(errors, dict):
        if errors and all(isinstance(k, int) for k in errors):
            return [json_errors(errors.get(i)) for i in range(1, max(errors) + 1)]
        return {str(k): json_errors(v) for k, v in errors.items()}
    return errors


def _flat(entity: str, item: dict[str, Any], field_errors: dict[str, Any]) -> dict[str, Any]:
    errs: list[dict[str, Any]] = []

    def walk(prefix: str, tree: dict[Any, Any]) -> None:
        for msg in tree.get("@entity", []):
            errs.append({"type": "entity", "message": msg})
        for name, value in tree.items():
            if name == "@entity":
                continue
            field = f"{prefix}{name}"
            if isinstance(value, dict):
                walk(f"{field}.", value)
            elif isinstance(value, list):
                errs.extend({"type": "field", "field": field, "message": m} for m in value)
            else:
                errs.append({"type": "field", "field": field, "message": value})

    walk("", field_errors)
    return {
        "entity_type": entity[:-1] if entity.endswith("s") else entity,
        "entity_name": item.get("name") or item.get("username"),
        "entity_id": item.get("id"),
        "entity_tags": item.get("tags"),
        "entity": item,
        "errors": errs,
    }


def export(rows: dict[str, list[dict[str, Any]]]) -> str:
    """The current configuration as ``GET /config`` and ``kong config db_export`` show it."""
    doc: dict[str, Any] = {"_format_version": "3.0", "_transform": False}
    for entity in ORDER:
        if rows.get(entity):
            fks = [name for name, _ in ENTITIES[entity].foreign_fields]
            items = []
            for row in rows[entity]:
                item = public(row)
                item.pop("ttl", None)
                # export.lua writes foreign keys as the bare id
                for fk in fks:
                    if isinstance(item.get(fk), dict):
                        item[fk] = item[fk].get("id")
                items.append(item)
            doc[entity] = items
    return yaml.safe_dump(doc, sort_keys=False, allow_unicode=True)


def is_id(value: Any) -> bool:
    return is_uuid(value)
