"""How a person runs this agentwatch from a shell, for the commands that hints name.

After the README's set-up, ``agentwatch`` is ``.venv/bin/agentwatch`` and may not be on PATH: a
hint that says "run agentwatch serve" would send the person to "command not found".
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
from pathlib import Path


def command_name(argv0: str | None = None, path: str | None = None) -> str:
    """``agentwatch`` when that is what the shell finds on ``path`` (default ``$PATH``), else the
    program as it was run (``.venv/bin/agentwatch``, ``/usr/bin/python3 -m agentwatch``)."""
    program = Path(sys.argv[0] if argv0 is None else argv0)
    if program.name == "__main__.py":
        return f"{shlex.quote(sys.executable)} -m agentwatch"
    found = shutil.which("agentwatch", path=os.environ.get("PATH") if path is None else path)
    if found is not None and _same(Path(found), program):
        return "agentwatch"
    return shlex.quote(str(program))


def _same(a: Path, b: Path) -> bool:
    try:
        return a.samefile(b)
    except OSError:
        return False
