"""Live subscriptions of /v1/watch: the replay seam, slow subscribers, attention coalescing, agents, topics."""

import json
import random
from functools import partial

import pytest
import trio

from agentwatch.hookspecs import hookimpl
from agentwatch.plugin_manager import Plugins
from agentwatch.plugins import watch_topics
from helpers import RpcError, agent, running_daemon, watcher

QUIET = {"AGENTWATCH_RETENTION_INTERVAL": "100d"}


async def ingest(d, agent_id, count, *, batch=50, size=0, start=1, acked=None, pause=0.0, kind=lambda seq: "output"):
    """Send ``count`` events in batches, each acknowledged (and ``pause`` s passed) before the next;
    ``acked`` hears each ack."""
    async with agent(d, agent_id) as a:
        await a.hello()
        for first in range(start, start + count, batch):
            last = min(first + batch, start + count) - 1
            await a.batch(range(first, last + 1), lambda seq: {"kind": kind(seq), "text": f"{seq} " + "x" * size})
            await a.until_ack(last)
            if acked is not None:
                acked(last)
            await trio.sleep(pause)


async def events_until(w, subscription, agent_last):
    """Event notifications of ``subscription`` until every agent's last seq in ``agent_last`` has come."""
    seen = {agent_id: [] for agent_id in agent_last}
    while any(not seqs or seqs[-1] < agent_last[agent_id] for agent_id, seqs in seen.items()):
        note = await w.notification()
        assert note["method"] == "event" and note["params"]["subscription"] == subscription, note
        event = note["params"]["event"]
        seen[event["agent_id"]].append(event["seq"])
    return seen


@pytest.mark.parametrize("one_agent", [True, False], ids=["agent_id", "every agent"])
async def test_replay_then_live_has_no_gap_and_no_duplicate_at_the_seam(state_dir, monkeypatch, one_agent):
    # Small pages and a small hold force many replay rounds while ingest runs at full speed.
    monkeypatch.setattr(watch_topics, "REPLAY_PAGE", 50)
    monkeypatch.setattr(watch_topics, "HELD_WHILE_REPLAYING", 15)
    total = 1500
    async with running_daemon(state_dir, QUIET) as d:
        read_page = d.daemon.store.event_page

        async def slow_read(*args, **kwargs):
            await trio.sleep(0.0015)  # events committed now are both read and held: sent once
            page = await read_page(*args, **kwargs)
            await trio.sleep(0.0015)  # events committed now are held only: sent all the same
            return page

        monkeypatch.setattr(d.daemon.store, "event_page", slow_read)
        async with trio.open_nursery() as nursery:
            started = trio.Event()
            # Paced, so that ingest goes on after the replay has caught up with it.
            ingesting = partial(ingest, batch=10, pause=0.002)
            nursery.start_soon(partial(ingesting, d, "a1", total, acked=lambda seq: seq >= 300 and started.set()))
            nursery.start_soon(partial(ingesting, d, "a2", total // 3))
            await started.wait()
            async with watcher(d) as w:
                params = {"agent_id": "a1"} if one_agent else {}
                sub = (await w.call("subscribe", topics=["events"], after_seq=0, **params))["subscription"]
                seen = await events_until(w, sub, {"a1": total} if one_agent else {"a1": total, "a2": total // 3})
    assert seen["a1"] == list(range(1, total + 1))
    if not one_agent:
        assert seen["a2"] == list(range(1, total // 3 + 1))


@pytest.mark.parametrize("held", [1000, 1], ids=["held then sent", "too many held: read again"])
async def test_events_committed_around_replay_reads_are_sent_exactly_once(state_dir, monkeypatch, held):
    """A deterministic seam. The store's reads are wrapped: an event is committed just before each
    of the first six reads (so it is both read and held), and one just after the first read that
    finds nothing more (so it is held only)."""
    monkeypatch.setattr(watch_topics, "REPLAY_PAGE", 3)
    monkeypatch.setattr(watch_topics, "HELD_WHILE_REPLAYING", held)
    async with running_daemon(state_dir, QUIET) as d:
        await ingest(d, "a1", 20)
        async with agent(d, "a1") as a:
            await a.hello()
            seqs = iter(range(21, 100))
            reads = []

            async def commit_one():
                seq = next(seqs)
                await a.event(seq, {"kind": "output", "text": str(seq)})
                await a.until_ack(seq)

            read_page = d.daemon.store.event_page

            async def read_between_commits(*args, **kwargs):
                if len(reads) < 6:
                    await commit_one()
                page = await read_page(*args, **kwargs)
                reads.append(page[1])
                if reads.count(False) == 1 and not page[1]:
                    await commit_one()
                return page

            monkeypatch.setattr(d.daemon.store, "event_page", read_between_commits)
            async with watcher(d) as w:
                sub = (await w.call("subscribe", topics=["events"], agent_id="a1", after_seq=0))["subscription"]
                seen = await events_until(w, sub, {"a1": 27})
                await commit_one()  # live
                seen["a1"].append((await w.notification())["params"]["event"]["seq"])
    assert len(reads) >= 9
    assert seen["a1"] == list(range(1, 29))


async def test_after_seq_replays_only_what_follows_and_kinds_filter(state_dir):
    async with running_daemon(state_dir, QUIET) as d:
        async with agent(d, "a1") as a:
            await a.hello()
            await a.batch(range(1, 11), lambda seq: {"kind": "tool_use" if seq % 2 else "output", "tool": "Bash"})
            await a.until_ack(10)
            async with watcher(d) as w:
                sub = (await w.call("subscribe", topics=["events"], agent_id="a1", after_seq=4, kinds=["tool_use"]))["subscription"]
                replayed = [(await w.notification())["params"]["event"] for _ in range(3)]
                await a.batch([11, 12], lambda seq: {"kind": "tool_use" if seq % 2 else "output"})
                await a.until_ack(12)
                live = (await w.notification())["params"]
    assert [(e["seq"], e["kind"]) for e in replayed] == [(5, "tool_use"), (7, "tool_use"), (9, "tool_use")]
    assert live["subscription"] == sub and live["event"]["seq"] == 11
    assert set(live["event"]) == {"agent_id", "seq", "session", "kind", "ts", "received_at", "format", "data"}


async def test_without_after_seq_only_live_events_arrive(state_dir):
    async with running_daemon(state_dir, QUIET) as d:
        await ingest(d, "a1", 5)
        async with watcher(d) as w:
            await w.call("subscribe", topics=["events"])
            await ingest(d, "a1", 2, start=6)
            seqs = [(await w.notification())["params"]["event"]["seq"] for _ in range(2)]
    assert seqs == [6, 7]


async def test_a_stalled_subscriber_gets_a_gap_and_slows_neither_ingest_nor_others(state_dir):
    total, size = 3000, 4000  # 12 MB of notifications: more than the socket buffers between them hold
    async with running_daemon(state_dir, {**QUIET, "AGENTWATCH_WATCH_BACKLOG": "300"}) as d:
        async with watcher(d, message_queue_size=1) as stalled, watcher(d) as prompt:
            stalled_sub = (await stalled.call("subscribe", topics=["events"]))["subscription"]
            # The other subscriber wants every tenth event: its backlog holds all of them, so what it
            # gets depends on the stalled one alone, not on how fast this busy process reads.
            prompt_sub = (await prompt.call("subscribe", topics=["events"], kinds=["tool_use"]))["subscription"]
            prompt_seen = []

            async def read_promptly():
                prompt_seen.append(await events_until(prompt, prompt_sub, {"a1": total}))

            async with trio.open_nursery() as nursery:
                nursery.start_soon(read_promptly)
                # Every batch must be acknowledged while one subscriber reads nothing at all.
                with trio.fail_after(60):
                    await ingest(d, "a1", total, batch=100, size=size, kind=lambda seq: "output" if seq % 10 else "tool_use")
            received, skipped = [], 0
            while not skipped:
                note = (await stalled.notification())["params"]
                assert note["subscription"] == stalled_sub
                if "skipped" in note:
                    skipped = note["skipped"]
                else:
                    received.append(note["event"]["seq"])
            await ingest(d, "a1", 1, start=total + 1)  # after the gap, events flow again
            after_gap = (await stalled.notification())["params"]
    assert skipped > 0, "the stalled subscriber should have fallen behind its backlog of 300"
    assert len(received) + skipped == total, "every event is either delivered or counted in the gap"
    assert received == list(range(1, len(received) + 1)), "what was delivered is the start, in order"
    assert after_gap["event"]["seq"] == total + 1
    assert prompt_seen == [{"a1": list(range(10, total + 1, 10))}]


async def test_attention_notifications_are_coalesced(state_dir, virtual_clock):
    async with running_daemon(state_dir, QUIET) as d:
        async with watcher(d) as w:
            sub = (await w.call("subscribe", topics=["attention"]))["subscription"]
            first = await w.notification()
            assert first == {"jsonrpc": "2.0", "method": "attention", "params": {"subscription": sub, "items": []}}
            await trio.sleep(1)
            notes, times, changed_at = [], [], []

            async def read_until_all_six_are_listed():
                while not notes or len(notes[-1]["params"]["items"]) < 6:
                    notes.append(await w.notification())
                    times.append(trio.current_time())

            async with trio.open_nursery() as nursery:
                nursery.start_soon(read_until_all_six_are_listed)
                for n in range(6):  # six changes, 50 ms apart
                    async with agent(d, f"a{n}") as a:
                        await a.hello()
                        await a.batch([1, 2, 3], lambda seq: {"kind": ["prompt", "output", "turn_completed"][seq - 1]})
                        await a.until_ack(3)
                    changed_at.append(trio.current_time())
                    await trio.sleep(0.05)
            with trio.move_on_after(5) as quiet:  # waiting longer is not a change
                await w.notification()
            assert quiet.cancelled_caught
    assert 2 <= len(notes) < 6, "six changes in 300 ms make fewer notifications than changes"
    assert all(later - earlier >= 0.25 for earlier, later in zip(times, times[1:]))
    assert times[-1] - changed_at[-1] <= 0.25 + 0.05
    assert [item["agent_id"] for item in notes[-1]["params"]["items"]] == [f"a{n}" for n in range(6)]


async def test_agents_topic_tells_of_connects_sessions_and_disconnects(state_dir):
    async with running_daemon(state_dir, QUIET) as d:
        async with watcher(d) as w:
            sub = (await w.call("subscribe", topics=["agents"], agent_id="mine"))["subscription"]
            async with agent(d, "other") as a:
                await a.hello()
            async with agent(d, "mine") as a:
                await a.hello(name="refactor-bot", cwd="/p", labels={"team": "x"})
                await a.event(1, {"kind": "context_cleared"})
                await a.until_ack(1)
            notes = [(await w.notification())["params"] for _ in range(3)]
    assert all(note["subscription"] == sub for note in notes)
    assert [(note["change"], note["agent"]["agent_id"]) for note in notes] == [
        ("connected", "mine"), ("session", "mine"), ("disconnected", "mine")
    ]
    assert notes[0]["agent"]["name"] == "refactor-bot" and notes[0]["agent"]["labels"] == {"team": "x"}
    assert notes[1]["agent"]["session"] == 1 and notes[2]["agent"]["code"] == 1000


async def test_many_subscriptions_on_one_connection_and_unsubscribe(state_dir):
    async with running_daemon(state_dir, QUIET) as d:
        async with watcher(d) as w:
            one = (await w.call("subscribe", topics=["events"], agent_id="one"))["subscription"]
            two = (await w.call("subscribe", topics=["events"], agent_id="two"))["subscription"]
            assert one != two
            await ingest(d, "one", 1)
            await ingest(d, "two", 1)
            got = {(n["params"]["subscription"], n["params"]["event"]["agent_id"]) for n in [await w.notification() for _ in range(2)]}
            assert got == {(one, "one"), (two, "two")}
            assert await w.call("unsubscribe", subscription=one) is True
            await ingest(d, "one", 1, start=2)
            await ingest(d, "two", 1, start=2)
            note = await w.notification()
            assert (note["params"]["subscription"], note["params"]["event"]["agent_id"]) == (two, "two")
            assert (await w.call("status"))["subscriptions"] == 1
            with pytest.raises(RpcError, match="no subscription 1 on this connection") as error:
                await w.call("unsubscribe", subscription=one)
            assert error.value.code == -32602
        with trio.fail_after(5):  # the connection's subscriptions end with it
            while True:
                async with watcher(d) as w:
                    if (await w.call("status"))["subscriptions"] == 0:
                        break
                await trio.sleep(0.01)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({}, "topics must name at least one of agents, attention, events"),
        ({"topics": ["events", "gossip"]}, "unknown topics 'gossip'; known: agents, attention, events"),
        ({"topics": "events"}, "topics must be an array of strings"),
        ({"topics": ["events"], "after_seq": -1}, "after_seq must be a whole number"),
        ({"topics": ["events"], "kinds": ["nope"]}, "unknown kinds 'nope'"),
        ({"topics": ["events"], "since": 1}, "subscribe has no param 'since'"),
    ],
)
async def test_bad_subscribe_params_say_what_is_wrong(state_dir, params, message):
    async with running_daemon(state_dir, QUIET) as d:
        async with watcher(d) as w:
            with pytest.raises(RpcError, match=message) as error:
                await w.call("subscribe", **params)
    assert error.value.code == -32602


async def test_the_subscribe_reply_comes_before_the_first_notification(state_dir):
    async with running_daemon(state_dir, QUIET) as d:
        await ingest(d, "a1", 3)
        async with watcher(d) as w:
            await w.ws.send_message(json.dumps(
                {"jsonrpc": "2.0", "id": 7, "method": "subscribe", "params": {"topics": ["attention", "events"], "after_seq": 0}}
            ))
            first = json.loads(await w.ws.get_message())
            rest = [json.loads(await w.ws.get_message()) for _ in range(4)]
    assert first == {"jsonrpc": "2.0", "id": 7, "result": {"subscription": 1}}
    assert sorted(note["method"] for note in rest) == ["attention", "event", "event", "event"]


class TicksPlugin:
    """A third-party topic: one notification per commit; and a topic that fails."""

    def __init__(self):
        self.subscribers = set()

    @hookimpl
    def agentwatch_register_topics(self, register):
        async def ticks(daemon, subscription):
            self.subscribers.add(subscription)
            try:
                await trio.sleep_forever()
            finally:
                self.subscribers.discard(subscription)

        async def broken(daemon, subscription):
            raise RuntimeError("this topic is broken")

        register("ticks", ticks)
        register("broken", broken)

    @hookimpl
    def agentwatch_events_stored(self, events):
        for subscription in self.subscribers:
            subscription.notify("tick", events=len(events))


async def test_a_plugin_adds_a_topic_and_a_failing_topic_fails_alone(state_dir):
    plugins = Plugins(entry_points=False)
    plugins.manager.register(TicksPlugin(), name="ticks")
    async with running_daemon(state_dir, QUIET, plugins) as d:
        async with watcher(d) as w:
            sub = (await w.call("subscribe", topics=["broken", "ticks"]))["subscription"]
            await ingest(d, "a1", 4, batch=4)
            note = await w.notification()
            status = await w.call("status")
    assert note == {"jsonrpc": "2.0", "method": "tick", "params": {"subscription": sub, "events": 4}}
    assert status["plugin_errors"] == {"ticks": 1}


async def test_events_a_replay_read_before_their_hook_reached_the_topic_are_sent_once(state_dir):
    """A commit is visible to the replay's reads before the stored-events hook brings it to the topic:
    here the hook is held back until the subscription has replayed those events and gone live."""
    async with running_daemon(state_dir, QUIET) as d:
        await ingest(d, "a1", 20)
        [topic] = [impl for impl in d.daemon.plugins.manager.hook.agentwatch_events_stored.get_hookimpls()
                   if impl.plugin_name == "watch-topics"]
        stored, late = topic.function, []
        topic.function = late.append
        await ingest(d, "a1", 5, start=21)
        async with watcher(d) as w:
            sub = (await w.call("subscribe", topics=["events"], after_seq=0))["subscription"]
            seen = await events_until(w, sub, {"a1": 25})
            topic.function = stored
            for events in late:
                stored(events)
            await ingest(d, "a1", 1, start=26)
            seen["a1"].append((await w.notification())["params"]["event"]["seq"])
    assert seen["a1"] == list(range(1, 27))


async def test_subscriptions_at_random_points_of_a_steady_stream_get_every_event_once_in_order(state_dir):
    """The seam under real timing: a commit is visible to the replay's reads before its stored-events
    hook reaches the subscription, so the live path must skip what the replay already sent."""
    rng = random.Random(15)
    total, window, subscribers = 1600, 100, 120
    results: list[tuple[int, list[int]]] = []
    async with running_daemon(state_dir, QUIET | {"AGENTWATCH_STORAGE_SYNCHRONOUS": "normal"}) as d:
        acked, progress = 0, trio.Event()

        def heard(seq):
            nonlocal acked, progress
            acked = seq
            progress.set()
            progress = trio.Event()

        async def subscriber(start_at: int, agent_filter: dict[str, str]) -> None:
            while acked < start_at:
                await progress.wait()
            after_seq = max(0, acked - rng.randrange(0, 60))
            async with watcher(d) as w:
                sub = (await w.call("subscribe", topics=["events"], after_seq=after_seq, **agent_filter))["subscription"]
                seqs = []
                while len(seqs) < window:
                    note = await w.notification()
                    assert note["params"]["subscription"] == sub
                    seqs.append(note["params"]["event"]["seq"])
            results.append((after_seq, seqs))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(partial(ingest, d, "a1", total, batch=4, pause=0.0005, acked=heard))
            for _ in range(subscribers):
                agent_filter = {"agent_id": "a1"} if rng.random() < 0.5 else {}
                nursery.start_soon(subscriber, rng.randrange(0, total - 2 * window), agent_filter)
    wrong = [(after_seq, seqs) for after_seq, seqs in results if seqs != list(range(after_seq + 1, after_seq + window + 1))]
    assert len(results) == subscribers
    assert not wrong, f"{len(wrong)} of {subscribers} subscriptions saw a duplicate, a gap or disorder; first: {wrong[0]}"
