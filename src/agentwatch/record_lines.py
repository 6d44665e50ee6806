"""Lines of an agent's output or session file, read in linear time and bounded memory, and the records they are.

Shared by ``agentwatch run`` (the child's stdout) and ``agentwatch import`` (session files).
A line is kept whole up to :data:`READ_LIMIT` bytes, which is far above anything the daemon
stores whole (records are cut to its frame limit when they are queued, see
:mod:`agentwatch.record_cap`); of a longer line only the head is kept, and its record is that
head as text, marked as cut. Standard library only.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

from agentwatch import strict_json
from agentwatch.record_cap import cut_text

READ_LIMIT = 64 << 20  # bytes of one line held whole


class Line(NamedTuple):
    """One line without its newline: ``data`` is all of it, or its head when ``size`` is larger."""

    data: bytes
    size: int

    @property
    def whole(self) -> bool:
        return self.size == len(self.data)


class LineSplitter:
    """Splits chunks of bytes into :class:`Line` s; each byte is looked at a bounded number of times."""

    def __init__(self, limit: int = READ_LIMIT) -> None:
        self._limit = limit
        self._parts: list[bytes] = []  # the line so far, at most ``limit`` bytes in all
        self._held = 0  # bytes in _parts
        self._size = 0  # bytes of the line so far, kept or not

    def feed(self, chunk: bytes) -> Iterator[Line]:
        """The lines that ``chunk`` completes."""
        start = 0
        while (end := chunk.find(b"\n", start)) != -1:
            self._keep(chunk, start, end)
            yield self._take()
            start = end + 1
        self._keep(chunk, start, len(chunk))

    def end(self) -> Line | None:
        """The last line, if the input did not end with a newline."""
        return self._take() if self._size else None

    def _keep(self, chunk: bytes, start: int, end: int) -> None:
        room = self._limit - self._held
        if room > 0 and end > start:
            piece = chunk[start : min(end, start + room)]
            self._parts.append(piece)
            self._held += len(piece)
        self._size += end - start

    def _take(self) -> Line:
        line = Line(b"".join(self._parts), self._size)
        self._parts, self._held, self._size = [], 0, 0
        return line


def record_of(line: Line) -> object:
    """The record ``line`` holds: its JSON value (RFC 8259, as the daemon reads it), else its text."""
    text = line.data.decode("utf-8", "replace").removesuffix("\r")
    if not line.whole:
        return cut_text(text, line.size)
    try:
        return strict_json.loads(text)
    except ValueError:
        return text
