"""Load generator process for ``bench/ingest.py``: many agents, cheap per event.

``python bench/loadgen.py --port P --agents A --events-per-agent N [...]``

Every client frame is built (and masked) before the clock starts, so sending costs a
list slice, a ``b"".join`` and one ``send_all`` per burst; server frames are parsed by
:class:`wsraw.FrameReader`, acks by a byte search. Talks to the parent over stdio:

1. connects every agent (handshake, hello, welcome), prints ``{"ready": ...}`` and waits
   for a line on stdin, so several generator processes start sending together;
2. runs, then prints one JSON line with the counts, timestamps (``time.monotonic``, which
   is system-wide on Linux, so processes can be merged), the generator's own CPU time and
   a latency histogram (log buckets of 1 %, see :func:`bucket_of`).

Modes: ``saturate`` sends as fast as each agent's window of un-acked events allows;
``paced`` sends each agent's events on a fixed schedule (``--rate`` events/s in total over
all agents of this process, agents staggered), still bounded by the window.
``--max-seconds`` stops sending after that long; what was sent is still waited for
(up to ``--drain-timeout``), and throughput counts only acknowledged events.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import resource
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import trio

from agentwatch import rawws as wsraw

BUCKET_BASE = 1.01  # histogram resolution: 1 % of the latency
_INV_LOG_BASE = 1.0 / math.log(BUCKET_BASE)
ACK_MARK = b'"ack"'
SEQ_MARK = b'"seq":'
CONNECT_TIMEOUT = 30.0  # seconds for every agent's handshake, hello and welcome
PADDING = "The quick brown fox jumps over the lazy dog; agents print lots of text. "


def bucket_of(latency_s: float) -> int:
    """Histogram bucket of a latency: ``floor(log_1.01(latency in µs))``."""
    return int(math.log(max(latency_s, 1e-6) * 1e6) * _INV_LOG_BASE)


def bucket_value(bucket: int) -> float:
    """Representative latency (seconds) of a bucket: its geometric midpoint."""
    return float(BUCKET_BASE ** (bucket + 0.5)) / 1e6


def event_payloads(count: int, record_bytes: int, agent_index: int) -> list[bytes]:
    """``count`` ``event`` frames' JSON (seq 1..count), each about ``record_bytes`` long."""
    base = 1_763_700_000.0 + agent_index
    payloads = []
    for seq in range(1, count + 1):
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(base + seq / 1000)) + f".{seq % 1000:03d}Z"
        head = f'{{"type":"event","seq":{seq},"ts":"{ts}","data":{{"kind":"output","text":"'
        tail = '"}}'
        pad = max(0, record_bytes - len(head) - len(tail))
        text = (PADDING * (pad // len(PADDING) + 1))[:pad]
        payloads.append((head + text + tail).encode())
    return payloads


def parse_ack(payload: bytes) -> int | None:
    """The seq of an ack frame, or None if ``payload`` is something else (then fall back to JSON)."""
    if ACK_MARK not in payload:
        return None
    at = payload.find(SEQ_MARK)
    if at < 0:
        return None
    end = at + len(SEQ_MARK)
    stop = end
    size = len(payload)
    while stop < size and payload[stop] in b" 0123456789":
        stop += 1
    return int(payload[end:stop])


@dataclass(slots=True)
class Stats:
    """What one process measured; merged across processes by the parent."""

    hist: dict[int, int] = field(default_factory=dict)
    first_send: float = math.inf
    last_ack: float = 0.0
    sent: int = 0
    acked: int = 0
    acks: int = 0
    incomplete: int = 0  # agents whose sent events were not all acked before the drain timeout
    errors: list[str] = field(default_factory=list)


async def open_agent(
    host: str, port: int, agent_id: str, token: str | None, key: bytes, reader: wsraw.FrameReader
) -> tuple[trio.SocketStream, dict[str, Any]]:
    """Handshake, ``hello`` and ``welcome`` of one agent; the stream and the welcome. Raises
    ``ProtocolError`` (or ``OSError``) saying what the server answered instead."""
    headers = [("Authorization", f"Bearer {token}")] if token else []
    request, accept = wsraw.handshake_request(host, port, f"/v1/agents/{agent_id}", headers)
    stream = await trio.open_tcp_stream(host, port)
    await stream.send_all(request)
    buf = b""
    while b"\r\n\r\n" not in buf:
        data = await stream.receive_some(65536)
        if not data or len(buf) > wsraw.MAX_HEAD:
            raise wsraw.ProtocolError(f"handshake failed; the server sent {buf[:200]!r}")
        buf += data
    head, _, rest = buf.partition(b"\r\n\r\n")
    wsraw.check_handshake_response(head, accept)
    hello = {"type": "hello", "protocol": 1, "format": "agentwatch", "agent": {"name": agent_id, "kind": "bench"}}
    await stream.send_all(wsraw.client_frame(json.dumps(hello).encode(), key))
    frames = reader.feed(rest)
    while not frames:
        data = await stream.receive_some(65536)
        if not data:
            raise wsraw.ProtocolError("connection closed before the welcome")
        frames = reader.feed(data)
    welcome = json.loads(frames[0][1])
    if welcome.get("type") != "welcome" or len(frames) > 1:
        raise wsraw.ProtocolError(f"expected a welcome, got {frames!r}")
    return stream, welcome


class Agent:
    """One agent connection: precomputed frames, a sender, a receiver and in-flight bookkeeping."""

    def __init__(self, index: int, agent_id: str, frames: list[bytes], stats: Stats, window: int) -> None:
        self.index = index
        self.agent_id = agent_id
        self.frames = frames
        self.stats = stats
        self.window = window
        self.key = os.urandom(4)
        self.reader = wsraw.FrameReader()
        self.stream: trio.SocketStream | None = None
        self.send_lock = trio.Lock()
        self.next = 0  # events sent: frames[:next]; seq of frames[i] is i + 1
        self.acked = 0  # highest seq acknowledged (== number of acked events)
        self.bursts: deque[tuple[int, float]] = deque()  # (last seq of burst, send time)
        self.progress = trio.Event()

    # --- setup ---

    async def connect(self, host: str, port: int, token: str | None) -> None:
        self.stream, welcome = await open_agent(host, port, self.agent_id, token, self.key, self.reader)
        if welcome.get("acked_seq", 0) != 0:
            raise wsraw.ProtocolError(f"agent {self.agent_id} is not fresh: acked_seq={welcome['acked_seq']}")
        # pre-mask the events now that the connection (and its key) exist
        self.frames = [wsraw.client_frame(p, self.key) for p in self.frames]

    async def close(self) -> None:
        if self.stream is None:
            return
        with trio.move_on_after(1):
            async with self.send_lock:
                await self.stream.send_all(wsraw.client_frame(b"\x03\xe8", self.key, wsraw.OP_CLOSE))
        await self.stream.aclose()

    # --- running ---

    async def run(self, mode: str, start: float, rate: float, agents: int, deadline: float, drain_timeout: float) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._receive_loop)
            if mode == "saturate":
                await self._send_saturating(deadline)
            else:
                await self._send_paced(start, rate, agents, deadline)
            with trio.move_on_after(drain_timeout):
                while self.acked < self.next:
                    await self._wait_progress()
            if self.acked < self.next:
                self.stats.incomplete += 1
            nursery.cancel_scope.cancel()

    async def _wait_progress(self) -> None:
        self.progress = trio.Event()
        await self.progress.wait()

    async def _send(self, upto: int) -> None:
        data = b"".join(self.frames[self.next : upto])
        now = time.monotonic()
        if now < self.stats.first_send:
            self.stats.first_send = now
        self.bursts.append((upto, now))
        self.stats.sent += upto - self.next
        self.next = upto
        async with self.send_lock:
            assert self.stream is not None
            await self.stream.send_all(data)

    async def _send_saturating(self, deadline: float) -> None:
        total = len(self.frames)
        while self.next < total and time.monotonic() < deadline:
            upto = min(total, self.acked + self.window)
            if upto <= self.next:
                await self._wait_progress()
                continue
            await self._send(upto)

    async def _send_paced(self, start: float, rate: float, agents: int, deadline: float) -> None:
        """Event i of this agent is due at ``start + (index + i * agents) / rate``."""
        total = len(self.frames)
        period = agents / rate
        first_due = start + self.index / rate
        while self.next < total:
            now = time.monotonic()
            if now >= deadline:
                return
            due = min(total, int((now - first_due) / period) + 1) if now >= first_due else 0
            upto = min(due, self.acked + self.window)
            if upto > self.next:
                await self._send(upto)
            elif due > self.next:  # window full: wait for an ack
                await self._wait_progress()
            else:
                await trio.sleep(max(0.0, first_due + self.next * period - now))

    async def _receive_loop(self) -> None:
        assert self.stream is not None
        while True:
            data = await self.stream.receive_some(262144)
            if not data:
                raise wsraw.ProtocolError(f"{self.agent_id}: server closed the connection")
            now = time.monotonic()
            for opcode, payload in self.reader.feed(data):
                if opcode == wsraw.OP_TEXT:
                    seq = parse_ack(payload)
                    if seq is None:
                        frame = json.loads(payload)
                        if frame.get("type") != "ack":
                            raise wsraw.ProtocolError(f"{self.agent_id}: unexpected frame {frame}")
                        seq = int(frame["seq"])
                    self._acked(seq, now)
                elif opcode == wsraw.OP_PING:
                    async with self.send_lock:
                        await self.stream.send_all(wsraw.client_frame(payload, self.key, wsraw.OP_PONG))
                elif opcode == wsraw.OP_CLOSE:
                    code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else None
                    raise wsraw.ProtocolError(f"{self.agent_id}: server closed with {code} {payload[2:]!r}")

    def _acked(self, seq: int, now: float) -> None:
        """Credit every event up to ``seq`` with the latency since its burst was sent."""
        if seq <= self.acked:
            return
        stats = self.stats
        hist = stats.hist
        marker = self.acked
        bursts = self.bursts
        while bursts and marker < seq:
            last, sent_at = bursts[0]
            upto = min(last, seq)
            bucket = bucket_of(now - sent_at)
            hist[bucket] = hist.get(bucket, 0) + (upto - marker)
            marker = upto
            if last <= seq:
                bursts.popleft()
        stats.acked += seq - self.acked
        stats.acks += 1
        stats.last_ack = now
        self.acked = seq
        self.progress.set()


async def run(args: argparse.Namespace) -> dict[str, Any]:
    stats = Stats()
    token = args.token_file.read().strip() if args.token_file else None
    payloads = [event_payloads(args.events_per_agent, args.record_bytes, i) for i in range(args.agents)]
    agents = [Agent(i, f"{args.prefix}-{i}", payloads[i], stats, args.window) for i in range(args.agents)]
    del payloads
    with trio.fail_after(CONNECT_TIMEOUT):
        async with trio.open_nursery() as nursery:
            for agent in agents:
                nursery.start_soon(agent.connect, args.host, args.port, token)
    gc.collect()
    gc.freeze()  # the precomputed frames need no more scanning; keep collector pauses out of latencies
    print(json.dumps({"ready": args.agents}), flush=True)
    await trio.to_thread.run_sync(sys.stdin.readline)

    usage0 = resource.getrusage(resource.RUSAGE_SELF)
    start = time.monotonic()
    deadline = start + args.max_seconds if args.max_seconds else math.inf
    async with trio.open_nursery() as nursery:
        for agent in agents:
            nursery.start_soon(agent.run, args.mode, start, args.rate, args.agents, deadline, args.drain_timeout)
    end = time.monotonic()
    usage1 = resource.getrusage(resource.RUSAGE_SELF)
    async with trio.open_nursery() as nursery:
        for agent in agents:
            nursery.start_soon(agent.close)
    return {
        "agents": args.agents,
        "sent": stats.sent,
        "acked": stats.acked,
        "acks": stats.acks,
        "incomplete_agents": stats.incomplete,
        "budget_hit": bool(args.max_seconds) and stats.sent < args.agents * args.events_per_agent,
        "start": start,
        "end": end,
        "first_send": stats.first_send if stats.sent else None,
        "last_ack": stats.last_ack if stats.acked else None,
        "cpu_s": (usage1.ru_utime - usage0.ru_utime) + (usage1.ru_stime - usage0.ru_stime),
        "hist": {str(k): v for k, v in stats.hist.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--token-file", type=argparse.FileType("r"), help="send Authorization: Bearer <its contents>")
    parser.add_argument("--prefix", default="bench", help="agent ids are PREFIX-0, PREFIX-1, ...")
    parser.add_argument("--agents", type=int, default=100)
    parser.add_argument("--events-per-agent", type=int, default=2000)
    parser.add_argument("--record-bytes", type=int, default=250, help="approximate size of each event frame's JSON")
    parser.add_argument("--window", type=int, default=256, help="un-acked events in flight per agent")
    parser.add_argument("--mode", choices=["saturate", "paced"], default="saturate")
    parser.add_argument("--rate", type=float, default=5000.0, help="paced: events/s over all agents of this process")
    parser.add_argument("--max-seconds", type=float, default=0.0, help="stop sending after this long (0: never)")
    parser.add_argument("--drain-timeout", type=float, default=30.0, help="how long to wait for the last acks")
    args = parser.parse_args()
    print(json.dumps(trio.run(run, args)), flush=True)


if __name__ == "__main__":
    main()
