"""The outbox: an agent's events, numbered and kept on disk until the daemon acknowledges them.

Commands that forward an agent's records (``agentwatch hook``, ``agentwatch run``) write each
record here first and then deliver it, so nothing is lost when the daemon is down, restarts, or
the forwarding process dies: whoever next works on that agent's outbox (the next hook, the next
``run``, or ``agentwatch flush``) sends what is still pending. Each event gets its ``seq`` when
it is written, so a resent event is one the daemon recognises and does not store twice.

Per agent, in ``<state dir>/outbox/``:

- ``<agent_id>.json``: the hello to connect with, the highest ``seq`` acknowledged and handed
  over, and what the daemon's frame limit is known to be (replaced whole, never written in place);
- ``<agent_id>.jsonl``: the pending events, one ingest event object per line, UTF-8; it exists
  only while something is pending;
- ``<agent_id>.lock``: held (``flock``) by the one process working on this agent's outbox.

Every record is cut to the daemon's frame limit when it is appended
(:func:`agentwatch.record_cap.fitted`), and cut again if the daemon turns out to take less, so
no event can hold up the ones after it. Nothing is lost or doubled across a crash: the handing
over of events is on disk before they are sent (so a welcome never renumbers an event the
daemon may have), and once the daemon could not be reached every event is on disk before the
command that wrote it ends. The files are the user's alone (0600, in a 0700 directory).

Standard library only: ``agentwatch hook`` imports this on Claude Code's every tool call.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from agentwatch import strict_json
from agentwatch.identity import AGENT_ID
from agentwatch.record_cap import DEFAULT_FRAME_LIMIT, event_text, fitted, smaller_limit
from agentwatch.safe_write import make_private_dir, sync_directory, write_file

DIRECTORY = "outbox"
FRAME_WRAP = len('{"type":"events","events":[]}')  # bytes of a frame around its events
_APPEND = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW


class Outbox:
    """One agent's outbox; open it with :func:`locked`, which makes this process its only user.

    Safe to share between the threads of that process.
    """

    def __init__(self, directory: Path, agent_id: str) -> None:
        self.agent_id = agent_id
        self._directory = directory
        self._header_path = directory / f"{agent_id}.json"
        self._events_path = directory / f"{agent_id}.jsonl"
        self._lock = threading.Lock()
        self.hello: dict[str, Any] = {}
        self.acked = 0  # the highest seq the daemon acknowledged, as last heard
        self.sent = 0  # the highest seq ever handed to a connection
        self.announced = DEFAULT_FRAME_LIMIT  # the daemon's frame limit, from its latest welcome
        self.ceiling = 0  # a lower limit learnt from frames it closed as too big (1009); 0: none
        self.singly = 0  # events up to this seq go one per frame (after a frame was refused whole)
        self.accepted = 0  # bytes of the largest frame the daemon took since the ceiling was set
        self._pending: list[tuple[int, str]] = []  # (seq, the event object as JSON text)
        self.damaged = 0  # lines of the events file that could not be read (a crash mid-write)
        self._holding = False  # the daemon could not be reached: appends go to disk at once
        self._load()

    @property
    def limit(self) -> int:
        """The frame limit events are cut to."""
        return min(self.announced, self.ceiling) if self.ceiling else self.announced

    def _load(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            header = json.loads(self._header_path.read_text(encoding="utf-8"))
            if isinstance(header, dict):
                self.hello = _unicode(_typed(header.get("hello"), dict, {}))
                self.acked = _typed(header.get("acked"), int, 0)
                self.sent = _typed(header.get("sent"), int, self.acked)
                self.announced = max(_typed(header.get("frame_limit"), int, DEFAULT_FRAME_LIMIT), 1)
                self.ceiling = _typed(header.get("ceiling"), int, 0)
                self.singly = _typed(header.get("singly"), int, 0)
                self.accepted = _typed(header.get("accepted"), int, 0)
        try:
            text = self._events_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return
        *lines, partial = text.split("\n")  # not splitlines: U+2028 in a record is no line end
        rewrite = bool(partial)  # a crash mid-write: drop the piece, or the next line would be glued to it
        self.damaged += rewrite
        for line in lines:
            try:
                event, strict = _event(line)
            except ValueError:
                self.damaged += 1
                continue
            seq = event["seq"]
            if seq > self.acked and (not self._pending or seq > self._pending[-1][0]):
                fitting = self._fitting(line, event) if strict else self._fitted(event)
                rewrite |= fitting != line
                self._pending.append((seq, fitting))
        if not self._pending:  # only acknowledged or unreadable lines: nothing to deliver, no file to list
            self._events_path.unlink(missing_ok=True)
        elif rewrite:
            self._rewrite()

    @property
    def pending(self) -> list[tuple[int, str]]:
        """The events not acknowledged yet, in ``seq`` order: ``(seq, event JSON)``."""
        with self._lock:
            return list(self._pending)

    @property
    def last_seq(self) -> int:
        """The highest ``seq`` given out so far."""
        return max(self._pending[-1][0] if self._pending else 0, self.acked, self.sent)

    def set_hello(self, hello: dict[str, Any]) -> None:
        """The hello to connect with (a later flush by another process uses it too). A string
        that is not valid Unicode (a folder named in Latin-1, a lone surrogate) gets U+FFFD in its
        place: the daemon refuses such a hello, and every event would wait for good."""
        hello = _unicode(hello)
        with self._lock:
            if hello != self.hello:
                self.hello = hello
                self._write_header(durable=False)

    def append(self, records: list[tuple[Any, str, str | None]]) -> list[int]:
        """Write ``(data, format, ts)`` records as events numbered after ``last_seq``, each cut to
        the frame limit; their ``seq`` numbers. ``ValueError`` if a record is not JSON (NaN, a
        set): nothing is written then."""
        with self._lock:
            first = self.last_seq + 1
            lines = [event_text(seq, fitted(data, self.limit), format, ts) for seq, (data, format, ts) in enumerate(records, first)]
            fd = os.open(self._events_path, _APPEND, 0o600)
            try:
                view = memoryview("".join(line + "\n" for line in lines).encode())
                while view:
                    view = view[os.write(fd, view):]
                if self._holding:
                    os.fsync(fd)
            finally:
                os.close(fd)
            self._pending.extend(zip(range(first, first + len(lines)), lines, strict=True))
            return list(range(first, first + len(lines)))

    def hold(self) -> None:
        """The daemon cannot be reached: put what is pending on disk now, and every later append too."""
        with self._lock:
            self._holding = True
            if self._pending:
                with contextlib.suppress(FileNotFoundError):
                    fd = os.open(self._events_path, os.O_RDONLY | os.O_NOFOLLOW)
                    try:
                        os.fsync(fd)
                    finally:
                        os.close(fd)
                    sync_directory(self._directory)

    def handing_over(self, seq: int) -> None:
        """Events up to ``seq`` are about to go to a connection: on disk before they do (see :meth:`welcomed`)."""
        with self._lock:
            if seq > self.sent:
                self.sent = seq
                self._write_header(durable=True)

    def welcomed(self, acked: int, frame_limit: int | None = None) -> None:
        """A daemon's welcome: it holds this agent's events up to ``acked`` and takes frames of up
        to ``frame_limit`` bytes (None: it did not say).

        Events this outbox never handed to a connection yet numbered at or below ``acked`` would be
        taken for duplicates (the daemon knows this agent id from elsewhere, or this outbox lost
        its header); they, and every event after them, are numbered anew after ``acked``. Events
        handed over keep their numbers, whatever the welcome says.
        """
        with self._lock:
            changed = False
            if frame_limit is not None and frame_limit != self.announced:
                self.announced = frame_limit
                changed = self._refit()
            first_unsent = next((i for i, (seq, _) in enumerate(self._pending) if seq > self.sent), None)
            if first_unsent is not None and self._pending[first_unsent][0] <= acked:
                renumbered = []
                for offset, (_, line) in enumerate(self._pending[first_unsent:], start=1):
                    event = json.loads(line)
                    renumbered.append((acked + offset, event_text(acked + offset, _data_text(event), event.get("format"), event.get("ts"))))
                self._pending[first_unsent:] = renumbered
                changed = True
            if changed:
                self._rewrite()
                self._write_header(durable=True)
        self.acknowledge(acked)

    def took(self, size: int) -> None:
        """The daemon took a frame of ``size`` bytes (kept with the next header write)."""
        self.accepted = max(self.accepted, size)

    def too_big(self, size: int) -> None:
        """The daemon closed a connection as a frame was too big, the largest in flight ``size``
        bytes: events handed over so far go one per frame, those over a lower limit cut to it.
        The limit is halved, but not below the largest frame the daemon took (that one fits)."""
        with self._lock:
            lower = smaller_limit(min(self.limit, size))
            self.ceiling = self.accepted if lower < self.accepted < size else lower
            if self.accepted >= size:  # the daemon takes less than it used to
                self.accepted = 0
            self.singly = max(self.singly, self.sent)
            if self._refit():
                self._rewrite()
            self._write_header(durable=True)

    def send_singly(self, seq: int) -> None:
        """The daemon refused a frame whole without naming an event: events up to ``seq`` go one
        per frame, so that the one at fault is found."""
        with self._lock:
            if seq > self.singly:
                self.singly = seq
                self._write_header(durable=True)

    def acknowledge(self, seq: int) -> None:
        """The daemon has every event up to ``seq``: they leave the outbox."""
        with self._lock:
            if seq <= self.acked:
                return
            self.acked = seq
            self.sent = max(self.sent, seq)
            self._pending = [(held, line) for held, line in self._pending if held > seq]
            # Not durable: a header that comes back older after a crash makes acknowledged
            # events go again with their own numbers, which the daemon recognises.
            self._write_header(durable=False)  # the events file may keep acknowledged lines: loading skips them
            if not self._pending:
                self._events_path.unlink(missing_ok=True)
                self._holding = False

    def discard(self, seq: int) -> None:
        """The daemon refused event ``seq`` for good: it leaves the outbox unacknowledged."""
        with self._lock:
            kept = [(held, line) for held, line in self._pending if held != seq]
            if len(kept) != len(self._pending):
                self._pending = kept
                if kept:
                    self._rewrite()
                else:
                    self._events_path.unlink(missing_ok=True)

    def forget(self) -> None:
        """The agent is gone: remove its files if nothing is pending (the lock too: see :func:`locked`)."""
        with self._lock:
            if not self._pending:
                for path in (self._header_path, self._events_path, self._directory / f"{self.agent_id}.lock"):
                    path.unlink(missing_ok=True)

    def _fitting(self, line: str, event: dict[str, Any]) -> str:
        """``line``, or the event cut again if a frame of the current limit cannot carry it."""
        return line if len(line.encode()) + FRAME_WRAP <= self.limit else self._fitted(event)

    def _fitted(self, event: dict[str, Any]) -> str:
        return event_text(event["seq"], fitted(_data_of(event), self.limit), event.get("format"), event.get("ts"))

    def _refit(self) -> bool:
        """Cut again the pending events a frame of the current limit cannot carry; whether any was."""
        refitted = [(seq, self._fitting(line, json.loads(line))) for seq, line in self._pending]
        changed = refitted != self._pending
        self._pending = refitted
        return changed

    def _rewrite(self) -> None:
        write_file(self._events_path, "".join(line + "\n" for _, line in self._pending))

    def _write_header(self, *, durable: bool) -> None:
        header = {"hello": self.hello, "acked": self.acked, "sent": self.sent, "frame_limit": self.announced,
                  "ceiling": self.ceiling, "singly": self.singly, "accepted": self.accepted}
        write_file(self._header_path, json.dumps(header) + "\n", durable=durable)


def _event(line: str) -> tuple[dict[str, Any], bool]:
    """The event object of an events-file line, and whether it is strict JSON (a NaN written by an
    older version is not: the daemon would refuse its frame); ``ValueError`` unless it is an event."""
    try:
        event, strict = strict_json.loads(line), True
    except ValueError:
        event, strict = json.loads(line), False
    if not isinstance(event, dict) or not isinstance(event.get("seq"), int) or isinstance(event["seq"], bool) or "data" not in event:
        raise ValueError("not an event")
    return event, strict


def _data_of(event: dict[str, Any]) -> Any:
    """The event's record, or its JSON text if it is not strict JSON (so that the daemon takes it)."""
    try:
        return strict_json.loads(json.dumps(event["data"], allow_nan=False))
    except ValueError:
        return json.dumps(event["data"], ensure_ascii=False)


def _data_text(event: dict[str, Any]) -> str:
    return json.dumps(event["data"], ensure_ascii=False, separators=(",", ":"))


def _unicode(value: Any) -> Any:
    """``value`` with every string made valid Unicode."""
    if isinstance(value, dict):
        return {_unicode(key): _unicode(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_unicode(item) for item in value]
    if isinstance(value, str) and not value.isascii():
        try:
            value.encode()
        except UnicodeEncodeError:  # a surrogate in a Python string stands alone (or for an undecodable byte)
            return "".join("\ufffd" if "\ud800" <= char <= "\udfff" else char for char in value)
    return value


def _typed(value: Any, kind: type, default: Any) -> Any:
    return value if isinstance(value, kind) and not isinstance(value, bool) else default


def directory(state_dir: Path) -> Path:
    """The outbox directory of ``state_dir``, created (mode 0700, as are missing parents) if absent."""
    return make_private_dir(state_dir / DIRECTORY)


@contextlib.contextmanager
def locked(state_dir: Path, agent_id: str) -> Iterator[Outbox]:
    """Open ``agent_id``'s outbox as its only user, waiting for another process to finish with it."""
    with _flocked(state_dir, agent_id, fcntl.LOCK_EX) as box:
        assert box is not None
        yield box


@contextlib.contextmanager
def try_locked(state_dir: Path, agent_id: str) -> Iterator[Outbox | None]:
    """Open ``agent_id``'s outbox as its only user; None at once if another process has it."""
    with _flocked(state_dir, agent_id, fcntl.LOCK_EX | fcntl.LOCK_NB) as box:
        yield box


@contextlib.contextmanager
def _flocked(state_dir: Path, agent_id: str, operation: int) -> Iterator[Outbox | None]:
    folder = directory(state_dir)
    lock_path = folder / f"{agent_id}.lock"
    while True:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        try:
            fcntl.flock(fd, operation)
        except BlockingIOError:
            os.close(fd)
            yield None
            return
        with contextlib.suppress(FileNotFoundError):
            if os.stat(lock_path, follow_symlinks=False).st_ino == os.fstat(fd).st_ino:
                break  # still the file at that name: not removed by forget() while this waited
        os.close(fd)
    try:
        yield Outbox(folder, agent_id)
    finally:
        os.close(fd)  # releases the lock


def with_pending(state_dir: Path) -> list[str]:
    """The agents whose outbox holds events, oldest first (files with names no agent id has are left alone)."""
    try:
        entries = list(os.scandir(state_dir / DIRECTORY))
    except OSError:
        return []
    pending: list[tuple[float, str]] = []
    for entry in entries:
        agent_id = entry.name.removesuffix(".jsonl")
        if agent_id != entry.name and AGENT_ID.fullmatch(agent_id):
            with contextlib.suppress(OSError):  # gone since the listing: delivered meanwhile
                pending.append((entry.stat(follow_symlinks=False).st_mtime, agent_id))
    return [agent_id for _, agent_id in sorted(pending)]
