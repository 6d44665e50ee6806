"""Files written whole, and directories made private: a reader of a file sees its old content or
its new, never a mix; a link planted at the file's name is replaced, not written through (unless
asked), and none at the temporary name is ever followed; a replaced file keeps its mode exactly.

Standard library only (``os``): ``agentwatch hook`` imports it and must stay cheap.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

#: The temporary file: always new (a link or file already at its name fails the open, never followed).
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
_TRIES = 16  # random names tried before giving up (a clash is as good as impossible)


def write_file(path: Path, data: str | bytes, *, mode: int = 0o600, through_link: bool = False,
               durable: bool = True) -> Path:
    """Replace ``path`` whole with ``data`` (str is written as UTF-8); the path actually written.

    ``data`` goes to a new temporary file beside the target, renamed over it. The file keeps the
    mode of the regular file it replaces; a new one gets ``mode``. A symlink at ``path`` is
    replaced by the file, or with ``through_link`` its final target is written and the link
    stays. ``durable``: the data and the rename are on disk when this returns. OSError propagates;
    the temporary file is gone then.
    """
    target = Path(os.path.realpath(path)) if through_link else path
    content = data.encode("utf-8") if isinstance(data, str) else data
    temporary = _written_beside(target, content, _kept_mode(target, mode), durable)
    try:
        os.replace(temporary, target)
    except BaseException:
        _remove(temporary)
        raise
    if durable:
        sync_directory(target.parent)
    return target


def make_private_dir(path: Path) -> Path:
    """Create ``path`` and its missing parents, each with mode 0700 (directories already there are
    left as they are); ``path``."""
    try:
        _mkdir(path)
    except FileNotFoundError:
        if path.parent == path:
            raise
        make_private_dir(path.parent)
        _mkdir(path)
    return path


def _mkdir(path: Path) -> None:
    """Create the directory ``path`` (0700) unless it is there; FileNotFoundError: its parent is not."""
    try:
        os.mkdir(path, 0o700)
    except OSError:
        if not os.path.isdir(path):
            raise


def _kept_mode(target: Path, mode: int) -> int:
    """The mode of the regular file at ``target`` (a link there is not followed), else ``mode``."""
    try:
        status = os.lstat(target)
    except FileNotFoundError:
        return mode
    return stat.S_IMODE(status.st_mode) if stat.S_ISREG(status.st_mode) else mode


def _written_beside(target: Path, content: bytes, mode: int, durable: bool) -> Path:
    """A new hidden file in ``target``'s directory holding ``content`` with ``mode``; removed on failure."""
    fd, temporary = _create_beside(target)
    try:
        try:
            view = memoryview(content)
            while view:
                view = view[os.write(fd, view):]
            os.fchmod(fd, mode)
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
    except BaseException:
        _remove(temporary)
        raise
    return temporary


def _create_beside(target: Path) -> tuple[int, Path]:
    """Open a new file with a random hidden name next to ``target``: its descriptor and path."""
    tries = _TRIES
    while True:
        temporary = target.with_name(f".{target.name}.{os.urandom(6).hex()}.tmp")
        try:
            return os.open(temporary, _CREATE, 0o600), temporary
        except FileExistsError:
            tries -= 1
            if not tries:
                raise


def _remove(temporary: Path) -> None:
    try:
        os.unlink(temporary)
    except OSError:
        pass  # already gone, or the file system refuses even this: nothing more to do


def sync_directory(directory: Path) -> None:
    """Put the directory's entries (a rename in it) on disk."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
