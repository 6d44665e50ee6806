"""What waits for the writer: frames in arrival order, bounded by bytes, with hellos let through.

A hello of an agent that has nothing queued goes ahead of other agents' frames, so a new agent
is welcomed within one commit however busy the others are. A hello of an agent with frames still
queued (a reconnect racing its old connection) waits behind them, so the welcome's
``acked_seq`` and ``session`` include them.
"""

from __future__ import annotations

from collections import Counter, deque
from typing import Generic, TypeVar

import trio

from agentwatch.model import Batch

Item = TypeVar("Item")


class WriteQueue(Generic[Item]):
    """A FIFO of batches and hellos, with a byte budget for batches and a lane for hellos."""

    def __init__(self, limit_bytes: int) -> None:
        self.limit_bytes = limit_bytes
        self.queued_bytes = 0
        self._items: deque[Batch | Item] = deque()
        self._urgent: deque[Item] = deque()
        self._pending: Counter[str] = Counter()  # queued batches per agent
        self._ready = trio.Event()
        self._freed = trio.Event()

    async def put_batch(self, batch: Batch) -> None:
        """Queue a batch, waiting while the queue holds more than its budget (an empty queue takes any)."""
        while self.queued_bytes and self.queued_bytes + batch.size > self.limit_bytes:
            await self._freed.wait()
        self.queued_bytes += batch.size
        self._pending[batch.agent_id] += 1
        self._items.append(batch)
        self._ready.set()

    def put_hello(self, agent_id: str, hello: Item) -> None:
        """Queue a hello: ahead of everything unless this agent has batches waiting."""
        (self._items if self._pending[agent_id] else self._urgent).append(hello)
        self._ready.set()

    async def take(self, max_events: int) -> list[Batch | Item]:
        """Wait for work; return the waiting hellos and then queued items up to ``max_events`` events."""
        while not self._urgent and not self._items:
            await self._ready.wait()
            self._ready = trio.Event()
        taken: list[Batch | Item] = [*self._urgent]
        self._urgent.clear()
        events = len(taken)
        while self._items and events < max_events:
            item = self._items.popleft()
            taken.append(item)
            events += len(item.events) if isinstance(item, Batch) else 1
        return taken

    def done(self, batch: Batch) -> None:
        """A taken batch was committed or failed: free its bytes."""
        self.queued_bytes -= batch.size
        self._pending[batch.agent_id] -= 1
        if not self._pending[batch.agent_id]:
            del self._pending[batch.agent_id]
        self._freed.set()
        self._freed = trio.Event()

