"""The following commands in-process against a real daemon, on virtual time: ``attention --watch``
(on a real terminal, and piped) and ``tail`` (across a daemon restart, and across a gap in the
client's own backlog), and the cancel-safe :class:`agentwatch.client.Subscription` under them."""

import argparse
import fcntl
import io
import json
import os
import socket
import struct
import termios

import pytest
import trio

from agentwatch import watch_commands
from agentwatch.client import DaemonGone, DaemonNotRunning, find_daemon, open_agent, open_watch
from agentwatch.client import watch as client_watch
from agentwatch.config import Overrides, load_config
from agentwatch.watch_commands import Output
from helpers import running_daemon, stored

QUIET = {"AGENTWATCH_RETENTION_INTERVAL": "100d"}
TURN = [{"kind": "prompt", "text": "go"}, {"kind": "output", "text": "working on it"}, {"kind": "turn_completed", "text": "done"}]
ENTER, LEAVE, HOME = b"\x1b[?1049h", b"\x1b[?1049l", b"\x1b[H"


def finder(state_dir):
    """How the commands find the daemon: from ``daemon.json`` in ``state_dir`` (no environment)."""
    return lambda: find_daemon(load_config(Overrides(state_dir=state_dir), {}), {})


async def send(state_dir, agent_id, records):
    """Stream ``records`` in as ``agent_id`` and wait until the daemon has stored them all."""
    async with open_agent(agent_id, endpoint=finder(state_dir)()) as a:
        for record in records:
            await a.send(record)


async def wait_for_subscriptions(state_dir, count=1):
    """Until the daemon serves ``count`` subscriptions (the command under test is following)."""
    with trio.fail_after(30):
        async with open_watch(finder(state_dir)()) as watch:
            while (await watch.call("status"))["subscriptions"] < count:
                await trio.sleep(0.1)  # virtual: each sleep costs 20 ms of real idleness


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Lines(io.StringIO):
    """A piped stdout (not a terminal) that a test can wait on."""

    def __init__(self):
        super().__init__()
        self._written = trio.Event()

    def write(self, text):
        self._written.set()
        self._written = trio.Event()
        return super().write(text)

    def lines(self):
        return self.getvalue().splitlines()

    async def until(self, predicate, timeout=30):
        """Wait until ``predicate(self)`` holds (checked after every write)."""
        with trio.fail_after(timeout):
            while not predicate(self):
                await self._written.wait()


def attention_args(**options):
    return argparse.Namespace(**({"command": "attention", "watch": True, "reconnect": False, "json": False} | options))


def tail_args(**options):
    return argparse.Namespace(**({"command": "tail", "agent": None, "kind": None, "reconnect": True, "json": True} | options))


# --- Subscription ---


async def test_waiting_for_a_notification_can_time_out_again_and_again(state_dir, virtual_clock):
    """``Subscription`` is cancel-safe: ``move_on_after`` around ``__anext__`` timing out several
    times in a row loses nothing and ends nothing; the next real notification still arrives.
    (An async generator there was finished by the first timeout: StopAsyncIteration after it.)"""
    async with running_daemon(state_dir, QUIET):
        async with open_watch(finder(state_dir)()) as watch, watch.subscribe("attention") as feed:
            first = await feed.__anext__()
            assert (first.method, first.params["items"]) == ("attention", [])
            for _ in range(4):
                with trio.move_on_after(5) as waited:
                    await feed.__anext__()
                assert waited.cancelled_caught, "nothing changed: nothing to hear"
            await send(state_dir, "agent-1", TURN)
            with trio.fail_after(5):
                note = await feed.__anext__()
    assert note.method == "attention"
    assert [(item["agent_id"], item["state"]) for item in note.params["items"]] == [("agent-1", "awaiting_reply")]


async def test_cancelling_the_block_around_a_subscription_raises_nothing(state_dir, virtual_clock):
    """A program that cancels the scope around its connection (here: the task itself, right after
    a notification; the same happens at random when another task cancels it) leaves cleanly.

    It raised ``DaemonGone`` ("went away"), with the daemon still running: on leaving, the shielded
    ``unsubscribe`` call waited for a reply that the connection's reader, cancelled by the same
    scope, never read, and the reader's end failed the call."""
    async with running_daemon(state_dir, QUIET):
        raised = None
        try:
            with trio.CancelScope() as scope:
                async with open_watch(finder(state_dir)()) as watch:
                    async with watch.subscribe("attention") as feed:
                        await feed.__anext__()
                        scope.cancel()  # it has what it waited for
        except BaseException as exc:  # noqa: BLE001
            raised = exc
        async with open_watch(finder(state_dir)()) as watch:
            status = await watch.call("status")
    assert scope.cancelled_caught and raised is None, f"leaving a cancelled scope raised {raised!r}"
    assert status["subscriptions"] == 0


async def test_cancelling_the_block_around_a_connection_ends_it_at_once(state_dir, virtual_clock):
    """A connection cancelled from outside (``move_on_after`` around ``open_watch``, or a nursery
    running ``tail`` being cancelled) is left at once.

    It took 5 s more: the cancel also reaches trio-websocket's reader task, and the closing handshake
    waited for a closing frame nobody read, until ``CLOSE_TIMEOUT``."""
    async with running_daemon(state_dir, QUIET):
        started = trio.current_time()
        with trio.move_on_after(1):
            async with open_watch(finder(state_dir)()) as watch:
                await watch.call("status")
                await trio.sleep_forever()
        took = trio.current_time() - started
    assert took == pytest.approx(1, abs=0.5), f"left {took:g} s after it began, not 1 s: the close timeout ran out"


async def cancelled(command, *args):
    """Run a following command until it is cancelled."""
    await command(*args)


# --- attention --watch ---


class Terminal:
    """A real terminal (a pty) of ``rows`` x ``columns``: ``stream`` is its slave side for an
    ``Output``; what the program shows there accumulates in ``received`` (read from the master)."""

    def __init__(self, rows=24, columns=100):
        self.master, self.slave = os.openpty()
        fcntl.ioctl(self.slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
        self.stream = open(self.slave, "w", encoding="utf-8", closefd=False)  # noqa: SIM115
        self.received = b""
        self._arrived = trio.Event()

    async def read(self):
        async with trio.lowlevel.FdStream(os.dup(self.master)) as master:
            while data := await master.receive_some():
                self.received += data
                self._arrived.set()
                self._arrived = trio.Event()

    async def until(self, predicate, timeout=30):
        with trio.fail_after(timeout):
            while not predicate(self.received):
                await self._arrived.wait()

    def close(self):
        self.stream.close()
        os.close(self.slave)
        os.close(self.master)


@pytest.fixture
def terminal():
    term = Terminal()
    yield term
    term.close()


async def test_on_a_terminal_the_feed_is_redrawn_in_place_through_quiet_minutes(state_dir, virtual_clock, terminal):
    """``attention --watch`` on a terminal takes the alternate screen, redraws about every 5 s while
    nothing happens (a quiet minute does not end it), shows a turn that completed at once, and
    gives the screen back when stopped."""
    out = Output(terminal.stream, False, {})
    assert out.terminal and out.width == 100

    async with running_daemon(state_dir, QUIET), trio.open_nursery() as reading:
        reading.start_soon(terminal.read)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(cancelled, watch_commands._follow_attention, attention_args(), out, finder(state_dir))
            await terminal.until(lambda seen: b"Nothing needs you." in seen)
            await trio.sleep(60)
            await terminal.until(lambda seen: seen.count(HOME) >= 12)  # what was written is read by now
            quiet = terminal.received
            assert quiet.startswith(ENTER) and LEAVE not in quiet
            assert 12 <= quiet.count(HOME) <= 15, quiet.count(HOME)
            assert b"awaiting_reply" not in quiet

            await send(state_dir, "agent-1", TURN)
            stored_at = trio.current_time()
            await terminal.until(lambda seen: b"awaiting_reply" in seen[len(quiet):])
            assert trio.current_time() - stored_at < 1, "drawn at once, not at the next redraw"
            row = next(line for line in terminal.received[len(quiet):].split(b"\n") if b"awaiting_reply" in line)
            assert b"agent-1" in row and b"done" in row, row
            nursery.cancel_scope.cancel()
        await terminal.until(lambda seen: LEAVE in seen)
        reading.cancel_scope.cancel()
    assert terminal.received.rstrip(b"\r\n").endswith(LEAVE)


def prints(stream, as_json):
    """What ``attention --watch`` printed into a pipe: one list per print (JSON), or one text block per print."""
    if as_json:
        return [json.loads(line) for line in stream.lines()]
    return stream.getvalue().split("agentwatch attention")[1:]


@pytest.mark.parametrize("as_json", [False, True], ids=["human", "json"])
async def test_piped_the_feed_is_printed_once_and_again_only_when_it_changed(state_dir, virtual_clock, capsys, as_json):
    """``attention --watch`` into a pipe prints the list once, not every 5 s: again only when an item
    came or changed. A feed that differs only in ``waiting_s`` (here: sent again by a restarted
    daemon, a minute later) is not printed again."""
    port = free_port()
    find = lambda: find_daemon(load_config(Overrides(state_dir=state_dir, listen=[f"127.0.0.1:{port}"]), {}), {})  # noqa: E731
    stream = Lines()
    out = Output(stream, as_json, {})
    assert not out.terminal
    async with trio.open_nursery() as nursery:
        async with running_daemon(state_dir, QUIET, port=port):
            nursery.start_soon(cancelled, watch_commands._follow_attention, attention_args(reconnect=True, json=as_json), out, find)
            await stream.until(lambda s: len(prints(s, as_json)) == 1)
            await trio.sleep(60)
            assert len(prints(stream, as_json)) == 1, "a quiet minute prints nothing more"

            await send(state_dir, "agent-1", TURN)
            await stream.until(lambda s: len(prints(s, as_json)) == 2)
            await trio.sleep(60)
        capsys.readouterr()
        async with running_daemon(state_dir, QUIET, port=port):
            await wait_for_subscriptions(state_dir)
            async with open_watch(find()) as watch:
                [again] = (await watch.call("attention.list"))["items"]
            assert again["waiting_s"] >= 60, "the restarted daemon sends the same item, waiting longer"
            await trio.sleep(1)
            await send(state_dir, "agent-2", TURN)
            await stream.until(lambda s: len(prints(s, as_json)) >= 3)
            await trio.sleep(10)
            nursery.cancel_scope.cancel()
    assert "the daemon is back" in capsys.readouterr().err
    empty, one, two = prints(stream, as_json)  # the list sent again after the restart was not printed
    if as_json:
        assert empty == []
        assert [(item["agent_id"], item["state"]) for item in one] == [("agent-1", "awaiting_reply")]
        assert one[0]["waiting_s"] < 5
        assert [(item["agent_id"], item["state"]) for item in two] == [("agent-1", "awaiting_reply"), ("agent-2", "awaiting_reply")]
        assert two[0]["waiting_s"] >= 60
    else:
        assert "Nothing needs you." in empty and "awaiting_reply" not in empty
        assert [line.split()[:2] for line in one.splitlines()[2:] if line] == [["awaiting_reply", "agent-1"]]
        assert [line.split()[:2] for line in two.splitlines()[2:] if line] == [["awaiting_reply", "agent-1"], ["awaiting_reply", "agent-2"]]


# --- tail ---


def outputs(agent_id, first, count):
    return [{"kind": "output", "text": f"{agent_id} {seq}"} for seq in range(first, first + count)]


class Gate:
    """How ``tail`` finds the daemon, on ``port``; while the test keeps it shut, "not running" (so
    the test decides when a waiting ``tail`` may reconnect). It notes when it was asked."""

    def __init__(self, state_dir, port):
        self.config = load_config(Overrides(state_dir=state_dir, listen=[f"127.0.0.1:{port}"]), {})
        self.shut = False
        self.refused = []  # when it was asked while shut (virtual seconds)

    def __call__(self):
        if self.shut:
            self.refused.append(trio.current_time())
            raise DaemonNotRunning("not yet (the test's gate)")
        return find_daemon(self.config, {})


def printed_by_agent(stream):
    """The events ``tail --json`` printed, by agent, in the order printed."""
    by_agent = {}
    for line in stream.lines():
        event = json.loads(line)
        by_agent.setdefault(event["agent_id"], []).append(event)
    return by_agent


@pytest.mark.parametrize("only", [None, "agent-a", "agent-c"], ids=["every agent", "--agent known", "--agent new"])
async def test_tail_reconnect_loses_nothing_and_repeats_nothing_across_a_restart(state_dir, virtual_clock, capsys, only):
    """``tail --reconnect --json`` prints every event stored after it started, once each, in seq order
    per agent: what came while the daemon was stopped and restarted (before tail was back, for the
    agents it knew and for a new one) is read from the store; what was stored before it started
    is not printed. It retries after 0.5, 1, 2, 4, 5, 5... s. With ``--agent`` only that agent's."""
    port = free_port()
    gate = Gate(state_dir, port)
    stream = Lines()
    sent = dict.fromkeys(("agent-a", "agent-b", "agent-c"), 0)  # events sent since tail started

    async def more(agent_id, records):
        await send(state_dir, agent_id, records)
        sent[agent_id] += len(records)

    def due():
        return sum(count for agent_id, count in sent.items() if only in (None, agent_id))

    async with trio.open_nursery() as nursery:
        async with running_daemon(state_dir, QUIET, port=port):
            await send(state_dir, "agent-a", outputs("agent-a", 1, 3))  # before tail: not printed
            await send(state_dir, "agent-b", outputs("agent-b", 1, 2))
            nursery.start_soon(cancelled, watch_commands._tail, tail_args(agent=only), Output(stream, True, {}), gate)
            await wait_for_subscriptions(state_dir)
            await more("agent-a", outputs("agent-a", 4, 3))
            await more("agent-b", outputs("agent-b", 3, 2))
            await stream.until(lambda s: len(s.lines()) >= due())
            gate.shut = True
        # the daemon stopped; tail waits for it while another one starts and events come
        async with running_daemon(state_dir, QUIET, port=port) as again:
            shown_before = due()
            await more("agent-a", TURN)
            await more("agent-b", outputs("agent-b", 5, 4))
            await more("agent-c", outputs("agent-c", 1, 5))  # an agent tail has not heard of
            await trio.sleep(20)
            assert len(stream.lines()) == shown_before, "tail is not back yet"
            gate.shut = False
            await stream.until(lambda s: len(s.lines()) >= due())
            for agent_id in ("agent-c", "agent-b", "agent-a"):
                await more(agent_id, outputs(agent_id, 100, 2))
            await stream.until(lambda s: len(s.lines()) >= due())
            await trio.sleep(10)  # nothing more, nothing twice
            stored_now = {agent_id: await stored(again, agent_id) for agent_id in sent}
            nursery.cancel_scope.cancel()

    before_tail = {"agent-a": 3, "agent-b": 2, "agent-c": 0}
    expected = {
        agent_id: [event for event in events if event["seq"] > before_tail[agent_id]]
        for agent_id, events in stored_now.items() if only in (None, agent_id)
    }
    assert printed_by_agent(stream) == expected
    assert len(stream.lines()) == due() == sum(map(len, expected.values()))
    retries = [later - earlier for earlier, later in zip(gate.refused, gate.refused[1:])]
    assert len(retries) >= 5 and retries == pytest.approx([1, 2, 4, 5] + [5] * (len(retries) - 4)), retries
    notices = capsys.readouterr().err
    assert "stopped; waiting for it to come back" in notices and "the daemon is back" in notices, notices


async def test_without_reconnect_tail_says_the_daemon_stopped(state_dir, virtual_clock):
    """Without ``--reconnect``, ``tail`` ends with ``DaemonGone`` when the daemon shuts down, and its
    message says it stopped (the daemon closes with 1001), not a bare close code."""
    raised = []

    async def tail():
        try:
            await watch_commands._tail(tail_args(reconnect=False), Output(Lines(), True, {}), finder(state_dir))
        except DaemonGone as exc:
            raised.append(exc)

    async with trio.open_nursery() as nursery:
        async with running_daemon(state_dir, QUIET):
            nursery.start_soon(tail)
            await wait_for_subscriptions(state_dir)
    [gone] = raised
    assert "stopped" in str(gone) and "1006" not in str(gone) and "code" not in str(gone), gone


async def test_run_exits_3_and_suggests_reconnect_when_the_daemon_stops_under_tail(state_dir, monkeypatch, capsys):
    """``run()`` (what ``agentwatch tail`` calls) turns the daemon stopping under ``tail`` into exit
    status 3 and one line on stderr that suggests ``--reconnect``."""
    for name in ("AGENTWATCH_URL", "AGENTWATCH_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    config = load_config(Overrides(state_dir=state_dir), {})
    status = []
    async with trio.open_nursery() as nursery:
        async with running_daemon(state_dir, QUIET):

            async def in_a_thread():  # run() runs Trio itself
                status.append(await trio.to_thread.run_sync(watch_commands.run, config, tail_args(reconnect=False)))

            nursery.start_soon(in_a_thread)
            await wait_for_subscriptions(state_dir)
    captured = capsys.readouterr()
    assert status == [3]
    assert captured.out == ""
    [line] = captured.err.splitlines()
    assert line.startswith("agentwatch: the daemon at ") and "stopped" in line, line
    assert line.endswith(". Add --reconnect to wait for it to come back"), line


async def test_a_gap_in_the_clients_own_backlog_is_filled_from_the_store(state_dir, virtual_clock, monkeypatch):
    """When ``tail`` is busy (here: held in its first catch-up, after the daemon answered it) while a
    burst arrives, the client's backlog of 2 keeps two events and counts the rest as a gap; ``tail``
    reads what the gap skipped from the store: every event is printed exactly once, in order."""
    burst = 20 + 5
    monkeypatch.setattr(client_watch, "CLIENT_BACKLOG", 2)
    kept = []  # for each event notification that reached the client: whether its backlog kept it
    burst_arrived = trio.Event()

    class Observed(client_watch.Backlog):
        def offer(self, item, size=0):
            taken = super().offer(item, size)
            if item.method == "event":
                kept.append(taken)
                if len(kept) == burst:
                    burst_arrived.set()
            return taken

    monkeypatch.setattr(client_watch, "Backlog", Observed)
    agents_lists = []
    holding, release = trio.Event(), trio.Event()
    real_call = client_watch.WatchClient.call

    async def call(self, method, **params):
        result = await real_call(self, method, **params)
        if method == "agents.list":
            agents_lists.append(result)
            if len(agents_lists) == 2:  # the catch-up right after subscribing
                holding.set()
                await release.wait()
        return result

    monkeypatch.setattr(client_watch.WatchClient, "call", call)
    stream = Lines()
    async with trio.open_nursery() as nursery:
        async with running_daemon(state_dir, QUIET) as running:
            await send(state_dir, "agent-a", outputs("agent-a", 1, 3))  # before tail: not printed
            nursery.start_soon(cancelled, watch_commands._tail, tail_args(reconnect=False), Output(stream, True, {}), finder(state_dir))
            await holding.wait()
            await send(state_dir, "agent-a", outputs("agent-a", 4, 20))
            await send(state_dir, "agent-b", outputs("agent-b", 1, 5))
            with trio.fail_after(30):
                await burst_arrived.wait()
            assert kept == [True, True] + [False] * (burst - 2), "two kept, the rest a gap"
            release.set()
            await stream.until(lambda s: len(s.lines()) >= burst)
            await send(state_dir, "agent-a", outputs("agent-a", 24, 2))  # after the gap, live again
            await stream.until(lambda s: len(s.lines()) >= burst + 2)
            await trio.sleep(10)
            stored_now = {agent_id: await stored(running, agent_id) for agent_id in ("agent-a", "agent-b")}
            nursery.cancel_scope.cancel()
    assert printed_by_agent(stream) == {"agent-a": stored_now["agent-a"][3:], "agent-b": stored_now["agent-b"]}
    assert len(stream.lines()) == burst + 2
    assert len(agents_lists) == 3, "the gap was filled by a catch-up from the store"
    assert kept[-2:] == [True, True], "after the gap, events are kept again"

