# -*- coding: utf-8 -*-
# Copyright: ai-gateway project
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""Upstream names and target addresses as Kong 3.9 validates and stores them.

Kong normalises a target on write (kong/db/dao/targets.lua format_target, kong/tools/ip.lua):
`host` gets the default port 8000, IPv4 loses leading zeros, IPv6 is fully expanded, lower-cased
and bracketed. The modules compare and look targets up in that stored form, so that a second run
finds the target again whatever spelling the user gave.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import ipaddress
import re

from ansible.module_utils.common.text.converters import to_text

# kong/tools/ip.lua: the port Kong gives a target without one.
KONG_DEFAULT_TARGET_PORT = 8000
# Hostname characters Kong accepts in upstream names and targets (letters, digits, -, ., _).
HOSTNAME = re.compile(r"^[A-Za-z0-9_](?:[A-Za-z0-9_.-]*[A-Za-z0-9_.])?$")


def _ip(text):
    try:
        return ipaddress.ip_address(to_text(text))
    except ValueError:
        return None


def _ipv4_with_leading_zeros(text):
    """'010.0.0.1' -> IPv4Address('10.0.0.1') (Kong drops the zeros); None if not dotted quad."""
    parts = text.split(".")
    if len(parts) == 4 and all(p.isdigit() and int(p) < 256 for p in parts):
        return ipaddress.IPv4Address(".".join(str(int(p)) for p in parts))
    return None


def upstream_name_error(name):
    """Why `name` cannot name an upstream, or None (Kong's rules, upstreams.lua validate_name)."""
    name = to_text(name)
    if _ip(name.strip("[]")) or _ipv4_with_leading_zeros(name) or name.isdigit():
        return "%r is an IP address; an upstream needs a host name, which services use as host" % (
            name
        )
    if ":" in name:
        return "%r has a port; an upstream name is a host name without port" % name
    if not HOSTNAME.match(name) or any(seg.endswith("-") for seg in name.split(".")):
        return "%r is not a valid host name (letters, digits, '-', '.', '_')" % name
    return None


def split_target(target):
    """'host:port' / '[v6]:port' / 'v6' / 'host' -> (host, port or None); ValueError if invalid."""
    target = to_text(target).strip()
    if target.startswith("["):
        match = re.match(r"^\[([^\]]+)\](?::(\d+))?$", target)
        if not match or not isinstance(_ip(match.group(1)), ipaddress.IPv6Address):
            raise ValueError("not a valid IPv6 target")
        return match.group(1), int(match.group(2)) if match.group(2) else None
    if target.count(":") > 1:
        if not isinstance(_ip(target), ipaddress.IPv6Address):
            raise ValueError("not a valid hostname or ip address")
        return target, None
    host, _sep, port = target.partition(":")
    if _sep and not port.isdigit():
        raise ValueError("the port %r is not a number" % port)
    if not host or not (_ip(host) or _ipv4_with_leading_zeros(host) or HOSTNAME.match(host)):
        raise ValueError("not a valid hostname or ip address")
    return host, int(port) if _sep else None


def normalize_target(target, default_port=None):
    """The target as Kong stores it ('h:p'). Without a port, `default_port` is used, or
    ValueError is raised when it is None (the modules require an explicit port)."""
    host, port = split_target(target)
    if port is None:
        if default_port is None:
            raise ValueError("no port (Kong would silently use %d)" % KONG_DEFAULT_TARGET_PORT)
        port = default_port
    if not 0 < port < 65536:
        raise ValueError("the port %d is out of range" % port)
    address = _ip(host) or _ipv4_with_leading_zeros(host)
    if isinstance(address, ipaddress.IPv6Address):
        return "[%s]:%d" % (address.exploded.lower(), port)
    if address is not None:
        return "%s:%d" % (address, port)
    return "%s:%d" % (host, port)
