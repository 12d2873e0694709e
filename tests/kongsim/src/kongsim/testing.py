"""Test harness: a private PostgreSQL server and simulator nodes run as real processes.

    with postgres_server() as pg:
        dbname = pg.create_database()
        with kong_node({"database": "postgres", **pg.kong_conf(dbname)}) as node:
            urllib.request.urlopen(node.admin_url + "/status")

PostgreSQL refuses to run as root, so when the tests run as root the server runs as the
``postgres`` user (``runuser``) in a temporary directory that user owns.
"""

from __future__ import annotations

import contextlib
import glob
import os
import random
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

PG_BIN_CANDIDATES = (
    "/usr/lib/postgresql/15/bin",
    *sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True),
)


def free_port() -> int:
    """A TCP port that was free on 127.0.0.1 a moment ago, taken below the kernel's ephemeral
    range. A port the kernel hands out (bind to port 0) can be given the next moment to any
    outgoing connection as its local port, and with several suites running at once one did
    take it before the server that asked for it could bind it ("address already in use");
    ports below the range are never handed out that way."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range", encoding="ascii") as fh:
            low = int(fh.read().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    for _ in range(1000):
        port = random.randrange(max(1024, low - 12000), low)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free TCP port on 127.0.0.1 below {low}")


def _pg_bin() -> str:
    explicit = os.environ.get("KONGSIM_PG_BIN")
    for candidate in ([explicit] if explicit else []) + list(PG_BIN_CANDIDATES):
        if candidate and os.path.isfile(os.path.join(candidate, "postgres")):
            return candidate
    raise RuntimeError("PostgreSQL server binaries not found (install Debian's 'postgresql')")


def _postgres_user() -> dict[str, Any]:
    """Popen arguments that drop root to the ``postgres`` user (the server refuses root).

    Dropping privileges in the child itself (rather than through ``runuser``) keeps the
    server as our direct child, so a signal sent to it reaches PostgreSQL itself."""
    if os.geteuid() == 0:
        return {"user": "postgres", "group": "postgres", "extra_groups": []}
    return {}


@dataclass
class PostgresServer:
    """A running private PostgreSQL; ``user`` is a superuser that needs no password."""

    host: str
    port: int
    user: str
    datadir: str
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    # "require" when the server was started with TLS (and refuses plain TCP connections)
    sslmode: str = "prefer"

    def connect(self, dbname: str = "postgres") -> Any:
        import psycopg

        return psycopg.connect(
            host=self.host,
            port=self.port,
            user=self.user,
            dbname=dbname,
            autocommit=True,
            sslmode=self.sslmode,
        )

    def create_database(self, name: str | None = None) -> str:
        """Create a fresh, empty database and return its name."""
        name = name or "kong_" + uuid.uuid4().hex[:12]
        with self.connect() as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return name

    def kong_conf(self, dbname: str) -> dict[str, Any]:
        """The kong.conf keys that point a node at ``dbname`` on this server."""
        return {
            "database": "postgres",
            "pg_host": self.host,
            "pg_port": self.port,
            "pg_user": self.user,
            "pg_database": dbname,
        }


def _postgres_tls(tmp: str, datadir: str, pair: tuple[str, str]) -> dict[str, str]:
    """Write the server's certificate and key (owned by postgres, key mode 0600) and a
    pg_hba.conf that takes TCP clients only over TLS; return the settings that turn it on."""
    paths = {}
    for name, text in (("server.crt", pair[0]), ("server.key", pair[1])):
        path = os.path.join(tmp, name)
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.chmod(path, 0o600)
        if os.geteuid() == 0:
            shutil.chown(path, "postgres", "postgres")
        paths[name] = path
    with open(os.path.join(datadir, "pg_hba.conf"), "w", encoding="utf-8") as fh:
        fh.write("local all all trust\nhostssl all all 127.0.0.1/32 trust\n")
    return {"ssl": "on", "ssl_cert_file": paths["server.crt"], "ssl_key_file": paths["server.key"]}


@contextlib.contextmanager
def postgres_server(tls: tuple[str, str] | None = None) -> Iterator[PostgresServer]:
    """Start PostgreSQL (initdb + postgres) on a random loopback port; stop and delete it after.

    With ``tls`` (certificate and key PEM) the server has ``ssl = on`` and its pg_hba.conf
    accepts TCP connections only over TLS (``hostssl``)."""
    bindir = _pg_bin()
    tmp = tempfile.mkdtemp(prefix="kongsim-pg-")
    datadir = os.path.join(tmp, "data")
    if os.geteuid() == 0:
        shutil.chown(tmp, "postgres", "postgres")
    process = None
    logfile = None
    try:
        initdb = [os.path.join(bindir, "initdb"), "-D", datadir, "-A", "trust", "-U", "postgres"]
        initdb += ["-E", "UTF8", "--no-sync", "--locale=C"]
        subprocess.run(initdb, check=True, capture_output=True, **_postgres_user())
        port = free_port()
        settings = {
            "listen_addresses": "127.0.0.1",
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "max_connections": "200",
        }
        if tls is not None:
            settings.update(_postgres_tls(tmp, datadir, tls))
        cmd = [os.path.join(bindir, "postgres"), "-D", datadir, "-p", str(port), "-k", tmp]
        for key, value in settings.items():
            cmd += ["-c", f"{key}={value}"]
        logfile = open(os.path.join(tmp, "postgres.log"), "wb")  # noqa: SIM115 - closed below
        process = subprocess.Popen(
            cmd, stdout=logfile, stderr=subprocess.STDOUT, **_postgres_user()
        )
        server = PostgresServer("127.0.0.1", port, "postgres", datadir, process)
        if tls is not None:
            server.sslmode = "require"
        deadline = time.monotonic() + 30
        while True:
            try:
                server.connect().close()
                break
            except Exception:
                if process.poll() is not None or time.monotonic() > deadline:
                    logfile.close()
                    with open(
                        os.path.join(tmp, "postgres.log"), encoding="utf-8", errors="replace"
                    ) as fh:
                        raise RuntimeError("PostgreSQL did not start:\n" + fh.read()) from None
                time.sleep(0.1)
        yield server
    finally:
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if logfile is not None:
            logfile.close()
        shutil.rmtree(tmp, ignore_errors=True)


def kong_command(*args: str) -> list[str]:
    """The simulator's CLI as a command line (``python -m kongsim``, like the ``kong`` script)."""
    return [sys.executable, "-m", "kongsim", *args]


def write_conf(path: str, conf: dict[str, Any]) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        for key, value in conf.items():
            if isinstance(value, bool):
                value = "on" if value else "off"
            fh.write(f"{key} = {value}\n")


class KongNode:
    """A simulator node as a real subprocess on random loopback ports, in a temporary prefix.

    ``conf`` holds kong.conf keys (ports and prefix are filled in unless given); ``env`` adds
    environment variables. With ``database = postgres`` the database is bootstrapped first
    (``bootstrap=False`` skips that).
    """

    def __init__(
        self,
        conf: dict[str, Any] | None = None,
        env: dict[str, str] | None = None,
        *,
        bootstrap: bool = True,
        prefix: str | None = None,
        tls: bool = False,
    ):
        self._own_prefix = prefix is None
        self.prefix = prefix or tempfile.mkdtemp(prefix="kongsim-node-")
        self.proxy_port = free_port()
        self.admin_port = free_port()
        self.status_port = free_port()
        # with tls=True every family also gets an ``ssl`` listener (Kong's generated default
        # certificates unless the conf names some)
        self.proxy_ssl_port = free_port() if tls else None
        self.admin_ssl_port = free_port() if tls else None
        self.status_ssl_port = free_port() if tls else None

        def listen(port: int, ssl_port: int | None) -> str:
            return f"127.0.0.1:{port}" + (f", 127.0.0.1:{ssl_port} ssl" if ssl_port else "")

        self.conf: dict[str, Any] = {
            "prefix": self.prefix,
            "proxy_listen": listen(self.proxy_port, self.proxy_ssl_port),
            "admin_listen": listen(self.admin_port, self.admin_ssl_port),
            "status_listen": listen(self.status_port, self.status_ssl_port),
            "anonymous_reports": "off",
            "database": "off",
            **(conf or {}),
        }
        self.env = env or {}
        self.bootstrap = bootstrap
        self.conf_path = os.path.join(self.prefix, "kong.conf")
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    @property
    def proxy_url(self) -> str:
        return f"http://127.0.0.1:{self.proxy_port}"

    @property
    def status_url(self) -> str:
        return f"http://127.0.0.1:{self.status_port}"

    @property
    def proxy_ssl_url(self) -> str:
        return f"https://127.0.0.1:{self.proxy_ssl_port}"

    @property
    def admin_ssl_url(self) -> str:
        return f"https://127.0.0.1:{self.admin_ssl_port}"

    @property
    def status_ssl_url(self) -> str:
        return f"https://127.0.0.1:{self.status_ssl_port}"

    def environ(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("KONG_")}
        env.update(self.env)
        return env

    def kong(
        self, *args: str, check: bool = False, timeout: float = 60, with_conf: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run a ``kong`` subcommand; ``-c <this node's kong.conf>`` is appended unless
        ``with_conf`` is false (``stop``/``health`` take ``-p <prefix>`` instead)."""
        write_conf(self.conf_path, self.conf)
        extra = ("-c", self.conf_path) if with_conf else ()
        return subprocess.run(
            kong_command(*args, *extra),
            env=self.environ(),
            capture_output=True,
            text=True,
            check=check,
            timeout=timeout,
        )

    def start(self, timeout: float = 30) -> KongNode:
        write_conf(self.conf_path, self.conf)
        if self.conf.get("database") == "postgres" and self.bootstrap:
            result = self.kong("migrations", "bootstrap")
            if result.returncode != 0:
                raise RuntimeError(
                    f"kong migrations bootstrap failed:\n{result.stdout}{result.stderr}"
                )
        env = self.environ()
        env["KONG_NGINX_DAEMON"] = "off"
        self.stderr_path = os.path.join(self.prefix, "stderr.log")
        with open(self.stderr_path, "wb") as err:
            self.process = subprocess.Popen(
                kong_command("start", "-c", self.conf_path),
                env=env,
                stdout=err,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"kong start exited with {self.process.returncode}:\n{self.output()}"
                )
            try:
                with urllib.request.urlopen(self.admin_url + "/status", timeout=2) as resp:  # noqa: S310
                    if resp.status == 200:
                        # the proxy listeners open after the Admin API's
                        for port in (self.proxy_port, self.proxy_ssl_port):
                            if port is not None and f":{port}" in str(self.conf["proxy_listen"]):
                                _wait_port(port, self.process, "the proxy listener", timeout)
                        return self
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"kong did not answer on {self.admin_url}:\n{self.output()}")
            time.sleep(0.05)

    def output(self) -> str:
        with open(self.stderr_path, encoding="utf-8", errors="replace") as fh:
            return fh.read()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def close(self) -> None:
        self.stop()
        if self._own_prefix:
            shutil.rmtree(self.prefix, ignore_errors=True)

    def __enter__(self) -> KongNode:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(self, *exc: object) -> None:
        self.close()


@contextlib.contextmanager
def kong_node(
    conf: dict[str, Any] | None = None, env: dict[str, str] | None = None, **kwargs: Any
) -> Iterator[KongNode]:
    """A started :class:`KongNode`, stopped (and its prefix removed) on exit."""
    with KongNode(conf, env, **kwargs) as node:
        yield node


@dataclass
class Response:
    status: int
    headers: Any
    body: bytes

    def json(self) -> Any:
        import json

        return json.loads(self.body)

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")


def http(
    method: str,
    url: str,
    *,
    json: Any = None,
    data: bytes | str | dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 30,
    context: ssl.SSLContext | None = None,
) -> Response:
    """One HTTP request with the standard library; never raises on 4xx/5xx. ``https`` URLs
    use ``context`` (by default one that trusts nothing and checks nothing: the listeners'
    certificates are the tests' subject, not their transport)."""
    import json as jsonlib
    from urllib.parse import urlencode

    hdrs = dict(headers or {})
    body: bytes | None = None
    if json is not None:
        body = jsonlib.dumps(json).encode()
        hdrs.setdefault("Content-Type", "application/json")
    elif isinstance(data, dict):
        body = urlencode(data, doseq=True).encode()
        hdrs.setdefault("Content-Type", "application/x-www-form-urlencoded")
    elif isinstance(data, str):
        body = data.encode()
    else:
        body = data
    req = urllib.request.Request(url, data=body, method=method, headers=hdrs)  # noqa: S310
    if context is None and url.startswith("https:"):
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    try:
        with urllib.request.urlopen(req, timeout=timeout, context=context) as resp:  # noqa: S310
            return Response(resp.status, resp.headers, resp.read())
    except urllib.error.HTTPError as exc:
        return Response(exc.code, exc.headers, exc.read())


def _wait_port(port: int, process: subprocess.Popen[bytes], what: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{what} did not start on port {port}") from None
            time.sleep(0.05)


@contextlib.contextmanager
def echo_upstream() -> Iterator[int]:
    """The echo upstream (``kongsim.proxy.echo``) in its own process; yields its port."""
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "kongsim.proxy.echo", str(port)])
    try:
        _wait_port(port, process, "the echo upstream")
        yield port
    finally:
        process.terminate()
        process.wait(timeout=10)


class RedisServer:
    """A private ``redis-server`` (Debian's package) on a loopback port, no persistence.

    ``stop()`` and ``start()`` take it down and bring it back on the same port, so tests can
    watch a node lose and regain its Redis."""

    def __init__(self, password: str | None = None, tls: tuple[str, str, str] | None = None):
        self.host = "127.0.0.1"
        self.port = free_port()
        self.password = password
        self.dir = tempfile.mkdtemp(prefix="kongsim-redis-")
        self.process: subprocess.Popen[bytes] | None = None
        # (certificate, key, CA) PEM: the port then speaks TLS only (``tls-port``, plain
        # ``port 0``), without client certificates
        self.tls = tls

    def start(self) -> RedisServer:
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        if not os.path.exists(binary):
            raise RuntimeError("redis-server not found (install Debian's 'redis-server')")
        cmd = [binary, "--bind", self.host, "--port", str(self.port), "--save", ""]
        if self.tls is not None:
            files = []
            for name, text in zip(("server.crt", "server.key", "ca.crt"), self.tls, strict=True):
                path = os.path.join(self.dir, name)
                with open(path, "w", encoding="utf-8") as fh:
                    fh.write(text)
                files.append(path)
            cmd[3:5] = ["--port", "0", "--tls-port", str(self.port)]
            cmd += ["--tls-cert-file", files[0], "--tls-key-file", files[1]]
            cmd += ["--tls-ca-cert-file", files[2], "--tls-auth-clients", "no"]
        cmd += ["--appendonly", "no", "--dir", self.dir, "--daemonize", "no"]
        cmd += ["--logfile", os.path.join(self.dir, "redis.log")]
        if self.password is not None:
            cmd += ["--requirepass", self.password]
        self.process = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait_port(self.port, self.process, "redis-server")
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def cli(self, *args: str, db: int = 0) -> str:
        """``redis-cli`` against this server (the password goes through the environment)."""
        env = dict(os.environ)
        if self.password is not None:
            env["REDISCLI_AUTH"] = self.password
        cmd = ["redis-cli", "-h", self.host, "-p", str(self.port), "-n", str(db)]
        if self.tls is not None:
            cmd += ["--tls", "--cacert", os.path.join(self.dir, "ca.crt")]
        cmd += list(args)
        result = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env)
        return result.stdout.strip()

    def kong_conf(self, **extra: Any) -> dict[str, Any]:
        """The rate-limiting ``config.redis`` record that points at this server."""
        conf: dict[str, Any] = {"host": self.host, "port": self.port, **extra}
        if self.password is not None:
            conf.setdefault("password", self.password)
        return conf


@contextlib.contextmanager
def redis_server(
    password: str | None = None, tls: tuple[str, str, str] | None = None
) -> Iterator[RedisServer]:
    """A started :class:`RedisServer`, stopped and its directory removed on exit."""
    server = RedisServer(password, tls)
    try:
        yield server.start()
    finally:
        server.stop()
        shutil.rmtree(server.dir, ignore_errors=True)
