"""Records cut to fit a frame (src/agentwatch/record_cap.py) and lines read in bounded memory
(src/agentwatch/record_lines.py): what is kept, what the marker says, and, for any JSON value at
all, a result that fits the limit and is strict JSON the daemon takes."""

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentwatch import strict_json
from agentwatch.record_cap import ENVELOPE, MARKER, MAX_DEPTH, MIN_ROOM, event_text, fitted, smaller_limit, to_json
from agentwatch.record_lines import Line, LineSplitter, record_of

LIMIT = 64 << 10


def size(text: str) -> int:
    return len(text.encode())


def test_a_record_that_fits_is_untouched_and_written_as_utf_8():
    record = {"type": "user", "text": "naïve 日本語 \u2028"}
    assert fitted(record, LIMIT) == json.dumps(record, ensure_ascii=False, separators=(",", ":"))


def test_a_lone_surrogate_falls_back_to_ascii_escapes():
    text = fitted({"prompt": "half \ud83d"}, LIMIT)
    text.encode()  # would raise if the surrogate were written raw
    assert json.loads(text) == {"prompt": "half \ud83d"}


def test_the_largest_strings_are_cut_to_one_length_and_the_marker_names_them():
    record = {"hook_event_name": "PostToolUse", "session_id": "s" * 36, "tool_name": "Bash",
              "tool_response": {"stdout": "o" * 100_000, "stderr": "e" * 50_000, "note": "kept short"}}
    cut = json.loads(fitted(record, LIMIT))
    assert size(json.dumps(cut)) <= LIMIT - ENVELOPE
    assert {key: cut[key] for key in ("hook_event_name", "session_id", "tool_name")} == {
        "hook_event_name": "PostToolUse", "session_id": "s" * 36, "tool_name": "Bash"}
    stdout, stderr = cut["tool_response"]["stdout"], cut["tool_response"]["stderr"]
    assert len(stdout) == len(stderr) and stdout.endswith("…") and stdout[:-1] == "o" * (len(stdout) - 1)
    assert cut["tool_response"]["note"] == "kept short", "small strings are left alone"
    assert cut[MARKER] == {"bytes": size(to_json(record)), "fields": {"tool_response.stdout": 100_002, "tool_response.stderr": 50_002}, "more": 0}


def test_multibyte_text_is_cut_on_character_boundaries_within_the_limit():
    cut = json.loads(fitted({"prompt": "日本語" * 100_000}, LIMIT))
    assert set(cut["prompt"][:-1]) == set("日本語")
    assert size(to_json(cut)) <= LIMIT - ENVELOPE


def test_nesting_deeper_than_the_limit_is_cut_and_noted():
    deep: object = 1
    for _ in range(MAX_DEPTH + 50):
        deep = {"a": deep}
    cut = json.loads(fitted(deep, LIMIT))
    depth, node = 0, cut
    while isinstance(node, dict) and "a" in node:
        node, depth = node["a"], depth + 1
    assert depth == MAX_DEPTH and isinstance(node, str) and "nested deeper" in node
    assert list(cut[MARKER]["fields"]) == ["a" + ".a" * (MAX_DEPTH - 1)]


def test_a_long_list_of_short_strings_keeps_its_head_and_the_small_fields_beside_it():
    """A Glob's 60 000 file names used to be cut to 32 characters each, then dropped with all of
    tool_response and tool_input: 698 bytes of 3.5 MB were left."""
    names = [f"src/module_{n:05d}/component_{n:05d}_implementation.py" for n in range(60_000)]
    record = {"hook_event_name": "PostToolUse", "tool_name": "Glob", "tool_input": {"pattern": "**/*"},
              "tool_response": {"filenames": names, "numFiles": 60_000, "truncated": False}}
    text = fitted(record, 1 << 20)
    cut = json.loads(text)
    assert size(text) > 900_000, "it keeps about as much as fits"
    assert cut["tool_input"] == {"pattern": "**/*"}
    assert cut["tool_response"]["numFiles"] == 60_000 and cut["tool_response"]["truncated"] is False
    kept = cut["tool_response"]["filenames"]
    assert kept == names[: len(kept)] and len(kept) > 10_000, "whole names, from the first"
    assert list(cut[MARKER]["fields"]) == ["tool_response.filenames"]


def test_strings_stay_whole_when_a_list_can_give_the_bytes():
    record = {"type": "x", "tool_input": {"command": "ls"}, "stdout": "o" * 300_000, "numbers": list(range(250_000))}
    cut = json.loads(fitted(record, 1 << 20))
    assert cut["stdout"] == record["stdout"] and cut["tool_input"] == {"command": "ls"}
    assert cut["numbers"] == list(range(len(cut["numbers"])))
    assert list(cut[MARKER]["fields"]) == ["numbers"]


def test_when_nothing_can_be_shortened_the_last_top_level_fields_go_first():
    record = {"type": "many", "uuid": "u1"} | {f"k{n}": n for n in range(100_000)}
    cut = json.loads(fitted(record, 64 << 10))
    assert cut["type"] == "many" and cut["uuid"] == "u1", "still an object, with what identifies it"
    kept = [key for key in cut if key.startswith("k")]
    assert kept == [f"k{n}" for n in range(len(kept))] and len(kept) > 3000
    assert cut[MARKER]["more"] + len(cut[MARKER]["fields"]) == 100_000 - len(kept)


@pytest.mark.parametrize("record", ["x" + "[" * 200, "see [[[[ a " * 60, {"text": "{[" * 300}], ids=["brackets", "repeated", "in a field"])
def test_brackets_in_text_are_not_nesting(record):
    assert fitted(record, LIMIT) == to_json(record), "nothing cut, nothing marked"


def test_a_record_that_is_not_an_object_is_cut_as_text():
    cut = json.loads(fitted("x" * 100_000, LIMIT))
    assert cut.startswith("xxx") and cut.endswith("[cut by agentwatch: 100002 bytes in all]")
    cut = json.loads(fitted(list(range(30_000)), LIMIT))
    assert cut.startswith("[0,1,2,") and "[cut by agentwatch:" in cut


def test_a_record_cut_again_keeps_its_first_sizes():
    record = {"type": "user", "text": "t" * 500_000}
    once = json.loads(fitted(record, 256 << 10))
    twice = json.loads(fitted(once, LIMIT))
    assert twice[MARKER] == {"bytes": size(to_json(record)), "fields": {"text": 500_002}, "more": 0}


@pytest.mark.parametrize("record", [{"cost": float("nan")}, {"tags": {"a"}}, {"raw": b"x"}], ids=["NaN", "set", "bytes"])
def test_a_record_that_is_not_json_is_a_value_error(record):
    with pytest.raises(ValueError):
        fitted(record, LIMIT)


def test_the_limit_never_goes_below_the_room_of_one_record():
    assert smaller_limit(1 << 20) == 1 << 19
    assert smaller_limit(MIN_ROOM) == MIN_ROOM + ENVELOPE
    cut = fitted({"text": "x" * 50_000}, 100)
    assert size(cut) <= MIN_ROOM


def test_an_event_is_its_seq_format_record_and_time():
    assert json.loads(event_text(7, '{"a":1}', "claude-hook", "2026-12-05T00:00:00Z")) == {
        "seq": 7, "format": "claude-hook", "data": {"a": 1}, "ts": "2026-12-05T00:00:00Z"}
    assert json.loads(event_text(8, "[]", None, None)) == {"seq": 8, "data": []}


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63) | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=3000),
    lambda children: st.lists(children, max_size=12) | st.dictionaries(st.text(max_size=20), children, max_size=12),
    max_leaves=200,
)


@settings(max_examples=300, deadline=None)
@given(value=json_values, limit=st.sampled_from([1 << 10, 10 << 10, 20 << 10, 64 << 10]))
def test_any_json_value_fits_and_stays_json_the_daemon_takes(value, limit):
    text = fitted(value, limit)
    assert size(text) <= max(limit - ENVELOPE, MIN_ROOM)
    back = strict_json.loads(text)
    if size(to_json(value)) <= max(limit - ENVELOPE, MIN_ROOM):
        assert back == value, "what fits is kept as it is"


# --- lines ---


def test_lines_are_split_across_chunks_and_the_last_one_needs_no_newline():
    splitter = LineSplitter()
    lines = [*splitter.feed(b'{"a":'), *splitter.feed(b'1}\nplain te'), *splitter.feed(b"xt\r\n\n{")]
    assert [line.data for line in lines] == [b'{"a":1}', b"plain text\r", b""]
    assert splitter.end() == Line(b"{", 1)
    assert splitter.end() is None


def test_a_line_past_the_limit_keeps_its_head_and_counts_the_rest():
    splitter = LineSplitter(limit=10)
    [line] = [*splitter.feed(b"0123456789abc"), *splitter.feed(b"def\n")]
    assert (line.data, line.size, line.whole) == (b"0123456789", 16, False)
    assert record_of(line) == "0123456789… [cut by agentwatch: 16 bytes in all]"


def test_a_record_is_strict_json_or_else_text():
    assert record_of(Line(b'{"a": [1, 2]}\r', 14)) == {"a": [1, 2]}
    assert record_of(Line(b'{"a": NaN}', 10)) == '{"a": NaN}'
    assert record_of(Line(b"caf\xc3\xa9 \xff", 7)) == "café \ufffd"
