"""The daemon-wide budget of bytes held for watchers (watch.max_bytes): replies being built and sent, and
notifications waiting for subscribers that read slowly or not at all."""

from __future__ import annotations

import json
import signal
from contextlib import AsyncExitStack

import trio

from helpers import DaemonProcess, Running, agent, raw_connect, running_daemon, watcher, ws_frame

RECORD = 100_000  # characters of text in each event


async def store_events(d: Running, agent_id: str, count: int) -> None:
    """``count`` events of :data:`RECORD` characters, all acknowledged."""
    async with agent(d, agent_id) as a:
        await a.hello()
        for seq in range(1, count + 1):
            await a.event(seq, {"kind": "output", "text": f"{seq} " + "x" * RECORD})
        await a.until_ack(count)


def batch(count: int, **params: object) -> str:
    return json.dumps([{"jsonrpc": "2.0", "id": i, "method": "events.list", "params": params} for i in range(count)])


async def test_a_batch_of_pages_holds_no_more_than_the_budget_and_the_rest_are_told_to_retry(state_dir):
    """Pages take at most half of watch.max_bytes (4 MiB here), each a quarter of what is left."""
    async with running_daemon(state_dir, {"AGENTWATCH_WATCH_MAX_BYTES": "8MiB"}) as d:
        await store_events(d, "a1", 40)  # 4 MB of events
        async with watcher(d, max_message_size=1 << 26) as w:
            replies = await w.raw(batch(50, agent_id="a1", limit=1000))
            pages = [reply["result"] for reply in replies if "result" in reply]
            busy = [reply["error"] for reply in replies if "error" in reply]
            assert len(pages) + len(busy) == 50 and busy
            sizes = [len(page["events"]) for page in pages]
            assert sizes == sorted(sizes, reverse=True) and sizes[0] >= 9, "each page gets a share of what is left"
            assert sum(len(json.dumps(page)) for page in pages) <= (4 << 20) + len(pages) * (RECORD + 1000)
            assert all(page["has_more"] and page["events"][0]["seq"] == 1 for page in pages)
            assert {error["code"] for error in busy} == {-32001} and "watch.max_bytes" in busy[0]["message"]
            assert d.daemon.watch_budget.used == d.daemon.watch_budget.bulk == 0, "every reply gave its bytes back once sent"
            unknown = await w.raw(batch(20, agent_id="nobody"))
            assert {reply["error"]["code"] for reply in unknown} == {-32602}, "a failed read gives its reservation back"
            page = await w.call("events.list", agent_id="a1", limit=1000)  # alone, a page gets a quarter of the half
            assert len(page["events"]) == sizes[0] and page["has_more"]


async def test_a_live_subscriber_skipped_for_want_of_budget_gets_a_gap_then_the_rest(state_dir):
    async with running_daemon(state_dir) as d, watcher(d) as w:
        await w.call("subscribe", topics=["events"])
        budget = d.daemon.watch_budget
        budget.force(budget.limit)  # everything held elsewhere
        await store_events(d, "a1", 1)
        budget.give(budget.limit)
        async with agent(d, "a1") as a:
            await a.hello()
            await a.event(2, {"kind": "output", "text": "after"})
            await a.until_ack(2)
        assert (await w.notification())["params"] == {"subscription": 1, "skipped": 1}
        assert (await w.notification())["params"]["event"]["seq"] == 2


async def test_replays_that_wait_for_their_readers_never_hold_the_budget_from_each_other(state_dir, virtual_clock):
    """Each replay counts what it read until it is sent; readers that stall hold at most the half of
    watch.max_bytes that pages may take, so live notifications still flow, and a reader that does not
    read does not answer pings either: once it is cut, the other replays go on."""
    settings = {"AGENTWATCH_WATCH_MAX_BYTES": "4MiB", "AGENTWATCH_WATCH_BACKLOG_BYTES": "1MiB",
                "AGENTWATCH_SERVER_PING_INTERVAL": "1s", "AGENTWATCH_SERVER_PING_TIMEOUT": "1s"}
    async with running_daemon(state_dir, settings) as d, AsyncExitStack() as stack:
        await store_events(d, "big", 30)  # 3 MB
        hog = await raw_connect(d, "/v1/watch", receive_buffer=4096)
        stack.push_async_callback(trio.aclose_forcefully, hog)
        for i in range(6):  # replays whose reader never reads
            request = {"jsonrpc": "2.0", "id": i, "method": "subscribe", "params": {"topics": ["events"], "after_seq": 0}}
            await hog.send_all(ws_frame(json.dumps(request).encode()))
        await trio.sleep(0.5)
        budget = d.daemon.watch_budget
        assert budget.bulk <= budget.limit // 2 + 6 * (RECORD + 1000), "half, and each replay one event past it at most"
        live = await stack.enter_async_context(watcher(d))
        await live.call("subscribe", topics=["events"])
        replaying = await stack.enter_async_context(watcher(d))
        await replaying.call("subscribe", topics=["events"], agent_id="big", after_seq=0)
        async with agent(d, "small") as a:
            await a.hello()
            await a.event(1, {"kind": "output", "text": "still heard"})
            await a.until_ack(1)
        with trio.fail_after(0.5):  # long before the silent replays are cut
            assert (await live.notification())["params"]["event"]["agent_id"] == "small"
        seqs = [(await replaying.notification())["params"]["event"]["seq"] for _ in range(30)]
        assert seqs == list(range(1, 31)), "a replay whose reader reads finishes while others stall"


async def test_subscriptions_that_never_read_hold_each_event_once_within_the_budget(state_dir):
    settings = {"AGENTWATCH_WATCH_MAX_BYTES": "3MiB", "AGENTWATCH_WATCH_BACKLOG_BYTES": "1MiB"}
    async with running_daemon(state_dir, settings) as d, AsyncExitStack() as stack:
        hog = await raw_connect(d, "/v1/watch", receive_buffer=4096)
        stack.push_async_callback(trio.aclose_forcefully, hog)
        for i in range(64):  # 64 subscriptions, and never a byte read
            request = {"jsonrpc": "2.0", "id": i, "method": "subscribe", "params": {"topics": ["events"]}}
            await hog.send_all(ws_frame(json.dumps(request).encode()))
        reader = await stack.enter_async_context(watcher(d))
        await reader.call("subscribe", topics=["events"])
        seqs: list[int] = []
        # 4 MB, 64 times over: 256 MB if each subscription kept its own copy. Each event is sent once
        # the reader has had the one before, so a reader slowed by a loaded machine is not what is tested.
        async with agent(d, "a1") as a:
            await a.hello()
            for seq in range(1, 41):
                await a.event(seq, {"kind": "output", "text": f"{seq} " + "x" * RECORD})
                seqs.append((await reader.notification())["params"]["event"]["seq"])
        assert seqs == list(range(1, 41)), "a subscriber that reads misses nothing meanwhile"
        # Shared, the texts held are one backlog's worth (1 MiB) and the few events the subscriptions
        # are at different points of (one mid-write on the hog's socket, one sent or not yet): 13 or 14
        # events were measured. Copied, the 64 backlogs would fill the whole 3 MiB budget.
        held = d.daemon.watch_budget.used
        assert held <= (1 << 20) + 64 * 10 * 200 + 6 * (RECORD + 200), f"the silent backlogs share each event's text: {held}"
    assert d.daemon.watch_budget.used == 0, "closed connections gave back what their backlogs held"


def peak_rss_mib(pid: int) -> float:
    """The most memory a process has had resident since :func:`forget_peak`, in MiB."""
    fields = dict(line.split(":", 1) for line in open(f"/proc/{pid}/status").read().splitlines() if ":" in line)
    return int(fields["VmHWM"].split()[0]) / 1024


def forget_peak(pid: int) -> float:
    """Reset the process's peak to what it holds now (Linux 4.0+); return that, in MiB."""
    with open(f"/proc/{pid}/clear_refs", "w") as clear_refs:
        clear_refs.write("5")
    return peak_rss_mib(pid)


async def test_neither_case_takes_the_daemon_past_its_memory_at_rest_plus_a_small_multiple_of_the_budgets(tmp_path):
    """The two cases an outside review measured: a batch of 50 events.list calls (a 391 MiB reply; RSS
    534 -> 2105 MiB) and a watcher with 64 subscriptions that never reads (1.26 GB pinned)."""
    max_bytes, backlog_bytes = 16, 4  # MiB
    daemon = DaemonProcess(tmp_path / "state", env={
        "AGENTWATCH_WATCH_MAX_BYTES": f"{max_bytes}MiB", "AGENTWATCH_WATCH_BACKLOG_BYTES": f"{backlog_bytes}MiB",
        "AGENTWATCH_STORAGE_SYNCHRONOUS": "normal",
    })
    d = await daemon.ready()
    pid = daemon.proc.pid
    try:
        await store_events(d, "a1", 100)  # 10 MB: 50 pages of it would be a 500 MB reply
        await store_events(d, "a2", 100)  # the same again, so that ingest's own memory is in the baseline
        at_rest = forget_peak(pid)
        async with watcher(d, max_message_size=1 << 28) as w:
            replies = await w.raw(batch(50, agent_id="a1", limit=1000))
        assert any("error" in reply for reply in replies)
        batch_peak = peak_rss_mib(pid) - at_rest
        at_rest = forget_peak(pid)
        hog = await raw_connect(d, "/v1/watch", receive_buffer=4096)
        for i in range(64):
            request = {"jsonrpc": "2.0", "id": i, "method": "subscribe", "params": {"topics": ["events"]}}
            await hog.send_all(ws_frame(json.dumps(request).encode()))
        await trio.sleep(0.2)
        await store_events(d, "a3", 100)
        hog_peak = peak_rss_mib(pid) - at_rest
        await trio.aclose_forcefully(hog)
    finally:
        daemon.proc.send_signal(signal.SIGTERM)
        assert await daemon.wait() == 0
    print(f"peak above memory at rest: batch {batch_peak:.0f} MiB, silent watcher {hog_peak:.0f} MiB")  # -s shows it
    # docs/operations.md: a reply exists as text, then twice as bytes while it is sent
    assert batch_peak <= 5 * max_bytes, f"the batch took the daemon {batch_peak:.0f} MiB above its memory at rest"
    assert hog_peak <= 4 * (backlog_bytes + max_bytes), f"the silent watcher took it {hog_peak:.0f} MiB above"
