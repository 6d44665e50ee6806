"""The ``claude-stream-json`` format against real recordings (tests/fixtures/MANIFEST.txt)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from agentwatch.model import KINDS, Normalized
from agentwatch.plugins.formats.claude_stream_json import ClaudeStreamJsonFormat, agentwatch_register_formats

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
