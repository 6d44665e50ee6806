"""``agentwatch hook`` (src/agentwatch/hook_command.py) against a real daemon: real Claude Code hook
payloads (tests/fixtures/claude-hooks) stored with their kinds, the attention they raise, a
``/clear`` that keeps the agent, the outbox while the daemon is down, the command as a real
process, how the agent id is found past the shell Claude Code runs hooks through, and an
``AGENTWATCH_AGENT_ID`` that is not one."""

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import trio

from agentwatch import daemon_file
from agentwatch.hook_command import forward
from agentwatch.locate import ClientError
from helpers import DaemonProcess, FIXTURES, running_daemon, stored, watcher

HOOKS = FIXTURES / "claude-hooks"
SESSION_START = "attio-mcp-server__session_start.json"  # source: resume, compact, clear, ...
PERMISSION = "home-assistant-green-button__permission_request.json"
IDLE = "serverless-plugins__4f65f198__notification.json"  # notification_type idle_prompt
STOP = "serverless-plugins__4f65f198__stop.json"
ASKED = "serverless-plugins__abc7156b__notification.json"  # notification_type permission_prompt
PRE_TOOL_USE = "serverless-plugins__abc7156b__pre_tool_use.json"
PROMPTS = "serverless-plugins__user_prompt_submit.json"  # 3 typed prompts, then <task-notification>s

# The first records of each file and their kinds, written out by hand from the payloads.
FIRST_RECORDS = {
    SESSION_START: ["session_started", "compacted", "context_cleared"],
    PERMISSION: ["permission_request"] * 2,
    IDLE: ["notification"] * 2,
    STOP: ["turn_completed"] * 2,
    ASKED: ["permission_request"],
    PRE_TOOL_USE: ["tool_use"] * 2,
    PROMPTS: ["prompt", "prompt", "prompt", "notification"],
}
HOST = re.sub(r"[^A-Za-z0-9._:@-]", "-", socket.gethostname().split(".")[0])


def payloads(name: str) -> list[dict]:
    return json.loads((HOOKS / name).read_text(encoding="utf-8"))


def environ(state_dir: Path, agent_id: str | None = None, **extra: str) -> dict[str, str]:
    """The environment of a hook process: none of the caller's AGENTWATCH_* variables leak in."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("AGENTWATCH_")}
    return env | {"AGENTWATCH_STATE_DIR": str(state_dir)} | ({"AGENTWATCH_AGENT_ID": agent_id} if agent_id else {}) | extra


async def hook(state_dir: Path, agent_id: str, payload: object, **extra: str) -> None:
    """``forward`` one payload, in a thread (it blocks; the daemon under test runs in this process)."""
    raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    await trio.to_thread.run_sync(forward, raw, environ(state_dir, agent_id, **extra))


async def hook_process(state_dir: Path, stdin: bytes, agent_id: str | None = None) -> subprocess.CompletedProcess:
    """``python -m agentwatch hook`` as Claude Code runs it: a child process, the payload on stdin."""
    with trio.fail_after(10):
        return await trio.run_process(
            [sys.executable, "-m", "agentwatch", "hook"], stdin=stdin, env=environ(state_dir, agent_id),
            capture_stdout=True, capture_stderr=True, check=False,
        )


def spooled(state_dir: Path, agent_id: str) -> list[dict]:
    """The events waiting in an agent's outbox file."""
    path = state_dir / "outbox" / f"{agent_id}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


async def attention(running) -> dict[str, str]:
    async with watcher(running) as w:
        return {item["agent_id"]: item["state"] for item in (await w.call("attention.list"))["items"]}


async def test_fixture_payloads_are_stored_with_their_kinds(state_dir):
    async with running_daemon(state_dir) as d:
        for n, (name, kinds) in enumerate(FIRST_RECORDS.items()):
            for payload in payloads(name)[: len(kinds)]:
                await hook(state_dir, f"hooked-{n}", payload)
        for n, (name, kinds) in enumerate(FIRST_RECORDS.items()):
            events = await stored(d, f"hooked-{n}")
            assert [e["kind"] for e in events] == kinds, name
            assert [e["data"] for e in events] == payloads(name)[: len(kinds)]
            assert [e["seq"] for e in events] == list(range(1, len(kinds) + 1))
            assert {e["format"] for e in events} == {"claude-hook"}
            assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", e["ts"]) for e in events)
        session_start = await stored(d, "hooked-0")
        assert [e["session"] for e in session_start] == [0, 0, 1], "the clear opens session 1"
    assert list((state_dir / "outbox").glob("*.jsonl")) == [], "nothing left waiting"


async def test_the_hello_describes_the_claude_code_process(state_dir):
    async with running_daemon(state_dir) as d:
        await hook(state_dir, "described", payloads(PROMPTS)[0])
        async with watcher(d) as w:
            [listed] = [a for a in await w.call("agents.list") if a["agent_id"] == "described"]
    assert listed["kind"] == "claude-code"
    assert listed["host"] == socket.gethostname().split(".")[0]
    assert listed["cwd"] == "/Users/silouane/coorp/serverless-plugins"
    assert listed["name"] == "serverless-plugins"
    assert listed["acked_seq"] == 1


async def test_permission_prompts_and_a_stop_raise_attention(state_dir):
    async with running_daemon(state_dir) as d:
        await hook(state_dir, "asked", payloads(PROMPTS)[0])
        await hook(state_dir, "asked", payloads(ASKED)[0])  # Notification, permission_prompt
        await hook(state_dir, "requested", payloads(PERMISSION)[0])  # PermissionRequest
        await hook(state_dir, "idle", payloads(PROMPTS)[0])
        await hook(state_dir, "idle", payloads(PRE_TOOL_USE)[0])
        await hook(state_dir, "idle", payloads(IDLE)[0])  # Notification, idle_prompt: not a permission
        await hook(state_dir, "stopped", payloads(PROMPTS)[0])
        await hook(state_dir, "stopped", payloads(STOP)[0])
        assert await attention(d) == {"asked": "needs_permission", "requested": "needs_permission", "stopped": "awaiting_reply"}
        await hook(state_dir, "asked", payloads(STOP)[1])  # the turn ended: nothing is asked any more
        await hook(state_dir, "stopped", payloads(PROMPTS)[1])  # the person answered
        assert await attention(d) == {"asked": "awaiting_reply", "requested": "needs_permission"}


async def test_a_clear_starts_the_next_session_of_the_same_agent(state_dir):
    """No AGENTWATCH_AGENT_ID: the agent is the process that runs the hook (here this test process),
    so every hook of one Claude Code process is one agent, before and after /clear."""
    clear = payloads(SESSION_START)[2]
    assert clear["source"] == "clear"
    async with running_daemon(state_dir) as d:
        for payload in (payloads(PROMPTS)[0], clear, payloads(PROMPTS)[1]):
            done = await hook_process(state_dir, json.dumps(payload).encode())
            assert (done.returncode, done.stderr) == (0, b"")
        agent_id = f"claude-{HOST}-{os.getpid()}"
        events = await stored(d, agent_id)
        async with watcher(d) as w:
            agents = await w.call("agents.list")
    assert [(e["seq"], e["kind"], e["session"]) for e in events] == [(1, "prompt", 0), (2, "context_cleared", 1), (3, "prompt", 1)]
    assert [(a["agent_id"], a["session"]) for a in agents] == [(agent_id, 1)]


async def test_a_session_end_forgets_the_outbox_but_a_clear_does_not(state_dir):
    base = {"session_id": "s1", "cwd": "/p", "hook_event_name": "SessionEnd"}
    async with running_daemon(state_dir) as d:
        await hook(state_dir, "cleared", base | {"reason": "clear"})
        await hook(state_dir, "ended", base | {"reason": "logout"})
        assert [e["kind"] for e in await stored(d, "ended")] == ["session_ended"]
    assert (state_dir / "outbox" / "cleared.json").exists(), "the Claude Code process goes on after a clear"
    assert not (state_dir / "outbox" / "ended.json").exists()


async def test_with_no_daemon_the_event_waits_and_the_next_hook_delivers_both(state_dir):
    first, second = payloads(PROMPTS)[0], payloads(STOP)[0]
    with pytest.raises(ClientError, match="outbox"):
        await hook(state_dir, "agent-1", first)
    assert [(e["seq"], e["format"], e["data"]) for e in spooled(state_dir, "agent-1")] == [(1, "claude-hook", first)]
    async with running_daemon(state_dir) as d:
        await hook(state_dir, "agent-1", second)
        events = await stored(d, "agent-1")
    assert [(e["seq"], e["kind"], e["data"]) for e in events] == [(1, "prompt", first), (2, "turn_completed", second)]
    assert spooled(state_dir, "agent-1") == []


async def test_after_the_daemon_stopped_another_agents_hook_delivers_what_waits(state_dir):
    one, two, three, four = payloads(PROMPTS)[:2] + payloads(PRE_TOOL_USE)[:2]
    async with running_daemon(state_dir):
        await hook(state_dir, "agent-a", one)
    assert not (state_dir / "daemon.json").exists()
    with pytest.raises(ClientError):
        await hook(state_dir, "agent-a", two)
    with pytest.raises(ClientError):
        await hook(state_dir, "agent-b", three)
    assert [e["seq"] for e in spooled(state_dir, "agent-a")] == [2]
    assert [e["seq"] for e in spooled(state_dir, "agent-b")] == [1]
    async with running_daemon(state_dir) as d:
        await hook(state_dir, "agent-c", four)
        a, b, c = [await stored(d, agent_id) for agent_id in ("agent-a", "agent-b", "agent-c")]
    assert [(e["seq"], e["data"]) for e in a] == [(1, one), (2, two)], "in order, each exactly once"
    assert [(e["seq"], e["data"]) for e in b] == [(1, three)]
    assert [(e["seq"], e["data"]) for e in c] == [(1, four)]
    assert list((state_dir / "outbox").glob("*.jsonl")) == []


async def test_a_daemon_killed_without_withdrawing_its_record_counts_as_down(state_dir):
    daemon = DaemonProcess(state_dir)
    await daemon.ready()
    daemon.proc.kill()
    await daemon.wait()
    assert (state_dir / "daemon.json").exists(), "SIGKILL left the record behind"
    with pytest.raises(ClientError, match="no daemon is running"):
        await hook(state_dir, "agent-1", payloads(PROMPTS)[0])
    async with running_daemon(state_dir) as d:
        await hook(state_dir, "agent-1", payloads(STOP)[0])
        assert [e["kind"] for e in await stored(d, "agent-1")] == ["prompt", "turn_completed"]


async def test_an_announced_daemon_that_does_not_answer_leaves_the_event_waiting(state_dir):
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    state_dir.mkdir(parents=True)
    (state_dir / "token").write_text("secret\n")
    daemon_file.announce(state_dir, [f"127.0.0.1:{port}"], state_dir / "token")  # this (live) process "listens"
    try:
        with pytest.raises(ClientError, match="outbox"):
            await hook(state_dir, "agent-1", payloads(PROMPTS)[0])
    finally:
        daemon_file.withdraw(state_dir)
    assert [e["data"] for e in spooled(state_dir, "agent-1")] == [payloads(PROMPTS)[0]]


async def test_a_refused_token_leaves_the_event_waiting(state_dir):
    async with running_daemon(state_dir) as d:
        with pytest.raises(ClientError, match="outbox"):
            await hook(state_dir, "agent-1", payloads(PROMPTS)[0], AGENTWATCH_TOKEN="wrong")
        assert len(spooled(state_dir, "agent-1")) == 1
        await hook(state_dir, "agent-1", payloads(STOP)[0])
        assert [e["kind"] for e in await stored(d, "agent-1")] == ["prompt", "turn_completed"]


@pytest.mark.parametrize("url", ["ftp://example.invalid/", "ws://127.0.0.1:9/"])
async def test_a_daemon_url_that_cannot_be_used_leaves_the_event_waiting(state_dir, url):
    """A bad AGENTWATCH_URL, or one whose token is nowhere (no token file, no AGENTWATCH_TOKEN),
    fails the delivery, never the spooling."""
    with pytest.raises(ClientError):
        await hook(state_dir, "agent-1", payloads(PROMPTS)[0], AGENTWATCH_URL=url)
    assert [e["data"] for e in spooled(state_dir, "agent-1")] == [payloads(PROMPTS)[0]]


async def test_the_command_exits_0_with_the_daemon_up_and_down(state_dir):
    payload = payloads(PRE_TOOL_USE)[0]
    down = await hook_process(state_dir, json.dumps(payload).encode(), "agent-1")
    assert down.returncode == 0
    assert b"outbox" in down.stderr, "the reason goes to stderr (Claude Code shows it in verbose mode)"
    assert down.stdout == b"", "Claude Code reads a hook's stdout: nothing may appear there"
    async with running_daemon(state_dir) as d:
        up = await hook_process(state_dir, json.dumps(payloads(PRE_TOOL_USE)[1]).encode(), "agent-1")
        assert (up.returncode, up.stdout, up.stderr) == (0, b"", b"")
        events = await stored(d, "agent-1")
    assert [e["data"] for e in events] == payloads(PRE_TOOL_USE)[:2]


async def test_stdin_that_is_not_json_is_stored_as_a_raw_event(state_dir):
    async with running_daemon(state_dir) as d:
        done = await hook_process(state_dir, b"not json {\xff", "agent-1")
        assert (done.returncode, done.stderr) == (0, b"")
        [event] = await stored(d, "agent-1")
    assert event["kind"] == "raw"
    assert event["data"] == "not json {\ufffd"


async def test_a_json_value_that_is_not_an_object_is_stored_as_a_raw_event(state_dir):
    async with running_daemon(state_dir) as d:
        await hook(state_dir, "agent-1", [1, "two"])
        [event] = await stored(d, "agent-1")
    assert (event["kind"], event["data"]) == ("raw", [1, "two"])


# identity: the agent is the process that ran the hook's shell


def run_under(shell_command: str) -> tuple[int, int, int]:
    """Run ``shell_command`` from a fresh python process ``P``; ``(P's pid, the inner python's
    parent pid, what claude_pid() printed there)``."""
    outer = (
        "import os, subprocess, sys\n"
        f"inner = subprocess.run(['sh', '-c', {shell_command!r}], capture_output=True, text=True, check=True).stdout\n"
        "print(os.getpid(), inner)\n"
    )
    done = subprocess.run([sys.executable, "-c", outer], capture_output=True, text=True, timeout=10, check=True)
    outer_pid, parent, found = (int(word) for word in done.stdout.split())
    return outer_pid, parent, found


INNER = f'{sys.executable} -c "import os; from agentwatch.identity import claude_pid; print(os.getppid(), claude_pid())"'


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="claude_pid walks past shells only with Linux /proc")
def test_claude_pid_walks_past_the_shell_that_runs_the_hook():
    # ``; :`` keeps the shell alive (a shell may exec a lone command in its own place).
    outer, parent, found = run_under(f"{INNER}; :")
    assert parent != outer, "the hook's parent is the shell"
    assert found == outer


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="claude_pid walks past shells only with Linux /proc")
def test_claude_pid_walks_past_nested_shells():
    outer, parent, found = run_under(f"sh -c '{INNER}; :'; :")
    assert found == outer


def test_claude_pid_is_the_parent_when_it_is_not_a_shell():
    done = subprocess.run([sys.executable, "-c", "from agentwatch.identity import claude_pid; print(claude_pid())"],
                          capture_output=True, text=True, timeout=10, check=True)
    assert int(done.stdout) == os.getpid()


async def test_a_payload_with_a_lone_surrogate_is_stored(state_dir):
    raw = b'{"hook_event_name": "UserPromptSubmit", "session_id": "s1", "cwd": "/p", "prompt": "half \\ud83d of an emoji"}'
    async with running_daemon(state_dir) as d:
        await hook(state_dir, "agent-1", raw)
        [event] = await stored(d, "agent-1")
    assert event["kind"] == "prompt"
    assert event["data"] == json.loads(raw)


@pytest.mark.parametrize("agent_id", ["../../escaped", "a/b", "x" * 129])
async def test_an_agent_id_that_is_not_valid_writes_nothing_and_exits_0(tmp_path, agent_id):
    """``AGENTWATCH_AGENT_ID`` names the outbox's files: ``../../escaped`` used to write next to the state directory."""
    state_dir = tmp_path / "deep" / "state"
    done = await hook_process(state_dir, json.dumps(payloads(PROMPTS)[0]).encode(), agent_id)
    assert (done.returncode, done.stdout) == (0, b""), "a hook never fails Claude Code"
    assert done.stderr.startswith(b"agentwatch hook: agent id ") and b"is not valid: use " in done.stderr
    assert list(tmp_path.rglob("*")) == [], "nothing written anywhere"


async def test_stdin_that_never_ends_is_cut_and_the_hook_still_ends(state_dir):
    """``agentwatch hook < /dev/zero`` used to read for ever."""
    async with running_daemon(state_dir) as d:
        with trio.fail_after(30), open("/dev/zero", "rb") as zeros:
            done = await trio.run_process([sys.executable, "-m", "agentwatch", "hook"], stdin=zeros,
                                          env=environ(state_dir, "endless"), capture_stdout=True, capture_stderr=True, check=False)
        [event] = await stored(d, "endless")
    assert (done.returncode, done.stderr) == (0, b"")
    assert event["kind"] == "raw" and event["data"].endswith(f"[cut by agentwatch: {1 << 30} bytes in all]")
