"""Records as stored: compact JSON, the same text the standard encoder writes, always UTF-8-storable."""

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from agentwatch.record_json import encode_record

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(), children, max_size=5),
    max_leaves=30,
)


@settings(max_examples=500, deadline=None)
@given(json_values)
def test_a_record_is_the_compact_text_of_the_standard_encoder_and_reads_back_equal(value):
    text = encode_record(value)
    text.encode("utf-8")  # storable whatever it holds
    assert json.loads(text) == value
    try:
        compact = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
        compact.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: escaped instead
        compact = json.dumps(value, separators=(",", ":"))
    assert text == compact


def test_a_lone_surrogate_is_kept_as_an_escape_and_other_text_as_utf8():
    assert encode_record({"a": "\udc90", "b": "é"}) == '{"a":"\\udc90","b":"\\u00e9"}'
    assert encode_record({"b": "é", "n": [1, 2.5, None, True]}) == '{"b":"é","n":[1,2.5,null,true]}'
