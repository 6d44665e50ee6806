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
from agentwatch.model import now_ms

if TYPE_CHECKING:
    from agentwatch.watch_commands import Output

REDRAW_S = 5.0  # a terminal is redrawn this often even when nothing changed (waiting times grow)
_HOME, _CLEAR_LINE, _CLEAR_BELOW = "\x1b[H", "\x1b[2K", "\x1b[J"
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

    def status(self, news: str, lost: bool) -> None:
        """The daemon stopped (``lost``) or answers again: ``news`` says which."""
        self.lost = news if lost else ""
        print(f"agentwatch: {news}" + (" (Ctrl-C to stop)" if lost else ""), file=sys.stderr, flush=True)

    async def keep_drawn(self) -> None:
        """Redraw as time passes and the terminal changes size (a terminal's view does)."""

    def draw(self) -> None:
        if self.items is None:
            return
        if self.out.json:
            self.out.document(self.items)
        else:
            table = render.attention_table(self.items, now_ms(), self.out.style, self.out.width)
            self.out.print(f"{self.out.style.bold('agentwatch attention')}  {time.strftime('%H:%M:%S')}\n{table}\n")


class _Screen(_View):
    """The feed on a terminal, redrawn in place."""

    def status(self, news: str, lost: bool) -> None:
        self.lost = f"{news} (since {time.strftime('%H:%M:%S')})" if lost else ""
        self.draw()

    async def keep_drawn(self) -> None:
        with trio.open_signal_receiver(signal.SIGWINCH, signal.SIGTSTP, signal.SIGCONT) as signals:
            async with trio.open_nursery() as nursery:

                async def redraw_when_resized() -> None:
                    async for signum in signals:
                        if signum == signal.SIGTSTP:  # Ctrl-Z: give the shell its screen and cursor, then stop
                            self.out.write(_LEAVE)
                            os.kill(os.getpid(), signal.SIGSTOP)
                        elif signum == signal.SIGCONT:  # fg: take the screen again
                            self.out.write(_ENTER)
                        self.draw()

                nursery.start_soon(redraw_when_resized)
                while True:
                    self.draw()
                    await trio.sleep(REDRAW_S)

    def draw(self) -> None:
        style, width = self.out.style, self.out.width or 80
        header = f"agentwatch attention  {time.strftime('%H:%M:%S')}"
        if not self.lost:
            lines = [style.bold(render.fit(header, width)) + style.dim(render.fit("  Ctrl-C to stop", max(width - len(header), 0)))]
        elif len(header) + 2 + render.columns(self.lost) <= width:
            lines = [style.bold(header) + "  " + style.tier(1, self.lost)]
        else:  # a narrow terminal: the news on a line of its own
            lines = [style.bold(render.fit(header, width)), style.tier(1, render.fit(self.lost, width))]
        if self.items is None:
            lines.append(render.fit("waiting for the daemon's feed…", width))
        else:
            table = render.attention_table(self.items, now_ms(), style, width).splitlines()
            room = max(self.out.height - len(lines), 2)
            if len(table) > room:
                table = [*table[: room - 1], style.dim(f"… and {len(table) - room + 1} more")]
            lines.extend(table)
        # Each line is cleared before it is written: cleared after, a line as wide as the terminal
        # would lose its last character (the cursor waits on it).
        self.out.write(_HOME + "\r\n".join(_CLEAR_LINE + line for line in lines) + _CLEAR_BELOW)


def _steady(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The feed without what changes as time passes."""
    return [{key: value for key, value in item.items() if key != "waiting_s"} for item in items]


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
