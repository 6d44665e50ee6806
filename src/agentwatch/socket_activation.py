"""Listening sockets passed by the service manager (sd_listen_fds(3)): ``LISTEN_FDS`` from fd 3.

With ``agentwatch.socket`` systemd binds the address, starts the daemon on the first
connection and keeps accepting into the queue while the daemon restarts, so no client is
refused across a restart.
"""

from __future__ import annotations

import os
import socket
from collections.abc import MutableMapping
from typing import NamedTuple

LISTEN_FDS_START = 3
VARIABLES = ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES")


class ActivationError(Exception):
    """The passed sockets cannot be used; the message says which and what to do."""


class InheritedSocket(NamedTuple):
    name: str  # from LISTEN_FDNAMES (FileDescriptorName=), "unknown" without one
    socket: socket.socket


def inherited_sockets(environ: MutableMapping[str, str], *, unset: bool = True) -> list[InheritedSocket]:
    """The listening stream sockets passed to this process; empty when none were (or they were
    meant for another process: ``LISTEN_PID`` differs). Each is made close-on-exec."""
    pid, count, names = (environ.get(name, "") for name in VARIABLES)
    if unset:
        for name in VARIABLES:
            environ.pop(name, None)
    if not count or pid != str(os.getpid()):
        return []
    if not count.isdigit():
        raise ActivationError(f"LISTEN_FDS={count!r} is not a number of sockets; check the socket unit")
    given = names.split(":") if names else []
    inherited = []
    for index in range(int(count)):
        fd = LISTEN_FDS_START + index
        name = given[index] if index < len(given) and given[index] else "unknown"
        inherited.append(InheritedSocket(name, _listening(fd, name)))
    return inherited


def _listening(fd: int, name: str) -> socket.socket:
    try:
        os.set_inheritable(fd, False)
        sock = socket.socket(fileno=fd)
    except OSError as exc:
        raise ActivationError(f"fd {fd} ({name}) passed in LISTEN_FDS is not a socket ({exc.strerror or exc})") from None
    if sock.type != socket.SOCK_STREAM or not sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
        sock.detach()
        raise ActivationError(
            f"fd {fd} ({name}) passed in LISTEN_FDS is not a listening stream socket; use ListenStream= "
            "with Accept=no in the socket unit"
        )
    return sock
