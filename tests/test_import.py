"""``agentwatch import PATH... [--follow]`` into a real daemon: Claude Code transcripts and Codex
rollouts (tests/fixtures) each become one agent with every line in order, a finished file ends with
``session_ended``, importing again stores nothing twice (with or without import-offsets.json), a
line still being written waits, and ``--follow`` picks up growth and new files and resumes after a
restart. The quick cases call ``run_import`` in-process; the CLI and ``--follow`` run as subprocesses."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import trio

from agentwatch.client import find_daemon
from agentwatch.config import Overrides, load_config
from agentwatch.importer import OFFSETS, run_import
from agentwatch.plugin_manager import Plugins
from helpers import FIXTURES, RpcError, running_daemon, stored, watcher

FORMATS = {name: fmt for name, (fmt, _) in Plugins().formats().items()}
OLD = time.time() - 2 * 24 * 3600  # an mtime long past ENDED_AFTER: a finished conversation
WAIT = 15.0  # seconds any one condition may take before the test fails

#: File name -> the agent it becomes: ``claude-<stem>``, ``codex-<uuid>`` (the stem without one).
CLAUDE_AGENTS = {
    "claude-reliability__python-to-rust-port__transcript.jsonl": "claude-claude-reliability__python-to-rust-port__transcript",
    "claudeless__bash-permission-dialog__f3ba0bdb-562d-4ca3-9069-3e5122f4ccc9.jsonl":
        "claude-claudeless__bash-permission-dialog__f3ba0bdb-562d-4ca3-9069-3e5122f4ccc9",
    "spotter__tool_heavy.jsonl": "claude-spotter__tool_heavy",
}
CODEX_AGENTS = {
    "agent-sessions__codex__small.jsonl": "codex-agent-sessions__codex__small",
    "codemie-code__rollout-2026-01-02T18-39-45-019b7f94-51b4-7593-922e-ba12b5b73b52.jsonl": "codex-019b7f94-51b4-7593-922e-ba12b5b73b52",
    "localpush__rollout-2026-02-23T20-34-25-019c8bfe-ec25-79e0-97d7-bda6a9c575ff.jsonl": "codex-019c8bfe-ec25-79e0-97d7-bda6a9c575ff",
}


def copied(tmp_path, folder, mtime=OLD):
    """A copy of a fixture folder (with its non-.jsonl files), every file's mtime set to ``mtime``."""
    target = tmp_path / folder
    shutil.copytree(FIXTURES / folder, target)
    for path in target.iterdir():
        os.utime(path, (mtime, mtime))
    return target


def lines_of(path):
    """``(seq, record)`` for each line the importer sends: line n (from 1) is seq 2n."""
    lines = path.read_bytes().splitlines()
    return [(2 * n, json.loads(line)) for n, line in enumerate(lines, start=1) if line.strip()]


async def import_once(state_dir, *paths):
    endpoint = find_daemon(load_config(Overrides(state_dir=state_dir), environ={}), environ={})
    with trio.fail_after(WAIT):
        return await run_import(list(paths), follow=False, format="auto", formats=FORMATS, state_dir=state_dir,
                                endpoint=endpoint, show=lambda progress: None)


def environment(state_dir):
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTWATCH_")}
    return env | {"AGENTWATCH_STATE_DIR": str(state_dir)}


async def cli_import(state_dir, *args):
    with trio.fail_after(WAIT):
        return await trio.run_process([sys.executable, "-m", "agentwatch", "import", *map(str, args)], stdin=subprocess.DEVNULL,
                                      capture_stdout=True, capture_stderr=True, check=False, env=environment(state_dir))


async def everything(running, agent_ids):
    return {agent_id: await stored(running, agent_id) for agent_id in agent_ids}


async def until_stored(running, agent_id, n):
    """The agent's stored events once there are at least ``n``, polling for up to ``WAIT`` seconds."""
    with trio.fail_after(WAIT):
        while True:
            try:
                events = await stored(running, agent_id)
            except RpcError:  # not known yet
                events = []
            if len(events) >= n:
                return events
            await trio.sleep(0.02)


def check_finished_import(events, path, fmt):
    """Every line in order at seq 2n with ``fmt`` and the format's kind, then ``session_ended``."""
    expected = lines_of(path)
    assert [e["data"] for e in events] == [record for _, record in expected] + [{"kind": "session_ended", "text": f"imported from {path}"}]
    assert [e["seq"] for e in events] == [seq for seq, _ in expected] + [expected[-1][0] + 1]
    assert [e["format"] for e in events] == [fmt] * len(expected) + ["agentwatch"]
    assert [e["kind"] for e in events[:-1]] == [FORMATS[fmt].normalize(record).kind for _, record in expected]
    assert events[-1]["kind"] == "session_ended"


async def test_claude_transcripts_become_one_agent_each_with_every_line_in_order(state_dir, tmp_path):
    folder = copied(tmp_path, "claude-transcript")
    async with running_daemon(state_dir) as d:
        progress = await import_once(state_dir, folder)
        events = await everything(d, CLAUDE_AGENTS.values())
        async with watcher(d) as w:
            agents = {a["agent_id"]: a for a in await w.call("agents.list")}
    assert set(agents) == set(CLAUDE_AGENTS.values()), "one agent per .jsonl file (the .tui.txt is not one)"
    for name, agent_id in CLAUDE_AGENTS.items():
        check_finished_import(events[agent_id], folder / name, "claude-transcript")
        assert agents[agent_id]["name"] == name.removesuffix(".jsonl")
        assert agents[agent_id]["kind"] == "claude-code"
        assert agents[agent_id]["labels"] == {"imported_from": str(folder / name)}
    assert (progress.files, progress.done, progress.present, progress.failed) == (3, 3, 0, [])
    assert progress.stored == sum(len(lines_of(folder / name)) for name in CLAUDE_AGENTS) == 97 + 10 + 39
    for event in events["claude-spotter__tool_heavy"][:-1]:
        assert event["ts"] == event["data"].get("timestamp", event["ts"]), "a line's own timestamp is its ts"


async def test_codex_rollouts_become_codex_uuid_agents(state_dir, tmp_path):
    folder = copied(tmp_path, "codex-rollout")
    async with running_daemon(state_dir) as d:
        progress = await import_once(state_dir, *sorted(folder.iterdir()))  # files named one by one
        events = await everything(d, CODEX_AGENTS.values())
        async with watcher(d) as w:
            agents = {a["agent_id"]: a for a in await w.call("agents.list")}
    assert set(agents) == set(CODEX_AGENTS.values())
    for name, agent_id in CODEX_AGENTS.items():
        check_finished_import(events[agent_id], folder / name, "codex-rollout")
        assert agents[agent_id]["kind"] == "codex"
    assert progress.stored == 118 + 26 + 63
    small = events["codex-agent-sessions__codex__small"]
    assert small[26]["data"]["timestamp"] == "[trimmed for fixture]", "not a time: the line goes in without it"
    assert small[0]["ts"] == small[0]["data"]["timestamp"] == "2026-08-03T10:48:56.000Z"


async def test_importing_again_stores_nothing_twice_even_without_the_offsets_file(state_dir, tmp_path):
    folder = copied(tmp_path, "claude-transcript")
    total = 97 + 10 + 39
    async with running_daemon(state_dir) as d:
        started = time.monotonic()
        first = await cli_import(state_dir, folder)
        took = time.monotonic() - started
        before = await everything(d, CLAUDE_AGENTS.values())
        again = await cli_import(state_dir, folder)
        (state_dir / OFFSETS).unlink()
        forgotten = await cli_import(state_dir, folder)
        after = await everything(d, CLAUDE_AGENTS.values())
    assert first.returncode == 0, first.stderr
    assert first.stdout.decode() == f"imported 3 files: {total} events stored, 0 already there\n"
    assert again.stdout.decode() == "imported 3 files: 0 events stored, 0 already there\n", "the offsets say nothing is new"
    assert forgotten.stdout.decode() == f"imported 3 files: 0 events stored, {total} already there\n", "the daemon says it has them"
    assert again.returncode == forgotten.returncode == 0
    assert after == before, "not one event more"
    assert took < 3, f"{took:.1f}s: each file's connection closes at once (it used to wait out CLOSE_TIMEOUT, 5 s)"
    assert sum(len(events) for events in after.values()) == total + 3


async def test_a_line_still_being_written_waits_until_it_is_complete(state_dir, tmp_path):
    source = lines_of(FIXTURES / "claude-transcript" / "spotter__tool_heavy.jsonl")
    lines = [json.dumps(record).encode() + b"\n" for _, record in source[:3]]
    growing = tmp_path / "growing.jsonl"  # a recent mtime: the conversation goes on
    growing.write_bytes(lines[0] + lines[1] + lines[2][:40])
    async with running_daemon(state_dir) as d:
        await import_once(state_dir, growing)
        partial = await stored(d, "claude-growing")
        offsets = json.loads((state_dir / OFFSETS).read_text())
        with growing.open("ab") as handle:
            handle.write(lines[2][40:])
        progress = await import_once(state_dir, growing)
        completed = await stored(d, "claude-growing")
    assert [e["data"] for e in partial] == [source[0][1], source[1][1]], "not the half line, and no session_ended yet"
    assert offsets[str(growing.resolve())]["offset"] == len(lines[0] + lines[1])
    assert progress.stored == 1
    assert [e["data"] for e in completed] == [record for _, record in source[:3]]
    assert [e["seq"] for e in completed] == [2, 4, 6]


async def test_follow_picks_up_growth_and_new_files_and_resumes_after_a_restart(state_dir, tmp_path):
    source = [json.dumps(record).encode() + b"\n" for _, record in lines_of(FIXTURES / "claude-transcript" / "spotter__tool_heavy.jsonl")]
    other = (FIXTURES / "claude-transcript" / "claudeless__bash-permission-dialog__f3ba0bdb-562d-4ca3-9069-3e5122f4ccc9.jsonl").read_bytes()
    folder = tmp_path / "projects"
    folder.mkdir()
    growing = folder / "live.jsonl"
    growing.write_bytes(b"".join(source[:5]))

    def follow():
        with (tmp_path / "follow.log").open("ab") as log:
            return subprocess.Popen([sys.executable, "-m", "agentwatch", "import", "--follow", str(folder)], stdin=subprocess.DEVNULL,
                                    stdout=log, stderr=log, env=environment(state_dir))

    async def saved(path, offset):
        """Wait until import-offsets.json says ``path`` was read to ``offset``."""
        with trio.fail_after(WAIT):
            while True:
                try:
                    if json.loads((state_dir / OFFSETS).read_text())[str(path.resolve())]["offset"] == offset:
                        return
                except (OSError, ValueError, KeyError):
                    pass
                await trio.sleep(0.01)

    async def stop(proc):
        proc.send_signal(signal.SIGINT)
        with trio.fail_after(WAIT):
            while proc.poll() is None:
                await trio.sleep(0.01)
        return proc.returncode

    async with running_daemon(state_dir) as d:
        proc = follow()
        try:
            await until_stored(d, "claude-live", 5)
            with growing.open("ab") as handle:
                handle.write(b"".join(source[5:12]))
            (folder / "sub").mkdir()
            (folder / "sub" / "new.jsonl").write_bytes(other)
            await until_stored(d, "claude-live", 12)
            arrived = await until_stored(d, "claude-new", other.count(b"\n"))
            await saved(growing, len(b"".join(source[:12])))  # where it got to, kept for a restart
            await saved(folder / "sub" / "new.jsonl", len(other))
            assert await stop(proc) == 130
            with growing.open("ab") as handle:
                handle.write(b"".join(source[12:]))
            proc = follow()
            events = await until_stored(d, "claude-live", len(source))
            await saved(growing, len(b"".join(source)))
            assert await stop(proc) == 130
        finally:
            if proc.poll() is None:
                proc.kill()
        again = await stored(d, "claude-new")
    records = [json.loads(line) for line in source]
    assert [e["data"] for e in events] == records, "every line once, in order; no session_ended while it is live"
    assert [e["seq"] for e in events] == list(range(2, 2 * len(records) + 1, 2))
    assert {e["format"] for e in events} == {"claude-transcript"}
    assert [e["data"] for e in arrived] == [json.loads(line) for line in other.splitlines()]
    assert again == arrived, "the restarted follow sent the new file nothing again"
    assert "Traceback" not in (tmp_path / "follow.log").read_text()


async def test_a_path_that_does_not_exist_is_a_usage_error(state_dir, tmp_path):
    done = await cli_import(state_dir, tmp_path / "nowhere")
    assert done.returncode == 2
    assert b"no such file or directory" in done.stderr and b"nowhere" in done.stderr
