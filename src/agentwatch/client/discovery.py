"""Finding a running daemon and opening a WebSocket to it, the way the daemon itself is configured.

Where it listens: ``AGENTWATCH_URL``, else what the daemon recorded in ``daemon.json`` in its
state directory, else the first of ``server.listen``. The token: ``AGENTWATCH_TOKEN``, else the
token file in the state directory.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager

import trio
from trio_websocket import ConnectionClosed, HandshakeError, WebSocketConnection, wrap_client_stream

from agentwatch import daemon_file
from agentwatch.config import Config, Overrides, load_config
from agentwatch.exceptions import unwrapped
from agentwatch.addresses import TcpAddress, UnixAddress, parse_address
from agentwatch.locate import ClientError, DaemonNotRunning, Endpoint, bearer, reachable, url_address

CONNECT_TIMEOUT = 10.0
CLOSE_TIMEOUT = 5.0
#: The largest message a client takes: a page of events.list stops growing past 8 MiB, plus the
#: event that passed it (trio-websocket's default of 1 MiB refused a page of two cut records).
MAX_MESSAGE_BYTES = 64 << 20

def find_daemon(config: Config | None = None, environ: Mapping[str, str] | None = None) -> Endpoint:
    """The endpoint of the daemon that ``config`` (default: loaded from ``environ``) describes."""
    environ = os.environ if environ is None else environ
    config = config or load_config(Overrides(), environ)
    auth = config["auth"]
    token_file = config.state_path(auth["token_file"]) if auth["enabled"] else None
    return Endpoint(_address(config, environ), bearer(token_file, environ))


@asynccontextmanager
async def open_websocket(endpoint: Endpoint, path: str) -> AsyncIterator[WebSocketConnection]:
    """A WebSocket to ``path`` on the daemon, closed on leaving; failures become :class:`ClientError`."""
    try:
        with unwrapped():
            async with _websocket(endpoint, path) as ws:
                yield ws
    except HandshakeError as exc:  # raised by trio-websocket's reader task, hence outside
        status = getattr(exc, "status_code", None)
        hints = {401: "wrong token? check the token file or AGENTWATCH_TOKEN",
                 503: "it has server.max_connections connections; retry in a moment"}
        hint = hints.get(status, "see the daemon's log")
        raise ClientError(f"the daemon at {endpoint} refused the connection (HTTP {status}): {hint}") from None


@asynccontextmanager
async def _websocket(endpoint: Endpoint, path: str) -> AsyncIterator[WebSocketConnection]:
    async with trio.open_nursery() as nursery:
        try:
            with trio.fail_after(CONNECT_TIMEOUT):
                stream = await _connect(endpoint.address)
                ws = await wrap_client_stream(
                    nursery, stream, _host(endpoint.address), path, extra_headers=list(endpoint.headers),
                    max_message_size=MAX_MESSAGE_BYTES,
                )
        except trio.TooSlowError:
            raise ClientError(f"the daemon at {endpoint} did not answer within {CONNECT_TIMEOUT:g}s") from None
        except OSError as exc:
            raise DaemonNotRunning(f"nothing answers at {endpoint} ({exc.strerror or exc})") from None
        try:
            yield ws
        finally:
            # Cancelled (the caller gave up), the task that reads the daemon's closing frame is cancelled
            # too: waiting for the frame would only wait out the timeout.
            cancelled = trio.current_effective_deadline() == -math.inf
            deadline = trio.current_time() + (0 if cancelled else CLOSE_TIMEOUT)
            with trio.move_on_at(deadline, shield=True):
                async with trio.open_nursery() as closing:
                    closing.start_soon(_discard_messages, ws)  # so the daemon's closing frame gets read
                    await ws.aclose()
                    closing.cancel_scope.cancel()
            # The reader ends when the daemon closes the socket after the closing handshake. Cut short,
            # it could miss the daemon's closing frame that another task's aclose() is waiting for.
            nursery.cancel_scope.deadline = deadline


async def _discard_messages(ws: WebSocketConnection) -> None:
    with contextlib.suppress(ConnectionClosed):
        while True:
            await ws.get_message()


def _address(config: Config, environ: Mapping[str, str]) -> TcpAddress | UnixAddress:
    if (address := url_address(environ)) is not None:
        return address
    address = parse_address((daemon_file.addresses(config.state_dir) or config["server"]["listen"])[0])
    if isinstance(address, TcpAddress) and address.port == 0:
        raise DaemonNotRunning(
            f"no daemon has announced itself in {config.state_dir / daemon_file.NAME}, and server.listen has port 0: "
            "is the daemon running with this state directory? If it is, set AGENTWATCH_URL to its address"
        )
    return reachable(address)


async def _connect(address: TcpAddress | UnixAddress) -> trio.SocketStream:
    if isinstance(address, UnixAddress):
        return await trio.open_unix_socket(str(address.path))
    return await trio.open_tcp_stream(address.host, address.port)


def _host(address: TcpAddress | UnixAddress) -> str:
    return "localhost" if isinstance(address, UnixAddress) else str(address)
