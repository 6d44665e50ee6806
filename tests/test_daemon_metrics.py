"""The daemon's Prometheus endpoint, scraped over real HTTP after real traffic and parsed with
prometheus_client's own parser."""

import urllib.request

import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families
from trio_websocket import ConnectionRejected, open_websocket_url

from agentwatch.config import ConfigError, Overrides, load_config
from agentwatch.daemon import Daemon, StartupError
from agentwatch.exceptions import unwrapped
from agentwatch.hookspecs import hookimpl
from agentwatch.plugin_manager import Plugins
from helpers import agent, running_daemon, watcher

MINUTE = 60
SETTINGS = {
    "AGENTWATCH_METRICS_LISTEN": "127.0.0.1:0",
    "AGENTWATCH_RETENTION_MAX_EVENTS_PER_AGENT": "20",
    "AGENTWATCH_SERVER_PING_INTERVAL": "1d",
    "AGENTWATCH_SERVER_PING_TIMEOUT": "1d",
}


class Faulty:
    @hookimpl
    def agentwatch_events_stored(self, events):
        raise RuntimeError("a broken third-party plugin")


async def scrape(address: str) -> dict[tuple[str, tuple], float]:
    """Every sample by (name, sorted labels)."""

    def get() -> tuple[str, str]:
        with urllib.request.urlopen(f"http://{address}/metrics", timeout=10) as response:
            return response.headers["Content-Type"], response.read().decode()

    content_type, text = await trio.to_thread.run_sync(get)
    assert content_type == "text/plain; version=0.0.4; charset=utf-8"
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def test_a_scrape_counts_what_happened(state_dir, virtual_clock):
    plugins = Plugins()
    plugins.manager.register(Faulty(), name="faulty")
    async with running_daemon(state_dir, SETTINGS, plugins=plugins) as d:
        [address] = d.daemon.metrics_addresses
        async with agent(d, "a1") as a:
            await a.hello()
            await a.batch(range(1, 51))
            await a.until_ack(50)
        async with agent(d, "a1") as a, watcher(d) as w:
            await a.hello()
            await a.batch(range(41, 51))  # resent after a reconnect: acknowledged, not stored again
            await a.until_ack(50)
            await a.send("{broken")
            assert (await a.recv())["code"] == "bad_json"
            await a.event(51, {"kind": "prompt"})
            await a.until_ack(51)
            await trio.sleep(16 * MINUTE)  # the open turn stalls
            with pytest.raises(ConnectionRejected):
                async with open_websocket_url(f"{d.url}/v1/watch"):
                    pass
            await w.call("retention.prune")
            samples = await scrape(address)
    one = ()
    assert samples[("agentwatch_events_received_total", one)] == 61
    assert samples[("agentwatch_events_stored_total", one)] == 51
    assert samples[("agentwatch_events_deduplicated_total", one)] == 10
    assert samples[("agentwatch_events_acked_total", one)] == 61
    assert samples[("agentwatch_errors_total", (("code", "bad_json"),))] == 1
    assert samples[("agentwatch_handshakes_rejected_total", (("status", "401"),))] == 1
    assert samples[("agentwatch_agents_connected", one)] == 1
    assert samples[("agentwatch_watchers_connected", one)] == 1
    assert samples[("agentwatch_commit_events_sum", one)] == 51
    assert samples[("agentwatch_commit_events_count", one)] >= 3
    assert samples[("agentwatch_commit_duration_seconds_count", one)] == samples[("agentwatch_commit_events_count", one)]
    assert samples[("agentwatch_stalls_detected_total", one)] == 1
    assert samples[("agentwatch_attention_items", (("state", "stalled"),))] == 1
    assert samples[("agentwatch_attention_items", (("state", "needs_permission"),))] == 0
    assert samples[("agentwatch_retention_removed_events_total", one)] == 31
    assert samples[("agentwatch_plugin_errors_total", (("plugin", "faulty"),))] == 2  # two commits stored events
    assert samples[("process_resident_memory_bytes", one)] > 10 << 20


async def test_the_endpoint_is_off_by_default(state_dir):
    async with running_daemon(state_dir) as d:
        assert d.daemon.metrics_addresses == []


def test_a_metrics_address_other_machines_reach_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="a loopback address .* 0.0.0.0:9717 is reachable from other machines"):
        load_config(Overrides(state_dir=tmp_path), environ={"AGENTWATCH_METRICS_LISTEN": "0.0.0.0:9717"})


async def test_a_metrics_address_in_use_stops_start_up(tmp_path):
    taken = trio.socket.socket()
    await taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    config = load_config(
        Overrides(state_dir=tmp_path, listen=["127.0.0.1:0"]), environ={"AGENTWATCH_METRICS_LISTEN": f"127.0.0.1:{port}"}
    )
    with pytest.raises(StartupError, match=f"cannot serve metrics on 127.0.0.1:{port}: .*; choose another metrics.listen"):
        with unwrapped():
            async with trio.open_nursery() as nursery:
                await nursery.start(Daemon(config).run)
    taken.close()


async def test_server_allowed_hosts_names_the_hosts_a_scrape_may_give_and_a_reload_changes_them(state_dir, tmp_path):
    """DNS rebinding: only IPs, loopback names, listen hosts and server.allowed_hosts are answered."""

    async def status_for(address: str, host: str) -> int:
        ip, port = address.rsplit(":", 1)
        stream = await trio.open_tcp_stream(ip, int(port))
        async with stream:
            await stream.send_all(f"GET /metrics HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
            return int((await stream.receive_some()).split()[1])

    config_file = tmp_path / "agentwatch.toml"
    config_file.write_text('[server]\nallowed_hosts = ["prometheus.internal"]\n')
    config = load_config(Overrides(config_file=config_file, state_dir=state_dir, listen=["127.0.0.1:0"]), environ=SETTINGS)
    daemon = Daemon(config)
    async with trio.open_nursery() as nursery:
        await nursery.start(daemon.run)
        [address] = daemon.metrics_addresses
        assert await status_for(address, "prometheus.internal:9717") == 200
        assert await status_for(address, "localhost") == 200
        assert await status_for(address, "rebound.example") == 403
        config_file.write_text('[server]\nallowed_hosts = ["rebound.example"]\n')
        assert await daemon.reload(lambda: load_config(Overrides(config_file=config_file, state_dir=state_dir), environ=SETTINGS))
        assert await status_for(address, "rebound.example") == 200
        assert await status_for(address, "prometheus.internal") == 403
        daemon.stop()


@pytest.mark.parametrize("name", ["http://x.example", "x.example:80", "x y", "a@b"])
def test_server_allowed_hosts_takes_only_host_names(name):
    with pytest.raises(ConfigError, match="allowed_hosts.*host names"):
        load_config(Overrides(), environ={"AGENTWATCH_SERVER_ALLOWED_HOSTS": name})
