"""Two simulator nodes on one PostgreSQL database behave as a Kong cluster: what one node's
Admin API writes, the other serves (Admin reads go to the database; each node's runtime
configuration follows by polling the change counter every ``db_update_frequency`` seconds)."""

from __future__ import annotations

import time

import pytest
from kongsim.testing import KongNode, http


@pytest.fixture(scope="module")
def cluster(pg):
    db = pg.create_database()
    conf = {**pg.kong_conf(db), "db_update_frequency": 0.2}
    with KongNode(conf) as a, KongNode(conf, bootstrap=False) as b:
        yield a, b


def test_entity_created_on_a_is_visible_on_b(cluster, uid):
    a, b = cluster
    created = http("POST", a.admin_url + "/services", json={"name": f"s-{uid}", "host": "up.test"})
    assert created.status == 201
    seen = http("GET", b.admin_url + f"/services/s-{uid}")
    assert seen.status == 200
    assert seen.json() == created.json()
    route = http("POST", b.admin_url + f"/services/s-{uid}/routes", json={"paths": [f"/{uid}"]})
    assert route.status == 201
    listed = http("GET", a.admin_url + f"/services/s-{uid}/routes").json()["data"]
    assert [r["id"] for r in listed] == [route.json()["id"]]


def test_unique_constraints_hold_across_nodes(cluster, uid):
    a, b = cluster
    assert http("POST", a.admin_url + "/consumers", json={"username": f"u-{uid}"}).status == 201
    dup = http("POST", b.admin_url + "/consumers", json={"username": f"u-{uid}"})
    assert dup.status == 409
    assert dup.json()["message"] == f"UNIQUE violation detected on '{{username=\"u-{uid}\"}}'"


def test_delete_on_b_is_seen_on_a(cluster, uid):
    a, b = cluster
    http("POST", a.admin_url + "/consumers", json={"username": f"d-{uid}"})
    assert http("DELETE", b.admin_url + f"/consumers/d-{uid}").status == 204
    assert http("GET", a.admin_url + f"/consumers/d-{uid}").status == 404


def test_runtime_configuration_follows_other_nodes_writes(cluster, uid):
    """B's published configuration (what its proxy serves) picks up A's plugin: ``GET /``
    reports the plugins in use from the node's current snapshot."""
    a, b = cluster

    def in_use(node):
        return http("GET", node.admin_url + "/").json()["plugins"]["enabled_in_cluster"]

    plugin = {"name": "request-transformer", "instance_name": f"rt-{uid}"}
    assert http("POST", a.admin_url + "/plugins", json=plugin).status == 201
    assert "request-transformer" in in_use(a)  # local writes publish at once
    deadline = time.monotonic() + 20
    while "request-transformer" not in in_use(b) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "request-transformer" in in_use(b)
    assert http("DELETE", b.admin_url + f"/plugins/rt-{uid}").status == 204
    deadline = time.monotonic() + 20
    while "request-transformer" in in_use(a) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "request-transformer" not in in_use(a)


def test_node_reconnects_after_losing_its_database_connection(cluster, pg, uid):
    a, _ = cluster
    with pg.connect() as conn:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid()",
            (a.conf["pg_database"],),
        )
    assert http("POST", a.admin_url + "/consumers", json={"username": f"r-{uid}"}).status == 201
    assert http("GET", a.admin_url + "/status").json()["database"] == {"reachable": True}
