"""The data that flows through agentwatch: canonical kinds, formats and events.

Data flows one way: a frame's record is normalized by a :class:`Format` into a
:class:`Normalized`, wrapped with its ``seq`` into an :class:`IncomingEvent`, handed to the
store in a :class:`Batch`, and comes back out as a :class:`StoredEvent` once committed.
"""

from __future__ import annotations

import json
import time

import trio
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

#: Every stored event has exactly one of these kinds (protocol.md, "Canonical events").
KINDS: frozenset[str] = frozenset(
    {
        "session_started",
        "prompt",
        "output",
        "thinking",
        "tool_use",
        "tool_result",
        "permission_request",
        "permission_resolved",
        "turn_completed",
        "error",
        "context_cleared",
        "compacted",
        "session_ended",
        "notification",
        "raw",
    }
)


@dataclass(slots=True)
class Normalized:
    """What a format makes of one record: its canonical kind and the fields it could read.

    ``heartbeat`` marks a keep-alive of the format itself: it is acknowledged, never stored.
    """

    kind: str
    text: str | None = None
    tool: str | None = None
    input: Any = None
    is_error: bool | None = None
    usage: dict[str, Any] | None = None
    cost_usd: float | None = None
    session_id: str | None = None
    cwd: str | None = None
    heartbeat: bool = False


RAW = Normalized("raw")


class Format(Protocol):
    """A record format: turns one record (``data`` of an event) into a canonical event.

    ``normalize`` must not block and must accept any JSON value; a record it does not
    recognise is ``Normalized("raw")``, never an exception. ``sniff`` says whether a record is
    unmistakably of this format (``--format auto`` picks a format with it); a format without
    it is never picked automatically.
    """

    name: str

    def normalize(self, data: Any) -> Normalized: ...

    def sniff(self, data: Any) -> bool: ...


@dataclass(slots=True)
class IncomingEvent:
    """One validated event of an ingest frame, normalized, not yet stored."""

    seq: int
    ts: str | None
    format: str
    data_json: str
    normalized: Normalized


class BatchSink(Protocol):
    """Where the store reports the fate of a :class:`Batch` (the ingest connection)."""

    def committed(self, batch: Batch, acked_seq: int, stored: list[StoredEvent]) -> None:
        """``batch`` was committed: every event of the agent up to ``acked_seq`` is durable;
        ``stored`` are the new rows."""

    def failed(self, batch: Batch, code: str, message: str) -> None:
        """Nothing of ``batch`` was stored and it will not be acknowledged; ``code`` is
        ``storage_unavailable`` (retry later) or ``internal``."""


@dataclass(slots=True)
class Batch:
    """The events of one ingest frame, in ``seq`` order, from one agent."""

    agent_id: str
    events: list[IncomingEvent]
    received_at: int  # unix milliseconds
    sink: BatchSink
    size: int  # bytes of the frame it came in (what the writer's queue budget counts)


@dataclass(slots=True)
class StoredEvent:
    """An event as committed, with its session number; the shape ``events.list`` returns."""

    agent_id: str
    seq: int
    session: int
    kind: str
    ts: str | None
    received_at: int  # unix milliseconds
    format: str
    data_json: str
    normalized: Normalized | None = field(default=None, compare=False)

    def to_json(self) -> str:
        """The JSON object of protocol.md ("An event as the watch endpoint returns it"), as text;
        the record is spliced in as stored, never parsed."""
        return (
            f'{{"agent_id":{json.dumps(self.agent_id)},"seq":{self.seq},"session":{self.session},"kind":"{self.kind}",'
            f'"ts":{json.dumps(self.ts)},"received_at":"{iso_ms(self.received_at)}","format":{json.dumps(self.format)},'
            f'"data":{self.data_json}}}'
        )


@dataclass(slots=True)
class AgentInfo:
    """What an agent said about itself in its hello (all optional)."""

    name: str | None = None
    kind: str | None = None
    cwd: str | None = None
    host: str | None = None
    pid: int | None = None
    labels: dict[str, str] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)


_CLOCK_BASE: trio.lowlevel.RunVar[tuple[float, int] | None] = trio.lowlevel.RunVar("agentwatch_clock_base")


def now_ms() -> int:
    """The current time in unix milliseconds: the wall clock, or under a test's ``MockClock``
    the wall clock when the run began plus the virtual time since.

    Under a ``MockClock`` every timestamp the daemon makes moves with virtual time and only
    with it, so timers and the times they compare against agree, and two timestamps taken
    between two jumps of the clock are equal, never a millisecond apart either way.
    """
    try:
        base = _CLOCK_BASE.get()
    except LookupError:
        base = _clock_base_for_this_run()
    except RuntimeError:  # outside a Trio run
        base = None
    if base is None:
        return time.time_ns() // 1_000_000
    trio_base, wall_base = base
    return wall_base + round((trio.current_time() - trio_base) * 1000)


def _clock_base_for_this_run() -> tuple[float, int] | None:
    """``None`` under a real clock, else where virtual time began: Trio's time and the wall clock's."""
    from trio.testing import MockClock

    base = (trio.current_time(), time.time_ns() // 1_000_000) if isinstance(trio.lowlevel.current_clock(), MockClock) else None
    _CLOCK_BASE.set(base)
    return base


def iso_ms(ms: int | None) -> str | None:
    """Unix milliseconds as ISO 8601 UTC with millisecond precision (``...T10:00:00.125Z``)."""
    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z"
    )
