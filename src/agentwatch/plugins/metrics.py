"""The built-in ``metrics`` plugin: Prometheus series made from other plugins' hooks: stalls,
retention removals and attention items by state (the daemon and the store count the rest)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import trio

from agentwatch.hookspecs import hookimpl
from agentwatch.plugins.attention.feed import STATES

if TYPE_CHECKING:
    from agentwatch.daemon import Daemon


class MetricsPlugin:
    """Counts what the hooks report, into its daemon's registry."""

    def __init__(self) -> None:
        self._attention: Counter[str] = Counter(dict.fromkeys(STATES, 0))  # items by state
        self._stalls = self._removed_events = self._removed_sessions = self._sweeps = 0

    @hookimpl
    def agentwatch_startup(self, daemon: Daemon, nursery: trio.Nursery) -> None:
        registry = daemon.metrics.registry
        registry.counter("agentwatch_stalls_detected_total", "Stall episodes detected.", read=lambda: self._stalls)
        registry.counter("agentwatch_retention_sweeps_total", "Retention sweeps that removed something.", read=lambda: self._sweeps)
        registry.counter("agentwatch_retention_removed_events_total", "Events removed by retention.", read=lambda: self._removed_events)
        registry.counter(
            "agentwatch_retention_removed_sessions_total", "Sessions removed by retention.", read=lambda: self._removed_sessions
        )
        registry.gauge(
            "agentwatch_attention_items", "Sessions that need the person now, by attention state.", ["state"],
            read=lambda: {(state,): count for state, count in self._attention.items()},
        )

    @hookimpl
    def agentwatch_stall_detected(self, agent_id: str, session: int, since: int, threshold_s: float) -> None:
        self._stalls += 1

    @hookimpl
    def agentwatch_retention_swept(self, report: Mapping[str, Any]) -> None:
        self._sweeps += 1
        self._removed_events += report["events"]
        self._removed_sessions += report["sessions"]

    @hookimpl
    def agentwatch_attention_changed(self, agent_id: str, session: int, state: str | None, previous: str | None) -> None:
        if previous is not None:
            self._attention[previous] -= 1
        if state is not None:
            self._attention[state] += 1
