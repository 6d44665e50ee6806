"""The ``claude-hook`` format against real hook payloads (tests/fixtures/MANIFEST.txt, claude-hooks/)
and against payloads written from the documented shapes of the events the recordings lack."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import replace
from typing import Any

import pytest

from agentwatch.model import KINDS, Normalized
from agentwatch.plugins.formats.claude_hook import ClaudeHookFormat, agentwatch_register_formats
from helpers import FIXTURES, agent, every_fixture_record, running_daemon, stored, stream_all, watcher

FMT = ClaudeHookFormat()
HOOKS = "claude-hooks"
SESSION_START = "attio-mcp-server__session_start.json"
PERMISSION = "home-assistant-green-button__permission_request.json"
IDLE = "serverless-plugins__4f65f198__notification.json"
STOP = "serverless-plugins__4f65f198__stop.json"
ASKED = "serverless-plugins__abc7156b__notification.json"
PRE_TOOL_USE = "serverless-plugins__abc7156b__pre_tool_use.json"
PROMPTS = "serverless-plugins__user_prompt_submit.json"

# The kind of every record of every file, in order, written out by hand from the payloads.
EXPECTED: dict[str, list[str]] = {
    # source: resume, compact, clear, resume, compact, compact, startup x4
    SESSION_START: ["session_started", "compacted", "context_cleared", "session_started", "compacted", "compacted"]
    + ["session_started"] * 4,
    PERMISSION: ["permission_request"] * 28,
    IDLE: ["notification"] * 6,  # idle_prompt
    STOP: ["turn_completed"] * 6,
    ASKED: ["permission_request"],  # permission_prompt
    PRE_TOOL_USE: ["tool_use"] * 29,
    # records 3-5 are <task-notification> prompts Claude Code submitted when background workflows finished
    PROMPTS: ["prompt"] * 3 + ["notification"] * 3 + ["prompt"] * 5,
}

# The tool of each PreToolUse record of PRE_TOOL_USE, by hand.
PRE_TOOL_USE_TOOLS = (
    "Bash Bash Bash Read Read Read Bash Bash Bash Bash Bash Bash Bash Read Read Read Read Read Read Read Read "
    "Bash Read Write Edit Bash Bash Bash AskUserQuestion"
).split()

SERVERLESS_CWD = "/Users/silouane/coorp/serverless-plugins"


def records(name: str) -> list[Any]:
    return json.loads((FIXTURES / HOOKS / name).read_text(encoding="utf-8"))


def normalized(name: str) -> list[Normalized]:
    return [FMT.normalize(record) for record in records(name)]


def test_registers_itself_by_name() -> None:
    registered: list[Any] = []
    agentwatch_register_formats(registered.append)
    assert [fmt.name for fmt in registered] == ["claude-hook"]


def test_expected_covers_every_fixture_file() -> None:
    assert sorted(EXPECTED) == sorted(path.name for path in (FIXTURES / HOOKS).glob("*.json"))


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_record_has_its_expected_kind_session_and_cwd(name: str) -> None:
    events = normalized(name)
    assert [e.kind for e in events] == EXPECTED[name]
    for record, event in zip(records(name), events, strict=True):
        assert event.session_id == record["session_id"]
        assert event.cwd == record["cwd"]
        assert not event.heartbeat


def test_all_kinds_together() -> None:
    assert Counter(kind for kinds in EXPECTED.values() for kind in kinds) == {
        "session_started": 6,
        "compacted": 3,
        "context_cleared": 1,
        "permission_request": 29,
        "notification": 9,
        "turn_completed": 6,
        "tool_use": 29,
        "prompt": 8,
    }


def test_session_start_sources_and_a_new_session_id_after_clear() -> None:
    events = normalized(SESSION_START)
    assert events[0].session_id == events[1].session_id == "6706089d-9d7e-4f48-bd2d-8f2a2546eb78"
    assert events[2].kind == "context_cleared" and events[2].session_id == "4111cd2e-9717-438e-877c-d300c22459a8"
    assert events[6].cwd == "/Users/kesslerio/GDrive/Projects/attio-mcp-server"
    assert all(e.text is None and e.tool is None for e in events)


def test_pre_tool_use_carries_tool_and_input() -> None:
    events = normalized(PRE_TOOL_USE)
    assert [e.tool for e in events] == PRE_TOOL_USE_TOOLS
    assert Counter(PRE_TOOL_USE_TOOLS) == {"Bash": 14, "Read": 12, "Write": 1, "Edit": 1, "AskUserQuestion": 1}
    assert events[0].input == {"command": "git ls-files | head -200", "description": "List tracked files in repo"}
    assert events[3].input == {"file_path": "/Users/silouane/coorp/serverless-plugins/docs/README.md"}
    asked = events[28]
    assert asked.input["questions"][0]["question"] == "How should the ~19 issues be packaged into PRs?"
    assert all(e.session_id == "abc7156b-6420-4373-a150-9b2eecad6805" and e.cwd == SERVERLESS_CWD for e in events)


def test_permission_requests_carry_bash_and_the_command() -> None:
    events = normalized(PERMISSION)
    assert {e.tool for e in events} == {"Bash"}
    assert all(isinstance(e.input, dict) and isinstance(e.input["command"], str) for e in events)
    assert events[24].input["command"] == "python test_scraper_logic.py"
    assert events[0].cwd == "c:\\Users\\Tom\\Documents\\GitHub\\home-assistant-green-button-tom"
    assert events[19].cwd == "C:\\Users\\Tom\\Documents\\GitHub\\home-assistant-green-button-tom"
    assert {e.session_id for e in events} == {"cfef384f-4359-49de-94d5-31dfae6a0925"}


def test_notifications_text_is_the_message() -> None:
    assert {e.text for e in normalized(IDLE)} == {"Claude is waiting for your input"}
    [asked] = normalized(ASKED)
    assert (asked.kind, asked.text, asked.session_id) == (
        "permission_request", "Claude needs your permission", "abc7156b-6420-4373-a150-9b2eecad6805"
    )


def test_stop_text_is_the_last_assistant_message() -> None:
    events = normalized(STOP)
    assert [e.text for e in events] == [record["last_assistant_message"] for record in records(STOP)]
    assert events[0].text is not None and events[0].text.startswith("# Prime + Critical Review")
    assert events[5].text is not None and events[5].text.startswith("# ✅ Done — PR #265 pushed")
    assert all(e.is_error is False for e in events)


def test_prompts_typed_by_the_person_and_injected_task_notifications() -> None:
    events = normalized(PROMPTS)
    assert events[0].text is not None and events[0].text.startswith("/prime & read ")
    assert events[6].text is not None and events[6].text.endswith('as well as "docs"')
    assert events[10].session_id == "2119c290-7515-4234-a1d9-5a11529eece7"
    notes = [e for e in events if e.kind == "notification"]
    assert [e.text for e in notes] == [
        record["prompt"].split("<summary>")[1].split("</summary>")[0] for record in records(PROMPTS)[3:6]
    ]
    assert notes[2].text is not None and notes[2].text.startswith('Dynamic workflow "Step 6: adversarial multi-lens review')


def test_a_task_notification_without_summary_keeps_the_whole_prompt() -> None:
    prompt = "\n<task-notification>\n<task-id>x</task-id>\n<status>failed</status>\n</task-notification>"
    event = FMT.normalize({"hook_event_name": "UserPromptSubmit", "session_id": "s", "prompt": prompt})
    assert (event.kind, event.text) == ("notification", prompt)
    typed = FMT.normalize({"hook_event_name": "UserPromptSubmit", "session_id": "s", "prompt": "what is <task-notification>?"})
    assert typed.kind == "prompt"


# Payloads of the events the recordings lack, written from the input shapes documented in the
# Claude Code hooks reference (code.claude.com/docs/en/hooks, "Hook input" of each event);
# StopFailure from the Agent SDK's StopFailureInput (error, error_details, last_assistant_message).
COMMON = {
    "session_id": "abc123",
    "transcript_path": "/home/u/.claude/projects/-home-u-proj/abc123.jsonl",
    "cwd": "/home/u/proj",
    "permission_mode": "default",
}
DOCUMENTED: list[tuple[dict[str, Any], Normalized]] = [
    (
        {"hook_event_name": "PostToolUse", "tool_name": "Write",
         "tool_input": {"file_path": "/home/u/proj/a.txt", "content": "hi"},
         "tool_response": {"filePath": "/home/u/proj/a.txt", "success": True}, "tool_use_id": "toolu_01ABC"},
        Normalized("tool_result", tool="Write", input={"file_path": "/home/u/proj/a.txt", "content": "hi"}, is_error=False),
    ),
    (
        {"hook_event_name": "PostToolUse", "tool_name": "Bash", "tool_input": {"command": "ls"},
         "tool_response": {"stdout": "a.txt\n", "stderr": "", "interrupted": False, "isImage": False},
         "tool_use_id": "toolu_01ABD"},
        Normalized("tool_result", text="a.txt\n", tool="Bash", input={"command": "ls"}, is_error=False),
    ),
    (
        {"hook_event_name": "PostToolUse", "tool_name": "mcp__memory__read", "tool_input": {},
         "tool_response": [{"type": "text", "text": "one"}, {"type": "image"}, {"type": "text", "text": "two"}],
         "tool_use_id": "toolu_01ABE"},
        Normalized("tool_result", text="one\ntwo", tool="mcp__memory__read", input={}, is_error=False),
    ),
    (
        {"hook_event_name": "PostToolUseFailure", "tool_name": "Bash",
         "tool_input": {"command": "npm test", "description": "Run test suite"}, "tool_use_id": "toolu_01ABF",
         "error": "Command exited with non-zero status code 1", "is_interrupt": False},
        Normalized("tool_result", text="Command exited with non-zero status code 1", tool="Bash",
                   input={"command": "npm test", "description": "Run test suite"}, is_error=True),
    ),
    (
        {"hook_event_name": "Notification", "message": "Claude needs your permission to use Bash",
         "notification_type": "permission_prompt", "title": "Permission needed"},
        Normalized("permission_request", text="Claude needs your permission to use Bash"),
    ),
    (  # before notification_type existed (Claude Code 1.x): the message alone says what it is
        {"hook_event_name": "Notification", "message": "Claude needs your permission to use Bash"},
        Normalized("permission_request", text="Claude needs your permission to use Bash"),
    ),
    (
        {"hook_event_name": "Notification", "message": "Claude is waiting for your input"},
        Normalized("notification", text="Claude is waiting for your input"),
    ),
    (
        {"hook_event_name": "Notification", "message": "Authentication successful", "notification_type": "auth_success"},
        Normalized("notification", text="Authentication successful"),
    ),
    (  # an MCP server asks the person for input and the tool call waits for the answer
        {"hook_event_name": "Notification", "message": "github needs your input", "notification_type": "elicitation_dialog"},
        Normalized("permission_request", text="github needs your input"),
    ),
    (
        {"hook_event_name": "SubagentStart", "agent_id": "agent-abc123", "agent_type": "Explore"},
        Normalized("notification"),
    ),
    (
        {"hook_event_name": "SubagentStop", "stop_hook_active": False, "agent_id": "agent-abc123",
         "agent_type": "Explore", "agent_transcript_path": "/home/u/.claude/projects/p/abc123/subagents/agent-abc123.jsonl",
         "last_assistant_message": "Found 3 call sites."},
        Normalized("notification", text="Found 3 call sites."),
    ),
    (
        {"hook_event_name": "PreCompact", "trigger": "manual", "custom_instructions": "keep the test plan"},
        Normalized("notification", text="keep the test plan"),
    ),
    (
        {"hook_event_name": "PreCompact", "trigger": "auto", "custom_instructions": ""},
        Normalized("notification", text=""),
    ),
    (
        {"hook_event_name": "PostCompact", "trigger": "auto", "compact_summary": "We refactored the parser."},
        Normalized("notification", text="We refactored the parser."),
    ),
    (
        {"hook_event_name": "SessionEnd", "reason": "prompt_input_exit"},
        Normalized("session_ended", text="prompt_input_exit"),
    ),
    (
        {"hook_event_name": "SessionStart", "source": "startup", "model": "claude-sonnet-4-6"},
        Normalized("session_started"),
    ),
    (
        {"hook_event_name": "Stop", "stop_hook_active": True},
        Normalized("turn_completed", is_error=False),
    ),
    (
        {"hook_event_name": "StopFailure", "error": "rate_limit",
         "error_details": "429 Too Many Requests", "last_assistant_message": "API Error: Rate limit reached"},
        Normalized("error", text="429 Too Many Requests", is_error=True),
    ),
    (
        {"hook_event_name": "StopFailure", "error": "server_error"},
        Normalized("error", text="server_error", is_error=True),
    ),
]


@pytest.mark.parametrize(("payload", "expected"), DOCUMENTED, ids=[f"{i}-{p['hook_event_name']}" for i, (p, _) in enumerate(DOCUMENTED)])
def test_documented_payloads(payload: dict[str, Any], expected: Normalized) -> None:
    assert FMT.normalize({**COMMON, **payload}) == replace(expected, session_id=COMMON["session_id"], cwd=COMMON["cwd"])


def test_tool_response_text_from_an_mcp_result_object_and_a_string() -> None:
    def result(response: Any) -> str | None:
        return FMT.normalize({"hook_event_name": "PostToolUse", "session_id": "s", "tool_response": response}).text

    assert result("plain") == "plain"
    assert result({"content": [{"type": "text", "text": "mcp"}], "isError": False}) == "mcp"
    assert result({"stdout": "", "stderr": "warning: x"}) == "warning: x"
    assert result({"type": "text", "file": {"filePath": "/a", "content": "x"}}) is None


@pytest.mark.parametrize("event", ["TaskCompleted", "PermissionDenied", "ConfigChange", "", "stop"])
def test_unknown_events_are_raw(event: str) -> None:
    assert FMT.normalize({**COMMON, "hook_event_name": event}) == Normalized("raw")


EVENTS = [
    "SessionStart", "UserPromptSubmit", "PreToolUse", "PostToolUse", "PostToolUseFailure", "PermissionRequest",
    "Notification", "Stop", "StopFailure", "SubagentStart", "SubagentStop", "PreCompact", "PostCompact", "SessionEnd",
]
WRONG_TYPES = {
    "session_id": 5, "cwd": [], "source": {}, "prompt": ["x"], "tool_name": 3, "tool_input": "x",
    "tool_response": {"stdout": 5, "text": None, "content": [None, 1, {"type": "text", "text": 2}]}, "error": {},
    "message": 7, "notification_type": [], "last_assistant_message": 1, "reason": 2, "custom_instructions": [],
    "compact_summary": {}, "error_details": 3,
}


@pytest.mark.parametrize("data", [None, True, 3, 2.5, "SessionStart", [], [{"hook_event_name": "Stop"}], {},
                                  {"hook_event_name": 7, "session_id": "s"}, {"hook_event_name": None}])
def test_non_hook_values_are_raw(data: Any) -> None:
    event = FMT.normalize(data)
    assert event.kind == "raw" and not event.heartbeat


@pytest.mark.parametrize("event", EVENTS)
def test_wrong_field_types_and_missing_fields_never_raise(event: str) -> None:
    wrong = FMT.normalize({"hook_event_name": event, **WRONG_TYPES})
    assert wrong.kind in KINDS and wrong.kind != "raw"
    assert (wrong.session_id, wrong.cwd, wrong.tool, wrong.text) == (None, None, None, None)
    assert FMT.normalize({"hook_event_name": event}).kind == wrong.kind


def test_sniff_knows_every_hook_record_and_no_other_fixture_record() -> None:
    everything = every_fixture_record()
    hooks = {path.name for path in (FIXTURES / HOOKS).glob("*.json")}
    mine = [record for name, record in everything if name in hooks]
    others = [(name, record) for name, record in everything if name not in hooks]
    assert len(mine) == sum(len(kinds) for kinds in EXPECTED.values()) == 91
    assert len(others) > 300
    assert all(FMT.sniff(record) for record in mine)
    assert [name for name, record in others if FMT.sniff(record)] == []


@pytest.mark.parametrize("data", [None, 1, "x", [], {}, {"hook_event_name": "Stop"}, {"session_id": "s"},
                                  {"hook_event_name": 3, "session_id": "s"}, {"kind": "prompt", "session_id": "s"},
                                  {"type": "system", "subtype": "init", "session_id": "s"}])
def test_sniff_rejects_what_is_not_a_hook_payload(data: Any) -> None:
    assert FMT.sniff(data) is False


@pytest.mark.parametrize("name", sorted(EXPECTED))
async def test_recordings_are_stored_completely_with_their_kinds(state_dir, name: str) -> None:
    payloads = records(name)
    async with running_daemon(state_dir) as d:
        await stream_all(d, "claude-hook-1", "claude-hook", payloads)
        events = await stored(d, "claude-hook-1")
    assert [e["data"] for e in events] == payloads
    assert [e["kind"] for e in events] == EXPECTED[name]
    assert {e["format"] for e in events} == {"claude-hook"}


async def test_a_hook_session_drives_the_attention_feed(state_dir) -> None:
    """A permission prompt, the tool answered, the turn ends, then an injected task notification:
    that notification is not the person speaking, so the agent still awaits a reply."""
    session = {"session_id": "s1", "cwd": "/home/u/proj"}
    asking = [
        {**session, "hook_event_name": "SessionStart", "source": "startup"},
        {**session, "hook_event_name": "UserPromptSubmit", "prompt": "package the issues"},
        {**records(PRE_TOOL_USE)[28], **session},  # AskUserQuestion
        {**records(ASKED)[0], **session},  # "Claude needs your permission"
    ]
    answered = [
        {**session, "hook_event_name": "PostToolUse", "tool_name": "AskUserQuestion", "tool_response": "one PR each"},
        {**session, "hook_event_name": "Stop", "stop_hook_active": False, "last_assistant_message": "Plan written."},
        {**records(PROMPTS)[3], **session},  # <task-notification>
    ]
    async with running_daemon(state_dir) as d:
        async with agent(d, "hooked") as a, watcher(d) as w:
            await a.hello("claude-hook")
            await a.batch(range(1, 5), lambda seq: asking[seq - 1])
            await a.until_ack(4)
            blocked = (await w.call("attention.list"))["items"]
            await a.batch(range(5, 8), lambda seq: answered[seq - 5])
            await a.until_ack(7)
            replied = (await w.call("attention.list"))["items"]
    assert [(i["state"], i["cwd"]) for i in blocked] == [("needs_permission", "/home/u/proj")]
    assert [(i["state"], i["summary"]) for i in replied] == [("awaiting_reply", "Plan written.")]
