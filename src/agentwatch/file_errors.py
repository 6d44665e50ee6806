"""What to tell a person when the file system refuses one of agentwatch's paths at start-up:
what is wrong with it and what to do, as one clause of a one-line error."""

from __future__ import annotations

import errno
import os
import pwd
import stat
from pathlib import Path

ELSEWHERE = "choose another --state-dir"


def explain(exc: OSError, path: Path) -> str:
    """What is wrong, given ``exc`` from making or opening ``path``, and what to do."""
    code = exc.errno
    if code in (errno.ENOTDIR, errno.EEXIST) and (blocker := _file_in_the_way(path)) is not None:
        return f"{blocker} is a file, not a directory; move it away or {ELSEWHERE}"
    where = _nearest_existing(path)
    if code == errno.EROFS:
        directory = where if stat.S_ISDIR(_mode(where) or 0) else where.parent
        return f"{directory} is on a read-only file system; make it writable or {ELSEWHERE}"
    if code in (errno.EACCES, errno.EPERM):
        doing = "write in" if stat.S_ISDIR(_mode(where) or 0) else "open"
        return f"{_user()} may not {doing} {where}; give it access or {ELSEWHERE}"
    if code in (errno.ENOSPC, errno.EDQUOT):
        return f"the file system of {where} is full; free space on it, then start again"
    return f"{exc.strerror or exc}; check {where} or {ELSEWHERE}"


def unwritable(directory: Path) -> OSError | None:
    """Why this process cannot create files in ``directory`` (a read-only file system, no
    permission), or None when nothing is seen to stop it."""
    try:
        if os.statvfs(directory).f_flag & os.ST_RDONLY:
            return OSError(errno.EROFS, os.strerror(errno.EROFS), str(directory))
    except OSError as exc:
        return exc
    if not os.access(directory, os.W_OK | os.X_OK):
        return OSError(errno.EACCES, os.strerror(errno.EACCES), str(directory))
    return None


def _file_in_the_way(path: Path) -> Path | None:
    """The first part of ``path``, from the root down, that exists and is not a directory."""
    for part in [*reversed(path.parents), path]:
        if (mode := _mode(part)) is not None and not stat.S_ISDIR(mode):
            return part
    return None


def _nearest_existing(path: Path) -> Path:
    return next((part for part in [path, *path.parents] if _mode(part) is not None), path)


def _mode(path: Path) -> int | None:
    """``path``'s mode; None when this user cannot see it (absent, or in a directory it may not enter)."""
    try:
        return path.stat().st_mode
    except OSError:
        return None


def _user() -> str:
    uid = os.geteuid()
    try:
        return f"user {pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"
