"""The built-in ``event-log`` plugin: with ``log.events = true``, one log line per stored event.

The lines (event ``event_stored``, logger ``agentwatch.events``) carry only low-cardinality
facts, never the record's content, so a fleet can ship its agents' activity to a log
aggregator with no other component. The setting takes effect on reload.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import trio

from agentwatch.hookspecs import hookimpl
from agentwatch.logs import get_logger
from agentwatch.model import StoredEvent

if TYPE_CHECKING:
    from agentwatch.daemon import Daemon

log = get_logger("agentwatch.events")


class EventLog:
    """Logs each stored event of one daemon while its ``log.events`` is on."""

    def __init__(self) -> None:
        self._daemon: Daemon | None = None

    @hookimpl
    def agentwatch_startup(self, daemon: Daemon, nursery: trio.Nursery) -> None:
        self._daemon = daemon

    @hookimpl
    def agentwatch_events_stored(self, events: Sequence[StoredEvent]) -> None:
        if self._daemon is None or not self._daemon.config["log"]["events"]:
            return
        for event in events:
            fields: dict[str, Any] = {}
            if (normalized := event.normalized) is not None:
                if normalized.tool:
                    fields["tool"] = normalized.tool[:64]
                if normalized.is_error:
                    fields["is_error"] = True
            log.info("event_stored", agent_id=event.agent_id, session=event.session, seq=event.seq, kind=event.kind,
                     format=event.format, **fields)
