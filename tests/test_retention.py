"""Retention against a real daemon and a real SQLite file, on virtual time."""

import json
import os
import sys

import apsw
import pytest
import trio

from agentwatch.hookspecs import hookimpl
from agentwatch.model import now_ms
from agentwatch.plugin_manager import Plugins
from agentwatch.plugins.retention import sweep
from agentwatch.store import RetentionLimits
from helpers import DaemonProcess, RpcError, agent, running_daemon, stored, watcher

DAY = 86400
# No pings, and sweeps only when a test asks (each scheduled sweep costs real time as days pass).
QUIET = {"AGENTWATCH_SERVER_PING_INTERVAL": "100d", "AGENTWATCH_SERVER_PING_TIMEOUT": "100d", "AGENTWATCH_RETENTION_INTERVAL": "100d"}


class Swept:
    """Records the retention hooks, with the (virtual) time of each sweep."""

    def __init__(self):
        self.reports = []
        self.removed = []
        self.attention = []
        self.stall = []

    @hookimpl
    def agentwatch_retention_swept(self, report):
        self.reports.append((trio.current_time(), dict(report)))

    @hookimpl
    def agentwatch_sessions_removed(self, sessions):
        self.removed.extend(sessions)

    @hookimpl
    def agentwatch_attention_changed(self, agent_id, session, state, previous):
        self.attention.append((agent_id, session, previous, state))

    @hookimpl
    def agentwatch_stall_cleared(self, agent_id, session):
        self.stall.append(("cleared", agent_id, session))


def recording():
    plugins, swept = Plugins(), Swept()
    plugins.manager.register(swept, name="swept")
    return plugins, swept


async def send(a, seqs, kind="output"):
    await a.batch(seqs, lambda seq: {"kind": kind, "text": f"event {seq}"})
    await a.until_ack(seqs[-1])


async def prune(d, dry_run=False):
    async with watcher(d) as w:
        return await w.call("retention.prune", dry_run=dry_run)


async def seqs_of(d, agent_id):
    return [event["seq"] for event in await stored(d, agent_id)]


async def test_max_age_removes_what_arrived_before_the_cutoff(state_dir, virtual_clock):
    plugins, swept = recording()
    settings = {**QUIET, "AGENTWATCH_RETENTION_MAX_AGE": "30d", "AGENTWATCH_RETENTION_INTERVAL": "1d"}
    async with running_daemon(state_dir, settings, plugins) as d, agent(d, "a1") as a:
        await a.hello()
        await send(a, list(range(1, 11)))
        await trio.sleep(20 * DAY)
        await send(a, list(range(11, 16)))
        await trio.sleep(9 * DAY)
        assert await seqs_of(d, "a1") == list(range(1, 16)), "nothing is 30 days old yet"
        await trio.sleep(2 * DAY)
        assert await seqs_of(d, "a1") == list(range(11, 16))
        [(_, report)] = swept.reports
        assert (report["events"], report["sessions"], report["dry_run"]) == (10, 0, False)
        assert report["by_limit"] == {"max_age": 10, "max_sessions_per_agent": 0, "max_events_per_agent": 0}
        async with watcher(d) as w:
            assert (await w.call("status"))["events_stored"] == 5
            [session] = await w.call("sessions.list", agent_id="a1")
            assert session["events"] == 5


async def test_the_first_sweep_comes_shortly_after_start_then_every_interval(state_dir, virtual_clock):
    async with running_daemon(state_dir, QUIET) as d, agent(d, "a1") as a:
        await a.hello()
        await send(a, [1, 2, 3])
    await trio.sleep(31 * DAY)  # the daemon is down for a month
    plugins, swept = recording()
    started = trio.current_time()
    settings = {**QUIET, "AGENTWATCH_RETENTION_MAX_AGE": "30d", "AGENTWATCH_RETENTION_INTERVAL": "1d"}
    async with running_daemon(state_dir, settings, plugins) as d:
        await trio.sleep(15)
        assert [(round(at - started), r["events"]) for at, r in swept.reports] == [(10, 3)]
        async with agent(d, "a1") as a:
            await a.hello()
            await send(a, [4])
        await trio.sleep(31 * DAY)
        assert [r["events"] for _, r in swept.reports] == [3, 1]
        assert round(swept.reports[1][0] - started) == 31 * DAY + 10, "on the daily schedule, the first one 30 days after"


async def test_max_events_per_agent_keeps_each_agents_newest(state_dir, virtual_clock):
    plugins, swept = recording()
    settings = {**QUIET, "AGENTWATCH_RETENTION_MAX_EVENTS_PER_AGENT": "5"}
    async with running_daemon(state_dir, settings, plugins) as d:
        await trio.sleep(11)  # after the sweep that follows start
        async with agent(d, "big") as big, agent(d, "small") as small:
            await big.hello()
            await small.hello()
            await send(big, list(range(1, 13)))
            await send(small, [1, 2, 3])
            report = await prune(d)
        assert (report["events"], report["by_limit"]["max_events_per_agent"]) == (7, 7)
        assert await seqs_of(d, "big") == [8, 9, 10, 11, 12]
        assert await seqs_of(d, "small") == [1, 2, 3]
        assert (await prune(d))["events"] == 0, "a second sweep finds nothing"


async def test_max_sessions_per_agent_removes_older_sessions_whole(state_dir, virtual_clock):
    plugins, swept = recording()
    settings = {**QUIET, "AGENTWATCH_RETENTION_MAX_SESSIONS_PER_AGENT": "2"}
    async with running_daemon(state_dir, settings, plugins) as d:
        await trio.sleep(11)  # after the sweep that follows start
        async with agent(d, "a1") as a:
            await a.hello()
            seq = 0
            for _ in range(4):  # session 0: two events; 1 to 3: a clear and two each; 4: its clear
                await send(a, [seq + 1, seq + 2])
                await a.event(seq + 3, {"kind": "context_cleared"})
                await a.until_ack(seq + 3)
                seq += 3
            report = await prune(d)
            assert (report["events"], report["sessions"]) == (8, 3)
            assert report["by_limit"]["max_sessions_per_agent"] == 8
            assert sorted(swept.removed) == [("a1", 0), ("a1", 1), ("a1", 2)]
            async with watcher(d) as w:
                assert [s["session"] for s in await w.call("sessions.list", agent_id="a1")] == [4, 3]
            assert [(e["seq"], e["session"]) for e in await stored(d, "a1")] == [(9, 3), (10, 3), (11, 3), (12, 4)]


async def test_an_event_selected_by_several_limits_counts_once(state_dir, virtual_clock):
    settings = {**QUIET, "AGENTWATCH_RETENTION_MAX_SESSIONS_PER_AGENT": "1", "AGENTWATCH_RETENTION_MAX_EVENTS_PER_AGENT": "2"}
    async with running_daemon(state_dir, settings) as d:
        await trio.sleep(11)  # after the sweep that follows start
        async with agent(d, "a1") as a:
            await a.hello()
            await send(a, [1, 2, 3])
            await trio.sleep(31 * DAY)
            await send(a, [4])
            await a.event(5, {"kind": "context_cleared"})
            await a.until_ack(5)
            await send(a, [6, 7, 8])
            planned = await prune(d, dry_run=True)
            assert planned["by_limit"] == {"max_age": 3, "max_sessions_per_agent": 1, "max_events_per_agent": 2}
            assert (planned["events"], planned["sessions"], planned["dry_run"]) == (6, 1, True)
            assert await seqs_of(d, "a1") == [1, 2, 3, 4, 5, 6, 7, 8], "a dry run removes nothing"
            report = await prune(d)
            assert (report["events"], report["sessions"], report["by_limit"]) == (6, 1, planned["by_limit"])
            assert await seqs_of(d, "a1") == [7, 8]


async def test_deletes_go_in_batches_of_batch_events(state_dir, virtual_clock):
    async with running_daemon(state_dir, QUIET) as d, agent(d, "a1") as a:
        await a.hello()
        await send(a, list(range(1, 24)))
        progress = []
        limits = RetentionLimits(max_events_per_agent=1)
        report = await sweep(d.daemon.store, limits, batch_events=5, progress=lambda done, planned: progress.append((done, planned)))
        assert report["events"] == 22
        assert progress == [(5, 22), (10, 22), (15, 22), (20, 22)], "one transaction per 5 events, the last one short"
        assert await seqs_of(d, "a1") == [23]


async def test_an_event_stored_after_the_plan_is_never_removed_even_in_a_reused_rowid(state_dir, virtual_clock):
    async with running_daemon(state_dir, QUIET) as d, agent(d, "a1") as a:
        await a.hello()
        await send(a, list(range(1, 11)))
        await trio.sleep(31 * DAY)
        store = d.daemon.store
        plan = await store.plan_removal(RetentionLimits(max_age_s=30 * DAY), now_ms())
        first = await store.remove(plan, 10)
        assert (first.events, first.done) == (10, False), "the budget ran out exactly: the step is not known to be done"
        await send(a, [11])  # the table is empty: SQLite hands out rowid 1 again
        rowids = await store.run_in_writer(lambda conn: [rowid for (rowid,) in conn.execute("SELECT rowid FROM events")])
        assert rowids == [1]
        second = await store.remove(plan, 10)
        assert (second.events, second.done) == (0, True)
        assert await seqs_of(d, "a1") == [11]


async def test_a_sweep_during_ingest_loses_no_newly_acked_event(state_dir, virtual_clock):
    old = 8000
    settings = {**QUIET, "AGENTWATCH_RETENTION_BATCH_EVENTS": "200"}
    async with running_daemon(state_dir, settings) as d:
        async with agent(d, "busy") as a:
            await a.hello()
            for start in range(1, old + 1, 500):
                await send(a, list(range(start, start + 500)))
            await trio.sleep(31 * DAY)
            acked = []

            async def stream():
                for start in range(old + 1, old + 3001, 50):
                    await a.batch(range(start, start + 50))
                    frames = await a.until_ack(start + 49)
                    acked.extend(f["seq"] for f in frames if f["type"] == "ack")

            async with trio.open_nursery() as nursery:
                nursery.start_soon(stream)
                report = await prune(d)
        assert report["events"] == old
        assert acked[-1] == old + 3000
        assert await seqs_of(d, "busy") == list(range(old + 1, old + 3001)), "every event acked during the sweep is kept"


async def test_dedup_and_session_numbers_hold_after_an_agents_events_are_removed(state_dir, virtual_clock):
    plugins, swept = recording()
    async with running_daemon(state_dir, QUIET, plugins) as d:
        async with agent(d, "a1") as a:
            await a.hello()
            await send(a, [1, 2, 3])
            await a.event(4, {"kind": "context_cleared"})
            await send(a, [5, 6])
        await trio.sleep(31 * DAY)
        assert (await prune(d))["events"] == 6
        assert sorted(swept.removed) == [("a1", 0), ("a1", 1)]
        assert await seqs_of(d, "a1") == []
        async with agent(d, "a1") as a:
            welcome = await a.hello()
            assert (welcome["session"], welcome["acked_seq"]) == (1, 6)
            await send(a, [5, 6])  # resent: acknowledged, not stored again
            assert await seqs_of(d, "a1") == []
            await send(a, [7])
            await a.event(8, {"kind": "context_cleared"})
            await a.until_ack(8)
        assert [(e["seq"], e["session"]) for e in await stored(d, "a1")] == [(7, 1), (8, 2)]
    async with running_daemon(state_dir, QUIET) as d, agent(d, "a1") as a:
        welcome = await a.hello()
        assert (welcome["session"], welcome["acked_seq"]) == (2, 8), "and after a restart"
        async with watcher(d) as w:
            sessions = {s["session"]: s["events"] for s in await w.call("sessions.list", agent_id="a1")}
        assert sessions == {1: 1, 2: 1}


async def test_a_removed_session_leaves_the_feed_and_ends_its_stall(state_dir, virtual_clock):
    plugins, swept = recording()
    async with running_daemon(state_dir, QUIET, plugins) as d:
        async with agent(d, "waiting") as a, agent(d, "stuck") as b:
            await a.hello()
            await b.hello()
            await a.event(1, {"kind": "turn_completed", "text": "done; over to you"})
            await a.until_ack(1)
            await b.event(1, {"kind": "prompt", "text": "go"})
            await b.until_ack(1)
        await trio.sleep(31 * DAY)
        async with watcher(d) as w:
            feed = await w.call("attention.list")
        assert sorted((i["agent_id"], i["state"]) for i in feed["items"]) == [("stuck", "stalled"), ("waiting", "awaiting_reply")]
        await prune(d)
        async with watcher(d) as w:
            assert (await w.call("attention.list"))["items"] == []
        assert ("waiting", 0, "awaiting_reply", None) in swept.attention
        assert ("stuck", 0, "stalled", None) in swept.attention
        assert swept.stall == [("cleared", "stuck", 0)]
    async with running_daemon(state_dir, QUIET) as d, watcher(d) as w:
        assert (await w.call("attention.list"))["items"] == [], "and it stays out after a restart"


async def test_an_empty_session_older_than_max_age_goes(state_dir, virtual_clock):
    plugins, swept = recording()
    async with running_daemon(state_dir, QUIET, plugins) as d:
        async with agent(d, "quiet") as a:
            await a.hello()
        await trio.sleep(31 * DAY)
        report = await prune(d)
        assert (report["events"], report["sessions"]) == (0, 1)
        assert swept.removed == [("quiet", 0)]
        async with watcher(d) as w:
            assert await w.call("sessions.list", agent_id="quiet") == []
            [known] = await w.call("agents.list")
            assert (known["agent_id"], known["session"]) == ("quiet", 0), "the agent itself is kept"


async def test_removed_space_goes_back_to_the_file_system(state_dir, virtual_clock):
    async with running_daemon(state_dir, QUIET) as d, agent(d, "a1") as a:
        await a.hello()
        blob = "x" * 2000
        for start in range(1, 3001, 500):
            await a.batch(range(start, start + 500), lambda seq: {"kind": "output", "text": blob})
            await a.until_ack(start + 499)
        before = await d.daemon.store.run_in_writer(lambda conn: conn.execute("PRAGMA page_count").get)
        await trio.sleep(31 * DAY)
        report = await prune(d)
        after = await d.daemon.store.run_in_writer(lambda conn: conn.execute("PRAGMA page_count").get)
    assert report["freed_bytes"] > 5_000_000
    assert after < before / 5, (before, after)


async def test_retention_prune_rejects_bad_params(state_dir):
    async with running_daemon(state_dir) as d, watcher(d) as w:
        with pytest.raises(RpcError) as raised:
            await w.call("retention.prune", dry_run="yes")
        assert raised.value.code == -32602 and "dry_run must be true or false" in raised.value.message


async def test_with_retention_disabled_nothing_is_removed_and_the_rest_works(state_dir, virtual_clock):
    settings = {**QUIET, "AGENTWATCH_PLUGINS_DISABLE": "retention"}
    async with running_daemon(state_dir, settings) as d, agent(d, "a1") as a:
        await a.hello()
        await a.event(1, {"kind": "turn_completed", "text": "over to you"})
        await a.until_ack(1)
        await trio.sleep(40 * DAY)
        assert await seqs_of(d, "a1") == [1]
        async with watcher(d) as w:
            assert [i["state"] for i in (await w.call("attention.list"))["items"]] == ["awaiting_reply"]
            with pytest.raises(RpcError) as raised:
                await w.call("retention.prune")
            assert raised.value.code == -32601


# --- agentwatch prune ---


def prune_command(state_dir, *args, env=None):
    environ = {k: v for k, v in os.environ.items() if not k.startswith("AGENTWATCH_")}
    return trio.run_process(
        [sys.executable, "-m", "agentwatch", "prune", "--state-dir", str(state_dir), *args],
        env={**environ, **(env or {})}, capture_stdout=True, capture_stderr=True, check=False,
    )


async def test_prune_on_the_file_when_no_daemon_runs(state_dir):
    async with running_daemon(state_dir) as d, agent(d, "a1") as a:
        await a.hello()
        await send(a, list(range(1, 11)))
    keep3 = {"AGENTWATCH_RETENTION_MAX_EVENTS_PER_AGENT": "3"}
    dry = await prune_command(state_dir, "--dry-run", env=keep3)
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.decode().startswith("would remove 7 events and 0 sessions (max_events_per_agent: 7)")
    done = await prune_command(state_dir, "--json", env=keep3)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert (report["events"], report["dry_run"]) == (7, False)
    with apsw.Connection(str(state_dir / "agentwatch.db")) as conn:
        assert [seq for (seq,) in conn.execute("SELECT seq FROM events ORDER BY seq")] == [8, 9, 10]


async def test_prune_goes_through_the_running_daemon(state_dir, tmp_path):
    keep3 = {"AGENTWATCH_RETENTION_MAX_EVENTS_PER_AGENT": "3"}
    daemon = DaemonProcess(state_dir, env=keep3)
    try:
        d = await daemon.ready()
        async with agent(d, "a1") as a:
            await a.hello()
            await send(a, list(range(1, 11)))
        # It listens on a port chosen at start: prune finds it through daemon.json.
        assert json.loads((state_dir / "daemon.json").read_text())["addresses"] == [d.address]
        done = await prune_command(state_dir, env=keep3)
        assert done.returncode == 0, done.stderr
        assert done.stdout.decode().startswith("removed 7 events and 0 sessions (max_events_per_agent: 7)")
        assert await seqs_of(d, "a1") == [8, 9, 10]
        assert any(line["event"] == "retention_swept" and line["events"] == 7 for line in daemon.lines())
        wrong = await prune_command(state_dir, env={**keep3, "AGENTWATCH_TOKEN": "nope"})
        assert wrong.returncode == 1
        assert "asking it to sweep failed" in wrong.stderr.decode() and "wrong token" in wrong.stderr.decode()
    finally:
        daemon.proc.terminate()
        await daemon.wait()
    assert not (state_dir / "daemon.json").exists(), "withdrawn at stop"
    gone = await prune_command(state_dir, "--dry-run")
    assert gone.returncode == 0 and gone.stdout.decode().startswith("would remove 0 events"), "the file, once it stopped"


async def test_prune_says_so_when_there_is_no_store(tmp_path):
    result = await prune_command(tmp_path / "nowhere")
    assert result.returncode == 2
    assert "there is no store at" in result.stderr.decode() and "--state-dir" in result.stderr.decode()
    assert not (tmp_path / "nowhere").exists(), "nothing was created"


async def test_a_second_daemon_on_the_same_state_dir_is_refused(state_dir):
    async with running_daemon(state_dir):
        second = await trio.run_process(
            [sys.executable, "-m", "agentwatch", "serve", "--state-dir", str(state_dir), "--listen", "127.0.0.1:0"],
            capture_stdout=True, capture_stderr=True, check=False,
        )
    assert second.returncode == 2
    assert "another agentwatch process is using" in second.stderr.decode()
