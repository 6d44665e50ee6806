"""Resource limits: a client opening many connections, or connections that never speak, cannot
take the daemon from the agents already on it."""

import resource
import signal

import trio

from agentwatch.limits import RESERVED_FDS, connection_cap
from helpers import DaemonProcess, agent, running_daemon

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


async def test_over_max_connections_a_client_gets_503_and_the_connected_agent_goes_on(state_dir):
    async with running_daemon(state_dir, LIMIT) as d, agent(d, "steady") as a:
        await a.hello()
        idle = [await silent(d.address) for _ in range(7)]  # with the agent: 8, the limit
        await trio.sleep(0.05)
        refused = [await silent(d.address) for _ in range(20)]
        for stream in refused:
            answer = await response_to(stream)
            assert answer.startswith(b"HTTP/1.1 503 Service Unavailable\r\n") and b"server.max_connections" in answer
        await a.event(1, {"kind": "output"})
        await a.until_ack(1)
        for stream in idle + refused:
            await stream.aclose()
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
