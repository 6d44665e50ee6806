"""src/agentwatch/safe_write.py on real files: a file is replaced whole, a link planted at its name
or at the temporary name is never written through (unless asked), a replaced file keeps its mode
exactly, nothing is left behind when a write fails; created directories are private."""

import os
from pathlib import Path

import pytest

from agentwatch import safe_write
from agentwatch.auth import ensure_token
from agentwatch.safe_write import make_private_dir, write_file


def mode(path: Path) -> int:
    return path.stat().st_mode & 0o7777


def victim(tmp_path: Path) -> Path:
    """A file someone else cares about, that a link points at."""
    path = tmp_path / "elsewhere" / "victim"
    path.parent.mkdir()
    path.write_text("precious\n")
    path.chmod(0o640)
    return path


def test_a_new_file_gets_the_mode_asked_for_whatever_the_umask(tmp_path):
    old_umask = os.umask(0o077)
    try:
        written = write_file(tmp_path / "a", "ünï\n", mode=0o644)
        default = write_file(tmp_path / "b", b"\x00\xff")
    finally:
        os.umask(old_umask)
    assert written == tmp_path / "a"
    assert (tmp_path / "a").read_bytes() == "ünï\n".encode()
    assert (tmp_path / "b").read_bytes() == b"\x00\xff"
    assert (mode(tmp_path / "a"), mode(tmp_path / "b")) == (0o644, 0o600)
    assert sorted(os.listdir(tmp_path)) == ["a", "b"], "no temporary file left behind"


@pytest.mark.parametrize("existing", [0o600, 0o644, 0o640])
def test_a_replaced_file_keeps_its_mode_exactly(tmp_path, existing):
    path = tmp_path / "settings.json"
    path.write_text("old")
    path.chmod(existing)
    write_file(path, "new", mode=0o644 if existing == 0o600 else 0o600)
    assert (path.read_text(), mode(path)) == ("new", existing)


def test_a_link_at_the_name_is_replaced_and_its_target_untouched(tmp_path):
    target = victim(tmp_path)
    path = tmp_path / "settings.json.agentwatch-backup"
    path.symlink_to(target)
    assert write_file(path, "backup", mode=0o600) == path
    assert not path.is_symlink() and path.read_text() == "backup"
    assert mode(path) == 0o600, "the new file's mode, not the link target's"
    assert (target.read_text(), mode(target)) == ("precious\n", 0o640)


def test_a_dangling_link_at_the_name_creates_nothing_at_its_target(tmp_path):
    path, target = tmp_path / "file", tmp_path / "elsewhere"
    path.symlink_to(target)
    write_file(path, "data")
    assert not target.exists() and not path.is_symlink() and path.read_text() == "data"


def test_through_link_writes_the_target_and_keeps_the_link(tmp_path):
    target = victim(tmp_path)
    link = tmp_path / "dotfiles-link"
    link.symlink_to(os.path.relpath(target, tmp_path))
    chain = tmp_path / "chain"
    chain.symlink_to(link)
    assert write_file(chain, "new\n", through_link=True) == target
    assert chain.is_symlink() and link.is_symlink() and os.readlink(link) == os.path.relpath(target, tmp_path)
    assert (target.read_text(), mode(target)) == ("new\n", 0o640)
    assert sorted(os.listdir(target.parent)) == ["victim"]


def test_through_link_to_a_missing_target_creates_it_with_the_mode(tmp_path):
    target = tmp_path / "dotfiles" / "settings.json"
    target.parent.mkdir()
    link = tmp_path / "settings.json"
    link.symlink_to(target)
    assert write_file(link, "{}", mode=0o600, through_link=True) == target
    assert link.is_symlink() and (target.read_text(), mode(target)) == ("{}", 0o600)


def test_a_link_planted_at_the_temporary_name_is_not_followed(tmp_path, monkeypatch):
    target = victim(tmp_path)
    names = iter([b"\x01" * 6, b"\x02" * 6])
    monkeypatch.setattr(safe_write.os, "urandom", lambda size: next(names))
    planted = tmp_path / f".file.{'01' * 6}.tmp"
    planted.symlink_to(target)
    write_file(tmp_path / "file", "data")
    assert (target.read_text(), mode(target)) == ("precious\n", 0o640)
    assert (tmp_path / "file").read_text() == "data"
    assert sorted(os.listdir(tmp_path)) == [planted.name, "elsewhere", "file"], "the planted link is left alone"


@pytest.mark.parametrize("failing", ["write", "fchmod", "fsync", "replace"])
def test_a_failed_write_leaves_the_old_file_and_no_temporary_file(tmp_path, monkeypatch, failing):
    path = tmp_path / "file"
    path.write_text("old")

    def fail(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(safe_write.os, failing, fail)
    with pytest.raises(OSError, match="No space left"):
        write_file(path, "new")
    monkeypatch.undo()
    assert path.read_text() == "old"
    assert os.listdir(tmp_path) == ["file"]


def test_not_durable_skips_fsync(tmp_path, monkeypatch):
    synced = []
    monkeypatch.setattr(safe_write.os, "fsync", synced.append)
    write_file(tmp_path / "durable", "x")
    assert len(synced) == 2, "the file and its directory"
    write_file(tmp_path / "not", "x", durable=False)
    assert len(synced) == 2


def test_a_missing_directory_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        write_file(tmp_path / "missing" / "file", "x")
    assert os.listdir(tmp_path) == []


def test_make_private_dir_makes_only_the_directories_it_creates_private(tmp_path):
    old_umask = os.umask(0o022)
    try:
        existing = tmp_path / "existing"
        existing.mkdir(mode=0o755)
        path = existing / "state" / "agentwatch"
        assert make_private_dir(path) == path
        assert make_private_dir(path) == path, "already there: fine"
    finally:
        os.umask(old_umask)
    assert (mode(existing), mode(existing / "state"), mode(path)) == (0o755, 0o700, 0o700)


def test_make_private_dir_leaves_an_existing_directory_as_it_is(tmp_path):
    tmp_path.chmod(0o755)
    make_private_dir(tmp_path)
    assert mode(tmp_path) == 0o755


def test_make_private_dir_refuses_a_file_in_the_way(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(FileExistsError):
        make_private_dir(tmp_path / "file")
    with pytest.raises(NotADirectoryError):
        make_private_dir(tmp_path / "file" / "below")


def test_the_token_files_directories_are_private(tmp_path):
    old_umask = os.umask(0o022)
    try:
        ensure_token(tmp_path / "state" / "agentwatch" / "token")
    finally:
        os.umask(old_umask)
    assert (mode(tmp_path / "state"), mode(tmp_path / "state" / "agentwatch")) == (0o700, 0o700)
