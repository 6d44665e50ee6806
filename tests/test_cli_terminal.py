"""What a person sees in a real terminal: ``agentwatch attention --watch`` and ``agentwatch tail``
run in tmux (a terminal of its own for each test) against a real daemon, with real time passing.

Each test starts the installed ``agentwatch`` command in a tmux window of a known size, feeds the
daemon events as agents would, and reads the window back with ``capture-pane``: the text a person
sees (``-e``: with its colours). It waits for what it expects to appear; only the redraw test lets
time pass on purpose.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import trio
from wcwidth import wcswidth

from agentwatch.client import find_daemon, open_agent
from agentwatch.config import Overrides, load_config
from helpers import FIXTURES, Running, required_tool, running_daemon

# --- a terminal: tmux ---


class Terminal:
    """A tmux server of its own with one window: the terminal a person looks at.

    The command runs under ``/bin/sh`` as if typed at a prompt: a ``$ agentwatch ...`` line first,
    and when it ends ``[exited N]`` and a ``$`` prompt, so a test can see the shell's screen again.
    """

    _names = itertools.count()

    def __init__(self, tmux: str) -> None:
        self.tmux = tmux
        self.socket = f"agentwatch-test-{os.getpid()}-{next(self._names)}"
        self._env: dict[str, str] = {}
        self._socket_path: str | None = None

    def start(self, argv: list[str], width: int = 100, height: int = 24, env: dict[str, str] | None = None) -> None:
        """Run ``argv`` in a new ``width`` x ``height`` window, TERM=xterm-256color, in an
        environment without AGENTWATCH_*, NO_COLOR and COLUMNS (plus ``env``)."""
        dropped = ("NO_COLOR", "COLUMNS", "LINES", "TMUX", "TMUX_PANE")
        clean = {k: v for k, v in os.environ.items() if not k.startswith("AGENTWATCH_") and k not in dropped}
        # The server's environment is the panes'; tmux sets TERM in a pane itself, so it is set again there.
        self._env = {**clean, "SHELL": "/bin/sh", "TERM": "xterm-256color", **(env or {})}
        shown = shlex.join(["agentwatch", *argv[1:]]).split(" --state-dir ")[0]  # one line, however long the path
        script = (
            "trap : INT; export TERM=xterm-256color; "  # Ctrl-C stops the command, not this shell
            f"printf '%s\\n' {shlex.quote('$ ' + shown)}; {shlex.join(argv)}; "
            "printf '[exited %s]\\n$ ' $?; exec sleep 3600"
        )
        self._tmux("-f", "/dev/null", "new-session", "-d", "-s", "aw", "-x", str(width), "-y", str(height), script)
        self._socket_path = self._tmux("display-message", "-p", "#{socket_path}").strip()

    def screen(self) -> str:
        """The text on the screen now, without the blank lines below it."""
        return self._tmux("capture-pane", "-p", "-t", "aw").rstrip("\n")

    def lines(self) -> list[str]:
        """The screen's lines, down to the last that is not blank."""
        return self.screen().split("\n")

    def screen_with_escapes(self) -> str:
        """The screen with its colours and attributes, as SGR escapes (tmux's encoding of them)."""
        return self._tmux("capture-pane", "-p", "-e", "-t", "aw").rstrip("\n")

    def history(self) -> str:
        """Everything on the normal screen: its scrollback and what shows now."""
        return self._tmux("capture-pane", "-p", "-S", "-", "-E", "-", "-t", "aw")

    def alternate_screen(self) -> bool:
        """Whether the program has the alternate screen now."""
        return self._tmux("display-message", "-p", "-t", "aw", "#{alternate_on}").strip() == "1"

    async def wait_for(self, expected: str | Callable[[str], bool], timeout: float = 15.0) -> str:
        """The screen once it shows ``expected`` (text on it, or a test of its text)."""
        found = expected if callable(expected) else lambda text: expected in text
        with trio.move_on_after(timeout):
            while not found(screen := self.screen()):
                await trio.sleep(0.1)
            return screen
        raise AssertionError(f"not on the screen after {timeout} s: {expected!r}\n{self.screen()}")

    def keys(self, *keys: str) -> None:
        self._tmux("send-keys", "-t", "aw", *keys)

    def resize(self, width: int, height: int | None = None) -> None:
        self._tmux("resize-window", "-t", "aw", "-x", str(width), *(("-y", str(height)) if height else ()))

    def close(self) -> None:
        """Stop the server (and the command in it); its socket file goes too."""
        subprocess.run([self.tmux, "-L", self.socket, "kill-server"], capture_output=True, timeout=10, check=False)
        if self._socket_path:
            Path(self._socket_path).unlink(missing_ok=True)

    def _tmux(self, *args: str) -> str:
        done = subprocess.run([self.tmux, "-L", self.socket, *args], env=self._env, capture_output=True, text=True, timeout=10)
        assert done.returncode == 0, f"tmux {' '.join(args[:2])}: {done.stderr}"
        return done.stdout


@pytest.fixture
def terminal() -> Iterator[Terminal]:
    term = Terminal(required_tool("tmux", "tmux"))
    try:
        yield term
    finally:
        term.close()


# --- agentwatch, its daemon, and agents feeding it ---

AGENTWATCH = Path(sys.executable).parent / "agentwatch"  # the command the set-up installs
QUIET = {"AGENTWATCH_RETENTION_INTERVAL": "100d"}
AT_ONCE_S = 2.0  # "at once": well inside the 5 s between the redraws that time alone brings
LONG_ID = "codex-very-long-agent-name-for-the-billing-refactor-7"
LONG_CWD = "/home/someone/projects/deeply/nested/directory/structure/somewhere"
LONG_ERROR = "the API returned 529 overloaded after 10 retries, so the turn was given up and nothing was written; " * 3
PERMISSION = "home-assistant-green-button__permission_request.json"
NOTIFICATION = "serverless-plugins__abc7156b__notification.json"

HEADER = re.compile(r"^agentwatch attention  (\d\d:\d\d:\d\d)(?:  (.*))?$")
EVENT_LINE = re.compile(r"^\d\d:\d\d:\d\d  (?P<agent>.+?) +#(?P<seq>\d+) +(?P<kind>\S+)(?: +(?P<summary>.*))?$")
COLUMNS = ["STATE", "AGENT", "SESSION", "WAITING", "GIT", "CWD", "SUMMARY"]


def agentwatch(state_dir: Path, *args: str) -> list[str]:
    return [str(AGENTWATCH), *args, "--state-dir", str(state_dir)]


async def send(state_dir: Path, agent_id: str, *records: Any, format: str = "agentwatch") -> None:
    """Connect as ``agent_id``, as a relay would, and send ``records``; returns once they are stored."""
    endpoint = find_daemon(load_config(Overrides(state_dir=state_dir), {}), {})
    async with open_agent(agent_id, format=format, agent={"name": agent_id.split("-")[0]}, endpoint=endpoint) as agent:
        for record in records:
            await agent.send(record)


def hook_payloads(name: str) -> list[dict[str, Any]]:
    return json.loads((FIXTURES / "claude-hooks" / name).read_text(encoding="utf-8"))


async def subscribed(d: Running, count: int = 1) -> None:
    """Wait until the daemon has ``count`` live subscriptions (a command has started following)."""
    with trio.fail_after(15):
        while d.daemon.subscriptions < count:
            await trio.sleep(0.05)


def port_of(d: Running) -> int:
    return int(d.address.rsplit(":", 1)[1])


# --- reading the screen ---


def headers(screen: str) -> list[re.Match[str]]:
    return [m for line in screen.split("\n") if (m := HEADER.match(line))]


def news(screen: str) -> str:
    """What the header says besides the time: after it, or on the line below when it did not fit."""
    lines = screen.split("\n")
    [at] = [i for i, line in enumerate(lines) if HEADER.match(line)]
    return HEADER.match(lines[at]).group(2) or lines[at + 1]


def _names(cell: str, agent_id: str) -> bool:
    """Whether a cell shows ``agent_id``, whole or cut in its middle ("codex-ver…g-module-7")."""
    start, _, end = cell.partition("…")
    return cell == agent_id or (agent_id.startswith(start) and agent_id.endswith(end) and "…" in cell)


def row(screen: str, agent_id: str) -> str:
    """The attention table's row of ``agent_id`` (its id may be cut: matched by its start)."""
    [found] = [line for line in screen.split("\n") if len(line.split()) > 1 and _names(line.split()[1], agent_id)]
    return found


def events_on(screen: str) -> list[re.Match[str]]:
    return [m for line in screen.split("\n") if (m := EVENT_LINE.match(line))]


def sgr_before(escaped: str, word: str) -> list[set[str]]:
    """For each place ``word`` shows, the SGR parameters of the escapes just before it (tmux may
    re-encode them: ``\\x1b[0;31m`` or ``\\x1b[31m\\x1b[49m`` both give {"31", ...})."""
    return [set(re.findall(r"\d+", m.group(1))) for m in re.finditer(r"((?:\x1b\[[0-9;]*m)*)" + re.escape(word) + r"\b", escaped)]


def width_of(line: str) -> int:
    return wcswidth(line)


def screen_width(screen: str) -> int:
    return max(map(width_of, screen.split("\n")))


def table_header(screen: str) -> list[str]:
    """The attention table's column names (the line under the header)."""
    lines = screen.split("\n")
    return lines[1].split() if len(lines) > 1 else []


def table_fits(screen: str, width: int, rows: int) -> bool:
    """A header, the table's header and ``rows`` rows, each on one line no wider than ``width``."""
    lines = screen.split("\n")
    return len(lines) == 2 + rows and bool(HEADER.match(lines[0])) and all(width_of(line) <= width for line in lines)


# --- attention --watch ---


async def test_attention_watch_redraws_in_place_as_time_passes_and_at_once_when_the_feed_changes(state_dir, terminal):
    """On a terminal the feed takes the alternate screen and is drawn there once: a new agent's item
    shows within a second or two, and after more than 5 quiet seconds the same screen is redrawn (the
    clock and the waiting times move on) with still one header, the command still running. (It
    crashed with StopAsyncIteration after 5 quiet seconds.)"""
    async with running_daemon(state_dir, QUIET) as d:
        await send(state_dir, "claude-1", {"kind": "prompt", "text": "fix the login bug"}, {"kind": "turn_completed", "text": "done"})
        terminal.start(agentwatch(state_dir, "attention", "--watch"))
        first = await terminal.wait_for(lambda s: "claude-1" in s)
        assert terminal.alternate_screen() and "$ agentwatch" not in first, "the feed has a screen of its own"
        [header] = headers(first)
        assert header.group(2) == "Ctrl-C to stop"
        assert table_header(first) == COLUMNS
        assert row(first, "claude-1").split()[:2] == ["awaiting_reply", "claude-1"]

        await subscribed(d)
        await send(state_dir, "codex-2", {"kind": "prompt", "text": "migrate"}, {"kind": "error", "text": "rate limited"})
        sent = trio.current_time()
        changed = await terminal.wait_for(lambda s: "codex-2" in s, timeout=AT_ONCE_S)
        assert trio.current_time() - sent < AT_ONCE_S
        assert len(headers(changed)) == 1 and row(changed, "codex-2").split()[:2] == ["error", "codex-2"]

        await trio.sleep(6.5)  # real time: more than one 5 s redraw with nothing new
        later = terminal.screen()
        assert "[exited" not in later and "Traceback" not in terminal.history(), later
        assert terminal.alternate_screen(), "still running, on its screen"
        [again] = headers(later)
        assert again.group(1) != header.group(1), f"redrawn as time passed:\n{later}"
        assert len(later.split("\n")) == 4, f"redrawn in place, not printed below:\n{later}"
        waiting = row(later, "claude-1").split()[3:5]
        assert waiting[1] == "s" and int(waiting[0]) >= 5, f"waiting times grow: {waiting}"


async def test_ctrl_c_leaves_the_alternate_screen_without_a_traceback(state_dir, terminal):
    """Ctrl-C ends ``attention --watch`` and gives back the shell's screen as it was (the
    ``$ agentwatch ...`` line is there again, the table is gone), with no traceback."""
    async with running_daemon(state_dir, QUIET):
        await send(state_dir, "claude-1", {"kind": "turn_completed", "text": "done"})
        terminal.start(agentwatch(state_dir, "attention", "--watch"))
        await terminal.wait_for(lambda s: "claude-1" in s)
        assert terminal.alternate_screen()
        terminal.keys("C-c")
        after = await terminal.wait_for("[exited")
    assert "[exited 130]" in after
    assert not terminal.alternate_screen()
    assert after.split("\n")[0] == "$ agentwatch attention --watch"
    assert not headers(after) and "awaiting_reply" not in after, after
    assert "Traceback" not in terminal.history() and "KeyboardInterrupt" not in terminal.history()


async def test_attention_watch_colours_each_state_by_its_urgency(state_dir, terminal):
    """``needs_permission`` is red, ``error`` yellow, ``awaiting_reply`` cyan."""
    async with running_daemon(state_dir, QUIET):
        await send(state_dir, "claude-2", hook_payloads(PERMISSION)[0], format="claude-hook")
        await send(state_dir, "codex-2", {"kind": "error", "text": "rate limited"})
        await send(state_dir, "claude-1", {"kind": "turn_completed", "text": "done"})
        terminal.start(agentwatch(state_dir, "attention", "--watch"))
        await terminal.wait_for(lambda s: all(agent in s for agent in ("claude-2", "codex-2", "claude-1")))
        escaped = terminal.screen_with_escapes()
    for state, colour in (("needs_permission", "31"), ("error", "33"), ("awaiting_reply", "36")):
        [params] = sgr_before(escaped, state)
        assert colour in params, (state, params, escaped)


async def test_attention_watch_with_no_color_redraws_in_place_without_escapes(state_dir, terminal):
    """NO_COLOR=1: no colour or attribute anywhere on the screen, and a change is still drawn in
    place (one header, the new row in the table), not printed below."""
    async with running_daemon(state_dir, QUIET) as d:
        await send(state_dir, "claude-1", {"kind": "turn_completed", "text": "done"})
        terminal.start(agentwatch(state_dir, "attention", "--watch"), env={"NO_COLOR": "1"})
        await terminal.wait_for(lambda s: "claude-1" in s)
        await subscribed(d)
        await send(state_dir, "codex-2", {"kind": "error", "text": "rate limited"})
        screen = await terminal.wait_for(lambda s: "codex-2" in s)
        escaped = terminal.screen_with_escapes()
        assert terminal.alternate_screen()
    assert len(headers(screen)) == 1 and len(screen.split("\n")) == 4, screen
    assert not re.search(r"\x1b\[[0-9;]*m", escaped), repr(escaped)


async def test_a_permission_row_says_what_waits_for_permission(state_dir, terminal):
    """The SUMMARY of a ``needs_permission`` row: for a PermissionRequest hook the tool and the start
    of its command (``Bash: cd ...``); for the Notification hook, what Claude said."""
    permission = hook_payloads(PERMISSION)[0]
    command = permission["tool_input"]["command"]
    async with running_daemon(state_dir, QUIET):
        await send(state_dir, "claude-perm", permission, format="claude-hook")
        await send(state_dir, "claude-notif", *hook_payloads(NOTIFICATION), format="claude-hook")
        terminal.start(agentwatch(state_dir, "attention", "--watch"))
        screen = await terminal.wait_for(lambda s: "claude-perm" in s and "claude-notif" in s)
    asking = row(screen, "claude-perm")
    assert asking.split()[0] == "needs_permission"
    shown = asking.split("Bash: ", 1)[1]
    assert shown.endswith("…") and len(shown) > 10 and command.startswith(shown[:-1]), shown
    notified = row(screen, "claude-notif")
    assert notified.split()[0] == "needs_permission" and notified.endswith("Claude needs your permission")


async def _three_long_rows(state_dir: Path) -> None:
    await send(state_dir, "claude-perm", hook_payloads(PERMISSION)[0], format="claude-hook")
    await send(state_dir, LONG_ID, {"kind": "session_started", "cwd": LONG_CWD}, {"kind": "error", "text": LONG_ERROR})
    await send(state_dir, "claude-1", {"kind": "turn_completed", "text": "done"})


def _summary_shown(screen: str) -> str:
    """How much of the long error's text the row of the long agent shows (without the "…")."""
    line = row(screen, LONG_ID)
    return line[line.index("the API returned") :].removesuffix("…")


async def test_attention_fits_100_columns_cutting_long_cells(state_dir, terminal):
    """At 100 columns every row is one line no wider than the terminal: a long agent id keeps its
    start and end, a long cwd its end (``…/somewhere``), a long summary its start, each cut with "…"."""
    async with running_daemon(state_dir, QUIET):
        await _three_long_rows(state_dir)
        terminal.start(agentwatch(state_dir, "attention", "--watch"), width=100)
        screen = await terminal.wait_for(lambda s: "claude-1" in s)
    assert table_fits(screen, 100, rows=3), screen
    assert table_header(screen) == COLUMNS
    long = row(screen, LONG_ID)
    agent = long.split()[1]
    assert "…" in agent and _names(agent, LONG_ID) and len(agent) >= 12, agent
    [cwd] = [cell for cell in long.split() if cell.endswith("somewhere")]
    assert cwd.startswith("…") and LONG_CWD.endswith(cwd[1:]) and len(cwd) >= 10, cwd
    shown = _summary_shown(screen)
    assert long.endswith("…") and LONG_ERROR.startswith(shown) and len(shown) >= 15, long


async def test_attention_redraws_at_once_to_a_resized_window(state_dir, terminal):
    """Made wider (150 columns) the table is redrawn at once and shows more of each summary; made
    narrow (60 columns) it drops columns and still fits, one line a row."""
    async with running_daemon(state_dir, QUIET):
        await _three_long_rows(state_dir)
        terminal.start(agentwatch(state_dir, "attention", "--watch"), width=100)
        at_100 = await terminal.wait_for(lambda s: "claude-1" in s)

        terminal.resize(150)
        at_150 = await terminal.wait_for(lambda s: len(_summary_shown(s)) > len(_summary_shown(at_100)), timeout=AT_ONCE_S)
        assert table_fits(at_150, 150, rows=3), at_150
        assert screen_width(at_150) > 100

        terminal.resize(60)  # tmux cuts what is on the screen to 60 columns itself: wait for the new layout
        at_60 = await terminal.wait_for(lambda s: "SUMMARY" in table_header(s), timeout=AT_ONCE_S)
    assert table_fits(at_60, 60, rows=3), at_60
    assert table_header(at_60)[:2] == ["STATE", "AGENT"]
    assert LONG_ERROR.startswith(_summary_shown(at_60)) and row(at_60, "claude-perm").split()[0] == "needs_permission"


async def test_attention_counts_the_rows_a_short_window_cannot_hold(state_dir, terminal):
    """Ten items in an 8-line window: the header stays on the top line, the last line says how many
    more there are, and nothing scrolls."""
    async with running_daemon(state_dir, QUIET):
        for n in range(10):
            await send(state_dir, f"claude-{n}", {"kind": "turn_completed", "text": f"done {n}"})
        terminal.start(agentwatch(state_dir, "attention", "--watch"), height=8)
        screen = await terminal.wait_for("more")
    lines = screen.split("\n")
    assert len(lines) == 8 and HEADER.match(lines[0]) and table_header(screen) == COLUMNS, screen
    assert lines[-1] == "… and 5 more" and sum(line.startswith("awaiting_reply") for line in lines) == 5


# --- tail ---


@pytest.mark.parametrize("agents_appear", ["before tail starts", "while tail runs"])
async def test_tail_keeps_the_seq_column_aligned_and_never_wraps(state_dir, terminal, agents_appear):
    """``HH:MM:SS  agent  #seq  kind  summary``, one terminal line an event, at 100 columns: the
    ``#`` of every line in the same column, however long the agent's id (a long one is cut), whether
    the agents were known when tail started or appear while it runs."""
    async with running_daemon(state_dir, QUIET) as d:
        if agents_appear == "before tail starts":
            await send(state_dir, "claude-1", {"kind": "session_started", "cwd": "/src/app"})
            await send(state_dir, LONG_ID, {"kind": "session_started", "cwd": LONG_CWD})
        terminal.start(agentwatch(state_dir, "tail"), width=100)
        await subscribed(d)
        await send(state_dir, "claude-1", {"kind": "prompt", "text": "fix the login bug"})
        await send(state_dir, LONG_ID, {"kind": "prompt", "text": "refactor billing"}, {"kind": "error", "text": LONG_ERROR})
        await send(state_dir, "claude-1", {"kind": "output", "text": "Looking at src/login.py " * 8},
                   {"kind": "turn_completed", "text": "done"})
        screen = await terminal.wait_for(lambda s: len(events_on(s)) == 5)
    lines = screen.split("\n")
    assert lines[0].startswith("$ agentwatch tail") and len(lines) == 6, f"one line an event:\n{screen}"
    assert all(width_of(line) <= 100 for line in lines)
    shown = events_on(screen)
    assert [(m["agent"].rstrip("…")[:8], m["kind"]) for m in shown] == [
        ("claude-1", "prompt"), ("codex-ve", "prompt"), ("codex-ve", "error"), ("claude-1", "output"), ("claude-1", "turn_completed"),
    ]
    assert all("…" in m["agent"] and _names(m["agent"], LONG_ID) for m in shown if m["agent"].startswith("codex"))
    assert shown[2]["summary"].endswith("…") and LONG_ERROR.startswith(shown[2]["summary"][:-1])
    assert len({line.index(" #") for line in lines[1:]}) == 1, f"the # of each line in one column:\n{screen}"


async def test_tail_colours_kinds_by_urgency_and_dims_routine_ones(state_dir, terminal):
    """A permission request red, an error yellow, a prompt and an output dim; Ctrl-C ends tail
    quietly (exit 130, no traceback)."""
    async with running_daemon(state_dir, QUIET) as d:
        terminal.start(agentwatch(state_dir, "tail"), width=100)
        await subscribed(d)
        await send(state_dir, "claude-2", hook_payloads(PERMISSION)[0], format="claude-hook")
        await send(state_dir, "claude-1", {"kind": "prompt", "text": "go"}, {"kind": "output", "text": "ok"},
                   {"kind": "error", "text": "overloaded"})
        await terminal.wait_for(lambda s: len(events_on(s)) == 4)
        escaped = terminal.screen_with_escapes()
        terminal.keys("C-c")
        after = await terminal.wait_for("[exited")
    for kind, code in (("permission_request", "31"), ("error", "33"), ("prompt", "2"), ("output", "2")):
        [params] = sgr_before(escaped, kind)
        assert code in params, (kind, params, escaped)
    assert "[exited 130]" in after and "Traceback" not in terminal.history()


# --- when the daemon stops ---


async def test_tail_says_the_daemon_stopped_and_exits(state_dir, terminal):
    """Without --reconnect, tail says in one line that the daemon stopped and how to wait for it,
    and the shell prompt is back (not a websocket close code)."""
    async with running_daemon(state_dir, QUIET) as d:
        port = port_of(d)
        terminal.start(agentwatch(state_dir, "tail"))
        await subscribed(d)
        await send(state_dir, "claude-1", {"kind": "prompt", "text": "go"})
        await terminal.wait_for(lambda s: len(events_on(s)) == 1)
    screen = await terminal.wait_for("[exited")
    assert f"agentwatch: the daemon at 127.0.0.1:{port} stopped. Add --reconnect to wait for it to come back\n[exited 3]" in screen
    assert "1006" not in screen and "Traceback" not in terminal.history()


async def test_attention_watch_says_the_daemon_stopped_on_the_shell_screen(state_dir, terminal):
    """Without --reconnect, ``attention --watch`` leaves its screen when the daemon stops and says so
    on the shell's, where it stays to be read."""
    async with running_daemon(state_dir, QUIET) as d:
        port = port_of(d)
        await send(state_dir, "claude-1", {"kind": "turn_completed", "text": "done"})
        terminal.start(agentwatch(state_dir, "attention", "--watch"))
        await terminal.wait_for(lambda s: "claude-1" in s)
    screen = await terminal.wait_for("[exited")
    assert not terminal.alternate_screen()
    assert screen.split("\n")[1:3] == [
        f"agentwatch: the daemon at 127.0.0.1:{port} stopped. Add --reconnect to wait for it to come back", "[exited 3]",
    ], screen


async def test_tail_reconnect_waits_for_the_daemon_and_misses_nothing(state_dir, terminal):
    """``tail --reconnect``: when the daemon stops it says it waits; the events sent after the daemon
    is back but before tail has reconnected, and those sent after, are all shown, each once."""
    async with running_daemon(state_dir, QUIET) as d:
        port = port_of(d)
        terminal.start(agentwatch(state_dir, "tail", "--reconnect"))
        await subscribed(d)
        await send(state_dir, "claude-1", {"kind": "prompt", "text": "before the stop"})
        await terminal.wait_for(lambda s: len(events_on(s)) == 1)
    waiting = f"agentwatch: the daemon at 127.0.0.1:{port} stopped; waiting for it to come back (Ctrl-C to stop)"
    await terminal.wait_for(waiting)
    # tail tries again 0.5, 1.5, 3.5 and 7.5 s after the stop: the daemon is back between two tries
    await trio.sleep(2.2)
    async with running_daemon(state_dir, QUIET, port=port) as d:
        await send(state_dir, "claude-1", {"kind": "output", "text": "while tail waits"}, {"kind": "turn_completed", "text": "done"})
        assert "the daemon is back" not in terminal.screen(), "sent while tail still waited"
        await terminal.wait_for("agentwatch: the daemon is back")
        await subscribed(d)
        await send(state_dir, "claude-1", {"kind": "prompt", "text": "after it is back"})
        screen = await terminal.wait_for(lambda s: "after it is back" in s)
        await trio.sleep(0.3)  # nothing more comes: no event twice
        screen = terminal.screen()
    assert [(m["seq"], m["summary"]) for m in events_on(screen)] == [
        ("1", "before the stop"), ("2", "while tail waits"), ("3", "done"), ("4", "after it is back"),
    ], screen
    assert screen.count(waiting) == 1 and screen.count("agentwatch: the daemon is back") == 1
    assert "[exited" not in screen and "1006" not in screen


async def test_attention_watch_reconnect_says_the_daemon_stopped_in_its_header(state_dir, terminal):
    """``attention --watch --reconnect``: while the daemon is away the header says so (the table
    stays); when it is back the header says Ctrl-C again and the table is today's feed."""
    async with running_daemon(state_dir, QUIET) as d:
        port = port_of(d)
        await send(state_dir, "claude-1", {"kind": "turn_completed", "text": "done"})
        terminal.start(agentwatch(state_dir, "attention", "--watch", "--reconnect"))
        await terminal.wait_for(lambda s: "claude-1" in s)
    away = await terminal.wait_for(lambda s: "stopped" in s)
    assert news(away).startswith(f"the daemon at 127.0.0.1:{port} stopped; waiting for it to come back"), away
    assert terminal.alternate_screen() and "claude-1" in away and "[exited" not in away
    async with running_daemon(state_dir, QUIET, port=port):
        await send(state_dir, "codex-2", {"kind": "error", "text": "rate limited"})
        back = await terminal.wait_for(lambda s: "codex-2" in s and "Ctrl-C to stop" in s)
    assert news(back) == "Ctrl-C to stop" and len(back.split("\n")) == 4, back
    assert row(back, "claude-1").split()[0] == "awaiting_reply" and row(back, "codex-2").split()[0] == "error"


async def test_a_narrow_window_still_says_the_daemon_stopped(state_dir, terminal):
    """At 60 columns (a split pane) the header still says that the daemon stopped: what is cut to
    fit is the rest, not the one word that tells what happened."""
    async with running_daemon(state_dir, QUIET):
        await send(state_dir, "claude-1", {"kind": "turn_completed", "text": "done"})
        terminal.start(agentwatch(state_dir, "attention", "--watch", "--reconnect"), width=60)
        await terminal.wait_for(lambda s: "claude-1" in s)
    away = await terminal.wait_for(lambda s: "Ctrl-C to stop" not in s)
    assert "stopped" in news(away), f"the header at 60 columns: {away}"


@pytest.mark.parametrize("width", [60, 150])
@pytest.mark.parametrize("args", [["agents"], ["sessions"], ["events", "--agent", LONG_ID]], ids=" ".join)
async def test_the_one_shot_commands_fit_a_terminal_narrow_or_wide(state_dir, terminal, args, width):
    """``agents``, ``sessions`` and ``events`` on a terminal: a long agent id and cwd used to wrap every
    row; now each row is one line of the window, cut with "…" where it must be."""
    async with running_daemon(state_dir, QUIET):
        await send(state_dir, LONG_ID, {"kind": "session_started", "cwd": LONG_CWD}, {"kind": "error", "text": LONG_ERROR})
        await send(state_dir, "claude-1", {"kind": "prompt", "text": "hi"})
        terminal.start(agentwatch(state_dir, *args), width=width)
        screen = await terminal.wait_for(lambda s: "[exited 0]" in s)
    lines = screen.split("\n")
    first = next(i for i, line in enumerate(lines) if re.match(r"AGENT|\d\d:\d\d:\d\d ", line))  # past the echoed command
    output = lines[first : lines.index("[exited 0]")]
    assert all(width_of(line) <= width for line in output), screen
    assert len(output) == (3 if args[0] != "events" else 2), f"one line a row:\n{screen}"
    if width == 60:
        assert all("…" in line for line in output if "codex" in line), f"the long id is cut:\n{screen}"
