"""The watch side of :mod:`agentwatch.client`: JSON-RPC calls and subscriptions on ``/v1/watch``."""

from __future__ import annotations

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
from agentwatch.exceptions import unwrapped

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


class _Call:
    def __init__(self, method: str) -> None:
        self.method = method
        self.done = trio.Event()
        self.reply: dict[str, Any] = {}


class WatchClient:
    """One connection to ``/v1/watch``; use :func:`open_watch`. Calls may run concurrently."""

    def __init__(self, ws: WebSocketConnection) -> None:
        self._ws = ws
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
    ) -> AsyncIterator[AsyncIterator[Notification]]:
        """Subscribe to ``topics``; iterate what comes. Leaving the block unsubscribes."""
        params: dict[str, Any] = {"topics": list(topics)}
        params |= {k: v for k, v in (("agent_id", agent_id), ("after_seq", after_seq), ("kinds", kinds)) if v is not None}
        reply = await self._request("subscribe", params)
        subscription_id = reply["result"]["subscription"]
        try:
            yield self._iterate(self._subscriptions[subscription_id])
        finally:
            self._subscriptions.pop(subscription_id, None)
            if self._closed is None:
                with trio.CancelScope(shield=True):
                    await self.call("unsubscribe", subscription=subscription_id)

    async def _iterate(self, backlog: Backlog[Notification]) -> AsyncIterator[Notification]:
        while True:
            try:
                item = await backlog.get()
            except trio.EndOfChannel:
                raise ClientError(f"the daemon closed the connection ({self._closed})") from None
            yield Notification("gap", {"skipped": item.skipped}) if isinstance(item, Gap) else item

    async def _request(self, method: str, params: Mapping[str, Any]) -> dict[str, Any]:
        if self._closed is not None:
            raise ClientError(f"cannot call {method}: the connection is closed ({self._closed})")
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
            raise ClientError(f"{method} got no answer: the daemon closed the connection ({self._closed})")
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
            self._closed = f"code {reason.code}: {reason.reason or 'no reason given'}" if reason else "closed"
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
            client = WatchClient(ws)
            nursery.start_soon(client._read)
            yield client
            nursery.cancel_scope.cancel()


async def call(method: str, params: Mapping[str, Any] | None = None, *, endpoint: Endpoint | None = None) -> Any:
    """One call on a connection of its own: the result of ``method``."""
    async with open_watch(endpoint) as watch:
        return await watch.call(method, **(params or {}))
