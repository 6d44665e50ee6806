"""The ``codex-rollout`` format against real Codex session files (tests/fixtures/MANIFEST.txt,
codex-rollout/: three schema generations) and against lines written from the shapes of the
records the recordings lack."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from agentwatch.model import KINDS, Normalized
from agentwatch.plugins.formats.codex_rollout import CodexRolloutFormat, agentwatch_register_formats
from agentwatch.session_facts import SessionFacts, apply
from helpers import FIXTURES, every_fixture_record, fixture_records, running_daemon, stored, stream_all, watcher

FMT = CodexRolloutFormat()
ROLLOUT = "codex-rollout"
# cli 0.77.0, `codex exec`: old schema, no task_started/task_complete, cut off mid-turn
OLD = "codemie-code__rollout-2026-01-02T18-39-45-019b7f94-51b4-7593-922e-ba12b5b73b52.jsonl"
# cli 0.104.0-alpha.1, Codex Desktop: one complete turn with 5 MCP calls, text redacted
TURN = "localpush__rollout-2026-02-23T20-34-25-019c8bfe-ec25-79e0-97d7-bda6a9c575ff.jsonl"
# cli 0.146.0: one line of each record family, harvested from many sessions (not a timeline)
FAMILIES = "agent-sessions__codex__small.jsonl"

# The lines of each file that are not `raw`, by index, written out by hand from the lines; every
# other line is `raw` (a copy of something read elsewhere, or bookkeeping).
NOT_RAW: dict[str, dict[int, str]] = {
    OLD: {
        0: "session_started",
        4: "prompt",  # event_msg user_message; lines 1-3 are the same input as response items (AGENTS.md, env, prompt)
        8: "thinking", 9: "tool_use", 11: "tool_result",
        14: "thinking", 15: "tool_use", 17: "tool_result",
        21: "thinking", 22: "tool_use", 24: "tool_result",  # line 20 agent_reasoning repeats line 21
    },
    TURN: {
        0: "session_started",
        9: "prompt",  # lines 3, 4 and 8 are the user response items: AGENTS.md, environment, prompt
        **{line: "thinking" for line in range(13, 59, 9)},  # reasoning; agent_reasoning one line before each
        **{line: "output" for line in range(15, 61, 9)},  # assistant message; agent_message one line before each
        **{line: "tool_use" for line in range(16, 53, 9)},  # function_call
        **{line: "tool_result" for line in range(18, 55, 9)},  # function_call_output
        62: "turn_completed",  # task_complete
    },
    FAMILIES: {
        0: "session_started", 3: "prompt", 6: "thinking",
        8: "tool_use", 9: "tool_use", 10: "tool_result", 11: "tool_use", 12: "tool_result",  # custom, function, tool search
        19: "turn_completed",  # turn_aborted
        20: "tool_result", 22: "output", 24: "turn_completed", 25: "compacted", 27: "tool_result",
        28: "session_started", 33: "turn_completed", 35: "session_started", 36: "session_started", 38: "thinking",
        41: "session_started", 42: "tool_use", 46: "compacted", 68: "compacted", 70: "prompt", 72: "error",
        80: "compacted", 82: "notification", 84: "prompt", 88: "compacted", 93: "session_started",
        95: "session_started", 100: "prompt",  # item_completed UserMessage
        102: "tool_use", 104: "tool_result", 110: "compacted", 113: "tool_use", 114: "tool_result",
    },
}
LINES = {OLD: 26, TURN: 63, FAMILIES: 118}
COUNTS = {
    OLD: {"session_started": 1, "prompt": 1, "thinking": 3, "tool_use": 3, "tool_result": 3, "raw": 15},
    TURN: {"session_started": 1, "prompt": 1, "thinking": 6, "output": 6, "tool_use": 5, "tool_result": 5,
           "turn_completed": 1, "raw": 38},
    FAMILIES: {"session_started": 7, "prompt": 4, "thinking": 2, "output": 1, "tool_use": 6, "tool_result": 6,
               "turn_completed": 3, "compacted": 6, "error": 1, "notification": 1, "raw": 81},
}


def expected(name: str) -> list[str]:
    return [NOT_RAW[name].get(line, "raw") for line in range(LINES[name])]


def records(name: str) -> list[Any]:
    return fixture_records(f"{ROLLOUT}/{name}")


def normalized(name: str) -> list[Normalized]:
    return [FMT.normalize(record) for record in records(name)]


def test_registers_itself_by_name() -> None:
    registered: list[Any] = []
    agentwatch_register_formats(registered.append)
    assert [fmt.name for fmt in registered] == ["codex-rollout"]


def test_expected_covers_every_fixture_file() -> None:
    assert sorted(NOT_RAW) == sorted(path.name for path in (FIXTURES / ROLLOUT).glob("*.jsonl"))


@pytest.mark.parametrize("name", sorted(NOT_RAW))
def test_every_line_has_its_expected_kind(name: str) -> None:
    events = normalized(name)
    assert len(events) == LINES[name]
    assert [e.kind for e in events] == expected(name)
    assert Counter(expected(name)) == COUNTS[name]
    assert all(not e.heartbeat for e in events)


def test_old_schema_fields() -> None:
    events = normalized(OLD)
    cwd = "/Users/Nikita_Levyankov/repos/EPMCDME/codemie-ai/codemie-code"
    assert (events[0].session_id, events[0].cwd) == ("019b7f94-51b4-7593-922e-ba12b5b73b52", cwd)
    assert events[4].text == "what is current repository about? summarize purpuse and explain goals"
    assert events[5] == Normalized("raw", cwd=cwd)  # turn_context
    assert events[7] == Normalized("raw")  # token_count without info
    assert events[10].usage == {"input_tokens": 7266, "cached_input_tokens": 0, "output_tokens": 115,
                                "reasoning_output_tokens": 64, "total_tokens": 7381}
    assert events[8].text is None  # encrypted reasoning, empty summary
    assert events[21].text is not None and events[21].text.startswith("**Clarifying documentation instructions**")
    assert [(e.tool, e.input["command"]) for e in events if e.kind == "tool_use"] == [
        ("shell", ["bash", "-lc", "ls"]),
        ("shell", ["bash", "-lc", "rg --files -g 'AGENTS.md'"]),
        ("shell", ["bash", "-lc", "sed -n '1,160p' README.md"]),
    ]
    assert events[9].input["workdir"] == cwd
    results = [e for e in events if e.kind == "tool_result"]
    assert [e.is_error for e in results] == [False, False, False]
    assert results[0].text is not None and results[0].text.startswith("_bmad\n_bmad-output\nassets\n")
    assert results[1].text == "docs/AGENTS.md\n"
    assert results[2].text is not None and results[2].text.startswith("# AI/Run CodeMie CLI\n")


def test_complete_turn_fields() -> None:
    events = normalized(TURN)
    assert (events[0].session_id, events[0].cwd) == ("019c8bfe-ec25-79e0-97d7-bda6a9c575ff", "/redacted/path/ea96e59ed9")
    assert events[9].text == "[REDACTED_MESSAGE len=98 sha=c002ff99]"
    assert events[13].text == "[REDACTED_TEXT len=32 sha=beedaecc]"
    assert events[15].text == "[REDACTED_TEXT len=156 sha=2a40230f]"
    assert events[60].text == "[REDACTED_TEXT len=647 sha=10502814]"  # phase final_answer
    assert [e.tool for e in events if e.kind == "tool_use"] == [
        "mcp__cloud-associates__search_workflows", "[REDACTED_NAME len=43 sha=c186413b]",
        "mcp__cloud-associates__execute_workflow", "mcp__cloud-associates__execute_workflow",
        "mcp__cloud-associates__execute_workflow",
    ]
    assert events[16].input == "[REDACTED_ARGUMENTS len=46 sha=4cb9a2fc]"  # not JSON: kept as written
    assert (events[18].text, events[18].is_error) == ("[REDACTED_OUTPUT len=4215 sha=9a9d94de]", False)
    assert events[61].usage is not None and events[61].usage["total_tokens"] == 299496
    done = events[62]
    assert (done.text, done.is_error) == ("[REDACTED_LAST_AGENT_MESSAGE len=647 sha=10502814]", False)


def test_newest_families_fields() -> None:
    events = normalized(FAMILIES)
    assert (events[0].session_id, events[0].cwd) == ("019fc8be-3658-7ca3-9e29-000000000000", "/tmp/repo")
    assert events[3].text == "List the files"
    assert events[6].text == "[trimmed for fixture]"
    assert (events[8].tool, events[8].input) == ("shell", '{"command":["ls"]}')  # a custom tool's input is free text
    assert (events[9].tool, events[9].input) == ("shell", {"command": ["ls"]})
    assert (events[10].text, events[10].is_error) == ("a.txt\n", False)
    assert (events[11].tool, events[11].input) == ("tool_search", {"query": "example"})
    assert events[19] == Normalized("turn_completed", is_error=False)  # interrupted
    assert events[20].text == "a.txt\nb.txt\n"
    assert events[21].usage is not None and events[21].usage["total_tokens"] == 16422
    assert events[22].text == "Found 2 files."
    assert events[24] == Normalized("turn_completed", text="Found 2 files.", is_error=False)
    assert events[33] == Normalized("turn_completed", text="[trimmed for fixture]", is_error=True)  # error, no message
    assert events[72] == Normalized("error", text="[trimmed for fixture]", is_error=True)
    assert events[82].text == "[trimmed for fixture]"  # undo_completed
    assert events[113] == Normalized("tool_use", tool="[trimmed for fixture]")  # arguments null


# Lines the recordings lack, written from codex-rs/protocol/src/protocol.rs (EventMsg: UserMessageEvent
# with InputMessageKind in older versions, Warning, StreamError, TurnComplete's `turn_complete` alias) and
# codex-rs/protocol/src/models.rs (ResponseItem::LocalShellCall, FunctionCallOutput).
def line(line_type: str, payload: dict[str, Any]) -> dict[str, Any]:
    return {"timestamp": "2025-09-10T08:00:00.000Z", "type": line_type, "payload": payload}


DOCUMENTED: list[tuple[dict[str, Any], Normalized]] = [
    (
        line("event_msg", {"type": "user_message", "kind": "environment_context",
                           "message": "<environment_context>\n  <cwd>/home/u/proj</cwd>\n</environment_context>"}),
        Normalized("raw"),
    ),
    (
        line("event_msg", {"type": "user_message", "kind": "user_instructions",
                           "message": "<user_instructions>\nUse uv.\n</user_instructions>"}),
        Normalized("raw"),
    ),
    (  # the same context without `kind`
        line("event_msg", {"type": "user_message", "message": "  <user_instructions>\nUse uv.\n</user_instructions>"}),
        Normalized("raw"),
    ),
    (
        line("event_msg", {"type": "user_message", "kind": "plain", "message": "fix the tests", "images": []}),
        Normalized("prompt", text="fix the tests"),
    ),
    (
        line("event_msg", {"type": "turn_complete", "turn_id": "t1", "last_agent_message": "Done."}),
        Normalized("turn_completed", text="Done.", is_error=False),
    ),
    (
        line("event_msg", {"type": "task_complete", "last_agent_message": None, "error": {"message": "usage limit reached"}}),
        Normalized("turn_completed", text="usage limit reached", is_error=True),
    ),
    (
        line("event_msg", {"type": "warning", "message": "Heads up: Long conversations and multiple compactions can "
                                                         "cause the model to be less accurate."}),
        Normalized("notification", text="Heads up: Long conversations and multiple compactions can cause the model to "
                                        "be less accurate."),
    ),
    (
        line("event_msg", {"type": "stream_error", "message": "Reconnecting... 1/5",
                           "codex_error_info": {"response_stream_disconnected": {"http_status_code": 503}}}),
        Normalized("notification", text="Reconnecting... 1/5"),
    ),
    (
        line("response_item", {"type": "local_shell_call", "id": "lsh_1", "call_id": "call_9", "status": "completed",
                                "action": {"type": "exec", "command": ["ls", "-la"], "timeout_ms": None,
                                           "working_directory": None, "env": None, "user": None}}),
        Normalized("tool_use", tool="local_shell", input={"type": "exec", "command": ["ls", "-la"], "timeout_ms": None,
                                                          "working_directory": None, "env": None, "user": None}),
    ),
    (  # the old `shell` tool's output: JSON with the exit code
        line("response_item", {"type": "function_call_output", "call_id": "call_9",
                                "output": '{"output":"ls: cannot access \'x\'\\n","metadata":{"exit_code":2,'
                                          '"duration_seconds":0.0}}'}),
        Normalized("tool_result", text="ls: cannot access 'x'\n", is_error=True),
    ),
    (
        line("response_item", {"type": "function_call_output", "call_id": "call_10",
                                "output": {"content": "write failed: read-only file system", "success": False}}),
        Normalized("tool_result", text="write failed: read-only file system", is_error=True),
    ),
    (
        line("response_item", {"type": "function_call_output", "call_id": "call_11", "output": "[1, 2]"}),
        Normalized("tool_result", text="[1, 2]", is_error=False),
    ),
    (
        line("response_item", {"type": "message", "role": "assistant",
                                "content": [{"type": "output_text", "text": "One."}, {"type": "output_text", "text": "Two."}]}),
        Normalized("output", text="One.\nTwo."),
    ),
    (
        line("response_item", {"type": "reasoning", "summary": [],
                                "content": [{"type": "reasoning_text", "text": "Check the lockfile."}]}),
        Normalized("thinking", text="Check the lockfile."),
    ),
    (
        line("event_msg", {"type": "item_completed", "thread_id": "t", "turn_id": "u",
                           "item": {"type": "UserMessage", "id": "i", "content": [{"type": "text", "text": "go"},
                                                                                   {"type": "image", "url": "x"}]}}),
        Normalized("prompt", text="go"),
    ),
    (line("session_meta", {"session_id": "s-2", "cwd": "/w"}), Normalized("session_started", session_id="s-2", cwd="/w")),
    (line("compacted", {"message": "Summary of the work so far."}), Normalized("compacted")),
]


@pytest.mark.parametrize(("record", "normal"), DOCUMENTED,
                         ids=[f"{i}-{r['payload'].get('type', r['type'])}" for i, (r, _) in enumerate(DOCUMENTED)])
def test_documented_lines(record: dict[str, Any], normal: Normalized) -> None:
    assert FMT.normalize(record) == normal


@pytest.mark.parametrize("name", [OLD, TURN])
def test_every_tool_use_is_closed_by_the_output_of_its_call(name: str) -> None:
    open_calls: list[str] = []
    for record in records(name):
        kind = FMT.normalize(record).kind
        if kind == "tool_use":
            open_calls.append(record["payload"]["call_id"])
        elif kind == "tool_result":
            open_calls.remove(record["payload"]["call_id"])
    assert open_calls == []


@pytest.mark.parametrize(("name", "turn_open"), [(OLD, True), (TURN, False)])
def test_session_state_after_each_recording(name: str, turn_open: bool) -> None:
    """The complete turn ends awaiting the person; the rollout cut off mid-turn is still working."""
    facts = SessionFacts()
    for at, event in enumerate(normalized(name)):
        apply(facts, event.kind, event, at)
    assert (facts.tools_open, facts.turn_open, facts.failed_at) == (0, turn_open, None)
    assert facts.last_speaker == ("agent" if name == TURN else "person")


@pytest.mark.parametrize("data", [None, True, 3, "event_msg", [], [{"type": "event_msg"}], {}, {"type": "event_msg"},
                                  {"type": "event_msg", "payload": "x"}, {"type": 3, "payload": {}},
                                  {"type": ["event_msg"], "payload": {}}, {"type": "future_item", "payload": {}},
                                  {"type": "event_msg", "payload": {"type": ["error"]}},
                                  {"type": "response_item", "payload": {"type": {}}},
                                  {"type": "event_msg", "payload": {"type": "session_configured"}},
                                  {"type": "response_item", "payload": {"type": "message", "role": "user"}}])
def test_unrecognised_values_are_raw(data: Any) -> None:
    assert FMT.normalize(data) == Normalized("raw")


WRONG = {"id": 5, "session_id": [], "cwd": {}, "role": "assistant", "content": "x", "summary": 3, "name": 1,
         "arguments": '{"a": [', "input": None, "action": 7, "output": 9, "message": ["hi"], "kind": ["plain"],
         "item": {"type": "UserMessage", "content": {"text": 1}}, "last_agent_message": 4, "error": None,
         "info": {"total_token_usage": 5}, "status": {}}
SHAPES = [("session_meta", None), ("turn_context", None), ("compacted", None)] + [
    ("response_item", t) for t in ("message", "reasoning", "function_call", "custom_tool_call", "local_shell_call",
                                   "tool_search_call", "function_call_output", "custom_tool_call_output",
                                   "tool_search_output")
] + [
    ("event_msg", t) for t in ("user_message", "item_completed", "task_complete", "turn_complete", "turn_aborted",
                               "error", "warning", "stream_error", "undo_completed", "token_count")
]


@pytest.mark.parametrize(("line_type", "payload_type"), SHAPES)
def test_wrong_field_types_and_missing_fields_never_raise(line_type: str, payload_type: str | None) -> None:
    for payload in ({**WRONG, "type": payload_type}, {"type": payload_type}):
        result = FMT.normalize({"type": line_type, "payload": payload})
        assert result.kind in KINDS
        assert all(value is None or isinstance(value, str) for value in (result.text, result.session_id, result.cwd))
        assert result.usage is None


def test_sniff_knows_every_rollout_line_and_no_other_fixture_record() -> None:
    everything = every_fixture_record()
    mine = {path.name for path in (FIXTURES / ROLLOUT).glob("*.jsonl")}
    assert sum(1 for name, _ in everything if name in mine) == sum(LINES.values())
    assert all(FMT.sniff(record) for name, record in everything if name in mine)
    assert all(FMT.sniff(record) for record, _ in DOCUMENTED)
    others = [(name, record) for name, record in everything if name not in mine]
    assert len(others) > 300
    assert [name for name, record in others if FMT.sniff(record)] == []


@pytest.mark.parametrize("data", [None, "x", [], {}, {"type": "event_msg"}, {"type": "event_msg", "payload": []},
                                  {"type": ["event_msg"], "payload": {}}, {"type": "turn.started"},
                                  {"type": "user", "payload": {}}, {"kind": "prompt", "payload": {}}])
def test_sniff_rejects_what_is_not_a_rollout_line(data: Any) -> None:
    assert FMT.sniff(data) is False


@pytest.mark.parametrize("name", sorted(NOT_RAW))
async def test_recordings_are_stored_completely_with_their_kinds(state_dir, name: str) -> None:
    lines = records(name)
    async with running_daemon(state_dir) as d:
        await stream_all(d, "codex-1", "codex-rollout", lines)
        events = await stored(d, "codex-1")
    assert [e["data"] for e in events] == lines
    assert [e["kind"] for e in events] == expected(name)
    assert {e["format"] for e in events} == {"codex-rollout"}


async def test_a_finished_rollout_awaits_the_person_and_one_cut_off_mid_turn_does_not(state_dir) -> None:
    async with running_daemon(state_dir) as d:
        await stream_all(d, "desktop", "codex-rollout", records(TURN))
        await stream_all(d, "exec", "codex-rollout", records(OLD))
        async with watcher(d) as w:
            items = (await w.call("attention.list"))["items"]
    assert [(i["agent_id"], i["state"], i["cwd"], i["summary"]) for i in items] == [
        ("desktop", "awaiting_reply", "/redacted/path/ea96e59ed9", "[REDACTED_LAST_AGENT_MESSAGE len=647 sha=10502814]")
    ]
