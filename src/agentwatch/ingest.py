"""One agent's ingest connection: hello, events in, acks out after commit (protocol.md)."""

from __future__ import annotations

import json
from collections import deque
from typing import TYPE_CHECKING, Any

import trio
from trio_websocket import ConnectionClosed, WebSocketConnection

from agentwatch.ingest_frames import FrameError, Hello, RawEvent, decode, parse_events, parse_hello
from agentwatch.keepalive import CLOSE_PING_TIMEOUT, unanswered_ping
from agentwatch.logs import get_logger
from agentwatch.model import KINDS, RAW, Batch, IncomingEvent, Normalized, StoredEvent, now_ms
from agentwatch.record_json import encode_record
from agentwatch.store import StorageUnavailable
from agentwatch.text import brief

if TYPE_CHECKING:
    from agentwatch.daemon import Daemon

log = get_logger(__name__)

CLOSE_GOING_AWAY = 1001
CLOSE_INTERNAL = 1011
CLOSE_NO_HELLO = 4000
CLOSE_REPLACED = 4001
CLOSE_TIMEOUT = 5.0  # seconds for the closing handshake


class TokenBucket:
    """Events per second with a burst allowance; ``rate == 0`` means unlimited.

    A batch larger than the burst is admitted when the bucket is full, leaving it in debt.
    """

    def __init__(self, rate: float, burst: int) -> None:
        self.rate, self.burst = rate, burst
        self._tokens = float(burst)
        self._at = trio.current_time()

    def take(self, count: int) -> bool:
        if self.rate <= 0:
            return True
        now = trio.current_time()
        self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = now
        if self._tokens < min(count, self.burst):
            return False
        self._tokens -= count
        return True


class AgentConnection:
    """Serves ``/v1/agents/{agent_id}`` for one WebSocket; the store reports back through it."""

    def __init__(self, daemon: Daemon, ws: WebSocketConnection, agent_id: str) -> None:
        self.daemon = daemon
        self.ws = ws
        self.agent_id = agent_id
        self.format = "agentwatch"
        server = daemon.config["server"]
        self._bucket = TokenBucket(server["rate_limit"], server["rate_burst"])
        self._max_sent = 0  # highest seq this connection sent that may still be stored
        self._refused: tuple[int, str] | None = None  # (seq, code) of a transient refusal not yet resent
        self._ack_target = 0
        self._ack_due = False  # a commit since the last ack: duplicates are acknowledged too
        self._unacked_events = 0  # committed since the last ack (for the metrics)
        self._failures: deque[dict[str, Any]] = deque()
        self._wakeup = trio.Event()
        self._outstanding = 0
        self._settled = trio.Event()
        self._reading = trio.CancelScope()
        self._receiving = False  # waiting for a frame: the only time _stop cancels _reading
        self._close: tuple[int, str] | None = None  # why the daemon ends this connection
        self.quiet = trio.Event()  # set once this connection submits nothing more

    # --- BatchSink: called by the store's writer after a commit (or a failure) ---

    def committed(self, batch: Batch, acked_seq: int, stored: list[StoredEvent]) -> None:
        self._ack_target = max(self._ack_target, acked_seq)
        self._ack_due = True
        self._unacked_events += len(batch.events)
        self._settle()

    def failed(self, batch: Batch, code: str, message: str) -> None:
        first = batch.events[0].seq
        self._max_sent = min(self._max_sent, first - 1)  # the client may resend these
        self._failures.append(
            FrameError(code, f"events {first}..{batch.events[-1].seq} were not stored ({message}); keep them and resend", first).to_frame()
        )
        self._settle()

    def _settle(self) -> None:
        self._outstanding -= 1
        if self._outstanding == 0:
            self._settled.set()
        self._wakeup.set()

    # --- lifecycle ---

    def replace(self) -> None:
        """A newer connection for this agent took over: close this one with 4001."""
        self._stop(CLOSE_REPLACED, "replaced by a newer connection")

    def stop_reading(self) -> None:
        """The daemon is shutting down: read no more frames; commit, ack and close with 1001."""
        self._stop(CLOSE_GOING_AWAY, "daemon shutting down")

    def _stop(self, code: int, reason: str) -> None:
        """Receive no more frames (one already received is still submitted), then close with ``code``."""
        if self._close is None:
            self._close = (code, reason)
        if self._receiving:
            self._reading.cancel()

    async def serve(self) -> None:
        hello = await self._receive_hello()
        if hello is None:
            return
        self.format = hello.format
        older = self.daemon.claim(self)
        try:
            if older is not None:  # its last frames queue before our hello, so the welcome covers them
                await older.quiet.wait()
            try:
                session, acked_seq = await self.daemon.store.hello(self.agent_id, hello.agent, now_ms())
            except StorageUnavailable as exc:
                await self._send(FrameError("storage_unavailable", f"cannot record the hello: {exc}; reconnect later").to_frame())
                await self._close_ws(CLOSE_INTERNAL, "storage unavailable")
                return
            self._ack_target = acked_seq
            await self._run(hello, session, acked_seq)
        finally:
            self.quiet.set()
            self.daemon.release(self)

    async def _run(self, hello: Hello, session: int, acked_seq: int) -> None:
        log.debug("agent_connected", format=self.format, session=session, acked_seq=acked_seq)
        self.daemon.plugins.notify("agentwatch_agent_connected", agent_id=self.agent_id, agent=hello.agent, session=session)
        try:
            max_frame_bytes = self.daemon.config["server"]["max_frame_bytes"]
            await self._send({"type": "welcome", "protocol": 1, "agent_id": self.agent_id, "session": session, "acked_seq": acked_seq,
                              "max_frame_bytes": max_frame_bytes})
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._send_acks)
                nursery.start_soon(self._keep_alive, nursery.cancel_scope)
                await self._read_frames()
                self.quiet.set()
                await self._settle_and_close()
                nursery.cancel_scope.cancel()
        finally:
            code = self._close[0] if self._close is not None else self.ws.closed.code if self.ws.closed else None
            log.debug("agent_disconnected", code=code)
            self.daemon.plugins.notify("agentwatch_agent_disconnected", agent_id=self.agent_id, code=code)

    async def _receive_hello(self) -> Hello | None:
        timeout = self.daemon.config["server"]["hello_timeout"]
        with trio.move_on_after(timeout):
            message = await self.ws.get_message()
            try:
                return parse_hello(decode(message), list(self.daemon.formats))
            except FrameError as error:
                await self._send(error.to_frame())
                await self._close_ws(CLOSE_NO_HELLO, error.code)
                log.info("hello_rejected", code=error.code, message=error.message)
                return None
        await self._send(FrameError("hello_required", f"no hello within {timeout:g} s of connecting").to_frame())
        await self._close_ws(CLOSE_NO_HELLO, "hello timeout")
        log.info("hello_timeout", timeout_s=timeout)
        return None

    async def _settle_and_close(self) -> None:
        """Wait for what was received to commit (the daemon bounds this at shutdown), ack it, close."""
        if self._outstanding:
            await self._settled.wait()
        with trio.move_on_after(CLOSE_TIMEOUT):  # a peer that reads nothing cannot hold us
            await self._flush()
        code, reason = self._close or (CLOSE_GOING_AWAY, "closing")
        await self._close_ws(code, reason)

    async def _close_ws(self, code: int, reason: str) -> None:
        with trio.move_on_after(CLOSE_TIMEOUT):
            await self.ws.aclose(code, reason)

    # --- frames in ---

    async def _read_frames(self) -> None:
        with self._reading:
            while self._close is None:
                self._receiving = True
                try:
                    message = await self.ws.get_message()
                except ConnectionClosed:
                    return
                finally:
                    self._receiving = False
                try:
                    await self._handle(message)
                except FrameError as error:
                    await self._send(error.to_frame())
                except Exception:
                    log.exception("frame_failed")
                    await self._send(FrameError("internal", "the daemon failed to handle this frame; it was not stored").to_frame())

    async def _handle(self, message: str | bytes) -> None:
        raw_events = parse_events(decode(message))
        first = raw_events[0].seq
        previous = self._max_sent
        for event in raw_events:
            if event.seq < previous:
                raise FrameError(
                    "seq_regression",
                    f"seq {event.seq} is lower than seq {previous} already sent on this connection; seq must increase",
                    event.seq,
                )
            previous = event.seq
        if self._refused is not None:
            refused_seq, code = self._refused
            if first > refused_seq:  # storing this would let an ack cover the refused events
                raise FrameError(code, f"events from seq {refused_seq} were refused; resend from there first", first)
            self._refused = None
        if not self._bucket.take(len(raw_events)):
            self._refused = (first, "rate_limited")
            raise FrameError("rate_limited", f"over {self._bucket.rate:g} events/s; not stored, resend later", first)
        incoming = [self._normalize(event) for event in raw_events]
        if self._outstanding == 0:
            self._settled = trio.Event()
        self._outstanding += 1
        sent_before, self._max_sent = self._max_sent, previous
        batch = Batch(self.agent_id, incoming, now_ms(), self, len(message))
        self.daemon.metrics.received.inc(len(incoming))
        try:
            if self._reading.cancel_called:  # stopped as this frame arrived: it is still submitted
                with trio.move_on_after(CLOSE_TIMEOUT) as shielded:
                    shielded.shield = True
                    await self.daemon.store.submit(batch)
            else:
                await self.daemon.store.submit(batch)
        except BaseException:
            self._max_sent = sent_before
            self._refused = (first, "internal")
            self._settle()
            raise

    def _normalize(self, event: RawEvent) -> IncomingEvent:
        name = self.format if event.format is None else event.format
        registered = self.daemon.formats.get(name)
        if registered is None:
            raise FrameError("unknown_format", f"unknown format {brief(name)}; known formats: {', '.join(sorted(self.daemon.formats))}", event.seq)
        fmt, plugin = registered
        try:
            normalized = fmt.normalize(event.data)
            if not isinstance(normalized, Normalized) or normalized.kind not in KINDS:
                raise TypeError(f"format {name!r} returned {normalized!r}, not a Normalized with a canonical kind")
        except Exception:
            self.daemon.plugins.record_error(plugin, "normalize")
            normalized = RAW
        data_json = encode_record(event.data)
        return IncomingEvent(event.seq, event.ts, name, data_json, normalized)

    # --- frames out ---

    async def _send(self, frame: dict[str, Any]) -> None:
        if frame["type"] == "error":
            self.daemon.metrics.errors.labels(frame["code"]).inc()
        try:
            await self.ws.send_message(json.dumps(frame))
        except ConnectionClosed:
            pass

    async def _flush(self) -> None:
        while self._failures:
            await self._send(self._failures.popleft())
        if self._ack_due:
            self._ack_due = False
            self.daemon.metrics.acked.inc(self._unacked_events)
            self._unacked_events = 0
            await self._send({"type": "ack", "seq": self._ack_target})

    async def _send_acks(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup = trio.Event()
            await self._flush()

    async def _keep_alive(self, serving: trio.CancelScope) -> None:
        server = self.daemon.config["server"]
        if await unanswered_ping(self.ws, server["ping_interval"], server["ping_timeout"]):
            log.info("ping_timeout", timeout_s=server["ping_timeout"])
            self._stop(CLOSE_PING_TIMEOUT, "ping timeout")
            await trio.sleep(CLOSE_TIMEOUT)  # still here: the peer reads nothing, so cut it
            serving.cancel()
