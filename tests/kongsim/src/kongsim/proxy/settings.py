"""The kong.conf values the proxy reads, typed once per configuration.

Kong derives ``enabled_headers`` from the ``headers`` list (``kong/conf_loader/init.lua``):
``server_tokens`` switches on ``Server`` and ``Via``, ``latency_tokens`` the three latency
headers, ``off`` switches everything off; ``headers_upstream`` does the same for the
``X-Kong-Request-Id`` header sent to the upstream.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

KONG_VERSION = "3.9.3"
SERVER_HEADER = f"kong/{KONG_VERSION}"

_SERVER_TOKENS = ("server", "via")
_LATENCY_TOKENS = ("x-kong-proxy-latency", "x-kong-response-latency", "x-kong-upstream-latency")

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def as_list(value: Any) -> list[str]:
    """A kong.conf array that may still be a comma-separated string."""
    if value is None:
        return []
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return [str(part).strip() for part in value]


def enabled_header_set(tokens: Iterable[str]) -> frozenset[str]:
    """Lower-cased header names switched on by a ``headers``/``headers_upstream`` list."""
    tokens = [token.lower() for token in tokens]
    if not tokens or tokens[0] == "off":
        return frozenset()
    enabled: set[str] = set()
    for token in tokens:
        if token == "off":
            continue
        enabled.add(token)
        if token == "server_tokens":
            enabled.update(_SERVER_TOKENS)
        elif token == "latency_tokens":
            enabled.update(_LATENCY_TOKENS)
    return frozenset(enabled)


def parse_size(value: Any) -> int:
    """An nginx size (``0``, ``8k``, ``10m``, ``1g``) in bytes; 0 means unlimited."""
    if value is None or value == "":
        return 0
    if isinstance(value, int | float):
        return int(value)
    text = str(value).strip().lower()
    factor = {"k": 1024, "m": 1024**2, "g": 1024**3}.get(text[-1:], 1)
    if factor != 1:
        text = text[:-1]
    return int(float(text) * factor)


def as_bool(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("on", "true", "yes", "1")
    return bool(value)


@dataclass(frozen=True)
class ProxySettings:
    """What the request path needs from kong.conf, with Kong's defaults for missing keys."""

    enabled_headers: frozenset[str]
    enabled_headers_upstream: frozenset[str]
    trust_all: bool
    trusted_networks: tuple[IpNetwork, ...]
    real_ip_header: str | None
    real_ip_recursive: bool
    error_default_type: str
    client_max_body_size: int
    proxy_http_version: str

    @classmethod
    def from_conf(cls, conf: Mapping[str, Any]) -> ProxySettings:
        headers = conf.get("headers")
        if headers is None:
            headers = ["server_tokens", "latency_tokens", "X-Kong-Request-Id"]
        headers_upstream = conf.get("headers_upstream")
        if headers_upstream is None:
            headers_upstream = ["X-Kong-Request-Id"]
        networks: list[IpNetwork] = []
        for entry in as_list(conf.get("trusted_ips")):
            if entry == "unix:":
                continue
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                continue
        everything = {n.version for n in networks if n.prefixlen == 0}
        real_ip_header = conf.get("real_ip_header", "X-Real-IP")
        body_size = conf.get("client_max_body_size")
        if body_size is None:
            body_size = conf.get("nginx_http_client_max_body_size", "0")
        return cls(
            enabled_headers=enabled_header_set(as_list(headers)),
            enabled_headers_upstream=enabled_header_set(as_list(headers_upstream)),
            trust_all=everything == {4, 6},
            trusted_networks=tuple(networks),
            real_ip_header=str(real_ip_header).lower() if real_ip_header else None,
            real_ip_recursive=as_bool(conf.get("real_ip_recursive", False)),
            error_default_type=str(conf.get("error_default_type") or "text/plain"),
            client_max_body_size=parse_size(body_size),
            proxy_http_version=str(conf.get("proxy_http_version") or "1.1"),
        )

    def is_trusted(self, address: str | None) -> bool:
        """Kong's ``kong.ip.is_trusted``: is this peer in ``trusted_ips``?"""
        if not self.trusted_networks or not address:
            return False
        if self.trust_all:
            return True
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in self.trusted_networks)
