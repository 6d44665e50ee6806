"""The attention feed against a real daemon: states, tiers, order, leaving, restarts, work trees."""

import subprocess

import trio

from agentwatch.hookspecs import hookimpl
from agentwatch.plugin_manager import Plugins
from helpers import RpcError, agent, fixture_records, running_daemon, watcher


async def feed(d):
    async with watcher(d) as w:
        return (await w.call("attention.list"))["items"]


async def stream(d, agent_id, kinds, cwd=None, start=1, fmt="agentwatch"):
    """Send canonical events of these kinds (a kind may be a (kind, fields) pair); wait for the ack."""
    async with agent(d, agent_id) as a:
        await a.hello(fmt, **({"cwd": cwd} if cwd else {}))
        events = [kind if isinstance(kind, tuple) else (kind, {}) for kind in kinds]
        await a.batch(range(start, start + len(events)), lambda seq: {"kind": events[seq - start][0], **events[seq - start][1]})
        await a.until_ack(start + len(events) - 1)


async def test_each_state_its_tier_and_the_order_of_the_feed(state_dir):
    async with running_daemon(state_dir) as d:
        await stream(d, "replied", ["prompt", ("output", {"text": "All done.\nTests pass."}), "turn_completed"], cwd="/p/one")
        await stream(d, "blocked", ["prompt", ("permission_request", {"tool": "Bash"})])
        await stream(d, "failed", ["prompt", ("turn_completed", {"is_error": True, "text": "max turns reached"})])
        await stream(d, "working", ["prompt", "tool_use"])
        await stream(d, "replied-later", ["prompt", "output", "turn_completed"])
        items = await feed(d)
    assert [(i["agent_id"], i["state"], i["tier"]) for i in items] == [
        ("blocked", "needs_permission", 1),
        ("failed", "error", 2),
        ("replied", "awaiting_reply", 3),  # longest waiting first within a tier
        ("replied-later", "awaiting_reply", 3),
    ]
    replied = items[2]
    assert replied["summary"] == "All done. Tests pass." and replied["cwd"] == "/p/one"
    assert replied["last_speaker"] == "agent" and replied["session"] == 0 and replied["since"].endswith("Z")
    assert replied["uncommitted_work"] is None, "not a git work tree"
    assert items[1]["summary"] == "max turns reached"


async def test_every_way_of_leaving_the_feed(state_dir):
    async with running_daemon(state_dir) as d:
        await stream(d, "answered", ["prompt", "output", "turn_completed"])
        await stream(d, "allowed", ["prompt", "permission_request"])
        await stream(d, "ended", ["prompt", "output", "turn_completed"])
        await stream(d, "cleared", ["prompt", "output", "turn_completed"])
        assert len(await feed(d)) == 4
        await stream(d, "answered", ["prompt"], start=4)
        await stream(d, "allowed", ["permission_resolved"], start=3)
        await stream(d, "ended", ["session_ended"], start=4)
        await stream(d, "cleared", ["context_cleared"], start=4)
        assert await feed(d) == []


async def test_an_item_never_leaves_because_time_passed(state_dir):
    async with running_daemon(state_dir) as d:
        await stream(d, "a1", ["prompt", "output", "turn_completed"])
        await trio.sleep(1.1)
        [item] = await feed(d)
    assert item["state"] == "awaiting_reply" and item["waiting_s"] >= 1


async def test_the_feed_is_the_same_after_a_restart(state_dir):
    async with running_daemon(state_dir) as d:
        await stream(d, "a", ["prompt", "permission_request", "permission_request", "permission_resolved"])
        await stream(d, "b", ["prompt", ("error", {"text": "crashed"})])
        await stream(d, "c", ["prompt", "output", "turn_completed", "context_cleared", "prompt", "output", "turn_completed"])
        before = await feed(d)
    async with running_daemon(state_dir) as d:
        after = await feed(d)

    def stable(items):
        return [{key: value for key, value in i.items() if key != "waiting_s"} for i in items]

    assert stable(after) == stable(before) and len(before) == 3
    assert [(i["agent_id"], i["session"], i["state"]) for i in before] == [
        ("a", 0, "needs_permission"), ("b", 0, "error"), ("c", 1, "awaiting_reply")
    ]


async def test_real_claude_runs_end_awaiting_the_person(state_dir):
    async with running_daemon(state_dir) as d:
        for name, fixture in [("gleam", "claude-agent-sdk-gleam__basic_query.ndjson"), ("terragon", "terragon-oss__claude-json-bash-test.DERIVED.ndjson")]:
            records = fixture_records(f"claude-stream-json/{fixture}")
            async with agent(d, name) as a:
                await a.hello("claude-stream-json")
                await a.batch(range(1, len(records) + 1), lambda seq: records[seq - 1])
                await a.until_ack(len(records))
        items = {i["agent_id"]: i for i in await feed(d)}
        error_result = {"type": "result", "subtype": "error_max_turns", "is_error": False, "result": "stopped"}
        async with agent(d, "gleam") as a:
            await a.hello("claude-stream-json")
            await a.event(4, error_result)
            await a.until_ack(4)
        after_error = {i["agent_id"]: i for i in await feed(d)}
    assert items["gleam"]["state"] == "awaiting_reply" and items["gleam"]["summary"] == "4"
    assert items["gleam"]["cwd"] == "/home/cyou/claude-agent-sdk-gleam"
    assert items["terragon"]["state"] == "awaiting_reply" and items["terragon"]["last_speaker"] == "agent"
    assert after_error["gleam"]["state"] == "error" and after_error["gleam"]["summary"] == "stopped"


def git_repo(path, dirty):
    path.mkdir()
    for command in (["init", "-q"], ["config", "user.email", "t@example.com"], ["config", "user.name", "T"]):
        subprocess.run(["git", "-C", str(path), *command], check=True)
    (path / "file.txt").write_text("one\n")
    subprocess.run(["git", "-C", str(path), "add", "file.txt"], check=True)
    subprocess.run(["git", "-C", str(path), "commit", "-q", "-m", "first"], check=True)
    if dirty:
        (path / "file.txt").write_text("two\n")
    return str(path)


async def test_uncommitted_work_comes_from_the_session_work_tree(state_dir, tmp_path):
    clean, dirty, plain = git_repo(tmp_path / "clean", False), git_repo(tmp_path / "dirty", True), tmp_path / "plain"
    plain.mkdir()
    async with running_daemon(state_dir) as d:
        for agent_id, cwd in (("clean", clean), ("dirty", dirty), ("plain", str(plain)), ("nowhere", None)):
            await stream(d, agent_id, ["prompt", "output", "turn_completed"], cwd=cwd)
        with trio.fail_after(10):
            while True:
                answers = {i["agent_id"]: i["uncommitted_work"] for i in await feed(d)}
                if answers["clean"] is not None and answers["dirty"] is not None:
                    break
                await trio.sleep(0.05)
    assert answers == {"clean": False, "dirty": True, "plain": None, "nowhere": None}


class Transitions:
    def __init__(self):
        self.seen = []

    @hookimpl
    def agentwatch_attention_changed(self, agent_id, session, state, previous):
        self.seen.append((agent_id, session, previous, state))


async def test_every_change_of_an_item_is_announced(state_dir):
    """One event per commit, so every state is visible (within one commit only the last counts)."""
    plugins = Plugins()
    transitions = Transitions()
    plugins.manager.register(transitions, name="transitions")
    kinds = ["prompt", "permission_request", "permission_resolved", "output", "turn_completed", "prompt",
             ("turn_completed", {"is_error": True}), "session_ended"]
    async with running_daemon(state_dir, plugins=plugins) as d, agent(d, "a1") as a:
        await a.hello()
        for seq, kind in enumerate(kinds, start=1):
            kind, fields = kind if isinstance(kind, tuple) else (kind, {})
            await a.event(seq, {"kind": kind, **fields})
            await a.until_ack(seq)
    assert transitions.seen == [
        ("a1", 0, None, "needs_permission"), ("a1", 0, "needs_permission", None),
        ("a1", 0, None, "awaiting_reply"), ("a1", 0, "awaiting_reply", None),
        ("a1", 0, None, "error"), ("a1", 0, "error", None),
    ]


async def test_the_daemon_works_with_attention_disabled(state_dir):
    async with running_daemon(state_dir, {"AGENTWATCH_PLUGINS_DISABLE": "attention"}) as d:
        await stream(d, "a1", ["prompt", "output", "turn_completed"])
        async with watcher(d) as w:
            try:
                await w.call("attention.list")
            except RpcError as error:
                assert error.code == -32601
            else:
                raise AssertionError("attention.list answered with attention disabled")
            assert "attention" not in (await w.call("status"))["plugins"]


async def test_the_list_answered_from_its_cache_is_the_list_the_topic_sends(state_dir, virtual_clock):
    """attention.list keeps its items encoded between changes and adds only the waiting time."""
    quiet = {"AGENTWATCH_SERVER_PING_INTERVAL": "1d", "AGENTWATCH_SERVER_PING_TIMEOUT": "1d"}  # no pings on virtual time
    async with running_daemon(state_dir, quiet) as d, watcher(d) as w:
        await w.call("subscribe", topics=["attention"])
        await stream(d, "blocked", ["prompt", ("permission_request", {"tool": "Bash"})])
        await stream(d, "replied", ["prompt", ("output", {"text": 'says "quoted" and \\u00e9\n'}), "turn_completed"], cwd="/p/é")
        await trio.sleep(90)
        pushed = (await w.notification())["params"]["items"]
        while len(pushed) < 2:
            pushed = (await w.notification())["params"]["items"]
        listed = (await w.call("attention.list"))["items"]
        assert [item["waiting_s"] for item in listed] == [90, 90], "the waiting time is worked out at each request"
        assert [{**item, "waiting_s": 0} for item in listed] == [{**item, "waiting_s": 0} for item in pushed]
        await stream(d, "blocked", ["permission_resolved"], start=3)
        assert [item["agent_id"] for item in (await w.call("attention.list"))["items"]] == ["replied"], "a change clears the cache"
