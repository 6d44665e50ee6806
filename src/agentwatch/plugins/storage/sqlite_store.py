"""The built-in store: one APSW writer with group commit, a pool of readers, WAL.

The writer owns the write connection. Frames reach it through a bounded Trio channel; it
takes everything waiting (up to :data:`MAX_EVENTS_PER_COMMIT` events), writes it in one
transaction on a worker thread, and only then reports to the senders, which acknowledge.
"""

from __future__ import annotations

import dataclasses
import fcntl
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import apsw
import trio

from agentwatch.file_errors import explain, unwritable
from agentwatch.logs import get_logger
from agentwatch.metrics import Registry
from agentwatch.model import AgentInfo, Batch, StoredEvent, iso_ms
from agentwatch.plugins.storage import removal
from agentwatch.plugins.storage.checkpoints import Checkpointer
from agentwatch.plugins.storage.schema import migrate
from agentwatch.plugins.storage.write_queue import WriteQueue
from agentwatch.safe_write import make_private_dir
from agentwatch import session_facts
from agentwatch.session_facts import SessionFacts
from agentwatch.store import (
    MAX_PAGE_BYTES, OnCommit, RemovalPlan, RemovedBatch, RetentionLimits, SessionKey, StorageUnavailable, StoreInUse,
    StoreRefused,
)

log = get_logger(__name__)

MAX_EVENTS_PER_COMMIT = 5000
EVENT_JSON_OVERHEAD = 384  # bytes an event's JSON holds besides its record, at most (agent id, times, kind, format)
READERS = 2
WAL_KEEP_BYTES = 32 << 20  # the WAL file is truncated back to this after a checkpoint
COMMIT_EVENT_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, MAX_EVENTS_PER_COMMIT)
COMMIT_SECONDS_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)

#: Errors of the storage itself (all frames fail); any other error is about one frame's data (see _commit).
_UNAVAILABLE = (
    apsw.FullError, apsw.IOError, apsw.BusyError, apsw.LockedError, apsw.CantOpenError, apsw.ReadOnlyError,
    apsw.NoMemError, apsw.CorruptError, apsw.NotADBError, apsw.ProtocolError, apsw.PermissionsError,
)


#: Errors that may mean the file system refuses the database's directory (read-only, no permission).
_REFUSED = (apsw.CantOpenError, apsw.ReadOnlyError, apsw.PermissionsError, apsw.IOError)


def _problem(path: Path, exc: apsw.Error, doing: str) -> str:
    """What ``exc`` says is wrong with the database at ``path`` (trying to ``doing`` it: open,
    read) and what to do, for a person."""
    if isinstance(exc, apsw.NotADBError):
        return f"{path} is not a usable SQLite database ({exc}); move it away or point storage.path elsewhere"
    if isinstance(exc, apsw.CorruptError):
        return (f"the database {path} is damaged ({exc}); restore it from a backup, or move it and its -wal file "
                "aside to start with an empty one")
    if isinstance(exc, _REFUSED) and (refused := unwritable(path.parent)) is not None:
        return f"cannot {doing} the store at {path}: {explain(refused, path.parent)}"
    if isinstance(exc, apsw.BusyError | apsw.LockedError):
        remedy = "another process holds it locked; retry in a moment"
    elif isinstance(exc, apsw.FullError):
        remedy = "free space on its disk or check the file system"
    else:
        remedy = "check its disk and file system"
    return f"cannot {doing} the store at {path}: {type(exc).__name__}: {exc}; {remedy}"


def _storage_cause(exc: BaseException | None) -> BaseException | None:
    """The storage error behind ``exc``, if any: SQLite may roll back by itself after SQLITE_FULL,
    and the failed rollback of the ``with`` block then raises with the real error as its context."""
    while exc is not None:
        if isinstance(exc, _UNAVAILABLE):
            return exc
        exc = exc.__context__
    return None


@dataclasses.dataclass(slots=True)
class _AgentState:
    key: int
    session: int
    acked_seq: int
    last_event_at: int | None
    facts: SessionFacts  # of the current session
    failed_from: int | None = None  # after a failed write: later events wait for this seq's resend

    def copy(self) -> _AgentState:
        return dataclasses.replace(self, facts=dataclasses.replace(self.facts))


@dataclasses.dataclass(slots=True)
class _Hello:
    agent_id: str
    agent: AgentInfo
    at_ms: int
    done: trio.Event = dataclasses.field(default_factory=trio.Event)
    result: tuple[int, int] | None = None
    error: str | None = None


_Item = Batch | _Hello


@dataclasses.dataclass(slots=True)
class _SessionDelta:
    """What a commit changes in one sessions row."""

    agent_id: str
    facts: SessionFacts
    started_at: int
    events: int = 0
    last_event_at: int = 0


class SqliteStore:
    """Agents, sessions and events in one SQLite file (see :class:`agentwatch.store.Store`)."""

    def __init__(
        self, path: Path, *, synchronous: str = "full", queue_bytes: int = 8 << 20, metrics: Registry | None = None
    ) -> None:
        self.path = path
        self._synchronous = synchronous
        self._queue = WriteQueue[_Hello](queue_bytes)
        self._writer: apsw.Connection | None = None
        self._write_limiter = trio.CapacityLimiter(1)
        self._busy_since: float | None = None  # trio time the write in progress began
        self._read_limiter = trio.CapacityLimiter(READERS)
        self._idle_readers: list[apsw.Connection] = []
        self._agents: dict[str, _AgentState] = {}
        self._lock_fd: int | None = None
        self._checkpointer = Checkpointer(path)
        self._on_commit: OnCommit = lambda events, facts, removed: None
        metrics = metrics or Registry()
        self._commit_events = metrics.histogram(
            "agentwatch_commit_events", "Events written per commit (group commit batch size).", COMMIT_EVENT_BUCKETS
        ).labels()
        self._commit_seconds = metrics.histogram(
            "agentwatch_commit_duration_seconds", "Time from the writer taking a commit's frames to their transaction being durable.",
            COMMIT_SECONDS_BUCKETS,
        ).labels()
        metrics.gauge(
            "agentwatch_write_queue_bytes",
            "Bytes of frames waiting for the writer or being committed (storage.queue_bytes, twice it for agents with nothing queued).",
            read=lambda: self._queue.queued_bytes,
        )
        self._duplicates = metrics.counter(
            "agentwatch_events_deduplicated_total", "Events acknowledged but not stored again: their seq was already stored."
        ).labels()

    # --- lifecycle ---

    async def run(
        self,
        on_commit: OnCommit,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Open (and migrate) the database, report started, then write until cancelled."""
        self._on_commit = on_commit
        self._writer = await trio.to_thread.run_sync(self._open_writer)
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(self._checkpointer.run)
                task_status.started()
                await self._write_loop(on_commit)
        finally:
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(self._close_all, limiter=self._write_limiter)

    def _open_writer(self) -> apsw.Connection:
        try:
            make_private_dir(self.path.parent)
            # Opened for writing here, or SQLite would open a file it may not write read-only, and
            # every write would fail after the daemon said it was ready.
            os.close(os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600))
            self._lock()
        except OSError as exc:
            raise StoreRefused(f"cannot open the store at {self.path}: {explain(exc, self.path)}") from None
        conn: apsw.Connection | None = None
        try:
            conn = apsw.Connection(str(self.path))
            conn.setbusytimeout(5000)
            version = migrate(conn, str(self.path))
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute(f"PRAGMA synchronous = {self._synchronous.upper()}")
            conn.execute("PRAGMA cache_size = -16000")
            conn.execute(f"PRAGMA journal_size_limit = {WAL_KEEP_BYTES}")
            conn.set_wal_hook(self._checkpointer.wal_hook)
        except BaseException as exc:
            if conn is not None:
                conn.close()
            self._unlock()
            if isinstance(exc, apsw.Error):  # a full disk, an I/O error, a file that went bad, a read-only directory
                raise StoreRefused(_problem(self.path, exc, "open")) from None
            raise
        log.info("store_opened", path=str(self.path), schema_from=version, synchronous=self._synchronous)
        return conn

    def _lock(self) -> None:
        """Hold a lock on the database's directory while open: two daemons writing one file would
        each trust their own cache of every agent's ``acked_seq``. (A directory, because closing
        any descriptor of the database file itself would drop SQLite's own locks.)"""
        fd = os.open(self.path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise StoreInUse(
                f"another agentwatch process is using {self.path.parent}; stop it (agentwatch prune works "
                "while it runs), or give this one another --state-dir"
            ) from None
        self._lock_fd = fd

    def _unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def _close_all(self) -> None:
        readers, self._idle_readers = self._idle_readers, []
        writer, self._writer = self._writer, None
        try:
            for conn in readers:
                conn.close()
            if writer is not None:
                writer.close()
        finally:
            self._unlock()

    # --- the write side ---

    async def hello(self, agent_id: str, agent: AgentInfo, at_ms: int) -> tuple[int, int]:
        item = _Hello(agent_id, agent, at_ms)
        self._queue.put_hello(agent_id, item)
        await item.done.wait()
        if item.result is None:
            raise StorageUnavailable(item.error or "the hello was not stored")
        return item.result

    async def submit(self, batch: Batch) -> None:
        await self._queue.put_batch(batch)

    async def _write_loop(self, on_commit: OnCommit) -> None:
        while True:
            await self._commit(await self._queue.take(MAX_EVENTS_PER_COMMIT), on_commit)

    async def _commit(self, items: list[_Item], on_commit: OnCommit) -> None:
        """Write ``items`` in one transaction, then tell their senders (and ``on_commit``)."""
        started = trio.current_time()
        try:
            results, facts = await self._on_writer_thread(self._write, items)
        except trio.Cancelled:  # waiting for the limiter (a call a thread took is never abandoned)
            self._fail(items, "storage_unavailable", "the daemon is stopping; resend once it is back")
            raise
        except StorageUnavailable as exc:
            log.error("storage_unavailable", error=str(exc), frames=len(items))
            self._fail(items, "storage_unavailable", str(exc))
            return
        except Exception:
            if len(items) > 1:  # one frame cannot be written: find it, commit the others
                with trio.CancelScope(shield=True):  # a handful of short writes: none is left unreported
                    for item in items:
                        await self._commit([item], on_commit)
                return
            log.exception("store_write_failed")
            self._fail(items, "internal", "the daemon could not store this frame; see its log")
            return
        self._checkpointer.committed()
        self._commit_seconds.observe(trio.current_time() - started)
        committed: list[StoredEvent] = []
        for item, result in zip(items, results, strict=True):
            if isinstance(item, Batch):
                self._queue.done(item)
                if isinstance(result, str):
                    item.sink.failed(item, "storage_unavailable", result)
                else:
                    acked_seq, stored, duplicates = result
                    item.sink.committed(item, acked_seq, stored)
                    committed.extend(stored)
                    self._duplicates.inc(duplicates)
            else:
                item.result = result
                item.done.set()
        self._commit_events.observe(len(committed))
        if committed or facts:
            on_commit(committed, facts, [])

    def _fail(self, items: Sequence[_Item], code: str, message: str) -> None:
        for item in items:
            if isinstance(item, Batch):
                self._queue.done(item)
                state = self._agents.get(item.agent_id)
                first = next((event.seq for event in item.events if state and event.seq > state.acked_seq), None)
                if state is not None and first is not None:
                    state.failed_from = first if state.failed_from is None else min(state.failed_from, first)
                item.sink.failed(item, code, message)
            else:
                item.error = message
                item.done.set()

    def _write(self, items: list[_Item]) -> tuple[list[Any], dict[tuple[str, int], SessionFacts]]:
        """One transaction for everything in ``items`` (worker thread); returns each item's result
        and a copy of the facts of every session it changed."""
        assert self._writer is not None
        conn = self._writer
        pending: dict[str, _AgentState] = {}
        sessions: dict[tuple[int, int], _SessionDelta] = {}
        rows: list[tuple[Any, ...]] = []
        results: list[Any] = []
        if conn.in_transaction:  # `with conn` would then be a savepoint, and nothing durable
            raise StorageUnavailable("the write connection is inside a transaction it should not be in")
        try:
            with conn:
                for item in items:
                    if isinstance(item, Batch):
                        results.append(self._apply_batch(conn, item, pending, sessions, rows))
                    else:
                        results.append(self._apply_hello(conn, item, pending, sessions))
                conn.executemany(
                    "INSERT INTO events(agent_key, seq, session, kind, ts, received_at, format, data)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    rows,
                )
                conn.executemany(
                    "UPDATE agents SET session = ?, acked_seq = ?, last_event_at = ? WHERE agent_key = ?",
                    [(s.session, s.acked_seq, s.last_event_at, s.key) for s in pending.values()],
                )
                conn.executemany(
                    "INSERT INTO sessions(agent_key, session, started_at, last_event_at, events, ended_at, facts)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?)"
                    " ON CONFLICT DO UPDATE SET events = events + excluded.events,"
                    " last_event_at = coalesce(excluded.last_event_at, last_event_at),"
                    " ended_at = excluded.ended_at, facts = excluded.facts",
                    [
                        (key, number, d.started_at, d.last_event_at or None, d.events, d.facts.ended_at, d.facts.to_json())
                        for (key, number), d in sessions.items()
                    ],
                )
        except apsw.Error as exc:
            if (cause := _storage_cause(exc)) is not None:
                raise StorageUnavailable(f"{type(cause).__name__}: {cause}") from exc
            raise
        self._agents.update(pending)
        # No copies needed: a transaction never mutates cached facts (_AgentState.copy), so these
        # objects are never touched again once handed out.
        changed = {(d.agent_id, number): d.facts for (_, number), d in sessions.items()}
        return results, changed

    def _state(self, conn: apsw.Connection, agent_id: str, pending: dict[str, _AgentState]) -> _AgentState | None:
        if (state := pending.get(agent_id)) is not None:
            return state
        if (known := self._agents.get(agent_id)) is not None:
            state = known.copy()
        else:
            row = conn.execute(
                "SELECT a.agent_key, a.session, a.acked_seq, a.last_event_at, s.facts, a.cwd FROM agents a"
                " LEFT JOIN sessions s ON s.agent_key = a.agent_key AND s.session = a.session WHERE a.agent_id = ?",
                (agent_id,),
            ).fetchone()
            if row is None:
                return None
            key, session, acked_seq, last_event_at, facts, cwd = row
            # No sessions row: retention removed the current session.
            state = _AgentState(key, session, acked_seq, last_event_at, SessionFacts.from_json(facts) if facts else SessionFacts(cwd=cwd))
        pending[agent_id] = state
        return state

    def _apply_hello(
        self,
        conn: apsw.Connection,
        hello: _Hello,
        pending: dict[str, _AgentState],
        sessions: dict[tuple[int, int], _SessionDelta],
    ) -> tuple[int, int]:
        info = hello.agent
        labels, extra = json.dumps(info.labels), json.dumps(info.extra)
        state = self._state(conn, hello.agent_id, pending)
        if state is None:
            conn.execute(
                "INSERT INTO agents(agent_id, name, kind, cwd, host, pid, labels, extra, first_seen_at, last_seen_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (hello.agent_id, info.name, info.kind, info.cwd, info.host, info.pid, labels, extra, hello.at_ms, hello.at_ms),
            )
            facts = SessionFacts(cwd=info.cwd, started_at=hello.at_ms)
            state = pending[hello.agent_id] = _AgentState(conn.last_insert_rowid(), 0, 0, None, facts)
            sessions[(state.key, 0)] = _SessionDelta(hello.agent_id, facts, hello.at_ms)
        else:
            conn.execute(
                "UPDATE agents SET name = ?, kind = ?, cwd = ?, host = ?, pid = ?, labels = ?, extra = ?,"
                " last_seen_at = ? WHERE agent_key = ?",
                (info.name, info.kind, info.cwd, info.host, info.pid, labels, extra, hello.at_ms, state.key),
            )
            if info.cwd and not state.facts.cwd:
                state.facts.cwd = info.cwd
                sessions.setdefault((state.key, state.session), _SessionDelta(hello.agent_id, state.facts, hello.at_ms))
        return state.session, state.acked_seq

    def _apply_batch(
        self,
        conn: apsw.Connection,
        batch: Batch,
        pending: dict[str, _AgentState],
        sessions: dict[tuple[int, int], _SessionDelta],
        rows: list[tuple[Any, ...]],
    ) -> tuple[int, list[StoredEvent], int] | str:
        """The batch's rows (appended to ``rows``), or why it cannot be stored: ``(acked_seq, stored, duplicates)``."""
        state = self._state(conn, batch.agent_id, pending)
        if state is None:
            return f"agent {batch.agent_id!r} has no hello on record; reconnect"
        if state.failed_from is not None:
            first_new = next((event.seq for event in batch.events if event.seq > state.acked_seq), None)
            if first_new is not None:
                if first_new > state.failed_from:
                    return f"events from seq {state.failed_from} were not stored; resend from there"
                state.failed_from = None
        at = batch.received_at
        stored: list[StoredEvent] = []
        duplicates = 0
        for event in batch.events:
            if event.seq <= state.acked_seq:  # a duplicate, also of an earlier event of this batch
                duplicates += 1
                continue
            state.acked_seq = event.seq
            normalized = event.normalized
            if normalized.heartbeat:
                continue
            kind = normalized.kind
            if kind == "context_cleared":
                state.session += 1
                state.facts = SessionFacts(cwd=state.facts.cwd, started_at=at)
            delta = sessions.get((state.key, state.session))
            if delta is None:
                delta = sessions[(state.key, state.session)] = _SessionDelta(batch.agent_id, state.facts, at)
            delta.events += 1
            delta.last_event_at = at
            session_facts.apply(state.facts, kind, normalized, at)
            rows.append((state.key, event.seq, state.session, kind, event.ts, at, event.format, event.data_json))
            stored.append(
                StoredEvent(batch.agent_id, event.seq, state.session, kind, event.ts, at, event.format, event.data_json, normalized)
            )
        if stored:
            state.last_event_at = at
        return state.acked_seq, stored, duplicates

    # --- the read side ---

    async def _read(self, query: Callable[..., Any], *args: Any) -> Any:
        async with self._read_limiter:
            conn = self._idle_readers.pop() if self._idle_readers else None
            try:
                conn = conn or await trio.to_thread.run_sync(self._open_reader)
                return await trio.to_thread.run_sync(query, conn, *args)
            except apsw.Error as exc:
                raise StorageUnavailable(_problem(self.path, exc, "read")) from exc
            finally:
                if conn is not None:
                    self._idle_readers.append(conn)

    def _open_reader(self) -> apsw.Connection:
        conn = apsw.Connection(str(self.path), flags=apsw.SQLITE_OPEN_READONLY)
        conn.setbusytimeout(5000)
        return conn

    async def agents(self) -> list[dict[str, Any]]:
        return await self._read(_query_agents)

    async def sessions(self, agent_id: str | None, limit: int) -> list[dict[str, Any]]:
        return await self._read(_query_sessions, agent_id, limit)

    async def events(
        self,
        agent_id: str,
        *,
        session: int | None = None,
        kinds: list[str] | None = None,
        after_seq: int | None = None,
        before_seq: int | None = None,
        limit: int = 100,
        max_bytes: int = MAX_PAGE_BYTES,
    ) -> str | None:
        return await self._read(_query_events, agent_id, session, kinds, after_seq, before_seq, limit, max_bytes)

    async def event_page(
        self,
        agent_id: str,
        *,
        kinds: list[str] | None = None,
        after_seq: int | None = None,
        limit: int = 100,
        max_bytes: int = MAX_PAGE_BYTES,
    ) -> tuple[list[StoredEvent], bool] | None:
        return await self._read(_query_page, agent_id, None, kinds, after_seq, None, limit, max_bytes)

    async def counts(self) -> dict[str, int]:
        return await self._read(_query_counts)

    async def current_sessions(self) -> dict[tuple[str, int], SessionFacts]:
        return await self._read(_query_current_sessions)

    # --- retention ---

    async def plan_removal(self, limits: RetentionLimits, now_ms: int) -> removal.SqlitePlan:
        return await self._read(removal.plan, limits, now_ms)

    async def remove(self, plan: RemovalPlan, max_events: int) -> RemovedBatch:
        assert isinstance(plan, removal.SqlitePlan), "a plan of another store"
        events, sessions = await self._in_writer(self._remove_batch, plan, max_events)
        self._checkpointer.committed()
        if sessions:
            # Before any later commit's: the removal task and the writer take turns with the write
            # limiter, and the writer's next commit cannot end before this task runs again.
            self._on_commit([], {}, sessions)
        await self._checkpointer.caught_up()  # bulk deletes go no faster than their pages reach the database
        return RemovedBatch(events, sessions, done=not plan.steps)

    def _remove_batch(self, conn: apsw.Connection, plan: removal.SqlitePlan, max_events: int) -> tuple[int, list[SessionKey]]:
        events, sessions = removal.remove_batch(conn, plan, max_events)
        for agent_id, session in sessions:  # on the writer's thread, so no commit holds a stale copy
            state = self._agents.get(agent_id)
            if state is not None and state.session == session:  # what a restart reads: no facts but the agent's cwd
                state.facts = SessionFacts(cwd=state.facts.cwd)
        return events, sessions

    async def reclaim_space(self, max_pages: int) -> int:
        freed = await self._in_writer(_reclaim, max_pages)
        self._checkpointer.committed()
        await self._checkpointer.caught_up()
        return freed

    async def _in_writer(self, function: Callable[..., Any], *args: Any) -> Any:
        """``function(write_connection, *args)`` on a worker thread, between commits."""
        if self._writer is None:
            raise StorageUnavailable("the store is not open")
        try:
            return await self._on_writer_thread(function, self._writer, *args)
        except apsw.Error as exc:
            raise StorageUnavailable(f"{type(exc).__name__}: {exc}") from exc

    async def _on_writer_thread(self, function: Callable[..., Any], *args: Any) -> Any:
        """``function(*args)`` on a worker thread, one at a time, timed for :meth:`writer_busy_for`.

        A thread of the writer's own, woken at once instead of after the limiter's and
        ``to_thread``'s yields, was tried: it shortened the hand-over (1.0 to 0.6 ms) but made the
        events' ack latency 10-15 % worse in three A/B runs (docs/performance.md, P2)."""
        async with self._write_limiter:
            self._busy_since = trio.current_time()
            try:
                return await trio.to_thread.run_sync(function, *args)
            finally:
                self._busy_since = None

    def writer_busy_for(self) -> float:
        return 0.0 if self._busy_since is None else trio.current_time() - self._busy_since

    # --- for tests of failure paths ---

    async def run_in_writer(self, function: Callable[[apsw.Connection], Any]) -> Any:
        """Run ``function(write_connection)`` on the writer's thread, between commits."""
        return await self._in_writer(function)


def _reclaim(conn: apsw.Connection, max_pages: int) -> int:
    """Incremental vacuum of up to ``max_pages``; the bytes it freed. (A file made without
    incremental auto-vacuum frees none: its free pages are reused, never returned.)"""
    if conn.execute("PRAGMA auto_vacuum").get != 2:
        return 0
    before = conn.execute("PRAGMA freelist_count").get
    for _ in conn.execute(f"PRAGMA incremental_vacuum({int(max_pages)})"):
        pass
    return (before - conn.execute("PRAGMA freelist_count").get) * conn.execute("PRAGMA page_size").get


def _query_agents(conn: apsw.Connection) -> list[dict[str, Any]]:
    rows = conn.execute(
        "SELECT agent_id, name, kind, cwd, host, pid, labels, session, acked_seq, last_event_at,"
        " first_seen_at, last_seen_at FROM agents ORDER BY agent_id"
    )
    return [
        {
            "agent_id": agent_id,
            "name": name,
            "kind": kind,
            "cwd": cwd,
            "host": host,
            "pid": pid,
            "labels": json.loads(labels),
            "session": session,
            "acked_seq": acked_seq,
            "last_event_at": iso_ms(last_event_at),
            "first_seen_at": iso_ms(first_seen_at),
            "last_seen_at": iso_ms(last_seen_at),
        }
        for agent_id, name, kind, cwd, host, pid, labels, session, acked_seq, last_event_at, first_seen_at, last_seen_at in rows
    ]


def _query_sessions(conn: apsw.Connection, agent_id: str | None, limit: int) -> list[dict[str, Any]]:
    where = "WHERE a.agent_id = ?" if agent_id is not None else ""
    rows = conn.execute(
        "SELECT a.agent_id, s.session, s.started_at, s.last_event_at, s.events, s.ended_at, a.session"
        f" FROM sessions s JOIN agents a USING (agent_key) {where}"
        " ORDER BY coalesce(s.last_event_at, s.started_at) DESC, s.session DESC LIMIT ?",
        (agent_id, limit) if agent_id is not None else (limit,),
    )
    return [
        {
            "agent_id": agent,
            "session": session,
            "started_at": iso_ms(started_at),
            "last_event_at": iso_ms(last_event_at),
            "events": events,
            "ended_at": iso_ms(ended_at),
            "current": session == current,
        }
        for agent, session, started_at, last_event_at, events, ended_at, current in rows
    ]


def _query_page(
    conn: apsw.Connection,
    agent_id: str,
    session: int | None,
    kinds: list[str] | None,
    after_seq: int | None,
    before_seq: int | None,
    limit: int,
    max_bytes: int,
) -> tuple[list[StoredEvent], bool] | None:
    """Up to ``limit`` events, and no more than ``max_bytes`` of their JSON but the first (an event
    is never split, and a page always moves on)."""
    agent_key = conn.execute("SELECT agent_key FROM agents WHERE agent_id = ?", (agent_id,)).get
    if agent_key is None:
        return None
    clauses = ["e.agent_key = ?"]
    params: list[Any] = [agent_key]
    if session is not None:
        clauses.append("e.session = ?")
        params.append(session)
    if kinds:
        clauses.append(f"e.kind IN ({', '.join('?' * len(kinds))})")
        params.extend(kinds)
    if after_seq is not None:
        clauses.append("e.seq > ?")
        params.append(after_seq)
    if before_seq is not None:
        clauses.append("e.seq < ?")
        params.append(before_seq)
    params.append(limit + 1)
    rows = conn.execute(
        "SELECT e.seq, e.session, e.kind, e.ts, e.received_at, e.format, e.data FROM events e"
        f" WHERE {' AND '.join(clauses)} ORDER BY e.seq LIMIT ?",
        params,
    )
    events: list[StoredEvent] = []
    size = 0
    for seq, session_no, kind, ts, received_at, fmt, data in rows:
        if len(events) == limit or (events and size + len(data) + EVENT_JSON_OVERHEAD > max_bytes):
            return events, True
        events.append(StoredEvent(agent_id, seq, session_no, kind, ts, received_at, fmt, data))
        size += len(data) + EVENT_JSON_OVERHEAD
    return events, False


def _query_events(conn: apsw.Connection, *query: Any) -> str | None:
    page = _query_page(conn, *query)
    if page is None:
        return None
    events, has_more = page
    return '{"events":[' + ",".join(event.to_json() for event in events) + '],"has_more":' + ("true" if has_more else "false") + "}"


def _query_current_sessions(conn: apsw.Connection) -> dict[tuple[str, int], SessionFacts]:
    rows = conn.execute(
        "SELECT a.agent_id, s.session, s.facts FROM agents a JOIN sessions s ON s.agent_key = a.agent_key AND s.session = a.session"
    )
    return {(agent_id, session): SessionFacts.from_json(facts) for agent_id, session, facts in rows}


def _query_counts(conn: apsw.Connection) -> dict[str, int]:
    agents, events = conn.execute("SELECT (SELECT count(*) FROM agents), (SELECT total(events) FROM sessions)").fetchone()
    return {"agents": agents, "events_stored": int(events)}
