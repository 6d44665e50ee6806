"""``/v1/watch``: JSON-RPC 2.0 over WebSocket. Methods come from plugins (built in: watch-queries)."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

from trio_websocket import ConnectionClosed, WebSocketConnection

from agentwatch import strict_json
from agentwatch.logs import get_logger
from agentwatch.store import StorageUnavailable
from agentwatch.text import brief, is_text
from agentwatch.watch_budget import BulkBytes, answering

if TYPE_CHECKING:
    from agentwatch.daemon import Daemon

log = get_logger(__name__)

#: A watch method: ``await method(daemon, params)`` returns the JSON-RPC result.
WatchMethod = Callable[["Daemon", dict[str, Any]], Awaitable[Any]]

MAX_BATCH = 100  # requests in one JSON-RPC batch
MAX_INTEGER = 2**63 - 1

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
STORAGE_UNAVAILABLE = -32000
BUSY = -32001  # the daemon holds all it may for watchers (watch.max_bytes)


class RawJSON(str):
    """A result already encoded as JSON text (built off the event loop), spliced into the reply."""


class WatchError(Exception):
    """A JSON-RPC error: ``code`` and a message a person can act on."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class Params:
    """Typed access to a method's named params; every problem is an ``INVALID_PARAMS`` error."""

    def __init__(self, method: str, params: dict[str, Any], allowed: tuple[str, ...]) -> None:
        unknown = sorted(set(params) - set(allowed))
        if unknown:
            takes = f"takes {', '.join(allowed)}" if allowed else "takes no params"
            raise WatchError(INVALID_PARAMS, f"{method} has no param {', '.join(map(brief, unknown[:5]))}; it {takes}")
        self.method, self.params = method, params

    def integer(self, name: str, default: int | None = None, *, low: int = 0, high: int = MAX_INTEGER) -> int | None:
        value = self.params.get(name, default)
        if value is None:
            return None
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            bounds = f"from {low} to {high}" if high < MAX_INTEGER else f"of {low} or more (below 2**63)"
            raise WatchError(INVALID_PARAMS, f"{self.method}: {name} must be a whole number {bounds}, got {brief(value)}")
        return value

    def boolean(self, name: str, default: bool = False) -> bool:
        value = self.params.get(name, default)
        if not isinstance(value, bool):
            raise WatchError(INVALID_PARAMS, f"{self.method}: {name} must be true or false, got {brief(value)}")
        return value

    def string(self, name: str, *, required: bool = False) -> str | None:
        value = self.params.get(name)
        if value is None and not required:
            return None
        if not isinstance(value, str) or not value or not is_text(value):
            raise WatchError(INVALID_PARAMS, f"{self.method}: {name} must be a non-empty string of Unicode text, got {brief(value)}")
        return value

    def strings(self, name: str, allowed: frozenset[str]) -> list[str] | None:
        value = self.params.get(name)
        if value is None:
            return None
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise WatchError(INVALID_PARAMS, f"{self.method}: {name} must be an array of strings")
        if unknown := sorted(set(value) - allowed):
            raise WatchError(
                INVALID_PARAMS, f"{self.method}: unknown {name} {', '.join(map(brief, unknown[:5]))}; known: {', '.join(sorted(allowed))}"
            )
        return list(dict.fromkeys(value))


class WatchConnection:
    """Answers JSON-RPC requests (single or batched) on one WebSocket, in order.

    Each reply counts against the daemon's watch budget from when it is read until it is sent
    (:mod:`agentwatch.watch_budget`); a method that reads a large reply bounds it with
    :func:`~agentwatch.watch_budget.current_reply`.
    """

    def __init__(self, daemon: Daemon, ws: WebSocketConnection, methods: Mapping[str, tuple[WatchMethod, str]]) -> None:
        self.daemon = daemon
        self.ws = ws
        self.methods = dict(methods)
        self._after_reply: list[Callable[[], None]] = []
        self._replies: list[BulkBytes] = []  # what the reply being answered holds of the budget

    def after_reply(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` once the reply to the request being answered has been sent."""
        self._after_reply.append(callback)

    async def serve(self) -> None:
        while True:
            try:
                message = await self.ws.get_message()
            except ConnectionClosed:
                return
            try:
                reply = await self.answer(message)
                if reply is not None:
                    await self.ws.send_message(reply)
            except ConnectionClosed:
                return
            finally:
                for held in self._replies:
                    held.release()
                self._replies.clear()
                callbacks, self._after_reply = self._after_reply, []
                for callback in callbacks:
                    callback()

    async def answer(self, message: str | bytes) -> str | None:
        """The JSON text answering one frame (a reply, or a batch of them); ``None`` for notifications only."""
        if isinstance(message, bytes):
            return _error(None, PARSE_ERROR, "binary frames are not accepted: send each request as a JSON text frame")
        try:
            request = strict_json.loads(message)
        except ValueError as exc:
            return _error(None, PARSE_ERROR, f"not valid JSON ({exc}); send one JSON-RPC 2.0 request per frame")
        if isinstance(request, list):
            if not request:
                return _error(None, INVALID_REQUEST, "an empty batch; send at least one request")
            if len(request) > MAX_BATCH:
                return _error(None, INVALID_REQUEST, f"a batch holds at most {MAX_BATCH} requests, this one has {len(request)}: split it")
            replies = [reply for item in request if (reply := await self._call(item)) is not None]
            return "[" + ",".join(replies) + "]" if replies else None
        return await self._call(request)

    async def _call(self, request: Any) -> str | None:
        if not isinstance(request, dict) or request.get("jsonrpc") != "2.0" or not isinstance(request.get("method"), str):
            return _error(
                request.get("id") if isinstance(request, dict) else None,
                INVALID_REQUEST,
                'a request is an object {"jsonrpc": "2.0", "id": ..., "method": "...", "params": {...}}',
            )
        request_id = request.get("id")
        if not _valid_id(request_id):
            return _error(None, INVALID_REQUEST, f"a request's id is a string, a number or null, not {brief(request_id)}")
        notification = "id" not in request
        name = request["method"]
        params = request.get("params", {})
        if name not in self.methods:
            reply = _error(request_id, METHOD_NOT_FOUND, f"no method {brief(name)}; methods: {', '.join(sorted(self.methods))}")
        elif not isinstance(params, dict):
            reply = _error(request_id, INVALID_PARAMS, f"{name}: params must be an object of named params")
        else:
            method, plugin = self.methods[name]
            held = BulkBytes(self.daemon.watch_budget)
            self._replies.append(held)
            try:
                with answering(held):
                    result = await method(self.daemon, params)
                body = result if isinstance(result, RawJSON) else json.dumps(result)
                reply = f'{{"jsonrpc":"2.0","id":{json.dumps(request_id)},"result":{body}}}'
            except WatchError as exc:
                reply = _error(request_id, exc.code, exc.message)
            except StorageUnavailable as exc:
                reply = _error(request_id, STORAGE_UNAVAILABLE, f"storage unavailable: {exc}; retry later")
            except Exception:
                self.daemon.plugins.record_error(plugin, f"watch method {name}")
                reply = _error(request_id, INTERNAL_ERROR, f"{name} failed inside the daemon; see its log")
            held.settle(0 if notification else len(reply))  # a failed read gives back what it reserved
        return None if notification else reply


def _valid_id(request_id: Any) -> bool:
    """What JSON-RPC 2.0 allows as an id: a string, a number or null."""
    return request_id is None or isinstance(request_id, str | int | float) and not isinstance(request_id, bool)


def _error(request_id: Any, code: int, message: str) -> str:
    return json.dumps({"jsonrpc": "2.0", "id": request_id, "error": {"code": code, "message": message}})
