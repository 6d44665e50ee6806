"""The opening WebSocket handshake of an accepted socket, given up as soon as the peer goes.

trio-websocket waits for a handshake request until something cancels it, even after the peer
closed its socket; without this, every connection opened and closed before its handshake would
hold a connection slot until the handshake timeout.

The connection is trio-websocket's, with one repair (:class:`_FailingConnection`): a peer that
breaks the protocol gets the close frame RFC 6455 asks for (1007, 1002) before the socket closes.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import trio
from trio_websocket import ConnectionClosed, WebSocketConnection, WebSocketRequest
from wsproto import ConnectionType, WSConnection
from wsproto.connection import ConnectionState
from wsproto.events import CloseConnection

RECEIVE_BYTES = 65536


class _Watched(trio.abc.Stream):
    """A socket stream that calls ``on_end`` when the peer closes it (or it breaks)."""

    def __init__(self, stream: trio.SocketStream, on_end: Callable[[], None]) -> None:
        self.stream = stream
        self.on_end: Callable[[], None] | None = on_end

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        try:
            data = await self.stream.receive_some(max_bytes)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self._ended()
            raise
        if not data:
            self._ended()
        return data

    def _ended(self) -> None:
        if self.on_end is not None:
            self.on_end()

    def unwatch(self) -> None:
        """From now on pass straight through: the stream's own methods shadow this class's, so
        every receive and send of the connection's life costs no extra call."""
        self.on_end = None
        self.receive_some = self.stream.receive_some  # type: ignore[method-assign]
        self.send_all = self.stream.send_all  # type: ignore[method-assign]

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self.stream.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.stream.wait_send_all_might_not_block()

    async def aclose(self) -> None:
        await self.stream.aclose()


class _FailingConnection(WebSocketConnection):
    """trio-websocket's connection, failing a connection as RFC 6455 (7.1.7) says.

    When wsproto cannot read what the peer sent (a text message that is not UTF-8: 1007; a frame
    that breaks the protocol: 1002), it reports a close with that code while the connection is
    still open; trio-websocket (0.12) then drops the socket without a close frame, so the peer
    sees 1006 and no reason. This sends the close frame first.
    """

    async def _handle_close_connection_event(self, event: CloseConnection) -> None:
        if self._wsproto.state is ConnectionState.OPEN:  # the peer sent no close: wsproto failed the connection
            with contextlib.suppress(ConnectionClosed):
                await self._send(event)
        await super()._handle_close_connection_event(event)


async def _wrap_server_stream(nursery: trio.Nursery, stream: trio.abc.Stream, max_message_size: int) -> WebSocketRequest:
    """What ``trio_websocket.wrap_server_stream`` does, with :class:`_FailingConnection`."""
    connection = _FailingConnection(
        stream, WSConnection(ConnectionType.SERVER), max_message_size=max_message_size, receive_buffer_size=RECEIVE_BYTES
    )
    nursery.start_soon(connection._reader_task)
    return await connection._get_request()


async def handshake(
    nursery: trio.Nursery, stream: trio.SocketStream, *, max_message_size: int, timeout: float
) -> WebSocketRequest | None:
    """The client's handshake request; None if it does not complete within ``timeout`` or the
    peer closes first. The connection's reader runs in ``nursery``."""
    with trio.move_on_after(timeout) as waiting:
        watched = _Watched(stream, waiting.cancel)
        request = await _wrap_server_stream(nursery, watched, max_message_size)
        watched.unwatch()  # from here on, the WebSocket layer reports a closed peer
        return request
    return None


def peer(stream: trio.SocketStream) -> str:
    """The peer's address for the log: ``host:port``, or ``unix`` for a Unix socket."""
    try:
        name = stream.socket.getpeername()
    except OSError:
        return "gone"
    return f"{name[0]}:{name[1]}" if isinstance(name, tuple) else "unix"
