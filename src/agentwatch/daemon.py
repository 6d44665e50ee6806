"""The daemon: opens the store, listens, supervises every connection, shuts down gracefully.

Each connection runs in the daemon's handler nursery behind a handler that catches
everything, so a failure in one connection (or in a plugin) never ends another or the daemon.
Shutdown: stop accepting, let every agent connection commit and acknowledge what it received
and close with 1001, bounded by ``server.drain_timeout``; then close the store.
"""

from __future__ import annotations

import itertools
import os
import re
import signal
from functools import partial
from pathlib import Path

import structlog
import trio
from trio_websocket import ConnectionClosed, WebSocketConnection, WebSocketRequest, wrap_server_stream

from agentwatch import __version__, daemon_file
from agentwatch.auth import HandshakeGuard, ensure_token
from agentwatch.config import Config
from agentwatch.ingest import CLOSE_TIMEOUT, AgentConnection
from agentwatch.keepalive import CLOSE_PING_TIMEOUT, unanswered_ping
from agentwatch.addresses import parse_address
from agentwatch.listeners import bound_address, open_listener
from agentwatch.logs import get_logger
from agentwatch.model import StoredEvent
from agentwatch.plugin_manager import PluginError, Plugins
from agentwatch.session_facts import SessionFacts
from agentwatch.store import SessionKey, Store
from agentwatch.subscriptions import ConnectionSubscriptions
from agentwatch.watch import WatchConnection

log = get_logger(__name__)

AGENT_PATH = "/v1/agents/"
WATCH_PATH = "/v1/watch"
AGENT_ID = re.compile(r"[A-Za-z0-9._:@-]{1,128}")
HANDSHAKE_TIMEOUT = 10.0
RECEIVE_BYTES = 65536


class StartupError(Exception):
    """The daemon cannot start; the message says why and what to do."""


class Daemon:
    """One agentwatch daemon instance with its own plugin manager, store and connections."""

    def __init__(self, config: Config, plugins: Plugins | None = None) -> None:
        self.config = config
        try:
            self.plugins = plugins or Plugins(config["plugins"]["disable"])
            self.formats = self.plugins.formats()
            self.watch_methods = self.plugins.watch_methods()
            self.topics = self.plugins.topics()
        except PluginError as exc:
            raise StartupError(str(exc)) from None
        store = self.plugins.hook.agentwatch_open_store(config=config)
        if store is None:
            raise StartupError("no plugin provides a store: 'storage' is disabled and no installed plugin replaces it")
        self.store: Store = store
        self.connections: dict[str, AgentConnection] = {}
        self.subscriptions = 0  # live subscriptions on /v1/watch
        self.addresses: list[str] = []
        self._started_at = 0.0
        self._stop_requested = trio.Event()
        self._draining = False
        self._drained = trio.Event()
        self._watchers: set[WebSocketConnection] = set()
        self._conn_ids = itertools.count(1)
        self._guard = HandshakeGuard(None, ())

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

    def uptime(self) -> float:
        return trio.current_time() - self._started_at

    def stop(self) -> None:
        """Begin a graceful shutdown (what SIGINT and SIGTERM do)."""
        self._stop_requested.set()

    # --- running ---

    async def run(self, *, task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve until :meth:`stop`; ``task_status.started`` gets the bound addresses."""
        self._started_at = trio.current_time()
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
                with trio.CancelScope() as accepting:
                    async with trio.open_nursery() as server_nursery:
                        await server_nursery.start(
                            partial(trio.serve_listeners, self._serve_stream, listeners, handler_nursery=handlers)
                        )
                        self.plugins.notify("agentwatch_startup", daemon=self, nursery=daemon_nursery)
                        await self._announce()
                        log.info(
                            "ready", version=__version__, pid=os.getpid(), addresses=self.addresses, state_dir=str(self.config.state_dir),
                            auth=auth["enabled"], plugins=self.plugins.names(),
                        )
                        task_status.started(self.addresses)
                        await self._stop_requested.wait()
                        accepting.cancel()
                await _close_listeners(listeners, self.addresses)
                await trio.to_thread.run_sync(daemon_file.withdraw, self.config.state_dir)
                await self._drain(handlers)
            daemon_nursery.cancel_scope.cancel()
        log.info("stopped")

    async def _listen(self) -> list[trio.SocketListener]:
        listeners: list[trio.SocketListener] = []
        for text in self.config["server"]["listen"]:
            try:
                opened = await open_listener(parse_address(text))
            except OSError as exc:
                await _close_listeners(listeners, self.addresses)
                raise StartupError(f"cannot listen on {text}: {exc.strerror or exc}; choose another address with --listen") from None
            listeners.extend(opened)
        self.addresses = [bound_address(listener) for listener in listeners]
        return listeners

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
        with trio.move_on_after(drain_timeout) as deadline:
            for ws in list(self._watchers):
                handlers.start_soon(ws.aclose, 1001, "daemon shutting down")
            await self._drained.wait()
        if deadline.cancelled_caught:
            log.warning("drain_timeout", connections=len(self.connections))
        handlers.cancel_scope.cancel()

    def _on_commit(
        self, events: list[StoredEvent], sessions: dict[SessionKey, SessionFacts], removed: list[SessionKey]
    ) -> None:
        if events:
            self.plugins.notify("agentwatch_events_stored", events=events)
        if sessions:
            self.plugins.notify("agentwatch_sessions_changed", sessions=sessions)
        if removed:
            self.plugins.notify("agentwatch_sessions_removed", sessions=removed)

    # --- one connection ---

    async def _serve_stream(self, stream: trio.SocketStream) -> None:
        """One accepted socket: the WebSocket handshake, the endpoint, then the socket closed."""
        server = self.config["server"]
        try:
            async with trio.open_nursery() as nursery:
                request = None
                with trio.move_on_after(HANDSHAKE_TIMEOUT):
                    request = await wrap_server_stream(
                        nursery, stream, max_message_size=server["max_frame_bytes"], receive_buffer_size=RECEIVE_BYTES
                    )
                if request is not None:
                    await self._handle(request)
                nursery.cancel_scope.cancel()
        except Exception:
            log.exception("connection_failed")
        finally:
            await trio.aclose_forcefully(stream)

    async def _handle(self, request: WebSocketRequest) -> None:
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
                log.info("handshake_rejected", status=status, path=path[:200], remote=str(request.remote))
                await request.reject(status, body=_REJECT_BODIES[status])
                return
            ws = await request.accept()
            if agent_id is not None:
                structlog.contextvars.bind_contextvars(agent_id=agent_id)
                await AgentConnection(self, ws, agent_id).serve()
            else:
                await self._watch(ws)
        except ConnectionClosed:
            pass

    async def _watch(self, ws: WebSocketConnection) -> None:
        log.info("watch_connected")
        self._watchers.add(ws)
        server = self.config["server"]
        try:
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
        finally:
            self._watchers.discard(ws)
            log.info("watch_disconnected")

    def __repr__(self) -> str:
        return f"<Daemon {' '.join(self.addresses) or 'not listening'}>"


_REJECT_BODIES: dict[int, bytes] = {
    400: b"agent_id must be 1-128 characters of A-Z a-z 0-9 . _ : @ -\n",
    401: b"missing or wrong token: send 'Authorization: Bearer <token>' with the token from the daemon's token file\n",
    403: b"this Origin is not allowed; add it to auth.allowed_origins to permit it\n",
    404: b"no such endpoint: use /v1/agents/{agent_id} or /v1/watch\n",
}


async def _close_listeners(listeners: list[trio.SocketListener], addresses: list[str]) -> None:
    """Close listeners (again, harmlessly, if serving closed them); remove Unix socket files."""
    for listener in listeners:
        await listener.aclose()
    for address in addresses:
        if address.startswith("unix:"):
            Path(address[len("unix:") :]).unlink(missing_ok=True)


async def serve(config: Config) -> None:
    """Run a daemon until SIGINT or SIGTERM, then shut it down gracefully."""
    daemon = Daemon(config)
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:

            async def stop_on_signal() -> None:
                async for signum in signals:
                    log.info("signal", signal=signal.Signals(signum).name)
                    daemon.stop()

            nursery.start_soon(stop_on_signal)
            await daemon.run()
            nursery.cancel_scope.cancel()
