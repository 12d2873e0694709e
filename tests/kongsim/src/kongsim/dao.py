"""Entity operations with Kong 3.9.3's semantics (``kong/db/dao/init.lua``): auto fields and
defaults, validation, foreign keys, unique constraints, upsert/update/delete and cascades."""

from __future__ import annotations

import base64
import copy
import secrets
import time
from typing import Any

from kongsim.entities import (
    ENTITIES,
    ORDER,
    PluginSchema,
    apply_shorthands,
    expand_service_url,
    plugin_schemas,
)
from kongsim.errors import KongError, lua_literal, schema_violation
from kongsim.schema import (
    EntitySchema,
    Errors,
    Field,
    fill_defaults,
    is_uuid,
    merge,
    new_uuid,
    validate_record,
)
from kongsim.store import Row, Store, UniqueViolation
from kongsim.upstreams import UPSTREAMS, normalize_target, upstream_shorthands

INTERNAL_PREFIX = "_"


def random_key() -> str:
    """A 32-character key like Kong's ``random_string()``: 24 random bytes in base64 with
    ``+`` and ``/`` replaced by alphanumerics (kong/tools/rand.lua)."""
    raw = base64.b64encode(secrets.token_bytes(24)).decode()
    return raw.replace("+", secrets.choice("abcdefghijklmnopqrstuvwxyz")).replace(
        "/", secrets.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ")
    )


def public(row: Row, now: float | None = None) -> Row:
    """A stored row as the Admin API shows it: internal keys removed, ``ttl`` = seconds left."""
    out = {k: v for k, v in row.items() if not k.startswith(INTERNAL_PREFIX)}
    expires = row.get("_expires_at")
    if expires is not None:
        out["ttl"] = max(0, int(expires - (now or time.time())))
    return out


def expired(row: Row, now: float | None = None) -> bool:
    expires = row.get("_expires_at")
    return expires is not None and expires <= (now or time.time())


class DAO:
    """All Admin API writes and reads go through here; ``store`` is memory or PostgreSQL."""

    def __init__(self, store: Store, enabled_plugins: list[str], *, dbless: bool):
        self.store = store
        self.enabled_plugins = list(enabled_plugins)
        self.plugins: dict[str, PluginSchema] = plugin_schemas(dbless)
        self.dbless = dbless

    # --- reads ------------------------------------------------------------------------------

    async def rows(self, entity: str) -> list[Row]:
        now = time.time()
        return [r for r in await self.store.all(entity) if not expired(r, now)]

    async def get(self, entity: str, id_: str) -> Row | None:
        row = await self.store.get(entity, id_)
        return None if row is None or expired(row) else row

    async def select(self, entity: str, key: str) -> Row | None:
        """Resolve a URL segment: a UUID is an id, anything else is the endpoint key."""
        schema = ENTITIES[entity]
        if is_uuid(key):
            return await self.get(entity, key)
        if entity == "upstreams":
            # validate_unique_row_method (kong/db/dao/init.lua): a name that fails the name
            # validator is rejected before any lookup
            name_field = UPSTREAMS.field("name")
            assert name_field is not None
            err = name_field.validators[0](key)
            if err:
                raise KongError(10, err, name="invalid unique name")
        if not schema.endpoint_key:
            return None
        for row in await self.store.find(entity, schema.endpoint_key, key):
            if not expired(row):
                return row
        return None

    async def children(self, entity: str, fk: str, parent_id: str) -> list[Row]:
        now = time.time()
        return [
            r for r in await self.store.find(entity, f"{fk}.id", parent_id) if not expired(r, now)
        ]

    # --- validation -------------------------------------------------------------------------

    async def resolve_foreign(self, entity: str, data: dict[str, Any]) -> dict[str, Any]:
        """Foreign keys given by a unique field (``"consumer": {"username": "bob"}``) become
        ``{"id": ...}``, as Kong's ``resolve_foreign`` does (kong/db/dao/init.lua); a value that
        matches nothing is error 13, "foreign keys unresolved"."""
        out = dict(data)
        errors: dict[str, Any] = {}
        for fname, ref in ENTITIES[entity].foreign_fields:
            value = out.get(fname)
            if not isinstance(value, dict) or is_uuid(value.get("id")) or ref not in ENTITIES:
                continue
            ref_schema = ENTITIES[ref]
            keys = [n for n, f in ref_schema.fields if f.unique or n == ref_schema.endpoint_key]
            unresolved: dict[str, str] = {}
            for key in keys:
                wanted = value.get(key)
                if not isinstance(wanted, str) or not wanted:
                    continue
                found = [r for r in await self.store.find(ref, key, wanted) if not expired(r)]
                if found:
                    out[fname] = {"id": found[0]["id"]}
                    unresolved = {}
                    break
                unresolved[key] = (
                    f"the foreign key cannot be resolved with '{{{key}={lua_literal(wanted)}}}' "
                    f"for an existing '{ref}' entity"
                )
            if unresolved:
                errors[fname] = unresolved
        if errors:
            parts = [
                f"{fname}.{key}: {msg}"
                for fname in sorted(errors)
                for key, msg in sorted(errors[fname].items())
            ]
            if len(parts) == 1:
                message = f"foreign key unresolved ({parts[0]})"
            else:
                message = f"{len(parts)} foreign keys unresolved ({'; '.join(parts)})"
            raise KongError(13, message, errors)
        return out

    @staticmethod
    def normalize_input(entity: str, data: dict[str, Any]) -> None:
        """What Kong does to a write's input before merging and validating it: the upstream
        shorthands and the targets' ``host:port`` normalisation (raises a schema violation)."""
        if entity == "upstreams":
            upstream_shorthands(data)
        elif entity == "targets":
            err = normalize_target(data)
            if err:
                raise schema_violation(err)

    def _plugin_schema(self, name: Any) -> PluginSchema | None:
        if isinstance(name, str) and name in self.enabled_plugins:
            return self.plugins[name]
        return None

    def prepare(self, entity: str, data: dict[str, Any]) -> tuple[Row, Errors]:
        """Fill defaults and validate a full entity; return it and Kong's error tree."""
        schema = ENTITIES[entity]
        errors: Errors = {}
        data = copy.deepcopy(data)
        if entity == "services":
            url_err = expand_service_url(data)
            if url_err:
                return data, url_err
        if entity == "plugins":
            return self._prepare_plugin(schema, data)
        row = fill_defaults(schema.fields, data)
        errors = validate_record(schema.fields, row, schema.checks)
        return row, errors

    def _prepare_plugin(self, schema: EntitySchema, data: dict[str, Any]) -> tuple[Row, Errors]:
        name = data.get("name")
        plugin = self._plugin_schema(name)
        fields = list(schema.fields)
        if plugin is None:
            row = fill_defaults(fields, data)
            if name is None:
                return row, {"name": "required field missing"}
            if not isinstance(name, str):
                return row, {"name": "expected a string"}
            msg = f"plugin '{name}' not enabled; add it to the 'plugins' configuration property"
            return row, {"name": msg}
        if isinstance(data.get("config"), dict):
            apply_shorthands(plugin, data["config"])
        fields = [
            (
                fname,
                plugin.config
                if fname == "config"
                else plugin.protocols
                if fname == "protocols"
                else Field("foreign", reference="consumers", eq_null=True)
                if fname == "consumer" and plugin.no_consumer
                else f,
            )
            for fname, f in fields
        ]
        if data.get("config") is None:
            data["config"] = {}
        row = fill_defaults(fields, data)
        errors = validate_record(fields, row, plugin.checks)
        return row, errors

    async def _check_foreign(self, entity: str, row: Row) -> None:
        for fname, ref in ENTITIES[entity].foreign_fields:
            value = row.get(fname)
            if value is None or ref not in ENTITIES:
                continue
            if await self.get(ref, value["id"]) is None:
                raise KongError(
                    4,
                    f"the foreign key '{lua_literal(value)}' does not reference an existing "
                    f"'{ref}' entity.",
                    {fname: value},
                )

    async def _check_unique(self, entity: str, row: Row) -> None:
        schema = ENTITIES[entity]
        for fname in schema.unique_fields:
            value = row.get(fname)
            if value is None:
                continue
            for other in await self.store.find(entity, fname, value):
                if other["id"] != row["id"] and expired(other):
                    # an expired row is gone for Kong (its ttl cleanup): free the unique value
                    await self.store.delete(entity, other["id"])
                elif other["id"] != row["id"]:
                    raise KongError(
                        5,
                        f"UNIQUE violation detected on '{{{fname}={lua_literal(value)}}}'",
                        {fname: value},
                    )
        if entity == "targets":
            key = {"target": row.get("target"), "upstream": row.get("upstream")}
            for other in await self.store.find(entity, "target", row.get("target")):
                if other["id"] != row["id"] and other.get("upstream") == row.get("upstream"):
                    raise KongError(5, f"UNIQUE violation detected on '{lua_literal(key)}'", key)
        elif schema.cache_key:
            key = {k: row.get(k) for k in schema.cache_key}
            for other in await self.store.find(entity, "name", row.get("name")):
                if other["id"] != row["id"] and all(
                    (other.get(k) or None) == (key[k] or None)
                    for k in ("route", "service", "consumer")
                ):
                    raise KongError(5, f"UNIQUE violation detected on '{lua_literal(key)}'", key)

    async def _write(self, entity: str, row: Row, *, new: bool) -> Row:
        if new and await self.store.get(entity, row["id"]) is not None:
            raise KongError(
                3,
                f"primary key violation on key '{{id={lua_literal(row['id'])}}}'",
                {"id": row["id"]},
            )
        await self._check_foreign(entity, row)
        await self._check_unique(entity, row)
        try:
            await self.store.save(entity, row)
        except UniqueViolation as exc:
            field = next((f for f in ENTITIES[entity].unique_fields if f in exc.column), None)
            if entity == "targets":
                key = {"target": row.get("target"), "upstream": row.get("upstream")}
                raise KongError(
                    5, f"UNIQUE violation detected on '{lua_literal(key)}'", key
                ) from exc
            if field:
                raise KongError(
                    5,
                    f"UNIQUE violation detected on '{{{field}={lua_literal(row.get(field))}}}'",
                    {field: row.get(field)},
                ) from exc
            raise
        return row

    def _auto(
        self, entity: str, data: dict[str, Any], now: float, *, keep: Row | None = None
    ) -> None:
        schema = ENTITIES[entity]
        # targets use auto_timestamp_ms (seconds with a millisecond fraction), the rest seconds
        now = round(now, 3) if entity == "targets" else int(now)
        if keep is not None:
            data["id"] = keep["id"]
            data["created_at"] = keep["created_at"]
        else:
            data.setdefault("id", new_uuid())
            if schema.field("created_at"):
                data.setdefault("created_at", now)
        if schema.field("updated_at"):
            data["updated_at"] = now
        if entity == "keyauth_credentials" and data.get("key") is None:
            data["key"] = random_key()

    @staticmethod
    def _ttl(row: Row, ttl: Any, now: float) -> None:
        if ttl is not None:
            row["_expires_at"] = now + float(ttl)

    async def insert(self, entity: str, data: dict[str, Any], *, ttl: Any = None) -> Row:
        now = time.time()
        data = await self.resolve_foreign(entity, data)
        self.normalize_input(entity, data)
        self._auto(entity, data, now)
        row, errors = self.prepare(entity, data)
        if errors:
            raise schema_violation(errors)
        self._ttl(row, ttl, now)
        async with self.store.transaction():
            return await self._write(entity, row, new=True)

    async def upsert(
        self,
        entity: str,
        key: str,
        data: dict[str, Any],
        *,
        ttl: Any = None,
        existing: Row | None = None,
    ) -> Row:
        """PUT: full replacement; the URL's name wins; id and created_at survive."""
        schema = ENTITIES[entity]
        now = time.time()
        data = await self.resolve_foreign(entity, data)
        current = existing if existing is not None else await self.select(entity, key)
        if is_uuid(key):
            data["id"] = key
        elif schema.endpoint_key:
            data[schema.endpoint_key] = key
        if current is not None:
            data.pop("id", None)
        self.normalize_input(entity, data)
        self._auto(entity, data, now, keep=current)
        row, errors = self.prepare(entity, data)
        if errors:
            raise schema_violation(errors)
        self._ttl(row, ttl, now)
        async with self.store.transaction():
            return await self._write(entity, row, new=current is None)

    async def update(
        self, entity: str, current: Row, data: dict[str, Any], *, ttl: Any = None
    ) -> Row:
        """PATCH: merge the changes into the stored entity, then validate the result."""
        now = time.time()
        base = {k: v for k, v in current.items() if not k.startswith(INTERNAL_PREFIX)}
        if entity == "services" and "url" in data:
            for k in ("protocol", "host", "port", "path"):
                base.pop(k, None)
        data = await self.resolve_foreign(entity, data)
        self.normalize_input(entity, data)
        merged = merge(base, data)
        for name, f in ENTITIES[entity].fields:
            if f.type == "map" and name in data:
                merged[name] = data[name]  # merge_values merges records, not maps
        merged["id"] = current["id"]
        if ENTITIES[entity].field("updated_at"):
            merged["updated_at"] = round(now, 3) if entity == "targets" else int(now)
        if entity == "plugins" and data.get("name") not in (None, current.get("name")):
            merged["config"] = data.get("config") or {}
        row, errors = self.prepare(entity, merged)
        if errors:
            raise schema_violation(errors)
        if ttl is not None:
            self._ttl(row, ttl, now)
        elif "_expires_at" in current:
            row["_expires_at"] = current["_expires_at"]
        async with self.store.transaction():
            return await self._write(entity, row, new=False)

    async def delete(self, entity: str, row: Row) -> None:
        """Delete with Kong's rules: a service with routes cannot go (code 4), plugins and
        credentials cascade."""
        async with self.store.transaction():
            if entity == "services" and await self.store.find("routes", "service.id", row["id"]):
                raise KongError(
                    4,
                    "an existing 'routes' entity references this 'services' entity",
                    {"@referenced_by": "routes"},
                )
            cascades = {
                "services": [("plugins", "service")],
                "routes": [("plugins", "route")],
                "consumers": [("plugins", "consumer"), ("keyauth_credentials", "consumer")],
                "upstreams": [("targets", "upstream")],
            }.get(entity, [])
            for child, fk in cascades:
                for other in await self.store.find(child, f"{fk}.id", row["id"]):
                    await self.store.delete(child, other["id"])
            await self.store.delete(entity, row["id"])

    async def snapshot_rows(self) -> dict[str, list[Row]]:
        return {name: await self.store.all(name) for name in ORDER}
