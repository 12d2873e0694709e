"""Where entities live: in memory (DB-less) or in PostgreSQL (one table per entity, created by
``kong migrations bootstrap``), behind one small async interface used by the DAO layer.

Rows are the entities as the Admin API renders them (Kong's JSON shape), plus internal keys that
start with ``_`` (``_expires_at`` for credentials with a ``ttl``). PostgreSQL enforces the unique
fields with real constraints, so two nodes sharing a database cannot both create ``bob``.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import json
from collections.abc import AsyncIterator
from typing import Any

from kongsim.entities import ENTITIES, ORDER

Row = dict[str, Any]

# Kong's migration names at 3.9.3 (kong/db/migrations/core/init.lua and the plugins'
# migrations/init.lua), recorded in schema_meta so `kong migrations list` reads like Kong's.
MIGRATIONS = {
    "core": [
        "000_base",
        "003_100_to_110",
        "004_110_to_120",
        "005_120_to_130",
        "006_130_to_140",
        "007_140_to_150",
        "008_150_to_200",
        "009_200_to_210",
        "010_210_to_211",
        "011_212_to_213",
        "012_213_to_220",
        "013_220_to_230",
        "014_230_to_270",
        "015_270_to_280",
        "016_280_to_300",
        "017_300_to_310",
        "018_310_to_320",
        "019_320_to_330",
        "020_330_to_340",
        "021_340_to_350",
        "022_350_to_360",
        "023_360_to_370",
        "024_380_to_390",
    ],
    "key-auth": ["000_base_key_auth", "002_130_to_140", "003_200_to_210", "004_320_to_330"],
    "rate-limiting": [
        "000_base_rate_limiting",
        "003_10_to_112",
        "004_200_to_210",
        "005_320_to_330",
        "006_350_to_360",
    ],
}

# Unique columns per table: plain unique fields, plus the plugins' cache key.
UNIQUE_COLUMNS = {
    "services": ["name"],
    "routes": ["name"],
    "consumers": ["username", "custom_id"],
    "plugins": ["instance_name", "cache_key"],
    "keyauth_credentials": ["key"],
    "upstreams": ["name"],
    "targets": ["cache_key"],
}

SCHEMA_SQL = [
    "CREATE TABLE IF NOT EXISTS schema_meta (key text, subsystem text, last_executed text, "
    "executed text[], pending text[], PRIMARY KEY (key, subsystem))",
    "CREATE TABLE IF NOT EXISTS kongsim_changes (id integer PRIMARY KEY, version bigint NOT NULL)",
    "INSERT INTO kongsim_changes (id, version) VALUES (1, 0) ON CONFLICT DO NOTHING",
    # Kong's cluster_events table, reduced to what the simulator broadcasts
    # (balancer:post_health); other nodes poll it every db_update_frequency seconds.
    "CREATE TABLE IF NOT EXISTS kongsim_cluster_events (id bigserial PRIMARY KEY, "
    "node_id text NOT NULL, at double precision NOT NULL, channel text NOT NULL, "
    "data jsonb NOT NULL)",
]
for _table, _cols in UNIQUE_COLUMNS.items():
    _extra = "".join(f", {col} text UNIQUE" for col in _cols)
    SCHEMA_SQL.append(
        f"CREATE TABLE IF NOT EXISTS {_table} (id uuid PRIMARY KEY{_extra}, "
        "expires_at double precision, entity jsonb NOT NULL)"
    )


class UniqueViolation(Exception):
    def __init__(self, column: str):
        super().__init__(column)
        self.column = column


def cache_key(row: Row, entity: str = "plugins") -> str:
    """The plugins' uniqueness rule (plugins.lua: cache_key = name, route, service, consumer);
    a target is unique per upstream (targets.lua: cache_key = upstream, target)."""
    if entity == "targets":
        return f"targets:{(row.get('upstream') or {}).get('id')}:{row.get('target')}"
    parts = [row.get("name") or ""]
    for fk in ("route", "service", "consumer"):
        parts.append((row.get(fk) or {}).get("id") or "")
    return "plugins:" + ":".join(parts)


class Store:
    """The interface; every method is a coroutine so both backends look alike."""

    async def all(self, entity: str) -> list[Row]:
        raise NotImplementedError

    async def get(self, entity: str, id_: str) -> Row | None:
        raise NotImplementedError

    async def find(self, entity: str, path: str, value: Any) -> list[Row]:
        raise NotImplementedError

    async def save(self, entity: str, row: Row) -> None:
        raise NotImplementedError

    async def delete(self, entity: str, id_: str) -> None:
        raise NotImplementedError

    async def replace_all(self, data: dict[str, list[Row]]) -> None:
        raise NotImplementedError

    async def version(self) -> int:
        raise NotImplementedError

    async def broadcast(self, channel: str, data: Any, node_id: str) -> None:
        """A cluster event for the other nodes on the same database (none in DB-less)."""
        return None

    async def events_since(self, last_id: int, node_id: str) -> list[tuple[int, str, Any]]:
        """Other nodes' cluster events after ``last_id``: (id, channel, data)."""
        return []

    async def last_event_id(self) -> int:
        return 0

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[None]:
        yield

    async def close(self) -> None:
        return None


def _path_value(row: Row, path: str) -> Any:
    value: Any = row
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


class MemoryStore(Store):
    """DB-less storage: the declarative configuration held in memory."""

    def __init__(self) -> None:
        self.tables: dict[str, dict[str, Row]] = {name: {} for name in ENTITIES}
        self._version = 0
        self._lock = asyncio.Lock()

    async def all(self, entity: str) -> list[Row]:
        return [self.tables[entity][k] for k in sorted(self.tables[entity])]

    async def get(self, entity: str, id_: str) -> Row | None:
        return self.tables[entity].get(id_.lower())

    async def find(self, entity: str, path: str, value: Any) -> list[Row]:
        return [r for r in await self.all(entity) if _path_value(r, path) == value]

    async def save(self, entity: str, row: Row) -> None:
        self.tables[entity][row["id"]] = row
        self._version += 1

    async def delete(self, entity: str, id_: str) -> None:
        self.tables[entity].pop(id_, None)
        self._version += 1

    async def replace_all(self, data: dict[str, list[Row]]) -> None:
        self.tables = {name: {r["id"]: r for r in data.get(name, [])} for name in ENTITIES}
        self._version += 1

    async def version(self) -> int:
        return self._version

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[None]:
        async with self._lock:
            yield


def pg_conninfo(conf: dict[str, Any], *, database: str | None = None) -> dict[str, Any]:
    """psycopg connection parameters from kong.conf's ``pg_*`` keys."""
    params: dict[str, Any] = {
        "host": conf.get("pg_host") or "127.0.0.1",
        "port": int(conf.get("pg_port") or 5432),
        "user": conf.get("pg_user") or "kong",
        "dbname": database or conf.get("pg_database") or "kong",
        "connect_timeout": max(1, int((conf.get("pg_timeout") or 5000) / 1000)),
    }
    if conf.get("pg_password"):
        params["password"] = conf["pg_password"]
    if conf.get("pg_ssl"):
        params["sslmode"] = "require"
    return params


def db_desc(conf: dict[str, Any]) -> str:
    return f"database '{conf.get('pg_database') or 'kong'}'"


class PostgresStore(Store):
    """Entities in PostgreSQL; one connection, serialised by a lock (Admin traffic is light).

    A lost connection (PostgreSQL restarted) is re-opened on the next statement, as Kong's
    connection pool does; a statement that fails inside a transaction is not retried."""

    def __init__(self, conn: Any, params: dict[str, Any] | None = None):
        self.conn = conn
        self.params = params
        self._lock = asyncio.Lock()
        # Set only in the task that holds the transaction, so concurrent requests wait.
        self._in_tx: contextvars.ContextVar[bool] = contextvars.ContextVar("in_tx", default=False)

    @classmethod
    async def connect(cls, conf: dict[str, Any]) -> PostgresStore:
        import psycopg

        params = pg_conninfo(conf)
        conn = await psycopg.AsyncConnection.connect(autocommit=True, **params)
        return cls(conn, params)

    async def _execute(self, sql: str, args: tuple[Any, ...], fetch: bool) -> list[Any]:
        import psycopg

        if self._in_tx.get():
            cur = await self.conn.execute(sql, args)
            return list(await cur.fetchall()) if fetch else []
        async with self._lock:
            try:
                cur = await self.conn.execute(sql, args)
            except psycopg.OperationalError:
                if self.params is None:
                    raise
                with contextlib.suppress(Exception):
                    await self.conn.close()
                self.conn = await psycopg.AsyncConnection.connect(autocommit=True, **self.params)
                cur = await self.conn.execute(sql, args)
            return list(await cur.fetchall()) if fetch else []

    async def _rows(self, sql: str, args: tuple[Any, ...] = ()) -> list[Any]:
        return await self._execute(sql, args, True)

    @staticmethod
    def _decode(value: Any) -> Row:
        return value if isinstance(value, dict) else json.loads(value)

    async def all(self, entity: str) -> list[Row]:
        rows = await self._rows(f"SELECT entity FROM {entity} ORDER BY id")  # noqa: S608
        return [self._decode(r[0]) for r in rows]

    async def get(self, entity: str, id_: str) -> Row | None:
        rows = await self._rows(f"SELECT entity FROM {entity} WHERE id = %s", (id_,))  # noqa: S608
        return self._decode(rows[0][0]) if rows else None

    async def find(self, entity: str, path: str, value: Any) -> list[Row]:
        parts = path.split(".")
        expr = "entity" + "".join(f"->'{p}'" for p in parts[:-1]) + f"->>'{parts[-1]}'"
        rows = await self._rows(
            f"SELECT entity FROM {entity} WHERE {expr} = %s ORDER BY id",  # noqa: S608
            (str(value),),
        )
        return [self._decode(r[0]) for r in rows]

    async def save(self, entity: str, row: Row) -> None:
        import psycopg

        cols = UNIQUE_COLUMNS[entity]
        values: list[Any] = [row["id"]]
        for col in cols:
            values.append(cache_key(row, entity) if col == "cache_key" else row.get(col))
        values += [row.get("_expires_at"), json.dumps(row)]
        names = ", ".join(["id", *cols, "expires_at", "entity"])
        marks = ", ".join(["%s"] * len(values))
        updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in [*cols, "expires_at", "entity"])
        sql = (
            f"INSERT INTO {entity} ({names}) VALUES ({marks}) "  # noqa: S608
            f"ON CONFLICT (id) DO UPDATE SET {updates}"
        )
        try:
            await self._rows_noresult(sql, tuple(values))
        except psycopg.errors.UniqueViolation as exc:
            column = getattr(exc.diag, "constraint_name", "") or ""
            raise UniqueViolation(column) from exc

    async def _rows_noresult(self, sql: str, args: tuple[Any, ...]) -> None:
        await self._execute(sql, args, False)

    async def delete(self, entity: str, id_: str) -> None:
        await self._rows_noresult(f"DELETE FROM {entity} WHERE id = %s", (id_,))  # noqa: S608

    async def replace_all(self, data: dict[str, list[Row]]) -> None:
        for entity in reversed(ORDER):
            await self._rows_noresult(f"DELETE FROM {entity}", ())  # noqa: S608
        for entity in ORDER:
            for row in data.get(entity, []):
                await self.save(entity, row)

    async def version(self) -> int:
        rows = await self._rows("SELECT version FROM kongsim_changes WHERE id = 1")
        return int(rows[0][0]) if rows else 0

    async def broadcast(self, channel: str, data: Any, node_id: str) -> None:
        await self._rows_noresult(
            "INSERT INTO kongsim_cluster_events (node_id, at, channel, data) "
            "VALUES (%s, extract(epoch from now()), %s, %s)",
            (node_id, channel, json.dumps(data)),
        )

    async def events_since(self, last_id: int, node_id: str) -> list[tuple[int, str, Any]]:
        rows = await self._rows(
            "SELECT id, channel, data, node_id FROM kongsim_cluster_events WHERE id > %s "
            "ORDER BY id",
            (last_id,),
        )
        return [(int(r[0]), r[1], r[2] if r[3] != node_id else None) for r in rows]

    async def last_event_id(self) -> int:
        rows = await self._rows("SELECT coalesce(max(id), 0) FROM kongsim_cluster_events")
        return int(rows[0][0]) if rows else 0

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[None]:
        await self._execute("SELECT 1", (), False)  # re-opens a lost connection first
        async with self._lock:
            token = self._in_tx.set(True)
            try:
                async with self.conn.transaction():
                    yield
                    await self.conn.execute(
                        "UPDATE kongsim_changes SET version = version + 1 WHERE id = 1"
                    )
            finally:
                self._in_tx.reset(token)

    async def close(self) -> None:
        await self.conn.close()


# --- migrations (sync: used by the CLI) ----------------------------------------------------


def schema_state(conn: Any) -> dict[str, list[str]] | None:
    """Executed migrations per subsystem, or ``None`` when the database needs bootstrapping."""
    cur = conn.execute("SELECT to_regclass('public.schema_meta')")
    if cur.fetchone()[0] is None:
        return None
    rows = conn.execute(
        "SELECT subsystem, executed FROM schema_meta WHERE key = 'schema_meta'"
    ).fetchall()
    if not rows:
        return None
    return {subsystem: list(executed or []) for subsystem, executed in rows}


def new_migrations(state: dict[str, list[str]] | None) -> dict[str, list[str]]:
    state = state or {}
    return {
        subsystem: [m for m in names if m not in state.get(subsystem, [])]
        for subsystem, names in MIGRATIONS.items()
        if any(m not in state.get(subsystem, []) for m in names)
    }


def run_migrations(conn: Any, pending: dict[str, list[str]], log: Any, desc: str) -> None:
    """Create the tables (idempotent) and record each migration as Kong does."""
    with conn.transaction():
        for sql in SCHEMA_SQL:
            conn.execute(sql)
        for subsystem, names in pending.items():
            log(f"migrating {subsystem} on {desc}...")
            for name in names:
                log(f"{subsystem} migrated up to: {name} (executed)")
            conn.execute(
                "INSERT INTO schema_meta (key, subsystem, last_executed, executed, pending) "
                "VALUES ('schema_meta', %s, %s, %s, '{}') ON CONFLICT (key, subsystem) DO UPDATE "
                "SET last_executed = EXCLUDED.last_executed, "
                "executed = schema_meta.executed || EXCLUDED.executed",
                (subsystem, names[-1], names),
            )
    total = sum(len(v) for v in pending.values())
    log(f"{total} migration{'s' if total != 1 else ''} processed")
    log(f"{total} executed")


def format_migrations(migrations: dict[str, list[str]]) -> str:
    """``schema_state`` ``__tostring``: subsystem names right-aligned, then the names."""
    width = max((len(s) for s in migrations), default=0)
    return "\n".join(f"{s:>{width}}: {', '.join(n)}" for s, n in migrations.items())
