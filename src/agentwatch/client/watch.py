"""The watch side of :mod:`agentwatch.client`: JSON-RPC calls and subscriptions on ``/v1/watch``."""

from __future__ import annotations

import contextlib
import itertools
import json
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import trio
from trio_websocket import ConnectionClosed, WebSocketConnection

from agentwatch.backlog import Backlog, Gap
from agentwatch.client.discovery import ClientError, Endpoint, find_daemon, open_websocket
from agentwatch.locate import DaemonGone
from agentwatch.exceptions import unwrapped

UNSUBSCRIBE_TIMEOUT = 5.0  # seconds leaving a subscription waits for the daemon's answer
#: Notifications a subscription keeps for a program that iterates it slowly; past them, a ``gap``.
CLIENT_BACKLOG = 10_000


class RpcError(ClientError):
    """The daemon answered a call with a JSON-RPC error."""

    def __init__(self, method: str, code: int, message: str) -> None:
        super().__init__(message if message.startswith(method) else f"{method}: {message}")
        self.code = code


@dataclass(frozen=True, slots=True)
class Notification:
    """One notification of a subscription: ``method`` is ``event``, ``attention``, ``agent``, ``gap``
    (``params["skipped"]`` were dropped here), or a plugin topic's own."""

    method: str
    params: dict[str, Any]


class Subscription:
    """The notifications of one subscription, in order; iterate it with ``async for``.

    Waiting for the next one may be cancelled (``trio.move_on_after``) and started again: nothing
    is lost and the subscription goes on. When the connection ends, iterating raises
    :class:`DaemonGone`."""

    def __init__(self, backlog: Backlog[Notification], client: WatchClient) -> None:
        self._backlog = backlog
        self._client = client

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Notification:
        try:
            item = await self._backlog.get()
        except trio.EndOfChannel:
            raise self._client.gone() from None
        return Notification("gap", {"skipped": item.skipped}) if isinstance(item, Gap) else item


class _Call:
    def __init__(self, method: str) -> None:
        self.method = method
        self.done = trio.Event()
        self.reply: dict[str, Any] = {}


class WatchClient:
    """One connection to ``/v1/watch``; use :func:`open_watch`. Calls may run concurrently."""

    def __init__(self, ws: WebSocketConnection, endpoint: Endpoint | str = "the daemon") -> None:
        self._ws = ws
        self._endpoint = endpoint
        self._ids = itertools.count(1)
        self._calls: dict[int, _Call] = {}
        self._subscriptions: dict[int, Backlog[Notification]] = {}
        self._closed: str | None = None

    async def call(self, method: str, **params: Any) -> Any:
        """The result of ``method``; an error reply raises :class:`RpcError`."""
        reply = await self._request(method, params)
        return reply["result"]

    @asynccontextmanager
    async def subscribe(
        self, *topics: str, agent_id: str | None = None, after_seq: int | None = None, kinds: list[str] | None = None
    ) -> AsyncIterator[Subscription]:
        """Subscribe to ``topics``; iterate what comes (:class:`Subscription`). Leaving the block unsubscribes."""
        params: dict[str, Any] = {"topics": list(topics)}
        params |= {k: v for k, v in (("agent_id", agent_id), ("after_seq", after_seq), ("kinds", kinds)) if v is not None}
        reply = await self._request("subscribe", params)
        subscription_id = reply["result"]["subscription"]
        try:
            yield Subscription(self._subscriptions[subscription_id], self)
        finally:
            self._subscriptions.pop(subscription_id, None)
            if self._closed is None:  # shielded from a cancel, but not waiting forever for a daemon that hangs
                with trio.move_on_after(UNSUBSCRIBE_TIMEOUT, shield=True), contextlib.suppress(ClientError):
                    await self.call("unsubscribe", subscription=subscription_id)  # a connection gone ends it too

    def gone(self) -> DaemonGone:
        """The error for a connection that has ended, saying how."""
        where = f"the daemon at {self._endpoint}"
        if self._closed == "1001":
            return DaemonGone(f"{where} stopped")
        if self._closed in ("1006", "closed"):  # no closing handshake
            return DaemonGone(f"{where} went away (it was killed, or the connection broke)")
        return DaemonGone(f"{where} closed the connection ({self._closed})")

    async def _request(self, method: str, params: Mapping[str, Any]) -> dict[str, Any]:
        if self._closed is not None:
            raise self.gone()
        call_id = next(self._ids)
        call = self._calls[call_id] = _Call(method)
        try:
            await self._ws.send_message(json.dumps({"jsonrpc": "2.0", "id": call_id, "method": method, "params": dict(params)}))
        except ConnectionClosed:
            pass  # the reader ends every call with the reason
        await call.done.wait()
        if "error" in call.reply:
            error = call.reply["error"]
            raise RpcError(method, error.get("code", 0), error.get("message", "no message"))
        if "result" not in call.reply:
            raise self.gone()
        return call.reply

    async def _read(self) -> None:
        """Hand replies to their calls and notifications to their subscriptions, until the connection ends."""
        try:
            while True:
                self._dispatch(json.loads(await self._ws.get_message()))
        except ConnectionClosed:
            pass
        finally:
            reason = self._ws.closed
            if reason is None:
                self._closed = "closed"
            elif reason.code in (1001, 1006):  # going away: the daemon shuts down; no closing handshake
                self._closed = str(reason.code)
            else:
                self._closed = f"code {reason.code}" + (f": {reason.reason}" if reason.reason else "")
            for call in self._calls.values():
                call.done.set()
            for backlog in self._subscriptions.values():
                backlog.close()

    def _dispatch(self, message: Any) -> None:
        if not isinstance(message, dict):
            return
        if "id" in message:
            call = self._calls.pop(message["id"], None)
            if call is None:
                return
            call.reply = message
            if call.method == "subscribe" and "result" in message:  # before any of its notifications
                self._subscriptions[message["result"]["subscription"]] = Backlog(CLIENT_BACKLOG)
            call.done.set()
        elif isinstance(params := message.get("params"), dict):
            backlog = self._subscriptions.get(params.pop("subscription", None))
            if backlog is not None:
                backlog.offer(Notification(str(message.get("method")), params))


@asynccontextmanager
async def open_watch(endpoint: Endpoint | None = None) -> AsyncIterator[WatchClient]:
    """A connection to the daemon's ``/v1/watch``, found like the daemon is configured (:func:`find_daemon`)."""
    endpoint = endpoint or find_daemon()
    with unwrapped():
        async with open_websocket(endpoint, "/v1/watch") as ws, trio.open_nursery() as nursery:
            client = WatchClient(ws, endpoint)
            nursery.start_soon(client._read)
            yield client
            nursery.cancel_scope.cancel()


async def call(method: str, params: Mapping[str, Any] | None = None, *, endpoint: Endpoint | None = None) -> Any:
    """One call on a connection of its own: the result of ``method``."""
    async with open_watch(endpoint) as watch:
        return await watch.call(method, **(params or {}))
