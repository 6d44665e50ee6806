"""``agentwatch import PATH... [--follow]`` into a real daemon: Claude Code transcripts and Codex
rollouts (tests/fixtures) each become one agent with every line in order, a finished file ends with
``session_ended`` (its last line counts without a newline), importing again stores nothing twice
(with or without import-offsets.json) and says so, a line still being written waits, and
``--follow`` picks up growth and new files and resumes after a restart. Agent ids: distinct files
get distinct ids, Claude Code sub-agents name their parent's, and ids given by older versions are
kept. A file that fails is said in one sentence and the others are imported; a line over 1 MiB,
over the read limit, or not strict JSON does not stop anything. The quick cases call
``run_import`` in-process; the CLI and ``--follow`` run as subprocesses."""

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import trio

from agentwatch.client import AgentClient, find_daemon, open_agent
from agentwatch.config import Overrides, load_config
from agentwatch.identity import AGENT_ID
from agentwatch.importer import OFFSETS, run_import
from agentwatch.plugin_manager import Plugins
from agentwatch.record_lines import READ_LIMIT
from helpers import FIXTURES, RpcError, running_daemon, stored, watcher

FORMATS = {name: fmt for name, (fmt, _) in Plugins().formats().items()}
OLD = time.time() - 2 * 24 * 3600  # an mtime long past ENDED_AFTER: a finished conversation
WAIT = 15.0  # seconds any one condition may take before the test fails

#: File name -> the readable part of its agent's id: the stem, or for Codex the uuid it ends with.
CLAUDE_NAMES = {
    "claude-reliability__python-to-rust-port__transcript.jsonl": "claude-reliability__python-to-rust-port__transcript",
    "claudeless__bash-permission-dialog__f3ba0bdb-562d-4ca3-9069-3e5122f4ccc9.jsonl":
        "claudeless__bash-permission-dialog__f3ba0bdb-562d-4ca3-9069-3e5122f4ccc9",
    "spotter__tool_heavy.jsonl": "spotter__tool_heavy",
}
CODEX_NAMES = {
    "agent-sessions__codex__small.jsonl": "agent-sessions__codex__small",
    "codemie-code__rollout-2026-01-02T18-39-45-019b7f94-51b4-7593-922e-ba12b5b73b52.jsonl": "019b7f94-51b4-7593-922e-ba12b5b73b52",
    "localpush__rollout-2026-02-23T20-34-25-019c8bfe-ec25-79e0-97d7-bda6a9c575ff.jsonl": "019c8bfe-ec25-79e0-97d7-bda6a9c575ff",
}
SESSION = "f3ba0bdb-562d-4ca3-9069-3e5122f4ccc9"  # the session of the claudeless transcript


def hashed(prefix, name, path):
    """The id a file imported for the first time gets: ``<prefix>-<name>-<8 hex of sha256(resolved path)>``."""
    return f"{prefix}-{name}-{hashlib.sha256(bytes(path.resolve())).hexdigest()[:8]}"


def ids(folder, prefix, names):
    """File name -> agent id, for the files ``names`` in ``folder``."""
    return {name: hashed(prefix, readable, folder / name) for name, readable in names.items()}


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


def endpoint_of(state_dir):
    return find_daemon(load_config(Overrides(state_dir=state_dir), environ={}), environ={})


async def import_once(state_dir, *paths, wait=WAIT):
    with trio.fail_after(wait):
        return await run_import(list(paths), follow=False, format="auto", formats=FORMATS, state_dir=state_dir,
                                endpoint=endpoint_of(state_dir), show=lambda progress: None)


def aged(path, mtime=OLD):
    os.utime(path, (mtime, mtime))
    return path


def transcript_lines(name="spotter__tool_heavy.jsonl"):
    """The lines of a fixture transcript, each ending in a newline."""
    return (FIXTURES / "claude-transcript" / name).read_bytes().splitlines(keepends=True)


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
    agent_ids = ids(folder, "claude", CLAUDE_NAMES)
    async with running_daemon(state_dir) as d:
        progress = await import_once(state_dir, folder)
        events = await everything(d, agent_ids.values())
        async with watcher(d) as w:
            agents = {a["agent_id"]: a for a in await w.call("agents.list")}
    assert set(agents) == set(agent_ids.values()), "one agent per .jsonl file (the .tui.txt is not one)"
    for name, agent_id in agent_ids.items():
        check_finished_import(events[agent_id], folder / name, "claude-transcript")
        assert agents[agent_id]["name"] == name.removesuffix(".jsonl")
        assert agents[agent_id]["kind"] == "claude-code"
        assert agents[agent_id]["labels"] == {"imported_from": str(folder / name)}
    assert (progress.files, progress.done, progress.present, progress.failed) == (3, 3, 0, [])
    assert progress.stored == sum(len(lines_of(folder / name)) for name in CLAUDE_NAMES) == 97 + 10 + 39
    for event in events[agent_ids["spotter__tool_heavy.jsonl"]][:-1]:
        assert event["ts"] == event["data"].get("timestamp", event["ts"]), "a line's own timestamp is its ts"


async def test_codex_rollouts_become_codex_uuid_agents(state_dir, tmp_path):
    folder = copied(tmp_path, "codex-rollout")
    agent_ids = ids(folder, "codex", CODEX_NAMES)
    async with running_daemon(state_dir) as d:
        progress = await import_once(state_dir, *sorted(folder.iterdir()))  # files named one by one
        events = await everything(d, agent_ids.values())
        async with watcher(d) as w:
            agents = {a["agent_id"]: a for a in await w.call("agents.list")}
    assert set(agents) == set(agent_ids.values())
    for name, agent_id in agent_ids.items():
        check_finished_import(events[agent_id], folder / name, "codex-rollout")
        assert agents[agent_id]["kind"] == "codex"
    assert progress.stored == 118 + 26 + 63
    small = events[agent_ids["agent-sessions__codex__small.jsonl"]]
    assert small[26]["data"]["timestamp"] == "[trimmed for fixture]", "not a time: the line goes in without it"
    assert small[0]["ts"] == small[0]["data"]["timestamp"] == "2026-08-03T10:48:56.000Z"


async def test_importing_again_stores_nothing_twice_even_without_the_offsets_file(state_dir, tmp_path):
    folder = copied(tmp_path, "claude-transcript")
    agent_ids = ids(folder, "claude", CLAUDE_NAMES).values()
    total = 97 + 10 + 39
    async with running_daemon(state_dir) as d:
        started = time.monotonic()
        first = await cli_import(state_dir, folder)
        took = time.monotonic() - started
        before = await everything(d, agent_ids)
        again = await cli_import(state_dir, folder)
        mode = (state_dir / OFFSETS).stat().st_mode & 0o777
        (state_dir / OFFSETS).unlink()
        forgotten = await cli_import(state_dir, folder)
        after = await everything(d, agent_ids)
    assert first.returncode == 0, first.stderr
    assert first.stdout.decode() == f"imported 3 files: {total} events stored, 0 already there\n"
    assert again.stdout.decode() == f"nothing new in 3 files: all {total} events were already there\n", "the offsets say they were read"
    assert forgotten.stdout.decode() == f"nothing new in 3 files: all {total} events were already there\n", "the daemon says it has them"
    assert again.returncode == forgotten.returncode == 0
    assert again.stderr == forgotten.stderr == b""
    assert mode == 0o600, "import-offsets.json names the user's files: written private, whole (safe_write)"
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
        partial = await stored(d, hashed("claude", "growing", growing))
        offsets = json.loads((state_dir / OFFSETS).read_text())
        with growing.open("ab") as handle:
            handle.write(lines[2][40:])
        progress = await import_once(state_dir, growing)
        completed = await stored(d, hashed("claude", "growing", growing))
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

    live, new = hashed("claude", "live", growing), hashed("claude", "new", folder / "sub" / "new.jsonl")
    async with running_daemon(state_dir) as d:
        proc = follow()
        try:
            await until_stored(d, live, 5)
            with growing.open("ab") as handle:
                handle.write(b"".join(source[5:12]))
            (folder / "sub").mkdir()
            (folder / "sub" / "new.jsonl").write_bytes(other)
            await until_stored(d, live, 12)
            arrived = await until_stored(d, new, other.count(b"\n"))
            await saved(growing, len(b"".join(source[:12])))  # where it got to, kept for a restart
            await saved(folder / "sub" / "new.jsonl", len(other))
            assert await stop(proc) == 130
            with growing.open("ab") as handle:
                handle.write(b"".join(source[12:]))
            proc = follow()
            events = await until_stored(d, live, len(source))
            await saved(growing, len(b"".join(source)))
            assert await stop(proc) == 130
        finally:
            if proc.poll() is None:
                proc.kill()
        again = await stored(d, new)
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


def image_line(size):
    """A Claude Code transcript line in which the person pasted a screenshot of about ``size`` bytes."""
    record = json.loads(transcript_lines()[3])
    record["message"]["content"] = [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo" + "A" * size}},
        {"type": "text", "text": "what is wrong in this screenshot?"},
    ]
    return json.dumps(record).encode() + b"\n"


async def test_a_line_over_a_mib_or_not_strict_json_does_not_stop_the_import(state_dir, tmp_path):
    folder = tmp_path / "projects"
    folder.mkdir()
    lines = transcript_lines()
    odd = b'{"type": "user", "cost": NaN}\n'  # Python's json reads it; the daemon (RFC 8259) would not
    first = folder / "a.jsonl"
    first.write_bytes(b"".join(lines[:5]) + image_line(3 << 20) + odd + b"".join(lines[5:8]))
    aged(first)
    second = aged(shutil.copy(FIXTURES / "claude-transcript" / "spotter__tool_heavy.jsonl", folder / "b.jsonl"))
    async with running_daemon(state_dir) as d:
        done = await cli_import(state_dir, folder)
        async with watcher(d, max_message_size=8 << 20) as w:  # a page with the 1 MiB event
            a = (await w.call("events.list", agent_id=hashed("claude", "a", first)))["events"]
        b = await stored(d, hashed("claude", "b", second))
    assert done.returncode == 0, done.stderr
    assert b"Traceback" not in done.stderr
    assert [e["seq"] for e in a] == [2 * n for n in range(1, 11)] + [21], "every line, then session_ended"
    image = a[5]["data"]
    assert image["agentwatch_truncated"]["bytes"] > 3 << 20, "cut to the daemon's frame, and marked"
    assert image["uuid"] == json.loads(lines[3])["uuid"] and image["type"] == "user"
    assert a[6]["data"] == odd.decode().strip(), "not strict JSON: stored as its text, as the daemon reads it"
    assert len(b) == len(lines) + 1, "the next file is imported too"
    assert done.stdout.decode() == f"imported 2 files: {10 + len(lines)} events stored, 0 already there\n"


async def test_a_line_over_the_read_limit_is_its_head_marked_as_cut(state_dir, tmp_path):
    lines = transcript_lines()
    huge = b'{"type":"user","message":{"content":"' + b"x" * READ_LIMIT + b'"}}\n'
    path = tmp_path / "huge.jsonl"
    path.write_bytes(lines[0] + huge + lines[1])
    aged(path)
    async with running_daemon(state_dir) as d:
        await import_once(state_dir, path, wait=60)
        events = await stored(d, hashed("claude", "huge", path))
    offsets = json.loads((state_dir / OFFSETS).read_text())[str(path.resolve())]
    assert [e["seq"] for e in events] == [2, 4, 6, 7]
    cut = events[1]["data"]
    assert isinstance(cut, str) and cut.startswith('{"type":"user","message":{"content":"xxx')
    assert cut.endswith(f"[cut by agentwatch: {len(huge) - 1} bytes in all]")
    assert events[2]["data"] == json.loads(lines[1]), "the line after it is read from the right offset"
    assert (offsets["offset"], offsets["line"]) == (path.stat().st_size, 3)


async def test_a_file_that_fails_is_said_in_one_sentence_and_the_others_are_imported(state_dir, tmp_path, monkeypatch, capsys):
    folder = copied(tmp_path, "claude-transcript")
    unreadable, refused, unsendable = (folder / name for name in sorted(CLAUDE_NAMES))
    refused_line, unsendable_uuid = lines_of(refused)[4][1], lines_of(unsendable)[3][1]["uuid"]
    real_open, real_send = open, AgentClient.send

    def failing_open(path, *args, **kwargs):
        if str(path) == str(unreadable):
            raise OSError(5, "Input/output error")
        return real_open(path, *args, **kwargs)

    async def send(self, data, *, ts=None, format=None, seq=None):
        if data == refused_line:  # a ts the daemon refuses: it refuses this one event for good
            ts = "not a time"
        if isinstance(data, dict) and data.get("uuid") == unsendable_uuid:
            raise ValueError("this record cannot be sent")
        return await real_send(self, data, ts=ts, format=format, seq=seq)

    monkeypatch.setattr("agentwatch.importer.open", failing_open, raising=False)
    monkeypatch.setattr(AgentClient, "send", send)
    other = aged(shutil.copy(FIXTURES / "codex-rollout" / "agent-sessions__codex__small.jsonl", folder / "z.jsonl"))
    async with running_daemon(state_dir) as d:
        progress = await import_once(state_dir, folder)
        events = await stored(d, ids(folder, "claude", CLAUDE_NAMES)[refused.name])
        rest = await stored(d, hashed("codex", "z", other))
        monkeypatch.undo()
        again = await import_once(state_dir, refused)
    said = capsys.readouterr().err.splitlines()
    assert len(said) == 3 and len(progress.failed) == 3
    for line, path in zip(said, (unreadable, refused, unsendable), strict=True):
        assert line.startswith("agentwatch import: ") and str(path) in line and line.count(". ") == 0
    assert "Input/output error" in said[0] and "check that it is readable" in said[0]
    assert "refused 1 records" in said[1] and "line 5: bad_frame" in said[1]
    assert "this record cannot be sent" in said[2]
    assert [e["seq"] for e in events] == [2, 4, 6, 8] + list(range(12, 21, 2)) + [21], "all but the refused line"
    assert len(rest) == 118 + 1, "the file after them is imported"
    assert progress.refused == 1
    assert progress.stored == 9 + 118, "not the lines of the file that failed: they may or may not be stored"
    assert progress.summary() == (f"imported 4 files: {progress.stored} events stored, 0 already there, "
                                  "1 refused by the daemon; 3 files had errors (see above)")
    assert (again.stored, again.present, again.failed) == (0, 9, []), "the refused line is not tried again"


async def test_files_of_one_name_in_two_folders_or_with_long_names_are_agents_of_their_own(state_dir, tmp_path):
    a, b = tmp_path / "a" / "session.jsonl", tmp_path / "b" / "session.jsonl"
    for path, name in ((a, "spotter__tool_heavy.jsonl"), (b, f"claudeless__bash-permission-dialog__{SESSION}.jsonl")):
        path.parent.mkdir()
        aged(shutil.copy(FIXTURES / "claude-transcript" / name, path))
    long = [tmp_path / "a" / f"{'very-long-session-name-' * 7}{n}.jsonl" for n in (1, 2)]
    for path in long:
        aged(shutil.copy(a, path))
    (tmp_path / "a" / "link.jsonl").symlink_to(a)  # the same file again
    odd = tmp_path / "b" / os.fsdecode(b"caf\xe9.jsonl")  # a name that is not UTF-8
    aged(shutil.copy(b, odd))
    async with running_daemon(state_dir) as d:
        progress = await import_once(state_dir, tmp_path / "a", tmp_path / "b")
        async with watcher(d) as w:
            agents = {agent["agent_id"]: agent for agent in await w.call("agents.list")}
        events = {agent_id: await stored(d, agent_id) for agent_id in agents}
    expected = {hashed("claude", "session", a): a, hashed("claude", "session", b): b, hashed("claude", "caf-", odd): odd}
    expected |= {hashed("claude", path.stem[:112], path): path for path in long}  # 128 characters
    assert set(agents) == set(expected), "five files, five agents"
    for agent_id, path in expected.items():
        assert AGENT_ID.fullmatch(agent_id)
        assert [e["data"] for e in events[agent_id][:-1]] == [record for _, record in lines_of(path)]
    assert agents[hashed("claude", "caf-", odd)]["labels"] == {"imported_from": str(odd).encode(errors="surrogateescape").decode(errors="replace")}
    assert (progress.files, progress.present, progress.failed) == (5, 0, [])


async def test_claude_code_sub_agents_name_their_parent_session(state_dir, tmp_path):
    project = tmp_path / "projects" / "-home-me-proj"
    parent = project / f"{SESSION}.jsonl"
    sub = project / SESSION / "subagents" / "agent-a1b2c3d.jsonl"
    orphan = project / "0b6d6b8e-7f1c-4b55-9d3a-2f1f0b2c9a11" / "subagents" / "agent-e5f6a7b.jsonl"
    for path in (sub, orphan):
        path.parent.mkdir(parents=True)
        shutil.copy(FIXTURES / "claude-transcript" / "spotter__tool_heavy.jsonl", path)
    shutil.copy(FIXTURES / "claude-transcript" / f"claudeless__bash-permission-dialog__{SESSION}.jsonl", parent)
    orphans_parent = project / "0b6d6b8e-7f1c-4b55-9d3a-2f1f0b2c9a11.jsonl"
    async with running_daemon(state_dir) as d:
        await import_once(state_dir, tmp_path / "projects")
        shutil.copy(parent, orphans_parent)  # the parent's transcript shows up after its sub-agent's
        await import_once(state_dir, orphans_parent)
        async with watcher(d) as w:
            agents = {agent["agent_id"] for agent in await w.call("agents.list")}
    parent_id = hashed("claude", SESSION, parent)
    orphans_parent_id = hashed("claude", "0b6d6b8e-7f1c-4b55-9d3a-2f1f0b2c9a11", orphans_parent)
    assert agents == {parent_id, f"{parent_id}:agent-a1b2c3d", f"{orphans_parent_id}:agent-e5f6a7b", orphans_parent_id}
    for agent_id in agents:
        assert AGENT_ID.fullmatch(agent_id)
        assert agent_id.count(":") == (agent_id != parent_id and agent_id != orphans_parent_id)


async def test_ids_an_older_version_gave_are_kept_and_a_lost_file_gets_its_own(state_dir, tmp_path):
    """import-offsets.json entries of before agent ids were kept in it: ``claude-<stem>``, where a
    second file of one name was counted "already there" and lost."""
    project = tmp_path / "projects" / "-home-me-proj"
    lines = transcript_lines(f"claudeless__bash-permission-dialog__{SESSION}.jsonl")
    parent, sub = project / f"{SESSION}.jsonl", project / SESSION / "subagents" / "agent-a1b2c3d.jsonl"
    sub.parent.mkdir(parents=True)
    shutil.copy(FIXTURES / "claude-transcript" / "spotter__tool_heavy.jsonl", sub)
    parent.write_bytes(b"".join(lines[:4]))
    twin = tmp_path / "zz" / f"{SESSION}.jsonl"  # same name, imported after the first: the older version lost it
    twin.parent.mkdir()
    shutil.copy(FIXTURES / "claude-transcript" / "spotter__tool_heavy.jsonl", twin)
    legacy = f"claude-{SESSION}"
    state_dir.mkdir(mode=0o700)
    (state_dir / OFFSETS).write_text(json.dumps({
        str(path.resolve()): {"inode": path.stat().st_ino, "offset": path.stat().st_size, "line": n, "format": "claude-transcript",
                              "ended": False} for path, n in ((parent, 4), (twin, 39))}))
    async with running_daemon(state_dir) as d:
        async with open_agent(legacy, format="claude-transcript", endpoint=endpoint_of(state_dir)) as client:
            for n, line in enumerate(lines[:4], start=1):
                await client.send(json.loads(line), seq=2 * n)
        with parent.open("ab") as handle:
            handle.write(b"".join(lines[4:]))
        progress = await import_once(state_dir, tmp_path)
        events = await stored(d, legacy)
        async with watcher(d) as w:
            agents = {agent["agent_id"] for agent in await w.call("agents.list")}
    assert [e["seq"] for e in events] == [2 * n for n in range(1, 11)], "the grown parent goes on under its old id"
    assert agents == {legacy, f"{legacy}:agent-a1b2c3d", hashed("claude", SESSION, twin)}
    assert progress.present == 4 and progress.stored == 6 + 39 + 39
    saved = json.loads((state_dir / OFFSETS).read_text())
    assert saved[str(parent.resolve())]["agent_id"] == legacy, "kept in the offsets from now on"


async def test_the_last_line_of_a_finished_file_counts_without_a_newline(state_dir, tmp_path):
    lines = transcript_lines()
    path = tmp_path / "finished.jsonl"
    path.write_bytes(b"".join(lines).rstrip(b"\n"))
    aged(path)
    async with running_daemon(state_dir) as d:
        await import_once(state_dir, path)
        events = await stored(d, hashed("claude", "finished", path))
    assert [e["data"] for e in events[:-1]] == [json.loads(line) for line in lines]
    assert [e["seq"] for e in events[-2:]] == [2 * len(lines), 2 * len(lines) + 1]
    assert json.loads((state_dir / OFFSETS).read_text())[str(path.resolve())]["offset"] == path.stat().st_size


async def test_a_finished_file_that_grows_ends_again_after_its_new_lines(state_dir, tmp_path):
    lines = transcript_lines()
    path = tmp_path / "resumed.jsonl"
    path.write_bytes(b"".join(lines[:10]))
    aged(path)
    async with running_daemon(state_dir) as d:
        await import_once(state_dir, path)
        with path.open("ab") as handle:
            handle.write(b"".join(lines[10:14]))
        aged(path)
        await import_once(state_dir, path)
        events = await stored(d, hashed("claude", "resumed", path))
    assert [e["seq"] for e in events] == list(range(2, 21, 2)) + [21] + list(range(22, 29, 2)) + [29]
    assert events[-1]["kind"] == "session_ended"


async def test_a_first_line_still_being_written_does_not_choose_the_format(state_dir, tmp_path):
    lines = transcript_lines()
    path = tmp_path / "starting.jsonl"
    path.write_bytes(lines[0][:30])  # a recent mtime: still being written
    async with running_daemon(state_dir) as d:
        first = await import_once(state_dir, path)
        saved = json.loads((state_dir / OFFSETS).read_text())
        with path.open("ab") as handle:
            handle.write(lines[0][30:] + lines[1])
        await import_once(state_dir, path)
        async with watcher(d) as w:
            agents = await w.call("agents.list")
    assert first.stored == 0
    assert str(path.resolve()) not in saved, "no format chosen yet, so nothing kept"
    assert [(a["agent_id"], a["kind"]) for a in agents] == [(hashed("claude", "starting", path), "claude-code")]


async def test_an_unknown_format_is_a_usage_error(state_dir, tmp_path):
    done = await cli_import(state_dir, "--format", "nope", FIXTURES / "claude-transcript")
    assert done.returncode == 2
    assert done.stderr.decode().startswith("agentwatch import: unknown format 'nope'") and b"Traceback" not in done.stderr


@pytest.mark.parametrize("how", ["replaced", "cut short and rewritten"])
async def test_a_file_replaced_at_its_path_is_imported_after_what_was_there(state_dir, tmp_path, how):
    """Its lines were numbered from 1 again, so the daemon took them for the old ones: lost."""
    lines = transcript_lines()
    path = tmp_path / "rotated.jsonl"
    path.write_bytes(b"".join(lines[:6]))
    aged(path)
    async with running_daemon(state_dir) as d:
        await import_once(state_dir, path)
        if how == "replaced":
            path.with_suffix(".new").write_bytes(b"".join(lines[6:9]))
            path.with_suffix(".new").replace(path)
        else:
            path.write_bytes(b"".join(lines[6:8]))
        aged(path)
        done = await cli_import(state_dir, path)
        events = await stored(d, hashed("claude", "rotated", path))
    new = lines[6:9] if how == "replaced" else lines[6:8]
    assert [e["data"] for e in events if e["kind"] != "session_ended"] == [json.loads(line) for line in lines[:6] + new]
    assert done.stdout.decode() == f"imported 1 file: {len(new)} events stored, 0 already there\n"
