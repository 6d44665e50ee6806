"""Every benchmark, one after the other, and one table of the targets P1-P8, N1-N3 and R1-R2.

Usage::

    python bench/run_all.py [--quick] [--only ingest,attention,...]

Runs each bench script below as ``<python> bench/<script> [--quick] --json`` (never two at once:
they would share the cores), reads the JSON object it prints, and prints one Markdown table:
target, goal, measured, baseline (measured the same way in the same run), ratio, PASS/MISS, and
the command that gave the figure. Each bench's own progress goes to stderr as it runs. A script
that is missing is skipped with a line saying so; one that fails gives an ERROR row naming it.
Exit status 1 if any target missed or any bench failed.

Request latencies (P3 list, P4) are judged on the median round trip, with the p99 shown beside
it; the push (P3), the ack p99 (P2, P5) and start (P7, the slowest run) on the figure named.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from common import BENCH, REPO, progress


@dataclass
class Row:
    target: str
    goal: str
    measured: str
    baseline: str
    ratio: float | None
    verdict: str  # PASS, MISS, info, SKIP or ERROR


def _ms(figures: dict[str, Any], key: str = "p50_ms", beside: str = "p99_ms") -> str:
    return f"{figures[key]:.2f} ms ({beside.removesuffix('_ms')} {figures[beside]:.2f})"


def _judge(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def ingest_rows(r: dict[str, Any]) -> list[Row]:
    servers, ratios = r["servers"], r["ratios"]

    def phase(server: str, name: str) -> dict[str, Any]:
        return servers.get(server, {}).get(name) or {}

    daemon, bare, per_event = (phase(s, "saturate") for s in ("daemon", "bare", "per-event"))
    paced_daemon, paced_bare = phase("daemon", "paced"), phase("bare", "paced")
    agents = r["config"]["agents"]
    rows = []
    for other, other_name in ((bare, "bare"), (per_event, "per-event")):
        ratio = ratios[f"throughput daemon/{other_name}"]
        rows.append(Row(
            f"P1 ingest throughput, {agents} agents saturating, vs {other_name}", f"ratio {ratio['goal']}",
            f"{daemon.get('throughput', 0):.0f} ev/s", f"{other.get('throughput', 0):.0f} ev/s ({other_name})",
            ratio["value"], ratio["verdict"],
        ))  # fmt: skip
    ratio = ratios["paced p99 daemon/bare"]
    rows.append(Row(
        f"P2 ack p99 at {r['config']['rate']:g} ev/s over {agents} agents", f"ratio {ratio['goal']}",
        f"{paced_daemon.get('p99_ms', 0):.2f} ms", f"{paced_bare.get('p99_ms', 0):.2f} ms (bare)",
        ratio["value"], ratio["verdict"],
    ))  # fmt: skip
    return rows


def fsync_rows(r: dict[str, Any]) -> list[Row]:
    return [Row("P2 floor: 4 KiB write + fsync (a durable commit)", "-", _ms(r), "-", None, "info")]


def commit_pages_rows(r: dict[str, Any]) -> list[Row]:
    return [
        Row(f"P2 cause: WAL written by a commit of {_count(size['events_per_commit'], 'event')} from "
            f"{_count(min(size['events_per_commit'], r['agents']), 'agent')}",
            "-", f"{size['wal_pages_per_commit']:g} pages ({size['wal_bytes_per_event']} bytes an event)", "-", None, "info")
        for size in r["sizes"]
    ]


def attention_rows(r: dict[str, Any]) -> list[Row]:
    rows = []
    for run in r["runs"]:
        where = f"{run['sessions'] // 1000}k sessions, {run['events'] / 1e6:g}M events, {run['items']} in the feed"
        f, s, p = run["attention_list"], run["status"], run["push"]
        rows.append(Row(f"P3 attention.list, {where}", f"<= {r['goal_list_ms']:g} ms", _ms(f), f"{_ms(s)} (status)",
                        _ratio(f["p50_ms"], s["p50_ms"]), _judge(f["p50_ms"] <= r["goal_list_ms"])))
        rows.append(Row(f"P3 attention push after the event, {where}", f"p99 <= {r['goal_push_ms']:g} ms",
                        f"p99 {p['p99_ms']:.1f} ms (quiet {run['push_quiet']['p99_ms']:.1f}, busy {run['push_busy']['p99_ms']:.1f})",
                        f"p99 {run['push_ack']['p99_ms']:.1f} ms (the event's ack)",
                        _ratio(p["p99_ms"], run["push_ack"]["p99_ms"]), _judge(p["p99_ms"] <= r["goal_push_ms"])))
    return rows


def events_rows(r: dict[str, Any]) -> list[Row]:
    s, size = r["status"], f"one agent, {r['events'] / 1e6:g}M events"
    return [
        Row(f"P4 events.list, {name} page of {r['limit']} (after_seq {page['after_seq'] or '-'}), {size}",
            f"<= {r['goal_ms']:g} ms", _ms(page), f"{_ms(s)} (status)", _ratio(page["p50_ms"], s["p50_ms"]),
            _judge(page["p50_ms"] <= r["goal_ms"]))  # fmt: skip
        for name, page in r["pages"].items()
    ]


def retention_rows(r: dict[str, Any]) -> list[Row]:
    sweep, base = r["sweep"], r["baseline"]
    return [Row(f"P5 ack p99 during a sweep of {sweep['sweep']['events']} events", f"ratio <= {r['goal']:g}",
                f"{sweep['p99_ms']:.2f} ms", f"{base['p99_ms']:.2f} ms (no sweep)", r["p99_ratio"], r["verdict"])]


def memory_rows(r: dict[str, Any]) -> list[Row]:
    if r.get("error"):
        return [Row("P6 memory", "-", r["error"], "-", None, "ERROR")]
    rows = []
    if "kib_per_idle_agent" in r:
        rows.append(Row(f"P6 memory per idle agent, {r['agents']} agents", f"<= {r['goal_kib_per_idle_agent']:g} KiB",
                        f"{r['kib_per_idle_agent']:.1f} KiB", f"{r['baseline_rss_kib']} KiB RSS with no agent",
                        _ratio(r["idle_rss_kib"], r["baseline_rss_kib"]), r["idle_verdict"]))
    for key, unit in (("rss_kib", "KiB"), ("wal_bytes", "bytes")):
        if f := (r.get("soak") or {}).get(key):
            rows.append(Row(f"P6 {key.split('_')[0].upper()} over a {r['soak_seconds']:g} s soak, last quarter / first",
                            "ratio 1 +- 0.1", f"{f['last_quarter_mean']:.0f} {unit}", f"{f['first_quarter_mean']:.0f} {unit}",
                            f["ratio"], f["verdict"]))
    return rows


def startup_rows(r: dict[str, Any]) -> list[Row]:
    full, empty = r["full"], r["empty"]
    return [
        Row(f"P7 start to {label}, {r['events'] / 1e6:g}M events, {r['runs']} runs", f"max <= {r['goal_s']:g} s",
            f"{full[key]['median_s']:.3f} s (max {full[key]['max_s']:.3f})",
            f"{empty[key]['median_s']:.3f} s (max {empty[key]['max_s']:.3f}) (empty store)",
            _ratio(full[key]["median_s"], empty[key]["median_s"]), _judge(full[key]["max_s"] <= r["goal_s"]))  # fmt: skip
        for key, label in (("ready", "the ready line"), ("status", "the first status answer"),
                           ("attention", "the first attention.list answer"))  # fmt: skip
    ]


def normalise_rows(r: dict[str, Any]) -> list[Row]:
    goals, worst, status = r["goals"], r["formats"]["worst"], r["status"]
    rows = []
    for fmt, w in worst.items():
        growth, vs_parse = w["growth"], w["vs_parse"]
        rows.append(Row(f"N1 normalise growth 100 KB -> 1 MiB, {fmt} (worst: {growth['record']})", f"<= {goals['growth']:g}",
                        f"{growth['value']:.1f}x", "10x (linear)", growth["value"] / 10, _judge(growth["value"] <= goals["growth"])))
        rows.append(Row(f"N2 normalise / json.loads, 1 MiB, {fmt} (worst: {vs_parse['record']})", f"<= {goals['vs_parse']:g}",
                        f"{vs_parse['value']:.2f}x", "json.loads of the same text", vs_parse["value"],
                        _judge(vs_parse["value"] <= goals["vs_parse"])))
    rest, load = status["at_rest"], status["under_load"]
    rows.append(Row(f"N3 status while 1 MiB worst records stream in ({status['records_per_s']:.0f}/s)",
                    f"ratio <= {goals['status_ratio_p50']:g}", _ms(load), f"{_ms(rest)} (at rest)", status["ratio_p50"],
                    _judge(status["ratio_p50"] <= goals["status_ratio_p50"])))
    return rows


def hook_rows(r: dict[str, Any]) -> list[Row]:
    base = r["baseline"]
    return [
        Row(f"P8 agentwatch hook, daemon {name}, median over {r['runs']} runs", f"overhead <= {r['goal_ms']:g} ms",
            f"{p['median_ms']:.1f} ms (+{p['overhead_ms']:.1f})", f"{base['median_ms']:.1f} ms (python -c pass)", p["ratio"],
            _judge(p["overhead_ms"] <= r["goal_ms"]))  # fmt: skip
        for name, p in (("up", r["up"]), ("down", r["down"]))
    ]


def relay_lines_rows(r: dict[str, Any]) -> list[Row]:
    first, last = r["sizes"][0], r["sizes"][-1]
    rows = [Row(f"R1 agentwatch run --quiet, one {size['mib']} MiB line, vs cat", "-",
                f"{size['relay_s']:.3f} s (start-up {r['startup_s']:.3f})", f"{size['cat_s']:.3f} s (cat piped to cat)", size["ratio"], "info")
            for size in r["sizes"]]  # fmt: skip
    rows.append(Row(f"R2 agentwatch run time per MiB of a line, {last['mib']} over {first['mib']} MiB", f"<= {r['goal_growth']:g}",
                    f"{last['relay_ms_per_mib']:.2f} ms/MiB", f"{first['relay_ms_per_mib']:.2f} ms/MiB", r["growth"], r["verdict"]))
    short = r["short_lines"]
    rows.append(Row(f"R3 agentwatch run --quiet, {short['lines']} short lines (no daemon: the outbox), vs cat", "-",
                    f"{short['relay_s']:.3f} s ({short['lines_per_s']} lines/s)", f"{short['cat_s']:.3f} s (cat piped to cat)",
                    round(short["relay_s"] / short["cat_s"], 1), "info"))
    return rows


#: name: (script, what its JSON gives); in the order they run.
BENCHES: dict[str, tuple[str, Callable[[dict[str, Any]], list[Row]]]] = {
    "ingest": ("ingest.py", ingest_rows),
    "fsync": ("fsync.py", fsync_rows),
    "commit_pages": ("commit_pages.py", commit_pages_rows),
    "attention": ("attention.py", attention_rows),
    "events": ("events.py", events_rows),
    "retention": ("retention.py", retention_rows),
    "memory": ("memory.py", memory_rows),
    "startup": ("startup.py", startup_rows),
    "hook": ("hook.py", hook_rows),
    "normalise": ("normalise.py", normalise_rows),
    "relay_lines": ("relay_lines.py", relay_lines_rows),
}


def run_bench(name: str, quick: bool) -> tuple[list[Row], str, float]:
    """Run one bench; its rows, the command and the seconds it took."""
    script, rows_of = BENCHES[name]
    path = BENCH / script
    argv = [sys.executable, str(path), *(["--quick"] if quick else []), "--json"]
    command = shlex.join(["python", str(path.relative_to(REPO)), *argv[2:]])
    if not path.exists():
        return [Row(f"{name}: {path.relative_to(REPO)} is not there", "-", "skipped", "-", None, "SKIP")], command, 0.0
    progress(f"=== {command}")
    started = time.monotonic()
    done = subprocess.run(argv, stdout=subprocess.PIPE, text=True, cwd=REPO)
    seconds = time.monotonic() - started
    progress(f"=== {name}: {seconds:.0f} s, exit status {done.returncode}")
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    try:
        result = json.loads(lines[-1])
        return rows_of(result), command, seconds
    except (IndexError, json.JSONDecodeError, KeyError, TypeError) as exc:
        what = f"exit status {done.returncode}, " + (f"unreadable result ({type(exc).__name__}: {exc})" if lines else "no result")
        return [Row(f"{name}: failed", "-", f"{what}; run the command alone to see why", "-", None, "ERROR")], command, seconds


def print_table(results: list[tuple[Row, str]]) -> None:
    print("| target | goal | measured | baseline | ratio | verdict | command |")
    print("|---|---|---|---|---|---|---|")
    for row, command in results:
        ratio = "-" if row.ratio is None else f"{row.ratio:.2f}"
        print(f"| {row.target} | {row.goal} | {row.measured} | {row.baseline} | {ratio} | {row.verdict} | `{command}` |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="every bench's --quick: a few minutes in all")
    parser.add_argument("--only", help="comma-separated subset of: " + ", ".join(BENCHES))
    args = parser.parse_args(argv)
    names = list(BENCHES)
    if args.only:
        chosen = [name.strip() for name in args.only.split(",") if name.strip()]
        if not chosen or set(chosen) - set(BENCHES):
            parser.error(f"--only takes a comma-separated subset of {', '.join(BENCHES)}; got {args.only!r}")
        names = [name for name in BENCHES if name in chosen]
    started = time.monotonic()
    results: list[tuple[Row, str]] = []
    timings = []
    for name in names:
        rows, command, seconds = run_bench(name, args.quick)
        results += [(row, command) for row in rows]
        timings.append(f"{name} {seconds:.0f} s")
    print_table(results)
    print(f"\n{'quick' if args.quick else 'full'} run on {REPO}: {time.monotonic() - started:.0f} s ({', '.join(timings)})")
    return 1 if any(row.verdict in ("MISS", "ERROR") for row, _ in results) else 0


if __name__ == "__main__":
    sys.exit(main())
