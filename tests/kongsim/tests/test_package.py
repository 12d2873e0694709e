"""The simulator's Debian package (issue 3): built by ``package/build-deb.sh``, installed with apt
in a fresh Debian 12 systemd container, run with ``systemctl start kong`` as Kong's own package
is. Needs podman and the project image (``make setup``); without them the test fails.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE_DIR = Path(__file__).resolve().parents[1] / "package"
IMAGE = "localhost/ai-gateway-debian:12"
VERSION = "3.9.3~kongsim1"
DEB_NAME = f"kong_{VERSION}_all.deb"

# Building, starting a container and installing the package's dependencies with apt take longer
# than the suite's default per-test timeout; these are limits, not timed assertions.
pytestmark = pytest.mark.timeout(900)

KONG_LAYOUT = [
    "/usr/local/bin/kong",
    "/usr/local/bin/kong-health",
    "/lib/systemd/system/kong.service",
    "/etc/kong/kong.conf.default",
    "/etc/kong/kong.logrotate",
]

DBLESS_CONF = "database = off\nanonymous_reports = off\n"


def run(*args: str | Path, check: bool = True, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, check=check, timeout=timeout
    )


class Container:
    """A running container, driven with ``podman exec``."""

    def __init__(self, name: str) -> None:
        self.name = name

    def sh(
        self, script: str, check: bool = True, timeout: int = 600
    ) -> subprocess.CompletedProcess:
        proc = run(
            "podman", "exec", "-e", "DEBIAN_FRONTEND=noninteractive", self.name,
            "sh", "-c", script, check=False, timeout=timeout,
        )  # fmt: skip
        if check and proc.returncode != 0:
            pytest.fail(f"{script!r} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
        return proc

    def write(self, path: str, content: str) -> None:
        proc = subprocess.run(
            ["podman", "exec", "-i", self.name, "sh", "-c", f"cat > {path}"],
            input=content, text=True, capture_output=True, timeout=60,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr

    def wait_healthy(self, limit: float = 60.0) -> subprocess.CompletedProcess:
        """``kong health`` until it succeeds: ``systemctl start`` returns once the process is
        forked (Type=simple, as Kong's unit), before the Admin API listens."""
        deadline = time.monotonic() + limit
        while True:
            proc = self.sh("kong health", check=False)
            if proc.returncode == 0 or time.monotonic() > deadline:
                return proc
            time.sleep(0.5)


@pytest.fixture(scope="module")
def deb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("deb")
    run(PACKAGE_DIR / "build-deb.sh", out)
    debs = list(out.glob("*.deb"))
    assert [d.name for d in debs] == [DEB_NAME]
    return debs[0]


@pytest.fixture(scope="module")
def container(deb: Path) -> Iterator[Container]:
    assert shutil.which("podman"), "podman is missing: run `make setup`"
    assert run("podman", "image", "exists", IMAGE, check=False).returncode == 0, (
        f"image {IMAGE} is missing: run `make setup`"
    )
    name = f"kongsim-package-{uuid.uuid4().hex[:8]}"
    run("podman", "run", "-d", "--name", name, "--systemd=always", IMAGE, "/sbin/init")
    try:
        box = Container(name)
        # `--wait` returns once boot finished: `running`, or `degraded` when some unit of the
        # minimal image failed, which does not matter here.
        box.sh("systemctl is-system-running --wait", check=False, timeout=120)
        # Streamed in, not `podman cp`: the container's /tmp is a tmpfs that systemd mounts,
        # and a copy into the image's /tmp underneath it is not always visible.
        with deb.open("rb") as fh:
            subprocess.run(
                ["podman", "exec", "-i", name, "sh", "-c", f"cat > /var/cache/{DEB_NAME}"],
                stdin=fh, check=True, timeout=60,
            )  # fmt: skip
        box.sh(f"apt-get update -q && apt-get install -y -q /var/cache/{DEB_NAME}")
        yield box
    finally:
        run("podman", "rm", "-f", "-t", "0", name, check=False)


def test_package_metadata(deb: Path) -> None:
    fields = run("dpkg-deb", "-f", deb, "Package", "Version", "Architecture", "Depends").stdout
    assert "Package: kong\n" in fields
    assert f"Version: {VERSION}\n" in fields
    assert "Architecture: all\n" in fields
    deps = ("python3 (>= 3.11)", "python3-aiohttp", "python3-yaml", "python3-psycopg")
    for dep in (*deps, "python3-lupa"):
        assert dep in fields
    # A real Kong 3.9.3 package must supersede the simulator.
    assert run("dpkg", "--compare-versions", VERSION, "lt", "3.9.3", check=False).returncode == 0
    assert run("dpkg", "--compare-versions", VERSION, "gt", "3.9.2", check=False).returncode == 0
    contents = run("dpkg-deb", "-c", deb).stdout
    for path in [*KONG_LAYOUT, "/usr/local/lib/kongsim/kongsim/cli.py"]:
        assert f".{path}\n" in contents, path


def test_installed_like_kongs_package(container: Container) -> None:
    for path in KONG_LAYOUT:
        container.sh(f"test -f {path}")
    container.sh("test -x /usr/local/bin/kong && test -x /usr/local/bin/kong-health")
    assert container.sh("id -nu kong && id -ng kong").stdout.split() == ["kong", "kong"]
    assert container.sh("stat -c %U:%G /usr/local/kong").stdout.strip() == "kong:kong"
    status = container.sh("dpkg-query -W -f '${Status} ${Version}' kong").stdout
    assert status == f"install ok installed {VERSION}"
    unit = container.sh("systemctl cat kong.service").stdout
    assert "simulator" in unit
    assert "ExecStartPre=/usr/local/bin/kong prepare -p /usr/local/kong" in unit
    assert "Environment=KONG_NGINX_DAEMON=off" in unit
    assert "ExecStop=/bin/kill -s QUIT $MAINPID" in unit


LUA_CHECK = """
from multidict import CIMultiDict
from kongsim.proxy.lua import LuaEngine, RequestView, syntax_error
print(syntax_error("x ="))
code = 'return function() kong.service.request.set_header("apikey", '
code += 'kong.request.get_header("authorization"):match("^Bearer%s+(.+)$")) end'
headers = CIMultiDict({"Authorization": "Bearer k1"})
LuaEngine({}).run([code], RequestView(headers, {}, {}, "/"))
print(headers["apikey"])
"""


def test_pre_function_lua_runs_on_debians_lupa(container: Container) -> None:
    """Debian 12's python3-lupa (1.14, LuaJIT) runs the pre-function sandbox."""
    container.write("/tmp/lua_check.py", LUA_CHECK)
    out = container.sh("PYTHONPATH=/usr/local/lib/kongsim python3 /tmp/lua_check.py").stdout
    assert out.splitlines() == ["[string \"x =\"]:1: unexpected symbol near '<eof>'", "k1"]


def test_version(container: Container) -> None:
    assert "3.9.3" in container.sh("kong version").stdout


def test_shipped_default_conf_passes_check(container: Container) -> None:
    container.sh("kong check /etc/kong/kong.conf.default")


def test_check_rejects_broken_conf(container: Container) -> None:
    container.write("/tmp/good.conf", DBLESS_CONF)
    container.sh("kong check /tmp/good.conf")
    container.write("/tmp/unknown-key.conf", DBLESS_CONF + "no_such_setting = 1\n")
    proc = container.sh("kong check /tmp/unknown-key.conf", check=False)
    assert proc.returncode != 0
    assert "no_such_setting" in proc.stdout + proc.stderr
    container.write("/tmp/bad-value.conf", "database = mongodb\n")
    proc = container.sh("kong check /tmp/bad-value.conf", check=False)
    assert proc.returncode != 0
    assert "database" in proc.stdout + proc.stderr


def test_systemctl_start_then_healthy_then_stop(container: Container) -> None:
    container.write("/etc/kong/kong.conf", DBLESS_CONF)
    assert container.sh("kong health", check=False).returncode != 0
    container.sh("systemctl start kong")
    health = container.wait_healthy()
    assert health.returncode == 0, health.stdout + health.stderr
    assert "Kong is healthy at /usr/local/kong" in health.stdout
    container.sh("kong-health")
    assert container.sh("systemctl show -p MainPID --value kong").stdout.strip() != "0"
    # The service runs as the package's kong user and serves the Admin API on loopback.
    assert (
        container.sh("ps -o user= -p $(systemctl show -p MainPID --value kong)").stdout.strip()
        == "kong"
    )
    root = json.loads(
        container.sh(
            "python3 -c 'import urllib.request as u; "
            'print(u.urlopen("http://127.0.0.1:8001/").read().decode())\''
        ).stdout
    )
    assert root["version"] == "3.9.3"
    assert root["configuration"]["database"] == "off"
    # SIGQUIT (ExecStop) ends it cleanly: no kill after the stop timeout, no failure.
    container.sh("systemctl stop kong")
    assert container.sh("systemctl show -p Result --value kong").stdout.strip() == "success"
    assert container.sh("systemctl is-active kong", check=False).stdout.strip() == "inactive"
    assert container.sh("kong health", check=False).returncode != 0
