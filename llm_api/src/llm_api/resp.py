"""A lean Redis client for the quotas' hot path: one connection, pipelined commands, RESP2.

Every quota-checked request makes two Redis calls (reserve, then settle). redis-py's asyncio
client spends most of its time around the round trip rather than in it: its stream
reader/writer, a pool lock, one timeout context per read and its pure-Python parser cost
~350 µs of CPU per command on the benchmark's machine, against ~25 µs for a bare PING over an
asyncio protocol on uvloop (bench/RESULTS.md, 2026-12-02). This client is the bare protocol:

- one connection per process, opened on first use (again after a failure), with AUTH, SELECT and
  the scripts loaded (SCRIPT LOAD) before any command; commands from concurrent requests are
  pipelined on it and their replies matched in order;
- `send` queues a command and returns the future of its reply; the commands queued in one pass
  of the event loop (concurrent requests' reservations and settlements) go out at its end, in
  one write, and their replies usually come back in one read: one wake-up of Redis and of the
  process for all of them. A caller may await the future (a reservation) or leave it to a
  callback (a settlement);
- one watchdog timer per connection, armed only while replies are outstanding: a reply older
  than `timeout` fails the connection (and every pending command, with TimeoutError), so a stuck
  Redis costs at most `timeout` and no per-command timer runs.

Connection failures raise OSError (ConnectionError, TimeoutError); Redis's error replies raise
ReplyError. The `llm-api usage` command, off the hot path, keeps using redis-py.
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import ssl
from collections.abc import Callable
from typing import Any, cast
from urllib.parse import parse_qs, unquote, urlsplit

Reply = int | bytes | None | list[Any]


class ReplyError(Exception):
    """An error reply from Redis (`-ERR ...`, `-NOSCRIPT ...`)."""

    @property
    def noscript(self) -> bool:
        return str(self).startswith("NOSCRIPT")


def encode(args: tuple[Any, ...]) -> bytes:
    """A command as a RESP array of bulk strings."""
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg if isinstance(arg, bytes) else str(arg).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


class _Incomplete(Exception):
    pass


def _parse(buf: bytearray, pos: int) -> tuple[Reply | ReplyError, int]:
    """One reply from `buf` at `pos`: (reply, position after it); _Incomplete when it is not
    all there yet."""
    end = buf.find(b"\r\n", pos)
    if end < 0:
        raise _Incomplete
    kind, line = buf[pos], bytes(buf[pos + 1 : end])
    pos = end + 2
    if kind == 0x3A:  # ':' integer
        return int(line), pos
    if kind == 0x2B:  # '+' simple string
        return line, pos
    if kind == 0x2D:  # '-' error
        return ReplyError(line.decode(errors="replace")), pos
    if kind == 0x24:  # '$' bulk string
        size = int(line)
        if size < 0:
            return None, pos
        if len(buf) < pos + size + 2:
            raise _Incomplete
        return bytes(buf[pos : pos + size]), pos + size + 2
    if kind == 0x2A:  # '*' array
        count = int(line)
        if count < 0:
            return None, pos
        items: list[Any] = []
        for _ in range(count):
            item, pos = _parse(buf, pos)
            items.append(item)
        return items, pos
    raise ValueError(f"unexpected RESP reply type {chr(kind)!r}")


class _Protocol(asyncio.Protocol):
    def __init__(self, client: LeanRedis) -> None:
        self.client = client
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        # (future of the reply, loop time it was sent)
        self.pending: collections.deque[tuple[asyncio.Future[Any], float]] = collections.deque()
        self.watchdog: asyncio.TimerHandle | None = None
        self.closed = False
        self.out: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass of it

    def data_received(self, data: bytes) -> None:
        self.buf += data
        pos = 0
        try:
            while pos < len(self.buf) and self.pending:
                reply, pos = _parse(self.buf, pos)
                fut, _ = self.pending.popleft()
                if not fut.done():
                    if isinstance(reply, ReplyError):
                        fut.set_exception(reply)
                    else:
                        fut.set_result(reply)
        except _Incomplete:
            pass
        except ValueError as exc:
            self.fail(ConnectionError(f"broken reply from Redis: {exc}"))
            return
        del self.buf[:pos]

    def connection_lost(self, exc: Exception | None) -> None:
        self.fail(ConnectionError("the connection to Redis was lost"))

    def fail(self, exc: OSError) -> None:
        """Close the connection; every pending command fails with `exc`."""
        if not self.closed:
            self.closed = True
            self.client._lost(self)
            if self.transport is not None:
                self.transport.abort()
        if self.watchdog is not None:
            self.watchdog.cancel()
            self.watchdog = None
        failed = [f for f, _ in self.pending]
        self.pending.clear()
        self.out = []
        for fut in failed:
            if not fut.done():
                fut.set_exception(exc)

    def send(self, data: bytes, count: int, at_once: bool = False) -> list[asyncio.Future[Any]]:
        """Queue `data` (`count` commands) for the end of this loop pass; their futures.
        `at_once`: written now, with what the pass queued before it."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        futures = [loop.create_future() for _ in range(count)]
        self.pending.extend((f, now) for f in futures)
        if not self.out and not at_once:
            loop.call_soon(self._write_out)
        self.out.append(data)
        if at_once:
            self._write_out()
        if self.watchdog is None:
            self.watchdog = loop.call_at(now + self.client.timeout, self._check)
        return futures

    def _write_out(self) -> None:
        data, self.out = b"".join(self.out), []
        if data and self.transport is not None and not self.closed:
            self.transport.write(data)

    def _check(self) -> None:
        self.watchdog = None
        if not self.pending:
            return
        oldest = self.pending[0][1]
        loop = asyncio.get_running_loop()
        now = loop.time()
        if now - oldest >= self.client.timeout:
            self.fail(TimeoutError("Redis did not answer in time"))
        else:  # timers may fire a clock tick early: never re-armed for "now"
            when = max(oldest + self.client.timeout, now + 0.001)
            self.watchdog = loop.call_at(when, self._check)


def tls_context(ca_file: str | None) -> ssl.SSLContext:
    """The client context of a rediss:// connection: the server's certificate verified, with its
    host name, against `ca_file` only (PEM, e.g. a private CA) or, without one, the system's
    trust store. OSError (ssl.SSLError) when the file is missing or holds no certificate."""
    return ssl.create_default_context(cafile=ca_file)


class LeanRedis:
    """One pipelined connection to the Redis of `url` (redis://, rediss://, unix://).

    `scripts`: Lua scripts loaded on every new connection; `script_sha(script)` names them for
    EVALSHA. `ca_file`: for rediss://, the CA certificates (PEM) the server's certificate is
    verified against instead of the system's trust store. `on_lost`: called when an open
    connection is lost (or failed).
    """

    def __init__(
        self,
        url: str,
        timeout: float,
        scripts: tuple[str, ...] = (),
        ca_file: str | None = None,
        on_lost: Callable[[], None] | None = None,
    ) -> None:
        self.timeout = timeout
        self.on_lost = on_lost
        self.ca_file = ca_file
        self.scripts = scripts
        self._url = url
        self._conn: _Protocol | None = None
        self._connecting: asyncio.Future[_Protocol] | None = None

    @staticmethod
    def script_sha(script: str) -> str:
        return hashlib.sha1(script.encode(), usedforsecurity=False).hexdigest()

    @property
    def connected(self) -> bool:
        return self._conn is not None

    def send(self, *args: Any, at_once: bool = False) -> asyncio.Future[Any]:
        """Queue one command (written at the end of this loop pass, or `at_once`); the future of
        its reply. Only while `connected`."""
        assert self._conn is not None
        return self._conn.send(encode(args), 1, at_once)[0]

    async def call(self, *args: Any) -> Any:
        """Run one command (connecting first when needed); its reply."""
        conn = self._conn or await self._connect()
        return await conn.send(encode(args), 1)[0]

    async def connect(self) -> None:
        if self._conn is None:
            await self._connect()

    async def _connect(self) -> _Protocol:
        # Concurrent callers share one attempt.
        if self._connecting is None:
            self._connecting = asyncio.ensure_future(self._open())
        connecting = self._connecting
        try:
            return await asyncio.shield(connecting)
        finally:
            if connecting.done() and self._connecting is connecting:
                self._connecting = None

    async def _open(self) -> _Protocol:
        loop = asyncio.get_running_loop()
        parts = urlsplit(self._url)
        query = parse_qs(parts.query)
        password = unquote(parts.password) if parts.password else None
        if password is None and query.get("password"):
            password = query["password"][0]
        username = unquote(parts.username) if parts.username else None
        db = (query.get("db") or [""])[0]

        def factory() -> _Protocol:
            return _Protocol(self)

        conn: _Protocol | None = None
        try:
            async with asyncio.timeout(self.timeout):
                if parts.scheme == "unix":
                    _, conn = await loop.create_unix_connection(factory, parts.path)
                else:
                    db = db or parts.path.strip("/")
                    context = tls_context(self.ca_file) if parts.scheme == "rediss" else None
                    _, conn = await loop.create_connection(
                        factory, parts.hostname or "", parts.port or 6379, ssl=context
                    )
                await self._set_up(conn, username, password, db)
        except BaseException:
            if conn is not None:
                conn.fail(ConnectionError("the connection to Redis could not be set up"))
            raise
        if conn.closed:
            raise ConnectionError("the connection to Redis was lost")
        self._conn = conn
        return conn

    async def _set_up(
        self, conn: _Protocol, username: str | None, password: str | None, db: str
    ) -> None:
        """AUTH, SELECT and SCRIPT LOAD in one round trip; ConnectionError when one fails."""
        setup: list[tuple[Any, ...]] = []
        if password is not None:
            setup.append(("AUTH", username, password) if username else ("AUTH", password))
        if db and db != "0":
            setup.append(("SELECT", db))
        setup += [("SCRIPT", "LOAD", script) for script in self.scripts]
        if not setup:
            return
        data = b"".join(encode(cmd) for cmd in setup)
        replies = await asyncio.gather(*conn.send(data, len(setup)), return_exceptions=True)
        for reply in replies:
            if isinstance(reply, OSError):
                raise reply
            if isinstance(reply, BaseException):  # its text is Redis's; it holds no secret
                raise ConnectionError(f"Redis refused the connection's set-up: {reply}")

    def _lost(self, conn: _Protocol) -> None:
        if self._conn is conn:
            self._conn = None
            if self.on_lost is not None:
                self.on_lost()

    async def aclose(self) -> None:
        if self._connecting is not None and not self._connecting.done():
            self._connecting.cancel()
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.fail(ConnectionError("the client was closed"))
