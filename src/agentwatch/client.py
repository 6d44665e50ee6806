"""A client of a running daemon's ``/v1/watch``.

Where it listens: ``AGENTWATCH_URL``, else what the daemon recorded in ``daemon.json`` in its
state directory, else the first of ``server.listen``. The token: ``AGENTWATCH_TOKEN``, else the
token file.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import trio
from trio_websocket import ConnectionClosed, HandshakeError, WebSocketConnection, wrap_client_stream

from agentwatch import daemon_file
from agentwatch.auth import read_token
from agentwatch.config import Config
from agentwatch.listeners import TcpAddress, UnixAddress, parse_address

CONNECT_TIMEOUT = 10.0

#: Hosts a daemon binds to that a client reaches on loopback.
_ANY_HOST = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}


class ClientError(Exception):
    """The daemon could not be reached or refused the request; the message says what to do."""


async def call(config: Config, method: str, params: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> Any:
    """Send one JSON-RPC request to the daemon and return its result."""
    environ = os.environ if environ is None else environ
    address = _address(config, environ)
    headers = _headers(config, environ)
    reply: dict[str, Any] = {}
    try:
        async with trio.open_nursery() as nursery:
            with trio.fail_after(CONNECT_TIMEOUT):
                stream = await _connect(address)
                ws = await wrap_client_stream(nursery, stream, _host(address), "/v1/watch", extra_headers=headers)
            try:
                reply = await _request(ws, method, params)
            finally:
                await ws.aclose()
    except* trio.TooSlowError:
        raise ClientError(f"the daemon at {address} did not answer within {CONNECT_TIMEOUT:g}s") from None
    except* OSError as group:
        exc = group.exceptions[0]
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise ClientError(f"cannot reach the daemon at {address}: {reason}; is it running?") from None
    except* ConnectionClosed:
        raise ClientError(f"the daemon at {address} closed the connection before answering (stopping?)") from None
    except* HandshakeError as group:
        status = getattr(group.exceptions[0], "status_code", None)
        hint = "wrong token? check the token file or AGENTWATCH_TOKEN" if status == 401 else "see the daemon's log"
        raise ClientError(f"the daemon at {address} refused the connection (HTTP {status}): {hint}") from None
    if "error" in reply:
        raise ClientError(f"{method} failed: {reply['error'].get('message')}")
    return reply.get("result")


async def _request(ws: WebSocketConnection, method: str, params: Mapping[str, Any]) -> dict[str, Any]:
    await ws.send_message(json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": dict(params)}))
    reply = json.loads(await ws.get_message())
    if not isinstance(reply, dict):
        raise ClientError(f"the daemon answered {method} with something that is not a JSON-RPC reply")
    return reply


def _address(config: Config, environ: Mapping[str, str]) -> TcpAddress | UnixAddress:
    if url := environ.get("AGENTWATCH_URL"):
        parts = urlsplit(url)
        if parts.scheme not in {"ws", "http"} or not parts.hostname:
            raise ClientError(f"AGENTWATCH_URL = {url!r} is not allowed: expected ws://HOST:PORT")
        return TcpAddress(parts.hostname, parts.port or 80)
    announced = daemon_file.addresses(config.state_dir)
    address = parse_address((announced or config["server"]["listen"])[0])
    if isinstance(address, TcpAddress):
        if address.port == 0:
            raise ClientError(
                f"no daemon has announced itself in {config.state_dir / daemon_file.NAME}, and server.listen has port 0: "
                "is the daemon running with this state directory? If it is, set AGENTWATCH_URL to its address"
            )
        address = TcpAddress(_ANY_HOST.get(address.host, address.host), address.port)
    return address


def _headers(config: Config, environ: Mapping[str, str]) -> list[tuple[str, str]]:
    token = environ.get("AGENTWATCH_TOKEN")
    if not token and config["auth"]["enabled"]:
        token = read_token(config.state_path(config["auth"]["token_file"]))
    return [("Authorization", f"Bearer {token}")] if token else []


async def _connect(address: TcpAddress | UnixAddress) -> trio.SocketStream:
    if isinstance(address, UnixAddress):
        return await trio.open_unix_socket(str(address.path))
    return await trio.open_tcp_stream(address.host, address.port)


def _host(address: TcpAddress | UnixAddress) -> str:
    return "localhost" if isinstance(address, UnixAddress) else str(address)
