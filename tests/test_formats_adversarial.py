"""Every registered format, on the worst records we can build and on records hypothesis mutates from
real ones: normalising never raises, gives a valid event, and takes time linear in the record.

The linear time is measured by ``bench/normalise.py`` (growth from 100 KB to 1 MiB, against
``json.loads``); here the worst records run at the full ``server.max_frame_bytes``, where a
quadratic scan takes minutes (the ``<summary>`` scan of claude-hook took 7 min at 1 MiB) and the
suite's timeout fails the test.
"""

from __future__ import annotations

import ast
import copy
import inspect
import json
import math
import re
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adversarial_records import BUILDERS, DEEP, worst_records
from agentwatch.config import Overrides, load_config
from agentwatch.ingest_frames import parse_events
from agentwatch.model import KINDS, Normalized
from agentwatch.plugin_manager import Plugins
from agentwatch.plugins.formats.claude_transcript import command_name
from agentwatch.plugins.formats.fields import between
from agentwatch.record_json import encode_record
from agentwatch.session_facts import SessionFacts, apply
from agentwatch import strict_json
from helpers import every_fixture_record

FORMATS = {name: fmt for name, (fmt, plugin) in Plugins(entry_points=False).formats().items()}
MAX_FRAME_BYTES = load_config(Overrides(), environ={})["server"]["max_frame_bytes"]
ENVELOPE = len('{"type":"event","seq":9223372036854775807,"data":}')


def assert_valid(normalized: Normalized) -> None:
    """What the daemon relies on in a format's answer (model.Normalized, session_facts.apply)."""
    assert isinstance(normalized, Normalized)
    assert normalized.kind in KINDS
    for name in ("text", "tool", "session_id", "cwd"):
        assert isinstance(getattr(normalized, name), str | None), name
    assert isinstance(normalized.is_error, bool | None)
    assert isinstance(normalized.usage, dict | None)
    assert normalized.cost_usd is None or (isinstance(normalized.cost_usd, float) and math.isfinite(normalized.cost_usd))
    assert isinstance(normalized.heartbeat, bool)
    apply(SessionFacts(), normalized.kind, normalized, 0)


def normalise_everywhere(record: object) -> None:
    """Every format must take any JSON value: its own records, others', and garbage."""
    for fmt in FORMATS.values():
        assert_valid(fmt.normalize(record))
        if hasattr(fmt, "sniff"):
            assert isinstance(fmt.sniff(record), bool)


def test_every_built_in_format_has_its_worst_records():
    assert set(BUILDERS) == set(FORMATS)


@pytest.mark.parametrize(("fmt", "name", "record"), worst_records(MAX_FRAME_BYTES - ENVELOPE), ids=lambda v: v if isinstance(v, str) else "")
def test_the_worst_records_at_the_frame_limit_normalise_to_valid_events(fmt, name, record):
    text = json.dumps(record, separators=(",", ":"))
    assert len(text) + ENVELOPE <= MAX_FRAME_BYTES
    assert len(text) > MAX_FRAME_BYTES // 2 or "deep" in name, "the record must be as large as a frame allows"
    [event] = parse_events(strict_json.loads(f'{{"type":"event","seq":1,"data":{text}}}'))  # the parser admits it
    assert_valid(FORMATS[fmt].normalize(event.data))
    normalise_everywhere(event.data)
    assert json.loads(encode_record(event.data)) == record


# --- hypothesis: real records, mutated where formats look -----------------------------------------


def _needles() -> list[str]:
    """The short string constants of every format's module (the keys, types, tags and prefixes it
    looks for), and the characters that delimit text."""
    found = set("<>/ \t\n\"'\\[]{}:")
    for fmt in FORMATS.values():
        tree = ast.parse(inspect.getsource(sys.modules[type(fmt).__module__]))
        found |= {node.value for node in ast.walk(tree) if isinstance(node, ast.Constant) and isinstance(node.value, str)
                  and 0 < len(node.value) <= 64}
    return sorted(found)


NEEDLES = _needles()
SEEDS = [record for _, record in every_fixture_record()] + [record for _, _, record in worst_records(100)]

needle_runs = st.lists(st.tuples(st.sampled_from(NEEDLES), st.integers(1, 3000)), min_size=1, max_size=4).map(
    lambda parts: "".join(needle * count for needle, count in parts)
)
scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**63 - 1), st.floats(allow_nan=False, allow_infinity=False),
                    st.sampled_from(NEEDLES), st.text(max_size=20))
values = st.one_of(
    needle_runs,
    scalars,
    st.integers(1, DEEP // 2).map(lambda depth: json.loads("[" * depth + "]" * depth)),
    st.tuples(st.dictionaries(st.sampled_from(NEEDLES), scalars | needle_runs, max_size=4), st.integers(1, 3000)).map(
        lambda block_count: [block_count[0]] * block_count[1]
    ),
)


@st.composite
def mutated_records(draw: st.DrawFn) -> object:
    """A real record (or a small worst one) with a few values replaced, keys added, lists
    multiplied or values nested, at places drawn along its structure."""
    record = copy.deepcopy(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 4))):
        parent, key, depth = None, None, 0
        node = record
        while isinstance(node, dict | list) and node and draw(st.booleans()):
            key = draw(st.sampled_from(sorted(node))) if isinstance(node, dict) else draw(st.integers(0, len(node) - 1))
            parent, node, depth = node, node[key], depth + 1
        action = draw(st.sampled_from(["replace", "add key", "multiply", "nest"]))
        if action == "add key" and isinstance(node, dict):
            node[draw(st.sampled_from(NEEDLES))] = draw(values)
        elif action == "multiply" and isinstance(node, list) and node:
            node *= draw(st.integers(2, 2000))
        elif parent is not None:
            nesting = draw(st.integers(1, max(1, DEEP - 10 - depth)))
            parent[key] = json.loads("[" * nesting + json.dumps(node) + "]" * nesting) if action == "nest" else draw(values)
    return record


@settings(max_examples=300, deadline=None, database=None, derandomize=True)
@given(mutated_records())
def test_mutated_records_normalise_to_valid_events_in_every_format(record):
    normalise_everywhere(record)


# --- the one-pass scans are the regular expressions they replaced --------------------------------

pieces = st.lists(st.sampled_from(["<summary>", "</summary>", "<command-name>", "</command-name>", "<", ">", "/", " ", "\t",
                                   "\u2003", "a", "clear", "<task-notification>"]), max_size=12).map("".join)


@settings(max_examples=2000, deadline=None, derandomize=True)
@given(pieces)
def test_between_finds_what_a_lazy_regex_finds(text):
    match = re.search(r"<summary>(.*?)</summary>", text, re.DOTALL)
    assert between(text, "<summary>", "</summary>") == (match.group(1) if match else None)


@settings(max_examples=2000, deadline=None, derandomize=True)
@given(pieces)
def test_command_name_finds_what_the_regex_found(text):
    match = re.search(r"<command-name>\s*/?([^<\s]*)\s*</command-name>", text)
    assert command_name(text) == (match.group(1) if match else None)
