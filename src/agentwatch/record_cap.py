"""Records cut to fit the daemon's frame limit, still records of their own format.

Every record an agent-side command queues (``agentwatch hook``, ``agentwatch run``,
``agentwatch import``, and :func:`agentwatch.client.open_agent`) goes through :func:`fitted`
with the frame limit the daemon announced. A record that fits is untouched. One that does not
keeps its shape: its largest strings are shortened (each to the same length, as little as
needed, ending in "…"), fields that identify it (``type``, ``hook_event_name``, ``session_id``,
``tool_name``, ids) are kept, nesting deeper than :data:`MAX_DEPTH` is cut, and one field,
:data:`MARKER`, says what was cut and how big it was::

    "agentwatch_truncated": {"bytes": 1153422, "fields": {"tool_response.stdout": 1150021}, "more": 0}

``bytes`` is the record's size as JSON before the cut; ``fields`` maps the path of each cut
field (the largest 16) to its size as JSON before the cut, and ``more`` counts the others. Only
when shortening strings is not enough are the record's other top-level fields dropped (listed
the same way). A record that is not an object is cut as text. Standard library only.
"""

from __future__ import annotations

import json
from typing import Any

MARKER = "agentwatch_truncated"
DEFAULT_FRAME_LIMIT = 1 << 20  # the daemon's default ``server.max_frame_bytes``
ENVELOPE = 1024  # bytes of a frame around one record: its type, seq, format and ts
MARKER_ROOM = 4096  # bytes kept free for the marker
MIN_ROOM = 8192  # a record always gets this many bytes, whatever the limit
MAX_DEPTH = 100  # containers nested deeper are cut (the daemon's parser takes about 980 levels)
SHORTEST = 32  # bytes a shortened string keeps at least
IDENTIFYING = frozenset({
    "type", "subtype", "role", "kind", "name", "hook_event_name", "notification_type", "tool_name",
    "id", "uuid", "session_id", "sessionId", "transcript_path", "cwd", "timestamp",
})
IDENTIFYING_MAX = 256  # bytes: an identifying string longer than this is cut like any other
LISTED = 16  # cut fields named in the marker
ELLIPSIS = "…"


def to_json(data: Any) -> str:
    """``data`` as compact JSON text meant for UTF-8; with ASCII escapes if it holds a lone
    surrogate. ``ValueError`` if it is not JSON (NaN, a set, bytes)."""
    try:
        text = json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    except TypeError as exc:
        raise ValueError(f"a record must be JSON: {exc}") from None
    try:
        text.encode()
    except UnicodeEncodeError:
        return json.dumps(data, separators=(",", ":"), allow_nan=False)
    return text


def fitted(data: Any, limit: int = DEFAULT_FRAME_LIMIT) -> str:
    """The JSON text of ``data``, cut as this module describes so that a frame of ``limit``
    bytes holds it with its envelope."""
    text = to_json(data)
    room = max(limit - ENVELOPE, MIN_ROOM)
    size = len(text.encode())
    if size <= room and not _may_nest_deeper(text):
        return text
    if not isinstance(data, dict):
        return _as_text(data if isinstance(data, str) else text, size, room)
    cutter = _Cutter(ascii_only=text.isascii())
    copy = cutter.copy(data)
    if not cutter.cuts and size <= room:
        return text
    over = len(to_json(copy).encode()) - (room - MARKER_ROOM)
    if over > 0:
        cutter.shorten(over)
    if len(to_json(copy).encode()) > room - MARKER_ROOM:
        cutter.drop(copy)
    copy[MARKER] = cutter.marker(size, data.get(MARKER))
    result = to_json(copy)
    if len(result.encode()) > room:  # only if every kept field is at its largest: cut as text
        return _as_text(text, size, room)
    return result


def event_text(seq: int, data_json: str, format: str | None, ts: str | None) -> str:
    """One ingest event object as JSON text, around ``data_json`` (from :func:`fitted`)."""
    head = f'{{"seq":{seq}' + (f',"format":{json.dumps(format)}' if format is not None else "")
    return f'{head},"data":{data_json}' + (f',"ts":{json.dumps(ts)}}}' if ts else "}")


def smaller_limit(limit: int) -> int:
    """The frame limit to cut to after a daemon refused a frame of ``limit`` bytes as too big (1009)."""
    return max(limit // 2, MIN_ROOM + ENVELOPE)


def _as_text(text: str, size: int, room: int) -> str:
    """JSON of a string record: the head of ``text`` and its size, at most ``room`` bytes with its escapes."""
    keep = room - MARKER_ROOM
    while True:
        result = to_json(cut_text(text, size, keep))
        if len(result.encode()) <= room:
            return result
        keep = keep * room // len(result.encode()) - 64


def cut_text(text: str, size: int, keep: int = 64 << 10) -> str:
    """The head of ``text`` (at most ``keep`` bytes of UTF-8) and a note that the whole was ``size`` bytes."""
    head = text.encode()[:keep].decode("utf-8", "ignore")
    return f"{head}{ELLIPSIS} [cut by agentwatch: {size} bytes in all]"


def _may_nest_deeper(text: str) -> bool:
    return text.count("{") + text.count("[") > MAX_DEPTH


class _String:
    """A string of the record's copy: where it is, and its size in bytes as JSON (quotes included)."""

    __slots__ = ("key", "parent", "path", "size")

    def __init__(self, parent: dict[str, Any] | list[Any], key: str | int, path: str, size: int) -> None:
        self.parent, self.key, self.path, self.size = parent, key, path, size


class _Cutter:
    """One record's copy and what was cut from it."""

    def __init__(self, ascii_only: bool) -> None:
        self._ascii = ascii_only
        self._strings: list[_String] = []
        self.cuts: list[tuple[int, str]] = []  # (size before, path)

    def copy(self, data: dict[str, Any]) -> dict[str, Any]:
        """A copy of ``data`` with containers below ``MAX_DEPTH`` cut, noting its strings."""
        root: dict[str, Any] = {}
        stack: list[tuple[Any, Any, str, int]] = [(data, root, "", 1)]
        while stack:
            source, target, path, depth = stack.pop()
            items = source.items() if isinstance(source, dict) else enumerate(source)
            for key, value in items:
                where = f"{path}[{key}]" if isinstance(key, int) else f"{path}.{key}" if path else str(key)
                if isinstance(value, dict | list):
                    if depth >= MAX_DEPTH:
                        self.cuts.append((self._size(value), where))
                        value = f"{ELLIPSIS} [cut by agentwatch: nested deeper than {MAX_DEPTH} levels]"
                    else:
                        child: Any = {} if isinstance(value, dict) else []
                        stack.append((value, child, where, depth + 1))
                        value = child
                elif isinstance(value, str) and not (key in IDENTIFYING and len(value) <= IDENTIFYING_MAX):
                    self._strings.append(_String(target, key if isinstance(target, dict) else len(target), where, self._size(value)))
                if isinstance(target, dict):
                    target[key] = value
                else:
                    target.append(value)
        return root

    def shorten(self, over: int) -> None:
        """Cut the largest strings to one length, so that they lose ``over`` bytes in all."""
        strings = sorted(self._strings, key=lambda s: s.size, reverse=True)
        level = _water_level([s.size for s in strings], over + len(strings) * self._size(ELLIPSIS))
        for string in strings:
            if string.size <= level:
                break
            text = string.parent[string.key]  # type: ignore[index]
            string.parent[string.key] = self._head(text, level - 2) + ELLIPSIS  # type: ignore[index]
            self.cuts.append((string.size, string.path))

    def drop(self, record: dict[str, Any]) -> None:
        """Keep only the record's identifying fields and small values at the top."""
        for key, value in list(record.items()):
            small = value is None or isinstance(value, bool | int | float) or (isinstance(value, str) and len(value) <= IDENTIFYING_MAX)
            if not small:
                self.cuts.append((self._size(value), key))
                del record[key]

    def marker(self, size: int, earlier: Any) -> dict[str, Any]:
        """The marker; a record cut before (``earlier``, its marker) keeps the sizes it had before that cut."""
        cuts = {path[:200]: cut for cut, path in self.cuts if path != MARKER}
        more = 0
        if isinstance(earlier, dict) and isinstance(earlier.get("fields"), dict):
            size = max(size, earlier["bytes"]) if isinstance(earlier.get("bytes"), int) else size
            cuts |= {path: cut for path, cut in earlier["fields"].items() if isinstance(cut, int)}
            more = earlier["more"] if isinstance(earlier.get("more"), int) else 0
        listed = sorted(cuts.items(), key=lambda item: item[1], reverse=True)[:LISTED]
        return {"bytes": size, "fields": dict(listed), "more": more + len(cuts) - len(listed)}

    def _size(self, value: Any) -> int:
        return len(json.dumps(value, ensure_ascii=self._ascii, separators=(",", ":")).encode("utf-8", "surrogatepass"))

    def _head(self, text: str, limit: int) -> str:
        """The longest start of ``text`` whose JSON (without quotes) is at most ``limit`` bytes."""
        head = text[: max(limit, 0)]
        while head and (size := self._size(head) - 2) > limit:  # shrinks by the share that is over
            head = head[: min(len(head) * limit // size, len(head) - 1)]
        return head


def _water_level(sizes: list[int], over: int) -> int:
    """The length to cut every size above it to, so that ``over`` bytes go (``sizes`` largest first)."""
    total = 0
    for count, size in enumerate(sizes, start=1):
        total += size
        following = sizes[count] if count < len(sizes) else 0
        if total - count * following >= over:
            return max((total - over) // count, SHORTEST)
    return SHORTEST
