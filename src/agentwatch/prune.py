"""``agentwatch prune``: one retention sweep by hand, with the configured limits.

When no daemon has the store open, the sweep runs here, on the file, with the limits of this
command's configuration; when one does, the daemon runs it (``retention.prune`` on
``/v1/watch``) with its own limits, so its plugins hear what went.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import trio

from agentwatch.client import ClientError, call, find_daemon
from agentwatch.config import Config
from agentwatch.metrics import Registry
from agentwatch.plugin_manager import Plugins
from agentwatch.plugins.retention import limits_of, sweep
from agentwatch.store import Store, StoreInUse, StoreRefused


async def prune(config: Config, *, dry_run: bool, progress: Callable[[int, int], None]) -> dict[str, Any]:
    """Sweep the configured store once (or say what a sweep would remove); returns the report."""
    store = Plugins(config["plugins"]["disable"]).hook.agentwatch_open_store(config=config, metrics=Registry())
    if store is None:
        raise StoreRefused("no plugin provides a store: 'storage' is disabled and no installed plugin replaces it")
    path = getattr(store, "path", None)
    if isinstance(path, Path) and not path.exists():
        raise StoreRefused(f"there is no store at {path}: nothing to prune (is --state-dir or storage.path right?)")
    try:
        return await _sweep_here(store, config, dry_run, progress)
    except* StoreInUse:
        pass  # a daemon has it open: it sweeps, with its own limits
    try:
        return await call("retention.prune", {"dry_run": dry_run}, endpoint=find_daemon(config))
    except ClientError as exc:
        raise ClientError(f"another agentwatch process has the store open, and asking it to sweep failed: {exc}") from None


async def _sweep_here(store: Store, config: Config, dry_run: bool, progress: Callable[[int, int], None]) -> dict[str, Any]:
    settings = config["retention"]
    async with trio.open_nursery() as nursery:
        await nursery.start(store.run, lambda events, sessions, removed: None)
        report = await sweep(store, limits_of(settings), batch_events=settings["batch_events"], dry_run=dry_run, progress=progress)
        nursery.cancel_scope.cancel()
    return report


def describe(report: dict[str, Any]) -> str:
    """One line a person reads: what went (or would go), and why."""
    limits = ", ".join(f"{limit}: {count}" for limit, count in report["by_limit"].items() if count)
    verb = "would remove" if report["dry_run"] else "removed"
    line = f"{verb} {report['events']} events and {report['sessions']} sessions"
    if limits:
        line += f" ({limits})"
    if report["freed_bytes"]:
        line += f"; {report['freed_bytes'] / (1 << 20):.1f} MiB returned to the file system"
    return line + f" in {report['duration_s']:g}s"
