"""What is known about a session from its canonical events: who spoke last, whether a turn or a
tool call is open, pending permissions, a failed turn, when the person last acted.

The store applies :func:`apply` to every event it stores, in the same transaction, so the facts
are exactly as durable as the events; the attention and stall plugins are policies over them.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from collections.abc import Collection, Mapping
from typing import Any

from agentwatch.model import Normalized
from agentwatch.summaries import summary, tool_call

SUMMARY_CHARS = 300
_FOLD_PREFIX = 4 * SUMMARY_CHARS  # characters of a message folded first

SessionKey = tuple[str, int]  # (agent_id, session)


@dataclass(slots=True)
class SessionFacts:
    """The state of one agent session (times are unix milliseconds)."""

    started_at: int | None = None
    last_event_at: int | None = None
    last_speaker: str | None = None  # "person" or "agent"
    last_spoke_at: int | None = None
    turn_open: bool = False  # the agent is working on a turn
    turn_completed_at: int | None = None  # when the last turn ended, if none is open
    tools_open: int = 0  # tool calls started and not finished
    tool_since: int | None = None
    permissions_pending: int = 0
    permission_since: int | None = None
    failed_at: int | None = None  # the last turn ended in error
    acted_at: int | None = None  # the person's last prompt or permission decision
    ended_at: int | None = None
    cwd: str | None = None
    summary: str | None = None  # the agent's last words, shortened
    asking: str | None = None  # what the pending permission request is for ("Bash: rm -rf build"), shortened
    running: str | None = None  # the tool call started last while tools are open ("Bash: npm test"), shortened

    def to_json(self) -> str:
        # Every field is a plain value: this is what dataclasses.asdict gives, at a third of its cost.
        return json.dumps({name: getattr(self, name) for name in _FIELDS}, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | None) -> SessionFacts:
        """Facts from :meth:`to_json`; unknown keys (from a newer version) are ignored."""
        if not text:
            return cls()
        return cls(**{key: value for key, value in json.loads(text).items() if key in _FIELDS})


_FIELDS = frozenset(field.name for field in dataclasses.fields(SessionFacts))


def is_working(facts: SessionFacts) -> bool:
    """The agent owes the person progress: a turn or tool call is open, or the session started
    and has produced nothing yet."""
    if facts.ended_at is not None:
        return False
    return facts.turn_open or facts.tools_open > 0 or (facts.last_event_at is None and facts.started_at is not None)


def last_activity(facts: SessionFacts) -> int | None:
    """When anything last arrived from the session (its start if nothing has)."""
    return facts.last_event_at if facts.last_event_at is not None else facts.started_at


def newer(
    snapshot: Mapping[SessionKey, SessionFacts], live: Mapping[SessionKey, SessionFacts], removed: Collection[SessionKey] = ()
) -> dict[SessionKey, SessionFacts]:
    """The entries of a snapshot read at start that are not older than what commits since then
    delivered: a session already updated live, superseded by a live newer session of the same
    agent (a context clear during the read), or removed by retention meanwhile, is left out."""
    latest: dict[str, int] = {}
    for agent_id, session in live:
        latest[agent_id] = max(session, latest.get(agent_id, -1))
    return {key: facts for key, facts in snapshot.items() if key[1] > latest.get(key[0], -1) and key not in removed}


def apply(facts: SessionFacts, kind: str, event: Normalized, at: int) -> None:
    """Update ``facts`` with one stored event of canonical ``kind`` received at ``at``."""
    facts.last_event_at = at
    if event.cwd:
        facts.cwd = event.cwd
    handler = _HANDLERS.get(kind)
    if handler is not None:
        handler(facts, event, at)


def _person_spoke(facts: SessionFacts, event: Normalized, at: int) -> None:
    """A new turn: whatever was open before is over (a tool call the person refused or interrupted
    never reports a result)."""
    _nothing_running(facts)
    facts.last_speaker, facts.last_spoke_at, facts.acted_at = "person", at, at
    facts.turn_open, facts.turn_completed_at, facts.failed_at = True, None, None


def _agent_spoke(facts: SessionFacts, event: Normalized, at: int) -> None:
    facts.last_speaker, facts.last_spoke_at = "agent", at
    _progressed(facts, event, at)
    if event.text:
        facts.summary = _shorten(event.text)


def _working(facts: SessionFacts, event: Normalized, at: int) -> None:
    facts.turn_open, facts.turn_completed_at, facts.ended_at = True, None, None


def _progressed(facts: SessionFacts, event: Normalized, at: int) -> None:
    """The agent moved on, so nothing it asked permission for is still waiting (Claude Code's
    hooks report a request but never its answer)."""
    _working(facts, event, at)
    _nothing_asked(facts)


def _nothing_asked(facts: SessionFacts) -> None:
    """No permission request is waiting."""
    facts.permissions_pending, facts.permission_since, facts.asking = 0, None, None


def _nothing_running(facts: SessionFacts) -> None:
    """No turn, tool call or permission request is open."""
    facts.turn_open, facts.tools_open, facts.tool_since, facts.running = False, 0, None, None
    _nothing_asked(facts)


def _tool_started(facts: SessionFacts, event: Normalized, at: int) -> None:
    _working(facts, event, at)
    if facts.tools_open == 0:
        facts.tool_since = at
    facts.tools_open += 1
    facts.running = _shorten(tool_call(event)) or None


def _tool_finished(facts: SessionFacts, event: Normalized, at: int) -> None:
    _nothing_asked(facts)  # the tool ran: it was allowed
    facts.tools_open = max(0, facts.tools_open - 1)
    if facts.tools_open == 0:
        facts.tool_since, facts.running = None, None


def _permission_requested(facts: SessionFacts, event: Normalized, at: int) -> None:
    _working(facts, event, at)
    if facts.permissions_pending == 0:
        facts.permission_since = at
    facts.permissions_pending += 1
    asking = _shorten(summary("permission_request", event))
    if asking and (facts.asking is None or event.tool):  # a tool call says more than a notification's words
        facts.asking = asking


def _permission_resolved(facts: SessionFacts, event: Normalized, at: int) -> None:
    facts.acted_at = at
    facts.permissions_pending = max(0, facts.permissions_pending - 1)
    if facts.permissions_pending == 0:
        facts.permission_since, facts.asking = None, None


def _turn_ended(facts: SessionFacts, event: Normalized, at: int, failed: bool) -> None:
    _nothing_running(facts)
    facts.turn_completed_at = at
    facts.failed_at = at if failed else None
    facts.last_speaker, facts.last_spoke_at = "agent", at
    if event.text:
        facts.summary = _shorten(event.text)


def _session_started(facts: SessionFacts, event: Normalized, at: int) -> None:
    """A (re)start: whatever the session was doing before is over; what it said stays."""
    _nothing_running(facts)
    facts.ended_at, facts.failed_at, facts.turn_completed_at = None, None, None


def _session_ended(facts: SessionFacts, event: Normalized, at: int) -> None:
    _nothing_running(facts)
    facts.ended_at = at


_HANDLERS: dict[str, Any] = {
    "session_started": _session_started,
    "prompt": _person_spoke,
    "output": _agent_spoke,
    "thinking": _progressed,
    "tool_use": _tool_started,
    "tool_result": _tool_finished,
    "permission_request": _permission_requested,
    "permission_resolved": _permission_resolved,
    "turn_completed": lambda facts, event, at: _turn_ended(facts, event, at, failed=bool(event.is_error)),
    "error": lambda facts, event, at: _turn_ended(facts, event, at, failed=True),
    "session_ended": _session_ended,
}


def _shorten(text: str) -> str:
    """The first ``SUMMARY_CHARS`` characters of ``text``, whitespace folded."""
    # Folding a prefix gives a prefix of the folded whole, so a long message (they run to tens of
    # KB) is folded only as far as the summary needs, unless whitespace runs eat that prefix.
    folded = " ".join(text[:_FOLD_PREFIX].split())
    if len(folded) <= SUMMARY_CHARS and len(text) > _FOLD_PREFIX:
        folded = " ".join(text.split())
    return folded if len(folded) <= SUMMARY_CHARS else folded[: SUMMARY_CHARS - 1] + "…"
