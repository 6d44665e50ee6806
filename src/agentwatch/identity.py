"""Naming agents and stamping records, for the commands that forward an agent's records (cheap to import)."""

from __future__ import annotations

import os
import re
import socket
import time
from pathlib import Path

AGENT_ID = re.compile(r"[A-Za-z0-9._:@-]{1,128}")
AGENT_ID_RULE = "1-128 characters of A-Z a-z 0-9 . _ : @ -"
SHELLS = frozenset({"sh", "bash", "dash", "zsh", "fish", "ksh", "busybox"})


def short_host() -> str:
    """This machine's host name, without its domain."""
    return socket.gethostname().split(".")[0]


def claude_pid() -> int:
    """The process that ran this hook, past any shell in between (Claude Code runs hooks through one)."""
    pid = os.getppid()
    for _ in range(4):
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return pid  # no /proc (macOS): the parent it is
        name, _, rest = stat[stat.index("(") + 1 :].rpartition(")")
        parent = int(rest.split()[1])
        if name not in SHELLS or parent <= 1:
            return pid
        pid = parent
    return pid


def iso_now() -> str:
    """The current time, ISO 8601 UTC with milliseconds."""
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1000):03d}Z"


def id_part(text: str) -> str:
    """``text`` with every character an agent id may not hold replaced by ``-``."""
    return "".join(c if c.isascii() and (c.isalnum() or c in "._:@-") else "-" for c in text) or "host"


def check_agent_id(agent_id: str) -> str:
    """``agent_id`` if the daemon takes it (the same rule), else ``ValueError`` saying the rule."""
    if not AGENT_ID.fullmatch(agent_id):
        raise ValueError(f"agent id {agent_id[:140]!r} is not valid: use {AGENT_ID_RULE}")
    return agent_id
