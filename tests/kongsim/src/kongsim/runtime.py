"""The contract between the simulator's storage/Admin API side and its proxy side.

The storage side (Admin API, PostgreSQL or DB-less store) publishes the whole current
configuration as an immutable :class:`Snapshot`; the proxy side reads ``runtime.snapshot`` on
every request and rebuilds its router and plugin indexes only when ``snapshot.version`` changes.
This mirrors Kong, whose workers rebuild the router from the database (polled every
``db_update_frequency`` seconds) or from the declarative config.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

Entity = dict[str, Any]


@dataclass(frozen=True)
class Snapshot:
    """Every entity as the Admin API renders it (Kong's JSON shape: foreign keys as
    ``{"id": ...}`` or ``None``, unset optional fields as ``None``, defaults filled in).

    ``keyauth_credentials`` rows also carry ``"expires_at"`` (epoch seconds or ``None``) so the
    proxy can treat a credential whose ``ttl`` ran out as missing, as Kong does.
    """

    version: str
    services: dict[str, Entity] = field(default_factory=dict)  # by id
    routes: list[Entity] = field(default_factory=list)
    consumers: dict[str, Entity] = field(default_factory=dict)  # by id
    plugins: list[Entity] = field(default_factory=list)
    keyauth_credentials: list[Entity] = field(default_factory=list)
    upstreams: list[Entity] = field(default_factory=list)
    targets: list[Entity] = field(default_factory=list)


class Runtime(Protocol):
    """What the proxy app is given by the server that assembles the node."""

    @property
    def snapshot(self) -> Snapshot: ...

    @property
    def conf(self) -> dict[str, Any]:
        """The parsed kong.conf (keys lower-case, values typed), after ``KONG_*`` overrides."""
        ...
