"""``agentwatch run -- COMMAND...`` as a real subprocess, recording a fake agent that prints real
recordings (tests/fixtures): every line stored once and in order with its sniffed format, the
output passed through, the child's exit status kept, the daemon killed and restarted mid-run or
down for the whole run (the outbox, then ``agentwatch flush``), and signals passed on."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import trio

from helpers import FIXTURES, DaemonProcess, RpcError, fixture_records, running_daemon, stored, watcher

CODEX = "codex-exec-json/agentcmd__stream-output-2.jsonl"
CLAUDE = "claude-stream-json/terragon-oss__claude-json-bash-test.DERIVED.ndjson"
#: The kinds of the two recordings, line by line (see the format tests for why).
KINDS = {
    CODEX: ["session_started", "prompt", "thinking", "tool_use", "tool_result", "output", "turn_completed"],
    CLAUDE: ["session_started", "output"] + ["tool_use"] * 10 + ["tool_result"] * 10 + ["output", "turn_completed"],
}
FORMATS = {CODEX: "codex-exec-json", CLAUDE: "claude-stream-json"}
WAIT = 15.0  # seconds any one condition may take before the test fails

#: The fake agent: prints a file's lines as they are (each in two writes with ``--split``), and
#: before line N touches REACHED and waits for GO to exist (``N,REACHED,GO``); exits with STATUS.
FAKE_AGENT = """\
import sys, time
from pathlib import Path

fixture, status, *rest = sys.argv[1:]
split = "--split" in rest
pauses = {int(n): (Path(reached), Path(go)) for n, reached, go in (spec.split(",") for spec in rest if spec != "--split")}
out = sys.stdout.buffer
for index, line in enumerate(Path(fixture).read_bytes().splitlines(keepends=True)):
    if index in pauses:
        reached, go = pauses[index]
        reached.touch()
        deadline = time.monotonic() + 30
        while not go.exists() and time.monotonic() < deadline:
            time.sleep(0.005)
    if split:  # half a line, then the rest: the relay must put it together
        out.write(line[: len(line) // 2])
        out.flush()
        time.sleep(0.002)
        line = line[len(line) // 2 :]
    out.write(line)
    out.flush()
sys.exit(int(status))
"""

#: A child that says it is ready (a file), and on SIGTERM prints a line and exits 3.
TRAPS_SIGTERM = """\
import signal, sys, time
from pathlib import Path

def stop(signum, frame):
    print("got SIGTERM", flush=True)
    sys.exit(3)

signal.signal(signal.SIGTERM, stop)
print('{"kind": "output", "text": "working"}', flush=True)
Path(sys.argv[1]).touch()
time.sleep(30)
sys.exit(0)
"""


def environment(state_dir):
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTWATCH_")}
    return env | {"AGENTWATCH_STATE_DIR": str(state_dir)}


def agentwatch(*args):
    return [sys.executable, "-m", "agentwatch", *args]


#: ``agentwatch`` with the relay's wait for the last acks after the child exits cut from 10 s
#: (FINAL_WAIT) to 0.5 s, for a run whose daemon is down throughout.
QUICK_TO_GIVE_UP = [sys.executable, "-c", "import sys; import agentwatch.relay as relay; relay.FINAL_WAIT = 0.5; "
                    "from agentwatch.entry import main; sys.exit(main())"]


def fake_agent(tmp_path, fixture, status=0, *options):
    script = tmp_path / "fake_agent.py"
    script.write_text(FAKE_AGENT)
    return [sys.executable, str(script), str(FIXTURES / fixture), str(status), *options]


def ended(status):
    return {"kind": "session_ended", "text": f"{python()} exited with status {status}", "is_error": status != 0}


def python():
    return os.path.basename(sys.executable)


async def relay(state_dir, *args, program=agentwatch()):
    """``agentwatch run ARGS`` to the end: the completed process (stdout and stderr captured)."""
    with trio.fail_after(WAIT):
        return await trio.run_process([*program, "run", *args], stdin=subprocess.DEVNULL, capture_stdout=True,
                                      capture_stderr=True, check=False, env=environment(state_dir))


async def until(condition, what):
    """Poll ``condition`` (sync or async) until true, for up to ``WAIT`` seconds."""
    with trio.fail_after(WAIT):
        while True:
            result = condition()
            if hasattr(result, "__await__"):
                result = await result
            if result:
                return result
            await trio.sleep(0.01)


async def exited(proc):
    """The exit status of a ``subprocess.Popen``, once it has one."""
    await until(lambda: proc.poll() is not None, "the relay to exit")
    return proc.returncode


def outbox_events(state_dir, agent_id):
    path = state_dir / "outbox" / f"{agent_id}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.mark.parametrize(("fixture", "status", "split"), [(CODEX, 0, False), (CLAUDE, 5, True)])
async def test_every_line_is_stored_once_in_order_with_the_sniffed_format(state_dir, tmp_path, fixture, status, split):
    records = fixture_records(fixture)
    async with running_daemon(state_dir) as d:
        done = await relay(state_dir, "--agent-id", "relayed", "--", *fake_agent(tmp_path, fixture, status, *(["--split"] if split else [])))
        events = await stored(d, "relayed")
        async with watcher(d) as w:
            agents = {a["agent_id"]: a for a in await w.call("agents.list")}
    assert done.returncode == status, done.stderr
    assert done.stdout == (FIXTURES / fixture).read_bytes(), "the output passes through byte for byte"
    assert [e["data"] for e in events] == records + [ended(status)]
    assert [e["seq"] for e in events] == list(range(1, len(records) + 2))
    assert [e["format"] for e in events] == [FORMATS[fixture]] * len(records) + ["agentwatch"]
    assert [e["kind"] for e in events] == KINDS[fixture] + ["session_ended"]
    assert agents["relayed"]["kind"] == {CODEX: "codex", CLAUDE: "claude-code"}[fixture]
    assert agents["relayed"]["name"] == python()
    assert done.stderr == b"", "nothing to say while the daemon takes everything"
    assert not list((state_dir / "outbox").glob("*.jsonl")), "nothing left waiting"


async def test_quiet_passes_nothing_through_and_the_default_agent_id_is_program_host_pid(state_dir, tmp_path):
    async with running_daemon(state_dir) as d:
        done = await relay(state_dir, "--quiet", "--", *fake_agent(tmp_path, CODEX))
        async with watcher(d) as w:
            agents = await w.call("agents.list")
        assert len(agents) == 1
        agent_id = agents[0]["agent_id"]
        events = await stored(d, agent_id)
    assert done.returncode == 0
    assert done.stdout == b""
    assert agent_id.startswith(f"{python()}-") and agent_id.rsplit("-", 1)[1].isdigit()
    assert [e["data"] for e in events] == fixture_records(CODEX) + [ended(0)]
    assert not list((state_dir / "outbox").glob(f"{agent_id}.json*")), "a pid's outbox is removed once delivered"


async def test_a_command_that_does_not_exist_exits_127_with_a_message(state_dir, tmp_path):
    done = await relay(state_dir, "--", str(tmp_path / "no-such-agent"))
    assert done.returncode == 127
    assert b"cannot run" in done.stderr and b"no-such-agent" in done.stderr
    assert done.stdout == b""


async def test_no_command_or_an_unknown_format_is_a_usage_error(state_dir, tmp_path):
    missing = await relay(state_dir, "--")
    unknown = await relay(state_dir, "--format", "nope", "--", *fake_agent(tmp_path, CODEX))
    assert missing.returncode == 2 and b"name the agent's command" in missing.stderr
    assert unknown.returncode == 2 and b"unknown format 'nope'" in unknown.stderr
    assert unknown.stdout == b"", "the agent is not started"


async def test_daemon_killed_and_restarted_mid_run_every_line_stored_exactly_once(tmp_path):
    """Lines 0-7 go in live, 8-15 while the daemon is dead (outbox), 16-23 after its restart."""
    state_dir = tmp_path / "state"
    records = fixture_records(CLAUDE)
    gates = [(n, tmp_path / f"reached-{n}", tmp_path / f"go-{n}") for n in (8, 16)]
    daemon = DaemonProcess(state_dir)
    running = await daemon.ready()
    stderr = (tmp_path / "relay.err").open("wb")
    proc = subprocess.Popen(
        agentwatch("run", "--quiet", "--agent-id", "crashy", "--",
                   *fake_agent(tmp_path, CLAUDE, 0, *(f"{n},{reached},{go}" for n, reached, go in gates))),
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr, env=environment(state_dir),
    )
    try:
        (_, reached, go), (_, reached_2, go_2) = gates
        await until(reached.exists, "the first 8 lines")
        await until(lambda: _count(running, "crashy", 8), "the first 8 lines stored")
        daemon.proc.send_signal(signal.SIGKILL)
        assert await daemon.wait() == -signal.SIGKILL
        go.touch()
        await until(reached_2.exists, "lines 8-15")
        await until(lambda: records[15] in [e["data"] for e in outbox_events(state_dir, "crashy")], "lines 8-15 in the outbox")
        waiting = outbox_events(state_dir, "crashy")
        assert [e["data"] for e in waiting][-8:] == records[8:16], "held in order while the daemon is down"
        daemon = DaemonProcess(state_dir)
        running = await daemon.ready()
        go_2.touch()
        assert await exited(proc) == 0
        events = await stored(running, "crashy")
    finally:
        if proc.poll() is None:
            proc.kill()
        daemon.proc.send_signal(signal.SIGTERM)
        await daemon.wait()
        stderr.close()
    assert [e["data"] for e in events] == records + [ended(0)], "every line once, in order: no gap, no duplicate"
    assert [e["seq"] for e in events] == list(range(1, len(records) + 2))
    assert {e["format"] for e in events[:-1]} == {"claude-stream-json"}
    said = (tmp_path / "relay.err").read_text()
    assert "keeping events in" in said and "the daemon is back" in said
    assert outbox_events(state_dir, "crashy") == []


async def _count(running, agent_id, n):
    """Whether the daemon holds at least ``n`` events of ``agent_id`` (none while it does not know it)."""
    try:
        return len(await stored(running, agent_id)) >= n
    except RpcError:
        return False


async def test_the_relay_exits_once_the_last_event_is_acknowledged_not_a_poll_later(state_dir, tmp_path):
    """The sender used to sit out one more IDLE_POLL (1 s) after its final delivery."""
    reached, go = tmp_path / "reached", tmp_path / "go"
    async with running_daemon(state_dir) as d:
        proc = subprocess.Popen(agentwatch("run", "--quiet", "--agent-id", "prompt", "--", *fake_agent(tmp_path, CODEX, 0, f"4,{reached},{go}")),
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, env=environment(state_dir))
        try:
            await until(lambda: _count(d, "prompt", 4), "the first 4 lines stored (the sender is idle)")
            go.touch()
            released = time.monotonic()
            assert await exited(proc) == 0
            took = time.monotonic() - released
        finally:
            if proc.poll() is None:
                proc.kill()
        events = await stored(d, "prompt")
    assert [e["data"] for e in events] == fixture_records(CODEX) + [ended(0)]
    assert took < 0.8, f"the relay took {took:.2f}s to end after its child"


async def test_daemon_down_for_the_whole_run_keeps_the_events_for_flush(tmp_path):
    state_dir = tmp_path / "state"
    records = fixture_records(CODEX)
    done = await relay(state_dir, "--agent-id", "offline", "--", *fake_agent(tmp_path, CODEX, 7), program=QUICK_TO_GIVE_UP)
    assert done.returncode == 7, "the child's status, daemon or not"
    assert done.stdout == (FIXTURES / CODEX).read_bytes()
    assert b"no daemon is running" in done.stderr
    assert b"7 events of offline wait in" not in done.stderr and b"8 events of offline wait in" in done.stderr
    waiting = outbox_events(state_dir, "offline")
    assert [e["data"] for e in waiting] == records + [ended(7)]
    assert [e["seq"] for e in waiting] == list(range(1, len(records) + 2))

    async with running_daemon(state_dir) as d:
        flushed = await trio.run_process(agentwatch("flush"), capture_stdout=True, capture_stderr=True, check=False,
                                         env=environment(state_dir))
        again = await trio.run_process(agentwatch("flush"), capture_stdout=True, check=False, env=environment(state_dir))
        events = await stored(d, "offline")
    assert flushed.returncode == 0, flushed.stderr
    assert flushed.stdout == b"delivered 8 events\n"
    assert again.stdout == b"delivered 0 events\n"
    assert [e["data"] for e in events] == records + [ended(7)]
    assert [e["format"] for e in events] == ["codex-exec-json"] * len(records) + ["agentwatch"]
    assert [e["kind"] for e in events] == KINDS[CODEX] + ["session_ended"]
    assert outbox_events(state_dir, "offline") == []


async def test_sigterm_to_the_relay_reaches_the_child_and_its_status_is_kept(state_dir, tmp_path):
    script = tmp_path / "traps.py"
    script.write_text(TRAPS_SIGTERM)
    ready = tmp_path / "ready"
    out = (tmp_path / "relay.out").open("wb")
    async with running_daemon(state_dir) as d:
        proc = subprocess.Popen(agentwatch("run", "--agent-id", "trapper", "--", sys.executable, str(script), str(ready)),
                                stdin=subprocess.DEVNULL, stdout=out, env=environment(state_dir))
        try:
            await until(ready.exists, "the child to trap SIGTERM")
            proc.send_signal(signal.SIGTERM)
            assert await exited(proc) == 3
        finally:
            if proc.poll() is None:
                proc.kill()
            out.close()
        events = await stored(d, "trapper")
    assert (tmp_path / "relay.out").read_bytes() == b'{"kind": "output", "text": "working"}\ngot SIGTERM\n'
    assert [e["data"] for e in events] == [{"kind": "output", "text": "working"}, "got SIGTERM", ended(3)]
    assert [e["kind"] for e in events] == ["output", "raw", "session_ended"]
