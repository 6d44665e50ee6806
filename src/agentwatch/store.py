"""The interface between the daemon and whatever keeps the record (built in: ``storage``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import trio

from agentwatch.model import AgentInfo, Batch, StoredEvent
from agentwatch.session_facts import SessionFacts


SessionKey = tuple[str, int]  # (agent_id, session)

MAX_PAGE_BYTES = 8 << 20  # a page of events stops growing past this many bytes of events' JSON

#: Called once per commit with the events it stored, the facts of the sessions it changed, and
#: the sessions it removed (retention).
OnCommit = Callable[[list[StoredEvent], dict[SessionKey, SessionFacts], list[SessionKey]], None]


@dataclass(frozen=True, slots=True)
class RetentionLimits:
    """What a store keeps; 0 turns a limit off. An event goes when any limit says so."""

    max_age_s: float = 0.0  # events received longer ago than this
    max_events_per_agent: int = 0  # beyond an agent's newest this many
    max_sessions_per_agent: int = 0  # of sessions older than an agent's newest this many


@dataclass(slots=True)
class Removal:
    """What a sweep removes: events and sessions, and how many events each limit accounts for
    (an event selected by several limits counts under the first: age, sessions, events)."""

    events: int = 0
    sessions: int = 0
    by_limit: dict[str, int] = field(default_factory=dict)


@dataclass(slots=True)
class RemovedBatch:
    """What one removal transaction did; ``done`` once the plan has nothing left to remove."""

    events: int
    sessions: list[SessionKey]
    done: bool


class StorageUnavailable(Exception):
    """The store cannot write or read right now (disk full, I/O error, locked database)."""


class StoreRefused(Exception):
    """The store will not open the file it was given (corrupt, foreign, newer schema)."""


class StoreInUse(StoreRefused):
    """Another process (a running daemon) has the store open."""


class Store(Protocol):
    """Durable storage of agents, sessions and events.

    The store owns the rules that must be atomic with a commit: an event whose ``seq`` is not
    above the agent's acknowledged ``seq`` is a duplicate (acknowledged, not stored again); a
    ``context_cleared`` event raises the agent's session number by one and is stored with the
    new number; and each session's facts (:func:`agentwatch.session_facts.apply`) are kept
    with its events.
    """

    async def run(self, on_commit: OnCommit, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Open the store, report started, write until cancelled, then close.

        ``on_commit`` is called once per commit with the events it stored, in order, and a copy
        of the facts (:mod:`agentwatch.session_facts`) of every session the commit changed.
        """

    def writer_busy_for(self) -> float:
        """Seconds the write in progress has taken so far; 0 when the writer is idle. The watchdog
        stops vouching for the daemon while one write takes longer than its interval."""

    async def hello(self, agent_id: str, agent: AgentInfo, at_ms: int) -> tuple[int, int]:
        """Record an agent's hello; return its ``(session, acked_seq)``, both already durable."""

    async def submit(self, batch: Batch) -> None:
        """Queue ``batch`` for the writer (waits while the queue is full); the sink hears back."""

    async def agents(self) -> list[dict[str, Any]]:
        """Every known agent with its metadata, session, acked_seq and last_event_at (ms)."""

    async def sessions(self, agent_id: str | None, limit: int) -> list[dict[str, Any]]:
        """Sessions, most recently active first, optionally of one agent; each says if it is ``current``."""

    async def events(
        self,
        agent_id: str,
        *,
        session: int | None,
        kinds: list[str] | None,
        after_seq: int | None,
        before_seq: int | None,
        limit: int,
        max_bytes: int,
    ) -> str | None:
        """A page of events in ascending ``seq``, as the JSON text ``{"events": [...], "has_more": bool}``
        (encoded off the event loop); ``None`` when the agent is unknown. The page holds at most
        ``limit`` events, and stops before its events' JSON exceeds ``max_bytes`` (but always holds
        the first event, if there is one): it is checked as rows are read."""

    async def event_page(
        self, agent_id: str, *, kinds: list[str] | None, after_seq: int | None, limit: int, max_bytes: int
    ) -> tuple[list[StoredEvent], bool] | None:
        """Like :meth:`events`, as objects: ``(events, has_more)``; ``None`` when the agent is unknown."""

    async def counts(self) -> dict[str, int]:
        """Totals for ``status``: at least ``events_stored`` and ``agents``."""

    async def current_sessions(self) -> dict[tuple[str, int], SessionFacts]:
        """The facts of every agent's current session, by ``(agent_id, session)``."""

    async def plan_removal(self, limits: RetentionLimits, now_ms: int) -> RemovalPlan:
        """Decide what ``limits`` remove now, without removing anything (a read).

        Only what is stored when the plan is made can be selected: events that arrive later
        are never removed by it. An agent's row (its ``acked_seq`` and session number) is
        never removed, so deduplication and session numbering hold after its events go.
        """

    async def remove(self, plan: RemovalPlan, max_events: int) -> RemovedBatch:
        """Remove at most ``max_events`` more of what ``plan`` selected, in one transaction
        between commits; the sessions it removes reach ``on_commit``."""

    async def reclaim_space(self, max_pages: int) -> int:
        """Return up to ``max_pages`` free pages to the file system; the bytes freed (0: no more)."""


class RemovalPlan(Protocol):
    """A store's plan for one sweep (:meth:`Store.plan_removal`)."""

    @property
    def removal(self) -> Removal:
        """What the plan removes."""
