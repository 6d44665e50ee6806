"""Ingest latency while retention sweeps a big store, against the same load without a sweep.

Usage::

    python bench/retention.py [--events 1000000] [--agents 100] [--rate 1000] [--senders 20] [--quick]

It builds one store of ``--events`` old events (received 40 days ago, spread over ``--agents``
agents) with agentwatch's own schema, and copies it for two runs of the real daemon
(``python -m agentwatch serve``, a subprocess, the checkout's code):

``sweep``     the default limits (``max_age`` 30 days): the sweep that follows start (10 s
              after it) removes every old event, in batches, while the load runs.
``baseline``  the same store with every limit off: the sweep finds nothing.

In both, ``--senders`` new agents send ``--rate`` events/s in total, one event per frame,
each timed from its send to the ack covering it. Latencies are compared over the same
window: from the start to the end of the sweep (from the daemon's ``retention_swept`` log
line), at the same offsets from start in the baseline. The goal: sweep p99 / baseline p99
<= 2.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import trio
from trio_websocket import open_websocket_url

from common import DAY_MS, Daemon, bench_parser, build_timed, file_bytes, percentile, progress, scratch_dir, wall_time

SWEEP_TIMEOUT = 900.0
GOAL = 2.0


# --- the load ---


async def load(daemon: Daemon, senders: int, rate: float, record_bytes: int, until: Any) -> list[tuple[float, float]]:
    """Send until ``until()`` is true; return (send time, ack latency) of every event."""
    samples: list[tuple[float, float]] = []
    text = "y" * max(0, record_bytes - 60)
    stop = trio.Event()

    async def watch() -> None:  # ``until`` reads the daemon's log: not once per event
        while not until():
            await trio.sleep(0.05)
        stop.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(watch)
        for k in range(senders):
            nursery.start_soon(_sender, daemon, f"live-{k}", rate / senders, k / rate, text, stop, samples)
    return samples


async def _sender(
    daemon: Daemon, agent_id: str, rate: float, offset: float, text: str, stop: trio.Event, samples: list[tuple[float, float]]
) -> None:
    url = f"ws://127.0.0.1:{daemon.port}/v1/agents/{agent_id}"
    async with open_websocket_url(url, extra_headers=[("Authorization", f"Bearer {daemon.token}")]) as ws:
        await ws.send_message(json.dumps({"type": "hello", "protocol": 1, "format": "agentwatch", "agent": {"name": agent_id}}))
        welcome = json.loads(await ws.get_message())
        assert welcome["type"] == "welcome", welcome
        sent: dict[int, float] = {}
        done = trio.Event()
        last_seq = 0

        async def read_acks() -> None:
            acked = 0
            while True:
                frame = json.loads(await ws.get_message())
                if frame["type"] != "ack":
                    raise SystemExit(f"{agent_id}: unexpected frame {frame}")
                now = time.time()
                for seq in range(acked + 1, frame["seq"] + 1):
                    at = sent.pop(seq)
                    samples.append((at, now - at))
                acked = frame["seq"]
                if done.is_set() and acked == last_seq:
                    return

        async with trio.open_nursery() as nursery:
            nursery.start_soon(read_acks)
            await trio.sleep(offset)
            next_at = time.time()
            while not stop.is_set():
                last_seq += 1
                sent[last_seq] = time.time()
                await ws.send_message(json.dumps({"type": "event", "seq": last_seq, "data": {"kind": "output", "text": text}}))
                next_at += 1 / rate
                await trio.sleep(max(0.0, next_at - time.time()))
            done.set()
            with trio.move_on_after(30):
                while sent:
                    await trio.sleep(0.01)
            nursery.cancel_scope.cancel()


# --- the runs ---


def run(name: str, template: Path, root: Path, args: argparse.Namespace, window: tuple[float, float] | None) -> dict[str, Any]:
    state = root / name / "state"
    state.mkdir(parents=True)
    shutil.copy(template, state / "agentwatch.db")
    before = file_bytes(state / "agentwatch.db")
    progress(f"[{name}] starting the daemon on a copy of the store ({before / 2**20:.0f} MiB)")
    settings = {f"AGENTWATCH_{key.upper()}": value for key, value in (item.split("=", 1) for item in args.set)}
    if name == "baseline":
        settings |= {"AGENTWATCH_RETENTION_MAX_AGE": "0", "AGENTWATCH_RETENTION_MAX_EVENTS_PER_AGENT": "0"}
    daemon = Daemon(state, python=args.python, settings=settings)
    try:
        ready_at = daemon.wait_ready()
        if window is None:  # the sweep run: load until the sweep is over, and a second more
            def until() -> bool:
                return time.time() > ready_at + SWEEP_TIMEOUT or (
                    (line := daemon.line("retention_swept")) is not None and time.time() > wall_time(line["timestamp"]) + 1
                )
        else:
            def until() -> bool:
                return time.time() > ready_at + window[1] + 1

        samples = trio.run(load, daemon, args.senders, args.rate, args.record_bytes, until)
        swept = daemon.line("retention_swept")
    finally:
        daemon.stop()
    result: dict[str, Any] = {"log": str(daemon.log_path)}
    if window is None:
        if swept is None:
            raise SystemExit(f"[{name}] no retention_swept line within {SWEEP_TIMEOUT:g}s; log: {daemon.log_path}")
        end = wall_time(swept["timestamp"]) - ready_at
        window = (end - swept["duration_s"], end)
        result["sweep"] = {
            "events": swept["events"],
            "duration_s": swept["duration_s"],
            "events_per_s": round(swept["events"] / swept["duration_s"]),
            "freed_mib": round(swept["freed_bytes"] / 2**20, 1),
            "file_mib_before": round(before / 2**20, 1),
            "file_mib_after": round(file_bytes(state / "agentwatch.db") / 2**20, 1),
        }
    latencies = [lat for at, lat in samples if window[0] <= at - ready_at <= window[1]]
    result |= {
        "window_s": [round(window[0], 2), round(window[1], 2)],
        "events_in_window": len(latencies),
        "events_total": len(samples),
        "p50_ms": round(percentile(latencies, 0.5) * 1000, 2),
        "p99_ms": round(percentile(latencies, 0.99) * 1000, 2),
        "max_ms": round(max(latencies, default=math.nan) * 1000, 2),
    }
    progress(f"[{name}] {result}")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser(__doc__, "100k old events")
    parser.add_argument("--events", type=int, help="old events in the store (default 1000000; 100000 with --quick)")
    parser.add_argument("--agents", type=int, default=100, help="agents the old events belong to")
    parser.add_argument("--record-bytes", type=int, default=250, help="approximate JSON size of one record")
    parser.add_argument("--rate", type=float, default=1000.0, help="live events/s during the runs, over all senders")
    parser.add_argument("--senders", type=int, default=20, help="live agent connections")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION_KEY=VALUE",
                        help="a daemon setting for both runs, e.g. retention_batch_events=200 (repeatable)")
    parser.add_argument("--python", default=sys.executable, help="interpreter that runs the daemon")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args(argv)
    args.events = args.events or (100_000 if args.quick else 1_000_000)
    with scratch_dir("agentwatch-retention-", args.tmp_dir, args.keep) as root:
        template = root / "template" / "agentwatch.db"
        old = int(time.time() * 1000) - 40 * DAY_MS
        build_timed(template, args.events, args.agents, start_ms=old, record_bytes=args.record_bytes)
        sweep = run("sweep", template, root, args, None)
        baseline = run("baseline", template, root, args, tuple(sweep["window_s"]))
    ratio = sweep["p99_ms"] / baseline["p99_ms"]
    verdict = "PASS" if ratio <= GOAL else "MISS"
    if args.json:
        print(json.dumps({"sweep": sweep, "baseline": baseline, "p99_ratio": round(ratio, 3), "goal": GOAL, "verdict": verdict}))
    else:
        s = sweep["sweep"]
        print(f"sweep: removed {s['events']} events in {s['duration_s']}s ({s['events_per_s']}/s); "
              f"file {s['file_mib_before']} -> {s['file_mib_after']} MiB ({s['freed_mib']} MiB freed)")
        print(f"{'run':<9} {'window s':>14} {'events':>7} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}")
        for name, r in (("sweep", sweep), ("baseline", baseline)):
            print(f"{name:<9} {str(r['window_s']):>14} {r['events_in_window']:>7} {r['p50_ms']:>8} {r['p99_ms']:>8} {r['max_ms']:>8}")
        print(f"ack p99 during sweep / without: {ratio:.2f}   goal <= {GOAL:g}   {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
