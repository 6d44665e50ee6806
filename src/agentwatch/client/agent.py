"""The agent side of :mod:`agentwatch.client`: stream events in, with ``seq`` numbers, acks and resends.

Every event gets the next ``seq`` (above what the daemon has acknowledged for this agent, so a
restarted program continues the count) and is held until acknowledged. When the connection
drops, or the daemon says it could not store, the client reconnects with a growing pause and
sends again everything not yet acknowledged; the daemon drops what it already has.
"""

from __future__ import annotations

import itertools
import json
from collections import deque
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import trio
from trio_websocket import ConnectionClosed, WebSocketConnection

from agentwatch.client.discovery import CLOSE_TIMEOUT, ClientError, Endpoint, find_daemon, open_websocket
from agentwatch.courier import BATCH, FRAME_BYTES
from agentwatch.exceptions import unwrapped
from agentwatch.logs import get_logger
from agentwatch.record_cap import DEFAULT_FRAME_LIMIT, event_text, fitted, smaller_limit

log = get_logger(__name__)

RETRY_FIRST, RETRY_MAX = 0.1, 5.0  # seconds between reconnects: doubling, capped
FLUSH_TIMEOUT = 30.0  # seconds leaving open_agent waits for the last acks

#: Errors after which resending on a new connection is the remedy.
_RETRY_CODES = frozenset({"storage_unavailable", "rate_limited", "internal"})
#: Close codes after which reconnecting cannot help.
CLOSE_TOO_BIG = 1009
_FINAL_CLOSES = {4000: "the daemon did not accept the hello", 4001: "a newer connection for this agent_id took over"}


@dataclass(frozen=True, slots=True)
class Rejected:
    """An event the daemon refused for good (it is not held or resent): ``code`` and ``message`` say why."""

    seq: int
    code: str
    message: str


class AgentClient:
    """One agent's stream of events into the daemon; use :func:`open_agent`."""

    def __init__(self, agent_id: str, hello: dict[str, Any], max_unacked: int) -> None:
        self.agent_id = agent_id
        self.session = 0  # the agent's session number, from the latest welcome
        self.acked_seq = 0
        self.rejected: list[Rejected] = []
        self.frame_limit = DEFAULT_FRAME_LIMIT  # the daemon's, from its welcome; lower after a 1009
        self._hello = json.dumps(hello)
        self._max_unacked = max_unacked
        self._last_seq = 0
        self._largest_sent = 0
        self._unacked: deque[tuple[int, str]] = deque()  # (seq, the event object as JSON text)
        self._unsent = 0  # index into _unacked of the first event not sent on this connection
        self._changed = trio.Event()
        self._welcomed = False  # ever: after that, connection failures are retried
        self._ws: WebSocketConnection | None = None
        self._closing = False
        self._failed: ClientError | None = None

    async def send(self, data: Any, *, ts: str | None = None, format: str | None = None, seq: int | None = None) -> int:
        """Queue one record for the daemon; its ``seq``: the next one, or ``seq`` (above every one
        given so far) for a sender that numbers its records itself. Waits while ``max_unacked``
        are unacknowledged. A record too large for the daemon's frames is cut to fit
        (:mod:`agentwatch.record_cap`); ``ValueError`` if ``data`` is not JSON."""
        while len(self._unacked) >= self._max_unacked:
            self._raise_if_failed()
            await self._wait()
        self._raise_if_failed()
        if seq is None:
            seq = max(self._last_seq, self.acked_seq) + 1
        elif seq <= self._last_seq:
            raise ValueError(f"seq {seq} is not above {self._last_seq}, the last one given")
        event = event_text(seq, fitted(data, self.frame_limit), format, ts)
        self._last_seq = seq
        self._unacked.append((seq, event))
        self._wake()
        return seq

    async def wait_acked(self, seq: int | None = None) -> None:
        """Wait until every event up to ``seq`` (default: every one sent) is acknowledged or rejected."""
        target = self._last_seq if seq is None else seq
        while self._unacked and self._unacked[0][0] <= target:
            self._raise_if_failed()
            await self._wait()

    @property
    def unacked(self) -> int:
        """Events sent or queued and not acknowledged yet."""
        return len(self._unacked)

    async def run(self, endpoint: Endpoint, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Connect, and reconnect whenever the connection ends, until :meth:`close`; started after the first welcome."""
        pause = RETRY_FIRST
        while not self._closing:
            try:
                with unwrapped():
                    async with open_websocket(endpoint, f"/v1/agents/{self.agent_id}") as ws:
                        self._ws = ws
                        await self._welcome(ws)
                        task_status.started()
                        task_status = trio.TASK_STATUS_IGNORED
                        pause = RETRY_FIRST
                        async with trio.open_nursery() as nursery:
                            nursery.start_soon(self._write, ws)
                            reason = await self._read(ws)
                            nursery.cancel_scope.cancel()
            except (ClientError, ConnectionClosed) as exc:
                if self._failed is not None or (not self._welcomed and isinstance(exc, ClientError)):
                    raise  # for good, or the first connection: the caller hears why at once
                reason = str(exc) or type(exc).__name__
            if not self._closing:
                log.info("agent_reconnecting", agent_id=self.agent_id, reason=reason, pause_s=pause)
                await trio.sleep(pause)
                pause = min(pause * 2, RETRY_MAX)

    async def _welcome(self, ws: WebSocketConnection) -> None:
        await ws.send_message(self._hello)
        welcome = json.loads(await ws.get_message())
        if welcome.get("type") != "welcome":
            self._fail(ClientError(f"the daemon refused the hello: {welcome.get('message', welcome)}"))
        self.session = welcome["session"]
        self._fit(welcome.get("max_frame_bytes", DEFAULT_FRAME_LIMIT))
        self._acknowledge(welcome["acked_seq"])
        self._unsent = 0  # a new connection: everything held goes again
        self._largest_sent = 0  # bytes of the largest frame sent on it
        self._welcomed = True

    async def _write(self, ws: WebSocketConnection) -> None:
        while True:
            while self._unsent >= len(self._unacked):
                await self._wait()
            chunk: list[str] = []
            size = 0
            for _, text in itertools.islice(self._unacked, self._unsent, self._unsent + BATCH):
                if chunk and size + len(text.encode()) > min(FRAME_BYTES, self.frame_limit // 2):
                    break
                chunk.append(text)
                size += len(text.encode())
            self._unsent += len(chunk)
            self._largest_sent = max(self._largest_sent, size)
            try:
                await ws.send_message('{"type":"events","events":[' + ",".join(chunk) + "]}")
            except ConnectionClosed:
                return  # the reader says why

    async def _read(self, ws: WebSocketConnection) -> str:
        """Take acks and errors until this connection is done; why it is."""
        try:
            while True:
                frame = json.loads(await ws.get_message())
                if frame.get("type") == "ack":
                    self._acknowledge(frame["seq"])
                elif frame.get("type") == "error" and (retry := self._error(frame)):
                    return retry
        except ConnectionClosed:
            pass
        closed = ws.closed
        if closed is not None and closed.code == CLOSE_TOO_BIG:  # a daemon that did not say its limit, or lowered it
            self.frame_limit = smaller_limit(min(self.frame_limit, self._largest_sent))
        if closed is not None and closed.code in _FINAL_CLOSES:
            self._fail(ClientError(f"{_FINAL_CLOSES[closed.code]} (close {closed.code}: {closed.reason})"))
        return f"connection closed ({closed.code if closed else '?'})"

    async def close(self) -> None:
        """Close the connection normally (1000) and stop reconnecting; what is unacknowledged stays so."""
        self._closing = True
        if self._ws is not None:
            await self._ws.aclose()

    def _fit(self, announced: int) -> None:
        """Take the daemon's frame limit; events held that a frame of it cannot carry are cut again."""
        self.frame_limit = min(announced, self.frame_limit) if self._welcomed else announced
        for index, (seq, text) in enumerate(self._unacked):
            if len(text.encode()) > self.frame_limit:
                event = json.loads(text)
                self._unacked[index] = (seq, event_text(seq, fitted(event["data"], self.frame_limit), event.get("format"), event.get("ts")))

    def _acknowledge(self, seq: int) -> None:
        self.acked_seq = max(self.acked_seq, seq)
        while self._unacked and self._unacked[0][0] <= seq:
            self._unacked.popleft()
            self._unsent = max(0, self._unsent - 1)
        self._wake()

    def _error(self, frame: dict[str, Any]) -> str | None:
        """Handle an error frame; a reason to reconnect and resend, or None.

        The daemon refuses a frame whole: when it names the event at fault, that event is
        dropped and the others of its frame go again, over a new connection (on this one, a
        lower ``seq`` than one already sent would be a regression).
        """
        code, message, seq = frame.get("code", "?"), frame.get("message", ""), frame.get("seq")
        if code in _RETRY_CODES:
            return f"{code}: {message}"
        log.warning("agent_event_rejected", agent_id=self.agent_id, code=code, error=message, seq=seq)
        if not isinstance(seq, int):
            return None
        self.rejected.append(Rejected(seq, code, message))
        for index, (held, _) in enumerate(self._unacked):
            if held == seq:
                del self._unacked[index]
                break
        self._wake()
        return f"event {seq} was refused ({code}); sending the rest of its frame again"

    def _fail(self, error: ClientError) -> None:
        self._failed = error
        self._wake()
        raise error

    def _raise_if_failed(self) -> None:
        if self._failed is not None:
            raise self._failed

    def _wake(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    async def _wait(self) -> None:
        await self._changed.wait()


@asynccontextmanager
async def open_agent(
    agent_id: str,
    *,
    format: str = "agentwatch",
    agent: Mapping[str, Any] | None = None,
    endpoint: Endpoint | None = None,
    max_unacked: int = 10_000,
) -> AsyncIterator[AgentClient]:
    """Connect as ``agent_id`` (hello with ``format`` and the ``agent`` fields); yields once welcomed.

    Leaving the block waits up to ``FLUSH_TIMEOUT`` for the last acknowledgements, then closes.
    """
    client = AgentClient(agent_id, {"type": "hello", "protocol": 1, "format": format, "agent": dict(agent or {})}, max_unacked)
    endpoint = endpoint or find_daemon()
    with unwrapped():
        async with trio.open_nursery() as nursery:
            await nursery.start(client.run, endpoint)
            yield client
            with trio.move_on_after(FLUSH_TIMEOUT):
                await client.wait_acked()
            if client.unacked:
                log.warning("agent_unacked_at_close", agent_id=agent_id, unacked=client.unacked)
            with trio.move_on_after(CLOSE_TIMEOUT):
                await client.close()
            nursery.cancel_scope.cancel()
