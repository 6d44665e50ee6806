"""``attention.list`` latency with many sessions (issue 3: goal <= 5 ms with 10k sessions).

Usage::

    python bench/attention.py [--sessions 10000] [--needing 0.05,0.5,1.0] [--calls 200]

For each share of sessions that need the person, it seeds a fresh store with that many agents
(one session each: a finished turn awaiting a reply, or still working), starts the real daemon
on it, and times ``attention.list`` over the WebSocket from a client, after a warm-up. Printed:
p50 and p99 of the round trip, with a ``status`` call (answered from the store) as the
baseline measured the same way.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import trio
from trio_websocket import open_websocket_url

SRC = Path(__file__).resolve().parent.parent / "src"
sys.path.insert(0, str(SRC))

from agentwatch.logs import configure_logging  # noqa: E402
from agentwatch.model import AgentInfo, Batch, IncomingEvent, Normalized, StoredEvent, now_ms  # noqa: E402
from agentwatch.plugins.storage.sqlite_store import SqliteStore  # noqa: E402


class _Sink:
    def committed(self, acked_seq: int, stored: list[StoredEvent]) -> None:
        pass

    def failed(self, batch: Batch, code: str, message: str) -> None:
        raise RuntimeError(message)


async def seed(path: Path, sessions: int, needing: float) -> None:
    """``sessions`` agents, of which the first ``needing`` share finished a turn."""
    store = SqliteStore(path)
    done = ["prompt", "output", "turn_completed"]
    async with trio.open_nursery() as nursery:
        await nursery.start(store.run, lambda events, facts, removed: None)
        for n in range(sessions):
            agent_id = f"agent-{n:05d}"
            await store.hello(agent_id, AgentInfo(cwd=None), now_ms())
            kinds = done if n < sessions * needing else done[:1]
            events = [
                IncomingEvent(seq, None, "agentwatch", json.dumps({"kind": kind, "text": f"{kind} {n}"}), Normalized(kind, text=f"{kind} {n}"))
                for seq, kind in enumerate(kinds, start=1)
            ]
            await store.submit(Batch(agent_id, events, now_ms(), _Sink(), 100))
        await store.hello("last", AgentInfo(), now_ms())  # waits for everything before it
        nursery.cancel_scope.cancel()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def timed_calls(url: str, token: str, method: str, calls: int) -> tuple[list[float], int]:
    headers = [(b"Authorization", f"Bearer {token}".encode())]
    async with open_websocket_url(url, extra_headers=headers, max_message_size=64 << 20) as ws:
        times, size = [], 0
        for call in range(calls + 20):
            started = time.perf_counter()
            await ws.send_message(json.dumps({"jsonrpc": "2.0", "id": call, "method": method}))
            reply = await ws.get_message()
            if call >= 20:  # warm-up first
                times.append(time.perf_counter() - started)
            size = len(reply)
        return sorted(times), size


def percentile(times: list[float], share: float) -> float:
    return times[min(len(times) - 1, int(len(times) * share))] * 1000


async def measure(sessions: int, needing: float, calls: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="agentwatch-bench-") as tmp:
        state = Path(tmp) / "state"
        await seed(state / "agentwatch.db", sessions, needing)
        port = free_port()
        log = (Path(tmp) / "daemon.log").open("w")
        daemon = subprocess.Popen(
            [sys.executable, "-m", "agentwatch", "serve", "--state-dir", str(state), "--listen", f"127.0.0.1:{port}"],
            stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONPATH": str(SRC)},
        )
        try:
            with trio.fail_after(60):
                while not (state / "token").exists() or b'"ready"' not in (Path(tmp) / "daemon.log").read_bytes():
                    await trio.sleep(0.05)
            token = (state / "token").read_text().strip()
            url = f"ws://127.0.0.1:{port}/v1/watch"
            feed, size = await timed_calls(url, token, "attention.list", calls)
            base, _ = await timed_calls(url, token, "status", calls)
        finally:
            daemon.terminate()
            daemon.wait()
    return {
        "sessions": sessions, "needing": needing, "items": int(sessions * needing), "reply_bytes": size,
        "attention_p50_ms": percentile(feed, 0.5), "attention_p99_ms": percentile(feed, 0.99),
        "status_p50_ms": percentile(base, 0.5), "status_p99_ms": percentile(base, 0.99),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=10_000)
    parser.add_argument("--needing", default="0.05,0.5,1.0", help="shares of sessions in the feed, comma-separated")
    parser.add_argument("--calls", type=int, default=200)
    args = parser.parse_args()
    configure_logging("warning", "json", open(os.devnull, "w"))  # noqa: SIM115 - the seeding store's lines
    print(f"{'sessions':>8} {'items':>6} {'reply':>9}  {'attention p50':>13} {'p99':>7}  {'status p50':>10} {'p99':>7}")
    for needing in (float(share) for share in args.needing.split(",")):
        r = trio.run(measure, args.sessions, needing, args.calls)
        print(
            f"{r['sessions']:>8} {r['items']:>6} {r['reply_bytes']:>8}B  {r['attention_p50_ms']:>11.2f}ms {r['attention_p99_ms']:>5.2f}ms"
            f"  {r['status_p50_ms']:>8.2f}ms {r['status_p99_ms']:>5.2f}ms"
        )


if __name__ == "__main__":
    main()
