"""The ``claude-transcript`` format against real session files (tests/fixtures/MANIFEST.txt)."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import pytest

from agentwatch.model import KINDS, Normalized
from agentwatch.plugins.formats.claude_transcript import ClaudeTranscriptFormat, agentwatch_register_formats
from agentwatch.session_facts import SessionFacts, apply
from helpers import FIXTURES, fixture_records, running_daemon, stored, stream_all

DIALOG = "claude-transcript/claudeless__bash-permission-dialog__f3ba0bdb-562d-4ca3-9069-3e5122f4ccc9.jsonl"
PORT = "claude-transcript/claude-reliability__python-to-rust-port__transcript.jsonl"
SPOTTER = "claude-transcript/spotter__tool_heavy.jsonl"

FMT = ClaudeTranscriptFormat()

#: One letter per kind in the expected strings below.
LETTERS = {
    "n": "notification",
    "p": "prompt",
    "u": "tool_use",
    "r": "tool_result",
    "o": "output",
    "t": "thinking",
    "c": "turn_completed",
    "x": "session_ended",
}

#: The expected kind of every line of every transcript fixture, read off the files by hand.
EXPECTED = {
    # snapshot, prompt, thinking, Bash tool_use, rejected result, "[Request interrupted by user
    # for tool use]", snapshot, caveat (isMeta), /exit, its stdout
    DIALOG: "npturcnnxn",
    # queue-operation, prompt, 38 tool calls with their results and the text between them, the
    # isMeta "Stop hook feedback" line (86), four more calls, the final text: no line ends a turn
    # (Claude Code 2.1.14 left stop_reason null and wrote no turn_duration in this run)
    PORT: (
        "npuroururururoururur"  # lines 0-19
        "ururururourururururu"  # 20-39
        "rouroururourourururu"  # 40-59
        "rourouurrourourouurr"  # 60-79
        "urouronoururururo"  # 80-96
    ),
    # snapshot, 2 SessionStart hook_progress, prompt, Bash, 3 hook_progress, queue enqueue/remove,
    # result, text, Bash, 3 hook_progress, result, interrupt, snapshot, caveat, /mcp as user lines,
    # /mcp as system local_command lines, snapshot, prompt, "\n\n" text, thinking, WebSearch,
    # Glob, hook_progress, 2 results, Read, hook_progress, result, WebFetch, result, interrupt
    SPOTTER: "nnnpunnnnnrounnnrcnnnnnnnpotuunrrunrurc",
}


def expected_kinds(fixture: str) -> list[str]:
    return [LETTERS[letter] for letter in EXPECTED[fixture]]


def normalized(fixture: str) -> list[Normalized]:
    return [FMT.normalize(record) for record in fixture_records(fixture)]


def test_registers_itself_by_name() -> None:
    registered: list[Any] = []
    agentwatch_register_formats(registered.append)
    assert [fmt.name for fmt in registered] == ["claude-transcript"]


@pytest.mark.parametrize("fixture", list(EXPECTED))
def test_every_line_has_its_kind(fixture: str) -> None:
    records = fixture_records(fixture)
    assert len(EXPECTED[fixture]) == len(records)
    assert [e.kind for e in normalized(fixture)] == expected_kinds(fixture)


def test_kind_totals_of_the_long_session() -> None:
    assert Counter(e.kind for e in normalized(PORT)) == Counter(
        {"tool_use": 39, "tool_result": 39, "output": 16, "notification": 2, "prompt": 1}
    )


@pytest.mark.parametrize("fixture", list(EXPECTED))
def test_every_tool_use_is_closed_by_a_tool_result(fixture: str) -> None:
    kinds = Counter(e.kind for e in normalized(fixture))
    assert kinds["tool_use"] == kinds["tool_result"] > 0


@pytest.mark.parametrize("fixture", list(EXPECTED))
def test_session_id_and_cwd_come_from_every_line_that_has_them(fixture: str) -> None:
    for record, event in zip(fixture_records(fixture), normalized(fixture), strict=True):
        assert event.session_id == record.get("sessionId")
        assert event.cwd == record.get("cwd")
        assert event.kind in KINDS and not event.heartbeat


def test_permission_dialog_fields() -> None:
    snapshot, prompt, thinking, tool_use, result, interrupted, _, caveat, exit_, stdout = normalized(DIALOG)
    assert (snapshot.session_id, snapshot.cwd, snapshot.text) == (None, None, None)
    assert prompt.text == "Use the Bash tool to run: touch /tmp/test_file.txt"
    assert prompt.session_id == "f3ba0bdb-562d-4ca3-9069-3e5122f4ccc9"
    assert prompt.cwd == "/tmp/workspace"
    assert thinking.text is not None and thinking.text.startswith("The user is asking me to use the Bash tool")
    assert thinking.usage is not None and thinking.usage["cache_creation_input_tokens"] == 7756
    assert (tool_use.tool, tool_use.input) == (
        "Bash",
        {"command": "touch /tmp/test_file.txt", "description": "Create an empty file at /tmp/test_file.txt"},
    )
    assert tool_use.usage is not None and tool_use.usage["output_tokens"] == 8
    assert result.is_error is True
    assert result.text is not None and result.text.startswith("The user doesn't want to proceed with this tool use.")
    assert (interrupted.text, interrupted.is_error) == ("[Request interrupted by user for tool use]", False)
    assert caveat.text is not None and caveat.text.startswith("<local-command-caveat>")
    assert exit_.text is not None and "<command-name>/exit</command-name>" in exit_.text
    assert stdout.text == "<local-command-stdout>Catch you later!</local-command-stdout>"


def test_long_session_fields() -> None:
    records = fixture_records(PORT)
    events = normalized(PORT)
    queue, prompt = events[0], events[1]
    assert (queue.session_id, queue.cwd) == ("c7d3d95c-57f0-4359-8f4b-926a9bef5a3f", None)
    assert prompt.text is not None and prompt.text.startswith("Port this Python project to Rust.")
    assert prompt.cwd == "/tmp/tmpqwh7888i"
    stop_hook = events[86]
    assert stop_hook.text is not None and stop_hook.text.startswith("Stop hook feedback:")
    last = events[-1]
    assert last.text == (
        "The Python project has been fully ported to Rust. All 5 modules are implemented with 100% line "
        "coverage, tests pass, and the changes are committed."
    )
    assert last.usage is not None and last.usage["cache_read_input_tokens"] == 38180
    blocks = [record["message"]["content"][0] for record in records if record["type"] == "user" and "toolUseResult" in record]
    results = [e for e in events if e.kind == "tool_result"]
    assert [e.is_error for e in results] == [block.get("is_error") is True for block in blocks]
    assert all(e.text is not None for e in results)
    tools = Counter(e.tool for e in events if e.kind == "tool_use")
    assert sum(tools.values()) == 39 and all(isinstance(name, str) for name in tools)


def test_spotter_fields() -> None:
    events = normalized(SPOTTER)
    hook = events[1]
    assert (hook.session_id, hook.cwd) == ("d6e0bada-1959-4eec-a9d2-0bfade768d8f", "/home/marco/projects/spotter")
    assert events[8].text == "/mcp"  # the queue-operation enqueue
    assert events[10].is_error is False and events[31].is_error is False  # is_error false / absent
    assert events[17].text == "[Request interrupted by user]"
    assert events[22].text is not None and events[22].text.startswith("<command-name>/mcp</command-name>")
    assert events[23].text == "<local-command-stdout>MCP dialog dismissed</local-command-stdout>"
    assert events[26].text == "\n\n"
    assert (events[28].tool, events[28].input) == (
        "WebSearch",
        {"query": "xterm.js scroll not working embedded page captures scroll events"},
    )
    assert events[29].tool == "Glob" and events[29].input == {"pattern": "assets/js/**/*.js"}
    assert events[31].text == "/home/marco/projects/spotter/assets/js/app.js"


def facts_after(fixture: str, lines: int | None = None) -> SessionFacts:
    """The session facts after the first ``lines`` lines of ``fixture`` (all by default)."""
    facts = SessionFacts()
    for at, event in enumerate(normalized(fixture)[:lines], start=1):
        apply(facts, event.kind, event, at)
    return facts


def test_an_interrupted_session_waits_for_the_person_and_exit_ends_it() -> None:
    interrupted = facts_after(SPOTTER)
    assert (interrupted.turn_open, interrupted.tools_open, interrupted.last_speaker) == (False, 0, "agent")
    assert interrupted.turn_completed_at == 39 and interrupted.acted_at == 26
    assert interrupted.cwd == "/home/marco/projects/spotter"
    rejected = facts_after(DIALOG, 6)  # up to "[Request interrupted by user for tool use]"
    assert (rejected.turn_open, rejected.tools_open, rejected.turn_completed_at) == (False, 0, 6)
    assert facts_after(DIALOG).ended_at == 9


def test_a_session_without_a_turn_end_stays_at_work() -> None:
    facts = facts_after(PORT)
    assert (facts.turn_open, facts.tools_open, facts.turn_completed_at) == (True, 0, None)
    assert facts.summary is not None and facts.summary.startswith("The Python project has been fully ported")


# --- assistant lines -------------------------------------------------------------------------


def assistant(*blocks: dict[str, Any], stop_reason: Any = None, **extra: Any) -> Normalized:
    message = {"model": "claude-opus-4-6", "content": list(blocks), "stop_reason": stop_reason, "usage": {"output_tokens": 3}}
    return FMT.normalize({"type": "assistant", "sessionId": "s", "uuid": "u", "message": message, **extra})


TEXT = {"type": "text", "text": "All done."}


@pytest.mark.parametrize("stop_reason", ["end_turn", "stop_sequence"])
def test_a_line_that_ends_the_models_reply_completes_the_turn(stop_reason: str) -> None:
    event = assistant(TEXT, stop_reason=stop_reason)
    assert event == Normalized("turn_completed", text="All done.", is_error=False, usage={"output_tokens": 3}, session_id="s")


@pytest.mark.parametrize("stop_reason", [None, "tool_use", "max_tokens", "pause_turn", "refusal", ["end_turn"], 7])
def test_other_stop_reasons_leave_the_turn_open(stop_reason: Any) -> None:
    assert assistant(TEXT, stop_reason=stop_reason).kind == "output"
    tool = {"type": "tool_use", "id": "t", "name": "Read", "input": {"file_path": "/x"}}
    event = assistant(tool, stop_reason=stop_reason)
    assert (event.kind, event.tool, event.input) == ("tool_use", "Read", {"file_path": "/x"})


def test_a_subagent_ending_its_reply_does_not_end_the_turn() -> None:
    assert assistant(TEXT, stop_reason="end_turn", isSidechain=True).kind == "output"


def test_tool_use_wins_then_text_then_thinking() -> None:
    thinking = {"type": "thinking", "thinking": "hmm", "signature": "x"}
    tool = {"type": "tool_use", "id": "t", "name": "Bash", "input": {"command": "ls"}}
    assert assistant(thinking, TEXT, tool).kind == "tool_use"
    assert (assistant(thinking, TEXT).kind, assistant(thinking, TEXT).text) == ("output", "All done.")
    assert (assistant(thinking).kind, assistant(thinking).text) == ("thinking", "hmm")
    redacted = assistant({"type": "redacted_thinking", "data": "..."})
    assert (redacted.kind, redacted.text) == ("thinking", None)


def test_api_errors_fail_the_turn_and_other_synthetic_lines_are_notifications() -> None:
    def synthetic(text: str, **extra: Any) -> Normalized:
        message = {"model": "<synthetic>", "content": [{"type": "text", "text": text}], "stop_reason": "stop_sequence"}
        return FMT.normalize({"type": "assistant", "message": message, **extra})

    failed = synthetic("API Error: 529 overloaded", isApiErrorMessage=True)
    assert (failed.kind, failed.text, failed.is_error) == ("error", "API Error: 529 overloaded", True)
    bare = FMT.normalize({"type": "assistant", "isApiErrorMessage": True, "error": "rate_limit", "message": {"content": []}})
    assert (bare.kind, bare.text) == ("error", "rate_limit")
    assert synthetic("API Error: 500", isApiErrorMessage=True, isSidechain=True).kind == "notification"
    filler = synthetic("No response requested.")
    assert (filler.kind, filler.text) == ("notification", "No response requested.")


def test_the_old_cost_field_is_read() -> None:
    assert assistant(TEXT, costUSD=0.0123).cost_usd == 0.0123
    assert assistant(TEXT, costUSD="0.1").cost_usd is None


# --- user lines ------------------------------------------------------------------------------


def user(content: Any, **extra: Any) -> Normalized:
    message = {"role": "user", "content": content}
    return FMT.normalize({"type": "user", "sessionId": "s", "uuid": "u", "cwd": "/w", "message": message, **extra})


def test_typed_text_is_a_prompt() -> None:
    assert user("fix the test") == Normalized("prompt", text="fix the test", session_id="s", cwd="/w")
    blocks = user([{"type": "text", "text": "look at"}, {"type": "image", "source": {}}, {"type": "text", "text": "this"}])
    assert (blocks.kind, blocks.text) == ("prompt", "look at\nthis")
    image = user([{"type": "image", "source": {}}])
    assert (image.kind, image.text) == ("prompt", None)


def test_tool_result_text_and_error_flag() -> None:
    listed = user([{"type": "tool_result", "tool_use_id": "t", "content": [{"type": "text", "text": "out"}], "is_error": True}])
    assert (listed.kind, listed.text, listed.is_error) == ("tool_result", "out", True)
    plain = user([{"type": "tool_result", "tool_use_id": "t", "content": "ok"}])
    assert (plain.kind, plain.text, plain.is_error) == ("tool_result", "ok", False)
    in_subagent = user([{"type": "tool_result", "tool_use_id": "t", "content": "ok"}], isSidechain=True)
    assert in_subagent.kind == "tool_result"  # closes the subagent's own tool_use


@pytest.mark.parametrize(
    "flag", ["isMeta", "isCompactSummary", "isVisibleInTranscriptOnly", "isSidechain"]
)
def test_lines_the_person_did_not_type_are_notifications(flag: str) -> None:
    event = user("This is text the person did not type.", **{flag: True})
    assert (event.kind, event.text) == ("notification", "This is text the person did not type.")


@pytest.mark.parametrize(
    "text",
    [
        "<task-notification>\n<task-id>b1</task-id>\n<status>completed</status>\n</task-notification>",
        "<system-reminder>The todo list is empty.</system-reminder>",
        '<teammate-message teammate_id="team-lead">please review</teammate-message>',
        "<bash-notification><status>completed</status></bash-notification>",
        "This session is being continued from a previous conversation that ran out of context. Summary: ...",
        "<command-name>/model</command-name>\n<command-message>model</command-message>\n<command-args></command-args>",
        "<local-command-stdout>Set model to opus</local-command-stdout>",
        "<local-command-stderr>oops</local-command-stderr>",
        "<bash-input>git status</bash-input>",
        "<bash-stdout>On branch main</bash-stdout><bash-stderr></bash-stderr>",
        "<user-memory-input>always use uv</user-memory-input>",
    ],
)
def test_injected_and_local_command_text_is_a_notification(text: str) -> None:
    assert user(text).kind == "notification"
    assert user([{"type": "text", "text": text}]).kind == "notification"


@pytest.mark.parametrize(
    ("command", "kind"),
    [("/exit", "session_ended"), ("/quit", "session_ended"), ("/clear", "context_cleared"), ("/compact", "notification")],
)
def test_local_commands_that_end_or_clear_the_conversation(command: str, kind: str) -> None:
    text = f"<command-name>{command}</command-name>\n            <command-message>{command[1:]}</command-message>"
    assert user(text) == Normalized(kind, text=text, session_id="s", cwd="/w")
    system = FMT.normalize({"type": "system", "subtype": "local_command", "content": text, "sessionId": "s"})
    assert (system.kind, system.text) == (kind, text)


def test_an_interrupt_ends_the_turn() -> None:
    for text in ("[Request interrupted by user]", "[Request interrupted by user for tool use]"):
        assert user([{"type": "text", "text": text}]) == Normalized(
            "turn_completed", text=text, is_error=False, session_id="s", cwd="/w"
        )
    assert user([{"type": "text", "text": "[Request interrupted by user]"}], isSidechain=True).kind == "notification"


# --- system, attachment and bookkeeping lines ------------------------------------------------


def system(subtype: Any, **extra: Any) -> Normalized:
    return FMT.normalize({"type": "system", "subtype": subtype, "sessionId": "s", "uuid": "u", **extra})


def test_system_subtypes() -> None:
    compacted = system("compact_boundary", content="Conversation compacted", compactMetadata={"trigger": "auto"})
    assert (compacted.kind, compacted.text) == ("compacted", "Conversation compacted")
    assert system("microcompact_boundary", content="Context microcompacted").kind == "compacted"
    assert system("turn_duration", durationMs=45000, messageCount=7) == Normalized(
        "turn_completed", is_error=False, session_id="s"
    )
    assert system("turn_duration", durationMs=45000, isSidechain=True).kind == "notification"
    retry = system("api_error", level="error", error={"status": 529}, retryInMs=2000, retryAttempt=2, maxRetries=10)
    assert retry.kind == "notification"  # Claude Code retries: the turn goes on
    for subtype in ("stop_hook_summary", "informational", "away_summary", "memory_saved", "api_metrics", "whatever", None, 3):
        assert system(subtype, content="note").kind == "notification"
    assert system("local_command").kind == "notification"


def attachment(body: Any, **extra: Any) -> Normalized:
    return FMT.normalize({"type": "attachment", "attachment": body, "sessionId": "s", "uuid": "u", **extra})


def test_a_prompt_queued_by_the_person_is_a_prompt() -> None:
    human = {"type": "queued_command", "commandMode": "prompt", "origin": {"kind": "human"}, "prompt": "also docs"}
    assert attachment(human) == Normalized("prompt", text="also docs", session_id="s")
    assert attachment({"type": "queued_command", "prompt": [{"type": "text", "text": "check"}]}).text == "check"
    assert attachment({"type": "queued_command", "prompt": "x"}).kind == "prompt"


@pytest.mark.parametrize(
    "body",
    [
        {"type": "queued_command", "commandMode": "task-notification", "prompt": "<task-notification>done</task-notification>"},
        {"type": "queued_command", "prompt": "<task-notification>done</task-notification>"},
        {"type": "queued_command", "origin": {"kind": "system"}, "prompt": "auto"},
        {"type": "queued_command"},
        {"type": "edited_text_file", "filename": "/w/plan.md", "snippet": "1\tplan"},
        {"type": "hook_success", "content": "ok"},
        None,
        [1],
    ],
)
def test_other_attachments_are_notifications(body: Any) -> None:
    assert attachment(body).kind == "notification"
    assert attachment(body, isSidechain=True).kind == "notification"


def test_bookkeeping_lines_are_notifications_with_their_text() -> None:
    cases = [
        ({"type": "summary", "summary": "Port to Rust", "leafUuid": "l"}, "Port to Rust"),
        ({"type": "custom-title", "customTitle": "design pass", "sessionId": "s"}, "design pass"),
        ({"type": "ai-title", "aiTitle": "Fix auth", "sessionId": "s"}, "Fix auth"),
        ({"type": "permission-mode", "permissionMode": "bypassPermissions", "sessionId": "s"}, "bypassPermissions"),
        ({"type": "pr-link", "prUrl": "https://x/pull/1", "prNumber": 1, "sessionId": "s"}, "https://x/pull/1"),
        ({"type": "queue-operation", "operation": "dequeue", "sessionId": "s"}, None),
        ({"type": "progress", "data": {"type": "bash_progress"}, "sessionId": "s", "uuid": "u"}, None),
        ({"type": "attribution-snapshot", "messageId": "m", "fileStates": {}}, None),
        ({"type": "summary", "summary": 3}, None),
    ]
    for record, text in cases:
        event = FMT.normalize(record)
        assert (event.kind, event.text) == ("notification", text), record


# --- hostile input ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        None, 3, 2.5, "x", [1, 2], True, {}, {"type": 7}, {"type": ["user"]}, {"type": {"a": 1}},
        {"type": "some-future-type", "sessionId": "s"}, {"type": "turn_end"},
        {"type": "user"}, {"type": "user", "message": 3}, {"type": "user", "message": {"content": 3}},
        {"type": "user", "message": {"content": [None, 1, "x", {"type": ["text"]}]}},
        {"type": "assistant"}, {"type": "assistant", "message": "x"},
        {"type": "assistant", "message": {"content": [None, {"type": "server_tool_use"}], "stop_reason": {"x": 1}}},
    ],
)
def test_unrecognised_records_are_raw(data: Any) -> None:
    event = FMT.normalize(data)
    assert event.kind == "raw" and not event.heartbeat


@pytest.mark.parametrize(
    "data",
    [
        {"type": "user", "sessionId": 5, "cwd": ["/w"], "isMeta": "yes", "message": {"content": "hi"}},
        {"type": "user", "message": {"content": [{"type": "tool_result", "content": {"a": 1}, "is_error": "yes"}]}},
        {"type": "user", "message": {"content": [{"type": "text", "text": 5}, {"type": "text", "text": "ok"}]}},
        {
            "type": "assistant",
            "isSidechain": "no",
            "costUSD": [1],
            "message": {"content": [{"type": "tool_use", "name": 3, "input": "x"}], "usage": 5},
        },
        {"type": "assistant", "message": {"model": ["<synthetic>"], "content": [{"type": "thinking", "thinking": None}]}},
        {"type": "system", "subtype": ["compact_boundary"], "content": 4},
        {"type": "system", "subtype": "local_command", "content": "<command-name>"},
        {"type": "attachment", "attachment": {"type": "queued_command", "origin": "human", "prompt": {}, "commandMode": []}},
        {"type": "summary", "summary": None, "leafUuid": 1},
    ],
)
def test_wrong_field_types_read_as_nothing(data: Any) -> None:
    event = FMT.normalize(data)
    assert event.kind in KINDS
    assert event.session_id is None and event.cwd is None
    assert event.usage is None and event.cost_usd is None
    assert event.text is None or isinstance(event.text, str)
    assert event.tool is None or isinstance(event.tool, str)


# --- sniff -----------------------------------------------------------------------------------


def foreign_fixture_records() -> list[tuple[str, Any]]:
    """Every record of every fixture file of the other formats."""
    found: list[tuple[str, Any]] = []
    for path in sorted(FIXTURES.rglob("*")):
        if path.parent.name == "claude-transcript":
            continue
        if path.suffix in (".jsonl", ".ndjson"):
            found += [(path.name, record) for record in fixture_records(str(path.relative_to(FIXTURES)))]
        elif path.suffix == ".json":
            found += [(path.name, record) for record in json.loads(path.read_text(encoding="utf-8"))]
    return found


@pytest.mark.parametrize("fixture", list(EXPECTED))
def test_sniff_knows_every_transcript_line(fixture: str) -> None:
    assert all(FMT.sniff(record) for record in fixture_records(fixture))


def test_sniff_rejects_every_record_of_the_other_formats() -> None:
    foreign = foreign_fixture_records()
    sources = {name.split("__")[0] for name, _ in foreign}
    assert len(foreign) > 250
    assert sources >= {"claude-agent-sdk-gleam", "terragon-oss", "serverless-plugins", "agentcmd", "localpush"}
    assert [name for name, record in foreign if FMT.sniff(record)] == []


@pytest.mark.parametrize(
    "data",
    [
        None, 1, "user", [], {}, {"type": 3}, {"type": ["user"]},
        {"type": "user", "sessionId": "s"},  # no uuid
        {"type": "user", "uuid": "u", "sessionId": 7},
        {"type": "assistant", "uuid": "u", "session_id": "s", "message": {}},  # stream-json
        {"type": "user", "uuid": "u", "sessionId": "s", "session_id": "s"},
        {"type": "summary", "summary": "x"},
        {"type": "file-history-snapshot", "messageId": "m", "snapshot": "x"},
        {"type": "queue-operation", "operation": "enqueue"},
        {"type": "result", "subtype": "success", "sessionId": "s", "uuid": "u"},
        {"hook_event_name": "Stop", "session_id": "s", "transcript_path": "/x.jsonl"},
    ],
)
def test_sniff_rejects_what_is_not_unmistakably_a_transcript_line(data: Any) -> None:
    assert FMT.sniff(data) is False


def test_sniff_knows_bookkeeping_lines_of_newer_versions() -> None:
    assert FMT.sniff({"type": "custom-title", "customTitle": "t", "sessionId": "s"})
    assert FMT.sniff({"type": "attachment", "attachment": {}, "sessionId": "s", "uuid": "u"})
    assert not FMT.sniff({"type": "custom-title", "customTitle": "t"})


# --- through a real daemon -------------------------------------------------------------------


@pytest.mark.parametrize("fixture", list(EXPECTED))
async def test_transcripts_are_stored_completely_with_their_kinds(state_dir, fixture: str) -> None:
    records = fixture_records(fixture)
    async with running_daemon(state_dir) as d:
        await stream_all(d, "claude-1", "claude-transcript", records)
        events = await stored(d, "claude-1")
    assert [e["data"] for e in events] == records
    assert [e["kind"] for e in events] == expected_kinds(fixture)
    assert {e["format"] for e in events} == {"claude-transcript"}
    assert [e["seq"] for e in events] == list(range(1, len(records) + 1))
