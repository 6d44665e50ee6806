"""Memory per idle agent, and RSS and WAL size over a soak under steady load (target P6).

Usage::

    python bench/memory.py [--agents 1000] [--senders 100] [--rate 1000] [--soak-seconds 1800] [--quick] [--json]

It starts the real daemon (``python -m agentwatch serve``, the checkout's code, a fresh state
dir, auth on) and reads its resident set size (``VmRSS`` in ``/proc/PID/status``):

idle   RSS with no agent (the baseline), then ``--agents`` agents connect (WebSocket handshake,
       ``hello``, ``welcome``) and stay idle, answering the daemon's pings. Per agent:
       (RSS with them - baseline) / agents, in KiB. Goal: <= 50 KiB.
soak   ``--senders`` of those agents send ``--rate`` events/s in total (paced, staggered, at
       most ``--window`` un-acknowledged events each; every event's durable ack is awaited)
       for ``--soak-seconds``, while the others stay connected and idle. RSS and the size of
       ``agentwatch.db-wal`` are sampled every ``--sample-seconds``; the mean of the last
       quarter of the samples over the mean of the first quarter must be within 1 +- 0.10
       (flat); the max is reported too. ``--warmup-seconds`` (default 60) of the same load
       run before sampling starts, so that a steady state is compared rather than caches
       filling: the writer's SQLite page cache (16 MiB) grows with the store until it is full,
       about 50 s at 1000 events/s (longer at lower rates: lengthen the warm-up with them).
       Retention keeps its defaults.

Each RSS figure is the median of several readings a few tenths of a second apart, taken after
the daemon has had ``SETTLE_SECONDS`` to finish what it was doing. File descriptors: the
soft RLIMIT_NOFILE of this process is raised to its hard limit before the daemon starts, so
the daemon inherits it; both need one per agent.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import sys
import tempfile
from collections import deque
from pathlib import Path
from typing import Any

import trio

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent / "src"))
sys.path.insert(0, str(BENCH))
from agentwatch import rawws  # noqa: E402
from common import progress  # noqa: E402  (bench/ is not a package)
from ingest import BenchError, Server, make_server, percentile  # noqa: E402
from loadgen import PADDING, bucket_of, open_agent, parse_ack  # noqa: E402

GOAL_KIB_PER_AGENT = 50.0
FLAT_WITHIN = 0.10  # last-quarter mean / first-quarter mean within 1 +- this
SETTLE_SECONDS = 3.0  # after the daemon is ready, and after the agents connected, before RSS is read
RSS_READINGS = 5  # readings per RSS figure, RSS_READING_GAP apart; their median is the figure
RSS_READING_GAP = 0.2
CONNECTING_AT_ONCE = 64  # handshakes in flight while the agents connect
CONNECT_TIMEOUT = 120.0  # seconds for every agent to be welcomed
DRAIN_TIMEOUT = 30.0  # seconds to wait for the soak's last acks
FDS_SPARE = 64  # descriptors this process needs besides one per agent
RECORD_BYTES = 250  # approximate size of a soak event's JSON


class Agent:
    """One agent connection over :mod:`agentwatch.rawws`: answers pings, counts acks, sends paced events."""

    def __init__(self, index: int, agent_id: str) -> None:
        self.index = index
        self.agent_id = agent_id
        self.key = os.urandom(4)
        self.reader = rawws.FrameReader()
        self.stream: trio.SocketStream | None = None
        self.send_lock = trio.Lock()
        self.sent = 0  # highest seq sent (seqs are 1, 2, ...)
        self.acked = 0
        self.bursts: deque[tuple[int, float]] = deque()  # (last seq of a write, its time), for latencies
        self.progress = trio.Event()
        self.welcomed = False

    async def connect(self, port: int, token: str) -> None:
        """Handshake, ``hello``, ``welcome``; raises :class:`BenchError` saying what the daemon answered."""
        try:
            self.stream, _ = await open_agent("127.0.0.1", port, self.agent_id, token, self.key, self.reader)
        except (OSError, trio.BrokenResourceError, rawws.ProtocolError) as exc:
            raise BenchError(f"agent {self.index + 1} could not connect: {exc}") from None
        self.welcomed = True

    async def receive_loop(self, stats: SoakStats) -> None:
        """Answer pings, credit acks; any close by the daemon is an error (an idle agent must stay connected)."""
        assert self.stream is not None
        while True:
            try:
                data = await self.stream.receive_some(65536)
            except trio.BrokenResourceError as exc:
                raise BenchError(f"agent {self.agent_id}: connection broken: {exc}") from None
            if not data:
                raise BenchError(f"agent {self.agent_id}: the daemon closed the connection without a close frame")
            now = trio.current_time()
            for opcode, payload in self.reader.feed(data):
                if opcode == rawws.OP_PING:
                    async with self.send_lock:
                        await self.stream.send_all(rawws.client_frame(payload, self.key, rawws.OP_PONG))
                    stats.pings += 1
                elif opcode == rawws.OP_TEXT:
                    seq = parse_ack(payload)
                    if seq is None:
                        raise BenchError(f"agent {self.agent_id}: unexpected frame {payload[:300]!r}")
                    self._acked(seq, now, stats)
                elif opcode == rawws.OP_CLOSE:
                    code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else None
                    raise BenchError(f"agent {self.agent_id}: the daemon closed the connection with {code} {payload[2:]!r}")

    def _acked(self, seq: int, now: float, stats: SoakStats) -> None:
        if seq <= self.acked:
            return
        marker = self.acked
        while self.bursts and marker < seq:
            last, sent_at = self.bursts[0]
            upto = min(last, seq)
            bucket = bucket_of(now - sent_at)
            stats.hist[bucket] = stats.hist.get(bucket, 0) + (upto - marker)
            marker = upto
            if last <= seq:
                self.bursts.popleft()
        stats.acked += seq - self.acked
        self.acked = seq
        self.progress.set()

    async def send_paced(self, first_due: float, period: float, until: float, window: int, stats: SoakStats) -> None:
        """Event ``i`` (seq ``i + 1``) is due at ``first_due + i * period``; at most ``window`` un-acked."""
        assert self.stream is not None
        while (now := trio.current_time()) < until:
            due = int((now - first_due) / period) + 1 if now >= first_due else 0
            upto = min(due, self.acked + window)
            if upto > self.sent:
                data = b"".join(rawws.client_frame(event_json(seq), self.key) for seq in range(self.sent + 1, upto + 1))
                self.bursts.append((upto, trio.current_time()))
                stats.sent += upto - self.sent
                self.sent = upto
                async with self.send_lock:
                    await self.stream.send_all(data)
            elif due > self.sent:  # the window is full: wait for an ack
                self.progress = trio.Event()
                with trio.move_on_at(until):
                    await self.progress.wait()
            else:
                await trio.sleep_until(min(until, first_due + self.sent * period))

    async def drain(self) -> None:
        """Wait for every sent event's ack."""
        while self.acked < self.sent:
            self.progress = trio.Event()
            await self.progress.wait()

    async def close(self) -> None:
        if self.stream is not None:
            await trio.aclose_forcefully(self.stream)


class SoakStats:
    """What the soak's agents counted, together."""

    def __init__(self) -> None:
        self.sent = 0
        self.acked = 0
        self.pings = 0
        self.hist: dict[int, int] = {}


def event_json(seq: int) -> bytes:
    """One canonical ``output`` event frame of about :data:`RECORD_BYTES`."""
    head = f'{{"type":"event","seq":{seq},"data":{{"kind":"output","text":"'
    pad = max(0, RECORD_BYTES - len(head) - 3)
    return (head + (PADDING * (pad // len(PADDING) + 1))[:pad] + '"}}').encode()


# --- reading the daemon ---


def rss_kib(pid: int) -> int:
    """``VmRSS`` of ``pid``, in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise BenchError(f"no VmRSS in /proc/{pid}/status: is {pid} a kernel thread?")


async def settled_rss_kib(pid: int) -> int:
    """The median of :data:`RSS_READINGS` readings."""
    readings = []
    for _ in range(RSS_READINGS):
        readings.append(rss_kib(pid))
        await trio.sleep(RSS_READING_GAP)
    return int(statistics.median(readings))


def open_files_limit(pid: int) -> int | None:
    """The soft ``Max open files`` of ``pid`` (from ``/proc/PID/limits``)."""
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            soft = line.split()[3]
            return int(soft) if soft.isdigit() else None
    return None


def file_bytes(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def raise_own_fd_limit(agents: int) -> int:
    """Soft RLIMIT_NOFILE up to the hard limit; :class:`BenchError` if even that is too few for ``agents``."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        soft = 1 << 20 if hard == resource.RLIM_INFINITY else hard
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    if soft < agents + FDS_SPARE:
        raise BenchError(
            f"--agents {agents} needs about {agents + FDS_SPARE} open files in this process and in the daemon, but the hard "
            f"limit (RLIMIT_NOFILE) is {hard}: raise it (ulimit -Hn as root, or LimitNOFILE=) or ask for fewer --agents"
        )
    return soft


# --- the run ---


async def measure(server: Server, args: argparse.Namespace, result: dict[str, Any]) -> None:
    """Fill ``result`` with the idle and soak figures, step by step (so a failure keeps what was measured)."""
    assert server.proc is not None and server.token_file is not None
    pid = server.proc.pid
    token = server.token_file.read_text().strip()
    wal = server.token_file.parent / "agentwatch.db-wal"
    db = server.token_file.parent / "agentwatch.db"
    await trio.sleep(SETTLE_SECONDS)
    rss0 = result["baseline_rss_kib"] = await settled_rss_kib(pid)
    progress(f"baseline RSS with no agent: {rss0} KiB; connecting {args.agents} agents ...")

    agents = [Agent(i, f"idle-{i}") for i in range(args.agents)]
    stats = SoakStats()
    limiter = trio.CapacityLimiter(CONNECTING_AT_ONCE)
    async with trio.open_nursery() as running:

        async def connect(agent: Agent) -> None:
            async with limiter:
                await agent.connect(server.port, token)
            running.start_soon(agent.receive_loop, stats)

        started = trio.current_time()
        with trio.move_on_after(CONNECT_TIMEOUT) as connecting_scope:
            async with trio.open_nursery() as connecting:
                for agent in agents:
                    connecting.start_soon(connect, agent)
        if connecting_scope.cancelled_caught:
            welcomed = sum(agent.welcomed for agent in agents)
            raise BenchError(f"only {welcomed} of {args.agents} agents connected within {CONNECT_TIMEOUT:g} s")
        result["connect_seconds"] = round(trio.current_time() - started, 2)
        await trio.sleep(SETTLE_SECONDS)
        rss_n = result["idle_rss_kib"] = await settled_rss_kib(pid)
        per_agent = result["kib_per_idle_agent"] = round((rss_n - rss0) / args.agents, 2)
        result["idle_verdict"] = "PASS" if per_agent <= GOAL_KIB_PER_AGENT else "MISS"
        progress(f"{args.agents} idle agents in {result['connect_seconds']} s: RSS {rss_n} KiB, {per_agent} KiB per agent")

        result["soak"] = await soak(server, agents[: args.senders], stats, args, wal, db)
        running.cancel_scope.cancel()
    for agent in agents:
        await agent.close()


async def soak(server: Server, senders: list[Agent], stats: SoakStats, args: argparse.Namespace, wal: Path, db: Path) -> dict[str, Any]:
    """Steady load for warm-up + soak seconds; RSS and WAL sampled over the soak part."""
    assert server.proc is not None
    pid = server.proc.pid
    start = trio.current_time()
    sampling_from = start + args.warmup_seconds
    until = sampling_from + args.soak_seconds
    period = len(senders) / args.rate  # seconds between one sender's events
    samples: list[dict[str, float]] = []
    progress(f"soak: {len(senders)} agents send {args.rate:g} events/s for {args.warmup_seconds:g} s warm-up + {args.soak_seconds:g} s ...")
    async with trio.open_nursery() as nursery:
        for k, agent in enumerate(senders):
            nursery.start_soon(agent.send_paced, start + k / args.rate, period, until, args.window, stats)
        await trio.sleep_until(sampling_from)
        acked0, db0 = stats.acked, file_bytes(db)
        stats.hist.clear()  # ack latencies of the soak part only
        next_sample = sampling_from
        while next_sample <= until:
            await trio.sleep_until(next_sample)
            if not server.alive():
                raise BenchError(f"the daemon died during the soak ({server.log_tail()}); log: {server.log_path}")
            samples.append({"t": round(trio.current_time() - sampling_from, 2), "rss_kib": rss_kib(pid), "wal_bytes": file_bytes(wal)})
            next_sample += args.sample_seconds
    acked_in_window = stats.acked - acked0
    with trio.move_on_after(DRAIN_TIMEOUT):
        for agent in senders:
            await agent.drain()
    incomplete = sum(agent.acked < agent.sent for agent in senders)
    p50, p99 = percentile(stats.hist, 0.5), percentile(stats.hist, 0.99)
    return {
        "sent": stats.sent,
        "acked": stats.acked,
        "senders_not_fully_acked": incomplete,
        "events_per_s": round(acked_in_window / args.soak_seconds, 1),
        "ack_p50_ms": None if p50 is None else round(p50 * 1000, 2),
        "ack_p99_ms": None if p99 is None else round(p99 * 1000, 2),
        "pings_answered": stats.pings,
        "db_bytes_start": db0,
        "db_bytes_end": file_bytes(db),
        "rss_kib": flatness([s["rss_kib"] for s in samples]),
        "wal_bytes": flatness([s["wal_bytes"] for s in samples]),
        "samples": samples,
    }


def flatness(values: list[float]) -> dict[str, Any]:
    """First- and last-quarter means, their ratio, the max, and whether the ratio is within 1 +- :data:`FLAT_WITHIN`."""
    quarter = max(1, len(values) // 4)
    first, last = statistics.fmean(values[:quarter]), statistics.fmean(values[-quarter:])
    ratio = last / first if first else None
    flat = ratio is not None and abs(ratio - 1) <= FLAT_WITHIN
    return {
        "first_quarter_mean": round(first, 1),
        "last_quarter_mean": round(last, 1),
        "ratio": None if ratio is None else round(ratio, 4),
        "max": max(values),
        "verdict": "PASS" if flat else "MISS",
    }


def print_report(result: dict[str, Any]) -> None:
    if "kib_per_idle_agent" in result:
        print(
            f"idle: {result['agents']} agents, RSS {result['baseline_rss_kib']} -> {result['idle_rss_kib']} KiB = "
            f"{result['kib_per_idle_agent']} KiB per agent (goal <= {GOAL_KIB_PER_AGENT:g})  {result['idle_verdict']}"
        )
    soak = result.get("soak")
    if soak:
        print(
            f"soak: {soak['events_per_s']} events/s acked over {result['soak_seconds']:g} s (after {result['warmup_seconds']:g} s warm-up), "
            f"ack p50 {soak['ack_p50_ms']} ms, p99 {soak['ack_p99_ms']} ms; database {soak['db_bytes_start']} -> {soak['db_bytes_end']} bytes"
        )
        for label, unit in (("rss_kib", "KiB"), ("wal_bytes", "bytes")):
            f = soak[label]
            print(
                f"  {label:<9} first quarter {f['first_quarter_mean']:>12.0f}  last quarter {f['last_quarter_mean']:>12.0f}  "
                f"ratio {f['ratio']}  max {f['max']} {unit} (flat: within 1 +- {FLAT_WITHIN:g})  {f['verdict']}"
            )
    if result["error"]:
        print(f"ERROR: {result['error']}")


def leaves(group: BaseExceptionGroup[BenchError]) -> list[BenchError]:
    """The errors in ``group`` and its nested groups, at most three (the first usually says it all)."""
    found: list[BenchError] = []
    for exc in group.exceptions:
        found.extend(leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc])
    return found[:3]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--agents", type=int, default=1000, help="idle agents connected at once (default 1000)")
    parser.add_argument("--senders", type=int, default=100, help="how many of them send during the soak (default 100)")
    parser.add_argument("--rate", type=float, default=1000.0, help="soak: events/s over all senders (default 1000)")
    parser.add_argument("--soak-seconds", type=float, help="soak length, sampled (default 1800; 60 with --quick)")
    parser.add_argument("--warmup-seconds", type=float, default=60.0, help="load before sampling starts (default 60)")
    parser.add_argument("--sample-seconds", type=float, help="RSS and WAL sampling interval (default 5; 1 with --quick)")
    parser.add_argument("--window", type=int, default=256, help="soak: un-acked events in flight per sender")
    parser.add_argument("--quick", action="store_true", help="a 60 s soak (after the warm-up): about 2.5 minutes in all")
    parser.add_argument("--python", default=sys.executable, help="interpreter that runs the daemon (default: this one)")
    parser.add_argument("--tmp-dir", type=Path, help="where the temporary state dir goes (default: the system's)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (always kept after a failure)")
    parser.add_argument("--json", action="store_true", help="print every figure as one JSON object at the end")
    args = parser.parse_args(argv)
    args.soak_seconds = args.soak_seconds or (60.0 if args.quick else 1800.0)
    args.sample_seconds = args.sample_seconds or (1.0 if args.quick else 5.0)
    if args.agents < 1 or not 1 <= args.senders <= args.agents:
        parser.error(f"need --agents >= 1 and 1 <= --senders <= --agents; got {args.agents} agents, {args.senders} senders")
    if args.rate <= 0 or args.window < 1 or args.warmup_seconds < 0:
        parser.error("need --rate > 0, --window >= 1 and --warmup-seconds >= 0")
    if args.sample_seconds <= 0 or args.soak_seconds < 8 * args.sample_seconds:
        parser.error(
            f"--soak-seconds ({args.soak_seconds:g}) must hold at least 8 samples of --sample-seconds ({args.sample_seconds:g}), "
            "so each quarter has two: lengthen the soak or sample more often"
        )
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    keys = ("agents", "senders", "rate", "soak_seconds", "warmup_seconds", "sample_seconds", "window")
    result: dict[str, Any] = {k: getattr(args, k) for k in keys} | {"goal_kib_per_idle_agent": GOAL_KIB_PER_AGENT, "error": None}
    root = Path(tempfile.mkdtemp(prefix="agentwatch-memory-", dir=args.tmp_dir))
    progress(f"temporary directory: {root}")
    server = make_server("daemon", root, args.python)
    result["command"] = " ".join(server.argv)
    try:
        result["bench_nofile"] = raise_own_fd_limit(args.agents)
        server.start()
        assert server.proc is not None
        result["daemon_nofile"] = open_files_limit(server.proc.pid)
        trio.run(measure, server, args, result)
    except* BenchError as group:
        errors = "; ".join(str(exc) for exc in leaves(group))
        result["error"] = errors if server.log_path is None else f"{errors} (daemon log: {server.log_path})"
    finally:
        code = server.stop()
        result["daemon_exit_code"] = code
        if code not in (0, None) and result["error"] is None:
            result["error"] = f"the daemon exited with {code} after SIGTERM; log: {server.log_path}"
    if args.json:
        print(json.dumps(result))
    else:
        print_report(result)
    if result["error"] or args.keep:
        progress(f"kept {root}")
    else:
        shutil.rmtree(root, ignore_errors=True)
    return 1 if result["error"] else 0


if __name__ == "__main__":
    sys.exit(main())
