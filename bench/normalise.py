"""Normalising the worst records we can build, per format (issue 15: linear time, nothing holds the loop).

Usage::

    python bench/normalise.py [--quick] [--json]

Three measures, each against a baseline taken in the same run:

- **growth**: for every worst record of ``tests/adversarial_records.py`` (runs of the tags a format
  looks for, thousands of content blocks, JSON text it parses, deep nesting), the time to normalise
  it at 1 MiB over the time at 100 KB. Linear is about 10; goal <= 15. Each format's worst is shown.
- **vs parse**: the time to normalise a 1 MiB worst record over the time ``json.loads`` takes to
  parse its text: what normalising adds to what ingest does anyway. Goal <= 5.
- **status under load**: the round trip of ``status`` to the real daemon while another process
  streams those 1 MiB records into it, one frame after another (each acknowledged before the next),
  over its round trip at rest. Goal <= 3 (median).

Times are the best of several repetitions (``time.perf_counter``), so a pause of the machine does
not count against a format.
"""

from __future__ import annotations

import json
import multiprocessing
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from common import REPO, Client, Daemon, bench_parser, scratch_dir, summary_ms

sys.path.insert(0, str(REPO / "tests"))

from adversarial_records import worst_records  # noqa: E402

from agentwatch.plugin_manager import Plugins  # noqa: E402

SMALL, LARGE = 100_000, 1 << 20
GROWTH_GOAL, PARSE_GOAL, STATUS_GOAL = 15.0, 5.0, 3.0
FRAME_ROOM = 128  # the event frame around a record


def best_time(function: Callable[[], Any], repeat: int, min_seconds: float = 0.02) -> float:
    """The best time of one call, over ``repeat`` rounds of enough calls to last ``min_seconds``."""
    calls = 1
    while True:
        started = time.perf_counter()
        for _ in range(calls):
            function()
        if (elapsed := time.perf_counter() - started) >= min_seconds or calls >= 1 << 16:
            break
        calls *= 2
    best = elapsed / calls
    for _ in range(repeat - 1):
        started = time.perf_counter()
        for _ in range(calls):
            function()
        best = min(best, (time.perf_counter() - started) / calls)
    return best


def measure_formats(repeat: int) -> dict[str, Any]:
    formats = {name: fmt for name, (fmt, _) in Plugins(entry_points=False).formats().items()}
    small = {(fmt, name): record for fmt, name, record in worst_records(SMALL)}
    rows = []
    for fmt, name, record in worst_records(LARGE - FRAME_ROOM):
        normalize = formats[fmt].normalize
        text = json.dumps(record, separators=(",", ":"))
        t_large = best_time(lambda: normalize(record), repeat)
        t_small = best_time(lambda: normalize(small[fmt, name]), repeat)
        t_parse = best_time(lambda: json.loads(text), repeat)
        rows.append({"format": fmt, "record": name, "bytes": len(text), "normalise_1mib_ms": t_large * 1e3,
                     "normalise_100kb_ms": t_small * 1e3, "parse_1mib_ms": t_parse * 1e3,
                     "growth": t_large / t_small, "vs_parse": t_large / t_parse})  # fmt: skip
    worst: dict[str, dict[str, Any]] = {}
    for row in rows:
        for key in ("growth", "vs_parse"):
            if fmt_worst := worst.setdefault(row["format"], {}).get(key):
                if fmt_worst["value"] >= row[key]:
                    continue
            worst[row["format"]][key] = {"value": row[key], "record": row["record"]}
    return {"records": rows, "worst": worst}


def stream_records(port: int, token: str, stop: Any, sent: Any) -> None:
    """Another process: one agent sending every 1 MiB worst record in turn, each in its own format,
    each acknowledged before the next, until ``stop`` is set."""
    records = worst_records(LARGE - FRAME_ROOM)
    agent = Client(port, token, path="/v1/agents/bench-adversarial")
    agent.send({"type": "hello", "protocol": 1, "format": "agentwatch", "agent": {"name": "bench"}})
    agent.receive()
    frames = [json.dumps({"type": "event", "seq": 0, "format": fmt, "data": record}, separators=(",", ":"))
              for fmt, _, record in records]
    seq = 0
    while not stop.is_set():
        seq += 1
        frame = frames[seq % len(frames)].replace('"seq":0', f'"seq":{seq}', 1)
        agent.ws.send_text(frame)
        while (reply := agent.receive())["type"] != "ack":
            if reply["type"] == "error":
                raise SystemExit(f"the daemon refused a record: {reply}")
        sent.value = seq
    agent.close()


def measure_status(root: Path, calls: int) -> dict[str, Any]:
    with Daemon(root / "state", settings={"AGENTWATCH_STORAGE_SYNCHRONOUS": "normal"}) as daemon:
        daemon.wait_ready()
        client = Client(daemon.port, daemon.token)
        at_rest, _ = client.timed_calls("status", None, calls)
        stop, sent = multiprocessing.Event(), multiprocessing.Value("i", 0)
        streamer = multiprocessing.Process(target=stream_records, args=(daemon.port, daemon.token, stop, sent))
        streamer.start()
        while sent.value < 3:  # streaming has begun
            time.sleep(0.01)
        started, before = time.perf_counter(), sent.value
        loaded, _ = client.timed_calls("status", None, calls, warmup=0)
        records_per_s = (sent.value - before) / (time.perf_counter() - started)
        stop.set()
        streamer.join(30)
        client.close()
    rest, load = summary_ms(at_rest), summary_ms(loaded)
    return {"at_rest": rest, "under_load": load, "records_per_s": records_per_s,
            "ratio_p50": load["p50_ms"] / rest["p50_ms"], "ratio_p99": load["p99_ms"] / rest["p99_ms"]}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser(__doc__, "fewer repetitions and status calls")
    args = parser.parse_args(argv)
    repeat, calls = (3, 200) if args.quick else (7, 1000)
    formats = measure_formats(repeat)
    with scratch_dir("agentwatch-normalise-", args.tmp_dir) as root:
        status = measure_status(root, calls)
    results = {"formats": formats, "status": status, "goals": {"growth": GROWTH_GOAL, "vs_parse": PARSE_GOAL, "status_ratio_p50": STATUS_GOAL}}
    if args.json:
        print(json.dumps(results))
        return 0
    print(f"{'format':<20} {'record':<28} {'100KB ms':>9} {'1MiB ms':>9} {'growth':>7} {'parse ms':>9} {'vs parse':>8}")
    for row in formats["records"]:
        print(f"{row['format']:<20} {row['record']:<28} {row['normalise_100kb_ms']:>9.3f} {row['normalise_1mib_ms']:>9.3f} "
              f"{row['growth']:>7.1f} {row['parse_1mib_ms']:>9.3f} {row['vs_parse']:>8.2f}")
    print(f"\n{'format':<20} {'worst growth':>12} (goal <= {GROWTH_GOAL:g})   {'worst vs parse':>14} (goal <= {PARSE_GOAL:g})")
    for fmt, worst in formats["worst"].items():
        print(f"{fmt:<20} {worst['growth']['value']:>12.1f} {'':<13} {worst['vs_parse']['value']:>14.2f}")
    rest, load = status["at_rest"], status["under_load"]
    print(f"\nstatus at rest: p50 {rest['p50_ms']:.2f} ms, p99 {rest['p99_ms']:.2f} ms; while 1 MiB worst records stream in "
          f"({status['records_per_s']:.0f}/s): p50 {load['p50_ms']:.2f} ms, p99 {load['p99_ms']:.2f} ms")
    print(f"ratio p50 {status['ratio_p50']:.2f} (goal <= {STATUS_GOAL:g}), p99 {status['ratio_p99']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
