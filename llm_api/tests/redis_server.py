"""A real redis-server for the quota tests: started on a free loopback port, no persistence,
stopped and restarted on the same port (a Redis outage in the middle of a run)."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import redis
from conftest import free_port


def redis_binary() -> str:
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is missing (scripts/setup-host.sh installs it)")
    return binary


def start_redis(args: list[str], client: redis.Redis) -> subprocess.Popen[bytes]:
    """Run redis-server with `args` until `client` gets an answer (20 s at most: then the
    process is killed and RuntimeError raised)."""
    proc = subprocess.Popen([redis_binary(), *args], stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while True:
        try:
            client.ping()
            return proc
        except redis.ConnectionError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                raise RuntimeError("redis-server did not start") from None
            time.sleep(0.05)


class RedisServer:
    def __init__(self, workdir: Path) -> None:
        self.binary = redis_binary()
        self.workdir = workdir
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, decode_responses=True)

    def start(self) -> None:
        args = ["--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
        args += ["--appendonly", "no", "--dir", str(self.workdir), "--loglevel", "warning"]
        self.proc = start_redis(args, self.client())

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None
