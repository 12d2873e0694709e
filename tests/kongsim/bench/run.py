"""Benchmark of the simulator's proxy path against calling the upstream directly.

Starts a fast upstream (``kongsim.proxy.echo``) and a DB-less simulator node whose declarative
config has one service, one route, one consumer with a key, and global key-auth and
rate-limiting (a limit nobody reaches), then loads both with wrk (or, without wrk, a small
aiohttp client) at c=1 and c=10 and prints req/s, p50 and p99 for each, the ratio and the
latency the proxy adds. Targets (issue 3): >= 1,500 req/s through the proxy, <= 1 ms added p50
at c=1. Nothing here is asserted in the test suite: CPU time on shared machines varies.

    python tests/kongsim/bench/run.py [--duration 10] [--client wrk|aiohttp]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "src"))

from kongsim.testing import KongNode, free_port  # noqa: E402

TARGET_RPS = 1500
TARGET_ADDED_P50_MS = 1.0
KEY = "bench-key"
DECLARATIVE = """\
_format_version: "3.0"
services:
- name: bench
  url: http://127.0.0.1:{port}
  routes:
  - name: bench
    paths: ["/bench"]
consumers:
- username: bench
  keyauth_credentials:
  - key: {key}
plugins:
- name: key-auth
- name: rate-limiting
  config:
    second: 1000000000
    limit_by: consumer
"""


@dataclass
class Result:
    rps: float
    p50_ms: float
    p99_ms: float
    cpu_us: float = 0.0  # CPU time of the server process per request


def cpu_seconds(pid: int) -> float:
    """utime + stime of one process (Linux ``/proc``)."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def _wrk(url: str, connections: int, duration: int) -> Result:
    out = subprocess.run(
        [
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{duration}s",
            "--latency",
            "-H",
            f"apikey: {KEY}",
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout

    def latency(pct: str) -> float:
        found = re.search(rf"^\s*{pct}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        if not found:
            raise RuntimeError("unexpected wrk output:\n" + out)
        return float(found.group(1)) * _UNITS[found.group(2)]

    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if not rps or "Non-2xx" in out:
        raise RuntimeError("wrk saw errors or no rate:\n" + out)
    return Result(float(rps.group(1)), latency("50"), latency("99"))


async def _aiohttp_load(url: str, connections: int, duration: int) -> Result:
    import aiohttp

    latencies: list[float] = []
    deadline = time.monotonic() + duration
    connector = aiohttp.TCPConnector(limit=connections)
    async with aiohttp.ClientSession(connector=connector, headers={"apikey": KEY}) as session:

        async def worker() -> None:
            while time.monotonic() < deadline:
                start = time.perf_counter()
                async with session.get(url) as resp:
                    await resp.read()
                    if resp.status != 200:
                        raise RuntimeError(f"{url} answered {resp.status}")
                latencies.append((time.perf_counter() - start) * 1000)

        started = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(connections)))
        elapsed = time.monotonic() - started
    cuts = statistics.quantiles(latencies, n=100)
    return Result(len(latencies) / elapsed, cuts[49], cuts[98])


def measure(client: str, url: str, connections: int, duration: int, server_pid: int) -> Result:
    before = cpu_seconds(server_pid)
    if client == "wrk":
        result = _wrk(url, connections, duration)
    else:
        result = asyncio.run(_aiohttp_load(url, connections, duration))
    spent = cpu_seconds(server_pid) - before
    result.cpu_us = spent / (result.rps * duration) * 1e6
    return result


def _wait(url: str) -> None:
    deadline = time.monotonic() + 20
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2):  # noqa: S310 - loopback only
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds per measurement")
    parser.add_argument(
        "--client",
        choices=("wrk", "aiohttp"),
        default="wrk" if shutil.which("wrk") else "aiohttp",
    )
    args = parser.parse_args()

    port = free_port()
    upstream = subprocess.Popen(
        [sys.executable, "-m", "kongsim.proxy.echo", str(port)],
        env={**os.environ, "PYTHONPATH": os.path.join(os.path.dirname(HERE), "src")},
    )
    workdir = tempfile.mkdtemp(prefix="kongsim-bench-")
    config = os.path.join(workdir, "kong.yml")
    with open(config, "w", encoding="utf-8") as fh:
        fh.write(DECLARATIVE.format(port=port, key=KEY))
    try:
        direct_url = f"http://127.0.0.1:{port}/bench?_fast=1"
        _wait(direct_url)
        with KongNode({"database": "off", "declarative_config": config}) as node:
            proxy_url = f"{node.proxy_url}/bench?_fast=1"
            request = urllib.request.Request(proxy_url, headers={"apikey": KEY})  # noqa: S310
            with urllib.request.urlopen(request) as resp:  # noqa: S310 - loopback only
                assert resp.headers["X-RateLimit-Limit-Second"], "rate-limiting did not run"
                assert resp.headers["Via"] == "1.1 kong/3.9.3", "not proxied by the simulator"
            print(f"client: {args.client}, {args.duration}s per run, one simulator process")
            print(f"load average before: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
            print(f"{'case':<22}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'server CPU us/req':>20}")
            summary = []
            for connections in (1, 10):
                # warm-up, then the measured runs
                assert node.process is not None
                measure(args.client, proxy_url, connections, 1, node.process.pid)
                direct = measure(args.client, direct_url, connections, args.duration, upstream.pid)
                proxied = measure(
                    args.client, proxy_url, connections, args.duration, node.process.pid
                )
                for name, result in (("direct", direct), ("through simulator", proxied)):
                    label = f"c={connections} {name}"
                    print(
                        f"{label:<22}{result.rps:>10.0f}{result.p50_ms:>10.2f}"
                        f"{result.p99_ms:>10.2f}{result.cpu_us:>20.0f}"
                    )
                summary.append((connections, direct, proxied))
            print()
            for connections, direct, proxied in summary:
                print(
                    f"c={connections}: throughput ratio simulator/direct "
                    f"{proxied.rps / direct.rps:.2f}, added p50 "
                    f"{proxied.p50_ms - direct.p50_ms:.2f} ms, simulator CPU per request "
                    f"{proxied.cpu_us / direct.cpu_us:.1f}x the upstream's"
                )
            best_rps = max(p.rps for _, _, p in summary)
            added = summary[0][2].p50_ms - summary[0][1].p50_ms
            print(f"load average after: {os.getloadavg()[0]:.1f}")
            print(
                f"targets: >= {TARGET_RPS} req/s through the simulator: {best_rps:.0f} "
                f"({'met' if best_rps >= TARGET_RPS else 'NOT met'}); "
                f"<= {TARGET_ADDED_P50_MS} ms added p50 at c=1: {added:.2f} ms "
                f"({'met' if added <= TARGET_ADDED_P50_MS else 'NOT met'})"
            )
    finally:
        upstream.terminate()
        upstream.wait(timeout=10)
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
