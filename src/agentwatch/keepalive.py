"""Server pings (protocol.md, "Closing"): every connection is pinged and must answer in time."""

from __future__ import annotations

import trio
from trio_websocket import ConnectionClosed, WebSocketConnection

CLOSE_PING_TIMEOUT = 1011  # the server could not keep the connection alive


async def unanswered_ping(ws: WebSocketConnection, interval: float, timeout: float) -> bool:
    """Ping every ``interval`` s; return True once a ping goes unanswered for ``timeout`` s,
    False if the connection closed first."""
    while True:
        await trio.sleep(interval)
        with trio.move_on_after(timeout):
            try:
                await ws.ping()
            except ConnectionClosed:
                return False
            continue
        return True
