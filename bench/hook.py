"""``agentwatch hook`` latency, the cost Claude Code pays on every tool call (issue 5: median
at most 60 ms over ``python3 -c pass``, with the daemon up and with it down).

Usage::

    python bench/hook.py [--runs 50] [--quick] [--json]

Each run is a new process, as Claude Code starts one: ``<venv>/bin/agentwatch hook`` with a real
hook payload (tests/fixtures/claude-hooks, in turn) on stdin, timed from spawn to exit. The
baseline is ``<python> -c pass`` measured the same way in the same run. Three phases, one after
the other: baseline, daemon up (a fresh daemon, auth on, each payload stored and acknowledged
before the hook exits), daemon down (the payload goes to the outbox). Exit status 1 if a median
overhead is over the goal.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import REPO, Daemon

PAYLOADS = REPO / "tests" / "fixtures" / "claude-hooks"
GOAL_MS = 60.0


def payloads() -> list[bytes]:
    """Every recorded payload, as Claude Code would send it."""
    found = []
    for path in sorted(PAYLOADS.glob("*.json")):
        found += [json.dumps(record).encode() for record in json.loads(path.read_text(encoding="utf-8"))]
    return found


def timed(command: list[str], inputs: list[bytes], runs: int, env: dict[str, str]) -> list[float]:
    """Milliseconds from spawn to exit of ``command``, ``runs`` times (stdin cycling through ``inputs``)."""
    times = []
    for run in range(runs):
        start = time.perf_counter()
        done = subprocess.run(command, input=inputs[run % len(inputs)], env=env, capture_output=True)
        times.append((time.perf_counter() - start) * 1000)
        if done.returncode != 0:
            raise SystemExit(f"{command} exited {done.returncode}: {done.stderr.decode()}")
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, help="hook runs per phase (default 50; 20 with --quick)")
    parser.add_argument("--quick", action="store_true", help="fewer runs")
    parser.add_argument("--json", action="store_true", help="print the results as one JSON object")
    args = parser.parse_args()
    runs = args.runs or (20 if args.quick else 50)
    if runs < 2:
        parser.error("--runs must be at least 2")
    program = Path(sys.executable).parent / "agentwatch"
    if not program.exists():
        raise SystemExit(f"no {program}: run this with the python of the venv agentwatch is installed in")
    inputs = payloads()
    with tempfile.TemporaryDirectory(prefix="agentwatch-bench-hook-") as tmp:
        state_dir = Path(tmp) / "state"
        # As installed: with its bytecode cached (an environment that forbids writing it would time the compiler).
        env = {name: value for name, value in os.environ.items() if name != "PYTHONDONTWRITEBYTECODE"}
        env |= {"AGENTWATCH_STATE_DIR": str(state_dir), "AGENTWATCH_AGENT_ID": "bench-hook"}
        baseline = timed([sys.executable, "-c", "pass"], [b""], runs, env)
        with Daemon(state_dir) as daemon:
            daemon.wait_ready()
            up = timed([str(program), "hook"], inputs, runs, env)
        pending = state_dir / "outbox" / "bench-hook.jsonl"
        stored_before_down = not pending.exists()
        down = timed([str(program), "hook"], inputs, runs, env)
        spooled = pending.read_bytes().count(b"\n") if pending.exists() else 0
    base = statistics.median(baseline)
    phases = {}
    for name, times in (("baseline", baseline), ("up", up), ("down", down)):
        median = statistics.median(times)
        phases[name] = {"median_ms": round(median, 2), "p90_ms": round(statistics.quantiles(times, n=10)[-1], 2),
                        "overhead_ms": round(median - base, 2), "ratio": round(median / base, 3)}
    failed = any(phases[name]["overhead_ms"] > GOAL_MS for name in ("up", "down"))
    if args.json:
        outbox = {"stored_before_down": stored_before_down, "spooled": spooled}
        print(json.dumps({"runs": runs, "goal_ms": GOAL_MS} | outbox | phases))
    else:
        print(f"{'phase':<14}{'median ms':>10}{'p90 ms':>9}{'over baseline':>15}{'ratio':>7}")
        for label, name in (("python -c pass", "baseline"), ("daemon up", "up"), ("daemon down", "down")):
            p = phases[name]
            print(f"{label:<14}{p['median_ms']:>10.1f}{p['p90_ms']:>9.1f}{p['overhead_ms']:>15.1f}{p['ratio']:>7.2f}")
        print(f"goal: median overhead <= {GOAL_MS:g} ms; daemon up: outbox empty after the runs = {stored_before_down}; "
              f"daemon down: {spooled} of {runs} payloads kept in the outbox")
    return 1 if failed or not stored_before_down or spooled != runs else 0


if __name__ == "__main__":
    raise SystemExit(main())
