"""What the command line prints: agentwatch.render against real recordings and the watch API's shapes."""

from __future__ import annotations

import io
import json
import re
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from agentwatch.model import Format, Normalized, iso_ms
from agentwatch.plugins.formats.claude_stream_json import agentwatch_register_formats
from agentwatch.render import (
    Column,
    Painted,
    Style,
    agents_table,
    ago,
    attention_table,
    columns,
    event_line,
    fit,
    fit_end,
    fit_styled,
    parse_time,
    sessions_table,
    status_text,
    style_for,
    table,
    waited,
)
from agentwatch.summaries import summary

FIXTURES = Path(__file__).parent / "fixtures" / "claude-stream-json"
BASIC = "claude-agent-sdk-gleam__basic_query.ndjson"
BASH = "terragon-oss__claude-json-bash-test.DERIVED.ndjson"
PLAIN = Style(color=False)
COLOR = Style(color=True)
ANSI = re.compile(r"\x1b\[[0-9;]*m")
NOW = parse_time("2026-11-21T10:00:00.000Z")
assert NOW is not None


def _claude() -> Format:
    registered: list[Format] = []
    agentwatch_register_formats(registered.append)
    return registered[0]


CLAUDE = _claude()


def records(name: str) -> list[tuple[dict[str, Any], Normalized]]:
    lines = (FIXTURES / name).read_text().splitlines()
    return [(record, CLAUDE.normalize(record)) for record in map(json.loads, filter(str.strip, lines))]


def of_kind(name: str, kind: str) -> list[tuple[dict[str, Any], Normalized]]:
    return [(record, n) for record, n in records(name) if n.kind == kind]


def first_block(record: dict[str, Any], block_type: str) -> dict[str, Any]:
    return next(b for b in record["message"]["content"] if b["type"] == block_type)


# --- Style ---


def test_plain_style_changes_nothing() -> None:
    assert (PLAIN.bold("a"), PLAIN.dim("b"), PLAIN.tier(1, "c")) == ("a", "b", "c")


@pytest.mark.parametrize(("tier", "code"), [(1, "31"), (2, "33"), (3, "36")])
def test_tiers_have_their_colour(tier: int, code: str) -> None:
    assert COLOR.tier(tier, "x") == f"\x1b[{code}mx\x1b[0m"


def test_unknown_tier_is_plain_and_bold_dim_are_escapes() -> None:
    assert COLOR.tier(4, "x") == "x"
    assert COLOR.bold("x") == "\x1b[1mx\x1b[0m" and COLOR.dim("x") == "\x1b[2mx\x1b[0m"


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_style_for_wants_a_terminal_without_no_color_or_dumb_term() -> None:
    assert style_for(io.StringIO(), {"TERM": "xterm"}).color is False
    assert style_for(_Tty(), {"TERM": "xterm"}).color is True
    assert style_for(_Tty(), {"TERM": "xterm", "NO_COLOR": ""}).color is True
    assert style_for(_Tty(), {"TERM": "xterm", "NO_COLOR": "1"}).color is False
    assert style_for(_Tty(), {"TERM": "dumb"}).color is False


# --- time ---


@pytest.mark.parametrize(
    ("before_ms", "expected"),
    [
        (-60_000, "just now"),  # a future time
        (4_999, "just now"),
        (5_000, "5 s ago"),
        (59_999, "59 s ago"),
        (60_000, "1 min ago"),
        (3_599_999, "59 min ago"),
        (3_600_000, "1 h ago"),
        (86_399_999, "23 h ago"),
        (2 * 86_400_000 + 3_600_000, "2 d ago"),
    ],
)
def test_ago_floors_to_its_largest_unit(before_ms: int, expected: str) -> None:
    assert ago(NOW - before_ms, NOW) == expected


def test_ago_of_nothing() -> None:
    assert ago(None, NOW) == "-"


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [
        (0, "0 s"),
        (59.9, "59 s"),
        (60, "1 min"),
        (12 * 60 + 59, "12 min"),
        (3 * 3600, "3 h"),
        (3 * 3600 + 5 * 60 + 59, "3 h 5 min"),
        (2 * 86400 + 3 * 3600 + 59 * 60, "2 d 3 h"),
        (-3, "0 s"),
    ],
)
def test_waited(seconds: float, expected: str) -> None:
    assert waited(seconds) == expected


def test_parse_time_reads_what_the_daemon_writes() -> None:
    assert iso_ms(parse_time("2026-11-21T10:00:00.125Z")) == "2026-11-21T10:00:00.125Z"
    assert parse_time("2026-11-21T11:00:00.125+01:00") == parse_time("2026-11-21T10:00:00.125Z")
    assert parse_time("2026-11-21T10:00:01.000Z") - NOW == 1000  # type: ignore[operator]
    assert parse_time(None) is None and parse_time("yesterday") is None and parse_time("") is None


# --- table ---


def test_table_aligns_styled_cells_by_their_visible_width() -> None:
    rows = [[Painted("needs_permission", COLOR.dim), "a1", ""], [Painted("idle", COLOR.bold), "agent-two", "x"]]
    out = table(["STATE", "AGENT", "NOTE"], rows, COLOR)
    lines = ANSI.sub("", out).splitlines()
    assert lines == [
        "STATE             AGENT      NOTE",
        "needs_permission  a1",
        "idle              agent-two  x",
    ]
    assert out.splitlines()[0].startswith("\x1b[1mSTATE\x1b[0m")
    assert not any(line.endswith(" ") for line in out.splitlines())


def test_table_without_rows_is_its_header() -> None:
    assert table(["A", "BB"], [], PLAIN) == "A  BB"


# --- summary, against real records ---


def test_tool_use_summaries_name_the_real_tool_and_command() -> None:
    uses = of_kind(BASH, "tool_use")
    assert len(uses) == 10
    for record, n in uses:
        block = first_block(record, "tool_use")
        assert summary("tool_use", n, record) == f"{block['name']}: {block['input']['command']}"


def test_turn_completed_shows_the_recorded_cost() -> None:
    for name, key in ((BASIC, "total_cost_usd"), (BASH, "cost_usd")):
        [(record, n)] = of_kind(name, "turn_completed")
        first = record["result"].splitlines()[0]
        assert summary("turn_completed", n, record) == f"${record[key]:.4f}, {first}"


def test_text_outputs_give_their_first_line() -> None:
    outputs = of_kind(BASH, "output") + of_kind(BASIC, "output")
    assert len(outputs) == 3
    for record, n in outputs:
        text = first_block(record, "text")["text"]
        assert summary("output", n, record) == text.splitlines()[0]


def test_tool_results_give_their_first_line_and_errors_say_so() -> None:
    results = of_kind(BASH, "tool_result")
    for record, n in results:
        block = first_block(record, "tool_result")
        first = block["content"].splitlines()[0]
        expected = f"error: {first}" if block["is_error"] else first
        assert summary("tool_result", n, record) == expected
    assert {n.is_error for _, n in results} == {True, False}  # both kinds were checked


def test_session_started_shows_the_recorded_cwd() -> None:
    [(record, n)] = of_kind(BASIC, "session_started")
    assert summary("session_started", n, record) == record["cwd"]
    assert summary("session_started", Normalized("session_started", session_id="s-1"), {}) == "s-1"


def test_raw_shows_the_record_type_or_its_json() -> None:
    record = {"type": "stream_event", "event": {}}
    assert summary("raw", CLAUDE.normalize(record), record) == "stream_event"
    assert summary("raw", Normalized("raw"), [1, {"a": "b"}]) == '[1,{"a":"b"}]'
    assert summary("raw", Normalized("raw"), None) == ""


def test_tool_input_without_a_main_argument_is_compact_json() -> None:
    n = Normalized("permission_request", tool="TodoWrite", input={"todos": [{"id": 1}], "path": ""})
    assert summary("permission_request", n, {}) == 'TodoWrite: {"todos":[{"id":1}],"path":""}'
    assert summary("tool_use", Normalized("tool_use", tool="Read", input={"file_path": "/a", "command": "ls"}), {}) == "Read: ls"


def test_turn_completed_parts() -> None:
    n = Normalized("turn_completed", text="\nboom\nmore", cost_usd=0.01234, is_error=True)
    assert summary("turn_completed", n, {}) == "$0.0123, error, boom"
    assert summary("turn_completed", Normalized("turn_completed"), {}) == ""


def test_summaries_are_cut_with_an_ellipsis_and_never_span_lines() -> None:
    long = Normalized("output", text="\n  \n" + "word " * 100 + "\nsecond line")
    cut = fit(summary("output", long, {}), 40)
    assert len(cut) == 40 and cut.endswith("…") and cut.startswith("word word")
    sneaky = Normalized("tool_use", tool="Bash", input={"command": "cd /x\nrm -rf build\x1b[2J\u2028done"})
    assert summary("tool_use", sneaky, {}) == "Bash: cd /x rm -rf build [2J done"
    for name in (BASIC, BASH):
        for record, n in records(name):
            line = fit(summary(n.kind, n, record), 30)
            assert len(line) <= 30 and "\n" not in line and "\x1b" not in line


# --- event lines ---


def test_event_line_from_a_real_record() -> None:
    record, n = of_kind(BASH, "tool_use")[0]
    received = "2026-11-21T10:00:00.125Z"
    event = {"agent_id": "a1", "seq": 7, "session": 1, "kind": "tool_use", "ts": None,
             "received_at": received, "format": "claude-stream-json", "data": record}
    local = datetime.fromisoformat(received).astimezone().strftime("%H:%M:%S")
    block = first_block(record, "tool_use")
    expected = f"{local}  a1  #7      tool_use{' ' * 10}  {block['name']}: {block['input']['command']}"
    assert event_line(event, n, PLAIN) == expected
    colored = event_line(event, n, COLOR)
    assert "\x1b[2mtool_use\x1b[0m" in colored and ANSI.sub("", colored) == expected


def test_event_line_fits_its_width() -> None:
    record, n = of_kind(BASH, "output")[-1]
    event = {"agent_id": "a1", "seq": 23, "kind": "output", "received_at": "2026-11-21T10:00:00Z", "data": record}
    line = event_line(event, n, PLAIN, width=70)
    assert len(line) == 70 and line.endswith("…")


# --- tables of the watch API ---

ITEMS = [
    {"agent_id": "a2", "session": 1, "state": "awaiting_reply", "tier": 3, "since": iso_ms(NOW - 812_000),
     "waiting_s": 1, "last_speaker": "agent", "cwd": None, "uncommitted_work": None, "summary": "done\nall " + "x" * 80},
    {"agent_id": "a1", "session": 3, "state": "needs_permission", "tier": 1, "since": None,
     "waiting_s": 3 * 3600 + 300, "last_speaker": "agent", "cwd": "/home/u/proj", "uncommitted_work": True, "summary": None},
    {"agent_id": "a3", "session": 2, "state": "error", "tier": 2, "since": iso_ms(NOW - 45_000),
     "waiting_s": 45, "last_speaker": "agent", "cwd": "/srv/x", "uncommitted_work": False, "summary": "failed"},
]


def test_attention_table_keeps_the_order_given() -> None:
    lines = attention_table(ITEMS, NOW, PLAIN).splitlines()
    assert lines[0].split() == ["STATE", "AGENT", "SESSION", "WAITING", "GIT", "CWD", "SUMMARY"]
    assert [line.split()[0] for line in lines[1:]] == ["awaiting_reply", "needs_permission", "error"]
    first, second, third = lines[1:]
    assert "13 min" in first and " - " in first and first.endswith("done all " + "x" * 80), "piped: not cut"
    assert "3 h 5 min" in second and "dirty" in second and "/home/u/proj" in second
    assert "45 s" in third and "clean" in third


def test_attention_table_colours_states_by_tier() -> None:
    out = attention_table(ITEMS, NOW, COLOR)
    assert "\x1b[36mawaiting_reply" in out and "\x1b[31mneeds_permission" in out and "\x1b[33merror" in out
    assert "\x1b" not in attention_table(ITEMS, NOW, PLAIN)


def test_empty_lists_say_so() -> None:
    assert attention_table([], NOW, COLOR) == "Nothing needs you."
    assert agents_table([], NOW, COLOR) == "No agents yet."
    assert sessions_table([], NOW, COLOR) == "No sessions yet."


def test_agents_table() -> None:
    agents = [
        {"agent_id": "a1", "name": "builder", "kind": "claude", "cwd": "/w", "host": "h", "pid": 1, "labels": {},
         "session": 2, "acked_seq": 1042, "last_event_at": iso_ms(NOW - 125_000), "first_seen_at": None,
         "last_seen_at": None, "connected": True},
        {"agent_id": "a2", "name": None, "kind": None, "cwd": None, "host": None, "pid": None, "labels": {},
         "session": 0, "acked_seq": 0, "last_event_at": None, "first_seen_at": None, "last_seen_at": None,
         "connected": False},
    ]
    lines = agents_table(agents, NOW, PLAIN).splitlines()
    assert lines[1].split() == ["a1", "builder", "claude", "connected", "2", "1042", "2", "min", "ago", "/w"]
    assert lines[2].split() == ["a2", "-", "-", "gone", "0", "0", "-", "-"]
    colored = agents_table(agents, NOW, COLOR)
    assert "\x1b[1mconnected\x1b[0m" in colored and "\x1b[2mgone\x1b[0m" in colored


def test_sessions_table() -> None:
    sessions = [{"agent_id": "a1", "session": 3, "started_at": iso_ms(NOW - 7200_000),
                 "last_event_at": iso_ms(NOW - 2_000), "events": 17, "ended_at": None, "state": "active"}]
    lines = sessions_table(sessions, NOW, PLAIN).splitlines()
    assert lines[0].split() == ["AGENT", "SESSION", "STATE", "EVENTS", "STARTED", "LAST", "EVENT"]
    assert lines[1].split() == ["a1", "3", "active", "17", "2", "h", "ago", "just", "now"]


def test_status_text() -> None:
    status = {"version": "0.1.0", "uptime_s": 3 * 3600 + 360.5, "agents_connected": 1, "agents_known": 4,
              "events_stored": 1234, "plugins": ["retention", "stall"], "plugin_errors": {},
              "formats": ["agentwatch"], "listen": ["127.0.0.1:7777", "/run/agentwatch.sock"]}
    lines = dict(line.split(":", 1) for line in status_text(status, PLAIN).splitlines())
    assert {key: value.strip() for key, value in lines.items()} == {
        "version": "0.1.0",
        "uptime": "3 h 6 min",
        "listening": "127.0.0.1:7777, /run/agentwatch.sock",
        "agents": "1 connected, 4 known",
        "events stored": "1234",
        "plugins": "retention, stall",
    }
    with_errors = status_text({**status, "plugin_errors": {"stall": 3}}, COLOR)
    assert "\x1b[31mstall (3)\x1b[0m" in with_errors


# --- widths: cut with "…", never wrapped ---

LONG_ITEMS = [
    {"agent_id": "codex-very-long-agent-name-for-the-refactoring-of-the-billing-module-7", "session": 12,
     "state": "needs_permission", "tier": 1, "since": iso_ms(NOW - 90_000), "waiting_s": 90, "last_speaker": "agent",
     "cwd": "/home/u/work/billing-service/with/a/very/long/path/to/somewhere", "uncommitted_work": True,
     "summary": "Bash: cd /home/u/work/billing-service && python -m pytest tests/test_invoices.py -k rounding -x -q"},
    {"agent_id": "claude-1", "session": 1, "state": "awaiting_reply", "tier": 3, "since": iso_ms(NOW - 5_000),
     "waiting_s": 5, "last_speaker": "agent", "cwd": "/w", "uncommitted_work": None,
     "summary": "I refactored the billing module 🎉 and all 231 tests pass; 修正しました, the rounding bug is gone."},
]


@pytest.mark.parametrize("width", [60, 80, 100, 150])
@pytest.mark.parametrize("style", [PLAIN, COLOR], ids=["plain", "colour"])
def test_attention_table_fits_the_width_in_terminal_columns(width: int, style: Style) -> None:
    """A long agent id wrapped every row at 100 columns, and summaries at 150."""
    lines = attention_table(LONG_ITEMS, NOW, style, width).splitlines()
    assert len(lines) == 3
    for line in lines:
        assert columns(ANSI.sub("", line)) <= width, line
    plain = [ANSI.sub("", line) for line in lines]
    assert plain[1].startswith("needs_permission  codex-ver") and "…" in plain[1] and "module-7 " in plain[1], "an id keeps its ends"
    assert plain[2].startswith("awaiting_reply    claude-1 "), "short cells are not cut"
    if width >= 100:
        cwd = next(cell for cell in plain[1].split("  ") if cell.startswith("…") and cell.endswith("somewhere"))
        assert LONG_ITEMS[0]["cwd"].endswith(cwd[1:]), "a path keeps its end"
        assert plain[0].split() == ["STATE", "AGENT", "SESSION", "WAITING", "GIT", "CWD", "SUMMARY"]
    if width == 60:
        assert "SESSION" not in plain[0] and "SUMMARY" in plain[0], "the least useful columns go first"


def test_wider_terminals_show_more_of_the_summary() -> None:
    shown = [attention_table(LONG_ITEMS, NOW, PLAIN, width).splitlines()[1].split("  ")[-1] for width in (100, 150, 250)]
    assert len(shown[0]) < len(shown[1]) < len(shown[2])
    assert shown[2] == LONG_ITEMS[0]["summary"], "uncut when it fits"


def test_wide_characters_count_as_two_columns() -> None:
    assert columns("🎉修正") == 6 and columns("e\u0301") == 1
    cut = fit("修正しました and more", 7)
    assert cut == "修正し…" and columns(cut) == 7
    rows = [["修正", "x"], ["ab", "y"]]
    first, second = table(["A", "B"], rows, PLAIN).splitlines()[1:]
    assert columns(first[: first.index("x")]) == columns(second[: second.index("y")]) == 6, "aligned on screen"


def test_a_table_too_narrow_for_its_floors_cuts_its_lines() -> None:
    lines = attention_table(LONG_ITEMS, NOW, COLOR, 30).splitlines()
    assert all(columns(ANSI.sub("", line)) <= 30 for line in lines)
    assert lines[1].startswith("\x1b[31mneeds_permission\x1b[0m") and lines[1].endswith("…"), "cut after the colour ended"
    assert fit_styled(COLOR.tier(1, "needs_permission"), 8).endswith("…\x1b[0m"), "a line cut in colour resets it"


def test_fit_styled_keeps_escapes_and_counts_only_what_shows() -> None:
    line = COLOR.tier(1, "needs_permission") + "  agent"
    assert fit_styled(line, 100) == line
    cut = fit_styled(line, 10)
    assert ANSI.sub("", cut) == "needs_per…" and cut.startswith("\x1b[31m") and cut.endswith("\x1b[0m")


def test_a_column_may_keep_its_end_and_may_be_left_out() -> None:
    layout = [Column("ID", floor=4), Column("PATH", floor=8, cut=fit_end), Column("NOTE", drop=1)]
    rows = [["a1", "/very/long/path/to/project", "a note that is long"]]
    header, row = table(layout, rows, PLAIN, 30).splitlines()
    assert row.startswith("a1  …") and "to/project" in row and columns(row) <= 30
    header, row = table(layout, rows, PLAIN, 12).splitlines()
    assert header.split() == ["ID", "PATH"], "NOTE may go"


def test_agents_and_sessions_tables_fit_too() -> None:
    agents = [{"agent_id": LONG_ITEMS[0]["agent_id"], "name": "billing refactor with a long name", "kind": "codex",
               "connected": True, "session": 3, "acked_seq": 120_345, "last_event_at": iso_ms(NOW - 1000),
               "cwd": LONG_ITEMS[0]["cwd"]}]
    sessions = [{"agent_id": LONG_ITEMS[0]["agent_id"], "session": 3, "state": "active", "events": 120_345,
                 "started_at": iso_ms(NOW - 7200_000), "last_event_at": iso_ms(NOW - 1000)}]
    for width in (60, 100):
        for text in (agents_table(agents, NOW, COLOR, width), sessions_table(sessions, NOW, COLOR, width)):
            assert all(columns(ANSI.sub("", line)) <= width for line in text.splitlines()), text
        assert "connected" in agents_table(agents, NOW, PLAIN, width)


# --- event lines: aligned, coloured by urgency ---


def _event(agent_id: str, seq: int, kind: str) -> dict[str, Any]:
    return {"agent_id": agent_id, "seq": seq, "kind": kind, "received_at": "2026-11-21T10:00:00Z", "data": {}}


def test_event_lines_align_their_agent_column() -> None:
    """The agent column was not padded: the seq and kind columns moved with every agent id."""
    ids = ["claude-1", "codex-very-long-agent-name-for-the-billing-refactor-7", "gemini-3"]
    for width in (60, 100, 150):
        lines = [event_line(_event(agent_id, 7, "output"), Normalized("output", text="hi " * 60), PLAIN, width, aligned=True)
                 for agent_id in ids]
        assert len({line.index("#7") for line in lines}) == 1
        assert all(len(line) == width for line in lines), "cut to the width, never wrapped"
    assert "codex-very-l…g-refactor-7  #7" in lines_at(100)[1], "an id past a quarter of the width is cut in its middle"
    assert event_line(_event("a1", 7, "output"), Normalized("output", text="hi"), PLAIN, 100).startswith("10:00:00  a1  #7"), (
        "the lines of one agent need no room for others"
    )


def lines_at(width: int) -> list[str]:
    ids = ["claude-1", "codex-very-long-agent-name-for-the-billing-refactor-7"]
    return [event_line(_event(agent_id, 7, "output"), Normalized("output"), PLAIN, width, aligned=True) for agent_id in ids]


def test_an_event_line_never_wraps_on_a_narrow_terminal() -> None:
    """The summary kept 20 columns whatever the width: lines wrapped below about 77 columns."""
    for width in (30, 45, 60):
        line = event_line(_event("claude-1", 1234, "permission_request"), Normalized("permission_request", tool="Bash",
                          input={"command": "npm publish"}), COLOR, width, aligned=True)
        assert columns(ANSI.sub("", line)) <= width, line


@pytest.mark.parametrize(("kind", "normalized", "code"), [
    ("permission_request", Normalized("permission_request", tool="Bash", input={"command": "rm -rf build"}), "31"),
    ("error", Normalized("error", text="API quota exceeded"), "33"),
    ("tool_result", Normalized("tool_result", text="exit 1", is_error=True), "33"),
    ("turn_completed", Normalized("turn_completed", text="done"), "36"),
    ("output", Normalized("output", text="hi"), "2"),
    ("tool_use", Normalized("tool_use", tool="Bash"), "2"),
])
def test_event_kinds_are_coloured_by_urgency(kind: str, normalized: Normalized, code: str) -> None:
    """Every kind was dim, permission_request and error included."""
    line = event_line(_event("a1", 1, kind), normalized, COLOR, 100)
    assert f"\x1b[{code}m{kind}\x1b[0m" in line


def test_permission_requests_say_what_waits() -> None:
    """A Notification-style permission request (no tool) had an empty summary."""
    hooks = Path(__file__).parent / "fixtures" / "claude-hooks"
    from agentwatch.plugins.formats.claude_hook import agentwatch_register_formats

    registered: list[Format] = []
    agentwatch_register_formats(registered.append)
    hook = registered[0]
    request = json.loads((hooks / "home-assistant-green-button__permission_request.json").read_text())[2]
    [notification] = json.loads((hooks / "serverless-plugins__abc7156b__notification.json").read_text())
    assert summary("permission_request", hook.normalize(request), request) == (
        'Bash: cd "c:\\Users\\Tom\\Documents\\GitHub\\home-assistant-green-button-tom" && '
        'cat .claude/hooks/validators/ty_validator.py 2>/dev/null || echo "not found"'
    )
    assert summary("permission_request", hook.normalize(notification), notification) == "Claude needs your permission"
    codex = Normalized("permission_request", tool="request_user_input", input=[{"id": "q"}], text="Which database?\nPick one")
    assert summary("permission_request", codex) == "Which database?", "questions, not their JSON"


def test_a_long_agent_id_keeps_its_start_and_its_end() -> None:
    """Ids were cut at their end: an imported file's id lost the hash that tells it from its siblings."""
    from agentwatch.render import fit_middle

    agent_id = "claude-spotter__tool_heavy-1a2b3c4d"
    assert fit_middle(agent_id, 20) == "claude-sp…y-1a2b3c4d" and fit_middle(agent_id, 99) == agent_id
    row = attention_table([{**LONG_ITEMS[1], "agent_id": agent_id}], NOW, PLAIN, 100).splitlines()[1]
    assert "claude-sp…y-1a2b3c4d" in row
    line = event_line(_event(agent_id, 3, "output"), Normalized("output"), PLAIN, 60, aligned=True)
    assert "claude-…a2b3c4d  #3" in line, line
