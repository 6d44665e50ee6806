"""The built-in ``events`` and ``agents`` topics of ``subscribe``.

``events`` replays what is stored after ``after_seq``, then goes live with no gap and no
duplicate at the seam: while it replays, live events are held (boundedly), and from then on only
events above the last replayed ``seq`` of their agent are sent. The filter stays on once live: a
commit is visible to the replay's reads before its stored-events hook runs, so the hook may bring
events the replay already sent. If too many arrive while it replays, it drops them and reads again
from the store, which has them all.

``agents`` tells of agents connecting, disconnecting, and starting a new session.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import trio

from agentwatch.hookspecs import hookimpl
from agentwatch.model import AgentInfo, StoredEvent
from agentwatch.subscriptions import SharedJSON, SubscribeParams, Subscription, Topic
from agentwatch.watch import RawJSON
from agentwatch.watch_budget import BulkBytes

if TYPE_CHECKING:
    from agentwatch.daemon import Daemon
    from agentwatch.store import Store

REPLAY_PAGE = 500  # events read from the store at a time ...
REPLAY_PAGE_BYTES = 1 << 20  # ... and at most this many bytes of them
HELD_WHILE_REPLAYING = 10_000  # live events held during a replay (if the budget has room for them) before it reads again instead


class _EventFeed:
    """One subscription's ``events``: a replay, then every matching event as it is committed."""

    def __init__(self, subscription: Subscription) -> None:
        self.subscription = subscription
        self.params: SubscribeParams = subscription.params
        self.live = self.params.after_seq is None  # nothing to replay
        self._held: deque[StoredEvent] = deque()
        self._holding = BulkBytes(subscription.budget)  # what the held events count in the budget
        self._overflowed = False
        self._sent: dict[str, int] = {}  # the last seq replayed, per agent the replay read

    def wants(self, event: StoredEvent) -> bool:
        return (self.params.agent_id is None or event.agent_id == self.params.agent_id) and (
            self.params.kinds is None or event.kind in self.params.kinds
        )

    def committed(self, event: StoredEvent, encoded: SharedJSON) -> None:
        if self.live:
            if event.seq > self._sent.get(event.agent_id, 0):
                self.subscription.notify("event", event=encoded)
        elif len(self._held) < HELD_WHILE_REPLAYING and self._holding.take(len(event.data_json)):
            self._held.append(event)
        else:  # the store has them all: read them from there
            self._held.clear()
            self._holding.release()
            self._overflowed = True

    async def replay(self, store: Store) -> None:
        """Send what is stored after ``after_seq``, then what arrived meanwhile; then go live."""
        after_seq = self.params.after_seq
        if after_seq is None:  # live from the start
            return
        sent = self._sent
        while not self.live:
            self._overflowed = False
            for agent_id in await self._agents(store):
                sent[agent_id] = await self._replay_agent(store, agent_id, sent.get(agent_id, after_seq))
            while self._held and not self._overflowed:
                event = self._held.popleft()
                if event.seq > sent.get(event.agent_id, 0):
                    sent[event.agent_id] = event.seq
                    await self.subscription.deliver(self._holding, "event", event=RawJSON(event.to_json()))
                else:
                    self._holding.hand_on(len(event.data_json))
            self.live = not self._overflowed  # nothing held is left: live from here, with no await between
        self._holding.release()

    def close(self) -> None:
        """The subscription ended: give back what held events count."""
        self._held.clear()
        self._holding.release()

    async def _agents(self, store: Store) -> list[str]:
        if self.params.agent_id is not None:
            return [self.params.agent_id]
        return [agent["agent_id"] for agent in await store.agents()]

    async def _replay_agent(self, store: Store, agent_id: str, after_seq: int) -> int:
        kinds = sorted(self.params.kinds) if self.params.kinds else None
        budget = self.subscription.budget
        while True:
            page_bytes = BulkBytes(budget)  # a page counts from its read until its notifications are sent
            try:
                while not (max_bytes := page_bytes.reserve(REPLAY_PAGE_BYTES)):
                    await budget.freed()
                page = await store.event_page(agent_id, kinds=kinds, after_seq=after_seq, limit=REPLAY_PAGE, max_bytes=max_bytes)
                if page is None:  # not known (yet): what it sends arrives live
                    return after_seq
                events, has_more = page
                page_bytes.settle(sum(len(event.data_json) for event in events))
                for event in events:
                    await self.subscription.deliver(page_bytes, "event", event=RawJSON(event.to_json()))
                    after_seq = event.seq
            finally:
                page_bytes.release()
            if not has_more:
                return after_seq


class WatchTopics:
    """Provides the ``events`` and ``agents`` topics from the daemon's hooks."""

    def __init__(self) -> None:
        self._feeds: set[_EventFeed] = set()
        self._agent_watchers: set[Subscription] = set()

    @hookimpl
    def agentwatch_register_topics(self, register: Callable[[str, Topic], None]) -> None:
        register("events", self._events)
        register("agents", self._agents)

    async def _events(self, daemon: Daemon, subscription: Subscription) -> None:
        feed = _EventFeed(subscription)
        self._feeds.add(feed)
        try:
            await feed.replay(daemon.store)
            await trio.sleep_forever()
        finally:
            self._feeds.discard(feed)
            feed.close()

    async def _agents(self, daemon: Daemon, subscription: Subscription) -> None:
        self._agent_watchers.add(subscription)
        try:
            await trio.sleep_forever()
        finally:
            self._agent_watchers.discard(subscription)

    @hookimpl
    def agentwatch_events_stored(self, events: Sequence[StoredEvent]) -> None:
        if self._feeds:
            for event in events:
                encoded: SharedJSON | None = None  # one text for every subscription that sends it
                for feed in self._feeds:
                    if feed.wants(event):
                        encoded = encoded or SharedJSON(event.to_json())
                        feed.committed(event, encoded)
        if self._agent_watchers:
            for event in events:
                if event.kind == "context_cleared":
                    self._tell(event.agent_id, "session", {"agent_id": event.agent_id, "session": event.session})

    @hookimpl
    def agentwatch_agent_connected(self, agent_id: str, agent: AgentInfo, session: int) -> None:
        about = {"agent_id": agent_id, "name": agent.name, "kind": agent.kind, "cwd": agent.cwd, "host": agent.host,
                 "pid": agent.pid, "labels": agent.labels, "session": session}  # fmt: skip
        self._tell(agent_id, "connected", about)

    @hookimpl
    def agentwatch_agent_disconnected(self, agent_id: str, code: int) -> None:
        self._tell(agent_id, "disconnected", {"agent_id": agent_id, "code": code})

    def _tell(self, agent_id: str, change: str, agent: dict[str, Any]) -> None:
        for subscription in self._agent_watchers:
            if subscription.params.agent_id in (None, agent_id):
                subscription.notify("agent", change=change, agent=agent)
