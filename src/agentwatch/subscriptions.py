"""Live subscriptions of ``/v1/watch``: ``subscribe`` starts one, notifications flow until ``unsubscribe``.

A topic (``events``, ``attention``, ``agents``, or one a plugin registers) is a task that runs for
the life of a subscription and hands it notifications. The subscription keeps them in a bounded
:class:`~agentwatch.backlog.Backlog` and one task sends them on the WebSocket, so a subscriber
that reads slowly (or not at all) costs its own backlog and nothing else: past the bound, it
gets a ``gap`` notification with the number skipped, at the place they were skipped.

What backlogs hold also counts against the daemon-wide :class:`~agentwatch.watch_budget.WatchBudget`:
a live notification that does not fit is skipped the same way. An event every subscriber sends as it
is (:class:`SharedJSON`) is kept once, and counted once, however many backlogs hold it. What a replay
delivers was counted when its page was read, and stays counted as that (bulk) until it is sent.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import trio
from trio_websocket import ConnectionClosed, WebSocketConnection

from agentwatch.backlog import Backlog, Gap
from agentwatch.logs import get_logger
from agentwatch.model import KINDS
from agentwatch.text import brief
from agentwatch.watch import INVALID_PARAMS, Params, RawJSON, WatchConnection, WatchError, WatchMethod
from agentwatch.watch_budget import BulkBytes, WatchBudget

if TYPE_CHECKING:
    from agentwatch.daemon import Daemon

log = get_logger(__name__)

MAX_SUBSCRIPTIONS = 64  # on one connection


@dataclass(frozen=True, slots=True)
class SubscribeParams:
    """What a ``subscribe`` asked for; topics apply the filters that concern them."""

    topics: tuple[str, ...]
    agent_id: str | None = None  # only this agent
    after_seq: int | None = None  # events: replay what is stored after this seq first
    kinds: frozenset[str] | None = None  # events: only these kinds


class SharedJSON:
    """JSON text that many subscriptions send as it is (a committed event): kept once, and held in the
    budget once, however many backlogs hold it."""

    __slots__ = ("text", "holders")

    def __init__(self, text: str) -> None:
        self.text = text
        self.holders = 0  # backlogs holding it now


@dataclass(frozen=True, slots=True)
class _Queued:
    """A notification waiting in a backlog: ``head``, then the shared text and ``}}`` if there is one;
    ``bulk`` if it counts as part of what a replay read."""

    head: str
    shared: SharedJSON | None
    bulk: bool = False

    def size(self) -> int:
        return len(self.head) + (len(self.shared.text) + 2 if self.shared else 0)

    def text(self) -> str:
        return self.head + self.shared.text + "}}" if self.shared else self.head


class Subscription:
    """One subscription: its topics' notifications, bounded, on their way to one WebSocket."""

    def __init__(self, subscription_id: int, params: SubscribeParams, max_items: int, max_bytes: int, budget: WatchBudget) -> None:
        self.id = subscription_id
        self.params = params
        self.budget = budget
        self._backlog: Backlog[_Queued] = Backlog(max_items, max_bytes)
        self.released = trio.Event()  # set once the subscribe reply is on its way: nothing goes before it

    def notify(self, method: str, **fields: Any) -> bool:
        """Queue a notification without waiting; False if it was skipped (the subscriber is behind, or
        the daemon holds all it may for watchers). A :class:`SharedJSON` field must come last."""
        queued = self._encode(method, fields)
        if not self._hold(queued):
            self._backlog.skip()
            return False
        if not self._backlog.offer(queued, queued.size()):
            self._let_go(queued)
            return False
        return True

    async def deliver(self, page: BulkBytes, method: str, **fields: Any) -> None:
        """Queue a notification made of what ``page`` read, waiting for room in the backlog (a replay,
        which must skip nothing); its bytes pass from the page to the backlog."""
        queued = dataclasses.replace(self._encode(method, fields), bulk=True)
        self.budget.force(queued.size(), bulk=True)
        page.hand_on(queued.size())
        try:
            await self._backlog.put(queued, queued.size())
        except BaseException:
            self._let_go(queued)
            raise

    async def drained(self) -> None:
        """Wait until everything queued has been sent."""
        await self._backlog.drained()

    async def send_all(self, ws: WebSocketConnection, sending: trio.Lock) -> None:
        """Send queued notifications (and gaps) to ``ws`` until the connection closes. The subscriptions
        of a connection send one at a time (``sending``): a notification being sent exists as text and
        twice as bytes, and counts against the budget as such."""
        await self.released.wait()
        while True:
            item = await self._backlog.get()
            try:
                async with sending:
                    if isinstance(item, Gap):
                        log.info("subscriber_gap", subscription=self.id, skipped=item.skipped)
                        text = self._encode("gap", {"skipped": item.skipped}).text()
                    else:
                        text = item.text()
                    self.budget.force(3 * len(text))
                    try:
                        await ws.send_message(text)
                    finally:
                        self.budget.give(3 * len(text))
            except ConnectionClosed:
                return
            finally:
                if not isinstance(item, Gap):
                    self._let_go(item)

    def close(self) -> None:
        """The subscription ended: give back what its backlog still holds."""
        for queued in self._backlog.clear():
            self._let_go(queued)

    def _hold(self, queued: _Queued) -> bool:
        """Count ``queued`` against the budget (a shared text only for its first holder)."""
        shared = queued.shared
        if not self.budget.take(len(queued.head) + (len(shared.text) if shared and not shared.holders else 0)):
            return False
        if shared:
            shared.holders += 1
        return True

    def _let_go(self, queued: _Queued) -> None:
        if queued.bulk:
            self.budget.give(queued.size(), bulk=True)
            return
        shared = queued.shared
        size = len(queued.head)
        if shared:
            shared.holders -= 1
            size += 0 if shared.holders else len(shared.text)
        self.budget.give(size)

    def _encode(self, method: str, fields: dict[str, Any]) -> _Queued:
        """The notification as text; a :class:`SharedJSON` (the last field) is spliced in when sent."""
        names = list(fields)
        shared = fields[names[-1]] if names and isinstance(fields[names[-1]], SharedJSON) else None
        members = "".join(
            f",{json.dumps(name)}:{value if isinstance(value, RawJSON) else json.dumps(value)}"
            for name, value in fields.items()
            if value is not shared
        )
        head = f'{{"jsonrpc":"2.0","method":{json.dumps(method)},"params":{{"subscription":{self.id}{members}'
        if shared is None:
            return _Queued(head + "}}", None)
        return _Queued(f"{head},{json.dumps(names[-1])}:", shared)


#: A topic: ``await topic(daemon, subscription)`` hands the subscription its notifications; it
#: runs until the subscription ends (it is cancelled then).
Topic = Callable[["Daemon", Subscription], Awaitable[None]]


class ConnectionSubscriptions:
    """The subscriptions of one watch connection: its ``subscribe`` and ``unsubscribe`` methods."""

    def __init__(self, daemon: Daemon, connection: WatchConnection, nursery: trio.Nursery) -> None:
        self.daemon = daemon
        self.connection = connection
        self.nursery = nursery
        self._scopes: dict[int, trio.CancelScope] = {}
        self._next_id = 1
        self._sending = trio.Lock()  # one notification at a time on this connection

    def methods(self) -> dict[str, tuple[WatchMethod, str]]:
        """``subscribe`` and ``unsubscribe``, bound to this connection."""
        return {"subscribe": (self.subscribe, "core"), "unsubscribe": (self.unsubscribe, "core")}

    async def subscribe(self, daemon: Daemon, params: dict[str, Any]) -> dict[str, int]:
        topics = daemon.topics
        p = Params("subscribe", params, ("topics", "agent_id", "after_seq", "kinds"))
        names = p.strings("topics", frozenset(topics))
        if not names:
            raise WatchError(INVALID_PARAMS, f"subscribe: topics must name at least one of {', '.join(sorted(topics))}")
        kinds = p.strings("kinds", KINDS)
        wanted = SubscribeParams(
            tuple(dict.fromkeys(names)), p.string("agent_id"), p.integer("after_seq"), frozenset(kinds) if kinds else None
        )
        if len(self._scopes) >= MAX_SUBSCRIPTIONS:
            raise WatchError(INVALID_PARAMS, f"subscribe: this connection has {MAX_SUBSCRIPTIONS} subscriptions, the most it may; unsubscribe one or use several topics in one")
        watch = daemon.config["watch"]
        subscription = Subscription(self._next_id, wanted, watch["backlog"], watch["backlog_bytes"], daemon.watch_budget)
        self._next_id += 1
        scope = trio.CancelScope()
        self._scopes[subscription.id] = scope
        self.nursery.start_soon(self._run, subscription, scope)
        self.connection.after_reply(subscription.released.set)
        log.debug("subscribed", subscription=subscription.id, topics=list(wanted.topics), agent_id=wanted.agent_id)
        return {"subscription": subscription.id}

    async def unsubscribe(self, daemon: Daemon, params: dict[str, Any]) -> bool:
        p = Params("unsubscribe", params, ("subscription",))
        subscription_id = p.integer("subscription", low=1)
        scope = self._scopes.pop(subscription_id, None) if subscription_id is not None else None
        if scope is None:
            raise WatchError(INVALID_PARAMS, f"unsubscribe: no subscription {brief(params.get('subscription'))} on this connection")
        scope.cancel()
        log.debug("unsubscribed", subscription=subscription_id)
        return True

    async def _run(self, subscription: Subscription, scope: trio.CancelScope) -> None:
        """Run the subscription's topics and its sender until unsubscribed or the connection ends."""
        self.daemon.subscriptions += 1
        try:
            with scope:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(subscription.send_all, self.connection.ws, self._sending)
                    for name in subscription.params.topics:
                        nursery.start_soon(self._run_topic, subscription, name)
        finally:
            self.daemon.subscriptions -= 1
            subscription.close()

    async def _run_topic(self, subscription: Subscription, name: str) -> None:
        topic, plugin = self.daemon.topics[name]
        try:
            await topic(self.daemon, subscription)
        except Exception:
            self.daemon.plugins.record_error(plugin, f"topic {name}")
