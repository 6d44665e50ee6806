"""WAL checkpoints off the writer's path.

Left to itself, SQLite checkpoints inside whichever commit pushes the WAL past 1000 pages,
and that commit's acks wait for the copy and its fsync. Here the writer only reports the
WAL's size (a WAL hook, which also turns SQLite's own auto-checkpoint off), and a task with
its own connection and thread runs passive checkpoints, which never block a writer.

Under steady writes a passive checkpoint seldom catches the last commit, so the WAL seldom
starts over and grows. Past ``TRUNCATE_PAGES`` the checkpointer asks for a TRUNCATE checkpoint
instead, without waiting: it copies what it can, and empties the file when no reader is behind
(it holds the writer off only for that last copy); when a reader is, it does what a passive
checkpoint does and tries again at the next.
"""

from __future__ import annotations

from pathlib import Path

import apsw
import trio

from agentwatch.logs import get_logger

log = get_logger(__name__)

CHECKPOINT_PAGES = 1000  # WAL pages not yet in the database that start a checkpoint (SQLite's default)
TRUNCATE_PAGES = 16384  # WAL pages (64 MiB of 4 KiB pages) past which a checkpoint also empties the file
RETRY_AFTER = 1.0  # seconds, after a checkpoint failed
BLOCKED_RETRY = 0.01  # seconds, after a checkpoint that could copy nothing


class Checkpointer:
    """Keeps a WAL database's log short; ``wal_hook`` goes on the write connection."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.every_pages = CHECKPOINT_PAGES
        self.truncate_pages = TRUNCATE_PAGES
        self._wal_pages = 0  # frames in the WAL after the last commit (from the writer's thread)
        self._backfilled = 0  # frames of it already copied into the database
        self._due = trio.Event()
        self._progress = trio.Event()

    def wal_hook(self, conn: apsw.Connection, dbname: str, pages: int) -> int:
        """SQLite's WAL hook: called on the writer's thread after each commit."""
        self._wal_pages = pages
        return apsw.SQLITE_OK

    @property
    def behind(self) -> bool:
        """Whether the WAL holds a checkpoint's worth of pages not yet in the database."""
        if self._wal_pages < self._backfilled:  # the WAL started over
            self._backfilled = 0
        return self._wal_pages - self._backfilled >= self.every_pages

    def committed(self) -> None:
        """The writer committed (on the event loop): start a checkpoint if one is due."""
        if self.behind:
            self._due.set()

    async def caught_up(self) -> None:
        """Wait until the WAL is no longer behind: for a bulk writer to let checkpoints keep up."""
        while self.behind:
            self._due.set()
            await self._progress.wait()

    def _open(self) -> apsw.Connection:
        conn = apsw.Connection(str(self.path))
        conn.execute("PRAGMA journal_mode").get  # reads the header: until then it does not know it is in WAL mode
        return conn

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        conn = await trio.to_thread.run_sync(self._open)
        try:
            task_status.started()
            while True:
                await self._due.wait()
                self._due = trio.Event()
                before = self._backfilled
                truncate = self._wal_pages >= self.truncate_pages
                mode = apsw.SQLITE_CHECKPOINT_TRUNCATE if truncate else apsw.SQLITE_CHECKPOINT_PASSIVE
                try:
                    frames, backfilled = await trio.to_thread.run_sync(conn.wal_checkpoint, None, mode)
                    if backfilled < 0:
                        raise apsw.SQLError("the database is not in WAL mode")
                    self._backfilled = backfilled
                    if truncate:
                        self._wal_pages = frames  # the file is empty now; the next commit's hook says more
                except apsw.Error as exc:
                    if truncate and isinstance(exc, apsw.BusyError):
                        await trio.sleep(BLOCKED_RETRY)  # a reader is behind: it copied what a passive one would
                    else:
                        log.warning("checkpoint_failed", error=f"{type(exc).__name__}: {exc}", retry_s=RETRY_AFTER)
                        await trio.sleep(RETRY_AFTER)
                    self._due.set()
                else:
                    if self._backfilled == before and self.behind:
                        await trio.sleep(BLOCKED_RETRY)  # a reader's snapshot holds the rest back
                self._progress.set()
                self._progress = trio.Event()
        finally:
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(conn.close)
