"""The ``kong`` command line (``kong/cmd/*.lua`` of Kong 3.9.3): same subcommands, options,
messages and exit codes for what the simulator implements."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import select
import signal
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from typing import Any

from kongsim import KONG_VERSION
from kongsim import conf as kconf

NEEDS_BOOTSTRAP_MSG = (
    "Database needs bootstrapping or is older than Kong 1.0.\n\n"
    "To start a new installation from scratch, run 'kong migrations bootstrap'.\n\n"
    "To migrate from a version older than 1.0, migrated to Kong 1.5.0 first. \n"
    "If you still have 'apis' entities, you can convert them to Routes and Services\n"
    "using the 'kong migrations migrate-apis' command in Kong 1.5.0.\n\n"
)


# How long `kong start` waits for the daemonised node to report that it listens.
START_TIMEOUT = 60


class CLIError(Exception):
    """Reported as Kong's CLI reports errors: ``Error: <msg>`` and the verbosity hint."""


def out(msg: str = "") -> None:
    print(msg, flush=True)


def log_error(msg: str) -> None:
    """``log.error`` of kong/cmd/utils/log.lua: timestamped, to stderr."""
    sys.stderr.write(f"{time.strftime('%Y/%m/%d %H:%M:%S')} [error] {msg}\n")


def load_conf(args: argparse.Namespace, *, strict: bool = True) -> dict[str, Any]:
    overrides = {}
    if getattr(args, "prefix", None):
        overrides["prefix"] = args.prefix
    try:
        return kconf.load(getattr(args, "conf", None), overrides=overrides, strict=strict)
    except kconf.ConfError as exc:
        raise CLIError("\n".join(exc.errors)) from exc


def running_pid(conf: dict[str, Any]) -> int | None:
    """The pid in ``<prefix>/pids/nginx.pid`` if that process is alive (``kill -0``)."""
    try:
        with open(conf["nginx_pid"], encoding="utf-8") as fh:
            pid = int(fh.read().strip())
    except (OSError, ValueError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        return pid
    return pid


def prefix_conf(args: argparse.Namespace) -> dict[str, Any]:
    """The running node's configuration: ``-p`` or the configured prefix, then ``.kong_env``."""
    default = load_conf(args, strict=False)
    prefix = default["prefix"]
    if not os.path.isdir(prefix):
        raise CLIError(f"no such prefix: {prefix}")
    if not os.path.isfile(default["kong_env"]):
        raise CLIError(f"Kong is not running at {prefix}")
    return kconf.load(default["kong_env"], env={}, strict=False)


# --- database helpers ----------------------------------------------------------------------


def pg_connect(conf: dict[str, Any]) -> Any:
    import psycopg

    from kongsim.store import pg_conninfo

    try:
        return psycopg.connect(autocommit=True, **pg_conninfo(conf))
    except psycopg.OperationalError as exc:
        detail = str(exc).strip().splitlines()[-1] if str(exc).strip() else "connection refused"
        if "Connection refused" in str(exc):
            detail = "connection refused"
        raise CLIError(
            f"[PostgreSQL error] failed to retrieve PostgreSQL server_version_num: {detail}"
        ) from exc


def check_db_state(conf: dict[str, Any]) -> None:
    from kongsim.store import new_migrations, schema_state

    with pg_connect(conf) as conn:
        state = schema_state(conn)
    if state is None:
        raise CLIError(NEEDS_BOOTSTRAP_MSG)
    if new_migrations(state):
        raise CLIError("New migrations available; run 'kong migrations up' to proceed")


# --- commands ------------------------------------------------------------------------------


def cmd_version(args: argparse.Namespace) -> int:
    if args.all:
        out(f"Kong: {KONG_VERSION}")
        out("kongsim: the Kong Gateway simulator (test equipment)")
    else:
        out(KONG_VERSION)
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    path = args.conf_file
    try:
        kconf.load(path)
    except kconf.ConfError as exc:
        for err in exc.errors:
            log_error(err)
        return 1
    out(f"configuration at {path} is valid")
    return 0


def cmd_prepare(args: argparse.Namespace) -> int:
    from kongsim.server import prepare_prefix

    conf = load_conf(args)
    try:
        prepare_prefix(conf)
    except OSError as exc:
        raise CLIError(f"could not prepare Kong prefix at {conf['prefix']}: {exc}") from exc
    return 0


def cmd_start(args: argparse.Namespace) -> int:
    from kongsim.server import StartError, prepare_prefix, serve

    conf = load_conf(args)
    if running_pid(conf):
        raise CLIError(f"Kong is already running in {conf['prefix']}")
    prepare_prefix(conf)
    if conf.get("database") != "off":
        if args.run_migrations:
            _migrate(conf, "bootstrap", quiet=True)
        check_db_state(conf)
    elif conf.get("declarative_config") and not os.path.isfile(conf["declarative_config"]):
        raise CLIError(f"no such file: {conf['declarative_config']}")
    if conf.get("nginx_daemon") == "off":
        try:
            return serve(conf)
        except StartError as exc:
            raise CLIError(str(exc)) from exc
    read_fd, write_fd = os.pipe()
    err_path = kconf.prefix_path(conf, conf.get("proxy_error_log")) or os.devnull
    with (
        open(os.devnull, "rb") as devnull,
        open(err_path if not err_path.startswith("/dev/") else os.devnull, "ab") as err,
    ):
        subprocess.Popen(
            [sys.executable, "-m", "kongsim", "_serve", conf["prefix"], str(write_fd)],
            stdin=devnull,
            stdout=err,
            stderr=err,
            pass_fds=(write_fd,),
            start_new_session=True,
            close_fds=True,
        )
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as pipe:
        ready, _, _ = select.select([pipe], [], [], START_TIMEOUT)
        status = pipe.read().decode(errors="replace").strip() if ready else "timeout"
    if status == "timeout":
        raise CLIError(f"Kong did not start within {START_TIMEOUT} seconds; see {err_path}")
    if status != "ok":
        detail = status.removeprefix("error: ")
        if not detail:
            detail = f"could not start Kong; see {err_path}"
        raise CLIError(detail)
    out("Kong started")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    """Internal: the daemonised node (``kong start`` without ``nginx_daemon = off``)."""
    from kongsim.server import serve

    conf = kconf.load(os.path.join(args.prefix_dir, ".kong_env"), env={}, strict=False)
    try:
        return serve(conf, ready_fd=int(args.ready_fd))
    except Exception:
        return 1


def _alive(pid: int) -> bool:
    """``kill -0``, except that a process that has exited but was not yet reaped by its
    parent (a zombie, e.g. a node a test started) counts as gone."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            return fh.read().rsplit(")", 1)[-1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.05)
    return False


def cmd_stop(args: argparse.Namespace) -> int:
    conf = prefix_conf(args)
    pid = running_pid(conf)
    if not pid:
        raise CLIError(f"nginx not running in prefix: {conf['prefix']}")
    os.kill(pid, 15)
    if not _wait_gone(pid, 10):
        os.kill(pid, 9)
    with contextlib.suppress(OSError):
        os.unlink(conf["nginx_pid"])
    out("Kong stopped")
    return 0


def cmd_quit(args: argparse.Namespace) -> int:
    """``kong/cmd/quit.lua``: wait ``--wait`` seconds while still serving, send SIGQUIT (the
    node finishes its requests), and after ``--timeout`` seconds (at least 1) send SIGTERM."""
    conf = prefix_conf(args)
    pid = running_pid(conf)
    if not pid:
        raise CLIError(f"nginx not running in prefix: {conf['prefix']}")
    wait = max(_seconds(args.wait, "wait"), 0)
    if wait and _wait_gone(pid, wait):
        log_error("Kong stopped while waiting (unexpected)")
        return 0
    os.kill(pid, signal.SIGQUIT)
    if not _wait_gone(pid, max(_seconds(args.timeout, "timeout"), 1)):
        os.kill(pid, signal.SIGTERM)
        if not _wait_gone(pid, 10):
            os.kill(pid, signal.SIGKILL)
        out("Timeout, Kong stopped forcefully")
        return 0
    out("Kong stopped (gracefully)")
    return 0


def _seconds(value: str, name: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise CLIError(f"bad --{name} value: {value}") from None


def cmd_drain(args: argparse.Namespace) -> int:
    """``kong/cmd/drain.lua``: ``POST /status/ready {"status":"draining"}`` to the first status
    listener of the running node's configuration (``<prefix>/.kong_env`` when present)."""
    conf = load_conf(args, strict=False)
    if os.path.isfile(conf["kong_env"]):
        conf = kconf.load(conf["kong_env"], env={}, strict=False)
    listeners = conf.get("status_listeners") or []
    if not listeners:
        out("No status listeners found in configuration.")
        return 0
    listener = listeners[0]
    scheme = "https" if listener.get("ssl") else "http"
    url = f"{scheme}://{listener['ip']}:{listener['port']}/status/ready"
    request = urllib.request.Request(  # noqa: S310 - the node's own status listener
        url,
        data=json.dumps({"status": "draining"}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with urllib.request.urlopen(request, timeout=1, context=context) as resp:  # noqa: S310
            status = resp.status
    except urllib.error.HTTPError as exc:
        status = exc.code
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        out(f"Failed to send request to {url}: {reason}")
        return 0
    if status != 204:
        out(f"Unexpected response status from {url}: {status}")
        return 0
    out("Kong's status successfully changed to 'draining'")
    return 0


def cmd_reload(args: argparse.Namespace) -> int:
    conf = load_conf(args)
    pid = running_pid(conf)
    if not pid:
        raise CLIError(f"nginx not running in prefix: {conf['prefix']}")
    kconf.write_kong_env(conf)
    os.kill(pid, 1)
    out("Kong reloaded")
    return 0


def cmd_restart(args: argparse.Namespace) -> int:
    conf = load_conf(args)
    pid = running_pid(conf)
    if pid:
        os.kill(pid, 15)
        _wait_gone(pid, 10)
    return cmd_start(args)


def cmd_health(args: argparse.Namespace) -> int:
    conf = prefix_conf(args)
    running = running_pid(conf) is not None
    out("nginx".ljust(12, ".") + ("running" if running else "not running"))
    out("")
    if not running:
        raise CLIError(f"Kong is not running at {conf['prefix']}")
    out(f"Kong is healthy at {conf['prefix']}")
    return 0


def _migrate(
    conf: dict[str, Any], command: str, *, quiet: bool = False, force: bool = False
) -> int:
    from kongsim.store import (
        MIGRATIONS,
        db_desc,
        format_migrations,
        new_migrations,
        run_migrations,
        schema_state,
    )

    say = (lambda msg: None) if quiet else out
    if conf.get("database") == "off":
        raise CLIError("cannot run migrations with 'database = off'")
    with pg_connect(conf) as conn:
        state = schema_state(conn)
        if command == "bootstrap":
            if state is not None:
                say("Database already bootstrapped")
                return 0
            say("Bootstrapping database...")
            run_migrations(conn, dict(MIGRATIONS), say, db_desc(conf))
            say("Database is up-to-date")
            return 0
        if command == "list":
            if state is None:
                out(NEEDS_BOOTSTRAP_MSG)
                return 3
            out("Executed migrations:\n" + format_migrations(state))
            pending = new_migrations(state)
            if pending:
                out("\nNew migrations available:\n" + format_migrations(pending))
                out("\nRun 'kong migrations up' to proceed")
                return 5
            return 0
        if state is None:
            raise CLIError("Cannot run migrations: " + NEEDS_BOOTSTRAP_MSG)
        if command == "up":
            pending = new_migrations(state)
            if not pending and not force:
                say("Database is already up-to-date")
                return 0
            run_migrations(conn, pending or dict(MIGRATIONS), say, db_desc(conf))
            return 0
        if command == "finish":
            if new_migrations(state):
                say("\nNew migrations available; run 'kong migrations up' to proceed")
                return 0
            say("No pending migrations to finish")
            return 0
        if command == "reset":
            say("Resetting database...")
            conn.execute("DROP SCHEMA public CASCADE")
            conn.execute("CREATE SCHEMA public")
            say("Database successfully reset")
            return 0
        if command == "status":
            out("Executed migrations:\n" + format_migrations(state))
            return 0
    raise CLIError(f"unknown command '{command}'")


def cmd_migrations(args: argparse.Namespace) -> int:
    conf = load_conf(args)
    if args.command == "reset" and not args.yes:
        if not sys.stdin.isatty():
            raise CLIError("not a tty: invoke 'reset' non-interactively with the --yes flag")
        if input("Are you sure? This operation is irreversible. [Y/n] ").strip().lower() not in (
            "y",
            "yes",
            "",
        ):
            out("cancelled")
            return 0
    return _migrate(conf, args.command, quiet=args.quiet, force=args.force)


def _parse_declarative(
    conf: dict[str, Any], path: str, *, dbless: bool
) -> dict[str, list[dict[str, Any]]]:
    from kongsim import declarative
    from kongsim.dao import DAO
    from kongsim.errors import KongError
    from kongsim.store import MemoryStore

    if not os.path.isfile(path):
        raise CLIError(f"No such file or directory: {path}")
    with open(path, encoding="utf-8") as fh:
        text = fh.read()
    dao = DAO(MemoryStore(), conf["loaded_plugins"], dbless=dbless)
    try:
        return declarative.load(dao, declarative.parse_text(text))
    except KongError as exc:
        raise CLIError(
            "Failed parsing:\n"
            + exc.body["message"].removeprefix("declarative config is invalid: ")
        ) from exc


def cmd_config(args: argparse.Namespace) -> int:
    conf = load_conf(args)
    if args.command == "parse":
        _parse_declarative(conf, args.file, dbless=conf.get("database") == "off")
        out("parse successful")
        return 0
    if args.command == "db_import":
        if conf.get("database") == "off":
            raise CLIError(
                "'kong config db_import' only works with a database.\n"
                "When using database=off, reload your declarative configuration\n"
                "using the /config endpoint."
            )
        rows = _parse_declarative(conf, args.file, dbless=False)
        out("parse successful")
        import asyncio

        asyncio.run(_db_import(conf, rows))
        out("import successful")
        return 0
    if args.command == "db_export":
        import asyncio

        text = asyncio.run(_db_export(conf))
        target = args.file or "kong.yaml"
        if target == "-":
            sys.stdout.write(text)
            return 0
        with open(target, "w", encoding="utf-8") as fh:
            fh.write(text)
        out(f"exported configuration to {target}")
        return 0
    if args.command == "init":
        target = args.file or "kong.yml"
        with open(target, "w", encoding="utf-8") as fh:
            fh.write('_format_version: "3.0"\n_transform: true\n\nservices: []\nconsumers: []\n')
        out(f"Created '{target}' file")
        return 0
    raise CLIError(f"unknown command '{args.command}'")


async def _db_import(conf: dict[str, Any], rows: dict[str, list[dict[str, Any]]]) -> None:
    from kongsim.entities import ORDER
    from kongsim.store import PostgresStore

    check_db_state(conf)
    store = await PostgresStore.connect(conf)
    try:
        async with store.transaction():
            for entity in ORDER:
                for row in rows.get(entity, []):
                    await store.save(entity, row)
    finally:
        await store.close()


async def _db_export(conf: dict[str, Any]) -> str:
    from kongsim import declarative
    from kongsim.entities import ORDER
    from kongsim.store import PostgresStore

    store = await PostgresStore.connect(conf)
    try:
        rows = {entity: await store.all(entity) for entity in ORDER}
    finally:
        await store.close()
    return declarative.export(rows)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kong", description="Kong 3.9.3 command line (kongsim)")
    parser.add_argument("--v", action="store_true", help="verbose")
    parser.add_argument("--vv", action="store_true", help="debug")
    sub = parser.add_subparsers(dest="cmd")

    def with_conf(p: argparse.ArgumentParser, prefix: bool = True) -> argparse.ArgumentParser:
        p.add_argument("-c", "--conf", help="configuration file")
        if prefix:
            p.add_argument("-p", "--prefix", help="override prefix directory")
        p.add_argument("--v", action="store_true", help="verbose")
        p.add_argument("--vv", action="store_true", help="debug")
        return p

    p = with_conf(sub.add_parser("start"))
    p.add_argument("--nginx-conf")
    p.add_argument("--run-migrations", action="store_true")
    p.set_defaults(func=cmd_start)
    p = with_conf(sub.add_parser("restart"))
    p.add_argument("--nginx-conf")
    p.add_argument("--run-migrations", action="store_true")
    p.set_defaults(func=cmd_restart)
    for name, func in (("stop", cmd_stop), ("health", cmd_health)):
        p = sub.add_parser(name)
        p.add_argument("-p", "--prefix")
        p.add_argument("--v", action="store_true")
        p.add_argument("--vv", action="store_true")
        p.set_defaults(func=func, conf=None)
    p = sub.add_parser("quit")
    p.add_argument("-p", "--prefix")
    p.add_argument("-t", "--timeout", default="10")
    p.add_argument("-w", "--wait", default="0")
    p.set_defaults(func=cmd_quit, conf=None)
    p = with_conf(sub.add_parser("drain"))
    p.set_defaults(func=cmd_drain)
    p = with_conf(sub.add_parser("reload"))
    p.add_argument("--nginx-conf")
    p.set_defaults(func=cmd_reload)
    p = with_conf(sub.add_parser("prepare"))
    p.add_argument("--nginx-conf")
    p.set_defaults(func=cmd_prepare)
    p = sub.add_parser("check")
    p.add_argument("conf_file", nargs="?", default="/etc/kong/kong.conf")
    p.set_defaults(func=cmd_check)
    p = sub.add_parser("version")
    p.add_argument("-a", "--all", action="store_true")
    p.set_defaults(func=cmd_version)
    p = with_conf(sub.add_parser("migrations"), prefix=True)
    p.add_argument("command", choices=["bootstrap", "up", "finish", "list", "reset", "status"])
    p.add_argument("-y", "--yes", action="store_true")
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("-f", "--force", action="store_true")
    p.add_argument("--db-timeout")
    p.add_argument("--lock-timeout")
    p.set_defaults(func=cmd_migrations)
    p = with_conf(sub.add_parser("config"), prefix=True)
    p.add_argument("command", choices=["parse", "db_import", "db_export", "init"])
    p.add_argument("file", nargs="?")
    p.set_defaults(func=cmd_config)
    p = sub.add_parser("_serve", help=argparse.SUPPRESS)
    p.add_argument("prefix_dir")
    p.add_argument("ready_fd")
    p.set_defaults(func=cmd_serve)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    if args.cmd == "config" and args.command in ("parse", "db_import") and not args.file:
        parser.error(f"config {args.command}: missing argument <file>")
    try:
        return int(args.func(args) or 0)
    except CLIError as exc:
        sys.stderr.write(f"Error: {exc}\n")
        sys.stderr.write("\n  Run with --v (verbose) or --vv (debug) for more details\n")
        return 1
    except KeyboardInterrupt:
        return 130
