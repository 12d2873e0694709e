"""The quotas' lean Redis client (resp.py): its reply parser, and the client against a real
redis-server (password, database, scripts, pipelining, one write per loop pass) and a silent one."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import redis
from conftest import free_port
from llm_api.resp import LeanRedis, ReplyError, _Incomplete, _parse, encode
from redis_server import start_redis

PASSWORD = "redis-test-pass-0042"


def test_encode_is_a_resp_array_of_bulk_strings() -> None:
    assert (
        encode(("SET", "k", 12, b"\x00v"))
        == b"*4\r\n$3\r\nSET\r\n$1\r\nk\r\n$2\r\n12\r\n$2\r\n\x00v\r\n"
    )


def test_parse_every_reply_type_and_waits_for_what_is_missing() -> None:
    wire = (
        b":42\r\n+OK\r\n-NOSCRIPT No matching script\r\n$5\r\nhe\r\nl\r\n$-1\r\n"
        b"*3\r\n:1\r\n*2\r\n:-2\r\n$1\r\nx\r\n$0\r\n\r\n*-1\r\n"
    )
    buf, pos, replies = bytearray(wire), 0, []
    while pos < len(buf):
        reply, pos = _parse(buf, pos)
        replies.append(reply)
    assert replies[:2] == [42, b"OK"]
    assert isinstance(replies[2], ReplyError)
    assert replies[2].noscript
    assert replies[3:] == [b"he\r\nl", None, [1, [-2, b"x"], b""], None]
    # Any prefix that cuts a reply is incomplete: the parser waits rather than guessing.
    first_array = wire.index(b"*3")
    for cut in range(first_array + 1, len(wire) - len(b"*-1\r\n")):
        with pytest.raises(_Incomplete):
            _parse(bytearray(wire[:cut]), first_array)


@pytest.fixture(scope="module")
def redis_with_password(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    port = free_port()
    args = ["--port", str(port), "--bind", "127.0.0.1", "--save", ""]
    args += ["--appendonly", "no", "--requirepass", PASSWORD, "--loglevel", "warning"]
    args += ["--dir", str(tmp_path_factory.mktemp("redis-auth"))]
    client = redis.Redis(port=port, password=PASSWORD)
    proc = start_redis(args, client)
    yield port
    proc.terminate()
    proc.wait(10)


SCRIPT = "return redis.call('INCRBY', KEYS[1], ARGV[1])"


@pytest.fixture
async def lean(redis_with_password: int) -> AsyncIterator[LeanRedis]:
    redis.Redis(port=redis_with_password, password=PASSWORD).flushall()
    url = f"redis://:{PASSWORD}@127.0.0.1:{redis_with_password}/3"
    client = LeanRedis(url, 5, (SCRIPT,))
    yield client
    await client.aclose()


async def test_password_database_and_preloaded_script(
    lean: LeanRedis, redis_with_password: int
) -> None:
    assert await lean.call("EVALSHA", LeanRedis.script_sha(SCRIPT), 1, "n", 5) == 5
    assert await lean.call("SET", "k", "v") == b"OK"
    db3 = redis.Redis(port=redis_with_password, password=PASSWORD, db=3)
    assert db3.get("k") == b"v"
    assert db3.get("n") == b"5"
    with pytest.raises(ReplyError):
        await lean.call("INCR", "k")  # not an integer: Redis's error, the connection stays
    assert lean.connected


async def test_a_wrong_password_fails_the_connection_without_showing_it(
    redis_with_password: int,
) -> None:
    client = LeanRedis(f"redis://:wrong-secret@127.0.0.1:{redis_with_password}/0", 5)
    with pytest.raises(ConnectionError) as err:
        await client.call("PING")
    assert "wrong-secret" not in str(err.value)
    assert not client.connected


async def test_concurrent_commands_are_pipelined_and_answered_in_order(lean: LeanRedis) -> None:
    replies = await asyncio.gather(*(lean.call("INCR", "counter") for _ in range(200)))
    assert replies == list(range(1, 201))


async def test_the_commands_of_one_loop_pass_go_out_in_one_write(lean: LeanRedis) -> None:
    await lean.connect()
    conn = lean._conn
    assert conn is not None
    assert conn.transport is not None
    transport = conn.transport
    writes: list[bytes] = []

    class Counting:
        def write(self, data: bytes) -> None:
            writes.append(data)
            transport.write(data)

        def __getattr__(self, name: str) -> Any:
            return getattr(transport, name)

    conn.transport = Counting()  # type: ignore[assignment]
    # Settlements nobody awaits, then a reservation that is awaited: queued in one pass.
    unawaited = [lean.send("RPUSH", "order", i) for i in range(3)]
    assert not any(f.done() for f in unawaited)
    assert await lean.call("RPUSH", "order", "last") == 4
    assert [f.result() for f in unawaited] == [1, 2, 3]
    assert len(writes) == 1
    assert writes[0].count(b"RPUSH") == 4
    # Alone in its pass, a command still goes out by itself, its reply handled by nobody.
    alone = lean.send("RPUSH", "order", "alone")
    assert await asyncio.wait_for(alone, 10) == 5
    assert len(writes) == 2


async def test_a_silent_server_times_out_every_pending_command() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await reader.read(1 << 16):  # reads, never answers, until the client leaves
            pass
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = LeanRedis(f"redis://127.0.0.1:{port}/0", 0.2)
    try:
        await client.connect()  # no set-up commands: connected at once
        results: list[Any] = await asyncio.wait_for(
            asyncio.gather(client.call("PING"), client.call("PING"), return_exceptions=True), 10
        )
        assert all(isinstance(r, TimeoutError) for r in results), results
        assert not client.connected  # the next command opens a new connection
    finally:
        await client.aclose()
        server.close()
