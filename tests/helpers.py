"""Test helpers: a real daemon (in-process or as a subprocess) and a client written from protocol.md."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trio
from trio_websocket import WebSocketConnection, open_websocket_url

from agentwatch.config import Overrides, load_config
from agentwatch.daemon import Daemon
from agentwatch.plugin_manager import Plugins

FIXTURES = Path(__file__).parent / "fixtures"
TIMEOUT = 30.0  # seconds; generous because virtual-time tests wait for 10 s timers
# trio-websocket's client waits up to 60 s for a handshake and 60 s for a close: bound them.
CLIENT_TIMEOUTS = {"connect_timeout": 10.0, "disconnect_timeout": 10.0}


@dataclass
class Running:
    """A daemon under test: its object, address and token."""

    daemon: Daemon
    address: str
    token: str | None

    @property
    def url(self) -> str:
        return f"ws://{self.address}"

    def headers(self, token: str | None = None) -> list[tuple[bytes, bytes]]:
        token = token or self.token
        return [(b"Authorization", f"Bearer {token}".encode())] if token else []


@asynccontextmanager
async def running_daemon(
    state_dir: Path, settings: Mapping[str, str] | None = None, plugins: Plugins | None = None, port: int = 0
) -> AsyncIterator[Running]:
    """Run a daemon on 127.0.0.1 (``port``, default a free one) with ``state_dir``; ``settings`` are
    AGENTWATCH_* variables. Leaving the block shuts it down gracefully and waits for it to finish.
    """
    config = load_config(Overrides(state_dir=state_dir, listen=[f"127.0.0.1:{port}"]), environ=dict(settings or {}))
    daemon = Daemon(config, plugins)
    async with trio.open_nursery() as nursery:
        addresses = await nursery.start(daemon.run)
        token_path = state_dir / "token"
        token = token_path.read_text().strip() if config["auth"]["enabled"] else None
        try:
            yield Running(daemon, addresses[0], token)
        finally:
            daemon.stop()


class Agent:
    """One ingest connection, driven frame by frame."""

    def __init__(self, ws: WebSocketConnection) -> None:
        self.ws = ws

    async def send(self, frame: Any) -> None:
        await self.ws.send_message(frame if isinstance(frame, str | bytes) else json.dumps(frame))

    async def recv(self) -> dict[str, Any]:
        with trio.fail_after(TIMEOUT):
            return json.loads(await self.ws.get_message())

    async def hello(self, fmt: str = "agentwatch", **agent: Any) -> dict[str, Any]:
        await self.send({"type": "hello", "protocol": 1, "format": fmt, "agent": agent})
        welcome = await self.recv()
        assert welcome["type"] == "welcome", welcome
        return welcome

    async def event(self, seq: int, data: Any, **extra: Any) -> None:
        await self.send({"type": "event", "seq": seq, "data": data, **extra})

    async def batch(self, seqs: Any, data: Callable[[int], Any] = lambda seq: {"kind": "output", "text": str(seq)}) -> None:
        """One ``events`` frame with an event for each of ``seqs``."""
        await self.send({"type": "events", "events": [{"seq": seq, "data": data(seq)} for seq in seqs]})

    async def until_ack(self, seq: int) -> list[dict[str, Any]]:
        """Receive frames until an ack covering ``seq``; return everything received."""
        frames = []
        while True:
            frame = await self.recv()
            assert frame["type"] != "error", frame
            frames.append(frame)
            if frame["type"] == "ack" and frame["seq"] >= seq:
                return frames

    async def closed_code(self) -> int:
        """Read until the daemon closes the connection; return the close code."""
        with trio.fail_after(TIMEOUT):
            while True:
                try:
                    await self.ws.get_message()
                except Exception:
                    assert self.ws.closed is not None
                    return self.ws.closed.code


@asynccontextmanager
async def agent(running: Running, agent_id: str, *, token: str | None = None, origin: str | None = None) -> AsyncIterator[Agent]:
    headers = running.headers(token)
    if origin is not None:
        headers.append((b"Origin", origin.encode()))
    async with open_websocket_url(f"{running.url}/v1/agents/{agent_id}", extra_headers=headers, **CLIENT_TIMEOUTS) as ws:
        yield Agent(ws)


class Watcher:
    """A ``/v1/watch`` JSON-RPC client; notifications that arrive while it waits for a reply are kept."""

    def __init__(self, ws: WebSocketConnection) -> None:
        self.ws = ws
        self._ids = iter(range(1, 1 << 30))
        self.notifications: deque[dict[str, Any]] = deque()

    async def raw(self, message: str) -> Any:
        """Send one frame; the next frame that is not a notification."""
        await self.ws.send_message(message)
        with trio.fail_after(TIMEOUT):
            while True:
                frame = json.loads(await self.ws.get_message())
                if not (isinstance(frame, dict) and "method" in frame and "id" not in frame):
                    return frame
                self.notifications.append(frame)

    async def call(self, method: str, **params: Any) -> Any:
        """The result of ``method``; a JSON-RPC error raises ``RpcError``."""
        reply = await self.raw(json.dumps({"jsonrpc": "2.0", "id": next(self._ids), "method": method, "params": params}))
        if "error" in reply:
            raise RpcError(reply["error"]["code"], reply["error"]["message"])
        return reply["result"]

    async def notification(self, timeout: float = TIMEOUT) -> dict[str, Any]:
        """The next notification: ``{"method": ..., "params": {...}}``."""
        if self.notifications:
            return self.notifications.popleft()
        with trio.fail_after(timeout):
            frame = json.loads(await self.ws.get_message())
        assert "id" not in frame, f"a reply nobody waited for: {frame}"
        return frame


class RpcError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


@asynccontextmanager
async def watcher(running: Running, **options: Any) -> AsyncIterator[Watcher]:
    """A watch connection; ``options`` go to trio-websocket (``message_queue_size=1`` for a reader that stalls)."""
    async with open_websocket_url(f"{running.url}/v1/watch", extra_headers=running.headers(), **CLIENT_TIMEOUTS, **options) as ws:
        yield Watcher(ws)


async def stored(running: Running, agent_id: str, **params: Any) -> list[dict[str, Any]]:
    """Every stored event of an agent (all pages), as ``events.list`` returns them."""
    events: list[dict[str, Any]] = []
    async with watcher(running) as w:
        while True:
            page = await w.call("events.list", agent_id=agent_id, after_seq=events[-1]["seq"] if events else 0, limit=1000, **params)
            events.extend(page["events"])
            if not page["has_more"]:
                return events


def fixture_records(relative: str) -> list[Any]:
    """The records of an NDJSON fixture file, one per non-empty line."""
    lines = (FIXTURES / relative).read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


#: Subprocesses a test started; conftest kills any still running when the test ends, pass or fail.
STARTED: list[subprocess.Popen[bytes]] = []


def track(proc: subprocess.Popen[bytes]) -> subprocess.Popen[bytes]:
    """Have ``proc`` killed at the end of the test if it is still running then."""
    STARTED.append(proc)
    return proc


class DaemonProcess:
    """``python -m agentwatch serve`` as a real subprocess, for crash and signal tests."""

    def __init__(self, state_dir: Path, *extra_args: str, env: Mapping[str, str] | None = None) -> None:
        self.state_dir = state_dir
        self.log_path = state_dir.parent / f"{state_dir.name}-daemon.log"
        self._log = self.log_path.open("ab")
        environ = {**os.environ, **(env or {})}
        self.proc = track(subprocess.Popen(
            [sys.executable, "-m", "agentwatch", "serve", "--state-dir", str(state_dir), "--listen", "127.0.0.1:0",
             "--log-format", "json", *extra_args],
            stdout=self._log, stderr=subprocess.STDOUT, env=environ,
        ))

    async def ready(self) -> Running:
        """Wait for the ``ready`` log line; return the address and token to connect with."""
        with trio.fail_after(TIMEOUT):
            while True:
                for record in self.lines():
                    if record.get("event") == "ready" and record.get("pid") == self.proc.pid:
                        token = (self.state_dir / "token").read_text().strip()
                        return Running(None, record["addresses"][0], token)  # type: ignore[arg-type]
                if self.proc.poll() is not None:
                    raise AssertionError(f"daemon exited with {self.proc.returncode}:\n{self.log_path.read_text()}")
                await trio.sleep(0.02)

    def lines(self) -> list[dict[str, Any]]:
        """The log's JSON lines; a line cut short by a SIGKILL is skipped."""
        records = []
        for line in self.log_path.read_text().splitlines():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                pass
        return records

    async def wait(self) -> int:
        with trio.fail_after(30):
            while self.proc.poll() is None:
                await trio.sleep(0.02)
        self._log.close()
        return self.proc.returncode


def ws_frame(payload: bytes, opcode: int = 0x1) -> bytes:
    """One client WebSocket frame (masked with a zero key, as a client must mask)."""
    length = len(payload)
    if length < 126:
        header = bytes([0x80 | opcode, 0x80 | length])
    elif length < 1 << 16:
        header = bytes([0x80 | opcode, 0x80 | 126]) + length.to_bytes(2, "big")
    else:
        header = bytes([0x80 | opcode, 0x80 | 127]) + length.to_bytes(8, "big")
    return header + b"\0\0\0\0" + payload


async def raw_connect(running: Running, path: str, *, receive_buffer: int | None = None) -> trio.SocketStream:
    """A WebSocket handshake by hand, for a client that misbehaves below the message layer."""
    host, port = running.address.rsplit(":", 1)
    sock = trio.socket.socket()
    if receive_buffer is not None:
        import socket

        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    await sock.connect((host, int(port)))
    stream = trio.SocketStream(sock)
    await stream.send_all(
        f"GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
        f"Authorization: Bearer {running.token}\r\n\r\n".encode()
    )
    received = b""
    while b"\r\n\r\n" not in received:
        received += await stream.receive_some()
    assert received.startswith(b"HTTP/1.1 101"), received
    return stream


def every_fixture_record() -> list[tuple[str, Any]]:
    """Every record of every fixture file: NDJSON lines, or the elements of a JSON array."""
    found = []
    for path in sorted(FIXTURES.rglob("*")):
        if path.suffix == ".jsonl" or path.suffix == ".ndjson":
            found += [(path.name, record) for record in fixture_records(str(path.relative_to(FIXTURES)))]
        elif path.suffix == ".json":
            found += [(path.name, record) for record in json.loads(path.read_text(encoding="utf-8"))]
    return found


async def stream_all(d: Running, agent_id: str, fmt: str, records: list[Any]) -> None:
    """Send ``records`` as events 1..n in frames of 100 and wait for the last ack."""
    async with agent(d, agent_id) as a:
        await a.hello(fmt)
        for start in range(0, len(records), 100):
            chunk = records[start : start + 100]
            await a.send({"type": "events", "events": [{"seq": start + i + 1, "data": r} for i, r in enumerate(chunk)]})
        await a.until_ack(len(records))


def required_tool(name: str, package: str) -> str:
    """The path of the program ``name``. Where it is not installed the test is skipped, except when
    ``TEST_REQUIRE_TOOLS`` names it (CI does: a skip must not pass for a test that ran)."""
    path = shutil.which(name)
    if path is None:
        if name in os.environ.get("TEST_REQUIRE_TOOLS", "").split(","):
            pytest.fail(f"{name} is not installed, and TEST_REQUIRE_TOOLS says it must be (apt-get install {package})")
        pytest.skip(f"{name} is not installed (apt-get install {package}); CI installs it")
    return path
