"""A daemon subprocess killed with SIGKILL mid-ingest, or stopped with SIGTERM under load.

``FAULT_KILLS`` sets how many times the SIGKILL test kills the daemon (3; the long run,
``python bench/faults.py``, uses 20).
"""

import os
import signal

import trio
from trio_websocket import ConnectionClosed, HandshakeError

from helpers import DaemonProcess, Running, agent, stored

AGENTS = 100
EVENTS = 300
FLOODERS = 10  # agents sending as fast as they can in the SIGTERM test
KILLS = int(os.environ.get("FAULT_KILLS", "3"))
CLEAR_EVERY = 50  # every 50th seq is a context_cleared


def record(agent_id: str, seq: int) -> dict:
    if seq % CLEAR_EVERY == 0:
        return {"kind": "context_cleared", "text": f"{agent_id}:{seq}"}
    return {"kind": "output", "text": f"{agent_id}:{seq}"}


class Fleet:
    """Agents that stream until all their events are acked, reconnecting whenever the daemon goes."""

    def __init__(self) -> None:
        self.running: Running | None = None
        self.acked = {f"agent-{n}": 0 for n in range(AGENTS)}
        self.lost: list[str] = []

    async def stream(self, agent_id: str) -> None:
        while self.acked[agent_id] < EVENTS:
            running = self.running
            if running is None:
                await trio.sleep(0.02)
                continue
            try:
                async with agent(running, agent_id) as a:
                    welcome = await a.hello()
                    if welcome["acked_seq"] < self.acked[agent_id]:
                        self.lost.append(f"{agent_id}: acked {self.acked[agent_id]}, welcome says {welcome['acked_seq']}")
                    seq = self.acked[agent_id] = welcome["acked_seq"]  # acked before the kill, the ack unseen
                    while seq < EVENTS:
                        batch = range(seq + 1, min(seq + 20, EVENTS) + 1)
                        await a.send({"type": "events", "events": [{"seq": s, "data": record(agent_id, s)} for s in batch]})
                        frames = await a.until_ack(batch[-1])
                        self.acked[agent_id] = frames[-1]["seq"]
                        seq = batch[-1]
            except (OSError, ConnectionClosed, HandshakeError):
                await trio.sleep(0.02)


async def test_sigkill_mid_ingest_loses_no_acked_event_and_duplicates_none(tmp_path):
    state_dir = tmp_path / "state"
    fleet = Fleet()
    async with trio.open_nursery() as nursery:
        for agent_id in fleet.acked:
            nursery.start_soon(fleet.stream, agent_id)
        for kill in range(KILLS):
            daemon = DaemonProcess(state_dir)
            fleet.running = await daemon.ready()
            target = (kill + 1) * EVENTS // (KILLS + 1)
            with trio.fail_after(30):
                while min(fleet.acked.values()) < target:
                    await trio.sleep(0.005)
            daemon.proc.send_signal(signal.SIGKILL)
            fleet.running = None
            assert await daemon.wait() == -signal.SIGKILL
        daemon = DaemonProcess(state_dir)
        fleet.running = await daemon.ready()
    assert fleet.lost == [], "an acked event was missing after a restart"
    try:
        for agent_id in fleet.acked:
            events = await stored(fleet.running, agent_id)
            assert [e["seq"] for e in events] == list(range(1, EVENTS + 1)), "each event exactly once"
            assert [e["data"] for e in events] == [record(agent_id, e["seq"]) for e in events]
            assert [e["session"] for e in events] == [seq // CLEAR_EVERY for seq in range(1, EVENTS + 1)]
    finally:
        daemon.proc.send_signal(signal.SIGTERM)
        assert await daemon.wait() == 0


async def test_sigterm_under_load_commits_and_acks_everything_received_then_exits_0(tmp_path):
    state_dir = tmp_path / "state"
    daemon = DaemonProcess(state_dir)
    running = await daemon.ready()
    last_ack: dict[str, int] = {}
    codes: dict[str, int] = {}

    async def flood(agent_id: str, started: trio.Event) -> None:
        async with agent(running, agent_id) as a:
            await a.hello()
            started.set()
            seq = 0

            async def read_acks() -> None:
                while True:
                    frame = await a.recv()
                    assert frame["type"] == "ack", frame
                    last_ack[agent_id] = frame["seq"]

            try:
                async with trio.open_nursery() as inner:
                    inner.start_soon(read_acks)
                    while True:
                        await a.send({"type": "events", "events": [{"seq": seq + i, "data": record(agent_id, seq + i)} for i in range(1, 11)]})
                        seq += 10
                        await trio.sleep(0)
            except* ConnectionClosed:
                pass
            codes[agent_id] = a.ws.closed.code

    async with trio.open_nursery() as nursery:
        for n in range(FLOODERS):
            started = trio.Event()
            nursery.start_soon(flood, f"agent-{n}", started)
            await started.wait()
        await trio.sleep(0.3)
        daemon.proc.send_signal(signal.SIGTERM)
    assert await daemon.wait() == 0
    assert set(codes.values()) == {1001}
    lines = daemon.lines()
    assert any(line["event"] == "draining" for line in lines)
    assert not any(line["level"] in ("error", "critical") for line in lines), lines

    daemon = DaemonProcess(state_dir)
    running = await daemon.ready()
    try:
        for n in range(FLOODERS):
            events = await stored(running, f"agent-{n}")
            assert events, "the flood stored something"
            assert events[-1]["seq"] == last_ack[f"agent-{n}"], "everything committed was acked before the close"
            assert [e["seq"] for e in events] == list(range(1, events[-1]["seq"] + 1))
    finally:
        daemon.proc.send_signal(signal.SIGTERM)
        assert await daemon.wait() == 0
