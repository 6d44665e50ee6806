"""``agentwatch run`` reading an agent's output: one long line without a newline, the worst case
(issue 16: a 32 MB line took 7.9 s, quadratic, where ``cat`` takes a few milliseconds).

Usage::

    python bench/relay_lines.py [--quick] [--sizes 8,64] [--runs 5] [--json]

For each size N (MiB), a file of N MiB of ``x`` without a newline goes through
``<python> -m agentwatch run --quiet -- cat FILE`` (the checkout's code; no daemon, so the line's
record goes to the outbox and the relay exits once ``cat`` has) and, as the baseline, through
``cat FILE | cat`` (a pipe and a reader that copies). Each figure is the best of ``--runs``; the
relay's start-up is measured the same way with an empty file. Printed: both times and their
ratio per size, and the growth: the relay's time past start-up per MiB at the largest size over
that at the smallest (1 when linear; the quadratic reader gave about the ratio of the sizes).
Exit status 1 if the growth is over the goal. Also timed, for information: 200 000 short lines
(each a record; with no daemon each read's lines are one outbox write, fsynced), against ``cat``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from common import SRC, bench_parser, progress, scratch_dir

GOAL_GROWTH = 2.0  # time per MiB, largest size over smallest
SHORT_LINES = 200_000


def best_of(runs: int, command: list[str], env: dict[str, str], state: Path) -> float:
    """The shortest of ``runs`` runs of ``command`` (seconds), the outbox emptied after each."""
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        done = subprocess.run(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        times.append(time.perf_counter() - started)
        if done.returncode != 0:
            raise SystemExit(f"{command} exited {done.returncode}: {done.stderr.decode(errors='replace')}")
        shutil.rmtree(state / "outbox", ignore_errors=True)
    return min(times)


def line_file(folder: Path, mib: int) -> Path:
    path = folder / f"line-{mib}MiB"
    with path.open("wb") as handle:
        for _ in range(mib):
            handle.write(b"x" * (1 << 20))
    return path


def main() -> int:
    parser = bench_parser(__doc__, "sizes 8,32 MiB and 3 runs (default 8,64 and 5)")
    parser.add_argument("--sizes", help="comma-separated line sizes in MiB")
    parser.add_argument("--runs", type=int, help="runs per figure; the best counts")
    args = parser.parse_args()
    sizes = sorted(int(size) for size in args.sizes.split(",")) if args.sizes else [8, 32] if args.quick else [8, 64]
    runs = args.runs or (3 if args.quick else 5)
    with scratch_dir("agentwatch-bench-relay-", args.tmp_dir) as root:
        state = root / "state"
        env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTWATCH_")} | {"AGENTWATCH_STATE_DIR": str(state)}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SRC), env.get("PYTHONPATH")]))
        relay = [sys.executable, "-m", "agentwatch", "run", "--quiet", "--", "cat"]
        startup = best_of(runs, [*relay, str(line_file(root, 0))], env, state)
        results = []
        for mib in sizes:
            path = line_file(root, mib)
            progress(f"{mib} MiB line: relay and cat, best of {runs}")
            relayed = best_of(runs, [*relay, str(path)], env, state)
            piped = best_of(runs, ["sh", "-c", 'cat "$1" | cat', "sh", str(path)], env, state)
            results.append({"mib": mib, "relay_s": round(relayed, 4), "cat_s": round(piped, 4), "ratio": round(relayed / piped, 1),
                            "relay_ms_per_mib": round((relayed - startup) * 1000 / mib, 3)})
            path.unlink()
        short = root / "short-lines"
        short.write_bytes(b"".join(b"line %d of the agent's output\n" % n for n in range(SHORT_LINES)))
        progress(f"{SHORT_LINES} short lines: relay and cat, best of {runs}")
        short_relayed = best_of(runs, [*relay, str(short)], env, state)
        short_piped = best_of(runs, ["sh", "-c", 'cat "$1" | cat', "sh", str(short)], env, state)
    first, last = results[0], results[-1]
    lines = {"lines": SHORT_LINES, "relay_s": round(short_relayed, 4), "cat_s": round(short_piped, 4),
             "lines_per_s": round(SHORT_LINES / (short_relayed - startup))}
    growth = round(last["relay_ms_per_mib"] / first["relay_ms_per_mib"], 2) if first["relay_ms_per_mib"] > 0 else None
    passed = growth is not None and growth <= GOAL_GROWTH
    if args.json:
        print(json.dumps({"runs": runs, "startup_s": round(startup, 4), "sizes": results, "growth": growth,
                          "goal_growth": GOAL_GROWTH, "verdict": "PASS" if passed else "MISS", "short_lines": lines}))
    else:
        print(f"{'line MiB':>8}{'relay s':>10}{'cat s':>9}{'ratio':>8}{'relay ms/MiB':>14}")
        for r in results:
            print(f"{r['mib']:>8}{r['relay_s']:>10.3f}{r['cat_s']:>9.3f}{r['ratio']:>8.1f}{r['relay_ms_per_mib']:>14.2f}")
        print(f"relay start-up (empty output): {startup:.3f} s; time per MiB past start-up, {last['mib']} over {first['mib']} MiB: "
              f"{growth}x (goal <= {GOAL_GROWTH:g}, linear is 1)")
        print(f"{SHORT_LINES} short lines: relay {short_relayed:.3f} s ({lines['lines_per_s']} lines/s past start-up), cat {short_piped:.3f} s")
    return 0 if passed else 1


if __name__ == "__main__":
    raise SystemExit(main())
