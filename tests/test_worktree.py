"""The background ``git status`` checker behind ``uncommitted_work``, against real repositories and real git."""

import shutil
import subprocess
from contextlib import asynccontextmanager

import pytest
import trio

from agentwatch.plugins.attention.worktree import WorkTrees

GIT = shutil.which("git")
pytestmark = pytest.mark.skipif(GIT is None, reason="needs git")


def git(repo, *args):
    subprocess.run([GIT, "-C", str(repo), *args], check=True, capture_output=True)


def make_repo(path):
    """A git repository at ``path`` with one committed file, ``a.txt``: clean."""
    path.mkdir()
    git(path, "init", "-q")
    git(path, "config", "user.email", "test@example.com")
    git(path, "config", "user.name", "Test")
    git(path, "config", "commit.gpgsign", "false")
    (path / "a.txt").write_text("one\n")
    git(path, "add", "a.txt")
    git(path, "commit", "-q", "-m", "init")
    return str(path)


@pytest.fixture
def repo(tmp_path):
    return make_repo(tmp_path / "repo")


def script(path, body):
    """An executable shell script at ``path``."""
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)
    return str(path)


def counting_git(path, log):
    """A git that appends ``$GIT_OPTIONAL_LOCKS $LC_ALL`` to ``log`` for each call, then runs the real git."""
    return script(path, f'echo "$GIT_OPTIONAL_LOCKS $LC_ALL" >> "{log}"\nexec "{GIT}" "$@"')


def calls(log):
    return log.read_text().splitlines() if log.exists() else []


@asynccontextmanager
async def running(trees):
    async with trio.open_nursery() as nursery:
        await nursery.start(trees.run)
        yield
        nursery.cancel_scope.cancel()


async def until(predicate, seconds=3.0):
    with trio.fail_after(seconds):
        while not predicate():
            await trio.sleep(0.01)


async def test_clean_modified_and_untracked(tmp_path):
    clean = make_repo(tmp_path / "clean")
    modified = make_repo(tmp_path / "modified")
    (tmp_path / "modified" / "a.txt").write_text("two\n")
    untracked = make_repo(tmp_path / "untracked")
    (tmp_path / "untracked" / "new.txt").write_text("new\n")
    trees = WorkTrees(interval=3600)
    async with running(trees):
        for cwd in (clean, modified, untracked):
            trees.watch(cwd)
        await until(lambda: None not in map(trees.dirty, (clean, modified, untracked)))
    assert (trees.dirty(clean), trees.dirty(modified), trees.dirty(untracked)) == (False, True, True)


def test_no_cwd_is_unknown():
    trees = WorkTrees()
    trees.watch(None)
    trees.recheck(None)
    trees.forget(None)
    assert trees.dirty(None) is None
    assert trees.dirty("/never/watched") is None


@pytest.mark.parametrize(
    "vanish",
    [
        lambda root: shutil.rmtree(root / "repo" / ".git"),  # git now fails: "not a git repository"
        lambda root: (root / "repo").rename(root / "moved"),  # the directory is gone
    ],
    ids=["no-longer-a-work-tree", "missing-directory"],
)
async def test_a_repository_that_goes_away_is_unknown(tmp_path, repo, vanish):
    changes = []
    trees = WorkTrees(interval=3600, on_change=lambda cwd, answer: changes.append((cwd, answer)))
    async with running(trees):
        trees.watch(repo)
        await until(lambda: trees.dirty(repo) is False)
        vanish(tmp_path)
        trees.recheck(repo)
        await until(lambda: len(changes) == 2)
    assert changes == [(repo, False), (repo, None)]


async def test_git_missing_is_unknown_and_never_tried_again(tmp_path, repo, caplog):
    log = tmp_path / "calls"
    fake_git = tmp_path / "git"
    changes = []
    trees = WorkTrees(interval=3600, git=counting_git(fake_git, log), on_change=lambda *change: changes.append(change))
    async with running(trees):
        trees.watch(repo)
        await until(lambda: trees.dirty(repo) is False)
        fake_git.unlink()  # git is uninstalled
        trees.recheck(repo)
        await until(lambda: trees.dirty(repo) is None)
        assert any(isinstance(r.msg, dict) and r.msg.get("event") == "git_missing" for r in caplog.records)
        counting_git(fake_git, log)  # back again, but nobody asks it any more
        trees.recheck(repo)
        other = make_repo(tmp_path / "other")
        trees.watch(other)
        await trio.sleep(0.3)
    assert calls(log) == ["0 C"]
    assert changes == [(repo, False), (repo, None)]
    assert trees.dirty(repo) is None and trees.dirty(other) is None


async def test_git_missing_from_the_start(repo, caplog):
    changes = []
    trees = WorkTrees(git="/nonexistent/git", on_change=lambda *change: changes.append(change))
    async with running(trees):
        trees.watch(repo)
        await until(lambda: any(isinstance(r.msg, dict) and r.msg.get("event") == "git_missing" for r in caplog.records))
    assert trees.dirty(repo) is None
    assert changes == []


async def test_check_that_hangs_past_the_timeout_is_unknown(tmp_path, repo):
    hang = tmp_path / "hang"
    slow_git = script(tmp_path / "git", f'[ -e "{hang}" ] && exec sleep 30\nexec "{GIT}" "$@"')
    changes = []
    trees = WorkTrees(interval=3600, timeout=0.3, git=slow_git, on_change=lambda *change: changes.append(change))
    async with running(trees):
        trees.watch(repo)
        await until(lambda: trees.dirty(repo) is False)
        hang.touch()
        trees.recheck(repo)
        await until(lambda: trees.dirty(repo) is None, seconds=2)
        hang.unlink()  # the hung check was killed: the next one answers again
        trees.recheck(repo)
        await until(lambda: trees.dirty(repo) is False, seconds=2)
    assert changes == [(repo, False), (repo, None), (repo, False)]


async def test_recheck_updates_without_waiting_for_the_interval(tmp_path, repo):
    trees = WorkTrees(interval=3600)
    async with running(trees):
        trees.watch(repo)
        await until(lambda: trees.dirty(repo) is False)
        (tmp_path / "repo" / "a.txt").write_text("two\n")
        await trio.sleep(0.2)
        assert trees.dirty(repo) is False  # the interval has not passed: not checked again
        trees.recheck(repo)
        await until(lambda: trees.dirty(repo) is True)


async def test_rechecked_on_the_interval(tmp_path, repo):
    trees = WorkTrees(interval=0.2)
    async with running(trees):
        trees.watch(repo)
        await until(lambda: trees.dirty(repo) is False)
        (tmp_path / "repo" / "new.txt").write_text("new\n")
        await until(lambda: trees.dirty(repo) is True)


async def test_many_watches_and_rechecks_cost_one_check(tmp_path, repo):
    log = tmp_path / "calls"
    trees = WorkTrees(interval=3600, git=counting_git(tmp_path / "git", log))
    for _ in range(20):  # twenty sessions in one directory, each asking before the checker runs
        trees.watch(repo)
        trees.recheck(repo)
    async with running(trees):
        await until(lambda: trees.dirty(repo) is False)
        await trio.sleep(0.2)
        assert calls(log) == ["0 C"]  # with GIT_OPTIONAL_LOCKS=0 and LC_ALL=C
        for _ in range(20):  # a burst of writing tool calls
            trees.recheck(repo)
        await until(lambda: len(calls(log)) == 2)
        await trio.sleep(0.2)
    assert len(calls(log)) == 2


async def test_recheck_during_a_check_checks_again_afterwards(tmp_path, repo):
    started, release = tmp_path / "started", tmp_path / "release"
    # The first check waits (after git has read the tree) until the test lets it finish.
    gated_git = script(
        tmp_path / "git",
        f'out=$("{GIT}" "$@"); [ -e "{started}" ] || {{ touch "{started}"; while [ ! -e "{release}" ]; do sleep 0.01; done; }}\n'
        'printf "%s" "$out"',
    )
    trees = WorkTrees(interval=3600, git=gated_git)
    async with running(trees):
        trees.watch(repo)
        await until(started.exists)
        (tmp_path / "repo" / "a.txt").write_text("two\n")  # a tool call writes while the check runs
        trees.recheck(repo)
        release.touch()
        await until(lambda: trees.dirty(repo) is True)


async def test_at_most_concurrency_checks_at_once(tmp_path):
    log = tmp_path / "log"
    slow_git = script(tmp_path / "git", f'echo start >> "{log}"; sleep 0.15; echo end >> "{log}"\nexec "{GIT}" "$@"')
    repos = [make_repo(tmp_path / f"repo{i}") for i in range(5)]
    trees = WorkTrees(interval=3600, concurrency=2, git=slow_git)
    async with running(trees):
        for cwd in repos:
            trees.watch(cwd)
        await until(lambda: all(trees.dirty(cwd) is False for cwd in repos))
    now = most = 0
    for line in log.read_text().split():
        now += 1 if line == "start" else -1
        most = max(most, now)
    assert most == 2


async def test_on_change_only_on_changes(tmp_path, repo):
    log = tmp_path / "calls"
    changes = []
    trees = WorkTrees(interval=3600, git=counting_git(tmp_path / "git", log), on_change=lambda *change: changes.append(change))
    async with running(trees):
        trees.watch(repo)
        await until(lambda: trees.dirty(repo) is False)
        trees.recheck(repo)  # still clean
        await until(lambda: len(calls(log)) == 2)
        await trio.sleep(0.2)
        assert changes == [(repo, False)]
        (tmp_path / "repo" / "a.txt").write_text("two\n")
        trees.recheck(repo)
        await until(lambda: len(changes) == 2)
    assert changes == [(repo, False), (repo, True)]


async def test_forget_stops_tracking(tmp_path, repo):
    log = tmp_path / "calls"
    trees = WorkTrees(interval=0.1, git=counting_git(tmp_path / "git", log))
    async with running(trees):
        trees.watch(repo)
        await until(lambda: trees.dirty(repo) is False)
        trees.forget(repo)
        await trio.sleep(0.1)  # a check already under way may finish
        checks = len(calls(log))
        trees.recheck(repo)
        await trio.sleep(0.3)
    assert trees.dirty(repo) is None
    assert len(calls(log)) == checks


async def test_git_environment_of_the_daemon_does_not_redirect_the_check(tmp_path, repo, monkeypatch):
    other = make_repo(tmp_path / "other")
    (tmp_path / "other" / "a.txt").write_text("changed\n")
    monkeypatch.setenv("GIT_DIR", f"{other}/.git")
    monkeypatch.setenv("GIT_WORK_TREE", other)
    trees = WorkTrees(interval=3600)
    async with running(trees):
        trees.watch(repo)
        await until(lambda: trees.dirty(repo) is not None)
    assert trees.dirty(repo) is False
