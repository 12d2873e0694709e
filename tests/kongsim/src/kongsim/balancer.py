"""Kong's ring balancer and health checker, per node (``kong/runloop/balancer/*.lua`` at 3.9.3
and lua-resty-healthcheck 3.1.0 ``lib/resty/healthcheck.lua``).

A :class:`Balancers` object belongs to one node. It is rebuilt whenever the node's upstreams
or targets change, and keeps each address's health across rebuilds (Kong's checker status
lives in the node's ``kong_healthchecks`` shm and is picked up by the new checker). Health is
never shared between nodes, except that manual ``PUT .../healthy|unhealthy`` is broadcast to
the other nodes of a PostgreSQL cluster (``balancer:post_health`` cluster event).

What is simulated: round-robin (a wheel of ``weight / gcd`` slots per address, shuffled,
walked by one pointer per node, as one nginx worker does), weight 0 never picked, the
``threshold`` rule, passive counters fed by the proxy and active HTTP(S) probes. The other
algorithms (consistent-hashing, least-connections, latency) are accepted by the schema and
balanced round-robin here.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import random
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kongsim.upstreams import healthchecks_on, split_target

log = logging.getLogger("kongsim.balancer")

HEALTHY, UNHEALTHY = "HEALTHY", "UNHEALTHY"
HEALTHCHECKS_OFF, DNS_ERROR = "HEALTHCHECKS_OFF", "DNS_ERROR"
# Active probes are due-checked on this period (healthcheck.lua's 0.1 s checker timer).
CHECK_PERIOD = 0.1
# A name that did not resolve is asked again after this many seconds (balancers.lua
# REQUERY_INTERVAL).
REQUERY_INTERVAL = 30.0
# (upstream name, ip, port, target hostname): the key lua-resty-healthcheck stores status by.
StatusKey = tuple[str, str, int, str]


@dataclass
class Counters:
    successes: int = 0
    tcp_failures: int = 0
    timeouts: int = 0
    http_failures: int = 0


@dataclass(eq=False)
class Address:
    ip: str
    port: int
    weight: int
    target: Target
    available: bool = True

    @property
    def host_header(self) -> str | None:
        """The name Kong sends as ``Host`` for a name target; ``None`` for IP targets."""
        return self.target.name if self.target.kind == "name" else None


@dataclass(eq=False)
class Target:
    entity: dict[str, Any]
    name: str
    port: int
    kind: str  # ipv4, ipv6 or name
    weight: int
    dns: str = "A"
    addresses: list[Address] = field(default_factory=list)


class Balancer:
    """One upstream's balancer on this node."""

    def __init__(self, upstream: dict[str, Any], targets: list[Target], owner: Balancers):
        self.upstream = upstream
        self.name: str = upstream["name"]
        self.targets = targets
        self.owner = owner
        checks = upstream.get("healthchecks") or {}
        self.checks_on = healthchecks_on(upstream)
        self.threshold = float(checks.get("threshold") or 0)
        self.active = checks.get("active") or {}
        self.passive = checks.get("passive") or {}
        self.addresses = [a for t in targets for a in t.addresses]
        wheel: list[Address] = []
        weights = [a.weight for a in self.addresses if a.weight > 0]
        divisor = math.gcd(*weights) if weights else 1
        for address in self.addresses:
            if address.weight > 0:
                wheel.extend([address] * (address.weight // divisor))
        random.shuffle(wheel)
        self.wheel = wheel
        self.pointer = random.randrange(len(wheel)) if wheel else 0
        self._task: asyncio.Task[None] | None = None

    # --- picking peers ------------------------------------------------------------------

    @property
    def healthy(self) -> bool:
        """``updateStatus``: the available share of the weight must exceed ``threshold`` %."""
        total = sum(a.weight for a in self.addresses)
        if total == 0:
            return False
        available = sum(a.weight for a in self.addresses if a.available)
        return available / total * 100 > self.threshold

    def get_peer(self) -> Address | None:
        """The next available address on the wheel, or ``None`` (Kong's 503 "failure to get
        a peer from the ring-balancer")."""
        wheel = self.wheel
        if not wheel or not self.healthy:
            return None
        size = len(wheel)
        for _ in range(size):
            address = wheel[self.pointer]
            self.pointer = (self.pointer + 1) % size
            if address.available:
                return address
        return None

    def host_header(self, address: Address, tls: bool) -> str:
        """``Host`` sent to a target: ``host_header`` or the target's name or IP, plus the
        port unless it is the scheme's default (balancer/init.lua set_host_header)."""
        base = self.upstream.get("host_header") or address.host_header
        if base is None:
            base = f"[{address.ip}]" if ":" in address.ip else address.ip
        if address.port == (443 if tls else 80):
            return base
        return f"{base}:{address.port}"

    # --- health -------------------------------------------------------------------------

    def _limit(self, mode: str, kind: str) -> int:
        section = self.active if mode == "active" else self.passive
        side = "healthy" if kind == "successes" else "unhealthy"
        return int((section.get(side) or {}).get(kind) or 0)

    def report(self, address: Address, kind: str, mode: str = "passive") -> None:
        """Count one outcome (``successes``, ``tcp_failures``, ``timeouts``,
        ``http_failures``) for ``address``; a counter reaching its limit flips the address.

        As healthcheck.lua incr_counter does: a limit of 0 disables that counter; successes
        are not counted for a healthy address nor failures for an unhealthy one; a counter
        going from 0 to 1 clears the opposite side's counters (so failures of a healthy
        address add up until it flips, whatever successes come in between)."""
        if not self.checks_on or address.weight == 0:
            return
        limit = self._limit(mode, kind)
        if limit == 0:
            return
        healthy = kind == "successes"
        if address.available == healthy:
            return
        counters = self.owner.counters(self, address)
        value = getattr(counters, kind) + 1
        setattr(counters, kind, value)
        if value == 1:
            if healthy:
                counters.tcp_failures = counters.timeouts = counters.http_failures = 0
            else:
                counters.successes = 0
        if value >= limit:
            self.owner.set_status(self, address, healthy)
            log.warning(
                "[healthchecks] %s target %s:%s (%s) is %s",
                mode,
                address.ip,
                address.port,
                address.target.name,
                "healthy" if healthy else "unhealthy",
            )

    def report_status(self, address: Address, status: int, mode: str = "passive") -> None:
        """A response status: the configured lists decide success or HTTP failure; 504 is a
        timeout in the passive checks' log-phase report."""
        if mode == "passive" and status == 504:
            self.report(address, "timeouts", mode)
            return
        section = self.active if mode == "active" else self.passive
        if status in ((section.get("healthy") or {}).get("http_statuses") or []):
            self.report(address, "successes", mode)
        elif status in ((section.get("unhealthy") or {}).get("http_statuses") or []) or not status:
            self.report(address, "http_failures", mode)

    # --- active checks ------------------------------------------------------------------

    def start(self) -> None:
        healthy_every = float((self.active.get("healthy") or {}).get("interval") or 0)
        unhealthy_every = float((self.active.get("unhealthy") or {}).get("interval") or 0)
        # tcp checks do not run in the http subsystem (healthcheckers.lua create_healthchecker)
        if self.active.get("type") == "tcp" or not (healthy_every or unhealthy_every):
            return
        self._task = asyncio.ensure_future(self._run(healthy_every, unhealthy_every))

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    async def _run(self, healthy_every: float, unhealthy_every: float) -> None:
        started = time.monotonic()
        due_healthy = started + healthy_every
        due_unhealthy = started + unhealthy_every
        semaphore = asyncio.Semaphore(int(self.active.get("concurrency") or 10))
        while True:
            await asyncio.sleep(CHECK_PERIOD)
            now = time.monotonic()
            batch: list[Address] = []
            if healthy_every and now >= due_healthy:
                due_healthy = now + healthy_every
                batch += [a for a in self.addresses if a.available and a.weight > 0]
            if unhealthy_every and now >= due_unhealthy:
                due_unhealthy = now + unhealthy_every
                batch += [a for a in self.addresses if not a.available and a.weight > 0]
            if batch:
                # One probe that fails unexpectedly must not end the checker (Kong's timer
                # runs again); it is logged.
                results = await asyncio.gather(
                    *(self._probe(a, semaphore) for a in batch), return_exceptions=True
                )
                for result in results:
                    if isinstance(result, Exception):
                        log.error("active health check failed: %r", result)

    async def _probe(self, address: Address, semaphore: asyncio.Semaphore) -> None:
        https = self.active.get("type") == "https"
        async with semaphore:
            outcome = await probe(
                address.ip,
                address.port,
                self.active,
                self.upstream.get("host_header") or address.host_header or address.ip,
                self.owner.trusted_cafile() if https else None,
            )
        if isinstance(outcome, int):
            self.report_status(address, outcome, "active")
        else:
            self.report(address, outcome, "active")


def _probe_context(cafile: str | None) -> ssl.SSLContext:
    """A verifying client context trusting ``cafile`` only (none at all when it holds no
    certificate: every verification then fails, as with an empty ``.ca_combined``)."""
    if cafile is None:
        return ssl.create_default_context()
    try:
        return ssl.create_default_context(cafile=cafile)
    except ssl.SSLError:
        return ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)


async def probe(
    ip: str, port: int, active: dict[str, Any], host: str, cafile: str | None = None
) -> int | str:
    """One active check (healthcheck.lua run_single_check): a new connection, ``GET <http_path>
    HTTP/1.0`` with ``Host`` (no port) and the configured headers, only the status line read.
    Returns the status (0 when unparseable) or ``tcp_failures`` / ``timeouts``. An ``https``
    check is a cosocket handshake (``sock:sslhandshake(nil, https_sni or host, verify)``), so
    it verifies against ``lua_ssl_trusted_certificate`` (``cafile``, Kong's ``.ca_combined``),
    never against a Service's ``ca_certificates``."""
    timeout = float(active.get("timeout") or 1)
    tls: ssl.SSLContext | None = None
    if active.get("type") == "https":
        tls = _probe_context(cafile)
        if not active.get("https_verify_certificate", True):
            tls.check_hostname = False
            tls.verify_mode = ssl.CERT_NONE
    writer = None
    try:
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(
                    ip,
                    port,
                    ssl=tls,
                    server_hostname=(active.get("https_sni") or host) if tls else None,
                ),
                timeout,
            )
        except TimeoutError:
            return "timeouts"
        except (OSError, ssl.SSLError):
            return "tcp_failures"
        lines = [f"GET {active.get('http_path') or '/'} HTTP/1.0", f"Host: {host}"]
        for name, values in (active.get("headers") or {}).items():
            lines += [f"{name}: {value}" for value in values]
        try:
            writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
            status_line = await asyncio.wait_for(reader.readline(), timeout)
        except TimeoutError:
            return "timeouts"
        except (OSError, ssl.SSLError):
            return "tcp_failures"
        if not status_line:
            return "tcp_failures"
        parts = status_line.split()
        if len(parts) >= 2 and parts[0].startswith(b"HTTP/") and parts[1].isdigit():
            return int(parts[1])
        return 0
    finally:
        if writer is not None:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


class Balancers:
    """All balancers of one node, by upstream name (what a Service's ``host`` is compared
    with). ``by_name`` is replaced whole on each rebuild so the proxy reads it lock-free."""

    def __init__(self, trusted_bundle: Callable[[], str] | None = None) -> None:
        self.by_name: dict[str, Balancer] = {}
        # The cosockets' trust (lua_ssl_trusted_certificate, <prefix>/.ca_combined), which the
        # active https checks verify against: written once, again after a reload.
        self._trusted_bundle = trusted_bundle
        self._trusted_path: str | None = None
        # Status and counters outlive balancers, as in Kong's kong_healthchecks shm.
        self._status: dict[StatusKey, bool] = {}
        self._counters: dict[StatusKey, Counters] = {}
        self._fingerprint: str | None = None
        self._last: tuple[list[dict[str, Any]], list[dict[str, Any]]] = ([], [])
        self._requery: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    def get(self, name: str) -> Balancer | None:
        return self.by_name.get(name)

    def trusted_cafile(self) -> str | None:
        if self._trusted_path is None and self._trusted_bundle is not None:
            self._trusted_path = self._trusted_bundle()
        return self._trusted_path

    def forget_trust(self) -> None:
        """After a reload: the next probe reads lua_ssl_trusted_certificate again."""
        self._trusted_path = None

    async def rebuild(
        self,
        upstreams: list[dict[str, Any]],
        targets: list[dict[str, Any]],
        *,
        force: bool = False,
    ) -> None:
        """New balancers after any upstream or target change (runloop reconfigure); the
        stored address status carries over for addresses that remain. A name target that
        does not resolve is retried every REQUERY_INTERVAL seconds."""
        async with self._lock:  # one rebuild at a time: name lookups await
            await self._rebuild(upstreams, targets, force)

    async def _rebuild(
        self, upstreams: list[dict[str, Any]], targets: list[dict[str, Any]], force: bool
    ) -> None:
        fingerprint = json.dumps([upstreams, targets], sort_keys=True, default=str)
        if fingerprint == self._fingerprint and not force:
            return
        self._fingerprint = fingerprint
        self._last = (upstreams, targets)
        by_upstream: dict[str, list[dict[str, Any]]] = {}
        for target in targets:
            by_upstream.setdefault((target.get("upstream") or {}).get("id"), []).append(target)
        new: dict[str, Balancer] = {}
        keep: set[StatusKey] = set()
        for upstream in upstreams:
            built = []
            for entity in sorted(
                by_upstream.get(upstream["id"], []), key=lambda t: (t["created_at"], t["id"])
            ):
                built.append(await self._resolve(entity))
            balancer = Balancer(upstream, built, self)
            for address in balancer.addresses:
                key = self._key(balancer, address)
                if key in self._status:
                    address.available = self._status[key]
                keep.add(key)
            new[upstream["name"]] = balancer
        for old in self.by_name.values():
            old.stop()
        self._status = {k: v for k, v in self._status.items() if k in keep}
        self._counters = {k: v for k, v in self._counters.items() if k in keep}
        self.by_name = new
        for balancer in new.values():
            balancer.start()
        unresolved = any(not t.addresses for b in new.values() for t in b.targets)
        if unresolved and (self._requery is None or self._requery.done()):
            self._requery = asyncio.ensure_future(self._requery_later())

    async def _requery_later(self) -> None:
        await asyncio.sleep(REQUERY_INTERVAL)
        self._requery = None
        await self.rebuild(*self._last, force=True)

    @staticmethod
    async def _resolve(entity: dict[str, Any]) -> Target:
        host, port, kind = split_target(entity["target"])
        weight = int(entity.get("weight") or 0)
        target = Target(entity, host, port, kind, weight)
        if kind != "name":
            target.dns = "A" if kind == "ipv4" else "AAAA"
            target.addresses = [Address(host, port, weight, target)]
            return target
        # Kong's default dns_order (LAST,SRV,A,CNAME) asks for A records only; each address
        # of a name gets the target's whole weight (balancers.lua addAddress).
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(
                host, port, family=socket.AF_INET, type=socket.SOCK_STREAM
            )
        except OSError as exc:
            target.dns = f"dns server error: {exc}"
            return target
        ips = list(dict.fromkeys(sockaddr[0] for *_, sockaddr in infos))
        target.addresses = [Address(ip, port, weight, target) for ip in ips]
        return target

    @staticmethod
    def _key(balancer: Balancer, address: Address) -> StatusKey:
        return (balancer.name, address.ip, address.port, address.target.name)

    def counters(self, balancer: Balancer, address: Address) -> Counters:
        return self._counters.setdefault(self._key(balancer, address), Counters())

    def set_status(self, balancer: Balancer, address: Address, healthy: bool) -> None:
        """A new status clears the address's counters (healthcheck.lua set_target_status)."""
        address.available = healthy
        key = self._key(balancer, address)
        self._counters[key] = Counters()
        self._status[key] = healthy

    def post_health(
        self, upstream: str, target: str, address: str | None, healthy: bool
    ) -> str | None:
        """Manual health (``PUT .../healthy|unhealthy``): every address of ``target``, or the
        one ``ip:port`` given. Returns Kong's 400 message when there is nothing to mark."""
        balancer = self.by_name.get(upstream)
        if balancer is None:
            return f"Upstream {upstream} has no balancer"
        if not balancer.checks_on:
            return f"no healthchecker found for {upstream}"
        host, port, _ = split_target(target)
        wanted: tuple[str, int] | None = None
        if address is not None:
            ip, aport, _ = split_target(address)
            wanted = (ip, aport)
        for candidate in balancer.addresses:
            if candidate.target.name != host or candidate.target.port != port:
                continue
            if wanted is not None and (candidate.ip, candidate.port) != wanted:
                continue
            self.set_status(balancer, candidate, healthy)
        if wanted is not None:
            # an address not (yet) in the balancer keeps its status for when it appears
            key = (upstream, wanted[0], wanted[1], host)
            self._status[key] = healthy
        return None

    def stop(self) -> None:
        if self._requery is not None:
            self._requery.cancel()
        for balancer in self.by_name.values():
            balancer.stop()

    # --- Admin API views ------------------------------------------------------------------

    def target_health(self, upstream: str, entity: dict[str, Any]) -> dict[str, Any] | None:
        """``health`` and ``data`` for one target of ``GET /upstreams/{u}/health``."""
        balancer = self.by_name.get(upstream)
        if balancer is None:
            return None
        target = next((t for t in balancer.targets if t.entity["id"] == entity["id"]), None)
        if target is None or not target.addresses:
            health = DNS_ERROR
        elif not balancer.checks_on or target.weight == 0:
            health = HEALTHCHECKS_OFF
        else:
            health = HEALTHY if any(a.available for a in target.addresses) else UNHEALTHY
        out: dict[str, Any] = {"health": health}
        if target is not None:
            out["data"] = self._target_status(balancer, target)
        return out

    @staticmethod
    def _target_status(
        balancer: Balancer, target: Target, *, labels: bool = True
    ) -> dict[str, Any]:
        """balancers.lua getTargetStatus; ``/health`` turns each address's ``healthy`` into a
        ``health`` label (healthcheckers.lua get_upstream_health), ``balancer_health`` keeps
        the boolean."""
        total = sum(a.weight for a in target.addresses)
        unavailable = sum(a.weight for a in target.addresses if not a.available)
        return {
            "host": target.name,
            "port": target.port,
            "dns": target.dns,
            "nodeWeight": target.weight,
            "weight": {
                "total": total,
                "available": total - unavailable,
                "unavailable": unavailable,
            },
            "addresses": [
                {
                    "ip": a.ip,
                    "port": a.port,
                    "weight": a.weight,
                    **(
                        {
                            "health": (HEALTHY if a.available else UNHEALTHY)
                            if balancer.checks_on
                            else HEALTHCHECKS_OFF
                        }
                        if labels
                        else {"healthy": a.available}
                    ),
                }
                for a in target.addresses
            ],
        }

    def balancer_health(self, upstream: dict[str, Any]) -> dict[str, Any] | None:
        """``?balancer_health=1`` (healthcheckers.lua get_balancer_health, CHANGELOG 3.3)."""
        balancer = self.by_name.get(upstream["name"])
        if balancer is None:
            return None
        total = sum(a.weight for a in balancer.addresses)
        unavailable = sum(a.weight for a in balancer.addresses if not a.available)
        healthy = balancer.healthy
        return {
            "health": (HEALTHY if healthy else UNHEALTHY)
            if balancer.checks_on
            else HEALTHCHECKS_OFF,
            "balancer_health": HEALTHY if healthy else UNHEALTHY,
            "id": upstream["id"],
            "details": {
                "healthy": healthy,
                "weight": {
                    "total": total,
                    "available": total - unavailable,
                    "unavailable": unavailable,
                },
                "hosts": [self._target_status(balancer, t, labels=False) for t in balancer.targets],
            },
        }
