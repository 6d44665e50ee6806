"""Session facts: what each session's events established, kept with the events."""

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentwatch.model import Normalized
from agentwatch.plugins.formats.claude_stream_json import ClaudeStreamJsonFormat
from agentwatch.session_facts import SUMMARY_CHARS, SessionFacts, apply, newer
from helpers import agent, fixture_records, running_daemon


def replay(*events):
    facts = SessionFacts()
    for at, (kind, fields) in enumerate(events, start=1):
        apply(facts, kind, Normalized(kind, **fields), at * 1000)
    return facts


def test_a_prompt_opens_a_turn_and_the_agent_finishing_it_awaits_the_person():
    facts = replay(("prompt", {"text": "fix it"}), ("output", {"text": "Done.\n\nAll   tests pass."}), ("turn_completed", {}))
    assert (facts.last_speaker, facts.turn_open, facts.turn_completed_at) == ("agent", False, 3000)
    assert facts.summary == "Done. All tests pass." and facts.failed_at is None and facts.acted_at == 1000


def test_permission_requests_count_and_resolve():
    facts = replay(("prompt", {}), ("permission_request", {"tool": "Bash"}), ("permission_request", {"tool": "Edit"}))
    assert (facts.permissions_pending, facts.permission_since, facts.turn_open) == (2, 2000, True)
    apply(facts, "permission_resolved", Normalized("permission_resolved"), 4000)
    assert (facts.permissions_pending, facts.permission_since, facts.acted_at) == (1, 2000, 4000)
    apply(facts, "prompt", Normalized("prompt"), 5000)  # the person moved on: nothing is pending
    assert (facts.permissions_pending, facts.permission_since) == (0, None)


def test_a_failed_turn_is_remembered_until_the_person_speaks():
    facts = replay(("prompt", {}), ("turn_completed", {"is_error": True, "text": "max turns"}))
    assert facts.failed_at == 2000 and facts.summary == "max turns"
    assert replay(("prompt", {}), ("error", {})).failed_at == 2000
    assert replay(("prompt", {}), ("error", {}), ("prompt", {})).failed_at is None


def test_tools_open_and_close_in_parallel():
    facts = replay(("tool_use", {}), ("tool_use", {}), ("tool_result", {}))
    assert (facts.tools_open, facts.tool_since) == (1, 1000)
    apply(facts, "tool_result", Normalized("tool_result"), 4000)
    assert (facts.tools_open, facts.tool_since) == (0, None)


def test_the_session_ends_and_resumes():
    facts = replay(("prompt", {}), ("session_ended", {}))
    assert (facts.ended_at, facts.turn_open) == (2000, False)
    apply(facts, "session_started", Normalized("session_started", cwd="/w"), 3000)
    assert (facts.ended_at, facts.cwd) == (None, "/w")


def test_the_summary_is_shortened():
    facts = replay(("output", {"text": "x" * 1000}))
    assert facts.summary is not None and len(facts.summary) == SUMMARY_CHARS


def test_facts_survive_json_and_ignore_unknown_keys():
    facts = replay(("prompt", {}), ("permission_request", {}))
    assert SessionFacts.from_json(facts.to_json()) == facts
    assert SessionFacts.from_json('{"last_speaker": "agent", "from_the_future": 1}').last_speaker == "agent"


def test_a_real_claude_run_ends_awaiting_the_person():
    fmt = ClaudeStreamJsonFormat()
    facts = SessionFacts()
    for at, record in enumerate(fixture_records("claude-stream-json/terragon-oss__claude-json-bash-test.DERIVED.ndjson")):
        normalized = fmt.normalize(record)
        apply(facts, normalized.kind, normalized, at)
    assert (facts.last_speaker, facts.turn_open, facts.tools_open, facts.failed_at) == ("agent", False, 0, None)
    assert facts.cwd is not None and facts.summary


@pytest.mark.parametrize("restart", [False, True])
async def test_the_store_keeps_facts_with_the_events_exactly_across_restarts(state_dir, restart):
    async with running_daemon(state_dir) as d, agent(d, "a1") as a:
        await a.hello(cwd="/home/u/proj")
        await a.batch([1, 2, 3], lambda seq: {"kind": ["prompt", "output", "permission_request"][seq - 1], "text": f"t{seq}"})
        await a.until_ack(3)
        live = await d.daemon.store.current_sessions()
    if restart:
        async with running_daemon(state_dir) as d:
            live_after = await d.daemon.store.current_sessions()
        assert live_after == live
    facts = live[("a1", 0)]
    assert (facts.cwd, facts.last_speaker, facts.permissions_pending, facts.summary) == ("/home/u/proj", "agent", 1, "t2")


async def test_a_context_clear_starts_fresh_facts_and_keeps_the_cwd(state_dir):
    async with running_daemon(state_dir) as d, agent(d, "a1") as a:
        await a.hello(cwd="/w")
        await a.batch([1, 2, 3], lambda seq: {"kind": ["permission_request", "context_cleared", "output"][seq - 1], "text": "hi"})
        await a.until_ack(3)
        sessions = await d.daemon.store.current_sessions()
    assert list(sessions) == [("a1", 1)]
    facts = sessions[("a1", 1)]
    assert (facts.permissions_pending, facts.cwd, facts.last_speaker) == (0, "/w", "agent")


def test_a_restart_of_the_session_clears_what_it_was_doing():
    facts = replay(("prompt", {}), ("tool_use", {}), ("turn_completed", {"is_error": True, "text": "boom"}), ("session_ended", {}))
    apply(facts, "session_started", Normalized("session_started"), 9000)
    assert (facts.failed_at, facts.turn_completed_at, facts.turn_open, facts.tools_open) == (None, None, False, 0)
    assert facts.summary == "boom", "what it said stays"
    killed = replay(("prompt", {}), ("tool_use", {}), ("session_started", {}))
    assert (killed.turn_open, killed.tools_open) == (False, 0)


def test_the_agent_moving_on_settles_a_permission_request_nobody_reported_answered():
    for progress in ("tool_result", "output", "thinking"):
        facts = replay(("prompt", {}), ("tool_use", {}), ("permission_request", {}), (progress, {}))
        assert (facts.permissions_pending, facts.permission_since) == (0, None), progress


def test_a_snapshot_read_at_start_never_overrides_or_revives_what_commits_delivered():
    snapshot = {("a", 0): SessionFacts(summary="old a"), ("b", 3): SessionFacts(summary="b"), ("c", 1): SessionFacts()}
    live = {("a", 1): SessionFacts(summary="a after a clear"), ("c", 1): SessionFacts(summary="c live")}
    assert newer(snapshot, live) == {("b", 3): SessionFacts(summary="b")}
    assert newer(snapshot, live, removed=[("b", 3)]) == {}, "a session retention removed meanwhile stays gone"


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(["word", "x" * 290, " ", "\n\n", "\t", " " * 1500, "é"]), max_size=40))
def test_a_long_message_is_summarised_as_if_it_were_folded_whole(parts):
    text = "".join(parts)
    folded = " ".join(text.split())
    expected = folded if len(folded) <= SUMMARY_CHARS else folded[: SUMMARY_CHARS - 1] + "…"
    assert replay(("output", {"text": text})).summary == (expected if text else None)


def _hooks(name):
    """The records of a Claude Code hook fixture, normalized."""
    from agentwatch.plugins.formats.claude_hook import agentwatch_register_formats

    registered = []
    agentwatch_register_formats(registered.append)
    records = json.loads((Path(__file__).parent / "fixtures" / "claude-hooks" / name).read_text())
    return [registered[0].normalize(record) for record in records]


def test_a_pending_permission_says_what_waits_and_the_attention_item_shows_it():
    """A needs_permission item said the agent's last words (or nothing): the most urgent state said the least."""
    from agentwatch.plugins.attention.feed import item, need_of

    request = _hooks("home-assistant-green-button__permission_request.json")[0]
    facts = replay(("prompt", {"text": "validate"}), ("output", {"text": "Let me check the files."}))
    apply(facts, "permission_request", request, 3000)
    assert facts.asking.startswith('Bash: cd "c:/Users/Tom/Documents/GitHub/home-assistant-green-button-tom" && python -c')
    need = need_of(facts)
    assert need.state == "needs_permission"
    assert item(("a", 1), need, facts, 4000, None)["summary"] == facts.asking
    [notification] = _hooks("serverless-plugins__abc7156b__notification.json")
    apply(facts, "permission_request", notification, 3500)
    assert facts.asking.startswith("Bash: "), "a notification's words do not replace the tool call they are about"
    apply(facts, "tool_result", Normalized("tool_result", text="ok"), 5000)
    assert (facts.asking, need_of(facts)) == (None, None)
    alone = replay(("prompt", {}))
    apply(alone, "permission_request", notification, 2000)
    assert item(("a", 1), need_of(alone), alone, 3000, None)["summary"] == "Claude needs your permission"


def test_a_stalled_item_names_the_tool_that_runs():
    from agentwatch.plugins.attention.feed import item, need_of

    facts = replay(("prompt", {}), ("output", {"text": "Running the suite."}),
                   ("tool_use", {"tool": "Bash", "input": {"command": "npm test -- --watch=false"}}))
    stalled = need_of(facts, stalled_since=9000)
    assert item(("a", 1), stalled, facts, 10_000, None)["summary"] == "Bash: npm test -- --watch=false"
    apply(facts, "tool_result", Normalized("tool_result"), 11_000)
    assert facts.running is None and item(("a", 1), need_of(facts, 12_000), facts, 13_000, None)["summary"] == "Running the suite."
