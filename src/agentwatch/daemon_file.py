"""``daemon.json`` in the state directory: where the running daemon listens and which token file it
checks, for its clients (``token_file`` is null when authentication is off; the token itself is
never written here).

Written whole (a temporary file renamed into place) once the daemon listens, removed when it
stops; a file left by a daemon that died is ignored, because its pid is gone.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from agentwatch.safe_write import write_file

NAME = "daemon.json"


def announce(state_dir: Path, addresses: list[str], token_file: Path | None) -> None:
    """Record this process's listen addresses and token file."""
    record = {"pid": os.getpid(), "addresses": addresses, "token_file": str(token_file) if token_file else None}
    # Not fsynced: after a crash the record is stale anyway (its pid is gone), and clients ignore a torn one.
    write_file(state_dir / NAME, json.dumps(record) + "\n", durable=False)


def withdraw(state_dir: Path) -> None:
    """Remove the record, if it is this process's."""
    if _read(state_dir).get("pid") == os.getpid():
        (state_dir / NAME).unlink(missing_ok=True)


def addresses(state_dir: Path) -> list[str]:
    """Where the daemon using ``state_dir`` listens; empty when none is running."""
    return [address for address in running(state_dir).get("addresses", []) if isinstance(address, str)]


def running(state_dir: Path) -> dict[str, Any]:
    """The record of the daemon using ``state_dir``; empty when none is running."""
    record = _read(state_dir)
    pid = record.get("pid")
    return record if isinstance(pid, int) and _alive(pid) else {}


def _read(state_dir: Path) -> dict[str, Any]:
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
