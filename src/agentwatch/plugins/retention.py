"""The built-in ``retention`` plugin: the store keeps to its limits without pausing ingest.

A sweep runs shortly after start and then every ``retention.interval``. It asks the store what
the limits select (:meth:`agentwatch.store.Store.plan_removal`), removes it a batch of
``retention.batch_events`` at a time, each batch one transaction taking its turn with the
commits of ingest, then returns the freed pages to the file system; it pauses between
transactions so that ingest keeps most of the writer and the disk. Each sweep that removes
anything is logged (``retention_swept``) and announced (``agentwatch_retention_swept``).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

import trio

from agentwatch.hookspecs import hookimpl
from agentwatch.logs import get_logger
from agentwatch.model import now_ms
from agentwatch.store import RetentionLimits, StorageUnavailable, Store
from agentwatch.watch import Params, WatchMethod

if TYPE_CHECKING:
    from agentwatch.config import Config
    from agentwatch.daemon import Daemon

log = get_logger(__name__)
T = TypeVar("T")

FIRST_SWEEP_AFTER = 10.0  # seconds after start (or the interval, if shorter)
PROGRESS_EVERY = 5.0  # seconds between progress lines of a long sweep
WRITER_SHARE = 0.1  # of the time a sweep may keep the writer busy; it pauses the rest
RECLAIM_PAGES = 512  # pages returned to the file system per transaction


def limits_of(settings: Mapping[str, Any]) -> RetentionLimits:
    """The limits in a ``[retention]`` configuration section."""
    return RetentionLimits(settings["max_age"], settings["max_events_per_agent"], settings["max_sessions_per_agent"])


async def sweep(
    store: Store,
    limits: RetentionLimits,
    *,
    batch_events: int,
    dry_run: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Remove what ``limits`` select now (or, with ``dry_run``, only say what that would be);
    ``progress(removed, planned)`` is called between batches. Returns the report."""
    started = trio.current_time()
    plan = await store.plan_removal(limits, now_ms())
    planned = plan.removal
    report: dict[str, Any] = {
        "dry_run": dry_run,
        "events": planned.events,
        "sessions": planned.sessions,
        "by_limit": planned.by_limit,
        "freed_bytes": 0,
    }
    if not dry_run:
        events = sessions = 0
        done = False
        while not done:
            batch = await _paced(store.remove(plan, batch_events))
            events, sessions, done = events + batch.events, sessions + len(batch.sessions), batch.done
            if progress is not None and not done:
                progress(events, planned.events)
        report["events"], report["sessions"] = events, sessions
        if events or sessions:
            while freed := await _paced(store.reclaim_space(RECLAIM_PAGES)):
                report["freed_bytes"] += freed
    report["duration_s"] = round(trio.current_time() - started, 3)
    return report


async def _paced(step: Awaitable[T]) -> T:
    """Await one step of a sweep, then pause so that sweeping has the writer (and the disk) at
    most :data:`WRITER_SHARE` of the time. Real time is measured: the pause is what the step cost."""
    began = time.monotonic()
    result = await step
    await trio.sleep((time.monotonic() - began) * (1 / WRITER_SHARE - 1))
    return result


class RetentionPlugin:
    """Sweeps of one daemon's store; one at a time, whether on schedule or asked for."""

    def __init__(self) -> None:
        self._one_at_a_time = trio.Lock()
        self._reloaded = trio.Event()

    @hookimpl
    def agentwatch_startup(self, daemon: Daemon, nursery: trio.Nursery) -> None:
        nursery.start_soon(self._run, daemon)

    @hookimpl
    def agentwatch_register_watch_methods(self, register: Callable[[str, WatchMethod], None]) -> None:
        register("retention.prune", self._prune)

    @hookimpl
    def agentwatch_config_reloaded(self, config: Config, previous: Config) -> None:
        self._reloaded.set()

    async def _run(self, daemon: Daemon) -> None:
        last, swept = trio.current_time(), False
        while True:
            interval = daemon.config["retention"]["interval"]
            with trio.move_on_at(last + (interval if swept else min(FIRST_SWEEP_AFTER, interval))) as waiting:
                await self._reloaded.wait()
                self._reloaded = trio.Event()
            if not waiting.cancelled_caught:
                continue  # reloaded: the next sweep is due at the new interval after the last one
            try:
                await self.sweep(daemon)
            except StorageUnavailable as exc:
                log.error("retention_failed", error=str(exc), hint=f"the next sweep is in {interval:g}s")
            last, swept = trio.current_time(), True

    async def sweep(self, daemon: Daemon, *, dry_run: bool = False) -> dict[str, Any]:
        """One sweep of ``daemon``'s store with its configured limits; returns the report."""
        settings = daemon.config["retention"]
        last_line = trio.current_time()

        def progress(removed: int, planned: int) -> None:
            nonlocal last_line
            if trio.current_time() - last_line >= PROGRESS_EVERY:
                last_line = trio.current_time()
                log.info("retention_progress", events=removed, planned=planned)

        async with self._one_at_a_time:
            report = await sweep(
                daemon.store, limits_of(settings), batch_events=settings["batch_events"], dry_run=dry_run, progress=progress
            )
        if not dry_run and (report["events"] or report["sessions"]):
            log.info("retention_swept", **report)
            daemon.plugins.notify("agentwatch_retention_swept", report=report)
        else:
            log.debug("retention_swept", **report)
        return report

    async def _prune(self, daemon: Daemon, params: dict[str, Any]) -> dict[str, Any]:
        dry_run = Params("retention.prune", params, ("dry_run",)).boolean("dry_run")
        return await self.sweep(daemon, dry_run=dry_run)
