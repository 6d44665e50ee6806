"""The ``agentwatch`` (canonical) format's ``sniff``."""

from __future__ import annotations

from typing import Any

import pytest

from agentwatch.model import KINDS
from agentwatch.plugins.formats.canonical import CanonicalFormat
from helpers import every_fixture_record

FMT = CanonicalFormat()


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_sniff_knows_every_canonical_kind(kind: str) -> None:
    assert FMT.sniff({"kind": kind}) is True
    assert FMT.sniff({"kind": kind, "text": "hi", "session_id": "s"}) is True


@pytest.mark.parametrize(
    "data",
    [None, 1, "output", ["kind"], {}, {"kind": "nope"}, {"kind": 3}, {"kind": ["output"]}, {"kind": None},
     {"type": "keep_alive"}, {"text": "hi"}],
)  # fmt: skip
def test_sniff_rejects_what_is_not_canonical(data: Any) -> None:
    assert FMT.sniff(data) is False


def test_sniff_rejects_every_fixture_record() -> None:
    records = every_fixture_record()
    assert len(records) > 400
    assert [name for name, record in records if FMT.sniff(record)] == []
