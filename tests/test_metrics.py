"""Metrics: the registry's text exposition (read back with prometheus_client's parser) and the HTTP endpoint
on real sockets."""

from __future__ import annotations

import math
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families

from agentwatch.addresses import is_loopback, parse_address
from agentwatch.listeners import open_listener
from agentwatch.metrics import Registry, add_process_metrics
from agentwatch.admission import Admission
from agentwatch.hosts import AllowedHosts
from agentwatch.metrics_http import MAX_HEAD_BYTES, serve_metrics


def parsed(registry: Registry) -> dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]]:
    """Each family's samples by (sample name, sorted labels), as prometheus_client reads the rendering."""
    return {
        family.name: {(s.name, tuple(sorted(s.labels.items()))): s.value for s in family.samples}
        for family in text_string_to_metric_families(registry.render())
    }


def merged(families: dict[str, dict]) -> dict:
    return {key: value for samples in families.values() for key, value in samples.items()}


def events_of(caplog: pytest.LogCaptureFixture, event: str) -> list[dict]:
    return [r.msg for r in caplog.records if isinstance(r.msg, dict) and r.msg.get("event") == event]


# --- the registry ---


def test_counters_with_labels_and_escaping_read_back_exactly():
    registry = Registry()
    events = registry.counter("agentwatch_events_total", 'Events stored.\nBy "format", a\\b.', ("format", "agent"))
    odd = 'quote " backslash \\ newline \n end'
    events.labels("claude-hook", "a1").inc(3)
    events.labels("claude-hook", "a1").inc()
    events.labels("codex", odd).inc(2.5)
    families = {f.name: f for f in text_string_to_metric_families(registry.render())}
    family = families["agentwatch_events"]  # the parser names a counter family without _total
    assert family.type == "counter"
    assert family.documentation == 'Events stored.\nBy "format", a\\b.'
    assert {(s.name, s.labels["format"], s.labels["agent"]): s.value for s in family.samples} == {
        ("agentwatch_events_total", "claude-hook", "a1"): 4,
        ("agentwatch_events_total", "codex", odd): 2.5,
    }
    text = registry.render()
    assert "# HELP agentwatch_events_total Events stored.\\nBy \"format\", a\\\\b.\n" in text
    assert 'agentwatch_events_total{format="codex",agent="quote \\" backslash \\\\ newline \\n end"} 2.5\n' in text
    assert 'agentwatch_events_total{format="claude-hook",agent="a1"} 4\n' in text  # an integer without .0


def test_an_unlabelled_metric_shows_zero_and_a_labelled_one_no_series_until_used():
    registry = Registry()
    registry.counter("plain_total", "p")
    registry.counter("split_total", "s", ("kind",))
    text = registry.render()
    assert "\nplain_total 0\n" in text
    assert "# TYPE split_total counter\n" in text and "split_total{" not in text
    assert parsed(registry)["agentwatch_metrics_collect_errors"] == {("agentwatch_metrics_collect_errors_total", ()): 0}


def test_registries_are_independent():
    first, second = Registry(), Registry()
    first.counter("same_total", "x").inc(5)
    second.counter("same_total", "x")
    assert parsed(first)["same"] == {("same_total", ()): 5}
    assert parsed(second)["same"] == {("same_total", ()): 0}


def test_gauges_set_inc_dec_and_read_at_each_scrape():
    registry = Registry()
    level = registry.gauge("queue_depth", "Frames waiting.")
    level.set(10)
    level.inc(2)
    level.dec(0.5)
    by_state = registry.gauge("conns", "Connections by state.", ("state",))
    by_state.labels("open").set(3)
    readings = {"value": 1.0}
    registry.gauge("uptime_seconds", "Uptime.", read=lambda: readings["value"])
    registry.gauge("agents", "Agents by status.", ("status",), read=lambda: {("idle",): 2, ("busy",): readings["value"]})
    assert parsed(registry)["queue_depth"] == {("queue_depth", ()): 11.5}
    assert parsed(registry)["conns"] == {("conns", (("state", "open"),)): 3}
    readings["value"] = 7.25
    families = parsed(registry)
    assert families["uptime_seconds"] == {("uptime_seconds", ()): 7.25}
    assert families["agents"] == {("agents", (("status", "idle"),)): 2, ("agents", (("status", "busy"),)): 7.25}


def test_a_counter_read_when_scraped():
    registry = Registry()
    total = {"n": 0}
    registry.counter("stored_total", "Stored.", read=lambda: total["n"])
    total["n"] = 41
    assert parsed(registry)["stored"] == {("stored_total", ()): 41}


def test_histogram_buckets_are_cumulative_with_inf_sum_and_count():
    registry = Registry()
    latency = registry.histogram("commit_seconds", "Commit latency.", [0.01, 0.1, 1])
    for value in (0.005, 0.01, 0.05, 0.5, 0.7, 3):  # 0.01 is in le="0.01": a bucket counts value <= le
        latency.observe(value)
    sizes = registry.histogram("batch_events", "Events per batch.", [1, 10, math.inf], ("format",))
    sizes.labels("codex").observe(4)
    sizes.labels("codex").observe(40)
    families = parsed(registry)
    assert families["commit_seconds"] == {
        ("commit_seconds_bucket", (("le", "0.01"),)): 2,
        ("commit_seconds_bucket", (("le", "0.1"),)): 3,
        ("commit_seconds_bucket", (("le", "1"),)): 5,
        ("commit_seconds_bucket", (("le", "+Inf"),)): 6,
        ("commit_seconds_sum", ()): pytest.approx(4.265),
        ("commit_seconds_count", ()): 6,
    }
    assert families["batch_events"] == {
        ("batch_events_bucket", (("format", "codex"), ("le", "1"))): 0,
        ("batch_events_bucket", (("format", "codex"), ("le", "10"))): 1,
        ("batch_events_bucket", (("format", "codex"), ("le", "+Inf"))): 2,
        ("batch_events_sum", (("format", "codex"),)): 44,
        ("batch_events_count", (("format", "codex"),)): 2,
    }
    assert "# TYPE commit_seconds histogram\n" in registry.render()


def test_numbers_are_spelled_as_prometheus_spells_them():
    registry = Registry()
    values = {"inf": math.inf, "minus_inf": -math.inf, "nan": math.nan, "int": 3.0, "big": 1e20, "tiny": 1.5e-7, "neg": -2}
    for name, value in values.items():
        registry.gauge(name, name).set(value)
    text = registry.render()
    for line in ("inf +Inf", "minus_inf -Inf", "nan NaN", "int 3", "big 1e+20", "tiny 1.5e-07", "neg -2"):
        assert f"\n{line}\n" in text
    families = parsed(registry)
    for name, value in values.items():
        [read] = families[name].values()
        assert math.isnan(read) if math.isnan(value) else read == value


def test_a_failing_reading_leaves_out_that_metric_only_and_is_counted(caplog):
    registry = Registry()
    registry.gauge("before", "b").set(1)
    registry.gauge("broken", "raises", read=lambda: 1 / 0)
    registry.gauge("wrong_shape", "a number for a labelled gauge", ("x",), read=lambda: 3)
    registry.gauge("wrong_key", "one value for two labels", ("x", "y"), read=lambda: {("a",): 1})
    registry.gauge("after", "a").set(2)
    families = parsed(registry)
    assert families.keys() == {"before", "after", "agentwatch_metrics_collect_errors"}
    assert families["agentwatch_metrics_collect_errors"] == {("agentwatch_metrics_collect_errors_total", ()): 3}
    assert [e["metric"] for e in events_of(caplog, "metric_read_failed")] == ["broken", "wrong_shape", "wrong_key"]
    assert parsed(registry)["agentwatch_metrics_collect_errors"] == {("agentwatch_metrics_collect_errors_total", ()): 6}


@pytest.mark.parametrize(
    ("register", "message"),
    [
        (lambda r: r.counter("events", "no _total"), "ends in _total"),
        (lambda r: r.gauge("taken", "again"), "taken already registered"),
        (lambda r: r.gauge("taken_count", "a sample name of the histogram"), "already registered"),
        (lambda r: r.gauge("things", "the base name of things_total"), "already registered"),
        (lambda r: r.gauge("agentwatch_metrics_collect_errors_total", "x"), "already registered"),
        (lambda r: r.gauge("9lives", "x"), "not a metric name"),
        (lambda r: r.gauge("g", "x", ("bad-label",)), "not a label name"),
        (lambda r: r.gauge("g", "x", ("__reserved",)), "not a label name"),
        (lambda r: r.gauge("g", "x", ("a", "a")), "repeat"),
        (lambda r: r.histogram("h", "x", [1, 1]), "increasing"),
        (lambda r: r.histogram("h", "x", [2, 1]), "increasing"),
        (lambda r: r.histogram("h", "x", [1], ("le",)), "'le'"),
    ],
)
def test_registration_mistakes_are_refused(register, message):
    registry = Registry()
    registry.histogram("taken", "x", [1])
    registry.counter("things_total", "x")
    with pytest.raises(ValueError, match=message):
        register(registry)


def test_update_mistakes_are_refused():
    registry = Registry()
    counter = registry.counter("c_total", "c", ("a", "b"))
    with pytest.raises(ValueError, match=r"one str per label \('a', 'b'\)"):
        counter.labels("only-one")
    with pytest.raises(ValueError, match="one str per label"):
        counter.labels("a", 2)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="one str per label"):
        counter.inc()  # a labelled counter needs its label values
    with pytest.raises(ValueError, match="only goes up"):
        counter.labels("x", "y").inc(-1)
    read = registry.gauge("r", "r", read=lambda: 1)
    with pytest.raises(ValueError, match="read when scraped"):
        read.set(2)
    assert parsed(registry)["c"] == {("c_total", (("a", "x"), ("b", "y"))): 0}  # refused calls made no series


def test_process_metrics_are_read_when_scraped():
    registry = Registry()
    add_process_metrics(registry)

    def value(sample: str) -> float:
        return merged(parsed(registry))[(sample, ())]

    assert value("process_resident_memory_bytes") > 1_000_000
    fds = value("process_open_fds")
    with open(os.devnull), open(os.devnull):
        assert value("process_open_fds") == fds + 2
    cpu = value("process_cpu_seconds_total")
    end = time.process_time() + 0.2
    while time.process_time() < end:
        pass
    assert value("process_cpu_seconds_total") >= cpu + 0.15


def test_process_start_time_is_when_the_process_started():
    code = "from agentwatch.metrics import *; r = Registry(); add_process_metrics(r); print(r.render())"
    before = time.time()
    text = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    [start] = [line.split()[1] for line in text.splitlines() if line.startswith("process_start_time_seconds ")]
    assert before - 0.05 <= float(start) <= before + 2  # to 10 ms; the interpreter starts in well under 2 s


# --- the HTTP endpoint ---


@asynccontextmanager
async def serving(
    registry: Registry, address: str = "127.0.0.1:0", hosts: AllowedHosts = AllowedHosts([])
) -> AsyncIterator[list[trio.SocketListener]]:
    listeners = await open_listener(parse_address(address))
    async with trio.open_nursery() as nursery:
        await nursery.start(serve_metrics, listeners, registry, lambda: hosts, Admission(64))
        yield listeners
        nursery.cancel_scope.cancel()


def port_of(listeners: list[trio.SocketListener]) -> int:
    return listeners[0].socket.getsockname()[1]


async def exchange(port: int, request: bytes, *, then_eof: bool = False) -> bytes:
    """Send ``request`` raw, then read everything the server sends until it closes."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(request)
        if then_eof:
            await stream.send_eof()
        return await read_to_end(stream)


async def read_to_end(stream: trio.abc.ReceiveStream) -> bytes:
    received = b""
    while data := await stream.receive_some():
        received += data
    return received


def split_response(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("ascii").split("\r\n")
    version, status, _ = status_line.split(" ", 2)
    assert version == "HTTP/1.1"
    headers = {name.lower(): value for name, _, value in (line.partition(": ") for line in header_lines)}
    assert int(headers["content-length"]) == len(body) or not body
    return int(status), headers, body


def sample_registry() -> Registry:
    registry = Registry()
    registry.counter("agentwatch_events_total", "Events stored.", ("format",)).labels("codex").inc(12)
    registry.gauge("agentwatch_agents_connected", "Agents connected.").set(2)
    return registry


async def test_get_metrics_with_an_independent_client():
    async with serving(sample_registry()) as listeners:
        url = f"http://127.0.0.1:{port_of(listeners)}/metrics"

        def fetch() -> tuple[int, dict[str, str], str]:
            with urllib.request.urlopen(url, timeout=10) as response:
                return response.status, dict(response.headers), response.read().decode()

        status, headers, body = await trio.to_thread.run_sync(fetch)
    assert (status, headers["Content-Type"], headers["Connection"]) == (200, "text/plain; version=0.0.4; charset=utf-8", "close")
    assert int(headers["Content-Length"]) == len(body.encode())
    families = {f.name: f for f in text_string_to_metric_families(body)}
    assert [(s.labels, s.value) for s in families["agentwatch_events"].samples] == [({"format": "codex"}, 12)]
    assert families["agentwatch_agents_connected"].samples[0].value == 2


async def test_head_is_get_without_the_body_and_a_query_is_ignored():
    async with serving(sample_registry()) as listeners:
        port = port_of(listeners)
        get = split_response(await exchange(port, b"GET /metrics?debug=1 HTTP/1.1\r\nHost: localhost:9717\r\n\r\n"))
        head = split_response(await exchange(port, b"HEAD /metrics HTTP/1.1\r\nHost: localhost:9717\r\n\r\n"))
    assert get[0] == head[0] == 200
    assert head[2] == b""
    assert head[1]["content-length"] == get[1]["content-length"] == str(len(get[2]))
    assert head[1]["content-type"] == get[1]["content-type"]
    assert b"agentwatch_events_total" in get[2]


@pytest.mark.parametrize(
    ("host", "status"),
    [
        (b"localhost", 200), (b"LocalHost.:9717", 200), (b"app.localhost", 200), (b"127.0.0.1:9717", 200),
        (b"[::1]:9717", 200), (b"10.1.2.3", 200), (b"Metrics.Example:80", 200), (None, 200),
        (b"rebound.example", 403), (b"localhost.rebound.example:9717", 403), (b"127.0.0.1.nip.io", 403), (b"", 403),
    ],
)
async def test_only_a_host_that_no_rebinding_page_can_name_is_answered(host, status):
    """DNS rebinding: a page of rebound.example resolved to 127.0.0.1 sends Host: rebound.example."""
    request = b"GET /metrics HTTP/1.1\r\n" + (b"Host: " + host + b"\r\n" if host is not None else b"") + b"\r\n"
    async with serving(sample_registry(), hosts=AllowedHosts(["metrics.example"])) as listeners:
        got, headers, body = split_response(await exchange(port_of(listeners), request))
    assert got == status
    assert (b"agentwatch_events_total" in body) == (status == 200)


@pytest.mark.parametrize(
    ("request_bytes", "status", "hint"),
    [
        (b"GET / HTTP/1.1\r\nHost: localhost:9717\r\n\r\n", 404, b"/metrics"),
        (b"GET /metrics/ HTTP/1.0\r\n\r\n", 404, b"/metrics"),
        (b"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n", 405, b"GET and HEAD"),
        (b"DELETE /metrics HTTP/1.1\r\n\r\n", 405, b"GET and HEAD"),
        (b"hello\r\n\r\n", 400, b"GET /metrics HTTP/1.1"),
        (b"GET /metrics\r\n\r\n", 400, b"GET /metrics HTTP/1.1"),  # HTTP/0.9
        (b"GET /metrics HTTP/2.0\r\n\r\n", 400, b"GET /metrics HTTP/1.1"),
        (b"GET  /metrics HTTP/1.1\r\n\r\n", 400, b"GET /metrics HTTP/1.1"),
        (b"GET /metrics HTTP/1.1\r\nHost: " + b"x" * MAX_HEAD_BYTES + b"\r\n\r\n", 431, b"8192 bytes"),
        (b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nHost: localhost\r\n\r\n", 400, b"one Host"),
        (b"GET /metrics HTTP/1.1\r\nHost: rebound.example:9717\r\n\r\n", 403, b"server.allowed_hosts"),
    ],
)
async def test_refusals_say_what_to_do(request_bytes, status, hint):
    async with serving(sample_registry()) as listeners:
        got, headers, body = split_response(await exchange(port_of(listeners), request_bytes))
    assert got == status
    assert hint in body and body.endswith(b"\n") and body.count(b"\n") == 1
    assert headers["connection"] == "close"
    assert (headers.get("allow") == "GET, HEAD") == (status == 405)


async def test_head_of_a_missing_page_has_no_body():
    async with serving(sample_registry()) as listeners:
        status, headers, body = split_response(await exchange(port_of(listeners), b"HEAD / HTTP/1.1\r\n\r\n"))
    assert (status, body) == (404, b"")
    assert int(headers["content-length"]) > 0


async def test_a_head_of_exactly_the_limit_is_served_and_one_byte_more_is_not():
    start = b"GET /metrics HTTP/1.1\r\nX-Pad: "
    end = b"\r\n\r\n"
    exact = start + b"p" * (MAX_HEAD_BYTES - len(start) - len(end)) + end
    assert len(exact) == MAX_HEAD_BYTES
    over = start + b"p" * (MAX_HEAD_BYTES - len(start) - len(end) + 1) + end
    async with serving(sample_registry()) as listeners:
        assert split_response(await exchange(port_of(listeners), exact))[0] == 200
        assert split_response(await exchange(port_of(listeners), over))[0] == 431


async def test_a_client_sending_far_more_than_the_limit_still_reads_its_431():
    # The server stops reading at the limit; closing with the rest unread would reset the connection
    # and could destroy the response before the client reads it.
    async with serving(sample_registry()) as listeners:
        raw = await exchange(port_of(listeners), b"GET /metrics HTTP/1.1\r\n" + b"X-Pad: " + b"p" * 40_000 + b"\r\n\r\n")
    assert split_response(raw)[0] == 431


async def test_a_head_cut_short_is_a_bad_request_and_silence_then_eof_gets_nothing():
    async with serving(sample_registry()) as listeners:
        port = port_of(listeners)
        assert split_response(await exchange(port, b"GET /metrics HTTP/1.1\r\nHost: localhost:9717\r\n", then_eof=True))[0] == 400
        assert await exchange(port, b"", then_eof=True) == b""


async def test_bare_newlines_and_leading_empty_lines_are_accepted():
    async with serving(sample_registry()) as listeners:
        raw = await exchange(port_of(listeners), b"\r\n\nGET /metrics HTTP/1.0\nHost: localhost\n\n")
    assert split_response(raw)[0] == 200


async def test_an_idle_client_is_dropped_after_10_s_and_others_are_served_meanwhile(virtual_clock):
    async with serving(sample_registry()) as listeners:
        port = port_of(listeners)
        idle = await trio.open_tcp_stream("127.0.0.1", port)
        trickle = await trio.open_tcp_stream("127.0.0.1", port)
        start = trio.current_time()
        dropped: dict[str, float] = {}

        async def wait_dropped(name: str, stream: trio.SocketStream) -> None:
            assert await read_to_end(stream) == b""
            dropped[name] = trio.current_time() - start

        async def send_slowly() -> None:
            for byte in b"GET /metrics HTTP/1.1\r\n":  # one byte every 3 s never completes the head in time
                await trio.sleep(3)
                try:
                    await trickle.send_all(bytes([byte]))
                except trio.BrokenResourceError:
                    return

        async with trio.open_nursery() as nursery:
            nursery.start_soon(wait_dropped, "idle", idle)
            nursery.start_soon(wait_dropped, "trickle", trickle)
            nursery.start_soon(send_slowly)
            await trio.sleep(5)
            assert split_response(await exchange(port, b"GET /metrics HTTP/1.1\r\n\r\n"))[0] == 200
        await idle.aclose()
        await trickle.aclose()
    assert 10 <= dropped["idle"] < 10.5
    assert 10 <= dropped["trickle"] < 10.5


async def test_a_failing_render_is_a_500_for_that_request_only(caplog):
    registry = sample_registry()
    render = registry.render

    def broken() -> str:
        raise RuntimeError("render broke")

    async with serving(registry) as listeners:
        port = port_of(listeners)
        registry.render = broken  # type: ignore[method-assign]
        status, _, body = split_response(await exchange(port, b"GET /metrics HTTP/1.1\r\n\r\n"))
        assert status == 500 and b"log says why" in body
        registry.render = render  # type: ignore[method-assign]
        assert split_response(await exchange(port, b"GET /metrics HTTP/1.1\r\n\r\n"))[0] == 200
    [failure] = events_of(caplog, "metrics_render_failed")
    assert failure["level"] == "error"


async def test_a_client_that_resets_does_not_disturb_the_server():
    async with serving(sample_registry()) as listeners:
        port = port_of(listeners)
        for partial in (b"", b"GET /metr", b"GET /metrics HTTP/1.1\r\n\r\n"):
            sock = socket.create_connection(("127.0.0.1", port))
            sock.sendall(partial)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")  # close = RST
            sock.close()
        await trio.sleep(0.1)
        assert split_response(await exchange(port, b"GET /metrics HTTP/1.1\r\n\r\n"))[0] == 200


async def test_served_on_a_unix_socket(tmp_path):
    path = tmp_path / "metrics.sock"
    async with serving(sample_registry(), f"unix:{path}"):
        stream = await trio.open_unix_socket(str(path))
        async with stream:
            await stream.send_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n")
            status, _, body = split_response(await read_to_end(stream))
    assert status == 200 and b"agentwatch_agents_connected 2\n" in body


@pytest.mark.parametrize(
    ("address", "loopback"),
    [
        ("127.0.0.1:9717", True),
        ("127.8.9.10:9717", True),
        ("[::1]:9717", True),
        ("localhost:9717", True),
        ("unix:/run/agentwatch/metrics.sock", True),
        ("0.0.0.0:9717", False),
        ("[::]:9717", False),
        ("192.168.1.5:9717", False),
        ("10.0.0.1:9717", False),
        ("example.com:9717", False),
        ("localhost.example.com:9717", False),
    ],
)
def test_which_metrics_addresses_are_loopback(address, loopback):
    assert is_loopback(parse_address(address)) is loopback
