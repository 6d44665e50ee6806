"""The hooks a plugin can implement. Only specifications live here; docs/plugins.md explains each.

Hooks are synchronous (pluggy). A hook that needs to do I/O starts its own tasks from
:func:`agentwatch_startup`, which hands it the daemon's nursery.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    import trio

    from agentwatch.config import Config
    from agentwatch.daemon import Daemon
    from agentwatch.metrics import Registry
    from agentwatch.model import AgentInfo, Format, StoredEvent
    from agentwatch.session_facts import SessionFacts
    from agentwatch.store import Store
    from agentwatch.subscriptions import Topic
    from agentwatch.watch import WatchMethod

hookspec = pluggy.HookspecMarker("agentwatch")
hookimpl = pluggy.HookimplMarker("agentwatch")


@hookspec
def agentwatch_register_formats(register: Callable[[Format], None]) -> None:
    """Register record formats (``register(format)``) that ingest connections may name."""


@hookspec(firstresult=True)
def agentwatch_open_store(config: Config, metrics: Registry) -> Store | None:
    """Return the store that keeps agents, sessions and events; the first non-None wins. It may add
    its own series to ``metrics`` (the daemon's Prometheus registry)."""


@hookspec
def agentwatch_register_watch_methods(register: Callable[[str, WatchMethod], None]) -> None:
    """Register JSON-RPC methods of ``/v1/watch`` (``register("name", async_handler)``)."""


@hookspec
def agentwatch_register_topics(register: Callable[[str, Topic], None]) -> None:
    """Register topics that ``subscribe`` may name (``register("name", async_topic)``)."""


@hookspec
def agentwatch_check_config(config: Config) -> None:
    """Check a configuration before the daemon takes it, at start-up and on every reload: raise
    ``ValueError`` saying what is wrong to refuse it (start-up stops; a reload keeps the old one).
    A plugin's own settings are ``config.plugin("name")``, the ``[plugins.name]`` table."""


@hookspec
def agentwatch_config_reloaded(config: Config, previous: Config) -> None:
    """The daemon took a new configuration (SIGHUP): re-read whatever settings the plugin keeps."""


@hookspec
def agentwatch_startup(daemon: Daemon, nursery: trio.Nursery) -> None:
    """The daemon is ready: start background tasks in ``nursery`` (cancelled at shutdown)."""


@hookspec
def agentwatch_agent_connected(agent_id: str, agent: AgentInfo, session: int) -> None:
    """An agent completed its hello; ``session`` is its current session number."""


@hookspec
def agentwatch_agent_disconnected(agent_id: str, code: int) -> None:
    """An agent's connection ended with WebSocket close ``code``."""


@hookspec
def agentwatch_events_stored(events: Sequence[StoredEvent]) -> None:
    """``events`` were committed (in ``seq`` order per agent); must return quickly."""


@hookspec
def agentwatch_sessions_changed(sessions: Mapping[tuple[str, int], SessionFacts]) -> None:
    """A commit changed these sessions' facts, by ``(agent_id, session)``; must return quickly."""


@hookspec
def agentwatch_sessions_removed(sessions: Sequence[tuple[str, int]]) -> None:
    """Retention removed these sessions, by ``(agent_id, session)``, with all their events."""


@hookspec
def agentwatch_retention_swept(report: Mapping[str, Any]) -> None:
    """A retention sweep removed something; ``report`` says what (see docs/plugins.md)."""


@hookspec
def agentwatch_attention_changed(agent_id: str, session: int, state: str | None, previous: str | None) -> None:
    """A session's attention item appeared, changed state or left (``state`` None: it left)."""


@hookspec
def agentwatch_stall_detected(agent_id: str, session: int, since: int, threshold_s: float) -> None:
    """A working session has been silent since ``since`` (unix ms) for ``threshold_s``: once per episode."""


@hookspec
def agentwatch_stall_cleared(agent_id: str, session: int) -> None:
    """A stalled session's episode ended: activity resumed, the turn ended, or the session went."""


def hook_names() -> list[str]:
    """The names of every hook specified here."""
    return sorted(name for name, value in globals().items() if name.startswith("agentwatch_"))

