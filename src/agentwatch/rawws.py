"""Just enough client-side WebSocket (RFC 6455), on the standard library alone.

Two users: the benchmark's load generator, which precomputes every client frame as bytes so
sending an event costs one slice of a list and one ``send_all``; and short-lived commands
(``agentwatch hook``) that must not pay for importing an event loop, through
:class:`BlockingClient`. Client frames must be masked; this module masks each connection's
frames with one fixed key chosen at random for that connection (servers unmask whatever key a
frame carries, so a fixed key parses the same as a fresh one per frame). Server frames are
never masked and, for acks, tiny.
"""

from __future__ import annotations

import base64
import hashlib
import os
import select
import socket
import struct
from collections import deque
from collections.abc import Sequence

from agentwatch.addresses import TcpAddress, UnixAddress

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

OP_CONT = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA

MAX_HEAD = 64 * 1024  # a handshake response larger than this is not one


class ProtocolError(Exception):
    """The server said something this minimal client cannot accept."""


def handshake_request(host: str, port: int, path: str, headers: Sequence[tuple[str, str]] = ()) -> tuple[bytes, bytes]:
    """The opening handshake request and the ``Sec-WebSocket-Accept`` value to expect."""
    key = base64.b64encode(os.urandom(16))
    lines = [
        f"GET {path} HTTP/1.1",
        f"Host: {host}:{port}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key.decode()}",
        "Sec-WebSocket-Version: 13",
        *(f"{name}: {value}" for name, value in headers),
    ]
    request = ("\r\n".join(lines) + "\r\n\r\n").encode()
    accept = base64.b64encode(hashlib.sha1(key + GUID).digest())
    return request, accept


def check_handshake_response(head: bytes, accept: bytes) -> None:
    """Raise :class:`ProtocolError` unless ``head`` (status line and headers) accepts the upgrade."""
    lines = head.split(b"\r\n")
    status = lines[0].split(b" ", 2)
    if len(status) < 2 or status[1] != b"101":
        raise ProtocolError(f"handshake rejected: {lines[0].decode(errors='replace')}")
    fields = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        fields[name.strip().lower()] = value.strip()
    if fields.get(b"sec-websocket-accept") != accept:
        raise ProtocolError("handshake response has a wrong Sec-WebSocket-Accept")


def _mask(payload: bytes, key: bytes) -> bytes:
    """XOR ``payload`` with the repeated 4-byte ``key`` (one big-int XOR, fast enough up front)."""
    n = len(payload)
    if n == 0:
        return payload
    stream = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(stream, "big")).to_bytes(n, "big")


def client_frame(payload: bytes, key: bytes, opcode: int = OP_TEXT) -> bytes:
    """One complete, final, masked client frame carrying ``payload``."""
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
    elif n < 1 << 16:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
    return head + key + _mask(payload, key)


class FrameReader:
    """Incremental parser of unmasked server frames: feed bytes, get ``(opcode, payload)`` pairs.

    Fragmented messages are not expected from the servers under test (acks are tiny); a
    continuation frame is reported as such rather than reassembled.
    """

    __slots__ = ("_buf",)

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        """Append ``data`` and return every frame now complete, in order."""
        frames: list[tuple[int, bytes]] = []
        buf = self._buf
        buf += data
        pos = 0
        end = len(buf)
        while end - pos >= 2:
            b0 = buf[pos]
            n = buf[pos + 1] & 0x7F
            if buf[pos + 1] & 0x80:
                raise ProtocolError("server sent a masked frame")
            head = 2
            if n == 126:
                if end - pos < 4:
                    break
                n = int.from_bytes(buf[pos + 2 : pos + 4], "big")
                head = 4
            elif n == 127:
                if end - pos < 10:
                    break
                n = int.from_bytes(buf[pos + 2 : pos + 10], "big")
                head = 10
            if end - pos < head + n:
                break
            frames.append((b0 & 0x0F, bytes(buf[pos + head : pos + head + n])))
            pos += head + n
        del buf[:pos]
        return frames


class Closed(ProtocolError):
    """The server closed the connection; ``code`` is its close code (1006 if it gave none)."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"the daemon closed the connection ({code}{': ' + reason if reason else ''})")
        self.code = code


class BlockingClient:
    """One blocking WebSocket connection; every operation is bounded by the ``timeout`` given to :meth:`connect`."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._key = os.urandom(4)
        self._reader = FrameReader()
        self._frames: deque[tuple[int, bytes]] = deque()

    @classmethod
    def connect(
        cls, address: TcpAddress | UnixAddress, path: str, headers: Sequence[tuple[str, str]], timeout: float
    ) -> BlockingClient:
        """Open the connection and complete the handshake; raises ``OSError`` or :class:`ProtocolError`."""
        if isinstance(address, UnixAddress):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(timeout)
            try:
                sock.connect(str(address.path))
            except OSError:
                sock.close()
                raise
            host, port = "localhost", 80
        else:
            sock = socket.create_connection((address.host, address.port), timeout)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            host, port = address.host, address.port
        client = cls(sock)
        try:
            client._handshake(host, port, path, headers)
        except BaseException:
            sock.close()
            raise
        return client

    def _handshake(self, host: str, port: int, path: str, headers: Sequence[tuple[str, str]]) -> None:
        request, accept = handshake_request(host, port, path, headers)
        self._sock.sendall(request)
        buf = b""
        while b"\r\n\r\n" not in buf:
            data = self._sock.recv(4096)
            if not data or len(buf) > MAX_HEAD:
                raise ProtocolError("the server ended the handshake without an answer")
            buf += data
        head, _, rest = buf.partition(b"\r\n\r\n")
        check_handshake_response(head, accept)
        self._frames.extend(self._reader.feed(rest))

    def set_timeout(self, seconds: float) -> None:
        """Bound every later send and receive by ``seconds``."""
        self._sock.settimeout(seconds)

    def readable(self) -> bool:
        """A message (or part of one) has arrived and can be read without waiting."""
        return bool(self._frames) or bool(select.select([self._sock], [], [], 0)[0])

    def send_text(self, text: str) -> None:
        """Send one text message."""
        self._sock.sendall(client_frame(text.encode(), self._key))

    def receive_text(self) -> str:
        """The next text message; answers pings; raises :class:`Closed` when the server closes."""
        while True:
            while not self._frames:
                data = self._sock.recv(65536)
                if not data:
                    raise Closed(1006, "")
                self._frames.extend(self._reader.feed(data))
            opcode, payload = self._frames.popleft()
            if opcode == OP_TEXT:
                return payload.decode()
            if opcode == OP_PING:
                self._sock.sendall(client_frame(payload, self._key, OP_PONG))
            elif opcode == OP_CLOSE:
                code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
                raise Closed(code, payload[2:].decode(errors="replace"))

    def close(self) -> None:
        """Close normally (1000), wait briefly for the server's close frame, and release the socket."""
        try:
            self._sock.sendall(client_frame((1000).to_bytes(2, "big"), self._key, OP_CLOSE))
            while True:
                self.receive_text()
        except (OSError, ProtocolError):
            pass
        finally:
            self._sock.close()
