"""A small asyncio Redis (RESP2) client with the connection habits of lua-resty-redis as Kong's
rate-limiting plugin uses it (``kong/plugins/rate-limiting/policies/init.lua``, 3.9.3).

- A connect/read timeout of ``redis.timeout`` milliseconds (``red:set_timeout``).
- Keep-alive pools named ``host:port``, or ``host:port;db`` when the database is not 0
  (``sock_opts.pool``); at most 100 idle connections are kept (``set_keepalive(10000, 100)``).
- ``AUTH [username] password`` and ``SELECT db`` only on a new connection
  (``get_reused_times() == 0``), and only when a password is set / the database is not 0.
- TLS when ``ssl`` is on, verified only with ``ssl_verify``, SNI ``server_name``.

Only what the plugin sends is implemented (``EVAL`` with integer replies, the pipeline of the
``sync_rate`` mode is not). Standard library only, so the simulator's Debian package needs no
Redis client package.
"""

from __future__ import annotations

import asyncio
import ssl as sslmod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

_IDLE_MAX = 100


class RedisError(Exception):
    """A connection, timeout or server error; the message is what Kong would log."""


@dataclass(frozen=True)
class RedisConf:
    host: str
    port: int
    timeout: float  # seconds
    username: str | None
    password: str | None
    database: int
    ssl: bool
    ssl_verify: bool
    server_name: str | None

    @classmethod
    def build(cls, redis: Mapping[str, Any]) -> RedisConf:
        def present(value: Any) -> str | None:
            return value if isinstance(value, str) and value != "" else None

        return cls(
            host=str(redis.get("host")),
            port=int(redis.get("port") or 6379),
            timeout=int(redis.get("timeout") if redis.get("timeout") is not None else 2000) / 1000,
            username=present(redis.get("username")),
            password=present(redis.get("password")),
            database=int(redis.get("database") or 0),
            ssl=bool(redis.get("ssl")),
            ssl_verify=bool(redis.get("ssl_verify")),
            server_name=present(redis.get("server_name")),
        )

    @property
    def pool_name(self) -> str:
        base = f"{self.host}:{self.port}"
        return f"{base};{self.database}" if self.database != 0 else base


def _encode(args: Sequence[Any]) -> bytes:
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg if isinstance(arg, bytes) else str(arg).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


class _Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader = reader
        self.writer = writer

    async def call(self, args: Sequence[Any], seconds: float) -> Any:
        self.writer.write(_encode(args))
        await asyncio.wait_for(self.writer.drain(), seconds or None)
        return await asyncio.wait_for(self._reply(), seconds or None)

    async def _reply(self) -> Any:
        line = await self.reader.readline()
        if not line.endswith(b"\r\n"):
            raise RedisError("closed")
        kind, rest = line[:1], line[1:-2]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            raise RedisError(rest.decode(errors="replace"))
        if kind == b":":
            return int(rest)
        if kind == b"$":
            size = int(rest)
            if size < 0:
                return None
            data = await self.reader.readexactly(size + 2)
            return data[:-2]
        if kind == b"*":
            count = int(rest)
            if count < 0:
                return None
            return [await self._reply() for _ in range(count)]
        raise RedisError("bad reply")

    def close(self) -> None:
        self.writer.close()


class RedisPools:
    """One node's keep-alive pools, shared by every plugin instance that uses Redis."""

    def __init__(self) -> None:
        self._idle: dict[tuple[str, RedisConf], list[_Connection]] = {}

    async def _connect(self, conf: RedisConf) -> _Connection:
        context: sslmod.SSLContext | None = None
        if conf.ssl:
            context = sslmod.create_default_context()
            if not conf.ssl_verify:
                context.check_hostname = False
                context.verify_mode = sslmod.CERT_NONE
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(
                    conf.host,
                    conf.port,
                    ssl=context,
                    server_hostname=(conf.server_name or conf.host) if context else None,
                ),
                conf.timeout or None,
            )
        except TimeoutError:
            raise RedisError("timeout") from None
        except OSError as exc:
            raise RedisError(exc.strerror or str(exc)) from None
        conn = _Connection(reader, writer)
        try:
            if conf.password is not None:
                auth = ["AUTH", conf.password]
                if conf.username is not None:
                    auth.insert(1, conf.username)
                await conn.call(auth, conf.timeout)
            if conf.database != 0:
                await conn.call(["SELECT", conf.database], conf.timeout)
        except BaseException:
            conn.close()
            raise
        return conn

    async def call(self, conf: RedisConf, *args: Any) -> Any:
        """Run one command on a pooled connection; raises :class:`RedisError`."""
        # The pool key holds the whole configuration, not only Kong's pool name, so that a
        # changed password never reuses a connection authenticated with the old one.
        key = (conf.pool_name, conf)
        idle = self._idle.setdefault(key, [])
        conn = idle.pop() if idle else await self._connect(conf)
        try:
            result = await conn.call(args, conf.timeout)
        except TimeoutError:
            conn.close()
            raise RedisError("timeout") from None
        except RedisError:
            conn.close()
            raise
        except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
            conn.close()
            raise RedisError(str(exc) or "closed") from None
        except BaseException:
            conn.close()
            raise
        if len(idle) < _IDLE_MAX:
            idle.append(conn)
        else:
            conn.close()
        return result

    def close(self) -> None:
        for idle in self._idle.values():
            for conn in idle:
                conn.close()
        self._idle.clear()
