"""Delivering an :class:`~agentwatch.outbox.Outbox` to the daemon over a blocking connection.

Standard library only (with :mod:`agentwatch.rawws`), for ``agentwatch hook``, ``agentwatch
run`` and ``agentwatch flush``. A :class:`Courier` is one connection: the hello, the welcome
(which tells what the daemon already has and how large a frame it takes), the pending events in
frames, and their acks. :func:`deliver` goes on over new connections while the daemon refuses
something the outbox can put right (a frame too big, an event it will never take), so that no
event ever waits behind one that cannot be stored.
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
CLOSE_TOO_BIG = 1009
RESENDS = 12  # connections one delivery may take while the outbox puts refusals right
CLOSE_READ_TIMEOUT = 0.5  # seconds to read a close frame after a write failed

#: Error codes after which the events are kept and sent again later.
RETRY_CODES = frozenset({"storage_unavailable", "rate_limited", "internal"})


class Undelivered(ClientError):
    """The daemon could not be reached, or did not take the events this time; they stay in the outbox."""


class Resend(Undelivered):
    """The daemon refused a frame, and the outbox was put right (an event cut smaller, sent alone,
    or dropped), or the connection broke mid-delivery: a new connection can deliver the rest now."""


class Courier:
    """One connection delivering ``box``; every wait is bounded by ``timeout`` seconds."""

    def __init__(self, box: Outbox, endpoint: Endpoint, timeout: float) -> None:
        self.box = box
        self._timeout = timeout
        try:
            self._ws = rawws.BlockingClient.connect(endpoint.address, f"/v1/agents/{box.agent_id}", endpoint.headers, timeout)
        except (OSError, rawws.ProtocolError) as exc:
            box.hold()
            raise Undelivered(f"cannot reach the daemon at {endpoint}: {exc}") from None
        self._sent = 0  # the highest seq sent on this connection
        self._in_flight: list[tuple[int, int]] = []  # (last seq, bytes) of the frames sent and not acknowledged
        try:
            self._ws.send_text(json.dumps({"type": "hello", "protocol": PROTOCOL} | box.hello))
            welcome = json.loads(self._ws.receive_text())
        except (OSError, ValueError, rawws.ProtocolError) as exc:
            self._ws.close()
            box.hold()
            raise Undelivered(f"the daemon did not welcome {box.agent_id}: {exc}") from None
        if not isinstance(welcome, dict) or welcome.get("type") != "welcome":
            self._ws.close()
            box.hold()
            message = welcome.get("message") if isinstance(welcome, dict) else welcome
            raise Undelivered(f"the daemon refused the hello of {box.agent_id}: {message}")
        limit = welcome.get("max_frame_bytes")
        box.welcomed(welcome.get("acked_seq", 0), limit if isinstance(limit, int) and limit > 0 else None)

    def deliver(self) -> None:
        """Send what is pending and not yet sent here, and wait until every sent event is acknowledged.

        Events up to the outbox's ``singly`` go one per frame, each answered before the next."""
        pending = [(seq, line) for seq, line in self.box.pending if seq > self._sent]
        if pending:
            self.box.handing_over(pending[-1][0])
        deadline = time.monotonic() + self._timeout
        try:
            for frame, last in _frames(pending, self.box.limit, self.box.singly):
                self._ws.send_text(frame)
                self._sent = last
                self._in_flight.append((last, len(frame.encode())))
                if last <= self.box.singly:
                    self._await(last, deadline)
            self._await(self._sent, deadline)
        except (OSError, rawws.Closed) as exc:
            # A write after the daemon closed fails before its close frame is read: read it now.
            closed = exc if isinstance(exc, rawws.Closed) else self._close_frame()
            if closed is not None and closed.code == CLOSE_TOO_BIG and self._in_flight:
                self.box.too_big(max(size for _, size in self._in_flight))
                raise Resend(f"the daemon found a frame too big ({closed}); its events go again, cut smaller") from None
            self.box.hold()
            raise Resend(f"delivery to the daemon broke off: {exc}") from None
        except (ValueError, rawws.ProtocolError) as exc:
            self.box.hold()
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

    def _close_frame(self) -> rawws.Closed | None:
        """The close the daemon sent, if it can still be read (the acks before it are taken)."""
        try:
            self._ws.set_timeout(CLOSE_READ_TIMEOUT)
            while True:
                self._take(json.loads(self._ws.receive_text()))
        except rawws.Closed as closed:
            return closed
        except (OSError, ValueError, rawws.ProtocolError):
            return None

    def _await(self, seq: int, deadline: float) -> None:
        """Take acks until ``seq`` is acknowledged, for up to ``deadline``."""
        while self.box.acked < seq:
            self._ws.set_timeout(max(0.001, deadline - time.monotonic()))
            self._take(json.loads(self._ws.receive_text()))

    def _take(self, frame: dict[str, object]) -> None:
        if frame.get("type") == "ack" and isinstance(seq := frame.get("seq"), int):
            self.box.took(max((size for last, size in self._in_flight if last <= seq), default=0))
            self.box.acknowledge(seq)
            self._in_flight = [(last, size) for last, size in self._in_flight if last > seq]
        elif frame.get("type") == "error":
            code, message, seq = frame.get("code"), frame.get("message"), frame.get("seq")
            if code in RETRY_CODES:
                raise rawws.ProtocolError(f"{code}: {message}")
            if not isinstance(seq, int):  # a frame refused whole, no event named
                if self._in_flight and self._in_flight[0][0] <= self.box.singly and len(self._in_flight) == 1:
                    seq = self._in_flight[0][0]  # sent alone, and the only one waiting: that event
                else:
                    self.box.send_singly(self._sent)
                    raise Resend(f"the daemon refused a frame ({code}: {message}); its events go again one by one")
            # The daemon refuses a frame whole, naming the event at fault: that one can never be
            # stored (the daemon logged why) and leaves; the rest of its frame goes again,
            # over a new connection (on this one a lower seq would be a regression).
            self.box.discard(seq)
            raise Resend(f"the daemon refused event {seq} ({code}: {message}); it was dropped")


def _frames(pending: list[tuple[int, str]], limit: int, singly: int) -> list[tuple[str, int]]:
    """``events`` frames, each with its last seq: one event alone up to ``singly``, then at most
    ``BATCH`` events and about ``FRAME_BYTES`` (half the daemon's ``limit`` if less)."""
    budget = min(FRAME_BYTES, limit // 2)
    frames: list[tuple[str, int]] = []
    chunk: list[str] = []
    size = last = 0
    for seq, line in pending:
        length = len(line.encode())
        if chunk and (len(chunk) == BATCH or size + length > budget or last <= singly):
            frames.append(('{"type":"events","events":[' + ",".join(chunk) + "]}", last))
            chunk, size = [], 0
        chunk.append(line)
        size += length
        last = seq
    if chunk:
        frames.append(('{"type":"events","events":[' + ",".join(chunk) + "]}", last))
    return frames


def deliver(box: Outbox, endpoint: Endpoint, timeout: float) -> None:
    """Deliver ``box`` over as many connections as putting refusals right, or connections that
    broke mid-delivery, take (at most ``RESENDS``; a daemon that is gone fails the next connect at
    once); :class:`Undelivered` if the daemon did not take everything."""
    for attempt in range(1, RESENDS + 1):
        courier = Courier(box, endpoint, timeout)
        try:
            courier.deliver()
            return
        except Resend:
            if attempt == RESENDS:
                raise
        finally:
            courier.close()


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
                    deliver(box, endpoint, timeout)
            delivered += before - len(box.pending)
            left += len(box.pending)
    return delivered, left
