"""Retention in SQL: plan what the limits select, then delete it in small transactions.

An event goes when any limit selects it:

- ``max_age``: it arrived before the cutoff. Rowid order is arrival order, nearly, so the old
  events are a prefix of the table, found by binary search and deleted by rowid range (and by
  ``received_at``, against the few rows near the boundary out of order and the rowids SQLite
  hands out again once the table is empty).
- ``max_sessions_per_agent``: its session is older than the agent's newest N.
- ``max_events_per_agent``: it is not among the agent's newest N (by ``seq``).

Every selection is bounded by what existed when the plan was made (a rowid, a session number,
a ``seq``), so events that arrive during a sweep are never selected. A session row goes when
the sweep removed its last event, when it is older than the agent's newest N, or when it is
empty and its start is older than ``max_age``. Agent rows never go: their ``acked_seq`` and
session number keep deduplication and session numbering right.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from typing import Any

import apsw

from agentwatch.store import Removal, RetentionLimits

_AgentKey = int
_RowKey = tuple[_AgentKey, int]  # (agent_key, session)

#: Each deletes at most ``?`` (the last parameter) selected events, returning their sessions.
_DELETE_OLD = (  # received_at too: once the table is empty, SQLite gives out rowids from 1 again
    "DELETE FROM events WHERE rowid IN"
    " (SELECT rowid FROM events WHERE rowid <= ? AND received_at < ? ORDER BY rowid LIMIT ?)"
    " RETURNING agent_key, session"
)
_NOT_OLD = "rowid > ?"  # not selected by max_age
_DELETE_OLD_SESSIONS = (
    "DELETE FROM events WHERE rowid IN (SELECT rowid FROM events WHERE agent_key = ? AND session <= ? LIMIT ?)"
    " RETURNING agent_key, session"
)
_DELETE_OLDEST = (
    "DELETE FROM events WHERE rowid IN (SELECT rowid FROM events WHERE agent_key = ? AND seq <= ? ORDER BY seq LIMIT ?)"
    " RETURNING agent_key, session"
)


@dataclasses.dataclass(slots=True)
class _Step:
    """One delete statement, repeated until it removes fewer rows than asked; then ``finish``
    (a statement removing session rows, returning their keys) runs once."""

    delete: str
    params: tuple[Any, ...]
    finish: tuple[str, tuple[Any, ...]] | None = None


@dataclasses.dataclass(slots=True)
class SqlitePlan:
    """What one sweep removes from a SQLite store, and how far its deletes have got."""

    removal: Removal
    agent_ids: dict[_AgentKey, str]
    steps: list[_Step]


def plan(conn: apsw.Connection, limits: RetentionLimits, now_ms: int) -> SqlitePlan:
    """What ``limits`` select in the database now (read only)."""
    with conn:  # one read transaction: one snapshot
        agents = {key: (agent_id, session) for key, agent_id, session in conn.execute("SELECT agent_key, agent_id, session FROM agents")}
        cutoff = now_ms - int(limits.max_age_s * 1000) if limits.max_age_s else None
        old_rowid = _last_old_rowid(conn, cutoff) if cutoff is not None else 0
        session_cuts = _session_cuts(conn, limits.max_sessions_per_agent)
        seq_cuts = _seq_cuts(conn, limits.max_events_per_agent)

        not_old = (old_rowid,)
        selected: Counter[_RowKey] = Counter()
        by_limit = {"max_age": 0, "max_sessions_per_agent": 0, "max_events_per_agent": 0}
        steps: list[_Step] = []
        if old_rowid:
            for key, session, count in conn.execute(
                "SELECT agent_key, session, count(*) FROM events WHERE rowid <= ? GROUP BY agent_key, session", (old_rowid,)
            ):
                selected[(key, session)] += count
                by_limit["max_age"] += count
            steps.append(_Step(_DELETE_OLD, (old_rowid, cutoff)))
        for key, cut in session_cuts.items():
            for session, count in conn.execute(
                f"SELECT session, count(*) FROM events WHERE agent_key = ? AND session <= ? AND {_NOT_OLD} GROUP BY session",
                (key, cut, *not_old),
            ):
                selected[(key, session)] += count
                by_limit["max_sessions_per_agent"] += count
            finish = ("DELETE FROM sessions WHERE agent_key = ? AND session <= ? RETURNING agent_key, session", (key, cut))
            steps.append(_Step(_DELETE_OLD_SESSIONS, (key, cut), finish))
        for key, cut in seq_cuts.items():
            for session, count in conn.execute(
                f"SELECT session, count(*) FROM events WHERE agent_key = ? AND seq <= ? AND session > ? AND {_NOT_OLD} GROUP BY session",
                (key, cut, session_cuts.get(key, -1), *not_old),
            ):
                selected[(key, session)] += count
                by_limit["max_events_per_agent"] += count
            steps.append(_Step(_DELETE_OLDEST, (key, cut)))
        if cutoff is not None:
            steps.append(
                _Step("", (), ("DELETE FROM sessions WHERE events <= 0 AND started_at < ? RETURNING agent_key, session", (cutoff,)))
            )

        sessions = 0
        for key, session, events, started_at in conn.execute("SELECT agent_key, session, events, started_at FROM sessions"):
            if (
                selected[(key, session)] >= events > 0
                or session <= session_cuts.get(key, -1)
                or (events <= 0 and cutoff is not None and started_at < cutoff)
            ):
                sessions += 1
    removal = Removal(events=sum(by_limit.values()), sessions=sessions, by_limit=by_limit)
    return SqlitePlan(removal, {key: agent_id for key, (agent_id, _) in agents.items()}, steps)


def remove_batch(conn: apsw.Connection, plan: SqlitePlan, max_events: int) -> tuple[int, list[tuple[str, int]]]:
    """Delete up to ``max_events`` more of what ``plan`` selected, and the session rows that
    leaves empty, in one transaction; return the events removed and the sessions removed."""
    emptied: Counter[_RowKey] = Counter()
    gone: list[_RowKey] = []
    budget = max_events
    with conn:
        while plan.steps and budget > 0:
            step = plan.steps[0]
            removed = 0
            if step.delete:
                for key, session in conn.execute(step.delete, (*step.params, budget)):
                    emptied[(key, session)] += 1
                    removed += 1
            budget -= removed
            if budget > 0:  # the statement ran out of rows before the budget did: the step is done
                plan.steps.pop(0)
                if step.finish is not None:
                    gone.extend(conn.execute(*step.finish))
        conn.executemany(
            "UPDATE sessions SET events = max(0, events - ?) WHERE agent_key = ? AND session = ?",
            [(count, key, session) for (key, session), count in emptied.items()],
        )
        for key, session in emptied:
            gone.extend(
                conn.execute(
                    "DELETE FROM sessions WHERE agent_key = ? AND session = ? AND events = 0 RETURNING agent_key, session",
                    (key, session),
                )
            )
    return max_events - budget, [(_agent_id(conn, plan, key), session) for key, session in dict.fromkeys(gone)]


def _agent_id(conn: apsw.Connection, plan: SqlitePlan, key: _AgentKey) -> str:
    if (agent_id := plan.agent_ids.get(key)) is None:
        agent_id = plan.agent_ids[key] = conn.execute("SELECT agent_id FROM agents WHERE agent_key = ?", (key,)).get
    return agent_id


def _last_old_rowid(conn: apsw.Connection, cutoff: int) -> int:
    """The last rowid of the events received before ``cutoff`` (0 if none), by binary search:
    ``received_at`` grows with rowid, nearly (the writer takes each agent's frames together, so
    two agents' frames can be stored up to a commit out of arrival order, and the wall clock can
    step back). Near the boundary a row may be on the wrong side: the delete checks
    ``received_at`` too, so nothing younger than ``cutoff`` goes, and an old row left behind goes
    at the next sweep."""
    first = conn.execute("SELECT rowid, received_at FROM events ORDER BY rowid LIMIT 1").fetchone()
    if first is None or first[1] >= cutoff:
        return 0
    low, high = first[0], conn.execute("SELECT max(rowid) FROM events").get
    while low < high:  # the row at `low` is old; none above `high` is
        middle = (low + high + 1) // 2
        rowid, received_at = conn.execute(
            "SELECT rowid, received_at FROM events WHERE rowid >= ? ORDER BY rowid LIMIT 1", (middle,)
        ).fetchone()
        if received_at < cutoff:
            low = rowid
        else:
            high = middle - 1
    return low


def _session_cuts(conn: apsw.Connection, keep: int) -> dict[_AgentKey, int]:
    """Per agent with sessions beyond its newest ``keep``: the newest session number that goes."""
    if not keep:
        return {}
    rows = conn.execute(
        "SELECT agent_key, a.session - ? FROM agents a WHERE EXISTS"
        " (SELECT 1 FROM sessions s WHERE s.agent_key = a.agent_key AND s.session <= a.session - ?)",
        (keep, keep),
    )
    return dict(rows)


def _seq_cuts(conn: apsw.Connection, keep: int) -> dict[_AgentKey, int]:
    """Per agent with more than ``keep`` events: the newest ``seq`` that goes."""
    if not keep:
        return {}
    cuts: dict[_AgentKey, int] = {}
    for (key,) in conn.execute("SELECT agent_key FROM sessions GROUP BY agent_key HAVING sum(events) > ?", (keep,)):
        cut = conn.execute("SELECT seq FROM events WHERE agent_key = ? ORDER BY seq DESC LIMIT 1 OFFSET ?", (key, keep)).get
        if cut is not None:
            cuts[key] = cut
    return cuts
