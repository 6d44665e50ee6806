"""The ``claude-stream-json`` format against real recordings (tests/fixtures/MANIFEST.txt), and
against records built from the Claude Agent SDK's sources for what the recordings lack."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from agentwatch import session_facts
from agentwatch.model import KINDS, Normalized
from agentwatch.plugins.formats.claude_stream_json import ClaudeStreamJsonFormat, agentwatch_register_formats
from agentwatch.session_facts import SessionFacts, is_working
from helpers import every_fixture_record, running_daemon, stored, stream_all

FIXTURES = Path(__file__).parent / "fixtures" / "claude-stream-json"
BASIC = "claude-agent-sdk-gleam__basic_query.ndjson"  # current schema (Claude Code 2.1.7)
BASH = "terragon-oss__claude-json-bash-test.DERIVED.ndjson"  # old schema (mid-2025)

FMT = ClaudeStreamJsonFormat()


def records(name: str) -> list[Any]:
    return [json.loads(line) for line in (FIXTURES / name).read_text().splitlines() if line.strip()]


def normalized(name: str) -> list[Normalized]:
    return [FMT.normalize(record) for record in records(name)]


def test_registers_itself_by_name() -> None:
    registered: list[Any] = []
    agentwatch_register_formats(registered.append)
    assert [fmt.name for fmt in registered] == ["claude-stream-json"]


def test_basic_query_kinds_session_and_cost() -> None:
    events = normalized(BASIC)
    assert [e.kind for e in events] == ["session_started", "output", "turn_completed"]
    started, output, done = events
    assert started.session_id == "1d1e46f9-35c7-4834-b529-846d5bb82288"
    assert started.cwd == "/home/cyou/claude-agent-sdk-gleam"
    assert output.text == "4"
    assert output.usage is not None and output.usage["output_tokens"] == 5
    assert done.is_error is False
    assert done.cost_usd == 0.1354875
    assert done.text == "4"
    assert done.usage is not None and done.usage["output_tokens"] == 25


def test_bash_run_kinds() -> None:
    expected = (
        ["session_started", "output"]
        + ["tool_use"] * 10
        + ["tool_result"] * 10
        + ["output", "turn_completed"]
    )
    assert [e.kind for e in normalized(BASH)] == expected
    assert all(e.kind in KINDS and not e.heartbeat for e in normalized(BASH))


def test_old_schema_cost_is_read() -> None:
    last = records(BASH)[-1]
    assert "total_cost_usd" not in last
    done = normalized(BASH)[-1]
    assert done.kind == "turn_completed"
    assert done.cost_usd == last["cost_usd"] == 0.5068632500000002
    assert done.session_id == "9c3fc96f-5c01-4799-918f-0634283e1ada"
    assert done.text is not None and done.text.startswith("The Bash tool works as expected")


def test_old_schema_total_cost_alone_is_read() -> None:
    result = {"type": "result", "subtype": "success", "is_error": False, "total_cost": 0.25}
    assert FMT.normalize(result).cost_usd == 0.25


def test_tool_use_records_carry_bash_and_command() -> None:
    tool_uses = [e for e in normalized(BASH) if e.kind == "tool_use"]
    assert len(tool_uses) == 10
    for event in tool_uses:
        assert event.tool == "Bash"
        assert isinstance(event.input, dict) and isinstance(event.input["command"], str)
        assert event.session_id == "9c3fc96f-5c01-4799-918f-0634283e1ada"
    assert tool_uses[2].input["command"] == "cat /nonexistent/file.txt"


def test_tool_result_is_error_matches_fixture_blocks() -> None:
    blocks = [
        block
        for record in records(BASH)
        if record["type"] == "user"
        for block in record["message"]["content"]
        if block["type"] == "tool_result"
    ]
    expected = [block.get("is_error", False) for block in blocks]
    assert expected.count(True) == 4 and expected.count(False) == 6
    results = [e for e in normalized(BASH) if e.kind == "tool_result"]
    assert [e.is_error for e in results] == expected
    assert [e.text for e in results] == [block["content"] for block in blocks]
    assert results[8].text is not None and "was blocked" in results[8].text


def test_json_array_holds_the_same_records_as_the_ndjson() -> None:
    array = json.loads((FIXTURES / "terragon-oss__claude-json-bash-test.json").read_text())
    assert len(array) == 24
    assert array == records(BASH)


def test_keep_alive_is_a_heartbeat() -> None:
    event = FMT.normalize({"type": "keep_alive"})
    assert event.kind == "raw" and event.heartbeat


@pytest.mark.parametrize("data", [None, 3, "x", [1], {}, {"type": 7}, {"type": "stream_event"}])
def test_unrecognised_records_are_raw(data: Any) -> None:
    event = FMT.normalize(data)
    assert event.kind == "raw" and not event.heartbeat


@pytest.mark.parametrize("record_type", ["assistant", "user"])
@pytest.mark.parametrize("message", [None, "x", {}, {"content": 3}, {"content": [None, {"type": "image"}]}])
def test_messages_without_usable_content_are_raw(record_type: str, message: Any) -> None:
    assert FMT.normalize({"type": record_type, "message": message}).kind == "raw"


def test_error_max_turns_is_an_error_even_without_is_error() -> None:
    event = FMT.normalize(
        {"type": "result", "subtype": "error_max_turns", "is_error": False, "total_cost_usd": 0.5, "usage": {"a": 1}}
    )
    assert (event.kind, event.is_error, event.text, event.cost_usd, event.usage) == (
        "error", True, "error_max_turns", 0.5, {"a": 1}
    )


def test_failed_result_text_prefers_result_then_errors() -> None:
    failed = FMT.normalize({"type": "result", "subtype": "success", "is_error": True, "result": "API Error: 500"})
    assert (failed.kind, failed.text) == ("error", "API Error: 500")
    errors = FMT.normalize({"type": "result", "subtype": "error_during_execution", "errors": ["boom", "bang"]})
    assert (errors.kind, errors.text) == ("error", "boom\nbang")


def test_system_subtypes() -> None:
    assert FMT.normalize({"type": "system", "subtype": "compact_boundary", "session_id": "s"}) == Normalized(
        "compacted", session_id="s"
    )
    note = FMT.normalize({"type": "system", "subtype": "status", "message": "hi"})
    assert (note.kind, note.text) == ("notification", "hi")


def test_assistant_priority_tool_use_then_text_then_thinking() -> None:
    def assistant(*blocks: dict[str, Any]) -> Normalized:
        return FMT.normalize({"type": "assistant", "message": {"content": list(blocks)}})

    thinking = {"type": "thinking", "thinking": "hmm"}
    text = {"type": "text", "text": "a"}
    first = {"type": "tool_use", "name": "Read", "input": {"file_path": "/x"}}
    second = {"type": "tool_use", "name": "Bash", "input": {"command": "ls"}}
    both = assistant(thinking, text, first, second)
    assert (both.kind, both.tool, both.input) == ("tool_use", "Read", {"file_path": "/x"})
    texts = assistant(thinking, text, {"type": "text", "text": "b"})
    assert (texts.kind, texts.text) == ("output", "a\nb")
    thought = assistant(thinking)
    assert (thought.kind, thought.text) == ("thinking", "hmm")


def test_user_prompts_and_tool_result_block_content() -> None:
    plain = FMT.normalize({"type": "user", "message": {"role": "user", "content": "do it"}})
    assert (plain.kind, plain.text) == ("prompt", "do it")
    blocks = FMT.normalize({"type": "user", "message": {"content": [{"type": "text", "text": "do it"}]}})
    assert (blocks.kind, blocks.text) == ("prompt", "do it")
    result = FMT.normalize(
        {
            "type": "user",
            "message": {"content": [{"type": "tool_result", "content": [{"type": "text", "text": "out"}]}]},
        }
    )
    assert (result.kind, result.text, result.is_error) == ("tool_result", "out", False)


# --- records beyond the fixtures: each one's shape is taken from the source named beside it ---
# SDK = anthropics/claude-agent-sdk-python (HEAD e8bde60164f9ef820068ec36ffe6b7be6bd8fd26).


@pytest.mark.parametrize(
    "subtype", ["error_during_execution", "error_max_turns", "error_max_budget_usd", "error_max_structured_output_retries"]
)
def test_result_error_subtypes_are_errors_even_when_is_error_is_false(subtype: str) -> None:
    # SDK tests/test_query.py `_error_result`, with is_error false as CLIs sent before the fix in
    # claude-agent-sdk-typescript CHANGELOG.md ("Fixed error result messages ... to correctly set
    # is_error: true"); the subtypes are the ones that CHANGELOG names.
    record = {
        "type": "result", "subtype": subtype, "is_error": False, "num_turns": 1, "session_id": "s",
        "duration_ms": 1, "duration_api_ms": 1, "total_cost_usd": 0.0,
    }  # fmt: skip
    event = FMT.normalize(record)
    assert (event.kind, event.is_error, event.text, event.cost_usd, event.session_id) == ("error", True, subtype, 0.0, "s")


# SDK tests/test_tool_callbacks.py and tests/test_query.py (CLI -> SDK permission prompts).
CAN_USE_TOOL = {
    "type": "control_request",
    "request_id": "test-1",
    "request": {"subtype": "can_use_tool", "tool_name": "TestTool", "input": {"param": "value"}, "permission_suggestions": []},
}
CAN_USE_WRITE = {
    "type": "control_request",
    "request_id": "perm_1",
    "request": {
        "subtype": "can_use_tool",
        "tool_name": "Write",
        "input": {"file_path": "/tmp/x", "content": "hi"},
        "tool_use_id": "toolu_1",
    },
}
# SDK src/claude_agent_sdk/_internal/query.py `_handle_control_request`: the SDK's answers.
ALLOWED = {
    "type": "control_response",
    "response": {"subtype": "success", "request_id": "test-1", "response": {"behavior": "allow", "updatedInput": {"param": "value"}}},
}
DENIED = {
    "type": "control_response",
    "response": {
        "subtype": "success",
        "request_id": "test-1",
        "response": {"behavior": "deny", "message": "Security policy violation"},
    },
}
# SDK tests/test_query.py TestControlCancelRequest.
CANCELLED = {"type": "control_cancel_request", "request_id": "hook_1"}


def test_can_use_tool_is_a_permission_request() -> None:
    assert FMT.normalize(CAN_USE_TOOL) == Normalized("permission_request", tool="TestTool", input={"param": "value"})
    write = FMT.normalize(CAN_USE_WRITE)
    assert (write.kind, write.tool, write.input) == ("permission_request", "Write", {"file_path": "/tmp/x", "content": "hi"})


def test_permission_request_text_is_the_prompt_title() -> None:
    # SDKControlPermissionRequest (SDK types.py) may carry title / description / decision_reason.
    record = {
        "type": "control_request",
        "request_id": "r",
        "request": {**CAN_USE_TOOL["request"], "title": "Claude wants to run TestTool", "decision_reason": "no rule"},
    }
    assert FMT.normalize(record).text == "Claude wants to run TestTool"


def test_decisions_and_cancels_resolve_the_permission() -> None:
    assert FMT.normalize(ALLOWED) == Normalized("permission_resolved", text="allow")
    assert FMT.normalize(DENIED) == Normalized("permission_resolved", text="deny: Security policy violation")
    assert FMT.normalize(CANCELLED) == Normalized("permission_resolved")


@pytest.mark.parametrize(
    "record",
    [
        # SDK tests/test_query.py: a hook callback request (CLI -> SDK), not a permission prompt.
        {"type": "control_request", "request_id": "hook_1", "request": {"subtype": "hook_callback", "callback_id": "hook_0"}},
        # SDK types.py SDKControlInterruptRequest (SDK -> CLI).
        {"type": "control_request", "request_id": "req_1_abcd", "request": {"subtype": "interrupt"}},
        # SDK types.py ControlResponse / ControlErrorResponse: answers that decide no permission.
        {"type": "control_response", "response": {"subtype": "success", "request_id": "req_1_abcd", "response": None}},
        {"type": "control_response", "response": {"subtype": "error", "request_id": "req_2", "error": "Unknown error"}},
    ],
)
def test_other_control_traffic_is_raw(record: dict[str, Any]) -> None:
    assert FMT.normalize(record) == Normalized("raw")


# rate_limit_event: SDK tests/test_rate_limit_event_repro.py.
RATE_LIMIT_WARNING = {
    "type": "rate_limit_event",
    "rate_limit_info": {
        "status": "allowed_warning",
        "resetsAt": 1700000000,
        "rateLimitType": "five_hour",
        "utilization": 0.85,
        "isUsingOverage": False,
    },
    "uuid": "550e8400-e29b-41d4-a716-446655440000",
    "session_id": "test-session-id",
}
RATE_LIMIT_REJECTED = {
    "type": "rate_limit_event",
    "rate_limit_info": {
        "status": "rejected",
        "resetsAt": 1700003600,
        "rateLimitType": "seven_day",
        "isUsingOverage": False,
        "overageStatus": "rejected",
        "overageDisabledReason": "out_of_credits",
    },
    "uuid": "660e8400-e29b-41d4-a716-446655440001",
    "session_id": "test-session-id",
}
RATE_LIMIT_MINIMAL = {
    "type": "rate_limit_event",
    "rate_limit_info": {"status": "allowed"},
    "uuid": "770e8400-e29b-41d4-a716-446655440002",
    "session_id": "test-session-id",
}


def test_rate_limit_events_are_notifications_naming_the_limit() -> None:
    warning = FMT.normalize(RATE_LIMIT_WARNING)
    assert warning == Normalized(
        "notification",
        text="rate limit allowed_warning (five_hour, 85% used, resets 2023-11-14 22:13 UTC)",
        session_id="test-session-id",
    )
    assert FMT.normalize(RATE_LIMIT_REJECTED).text == "rate limit rejected (seven_day, resets 2023-11-14 23:13 UTC)"
    assert FMT.normalize(RATE_LIMIT_MINIMAL).text == "rate limit allowed"


@pytest.mark.parametrize(
    ("record", "text"),
    [
        # SDK tests/test_message_parser.py (hook events, task lifecycle).
        ({"type": "system", "subtype": "hook_started", "hook_event": "PreToolUse"}, "PreToolUse hook started"),
        ({"type": "system", "subtype": "hook_started", "hook_name": "Stop"}, "Stop hook started"),
        (
            {
                "type": "system", "subtype": "hook_response", "hook_event": "PostToolUse", "hook_name": "PostToolUse",
                "session_id": "sess-123", "uuid": "uuid-789", "output": "", "exit_code": 0, "outcome": "success",
            },
            "PostToolUse hook: success",
        ),
        (
            {
                "type": "system", "subtype": "task_started", "task_id": "task-abc", "description": "Working",
                "uuid": "uuid-1", "session_id": "session-1",
            },
            "task started: Working",
        ),
        (
            {
                "type": "system", "subtype": "task_progress", "task_id": "task-abc", "tool_use_id": "toolu_01",
                "description": "Halfway there", "usage": {"total_tokens": 1234, "tool_uses": 5, "duration_ms": 9876},
                "last_tool_name": "Read", "uuid": "uuid-2", "session_id": "session-1",
            },
            "task in progress: Halfway there",
        ),
        (
            {
                "type": "system", "subtype": "task_notification", "task_id": "task-abc", "status": "failed",
                "output_file": "/tmp/out.md", "summary": "Boom", "uuid": "uuid-3", "session_id": "session-1",
            },
            "task failed: Boom",
        ),
        # SDK tests/test_query.py.
        ({"type": "system", "subtype": "task_updated", "task_id": "task-1", "patch": {"status": "completed"}}, "task completed"),
        (
            {"type": "system", "subtype": "session_state_changed", "state": "idle", "session_id": "s"},
            "session_state_changed",
        ),
        # claude-agent-sdk-typescript CHANGELOG.md: "{type:'system', subtype:'status', status:'requesting'}".
        ({"type": "system", "subtype": "status", "status": "requesting"}, "status: requesting"),
        # api_retry: fields per claude-agent-sdk-typescript CHANGELOG.md ("attempt count, max retries,
        # delay, and error status"; error 'overloaded' for 529), spelled as the CLI writes them.
        (
            {
                "type": "system", "subtype": "api_retry", "attempt": 1, "max_retries": 10, "retry_delay_ms": 600,
                "error_status": 529, "error": "overloaded", "uuid": "u", "session_id": "s",
            },
            "API error, overloaded, HTTP 529, retry 1/10 in 0.6 s",
        ),
        # api_error as Claude Code writes it into transcripts (level, error object, retryInMs, ...).
        (
            {
                "type": "system", "subtype": "api_error", "level": "error",
                "error": {"status": 529, "message": "overloaded"}, "retryInMs": 500, "retryAttempt": 1, "maxRetries": 10,
            },
            "API error, overloaded, HTTP 529, retry 1/10 in 0.5 s",
        ),
        # transcripts' informational records say it in `content`.
        ({"type": "system", "subtype": "informational", "content": "Switched model", "level": "info"}, "Switched model"),
    ],
)  # fmt: skip
def test_other_system_subtypes_are_notifications_saying_what_happened(record: dict[str, Any], text: str) -> None:
    event = FMT.normalize(record)
    assert (event.kind, event.text, event.session_id) == ("notification", text, record.get("session_id"))


def test_conversation_reset_clears_the_context() -> None:
    # SDK tests/test_message_parser.py; ConversationResetMessage is sent after /clear.
    record = {
        "type": "conversation_reset",
        "new_conversation_id": "d2f4a573-ca99-42a2-bb7a-905b40c908e8",
        "uuid": "msg-1",
        "session_id": "66694129-ce74-4ee1-9b0f-994155ac97ba",
    }
    assert FMT.normalize(record) == Normalized("context_cleared")


def partial_reply() -> list[dict[str, Any]]:
    """A reply with --include-partial-messages: each event of anthropics/anthropic-sdk-python
    tests/lib/streaming/fixtures/tool_use_response.txt (the Messages API stream) in the
    ``stream_event`` envelope of the SDK's message_parser.py (uuid, session_id, event,
    parent_tool_use_id), then the same reply whole as the CLI sends it: one ``assistant`` record
    per content block (as in terragon-oss__claude-json-bash-test.json)."""
    events: list[dict[str, Any]] = [
        {"type": "message_start", "message": {
            "id": "msg_019Q1hrJbZG26Fb9BQhrkHEr", "type": "message", "role": "assistant",
            "model": "claude-sonnet-4-20250514", "content": [], "stop_reason": None, "stop_sequence": None,
            "usage": {"input_tokens": 377, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0,
                      "output_tokens": 1, "service_tier": "standard"}}},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "ping"},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "I"}},
        {"type": "content_block_delta", "index": 0,
         "delta": {"type": "text_delta", "text": "'ll check the current weather in Paris for you."}},
        {"type": "content_block_stop", "index": 0},
        {"type": "content_block_start", "index": 1, "content_block": {
            "type": "tool_use", "id": "toolu_01NRLabsLyVHZPKxbKvkfSMn", "name": "get_weather",
            "caller": {"type": "direct"}, "input": {}}},
        {"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": ""}},
        {"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": '{"locati'}},
        {"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": 'on": "P'}},
        {"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "ar"}},
        {"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": 'is"}'}},
        {"type": "content_block_stop", "index": 1},
        {"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": None}, "usage": {"output_tokens": 65}},
        {"type": "message_stop"},
    ]  # fmt: skip
    partials = [
        {"type": "stream_event", "uuid": f"u{i}", "session_id": "s", "event": event, "parent_tool_use_id": None}
        for i, event in enumerate(events)
    ]
    message = {"id": "msg_019Q1hrJbZG26Fb9BQhrkHEr", "type": "message", "role": "assistant", "model": "claude-sonnet-4-20250514"}
    whole = [
        {"type": "assistant", "message": {**message, "content": [
            {"type": "text", "text": "I'll check the current weather in Paris for you."}]},
         "parent_tool_use_id": None, "session_id": "s"},
        {"type": "assistant", "message": {**message, "content": [
            {"type": "tool_use", "id": "toolu_01NRLabsLyVHZPKxbKvkfSMn", "name": "get_weather", "input": {"location": "Paris"}}]},
         "parent_tool_use_id": None, "session_id": "s"},
    ]  # fmt: skip
    return partials + whole


def test_partial_messages_are_progress_that_neither_speaks_nor_opens_tools() -> None:
    events = [FMT.normalize(record) for record in partial_reply()]
    assert [e.kind for e in events] == ["thinking"] * 2 + ["raw"] + ["thinking"] * 12 + ["output", "tool_use"]
    assert all(e.text is None and e.tool is None and e.usage is None for e in events[:15])
    assert {e.session_id for e in events if e.kind == "thinking"} == {"s"}
    assert events[-2].text == "I'll check the current weather in Paris for you."
    assert (events[-1].tool, events[-1].input) == ("get_weather", {"location": "Paris"})

    facts = SessionFacts()
    for at, event in enumerate(events):
        session_facts.apply(facts, event.kind, event, at)
    assert facts.tools_open == 1, "only the assistant record opens the tool call"
    assert facts.summary == "I'll check the current weather in Paris for you."
    assert facts.turn_open


def test_partials_count_as_work_before_the_first_whole_message() -> None:
    facts = SessionFacts()
    session_facts.apply(facts, "session_started", Normalized("session_started"), 0)
    first = FMT.normalize(partial_reply()[0])
    session_facts.apply(facts, first.kind, first, 1)
    assert facts.turn_open and is_working(facts)


@pytest.mark.parametrize(
    "record",
    [
        {"type": "stream_event", "event": {"type": "ping"}},
        {"type": "stream_event", "event": {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}},
        {"type": "stream_event", "event": "message_start"},
        {"type": "stream_event", "event": {"type": ["message_start"]}},
    ],
)
def test_other_stream_events_are_raw(record: dict[str, Any]) -> None:
    assert FMT.normalize(record) == Normalized("raw")


async def test_permission_and_partials_round_trip_through_a_daemon(state_dir) -> None:
    sent = [*partial_reply(), CAN_USE_TOOL, DENIED, CAN_USE_WRITE, CANCELLED, RATE_LIMIT_WARNING]
    async with running_daemon(state_dir) as d:
        await stream_all(d, "claude-1", "claude-stream-json", sent)
        events = await stored(d, "claude-1")
    assert [e["data"] for e in events] == sent
    assert [e["kind"] for e in events] == (
        ["thinking"] * 2 + ["raw"] + ["thinking"] * 12 + ["output", "tool_use"]
        + ["permission_request", "permission_resolved", "permission_request", "permission_resolved", "notification"]
    )


@pytest.mark.parametrize(
    "data",
    [
        {"type": "control_request", "request": [1]},
        {"type": "control_request", "request": {"subtype": ["can_use_tool"]}},
        {"type": "control_request", "request": {"subtype": "can_use_tool", "tool_name": 3, "input": "x", "title": 1}},
        {"type": "control_response", "response": "ok"},
        {"type": "control_response", "response": {"response": {"behavior": 1, "message": 2}}},
        {"type": "control_cancel_request", "request_id": []},
        {"type": "rate_limit_event"},
        {"type": "rate_limit_event", "rate_limit_info": "x"},
        {"type": "rate_limit_event", "rate_limit_info": {"status": 1, "resetsAt": 1e300, "utilization": "x"}},
        {"type": "rate_limit_event", "rate_limit_info": {"resetsAt": -1e20, "rateLimitType": [], "utilization": True}},
        {"type": "stream_event", "event": None, "session_id": 3},
        {"type": "system", "subtype": ["status"]},
        {"type": "system", "subtype": "api_retry", "error": 5, "attempt": "x", "retry_delay_ms": None},
        {"type": "system", "subtype": "api_error", "error": {"status": "503", "message": []}, "retryInMs": "soon"},
        {"type": "system", "subtype": "hook_response", "hook_event": 1, "outcome": [], "output": {}},
        {"type": "system", "subtype": "task_updated", "patch": [1], "summary": 2},
        {"type": "system", "subtype": "status", "status": None, "permissionMode": 3},
        {"type": "conversation_reset", "session_id": {}},
        {"type": "result", "subtype": ["success"], "is_error": "no"},
    ],
)
def test_hostile_new_records_never_raise(data: Any) -> None:
    event = FMT.normalize(data)
    assert event.kind in KINDS
    FMT.sniff(data)


def test_hostile_values_read_as_none_or_fallbacks() -> None:
    assert FMT.normalize({"type": "rate_limit_event", "rate_limit_info": {"resetsAt": 1e300}}).text == "rate limit changed"
    assert FMT.normalize({"type": "system", "subtype": "api_retry", "error": 5}).text == "API error"
    assert FMT.normalize({"type": "system", "subtype": "status"}).text == "status"
    assert FMT.normalize({"type": "system", "subtype": ["x"]}) == Normalized("notification")
    assert FMT.normalize({"type": "control_request", "request": {"subtype": "can_use_tool", "tool_name": 3, "input": "x"}}) == (
        Normalized("permission_request", input="x")
    )


# --- sniff ---


def test_sniff_is_true_exactly_for_the_records_of_this_format() -> None:
    stream_json = {
        "claude-agent-sdk-gleam__basic_query.ndjson",
        "terragon-oss__claude-json-bash-test.DERIVED.ndjson",
        "terragon-oss__claude-json-bash-test.json",
    }
    wrong = [(name, record) for name, record in every_fixture_record() if FMT.sniff(record) != (name in stream_json)]
    assert wrong == []


@pytest.mark.parametrize(
    ("data", "sniffed"),
    [
        (CAN_USE_TOOL, True),
        (partial_reply()[0], True),
        ({"type": "result", "subtype": "error_max_turns", "is_error": True}, True),
        ({"type": "user", "message": {"role": "user", "content": "hi"}, "session_id": "s"}, True),
        # a transcript record: sessionId beside session_id, or alone
        ({"type": "user", "message": {"content": "hi"}, "session_id": "s", "sessionId": "s"}, False),
        ({"type": "assistant", "message": {"content": []}, "sessionId": "s"}, False),
        ({"type": "system", "subtype": "init", "sessionId": "s"}, False),
        ({"type": "system", "subtype": "status", "session_id": "s"}, False),
        ({"type": "result", "status": "success"}, False),  # Gemini's result
        ({"type": "user", "message": "hi", "session_id": "s"}, False),
        (ALLOWED, False),
        (RATE_LIMIT_WARNING, False),
        ({"kind": "output"}, False),
        (None, False),
        ([{"type": "stream_event"}], False),
        ({"type": ["stream_event"]}, False),
    ],
)
def test_sniff(data: Any, sniffed: bool) -> None:
    assert FMT.sniff(data) is sniffed
