"""The daemon: opens the store, listens, supervises every connection, shuts down gracefully.

Each connection runs in the daemon's handler nursery behind a handler that catches
everything, so a failure in one connection (or in a plugin) never ends another or the daemon.
Shutdown: stop accepting, let every agent connection commit and acknowledge what it received
and close with 1001, bounded by ``server.drain_timeout``; then close the store.
"""

from __future__ import annotations

import itertools
import math
import os
import signal
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path

import structlog
import trio
from trio_websocket import ConnectionClosed, WebSocketConnection, WebSocketRequest

from agentwatch import __version__, daemon_file
from agentwatch.admission import Admission, Slot, serve_admitted
from agentwatch.auth import HandshakeGuard, ensure_token
from agentwatch.config import Config, ConfigError
from agentwatch.file_errors import explain
from agentwatch.handshake import handshake, peer
from agentwatch.hosts import AllowedHosts
from agentwatch.identity import AGENT_ID, AGENT_ID_RULE
from agentwatch.daemon_metrics import DaemonMetrics
from agentwatch.ingest import CLOSE_TIMEOUT, AgentConnection
from agentwatch.keepalive import CLOSE_PING_TIMEOUT, unanswered_ping
from agentwatch.limits import connection_cap, raise_fd_limit
from agentwatch.addresses import UnixAddress, parse_address
from agentwatch.listeners import bound_address, open_listener
from agentwatch.logs import get_logger, set_level
from agentwatch.metrics import Registry
from agentwatch.metrics_http import METRICS_PATH, serve_metrics
from agentwatch.model import StoredEvent
from agentwatch.plugin_manager import PluginError, Plugins
from agentwatch.reload import reconcile
from agentwatch.safe_write import make_private_dir
from agentwatch.sd_notify import Notifier
from agentwatch.session_facts import SessionFacts
from agentwatch.socket_activation import ActivationError, InheritedSocket, inherited_sockets
from agentwatch.store import SessionKey, Store
from agentwatch.subscriptions import ConnectionSubscriptions
from agentwatch.supervision import supervise
from agentwatch.watch import WatchConnection
from agentwatch.watch_budget import WatchBudget

log = get_logger(__name__)

AGENT_PATH = "/v1/agents/"
WATCH_PATH = "/v1/watch"
HANDSHAKE_TIMEOUT = 10.0
BUSY_LOG_EVERY = 10.0  # seconds between connection_limit lines


class StartupError(Exception):
    """The daemon cannot start; the message says why and what to do."""


class Daemon:
    """One agentwatch daemon instance with its own plugin manager, store and connections.

    ``notifier`` talks to the service manager; ``inherited`` are listening sockets it passed
    (socket activation), used instead of binding ``server.listen``.
    """

    def __init__(
        self,
        config: Config,
        plugins: Plugins | None = None,
        *,
        notifier: Notifier | None = None,
        inherited: Sequence[InheritedSocket] = (),
    ) -> None:
        self.config = config
        self.notifier = notifier or Notifier(None)
        self._inherited = inherited
        try:
            self.plugins = plugins or Plugins(config["plugins"]["disable"])
            self.formats = self.plugins.formats()
            self.watch_methods = self.plugins.watch_methods()
            self.topics = self.plugins.topics()
            self.plugins.check_config(config)
            self.metrics = DaemonMetrics(self, Registry())
            store = self.plugins.first("agentwatch_open_store", config=config, metrics=self.metrics.registry)
        except PluginError as exc:
            raise StartupError(str(exc)) from None
        if store is None:
            raise StartupError("no plugin provides a store: 'storage' is disabled and no installed plugin replaces it")
        self.store: Store = store
        self.connections: dict[str, AgentConnection] = {}
        self.subscriptions = 0  # live subscriptions on /v1/watch
        self.addresses: list[str] = []
        self.metrics_addresses: list[str] = []  # where Prometheus scrapes (metrics.listen)
        self.events_stored = 0  # since start
        self._socket_files: list[Path] = []  # Unix sockets this daemon made (and removes)
        self._started_at = 0.0
        self._stop_requested = trio.Event()
        self._draining = False
        self._drained = trio.Event()
        self._watchers: dict[WebSocketConnection, trio.CancelScope] = {}  # each one's serving, cancelled at shutdown
        self._watchers_gone = trio.Event()  # set when shutting down and the last watcher has closed
        self._conn_ids = itertools.count(1)
        self.admission = Admission(
            connection_cap(config["server"]["max_connections"], raise_fd_limit()), on_evict=self.metrics.evicted.inc
        )
        self._refused = 0  # connections refused over the limit, since start
        self._refusal_logged_at = -math.inf
        self._guard = HandshakeGuard(None, ())
        self.allowed_hosts = _allowed_hosts(config)  # the Host names its HTTP endpoints answer to
        self.watch_budget = WatchBudget(config["watch"]["max_bytes"])  # replies and notifications held for watchers

    # --- registry of agent connections ---

    def claim(self, conn: AgentConnection) -> AgentConnection | None:
        """Make ``conn`` the agent's connection; return the older one, now closing with 4001."""
        older = self.connections.get(conn.agent_id)
        self.connections[conn.agent_id] = conn
        if older is not None:
            log.info("agent_replaced")
            older.replace()
        if self._draining:
            conn.stop_reading()
        return older

    def release(self, conn: AgentConnection) -> None:
        if self.connections.get(conn.agent_id) is conn:
            del self.connections[conn.agent_id]
        if self._draining and not self.connections:
            self._drained.set()

    def watchers(self) -> int:
        """Connections on /v1/watch now."""
        return len(self._watchers)

    def uptime(self) -> float:
        return trio.current_time() - self._started_at

    def stop(self) -> None:
        """Begin a graceful shutdown (what SIGINT and SIGTERM do)."""
        self._stop_requested.set()

    def status_line(self, events_per_s: float) -> str:
        """One line for ``systemctl status``."""
        return (f"{len(self.connections)} agents connected, {events_per_s:.1f} events/s, "
                f"{self.events_stored} stored since start, {self.watchers()} watchers")

    async def reload(self, load: Callable[[], Config]) -> bool:
        """Take the configuration ``load`` returns (SIGHUP), keeping every connection; a configuration
        that does not load or that a plugin refuses leaves the running one in force."""
        self.notifier.reloading()
        try:
            loaded = await trio.to_thread.run_sync(load)
            update = reconcile(self.config, loaded)
            self.plugins.check_config(update.config)
        except (ConfigError, PluginError) as exc:
            log.error("reload_refused", error=str(exc), hint="the running configuration stays in force; fix the file and reload again")
            return False
        finally:
            self.notifier.ready(self.status_line(0.0))
        previous, self.config = self.config, update.config
        set_level(self.config["log"]["level"])
        self._guard = self._guard.allowing(self.config["auth"]["allowed_origins"])
        self.allowed_hosts = _allowed_hosts(self.config)
        self.watch_budget.limit = self.config["watch"]["max_bytes"]
        self.watch_budget.changed()  # a replay waiting for room may find it now
        self.plugins.notify("agentwatch_config_reloaded", config=self.config, previous=previous)
        if update.needs_restart:
            log.warning("reload_needs_restart", settings=update.needs_restart, hint="these keep their running values until a restart")
        log.info("reloaded", changed=update.changed)
        return True

    # --- running ---

    async def run(self, *, task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve until :meth:`stop`; ``task_status.started`` gets the bound addresses."""
        self._started_at = trio.current_time()
        state_dir = self.config.state_dir
        try:  # the token, the database and daemon.json are made in it by default
            await trio.to_thread.run_sync(make_private_dir, state_dir)
        except OSError as exc:
            raise StartupError(f"cannot use the state directory {state_dir}: {explain(exc, state_dir)}") from None
        auth = self.config["auth"]
        token = None
        if auth["enabled"]:
            token = await trio.to_thread.run_sync(ensure_token, self.config.state_path(auth["token_file"]))
        else:
            log.warning("auth_disabled", hint="any local process can connect; never run like this outside tests")
        self._guard = HandshakeGuard(token, auth["allowed_origins"])
        async with trio.open_nursery() as daemon_nursery:
            await daemon_nursery.start(self.store.run, self._on_commit)
            async with trio.open_nursery() as handlers:
                listeners = await self._listen()
                await self._serve_metrics(daemon_nursery, listeners)
                with trio.CancelScope() as accepting:
                    async with trio.open_nursery() as server_nursery:
                        await server_nursery.start(
                            partial(trio.serve_listeners, self._serve_stream, listeners, handler_nursery=handlers)
                        )
                        self.plugins.notify("agentwatch_startup", daemon=self, nursery=daemon_nursery)
                        await self._announce()
                        log.info(
                            "ready", version=__version__, pid=os.getpid(), addresses=self.addresses, state_dir=str(self.config.state_dir),
                            auth=auth["enabled"], plugins=self.plugins.names(), max_connections=self.admission.limit,
                            config_file=str(self.config.file) if self.config.file else None,
                        )
                        self.notifier.ready(self.status_line(0.0))
                        daemon_nursery.start_soon(supervise, self)
                        task_status.started(self.addresses)
                        await self._stop_requested.wait()
                        self.notifier.stopping()
                        accepting.cancel()
                await self._close(listeners)
                await trio.to_thread.run_sync(daemon_file.withdraw, self.config.state_dir)
                await self._drain(handlers)
            daemon_nursery.cancel_scope.cancel()
        log.info("stopped")

    async def _listen(self) -> list[trio.SocketListener]:
        if self._inherited:
            listeners = [trio.SocketListener(trio.socket.from_stdlib_socket(passed.socket)) for passed in self._inherited]
            self.addresses = [bound_address(listener) for listener in listeners]
            log.info("socket_activated", addresses=self.addresses, names=[passed.name for passed in self._inherited])
            return listeners
        listeners = []
        for text in self.config["server"]["listen"]:
            address = parse_address(text)
            try:
                opened = await open_listener(address)
            except OSError as exc:
                await self._close(listeners)
                raise StartupError(f"cannot listen on {text}: {exc.strerror or exc}; choose another address with --listen") from None
            listeners.extend(opened)
            if isinstance(address, UnixAddress):
                self._socket_files.append(address.path)
        self.addresses = [bound_address(listener) for listener in listeners]
        return listeners

    async def _serve_metrics(self, nursery: trio.Nursery, listeners: list[trio.SocketListener]) -> None:
        """Serve Prometheus metrics on ``metrics.listen`` (a loopback address), if set."""
        if not (text := self.config["metrics"]["listen"]):
            return
        try:
            opened = await open_listener(parse_address(text))
        except OSError as exc:
            await self._close(listeners)
            raise StartupError(f"cannot serve metrics on {text}: {exc.strerror or exc}; choose another metrics.listen") from None
        await nursery.start(serve_metrics, opened, self.metrics.registry, lambda: self.allowed_hosts, self.admission)
        self.metrics_addresses = [bound_address(listener) for listener in opened]
        log.info("metrics_listening", addresses=self.metrics_addresses, path=METRICS_PATH)

    async def _close(self, listeners: list[trio.SocketListener]) -> None:
        """Close listeners (again, harmlessly, if serving closed them) and remove the socket files
        this daemon made; a socket systemd passed stays with systemd."""
        for listener in listeners:
            await listener.aclose()
        for path in self._socket_files:
            path.unlink(missing_ok=True)

    async def _announce(self) -> None:
        """Tell clients where this daemon listens (``daemon.json``); without it they use server.listen."""
        try:
            auth = self.config["auth"]
            token_file = self.config.state_path(auth["token_file"]) if auth["enabled"] else None
            await trio.to_thread.run_sync(daemon_file.announce, self.config.state_dir, self.addresses, token_file)
        except OSError as exc:
            log.warning("daemon_file_failed", error=str(exc), hint="clients fall back to server.listen")

    async def _drain(self, handlers: trio.Nursery) -> None:
        drain_timeout = self.config["server"]["drain_timeout"]
        log.info("draining", connections=len(self.connections), timeout_s=drain_timeout)
        self._draining = True
        if not self.connections:
            self._drained.set()
        for conn in list(self.connections.values()):
            conn.stop_reading()
        for serving in self._watchers.values():
            serving.cancel()
        if not self._watchers:
            self._watchers_gone.set()
        with trio.move_on_after(drain_timeout) as deadline:
            await self._drained.wait()
            await self._watchers_gone.wait()
        if deadline.cancelled_caught:
            log.warning("drain_timeout", connections=len(self.connections))
        handlers.cancel_scope.cancel()

    def _on_commit(
        self, events: list[StoredEvent], sessions: dict[SessionKey, SessionFacts], removed: list[SessionKey]
    ) -> None:
        if events:
            self.events_stored += len(events)
            self.plugins.notify("agentwatch_events_stored", events=events)
        if sessions:
            self.plugins.notify("agentwatch_sessions_changed", sessions=sessions)
        if removed:
            self.plugins.notify("agentwatch_sessions_removed", sessions=removed)

    # --- one connection ---

    async def _serve_stream(self, stream: trio.SocketStream) -> None:
        """One accepted socket: the WebSocket handshake, the endpoint, then the socket closed; a socket
        still in its handshake when the budget is full is closed to make room (:mod:`agentwatch.admission`)."""
        await serve_admitted(self.admission, stream, partial(self._serve_accepted, stream), self._count_busy)

    def _count_busy(self) -> None:
        """Over ``server.max_connections`` (the newcomer gets 503): a log line at most every 10 s, with
        the running total; agentwatch_handshakes_rejected_total{status="503"} counts each one."""
        self.metrics.rejected.labels("503").inc()
        self._refused += 1
        if trio.current_time() - self._refusal_logged_at >= BUSY_LOG_EVERY:
            log.warning("connection_limit", refused_since_start=self._refused, max_connections=self.admission.limit,
                        hint="raise server.max_connections, or find the client that opens so many")
            self._refusal_logged_at = trio.current_time()

    async def _serve_accepted(self, stream: trio.SocketStream, slot: Slot) -> None:
        server = self.config["server"]
        try:
            async with trio.open_nursery() as nursery:
                request = await handshake(nursery, stream, max_message_size=server["max_frame_bytes"], timeout=HANDSHAKE_TIMEOUT)
                if request is not None:
                    await self._handle(request, peer(stream), slot)
                nursery.cancel_scope.cancel()
        except Exception:
            log.exception("connection_failed")

    async def _handle(self, request: WebSocketRequest, remote: str, slot: Slot) -> None:
        conn_id = next(self._conn_ids)
        structlog.contextvars.bind_contextvars(conn_id=conn_id)
        try:
            path = request.path.split("?", 1)[0]
            status = self._guard.check(request.headers)
            agent_id = None
            if status is None:
                if path == WATCH_PATH:
                    pass
                elif path.startswith(AGENT_PATH):
                    agent_id = path[len(AGENT_PATH) :]
                    status = None if AGENT_ID.fullmatch(agent_id) else 400
                else:
                    status = 404
            if status is not None:
                log.info("handshake_rejected", status=status, path=path[:200], remote=remote)
                self.metrics.rejected.labels(str(status)).inc()
                await request.reject(status, body=_REJECT_BODIES[status])
                return
            slot.established()
            ws = await request.accept()
            if agent_id is not None:
                structlog.contextvars.bind_contextvars(agent_id=agent_id)
                await AgentConnection(self, ws, agent_id).serve()
            else:
                await self._watch(ws)
        except ConnectionClosed:
            pass

    async def _watch(self, ws: WebSocketConnection) -> None:
        """Serve a watch connection; at shutdown, close it with 1001 as agents are (this task closes it, so
        that its reader is still there to see the peer's answer)."""
        log.debug("watch_connected")
        serving = trio.CancelScope()
        self._watchers[ws] = serving
        server = self.config["server"]
        try:
            with serving:
                if self._draining:
                    serving.cancel()
                async with trio.open_nursery() as nursery:

                    async def keep_alive() -> None:
                        if await unanswered_ping(ws, server["ping_interval"], server["ping_timeout"]):
                            log.info("ping_timeout", timeout_s=server["ping_timeout"])
                            with trio.move_on_after(CLOSE_TIMEOUT):
                                await ws.aclose(CLOSE_PING_TIMEOUT, "ping timeout")
                            nursery.cancel_scope.cancel()

                    nursery.start_soon(keep_alive)
                    connection = WatchConnection(self, ws, self.watch_methods)
                    subscriptions = ConnectionSubscriptions(self, connection, nursery)
                    connection.methods.update(subscriptions.methods())
                    await connection.serve()
                    nursery.cancel_scope.cancel()
            if serving.cancelled_caught:
                with trio.move_on_after(CLOSE_TIMEOUT):
                    await ws.aclose(1001, "daemon shutting down")
        finally:
            del self._watchers[ws]
            if self._draining and not self._watchers:
                self._watchers_gone.set()
            log.debug("watch_disconnected")

    def __repr__(self) -> str:
        return f"<Daemon {' '.join(self.addresses) or 'not listening'}>"


def _allowed_hosts(config: Config) -> AllowedHosts:
    server = config["server"]
    return AllowedHosts(server["allowed_hosts"], [*server["listen"], config["metrics"]["listen"] or "unix:/"])


_REJECT_BODIES: dict[int, bytes] = {
    400: f"agent_id must be {AGENT_ID_RULE}\n".encode(),
    401: b"missing or wrong token: send 'Authorization: Bearer <token>' with the token from the daemon's token file\n",
    403: b"this Origin is not allowed; add it to auth.allowed_origins to permit it\n",
    404: b"no such endpoint: use /v1/agents/{agent_id} or /v1/watch\n",
}


async def serve(config: Config, load: Callable[[], Config] | None = None) -> None:
    """Run a daemon until SIGINT or SIGTERM, then shut it down gracefully; SIGHUP reloads the
    configuration through ``load`` (by default: ``config`` again). The service manager's variables
    (``NOTIFY_SOCKET``, ``WATCHDOG_*``, ``LISTEN_*``) are taken from the environment."""
    notifier = Notifier.from_environ(os.environ)
    try:
        inherited = inherited_sockets(os.environ)
    except ActivationError as exc:
        raise StartupError(str(exc)) from None
    daemon = Daemon(config, notifier=notifier, inherited=inherited)
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM, signal.SIGHUP) as signals:
        async with trio.open_nursery() as nursery:

            async def on_signal() -> None:
                async for signum in signals:
                    log.info("signal", signal=signal.Signals(signum).name)
                    if signum == signal.SIGHUP:
                        await daemon.reload(load or (lambda: config))
                    else:
                        daemon.stop()

            nursery.start_soon(on_signal)
            try:
                await daemon.run()
            finally:
                notifier.close()
            nursery.cancel_scope.cancel()
