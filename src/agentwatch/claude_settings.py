"""``agentwatch hooks install|uninstall``: our entries in Claude Code's ``settings.json``.

Install adds, for every hook event agentwatch reads, one command entry that runs ``agentwatch
hook``; whatever else the file holds stays as it was, and the file as it was is kept next to
it (``settings.json.agentwatch-backup``). Uninstall removes exactly the entries that run
``agentwatch hook`` (and any group left empty by that), nothing else.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import stat
import sys
from pathlib import Path
from typing import Any

from agentwatch.safe_write import write_file

#: The hook events forwarded; the tool events take a matcher ("*": every tool).
EVENTS = (
    "SessionStart",
    "UserPromptSubmit",
    "PreToolUse",
    "PostToolUse",
    "PostToolUseFailure",
    "PermissionRequest",
    "Notification",
    "Stop",
    "SubagentStart",
    "SubagentStop",
    "PreCompact",
    "SessionEnd",
)
WITH_MATCHER = frozenset({"PreToolUse", "PostToolUse", "PostToolUseFailure", "PermissionRequest"})
TIMEOUT_S = 10  # Claude Code stops waiting for the command after this (it finishes in milliseconds)
SCOPES = ("user", "project", "local")


class SettingsError(Exception):
    """The settings file cannot be read or written; the message says which and why."""


def settings_path(scope: str, home: Path, project: Path) -> Path:
    """Claude Code's settings file for ``scope``: user (all projects), project (shared), local (yours, this project)."""
    if scope == "user":
        return home / ".claude" / "settings.json"
    return project / ".claude" / ("settings.json" if scope == "project" else "settings.local.json")


def hook_command() -> str:
    """The command line Claude Code runs: this installation's ``agentwatch`` (Claude Code's PATH may lack it)."""
    found = shutil.which("agentwatch")
    program = Path(sys.argv[0]) if Path(sys.argv[0]).name == "agentwatch" else Path(found) if found else None
    return f"{shlex.quote(str(program.resolve()))} hook" if program else f"{shlex.quote(sys.executable)} -m agentwatch hook"


def is_ours(entry: Any) -> bool:
    """An entry that runs ``agentwatch hook`` (however the program is spelled)."""
    if not isinstance(entry, dict) or not isinstance(entry.get("command"), str):
        return False
    try:
        words = shlex.split(entry["command"])
    except ValueError:
        return False
    return words[-1:] == ["hook"] and (Path(words[0]).name == "agentwatch" or words[-3:-1] == ["-m", "agentwatch"])


def installed(settings: dict[str, Any], command: str) -> dict[str, Any]:
    """``settings`` with our entry for every event (an existing one of ours is kept, not doubled)."""
    result = json.loads(json.dumps(settings))
    hooks = result.setdefault("hooks", {})
    if not isinstance(hooks, dict):
        raise SettingsError("its \"hooks\" is not an object; fix it by hand first")
    for event in EVENTS:
        groups = hooks.setdefault(event, [])
        if not isinstance(groups, list):
            raise SettingsError(f"its hooks.{event} is not a list; fix it by hand first")
        if any(is_ours(entry) for group in groups for entry in _entries(group)):
            continue
        group: dict[str, Any] = {"matcher": "*"} if event in WITH_MATCHER else {}
        group["hooks"] = [{"type": "command", "command": command, "timeout": TIMEOUT_S}]
        groups.append(group)
    return result


def _entries(group: Any) -> list[Any]:
    """The entries of a hook group ([] if it is not an object holding a list of them)."""
    entries = group.get("hooks") if isinstance(group, dict) else None
    return entries if isinstance(entries, list) else []


def uninstalled(settings: dict[str, Any]) -> dict[str, Any]:
    """``settings`` without our entries; groups and events left empty by that go too."""
    result = json.loads(json.dumps(settings))
    hooks = result.get("hooks")
    if not isinstance(hooks, dict):
        return result
    for event, groups in list(hooks.items()):
        if not isinstance(groups, list):
            continue
        kept = []
        for group in groups:
            entries = group.get("hooks") if isinstance(group, dict) else None
            if isinstance(entries, list) and any(is_ours(entry) for entry in entries):
                group = group | {"hooks": [entry for entry in entries if not is_ours(entry)]}
                if not group["hooks"]:
                    continue
            kept.append(group)
        if kept:
            hooks[event] = kept
        elif groups:
            del hooks[event]
    if not hooks:
        del result["hooks"]
    return result


def check_inside(path: Path, project: Path) -> None:
    """``SettingsError`` if ``path`` (or a link on the way to it) leads out of ``project``: in project
    and local scope a cloned repository controls ``.claude/``, and a link it plants there must not
    make ``hooks install`` rewrite a file elsewhere (``~/.bashrc``)."""
    real, base = Path(os.path.realpath(path)), Path(os.path.realpath(project))
    if not real.is_relative_to(base):
        raise SettingsError(f"{path} leads outside the project, to {real}; a project's settings file must be in the project: "
                            "remove that link (or install with --scope user), then run this again")


def read(path: Path) -> dict[str, Any]:
    """The settings in ``path`` ({} if there is no file)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise SettingsError(f"cannot read {path}: {exc.strerror}") from None
    try:
        settings = json.loads(text) if text.strip() else {}
    except ValueError as exc:
        raise SettingsError(f"{path} is not valid JSON ({exc}); fix it, then run this again") from None
    if not isinstance(settings, dict):
        raise SettingsError(f"{path} does not hold a JSON object; fix it, then run this again")
    return settings


def write(path: Path, settings: dict[str, Any]) -> Path | None:
    """Replace ``path`` with ``settings`` (whole, in one rename), keeping the old file as a backup; the backup's path.

    A symlinked settings file (a dotfiles setup) stays a link: its target gets the settings and
    keeps its mode. A new settings file is made 0600, whatever the umask: it may hold secrets
    (``env``, ``apiKeyHelper``) and only its owner's Claude Code reads it.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _cannot_write(path.parent, path, exc) from None
    backup = _back_up(path)
    try:
        write_file(path, json.dumps(settings, indent=2, ensure_ascii=False) + "\n", mode=0o600, through_link=True)
    except OSError as exc:
        raise _cannot_write(path, path, exc) from None
    return backup


def _back_up(path: Path) -> Path | None:
    """Copy the settings file (if there is one) to a new regular file beside it with its mode; the copy.

    A link at the backup's name (in project scope a cloned repository controls ``.claude/``) is
    replaced, never written through; an older backup is replaced too, its mode not kept.
    """
    backup = path.with_name(path.name + ".agentwatch-backup")
    try:
        with open(path, "rb") as file:
            old, mode = file.read(), stat.S_IMODE(os.fstat(file.fileno()).st_mode)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise SettingsError(f"cannot read {path}: {exc.strerror}") from None
    try:
        backup.unlink(missing_ok=True)
        write_file(backup, old, mode=mode)
    except OSError as exc:
        raise _cannot_write(backup, path, exc) from None
    return backup


def _cannot_write(file: Path, settings: Path, exc: OSError) -> SettingsError:
    return SettingsError(f"cannot write {file}: {exc.strerror or exc}; {settings} is unchanged: fix that, then run this again")
