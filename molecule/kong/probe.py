#!/usr/bin/python3
"""Runs inside a Molecule container and prints, as JSON, what verify.yml asserts on: the kong
service's state, the listening sockets, kong.conf, `kong health`/`kong version`, the Admin API
from loopback, the proxy's HTTPS and plain-HTTP ports and the Admin API port on the container's
network address, and the
installed package with the versions apt sees.
One script instead of a task per probe: every task costs a few `podman exec` round trips.
"""

import json
import os
import socket
import stat
import subprocess
import urllib.error
import urllib.request


def run(*argv: str) -> dict:
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)  # noqa: S603 (fixed argv)
    return {"rc": proc.returncode, "stdout": proc.stdout, "stderr": proc.stderr}


def get(url: str) -> dict:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:  # noqa: S310 (http URLs built here)
            return {"status": resp.status, "json": json.load(resp)}
    except urllib.error.HTTPError as exc:
        return {"status": exc.code, "json": json.load(exc)}


def port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


def main() -> None:
    address = run("ip", "-4", "-o", "addr", "show", "scope", "global")["stdout"].split()[3]
    address = address.split("/")[0]
    conf_stat = os.stat("/etc/kong/kong.conf")
    with open("/etc/kong/kong.conf", encoding="utf-8") as fh:
        conf = fh.read()
    service = run("systemctl", "show", "kong", "-p", "ActiveState,UnitFileState")["stdout"]
    sockets = run("ss", "-ltnH")["stdout"].splitlines()
    report = {
        "address": address,
        "service": dict(line.split("=", 1) for line in service.split()),
        "listening": sorted({line.split()[3] for line in sockets}),
        "conf": conf,
        "conf_mode": oct(stat.S_IMODE(conf_stat.st_mode)),
        "conf_group": run("stat", "-c", "%G", "/etc/kong/kong.conf")["stdout"].strip(),
        "health": run("kong", "health"),
        "version": run("kong", "version"),
        "admin_root": get("http://127.0.0.1:8001/"),
        "admin_status": get("http://127.0.0.1:8001/status"),
        # the proxy: HTTPS on the network address (verify checks its chain from the controller),
        # nothing on Kong's plain-HTTP port
        "proxy_tls_on_address": port_open(address, 8443),
        "proxy_http_on_address": port_open(address, 8000),
        "admin_open_on_address": port_open(address, 8001),
        # the package: which version dpkg installed, which ones apt sees, and from where
        "package_version": run("dpkg-query", "-W", "-f=${Version}", "kong")["stdout"],
        "apt_versions": run("apt-cache", "madison", "kong")["stdout"],
        "sources": sorted(os.listdir("/etc/apt/sources.list.d")),
    }
    print(json.dumps(report))


main()
