"""The built-in ``attention`` plugin: which agent needs the person now, and why.

It keeps every current session's facts (from the store at start, then from each commit), the
need each one has (:mod:`.feed`), and the state of each session's work tree (:mod:`.worktree`);
``attention.list`` answers from memory, the ``attention`` topic sends the whole list when it
changes (at most every 250 ms), and ``agentwatch_attention_changed`` tells other plugins when an
item appears, changes state or leaves.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import trio

from agentwatch.hookspecs import hookimpl
from agentwatch.logs import get_logger
from agentwatch.model import StoredEvent, now_ms
from agentwatch.plugins.attention.feed import Need, SessionKey, encoded_item, need_of, order
from agentwatch.plugins.attention.worktree import WorkTrees
from agentwatch.session_facts import SessionFacts, newer
from agentwatch.subscriptions import Subscription, Topic
from agentwatch.watch import Params, RawJSON, WatchMethod

if TYPE_CHECKING:
    from agentwatch.config import Config
    from agentwatch.daemon import Daemon

log = get_logger(__name__)

_Encoded = tuple[str, str, int]  # an item's JSON before and after its waiting time, and its since (ms)

#: Kinds after which a session's work tree may have changed.
_WORK_DONE = frozenset({"tool_result", "turn_completed", "error"})

#: The ``attention`` topic sends at most one list per this many seconds, and one within it of a change.
COALESCE_S = 0.25


class AttentionPlugin:
    """The attention feed of one daemon."""

    def __init__(self) -> None:
        self._facts: dict[SessionKey, SessionFacts] = {}
        self._needs: dict[SessionKey, Need] = {}
        self._stalled: dict[SessionKey, int] = {}  # from the stall plugin
        self._worktrees = WorkTrees(on_change=lambda cwd, answer: self._worktree_changed(cwd))
        self._changed = trio.Event()  # set (and replaced) whenever the feed may have changed
        self._encoded: list[_Encoded] | None = None  # see _encoded_items
        self._encoded_by_key: dict[SessionKey, tuple[str, str]] = {}  # each item's parts, until it changes
        self._cwd_users: Counter[str] = Counter()  # sessions per directory
        self._daemon: Daemon | None = None
        self._loaded = trio.Event()
        self._removed_while_loading: set[SessionKey] = set()

    @hookimpl
    def agentwatch_startup(self, daemon: Daemon, nursery: trio.Nursery) -> None:
        self._daemon = daemon
        self._worktrees.interval = daemon.config["attention"]["git_check_interval"]
        nursery.start_soon(self._worktrees.run)
        nursery.start_soon(self._load, daemon)

    @hookimpl
    def agentwatch_config_reloaded(self, config: Config, previous: Config) -> None:
        self._worktrees.interval = config["attention"]["git_check_interval"]

    async def _load(self, daemon: Daemon) -> None:
        current = await daemon.store.current_sessions()
        self.agentwatch_sessions_changed(newer(current, self._facts, self._removed_while_loading))
        self._loaded.set()
        self._removed_while_loading.clear()
        log.info("attention_loaded", sessions=len(current), items=len(self._needs))

    @hookimpl
    def agentwatch_sessions_changed(self, sessions: Mapping[tuple[str, int], SessionFacts]) -> None:
        for key, facts in sessions.items():
            if key[1] and (key[0], key[1] - 1) in self._facts:  # a context clear superseded the older session
                self._drop((key[0], key[1] - 1))
            self._keep(key, facts)
            self._set_need(key, need_of(facts, self._stalled.get(key)))
            if key in self._needs:
                self._touch(key)  # its summary or speaker may have changed

    @hookimpl
    def agentwatch_sessions_removed(self, sessions: Sequence[tuple[str, int]]) -> None:
        for key in sessions:
            if key in self._facts:
                self._drop(key)
            if not self._loaded.is_set():
                self._removed_while_loading.add(key)

    @hookimpl
    def agentwatch_stall_detected(self, agent_id: str, session: int, since: int, threshold_s: float) -> None:
        self._stalled[(agent_id, session)] = since
        if (facts := self._facts.get((agent_id, session))) is not None:
            self._set_need((agent_id, session), need_of(facts, since))

    @hookimpl
    def agentwatch_stall_cleared(self, agent_id: str, session: int) -> None:
        self._stalled.pop((agent_id, session), None)
        if (facts := self._facts.get((agent_id, session))) is not None:
            self._set_need((agent_id, session), need_of(facts))

    def _keep(self, key: SessionKey, facts: SessionFacts) -> None:
        """Hold a session's latest facts; its directory's work tree is checked while any session is in it."""
        previous = self._facts.get(key)
        self._facts[key] = facts
        if previous is None or previous.cwd != facts.cwd:
            self._use_cwd(facts.cwd, +1)
            if previous is not None:
                self._use_cwd(previous.cwd, -1)

    def _drop(self, key: SessionKey) -> None:
        """A session left: superseded by a context clear, or removed by retention."""
        facts = self._facts.pop(key)
        self._use_cwd(facts.cwd, -1)
        self._stalled.pop(key, None)
        self._set_need(key, None)

    def _use_cwd(self, cwd: str | None, change: int) -> None:
        if cwd is None:
            return
        self._cwd_users[cwd] += change
        if self._cwd_users[cwd] <= 0:
            del self._cwd_users[cwd]
            self._worktrees.forget(cwd)
        elif change > 0:
            self._worktrees.watch(cwd)

    def _set_need(self, key: SessionKey, need: Need | None) -> None:
        previous = self._needs.get(key)
        if need is None:
            self._needs.pop(key, None)
        else:
            self._needs[key] = need
        if need != previous:
            self._touch(key)
        if (previous and previous.state) != (need and need.state) and self._daemon is not None:
            self._daemon.plugins.notify(
                "agentwatch_attention_changed",
                agent_id=key[0],
                session=key[1],
                state=need.state if need else None,
                previous=previous.state if previous else None,
            )

    @hookimpl
    def agentwatch_events_stored(self, events: Sequence[StoredEvent]) -> None:
        for event in events:
            if event.kind in _WORK_DONE and (facts := self._facts.get((event.agent_id, event.session))):
                self._worktrees.recheck(facts.cwd)

    @hookimpl
    def agentwatch_register_watch_methods(self, register: Callable[[str, WatchMethod], None]) -> None:
        register("attention.list", self._list)

    @hookimpl
    def agentwatch_register_topics(self, register: Callable[[str, Topic], None]) -> None:
        register("attention", self._topic)

    async def _list(self, daemon: Daemon, params: dict[str, Any]) -> RawJSON:
        Params("attention.list", params, ())
        await self._loaded.wait()  # a request right after start waits for the stored facts
        return RawJSON('{"items":' + _render(self._encoded_items()) + "}")

    async def _topic(self, daemon: Daemon, subscription: Subscription) -> None:
        """The whole list now, then again whenever it changes: at most one per ``COALESCE_S``, and
        one within ``COALESCE_S`` of a change. ``waiting_s`` growing is not a change."""
        await self._loaded.wait()
        sent_at = -math.inf
        shown: list[_Encoded] | None = None
        while True:
            await trio.sleep_until(sent_at + COALESCE_S)
            await subscription.drained()  # a subscriber that is behind gets the newest list, not every one
            changed = self._changed
            encoded = self._encoded_items()
            if encoded != shown:  # the same items, only waiting longer, are not a change
                subscription.notify("attention", items=RawJSON(_render(encoded)))
                sent_at, shown = trio.current_time(), encoded
            await changed.wait()

    def _encoded_items(self) -> list[_Encoded]:
        """The feed in order, each item encoded but for its waiting time; kept until a change."""
        if self._encoded is None:
            parts = self._encoded_by_key
            for key in self._needs.keys() - parts.keys():
                parts[key] = encoded_item(key, self._needs[key], self._facts[key], self._worktrees.dirty(self._facts[key].cwd))
            self._encoded = [(*parts[key], self._needs[key].since) for key in order(self._needs)]
        return self._encoded

    def _worktree_changed(self, cwd: str) -> None:
        for key in [key for key in self._needs if self._facts[key].cwd == cwd]:
            self._encoded_by_key.pop(key, None)
        self._touch()

    def _touch(self, key: SessionKey | None = None) -> None:
        """The feed may have changed (``key``: that item)."""
        if key is not None:
            self._encoded_by_key.pop(key, None)
        self._encoded = None
        self._changed.set()
        self._changed = trio.Event()


def _render(encoded: list[_Encoded]) -> str:
    """The JSON array of the feed's items, each waiting time worked out now."""
    now = now_ms()
    return "[" + ",".join(f"{prefix}{max(0, (now - since) // 1000)}{suffix}" for prefix, suffix, since in encoded) + "]"
