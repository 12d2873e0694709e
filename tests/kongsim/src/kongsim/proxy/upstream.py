"""A small HTTP/1.1 client for the proxy's upstream calls, with a keep-alive pool.

Kong's nginx keeps upstream connections alive and streams bodies as they arrive; a general
purpose client costs several times the CPU of the rest of the proxy path, so the proxy speaks
HTTP/1.1 itself: one write per request head (plus body), a parser for Content-Length, chunked
and close-delimited bodies, nginx's ``proxy_connect_timeout`` and ``proxy_read_timeout`` (the
time between two reads) from the service's timeouts.
"""

from __future__ import annotations

import asyncio
import collections
import socket
import ssl
from collections.abc import AsyncIterator
from typing import Any

from kongsim.tls import UpstreamTLS

_MAX_HEAD = 64 * 1024
_MAX_CHUNK_LINE = 4096
_HIGH_WATER = 1024 * 1024
_NO_BODY_STATUSES = frozenset((204, 304))


class UpstreamError(Exception):
    """The upstream could not be used: ``kind`` is ``connect``, ``dns``, ``timeout``,
    ``closed`` (the connection ended before a whole answer) or ``invalid`` (a malformed
    answer); ``sent`` says whether the request may have reached it."""

    def __init__(self, kind: str, sent: bool, detail: str = ""):
        super().__init__(f"{kind}: {detail}" if detail else kind)
        self.kind = kind
        self.sent = sent


class _Connection(asyncio.Protocol):
    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.buffer = bytearray()
        self.chunks: collections.deque[bytes] = collections.deque()
        self.buffered = 0
        self.eof = False
        self.waiter: asyncio.Future[None] | None = None
        self.paused = False

    # -- asyncio.Protocol --------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        self.chunks.append(data)
        self.buffered += len(data)
        if self.buffered > _HIGH_WATER and not self.paused and self.transport is not None:
            self.paused = True
            self.transport.pause_reading()
        self._wake()

    def eof_received(self) -> bool:
        self.eof = True
        self._wake()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.eof = True
        self._wake()

    def _wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # -- reading -----------------------------------------------------------------------

    async def wait_data(self, seconds: float) -> bool:
        """Wait for more bytes; False at end of stream. Raises TimeoutError."""
        if self.chunks:
            return True
        if self.eof:
            return False
        waiter = self.loop.create_future()
        self.waiter = waiter
        handle = self.loop.call_later(seconds, _expire, waiter)
        try:
            await waiter
        finally:
            handle.cancel()
            self.waiter = None
        return bool(self.chunks) or not self.eof

    def take(self) -> bytes:
        data = b"".join(self.chunks) if len(self.chunks) > 1 else self.chunks[0]
        self.chunks.clear()
        self.buffered = 0
        if self.paused and self.transport is not None:
            self.paused = False
            self.transport.resume_reading()
        return data

    def push_back(self, data: bytes) -> None:
        if data:
            self.chunks.appendleft(data)
            self.buffered += len(data)

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError())


# (ip, port, tls) for plain http; https adds the SNI and the client certificate id, as
# Kong's keepalive pool key (kong/init.lua balancer phase) does.
PoolKey = tuple[Any, ...]


class UpstreamResponse:
    """Status, headers (in order, as received) and the body as an async iterator."""

    def __init__(
        self,
        pool: UpstreamPool,
        key: PoolKey,
        conn: _Connection,
        status: int,
        reason: str,
        headers: list[tuple[str, str]],
        length: int | None,
        chunked: bool,
        no_body: bool,
        keep_alive: bool,
        read_timeout: float,
    ):
        self._pool = pool
        self._key = key
        self._conn: _Connection | None = conn
        self.status = status
        self.reason = reason
        self.headers = headers
        self.length = length
        self.chunked = chunked
        self._no_body = no_body
        self._keep_alive = keep_alive
        self._timeout = read_timeout
        self.complete = no_body or length == 0

    def header(self, name: str) -> str | None:
        lower = name.lower()
        for key, value in self.headers:
            if key.lower() == lower:
                return value
        return None

    async def iter_chunks(self) -> AsyncIterator[bytes]:
        """Yield body bytes as they arrive; raises UpstreamError if the body breaks off."""
        conn = self._conn
        if conn is None or self.complete:
            self.release()
            return
        if self.chunked:
            async for piece in self._iter_chunked(conn):
                yield piece
        elif self.length is not None:
            remaining = self.length
            while remaining > 0:
                data = await self._read(conn)
                if len(data) > remaining:
                    conn.push_back(data[remaining:])
                    data = data[:remaining]
                    self._keep_alive = False
                remaining -= len(data)
                yield data
        else:
            self._keep_alive = False
            while True:
                try:
                    data = await self._read(conn)
                except UpstreamError:
                    break  # close-delimited: the end of the connection ends the body
                yield data
        self.complete = True
        self.release()

    async def read(self) -> bytes:
        parts = [piece async for piece in self.iter_chunks()]
        return b"".join(parts)

    async def _read(self, conn: _Connection) -> bytes:
        try:
            more = await conn.wait_data(self._timeout)
        except TimeoutError:
            raise UpstreamError("timeout", True, "while reading the body") from None
        if not more:
            raise UpstreamError("invalid", True, "body ended early")
        return conn.take()

    async def _iter_chunked(self, conn: _Connection) -> AsyncIterator[bytes]:
        """Decode ``Transfer-Encoding: chunked``, passing on each piece of data as soon as it
        is read (a chunk may arrive in several reads, several chunks in one)."""
        buffer = b""
        ready: list[bytes] = []
        while True:
            while b"\r\n" not in buffer:
                if len(buffer) > _MAX_CHUNK_LINE:
                    raise UpstreamError("invalid", True, "bad chunk size line")
                if ready:
                    yield b"".join(ready)
                    ready.clear()
                buffer += await self._read(conn)
            line, _, buffer = buffer.partition(b"\r\n")
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise UpstreamError("invalid", True, "bad chunk size") from None
            if size == 0:
                if ready:
                    yield b"".join(ready)
                # trailers end with an empty line
                while True:
                    while b"\r\n" not in buffer:
                        buffer += await self._read(conn)
                    trailer, _, buffer = buffer.partition(b"\r\n")
                    if not trailer:
                        break
                if buffer:
                    self._keep_alive = False
                return
            while size:
                if not buffer:
                    if ready:
                        yield b"".join(ready)
                        ready.clear()
                    buffer = await self._read(conn)
                piece = buffer[:size]
                buffer = buffer[len(piece) :]
                size -= len(piece)
                ready.append(piece)
            while len(buffer) < 2:
                if ready:
                    yield b"".join(ready)
                    ready.clear()
                buffer += await self._read(conn)
            if buffer[:2] != b"\r\n":
                raise UpstreamError("invalid", True, "chunk not terminated")
            buffer = buffer[2:]

    def release(self) -> None:
        conn = self._conn
        if conn is None:
            return
        self._conn = None
        if self.complete and self._keep_alive and not conn.closed and not conn.chunks:
            self._pool.put(self._key, conn)
        else:
            conn.close()


class UpstreamPool:
    """Keep-alive connections per (host, port, tls)."""

    def __init__(self, max_idle: int = 512):
        self._idle: dict[PoolKey, list[_Connection]] = {}
        self._max_idle = max_idle
        self._unverified: ssl.SSLContext | None = None

    def _tls_context(self) -> ssl.SSLContext:
        """nginx's default for https upstreams: no verification."""
        if self._unverified is None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            self._unverified = context
        return self._unverified

    def put(self, key: PoolKey, conn: _Connection) -> None:
        idle = self._idle.setdefault(key, [])
        if len(idle) >= self._max_idle:
            conn.close()
        else:
            idle.append(conn)

    def close(self) -> None:
        for idle in self._idle.values():
            for conn in idle:
                conn.close()
        self._idle.clear()

    async def _connect(
        self,
        host: str,
        port: int,
        tls: bool,
        tls_settings: UpstreamTLS | None,
        sni: str | None,
        connect_timeout: float,
    ) -> _Connection:
        loop = asyncio.get_running_loop()
        kwargs: dict[str, Any] = {}
        if tls:
            kwargs["ssl"] = tls_settings.context if tls_settings else self._tls_context()
            # the SNI and the name verified: the upstream Host (Python sends no SNI for an IP)
            kwargs["server_hostname"] = sni or host
        try:
            transport, conn = await asyncio.wait_for(
                loop.create_connection(lambda: _Connection(loop), host, port, **kwargs),
                connect_timeout,
            )
        except socket.gaierror as exc:
            raise UpstreamError("dns", False, str(exc)) from None
        except TimeoutError:
            raise UpstreamError("timeout", False, "connect") from None
        except (OSError, ssl.SSLError) as exc:
            raise UpstreamError("connect", False, str(exc)) from None
        if tls_settings is not None and tls_settings.verify:
            sslobj = transport.get_extra_info("ssl_object")
            leaf = sslobj.getpeercert(binary_form=True) if sslobj is not None else None
            if not tls_settings.depth_ok(leaf):
                conn.close()
                raise UpstreamError("connect", False, "certificate chain too long")
        return conn

    async def request(
        self,
        host: str,
        port: int,
        tls: bool,
        tls_settings: UpstreamTLS | None,
        head: bytes,
        body: bytes | None,
        body_stream: AsyncIterator[bytes] | None,
        method: str,
        connect_timeout: float,
        read_timeout: float,
        sni: str | None = None,
        pool_tag: str | None = None,
    ) -> UpstreamResponse:
        """Send one request (``head`` ends with the blank line) and read the response head."""
        key: PoolKey = (host, port, True, sni, pool_tag) if tls else (host, port, False)
        idle = self._idle.get(key)
        while idle:
            conn = idle.pop()
            if conn.closed or conn.eof or conn.chunks:
                conn.close()
                continue
            try:
                return await self._exchange(
                    key, conn, head, body, body_stream, method, read_timeout
                )
            except UpstreamError as exc:
                # A kept-alive connection the upstream closed meanwhile: try a fresh one,
                # as nginx does, unless the upstream did answer something.
                if exc.kind != "stale":
                    raise
        conn = await self._connect(host, port, tls, tls_settings, sni, connect_timeout)
        try:
            return await self._exchange(key, conn, head, body, body_stream, method, read_timeout)
        except UpstreamError as exc:
            if exc.kind == "stale":
                raise UpstreamError("closed", True, "connection closed") from None
            raise

    async def _exchange(
        self,
        key: PoolKey,
        conn: _Connection,
        head: bytes,
        body: bytes | None,
        body_stream: AsyncIterator[bytes] | None,
        method: str,
        read_timeout: float,
    ) -> UpstreamResponse:
        try:
            return await self._send_and_read_head(
                key, conn, head, body, body_stream, method, read_timeout
            )
        except asyncio.CancelledError:
            conn.close()  # the client went away mid-exchange: the connection is unusable
            raise

    async def _send_and_read_head(
        self,
        key: PoolKey,
        conn: _Connection,
        head: bytes,
        body: bytes | None,
        body_stream: AsyncIterator[bytes] | None,
        method: str,
        read_timeout: float,
    ) -> UpstreamResponse:
        transport = conn.transport
        assert transport is not None
        try:
            if body_stream is not None:
                transport.write(head)
                async for piece in body_stream:
                    if piece:
                        transport.write(b"%x\r\n%b\r\n" % (len(piece), piece))
                transport.write(b"0\r\n\r\n")
            elif body:
                transport.write(head + body)
            else:
                transport.write(head)
        except (OSError, RuntimeError) as exc:
            conn.close()
            raise UpstreamError("stale", True, str(exc)) from None
        buffer = b""
        while True:
            try:
                more = await conn.wait_data(read_timeout)
            except TimeoutError:
                conn.close()
                raise UpstreamError("timeout", True, "while reading the response head") from None
            if not more:
                conn.close()
                raise UpstreamError("stale" if not buffer else "closed", True, "closed")
            buffer += conn.take()
            end = buffer.find(b"\r\n\r\n")
            if end == -1:
                if len(buffer) > _MAX_HEAD:
                    conn.close()
                    raise UpstreamError("invalid", True, "response head too large")
                continue
            head_bytes, rest = buffer[:end], buffer[end + 4 :]
            parsed = _parse_head(head_bytes)
            if parsed is None:
                conn.close()
                raise UpstreamError("invalid", True, "malformed response head")
            status, reason, headers, version = parsed
            if 100 <= status < 200 and status != 101:
                buffer = rest  # an interim answer: the real one follows
                continue
            conn.push_back(rest)
            break
        length: int | None = None
        chunked = False
        connection = ""
        for name, value in headers:
            lname = name.lower()
            if lname == "content-length":
                try:
                    length = int(value)
                except ValueError:
                    conn.close()
                    raise UpstreamError("invalid", True, "bad Content-Length") from None
            elif lname == "transfer-encoding":
                chunked = "chunked" in value.lower()
            elif lname == "connection":
                connection = value.lower()
        if chunked:
            length = None
        no_body = method == "HEAD" or status in _NO_BODY_STATUSES
        keep_alive = (
            "close" not in connection if version == "HTTP/1.1" else "keep-alive" in connection
        )
        if not chunked and length is None and not no_body:
            keep_alive = False
        return UpstreamResponse(
            self,
            key,
            conn,
            status,
            reason,
            headers,
            length,
            chunked,
            no_body,
            keep_alive,
            read_timeout,
        )


def _decode(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def _parse_head(raw: bytes) -> tuple[int, str, list[tuple[str, str]], str] | None:
    lines = raw.split(b"\r\n")
    status_line = lines[0].split(b" ", 2)
    if len(status_line) < 2 or not status_line[0].startswith(b"HTTP/1."):
        return None
    try:
        status = int(status_line[1])
    except ValueError:
        return None
    reason = _decode(status_line[2]) if len(status_line) > 2 else ""
    headers: list[tuple[str, str]] = []
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if not sep or not name or name != name.strip():
            return None
        headers.append((_decode(name), _decode(value.strip())))
    return status, reason, headers, status_line[0].decode("latin-1")
