"""``daemon.json`` in the state directory: where the running daemon listens, for its clients.

Written whole (a temporary file renamed into place) once the daemon listens, removed when it
stops; a file left by a daemon that died is ignored, because its pid is gone.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

NAME = "daemon.json"


def announce(state_dir: Path, addresses: list[str]) -> None:
    """Record this process's listen addresses."""
    path = state_dir / NAME
    partial = state_dir / f".{NAME}.{os.getpid()}.partial"
    partial.write_text(json.dumps({"pid": os.getpid(), "addresses": addresses}) + "\n", encoding="utf-8")
    partial.replace(path)


def withdraw(state_dir: Path) -> None:
    """Remove the record, if it is this process's."""
    if _read(state_dir).get("pid") == os.getpid():
        (state_dir / NAME).unlink(missing_ok=True)


def addresses(state_dir: Path) -> list[str]:
    """Where the daemon using ``state_dir`` listens; empty when none is running."""
    record = _read(state_dir)
    pid = record.get("pid")
    if not isinstance(pid, int) or not _alive(pid):
        return []
    return [address for address in record.get("addresses", []) if isinstance(address, str)]


def _read(state_dir: Path) -> dict[str, object]:
    try:
        record = json.loads((state_dir / NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
