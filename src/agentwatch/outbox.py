"""The outbox: an agent's events, numbered and kept on disk until the daemon acknowledges them.

Commands that forward an agent's records (``agentwatch hook``, ``agentwatch run``) write each
record here first and then deliver it, so nothing is lost when the daemon is down, restarts, or
the forwarding process dies: whoever next works on that agent's outbox (the next hook, the next
``run``, or ``agentwatch flush``) sends what is still pending. Each event gets its ``seq`` when
it is written, so a resent event is one the daemon recognises and does not store twice.

Per agent, in ``<state dir>/outbox/``:

- ``<agent_id>.json``: the hello to connect with and the highest ``seq`` acknowledged (replaced
  whole, never written in place);
- ``<agent_id>.jsonl``: the pending events, one ingest event object per line; it exists only while
  something is pending;
- ``<agent_id>.lock``: held (``flock``) by the one process working on this agent's outbox.

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

DIRECTORY = "outbox"


class Outbox:
    """One agent's outbox; open it with :func:`locked`, which makes this process its only user.

    Safe to share between the threads of that process.
    """

    def __init__(self, directory: Path, agent_id: str) -> None:
        self.agent_id = agent_id
        self._header_path = directory / f"{agent_id}.json"
        self._events_path = directory / f"{agent_id}.jsonl"
        self._lock = threading.Lock()
        self.hello: dict[str, Any] = {}
        self.acked = 0  # the highest seq the daemon acknowledged, as last heard
        self.sent = 0  # the highest seq ever handed to a connection
        self._pending: list[tuple[int, str]] = []  # (seq, the event object as JSON text)
        self.damaged = 0  # lines of the events file that could not be read (a crash mid-write)
        self._load()

    def _load(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            header = json.loads(self._header_path.read_text(encoding="utf-8"))
            if isinstance(header, dict):
                self.hello = _typed(header.get("hello"), dict, {})
                self.acked = _typed(header.get("acked"), int, 0)
                self.sent = _typed(header.get("sent"), int, self.acked)
        try:
            text = self._events_path.read_text(encoding="utf-8")
        except OSError:
            return
        *lines, partial = text.split("\n")  # not splitlines: U+2028 in a record is no line end
        if partial:  # a crash mid-write: drop the piece, or the next line would be glued to it
            self.damaged += 1
            _replace(self._events_path, "".join(line + "\n" for line in lines))
        for line in lines:
            try:
                seq = json.loads(line)["seq"]
            except (ValueError, KeyError, TypeError):
                self.damaged += 1
                continue
            if isinstance(seq, int) and seq > self.acked and (not self._pending or seq > self._pending[-1][0]):
                self._pending.append((seq, line))
        if not self._pending:  # only acknowledged or unreadable lines: nothing to deliver, no file to list
            self._events_path.unlink(missing_ok=True)

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
        """The hello to connect with (a later flush by another process uses it too)."""
        with self._lock:
            if hello != self.hello:
                self.hello = hello
                self._write_header()

    def append(self, records: list[tuple[Any, str, str | None]]) -> list[int]:
        """Write ``(data, format, ts)`` records as events numbered after ``last_seq``; their ``seq`` numbers."""
        with self._lock:
            seqs: list[int] = []
            lines: list[str] = []
            for data, format, ts in records:
                seqs.append(self.last_seq + 1)
                event = {"seq": seqs[-1], "format": format, "data": data} | ({"ts": ts} if ts else {})
                lines.append(json.dumps(event, separators=(",", ":")))
                self._pending.append((seqs[-1], lines[-1]))
            with open(self._events_path, "a", encoding="utf-8") as handle:
                handle.write("".join(line + "\n" for line in lines))
            return seqs

    def handing_over(self, seq: int) -> None:
        """Events up to ``seq`` are about to go to a connection (recorded first, see :meth:`welcomed`)."""
        with self._lock:
            if seq > self.sent:
                self.sent = seq
                self._write_header()

    def welcomed(self, acked: int) -> None:
        """A daemon's welcome: it holds this agent's events up to ``acked``.

        Events this outbox never handed to a connection yet numbered at or below ``acked`` would be
        taken for duplicates (the daemon knows this agent id from elsewhere, or this outbox lost
        its header); they, and every event after them, are numbered anew after ``acked``.
        """
        with self._lock:
            first_unsent = next((i for i, (seq, _) in enumerate(self._pending) if seq > self.sent), None)
            if first_unsent is not None and self._pending[first_unsent][0] <= acked:
                renumbered = []
                for offset, (_, line) in enumerate(self._pending[first_unsent:], start=1):
                    event = json.loads(line)
                    event["seq"] = acked + offset
                    renumbered.append((acked + offset, json.dumps(event, separators=(",", ":"))))
                self._pending[first_unsent:] = renumbered
                _replace(self._events_path, "".join(line + "\n" for _, line in self._pending))
        self.acknowledge(acked)

    def acknowledge(self, seq: int) -> None:
        """The daemon has every event up to ``seq``: they leave the outbox."""
        with self._lock:
            if seq <= self.acked:
                return
            self.acked = seq
            self.sent = max(self.sent, seq)
            self._pending = [(held, line) for held, line in self._pending if held > seq]
            self._write_header()  # the events file may keep acknowledged lines: loading skips them
            if not self._pending:
                self._events_path.unlink(missing_ok=True)

    def discard(self, seq: int) -> None:
        """The daemon refused event ``seq`` for good: it leaves the outbox unacknowledged."""
        with self._lock:
            kept = [(held, line) for held, line in self._pending if held != seq]
            if len(kept) != len(self._pending):
                self._pending = kept
                if kept:
                    _replace(self._events_path, "".join(line + "\n" for _, line in kept))
                else:
                    self._events_path.unlink(missing_ok=True)

    def forget(self) -> None:
        """The agent is gone: remove its files if nothing is pending."""
        with self._lock:
            if not self._pending:
                self._header_path.unlink(missing_ok=True)
                self._events_path.unlink(missing_ok=True)

    def _write_header(self) -> None:
        header = {"hello": self.hello, "acked": self.acked, "sent": self.sent}
        _replace(self._header_path, json.dumps(header) + "\n")


def _typed(value: Any, kind: type, default: Any) -> Any:
    return value if isinstance(value, kind) and not isinstance(value, bool) else default


def _replace(path: Path, text: str) -> None:
    """Write ``path`` whole: a reader sees the old content or the new, never a mix."""
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    partial.write_text(text, encoding="utf-8")
    partial.replace(path)


def directory(state_dir: Path) -> Path:
    """The outbox directory of ``state_dir``, created (mode 0700) if absent."""
    path = state_dir / DIRECTORY
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path


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
    fd = os.open(folder / f"{agent_id}.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, operation)
        except BlockingIOError:
            yield None
            return
        yield Outbox(folder, agent_id)
    finally:
        os.close(fd)  # releases the lock


def with_pending(state_dir: Path) -> list[str]:
    """The agents whose outbox holds events, oldest first."""
    try:
        entries = list(os.scandir(state_dir / DIRECTORY))
    except OSError:
        return []
    pending = [entry for entry in entries if entry.name.endswith(".jsonl") and not entry.name.startswith(".")]
    pending.sort(key=lambda entry: entry.stat().st_mtime)
    return [entry.name[: -len(".jsonl")] for entry in pending]
