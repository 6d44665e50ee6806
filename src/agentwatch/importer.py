"""``agentwatch import PATH... [--follow]``: the session files agents already write, into the daemon.

Each file is one agent (``claude-<session>`` for a Claude Code transcript, ``codex-<id>`` for a
Codex rollout, ``import-<name>`` otherwise), its format sniffed from its first records. Line
``n`` is sent as ``seq`` 2n, so importing a file again stores nothing twice and lines added
later continue the count; a file that has not changed for ``ENDED_AFTER`` is a finished
conversation, and its import ends with a ``session_ended`` (``seq`` 2n+1, after its last line)
so that old sessions do not wait for a reply in ``agentwatch attention``.

``--follow`` keeps reading files as they grow and picks up new ones in the directories given.
How far each file was read is kept in ``import-offsets.json`` in the state directory, so a
restarted import resumes where it stopped.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

from agentwatch.client import ClientError, Endpoint, open_agent
from agentwatch.format_choice import FormatChooser
from agentwatch.ingest_frames import is_iso_time
from agentwatch.model import Format

OFFSETS = "import-offsets.json"
ENDED_AFTER = 3600.0  # seconds without change after which a file's conversation is over
POLL = 1.0  # seconds between looks for growth in --follow
SNIFF_BYTES = 1 << 20  # read to choose a format
PREFIXES = {"claude-transcript": "claude", "codex-rollout": "codex"}  # of agent ids
KINDS = {"claude-transcript": "claude-code", "codex-rollout": "codex"}  # of agents, as agents.list shows


@dataclass
class Progress:
    """What an import has done so far."""

    files: int = 0  # files to import
    done: int = 0  # files imported
    stored: int = 0  # events the daemon took
    present: int = 0  # lines it already had
    failed: list[str] = field(default_factory=list)  # why files could not be imported


@dataclass
class _Position:
    inode: int
    offset: int  # bytes read (whole lines only)
    line: int  # lines read
    format: str
    ended: bool = False


class Offsets:
    """How far each file was read, kept in the state directory."""

    def __init__(self, state_dir: Path) -> None:
        self._path = state_dir / OFFSETS
        try:
            saved = json.loads(self._path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            saved = {}
        self.positions: dict[str, _Position] = {}
        for path, entry in (saved.items() if isinstance(saved, dict) else []):
            try:
                self.positions[path] = _Position(**entry)
            except TypeError:
                continue

    def save(self) -> None:
        """Write the positions whole (a temporary file renamed into place)."""
        partial = self._path.with_name(f".{OFFSETS}.{os.getpid()}.partial")
        partial.write_text(json.dumps({path: vars(p) for path, p in self.positions.items()}, indent=1), encoding="utf-8")
        partial.replace(self._path)


def files_under(paths: Sequence[Path]) -> list[Path]:
    """The files named, and every ``*.jsonl`` under the directories named, sorted."""
    found: set[Path] = set()
    for path in paths:
        if path.is_dir():
            found.update(p for p in path.rglob("*.jsonl") if p.is_file())
        elif path.is_file():
            found.add(path)
    return sorted(found)


def agent_id_for(path: Path, format: str) -> str:
    """The agent a file is: ``<prefix>-<file name without extension>``, in the characters agent ids allow."""
    stem = re.sub(r"[^A-Za-z0-9._:@-]", "-", path.stem)
    if format == "codex-rollout" and (match := re.search(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", stem)):
        stem = match.group(0)
    return f"{PREFIXES.get(format, 'import')}-{stem}"[:128]


def _record(line: bytes) -> Any:
    text = line.decode("utf-8", "replace")
    try:
        return json.loads(text)
    except ValueError:
        return text


def _timestamp(record: Any) -> str | None:
    """The record's own ``timestamp`` if it is an ISO 8601 time: the daemon refuses a frame with any other ``ts``."""
    ts = record.get("timestamp") if isinstance(record, dict) else None
    return ts if is_iso_time(ts) else None


def _whole_lines(path: Path, offset: int) -> Iterator[tuple[int, bytes]]:
    """The complete lines of ``path`` after byte ``offset``, each with the offset after it."""
    with open(path, "rb") as handle:
        handle.seek(offset)
        for line in handle:
            if not line.endswith(b"\n"):
                return  # still being written
            offset += len(line)
            yield offset, line


def choose_format(path: Path, name: str, formats: Mapping[str, Format]) -> str:
    """The format of ``path``: ``name``, or with ``auto`` the one its first records show."""
    chooser = FormatChooser(name, formats)
    with open(path, "rb") as handle:
        for line in handle.read(SNIFF_BYTES).splitlines():
            if line.strip() and chooser.feed(_record(line)):
                break
    chooser.finish()
    return chooser.chosen or "agentwatch"


async def import_file(path: Path, position: _Position, endpoint: Endpoint, progress: Progress, *, final: bool) -> None:
    """Send the lines of ``path`` after ``position`` (and the end of the conversation, if ``final``)."""
    agent = {"name": path.stem, "kind": KINDS.get(position.format, "import"), "labels": {"imported_from": str(path)}}
    async with open_agent(agent_id_for(path, position.format), format=position.format, agent=agent, endpoint=endpoint) as client:
        sent = 0
        for offset, line in _whole_lines(path, position.offset):
            position.line += 1
            position.offset = offset
            if not line.strip():
                continue
            if 2 * position.line <= client.acked_seq:
                progress.present += 1
                continue
            record = _record(line)
            await client.send(record, ts=_timestamp(record), seq=2 * position.line)
            sent += 1
        if final and not position.ended:
            ended = {"kind": "session_ended", "text": f"imported from {path}"}
            if 2 * position.line + 1 > client.acked_seq:
                await client.send(ended, format="agentwatch", seq=2 * position.line + 1)
            position.ended = True
        await client.wait_acked()
        progress.stored += sent


async def run_import(
    paths: Sequence[Path], *, follow: bool, format: str, formats: Mapping[str, Format], state_dir: Path, endpoint: Endpoint,
    show: Callable[[Progress], None],
) -> Progress:
    """Import ``paths`` once, or with ``follow`` for ever (until cancelled)."""
    offsets = Offsets(state_dir)
    progress = Progress()
    unreachable: str | None = None
    while True:
        files = files_under(paths)
        progress.files, progress.done = len(files), 0
        try:
            for path in files:
                await _one(path, offsets, endpoint, progress, format, formats)
                progress.done += 1
                show(progress)
            unreachable = None
        except ClientError as exc:
            if not follow:
                raise
            if unreachable is None:  # say it once, then keep trying
                print(f"agentwatch: {exc}; retrying every {POLL:g}s", file=sys.stderr)
            unreachable = str(exc)
        finally:
            offsets.save()
        if not follow:
            return progress
        await trio.sleep(POLL)


async def _one(path: Path, offsets: Offsets, endpoint: Endpoint, progress: Progress, format: str, formats: Mapping[str, Format]) -> None:
    """Import what is new in ``path``; a file that cannot be read is reported and skipped."""
    try:
        stat = path.stat()
        key = str(path.resolve())
        saved = offsets.positions.get(key)
        if saved is None or saved.inode != stat.st_ino or saved.offset > stat.st_size:
            position = _Position(stat.st_ino, 0, 0, choose_format(path, format, formats))
        else:
            position = dataclasses.replace(saved)  # moves on only once the daemon has it all
        idle = time.time() - stat.st_mtime >= ENDED_AFTER
        if stat.st_size == position.offset and (position.ended or not idle):
            return  # nothing new
        await import_file(path, position, endpoint, progress, final=idle)
        offsets.positions[key] = position
    except OSError as exc:
        progress.failed.append(f"{path}: {exc.strerror or exc}")
        print(f"agentwatch: cannot import {path}: {exc.strerror or exc}", file=sys.stderr)
