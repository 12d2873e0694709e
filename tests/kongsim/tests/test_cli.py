"""The ``kong`` CLI as a real subprocess: version, check, config parse/db_import, migrations,
start (daemon and foreground), health, stop, reload, restart, prepare."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
from kongsim.testing import KongNode, http, kong_command, write_conf

NEEDS_BOOTSTRAP = "Database needs bootstrapping or is older than Kong 1.0."


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("KONG_")}
    clean.update(env or {})
    return subprocess.run(
        kong_command(*args), capture_output=True, text=True, env=clean, timeout=60
    )


@pytest.fixture
def fresh_db_node(pg, tmp_path):
    """A node pointed at a new, empty database (not bootstrapped), not started."""
    node = KongNode(
        {**pg.kong_conf(pg.create_database()), "db_update_frequency": 0.5}, bootstrap=False
    )
    yield node
    node.kong("stop", "-p", node.prefix, with_conf=False)
    node.close()


def test_version():
    result = run("version")
    assert (result.returncode, result.stdout) == (0, "3.9.3\n")


def test_check_accepts_a_valid_conf(tmp_path):
    conf = tmp_path / "kong.conf"
    write_conf(str(conf), {"database": "off", "proxy_listen": "0.0.0.0:8000", "log_level": "info"})
    result = run("check", str(conf))
    assert result.returncode == 0
    assert result.stdout == f"configuration at {conf} is valid\n"


def test_check_rejects_unknown_keys_and_bad_values(tmp_path):
    conf = tmp_path / "kong.conf"
    conf.write_text(
        "database = mysql\nproxy_listen = nowhere\nnot_a_kong_key = 1\n# comment = ignored\n"
    )
    result = run("check", str(conf))
    assert result.returncode == 1
    assert result.stdout == ""
    errors = result.stderr
    assert f"[error] unknown property 'not_a_kong_key' in {conf}" in errors
    assert "[error] database has an invalid value: 'mysql' (postgres, cassandra, off)" in errors
    assert "[error] proxy_listen must be of form: [off] | <ip>:<port>" in errors
    assert "comment" not in errors


def test_check_reads_kong_env_overrides(tmp_path):
    conf = tmp_path / "kong.conf"
    conf.write_text("database = off\n")
    result = run("check", str(conf), env={"KONG_LOG_LEVEL": "loud"})
    assert result.returncode == 1
    assert "log_level has an invalid value: 'loud'" in result.stderr


def test_config_parse(tmp_path):
    good = tmp_path / "kong.yml"
    good.write_text('_format_version: "3.0"\nservices:\n- name: a\n  url: http://a.test\n')
    result = run("config", "parse", str(good))
    assert (result.returncode, result.stdout) == (0, "parse successful\n")
    bad = tmp_path / "bad.yml"
    bad.write_text('_format_version: "3.0"\nservices:\n- port: 1\n')
    result = run("config", "parse", str(bad))
    assert result.returncode == 1
    assert result.stderr.startswith(
        'Error: Failed parsing:\n{services={{host="required field missing"}}}\n'
    )
    assert "Run with --v (verbose) or --vv (debug) for more details" in result.stderr


def test_db_import_needs_a_database(tmp_path):
    conf = tmp_path / "kong.conf"
    conf.write_text("database = off\n")
    cfg = tmp_path / "kong.yml"
    cfg.write_text('_format_version: "3.0"\n')
    result = run("config", "db_import", str(cfg), "-c", str(conf))
    assert result.returncode == 1
    assert "'kong config db_import' only works with a database" in result.stderr


def test_migrations_life_cycle(fresh_db_node):
    node = fresh_db_node
    listed = node.kong("migrations", "list")
    assert listed.returncode == 3
    assert NEEDS_BOOTSTRAP in listed.stdout
    refused = node.kong("start")
    assert refused.returncode == 1
    assert refused.stderr.startswith("Error: " + NEEDS_BOOTSTRAP)
    up = node.kong("migrations", "up")
    assert up.returncode == 1
    assert "Cannot run migrations: " + NEEDS_BOOTSTRAP in up.stderr

    boot = node.kong("migrations", "bootstrap")
    assert boot.returncode == 0, boot.stderr
    lines = boot.stdout.splitlines()
    assert lines[0] == "Bootstrapping database..."
    assert f"migrating core on database '{node.conf['pg_database']}'..." in lines
    assert "core migrated up to: 024_380_to_390 (executed)" in lines
    assert "key-auth migrated up to: 004_320_to_330 (executed)" in lines
    assert lines[-1] == "Database is up-to-date"
    assert node.kong("migrations", "bootstrap").stdout == "Database already bootstrapped\n"
    listed = node.kong("migrations", "list")
    assert listed.returncode == 0
    assert listed.stdout.startswith("Executed migrations:\n")
    assert "         core: 000_base, 003_100_to_110," in listed.stdout
    assert node.kong("migrations", "up").stdout == "Database is already up-to-date\n"
    assert node.kong("migrations", "finish").stdout == "No pending migrations to finish\n"


@pytest.fixture(scope="module")
def daemon(pg):
    """A bootstrapped node started the default way (``kong start`` daemonises), shared by the
    tests below, which run in order; the last one stops it."""
    node = KongNode({**pg.kong_conf(pg.create_database()), "db_update_frequency": 0.5})
    assert node.kong("migrations", "bootstrap").returncode == 0
    started = node.kong("start")
    assert (started.returncode, started.stdout) == (0, "Kong started\n"), started.stderr
    yield node
    node.kong("stop", "-p", node.prefix, with_conf=False)
    node.close()


def test_daemon_health_pid_and_logs(daemon):
    node = daemon
    pid_file = os.path.join(node.prefix, "pids", "nginx.pid")
    with open(pid_file) as fh:
        assert int(fh.read())
    again = node.kong("start")
    assert again.returncode == 1
    assert f"Error: Kong is already running in {node.prefix}" in again.stderr
    health = node.kong("health", "-p", node.prefix, with_conf=False)
    assert health.returncode == 0
    assert health.stdout == f"nginx.......running\n\nKong is healthy at {node.prefix}\n"
    assert http("GET", node.admin_url + "/").status == 200
    assert http("GET", node.status_url + "/status/ready").json() == {"message": "ready"}
    for log in ("logs/error.log", "logs/access.log", "logs/admin_access.log"):
        assert os.path.isfile(os.path.join(node.prefix, log)), log
    with open(os.path.join(node.prefix, "logs/admin_access.log")) as fh:
        assert '"GET / HTTP/1.1" 200' in fh.read()


def test_db_import_into_a_running_node(daemon, tmp_path):
    node = daemon
    cfg = tmp_path / "kong.yml"
    cfg.write_text(
        '_format_version: "3.0"\nconsumers:\n- username: imported\n  keyauth_credentials:\n'
        "  - key: imported-key\n"
    )
    result = node.kong("config", "db_import", str(cfg))
    assert (result.returncode, result.stdout) == (0, "parse successful\nimport successful\n")
    cred = http("GET", node.admin_url + "/key-auths/imported-key").json()
    assert (
        cred["consumer"]["id"] == http("GET", node.admin_url + "/consumers/imported").json()["id"]
    )
    exported = tmp_path / "exported.yml"
    result = node.kong("config", "db_export", str(exported))
    assert result.returncode == 0, result.stderr
    assert "imported-key" in exported.read_text()


def test_restart_keeps_postgres_configuration(daemon, uid):
    node = daemon
    http("POST", node.admin_url + "/consumers", json={"username": f"keep-{uid}"})
    restarted = node.kong("restart")
    assert restarted.returncode == 0, restarted.stderr
    assert http("GET", node.admin_url + f"/consumers/keep-{uid}").status == 200


def test_reload_rereads_the_conf(daemon):
    node = daemon
    node.conf["plugins"] = "key-auth"
    reloaded = node.kong("reload")
    assert (reloaded.returncode, reloaded.stdout) == (0, "Kong reloaded\n")
    body = None
    for _ in range(200):
        body = http("GET", node.admin_url + "/plugins/enabled").json()
        if body["enabled_plugins"] == ["key-auth"]:
            break
        time.sleep(0.05)
    assert body == {"enabled_plugins": ["key-auth"]}
    resp = http("POST", node.admin_url + "/plugins", json={"name": "rate-limiting"})
    assert resp.status == 400
    assert "plugin 'rate-limiting' not enabled" in resp.json()["message"]


def test_stop(daemon):
    node = daemon
    stopped = node.kong("stop", "-p", node.prefix, with_conf=False)
    assert (stopped.returncode, stopped.stdout) == (0, "Kong stopped\n")
    assert not os.path.exists(os.path.join(node.prefix, "pids", "nginx.pid"))
    health = node.kong("health", "-p", node.prefix, with_conf=False)
    assert health.returncode == 1
    assert f"Error: Kong is not running at {node.prefix}" in health.stderr


def test_foreground_start_with_env_overrides(tmp_path):
    """``KONG_*`` variables override the file, as the systemd unit's KONG_NGINX_DAEMON=off."""
    node = KongNode({"database": "off"}, env={"KONG_PLUGINS": "rate-limiting"})
    with node:
        body = http("GET", node.admin_url + "/plugins/enabled").json()
        assert body == {"enabled_plugins": ["rate-limiting"]}
        assert node.process is not None
        assert node.process.poll() is None  # foreground: the started process is the node


def test_prepare_creates_the_prefix(tmp_path):
    prefix = tmp_path / "prefix"
    conf = tmp_path / "kong.conf"
    conf.write_text("database = off\n")
    result = run("prepare", "-c", str(conf), "-p", str(prefix))
    assert result.returncode == 0, result.stderr
    for sub in ("logs", "pids", ".kong_env"):
        assert (prefix / sub).exists(), sub


def test_start_refuses_an_invalid_declarative_config(tmp_path):
    bad = tmp_path / "kong.yml"
    bad.write_text('_format_version: "3.0"\nservices:\n- port: 1\n')
    node = KongNode({"database": "off", "declarative_config": str(bad)})
    try:
        result = node.kong("start")
        assert result.returncode == 1
        assert result.stderr.startswith(
            f"Error: error parsing declarative config file {bad}:\n"
            '{services={{host="required field missing"}}}'
        )
    finally:
        node.close()


def test_daemon_with_a_multi_line_declarative_config_string():
    text = '_format_version: "3.0"\nconsumers:\n- username: "from-env # not a comment"\n'
    node = KongNode({"database": "off"}, env={"KONG_DECLARATIVE_CONFIG_STRING": text})
    try:
        started = node.kong("start")
        assert started.returncode == 0, started.stderr
        body = http("GET", node.admin_url + "/consumers").json()
        assert [c["username"] for c in body["data"]] == ["from-env # not a comment"]
    finally:
        node.kong("stop", "-p", node.prefix, with_conf=False)
        node.close()


def test_start_without_a_reachable_database(tmp_path):
    from kongsim.testing import free_port

    conf = tmp_path / "kong.conf"
    write_conf(
        str(conf),
        {"prefix": str(tmp_path / "prefix"), "pg_host": "127.0.0.1", "pg_port": free_port()},
    )
    result = run("start", "-c", str(conf))
    assert result.returncode == 1
    assert result.stderr.startswith(
        "Error: [PostgreSQL error] failed to retrieve PostgreSQL server_version_num: "
        "connection refused\n"
    )


def test_headers_off_drops_admin_latency_and_server_tokens():
    with KongNode({"database": "off", "headers": "off"}) as node:
        resp = http("GET", node.admin_url + "/")
        assert "X-Kong-Admin-Latency" not in resp.headers
        assert resp.headers["Server"] == "openresty"


def test_reload_rereads_the_declarative_config(tmp_path):
    path = tmp_path / "kong.yml"
    path.write_text('_format_version: "3.0"\nconsumers:\n- username: before\n')
    node = KongNode({"database": "off", "declarative_config": str(path)})
    try:
        assert node.kong("start").returncode == 0
        path.write_text('_format_version: "3.0"\nconsumers:\n- username: after\n')
        assert node.kong("reload").returncode == 0
        names: list[str] = []
        for _ in range(200):
            names = [
                c["username"] for c in http("GET", node.admin_url + "/consumers").json()["data"]
            ]
            if names == ["after"]:
                break
            time.sleep(0.05)
        assert names == ["after"]
    finally:
        node.kong("stop", "-p", node.prefix, with_conf=False)
        node.close()


def test_console_script_is_installed():
    script = os.path.join(os.path.dirname(sys.executable), "kong")
    result = subprocess.run([script, "version"], capture_output=True, text=True, timeout=60)
    assert (result.returncode, result.stdout) == (0, "3.9.3\n")
