"""Records cut to fit the daemon's frame limit, still records of their own format.

Every record an agent-side command queues (``agentwatch hook``, ``agentwatch run``,
``agentwatch import``, and :func:`agentwatch.client.open_agent`) goes through :func:`fitted`
with the frame limit the daemon announced. A record that fits is untouched. One that does not
keeps its shape: its largest strings are shortened (each to the same length, as little as
needed, ending in "…") or, when strings cannot free enough, its longest lists lose their tails;
fields that identify it (``type``, ``hook_event_name``, ``session_id``, ``tool_name``, ids) are
kept, nesting deeper than :data:`MAX_DEPTH` is cut, and one field, :data:`MARKER`, says what was
cut and how big it was::

    "agentwatch_truncated": {"bytes": 1153422, "fields": {"tool_response.stdout": 1150021}, "more": 0}

``bytes`` is the record's size as JSON before the cut; ``fields`` maps the path of each cut
field (the largest 16) to its size as JSON before the cut, and ``more`` counts the others. Only
when that is not enough are the record's other top-level fields dropped (listed the same way).
A record that is not an object is cut as text. Standard library only.
"""

from __future__ import annotations

import json
from json.encoder import encode_basestring, encode_basestring_ascii  # type: ignore[attr-defined]
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
ROUNDS = 4  # rounds of cutting before a record is cut as text
ELLIPSIS = "…"
ELLIPSIS_BYTES = len(ELLIPSIS.encode())


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
    deep = _may_nest_deeper(text) and _nests_deeper(data)
    if size <= room and not deep:
        return text
    if not isinstance(data, dict):
        return _as_text(data if isinstance(data, str) else text, size, room)
    cutter = _Cutter(ascii_only=text.isascii())
    copy = cutter.copy(data)
    target = room - MARKER_ROOM
    for _ in range(ROUNDS):  # each round measures again what its estimates left over
        if (over := len(to_json(copy).encode()) - target) <= 0:
            break
        cutter.cut(copy, over)
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
    """Whether the JSON ``text`` holds enough brackets to nest past :data:`MAX_DEPTH` (a quick test)."""
    return text.count("{") + text.count("[") > MAX_DEPTH


def _nests_deeper(data: Any) -> bool:
    """Whether ``data`` holds containers nested past :data:`MAX_DEPTH` (brackets in strings do not count)."""
    stack = [(data, 1)] if isinstance(data, dict | list) else []
    while stack:
        value, depth = stack.pop()
        if depth > MAX_DEPTH:
            return True
        children = value.values() if isinstance(value, dict) else value
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False


class _Place:
    """A value of the record's copy: where it is (``within`` is its parent's path), and its size in bytes as JSON."""

    __slots__ = ("key", "parent", "size", "within")

    def __init__(self, parent: dict[str, Any] | list[Any], key: str | int, within: str, size: int) -> None:
        self.parent, self.key, self.within, self.size = parent, key, within, size

    @property
    def path(self) -> str:
        return _path(self.within, self.key)

    @property
    def value(self) -> Any:
        return self.parent[self.key]  # type: ignore[index]


class _Cutter:
    """One record's copy and what was cut from it.

    A round of :meth:`cut` takes the bytes that are over from where they cost least: from long
    strings when they hold enough (the largest shortened to one length), else from the tails of
    the longest lists (a list of 60 000 file names keeps its head), then from strings; only then
    are whole top-level fields dropped, the largest (and, of equal ones, the last) first.
    """

    def __init__(self, ascii_only: bool) -> None:
        self._ascii = ascii_only
        self._sizes: dict[int, int] = {}  # id of a container of the copy -> its size, as last measured
        self.cuts: list[tuple[int, str]] = []  # (size before, path)

    def copy(self, data: dict[str, Any]) -> dict[str, Any]:
        """A copy of ``data`` with containers below ``MAX_DEPTH`` cut."""
        root: dict[str, Any] = {}
        stack: list[tuple[Any, Any, str, int]] = [(data, root, "", 1)]
        while stack:
            source, target, path, depth = stack.pop()
            items = source.items() if isinstance(source, dict) else enumerate(source)
            for key, value in items:
                if isinstance(value, dict | list):
                    if depth >= MAX_DEPTH:
                        self.cuts.append((self._size(value), _path(path, key)))
                        value = f"{ELLIPSIS} [cut by agentwatch: nested deeper than {MAX_DEPTH} levels]"
                    else:
                        child: Any = {} if isinstance(value, dict) else []
                        stack.append((value, child, _path(path, key), depth + 1))
                        value = child
                if isinstance(target, dict):
                    target[key] = value
                else:
                    target.append(value)
        return root

    def cut(self, record: dict[str, Any], over: int) -> None:
        """Take about ``over`` bytes out of ``record``, as the class says."""
        strings, lists = self._places(record)
        spare = sum(place.size - SHORTEST - ELLIPSIS_BYTES for place in strings)
        if spare < over:
            over -= self._trim(lists, over)
            strings, _ = self._places(record)
        over -= self._shorten(strings, over)
        if over > 0:
            self._drop(record, over)

    def _places(self, record: dict[str, Any]) -> tuple[list[_Place], list[_Place]]:
        """The strings that may be shortened and the lists of ``record``, with their sizes."""
        strings: list[_Place] = []
        lists: list[_Place] = []
        sizes = self._sizes = {}
        stack: list[tuple[Any, str, bool]] = [(record, "", False)]
        while stack:  # depth first; a container is measured after its children
            node, path, measured = stack.pop()
            items = list(node.items() if isinstance(node, dict) else enumerate(node))
            if not measured:
                stack.append((node, path, True))
                stack.extend((value, _path(path, key), False) for key, value in items if isinstance(value, dict | list))
                continue
            total = 2 + max(len(items) - 1, 0)
            for key, value in items:
                size = sizes[id(value)] if isinstance(value, dict | list) else self._size(value)
                total += size + (self._size(key) + 1 if isinstance(node, dict) else 0)
                if isinstance(value, list) and len(value) > 1:
                    lists.append(_Place(node, key, path, size))
                elif size > SHORTEST + ELLIPSIS_BYTES and isinstance(value, str) and key != MARKER and not (
                        key in IDENTIFYING and len(value) <= IDENTIFYING_MAX):
                    strings.append(_Place(node, key, path, size))
            sizes[id(node)] = total
        return strings, lists

    def _trim(self, lists: list[_Place], over: int) -> int:
        """Cut the tails of the largest lists until about ``over`` bytes went; the bytes that went."""
        gone = 0
        for place in sorted(lists, key=lambda p: p.size, reverse=True):
            if gone >= over:
                break
            items, keep, kept = place.value, 2, 0
            while kept < len(items) - 1 and keep + (item := self._size(items[kept]) + 1) <= place.size - (over - gone):
                keep += item
                kept += 1
            place.parent[place.key] = items[:kept]  # type: ignore[index]
            self.cuts.append((place.size, place.path))
            gone += place.size - keep
        return gone

    def _shorten(self, strings: list[_Place], over: int) -> int:
        """Cut the largest strings to one length, so that they lose about ``over`` bytes; the bytes they lost."""
        if over <= 0:
            return 0
        strings = sorted(strings, key=lambda s: s.size, reverse=True)
        level = _water_level([s.size for s in strings], over + len(strings) * self._size(ELLIPSIS))
        gone = 0
        for string in strings:
            if string.size <= level:
                break
            head = self._head(string.value, level - 2) + ELLIPSIS
            string.parent[string.key] = head  # type: ignore[index]
            self.cuts.append((string.size, string.path))
            gone += string.size - self._size(head)
        return gone

    def _drop(self, record: dict[str, Any], over: int) -> None:
        """Drop top-level fields that do not identify the record, the largest (then the last) first,
        until about ``over`` bytes went."""
        fields = [(self._size(value) + self._size(key) + 2, index, key) for index, (key, value) in enumerate(record.items())
                  if key != MARKER and not (key in IDENTIFYING and self._size(value) <= IDENTIFYING_MAX + 2)]
        for size, _, key in sorted(fields, reverse=True):
            if over <= 0:
                break
            self.cuts.append((size, key))
            del record[key]
            over -= size

    def marker(self, size: int, earlier: Any) -> dict[str, Any]:
        """The marker; a record cut before (``earlier``, its marker) keeps the sizes it had before that cut."""
        cuts: dict[str, int] = {}
        for cut, path in self.cuts:  # a path cut twice (a list trimmed, then its strings) counts once, at its first size
            if path != MARKER:
                cuts.setdefault(path[:200], cut)
        more = 0
        if isinstance(earlier, dict) and isinstance(earlier.get("fields"), dict):
            size = max(size, earlier["bytes"]) if isinstance(earlier.get("bytes"), int) else size
            cuts |= {path: cut for path, cut in earlier["fields"].items() if isinstance(cut, int)}
            more = earlier["more"] if isinstance(earlier.get("more"), int) else 0
        listed = sorted(cuts.items(), key=lambda item: item[1], reverse=True)[:LISTED]
        return {"bytes": size, "fields": dict(listed), "more": more + len(cuts) - len(listed)}

    def _size(self, value: Any) -> int:
        """Bytes of ``value`` as JSON (quick for strings and numbers: these are most of a record)."""
        if isinstance(value, str):
            if self._ascii:
                return len(encode_basestring_ascii(value))
            return len(encode_basestring(value).encode("utf-8", "surrogatepass"))
        if value is None or isinstance(value, bool):
            return 5 if value is False else 4  # null, true, false
        if isinstance(value, int):
            return len(int.__repr__(value))
        if isinstance(value, float):
            return len(float.__repr__(value))
        if isinstance(value, dict | list) and id(value) in self._sizes:
            return self._sizes[id(value)]
        return len(json.dumps(value, ensure_ascii=self._ascii, separators=(",", ":")).encode("utf-8", "surrogatepass"))

    def _head(self, text: str, limit: int) -> str:
        """The longest start of ``text`` whose JSON (without quotes) is at most ``limit`` bytes."""
        head = text[: max(limit, 0)]
        while head and (size := self._size(head) - 2) > limit:  # shrinks by the share that is over
            head = head[: min(len(head) * limit // size, len(head) - 1)]
        return head


def _path(parent: str, key: str | int) -> str:
    return f"{parent}[{key}]" if isinstance(key, int) else f"{parent}.{key}" if parent else str(key)


def _water_level(sizes: list[int], over: int) -> int:
    """The length to cut every size above it to, so that ``over`` bytes go (``sizes`` largest first)."""
    total = 0
    for count, size in enumerate(sizes, start=1):
        total += size
        following = sizes[count] if count < len(sizes) else 0
        if total - count * following >= over:
            return max((total - over) // count, SHORTEST)
    return SHORTEST
