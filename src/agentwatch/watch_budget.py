"""The bytes the daemon holds for watchers, under one daemon-wide limit (``watch.max_bytes``).

Two things grow with what watchers ask for and how slowly they read: replies built and not yet
sent (a batch of ``events.list`` calls), and notifications waiting in subscriptions' backlogs
(a watcher that never reads). Per-connection limits do not bound them, since anyone with the
token can open many connections, so both draw on this one budget: a page of events stops growing
at what the budget has left (a request that finds it empty gets a ``busy`` error), and a live
notification that does not fit is skipped, so its subscriber gets a ``gap``. Bytes go back when
the reply or notification has been written to its socket, or dropped with its connection.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

import trio


class WatchBudget:
    """A count of bytes held against ``limit``; every call is on the event loop."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self._freed = trio.Event()

    def take(self, size: int) -> bool:
        """Hold ``size`` more bytes if they fit."""
        if self.used + size > self.limit:
            return False
        self.used += size
        return True

    def force(self, size: int) -> None:
        """Hold ``size`` more bytes that exist already, fitting or not (a reply already built)."""
        self.used += size

    def give(self, size: int) -> None:
        """Give back ``size`` bytes held."""
        self.used -= size
        if size:
            self._freed.set()
            self._freed = trio.Event()

    async def freed(self) -> None:
        """Wait until some bytes are given back."""
        await self._freed.wait()


#: Requests whose page finds less than this left get a ``busy`` error instead of a sliver.
MIN_RESERVE = 64 << 10


class ReplyBytes:
    """What one request's reply holds of the budget, from the first row read until it is sent."""

    def __init__(self, budget: WatchBudget) -> None:
        self.budget = budget
        self.held = 0

    def reserve(self, wanted: int) -> int:
        """Up to ``wanted`` bytes for a reply about to be read; 0 if the budget has less than
        :data:`MIN_RESERVE` left (and nothing was reserved)."""
        size = min(wanted, self.budget.limit - self.budget.used)
        if size < min(wanted, MIN_RESERVE):
            return 0
        self.budget.force(size)
        self.held += size
        return size

    def settle(self, size: int) -> None:
        """The reply turned out ``size`` bytes: hold that much, giving back the rest of what was reserved."""
        if size > self.held:
            self.budget.force(size - self.held)
        else:
            self.budget.give(self.held - size)
        self.held = size

    def release(self) -> None:
        """The reply was sent (or dropped)."""
        self.budget.give(self.held)
        self.held = 0


_current: ContextVar[ReplyBytes | None] = ContextVar("agentwatch_reply_bytes", default=None)


def current_reply() -> ReplyBytes | None:
    """What the watch request being answered holds of the budget, for a method that reads a large
    reply (``None`` outside a request)."""
    return _current.get()


@contextmanager
def answering(reply: ReplyBytes) -> Iterator[None]:
    """Make ``reply`` the :func:`current_reply` while a method answers."""
    token = _current.set(reply)
    try:
        yield
    finally:
        _current.reset(token)
