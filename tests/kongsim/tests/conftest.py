"""Fixtures: one private PostgreSQL for the session, and simulator nodes run as real processes
in both storage modes (``postgres`` and DB-less ``off``)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from kongsim.testing import KongNode, PostgresServer, Response, http, postgres_server


@pytest.fixture(scope="session")
def pg() -> Iterator[PostgresServer]:
    with postgres_server() as server:
        yield server


class Admin:
    """An Admin API client bound to one node, plus ``seed`` that loads entities the way the
    node's storage mode allows (Admin API writes in postgres mode, ``POST /config`` DB-less)."""

    def __init__(self, node: KongNode, mode: str):
        self.node = node
        self.mode = mode
        self.url = node.admin_url

    @property
    def dbless(self) -> bool:
        return self.mode == "off"

    def __call__(self, method: str, path: str, **kwargs: Any) -> Response:
        return http(method, self.url + path, **kwargs)

    def get(self, path: str, **kwargs: Any) -> Response:
        return self("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> Response:
        return self("POST", path, **kwargs)

    def put(self, path: str, **kwargs: Any) -> Response:
        return self("PUT", path, **kwargs)

    def patch(self, path: str, **kwargs: Any) -> Response:
        return self("PATCH", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> Response:
        return self("DELETE", path, **kwargs)

    def seed(self, config: dict[str, Any]) -> None:
        """Load ``upstreams`` (with nested ``targets``), ``services`` (with nested
        ``routes``/``plugins``), ``consumers`` (with nested ``keyauth_credentials``/``plugins``)
        and top-level ``plugins``."""
        if self.dbless:
            resp = self.post("/config", json={"_format_version": "3.0", **config})
            assert resp.status == 201, resp.text
            return
        for upstream in config.get("upstreams", []):
            upstream = dict(upstream)
            targets = upstream.pop("targets", [])
            self._ok(self.post("/upstreams", json=upstream))
            for target in targets:
                self._ok(self.post(f"/upstreams/{upstream['name']}/targets", json=target))
        for service in config.get("services", []):
            service = dict(service)
            routes = service.pop("routes", [])
            plugins = service.pop("plugins", [])
            self._ok(self.post("/services", json=service))
            for route in routes:
                route = dict(route)
                route_plugins = route.pop("plugins", [])
                self._ok(self.post(f"/services/{service['name']}/routes", json=route))
                for plugin in route_plugins:
                    self._ok(self.post(f"/routes/{route['name']}/plugins", json=plugin))
            for plugin in plugins:
                self._ok(self.post(f"/services/{service['name']}/plugins", json=plugin))
        for consumer in config.get("consumers", []):
            consumer = dict(consumer)
            creds = consumer.pop("keyauth_credentials", [])
            plugins = consumer.pop("plugins", [])
            self._ok(self.post("/consumers", json=consumer))
            for cred in creds:
                self._ok(self.post(f"/consumers/{consumer['username']}/key-auth", json=cred))
            for plugin in plugins:
                self._ok(self.post(f"/consumers/{consumer['username']}/plugins", json=plugin))
        for plugin in config.get("plugins", []):
            self._ok(self.post("/plugins", json=plugin))

    @staticmethod
    def _ok(resp: Response) -> None:
        assert resp.status == 201, resp.text


def _node(conf: dict[str, Any]) -> Iterator[KongNode]:
    with KongNode(conf) as node:
        yield node


@pytest.fixture(scope="session")
def pg_node(pg: PostgresServer) -> Iterator[KongNode]:
    yield from _node({**pg.kong_conf(pg.create_database()), "db_update_frequency": 0.5})


@pytest.fixture(scope="session")
def dbless_node() -> Iterator[KongNode]:
    yield from _node({"database": "off"})


@pytest.fixture(params=["postgres", "off"])
def admin(request: pytest.FixtureRequest) -> Admin:
    """An Admin API client, once per storage mode."""
    node = request.getfixturevalue("pg_node" if request.param == "postgres" else "dbless_node")
    return Admin(node, request.param)


@pytest.fixture
def pg_admin(pg_node: KongNode) -> Admin:
    """Admin API writes need a database: the postgres-mode node only."""
    return Admin(pg_node, "postgres")


@pytest.fixture
def dbless_admin(dbless_node: KongNode) -> Admin:
    """The DB-less node only (``/config``, 405 on writes)."""
    return Admin(dbless_node, "off")


@pytest.fixture
def uid() -> str:
    """A short unique suffix so tests sharing a node never collide on names. Routes on the
    shared nodes use paths under ``/<uid>`` (or test-only hosts) so that no test's route
    catches another test's proxied requests."""
    return uuid.uuid4().hex[:8]
