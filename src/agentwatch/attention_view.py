"""How ``agentwatch attention --watch`` shows the feed: redrawn in place on a terminal, printed
again only when it changed anywhere else (one JSON document a line with ``--json``).

On a terminal the view takes the alternate screen (as ``watch`` and ``top`` do), so the shell's
scrollback is there again after Ctrl-C; it redraws every few seconds, as waiting times grow, and at
once when the feed changes or the terminal is resized. Rows that do not fit the terminal's height
are counted on the last line.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import trio

from agentwatch import render

if TYPE_CHECKING:
    from agentwatch.watch_commands import Output

REDRAW_S = 5.0  # a terminal is redrawn this often even when nothing changed (waiting times grow)
_HOME, _CLEAR_LINE, _CLEAR_BELOW = "\x1b[H", "\x1b[K", "\x1b[J"
_ENTER, _LEAVE = "\x1b[?1049h\x1b[?25l", "\x1b[?25h\x1b[?1049l"  # alternate screen, cursor hidden; and back


class _View:
    """The feed as lines printed one after another, when it changes (not on a terminal)."""

    def __init__(self, out: Output) -> None:
        self.out = out
        self.items: list[dict[str, Any]] | None = None  # None until the daemon has sent the feed
        self.lost = ""  # why the feed is not live ("" while it is)

    def update(self, items: list[dict[str, Any]]) -> None:
        """The daemon sent the feed (again)."""
        changed = self.items is None or _steady(items) != _steady(self.items)
        self.items = items
        if changed:
            self.draw()

    def status(self, text: str) -> None:
        """The daemon stopped (``text`` says so) or came back (``""``)."""
        self.lost = text
        print(f"agentwatch: {text or 'the daemon is back'}", file=sys.stderr, flush=True)

    async def keep_drawn(self) -> None:
        """Redraw as time passes and the terminal changes size (a terminal's view does)."""

    def draw(self) -> None:
        if self.items is None:
            return
        if self.out.json:
            self.out.document(self.items)
        else:
            table = render.attention_table(self.items, _now_ms(), self.out.style, self.out.width)
            self.out.print(f"{self.out.style.bold('agentwatch attention')}  {time.strftime('%H:%M:%S')}\n{table}\n")


class _Screen(_View):
    """The feed on a terminal, redrawn in place."""

    def status(self, text: str) -> None:
        self.lost = f"{text} (since {time.strftime('%H:%M:%S')})" if text else ""
        self.draw()

    async def keep_drawn(self) -> None:
        with trio.open_signal_receiver(signal.SIGWINCH) as resized:
            async with trio.open_nursery() as nursery:

                async def redraw_when_resized() -> None:
                    async for _ in resized:
                        self.draw()

                nursery.start_soon(redraw_when_resized)
                while True:
                    self.draw()
                    await trio.sleep(REDRAW_S)

    def draw(self) -> None:
        style, width = self.out.style, self.out.width or 80
        header = f"agentwatch attention  {time.strftime('%H:%M:%S')}  "
        state = render.fit(self.lost or "Ctrl-C to stop", max(width - render.columns(header), 0))
        lines = [style.bold(render.fit(header, width)) + (style.tier(1, state) if self.lost else style.dim(state))]
        if self.items is None:
            lines.append("waiting for the daemon's feed…")
        else:
            table = render.attention_table(self.items, _now_ms(), style, width).splitlines()
            room = max(_height(self.out) - 1, 2)  # under the header
            if len(table) > room:
                table = [*table[: room - 1], style.dim(f"… and {len(table) - room + 1} more")]
            lines.extend(table)
        self.out.write(_HOME + "\n".join(line + _CLEAR_LINE for line in lines) + _CLEAR_BELOW)


def _steady(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The feed without what changes as time passes."""
    return [{key: value for key, value in item.items() if key != "waiting_s"} for item in items]


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _height(out: Output) -> int:
    try:
        return os.get_terminal_size(out.stream.fileno()).lines
    except OSError:
        return 24


@contextmanager
def view_for(out: Output) -> Iterator[_View]:
    """The view for where ``out`` prints: a terminal's screen (left as it was afterwards), or lines."""
    if not out.terminal or out.json:
        yield _View(out)
        return
    out.write(_ENTER)
    try:
        yield _Screen(out)
    finally:
        out.write(_LEAVE)
