"""The built-in ``stall`` plugin: a working session from which nothing has arrived for too long.

A session is working while a turn or tool call is open, or once started and silent. It stalls
when nothing arrives for ``stall.threshold`` (``stall.tool_threshold`` while a tool call runs),
overridable per agent id or label. Each episode is announced once (``agentwatch_stall_detected``)
and ends once (``agentwatch_stall_cleared``) when activity resumes or the turn ends. Times come
from the stored session facts, so a restart resumes the count instead of resetting it.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import trio

from agentwatch.hookspecs import hookimpl
from agentwatch.logs import get_logger
from agentwatch.model import AgentInfo, iso_ms, now_ms
from agentwatch.session_facts import SessionFacts, is_working, last_activity, newer

if TYPE_CHECKING:
    from agentwatch.config import Config
    from agentwatch.daemon import Daemon

log = get_logger(__name__)

Key = tuple[str, int]


class StallPlugin:
    """Stall detection for one daemon; its timer runs on Trio's clock (virtual in tests, see
:func:`agentwatch.model.now_ms`)."""

    def __init__(self) -> None:
        self._facts: dict[Key, SessionFacts] = {}
        self._labels: dict[str, dict[str, str]] = {}
        self._thresholds: dict[str, tuple[float, float]] = {}  # per agent: (threshold, tool_threshold)
        self._armed: dict[Key, int] = {}  # the deadline each session has in the heap
        self._heap: list[tuple[int, Key]] = []
        self._stalled: dict[Key, int] = {}  # episode start: the last activity before it
        self._wake = trio.Event()
        self._removed_while_loading: set[Key] | None = set()  # None once the stored facts are loaded
        self._daemon: Daemon | None = None
        self._settings: Mapping[str, Any] = {}

    @hookimpl
    def agentwatch_startup(self, daemon: Daemon, nursery: trio.Nursery) -> None:
        self._daemon = daemon
        self._settings = daemon.config["stall"]
        nursery.start_soon(self._run, daemon)

    @hookimpl
    def agentwatch_config_reloaded(self, config: Config, previous: Config) -> None:
        """New thresholds apply at once: every session's deadline is worked out again (a stall
        already announced stays until its episode ends)."""
        self._settings = config["stall"]
        self._thresholds.clear()
        self._armed.clear()
        self._heap.clear()
        for key, facts in self._facts.items():
            self._arm(key, facts)
        self._wake.set()

    @hookimpl
    def agentwatch_agent_connected(self, agent_id: str, agent: AgentInfo, session: int) -> None:
        self._labels[agent_id] = agent.labels
        self._thresholds.pop(agent_id, None)

    @hookimpl
    def agentwatch_sessions_changed(self, sessions: Mapping[tuple[str, int], SessionFacts]) -> None:
        for key, facts in sessions.items():
            self._forget((key[0], key[1] - 1))  # a context clear superseded the older session
            self._facts[key] = facts
            if key in self._stalled and (not is_working(facts) or last_activity(facts) != self._stalled[key]):
                self._clear(key)
            self._arm(key, facts)

    @hookimpl
    def agentwatch_sessions_removed(self, sessions: Sequence[tuple[str, int]]) -> None:
        for key in sessions:
            self._forget(key)
            if self._removed_while_loading is not None:
                self._removed_while_loading.add(key)

    def _forget(self, key: Key) -> None:
        """The session is gone: its armed deadline lapses, and a stall it was in ends."""
        self._facts.pop(key, None)
        self._clear(key)

    def _threshold(self, agent_id: str, facts: SessionFacts) -> float:
        if (thresholds := self._thresholds.get(agent_id)) is None:
            thresholds = self._thresholds[agent_id] = (self._lookup(agent_id, "threshold"), self._lookup(agent_id, "tool_threshold"))
        return thresholds[1] if facts.tools_open else thresholds[0]

    def _lookup(self, agent_id: str, name: str) -> float:
        """The agent id's override, else the first of its labels', else the global setting."""
        overrides = [self._settings["agents"].get(agent_id, {})]
        overrides += [self._settings["labels"].get(f"{label}={value}", {}) for label, value in self._labels.get(agent_id, {}).items()]
        for override in overrides:
            if name in override:
                return float(override[name])
        return float(self._settings[name])

    def _deadline(self, key: Key, facts: SessionFacts) -> int | None:
        since = last_activity(facts)
        if since is None or not is_working(facts) or key in self._stalled:
            return None
        return since + int(self._threshold(key[0], facts) * 1000)

    def _arm(self, key: Key, facts: SessionFacts) -> None:
        deadline = self._deadline(key, facts)
        if deadline is not None and (key not in self._armed or deadline < self._armed[key]):
            self._armed[key] = deadline
            heapq.heappush(self._heap, (deadline, key))
            self._wake.set()

    async def _run(self, daemon: Daemon) -> None:
        stored = await daemon.store.current_sessions()
        for agent in await daemon.store.agents():
            self._labels.setdefault(agent["agent_id"], agent["labels"])
        self.agentwatch_sessions_changed(newer(stored, self._facts, self._removed_while_loading or ()))
        self._removed_while_loading = None
        while True:
            now = now_ms()
            while self._heap and self._heap[0][0] <= now:
                deadline, key = heapq.heappop(self._heap)
                if self._armed.get(key) != deadline:
                    continue  # superseded by an earlier deadline
                del self._armed[key]
                if (facts := self._facts.get(key)) is None:
                    continue  # superseded by a context clear
                current = self._deadline(key, facts)
                if current is not None and current <= now:
                    self._detect(key, facts)
                else:
                    self._arm(key, facts)  # activity moved the deadline later
            wake_at = self._heap[0][0] if self._heap else math.inf
            with trio.move_on_after(max(0.0, (wake_at - now_ms()) / 1000)):
                await self._wake.wait()
            self._wake = trio.Event()

    def _detect(self, key: Key, facts: SessionFacts) -> None:
        since = last_activity(facts)
        assert since is not None
        self._stalled[key] = since
        threshold = self._threshold(key[0], facts)
        log.warning("stall_detected", agent_id=key[0], session=key[1], since=iso_ms(since), threshold_s=threshold)
        if self._daemon is not None:
            self._daemon.plugins.notify("agentwatch_stall_detected", agent_id=key[0], session=key[1], since=since, threshold_s=threshold)

    def _clear(self, key: Key) -> None:
        if self._stalled.pop(key, None) is None:
            return
        log.info("stall_cleared", agent_id=key[0], session=key[1])
        if self._daemon is not None:
            self._daemon.plugins.notify("agentwatch_stall_cleared", agent_id=key[0], session=key[1])
