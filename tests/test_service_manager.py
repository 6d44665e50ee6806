"""The daemon under a service manager: sd_notify on a real datagram socket, the watchdog on
virtual time, and socket activation of a real subprocess."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import uuid

import pytest
import trio

from agentwatch.config import Overrides, load_config
from agentwatch.daemon import Daemon
from agentwatch.sd_notify import Notifier
from agentwatch.socket_activation import ActivationError, inherited_sockets
from helpers import TIMEOUT, DaemonProcess, Running, agent, track

QUIET = {"AGENTWATCH_SERVER_PING_INTERVAL": "1d", "AGENTWATCH_SERVER_PING_TIMEOUT": "1d"}


class NotifySocket:
    """The service manager's end: a bound datagram socket that records what it is told, and when."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.received: list[tuple[float, dict[str, str]]] = []

    async def bind(self) -> "NotifySocket":
        await self.sock.bind("\0" + self.address[1:] if self.address.startswith("@") else self.address)
        return self

    async def _receive(self) -> dict[str, str]:
        message = dict(line.split("=", 1) for line in (await self.sock.recv(4096)).decode().split("\n"))
        self.received.append((trio.current_time(), message))
        return message

    async def next(self, key: str) -> dict[str, str]:
        """The next message that sets ``key``."""
        with trio.fail_after(TIMEOUT):
            while key not in (message := await self._receive()):
                pass
            return message

    async def pings(self, seconds: float) -> list[float]:
        """The times of the WATCHDOG=1 pings received during the next ``seconds``."""
        since = trio.current_time()
        with trio.move_on_after(seconds):
            while True:
                await self._receive()
        return [at for at, message in self.received if at >= since and message.get("WATCHDOG") == "1"]


def notify_addresses(tmp_path):
    return [str(tmp_path / "notify.sock"), f"@agentwatch-test-{uuid.uuid4().hex}"]


@pytest.mark.parametrize("kind", ["path", "abstract"])
async def test_ready_only_once_listening_then_reloading_and_stopping(tmp_path, kind):
    manager = await NotifySocket(notify_addresses(tmp_path)[kind == "abstract"]).bind()
    daemon = DaemonProcess(tmp_path / "state", env={"NOTIFY_SOCKET": manager.address})
    ready = await manager.next("READY")
    assert ready["READY"] == "1" and ready["MAINPID"] == str(daemon.proc.pid)
    assert ready["STATUS"].startswith("0 agents connected")
    running = await daemon.ready()  # the log line came first, the socket accepts now
    async with agent(running, "a1") as a:
        await a.hello()
        daemon.proc.send_signal(signal.SIGHUP)
        reloading = await manager.next("RELOADING")
        assert int(reloading["MONOTONIC_USEC"]) > 0
        assert (await manager.next("READY"))["READY"] == "1"
        await a.event(1, {"kind": "output"})
        await a.until_ack(1)  # the reload dropped nothing
        daemon.proc.send_signal(signal.SIGTERM)
        assert (await manager.next("STOPPING"))["STOPPING"] == "1"
    assert await daemon.wait() == 0
    assert "reloaded" in [line["event"] for line in daemon.lines()]


async def test_no_notify_socket_means_no_messages_and_no_errors(tmp_path):
    daemon = DaemonProcess(tmp_path / "state", env={"NOTIFY_SOCKET": ""})
    await daemon.ready()
    daemon.proc.send_signal(signal.SIGTERM)
    assert await daemon.wait() == 0
    assert not [line for line in daemon.lines() if line["level"] in ("warning", "error")]


async def running(state_dir, notifier):
    config = load_config(Overrides(state_dir=state_dir, listen=["127.0.0.1:0"]), environ=QUIET)
    return Daemon(config, notifier=notifier)


@pytest.mark.parametrize("kind", ["path", "abstract"])
async def test_the_watchdog_is_pinged_at_half_its_interval(tmp_path, virtual_clock, kind):
    manager = await NotifySocket(notify_addresses(tmp_path)[kind == "abstract"]).bind()
    daemon = await running(tmp_path / "state", Notifier(manager.address, watchdog_interval=5.0))
    async with trio.open_nursery() as nursery:
        await nursery.start(daemon.run)
        pings = await manager.pings(57.5)
        daemon.stop()
    assert len(pings) == 12  # one at once, then every 5 s
    assert [round(b - a, 3) for a, b in zip(pings, pings[1:])] == [5.0] * 11


async def test_a_wedged_writer_withholds_the_watchdog_until_it_moves_again(tmp_path, clock_past_threads):
    manager = await NotifySocket(str(tmp_path / "notify.sock")).bind()
    daemon = await running(tmp_path / "state", Notifier(manager.address, watchdog_interval=5.0))
    release = threading.Event()
    async with trio.open_nursery() as nursery:
        await nursery.start(daemon.run)
        assert len(await manager.pings(12.0)) == 3
        nursery.start_soon(daemon.store.run_in_writer, lambda conn: release.wait())  # a write that does not end
        await manager.pings(6.0)  # past one interval: the writer is wedged from here on
        assert await manager.pings(60.0) == []
        release.set()
        assert len(await manager.pings(12.0)) >= 2
        daemon.stop()


async def test_status_reports_agents_and_events_per_second(tmp_path, virtual_clock):
    manager = await NotifySocket(str(tmp_path / "notify.sock")).bind()
    daemon = await running(tmp_path / "state", Notifier(manager.address))
    async with trio.open_nursery() as nursery:
        address = (await nursery.start(daemon.run))[0]
        token = (tmp_path / "state" / "token").read_text().strip()
        async with agent(Running(daemon, address, token), "a1") as a:
            await a.hello()
            await a.batch(range(1, 51))
            await a.until_ack(50)
            status = await manager.next("STATUS")
            while "READY" in status:
                status = await manager.next("STATUS")
            assert status["STATUS"] == "1 agents connected, 10.0 events/s, 50 stored since start, 0 watchers"
        daemon.stop()


# --- socket activation ---

ACTIVATE = (
    "import os, sys; os.dup2(int(sys.argv[1]), 3); os.environ['LISTEN_PID'] = str(os.getpid()); "
    "os.execv(sys.executable, [sys.executable, '-m', 'agentwatch', *sys.argv[2:]])"
)


def activated(listener: socket.socket, state_dir, *args, env=None):
    """``agentwatch serve`` started as systemd starts it: the socket at fd 3, LISTEN_* set."""
    log = (state_dir.parent / "activated.log").open("ab")
    environ = {**os.environ, "LISTEN_FDS": "1", "LISTEN_FDNAMES": "agentwatch", **(env or {})}
    return track(subprocess.Popen(
        [sys.executable, "-c", ACTIVATE, str(listener.fileno()), "serve", "--state-dir", str(state_dir),
         "--log-format", "json", "--listen", "127.0.0.1:1", *args],
        pass_fds=[listener.fileno()], env=environ, stdout=log, stderr=subprocess.STDOUT,
    ))


async def test_a_passed_socket_is_served_and_keeps_clients_waiting_across_a_restart(tmp_path):
    listener = socket.create_server(("127.0.0.1", 0))
    address = "127.0.0.1:%d" % listener.getsockname()[1]
    state_dir = tmp_path / "state"
    first = activated(listener, state_dir)
    log_path = tmp_path / "activated.log"
    await wait_for_line(log_path, "ready", first)
    token = (state_dir / "token").read_text().strip()
    async with agent(Running(None, address, token), "a1") as a:
        await a.hello()
        await a.event(1, {"kind": "output"})
        await a.until_ack(1)
    lines = await wait_for_line(log_path, "socket_activated", first)
    assert lines[-1]["addresses"] == [address] and lines[-1]["names"] == ["agentwatch"]
    first.send_signal(signal.SIGTERM)
    assert await trio.to_thread.run_sync(first.wait, TIMEOUT) == 0

    # Nobody serves the socket now, but the kernel queues the connection: it is not refused.
    async with trio.open_nursery() as nursery:
        welcome: list[dict] = []

        async def connect_while_down() -> None:
            async with agent(Running(None, address, token), "a1") as again:
                welcome.append(await again.hello())

        nursery.start_soon(connect_while_down)
        await trio.sleep(0.5)
        assert not welcome
        second = activated(listener, state_dir)
    assert welcome[0]["acked_seq"] == 1
    second.send_signal(signal.SIGTERM)
    assert await trio.to_thread.run_sync(second.wait, TIMEOUT) == 0
    assert not any(line["event"] == "ready" and line["addresses"] == ["127.0.0.1:1"] for line in read_lines(log_path))
    listener.close()


async def test_systemds_own_socket_activator_starts_it_on_the_first_connection(tmp_path):
    tool = shutil.which("systemd-socket-activate")
    if tool is None:
        pytest.skip("systemd-socket-activate is not installed (apt-get install systemd); CI installs it")
    probe = socket.create_server(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    address = f"127.0.0.1:{port}"
    probe.close()
    state_dir, log_path = tmp_path / "state", tmp_path / "activated.log"
    with log_path.open("ab") as log:
        proc = track(subprocess.Popen(
            [tool, "-l", address, "--fdname=agentwatch", sys.executable, "-m", "agentwatch", "serve",
             "--state-dir", str(state_dir), "--log-format", "json"],
            stdout=log, stderr=subprocess.STDOUT,
        ))
    with trio.fail_after(TIMEOUT):
        while "Listening on" not in log_path.read_text():
            await trio.sleep(0.02)
    stream = await trio.open_tcp_stream("127.0.0.1", port)  # the first connection starts the daemon
    lines = await wait_for_line(log_path, "ready", proc)
    await stream.aclose()
    token = (state_dir / "token").read_text().strip()
    async with agent(Running(None, address, token), "a1") as a:
        await a.hello()
        await a.event(1, {"kind": "output"})
        await a.until_ack(1)
    [activated_line] = await wait_for_line(log_path, "socket_activated", proc)
    assert activated_line["names"] == ["agentwatch"] and lines[0]["addresses"] == [address]
    proc.send_signal(signal.SIGTERM)
    assert await trio.to_thread.run_sync(proc.wait, TIMEOUT) == 0


async def test_a_passed_file_that_is_not_a_listening_socket_stops_start_up(tmp_path):
    plain = socket.socket()  # a socket, but not listening
    proc = activated(plain, tmp_path / "state")
    assert await trio.to_thread.run_sync(proc.wait, TIMEOUT) == 2
    text = (tmp_path / "activated.log").read_text()
    assert "fd 3 (agentwatch) passed in LISTEN_FDS is not a listening stream socket" in text
    plain.close()


def test_sockets_meant_for_another_process_are_left_alone():
    environ = {"LISTEN_PID": str(os.getpid() + 1), "LISTEN_FDS": "1", "LISTEN_FDNAMES": "x"}
    assert inherited_sockets(environ) == []
    assert environ == {}, "the variables are this process's to consume either way"
    assert inherited_sockets({}) == []
    with pytest.raises(ActivationError, match="LISTEN_FDS='many' is not a number"):
        inherited_sockets({"LISTEN_PID": str(os.getpid()), "LISTEN_FDS": "many"})


def read_lines(path):
    """The daemon's JSON lines (systemd-socket-activate writes lines of its own)."""
    return [json.loads(line) for line in path.read_text().splitlines() if line.startswith("{")]


async def wait_for_line(path, event, proc):
    with trio.fail_after(TIMEOUT):
        while True:
            lines = [line for line in read_lines(path) if line["event"] == event] if path.exists() else []
            if lines:
                return lines
            assert proc.poll() is None, path.read_text()
            await trio.sleep(0.02)
