"""``agentwatch import PATH... [--follow]``: the session files agents already write, into the daemon.

Each file is one agent, its format sniffed from its first records. Line ``n`` is sent as
``seq`` 2n, so importing a file again stores nothing twice and lines added later continue the
count; a file that has not changed for ``ENDED_AFTER`` is a finished conversation: its last
line counts even without a newline, and its import ends with a ``session_ended`` (``seq`` 2n+1,
after its last line) so that old sessions do not wait for a reply in ``agentwatch attention``.
Lines are read in bounded memory (:mod:`agentwatch.record_lines`): a line is strict JSON or
text, and of a line over ``READ_LIMIT`` only its head is kept, as text marked as cut.

Agent ids (kept for good once given; a later version links sub-agents to parents by them)::

    claude-<name>-<hash>   a Claude Code transcript (<name>: the session uuid, its file name)
    codex-<uuid>-<hash>    a Codex rollout (the uuid its file name ends with, else the name)
    import-<name>-<hash>   any other file
    <parent id>:<name>     a Claude Code sub-agent, <project>/<session>/subagents/agent-<id>.jsonl:
                           <parent id> is the id of <project>/<session>.jsonl, <name> agent-<id>

``<hash>`` is 8 hex digits of the SHA-256 of the file's resolved path, so distinct files get
distinct ids; ``<name>`` is the file name without extension, each character an id may not hold
(and ``:``) replaced by ``-``, cut so that the id has at most 128 characters. Of these, only a
sub-agent's id holds a ``:``, and everything before its last ``:`` is its parent's id (a sub-agent whose
parent's id is too long for that gets an id of the first kind). A file imported by a version
before these ids keeps the id it had (``<prefix>-<name>``, no hash: the offsets entry says), and
a sub-agent of such a parent names that id. A file's id is looked up in the offsets first, so a
file moved elsewhere, or imported after import-offsets.json was lost, gets its id anew.

``--follow`` keeps reading files as they grow and picks up new ones in the directories given.
How far each file was read, and its agent id, are kept in ``import-offsets.json`` in the state
directory, so a restarted import resumes where it stopped.

One file that cannot be imported (unreadable, a record the daemon refuses for good) is said in
one sentence, and the import goes on with the next; only a daemon that cannot be reached stops it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import trio

from agentwatch.client import AgentClient, ClientError, Endpoint, Rejected, open_agent
from agentwatch.format_choice import FALLBACK, FormatChooser
from agentwatch.identity import AGENT_ID
from agentwatch.ingest_frames import is_iso_time
from agentwatch.model import Format
from agentwatch.record_lines import READ_LIMIT, Line, LineSplitter, record_of
from agentwatch.safe_write import write_file

OFFSETS = "import-offsets.json"
ENDED_AFTER = 3600.0  # seconds without change after which a file's conversation is over
POLL = 1.0  # seconds between looks for growth in --follow
SNIFF_BYTES = 1 << 20  # read (in whole lines) to choose a format
CHUNK = 1 << 20  # bytes read at a time
PREFIXES = {"claude-transcript": "claude", "codex-rollout": "codex"}  # of agent ids
KINDS = {"claude-transcript": "claude-code", "codex-rollout": "codex"}  # of agents, as agents.list shows
MAX_ID = 128  # characters of an agent id (identity.AGENT_ID)
HASH_HEX = 8  # hex digits of the path's hash in an agent id
UUID_AT_END = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


@dataclass
class Progress:
    """What an import has done so far."""

    files: int = 0  # files to import
    done: int = 0  # files imported
    stored: int = 0  # new events the daemon acknowledged
    present: int = 0  # lines it already had (read by an earlier import, or below its acked_seq)
    refused: int = 0  # records it refused for good
    failed: list[str] = field(default_factory=list)  # one sentence for each file with an error

    def summary(self) -> str:
        """The line ``agentwatch import`` ends with."""
        files = f"{self.files} {'file' if self.files == 1 else 'files'}"
        if self.stored or not self.present:
            line = f"imported {files}: {self.stored} events stored, {self.present} already there"
        else:  # an import run again: say so, not "0 events stored"
            line = f"nothing new in {files}: all {self.present} events were already there"
        if self.refused:
            line += f", {self.refused} refused by the daemon"
        if self.failed:
            line += f"; {len(self.failed)} {'file' if len(self.failed) == 1 else 'files'} had errors (see above)"
        return line


@dataclass
class _Position:
    inode: int
    offset: int  # bytes read (whole lines, and a last line without newline once the file is finished)
    line: int  # lines read
    format: str
    ended: bool = False  # a session_ended follows the last line
    agent_id: str = ""  # "": saved by an older version, which gave the id agent_id_for gives
    records: int = 0  # lines read that the daemon holds


@dataclass
class _Tally:
    """One file's import."""

    sent: int = 0  # lines sent
    present: int = 0  # lines the daemon already had
    refused: list[Rejected] = field(default_factory=list)  # records refused for good

    @property
    def stored(self) -> int:
        """Lines sent that the daemon took (a refused ``seq`` 2n+1 is the session_ended, not a line)."""
        return self.sent - sum(1 for r in self.refused if r.seq % 2 == 0)


class _Failed(Exception):
    """One file could not be imported; the message says which and what to do."""


class Offsets:
    """How far each file was read, and its agent id, kept in the state directory."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / OFFSETS
        try:
            saved = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            saved = {}
        self.positions: dict[str, _Position] = {}
        for key, entry in (saved.items() if isinstance(saved, dict) else []):
            if (position := _position_of(entry)) is not None:
                self.positions[key] = position
        self._forget_shared_ids()

    def _forget_shared_ids(self) -> None:
        """Of older entries whose files got one id (same name, other folders), keep the first:
        the others were counted "already there" and lost, and are imported again under ids of their own."""
        owners: set[str] = set()
        for key in sorted(self.positions):
            position = self.positions[key]
            if not position.agent_id:
                legacy = agent_id_for(Path(key), position.format)
                if legacy in owners:
                    del self.positions[key]
                owners.add(legacy)

    def save(self) -> None:
        """Write the positions whole (:func:`agentwatch.safe_write.write_file`)."""
        write_file(self.path, json.dumps({key: vars(p) for key, p in self.positions.items()}, indent=1))


def _position_of(entry: Any) -> _Position | None:
    """The saved ``entry`` as a position; None if it is not one (an entry of an older version has
    neither ``agent_id`` nor ``records``: every line it read is in the daemon)."""
    if not isinstance(entry, dict):
        return None
    try:
        position = _Position(**({"records": entry.get("line")} | entry))
    except TypeError:
        return None
    counts = (position.inode, position.offset, position.line, position.records)
    valid = (all(type(n) is int and n >= 0 for n in counts) and isinstance(position.format, str)
             and isinstance(position.ended, bool)
             and isinstance(position.agent_id, str) and (not position.agent_id or AGENT_ID.fullmatch(position.agent_id)))
    return position if valid else None


def files_under(paths: Sequence[Path], unlisted: Callable[[Path, OSError], None]) -> list[Path]:
    """The files named, and every ``*.jsonl`` under the directories named, each file once, sorted,
    sub-agents' after the others (so that their parents have their ids); ``unlisted`` hears of a
    path that cannot be looked at."""
    found: dict[Path, Path] = {}
    for path in paths:
        try:
            for file in _listed(path):
                found.setdefault(file.resolve(), file)
        except (OSError, RuntimeError) as exc:  # RuntimeError: a symlink loop
            unlisted(path, exc if isinstance(exc, OSError) else OSError(str(exc)))
    return sorted(found.values(), key=lambda p: (subagent_parent(p) is not None, p))


def _listed(path: Path) -> list[Path]:
    """``path`` if it is a file, the ``*.jsonl`` files under it if it is a directory, sorted."""
    if path.is_dir():
        return sorted(p for p in path.rglob("*.jsonl") if p.is_file())
    return [path] if path.is_file() else []


def agent_id_for(path: Path, format: str) -> str:
    """The id versions before hashes gave a file (kept for it): ``<prefix>-<file name without extension>``."""
    stem = re.sub(r"[^A-Za-z0-9._:@-]", "-", path.stem)
    if format == "codex-rollout" and (match := UUID_AT_END.search(stem)):
        stem = match.group(0)
    return f"{PREFIXES.get(format, 'import')}-{stem}"[:128]


def file_agent_id(resolved: Path, format: str) -> str:
    """``<prefix>-<name>-<hash>`` for the file at ``resolved`` (see the module's docstring)."""
    prefix = PREFIXES.get(format, "import")
    name = _id_text(resolved.stem)
    if format == "codex-rollout" and (match := UUID_AT_END.search(name)):
        name = match.group(0)
    digest = hashlib.sha256(os.fsencode(resolved)).hexdigest()[:HASH_HEX]
    return f"{prefix}-{name[: MAX_ID - len(prefix) - HASH_HEX - 2]}-{digest}"


def subagent_parent(path: Path) -> Path | None:
    """The transcript ``<project>/<session>.jsonl`` of a Claude Code sub-agent's
    ``<project>/<session>/subagents/agent-<id>.jsonl``; None for any other file."""
    session = path.parent.parent
    if path.parent.name == "subagents" and path.stem.startswith("agent-") and UUID_AT_END.fullmatch(session.name):
        return session.with_name(f"{session.name}.jsonl")
    return None


def _id_text(text: str) -> str:
    """``text`` with every character a file's part of an id may not hold replaced by ``-``."""
    return re.sub(r"[^A-Za-z0-9._@-]", "-", text)


def _printable(text: str) -> str:
    """``text`` (a path, possibly holding undecodable bytes) as valid Unicode, as the daemon takes it."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _timestamp(record: Any) -> str | None:
    """The record's own ``timestamp`` if it is an ISO 8601 time: the daemon refuses a frame with any other ``ts``."""
    ts = record.get("timestamp") if isinstance(record, dict) else None
    return ts if is_iso_time(ts) else None


def _lines(handle: BinaryIO, start: int, end: int | None, *, final: bool) -> Iterator[tuple[int, Line]]:
    """The lines of ``handle`` from byte ``start`` to ``end`` (None: its end), each with the offset
    after it; a last line without newline only if ``final`` (otherwise it is still being written)."""
    handle.seek(start)
    splitter = LineSplitter(READ_LIMIT)
    offset = read = start
    while end is None or read < end:
        chunk = handle.read(CHUNK if end is None else min(CHUNK, end - read))
        if not chunk:
            break
        read += len(chunk)
        for line in splitter.feed(chunk):
            offset += line.size + 1
            yield offset, line
    if final and (last := splitter.end()) is not None:
        yield offset + last.size, last


def _blank(line: Line) -> bool:
    return line.whole and not line.data.strip()


def choose_format(path: Path, name: str, formats: Mapping[str, Format], *, final: bool = False) -> str | None:
    """The format of ``path``: ``name``, or with ``auto`` the one its first records (the lines in
    its first ``SNIFF_BYTES``, at least one) show; None while it has no complete line that is not blank."""
    chooser = FormatChooser(name, formats)
    seen = False
    with open(path, "rb") as handle:
        for offset, line in _lines(handle, 0, None, final=final):
            if _blank(line):
                continue
            seen = True
            if chooser.feed(record_of(line)) or offset >= SNIFF_BYTES:
                break
    if not seen:
        return None
    chooser.finish()
    return chooser.chosen or FALLBACK


async def import_file(path: Path, handle: BinaryIO, position: _Position, size: int, endpoint: Endpoint, *, final: bool) -> _Tally:
    """Send the lines of ``path`` (open as ``handle``) after ``position`` up to byte ``size``, and
    the end of the conversation if ``final``, moving ``position`` on; what the daemon made of them.

    ``ClientError``: the daemon cannot be reached; :class:`_Failed`: it stopped taking this file.
    """
    agent = {"name": _printable(path.stem), "kind": KINDS.get(position.format, "import"),
             "labels": {"imported_from": _printable(str(path))}}
    welcomed = False
    try:
        async with open_agent(position.agent_id, format=position.format, agent=agent, endpoint=endpoint) as client:
            welcomed = True
            tally = await _send_lines(client, path, handle, position, size, final=final)
            await client.wait_acked()
            tally.refused = list(client.rejected)
    except ClientError as exc:
        if not welcomed:
            raise
        raise _Failed(f"the daemon stopped taking {_printable(str(path))} ({exc}); run the import again") from None
    except ValueError as exc:
        raise _Failed(f"line {position.line} of {_printable(str(path))} could not be sent ({exc}); "
                      "please report this to agentwatch's developers") from None
    return tally


async def _send_lines(client: AgentClient, path: Path, handle: BinaryIO, position: _Position, size: int, *, final: bool) -> _Tally:
    """Queue the lines after ``position`` that the daemon has not acknowledged, then the end if ``final``."""
    tally = _Tally()
    for offset, line in _lines(handle, position.offset, size, final=final):
        position.line += 1
        position.offset = offset
        if _blank(line):
            continue
        position.ended = False  # the conversation went on
        if 2 * position.line <= client.acked_seq:
            tally.present += 1
            continue
        record = record_of(line)
        await client.send(record, ts=_timestamp(record), seq=2 * position.line)
        tally.sent += 1
    if final and not position.ended:
        if 2 * position.line + 1 > client.acked_seq:
            ended = {"kind": "session_ended", "text": f"imported from {_printable(str(path))}"}
            await client.send(ended, format="agentwatch", seq=2 * position.line + 1)
        position.ended = True
    return tally


async def run_import(
    paths: Sequence[Path], *, follow: bool, format: str, formats: Mapping[str, Format], state_dir: Path, endpoint: Endpoint,
    show: Callable[[Progress], None],
) -> Progress:
    """Import ``paths`` once, or with ``follow`` for ever (until cancelled).

    ``ClientError`` (without ``follow``): the daemon cannot be reached.
    """
    importer = _Importer(Offsets(state_dir), endpoint, format, formats)
    unreachable = False
    while True:
        try:
            await importer.run_pass(paths, show)
            unreachable = False
        except ClientError as exc:
            if not follow:
                raise
            if not unreachable:  # say it once, then keep trying
                print(f"agentwatch: {exc}; retrying every {POLL:g}s", file=sys.stderr)
            unreachable = True
        finally:
            importer.save()
        if not follow:
            return importer.progress
        await trio.sleep(POLL)


class _Importer:
    """Imports files, keeping their positions in ``offsets`` and what was done in ``progress``."""

    def __init__(self, offsets: Offsets, endpoint: Endpoint, format: str, formats: Mapping[str, Format]) -> None:
        self.offsets = offsets
        self.progress = Progress()
        self._endpoint = endpoint
        self._format = format
        self._formats = formats
        self._counted: set[str] = set()  # files whose lines read earlier are in progress.present
        self._said: dict[str, str] = {}  # the error last said for each file (said again only if it changes)

    async def run_pass(self, paths: Sequence[Path], show: Callable[[Progress], None]) -> None:
        """Import what is new in every file of ``paths``."""
        self.progress.failed = []
        files = files_under(paths, lambda path, exc: self._fail(str(path), f"cannot list {_printable(str(path))} "
                                                                f"({exc.strerror or exc}); check its permissions and run the import again"))
        self.progress.files, self.progress.done = len(files), 0
        for path in files:
            await self._one(path)
            self.progress.done += 1
            show(self.progress)

    def save(self) -> None:
        """Keep the positions; a failure to is said once (a later import reads the files again)."""
        try:
            self.offsets.save()
        except OSError as exc:
            self._fail(str(self.offsets.path), f"cannot write {self.offsets.path} ({exc.strerror or exc}); the next import "
                       "reads again what this one read, and the daemon stores none of it twice", failed=False)

    async def _one(self, path: Path) -> None:
        """Import what is new in ``path``; an error of this file alone is said, and the import goes on."""
        key = str(path.resolve())
        try:
            with open(path, "rb") as handle:
                stat = os.fstat(handle.fileno())
                idle = time.time() - stat.st_mtime >= ENDED_AFTER
                position = self._position(path, key, stat, idle)
                if position is None or (stat.st_size == position.offset and (position.ended or not idle)):
                    return  # nothing (complete) yet, or nothing new
                tally = await import_file(path, handle, position, stat.st_size, self._endpoint, final=idle)
        except OSError as exc:
            self._fail(key, f"cannot read {_printable(str(path))} ({exc.strerror or exc}); check that it is readable "
                       "and run the import again")
        except _Failed as exc:
            self._fail(key, str(exc))
        else:
            self._took(key, path, position, tally)

    def _took(self, key: str, path: Path, position: _Position, tally: _Tally) -> None:
        """Keep where the import of ``path`` got to, and count what the daemon made of it."""
        position.records += tally.present + tally.stored
        self.offsets.positions[key] = position
        self.progress.stored += tally.stored
        self.progress.present += tally.present
        self.progress.refused += len(tally.refused)
        if tally.refused:
            first = tally.refused[0]
            where = f"line {first.seq // 2}" if first.seq % 2 == 0 else "the session_ended"
            self._fail(key, f"the daemon refused {len(tally.refused)} records of {_printable(str(path))} for good "
                       f"({where}: {first.code}: {first.message}); they are not stored, and its log says why")
        else:
            self._said.pop(key, None)

    def _position(self, path: Path, key: str, stat: os.stat_result, idle: bool) -> _Position | None:
        """Where to go on reading ``path`` (a copy); None while it has no complete line to choose a format by."""
        saved = self.offsets.positions.get(key)
        first = key not in self._counted
        self._counted.add(key)
        if saved is not None:
            saved = dataclasses.replace(saved, agent_id=saved.agent_id or agent_id_for(path, saved.format))
            if saved.inode == stat.st_ino and saved.offset <= stat.st_size:
                self.progress.present += saved.records if first else 0
                return saved
        format = choose_format(path, self._format, self._formats, final=idle)
        if format is None:
            return None
        if saved is None:
            return _Position(stat.st_ino, 0, 0, format, agent_id=self._new_id(Path(key), format))
        # Replaced (or cut short): its lines are new to the daemon, numbered on after the old ones
        # (numbered from 1 again, they would be taken for those and skipped). The agent stays.
        return _Position(stat.st_ino, 0, saved.line + saved.ended, format, agent_id=saved.agent_id, records=saved.records)

    def _new_id(self, resolved: Path, format: str) -> str:
        """The id of a file imported for the first time (see the module's docstring)."""
        parent = subagent_parent(resolved)
        if parent is not None:
            agent_id = f"{self._parent_id(parent.resolve())}:{_id_text(resolved.stem)}"
            if len(agent_id) <= MAX_ID:
                return agent_id
        return file_agent_id(resolved, format)

    def _parent_id(self, parent: Path) -> str:
        """The id the transcript at ``parent`` has, or will get when it is imported."""
        saved = self.offsets.positions.get(str(parent))
        if saved is not None:
            return saved.agent_id or agent_id_for(parent, saved.format)
        try:
            format = choose_format(parent, self._format, self._formats) if parent.is_file() else None
        except OSError:
            format = None
        return file_agent_id(parent, format or "claude-transcript")

    def _fail(self, key: str, sentence: str, *, failed: bool = True) -> None:
        """Say ``sentence`` on stderr (once while it stays the same), and count the file as failed."""
        if failed:
            self.progress.failed.append(sentence)
        if self._said.get(key) != sentence:
            print(f"agentwatch import: {sentence}", file=sys.stderr)
            self._said[key] = sentence
