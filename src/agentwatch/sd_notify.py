"""Telling the service manager how the daemon is doing: the sd_notify(3) protocol in pure Python.

systemd names a datagram socket in ``NOTIFY_SOCKET`` (a path, or ``@name`` for an abstract
one) and reads newline-separated ``KEY=value`` assignments from it: ``READY=1``,
``STATUS=...``, ``WATCHDOG=1``, ``RELOADING=1``, ``STOPPING=1``. Without the variable every
call does nothing, so the daemon runs the same outside systemd.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import MutableMapping

from agentwatch.logs import get_logger

log = get_logger(__name__)

class Notifier:
    """Sends state changes to ``NOTIFY_SOCKET``; a no-op when there is none. Never raises."""

    def __init__(self, address: str | None, watchdog_interval: float | None = None) -> None:
        self.address = address
        #: Seconds between ``WATCHDOG=1`` pings (half of ``WATCHDOG_USEC``); None: no watchdog.
        self.watchdog_interval = watchdog_interval
        self._socket: socket.socket | None = None
        self._failed = False

    @classmethod
    def from_environ(cls, environ: MutableMapping[str, str]) -> Notifier:
        """The notifier ``environ`` asks for. Its variables are removed from ``environ``: they are
        this process's own, and children (git) must not answer in its name."""
        address = environ.pop("NOTIFY_SOCKET", "") or None
        usec, pid = environ.pop("WATCHDOG_USEC", ""), environ.pop("WATCHDOG_PID", "")
        ours = usec.isdigit() and int(usec) > 0 and pid in ("", str(os.getpid()))
        return cls(address, int(usec) / 2_000_000 if ours else None)

    @property
    def enabled(self) -> bool:
        """Whether a service manager is listening."""
        return self.address is not None

    def ready(self, status: str) -> None:
        """Start-up (or a reload) is complete: the daemon accepts connections."""
        self.send(READY="1", STATUS=status, MAINPID=str(os.getpid()))

    def reloading(self) -> None:
        """A reload begins (``READY=1`` ends it); ``MONOTONIC_USEC`` as systemd's notify-reload wants."""
        self.send(RELOADING="1", MONOTONIC_USEC=str(time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000))

    def stopping(self) -> None:
        """A graceful shutdown begins."""
        self.send(STOPPING="1", STATUS="draining connections")

    def status(self, text: str) -> None:
        """A one-line status for ``systemctl status``."""
        self.send(STATUS=text)

    def watchdog(self) -> None:
        """The daemon is alive and making progress."""
        self.send(WATCHDOG="1")

    def send(self, **fields: str) -> bool:
        """Send one datagram of ``KEY=value`` lines; False if nobody listens or it could not be sent."""
        if self.address is None:
            return False
        message = "\n".join(f"{key}={value.replace(chr(10), ' ')}" for key, value in fields.items()).encode()
        target = "\0" + self.address[1:] if self.address.startswith("@") else self.address
        try:
            if self._socket is None:
                self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                self._socket.setblocking(False)  # a full queue drops a status update; it never stalls the loop
            self._socket.sendto(message, target)
        except OSError as exc:
            if not self._failed:  # once: a missing manager would otherwise fill the log
                self._failed = True
                log.warning("notify_failed", socket=self.address, error=str(exc), hint="is NOTIFY_SOCKET right?")
            return False
        self._failed = False
        return True

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None

