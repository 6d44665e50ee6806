"""Opening the daemon's listen addresses (see :mod:`agentwatch.addresses`)."""

from __future__ import annotations

import errno
import os
import socket as stdsocket
import stat
from pathlib import Path

import trio

from agentwatch.addresses import Address, TcpAddress


async def open_listener(address: Address) -> list[trio.SocketListener]:
    """Bind and listen on ``address``; an OSError says which address could not be used."""
    if isinstance(address, TcpAddress):
        return await trio.open_tcp_listeners(address.port, host=address.host)
    return [await _open_unix_listener(address.path)]


async def _open_unix_listener(path: Path) -> trio.SocketListener:
    await _remove_stale_socket(path)
    sock = trio.socket.socket(stdsocket.AF_UNIX, stdsocket.SOCK_STREAM)
    try:
        await sock.bind(str(path))
        sock.listen(stdsocket.SOMAXCONN)
    except BaseException:
        sock.close()
        raise
    return trio.SocketListener(sock)


async def _remove_stale_socket(path: Path) -> None:
    """Remove a socket file left by a dead daemon; refuse to touch a live one or a non-socket."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise OSError(errno.EEXIST, f"{path} exists and is not a socket; remove it or choose another path")
    probe = trio.socket.socket(stdsocket.AF_UNIX, stdsocket.SOCK_STREAM)
    try:
        await probe.connect(str(path))
    except OSError:
        path.unlink(missing_ok=True)
    else:
        raise OSError(errno.EADDRINUSE, f"another process is listening on {path}")
    finally:
        probe.close()


def bound_address(listener: trio.SocketListener) -> str:
    """The address a listener is actually bound to (the real port when 0 was asked for)."""
    name = listener.socket.getsockname()
    if listener.socket.family == stdsocket.AF_UNIX:
        return f"unix:{name}"
    return str(TcpAddress(name[0], name[1]))
