"""How many connections the daemon takes at once, and the file descriptors that allows."""

from __future__ import annotations

import resource

#: Descriptors kept for everything but client sockets: the database, its readers, the WAL,
#: listeners, the notify socket, git's pipes, plugins' files.
RESERVED_FDS = 64

_BUSY_BODY = b"too many connections: server.max_connections is reached; retry in a moment\n"
#: Sent to a connection over the limit, without reading its handshake.
BUSY_RESPONSE = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nConnection: close\r\nRetry-After: 1\r\n"
    b"Content-Length: %d\r\n\r\n%s" % (len(_BUSY_BODY), _BUSY_BODY)
)


def raise_fd_limit() -> int:
    """Raise this process's soft RLIMIT_NOFILE to its hard limit; return the soft limit now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        target = 1 << 20 if hard == resource.RLIM_INFINITY else hard
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass  # the soft limit stays; connection_cap() then respects it
    return soft


def connection_cap(configured: int, fd_limit: int) -> int:
    """The connections to accept at once: ``server.max_connections``, within the descriptors there are."""
    return max(1, min(configured, fd_limit - RESERVED_FDS))
