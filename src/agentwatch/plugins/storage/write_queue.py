"""What waits for the writer: each agent's frames in order, taken fairly, bounded by bytes.

Each agent's batches wait in a line of their own, and the writer takes them agent by agent in
turn: all an agent has queued, or what fits in the commit, after which that agent goes to the back
of the turn order. So an agent that floods the daemon delays another agent's next batch by one
commit, not by everything it has queued. Taking an agent's batches together also keeps a commit's
rows to few agents, which is what makes it cheap (``bench/commit_pages.py``): at saturation this
order stores as many events a second as arrival order did, where one batch per agent per turn
stored 5-8 % fewer (100 agents, ``bench/ingest.py``, runs taken in turn).

The byte budget bounds what the flood can queue; an agent with nothing queued may still add its
frame past the budget (up to twice it), so the flood cannot keep a quiet agent's frame out either.

A hello of an agent that has nothing queued goes ahead of everything, so a new agent is welcomed
within one commit however busy the others are. A hello of an agent with frames still queued (a
reconnect racing its old connection) waits behind them, so the welcome's ``acked_seq`` and
``session`` include them.
"""

from __future__ import annotations

from collections import Counter, OrderedDict, deque
from typing import Generic, TypeVar

import trio

from agentwatch.model import Batch

Item = TypeVar("Item")

QUIET_OVERDRAFT = 2  # an agent with nothing queued is let in while the queue is under this many budgets


class WriteQueue(Generic[Item]):
    """Per-agent lines of batches and hellos, taken round-robin, with a byte budget for batches."""

    def __init__(self, limit_bytes: int) -> None:
        self.limit_bytes = limit_bytes
        self.queued_bytes = 0
        self._lines: OrderedDict[str, deque[Batch | Item]] = OrderedDict()  # in turn order: the first goes next
        self._urgent: deque[Item] = deque()
        self._pending: Counter[str] = Counter()  # batches per agent, queued or being committed
        self._ready = trio.Event()
        self._freed = trio.Event()

    async def put_batch(self, batch: Batch) -> None:
        """Queue a batch, waiting while the queue is over its budget (an empty queue takes any)."""
        while self.queued_bytes and self.queued_bytes + batch.size > self._room_for(batch.agent_id):
            await self._freed.wait()
        self.queued_bytes += batch.size
        self._pending[batch.agent_id] += 1
        self._line(batch.agent_id).append(batch)
        self._ready.set()

    def put_hello(self, agent_id: str, hello: Item) -> None:
        """Queue a hello: ahead of everything unless this agent has batches waiting."""
        if self._pending[agent_id]:
            self._line(agent_id).append(hello)
        else:
            self._urgent.append(hello)
        self._ready.set()

    async def take(self, max_events: int) -> list[Batch | Item]:
        """Wait for work; return the waiting hellos, then each agent's items in turn (all it has
        queued, or what fits), until ``max_events`` events (a hello counts one) or nothing is left.
        An agent whose items did not all fit goes to the back of the turn order."""
        while not self._urgent and not self._lines:
            await self._ready.wait()
            self._ready = trio.Event()
        taken: list[Batch | Item] = [*self._urgent]
        self._urgent.clear()
        events = len(taken)
        while self._lines and events < max_events:
            agent_id, line = self._lines.popitem(last=False)
            while line and events < max_events:
                item = line.popleft()
                taken.append(item)
                events += len(item.events) if isinstance(item, Batch) else 1
            if line:
                self._lines[agent_id] = line  # to the back of the turn order
        return taken

    def done(self, batch: Batch) -> None:
        """A taken batch was committed or failed: free its bytes."""
        self.queued_bytes -= batch.size
        self._pending[batch.agent_id] -= 1
        if not self._pending[batch.agent_id]:
            del self._pending[batch.agent_id]
        self._freed.set()
        self._freed = trio.Event()

    def _room_for(self, agent_id: str) -> int:
        return self.limit_bytes if self._pending[agent_id] else QUIET_OVERDRAFT * self.limit_bytes

    def _line(self, agent_id: str) -> deque[Batch | Item]:
        line = self._lines.get(agent_id)
        if line is None:
            line = self._lines[agent_id] = deque()
        return line
