"""Stall detection on virtual time, against a real daemon."""

import json

import apsw
import trio

from agentwatch.hookspecs import hookimpl
from agentwatch.plugin_manager import Plugins
from helpers import agent, running_daemon, watcher

MINUTE = 60
# Pings every 20 virtual seconds would cost a real round trip each as hours pass: not needed here.
QUIET = {"AGENTWATCH_SERVER_PING_INTERVAL": "1d", "AGENTWATCH_SERVER_PING_TIMEOUT": "1d"}


class Episodes:
    """Records the stall hooks, with the (virtual) time they came at."""

    def __init__(self):
        self.seen = []

    @hookimpl
    def agentwatch_stall_detected(self, agent_id, session, since, threshold_s):
        self.seen.append(("detected", agent_id, round(trio.current_time() / MINUTE), threshold_s))

    @hookimpl
    def agentwatch_stall_cleared(self, agent_id, session):
        self.seen.append(("cleared", agent_id, round(trio.current_time() / MINUTE)))


def recording():
    plugins, episodes = Plugins(), Episodes()
    plugins.manager.register(episodes, name="episodes")
    return plugins, episodes


async def send(a, seq, kind):
    await a.event(seq, {"kind": kind})
    await a.until_ack(seq)


async def feed_states(d):
    async with watcher(d) as w:
        return [(i["agent_id"], i["state"], i["tier"]) for i in (await w.call("attention.list"))["items"]]


async def test_a_silent_working_session_stalls_once_and_activity_clears_it(state_dir, virtual_clock):
    plugins, episodes = recording()
    async with running_daemon(state_dir, QUIET, plugins=plugins) as d, agent(d, "a1") as a:
        await a.hello()
        await send(a, 1, "prompt")
        await trio.sleep(14 * MINUTE)
        assert episodes.seen == []
        await trio.sleep(2 * MINUTE)
        assert episodes.seen == [("detected", "a1", 15, 900.0)]
        assert await feed_states(d) == [("a1", "stalled", 2)]
        await trio.sleep(60 * MINUTE)
        assert len(episodes.seen) == 1, "no repeats while it stays stalled"
        await send(a, 2, "output")
        assert episodes.seen[-1][:2] == ("cleared", "a1") and await feed_states(d) == []
        await trio.sleep(16 * MINUTE)
        assert [e[0] for e in episodes.seen] == ["detected", "cleared", "detected"], "a new episode"
        await send(a, 3, "turn_completed")
        assert episodes.seen[-1][0] == "cleared" and await feed_states(d) == [("a1", "awaiting_reply", 3)]


async def test_a_running_tool_call_has_the_longer_threshold(state_dir, virtual_clock):
    plugins, episodes = recording()
    async with running_daemon(state_dir, QUIET, plugins=plugins) as d, agent(d, "a1") as a:
        await a.hello()
        await send(a, 1, "prompt")
        await send(a, 2, "tool_use")
        await trio.sleep(59 * MINUTE)
        assert episodes.seen == []
        await trio.sleep(2 * MINUTE)
        assert episodes.seen == [("detected", "a1", 60, 3600.0)]


async def test_a_session_that_never_produced_an_event_can_stall(state_dir, virtual_clock):
    plugins, episodes = recording()
    async with running_daemon(state_dir, QUIET, plugins=plugins) as d, agent(d, "quiet") as a:
        await a.hello()
        await trio.sleep(16 * MINUTE)
    assert episodes.seen[0] == ("detected", "quiet", 15, 900.0)


async def test_idle_sessions_never_stall(state_dir, virtual_clock):
    plugins, episodes = recording()
    async with running_daemon(state_dir, QUIET, plugins=plugins) as d, agent(d, "a1") as a:
        await a.hello()
        for seq, kind in enumerate(["prompt", "output", "turn_completed"], start=1):
            await send(a, seq, kind)
        await trio.sleep(120 * MINUTE)
    assert episodes.seen == []


async def test_thresholds_per_agent_id_and_per_label(tmp_path, virtual_clock):
    config = tmp_path / "agentwatch.toml"
    config.write_text('[stall.agents]\n"fast" = "5m"\n[stall.labels]\n"team=infra" = { threshold = "8m" }\n')
    plugins, episodes = recording()
    settings = {**QUIET, "AGENTWATCH_CONFIG": str(config)}
    async with running_daemon(tmp_path / "state", settings, plugins=plugins) as d:
        async with agent(d, "fast") as fast, agent(d, "labelled") as labelled, agent(d, "plain") as plain:
            await fast.hello()
            await labelled.hello(labels={"team": "infra"})
            await plain.hello()
            for a in (fast, labelled, plain):
                await send(a, 1, "prompt")
            await trio.sleep(16 * MINUTE)
    assert episodes.seen == [("detected", "fast", 5, 300.0), ("detected", "labelled", 8, 480.0), ("detected", "plain", 15, 900.0)]


async def test_after_a_restart_stalls_count_from_the_stored_times(state_dir, virtual_clock):
    async with running_daemon(state_dir, QUIET) as d, agent(d, "a1") as a:
        await a.hello()
        await send(a, 1, "prompt")
    # The daemon was down for ten minutes: its stored facts are ten minutes old.
    conn = apsw.Connection(str(state_dir / "agentwatch.db"))
    facts = json.loads(conn.execute("SELECT facts FROM sessions").get)
    facts["last_event_at"] -= 10 * MINUTE * 1000
    conn.execute("UPDATE sessions SET facts = ?", (json.dumps(facts),))
    conn.close()
    plugins, episodes = recording()
    async with running_daemon(state_dir, QUIET, plugins=plugins) as d:
        start = trio.current_time()
        await trio.sleep(4 * MINUTE)
        assert episodes.seen == []
        await trio.sleep(2 * MINUTE)
        assert len(episodes.seen) == 1 and 5 * MINUTE - 30 < trio.current_time() - start
        assert await feed_states(d) == [("a1", "stalled", 2)]


async def test_the_daemon_works_with_stall_disabled(state_dir, virtual_clock):
    async with running_daemon(state_dir, {**QUIET, "AGENTWATCH_PLUGINS_DISABLE": "stall"}) as d, agent(d, "a1") as a:
        await a.hello()
        await send(a, 1, "prompt")
        await trio.sleep(120 * MINUTE)
        assert await feed_states(d) == []
