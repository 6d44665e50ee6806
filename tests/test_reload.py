"""Reload (SIGHUP): new settings take effect with every connection kept; a bad configuration is
refused and the running one stays."""

import logging
import signal

import pytest
import trio

from agentwatch.config import Overrides, load_config
from agentwatch.daemon import Daemon, StartupError
from agentwatch.hookspecs import hookimpl
from agentwatch.plugin_manager import Plugins
from helpers import DaemonProcess, agent, running_daemon

MINUTE = 60
QUIET = '[server]\nping_interval = "1d"\nping_timeout = "1d"\n'


class Picky:
    """A third-party plugin with settings of its own, ``[plugins.picky]``."""

    def __init__(self):
        self.reloads = []

    @hookimpl
    def agentwatch_check_config(self, config):
        if config.plugin("picky").get("colour", "red") not in ("red", "green"):
            raise ValueError("plugins.picky.colour must be red or green")

    @hookimpl
    def agentwatch_config_reloaded(self, config, previous):
        self.reloads.append((previous.plugin("picky").get("colour"), config.plugin("picky").get("colour")))

    @hookimpl
    def agentwatch_stall_detected(self, agent_id, session, since, threshold_s):
        self.reloads.append(("stall", round(trio.current_time() / MINUTE), threshold_s))


def setup(tmp_path, text):
    path = tmp_path / "agentwatch.toml"
    path.write_text(QUIET + text)
    plugins, picky = Plugins(), Picky()
    plugins.manager.register(picky, name="picky")
    state_dir = tmp_path / "state"

    def load():
        return load_config(Overrides(config_file=path, state_dir=state_dir, listen=["127.0.0.1:0"]), environ={})

    return path, plugins, picky, load


@pytest.fixture
def restore_level():
    yield
    logging.getLogger().setLevel(logging.INFO)


async def test_a_new_stall_threshold_applies_at_once_and_the_agent_stays_connected(tmp_path, virtual_clock, restore_level):
    path, plugins, picky, load = setup(tmp_path, '[stall]\nthreshold = "30m"\n[plugins.picky]\ncolour = "red"\n')
    async with running_daemon(tmp_path / "state", {"AGENTWATCH_CONFIG": str(path)}, plugins=plugins) as d, agent(d, "a1") as a:
        await a.hello()
        await a.event(1, {"kind": "prompt"})
        await a.until_ack(1)
        await trio.sleep(5 * MINUTE)
        path.write_text(QUIET + '[stall]\nthreshold = "10m"\n[log]\nlevel = "warning"\n[plugins.picky]\ncolour = "green"\n')
        assert await d.daemon.reload(load) is True
        assert d.daemon.config["stall"]["threshold"] == 600.0
        assert logging.getLogger().level == logging.WARNING
        await trio.sleep(6 * MINUTE)
        assert ("stall", 10, 600.0) in picky.reloads, "the new threshold counts from the last activity"
        assert ("red", "green") in picky.reloads
        await a.event(2, {"kind": "output"})
        await a.until_ack(2)  # the same connection, still served


@pytest.mark.parametrize(
    "broken, says",
    [
        ("[stall\nthreshold = 1", "is not valid TOML"),
        ('[stall]\nthreshold = "soon"\n', "[stall] threshold = 'soon'"),
        ('[plugins.picky]\ncolour = "blue"\n', "plugins.picky.colour must be red or green"),
    ],
)
async def test_a_broken_configuration_is_refused_and_the_old_one_stays(tmp_path, broken, says, caplog):
    path, plugins, picky, load = setup(tmp_path, '[stall]\nthreshold = "30m"\n')
    async with running_daemon(tmp_path / "state", {"AGENTWATCH_CONFIG": str(path)}, plugins=plugins) as d, agent(d, "a1") as a:
        await a.hello()
        before = d.daemon.config
        path.write_text(broken)
        assert await d.daemon.reload(load) is False
        assert d.daemon.config is before and picky.reloads == []
        assert says in caplog.text
        await a.event(1, {"kind": "output"})
        await a.until_ack(1)


async def test_sighup_reloads_the_file_and_says_what_changed_and_what_waits_for_a_restart(tmp_path):
    path = tmp_path / "agentwatch.toml"
    path.write_text('[stall]\nthreshold = "30m"\n')
    daemon = DaemonProcess(tmp_path / "state", "--config", str(path))
    await daemon.ready()
    path.write_text('[stall]\nthreshold = "soon"\n')
    daemon.proc.send_signal(signal.SIGHUP)
    with trio.fail_after(10):
        while not [line for line in daemon.lines() if line["event"] == "reload_refused"]:
            await trio.sleep(0.02)
    path.write_text('[stall]\nthreshold = "20m"\n[storage]\npath = "elsewhere.db"\n')
    daemon.proc.send_signal(signal.SIGHUP)
    with trio.fail_after(10):
        while not [line for line in daemon.lines() if line["event"] == "reloaded"]:
            await trio.sleep(0.02)
    daemon.proc.send_signal(signal.SIGTERM)
    assert await daemon.wait() == 0
    lines = {line["event"]: line for line in daemon.lines()}
    assert lines["reload_refused"]["level"] == "error"
    assert "threshold = 'soon'" in lines["reload_refused"]["error"]
    assert lines["reload_needs_restart"]["settings"] == ["storage.path"]
    assert lines["reloaded"]["changed"] == ["stall.threshold"]
    assert not (tmp_path / "state" / "elsewhere.db").exists(), "the store stays where it was opened"


async def test_a_plugin_refusing_the_configuration_stops_start_up(tmp_path):
    path, plugins, picky, load = setup(tmp_path, '[plugins.picky]\ncolour = "blue"\n')
    with pytest.raises(StartupError, match="plugin 'picky' refuses the configuration: plugins.picky.colour must be red or green"):
        Daemon(load(), plugins)
