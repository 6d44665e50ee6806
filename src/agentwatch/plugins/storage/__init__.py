"""The built-in ``storage`` plugin: agents, sessions and events in SQLite (APSW, WAL)."""

from __future__ import annotations

from agentwatch.config import Config
from agentwatch.hookspecs import hookimpl
from agentwatch.metrics import Registry
from agentwatch.plugins.storage.sqlite_store import SqliteStore


@hookimpl(trylast=True)
def agentwatch_open_store(config: Config, metrics: Registry) -> SqliteStore:
    storage = config["storage"]
    return SqliteStore(
        config.state_path(storage["path"]),
        synchronous=storage["synchronous"],
        queue_bytes=storage["queue_bytes"],
        metrics=metrics,
    )
