"""The built-in read methods of ``/v1/watch``: status, agents.list, sessions.list, events.list."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from agentwatch import __version__
from agentwatch.hookspecs import hookimpl
from agentwatch.text import brief
from agentwatch.model import KINDS
from agentwatch.store import MAX_PAGE_BYTES
from agentwatch.watch import BUSY, INVALID_PARAMS, Params, RawJSON, WatchError, WatchMethod
from agentwatch.watch_budget import current_reply

if TYPE_CHECKING:
    from agentwatch.daemon import Daemon

MAX_PAGE = 1000


async def status(daemon: Daemon, params: dict[str, Any]) -> dict[str, Any]:
    Params("status", params, ())
    counts = await daemon.store.counts()
    return {
        "version": __version__,
        "uptime_s": round(daemon.uptime(), 3),
        "agents_connected": len(daemon.connections),
        "agents_known": counts["agents"],
        "subscriptions": daemon.subscriptions,
        "events_stored": counts["events_stored"],
        "plugins": daemon.plugins.names(),
        "plugin_errors": dict(daemon.plugins.errors),
        "formats": sorted(daemon.formats),
        "listen": daemon.addresses,
    }


async def agents_list(daemon: Daemon, params: dict[str, Any]) -> list[dict[str, Any]]:
    Params("agents.list", params, ())
    agents = await daemon.store.agents()
    for agent in agents:
        agent["connected"] = agent["agent_id"] in daemon.connections
    return agents


async def sessions_list(daemon: Daemon, params: dict[str, Any]) -> list[dict[str, Any]]:
    p = Params("sessions.list", params, ("agent_id", "limit"))
    sessions = await daemon.store.sessions(p.string("agent_id"), p.integer("limit", 100, low=1, high=MAX_PAGE) or 100)
    for session in sessions:
        session["state"] = _session_state(session, session["agent_id"] in daemon.connections)
    return sessions


def _session_state(session: dict[str, Any], connected: bool) -> str:
    """``cleared`` (a context clear superseded it), ``ended``, ``active`` (agent connected) or ``idle``."""
    if not session.pop("current"):
        return "cleared"
    if session["ended_at"] is not None:
        return "ended"
    return "active" if connected else "idle"


async def events_list(daemon: Daemon, params: dict[str, Any]) -> RawJSON:
    p = Params("events.list", params, ("agent_id", "session", "kinds", "after_seq", "before_seq", "limit"))
    agent_id = p.string("agent_id", required=True)
    assert agent_id is not None
    query = {
        "session": p.integer("session"),
        "kinds": p.strings("kinds", KINDS),
        "after_seq": p.integer("after_seq"),
        "before_seq": p.integer("before_seq"),
        "limit": p.integer("limit", 100, low=1, high=MAX_PAGE) or 100,
    }
    page = await daemon.store.events(agent_id, max_bytes=_page_bytes(), **query)
    if page is None:
        raise WatchError(INVALID_PARAMS, f"events.list: no agent {brief(agent_id)} is known; agents.list shows the known ones")
    return RawJSON(page)


def _page_bytes() -> int:
    """What a page may take of the daemon's watch budget: the page stops growing there."""
    reply = current_reply()
    if reply is None:
        return MAX_PAGE_BYTES
    if not (size := reply.reserve(MAX_PAGE_BYTES)):
        budget = reply.budget
        raise WatchError(
            BUSY,
            f"events.list: the daemon holds {budget.used >> 20} MiB for watchers, as much as "
            "watch.max_bytes lets pages take; retry in a moment, or read the pages one request at a time",
        )
    return size


@hookimpl
def agentwatch_register_watch_methods(register: Callable[[str, WatchMethod], None]) -> None:
    register("status", status)
    register("agents.list", agents_list)
    register("sessions.list", sessions_list)
    register("events.list", events_list)
