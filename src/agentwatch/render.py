"""What the ``agentwatch`` command line prints for a person: the watch API's JSON as text.

Pure functions: no I/O, no clock (callers pass ``now_ms``). Text that comes from agents is
flattened to one line with its control characters removed, so a record can neither break a
table nor send escapes to the terminal. Widths are counted in terminal columns (``wcwidth``:
most CJK characters and emoji take two, combining marks none), and what does not fit the width
given is cut with "…", never wrapped.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TextIO

from wcwidth import wcswidth, wcwidth

from agentwatch.model import Normalized
from agentwatch.summaries import one_line, summary

_ANSI_SPLIT = re.compile(r"(\x1b\[[0-9;]*m)")
_TIER_COLORS = {1: "31", 2: "33", 3: "36"}  # red, yellow, cyan
#: How urgent an event of a kind is, as attention tiers: a permission waits, an error failed a turn,
#: a finished turn waits for a reply. Other kinds are dim.
_KIND_TIERS = {"permission_request": 1, "error": 2, "turn_completed": 3}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_KIND_WIDTH = 18
_SEQ_WIDTH = 7
_MIN_COLUMN = 6  # columns a table column keeps however narrow the width (its header's, if wider)
AGENT_COLUMN_MAX = 32  # columns the agent column of event lines takes at most


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


def columns(text: str) -> int:
    """How many terminal columns ``text`` (one line, no escapes) takes."""
    width = wcswidth(text)
    return width if width >= 0 else sum(max(wcwidth(char), 0) for char in text)


def fit(text: str, width: int) -> str:
    """``text`` if it takes at most ``width`` columns, else its start and "…" in ``width`` columns."""
    if len(text) <= width and columns(text) <= width:
        return text
    used, end = 0, 0
    for end, char in enumerate(text):
        used += max(wcwidth(char), 0)
        if used > width - 1:
            break
    return text[:end].rstrip() + "…" if width > 0 else ""


def fit_end(text: str, width: int) -> str:
    """``text`` cut at its start to ``width`` columns: a path keeps its end (``…/to/project``)."""
    return fit(text[::-1], width)[::-1]


def fit_middle(text: str, width: int) -> str:
    """``text`` cut in its middle to ``width`` columns: an id keeps its start and the end that tells
    it from its siblings (``claude-spotter…-1a2b3c4d``)."""
    if columns(text) <= width or width < 3:
        return fit(text, width)
    tail = fit_end(text, width // 2 + 1)[1:]  # the end, without its ellipsis
    return fit(text, width - columns(tail)) + tail


def pad(text: str, width: int, cut: Callable[[str, int], str] = fit) -> str:
    """``text`` cut (by ``cut``) or padded with spaces to exactly ``width`` columns."""
    text = cut(text, width)
    return text + " " * (width - columns(text))


def kind_tier(kind: str, normalized: Normalized) -> int:
    """How urgent an event is, on the attention tiers (0: routine)."""
    if normalized.is_error and kind in ("tool_result", "turn_completed"):
        return 2
    return _KIND_TIERS.get(kind, 0)


def agent_column(width: int) -> int:
    """The width of the agent column of event lines that ``width`` columns hold: a quarter of them,
    12 at least and :data:`AGENT_COLUMN_MAX` at most (an id past it is cut)."""
    return min(max(width // 4, 12), AGENT_COLUMN_MAX)


def event_line(
    event: Mapping[str, Any], normalized: Normalized, style: Style, width: int = 100, aligned: bool = False
) -> str:
    """``HH:MM:SS  agent  #seq  kind  summary`` for an event of the watch API, the time its
    ``received_at`` in local time, the kind coloured by urgency, cut to fit in ``width`` columns
    (the summary first). ``aligned``: the agent takes :func:`agent_column` columns, so the lines of
    many agents line up (else it takes its own width, for the lines of one agent)."""
    kind = event["kind"]
    agent = one_line(str(event["agent_id"]))
    agent = pad(agent, agent_column(width) if aligned else min(columns(agent), agent_column(width)), fit_middle)
    head = f"{_clock(event.get('received_at'))}  {agent}  {'#' + str(event['seq']):<{_SEQ_WIDTH}} "
    tier = kind_tier(kind, normalized)
    painted = style.tier(tier, kind) if tier else style.dim(kind)
    room = width - columns(head) - max(len(kind), _KIND_WIDTH) - 2
    text = fit(summary(kind, normalized, event.get("data")), room) if room > 0 else ""
    return fit_styled(f"{head}{painted}{' ' * (_KIND_WIDTH - len(kind))}  {text}".rstrip(), width)


# --- tables ---


@dataclass(frozen=True)
class Painted:
    """A table cell drawn with ``paint`` (a :class:`Style` method) once it is cut to fit."""

    text: str
    paint: Callable[[str], str]


Cell = str | Painted


@dataclass(frozen=True)
class Column:
    """A table column: its header, and how it gives way when the table is too wide: never below
    ``floor`` columns (its header's width if wider), taking ``weight`` times the width of a column
    of weight 1, cut by ``cut`` (:func:`fit`, :func:`fit_end` for a path, :func:`fit_middle` for an id)."""

    header: str
    floor: int = 6
    weight: int = 1
    cut: Callable[[str, int], str] = fit
    drop: int = 0  # when even the floors do not fit: columns are left out, the highest ``drop`` first (0: never)


def table(layout: Sequence[Column | str], rows: Sequence[Sequence[Cell]], style: Style, width: int | None = None) -> str:
    """Columns aligned on their widest cell, two spaces apart, under a bold header; no line ends in
    a space. Given ``width``, the widest columns are cut (with "…") until every line fits in it;
    on a terminal too narrow for that, columns are left out, and then lines cut."""
    spec = [column if isinstance(column, Column) else Column(column) for column in layout]
    texts = [[cell.text if isinstance(cell, Painted) else cell for cell in row] for row in rows]
    natural = [max(map(columns, column)) for column in zip([c.header for c in spec], *texts)]
    if width is not None:
        kept = _kept(natural, spec, width)
        spec, natural = [spec[i] for i in kept], [natural[i] for i in kept]
        rows = [[row[i] for i in kept] for row in rows]
    sizes = natural if width is None else _shrunk(natural, spec, width)

    def line(cells: Sequence[Cell]) -> str:
        drawn = []
        for cell, size, column in zip(cells, sizes, spec):
            text = column.cut(cell.text if isinstance(cell, Painted) else cell, size)
            gap = " " * (size - columns(text))
            drawn.append((cell.paint(text) if isinstance(cell, Painted) else text) + gap)
        joined = "  ".join(drawn).rstrip()
        return joined if width is None or sum(sizes) + 2 * (len(sizes) - 1) <= width else fit_styled(joined, width)

    return "\n".join([line([Painted(column.header, style.bold) for column in spec]), *map(line, rows)])


def _kept(natural: list[int], spec: list[Column], width: int) -> list[int]:
    """The columns that fit ``width`` at their floors, leaving out those that may go (highest ``drop`` first)."""
    kept = list(range(len(spec)))
    floors = {i: min(natural[i], max(columns(spec[i].header), spec[i].floor)) for i in kept}
    for i in sorted((i for i in kept if spec[i].drop), key=lambda i: -spec[i].drop):
        if sum(floors[k] for k in kept) + 2 * (len(kept) - 1) <= width:
            break
        kept.remove(i)
    return kept


def fit_styled(line: str, width: int) -> str:
    """A line with ANSI escapes cut to ``width`` visible columns (with "…"), its colour reset."""
    out, used, painted = [], 0, False
    for piece in _ANSI_SPLIT.split(line):
        if _ANSI_SPLIT.fullmatch(piece):
            out.append(piece)
            painted = piece != "\x1b[0m"
            continue
        room = width - used
        if columns(piece) > room:
            out.append(fit(piece, room))
            return "".join(out) + ("\x1b[0m" if painted else "")
        out.append(piece)
        used += columns(piece)
    return "".join(out)


def _shrunk(natural: list[int], spec: list[Column], width: int) -> list[int]:
    """Column widths that fit ``width`` with two columns between them: the widest are cut, each to
    its weight times one common width, as little as needed, and none below its floor."""
    room = width - 2 * (len(natural) - 1)
    if sum(natural) <= room:
        return natural
    floors = [min(size, max(columns(column.header), column.floor)) for size, column in zip(natural, spec)]

    def sizes(unit: int) -> list[int]:
        return [max(floor, min(size, column.weight * unit)) for size, floor, column in zip(natural, floors, spec)]

    low, high = 0, max(natural)  # the widest unit that fits is in [low, high)
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if sum(sizes(middle)) <= room else (low, middle)
    return sizes(low)


_AGENT = Column("AGENT", floor=20, cut=fit_middle)  # an id is what a person types next: it keeps more
_CWD = Column("CWD", floor=12, cut=fit_end, drop=1)


def _cell(value: Any) -> str:
    """A value from the daemon as a table cell: ``-`` when absent, one line otherwise."""
    return "-" if value is None or value == "" else one_line(str(value))


def attention_table(items: Sequence[Mapping[str, Any]], now_ms: int, style: Style, width: int | None = None) -> str:
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

    def painter(tier: Any) -> Callable[[str], str]:
        return lambda text: style.tier(tier if isinstance(tier, int) else 0, text)

    rows = [
        [
            Painted(_cell(item.get("state")), painter(item.get("tier"))),
            _cell(item.get("agent_id")),
            _cell(item.get("session")),
            waiting(item),
            git.get(item.get("uncommitted_work"), "-"),
            _cell(item.get("cwd")),
            one_line(item.get("summary") or "") if isinstance(item.get("summary"), str) else "",
        ]
        for item in items
    ]
    headers = [Column("STATE", 16), _AGENT, Column("SESSION", drop=4), Column("WAITING", 10, drop=2), Column("GIT", drop=3), _CWD,
               Column("SUMMARY", 20, 2)]
    return table(headers, rows, style, width)


def agents_table(agents: Sequence[Mapping[str, Any]], now_ms: int, style: Style, width: int | None = None) -> str:
    """The agents of ``agents.list``: who they are, whether connected, how far their events go."""
    if not agents:
        return "No agents yet."
    rows = [
        [
            _cell(agent.get("agent_id")),
            _cell(agent.get("name")),
            _cell(agent.get("kind")),
            Painted("connected", style.bold) if agent.get("connected") else Painted("gone", style.dim),
            _cell(agent.get("session")),
            _cell(agent.get("acked_seq")),
            ago(parse_time(agent.get("last_event_at")), now_ms),
            _cell(agent.get("cwd")),
        ]
        for agent in agents
    ]
    headers = [_AGENT, Column("NAME", drop=2), Column("KIND", drop=3), Column("STATE"), Column("SESSION", drop=5), Column("SEQ", drop=4),
               Column("LAST EVENT"), _CWD]
    return table(headers, rows, style, width)


def sessions_table(sessions: Sequence[Mapping[str, Any]], now_ms: int, style: Style, width: int | None = None) -> str:
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
    headers = [_AGENT, Column("SESSION"), Column("STATE"), Column("EVENTS", drop=2), Column("STARTED", drop=1), Column("LAST EVENT")]
    return table(headers, rows, style, width)


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
