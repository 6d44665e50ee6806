"""Real agent recordings (tests/fixtures, see MANIFEST.txt) streamed through a real daemon."""

import pytest

from agentwatch.plugins.formats.claude_stream_json import ClaudeStreamJsonFormat
from helpers import every_fixture_record, fixture_records, running_daemon, stored, stream_all

STREAM_JSON = [
    "claude-stream-json/claude-agent-sdk-gleam__basic_query.ndjson",
    "claude-stream-json/terragon-oss__claude-json-bash-test.DERIVED.ndjson",
]


@pytest.mark.parametrize("fixture", STREAM_JSON)
async def test_stream_json_recordings_are_stored_completely_with_their_kinds(state_dir, fixture):
    records = fixture_records(fixture)
    async with running_daemon(state_dir) as d:
        await stream_all(d, "claude-1", "claude-stream-json", records)
        events = await stored(d, "claude-1")
    assert [e["data"] for e in events] == records
    assert [e["kind"] for e in events] == [ClaudeStreamJsonFormat().normalize(r).kind for r in records]
    assert {e["format"] for e in events} == {"claude-stream-json"}
    assert "raw" not in {e["kind"] for e in events}, "every record of these recordings is understood"


async def test_every_record_of_every_recording_is_stored_even_in_a_foreign_format(state_dir):
    """Transcripts, hooks and Codex records sent as claude-stream-json: unfamiliar, never dropped."""
    records = [record for _, record in every_fixture_record()]
    assert len(records) > 400
    async with running_daemon(state_dir) as d:
        await stream_all(d, "mixed", "claude-stream-json", records)
        events = await stored(d, "mixed")
    assert [e["data"] for e in events] == records
