"""Reference servers for ``bench/ingest.py``: the same ingest wire contract, minimal code.

``python bench/baselines.py bare --port P``
    Accepts ``/v1/agents/{id}``, answers the hello with a fresh-agent welcome, JSON-parses
    every ``event``/``events`` frame and acknowledges cumulatively, storing nothing. The
    ceiling for any Trio + trio-websocket server on this machine.

``python bench/baselines.py per-event --port P --db FILE``
    The same, but every event is written to SQLite (APSW, WAL, ``synchronous=FULL``) in its
    own transaction before it may be acknowledged: the write pattern of naive systems. The
    database calls run in ``trio.to_thread`` behind one process-wide limiter of 1, so the
    event loop keeps serving while SQLite waits on fsync.

Both coalesce acknowledgements like a real server: a connection's ack task wakes when
something new may be acknowledged, then yields to the event loop until the connection's
reader makes no more progress (it has drained what was immediately available) and sends
one ack for the highest seq reached. Both use the trio-websocket settings the daemon uses
(64 KiB receive buffer, 1 MiB message limit). Authorization headers are accepted and
ignored.
"""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Callable
from pathlib import Path

import apsw
import trio
from trio_websocket import ConnectionClosed, WebSocketConnection, WebSocketRequest, serve_websocket

AGENT_PATH = re.compile(r"^/v1/agents/([A-Za-z0-9._:@-]{1,128})$")
RECEIVE_BUFFER = 65536  # as the daemon configures trio-websocket
MAX_MESSAGE = 1 << 20

Store = Callable[[str, int, str], None]  # (agent_id, seq, event JSON) -> committed


class PerEventStore:
    """One SQLite connection; :meth:`store` commits one event per transaction (call it in a thread)."""

    def __init__(self, path: Path) -> None:
        self.conn = apsw.Connection(str(path))
        self.conn.execute("PRAGMA journal_mode = WAL")
        self.conn.execute("PRAGMA synchronous = FULL")
        self.conn.execute(
            "CREATE TABLE IF NOT EXISTS events ("
            " agent_id TEXT NOT NULL, seq INTEGER NOT NULL, received_at REAL NOT NULL, data TEXT NOT NULL,"
            " PRIMARY KEY (agent_id, seq))"
        )

    def store(self, agent_id: str, seq: int, data: str) -> None:
        with self.conn:  # BEGIN ... COMMIT: one transaction, one fsync of the WAL, per event
            self.conn.execute(
                "INSERT OR IGNORE INTO events (agent_id, seq, received_at, data) VALUES (?, ?, julianday('now'), ?)",
                (agent_id, seq, data),
            )


class Connection:
    """One agent connection: a reader that (optionally) stores, and an ack task that coalesces."""

    def __init__(self, ws: WebSocketConnection, agent_id: str, store: Store | None, limiter: trio.CapacityLimiter) -> None:
        self.ws = ws
        self.agent_id = agent_id
        self.store = store
        self.limiter = limiter
        self.acked = 0  # highest seq that may be acknowledged (stored, for per-event)
        self.ack_sent = 0
        self.wakeup = trio.Event()

    async def serve(self) -> None:
        json.loads(await self.ws.get_message())  # the hello; its contents do not matter here
        await self.ws.send_message(json.dumps({"type": "welcome", "protocol": 1, "agent_id": self.agent_id, "session": 0, "acked_seq": 0}))
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._send_acks)
            try:
                while True:
                    await self._handle(await self.ws.get_message())
            except ConnectionClosed:
                pass
            nursery.cancel_scope.cancel()

    async def _handle(self, message: str | bytes) -> None:
        frame = json.loads(message)
        events = [frame] if frame.get("type") == "event" else frame.get("events", [])
        for event in events:
            seq = event["seq"]
            if self.store is not None:
                data = json.dumps(event.get("data"), separators=(",", ":"))
                await trio.to_thread.run_sync(self.store, self.agent_id, seq, data, limiter=self.limiter)
            if seq > self.acked:
                self.acked = seq
                self.wakeup.set()

    async def _send_acks(self) -> None:
        while True:
            await self.wakeup.wait()
            self.wakeup = trio.Event()
            while True:  # drain: let the reader run on while it has frames immediately available
                seen = self.acked
                await trio.lowlevel.checkpoint()
                if self.acked == seen:
                    break
            if self.acked > self.ack_sent:
                self.ack_sent = self.acked
                await self.ws.send_message(json.dumps({"type": "ack", "seq": self.ack_sent}))


async def serve(port: int, store: Store | None) -> None:
    """Serve the ingest endpoint on 127.0.0.1:``port`` until cancelled."""
    limiter = trio.CapacityLimiter(1)

    async def handler(request: WebSocketRequest) -> None:
        match = AGENT_PATH.match(request.path.split("?", 1)[0])
        if match is None:
            await request.reject(404)
            return
        ws = await request.accept()
        try:
            await Connection(ws, match.group(1), store, limiter).serve()
        except ConnectionClosed:
            pass

    await serve_websocket(handler, "127.0.0.1", port, ssl_context=None, max_message_size=MAX_MESSAGE, receive_buffer_size=RECEIVE_BUFFER)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("kind", choices=["bare", "per-event"])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--db", type=Path, help="SQLite file (per-event only)")
    args = parser.parse_args()
    store: Store | None = None
    if args.kind == "per-event":
        if args.db is None:
            parser.error("per-event needs --db FILE")
        store = PerEventStore(args.db).store
    try:
        trio.run(serve, args.port, store)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
