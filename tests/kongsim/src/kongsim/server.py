"""The node: storage, Admin API, status API and proxy listeners in one asyncio process.

Implements :class:`kongsim.runtime.Runtime` for the proxy side: ``snapshot`` is rebuilt after every
local write, and in PostgreSQL mode also when another node's write bumps the change counter
(polled every ``db_update_frequency`` seconds, as Kong polls its cluster events).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import ssl
import time
import uuid
from typing import Any

from aiohttp import web

from kongsim import KONG_VERSION, declarative, tls
from kongsim import conf as kconf
from kongsim.admin import AdminAPI, json_response
from kongsim.balancer import Balancers
from kongsim.dao import DAO, expired, public
from kongsim.errors import HTTPError, KongError
from kongsim.runtime import Snapshot
from kongsim.store import MemoryStore, PostgresStore, Store

log = logging.getLogger("kongsim")


def _write_text(path: str, text: str) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(text)


def _read_text(path: str) -> str:
    with open(path, encoding="utf-8") as fh:
        return fh.read()


@web.middleware
async def _client_certificate_required(request: web.Request, handler: Any) -> web.StreamResponse:
    """``ssl_verify_client on`` (injected into the Admin API's server block): a request over TLS
    without a verified client certificate gets nginx's 400 page; plain-HTTP listeners of the
    same server block are not concerned (nginx checks only SSL connections)."""
    transport = request.transport
    sslobj = transport.get_extra_info("ssl_object") if transport is not None else None
    if sslobj is not None and not sslobj.getpeercert(binary_form=True):
        return web.Response(
            status=400,
            text=tls.NO_CLIENT_CERT_PAGE,
            content_type="text/html",
            headers={"Server": "openresty", "Connection": "close"},
        )
    return await handler(request)


class Node:
    """One simulated Kong node (the ``Runtime`` the proxy app is given)."""

    def __init__(self, conf: dict[str, Any]):
        self._conf = conf
        self.dbless = conf.get("database") == "off"
        self.store: Store = MemoryStore()
        self.dao = DAO(self.store, conf["loaded_plugins"], dbless=self.dbless)
        self._snapshot = Snapshot(version="0")
        self.config_hash = declarative.EMPTY_HASH
        self.node_id = self._node_id()
        self.stats = {"total_requests": 0}
        self.ready = False
        # ``kong drain`` (POST /status/ready): readiness answers 503 until the node restarts,
        # as Kong keeps the flag in its ``kong`` shm.
        self.draining = False
        self._quitting = False
        self._handlers: set[asyncio.Task[Any]] = set()
        self._idle = asyncio.Event()
        self._idle.set()
        self._runners: list[web.AppRunner] = []
        self._tasks: list[asyncio.Task[Any]] = []
        self._seen_version = -1
        self._stopped = asyncio.Event()
        self._access_logs: dict[str, Any] = {}
        # Per-node balancers and health state (the proxy reads ``balancers.by_name``).
        self.balancers = Balancers(lambda: tls.trusted_bundle(self._conf))
        self._event_id = 0
        # The proxy listener's certificates by SNI (certificates and snis entities).
        self.sni_map = tls.SNIMap()
        self._listener_contexts: dict[str, Any] = {}

    # --- Runtime protocol -------------------------------------------------------------------

    @property
    def snapshot(self) -> Snapshot:
        return self._snapshot

    @property
    def conf(self) -> dict[str, Any]:
        return self._conf

    # --- life cycle -------------------------------------------------------------------------

    def _node_id(self) -> str:
        path = os.path.join(self._conf["prefix"], "kong.id")
        try:
            with open(path, encoding="utf-8") as fh:
                return fh.read().strip()
        except OSError:
            node_id = str(uuid.uuid4())
            with contextlib.suppress(OSError), open(path, "w", encoding="utf-8") as fh:
                fh.write(node_id)
            return node_id

    async def start(self) -> None:
        conf = self._conf
        if self.dbless:
            await self._load_initial_declarative()
        else:
            self.store = await PostgresStore.connect(conf)
            self.dao.store = self.store
            self._event_id = await self.store.last_event_id()
        await self.refresh(force=True)
        # every family's certificates before the first listener opens (the Admin API
        # answering means the node is up, TLS ports included)
        contexts = await asyncio.to_thread(self._tls_contexts)
        self._listener_contexts = contexts
        await self._listen("admin_listeners", AdminAPI(self).app(), contexts)
        await self._listen(
            "status_listeners", self._upstream_status_routes(self.status_app()), contexts
        )
        if conf.get("proxy_listeners"):
            from kongsim.proxy import create_proxy_app

            await self._listen("proxy_listeners", create_proxy_app(self), contexts)
        if not self.dbless:
            self._tasks.append(asyncio.ensure_future(self._poll()))
        self.ready = True
        log.info("kongsim %s started (database=%s)", KONG_VERSION, conf.get("database"))

    def _reload_listener_certificates(self) -> None:
        """nginx re-reads ``ssl_certificate`` files on a reload (new workers): the listeners'
        contexts load the configured pairs again, so new handshakes get the new certificate
        while open connections carry on. A pair that fails to load keeps the old one, as a
        reload with a bad certificate leaves the old workers serving.

        Runs on the event loop's thread, between handshakes (which run there too): a handshake
        never meets a context whose certificate is new and its key still the old one. The pairs
        are tried on a scratch context first, so a key that does not match its certificate
        leaves the served context untouched."""
        for key, context in self._listener_contexts.items():
            try:
                pairs = tls.listener_certificates(self._conf, key)
                scratch = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
                for cert, cert_key in pairs:
                    scratch.load_cert_chain(cert, cert_key)
                for cert, cert_key in pairs:
                    context.load_cert_chain(cert, cert_key)
            except (tls.ConfError, ssl.SSLError, OSError) as exc:
                log.error("reload: %s certificates not reloaded: %s", key, exc)

    def _tls_contexts(self) -> dict[str, Any]:
        """A server context per listener family that has an ``ssl`` entry: its ``ssl_cert``
        list, or Kong's generated default certificates."""
        contexts = {}
        for key in tls.FAMILIES:
            if any(entry.get("ssl") for entry in self._conf.get(key) or []):
                context = tls.server_context(tls.listener_certificates(self._conf, key))
                if key == "proxy_listeners":
                    # ssl_certificate_by_lua exists only in the proxy server block
                    context.sni_callback = self.sni_map.callback()
                verification = tls.admin_client_verification(self._conf)
                if key == "admin_listeners" and verification is not None:
                    tls.require_client_certificates(context, verification[1])
                contexts[key] = context
        return contexts

    async def _listen(self, key: str, app: web.Application, contexts: dict[str, Any]) -> None:
        listeners = list(self._conf.get(key) or [])
        if not listeners:
            return
        context = contexts.get(key)
        verification = tls.admin_client_verification(self._conf)
        if key == "admin_listeners" and verification is not None and verification[0] == "on":
            # outermost: nginx answers before any of Kong's Lua runs
            app.middlewares.insert(0, _client_certificate_required)
        app.middlewares.append(self._track)
        # aiohttp's own access log is off: the node writes Kong-style access logs itself.
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        self._runners.append(runner)
        for entry in listeners:
            host = entry["ip"].strip("[]")
            site = web.TCPSite(
                runner,
                host,
                entry["port"],
                reuse_address=True,
                backlog=1024,
                ssl_context=context if entry.get("ssl") else None,
            )
            await site.start()
            ssl_flag = " ssl" if entry.get("ssl") else ""
            log.info("%s listening on %s:%s%s", key, host, entry["port"], ssl_flag)

    @web.middleware
    async def _track(self, request: web.Request, handler: Any) -> web.StreamResponse:
        """Count the requests in flight on every listener (graceful shutdown waits for them)."""
        task = asyncio.current_task()
        if task is not None:
            self._handlers.add(task)
        self._idle.clear()
        try:
            response = await handler(request)
            if self._quitting:
                # nginx turns keep-alive off in a worker that is shutting down.
                response.force_close()
            return response
        finally:
            if task is not None:
                self._handlers.discard(task)
            if not self._handlers:
                self._idle.set()

    async def quit(self) -> None:
        """SIGQUIT, nginx's graceful shutdown: close the listening sockets (new connections are
        refused, the status listener's too), close idle keep-alive connections, let every
        request in flight finish, streams included, with no time limit (``kong quit`` sends
        SIGTERM after its own ``--timeout``), then stop."""
        self._quitting = True
        log.info("gracefully shutting down")
        for runner in self._runners:
            for site in list(runner.sites):
                await site.stop()
            server = runner.server
            for conn in list(getattr(server, "connections", None) or []):
                # RequestHandler.close(): finish the current request, then close.
                conn.close()
        await self._idle.wait()
        await self.stop()

    async def stop(self) -> None:
        """Stop now (SIGTERM, nginx's fast shutdown): requests in flight are cut off."""
        for task in list(self._handlers):
            task.cancel()
        for task in self._tasks:
            task.cancel()
        for runner in reversed(self._runners):
            await runner.cleanup()
        self.balancers.stop()
        await self.store.close()
        for fh in self._access_logs.values():
            fh.close()
        self._stopped.set()

    async def wait_stopped(self) -> None:
        await self._stopped.wait()

    async def reload(self, conf: dict[str, Any]) -> None:
        """SIGHUP: pick up a re-read kong.conf (plugins, db_update_frequency, declarative
        config); listeners stay as they are."""
        keep = {
            k: self._conf[k] for k in ("proxy_listeners", "admin_listeners", "status_listeners")
        }
        self._conf = {**conf, **keep}
        self.dao.enabled_plugins = list(conf["loaded_plugins"])
        self._reload_listener_certificates()
        self.balancers.forget_trust()
        if self.dbless and (
            conf.get("declarative_config") or conf.get("declarative_config_string")
        ):
            await self._load_initial_declarative()
        await self.refresh(force=True)
        log.info("configuration reloaded")

    async def _load_initial_declarative(self) -> None:
        conf = self._conf
        text = conf.get("declarative_config_string")
        if not text and conf.get("declarative_config"):
            text = await asyncio.to_thread(_read_text, conf["declarative_config"])
        if not text:
            return
        rows = declarative.load(self.dao, declarative.parse_text(text))
        await self.store.replace_all(rows)
        self.config_hash = declarative.config_hash(text, rows)

    # --- configuration changes --------------------------------------------------------------

    async def refresh(self, *, force: bool = False) -> None:
        version = await self.store.version()
        if not force and version == self._seen_version:
            return
        rows = await self.dao.snapshot_rows()
        creds = []
        for row in rows["keyauth_credentials"]:
            cred = public(row)
            cred.pop("ttl", None)
            cred["expires_at"] = row.get("_expires_at")
            creds.append(cred)
        self._snapshot = Snapshot(
            version=f"{version}-{time.monotonic_ns()}",
            services={r["id"]: public(r) for r in rows["services"]},
            routes=[public(r) for r in rows["routes"]],
            consumers={r["id"]: public(r) for r in rows["consumers"]},
            plugins=[public(r) for r in rows["plugins"]],
            keyauth_credentials=creds,
            upstreams=[public(r) for r in rows["upstreams"]],
            targets=[public(r) for r in rows["targets"]],
            certificates={r["id"]: public(r) for r in rows["certificates"]},
            snis=[public(r) for r in rows["snis"]],
            ca_certificates={r["id"]: public(r) for r in rows["ca_certificates"]},
        )
        self.sni_map.update(self._snapshot.certificates, self._snapshot.snis)
        await self.balancers.rebuild(self._snapshot.upstreams, self._snapshot.targets)
        self._seen_version = version

    async def changed(self) -> None:
        """Called after a local write: publish the new configuration at once."""
        await self.refresh(force=True)

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(float(self._conf.get("db_update_frequency") or 5))
            try:
                await self.refresh()
                await self._cluster_events()
            except Exception:  # a database outage must not kill the node; Kong keeps serving
                log.exception("could not poll the database for changes")

    async def _cluster_events(self) -> None:
        """Apply the other nodes' ``balancer:post_health`` events (runloop/events.lua)."""
        for event_id, channel, data in await self.store.events_since(self._event_id, self.node_id):
            self._event_id = event_id
            if data is not None and channel == "balancer:post_health":
                self.balancers.post_health(
                    data["upstream"], data["target"], data.get("address"), data["healthy"]
                )

    async def post_health(
        self, upstream: str, target: str, address: str | None, healthy: bool
    ) -> str | None:
        """Manual health on this node, then broadcast to the cluster (a no-op DB-less)."""
        err = self.balancers.post_health(upstream, target, address, healthy)
        if err is None:
            event = {"upstream": upstream, "target": target, "address": address}
            await self.store.broadcast(
                "balancer:post_health", {**event, "healthy": healthy}, self.node_id
            )
        return err

    async def db_reachable(self) -> bool:
        try:
            await self.store.version()
        except Exception:
            return False
        return True

    def plugins_in_use(self) -> list[str]:
        return sorted({p["name"] for p in self._snapshot.plugins})

    # --- DB-less /config --------------------------------------------------------------------

    def export_config(self) -> str:
        snapshot_rows = {
            "services": list(self._snapshot.services.values()),
            "routes": self._snapshot.routes,
            "consumers": list(self._snapshot.consumers.values()),
            "plugins": self._snapshot.plugins,
            "keyauth_credentials": [
                {k: v for k, v in c.items() if k != "expires_at"}
                for c in self._snapshot.keyauth_credentials
                if not expired({"_expires_at": c.get("expires_at")})
            ],
            "upstreams": self._snapshot.upstreams,
            "targets": self._snapshot.targets,
            "certificates": list(self._snapshot.certificates.values()),
            "snis": self._snapshot.snis,
            "ca_certificates": list(self._snapshot.ca_certificates.values()),
        }
        return declarative.export(snapshot_rows)

    async def post_config(self, request: web.Request) -> web.Response:
        """``POST /config`` (kong/api/routes/config.lua)."""
        query = request.query
        # kong/api/routes/config.lua: check_hash must be "1"; flatten_errors is any truthy word
        check_hash = query.get("check_hash") == "1"
        flatten = (query.get("flatten_errors") or "").lower() in ("1", "true", "on", "yes")
        ctype = (request.headers.get("Content-Type") or "").lower()
        raw = await request.read()
        text: str | None = None
        config: Any = None
        if not ctype:
            if not raw:
                raise HTTPError(400, {"message": "expected a declarative configuration"})
            raise HTTPError(415)
        if ctype.startswith("application/json"):
            try:
                body = json.loads(raw.decode() if raw else "")
            except (ValueError, UnicodeDecodeError) as exc:
                raise HTTPError(400, {"message": "Cannot parse JSON body"}) from exc
            if isinstance(body, dict) and "_format_version" in body:
                config = body
            elif isinstance(body, dict) and isinstance(body.get("config"), str):
                text = body["config"]
            else:
                # neither a config nor a "config" string: the raw body is the configuration
                text = raw.decode(errors="replace")
        elif ctype.startswith(("application/yaml", "text/yaml")):
            text = raw.decode(errors="replace")
        elif ctype.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
            form = await request.post() if raw or ctype.startswith("multipart") else {}
            value = form.get("config") if form else None
            if value is None:
                from urllib.parse import parse_qs

                value = (parse_qs(raw.decode()).get("config") or [None])[0]
            if not isinstance(value, str):
                raise HTTPError(400, {"message": "expected a declarative configuration"})
            text = value
        else:
            raise HTTPError(415)
        if text is not None:
            new_hash = declarative.config_hash(text)
            if check_hash and new_hash == self.config_hash:
                raise HTTPError(304)
            try:
                config = declarative.parse_text(text)
            except KongError as exc:
                raise exc from None
        else:
            new_hash = declarative.config_hash(json.dumps(config, sort_keys=True))
        try:
            rows = declarative.load(self.dao, config)
        except declarative.DeclarativeError as exc:
            body_err = dict(exc.body)
            body_err["fields"] = declarative.json_errors(exc.fields)
            if flatten:
                body_err["flattened_errors"] = exc.flattened
            raise HTTPError(400, body_err) from exc
        await self.store.replace_all(rows)
        self.config_hash = new_hash if any(rows.values()) else declarative.EMPTY_HASH
        await self.changed()
        return json_response(
            201,
            {
                entity: {r["id"]: public(r) for r in items}
                for entity, items in rows.items()
                if items
            },
        )

    # --- status listener --------------------------------------------------------------------

    def _upstream_status_routes(self, app: web.Application) -> web.Application:
        """DB-less only: the status listener also answers the upstream routes' GETs
        (``/upstreams/{u}/health``, ``/targets``, ``/targets/all``; kong/status/init.lua)."""
        if not self.dbless:
            return app
        from kongsim import admin_upstreams

        admin = AdminAPI(self)

        async def upstream_get(request: web.Request) -> web.Response:
            segments = [s for s in request.path.split("/") if s]
            if segments[2:] not in (["health"], ["targets"], ["targets", "all"]):
                return json_response(404, {"message": "Not found"})
            try:
                response = await admin_upstreams.dispatch(admin, request, segments)
            except HTTPError as exc:
                return json_response(exc.status, exc.body, exc.headers)
            assert isinstance(response, web.Response)
            return response

        app.router.add_get("/upstreams/{tail:.+}", upstream_get)
        return app

    def status_app(self) -> web.Application:
        admin = AdminAPI(self)

        async def ready(request: web.Request) -> web.Response:
            if self.draining:
                return json_response(503, {"message": "draining"})
            if not self.ready:
                return json_response(503, {"message": "Kong is not ready"})
            if self.dbless and self.config_hash == declarative.EMPTY_HASH:
                return json_response(
                    503, {"message": "no configuration available (empty configuration present)"}
                )
            if not self.dbless and not await self.db_reachable():
                return json_response(503, {"message": "failed to connect to database"})
            return json_response(200, {"message": "ready"})

        async def drain(request: web.Request) -> web.Response:
            """``kong/status/ready.lua`` POST: ``status=draining`` (JSON body, form or query,
            as Kong's request params merge them) sets the flag and answers 204; anything else
            400 with no body."""
            params: dict[str, Any] = dict(request.query)
            ctype = (request.content_type or "").lower()
            raw = await request.read()
            with contextlib.suppress(ValueError, UnicodeDecodeError):
                if ctype == "application/json" and raw:
                    body = json.loads(raw)
                    if isinstance(body, dict):
                        params.update(body)
                elif ctype in ("application/x-www-form-urlencoded", "multipart/form-data"):
                    params.update(await request.post())
            if params.get("status") == "draining":
                self.draining = True
                log.info("status changed to 'draining'")
                return web.Response(status=204)
            return web.Response(status=400)

        async def status(request: web.Request) -> web.Response:
            return await admin.status(request)

        @web.middleware
        async def headers(request: web.Request, handler: Any) -> web.StreamResponse:
            response = await handler(request)
            response.headers["Server"] = f"kong/{KONG_VERSION}"
            return response

        app = web.Application(middlewares=[headers])
        app.router.add_get("/status/ready", ready)
        app.router.add_post("/status/ready", drain)
        app.router.add_get("/status", status)
        return app

    # --- logs -------------------------------------------------------------------------------

    def log_error(self, msg: str, *, exc_info: bool = False) -> None:
        log.error(msg, exc_info=exc_info)

    def access_log(self, kind: str, request: web.Request, status: int) -> None:
        """Kong's default access log line (nginx ``combined``-like) under the prefix."""
        key = {"admin": "admin_access_log", "proxy": "proxy_access_log"}.get(
            kind, "proxy_access_log"
        )
        path = kconf.prefix_path(self._conf, self._conf.get(key))
        if not path:
            return
        fh = self._access_logs.get(path)
        if fh is None:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            fh = open(path, "a", encoding="utf-8", buffering=1)  # noqa: SIM115 - kept open for the node's life
            self._access_logs[path] = fh
        peer = request.remote or "-"
        stamp = time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime())
        agent = request.headers.get("User-Agent", "-")
        version = f"{request.version.major}.{request.version.minor}"
        fh.write(
            f'{peer} - - [{stamp}] "{request.method} {request.path_qs} HTTP/{version}" '
            f'{status} 0 "-" "{agent}"\n'
        )


def setup_logging(conf: dict[str, Any]) -> None:
    path = kconf.prefix_path(conf, conf.get("proxy_error_log"))
    level = {
        "debug": logging.DEBUG,
        "info": logging.INFO,
        "notice": logging.INFO,
        "warn": logging.WARNING,
    }.get(str(conf.get("log_level")), logging.ERROR)
    handler: logging.Handler
    if path and path not in ("/dev/stderr", "/dev/stdout"):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        handler = logging.FileHandler(path)
    else:
        handler = logging.StreamHandler()
    handler.setFormatter(
        logging.Formatter(
            "%(asctime)s [%(levelname)s] %(process)d#0: %(message)s", "%Y/%m/%d %H:%M:%S"
        )
    )
    root = logging.getLogger("kongsim")
    root.handlers[:] = [handler]
    root.setLevel(level)


def prepare_prefix(conf: dict[str, Any]) -> None:
    """``kong prepare``: the prefix tree Kong creates (logs, pids) and the running config."""
    prefix = conf["prefix"]
    for sub in ("logs", "pids"):
        os.makedirs(os.path.join(prefix, sub), exist_ok=True)
    for key in ("proxy_access_log", "proxy_error_log", "admin_access_log", "admin_error_log"):
        path = kconf.prefix_path(conf, conf.get(key))
        if path and not path.startswith("/dev/"):
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "a", encoding="utf-8"):
                pass
    kconf.write_kong_env(conf)


class StartError(Exception):
    """The node could not start; the message is what ``kong start`` prints."""


def start_error_message(exc: Exception, conf: dict[str, Any]) -> str:
    if isinstance(exc, tls.ConfError):
        return str(exc)
    if isinstance(exc, OSError) and exc.errno == 98:
        # what nginx prints when a listener's port is taken
        return f"nginx: [emerg] bind() failed (98: Address already in use): {exc}"
    if isinstance(exc, KongError) and conf.get("declarative_config"):
        body = exc.body if isinstance(exc.body, dict) else {}
        detail = str(body.get("message", exc)).removeprefix("declarative config is invalid: ")
        return f"error parsing declarative config file {conf['declarative_config']}:\n{detail}"
    return str(exc) or exc.__class__.__name__


def serve(conf: dict[str, Any], *, ready_fd: int | None = None) -> int:
    """Run a node until SIGTERM/SIGINT/SIGQUIT; SIGHUP reloads. Returns the exit status."""
    with contextlib.suppress(ImportError):
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    setup_logging(conf)
    return asyncio.run(_serve(conf, ready_fd))


async def _serve(conf: dict[str, Any], ready_fd: int | None) -> int:
    node = Node(conf)
    try:
        await node.start()
    except Exception as exc:
        message = start_error_message(exc, conf)
        log.error("could not start Kong: %s", message)
        with contextlib.suppress(Exception):
            await node.stop()
        if ready_fd is not None:
            os.write(ready_fd, f"error: {message}\n".encode())
            os.close(ready_fd)
        raise StartError(message) from exc
    pid_path = conf["nginx_pid"]
    os.makedirs(os.path.dirname(pid_path), exist_ok=True)
    await asyncio.to_thread(_write_text, pid_path, f"{os.getpid()}\n")
    if ready_fd is not None:
        os.write(ready_fd, b"ok\n")
        os.close(ready_fd)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    graceful = False

    def on_stop(quit_: bool) -> None:
        nonlocal graceful
        if stop.is_set() and not quit_:
            # SIGTERM during a graceful shutdown (``kong quit`` timed out): stop now.
            graceful_task.cancel()
            return
        graceful = graceful or quit_
        stop.set()

    graceful_task: asyncio.Future[None] = loop.create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_stop, False)
    loop.add_signal_handler(signal.SIGQUIT, on_stop, True)

    reloads: set[asyncio.Future[None]] = set()

    def on_hup() -> None:
        async def do_reload() -> None:
            try:
                new_conf = kconf.load(conf["kong_env"], env={}, strict=False)
                await node.reload(new_conf)
            except Exception:
                log.exception("reload failed")

        reloads.add(asyncio.ensure_future(do_reload()))

    loop.add_signal_handler(signal.SIGHUP, on_hup)
    await stop.wait()
    log.info("exiting")
    if graceful:
        graceful_task = asyncio.ensure_future(node.quit())
        try:
            await graceful_task
        except asyncio.CancelledError:
            await node.stop()
    else:
        await node.stop()
    with contextlib.suppress(OSError):
        os.unlink(pid_path)
    return 0
