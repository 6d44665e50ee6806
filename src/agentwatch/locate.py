"""Where a running daemon is and how to get in, from the environment and ``daemon.json`` alone.

Cheap to import (no event loop, no configuration parsing), for commands on an agent's hot path;
:func:`agentwatch.client.find_daemon` adds the configuration's ``server.listen`` as a fallback.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import NamedTuple

from agentwatch import daemon_file
from agentwatch.addresses import TcpAddress, UnixAddress, parse_address
from agentwatch.auth import TokenFileError, read_token


#: Hosts a daemon binds to that a client reaches on loopback.
_ANY_HOST = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}


class ClientError(Exception):
    """The daemon could not be reached or refused a request; the message says what to do."""


class DaemonNotRunning(ClientError):
    """Nothing answers where the daemon should listen."""


class DaemonGone(ClientError):
    """The connection to the daemon ended under a call or a subscription: the daemon stopped (or
    the connection broke)."""


class Endpoint(NamedTuple):
    """Where a daemon listens and the headers that let a client in."""

    address: TcpAddress | UnixAddress
    headers: tuple[tuple[str, str], ...] = ()

    def __str__(self) -> str:
        return str(self.address)


def reachable(address: TcpAddress | UnixAddress) -> TcpAddress | UnixAddress:
    """``address``, with a wildcard host (the daemon listens on every interface) made loopback."""
    if isinstance(address, TcpAddress) and address.host in _ANY_HOST:
        return TcpAddress(_ANY_HOST[address.host], address.port)
    return address


def url_address(environ: Mapping[str, str]) -> TcpAddress | None:
    """The address in ``AGENTWATCH_URL``, if set."""
    url = environ.get("AGENTWATCH_URL")
    if not url:
        return None
    from urllib.parse import urlsplit  # here: only a daemon named by URL needs it

    parts = urlsplit(url)
    if parts.scheme not in {"ws", "http"} or not parts.hostname:
        raise ClientError(f"AGENTWATCH_URL = {url!r} is not allowed: expected ws://HOST:PORT")
    return TcpAddress(parts.hostname, parts.port or 80)


def bearer(token_file: Path | None, environ: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    """The ``Authorization`` header: ``AGENTWATCH_TOKEN``, else the token in ``token_file`` (none if None)."""
    token = environ.get("AGENTWATCH_TOKEN")
    if not token and token_file is not None:
        if not token_file.exists():
            raise DaemonNotRunning(f"there is no token file at {token_file}: no daemon has run with this state directory")
        try:
            token = read_token(token_file)
        except TokenFileError as exc:
            raise ClientError(f"{exc}; or set AGENTWATCH_TOKEN") from None
    return (("Authorization", f"Bearer {token}"),) if token else ()


def announced(state_dir: Path, environ: Mapping[str, str]) -> Endpoint | None:
    """The daemon that ``AGENTWATCH_URL`` names or that announced itself in ``state_dir``; None if neither.

    The token comes from ``AGENTWATCH_TOKEN``, else the token file the daemon announced (else
    ``token`` in ``state_dir`` for a daemon named by URL).
    """
    record = daemon_file.running(state_dir)
    address = url_address(environ)
    if address is None:
        listening = [text for text in record.get("addresses", []) if isinstance(text, str)]
        if not listening:
            return None
        address = reachable(parse_address(listening[0]))
    if record:
        token_file = record.get("token_file")
        return Endpoint(address, bearer(Path(token_file) if isinstance(token_file, str) else None, environ))
    return Endpoint(address, bearer(state_dir / "token", environ))
