"""Delivering an :class:`~agentwatch.outbox.Outbox` to the daemon over a blocking connection.

Standard library only (with :mod:`agentwatch.rawws`), for ``agentwatch hook``, ``agentwatch
run`` and ``agentwatch flush``. A :class:`Courier` is one connection: the hello, the welcome
(which tells what the daemon already has), the pending events in frames, and their acks.
"""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path

from agentwatch import outbox, rawws
from agentwatch.locate import ClientError, Endpoint
from agentwatch.outbox import Outbox

BATCH = 500  # events in one frame (the daemon takes up to 1000)
FRAME_BYTES = 256 << 10  # ... and bytes: well under the daemon's default frame limit of 1 MiB
PROTOCOL = 1

#: Error codes after which the events are kept and sent again later.
RETRY_CODES = frozenset({"storage_unavailable", "rate_limited", "internal"})


class Undelivered(ClientError):
    """The daemon could not be reached, or did not take the events this time; they stay in the outbox."""


class Courier:
    """One connection delivering ``box``; every wait is bounded by ``timeout`` seconds."""

    def __init__(self, box: Outbox, endpoint: Endpoint, timeout: float) -> None:
        self.box = box
        self._timeout = timeout
        try:
            self._ws = rawws.BlockingClient.connect(endpoint.address, f"/v1/agents/{box.agent_id}", endpoint.headers, timeout)
        except (OSError, rawws.ProtocolError) as exc:
            raise Undelivered(f"cannot reach the daemon at {endpoint}: {exc}") from None
        self._sent = 0  # the highest seq sent on this connection
        try:
            self._ws.send_text(json.dumps({"type": "hello", "protocol": PROTOCOL} | box.hello))
            welcome = json.loads(self._ws.receive_text())
        except (OSError, ValueError, rawws.ProtocolError) as exc:
            self._ws.close()
            raise Undelivered(f"the daemon did not welcome {box.agent_id}: {exc}") from None
        if not isinstance(welcome, dict) or welcome.get("type") != "welcome":
            self._ws.close()
            message = welcome.get("message") if isinstance(welcome, dict) else welcome
            raise Undelivered(f"the daemon refused the hello of {box.agent_id}: {message}")
        box.welcomed(welcome.get("acked_seq", 0))

    def deliver(self) -> None:
        """Send what is pending and not yet sent here, and wait until every sent event is acknowledged."""
        pending = [(seq, line) for seq, line in self.box.pending if seq > self._sent]
        if pending:
            self.box.handing_over(pending[-1][0])
        try:
            for frame, last in _frames(pending):
                self._ws.send_text(frame)
                self._sent = last
            deadline = time.monotonic() + self._timeout
            while self.box.acked < self._sent:
                self._ws.set_timeout(max(0.001, deadline - time.monotonic()))
                self._take(json.loads(self._ws.receive_text()))
        except (OSError, ValueError, rawws.ProtocolError) as exc:
            raise Undelivered(f"delivery to the daemon broke off: {exc}") from None

    def idle(self) -> None:
        """Answer the daemon's pings and take late acks, without waiting."""
        try:
            while self._ws.readable():
                self._take(json.loads(self._ws.receive_text()))
        except (OSError, ValueError, rawws.ProtocolError) as exc:
            raise Undelivered(f"the connection to the daemon ended: {exc}") from None

    def close(self) -> None:
        """Close the connection normally."""
        self._ws.close()

    def _take(self, frame: dict[str, object]) -> None:
        if frame.get("type") == "ack" and isinstance(seq := frame.get("seq"), int):
            self.box.acknowledge(seq)
        elif frame.get("type") == "error":
            code, message, seq = frame.get("code"), frame.get("message"), frame.get("seq")
            if code in RETRY_CODES or not isinstance(seq, int):
                raise rawws.ProtocolError(f"{code}: {message}")
            # The daemon refuses a frame whole, naming the event at fault: that one can never be
            # stored (the daemon logged why) and leaves; the rest of its frame goes again later,
            # over a new connection (on this one a lower seq would be a regression).
            self.box.discard(seq)
            raise rawws.ProtocolError(f"the daemon refused event {seq} ({code}: {message}); it was dropped")


def _frames(pending: list[tuple[int, str]]) -> list[tuple[str, int]]:
    """``events`` frames of at most ``BATCH`` events and about ``FRAME_BYTES``, each with its last seq."""
    frames: list[tuple[str, int]] = []
    chunk: list[str] = []
    size = last = 0
    for seq, line in pending:
        if chunk and (len(chunk) == BATCH or size + len(line) > FRAME_BYTES):
            frames.append(('{"type":"events","events":[' + ",".join(chunk) + "]}", last))
            chunk, size = [], 0
        chunk.append(line)
        size += len(line)
        last = seq
    if chunk:
        frames.append(('{"type":"events","events":[' + ",".join(chunk) + "]}", last))
    return frames


def flush_outboxes(state_dir: Path, endpoint: Endpoint, *, timeout: float, budget: float, skip: str = "") -> tuple[int, int]:
    """Deliver the outboxes of ``state_dir`` that hold events and that no live process works on,
    oldest first, for up to ``budget`` seconds; ``(events delivered, events still pending)``."""
    deadline = time.monotonic() + budget
    delivered = left = 0
    for agent_id in outbox.with_pending(state_dir):
        if agent_id == skip:
            continue
        with outbox.try_locked(state_dir, agent_id) as box:
            if box is None:  # its own process is delivering it
                continue
            before = len(box.pending)
            if time.monotonic() < deadline:
                with contextlib.suppress(Undelivered):
                    courier = Courier(box, endpoint, timeout)
                    try:
                        courier.deliver()
                    finally:
                        courier.close()
            delivered += before - len(box.pending)
            left += len(box.pending)
    return delivered, left
