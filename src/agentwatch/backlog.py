"""A bounded queue for a reader that may fall behind: past its bound, items are counted, not kept.

Used for a watch subscription's notifications (in the daemon) and for a subscription's
notifications waiting for the program that iterates them (in :mod:`agentwatch.client`). The
writer never waits; a reader that falls behind learns how much it missed, at the place it missed
it, as a :class:`Gap`.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Generic, TypeVar

import trio

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Gap:
    """``skipped`` items were dropped here because the reader fell behind."""

    skipped: int


class Backlog(Generic[T]):
    """Items for one reader, at most ``max_items`` of them and ``max_bytes`` of their sizes.

    Once an item has been skipped, every later one is skipped too until the reader has taken
    all that were kept; then it gets one :class:`Gap` with the count, and items flow again.
    """

    def __init__(self, max_items: int, max_bytes: int | None = None) -> None:
        self.max_items = max_items
        self.max_bytes = max_bytes
        self._items: deque[tuple[T, int]] = deque()
        self._bytes = 0
        self._skipped = 0
        self._closed = False
        self._changed = trio.Event()  # set when an item is added or taken

    def __len__(self) -> int:
        return len(self._items)

    def offer(self, item: T, size: int = 0) -> bool:
        """Keep ``item`` if there is room and nothing is being skipped; else count it. Never waits."""
        if not self.offer_if_room(item, size):
            self._skipped += 1
            return False
        return True

    def skip(self) -> None:
        """Count an item that was not offered (it did not fit elsewhere) as skipped here."""
        self._skipped += 1
        self._wake()  # a reader waiting on an empty backlog takes the gap at once

    async def put(self, item: T, size: int = 0) -> None:
        """Keep ``item``, waiting for room (for a writer that can wait, such as a replay)."""
        while not self.offer_if_room(item, size):
            await self._wait()

    def offer_if_room(self, item: T, size: int = 0) -> bool:
        """Keep ``item`` if it fits now; unlike :meth:`offer`, a refusal is not counted as skipped."""
        full = len(self._items) >= self.max_items or (
            self.max_bytes is not None and bool(self._items) and self._bytes + size > self.max_bytes
        )
        if self._skipped or full:
            return False
        self._items.append((item, size))
        self._bytes += size
        self._wake()
        return True

    async def drained(self) -> None:
        """Wait until the reader has taken everything kept and every gap."""
        while self._items or self._skipped:
            await self._wait()

    def clear(self) -> list[T]:
        """Take every item kept, without waiting (the reader is gone)."""
        items = [item for item, _ in self._items]
        self._items.clear()
        self._bytes = 0
        self._wake()
        return items

    def close(self) -> None:
        """No more items will come: once the reader has the rest, :meth:`get` raises ``trio.EndOfChannel``."""
        self._closed = True
        self._wake()

    async def get(self) -> T | Gap:
        """The next item, or the gap where items were skipped; waits while there is none."""
        while True:
            if self._items:
                item, size = self._items.popleft()
                self._bytes -= size
                self._wake()
                return item
            if self._skipped:
                gap, self._skipped = Gap(self._skipped), 0
                self._wake()
                return gap
            if self._closed:
                raise trio.EndOfChannel
            await self._wait()

    def _wake(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    async def _wait(self) -> None:
        await self._changed.wait()
