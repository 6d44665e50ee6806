"""Resource limits: a client opening many connections, connections that never speak, or an agent
sending as fast as it can, cannot take the daemon from the other agents."""

import resource
import signal
from contextlib import AsyncExitStack

import trio
from prometheus_client.parser import text_string_to_metric_families

from agentwatch.limits import RESERVED_FDS, connection_cap
from agentwatch.plugins.storage import sqlite_store
from helpers import DaemonProcess, Running, agent, running_daemon, watcher

LIMIT = {"AGENTWATCH_SERVER_MAX_CONNECTIONS": "8"}


async def silent(address: str) -> trio.SocketStream:
    host, port = address.rsplit(":", 1)
    return await trio.open_tcp_stream(host, int(port))


async def response_to(stream: trio.SocketStream, timeout: float = 5) -> bytes:
    """What the daemon sends until it closes the connection."""
    received = b""
    with trio.fail_after(timeout):
        while data := await stream.receive_some():
            received += data
    return received


async def test_silent_sockets_cannot_lock_out_a_client_with_the_token(state_dir):
    """Any local process can open sockets that never finish a handshake; when they fill
    server.max_connections, the oldest of them gives way to each newcomer."""
    async with running_daemon(state_dir, LIMIT) as d, agent(d, "steady") as a:
        await a.hello()
        silent_sockets = [await silent(d.address) for _ in range(200)]
        with trio.fail_after(1):  # not the 10 s of the handshake timeout
            async with agent(d, "with-token") as b:
                assert (await b.hello())["type"] == "welcome"
        await a.event(1, {"kind": "output"})
        await a.until_ack(1)
        for stream in silent_sockets[:-8]:  # evicted: told to retry, not left to wait for an answer
            assert (await response_to(stream)).startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
        for stream in silent_sockets:
            await stream.aclose()
    evicted = next(f for f in text_string_to_metric_families(d.daemon.metrics.registry.render())
                   if f.name == "agentwatch_handshakes_evicted").samples[0].value
    assert evicted >= 200 - 7


async def test_the_metrics_endpoint_shares_the_budget_and_its_silent_sockets_give_way_too(state_dir):
    async with running_daemon(state_dir, LIMIT | {"AGENTWATCH_METRICS_LISTEN": "127.0.0.1:0"}) as d:
        [metrics] = d.daemon.metrics_addresses
        silent_sockets = [await silent(metrics) for _ in range(50)]
        with trio.fail_after(1):  # each socket of the metrics endpoint takes a slot
            while d.daemon.admission.open < 8 or d.daemon.metrics.evicted.value < 50 - 8:
                await trio.sleep(0.01)
        with trio.fail_after(1):
            async with agent(d, "with-token") as a:
                assert (await a.hello())["type"] == "welcome"
            scrape = await silent(metrics)
            await scrape.send_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n")
            assert (await response_to(scrape)).startswith(b"HTTP/1.1 200 OK\r\n")
        for stream in silent_sockets:
            await stream.aclose()


async def test_when_every_slot_is_an_established_connection_a_newcomer_gets_503(state_dir):
    async with running_daemon(state_dir, LIMIT) as d, AsyncExitStack() as stack:
        watchers = [await stack.enter_async_context(watcher(d)) for _ in range(7)]
        a = await stack.enter_async_context(agent(d, "steady"))
        await a.hello()
        refused = [await silent(d.address) for _ in range(20)]
        for stream in refused:
            answer = await response_to(stream)
            assert answer.startswith(b"HTTP/1.1 503 Service Unavailable\r\n") and b"server.max_connections" in answer
            await stream.aclose()
        await a.event(1, {"kind": "output"})
        await a.until_ack(1)
        assert [(await w.call("status"))["agents_connected"] for w in watchers] == [1] * 7
        await stack.aclose()
        await trio.sleep(0.05)
        async with agent(d, "newcomer") as b:  # slots are free again
            assert (await b.hello())["type"] == "welcome"


async def test_a_connection_that_never_completes_its_handshake_is_dropped(state_dir, virtual_clock):
    async with running_daemon(state_dir) as d:
        stream = await silent(d.address)
        await stream.send_all(b"GET /v1/watch HTTP/1.1\r\nHost: x\r\n")  # and never the rest
        assert await response_to(stream, timeout=10.5) == b"", "closed at HANDSHAKE_TIMEOUT, 10 s of virtual time"
        async with agent(d, "a1") as a:
            await a.hello()


async def test_the_daemon_raises_its_open_file_limit_and_says_how_many_it_takes(tmp_path):
    daemon = DaemonProcess(tmp_path / "state")
    await daemon.ready()
    limits = open(f"/proc/{daemon.proc.pid}/limits").read()
    daemon.proc.send_signal(signal.SIGTERM)
    assert await daemon.wait() == 0
    [soft, hard] = next(line for line in limits.splitlines() if line.startswith("Max open files")).split()[3:5]
    assert soft == hard or hard == "unlimited"
    [ready] = [line for line in daemon.lines() if line["event"] == "ready"]
    assert ready["max_connections"] == connection_cap(4096, resource.getrlimit(resource.RLIMIT_NOFILE)[1])


def test_the_cap_leaves_descriptors_for_the_store_and_listeners():
    assert connection_cap(4096, 1 << 20) == 4096
    assert connection_cap(4096, 1024) == 1024 - RESERVED_FDS
    assert connection_cap(10, 20) == 1


FLOOD_FRAME = 50  # events a flood frame
COMMIT = 100  # events a commit, for this test


def write_queue_bytes(d: Running) -> float:
    """The daemon's own gauge of what waits for its writer."""
    for family in text_string_to_metric_families(d.daemon.metrics.registry.render()):
        if family.name == "agentwatch_write_queue_bytes":
            return family.samples[0].value
    raise AssertionError("no agentwatch_write_queue_bytes metric")


async def test_an_agent_flooding_a_slow_disk_delays_another_agents_event_by_a_commit_at_most(state_dir, disk, monkeypatch):
    monkeypatch.setattr(sqlite_store, "MAX_EVENTS_PER_COMMIT", COMMIT)
    disk.sync_delay = 0.02  # every commit takes 20 ms or more: the flood outruns the writer and queues
    settings = {"AGENTWATCH_STORAGE_QUEUE_BYTES": "256KiB", "AGENTWATCH_SERVER_PING_INTERVAL": "1d"}
    async with running_daemon(state_dir, settings) as d, agent(d, "flood") as flood, agent(d, "quiet") as quiet:
        await flood.hello()
        await quiet.hello()
        flood_acked = 0

        async def send_flood() -> None:
            for first in range(1, 10**9, FLOOD_FRAME):
                await flood.batch(range(first, first + FLOOD_FRAME), lambda seq: {"kind": "output", "text": "x"})

        async def read_flood_acks() -> None:
            nonlocal flood_acked
            while True:
                frame = await flood.recv()
                assert frame["type"] == "ack", frame
                flood_acked = frame["seq"]

        async with trio.open_nursery() as nursery:
            nursery.start_soon(send_flood)
            nursery.start_soon(read_flood_acks)
            with trio.fail_after(10):
                while write_queue_bytes(d) < 200 * 1024:  # the flood filled the queue
                    await trio.sleep(0.01)
            backlog, before = write_queue_bytes(d), flood_acked
            await quiet.event(1, {"kind": "output", "text": "needs you"})
            await quiet.until_ack(1)
            overtaken, still_queued = flood_acked - before, write_queue_bytes(d)
            disk.sync_delay = 0
            nursery.cancel_scope.cancel()

    # In arrival order the quiet event would have waited for the whole backlog: about 3000 events.
    assert overtaken <= 3 * COMMIT + FLOOD_FRAME, f"{overtaken} flood events were committed first (backlog {backlog:.0f} bytes)"
    assert still_queued > 100 * 1024, "the flood still had its backlog when the quiet event was acknowledged"
