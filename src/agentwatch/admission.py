"""Which accepted sockets the daemon keeps: the accept layer's budget of ``server.max_connections``.

Every accepted socket (WebSocket or plain HTTP, on every listener) takes a slot from one budget.
A socket is *pending* until it has shown what it is: a WebSocket handshake that passed the token
and Origin checks, a whole HTTP request head. When the budget is full, the oldest pending socket
is closed to make room, so idle or slow sockets that any local process can open never lock out a
client with the token; only when every slot is held by an established connection does a new one
get HTTP 503. A socket closed to make room gets the same 503 first, so a client that was slow
to send its handshake learns to retry instead of waiting for an answer.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable

import trio

from agentwatch.limits import BUSY_RESPONSE

TURN_AWAY_TIMEOUT = 1.0  # s to hand a refused socket its 503


class Slot:
    """One accepted socket's place in the budget; :attr:`scope` is cancelled if it is evicted."""

    def __init__(self, admission: Admission) -> None:
        self._admission = admission
        self.scope = trio.CancelScope()
        self.evicted = False
        self._held = True

    def established(self) -> None:
        """The socket showed what it is: it keeps its slot until it closes."""
        self._admission._pending.pop(self, None)

    def release(self) -> None:
        """The socket closed (idempotent)."""
        if self._held:
            self._held = False
            self._admission._pending.pop(self, None)
            self._admission.open -= 1


class Admission:
    """At most ``limit`` sockets at once; the oldest pending one gives way to a newcomer."""

    def __init__(self, limit: int, on_evict: Callable[[], None] = lambda: None) -> None:
        self.limit = limit
        self.open = 0
        self._pending: dict[Slot, None] = {}  # in order of arrival
        self._on_evict = on_evict

    @property
    def pending(self) -> int:
        """Sockets that have not finished their handshake or request head."""
        return len(self._pending)

    def admit(self) -> Slot | None:
        """A slot for a socket just accepted, evicting the oldest pending one if the budget is full;
        ``None`` when every slot is held by an established connection."""
        if self.open >= self.limit:
            if not self._pending:
                return None
            oldest = next(iter(self._pending))
            oldest.evicted = True
            oldest.scope.cancel()
            oldest.release()
            self._on_evict()
        slot = Slot(self)
        self.open += 1
        self._pending[slot] = None
        return slot


async def serve_admitted(
    admission: Admission, stream: trio.SocketStream, serve: Callable[[Slot], Awaitable[None]], on_full: Callable[[], None]
) -> None:
    """Serve an accepted socket with ``serve(slot)`` if ``admission`` has a slot for it (else
    ``on_full()`` and a 503), then close it; one evicted meanwhile gets a 503 first."""
    slot = admission.admit()
    if slot is None:
        on_full()
        await turn_away(stream)
        return
    try:
        with slot.scope:
            await serve(slot)
    finally:
        slot.release()
        if slot.evicted:
            await turn_away(stream)
        else:
            await trio.aclose_forcefully(stream)


async def turn_away(stream: trio.SocketStream) -> None:
    """Answer HTTP 503 with ``Retry-After`` (within a second, even in a cancelled scope), then close."""
    with trio.CancelScope(shield=True), trio.move_on_after(TURN_AWAY_TIMEOUT):
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            await stream.send_all(BUSY_RESPONSE)
    await trio.aclose_forcefully(stream)
