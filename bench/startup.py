"""Start to ready with a big store (issue 7: <= 1 s with a million events).

Usage::

    python bench/startup.py [--events 1000000] [--agents 100] [--runs 5] [--quick] [--json]

Builds a store directly (``--events`` events over ``--agents`` agents, one session each) and
uses an empty store as the baseline. Each store is started once untimed (the token and the
schema exist afterwards, as on any start but the first), then the two are started in turn,
``--runs`` times each: ``python -m agentwatch serve`` (the checkout's code), timed from spawn to

``ready``      the daemon's ``ready`` log line (its own timestamp);
``status``     the first ``status`` answer: a client connects every 2 ms from spawn on;
``attention``  then the first ``attention.list`` answer (it waits for the stored sessions' facts).

Printed: median and max of each over the runs. The store's pages are in the OS's cache (it was
just built): a start after a reboot also reads them from disk.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path

from common import Client, Daemon, bench_parser, build_timed, progress, scratch_dir

GOAL_S = 1.0
POLL_S = 0.002


def start_once(state: Path) -> dict[str, float]:
    """One start of the daemon on ``state``: seconds from spawn to each milestone."""
    with Daemon(state) as daemon:
        deadline = time.monotonic() + 60
        while True:
            try:
                client = Client(daemon.port, daemon.token, timeout=60)
                break
            except OSError:  # not listening yet, or (on a first start) no token yet
                if daemon.proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"the daemon did not accept a connection; log: {daemon.log_path}") from None
                time.sleep(POLL_S)
        client.call("status")
        status = time.time()
        client.call("attention.list")
        attention = time.time()
        client.close()
        ready = daemon.wait_ready()
        return {name: at - daemon.spawned_at for name, at in (("ready", ready), ("status", status), ("attention", attention))}


def stats(runs: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    out = {}
    for milestone in ("ready", "status", "attention"):
        times = [r[milestone] for r in runs]
        out[milestone] = {"median_s": round(statistics.median(times), 4), "max_s": round(max(times), 4)}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser(__doc__, "fewer starts")
    parser.add_argument("--events", type=int, default=1_000_000, help="events in the big store")
    parser.add_argument("--agents", type=int, default=100, help="agents the events belong to, one session each")
    parser.add_argument("--runs", type=int, help="timed starts of each store (default 5; 3 with --quick)")
    args = parser.parse_args(argv)
    args.runs = args.runs or (3 if args.quick else 5)
    if args.runs < 1 or args.agents < 1 or args.events < args.agents:
        parser.error("need runs >= 1, agents >= 1 and events >= agents")
    with scratch_dir("agentwatch-startup-", args.tmp_dir) as root:
        stores = {"empty": root / "empty" / "state", "full": root / "full" / "state"}
        build_timed(stores["full"] / "agentwatch.db", args.events, args.agents)
        for state in stores.values():
            start_once(state)  # untimed: makes the token (and the empty store's schema)
        runs: dict[str, list[dict[str, float]]] = {name: [] for name in stores}
        for run in range(args.runs):
            for name, state in stores.items():
                runs[name].append(start_once(state))
                progress(f"[{name} {run + 1}/{args.runs}] " + ", ".join(f"{k} {v:.3f}s" for k, v in runs[name][-1].items()))
    results = {"events": args.events, "agents": args.agents, "runs": args.runs} | {name: stats(r) for name, r in runs.items()}
    if args.json:
        print(json.dumps(results | {"goal_s": GOAL_S}))
        return 0
    print(f"{'store':<6} {'ready median':>12} {'max':>7}  {'status median':>13} {'max':>7}  {'attention median':>16} {'max':>7}")
    for name in stores:
        r = results[name]
        print(f"{name:<6} {r['ready']['median_s']:>11.3f}s {r['ready']['max_s']:>6.3f}s  {r['status']['median_s']:>12.3f}s "
              f"{r['status']['max_s']:>6.3f}s  {r['attention']['median_s']:>15.3f}s {r['attention']['max_s']:>6.3f}s")
    print(f"goal: ready <= {GOAL_S:g} s with {args.events} events; median ratio full/empty "
          f"{results['full']['ready']['median_s'] / results['empty']['ready']['median_s']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
