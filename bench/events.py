"""``events.list`` from an agent with a million events (issue 4: a page of 100 <= 5 ms, first or deep).

Usage::

    python bench/events.py [--events 1000000] [--limit 100] [--calls 200] [--quick] [--json]

Builds a store directly (one agent, ``--events`` events of about 250 bytes), starts the real
daemon on it and times, over the WebSocket from one client after a warm-up, the round trip of
``events.list`` for three pages of ``--limit`` events: the first (no ``after_seq``), one from the
middle (``after_seq`` = half) and the last full page (``after_seq`` = events - limit - 1). The
baseline is ``status`` (answered from the store) measured the same way in the same run.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from common import Client, Daemon, bench_parser, build_timed, scratch_dir, summary_ms

GOAL_MS = 5.0
AGENT_ID = "agent-00000"


def measure(root: Path, args: argparse.Namespace) -> dict[str, Any]:
    state = root / "state"
    build_timed(state / "agentwatch.db", args.events, 1)
    pages = {"first": None, "middle": args.events // 2, "end": args.events - args.limit - 1}
    results: dict[str, Any] = {"events": args.events, "limit": args.limit, "pages": {}}
    with Daemon(state) as daemon:
        daemon.wait_ready()
        client = Client(daemon.port, daemon.token)
        for name, after in pages.items():
            params = {"agent_id": AGENT_ID, "limit": args.limit} | ({} if after is None else {"after_seq": after})
            page, _ = client.call("events.list", params)
            seqs = [event["seq"] for event in page["events"]]
            first = 1 if after is None else after + 1
            if seqs != list(range(first, first + args.limit)) or not page["has_more"]:
                raise SystemExit(f"events.list {params} gave seqs {seqs[:3]}...{seqs[-3:]}, has_more {page['has_more']}")
            times, size = client.timed_calls("events.list", params, args.calls)
            results["pages"][name] = {"after_seq": after, "reply_bytes": size, **summary_ms(times)}
        times, _ = client.timed_calls("status", None, args.calls)
        results["status"] = summary_ms(times)
        client.close()
    return results


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser(__doc__, "fewer calls")
    parser.add_argument("--events", type=int, default=1_000_000, help="events of the one agent")
    parser.add_argument("--limit", type=int, default=100, help="events per page (the protocol's default)")
    parser.add_argument("--calls", type=int, help="timed calls per page and of status (default 200; 100 with --quick)")
    args = parser.parse_args(argv)
    args.calls = args.calls or (100 if args.quick else 200)
    if not 1 <= args.limit <= 1000 or args.events < 2 * args.limit + 2:
        parser.error("need 1 <= limit <= 1000 (the protocol's range) and events >= 2 * limit + 2")
    with scratch_dir("agentwatch-events-", args.tmp_dir) as root:
        results = measure(root, args)
    if args.json:
        print(json.dumps(results | {"goal_ms": GOAL_MS}))
        return 0
    print(f"{'page':<8} {'after_seq':>9} {'reply':>8}  {'p50 ms':>7} {'p99 ms':>7} {'max ms':>7}")
    for name, r in [*results["pages"].items(), ("status", {"after_seq": "-", "reply_bytes": "-", **results["status"]})]:
        print(f"{name:<8} {r['after_seq'] if r['after_seq'] is not None else '-':>9} {r['reply_bytes']:>8}  "
              f"{r['p50_ms']:>7.2f} {r['p99_ms']:>7.2f} {r['max_ms']:>7.2f}")
    print(f"goal: a page of {args.limit} <= {GOAL_MS:g} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
