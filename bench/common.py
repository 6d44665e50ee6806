"""What several bench scripts share: a store built directly with agentwatch's schema, the real daemon
as a subprocess, a blocking JSON-RPC client over :mod:`agentwatch.rawws`, and percentiles.

``bench/`` is not a package: scripts import this as ``from common import ...`` (their own
directory is first on ``sys.path``); importing it puts the checkout's ``src/`` first too.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
SRC = REPO / "src"
sys.path.insert(0, str(SRC))

import apsw  # noqa: E402

from agentwatch import session_facts  # noqa: E402
from agentwatch.addresses import TcpAddress  # noqa: E402
from agentwatch.model import Normalized  # noqa: E402
from agentwatch.plugins.storage.schema import migrate  # noqa: E402
from agentwatch.rawws import BlockingClient  # noqa: E402

DAY_MS = 86_400_000
START_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0


def bench_parser(doc: str, quick: str) -> argparse.ArgumentParser:
    """A parser with the options every bench script has: ``--quick`` (``quick`` says what it
    changes), ``--tmp-dir`` and ``--json``; ``doc`` is the script's docstring."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help=quick)
    parser.add_argument("--tmp-dir", type=Path, help="where the stores go (default: the system's temporary directory)")
    parser.add_argument("--json", action="store_true", help="print the results as one JSON object")
    return parser


@contextmanager
def scratch_dir(prefix: str, parent: Path | None, keep: bool = False) -> Iterator[Path]:
    """A new temporary directory under ``parent`` (the system's by default), removed afterwards unless ``keep``."""
    root = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    try:
        yield root
    finally:
        if keep:
            progress(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


def terminate(proc: subprocess.Popen[bytes], timeout: float = STOP_TIMEOUT) -> int:
    """SIGTERM ``proc`` if it still runs, SIGKILL after ``timeout`` seconds; its exit code."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) of ``values`` (nearest rank); NaN when there are none."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def summary_ms(seconds: list[float]) -> dict[str, float]:
    """p50, p99 and max of durations in seconds, as rounded milliseconds."""
    return {
        "p50_ms": round(percentile(seconds, 0.5) * 1000, 3),
        "p99_ms": round(percentile(seconds, 0.99) * 1000, 3),
        "max_ms": round(max(seconds, default=float("nan")) * 1000, 3),
    }


def file_bytes(path: Path) -> int:
    """Size of a SQLite database with its ``-wal`` and ``-shm`` files."""
    return sum(p.stat().st_size for p in path.parent.glob(path.name + "*") if p.is_file())


# --- the store ---


def build_store(
    path: Path,
    events: int,
    agents: int,
    *,
    start_ms: int | None = None,
    record_bytes: int = 250,
    needing: float = 0.0,
    prefix: str = "agent",
) -> None:
    """A store of ``events`` events over ``agents`` agents (ids ``{prefix}-{n:05d}``), one session each,
    written directly with agentwatch's schema, as the daemon would have stored them.

    Each session is a prompt followed by output; the first ``needing`` share of the agents also
    finished their turn (``turn_completed`` last), so they await a reply in the attention feed,
    the others are still working. Events are evenly interleaved over the agents (the worst case for
    retention: every batch of old events touches each index once per agent), ``received_at`` is
    ``start_ms`` + the event's number (ms), by default such that the last event arrived a minute ago
    (too recent for a stall), and each session's facts are what the daemon's store would have
    derived from its events.
    """
    if start_ms is None:
        start_ms = int(time.time() * 1000) - events - 60_000
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = apsw.Connection(str(path))
    migrate(conn, str(path))
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = OFF")
    per_agent = max(1, events // agents)
    padding = "x" * max(0, record_bytes - 40)
    data = {kind: json.dumps({"kind": kind, "text": f"{kind} {padding}"}) for kind in ("prompt", "output", "turn_completed")}
    normalized = {kind: Normalized(kind, text=f"{kind} text") for kind in data}
    finishing = int(agents * needing)
    facts = [session_facts.SessionFacts(started_at=start_ms) for _ in range(agents)]

    def kind_of(key: int, seq: int) -> str:
        if seq == 1:
            return "prompt"
        return "turn_completed" if seq == per_agent and key <= finishing else "output"

    chunk = 50_000
    total = per_agent * agents
    for first in range(0, total, chunk):
        rows = []
        for n in range(first, min(first + chunk, total)):
            key, seq = n % agents + 1, n // agents + 1
            kind = kind_of(key, seq)
            session_facts.apply(facts[key - 1], kind, normalized[kind], start_ms + n)
            rows.append((key, seq, 0, kind, None, start_ms + n, "agentwatch", data[kind]))
        with conn:
            conn.executemany(
                "INSERT INTO events(agent_key, seq, session, kind, ts, received_at, format, data) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
    with conn:
        conn.executemany(
            "INSERT INTO agents(agent_key, agent_id, session, acked_seq, first_seen_at, last_seen_at, last_event_at)"
            " VALUES (?, ?, 0, ?, ?, ?, ?)",
            [(key, f"{prefix}-{key - 1:05d}", per_agent, start_ms, start_ms, facts[key - 1].last_event_at)
             for key in range(1, agents + 1)],  # fmt: skip
        )
        conn.executemany(
            "INSERT INTO sessions(agent_key, session, started_at, last_event_at, events, facts) VALUES (?, 0, ?, ?, ?, ?)",
            [(key, start_ms, facts[key - 1].last_event_at, per_agent, facts[key - 1].to_json()) for key in range(1, agents + 1)],
        )
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()


def build_timed(path: Path, events: int, agents: int, **options: Any) -> None:
    """:func:`build_store`, saying on stderr what it builds and how long that took."""
    progress(f"building a store of {events} events over {agents} agents in {path.parent}")
    started = time.monotonic()
    build_store(path, events, agents, **options)
    progress(f"built in {time.monotonic() - started:.1f}s, {file_bytes(path) / 2**20:.0f} MiB")


# --- the daemon ---


class Daemon:
    """``python -m agentwatch serve`` on ``state`` (the checkout's code, JSON log lines to
    ``state/../daemon.log``), on a free loopback port, with auth on. Call :meth:`wait_ready`."""

    def __init__(self, state: Path, *, python: str = sys.executable, settings: dict[str, str] | None = None) -> None:
        self.state = state
        self.port = free_port()
        self.log_path = state.parent / "daemon.log"
        state.parent.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTWATCH_")}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SRC), env.get("PYTHONPATH")]))
        env |= settings or {}
        argv = [python, "-m", "agentwatch", "serve", "--listen", f"127.0.0.1:{self.port}", "--state-dir", str(state),
                "--log-format", "json"]  # fmt: skip
        self._log = self.log_path.open("wb")
        self.spawned_at = time.time()
        self.proc = subprocess.Popen(argv, stdout=self._log, stderr=subprocess.STDOUT, cwd=REPO, env=env)

    def __enter__(self) -> Daemon:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def wait_ready(self, timeout: float = START_TIMEOUT) -> float:
        """Wait for the ``ready`` log line; return its time (unix seconds, from the line itself)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"the daemon exited with {self.proc.returncode} at start; log: {self.log_path}")
            if (line := self.line("ready")) is not None:
                return wall_time(line["timestamp"])
            time.sleep(0.01)
        raise SystemExit(f"the daemon was not ready after {timeout:g}s; log: {self.log_path}")

    def lines(self) -> list[dict[str, Any]]:
        out = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return out

    def line(self, event: str) -> dict[str, Any] | None:
        """The first log line of ``event``, if there is one yet."""
        return next((line for line in self.lines() if line.get("event") == event), None)

    @property
    def token(self) -> str:
        return (self.state / "token").read_text().strip()

    def stop(self) -> None:
        terminate(self.proc)
        self._log.close()


def wall_time(timestamp: str) -> float:
    """Unix seconds of a log line's ISO ``timestamp``."""
    return datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()


# --- a client ---


class Client:
    """A blocking WebSocket connection to the daemon: ``/v1/watch`` for JSON-RPC, or an agent's path."""

    def __init__(self, port: int, token: str, path: str = "/v1/watch", timeout: float = 30.0) -> None:
        self.ws = BlockingClient.connect(TcpAddress("127.0.0.1", port), path, [("Authorization", f"Bearer {token}")], timeout)
        self._ids = 0

    def send(self, message: dict[str, Any]) -> None:
        self.ws.send_text(json.dumps(message))

    def receive(self) -> dict[str, Any]:
        return json.loads(self.ws.receive_text())

    def call(self, method: str, params: dict[str, Any] | None = None) -> tuple[Any, int]:
        """One JSON-RPC request; its result and the reply's size in characters (notifications are skipped)."""
        self._ids += 1
        self.send({"jsonrpc": "2.0", "id": self._ids, "method": method, **({"params": params} if params else {})})
        while True:
            text = self.ws.receive_text()
            reply = json.loads(text)
            if reply.get("id") == self._ids:
                if "error" in reply:
                    raise SystemExit(f"{method} failed: {reply['error']}")
                return reply["result"], len(text)

    def timed_calls(self, method: str, params: dict[str, Any] | None, calls: int, warmup: int = 20) -> tuple[list[float], int]:
        """Round trips (seconds) of ``calls`` requests after ``warmup`` untimed ones, and the reply size."""
        times, size = [], 0
        for call in range(warmup + calls):
            started = time.perf_counter()
            _, size = self.call(method, params)
            if call >= warmup:
                times.append(time.perf_counter() - started)
        return times, size

    def close(self) -> None:
        self.ws.close()
