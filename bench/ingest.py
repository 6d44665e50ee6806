"""Ingest benchmark: the agentwatch daemon against a bare and a naive per-event server.

Usage::

    python bench/ingest.py [--agents 100] [--events 200000] [--record-bytes 250] [--rate 5000]
                           [--quick] [--only daemon,bare,per-event] [--daemon-env NAME=VALUE] [--json]

Servers (each a subprocess on a free 127.0.0.1 port, run one after the other, never
together, so they do not share the 2 cores):

``bare``       ``bench/baselines.py bare``: trio-websocket, JSON-parse, ack, store nothing.
``per-event``  ``bench/baselines.py per-event``: one SQLite transaction (WAL,
               synchronous=FULL) per event before its ack.
``daemon``     ``python -m agentwatch serve --listen 127.0.0.1:PORT --state-dir DIR`` with a
               fresh state dir; the generator waits for ``DIR/token`` and sends it as
               ``Authorization: Bearer``. Its output goes to ``DIR/daemon.log``.

Each server gets two phases, driven by ``bench/loadgen.py`` in separate processes
(``--procs``), fresh agent ids per phase, every agent connected before the clock starts:

saturate  ``--events`` split evenly over ``--agents``, each agent sending as fast as its
          window of ``--window`` un-acked events allows. Throughput = acked events / (first
          send .. last ack).
paced     ``--rate`` events/s in total, spread evenly over the agents (staggered), for
          ``--paced-seconds``; latency is what matters here.

Latency is per event: from the moment its burst was written to the socket to the arrival
of the first cumulative ack covering it (p50/p99 from a 1 % log histogram).

Time budget: the per-event baseline is slow (one fsync per event), so its saturating
phase stops *sending* after ``--per-event-seconds`` (default 15 s, 5 s with ``--quick``);
what was sent is still waited for, and its throughput counts only acknowledged events
over first send .. last ack. Every other phase has the ``--max-seconds`` safety cap. The
per-event paced phase runs, but the server cannot keep up with 5000 events/s, so its
latencies mostly measure the window queue; it is flagged "overloaded". The default run
takes about 2-3 minutes.

Also printed: each server's CPU (from /proc, all threads, as a fraction of one core) and
the generators' CPU, to show the generator is not what limits throughput, and events per
ack (how much the server coalesces acks).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
SERVERS = ("bare", "per-event", "daemon")
CLK_TCK = os.sysconf("SC_CLK_TCK")
START_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0
PACED_GRACE = 0.5  # paced phase: stop sending this long after the last event was due (an overloaded server)
GOALS = {  # name: (numerator server, denominator server, metric, comparison, goal)
    "throughput daemon/bare": ("daemon", "bare", "saturate.throughput", ">=", 0.6),
    "throughput daemon/per-event": ("daemon", "per-event", "saturate.throughput", ">=", 5.0),
    "paced p99 daemon/bare": ("daemon", "bare", "paced.p99_ms", "<=", 2.0),
}

sys.path.insert(0, str(BENCH))
from common import free_port, progress, terminate  # noqa: E402
from loadgen import bucket_value  # noqa: E402  (bench/ is not a package)


class BenchError(Exception):
    """A server or a generator failed; the message says where to look."""


@dataclass
class Server:
    """A server under test, running as a subprocess."""

    name: str
    argv: list[str]
    workdir: Path
    port: int
    token_file: Path | None = None
    env: dict[str, str] | None = None
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    _log: Any = None

    def start(self) -> None:
        self.log_path = self.workdir / f"{self.name}.log"
        self._log = self.log_path.open("wb")
        try:
            self.proc = subprocess.Popen(self.argv, stdout=self._log, stderr=subprocess.STDOUT, cwd=REPO, env=self.env)
        except OSError as exc:
            raise BenchError(f"cannot start {self.name}: {exc}") from None
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if self.proc.poll() is not None:
                raise BenchError(f"{self.name} exited with {self.proc.returncode} at start ({self.log_tail()}); log: {self.log_path}")
            if time.monotonic() > deadline:
                raise BenchError(f"{self.name} not ready after {START_TIMEOUT:g} s; log: {self.log_path}")
            if self._token_ready() and _port_open(self.port):
                return
            time.sleep(0.05)

    def _token_ready(self) -> bool:
        if self.token_file is None:
            return True
        try:
            return bool(self.token_file.read_text().strip())
        except OSError:
            return False

    def cpu_seconds(self) -> float:
        """User + system CPU of the server process, all threads (from /proc)."""
        assert self.proc is not None
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> int | None:
        """SIGTERM, then SIGKILL after :data:`STOP_TIMEOUT`; returns the exit code."""
        self.close_log()
        return None if self.proc is None else terminate(self.proc, STOP_TIMEOUT)

    def log_tail(self, lines: int = 2) -> str:
        assert self.log_path is not None
        self._log.flush()
        text = self.log_path.read_text(errors="replace").strip().splitlines()
        return " | ".join(text[-lines:]) or "no output"

    def close_log(self) -> None:
        if self._log is not None:
            self._log.close()


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def make_server(name: str, workdir: Path, python: str, daemon_env: dict[str, str]) -> Server:
    port = free_port()
    if name == "daemon":
        env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTWATCH_")} | daemon_env
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO / "src"), env.get("PYTHONPATH")]))
        state = workdir / "state"
        argv = [python, "-m", "agentwatch", "serve", "--listen", f"127.0.0.1:{port}", "--state-dir", str(state)]
        return Server(name, argv, workdir, port, token_file=state / "token", env=env)
    argv = [sys.executable, str(BENCH / "baselines.py"), name, "--port", str(port)]
    if name == "per-event":
        argv += ["--db", str(workdir / "per-event.db")]
    return Server(name, argv, workdir, port)


# --- running the load generator ---


def run_phase(server: Server, args: argparse.Namespace, phase: str) -> dict[str, Any]:
    """Run one phase with ``args.procs`` generator processes and merge what they measured."""
    procs = args.procs
    if phase == "saturate":
        per_agent = max(1, args.events // args.agents)
        max_seconds = args.per_event_seconds if server.name == "per-event" else args.max_seconds
        extra = ["--mode", "saturate", "--max-seconds", str(max_seconds)]
    else:
        per_agent = max(1, round(args.rate * args.paced_seconds / args.agents))
        max_seconds = args.paced_seconds + PACED_GRACE
        extra = ["--mode", "paced", "--max-seconds", str(max_seconds)]
    generators: list[subprocess.Popen[str]] = []
    stderr_files: list[TextIO] = []
    for k in range(procs):
        agents = args.agents // procs + (1 if k < args.agents % procs else 0)
        argv = [
            sys.executable, str(BENCH / "loadgen.py"),
            "--port", str(server.port), "--prefix", f"{phase}-p{k}", "--agents", str(agents),
            "--events-per-agent", str(per_agent), "--record-bytes", str(args.record_bytes),
            "--window", str(args.window), "--rate", str(args.rate * agents / args.agents),
            "--drain-timeout", str(args.drain_timeout), *extra,
        ]  # fmt: skip
        if server.token_file is not None:
            argv += ["--token-file", str(server.token_file)]
        errors = tempfile.TemporaryFile("w+")
        stderr_files.append(errors)
        generators.append(subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=errors, text=True))
    try:
        for gen, err in zip(generators, stderr_files, strict=True):
            assert gen.stdout is not None
            if not gen.stdout.readline().startswith('{"ready"'):
                raise BenchError(f"load generator failed to connect to {server.name}: {_tail(gen, err)}; server log: {server.log_path}")
        cpu0 = server.cpu_seconds()
        for gen in generators:
            assert gen.stdin is not None
            gen.stdin.write("go\n")
            gen.stdin.flush()
        results = []
        for gen, err in zip(generators, stderr_files, strict=True):
            assert gen.stdout is not None
            line = gen.stdout.readline()
            gen.wait(max_seconds + args.drain_timeout + 60)
            if gen.returncode != 0 or not line:
                raise BenchError(f"load generator failed against {server.name}: {_tail(gen, err)}; server log: {server.log_path}")
            results.append(json.loads(line))
        cpu1 = server.cpu_seconds() if server.alive() else math.nan
    finally:
        for gen in generators:
            if gen.poll() is None:
                gen.kill()
                gen.wait()
        for errfile in stderr_files:
            errfile.close()
    return summarize(results, cpu1 - cpu0, args.rate if phase == "paced" else None)


def _tail(gen: subprocess.Popen[str], err: TextIO) -> str:
    if gen.poll() is None:
        gen.kill()
        gen.wait()
    err.seek(0)
    lines = err.read().strip().splitlines()
    return " | ".join(lines[-3:]) or f"exit code {gen.returncode}"


def percentile(hist: dict[int, int], q: float) -> float | None:
    """The ``q`` quantile (0..1) of a bucket histogram, in seconds."""
    total = sum(hist.values())
    if not total:
        return None
    rank = q * total
    seen = 0
    for bucket in sorted(hist):
        seen += hist[bucket]
        if seen >= rank:
            return bucket_value(bucket)
    return bucket_value(max(hist))


def summarize(results: list[dict[str, Any]], server_cpu_s: float, target_rate: float | None) -> dict[str, Any]:
    """Merge generator results into one phase summary."""
    hist: dict[int, int] = {}
    for result in results:
        for bucket, count in result["hist"].items():
            hist[int(bucket)] = hist.get(int(bucket), 0) + count
    acked = sum(r["acked"] for r in results)
    sent = sum(r["sent"] for r in results)
    acks = sum(r["acks"] for r in results)
    firsts = [r["first_send"] for r in results if r["first_send"] is not None]
    lasts = [r["last_ack"] for r in results if r["last_ack"] is not None]
    seconds = max(lasts) - min(firsts) if firsts and lasts else math.nan
    wall = max(r["end"] for r in results) - min(r["start"] for r in results)
    gen_cpu = sum(r["cpu_s"] for r in results)
    p50, p99, pmax = percentile(hist, 0.5), percentile(hist, 0.99), percentile(hist, 1.0)
    summary: dict[str, Any] = {
        "sent": sent,
        "acked": acked,
        "seconds": round(seconds, 3),
        "throughput": round(acked / seconds, 1) if seconds > 0 else None,
        "p50_ms": round(p50 * 1000, 3) if p50 is not None else None,
        "p99_ms": round(p99 * 1000, 3) if p99 is not None else None,
        "max_ms": round(pmax * 1000, 3) if pmax is not None else None,
        "acks": acks,
        "events_per_ack": round(acked / acks, 2) if acks else None,
        "server_cpu": round(server_cpu_s / wall, 3) if wall > 0 else None,
        "generator_cpu": round(gen_cpu / wall, 3) if wall > 0 else None,
        "budget_hit": any(r["budget_hit"] for r in results),
        "incomplete_agents": sum(r["incomplete_agents"] for r in results),
    }
    if target_rate is not None:
        summary["target_rate"] = target_rate
        summary["overloaded"] = bool(summary["throughput"] is None or summary["throughput"] < 0.9 * target_rate)
    return summary


# --- one server, all servers ---


def bench_server(name: str, args: argparse.Namespace, root: Path) -> dict[str, Any]:
    workdir = root / name
    workdir.mkdir()
    server = make_server(name, workdir, args.python, args.daemon_env)
    entry: dict[str, Any] = {"command": " ".join(server.argv), "error": None}
    progress(f"[{name}] starting: {entry['command']}")
    try:
        server.start()
        for phase in ("saturate", "paced"):
            progress(f"[{name}] {phase} ...")
            entry[phase] = run_phase(server, args, phase)
            progress(f"[{name}] {phase}: {_brief(entry[phase])}")
            if not server.alive():
                raise BenchError(f"{name} died during the {phase} phase; log: {server.log_path}")
    except BenchError as exc:
        entry["error"] = str(exc)
        entry["log"] = str(server.log_path)
        progress(f"[{name}] FAILED: {exc}")
    finally:
        code = server.stop()
        entry["exit_code"] = code
        if code not in (0, None, -signal.SIGTERM) and entry["error"] is None:
            entry["error"] = f"{name} exited with {code} after SIGTERM; log: {server.log_path}"
            entry["log"] = str(server.log_path)
            progress(f"[{name}] {entry['error']}")
    return entry


def _brief(phase: dict[str, Any]) -> str:
    return (
        f"{phase['acked']} events in {phase['seconds']} s = {phase['throughput']} ev/s, "
        f"p50 {phase['p50_ms']} ms, p99 {phase['p99_ms']} ms, server CPU {phase['server_cpu']}, "
        f"generator CPU {phase['generator_cpu']}"
    )


def _metric(results: dict[str, Any], server: str, path: str) -> float | None:
    value: Any = results.get(server)
    for key in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return float(value) if isinstance(value, int | float) else None


def ratios(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    out = {}
    for label, (num, den, path, op, goal) in GOALS.items():
        a, b = _metric(results, num, path), _metric(results, den, path)
        value = a / b if a is not None and b else None
        verdict = None if value is None else ("PASS" if (value >= goal if op == ">=" else value <= goal) else "MISS")
        out[label] = {"value": None if value is None else round(value, 3), "goal": f"{op} {goal}", "verdict": verdict or "n/a"}
    return out


def print_table(results: dict[str, Any], report: dict[str, dict[str, Any]]) -> None:
    head = (
        f"{'server':<10} {'phase':<9} {'acked':>8} {'secs':>7} {'events/s':>10} {'p50 ms':>8} {'p99 ms':>9} "
        f"{'ev/ack':>7} {'srv CPU':>8} {'gen CPU':>8}  note"
    )
    print(head)
    print("-" * len(head))
    for name, entry in results.items():
        for phase in ("saturate", "paced"):
            p = entry.get(phase)
            if p is None:
                continue
            notes = []
            if p.get("budget_hit") and phase == "saturate":
                notes.append("time budget")
            if p.get("overloaded"):
                notes.append(f"overloaded (target {p['target_rate']:g}/s)")
            if p.get("incomplete_agents"):
                notes.append(f"{p['incomplete_agents']} agents not fully acked")
            print(
                f"{name:<10} {phase:<9} {p['acked']:>8} {p['seconds']:>7.2f} {_fmt(p['throughput'], '.0f'):>10} "
                f"{_fmt(p['p50_ms'], '.2f'):>8} {_fmt(p['p99_ms'], '.2f'):>9} {_fmt(p['events_per_ack'], '.1f'):>7} "
                f"{_fmt(p['server_cpu'], '.0%'):>8} {_fmt(p['generator_cpu'], '.0%'):>8}  {', '.join(notes)}"
            )
        if entry.get("error"):
            print(f"{name:<10} ERROR: {entry['error']}")
    print()
    for label, r in report.items():
        print(f"{label:<28} {_fmt(r['value'], '.3f'):>8}   goal {r['goal']:<7} {r['verdict']}")


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, spec)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--agents", type=int, help="concurrent agent connections (default 100; 20 with --quick)")
    parser.add_argument(
        "--events", type=int, help="events in the saturating phase, split over the agents (default 200000; 20000 with --quick)"
    )
    parser.add_argument("--record-bytes", type=int, default=250, help="approximate JSON size of one event frame")
    parser.add_argument("--rate", type=float, default=5000.0, help="paced phase: events/s over all agents")
    parser.add_argument("--paced-seconds", type=float, help="paced phase length (default 10; 3 with --quick)")
    parser.add_argument("--window", type=int, default=256, help="un-acked events in flight per agent")
    parser.add_argument(
        "--per-event-seconds", type=float, help="per-event saturating phase: stop sending after this long (default 15; 5 with --quick)"
    )
    parser.add_argument("--max-seconds", type=float, default=120.0, help="any saturating phase: stop sending after this long")
    parser.add_argument("--drain-timeout", type=float, default=30.0, help="how long a generator waits for the last acks")
    parser.add_argument("--procs", type=int, default=1, help="load generator processes per phase")
    parser.add_argument("--quick", action="store_true", help="20 agents x 20000 events, 3 s paced: well under a minute")
    parser.add_argument("--only", default=",".join(SERVERS), help="comma-separated subset of: " + ", ".join(SERVERS))
    parser.add_argument("--python", default=sys.executable, help="interpreter that runs the daemon (default: this one)")
    parser.add_argument(
        "--daemon-env", action="append", default=[], metavar="AGENTWATCH_SECTION_KEY=VALUE",
        help="a setting for the daemon, e.g. AGENTWATCH_STORAGE_SYNCHRONOUS=normal (repeatable; default: none)",
    )
    parser.add_argument("--tmp-dir", type=Path, help="where the temporary state dirs go (default: the system's)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (always kept after a failure)")
    parser.add_argument("--json", action="store_true", help="print the results as one JSON object instead of a table")
    args = parser.parse_args(argv)
    quick = args.quick
    args.agents = args.agents or (20 if quick else 100)
    args.events = args.events or (20_000 if quick else 200_000)
    args.paced_seconds = args.paced_seconds or (3.0 if quick else 10.0)
    args.per_event_seconds = args.per_event_seconds or (5.0 if quick else 15.0)
    only = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = set(only) - set(SERVERS)
    if unknown or not only:
        parser.error(f"--only takes a comma-separated subset of {', '.join(SERVERS)}; got {args.only!r}")
    args.only = [name for name in SERVERS if name in only]  # always bare, per-event, daemon order
    settings = [item.partition("=") for item in args.daemon_env]
    if any(not name.startswith("AGENTWATCH_") or not equals for name, equals, _ in settings):
        parser.error(f"--daemon-env takes AGENTWATCH_SECTION_KEY=VALUE; got {args.daemon_env!r}")
    args.daemon_env = {name: value for name, _, value in settings}
    if args.agents < 1 or args.events < args.agents or args.procs < 1 or args.procs > args.agents or args.rate <= 0:
        parser.error("need agents >= 1, events >= agents, 1 <= procs <= agents, rate > 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="agentwatch-bench-", dir=args.tmp_dir))
    progress(f"temporary directory: {root}")
    results = {name: bench_server(name, args, root) for name in args.only}
    report = ratios(results)
    failed = any(entry["error"] for entry in results.values())
    if args.json:
        keys = ("agents", "events", "record_bytes", "rate", "paced_seconds", "window", "per_event_seconds", "procs")
        config = {k: getattr(args, k) for k in keys}
        print(json.dumps({"config": config, "servers": results, "ratios": report, "cpus": os.cpu_count()}, indent=None))
    else:
        print_table(results, report)
    if failed or args.keep:
        progress(f"kept {root}")
    else:
        shutil.rmtree(root, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
