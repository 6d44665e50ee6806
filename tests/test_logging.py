"""Logs: JSON lines off a terminal, bound context, no token, no line per event at INFO."""

import io
import json
import logging
import os
import signal

import pytest
from trio_websocket import ConnectionRejected, open_websocket_url

from agentwatch.logs import configure_logging, get_logger
from helpers import DaemonProcess, agent, watcher


async def drive(daemon: DaemonProcess) -> str:
    """Connect, stream, misbehave, read, then SIGTERM; return the token."""
    running = await daemon.ready()
    async with agent(running, "logged-agent") as a:
        await a.hello()
        await a.send({"type": "events", "events": [{"seq": s, "data": {"kind": "output", "text": "secret-ish"}} for s in range(1, 51)]})
        await a.until_ack(50)
        await a.send("{broken")
        assert (await a.recv())["code"] == "bad_json"
    with pytest.raises(ConnectionRejected):
        async with open_websocket_url(f"{running.url}/v1/watch", extra_headers=[(b"Authorization", b"Bearer nope")]):
            pass
    async with watcher(running) as w:
        await w.call("status")
    daemon.proc.send_signal(signal.SIGTERM)
    assert await daemon.wait() == 0
    return running.token


async def test_every_line_is_json_with_the_schema_fields_and_no_token(tmp_path):
    daemon = DaemonProcess(tmp_path / "state")
    token = await drive(daemon)
    text = daemon.log_path.read_text()
    assert token not in text
    lines = [json.loads(line) for line in text.splitlines()]
    for line in lines:
        assert {"timestamp", "level", "event", "logger"} <= line.keys(), line
        assert line["timestamp"].endswith("Z")
    events = [line["event"] for line in lines]
    for expected in ("store_opened", "ready", "handshake_rejected", "signal", "draining", "stopped"):
        assert expected in events
    routine = {"agent_connected", "agent_disconnected", "watch_connected", "watch_disconnected"}
    assert not routine & set(events), "a connection is routine (every hook and CLI call makes one): debug"
    assert len(lines) < 25, "no line per event at INFO (50 events were sent)"
    assert "secret-ish" not in text, "no record payload at INFO"


async def test_library_records_go_through_the_same_json_chain(tmp_path):
    daemon = DaemonProcess(tmp_path / "state", "--log-level", "debug")
    await drive(daemon)
    lines = [json.loads(line) for line in daemon.log_path.read_text().splitlines()]
    assert any(line["logger"] == "trio-websocket" for line in lines)
    events = [line["event"] for line in lines]
    assert {"agent_connected", "agent_disconnected", "watch_connected", "watch_disconnected"} <= set(events)
    connected = next(line for line in lines if line["event"] == "agent_connected")
    assert connected["agent_id"] == "logged-agent" and isinstance(connected["conn_id"], int)


def test_exceptions_are_structured_and_carry_no_locals():
    stream = io.StringIO()
    configure_logging("info", "json", stream)
    try:
        token = "s3cr3t-token-value"  # noqa: F841 - a local the traceback must not show
        try:
            raise ValueError("bad thing")
        except ValueError:
            get_logger("agentwatch.test").exception("failed")
        [line] = [json.loads(text) for text in stream.getvalue().splitlines()]
    finally:
        configure_logging("info", "json", open("/dev/null", "w"))  # noqa: SIM115
    [exception] = line["exception"]
    assert exception["exc_type"] == "ValueError" and exception["exc_value"] == "bad thing"
    assert "s3cr3t" not in json.dumps(line)


def test_console_format_on_request():
    stream = io.StringIO()
    configure_logging("info", "console", stream)
    try:
        get_logger("agentwatch.test").info("listening", address="127.0.0.1:7717")
    finally:
        configure_logging("info", "json", open("/dev/null", "w"))  # noqa: SIM115
    text = stream.getvalue()
    assert "listening" in text and "address" in text
    with pytest.raises(ValueError):
        json.loads(text)


@pytest.mark.parametrize("ours", [True, False])
def test_under_journald_each_line_starts_with_its_priority(tmp_path, ours):
    path, other = tmp_path / "journal", tmp_path / "redirected"
    other.touch()
    with path.open("w") as stream:
        named = os.fstat(stream.fileno()) if ours else os.stat(other)
        configure_logging("debug", "auto", stream, environ={"JOURNAL_STREAM": f"{named.st_dev}:{named.st_ino}"})
        try:
            log = get_logger("agentwatch.test")
            log.debug("d")
            log.info("i")
            log.warning("w")
            log.error("e")
            logging.getLogger("trio-websocket").warning("foreign")
        finally:
            configure_logging("info", "json", open(os.devnull, "w"))  # noqa: SIM115
    lines = path.read_text().splitlines()
    if ours:
        assert [line[:3] for line in lines] == ["<7>", "<6>", "<4>", "<3>", "<4>"]
        lines = [line[3:] for line in lines]
    assert [json.loads(line)["event"] for line in lines] == ["d", "i", "w", "e", "foreign"]


async def test_the_event_log_has_a_line_per_stored_event_and_no_content(tmp_path):
    daemon = DaemonProcess(tmp_path / "state", env={"AGENTWATCH_LOG_EVENTS": "true"})
    running = await daemon.ready()
    async with agent(running, "a1") as a:
        await a.hello()
        await a.event(1, {"kind": "prompt", "text": "secret prompt"})
        await a.event(2, {"kind": "tool_use", "tool": "Bash", "input": {"command": "rm -rf secret"}})
        await a.event(3, {"kind": "tool_result", "tool": "Bash", "is_error": True, "text": "secret output"})
        await a.until_ack(3)
    daemon.proc.send_signal(signal.SIGTERM)
    assert await daemon.wait() == 0
    assert "secret" not in daemon.log_path.read_text()
    stored = [line for line in daemon.lines() if line["event"] == "event_stored"]
    assert [(line["logger"], line["seq"], line["kind"], line.get("tool"), line.get("is_error")) for line in stored] == [
        ("agentwatch.events", 1, "prompt", None, None),
        ("agentwatch.events", 2, "tool_use", "Bash", None),
        ("agentwatch.events", 3, "tool_result", "Bash", True),
    ]
    assert {(line["agent_id"], line["session"], line["format"], line["level"]) for line in stored} == {("a1", 0, "agentwatch", "info")}
