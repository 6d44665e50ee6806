"""The reading commands (status, agents, sessions, events, attention, tail) as a person runs them:
the real ``agentwatch`` command against a real daemon holding a real Claude stream-json recording."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import trio

from agentwatch.client import find_daemon, open_agent
from agentwatch.config import Overrides, load_config
from helpers import fixture_records, running_daemon

QUIET = {"AGENTWATCH_RETENTION_INTERVAL": "100d"}
RECORDING = "claude-stream-json/terragon-oss__claude-json-bash-test.DERIVED.ndjson"
COMMANDS = [["status"], ["agents"], ["sessions"], ["events", "--agent", "claude-1"], ["attention"], ["tail"]]


AGENTWATCH = Path(sys.executable).parent / "agentwatch"  # the command the set-up installs


def command(state_dir, *args, env=None):
    """``agentwatch ARGS`` (the installed command, not on PATH: as after the README's set-up) in a
    clean environment (plus ``env``), aimed at ``state_dir``; the finished process."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("AGENTWATCH_") and k not in ("NO_COLOR", "COLUMNS")}
    environ["PATH"] = os.pathsep.join(p for p in environ.get("PATH", "").split(os.pathsep) if Path(p) != AGENTWATCH.parent)
    return trio.run_process(
        [str(AGENTWATCH), *args, "--state-dir", str(state_dir)],
        env={**environ, **(env or {})}, capture_stdout=True, capture_stderr=True, check=False,
    )


async def replay(state_dir, agent_id="claude-1"):
    """Stream the recording in as a relay would; the records sent."""
    records = fixture_records(RECORDING)
    endpoint = find_daemon(load_config(Overrides(state_dir=state_dir), {}), {})
    async with open_agent(agent_id, format="claude-stream-json", agent={"name": "bash-test"}, endpoint=endpoint) as a:
        for record in records:
            await a.send(record)
    return records


async def test_each_command_human_and_json(state_dir):
    async with running_daemon(state_dir, QUIET):
        records = await replay(state_dir)
        first_command = next(
            block["input"]["command"] for r in records if r["type"] == "assistant"
            for block in r["message"]["content"] if block["type"] == "tool_use"
        )
        cost = next(r["cost_usd"] for r in records if r["type"] == "result")  # the older name, in this recording
        human = {name: await command(state_dir, name, *rest) for name, *rest in COMMANDS[:-1]}
        machine = {name: await command(state_dir, name, *rest, "--json") for name, *rest in COMMANDS[:-1]}
        kinds = await command(state_dir, "events", "--agent", "claude-1", "--kind", "tool_use", "--kind", "turn_completed", "--json")
    for name, done in [*human.items(), *machine.items()]:
        assert done.returncode == 0 and done.stderr == b"", (name, done.stderr)
    text = {name: done.stdout.decode() for name, done in human.items()}
    data = {name: json.loads(done.stdout) for name, done in machine.items()}

    assert data["status"]["events_stored"] == len(records)
    assert f"events stored: {len(records)}" in " ".join(text["status"].split())
    assert "\x1b[" not in "".join(text.values()), "no colour when piped"

    [agent] = data["agents"]
    assert (agent["agent_id"], agent["name"], agent["acked_seq"]) == ("claude-1", "bash-test", len(records))
    header, row = text["agents"].splitlines()
    assert header.split()[:2] == ["AGENT", "NAME"] and row.split()[:2] == ["claude-1", "bash-test"]
    assert header.index("SESSION") == row.index(row.split()[4]), "columns are aligned"

    assert data["sessions"][0]["events"] == len(records) and " idle " in text["sessions"]

    assert [e["seq"] for e in data["events"]["events"]] == list(range(1, min(len(records), 100) + 1))
    assert f"Bash: {first_command}" in text["events"]
    assert f"${cost:.4f}" in text["events"]

    assert {e["kind"] for e in json.loads(kinds.stdout)["events"]} == {"tool_use", "turn_completed"}

    [item] = data["attention"]["items"]
    assert (item["agent_id"], item["state"]) == ("claude-1", "awaiting_reply")
    assert text["attention"].splitlines()[1].split()[:2] == ["awaiting_reply", "claude-1"]


async def test_tail_follows_a_replayed_recording_live(state_dir):
    async with running_daemon(state_dir, QUIET):
        async with trio.open_nursery() as nursery:
            environ = {k: v for k, v in os.environ.items() if not k.startswith("AGENTWATCH_")}
            tail = await nursery.start(partial_process(
                [sys.executable, "-m", "agentwatch", "tail", "--json", "--state-dir", str(state_dir)], environ
            ))
            await wait_for_subscription(state_dir)
            records = await replay(state_dir)
            lines = await read_lines(tail.stdout, len(records))
            tail.send_signal(2)  # Ctrl-C
            assert await tail.wait() == 130
    events = [json.loads(line) for line in lines]
    assert [e["seq"] for e in events] == list(range(1, len(records) + 1))
    assert [e["data"] for e in events] == records


async def test_attention_watch_prints_the_feed_again_when_it_changes(state_dir):
    async with running_daemon(state_dir, QUIET):
        async with trio.open_nursery() as nursery:
            environ = {k: v for k, v in os.environ.items() if not k.startswith("AGENTWATCH_")}
            watch = await nursery.start(partial_process(
                [sys.executable, "-m", "agentwatch", "attention", "--watch", "--json", "--state-dir", str(state_dir)], environ
            ))
            [first] = await read_lines(watch.stdout, 1)
            await replay(state_dir)
            [second] = await read_lines(watch.stdout, 1)
            watch.kill()
    assert json.loads(first) == []
    assert [item["state"] for item in json.loads(second)] == ["awaiting_reply"]


@pytest.mark.parametrize("args", COMMANDS + [["attention", "--watch"]], ids=" ".join)
async def test_with_no_daemon_every_command_says_so_in_one_sentence(tmp_path, args):
    (tmp_path / "token").write_text("a-token\n")  # it ran once, and is not running now
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    done = await command(tmp_path, *args, env={"AGENTWATCH_SERVER_LISTEN": f"127.0.0.1:{port}"})
    message = done.stderr.decode()
    assert done.returncode == 3 and done.stdout == b""
    assert message.startswith(f"agentwatch: the daemon is not running: nothing answers at 127.0.0.1:{port}")
    assert message.rstrip().endswith(f"Start it with: {AGENTWATCH} serve") and message.count("\n") == 1, (
        "agentwatch is not on PATH: the hint names the command that works"
    )


async def test_the_hint_says_agentwatch_when_that_is_on_path(tmp_path):
    (tmp_path / "token").write_text("a-token\n")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    on_path = f"{AGENTWATCH.parent}{os.pathsep}{os.environ.get('PATH', '')}"
    done = await command(tmp_path, "status", env={"AGENTWATCH_SERVER_LISTEN": f"127.0.0.1:{port}", "PATH": on_path})
    assert done.stderr.decode().rstrip().endswith("Start it with: agentwatch serve")


def partial_process(argv, environ):
    async def run(task_status=trio.TASK_STATUS_IGNORED):
        process = await trio.lowlevel.open_process(argv, env=environ, stdout=subprocess.PIPE)
        try:
            task_status.started(process)
            await process.wait()
        finally:
            process.kill()
            with trio.CancelScope(shield=True):
                await process.wait()
            await process.stdout.aclose()

    return run


async def read_lines(stream, count):
    """``count`` whole lines from a process's stdout (kept in the stream object between calls)."""
    buffer = getattr(stream, "pending", b"")
    with trio.fail_after(30):
        while buffer.count(b"\n") < count:
            buffer += await stream.receive_some()
    *lines, rest = buffer.split(b"\n", count)
    stream.pending = rest
    return lines


async def wait_for_subscription(state_dir):
    from agentwatch.client import open_watch

    endpoint = find_daemon(load_config(Overrides(state_dir=state_dir), {}), {})
    with trio.fail_after(30):
        async with open_watch(endpoint) as watch:
            while (await watch.call("status"))["subscriptions"] == 0:
                await trio.sleep(0.02)


async def test_events_reads_a_page_of_records_cut_to_the_frame_limit(state_dir):
    """A page of two records cut to about 1 MiB each used to pass the client's 1 MiB message limit: close 1009."""
    big = [{"type": "user", "n": n, "text": "a" * 1_500_000} for n in range(3)]
    async with running_daemon(state_dir, QUIET):
        endpoint = find_daemon(load_config(Overrides(state_dir=state_dir), {}), {})
        async with open_agent("big-1", agent={"name": "big"}, endpoint=endpoint) as a:
            for record in big:
                await a.send(record)
        done = await command(state_dir, "events", "--agent", "big-1", "--json")
    assert done.returncode == 0, done.stderr
    events = json.loads(done.stdout)["events"]
    assert [e["data"]["n"] for e in events] == [0, 1, 2]
    assert all(e["data"]["agentwatch_truncated"]["fields"] == {"text": 1_500_002} for e in events)


async def test_a_lone_surrogate_in_a_record_prints_as_a_question_mark(state_dir):
    async with running_daemon(state_dir, QUIET):
        endpoint = find_daemon(load_config(Overrides(state_dir=state_dir), {}), {})
        async with open_agent("odd-1", endpoint=endpoint) as a:
            await a.send({"kind": "output", "text": "half \ud800 of a pair"})
        done = await command(state_dir, "events", "--agent", "odd-1")
    assert done.returncode == 0, done.stderr
    assert "half ? of a pair" in done.stdout.decode()


@pytest.mark.parametrize(("args", "usage", "said"), [
    (["status", "--bogus"], "usage: agentwatch status", "unrecognized arguments: --bogus"),
    (["tail", "--agnet", "x"], "usage: agentwatch tail", "unrecognized arguments: --agnet x (did you mean --agent?)"),
    (["hooks", "install", "--scoop", "user"], "usage: agentwatch hooks install", "(did you mean --scope?)"),
    (["attention", "--wacth"], "usage: agentwatch attention", "(did you mean --watch?)"),
])
async def test_a_flag_typo_shows_the_usage_of_the_command_it_was_made_in(tmp_path, args, usage, said):
    """It showed the top-level usage (``agentwatch [-h] [--version] COMMAND ...``)."""
    done = await command(tmp_path, *args)
    message = done.stderr.decode()
    assert done.returncode == 2 and done.stdout == b""
    assert message.startswith(usage) and said in message, message


async def test_an_unknown_agent_is_named_with_the_command_that_lists_them(state_dir):
    """``events --agent nosuch`` pointed to "agents.list", the method's name, not a command."""
    async with running_daemon(state_dir, QUIET):
        await replay(state_dir)
        typo = await command(state_dir, "events", "--agent", "claude-2")
        nosuch = await command(state_dir, "sessions", "--agent", "nosuch")
    assert typo.returncode == 1 and typo.stderr.decode() == (
        f"agentwatch: no agent 'claude-2' is known; did you mean claude-1? `{AGENTWATCH} agents` lists them\n"
    )
    assert nosuch.returncode == 1 and nosuch.stderr.decode() == f"agentwatch: no agent 'nosuch' is known; `{AGENTWATCH} agents` lists them\n"


@pytest.mark.parametrize("args", [["prune", "--dry"], ["systemd", "install", "--dry", "--f"], ["tail", "--ag", "x"]], ids=" ".join)
async def test_an_abbreviated_flag_is_not_taken_for_the_whole(tmp_path, args):
    """``serve --no`` started a daemon without authentication (``--no-auth``); ``systemd install --f``
    was ``--force``, which replaces units edited by hand."""
    done = await command(tmp_path, *args)
    assert done.returncode == 2 and "unrecognized arguments" in done.stderr.decode() and done.stdout == b""
