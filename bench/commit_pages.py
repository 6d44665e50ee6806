"""How many pages one commit writes to the WAL, by how many agents' events it holds (P2's cause).

Usage::

    python bench/commit_pages.py [--agents 100] [--sizes 1,4,16,64,100,1000] [--commits 200]
                                 [--drop-index NAME] [--quick] [--json]

The real store (``SqliteStore``, WAL, ``synchronous=FULL``) in a fresh state dir, driven through
its own API (``hello``, ``submit``) on a Trio loop. ``--agents`` agents say hello and store
``--warmup`` events evenly spread, so every index has a leaf page per agent. Then, for each
commit size k of ``--sizes``, ``--commits`` commits of k events each, one event from each of k
agents taken in turn (k above ``--agents`` gives several events to each): all k batches are
queued before the writer runs, so each group is one transaction. Checkpoints are held off while
measuring, so the WAL only grows; pages per commit = frames added / commits.

Printed per size: WAL pages per commit, bytes of WAL per event, and the median and p99 time from
queueing a group to its last batch being committed. ``--drop-index`` (repeatable) drops an index of
the events table first: the experiment that shows what each index costs (the daemon keeps them all).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import apsw
import trio

from common import bench_parser, percentile, progress, scratch_dir  # puts the checkout's src/ first

from agentwatch.logs import configure_logging  # noqa: E402
from agentwatch.model import AgentInfo, Batch, IncomingEvent, Normalized, StoredEvent, now_ms  # noqa: E402
from agentwatch.plugins.storage import checkpoints  # noqa: E402
from agentwatch.plugins.storage.schema import migrate  # noqa: E402
from agentwatch.plugins.storage.sqlite_store import SqliteStore  # noqa: E402

WAL_HEADER = 32
FRAME_HEADER = 24
RECORD = json.dumps({"kind": "output", "text": "x" * 200})
NORMALIZED = Normalized("output", text="x" * 200)


class _Group:
    """The batches of one commit group: done when the store reported every one."""

    def __init__(self, size: int) -> None:
        self.left = size
        self.done = trio.Event()

    def committed(self, batch: Batch, acked_seq: int, stored: list[StoredEvent]) -> None:
        self.left -= 1
        if not self.left:
            self.done.set()

    def failed(self, batch: Batch, code: str, message: str) -> None:
        raise SystemExit(f"the store refused a batch: {code}: {message}")


class _Agents:
    """Each agent's next seq, handing out events to agents in turn."""

    def __init__(self, count: int) -> None:
        self.ids = [f"bench-{n:03d}" for n in range(count)]
        self.seq = dict.fromkeys(self.ids, 0)
        self.turn = 0

    def group(self, size: int) -> tuple[list[Batch], _Group]:
        group = _Group(size)
        batches = []
        for _ in range(size):
            agent_id = self.ids[self.turn % len(self.ids)]
            self.turn += 1
            self.seq[agent_id] += 1
            event = IncomingEvent(self.seq[agent_id], None, "agentwatch", RECORD, NORMALIZED)
            batches.append(Batch(agent_id, [event], now_ms(), group, len(RECORD)))
        return batches, group


def wal_frames(db: Path) -> int:
    wal = db.with_name(db.name + "-wal")
    size = wal.stat().st_size if wal.exists() else 0
    return max(0, size - WAL_HEADER) // (4096 + FRAME_HEADER)


async def measure(db: Path, agents: int, warmup: int, sizes: list[int], commits: int) -> list[dict[str, Any]]:
    store = SqliteStore(db)
    async with trio.open_nursery() as nursery:
        await nursery.start(store.run, lambda *changes: None)
        roster = _Agents(agents)
        for agent_id in roster.ids:
            await store.hello(agent_id, AgentInfo(name=agent_id, kind="bench", cwd="/bench"), now_ms())
        for _ in range(warmup // 500):
            await _commit(store, *roster.group(500))
        await trio.to_thread.run_sync(_empty_wal, db)
        results = []
        for size in sizes:
            before, times = wal_frames(db), []
            for _ in range(commits):
                started = time.perf_counter()
                await _commit(store, *roster.group(size))
                times.append(time.perf_counter() - started)
            pages = (wal_frames(db) - before) / commits
            results.append({
                "events_per_commit": size,
                "wal_pages_per_commit": round(pages, 1),
                "wal_bytes_per_event": round(pages * 4096 / size),
                "commit_p50_ms": round(percentile(times, 0.5) * 1000, 3),
                "commit_p99_ms": round(percentile(times, 0.99) * 1000, 3),
            })
            progress(f"{size:5d} events a commit: {pages:7.1f} WAL pages, {pages * 4096 / size:8.0f} bytes an event, "
                     f"p50 {results[-1]['commit_p50_ms']:.2f} ms")
        nursery.cancel_scope.cancel()
    return results


def _empty_wal(db: Path) -> None:
    """Copy the warm-up into the database and empty the WAL (the store's writer is idle)."""
    conn = apsw.Connection(str(db))
    try:
        conn.wal_checkpoint(mode=apsw.SQLITE_CHECKPOINT_TRUNCATE)
    finally:
        conn.close()


async def _commit(store: SqliteStore, batches: list[Batch], group: _Group) -> None:
    for batch in batches:  # queued without yielding: the writer takes them as one transaction
        await store.submit(batch)
    await group.done.wait()


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser(__doc__, "100 commits of each size after 10 000 events")
    parser.add_argument("--agents", type=int, default=100, help="agents, each with its own leaf pages (default 100)")
    parser.add_argument("--sizes", default="1,4,16,64,100,1000", help="events a commit, comma-separated")
    parser.add_argument("--commits", type=int, help="commits of each size (default 200; 100 with --quick)")
    parser.add_argument("--warmup", type=int, help="events stored before measuring (default 50 000; 10 000 with --quick)")
    parser.add_argument("--drop-index", action="append", default=[], metavar="NAME", help="drop this index of events first")
    args = parser.parse_args(argv)
    try:
        sizes = [int(size) for size in args.sizes.split(",")]
    except ValueError:
        parser.error(f"--sizes takes comma-separated whole numbers; got {args.sizes!r}")
    commits = args.commits or (100 if args.quick else 200)
    warmup = args.warmup if args.warmup is not None else (10_000 if args.quick else 50_000)
    if args.agents < 1 or commits < 1 or any(size < 1 for size in sizes):
        parser.error("--agents, --commits and every size must be at least 1")
    configure_logging("warning", stream=sys.stderr)
    checkpoints.CHECKPOINT_PAGES = 1 << 30  # the WAL only grows, so its size counts the pages written
    checkpoints.TRUNCATE_PAGES = 1 << 30
    with scratch_dir("agentwatch-pages-", args.tmp_dir) as root:
        db = root / "agentwatch.db"
        if args.drop_index:
            conn = apsw.Connection(str(db))
            migrate(conn, str(db))
            for name in args.drop_index:
                conn.execute(f'DROP INDEX "{name}"')
            conn.close()
        results = trio.run(measure, db, args.agents, warmup, sizes, commits)
    report = {"agents": args.agents, "warmup_events": warmup, "commits_per_size": commits, "dropped_indexes": args.drop_index,
              "sizes": results}
    if args.json:
        print(json.dumps(report))
    else:
        print(f"{'events/commit':>13} {'WAL pages':>10} {'bytes/event':>12} {'p50 ms':>8} {'p99 ms':>8}")
        for row in results:
            print(f"{row['events_per_commit']:>13} {row['wal_pages_per_commit']:>10} {row['wal_bytes_per_event']:>12} "
                  f"{row['commit_p50_ms']:>8} {row['commit_p99_ms']:>8}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
