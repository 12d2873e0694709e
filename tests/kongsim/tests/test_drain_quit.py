"""Draining and graceful shutdown (reference ``kong-3.9-upstreams-redis.md`` §E): ``kong drain``
turns ``/status/ready`` to 503 while the proxy keeps serving; ``kong quit`` and SIGQUIT (the
package's systemd ``ExecStop``) stop accepting connections but let requests in flight finish,
streams included; ``kong quit --timeout`` ends with a forced stop, as ``kong stop`` does at
once."""

from __future__ import annotations

import signal
import socket
import threading
import time
from collections.abc import Iterator
from http.client import HTTPConnection
from typing import Any

import pytest
from conftest import Admin
from kongsim.testing import KongNode, PostgresServer, echo_upstream, http


@pytest.fixture(scope="module")
def upstream() -> Iterator[int]:
    with echo_upstream() as port:
        yield port


def seed(node: KongNode, mode: str, upstream: int) -> None:
    Admin(node, mode).seed(
        {
            "services": [
                {
                    "name": "echo",
                    "url": f"http://127.0.0.1:{upstream}",
                    "routes": [{"name": "echo", "paths": ["/echo"]}],
                }
            ]
        }
    )


@pytest.fixture(params=["postgres", "off"])
def node(request: pytest.FixtureRequest, upstream: int) -> Iterator[KongNode]:
    """A node of its own (these tests end it), serving ``/echo`` from the echo upstream."""
    conf: dict[str, Any] = {"database": "off"}
    if request.param == "postgres":
        pg: PostgresServer = request.getfixturevalue("pg")
        conf = pg.kong_conf(pg.create_database())
    with KongNode(conf) as started:
        seed(started, request.param, upstream)
        yield started


class Stream(threading.Thread):
    """A request read in the background, line by line; ``started`` is set once the response
    head and the first body line have arrived."""

    def __init__(self, port: int, path: str):
        super().__init__(daemon=True)
        self.port = port
        self.path = path
        self.sent = threading.Event()
        self.started = threading.Event()
        self.status = 0
        self.lines: list[bytes] = []
        self.error: BaseException | None = None

    def run(self) -> None:
        conn = HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            conn.request("GET", self.path)
            self.sent.set()
            resp = conn.getresponse()
            self.status = resp.status
            while True:
                line = resp.readline()
                if not self.started.is_set():
                    self.started.set()
                if not line:
                    break
                self.lines.append(line)
        except BaseException as exc:  # the forced stop cuts the stream
            self.error = exc
        finally:
            self.sent.set()
            self.started.set()
            conn.close()


def refused(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            return False
    except OSError:
        return True


def wait_refused(port: int) -> bool:
    deadline = time.monotonic() + 20
    while not refused(port):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def test_drain_turns_readiness_to_503_and_keeps_proxying(node):
    assert http("GET", node.status_url + "/status/ready").json() == {"message": "ready"}
    result = node.kong("drain")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "Kong's status successfully changed to 'draining'\n"
    ready = http("GET", node.status_url + "/status/ready")
    assert ready.status == 503
    assert ready.json() == {"message": "draining"}
    # Only the readiness probe changes: the proxy serves as before.
    assert http("GET", node.proxy_url + "/echo").status == 200
    # A second drain is accepted too; nothing clears the flag short of a restart.
    assert node.kong("drain").stdout == "Kong's status successfully changed to 'draining'\n"
    assert http("GET", node.status_url + "/status/ready").status == 503


def test_drain_endpoint_accepts_only_draining(node):
    bad = http("POST", node.status_url + "/status/ready", json={"status": "ready"})
    assert (bad.status, bad.body) == (400, b"")
    assert http("GET", node.status_url + "/status/ready").status == 200
    ok = http("POST", node.status_url + "/status/ready", data={"status": "draining"})
    assert (ok.status, ok.body) == (204, b"")
    assert http("GET", node.status_url + "/status/ready").json() == {"message": "draining"}


def test_drain_without_status_listener():
    with KongNode({"database": "off", "status_listen": "off"}) as node:
        result = node.kong("drain")
    assert result.returncode == 0
    assert result.stdout == "No status listeners found in configuration.\n"


def test_kong_quit_lets_streams_and_requests_in_flight_finish(node):
    stream = Stream(node.proxy_port, "/echo?_sse=6&_gap=0.5")
    slow = Stream(node.proxy_port, "/echo?_delay=2")
    slow.start()
    assert slow.sent.wait(20)
    stream.start()
    assert stream.started.wait(20)
    results: dict[str, Any] = {}
    runner = threading.Thread(
        target=lambda: results.update(
            quit=node.kong("quit", "-p", node.prefix, "-t", "60", with_conf=False)
        )
    )
    runner.start()
    # New connections are refused at once (listeners closed, status listener included) ...
    assert wait_refused(node.proxy_port)
    assert refused(node.status_port)
    # ... while what was in flight goes on to its end.
    stream.join(30)
    slow.join(30)
    runner.join(60)
    assert stream.error is None
    assert slow.error is None
    assert stream.status == 200
    assert sum(1 for line in stream.lines if line.startswith(b"data:")) == 6
    assert slow.status == 200
    assert b'"path": "/?_delay=2"' in b"".join(slow.lines)
    assert results["quit"].stdout == "Kong stopped (gracefully)\n"
    assert node.process is not None
    assert node.process.wait(20) == 0


def test_sigquit_is_graceful(node):
    """The package's systemd unit stops Kong with ``kill -s QUIT $MAINPID``."""
    slow = Stream(node.proxy_port, "/echo?_delay=2")
    slow.start()
    assert slow.sent.wait(20)
    assert node.process is not None
    time.sleep(0.5)  # let the node accept the connection before the signal
    node.process.send_signal(signal.SIGQUIT)
    slow.join(30)
    assert slow.error is None
    assert slow.status == 200
    assert node.process.wait(30) == 0


def test_kong_quit_timeout_stops_forcefully(node):
    stream = Stream(node.proxy_port, "/echo?_sse=100&_gap=0.5")
    stream.start()
    assert stream.started.wait(20)
    result = node.kong("quit", "-p", node.prefix, "-t", "1", with_conf=False)
    assert result.stdout == "Timeout, Kong stopped forcefully\n"
    stream.join(30)
    # Cut off: fewer events than the upstream would have sent; the SIGTERM after the timeout
    # is a fast shutdown the node completes itself (no SIGKILL needed: exit status 0).
    assert sum(1 for line in stream.lines if line.startswith(b"data:")) < 100
    assert node.process is not None
    assert node.process.wait(20) == 0


def test_kong_stop_is_a_fast_shutdown(node):
    """``kong stop`` (SIGTERM) does not wait for requests in flight."""
    stream = Stream(node.proxy_port, "/echo?_sse=100&_gap=0.5")
    stream.start()
    assert stream.started.wait(20)
    result = node.kong("stop", "-p", node.prefix, with_conf=False)
    assert result.stdout == "Kong stopped\n"
    stream.join(30)
    assert sum(1 for line in stream.lines if line.startswith(b"data:")) < 100
    assert node.process is not None
    assert node.process.wait(20) == 0
