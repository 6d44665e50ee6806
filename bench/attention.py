"""The attention feed with many sessions (issue 3: ``attention.list`` <= 5 ms with 10k sessions and 1M
events; the ``attention`` push <= 250 ms after the event that causes it).

Usage::

    python bench/attention.py [--sessions 10000] [--events 1000000] [--needing 0.05,0.5,1.0]
                              [--calls 200] [--pushes 20] [--quick] [--json]

For each share of sessions that need the person, it builds a fresh store directly (``--sessions``
agents, one session each, ``--events`` events over them: a prompt and output, and for that share
a finished turn, so they await a reply), starts the real daemon on it and measures, over the
WebSocket from one client:

``list``  the round trip of ``attention.list`` after a warm-up, with ``status`` (answered from
          the store) measured the same way as the baseline.
``push``  a watcher subscribed to ``attention``; one seeded agent sends events that each change
          its item (``turn_completed`` puts it in the feed, ``prompt`` takes it out), one at a time,
          each when the previous change has been pushed. Timed from the send of the event to the
          arrival of the notification that shows the change, with the event's ack (the commit the
          push cannot precede) as the baseline. Half the events are sent at least 300 ms after the
          previous notification (``quiet``: the push may go at once), half 0-250 ms after it
          (``busy``: the push waits out the 250 ms the topic keeps between two lists).
"""

from __future__ import annotations

import argparse
import json
import queue
import random
import sys
import threading
import time
from pathlib import Path
from typing import Any

from common import Client, Daemon, bench_parser, build_timed, progress, scratch_dir, summary_ms

GOAL_LIST_MS = 5.0
GOAL_PUSH_MS = 250.0
QUIET_S = 0.3  # a quiet push: sent this long after the previous notification, at least
COALESCE_S = 0.25  # the attention topic's spacing (agentwatch.plugins.attention.COALESCE_S)


def measure(root: Path, args: argparse.Namespace, needing: float) -> dict[str, Any]:
    state = root / "state"
    build_timed(state / "agentwatch.db", args.events, args.sessions, needing=needing)
    with Daemon(state) as daemon:
        daemon.wait_ready()
        client = Client(daemon.port, daemon.token)
        feed, size = client.timed_calls("attention.list", None, args.calls)
        base, _ = client.timed_calls("status", None, args.calls)
        items, _ = client.call("attention.list")
        client.close()
        pushes = measure_pushes(daemon, args.sessions, int(args.sessions * needing), args.pushes)
    return {
        "sessions": args.sessions, "events": args.sessions * max(1, args.events // args.sessions), "needing": needing,
        "items": len(items["items"]), "reply_bytes": size,
        "attention_list": summary_ms(feed), "status": summary_ms(base), **pushes,
    }


def measure_pushes(daemon: Daemon, sessions: int, finishing: int, pushes: int) -> dict[str, Any]:
    """Push latencies of ``pushes`` changes made by the last seeded agent, quiet and busy alternately."""
    agent_id = f"agent-{sessions - 1:05d}"
    watcher = Client(daemon.port, daemon.token)
    arrived: queue.Queue[tuple[float, dict[str, Any]]] = queue.Queue()

    def read() -> None:  # every message as it arrives, until the reply to the last request
        while (message := json.loads(watcher.ws.receive_text())).get("id") != "last":
            arrived.put((time.perf_counter(), message))
        watcher.close()

    def pushed() -> tuple[float, dict[str, Any]]:
        """The next ``attention`` notification and when it arrived."""
        while True:
            try:
                at, message = arrived.get(timeout=10)
            except queue.Empty:
                raise SystemExit(f"no attention notification within 10 s; log: {daemon.log_path}") from None
            if message.get("method") == "attention":
                return at, message

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    watcher.send({"jsonrpc": "2.0", "id": 1, "method": "subscribe", "params": {"topics": ["attention"]}})
    shown = in_feed(pushed()[1], agent_id)  # the list as it was at subscribing
    agent = Client(daemon.port, daemon.token, f"/v1/agents/{agent_id}")
    agent.send({"type": "hello", "protocol": 1, "format": "agentwatch", "agent": {"name": agent_id}})
    welcome = agent.receive()
    if welcome.get("type") != "welcome":
        raise SystemExit(f"expected a welcome for {agent_id}, got {welcome}")
    seq = welcome["acked_seq"]
    if shown != (sessions - 1 < finishing):
        raise SystemExit(f"{agent_id}: in the feed = {shown} at start, which the seeded store does not say")
    results: dict[str, dict[str, list[float]]] = {mode: {"push": [], "ack": []} for mode in ("quiet", "busy")}
    last_push = time.perf_counter()
    for n in range(pushes):
        mode = "quiet" if n % 2 == 0 else "busy"
        gap = QUIET_S + random.uniform(0, 0.2) if mode == "quiet" else random.uniform(0, COALESCE_S)
        time.sleep(max(0.0, last_push + gap - time.perf_counter()))
        seq += 1
        kind = "prompt" if shown else "turn_completed"
        sent = time.perf_counter()
        agent.send({"type": "event", "seq": seq, "data": {"kind": kind, "text": f"{kind} {seq}"}})
        ack = agent.receive()
        acked = time.perf_counter()
        if ack != {"type": "ack", "seq": seq}:
            raise SystemExit(f"{agent_id}: expected the ack of {seq}, got {ack}")
        at, message = pushed()
        while in_feed(message, agent_id) == shown:  # a list sent before the change
            at, message = pushed()
        shown = not shown
        last_push = at
        results[mode]["push"].append(at - sent)
        results[mode]["ack"].append(acked - sent)
    agent.close()
    watcher.send({"jsonrpc": "2.0", "id": "last", "method": "status"})
    reader.join(10)
    every = [t for mode in results.values() for t in mode["push"]]
    acks = [t for mode in results.values() for t in mode["ack"]]
    return {
        "push": summary_ms(every), "push_ack": summary_ms(acks),
        "push_quiet": summary_ms(results["quiet"]["push"]), "push_busy": summary_ms(results["busy"]["push"]),
    }


def in_feed(message: dict[str, Any], agent_id: str) -> bool:
    """Whether ``agent_id`` has an item in an ``attention`` notification."""
    items = message.get("params", {}).get("items", [])
    return any(item["agent_id"] == agent_id for item in items)


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser(__doc__, "5 %% of the sessions in the feed, fewer calls and pushes")
    parser.add_argument("--sessions", type=int, default=10_000, help="agents in the store, one session each")
    parser.add_argument("--events", type=int, default=1_000_000, help="events in the store, spread over the sessions")
    parser.add_argument("--needing", help="shares of sessions in the feed (default 0.05,0.5,1.0; 0.05 with --quick)")
    parser.add_argument("--calls", type=int, help="timed calls of each method (default 200; 100 with --quick)")
    parser.add_argument("--pushes", type=int, help="changes pushed, half quiet, half busy (default 40; 10 with --quick)")
    args = parser.parse_args(argv)
    args.calls = args.calls or (100 if args.quick else 200)
    args.pushes = args.pushes or (10 if args.quick else 40)
    try:
        shares = [float(share) for share in (args.needing or ("0.05" if args.quick else "0.05,0.5,1.0")).split(",")]
    except ValueError:
        parser.error(f"--needing takes shares between 0 and 1, comma-separated; got {args.needing!r}")
    if not all(0 <= share <= 1 for share in shares) or args.sessions < 1 or args.events < args.sessions or args.pushes < 2:
        parser.error("need shares between 0 and 1, sessions >= 1, events >= sessions, pushes >= 2")
    runs = []
    for share in shares:
        with scratch_dir("agentwatch-attention-", args.tmp_dir) as root:
            runs.append(measure(root, args, share))
        progress(f"[needing {share:g}] {runs[-1]}")
    if args.json:
        print(json.dumps({"runs": runs, "goal_list_ms": GOAL_LIST_MS, "goal_push_ms": GOAL_PUSH_MS}))
        return 0
    print(f"{'sessions':>8} {'events':>8} {'items':>6} {'reply':>9}  {'list p50':>8} {'p99':>7}  {'status p50':>10} {'p99':>7}"
          f"  {'push p50':>8} {'p99':>7} {'max':>7}  {'quiet p99':>9} {'busy p99':>8}  {'ack p99':>7}")
    for r in runs:
        f, s, p = r["attention_list"], r["status"], r["push"]
        print(
            f"{r['sessions']:>8} {r['events']:>8} {r['items']:>6} {r['reply_bytes']:>8}B"
            f"  {f['p50_ms']:>6.2f}ms {f['p99_ms']:>5.2f}ms"
            f"  {s['p50_ms']:>8.2f}ms {s['p99_ms']:>5.2f}ms  {p['p50_ms']:>6.1f}ms {p['p99_ms']:>5.1f}ms {p['max_ms']:>5.1f}ms"
            f"  {r['push_quiet']['p99_ms']:>7.1f}ms {r['push_busy']['p99_ms']:>6.1f}ms  {r['push_ack']['p99_ms']:>5.1f}ms"
        )
    print(f"goals: attention.list <= {GOAL_LIST_MS:g} ms; push <= {GOAL_PUSH_MS:g} ms after the event")
    return 0


if __name__ == "__main__":
    sys.exit(main())
