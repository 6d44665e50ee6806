"""Which ``Host`` a plain HTTP request may name: the defence against DNS rebinding.

A page on another site can have the browser resolve that site's name to 127.0.0.1 and then read
what the daemon answers there, as its own. Such a request names the other site in its ``Host``
header, so an HTTP endpoint of the daemon answers only a ``Host`` that is an IP address, a
loopback name (``localhost`` and ``*.localhost``, RFC 6761), the host of a listen address, or a
name in ``server.allowed_hosts``. A request without ``Host`` comes from no browser (browsers always
send it), so it is answered.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from agentwatch.addresses import TcpAddress, parse_address


def host_name(host: str) -> str:
    """The name of a ``Host`` header value or a setting: without its port, lower case, without a
    final dot; an IPv6 literal without its brackets."""
    host = host.strip().lower()
    if host.startswith("["):
        end = host.find("]")
        return host[1:end] if end > 0 else host
    if host.count(":") == 1:
        name, _, port = host.partition(":")
        host = name if port.isdigit() or not port else host
    return host.rstrip(".")


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


class AllowedHosts:
    """The names a ``Host`` header may give, from ``server.allowed_hosts`` and ``server.listen``."""

    def __init__(self, allowed: Iterable[str], listen: Iterable[str] = ()) -> None:
        names = {host_name(name) for name in allowed}
        for text in listen:
            address = parse_address(text)
            if isinstance(address, TcpAddress):
                names.add(host_name(address.host))
        self.names = frozenset(names)

    def allows(self, host: bytes | str | None) -> bool:
        """Whether a request with this ``Host`` header value (``None``: none) may be answered."""
        if host is None:
            return True
        name = host_name(host.decode("latin-1") if isinstance(host, bytes) else host)
        return name == "localhost" or name.endswith(".localhost") or _is_ip(name) or name in self.names
