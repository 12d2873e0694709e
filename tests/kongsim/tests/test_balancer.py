"""Proxying through an upstream (kong-3.9-upstreams-redis.md sections B.2 and C): weighted
round-robin over real loopback backends started by the tests, weight 0, the Host sent to a
target, retries on connect errors and timeouts but not on 5xx, the ring-balancer 503, passive
and active health checks, ``/upstreams/{u}/health`` and manual health, in both storage modes;
manual health's cluster propagation on two PostgreSQL nodes."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from kongsim.testing import KongNode, free_port, http


class Backend:
    """A loopback HTTP server that answers ``<name>`` with a settable status (and one for
    ``health_path``), optionally after a delay, and records every request it gets."""

    def __init__(self, name: str):
        self.name = name
        self.status = 200
        self.health_status = 200
        self.health_path = "/hc"
        self.delay = 0.0
        self.requests: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        backend = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                with backend._lock:
                    backend.requests.append(
                        {
                            "path": self.path,
                            "host": self.headers.get("Host"),
                            "version": self.request_version,
                        }
                    )
                probe = self.path == backend.health_path
                if backend.delay and not probe:
                    time.sleep(backend.delay)
                status = backend.health_status if probe else backend.status
                body = backend.name.encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except OSError:
                    pass  # the proxy gave up on a slow answer

            def log_message(self, *args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.target = f"127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def hits(self, path: str | None = None) -> int:
        with self._lock:
            return sum(1 for r in self.requests if path is None or r["path"] == path)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def backends() -> Iterator[Callable[[str], Backend]]:
    started: list[Backend] = []

    def make(name: str) -> Backend:
        backend = Backend(name)
        started.append(backend)
        return backend

    yield make
    for backend in started:
        backend.close()


def dead_target() -> str:
    """A loopback port nothing listens on (connections are refused)."""
    return f"127.0.0.1:{free_port()}"


def seed(admin: Any, uid: str, upstream: dict[str, Any], **service: Any) -> str:
    """One upstream (with ``targets``), a Service on it and a route ``/<uid>``; returns the
    proxy URL of that route."""
    admin.seed(
        {
            "upstreams": [{"name": f"up-{uid}", **upstream}],
            "services": [
                {
                    "name": f"svc-{uid}",
                    "host": f"up-{uid}",
                    **service,
                    "routes": [{"name": f"r-{uid}", "paths": [f"/{uid}"]}],
                }
            ],
        }
    )
    return f"{admin.node.proxy_url}/{uid}"


def bodies(url: str, count: int) -> list[str]:
    out = []
    for _ in range(count):
        resp = http("GET", url)
        assert resp.status == 200, resp.text
        out.append(resp.text)
    return out


def health(admin: Any, uid: str) -> dict[str, str]:
    data = admin.get(f"/upstreams/up-{uid}/health").json()["data"]
    return {item["target"]: item.get("health") for item in data}


def wait_for(predicate: Callable[[], bool], seconds: float = 20) -> bool:
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


PASSIVE_TCP = {"passive": {"unhealthy": {"tcp_failures": 1}}}


def test_equal_weights_alternate(admin, uid, backends):
    a, b = backends("a"), backends("b")
    url = seed(admin, uid, {"targets": [{"target": a.target}, {"target": b.target}]})
    seen = bodies(url, 10)
    assert sorted(set(seen)) == ["a", "b"]
    assert all(x != y for x, y in itertools.pairwise(seen))


def test_weights_and_weight_zero(admin, uid, backends):
    a, b, c = backends("a"), backends("b"), backends("c")
    targets = [
        {"target": a.target, "weight": 300},
        {"target": b.target, "weight": 100},
        {"target": c.target, "weight": 0},
    ]
    url = seed(admin, uid, {"targets": targets})
    seen = bodies(url, 16)  # four turns of the 3:1 wheel
    assert (seen.count("a"), seen.count("b"), seen.count("c")) == (12, 4, 0)
    assert c.hits() == 0


def test_host_header_is_the_target_or_host_header(admin, uid, backends):
    a = backends("a")
    url = seed(admin, uid, {"targets": [{"target": a.target}]})
    bodies(url, 1)
    assert a.requests[-1]["host"] == f"127.0.0.1:{a.port}"
    url = seed(admin, uid + "h", {"host_header": "lb.test", "targets": [{"target": a.target}]})
    bodies(url, 1)
    assert a.requests[-1]["host"] == f"lb.test:{a.port}"


def test_name_target_resolves_to_a_records_and_sends_its_name(admin, uid, backends):
    a = backends("a")
    url = seed(admin, uid, {"targets": [{"target": f"localhost:{a.port}"}]})
    assert bodies(url, 2) == ["a", "a"]
    assert a.requests[-1]["host"] == f"localhost:{a.port}"
    item = admin.get(f"/upstreams/up-{uid}/health").json()["data"][0]
    assert item["data"]["host"] == "localhost"
    assert item["data"]["dns"] == "A"
    assert [x["ip"] for x in item["data"]["addresses"]] == ["127.0.0.1"]


def test_connect_errors_are_retried_on_the_next_target(admin, uid, backends):
    a = backends("a")
    url = seed(admin, uid, {"targets": [{"target": dead_target()}, {"target": a.target}]})
    assert bodies(url, 6) == ["a"] * 6


def test_without_retries_a_dead_target_fails_the_request(admin, uid, backends):
    a = backends("a")
    targets = [{"target": dead_target()}, {"target": a.target}]
    url = seed(admin, uid, {"targets": targets}, retries=0)
    statuses = [http("GET", url).status for _ in range(4)]
    assert sorted(statuses) == [200, 200, 502, 502]


def test_5xx_is_not_retried(admin, uid, backends):
    a, b = backends("a"), backends("b")
    a.status = 500
    url = seed(admin, uid, {"targets": [{"target": a.target}, {"target": b.target}]})
    statuses = sorted(http("GET", url).status for _ in range(4))
    assert statuses == [200, 200, 500, 500]
    assert (a.hits(), b.hits()) == (2, 2)


def test_timeouts_are_retried(admin, uid, backends):
    slow, fast = backends("slow"), backends("fast")
    slow.delay = 3
    targets = [{"target": slow.target}, {"target": fast.target}]
    url = seed(admin, uid, {"targets": targets}, read_timeout=300)
    assert bodies(url, 2) == ["fast", "fast"]
    assert slow.hits() >= 1


def test_no_peer_is_503_from_the_ring_balancer(admin, uid, backends):
    url = seed(admin, uid, {"targets": []})
    resp = http("GET", url, headers={"Accept": "application/json"})
    assert resp.status == 503
    assert resp.json()["message"] == "failure to get a peer from the ring-balancer"
    assert "Via" not in resp.headers
    url = seed(admin, uid + "z", {"targets": [{"target": backends("a").target, "weight": 0}]})
    assert http("GET", url).status == 503


def test_health_endpoint_without_checks(admin, uid, backends):
    a = backends("a")
    targets = [{"target": a.target}, {"target": dead_target(), "weight": 0}]
    seed(admin, uid, {"targets": targets})
    body = admin.get(f"/upstreams/up-{uid}/health").json()
    assert body["node_id"] == admin.get("/").json()["node_id"]
    assert body["next"] is None
    item = next(i for i in body["data"] if i["target"] == a.target)
    assert item["health"] == "HEALTHCHECKS_OFF"
    assert item["data"] == {
        "host": "127.0.0.1",
        "port": a.port,
        "dns": "A",
        "nodeWeight": 100,
        "weight": {"total": 100, "available": 100, "unavailable": 0},
        "addresses": [
            {"ip": "127.0.0.1", "port": a.port, "weight": 100, "health": "HEALTHCHECKS_OFF"}
        ],
    }
    assert sorted(health(admin, uid).values()) == ["HEALTHCHECKS_OFF", "HEALTHCHECKS_OFF"]
    balancer = admin.get(f"/upstreams/up-{uid}/health?balancer_health=1").json()["data"]
    assert (balancer["health"], balancer["balancer_health"]) == ("HEALTHCHECKS_OFF", "HEALTHY")
    assert balancer["id"] == admin.get(f"/upstreams/up-{uid}").json()["id"]
    details = balancer["details"]
    assert details["healthy"] is True
    assert details["weight"] == {"total": 100, "available": 100, "unavailable": 0}
    host = next(h for h in details["hosts"] if h["port"] == a.port)
    assert host["addresses"] == [
        {"ip": "127.0.0.1", "port": a.port, "weight": 100, "healthy": True}
    ]
    # manual health needs a health checker
    put = admin.put(f"/upstreams/up-{uid}/targets/{a.target}/unhealthy")
    assert put.status == 400
    assert put.json() == {"message": f"no healthchecker found for up-{uid}"}
    assert admin.get(f"/upstreams/nope-{uid}/health").status == 404


def test_passive_tcp_failures_mark_a_target_down_until_manual_recovery(admin, uid, backends):
    a = backends("a")
    dead = dead_target()
    url = seed(
        admin,
        uid,
        {"healthchecks": PASSIVE_TCP, "targets": [{"target": dead}, {"target": a.target}]},
    )
    assert health(admin, uid) == {dead: "HEALTHY", a.target: "HEALTHY"}
    assert bodies(url, 4) == ["a"] * 4
    assert health(admin, uid) == {dead: "UNHEALTHY", a.target: "HEALTHY"}
    item = next(
        i for i in admin.get(f"/upstreams/up-{uid}/health").json()["data"] if i["target"] == dead
    )
    assert item["data"]["weight"] == {"total": 100, "available": 0, "unavailable": 100}
    assert item["data"]["addresses"][0]["health"] == "UNHEALTHY"
    # passive checks never bring it back; a manual PUT does
    resp = admin.put(f"/upstreams/up-{uid}/targets/{dead}/healthy")
    assert (resp.status, resp.body) == (204, b"")
    assert health(admin, uid)[dead] == "HEALTHY"
    assert admin.post(f"/upstreams/up-{uid}/targets/{dead}/healthy").status == 405


def test_passive_http_failures_and_threshold(admin, uid, backends):
    a, b = backends("a"), backends("b")
    a.status = 500
    checks = {"passive": {"unhealthy": {"http_failures": 2}}}
    url = seed(
        admin,
        uid,
        {"healthchecks": checks, "targets": [{"target": a.target}, {"target": b.target}]},
    )
    statuses = [http("GET", url).status for _ in range(4)]
    assert statuses.count(500) == 2
    assert health(admin, uid) == {a.target: "UNHEALTHY", b.target: "HEALTHY"}
    assert bodies(url, 4) == ["b"] * 4
    assert a.hits() == 2
    # every address down: the balancer has no peer
    assert admin.put(f"/upstreams/up-{uid}/targets/{b.target}/unhealthy").status == 204
    assert http("GET", url).status == 503
    balancer = admin.get(f"/upstreams/up-{uid}/health?balancer_health=1").json()["data"]
    assert (balancer["health"], balancer["balancer_health"]) == ("UNHEALTHY", "UNHEALTHY")


def test_passive_failures_of_a_healthy_target_add_up_across_successes(admin, uid, backends):
    """healthcheck.lua incr_counter: successes are not counted while a target is healthy, so
    they do not clear its failures."""
    a = backends("a")
    checks = {"passive": {"healthy": {"successes": 1}, "unhealthy": {"http_failures": 2}}}
    url = seed(admin, uid, {"healthchecks": checks, "targets": [{"target": a.target}]})
    for status in (500, 200, 200):
        a.status = status
        assert http("GET", url).status == status
    assert health(admin, uid) == {a.target: "HEALTHY"}
    a.status = 500
    assert http("GET", url).status == 500
    assert health(admin, uid) == {a.target: "UNHEALTHY"}
    assert http("GET", url).status == 503


def test_threshold_makes_the_balancer_unhealthy(admin, uid, backends):
    a, b = backends("a"), backends("b")
    checks = {"threshold": 60, **PASSIVE_TCP}
    url = seed(
        admin,
        uid,
        {"healthchecks": checks, "targets": [{"target": a.target}, {"target": b.target}]},
    )
    assert admin.put(f"/upstreams/up-{uid}/targets/{a.target}/unhealthy").status == 204
    # 50 % of the weight is healthy, not above the 60 % threshold
    assert http("GET", url).status == 503
    assert b.hits() == 0


def test_active_checks_probe_http_path_and_follow_the_target(admin, uid, backends):
    a, b = backends("a"), backends("b")
    checks = {
        "active": {
            "http_path": "/hc",
            "healthy": {"interval": 0.2, "successes": 1},
            "unhealthy": {"interval": 0.2, "http_failures": 1},
        }
    }
    url = seed(
        admin,
        uid,
        {"healthchecks": checks, "targets": [{"target": a.target}, {"target": b.target}]},
    )
    assert wait_for(lambda: a.hits("/hc") >= 1)
    probe = next(r for r in a.requests if r["path"] == "/hc")
    assert probe["host"] == "127.0.0.1"  # no port on probes
    assert probe["version"] == "HTTP/1.0"
    a.health_status = 500
    assert wait_for(lambda: health(admin, uid)[a.target] == "UNHEALTHY")
    before = a.hits("/")
    assert bodies(url, 4) == ["b"] * 4
    assert a.hits("/") == before
    a.health_status = 200
    assert wait_for(lambda: health(admin, uid)[a.target] == "HEALTHY")
    assert sorted(set(bodies(url, 4))) == ["a", "b"]


def test_active_checks_see_a_stopped_target(admin, uid, backends):
    a, b = backends("a"), backends("b")
    checks = {
        "active": {
            "http_path": "/hc",
            "healthy": {"interval": 0.2, "successes": 1},
            "unhealthy": {"interval": 0.2, "tcp_failures": 1},
        }
    }
    seed(
        admin,
        uid,
        {"healthchecks": checks, "targets": [{"target": a.target}, {"target": b.target}]},
    )
    a.close()
    assert wait_for(lambda: health(admin, uid)[a.target] == "UNHEALTHY")
    assert health(admin, uid)[b.target] == "HEALTHY"


def test_manual_health_by_address_and_errors(admin, uid, backends):
    a = backends("a")
    seed(admin, uid, {"healthchecks": PASSIVE_TCP, "targets": [{"target": a.target}]})
    base = f"/upstreams/up-{uid}/targets"
    assert admin.put(f"{base}/{a.target}/127.0.0.1:{a.port}/unhealthy").status == 204
    assert health(admin, uid)[a.target] == "UNHEALTHY"
    target_id = admin.get(f"{base}/{a.target}").json()["id"]
    assert admin.put(f"{base}/{target_id}/healthy").status == 204
    assert health(admin, uid)[a.target] == "HEALTHY"
    assert admin.put(f"{base}/10.9.9.9:1/unhealthy").json() == {"message": "Not found"}
    assert admin.put(f"/upstreams/nope-{uid}/targets/{a.target}/unhealthy").status == 404


@pytest.fixture(scope="module")
def cluster(pg) -> Iterator[tuple[KongNode, KongNode]]:
    conf = {**pg.kong_conf(pg.create_database()), "db_update_frequency": 0.2}
    with KongNode(conf) as a, KongNode(conf, bootstrap=False) as b:
        yield a, b


def test_manual_health_propagates_to_other_nodes_but_passive_health_does_not(
    cluster, uid, backends
):
    node_a, node_b = cluster
    good = backends("good")
    dead = dead_target()
    upstream = {
        "name": f"up-{uid}",
        "healthchecks": PASSIVE_TCP,
    }
    assert http("POST", node_a.admin_url + "/upstreams", json=upstream).status == 201
    for target in (dead, good.target):
        resp = http(
            "POST", f"{node_a.admin_url}/upstreams/up-{uid}/targets", json={"target": target}
        )
        assert resp.status == 201
    service = {"name": f"s-{uid}", "host": f"up-{uid}"}
    assert http("POST", node_a.admin_url + "/services", json=service).status == 201
    route = {"paths": [f"/{uid}"]}
    assert http("POST", f"{node_a.admin_url}/services/s-{uid}/routes", json=route).status == 201

    def node_health(node: KongNode) -> dict[str, str]:
        data = http("GET", f"{node.admin_url}/upstreams/up-{uid}/health").json()["data"]
        return {i["target"]: i.get("health") for i in data}

    assert wait_for(lambda: node_health(node_b).get(good.target) == "HEALTHY")
    # passive failures counted on A stay on A
    assert bodies(f"{node_a.proxy_url}/{uid}", 3) == ["good"] * 3
    assert node_health(node_a)[dead] == "UNHEALTHY"
    assert node_health(node_b)[dead] == "HEALTHY"
    # a manual PUT on A reaches B through the cluster event
    put = http("PUT", f"{node_a.admin_url}/upstreams/up-{uid}/targets/{good.target}/unhealthy")
    assert put.status == 204
    assert wait_for(lambda: node_health(node_b)[good.target] == "UNHEALTHY")
    assert http("GET", f"{node_b.proxy_url}/{uid}").status in (502, 503)
    put = http("PUT", f"{node_b.admin_url}/upstreams/up-{uid}/targets/{good.target}/healthy")
    assert put.status == 204
    assert wait_for(lambda: node_health(node_a)[good.target] == "HEALTHY")
    assert node_health(node_a)[dead] == "UNHEALTHY"  # the event named only the good target
