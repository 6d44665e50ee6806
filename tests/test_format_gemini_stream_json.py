"""The ``gemini-stream-json`` format against the records of Gemini CLI's own tests.

The fixtures (tests/fixtures/gemini-stream-json, see MANIFEST.txt) are derived from
google-gemini/gemini-cli: packages/cli/src/__snapshots__/nonInteractiveCli.test.ts.snap and
packages/core/src/output/stream-json-formatter.test.ts; the shapes are those of
packages/core/src/output/types.ts.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from agentwatch.model import KINDS, Normalized
from agentwatch.plugins.formats.gemini_stream_json import GeminiStreamJsonFormat, agentwatch_register_formats
from helpers import every_fixture_record, fixture_records, running_daemon, stored, stream_all

FMT = GeminiStreamJsonFormat()
DIR = "gemini-stream-json"
TOOL_RUN = "gemini-cli__stream-json-tool-run.DERIVED.jsonl"
LOOP = "gemini-cli__stream-json-loop-detected.DERIVED.jsonl"
MAX_TURNS = "gemini-cli__stream-json-max-session-turns.DERIVED.jsonl"
FORMATTER = "gemini-cli__stream-json-formatter-events.DERIVED.jsonl"

#: The kind of every record of every fixture file, in order, written out by hand.
EXPECTED_KINDS: dict[str, list[str]] = {
    TOOL_RUN: ["session_started", "prompt", "output", "tool_use", "tool_result", "output", "turn_completed"],
    LOOP: ["session_started", "prompt", "notification", "turn_completed"],
    MAX_TURNS: ["session_started", "prompt", "error", "turn_completed"],
    FORMATTER: [
        "session_started", "prompt", "output", "tool_use", "tool_result", "tool_result", "notification",
        "turn_completed", "error", "prompt",
        "session_started", "prompt", "tool_use", "tool_result", "error", "turn_completed",
    ],
}  # fmt: skip

ZERO_STATS = {
    "total_tokens": 0, "input_tokens": 0, "output_tokens": 0, "cached": 0, "input": 0,
    "duration_ms": 0, "tool_calls": 0, "models": {},
}  # fmt: skip


def records(name: str) -> list[Any]:
    return fixture_records(f"{DIR}/{name}")


def normalized(name: str) -> list[Normalized]:
    return [FMT.normalize(record) for record in records(name)]


def test_registers_itself_by_name() -> None:
    registered: list[Any] = []
    agentwatch_register_formats(registered.append)
    assert [fmt.name for fmt in registered] == ["gemini-stream-json"]


def test_every_fixture_file_is_covered() -> None:
    found = sorted(name for name, _ in every_fixture_record() if name.startswith("gemini-cli__"))
    assert sorted(set(found)) == sorted(EXPECTED_KINDS)


@pytest.mark.parametrize("name", sorted(EXPECTED_KINDS))
def test_kind_of_every_record(name: str) -> None:
    events = normalized(name)
    assert [e.kind for e in events] == EXPECTED_KINDS[name]
    assert all(e.kind in KINDS and not e.heartbeat for e in events)
    assert all(e.cwd is None and e.cost_usd is None for e in events), "the stream has neither"


def test_all_kinds_counted() -> None:
    counts = Counter(kind for kinds in EXPECTED_KINDS.values() for kind in kinds)
    assert counts == Counter(
        session_started=5, prompt=6, output=3, tool_use=3, tool_result=4, notification=2, error=3, turn_completed=5
    )


def test_tool_run_fields() -> None:
    started, prompt, chunk, tool_use, tool_result, answer, done = normalized(TOOL_RUN)
    assert started == Normalized("session_started", session_id="test-session-id")
    assert (prompt.text, prompt.session_id) == ("Stream test", None)
    assert (chunk.text, answer.text) == ("Thinking...", "Final answer")
    assert (tool_use.tool, tool_use.input) == ("testTool", {"arg1": "value1"})
    assert (tool_result.text, tool_result.is_error, tool_result.tool) == ("Tool executed successfully", False, None)
    assert (done.is_error, done.usage, done.text) == (False, ZERO_STATS, None)


def test_tool_calls_of_the_timelines_are_all_closed() -> None:
    for name in (TOOL_RUN, LOOP, MAX_TURNS):
        kinds = EXPECTED_KINDS[name]
        assert kinds.count("tool_use") == kinds.count("tool_result")


def test_warning_is_a_notification_and_error_an_error() -> None:
    warning = normalized(LOOP)[2]
    assert (warning.kind, warning.text, warning.is_error) == ("notification", "Loop detected, stopping execution", None)
    failed = normalized(MAX_TURNS)[2]
    assert (failed.kind, failed.text, failed.is_error) == ("error", "Maximum session turns exceeded", True)
    assert normalized(FORMATTER)[14] == Normalized("error", text="Test error", is_error=True)


def test_formatter_events_fields() -> None:
    events = normalized(FORMATTER)
    assert events[0].session_id == "test-session-123"
    assert (events[1].text, events[2].text) == ("What is 2+2?", "4")
    assert (events[3].tool, events[3].input) == ("Read", {"file_path": "/path/to/file.txt"})
    assert (events[4].text, events[4].is_error) == ("File contents here", False)
    assert (events[5].text, events[5].is_error) == ("File not found", True)
    stats = {
        "total_tokens": 100, "input_tokens": 50, "output_tokens": 50, "cached": 0, "input": 50,
        "duration_ms": 1200, "models": {},
    }  # fmt: skip
    assert events[7] == Normalized("turn_completed", is_error=False, usage={**stats, "tool_calls": 2})
    assert events[8] == Normalized(
        "error", text="Maximum session turns exceeded", is_error=True, usage={**stats, "tool_calls": 0}
    )
    assert (events[12].tool, events[12].input) == ("Read", {})
    assert events[13] == Normalized("tool_result", is_error=False), "a result without output has no text"


def test_result_error_without_message_uses_the_error_type_or_nothing() -> None:
    typed = FMT.normalize({"type": "result", "status": "error", "error": {"type": "INVALID_STREAM"}})
    assert (typed.kind, typed.text, typed.is_error) == ("error", "INVALID_STREAM", True)
    # nonInteractiveCli.ts emits {"status": "error", "stats": ...} without `error` on an invalid stream
    bare = FMT.normalize({"type": "result", "status": "error", "stats": ZERO_STATS})
    assert bare == Normalized("error", is_error=True, usage=ZERO_STATS)


def test_tool_result_error_prefers_output_over_error_message() -> None:
    record = {"type": "tool_result", "tool_id": "t", "status": "error", "output": "shown", "error": {"message": "m"}}
    assert FMT.normalize(record) == Normalized("tool_result", text="shown", is_error=True)


@pytest.mark.parametrize("name", sorted(EXPECTED_KINDS))
async def test_round_trip_through_a_daemon(state_dir, name: str) -> None:
    sent = records(name)
    async with running_daemon(state_dir) as d:
        await stream_all(d, "gemini-1", "gemini-stream-json", sent)
        events = await stored(d, "gemini-1")
    assert [e["data"] for e in events] == sent
    assert [e["kind"] for e in events] == EXPECTED_KINDS[name]
    assert {e["format"] for e in events} == {"gemini-stream-json"}


@pytest.mark.parametrize(
    "data",
    [
        None, 3, 2.5, True, "x", [1], [], {}, {"type": 7}, {"type": ["init"]}, {"type": "unknown"},
        {"type": "init", "session_id": 5, "model": []},
        {"type": "message"}, {"type": "message", "role": ["user"]}, {"type": "message", "role": "system", "content": "x"},
        {"type": "message", "role": "user", "content": {"a": 1}},
        {"type": "tool_use", "tool_name": 1, "parameters": "x"},
        {"type": "tool_result", "status": ["error"], "output": 3, "error": "boom"},
        {"type": "tool_result", "error": {"message": 3, "type": None}},
        {"type": "error", "severity": {}, "message": 1},
        {"type": "result", "status": None, "stats": [1], "error": [1]},
        {"type": "result", "status": "success", "stats": "lots"},
    ],
)  # fmt: skip
def test_hostile_input_never_raises(data: Any) -> None:
    event = FMT.normalize(data)
    assert event.kind in KINDS
    assert FMT.sniff(data) is False


def test_hostile_values_read_as_none() -> None:
    assert FMT.normalize({"type": "init", "session_id": 5}) == Normalized("session_started")
    assert FMT.normalize({"type": "message", "role": ["user"], "content": "x"}).kind == "raw"
    assert FMT.normalize({"type": "message", "role": "user", "content": 3}) == Normalized("prompt")
    assert FMT.normalize({"type": "tool_use", "tool_name": 1, "parameters": "x"}) == Normalized("tool_use", input="x")
    assert FMT.normalize({"type": "tool_result", "status": 1}) == Normalized("tool_result", is_error=False)
    assert FMT.normalize({"type": "error"}) == Normalized("error", is_error=True)
    assert FMT.normalize({"type": "result", "status": "success", "stats": 3}) == Normalized("turn_completed", is_error=False)


def test_sniff_is_true_exactly_for_the_records_of_this_format() -> None:
    wrong = [
        (name, record)
        for name, record in every_fixture_record()
        if FMT.sniff(record) != name.startswith("gemini-cli__")
    ]
    assert wrong == []


@pytest.mark.parametrize(
    "data",
    [
        # the right type but another format's fields, or no timestamp
        {"type": "result", "subtype": "success", "status": "success", "timestamp": "t"},
        {"type": "result", "status": "success"},
        {"type": "message", "role": "user", "content": "x"},
        {"type": "message", "timestamp": "t", "role": "user", "content": ["x"]},
        {"type": "init", "timestamp": "t", "session_id": "s"},
        {"type": "tool_use", "timestamp": "t", "tool_name": "Bash"},
        {"type": "tool_result", "timestamp": "t", "tool_id": "x", "status": "done"},
        {"type": "error", "timestamp": "t", "severity": "fatal", "message": "x"},
        {"type": "system", "subtype": "init", "session_id": "s", "timestamp": "t"},
        {"kind": "output", "timestamp": "t"},
    ],
)  # fmt: skip
def test_sniff_rejects_lookalikes(data: Any) -> None:
    assert FMT.sniff(data) is False
