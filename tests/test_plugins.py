"""The plugin system: entry points, blocking, isolation of failing plugins, replacing built-ins."""

import importlib
import inspect
import sys
import textwrap

import pytest
import trio

from agentwatch import hookspecs
from agentwatch.config import Overrides, load_config
from agentwatch.daemon import Daemon, StartupError
from agentwatch.hookspecs import hook_names, hookimpl
from agentwatch.plugin_manager import Plugins
from agentwatch.plugins import BUILTIN_PLUGINS
from helpers import agent, running_daemon, stored, watcher

RECORDER = '''
from agentwatch.hookspecs import hookimpl
from agentwatch.model import Normalized

seen = {"startup": [], "connected": [], "disconnected": [], "stored": [], "sessions": [], "attention": []}


class ShoutFormat:
    name = "shout"

    def normalize(self, data):
        if data == "boom":
            raise RuntimeError("shout cannot read this record")
        if data == "odd":
            return "not a Normalized"
        return Normalized("output", text=str(data).upper())


@hookimpl
def agentwatch_register_formats(register):
    register(ShoutFormat())


@hookimpl
def agentwatch_register_watch_methods(register):
    async def counts(daemon, params):
        return {name: len(items) for name, items in seen.items()}

    register("recorder.counts", counts)


@hookimpl
def agentwatch_startup(daemon, nursery):
    seen["startup"].append(daemon.addresses)


@hookimpl
def agentwatch_agent_connected(agent_id, agent, session):
    seen["connected"].append((agent_id, agent.name, session))


@hookimpl
def agentwatch_agent_disconnected(agent_id, code):
    seen["disconnected"].append((agent_id, code))


@hookimpl
def agentwatch_attention_changed(agent_id, session, state, previous):
    seen["attention"].append((agent_id, session, previous, state))


@hookimpl
def agentwatch_sessions_changed(sessions):
    seen["sessions"].extend((key, facts.last_speaker) for key, facts in sessions.items())


@hookimpl
def agentwatch_events_stored(events):
    seen["stored"].extend((e.agent_id, e.seq, e.session, e.kind) for e in events)
    if any(e.kind == "error" for e in events):
        raise RuntimeError("the recorder fails on error events")
'''

FLAKY_STORE = '''
from agentwatch.hookspecs import hookimpl
from agentwatch.plugins.storage.sqlite_store import SqliteStore


class FlakyStore(SqliteStore):
    async def submit(self, batch):
        if any(event.seq == 13 for event in batch.events):
            raise RuntimeError("the flaky store refuses seq 13")
        await super().submit(batch)


@hookimpl
def agentwatch_open_store(config):
    return FlakyStore(config.state_path("flaky.db"))
'''

TYPO = '''
from agentwatch.hookspecs import hookimpl

@hookimpl
def agentwatch_event_stored(events):
    pass
'''

STRICT_STALL = '''
import trio

from agentwatch.hookspecs import hookimpl
from agentwatch.model import now_ms

THRESHOLD_S = 30.0  # an open turn silent for 30 s is stalled, whatever the configuration says
facts = {}  # (agent_id, session) -> SessionFacts
stalled = {}  # (agent_id, session) -> the last activity before the episode
the_daemon = None


@hookimpl
def agentwatch_startup(daemon, nursery):
    global the_daemon
    the_daemon = daemon
    nursery.start_soon(check_every_second)


@hookimpl
def agentwatch_sessions_changed(sessions):
    facts.update(sessions)
    for (agent_id, session), new in sessions.items():
        if (agent_id, session) in stalled and stalled[agent_id, session] != new.last_event_at:
            del stalled[agent_id, session]
            the_daemon.plugins.notify("agentwatch_stall_cleared", agent_id=agent_id, session=session)


async def check_every_second():
    while True:
        for (agent_id, session), f in facts.items():
            if f.turn_open and (agent_id, session) not in stalled and now_ms() - f.last_event_at >= THRESHOLD_S * 1000:
                stalled[agent_id, session] = f.last_event_at
                the_daemon.plugins.notify(
                    "agentwatch_stall_detected", agent_id=agent_id, session=session, since=f.last_event_at, threshold_s=THRESHOLD_S
                )
        await trio.sleep(1)
'''


@pytest.fixture
def install(tmp_path, monkeypatch):
    """Install a plugin module as a real distribution with an ``agentwatch`` entry point."""
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))
    names = []

    def install_plugin(name: str, source: str) -> None:
        (site / f"{name}.py").write_text(textwrap.dedent(source))
        dist = site / f"{name}-1.0.dist-info"
        dist.mkdir()
        (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
        (dist / "entry_points.txt").write_text(f"[agentwatch]\n{name} = {name}\n")
        importlib.invalidate_caches()
        names.append(name)

    yield install_plugin
    for name in names:
        sys.modules.pop(name, None)


async def test_an_entry_point_plugin_is_loaded_and_every_hook_reaches_it(state_dir, install):
    install("recorder", RECORDER)
    async with running_daemon(state_dir) as d:
        recorder = sys.modules["recorder"]
        assert recorder.seen["startup"] == [d.daemon.addresses]
        async with agent(d, "a1") as a:
            await a.hello("shout", name="loud")
            await a.event(1, "hello there")
            await a.event(2, {"kind": "prompt"}, format="agentwatch")
            await a.until_ack(2)
        async with watcher(d) as w:
            status = await w.call("status")
            counts = await w.call("recorder.counts")
        [event, _] = await stored(d, "a1")
    assert "recorder" in status["plugins"] and "shout" in status["formats"]
    assert (event["kind"], event["format"], event["data"]) == ("output", "shout", "hello there")
    assert recorder.seen["connected"] == [("a1", "loud", 0)]
    assert recorder.seen["disconnected"] == [("a1", 1000)]
    assert recorder.seen["stored"] == [("a1", 1, 0, "output"), ("a1", 2, 0, "prompt")]
    assert recorder.seen["sessions"][-1] == (("a1", 0), "person")
    assert counts == {
        "startup": 1, "connected": 1, "disconnected": 1, "stored": 2, "sessions": len(recorder.seen["sessions"]), "attention": 0
    }


async def test_a_raising_plugin_loses_no_event_and_is_counted(state_dir, install):
    install("recorder", RECORDER)
    async with running_daemon(state_dir) as d:
        async with agent(d, "a1") as a:
            await a.hello("shout")
            await a.event(1, "boom")  # the format raises
            await a.event(2, "odd")  # the format returns garbage
            await a.event(3, {"kind": "error"}, format="agentwatch")  # events_stored raises
            await a.event(4, "fine")
            frames = await a.until_ack(4)
        assert all(frame["type"] == "ack" for frame in frames)
        events = await stored(d, "a1")
        async with watcher(d) as w:
            status = await w.call("status")
    assert [(e["seq"], e["kind"]) for e in events] == [(1, "raw"), (2, "raw"), (3, "error"), (4, "output")]
    assert status["plugin_errors"] == {"recorder": 3}
    assert ("a1", 4, 0, "output") in sys.modules["recorder"].seen["stored"]


async def test_a_third_party_store_replaces_the_built_in_and_its_failure_is_internal(state_dir, install):
    install("flaky", FLAKY_STORE)
    async with running_daemon(state_dir) as d, agent(d, "a1") as a:
        await a.hello()
        await a.event(12, {"kind": "output"})
        await a.until_ack(12)
        await a.event(13, {"kind": "output"})
        error = await a.recv()
        assert (error["code"], error["type"]) == ("internal", "error")
        await a.event(14, {"kind": "output"})  # storing 14 would let an ack cover the lost 13
        error = await a.recv()
        assert (error["code"], error["seq"]) == ("internal", 14) and "resend from there" in error["message"]
        assert [e["seq"] for e in await stored(d, "a1")] == [12]
    assert (state_dir / "flaky.db").exists() and not (state_dir / "agentwatch.db").exists()


async def test_a_disabled_built_in_is_not_loaded(state_dir):
    async with running_daemon(state_dir, {"AGENTWATCH_PLUGINS_DISABLE": "claude-stream-json"}) as d:
        async with watcher(d) as w:
            status = await w.call("status")
        assert "claude-stream-json" not in status["plugins"] and "claude-stream-json" not in status["formats"]
        async with agent(d, "a1") as a:
            await a.send({"type": "hello", "protocol": 1, "format": "claude-stream-json"})
            assert (await a.recv())["code"] == "unknown_format"
            assert await a.closed_code() == 4000


async def test_a_third_party_plugin_replaces_the_built_in_stall_policy(state_dir, install, virtual_clock):
    install("strict_stall", STRICT_STALL)
    quiet = {"AGENTWATCH_SERVER_PING_INTERVAL": "1d", "AGENTWATCH_SERVER_PING_TIMEOUT": "1d"}
    async with running_daemon(state_dir, {**quiet, "AGENTWATCH_PLUGINS_DISABLE": "stall"}) as d, agent(d, "a1") as a:
        assert "stall" not in d.daemon.plugins.names() and "strict_stall" in d.daemon.plugins.names()
        await a.hello()
        await a.event(1, {"kind": "prompt", "text": "go"})
        await a.until_ack(1)
        async with watcher(d) as w:
            await trio.sleep(25)
            assert "stalled" not in [item["state"] for item in (await w.call("attention.list"))["items"]]
            await trio.sleep(10)  # the built-in would wait 15 minutes; the replacement's 30 s have passed
            assert [(i["agent_id"], i["state"]) for i in (await w.call("attention.list"))["items"]] == [("a1", "stalled")]
            await a.event(2, {"kind": "output", "text": "still here"})
            await a.until_ack(2)
            assert "stalled" not in [item["state"] for item in (await w.call("attention.list"))["items"]]
            assert (await w.call("status"))["plugin_errors"] == {}


def config_with(state_dir, **environ):
    return load_config(Overrides(state_dir=state_dir, listen=["127.0.0.1:0"]), environ=environ)


def test_disabling_a_plugin_nobody_has_is_a_startup_error(state_dir):
    with pytest.raises(StartupError, match=r"'storag'.*known plugins: agentwatch, attention, claude-hook, .*, storage, ") as caught:
        Daemon(config_with(state_dir, AGENTWATCH_PLUGINS_DISABLE="storag"))
    assert all(name in str(caught.value) for name in BUILTIN_PLUGINS)


def test_disabling_storage_without_a_replacement_is_a_startup_error(state_dir):
    with pytest.raises(StartupError, match="no plugin provides a store"):
        Daemon(config_with(state_dir, AGENTWATCH_PLUGINS_DISABLE="storage"))


def test_a_misspelled_hook_fails_at_start(state_dir, install):
    install("typo", TYPO)
    with pytest.raises(StartupError, match="agentwatch_event_stored"):
        Daemon(config_with(state_dir))


def test_a_plugin_that_fails_to_import_names_itself(state_dir, install):
    install("broken", "raise ImportError('missing dependency frobnicate')")
    with pytest.raises(StartupError, match="'broken'.*frobnicate.*plugins.disable"):
        Daemon(config_with(state_dir))


async def test_a_blocked_third_party_plugin_is_not_imported(state_dir, install):
    install("broken", "raise ImportError('never imported')")
    async with running_daemon(state_dir, {"AGENTWATCH_PLUGINS_DISABLE": "broken"}):
        await trio.sleep(0)
    assert "broken" not in sys.modules


#: Hooks whose failure is meant to stop the daemon (a store, a refused configuration): not "every hook" here.
FATAL_HOOKS = {"agentwatch_open_store", "agentwatch_check_config"}


def raising_everywhere():
    """A plugin implementing every other hook, each raising."""
    namespace: dict = {}
    for name in set(hook_names()) - FATAL_HOOKS:
        parameters = inspect.signature(getattr(hookspecs, name)).parameters
        # pluggy reads the argument names, so each implementation needs the spec's signature
        exec(f"def {name}({', '.join(parameters)}):\n    raise RuntimeError('{name} always fails')\n", namespace)  # noqa: S102
    hooks = {name: staticmethod(hookimpl(fn)) for name, fn in namespace.items() if name.startswith("agentwatch_")}
    return type("RaisingEverywhere", (), hooks)()


async def test_a_plugin_raising_in_every_hook_leaves_ingest_acks_and_queries_working(state_dir, virtual_clock, caplog):
    plugins = Plugins()
    plugins.manager.register(raising_everywhere(), name="broken")
    quiet = {"AGENTWATCH_SERVER_PING_INTERVAL": "1d", "AGENTWATCH_SERVER_PING_TIMEOUT": "1d"}
    async with running_daemon(state_dir, quiet, plugins=plugins) as d:
        async with agent(d, "a1") as a, watcher(d) as w:
            await a.hello()
            await w.call("subscribe", topics=["attention"])
            await a.batch(range(1, 11))
            await a.event(11, {"kind": "turn_completed"})
            frames = await a.until_ack(11)
            assert all(frame["type"] == "ack" for frame in frames)
            await a.event(12, {"kind": "prompt"})
            await a.until_ack(12)
            await trio.sleep(16 * 60)  # the open turn stalls: the stall hooks run (and raise) too
            assert [item["state"] for item in (await w.call("attention.list"))["items"]] == ["stalled"]
            assert len((await w.call("events.list", agent_id="a1"))["events"]) == 12
            status = await w.call("status")
    raised = {record.msg["hook"] for record in caplog.records if isinstance(record.msg, dict) and record.msg.get("event") == "plugin_error"}
    assert raised >= {
        "agentwatch_register_formats", "agentwatch_register_watch_methods", "agentwatch_register_topics",
        "agentwatch_startup", "agentwatch_agent_connected", "agentwatch_events_stored", "agentwatch_sessions_changed",
        "agentwatch_attention_changed", "agentwatch_stall_detected", "agentwatch_agent_disconnected",
    }
    assert status["plugin_errors"]["broken"] >= 9
