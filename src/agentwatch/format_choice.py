"""Choosing the format of a stream of records: the one named, or with ``auto`` the one that
recognises the first records (each format's ``sniff``)."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

from agentwatch.model import Format

AUTO = "auto"
FALLBACK = "agentwatch"  # nothing recognised: stored as it is (raw)
SNIFF_RECORDS = 20  # records looked at before giving up


def sniff(formats: Mapping[str, Format], record: Any) -> str | None:
    """The name of the first format that says ``record`` is unmistakably its own."""
    for name, fmt in formats.items():
        with contextlib.suppress(Exception):  # a plugin's sniff that fails is a no
            if getattr(fmt, "sniff", None) and fmt.sniff(record):
                return name
    return None


class FormatChooser:
    """Gives each record its format; with ``auto``, records wait until one is recognised (or
    ``SNIFF_RECORDS`` were not), then go out in order with the format chosen."""

    def __init__(self, name: str, formats: Mapping[str, Format]) -> None:
        if name != AUTO and name not in formats:
            raise ValueError(f"unknown format {name!r}; known formats: {', '.join(sorted(formats))} (or auto)")
        self.chosen: str | None = None if name == AUTO else name
        self._formats = formats
        self._waiting: list[Any] = []

    def feed(self, record: Any) -> list[tuple[Any, str]]:
        """``record`` and any that waited for it, each with its format, once the format is known."""
        if self.chosen is None:
            self._waiting.append(record)
            found = sniff(self._formats, record)
            if found is None and len(self._waiting) < SNIFF_RECORDS:
                return []
            self.chosen = found or FALLBACK
            ready, self._waiting = self._waiting, []
            return [(waiting, self.chosen) for waiting in ready]
        return [(record, self.chosen)]

    def finish(self) -> list[tuple[Any, str]]:
        """The records still waiting at the end of the stream (stored as they are)."""
        if self._waiting:
            self.chosen = self.chosen or FALLBACK
        ready, self._waiting = self._waiting, []
        return [(record, self.chosen or FALLBACK) for record in ready]
