"""Where agentwatch keeps its state, resolved from the environment alone (cheap to import)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path


def default_state_dir(environ: Mapping[str, str]) -> Path:
    """``$STATE_DIRECTORY`` (systemd), else ``$XDG_STATE_HOME/agentwatch``, else ``~/.local/state/agentwatch``."""
    if state_directory := environ.get("STATE_DIRECTORY"):
        return Path(state_directory.split(":")[0])
    if xdg := environ.get("XDG_STATE_HOME"):
        return Path(xdg) / "agentwatch"
    return Path.home() / ".local" / "state" / "agentwatch"


def state_dir_from(environ: Mapping[str, str]) -> Path:
    """``$AGENTWATCH_STATE_DIR``, else :func:`default_state_dir` (``~`` expanded)."""
    explicit = environ.get("AGENTWATCH_STATE_DIR")
    return (Path(explicit) if explicit else default_state_dir(environ)).expanduser()
