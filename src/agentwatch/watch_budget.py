"""The bytes the daemon holds for watchers, under one daemon-wide limit (``watch.max_bytes``).

Two things grow with what watchers ask for and how slowly they read: replies built and not yet
sent (a batch of ``events.list`` calls) and what subscriptions hold for their subscribers (live
notifications, and the stored events a replay reads). Per-connection limits do not bound them,
since anyone with the token can open many connections, so all of it counts against this budget:

- *Bulk* reads (a page of ``events.list``, a page a replay reads) may take at most half of it, a
  fraction of what is left at a time: the page stops growing there, checked as its rows are read,
  and a request that finds too little left gets a ``busy`` error (a replay waits instead). What a
  replay read stays counted as bulk until its notifications are sent, so stalled replays cannot
  take the half that live notifications need.
- A live notification that does not fit is skipped: its subscriber gets a ``gap``.

Bytes go back when the reply or notification has been written to its socket, or dropped with its
connection.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

import trio

#: A bulk read never starts with less than this (a request gets ``busy``, a replay waits).
MIN_RESERVE = 16 << 10
#: A bulk read takes at most this share of what bulk reads have left, so many at once each get some.
RESERVE_SHARE = 4


class WatchBudget:
    """A count of bytes held against ``limit``, of which ``bulk`` by bulk reads; every call is on
    the event loop."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self.bulk = 0
        self._freed = trio.Event()

    def take(self, size: int) -> bool:
        """Hold ``size`` more bytes (a live notification) if they fit."""
        if self.used + size > self.limit:
            return False
        self.used += size
        return True

    def force(self, size: int, *, bulk: bool = False) -> None:
        """Hold ``size`` more bytes that exist already, fitting or not."""
        self.used += size
        if bulk:
            self.bulk += size

    def give(self, size: int, *, bulk: bool = False) -> None:
        """Give back ``size`` bytes held."""
        self.used -= size
        if bulk:
            self.bulk -= size
        if size:
            self.changed()

    def bulk_room(self) -> int:
        """What a bulk read may take now: a share of what bulk reads have left."""
        left = min(self.limit // 2 - self.bulk, self.limit - self.used)
        return max(0, left) // RESERVE_SHARE

    def changed(self) -> None:
        """Bytes were given back, or the limit changed: wake whoever waits for room."""
        self._freed.set()
        self._freed = trio.Event()

    async def freed(self) -> None:
        """Wait until some bytes are given back or the limit changes."""
        await self._freed.wait()


class BulkBytes:
    """What one bulk read holds of the budget: reserved before its rows are read, then what it
    turned out to be, until it is sent (a reply) or handed on to a subscription's backlog (a
    replay's page)."""

    def __init__(self, budget: WatchBudget) -> None:
        self.budget = budget
        self.held = 0

    def reserve(self, wanted: int) -> int:
        """Up to ``wanted`` bytes for a read about to begin; 0 if the budget has too little room
        (and nothing was reserved)."""
        size = min(wanted, self.budget.bulk_room())
        if size < min(wanted, MIN_RESERVE):
            return 0
        self.budget.force(size, bulk=True)
        self.held += size
        return size

    def settle(self, size: int) -> None:
        """The read turned out ``size`` bytes: hold that much, giving back the rest of what was reserved."""
        if size > self.held:
            self.budget.force(size - self.held, bulk=True)
        else:
            self.budget.give(self.held - size, bulk=True)
        self.held = size

    def take(self, size: int) -> bool:
        """Hold ``size`` more bytes that are in memory already (live events held while a replay
        reads) if bulk reads have room for them."""
        if self.budget.bulk + size > self.budget.limit // 2 or self.budget.used + size > self.budget.limit:
            return False
        self.budget.force(size, bulk=True)
        self.held += size
        return True

    def hand_on(self, size: int) -> None:
        """``size`` bytes of what was read now count elsewhere (a notification in a backlog)."""
        self.settle(max(0, self.held - size))

    def release(self) -> None:
        """The reply was sent, or the read dropped."""
        self.budget.give(self.held, bulk=True)
        self.held = 0


_current: ContextVar[BulkBytes | None] = ContextVar("agentwatch_reply_bytes", default=None)


def current_reply() -> BulkBytes | None:
    """What the watch request being answered holds of the budget, for a method that reads a large
    reply (``None`` outside a request)."""
    return _current.get()


@contextmanager
def answering(reply: BulkBytes) -> Iterator[None]:
    """Make ``reply`` the :func:`current_reply` while a method answers."""
    token = _current.set(reply)
    try:
        yield
    finally:
        _current.reset(token)
