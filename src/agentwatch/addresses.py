"""Addresses of a daemon: ``HOST:PORT``, ``[IPv6]:PORT`` or ``unix:/path`` (cheap to import)."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import NamedTuple


class TcpAddress(NamedTuple):
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


class UnixAddress(NamedTuple):
    path: Path

    def __str__(self) -> str:
        return f"unix:{self.path}"


Address = TcpAddress | UnixAddress


def parse_address(text: str) -> Address:
    """Parse one listen address; raises ``ValueError`` saying what a valid one looks like."""
    expected = "HOST:PORT (e.g. 127.0.0.1:7717, [::1]:7717) or unix:/absolute/path"
    if text.startswith("unix:"):
        path = text[len("unix:") :]
        if not path.startswith("/"):
            raise ValueError(f"{expected}; {text!r} has no absolute path after unix:")
        return UnixAddress(Path(path))
    host, sep, port = text.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{expected}; got {text!r}")
    return TcpAddress(host, int(port))


def is_loopback(address: Address) -> bool:
    """Whether only this machine can reach ``address``: a Unix socket, ``localhost``, 127.0.0.0/8 or ::1."""
    if isinstance(address, UnixAddress) or address.host == "localhost":
        return True
    try:
        return ipaddress.ip_address(address.host).is_loopback
    except ValueError:  # a host name other than localhost
        return False
