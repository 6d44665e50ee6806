"""The attention feed: which sessions need the person, most urgent first (protocol.md, "Attention").

A policy over :mod:`agentwatch.session_facts`: an item never expires because time passed; it
leaves when the person acts, the session ends, or its facts go.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from agentwatch.model import iso_ms
from agentwatch.session_facts import SessionFacts

SessionKey = tuple[str, int]  # (agent_id, session)


#: Every attention state, most urgent first.
STATES = ("needs_permission", "error", "stalled", "awaiting_reply")


@dataclass(frozen=True, slots=True)
class Need:
    """Why a session needs the person, and since when (unix ms)."""

    state: str
    tier: int
    since: int


def need_of(facts: SessionFacts, stalled_since: int | None = None) -> Need | None:
    """The session's need, or ``None`` when it needs nothing from the person; ``stalled_since``
    comes from the stall plugin."""
    if facts.ended_at is not None:
        return None
    if facts.permissions_pending and facts.permission_since is not None:
        return Need("needs_permission", 1, facts.permission_since)
    if facts.failed_at is not None:
        return Need("error", 2, facts.failed_at)
    if stalled_since is not None:
        return Need("stalled", 2, stalled_since)
    if not facts.turn_open and facts.last_speaker == "agent" and facts.turn_completed_at is not None:
        return Need("awaiting_reply", 3, facts.turn_completed_at)
    return None


def item(key: SessionKey, need: Need, facts: SessionFacts, now_ms: int, uncommitted_work: bool | None) -> dict[str, Any]:
    """The feed item of protocol.md for one session."""
    agent_id, session = key
    return {
        "agent_id": agent_id,
        "session": session,
        "state": need.state,
        "tier": need.tier,
        "since": iso_ms(need.since),
        "waiting_s": max(0, (now_ms - need.since) // 1000),
        "last_speaker": facts.last_speaker,
        "cwd": facts.cwd,
        "uncommitted_work": uncommitted_work,
        "summary": said(need, facts),
    }


def said(need: Need, facts: SessionFacts) -> str | None:
    """What an item says: what waits for a permission, the tool a stalled agent runs, else the
    agent's last words."""
    if need.state == "needs_permission" and facts.asking:
        return facts.asking
    if need.state == "stalled" and facts.running:
        return facts.running
    return facts.summary


def encoded_item(key: SessionKey, need: Need, facts: SessionFacts, uncommitted_work: bool | None) -> tuple[str, str]:
    """:func:`item` as JSON text in two parts, for ``prefix + waiting_s + suffix``: everything but
    the waiting time stays the same until the item changes, so it is encoded once."""
    fields = item(key, need, facts, need.since, uncommitted_work)
    text = json.dumps(fields, separators=(",", ":"))
    waiting = text.index(',"waiting_s":0,') + len(',"waiting_s":')
    return text[:waiting], text[waiting + 1 :]


def order(needs: dict[SessionKey, Need]) -> list[SessionKey]:
    """Sessions most urgent first: by tier, then the longest waiting."""
    return sorted(needs, key=lambda key: (needs[key].tier, needs[key].since, key))
