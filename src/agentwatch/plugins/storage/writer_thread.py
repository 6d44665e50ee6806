"""The write connection's own thread.

Every call on the write connection runs on one long-lived OS thread, in the order the event loop
asked for them: the connection is opened, used and closed on the same thread (APSW's advice), and
no lock is needed to keep two writes apart.

The call is handed to the thread at once and the task sleeps until the thread reschedules it:
``trio.to_thread.run_sync`` behind a ``CapacityLimiter`` yields to the scheduler twice first, which
cost 1.0 ms a commit at the median against 0.6 ms here (``docs/performance.md``, P2).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Any

import outcome
import trio

_Job = tuple[Callable[..., Any], tuple[Any, ...], trio.lowlevel.TrioToken, trio.lowlevel.Task]


class WriterThread:
    """Runs functions on one dedicated thread, one at a time, first come first served.

    Callers also resume in that order: what a caller does as soon as its call returns, before it
    awaits anything (a commit's acks, a removal's news for the plugins), happens in the order of
    the writes, although trio may run the tasks it wakes together in any order.
    """

    def __init__(self, name: str) -> None:
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._work, name=name, daemon=True)
        self._stopped = False
        self._issued = 0  # calls handed to the thread
        self._resumed = 0  # callers resumed; the next to resume holds this ticket
        self._turns = trio.lowlevel.ParkingLot()
        self._progress_at: float | None = None  # trio time of the last start or finish while calls are pending

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Let the thread end once the calls already handed to it are done; later calls are refused."""
        self._stopped = True
        if self._thread.is_alive():
            self._jobs.put(None)

    async def run(self, function: Callable[..., Any], *args: Any) -> Any:
        """``function(*args)`` on the thread; its result or exception. A call handed to the thread
        is not abandoned: cancelling the caller takes effect only before it is handed over.
        Raises ``trio.ClosedResourceError`` once the thread is stopped."""
        await trio.lowlevel.checkpoint_if_cancelled()
        if self._stopped or not self._thread.is_alive():
            raise trio.ClosedResourceError("the writer's thread has stopped")
        job = (function, args, trio.lowlevel.current_trio_token(), trio.lowlevel.current_task())
        ticket = self._issued
        self._issued += 1
        if self._progress_at is None:
            self._progress_at = trio.current_time()
        self._jobs.put(job)
        result: outcome.Outcome[Any] = await trio.lowlevel.wait_task_rescheduled(lambda _: trio.lowlevel.Abort.FAILED)
        with trio.CancelScope(shield=True):
            while self._resumed != ticket:
                await self._turns.park()
        self._resumed += 1
        self._turns.unpark_all()
        self._progress_at = trio.current_time() if self._resumed != self._issued else None
        return result.unwrap()

    def busy_for(self) -> float:
        """Seconds since the thread last made progress, while calls are waiting for it (else 0)."""
        return 0.0 if self._progress_at is None else trio.current_time() - self._progress_at

    def _work(self) -> None:
        while (job := self._jobs.get()) is not None:
            function, args, token, task = job
            result = outcome.Value(outcome.capture(function, *args))  # the caller gets the outcome itself
            try:
                token.run_sync_soon(trio.lowlevel.reschedule, task, result)
            except trio.RunFinishedError:  # the event loop is gone: nobody is waiting
                return
