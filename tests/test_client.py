"""agentwatch.client against a real daemon: discovery, calls, subscriptions, and an agent's stream with resends."""

import socket

import pytest
import trio
import trio.testing

from agentwatch import client
from agentwatch.client import ClientError, DaemonNotRunning, RpcError, find_daemon, open_agent, open_watch
from agentwatch.config import Overrides, load_config
from helpers import running_daemon, stored

QUIET = {"AGENTWATCH_RETENTION_INTERVAL": "100d"}


def endpoint_of(state_dir, **environ):
    """What a client on this machine finds: the daemon.json and token file of ``state_dir``."""
    return find_daemon(load_config(Overrides(state_dir=state_dir), environ), environ)


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


async def test_a_script_finds_the_daemon_and_follows_an_agent(state_dir):
    async with running_daemon(state_dir, QUIET) as d:
        endpoint = endpoint_of(state_dir)
        assert str(endpoint) == d.address, "found through daemon.json, with the token from the token file"
        async with open_watch(endpoint) as watch, open_agent("bot", agent={"name": "refactor-bot"}, endpoint=endpoint) as bot:
            assert (await watch.call("status"))["agents_connected"] == 1
            async with watch.subscribe("events", agent_id="bot") as events:
                seqs = [await bot.send({"kind": "output", "text": f"line {n}"}) for n in range(3)]
                received = []
                async for note in events:
                    received.append(note.params["event"]["data"]["text"])
                    if len(received) == 3:
                        break
            await bot.wait_acked()
            assert bot.acked_seq == 3 and bot.unacked == 0
            with pytest.raises(RpcError, match="no method 'nope'") as error:
                await watch.call("nope")
            assert error.value.code == -32601
            assert (await watch.call("status"))["subscriptions"] == 0, "leaving the block unsubscribed"
    assert seqs == [1, 2, 3]
    assert received == ["line 0", "line 1", "line 2"]


async def test_seq_continues_from_what_the_daemon_acknowledged(state_dir):
    async with running_daemon(state_dir, QUIET) as d:
        endpoint = endpoint_of(state_dir)
        async with open_agent("a1", endpoint=endpoint) as first:
            for n in range(5):
                await first.send({"kind": "output", "text": str(n)})
        async with open_agent("a1", endpoint=endpoint) as second:  # a restarted program
            assert second.acked_seq == 5
            assert await second.send({"kind": "output", "text": "after restart"}) == 6
        assert [e["seq"] for e in await stored(d, "a1")] == [1, 2, 3, 4, 5, 6]


async def test_the_agent_client_resends_across_a_daemon_restart(state_dir):
    port = free_port()
    endpoint = None
    async with trio.open_nursery() as nursery:
        restarted = trio.Event()

        async def agent_side(task_status=trio.TASK_STATUS_IGNORED):
            async with open_agent("a1", endpoint=endpoint) as a1:
                task_status.started(a1)
                for n in range(1, 301):
                    await a1.send({"kind": "output", "text": str(n)})
                    if n == 100:
                        await a1.wait_acked()
                        task_status_done.set()
                        await restarted.wait()
                await a1.wait_acked()

        task_status_done = trio.Event()
        async with running_daemon(state_dir, QUIET, port=port):
            endpoint = endpoint_of(state_dir)
            a1 = await nursery.start(agent_side)
            await task_status_done.wait()
        # The daemon is down: events queue in the client, unacknowledged.
        await trio.sleep(0.3)
        restarted.set()
        await trio.sleep(0.3)
        assert a1.unacked > 0
        async with running_daemon(state_dir, QUIET, port=port) as d:
            with trio.fail_after(20):
                await a1.wait_acked()
            events = await stored(d, "a1")
    assert [e["seq"] for e in events] == list(range(1, 301))
    assert [e["data"]["text"] for e in events] == [str(n) for n in range(1, 301)]


async def test_a_subscriber_that_iterates_slowly_gets_a_gap(state_dir, monkeypatch):
    monkeypatch.setattr(client.watch, "CLIENT_BACKLOG", 10)
    async with running_daemon(state_dir, QUIET):
        endpoint = endpoint_of(state_dir)
        async with open_watch(endpoint) as watch, open_agent("a1", endpoint=endpoint) as a1:
            async with watch.subscribe("events") as events:
                for n in range(50):
                    await a1.send({"kind": "output", "text": str(n)})
                await a1.wait_acked()
                await trio.testing.wait_all_tasks_blocked(0.05)  # the daemon (in this process) has sent all, the client read all
                notes = []
                async for note in events:
                    notes.append(note)
                    if note.method == "gap":
                        break
    assert [n.params["event"]["seq"] for n in notes[:-1]] == list(range(1, 11))
    assert notes[-1].params == {"skipped": 40}


async def test_no_daemon_is_said_plainly(state_dir, tmp_path):
    with pytest.raises(DaemonNotRunning, match="no token file"):
        endpoint_of(tmp_path / "never-started")
    async with running_daemon(state_dir, QUIET):
        endpoint = endpoint_of(state_dir, AGENTWATCH_URL=f"ws://127.0.0.1:{free_port()}")
    with pytest.raises(DaemonNotRunning, match="nothing answers at 127.0.0.1"):
        async with open_watch(endpoint):
            pass
    with pytest.raises(ClientError, match="AGENTWATCH_URL = 'http//x' is not allowed"):
        endpoint_of(state_dir, AGENTWATCH_URL="http//x")


async def test_a_wrong_token_is_refused_with_a_hint(state_dir):
    async with running_daemon(state_dir, QUIET):
        endpoint = endpoint_of(state_dir, AGENTWATCH_TOKEN="wrong")
        with pytest.raises(ClientError, match=r"refused the connection \(HTTP 401\): wrong token"):
            async with open_watch(endpoint):
                pass
