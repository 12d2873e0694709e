"""The harness itself: nodes start in both modes and answer on their three listeners."""

from kongsim.testing import http


def test_node_answers_admin_and_status(admin):
    assert admin.get("/status").status == 200
    body = admin.get("/").json()
    assert body["version"] == "3.9.3"
    assert body["simulator"] == "kongsim"
    # readiness in DB-less mode depends on the loaded configuration: see test_dbless.py
    ready = http("GET", admin.node.status_url + "/status/ready")
    assert ready.status in ((200, 503) if admin.dbless else (200,))
    assert ready.headers["Server"] == "kong/3.9.3"


def test_pg_write_read(pg_admin, uid):
    resp = pg_admin.post("/consumers", json={"username": f"bob-{uid}"})
    assert resp.status == 201, resp.text
    assert pg_admin.get(f"/consumers/bob-{uid}").json()["id"] == resp.json()["id"]
