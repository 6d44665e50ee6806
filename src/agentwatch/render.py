"""What the ``agentwatch`` command line prints for a person: the watch API's JSON as text.

Pure functions: no I/O, no clock (callers pass ``now_ms``), no dependency beyond ANSI escapes.
Text that comes from agents is flattened to one line with its control characters removed, so
a record can neither break a table nor send escapes to the terminal.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TextIO

from agentwatch.model import Normalized

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_TIER_COLORS = {1: "31", 2: "33", 3: "36"}  # red, yellow, cyan
_MAIN_ARGUMENTS = ("command", "file_path", "path", "pattern", "url", "query", "prompt", "description")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_KIND_WIDTH = 18
_ATTENTION_SUMMARY_WIDTH = 60


@dataclass(frozen=True)
class Style:
    """ANSI styling, or none at all when ``color`` is false."""

    color: bool

    def bold(self, text: str) -> str:
        """``text`` in bold."""
        return self._paint("1", text)

    def dim(self, text: str) -> str:
        """``text`` dimmed."""
        return self._paint("2", text)

    def tier(self, tier: int, text: str) -> str:
        """``text`` in the colour of an attention tier: 1 red, 2 yellow, 3 cyan, any other plain."""
        code = _TIER_COLORS.get(tier)
        return self._paint(code, text) if code else text

    def _paint(self, code: str, text: str) -> str:
        return f"\x1b[{code}m{text}\x1b[0m" if self.color and text else text


def style_for(stream: TextIO, environ: Mapping[str, str]) -> Style:
    """Colour for a terminal, unless ``NO_COLOR`` is set (non-empty) or ``TERM`` is ``dumb``."""
    return Style(stream.isatty() and not environ.get("NO_COLOR") and environ.get("TERM") != "dumb")


# --- time ---


def ago(then_ms: int | None, now_ms: int) -> str:
    """How long before ``now_ms`` a moment was: ``just now``, ``12 s ago`` ... ``2 d ago``; ``-`` if unknown."""
    if then_ms is None:
        return "-"
    seconds = (now_ms - then_ms) // 1000
    if seconds < 5:
        return "just now"
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit} ago"
    return f"{seconds} s ago"


def waited(seconds: float) -> str:
    """A duration in its two largest units: ``45 s``, ``12 min``, ``3 h 5 min``, ``2 d 3 h``."""
    total = max(0, int(seconds))
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h" if hours else f"{days} d"
    if hours:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    return f"{minutes} min" if minutes else f"{secs} s"


def parse_time(value: str | None) -> int | None:
    """An ISO 8601 time as the daemon writes it (``2026-11-21T10:00:00.125Z``) in unix
    milliseconds; a time without an offset is UTC; ``None`` if absent or unreadable."""
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - _EPOCH) // timedelta(milliseconds=1)


def _clock(iso: str | None) -> str:
    """``HH:MM:SS`` of an ISO time in local time, ``--:--:--`` if unreadable."""
    ms = parse_time(iso)
    return "--:--:--" if ms is None else datetime.fromtimestamp(ms / 1000).strftime("%H:%M:%S")


# --- text ---


def _one_line(text: str) -> str:
    """``text`` without control characters, its runs of whitespace (line breaks too) one space."""
    return " ".join(_CONTROL.sub(" ", text).split())


def _first_line(text: str | None) -> str:
    return next((line for line in (text or "").splitlines() if line.strip()), "")


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(width - 1, 0)] + "…"


def _compact(value: Any) -> str:
    """Compact JSON of ``value``; empty for ``null``, ``{}`` and ``[]``."""
    if value is None or value == {} or value == []:
        return ""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _main_argument(tool_input: Any) -> str:
    if isinstance(tool_input, dict):
        for key in _MAIN_ARGUMENTS:
            if isinstance(value := tool_input.get(key), str) and value.strip():
                return value
    return _compact(tool_input)


def _joined(separator: str, *parts: str) -> str:
    return separator.join(part for part in parts if part)


def summary(kind: str, normalized: Normalized, data: Any, width: int = 100) -> str:
    """One line saying what an event is about, cut to ``width`` characters with ``…``."""
    match kind:
        case "tool_use" | "permission_request":
            text = _joined(": ", normalized.tool or "", _main_argument(normalized.input))
        case "turn_completed":
            cost = f"${normalized.cost_usd:.4f}" if normalized.cost_usd is not None else ""
            text = _joined(", ", cost, "error" if normalized.is_error else "", _first_line(normalized.text))
        case "session_started":
            text = normalized.cwd or normalized.session_id or ""
        case "raw":
            record_type = data.get("type") if isinstance(data, dict) else None
            text = record_type if isinstance(record_type, str) else _compact(data)
        case "tool_result" if normalized.is_error:
            text = _joined(": ", "error", _first_line(normalized.text))
        case _:
            text = _first_line(normalized.text)
    return _cut(_one_line(text), width)


def event_line(event: Mapping[str, Any], normalized: Normalized, style: Style, width: int = 100) -> str:
    """``HH:MM:SS  agent  #seq  kind  summary`` for an event of the watch API, the time its
    ``received_at`` in local time; the summary is cut so the line fits in ``width`` columns
    (it keeps at least 20 of them)."""
    kind = event["kind"]
    head = f"{_clock(event.get('received_at'))}  {_one_line(str(event['agent_id']))}  {'#' + str(event['seq']):<7} "
    used = len(head) + max(len(kind), _KIND_WIDTH) + 2
    text = summary(kind, normalized, event.get("data"), max(width - used, 20))
    return f"{head}{style.dim(kind)}{' ' * (_KIND_WIDTH - len(kind))}  {text}".rstrip()


# --- tables ---


def _width(cell: str) -> int:
    return len(_ANSI.sub("", cell))


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], style: Style) -> str:
    """Columns aligned on their widest cell (ANSI escapes not counted), two spaces apart,
    under a bold header; no line ends in a space."""
    widths = [max(_width(cell) for cell in column) for column in zip(headers, *rows)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(cell + " " * (size - _width(cell)) for cell, size in zip(cells, widths)).rstrip()

    return "\n".join([line([style.bold(header) for header in headers]), *map(line, rows)])


def _cell(value: Any) -> str:
    """A value from the daemon as a table cell: ``-`` when absent, one line otherwise."""
    return "-" if value is None or value == "" else _one_line(str(value))


def attention_table(items: Sequence[Mapping[str, Any]], now_ms: int, style: Style) -> str:
    """The attention feed, in the order given (the daemon's: most urgent first).

    How long each has waited is counted from its ``since`` to ``now_ms``, so a table redrawn
    later stays true; an item without a readable ``since`` shows its ``waiting_s``.
    """
    if not items:
        return "Nothing needs you."
    git = {True: "dirty", False: "clean"}

    def waiting(item: Mapping[str, Any]) -> str:
        since = parse_time(item.get("since"))
        return waited(item["waiting_s"] if since is None else (now_ms - since) / 1000)

    rows = [
        [
            style.tier(item.get("tier", 0), _cell(item.get("state"))),
            _cell(item.get("agent_id")),
            _cell(item.get("session")),
            waiting(item),
            git.get(item.get("uncommitted_work"), "-"),
            _cell(item.get("cwd")),
            _cut(_one_line(item.get("summary") or ""), _ATTENTION_SUMMARY_WIDTH),
        ]
        for item in items
    ]
    return table(["STATE", "AGENT", "SESSION", "WAITING", "GIT", "CWD", "SUMMARY"], rows, style)


def agents_table(agents: Sequence[Mapping[str, Any]], now_ms: int, style: Style) -> str:
    """The agents of ``agents.list``: who they are, whether connected, how far their events go."""
    if not agents:
        return "No agents yet."
    rows = [
        [
            _cell(agent.get("agent_id")),
            _cell(agent.get("name")),
            _cell(agent.get("kind")),
            style.bold("connected") if agent.get("connected") else style.dim("gone"),
            _cell(agent.get("session")),
            _cell(agent.get("acked_seq")),
            ago(parse_time(agent.get("last_event_at")), now_ms),
            _cell(agent.get("cwd")),
        ]
        for agent in agents
    ]
    return table(["AGENT", "NAME", "KIND", "STATE", "SESSION", "SEQ", "LAST EVENT", "CWD"], rows, style)


def sessions_table(sessions: Sequence[Mapping[str, Any]], now_ms: int, style: Style) -> str:
    """The sessions of ``sessions.list``, in the order given (the daemon's: latest first)."""
    if not sessions:
        return "No sessions yet."
    rows = [
        [
            _cell(session.get("agent_id")),
            _cell(session.get("session")),
            _cell(session.get("state")),
            _cell(session.get("events")),
            ago(parse_time(session.get("started_at")), now_ms),
            ago(parse_time(session.get("last_event_at")), now_ms),
        ]
        for session in sessions
    ]
    return table(["AGENT", "SESSION", "STATE", "EVENTS", "STARTED", "LAST EVENT"], rows, style)


def status_text(status: Mapping[str, Any], style: Style) -> str:
    """The daemon's ``status`` as aligned ``key: value`` lines; plugin errors in red."""
    lines = {
        "version": _cell(status.get("version")),
        "uptime": waited(status.get("uptime_s") or 0),
        "listening": ", ".join(status.get("listen") or []) or "-",
        "agents": f"{status.get('agents_connected', 0)} connected, {status.get('agents_known', 0)} known",
        "events stored": _cell(status.get("events_stored")),
        "plugins": ", ".join(status.get("plugins") or []) or "-",
    }
    if errors := status.get("plugin_errors"):
        lines["plugin errors"] = style.tier(1, ", ".join(f"{name} ({count})" for name, count in errors.items()))
    key_width = max(map(len, lines)) + 1
    return "\n".join(f"{style.dim(f'{key}:')}{' ' * (key_width - len(key))}{value}" for key, value in lines.items())
