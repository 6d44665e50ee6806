"""The daemon's Prometheus endpoint: a minimal HTTP/1.1 server answering ``GET /metrics`` and ``HEAD /metrics``.

One request per connection (``Connection: close``). Each connection is its own task: whatever goes wrong on
one is logged and closes that one only. A request that names a ``Host`` the daemon does not answer to gets
403 (:mod:`agentwatch.hosts`). Its sockets count against ``server.max_connections`` with the daemon's others
(:mod:`agentwatch.admission`): one that has not sent its whole request head gives way when the budget is full.
"""

from __future__ import annotations

import re
from email.utils import formatdate
from collections.abc import Callable
from functools import partial

import trio

from agentwatch.admission import Admission, serve_admitted
from agentwatch.hosts import AllowedHosts
from agentwatch.logs import get_logger
from agentwatch.metrics import Registry

log = get_logger(__name__)

METRICS_PATH = "/metrics"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
MAX_HEAD_BYTES = 8192  # request line and headers, up to and including the blank line
REQUEST_TIMEOUT = 10.0  # s for a client to send its whole request head
SEND_TIMEOUT = 10.0  # s for a client to take the response
LINGER_TIMEOUT = 2.0  # s to read what a client still sends after the response, so closing does not reset it
LINGER_BYTES = 65536

_REQUEST_LINE = re.compile(rb"([A-Z]+) (\S+) HTTP/1\.[0-9]")
_REASONS = {
    200: "OK",
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
}
_HINTS = {
    400: "bad request: send a request line like 'GET /metrics HTTP/1.1', headers (one Host), then a blank line",
    403: "this Host is not allowed: add the name to server.allowed_hosts to reach the daemon by it",
    404: f"not found: the metrics are at {METRICS_PATH}",
    405: f"method not allowed: {METRICS_PATH} answers GET and HEAD",
    431: f"request head too large: the request line and headers may take {MAX_HEAD_BYTES} bytes",
    500: "internal error: the daemon could not render its metrics; its log says why",
}


async def serve_metrics(
    listeners: list[trio.SocketListener],
    registry: Registry,
    hosts: Callable[[], AllowedHosts],
    admission: Admission,
    *,
    task_status: trio.TaskStatus = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``registry`` on ``listeners`` until cancelled, to requests whose Host ``hosts()`` allows, each
    socket admitted by ``admission``; ``task_status.started`` gets the listeners."""
    await trio.serve_listeners(partial(_serve_admitted, registry, hosts, admission), listeners, task_status=task_status)


async def _serve_admitted(registry: Registry, hosts: Callable[[], AllowedHosts], admission: Admission, stream: trio.SocketStream) -> None:
    await serve_admitted(
        admission, stream, lambda slot: _serve_connection(registry, hosts, slot.established, stream), on_full=lambda: None
    )


class _Refused(Exception):
    """A request answered with an error status."""

    def __init__(self, status: int, *, head_only: bool = False) -> None:
        super().__init__(status)
        self.status = status
        self.head_only = head_only


async def _serve_connection(
    registry: Registry, hosts: Callable[[], AllowedHosts], established: Callable[[], None], stream: trio.SocketStream
) -> None:
    try:
        try:
            with trio.move_on_after(REQUEST_TIMEOUT) as waiting:
                head = await _receive_head(stream)
            if waiting.cancelled_caught:
                log.debug("metrics_request_timeout", timeout_s=REQUEST_TIMEOUT)
                return
            if head is None:
                return
            established()
            response = _answer(registry, hosts(), head)
        except _Refused as refused:
            response = _response(refused.status, _HINTS[refused.status].encode() + b"\n", head_only=refused.head_only)
        with trio.move_on_after(SEND_TIMEOUT):
            await stream.send_all(response)
            await _linger(stream)
    except trio.BrokenResourceError:
        log.debug("metrics_client_gone")
    except Exception:
        log.exception("metrics_connection_failed")


async def _receive_head(stream: trio.SocketStream) -> list[bytes] | None:
    """The lines of the request head (request line and headers); None if the client closed without
    sending a byte."""
    head = bytearray()
    while True:
        data = await stream.receive_some(MAX_HEAD_BYTES)
        if not data:
            if head:
                raise _Refused(400)
            return None
        head += data
        head = head.lstrip(b"\r\n")  # empty lines before a request line are allowed (RFC 9112, 2.2)
        end = min((i + len(sep) for sep in (b"\r\n\r\n", b"\n\n") if (i := head.find(sep)) >= 0), default=None)
        if (len(head) if end is None else end) > MAX_HEAD_BYTES:
            raise _Refused(431)
        if end is not None:
            return [line.rstrip(b"\r") for line in bytes(head[:end]).split(b"\n")[:-2]]


def _answer(registry: Registry, hosts: AllowedHosts, head: list[bytes]) -> bytes:
    match = _REQUEST_LINE.fullmatch(head[0])
    host = [value.strip() for name, _, value in (line.partition(b":") for line in head[1:]) if name.strip().lower() == b"host"]
    if match is None or len(host) > 1:
        raise _Refused(400)
    method, target = match[1], match[2]
    head_only = method == b"HEAD"
    if not hosts.allows(host[0] if host else None):
        raise _Refused(403, head_only=head_only)
    if target.split(b"?", 1)[0] != METRICS_PATH.encode():
        raise _Refused(404, head_only=head_only)
    if method not in (b"GET", b"HEAD"):
        raise _Refused(405)
    try:
        body = registry.render().encode()
    except Exception:
        log.exception("metrics_render_failed")
        raise _Refused(500, head_only=head_only) from None
    return _response(200, body, content_type=CONTENT_TYPE, head_only=head_only)


def _response(
    status: int, body: bytes, *, content_type: str = "text/plain; charset=utf-8", head_only: bool = False
) -> bytes:
    headers = [
        f"HTTP/1.1 {status} {_REASONS[status]}",
        f"Date: {formatdate(usegmt=True)}",
        f"Content-Type: {content_type}",
        f"Content-Length: {len(body)}",
        "Connection: close",
    ]
    if status == 405:
        headers.append("Allow: GET, HEAD")
    return ("\r\n".join(headers) + "\r\n\r\n").encode("ascii") + (b"" if head_only else body)


async def _linger(stream: trio.SocketStream) -> None:
    """Half-close, then read (briefly) what the client still sends: closing a socket with unread bytes resets
    the connection, and the client could lose the response."""
    await stream.send_eof()
    with trio.move_on_after(LINGER_TIMEOUT):
        received = 0
        while received < LINGER_BYTES and (data := await stream.receive_some()):
            received += len(data)
