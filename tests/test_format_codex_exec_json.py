"""The ``codex-exec-json`` format against real ``codex exec --json`` recordings
(tests/fixtures/MANIFEST.txt, codex-exec-json/) and against events written from the shapes of
the events and items the recordings lack."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from agentwatch.model import KINDS, Normalized
from agentwatch.plugins.formats.codex_exec_json import CodexExecJsonFormat, agentwatch_register_formats
from agentwatch.session_facts import SessionFacts, apply
from helpers import FIXTURES, agent, every_fixture_record, fixture_records, running_daemon, stored, stream_all, watcher

FMT = CodexExecJsonFormat()
EXEC = "codex-exec-json"
TOOL_RUN = "agentcmd__stream-output-2.jsonl"  # reasoning, a command, a message
FILE_CHANGE = "agentcmd__stream-output-3.jsonl"  # reasoning, a file change (completed only), a message

# The kind of every record of every file, in order, written out by hand from the records.
EXPECTED: dict[str, list[str]] = {
    TOOL_RUN: ["session_started", "prompt", "thinking", "tool_use", "tool_result", "output", "turn_completed"],
    FILE_CHANGE: ["session_started", "prompt", "thinking", "tool_result", "output", "turn_completed"],
}

# Two `codex exec --json` runs with the events and items the recordings lack, written from
# codex-rs/exec/src/exec_events.rs (ThreadEvent, ThreadItemDetails and their fields) and the order
# codex-rs/exec/src/event_processor_with_jsonl_output.rs emits them in: a todo list started at the
# first plan update, updated, and completed when the turn ends; an item.updated for command output;
# a warning as an `error` item; a file change started and completed (newer versions).
WORKING_RUN: list[tuple[dict[str, Any], str]] = [
    ({"type": "thread.started", "thread_id": "0199a213-81c0-7800-8aa1-bbab2a035a53"}, "session_started"),
    ({"type": "turn.started"}, "prompt"),
    ({"type": "item.started", "item": {"id": "item_0", "type": "todo_list", "items": [
        {"text": "Run the tests", "completed": False}, {"text": "Fix the parser", "completed": False}]}}, "notification"),
    ({"type": "item.started", "item": {"id": "item_1", "type": "command_execution", "command": "bash -lc 'pytest -q'",
                                       "aggregated_output": "", "exit_code": None, "status": "in_progress"}}, "tool_use"),
    ({"type": "item.updated", "item": {"id": "item_1", "type": "command_execution", "command": "bash -lc 'pytest -q'",
                                       "aggregated_output": "F.\n", "exit_code": None, "status": "in_progress"}}, "raw"),
    ({"type": "item.completed", "item": {"id": "item_1", "type": "command_execution", "command": "bash -lc 'pytest -q'",
                                         "aggregated_output": "F.\n1 failed, 1 passed\n", "exit_code": 1,
                                         "status": "failed"}}, "tool_result"),
    ({"type": "item.updated", "item": {"id": "item_0", "type": "todo_list", "items": [
        {"text": "Run the tests", "completed": True}, {"text": "Fix the parser", "completed": False}]}}, "notification"),
    ({"type": "item.started", "item": {"id": "item_2", "type": "mcp_tool_call", "server": "docs", "tool": "search",
                                       "arguments": {"q": "tokenize"}, "result": None, "error": None,
                                       "status": "in_progress"}}, "tool_use"),
    ({"type": "item.completed", "item": {"id": "item_2", "type": "mcp_tool_call", "server": "docs", "tool": "search",
                                         "arguments": {"q": "tokenize"}, "result": None,
                                         "error": {"message": "tool call failed: server docs is not running"},
                                         "status": "failed"}}, "tool_result"),
    ({"type": "item.started", "item": {"id": "item_3", "type": "web_search", "query": "python tokenize module"}}, "tool_use"),
    ({"type": "item.completed", "item": {"id": "item_3", "type": "web_search", "query": "python tokenize module"}},
     "tool_result"),
    ({"type": "item.completed", "item": {"id": "item_4", "type": "error",
                                         "message": "model rerouted: gpt-5.1-codex -> gpt-5.1-codex-mini (HighLoad)"}},
     "notification"),
    ({"type": "item.started", "item": {"id": "item_5", "type": "file_change", "status": "in_progress",
                                       "changes": [{"path": "/home/u/proj/src/parser.py", "kind": "update"}]}}, "tool_use"),
    ({"type": "item.updated", "item": {"id": "item_5", "type": "file_change", "status": "in_progress",
                                       "changes": [{"path": "/home/u/proj/src/parser.py", "kind": "update"}]}}, "raw"),
    ({"type": "item.completed", "item": {"id": "item_5", "type": "file_change", "status": "completed",
                                         "changes": [{"path": "/home/u/proj/src/parser.py", "kind": "update"}]}},
     "tool_result"),
    ({"type": "item.completed", "item": {"id": "item_6", "type": "agent_message",
                                         "text": "Fixed the tokenizer call in the parser; both tests pass."}}, "output"),
    ({"type": "item.completed", "item": {"id": "item_0", "type": "todo_list", "items": [
        {"text": "Run the tests", "completed": True}, {"text": "Fix the parser", "completed": True}]}}, "notification"),
    ({"type": "turn.completed", "usage": {"input_tokens": 24763, "cached_input_tokens": 24448, "output_tokens": 122}},
     "turn_completed"),
]
# A run that fails: a fatal stream error, then the turn fails with it.
FAILED_RUN: list[tuple[dict[str, Any], str]] = [
    ({"type": "thread.started", "thread_id": "0199a213-81c0-7800-8aa1-bbab2a035a54"}, "session_started"),
    ({"type": "turn.started"}, "prompt"),
    ({"type": "error", "message": "stream disconnected before completion: error sending request"}, "error"),
    ({"type": "turn.failed", "error": {"message": "exceeded retry limit, last status: 401 Unauthorized"}}, "error"),
]


def records(name: str) -> list[Any]:
    return fixture_records(f"{EXEC}/{name}")


def normalized(name: str) -> list[Normalized]:
    return [FMT.normalize(record) for record in records(name)]


def test_registers_itself_by_name() -> None:
    registered: list[Any] = []
    agentwatch_register_formats(registered.append)
    assert [fmt.name for fmt in registered] == ["codex-exec-json"]


def test_expected_covers_every_fixture_file() -> None:
    assert sorted(EXPECTED) == sorted(path.name for path in (FIXTURES / EXEC).glob("*.jsonl"))


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_record_has_its_expected_kind(name: str) -> None:
    events = normalized(name)
    assert [e.kind for e in events] == EXPECTED[name]
    assert all(not e.heartbeat for e in events)


def test_all_kinds_together() -> None:
    assert Counter(kind for kinds in EXPECTED.values() for kind in kinds) == {
        "session_started": 2, "prompt": 2, "thinking": 2, "tool_use": 1, "tool_result": 2, "output": 2,
        "turn_completed": 2,
    }


def test_tool_run_fields() -> None:
    started, prompt, thinking, tool_use, tool_result, output, done = normalized(TOOL_RUN)
    assert started.session_id == "019a2d7a-6455-7170-a661-c6d8b94c630a"
    assert prompt == Normalized("prompt")
    assert thinking.text == "**Preparing to list files with bash shell**"
    assert (tool_use.tool, tool_use.input, tool_use.text, tool_use.is_error) == (
        "command_execution", {"command": "bash -lc ls"}, None, None
    )
    assert (tool_result.tool, tool_result.input, tool_result.is_error) == ("command_execution", {"command": "bash -lc ls"}, False)
    assert tool_result.text == "stream-output-1.jsonl\nstream-output-2.jsonl\ntest.js\n"
    assert output.text == "Files here: `stream-output-1.jsonl`, `stream-output-2.jsonl`, `test.js`."
    assert (done.usage, done.is_error, done.text) == (
        {"input_tokens": 6040, "cached_input_tokens": 4992, "output_tokens": 129}, False, None
    )


def test_file_change_is_only_a_result() -> None:
    events = normalized(FILE_CHANGE)
    assert events[0].session_id == "019a2d7a-8e1c-7111-b1a6-8cec551a55a0"
    change = events[3]
    assert (change.kind, change.tool, change.text, change.is_error) == (
        "tool_result", "file_change", "add /private/tmp/codex-research-test/hello.txt", False
    )
    assert change.input == {"changes": [{"path": "/private/tmp/codex-research-test/hello.txt", "kind": "add"}]}
    assert events[4].text == "Created `hello.txt` containing `Hello from Codex`."
    assert events[5].usage == {"input_tokens": 6008, "cached_input_tokens": 4096, "output_tokens": 51}


@pytest.mark.parametrize("run", [WORKING_RUN, FAILED_RUN], ids=["working", "failed"])
def test_written_runs_kinds(run: list[tuple[dict[str, Any], str]]) -> None:
    assert [FMT.normalize(record).kind for record, _ in run] == [kind for _, kind in run]


def test_written_run_fields() -> None:
    events = [FMT.normalize(record) for record, _ in WORKING_RUN]
    assert events[2].text == "[ ] Run the tests\n[ ] Fix the parser"
    assert events[6].text == "[x] Run the tests\n[ ] Fix the parser"
    assert events[3] == Normalized("tool_use", tool="command_execution", input={"command": "bash -lc 'pytest -q'"})
    assert (events[5].text, events[5].is_error) == ("F.\n1 failed, 1 passed\n", True)
    assert events[7] == Normalized("tool_use", tool="mcp__docs__search", input={"q": "tokenize"})
    assert (events[8].tool, events[8].text, events[8].is_error) == (
        "mcp__docs__search", "tool call failed: server docs is not running", True
    )
    assert events[9] == Normalized("tool_use", tool="web_search", input={"query": "python tokenize module"})
    assert (events[10].text, events[10].is_error) == ("python tokenize module", False)
    assert (events[11].text, events[11].is_error) == ("model rerouted: gpt-5.1-codex -> gpt-5.1-codex-mini (HighLoad)", True)
    assert events[12] == Normalized(
        "tool_use", tool="file_change", input={"changes": [{"path": "/home/u/proj/src/parser.py", "kind": "update"}]}
    )
    assert (events[14].text, events[14].is_error) == ("update /home/u/proj/src/parser.py", False)
    assert events[15].text == "Fixed the tokenizer call in the parser; both tests pass."
    assert events[17].usage == {"input_tokens": 24763, "cached_input_tokens": 24448, "output_tokens": 122}
    failed = [FMT.normalize(record) for record, _ in FAILED_RUN]
    assert failed[2] == Normalized("error", text="stream disconnected before completion: error sending request", is_error=True)
    assert failed[3] == Normalized("error", text="exceeded retry limit, last status: 401 Unauthorized", is_error=True)


# Single events from exec_events.rs not in the runs above (newer Codex: collab tools, plan mode,
# request_user_input; declined commands; MCP results).
DOCUMENTED: list[tuple[dict[str, Any], Normalized]] = [
    (
        {"type": "item.completed", "item": {"id": "item_7", "type": "command_execution", "command": "rm -rf build",
                                            "aggregated_output": "", "exit_code": None, "status": "declined"}},
        Normalized("tool_result", tool="command_execution", input={"command": "rm -rf build"}, text="", is_error=True),
    ),
    (
        {"type": "item.completed", "item": {"id": "item_8", "type": "mcp_tool_call", "server": "github",
                                            "tool": "get_issue", "arguments": {"number": 7}, "error": None,
                                            "result": {"content": [{"type": "text", "text": "Issue #7: crash"}],
                                                       "structured_content": None},
                                            "status": "completed"}},
        Normalized("tool_result", tool="mcp__github__get_issue", input={"number": 7}, text="Issue #7: crash", is_error=False),
    ),
    (
        {"type": "item.completed", "item": {"id": "item_9", "type": "file_change", "status": "failed",
                                            "changes": [{"path": "/home/u/proj/a.py", "kind": "delete"}]}},
        Normalized("tool_result", tool="file_change", input={"changes": [{"path": "/home/u/proj/a.py", "kind": "delete"}]},
                   text="delete /home/u/proj/a.py", is_error=True),
    ),
    (
        {"type": "item.started", "item": {"id": "item_10", "type": "collab_tool_call", "tool": "spawn_agent",
                                          "sender_thread_id": "t1", "receiver_thread_ids": [], "prompt": "Review a.py",
                                          "agents_states": {}, "status": "in_progress"}},
        Normalized("tool_use", tool="spawn_agent", input={"prompt": "Review a.py", "receiver_thread_ids": []}),
    ),
    (
        {"type": "item.completed", "item": {"id": "item_10", "type": "collab_tool_call", "tool": "spawn_agent",
                                            "sender_thread_id": "t1", "receiver_thread_ids": ["t2"],
                                            "prompt": "Review a.py",
                                            "agents_states": {"t2": {"status": "completed", "message": "Looks fine."}},
                                            "status": "completed"}},
        Normalized("tool_result", tool="spawn_agent", input={"prompt": "Review a.py", "receiver_thread_ids": ["t2"]},
                   text="Looks fine.", is_error=False),
    ),
    (
        {"type": "item.completed", "item": {"id": "item_11", "type": "plan", "text": "1. Split the parser."}},
        Normalized("notification", text="1. Split the parser."),
    ),
    ({"type": "item.plan.delta", "item_id": "item_11", "delta": "1. Split"}, Normalized("raw")),
    (  # agent messages and reasoning are only ever completed; a start would be repeated by the completion
        {"type": "item.started", "item": {"id": "item_12", "type": "agent_message", "text": "Working on it."}},
        Normalized("raw"),
    ),
    (
        {"type": "request_user_input", "id": "turn-1", "call_id": "call_1",
         "questions": [{"id": "q1", "header": "Scope", "question": "Fix only the parser?", "options": None}]},
        Normalized("permission_request", tool="request_user_input", text="Fix only the parser?",
                   input=[{"id": "q1", "header": "Scope", "question": "Fix only the parser?", "options": None}]),
    ),
    ({"type": "turn.completed", "usage": {}}, Normalized("turn_completed", usage={}, is_error=False)),
    ({"type": "thread.started", "thread_id": "t9", "timestamp": "2026-01-02T03:04:05Z"},
     Normalized("session_started", session_id="t9")),
]


@pytest.mark.parametrize(("record", "expected"), DOCUMENTED, ids=[f"{i}-{r['type']}" for i, (r, _) in enumerate(DOCUMENTED)])
def test_documented_events(record: dict[str, Any], expected: Normalized) -> None:
    assert FMT.normalize(record) == expected


def _open_calls(stream: list[Any]) -> list[str]:
    """Ids of the items whose tool_use no later tool_result of the same item closes."""
    open_ids: list[str] = []
    for record in stream:
        kind = FMT.normalize(record).kind
        if kind == "tool_use":
            open_ids.append(record["item"]["id"])
        elif kind == "tool_result" and record["item"]["id"] in open_ids:
            open_ids.remove(record["item"]["id"])
    return open_ids


@pytest.mark.parametrize("stream", [records(TOOL_RUN), records(FILE_CHANGE), [r for r, _ in WORKING_RUN]],
                         ids=["tool-run", "file-change", "working-run"])
def test_every_tool_use_is_closed_and_the_turn_ends(stream: list[Any]) -> None:
    assert _open_calls(stream) == []
    facts = SessionFacts()
    for at, record in enumerate(stream):
        apply(facts, FMT.normalize(record).kind, FMT.normalize(record), at)
    assert (facts.tools_open, facts.turn_open, facts.last_speaker, facts.failed_at) == (0, False, "agent", None)


@pytest.mark.parametrize("data", [None, True, 3, 2.5, "turn.started", [], [{"type": "turn.started"}], {}, {"type": 7},
                                  {"type": ["item.started"]}, {"type": "keep_alive"}, {"type": "thread.resumed"},
                                  {"type": "item.started"}, {"type": "item.completed", "item": "x"},
                                  {"type": "item.completed", "item": {"type": 5}},
                                  {"type": "item.completed", "item": {"type": "image_view"}}])
def test_unrecognised_values_are_raw(data: Any) -> None:
    assert FMT.normalize(data) == Normalized("raw")


ITEM_TYPES = ["agent_message", "reasoning", "command_execution", "mcp_tool_call", "web_search", "file_change",
              "collab_tool_call", "todo_list", "plan", "error"]
WRONG_ITEM = {"id": 1, "text": 5, "command": [], "aggregated_output": {}, "exit_code": "1", "status": ["failed"],
              "server": 3, "tool": {}, "error": "boom", "result": [1], "query": 2, "changes": {"a": 1},
              "items": [None, {"text": 3}, "x"], "message": [], "agents_states": [1], "prompt": 9}


@pytest.mark.parametrize("event", ["item.started", "item.updated", "item.completed"])
@pytest.mark.parametrize("item_type", ITEM_TYPES)
def test_wrong_field_types_and_missing_fields_never_raise(event: str, item_type: str) -> None:
    for item in ({**WRONG_ITEM, "type": item_type}, {"type": item_type}):
        result = FMT.normalize({"type": event, "item": item})
        assert result.kind in KINDS
        assert result.text is None or isinstance(result.text, str)
        assert result.tool is None or isinstance(result.tool, str)


@pytest.mark.parametrize("record", [
    {"type": "thread.started", "thread_id": 5}, {"type": "turn.completed", "usage": [1]}, {"type": "turn.failed"},
    {"type": "turn.failed", "error": "x"}, {"type": "error", "message": {}}, {"type": "request_user_input", "questions": 3},
    {"type": "request_user_input", "questions": [None, {"question": 1}]},
])
def test_wrong_top_level_fields_never_raise(record: dict[str, Any]) -> None:
    result = FMT.normalize(record)
    assert result.kind != "raw"
    assert (result.text, result.session_id, result.usage) == (None, None, None)


def test_sniff_knows_every_exec_record_and_no_other_fixture_record() -> None:
    everything = every_fixture_record()
    mine = {path.name for path in (FIXTURES / EXEC).glob("*.jsonl")}
    assert all(FMT.sniff(record) for name, record in everything if name in mine)
    assert all(FMT.sniff(record) for record, _ in WORKING_RUN + FAILED_RUN if record["type"] != "error")
    others = [(name, record) for name, record in everything if name not in mine]
    assert len(others) > 300
    assert [name for name, record in others if FMT.sniff(record)] == []


@pytest.mark.parametrize("data", [None, "turn.started", [], {}, {"type": ["turn.started"]}, {"type": {}},
                                  {"type": "error", "message": "x"}, {"type": "turn_started"},
                                  {"type": "event_msg", "payload": {"type": "task_started"}},
                                  {"type": "result", "subtype": "success"}])
def test_sniff_rejects_what_is_not_an_exec_event(data: Any) -> None:
    assert FMT.sniff(data) is False


@pytest.mark.parametrize("name", sorted(EXPECTED))
async def test_recordings_are_stored_completely_with_their_kinds(state_dir, name: str) -> None:
    stream = records(name)
    async with running_daemon(state_dir) as d:
        await stream_all(d, "codex-1", "codex-exec-json", stream)
        events = await stored(d, "codex-1")
    assert [e["data"] for e in events] == stream
    assert [e["kind"] for e in events] == EXPECTED[name]
    assert {e["format"] for e in events} == {"codex-exec-json"}


async def test_runs_drive_the_attention_feed(state_dir) -> None:
    """A finished run awaits the person's reply with the agent's last words; a failed one is an error."""
    async with running_daemon(state_dir) as d:
        await stream_all(d, "done", "codex-exec-json", [r for r, _ in WORKING_RUN])
        await stream_all(d, "failed", "codex-exec-json", [r for r, _ in FAILED_RUN])
        async with agent(d, "working") as a:
            await a.hello("codex-exec-json")
            await a.batch(range(1, 5), lambda seq: WORKING_RUN[seq - 1][0])
            await a.until_ack(4)
            async with watcher(d) as w:
                items = (await w.call("attention.list"))["items"]
        kinds = [e["kind"] for e in await stored(d, "failed")]
    assert kinds == [kind for _, kind in FAILED_RUN]
    assert sorted((i["agent_id"], i["state"], i["summary"]) for i in items) == [
        ("done", "awaiting_reply", "Fixed the tokenizer call in the parser; both tests pass."),
        ("failed", "error", "exceeded retry limit, last status: 401 Unauthorized"),
    ]
