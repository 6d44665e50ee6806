"""Records too big for the daemon's frames, and records it would refuse, never silence an agent
(issue 16): through ``agentwatch hook``, ``agentwatch run`` and ``open_agent`` against a real
daemon, each is stored cut to fit (still a record of its format, marked ``agentwatch_truncated``)
or as its text, and every later event of that agent is stored after it. Also: the outbox is
UTF-8, a daemon that closes a frame as too big (1009) without having said its limit gets the
events one by one and then cut smaller, and what the outbox holds is on disk before it matters."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import trio

from agentwatch import outbox
from agentwatch.client import open_agent
from agentwatch.ingest import AgentConnection
from agentwatch.locate import ClientError
from agentwatch.record_cap import MARKER
from helpers import FIXTURES, running_daemon, stored, watcher
from test_client import endpoint_of
from test_hook import hook, spooled

PRE_TOOL_USE = json.loads((FIXTURES / "claude-hooks" / "serverless-plugins__abc7156b__pre_tool_use.json").read_text())[0]
PROMPT = json.loads((FIXTURES / "claude-hooks" / "serverless-plugins__user_prompt_submit.json").read_text())[0]
SMALL_FRAMES = {"AGENTWATCH_SERVER_MAX_FRAME_BYTES": "64KiB"}


def post_tool_use(stdout: str) -> dict:
    """The PostToolUse that closes the fixture's PreToolUse, its command having printed ``stdout``."""
    return PRE_TOOL_USE | {"hook_event_name": "PostToolUse", "tool_response": {"stdout": stdout, "stderr": "", "interrupted": False}}


@pytest.fixture
def unannounced(monkeypatch):
    """The daemon's welcome without ``max_frame_bytes``, as from a daemon from before it was added."""
    send = AgentConnection._send

    async def without_limit(self, frame):
        await send(self, {k: v for k, v in frame.items() if k != "max_frame_bytes"} if frame["type"] == "welcome" else frame)

    monkeypatch.setattr(AgentConnection, "_send", without_limit)


async def test_a_1_1_MB_tool_result_is_stored_cut_and_closes_its_tool_call_and_the_next_event_follows(state_dir):
    output = "".join(f"line {n} of a long build log\n" for n in range(40_000))  # 1.1 MB
    async with running_daemon(state_dir) as d:
        for payload in (PRE_TOOL_USE, post_tool_use(output), PROMPT):
            await hook(state_dir, "agent-1", payload)
        events = await stored(d, "agent-1")
    assert [e["kind"] for e in events] == ["tool_use", "tool_result", "prompt"], "parsed as its format, not raw"
    cut = events[1]["data"]
    assert cut[MARKER]["bytes"] > 1_100_000
    assert set(cut[MARKER]["fields"]) == {"tool_response.stdout"}
    assert {key: cut[key] for key in PRE_TOOL_USE if key != "hook_event_name"} == {key: PRE_TOOL_USE[key] for key in PRE_TOOL_USE if key != "hook_event_name"}
    assert cut["hook_event_name"] == "PostToolUse" and cut["tool_use_id"] == PRE_TOOL_USE["tool_use_id"]
    stdout = cut["tool_response"]["stdout"]
    assert output.startswith(stdout[:-1]) and stdout.endswith("…") and 500_000 < len(stdout) < 1 << 20
    assert events[2]["data"] == PROMPT
    assert spooled(state_dir, "agent-1") == [], "nothing left waiting"


async def waiting(state_dir: Path, agent_id: str, payload: object) -> None:
    """``hook`` with no daemon running: the payload waits in the outbox."""
    with pytest.raises(ClientError, match="waits in its outbox"):
        await hook(state_dir, agent_id, payload)


async def test_a_600_KB_prompt_in_UTF_8_is_stored_whole_and_the_outbox_holds_it_as_UTF_8(state_dir):
    prompt = PROMPT | {"prompt": "日本語のテキスト" * 25_000}  # 600 KB of UTF-8, 1.2 MB as \u escapes
    await waiting(state_dir, "agent-1", prompt)
    held = (state_dir / "outbox" / "agent-1.jsonl").read_bytes()
    assert "日本語".encode() in held and b"\\u" not in held
    assert len(held) < 700_000
    async with running_daemon(state_dir) as d:
        await hook(state_dir, "agent-1", PROMPT)
        events = await stored(d, "agent-1")
    assert [e["data"] for e in events] == [prompt, PROMPT], "the first whole: it fits a frame as UTF-8"


async def test_records_are_cut_to_the_limit_the_daemon_announces(state_dir):
    output = "x" * 200_000
    async with running_daemon(state_dir, SMALL_FRAMES) as d:
        for payload in (PRE_TOOL_USE, post_tool_use(output), PROMPT):
            await hook(state_dir, "agent-1", payload)
        events = await stored(d, "agent-1")
    assert [e["kind"] for e in events] == ["tool_use", "tool_result", "prompt"]
    assert len(json.dumps(events[1]["data"])) < 64 << 10
    assert events[1]["data"][MARKER]["fields"] == {"tool_response.stdout": 200_002}


async def test_after_a_1009_events_go_one_by_one_and_only_one_too_big_alone_is_cut(state_dir, unannounced):
    """The outbox, filled while the daemon was down, holds 40 KB events (frames of several pass
    64 KiB) and one of 300 KB: the 40 KB ones are stored whole, the big one cut, all in order."""
    payloads = [PROMPT | {"prompt": f"{n} " + "y" * 40_000} for n in range(6)]
    payloads.insert(3, post_tool_use("z" * 300_000))
    for payload in payloads:
        await waiting(state_dir, "agent-1", payload)
    assert len(spooled(state_dir, "agent-1")) == 7
    async with running_daemon(state_dir, SMALL_FRAMES) as d:
        await hook(state_dir, "agent-1", PROMPT)  # delivers everything, over as many connections as it takes
        events = await stored(d, "agent-1")
    assert [e["seq"] for e in events] == list(range(1, 9))
    assert [e["data"] for e in events[:3] + events[4:7]] == payloads[:3] + payloads[4:], "whole: each fits alone"
    assert events[3]["kind"] == "tool_result" and events[3]["data"][MARKER]["fields"] == {"tool_response.stdout": 300_002}
    assert events[7]["data"] == PROMPT
    header = json.loads((state_dir / "outbox" / "agent-1.json").read_text())
    assert 0 < header["ceiling"] <= 64 << 10, "the limit it learnt is kept for the next hook"


async def test_open_agent_cuts_a_record_too_big_and_after_a_1009_resends_it_smaller(state_dir, unannounced):
    async with running_daemon(state_dir, SMALL_FRAMES) as d:
        async with open_agent("lib-1", format="claude-hook", endpoint=endpoint_of(state_dir)) as client:
            await client.send(post_tool_use("w" * 300_000))
            await client.send(PROMPT)
            with trio.fail_after(10):
                await client.wait_acked()
        events = await stored(d, "lib-1")
    assert [e["kind"] for e in events] == ["tool_result", "prompt"]
    assert events[0]["data"][MARKER]["bytes"] > 300_000
    assert client.frame_limit <= 64 << 10


@pytest.mark.parametrize("raw", [
    b'{"hook_event_name": "PostToolUse", "tool_response": {"cost": NaN}}',
    b'{"a": ' * 990 + b"1" + b"}" * 990,
    b'{"a": ' * 5000 + b"1" + b"}" * 5000,
], ids=["NaN", "990-deep", "5000-deep"])
async def test_a_record_the_daemon_would_refuse_as_json_is_stored_and_the_next_follows(state_dir, raw):
    async with running_daemon(state_dir) as d:
        await hook(state_dir, "agent-1", raw)
        await hook(state_dir, "agent-1", PROMPT)
        events = await stored(d, "agent-1")
    assert [e["seq"] for e in events] == [1, 2]
    assert events[1]["data"] == PROMPT
    assert spooled(state_dir, "agent-1") == []


async def test_an_outbox_an_older_version_left_stuck_is_delivered(state_dir):
    """Older versions wrote NaN (which the daemon refuses, naming no event) and records over the
    frame limit into the outbox, and every later event waited behind them."""
    folder = state_dir / "outbox"
    folder.mkdir(parents=True)
    (folder / "agent-1.json").write_text(json.dumps({"hello": {"format": "claude-hook"}, "acked": 0, "sent": 0}))
    old = [{"seq": 1, "format": "claude-hook", "data": PROMPT | {"cost": float("nan")}},
           {"seq": 2, "format": "claude-hook", "data": post_tool_use("\u00e9" * 600_000)}]
    (folder / "agent-1.jsonl").write_text("".join(json.dumps(event) + "\n" for event in old))  # ASCII-escaped: 3.6 MB
    async with running_daemon(state_dir) as d:
        await hook(state_dir, "agent-1", PROMPT)
        events = await stored(d, "agent-1")
    assert [e["seq"] for e in events] == [1, 2, 3]
    assert isinstance(events[0]["data"], str) and '"cost": NaN' in events[0]["data"], "kept, as its text"
    assert events[1]["kind"] == "tool_result" and events[1]["data"][MARKER]["bytes"] > 1_200_000
    assert events[2]["data"] == PROMPT


async def test_a_huge_line_through_agentwatch_run_is_stored_cut_as_a_record_of_its_format(state_dir, tmp_path):
    line = {"type": "user", "message": {"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "toolu_1", "content": "v" * 1_500_000}]}, "session_id": "s1"}
    script = tmp_path / "agent.py"
    script.write_text(f"import json\nprint(json.dumps({line!r}))\nprint(json.dumps({{'type': 'result', 'subtype': 'success', 'session_id': 's1'}}))\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTWATCH_")} | {"AGENTWATCH_STATE_DIR": str(state_dir)}
    async with running_daemon(state_dir) as d:
        with trio.fail_after(20):
            done = await trio.run_process([sys.executable, "-m", "agentwatch", "run", "--agent-id", "relayed", "--format", "claude-stream-json",
                                           "--quiet", "--", sys.executable, str(script)], env=env, capture_stderr=True, check=False)
        events = await stored(d, "relayed")
    assert done.returncode == 0, done.stderr
    assert [e["kind"] for e in events] == ["tool_result", "turn_completed", "session_ended"]
    assert events[0]["data"][MARKER]["fields"] == {"message.content[0].content": 1_500_002}
    assert events[0]["data"]["message"]["content"][0]["tool_use_id"] == "toolu_1"


# --- on disk before it matters ---


@pytest.fixture
def synced(monkeypatch):
    """The names of the files and directories ``os.fsync`` is called on, in order."""
    names: list[str] = []
    fsync = os.fsync

    def recording(fd):
        names.append(os.readlink(f"/proc/self/fd/{fd}"))
        fsync(fd)

    monkeypatch.setattr(os, "fsync", recording)
    return names


@pytest.mark.skipif(not Path("/proc/self/fd").exists(), reason="names descriptors through /proc")
async def test_with_the_daemon_down_every_event_is_on_disk_before_the_hook_ends(state_dir, synced):
    await waiting(state_dir, "agent-1", PROMPT)
    events_file = str(state_dir / "outbox" / "agent-1.jsonl")
    assert events_file in synced and str(state_dir / "outbox") in synced
    synced.clear()
    with outbox.locked(state_dir, "agent-1") as box:
        box.hold()
        box.append([(PROMPT, "claude-hook", None)])
    assert synced[:1] == [events_file], "appends after the daemon was found down go to disk at once"


@pytest.mark.skipif(not Path("/proc/self/fd").exists(), reason="names descriptors through /proc")
def test_the_handing_over_is_on_disk_with_its_directory_before_events_are_sent(state_dir, synced):
    with outbox.locked(state_dir, "agent-1") as box:
        box.append([(PROMPT, "claude-hook", None)])
        synced.clear()
        box.handing_over(1)
    folder = state_dir / "outbox"
    assert [Path(name).parent for name in synced] == [folder, folder.parent], "the new header, then the directory"
    assert synced[1] == str(folder)
    assert json.loads((folder / "agent-1.json").read_text())["sent"] == 1


def test_outbox_files_are_the_users_alone(state_dir):
    with outbox.locked(state_dir, "agent-1") as box:
        box.set_hello({"format": "claude-hook"})
        box.append([(PROMPT, "claude-hook", None)])
    folder = state_dir / "outbox"
    modes = {path.name: path.stat().st_mode & 0o777 for path in folder.iterdir()}
    assert modes == {"agent-1.json": 0o600, "agent-1.jsonl": 0o600, "agent-1.lock": 0o600}
    assert folder.stat().st_mode & 0o777 == 0o700


def test_a_session_end_removes_the_lock_file_too_and_a_waiting_opener_locks_a_live_one(state_dir):
    """``forget`` unlinks the lock file: a process that was waiting on the old one must not count
    as the outbox's only user next to one that locks the new file."""
    waiter = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from pathlib import Path; from agentwatch import outbox\n"
         "print('opening', flush=True)\n"
         f"with outbox.locked(Path({str(state_dir)!r}), 'agent-1') as box:\n"
         "    print('locked', flush=True); time.sleep(0.5)"],
        stdout=subprocess.PIPE, text=True)
    try:
        with outbox.locked(state_dir, "agent-1") as box:
            box.set_hello({"format": "claude-hook"})
            assert waiter.stdout.readline() == "opening\n"
            time.sleep(0.2)  # the waiter is blocked on this lock file by now
            box.forget()
            assert not (state_dir / "outbox" / "agent-1.lock").exists()
        assert waiter.stdout.readline() == "locked\n"
        with outbox.try_locked(state_dir, "agent-1") as other:
            assert other is None, "the waiter holds the lock file that is at the name now"
    finally:
        waiter.wait(10)


async def test_a_folder_name_that_is_not_utf_8_does_not_keep_the_agent_out(state_dir, tmp_path):
    """The hello's cwd held the name's undecodable bytes as surrogates: the daemon refused every
    hello, and the agent's events waited for good while the messages blamed a daemon that was up."""
    folder = Path(os.fsdecode(bytes(tmp_path) + b"/caf\xe9"))
    folder.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTWATCH_")} | {"AGENTWATCH_STATE_DIR": str(state_dir)}
    async with running_daemon(state_dir) as d:
        with trio.fail_after(20):
            done = await trio.run_process([sys.executable, "-m", "agentwatch", "run", "--agent-id", "latin1", "--quiet", "--",
                                           sys.executable, "-c", "print('hi')"], cwd=folder, env=env, capture_stderr=True, check=False)
        await hook(state_dir, "hooked", PROMPT | {"cwd": "/home/me/caf\udce9"})
        events = {agent_id: await stored(d, agent_id) for agent_id in ("latin1", "hooked")}
        async with watcher(d) as w:
            agents = {a["agent_id"]: a for a in await w.call("agents.list")}
    assert done.returncode == 0 and done.stderr == b"", done.stderr
    assert [e["data"] for e in events["latin1"]][0] == "hi"
    assert agents["latin1"]["cwd"].endswith("/caf\ufffd"), agents["latin1"]["cwd"]
    assert [e["kind"] for e in events["hooked"]] == ["prompt"]
    assert agents["hooked"]["cwd"] == "/home/me/caf\ufffd"
