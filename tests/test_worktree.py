"""The background ``git status`` checker behind ``uncommitted_work``, against real repositories and real git."""

import os
import shutil
import subprocess
from contextlib import asynccontextmanager
from pathlib import Path

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
    """A git that appends ``$GIT_OPTIONAL_LOCKS $LC_ALL`` to ``log`` for each ``status`` (one a check), then
    runs the real git."""
    return script(path, f'case " $* " in *" status "*) echo "$GIT_OPTIONAL_LOCKS $LC_ALL" >> "{log}";; esac\nexec "{GIT}" "$@"')


def recording_git(path, log):
    """A git that appends ``SUBCOMMAND EXIT_CODE`` (``status``, or ``other``) to ``log`` once each call ends."""
    return script(
        path,
        f'"{GIT}" "$@"; code=$?\ncase " $* " in *" status "*) run=status;; *) run=other;; esac\n'
        f'echo "$run $code" >> "{log}"; exit $code',
    )


def calls(log):
    return log.read_text().splitlines() if log.exists() else []


def arm(repo, ran, filter_keys=("clean", "smudge"), driver="evil"):
    """Make ``repo``'s own configuration run programs in ``git status``: an fsmonitor hook and the required
    filter ``driver`` (its ``filter_keys``), each touching a file named after it in ``ran``. ``a.txt``'s stat data
    goes stale (same content), so status must hash it through the filter."""
    ran.mkdir(exist_ok=True)
    git(repo, "config", "core.fsmonitor", script(ran.parent / "fsmonitor.sh", f'touch "{ran}/fsmonitor"'))
    filter_command = script(ran.parent / "filter.sh", f'touch "{ran}/filter"\nexec cat')
    for key in filter_keys:
        git(repo, "config", f"filter.{driver}.{key}", filter_command)
    git(repo, "config", f"filter.{driver}.required", "true")  # not filtering is then fatal, unless overridden too
    os.utime(Path(repo) / "a.txt", (1_000_000_000, 1_000_000_000))


def plain_status_runs(repo, ran):
    """The programs (files in ``ran``) that ``git status`` as the check ran it before starts in ``repo``;
    their files are removed again. Optional locks stay off: the index keeps its stale stat data."""
    subprocess.run([GIT, "-C", repo, "status", "--porcelain"], capture_output=True, env=os.environ | {"GIT_OPTIONAL_LOCKS": "0"})
    touched = sorted(path.name for path in ran.iterdir())
    for path in ran.iterdir():
        path.unlink()
    return touched


def capped(caplog):
    return [r for r in caplog.records if isinstance(r.msg, dict) and r.msg.get("event") == "worktrees_capped"]


@asynccontextmanager
async def running(trees):
    async with trio.open_nursery() as nursery:
        await nursery.start(trees.run)
        yield
        nursery.cancel_scope.cancel()


async def answers(repos):
    """What the checker says of each of ``repos``, once it has checked them all."""
    trees = WorkTrees(interval=3600)
    async with running(trees):
        for repo in repos:
            trees.watch(repo)
        await until(lambda: None not in map(trees.dirty, repos))
    return list(map(trees.dirty, repos))


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
    # The first check's status waits (after git has read the tree) until the test lets it finish.
    gated_git = script(
        tmp_path / "git",
        f'case " $* " in *" status "*) ;; *) exec "{GIT}" "$@";; esac\n'
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


@pytest.mark.parametrize("filter_keys", [("clean", "smudge"), ("process",)], ids=["clean-smudge", "process"])
async def test_programs_the_repository_configures_never_run(tmp_path, filter_keys):
    ran = tmp_path / "ran"
    repos = []
    for name in ("clean", "dirty"):
        repo = make_repo(tmp_path / name)
        (tmp_path / name / ".gitattributes").write_text("* filter=evil\n")
        git(repo, "add", ".gitattributes")
        git(repo, "commit", "-q", "-m", "attributes")
        arm(repo, ran, filter_keys)
        repos.append(repo)
    (tmp_path / "dirty" / "new.txt").write_text("new\n")
    for repo in repos:
        assert plain_status_runs(repo, ran) == ["filter", "fsmonitor"]  # what the check must not do
    assert await answers(repos) == [False, True]
    assert list(ran.iterdir()) == []


async def test_a_submodules_programs_never_run_and_its_commit_still_counts(tmp_path):
    ran = tmp_path / "ran"
    sub = make_repo(tmp_path / "sub")
    (tmp_path / "sub" / "b.txt").write_text("b\n")
    git(sub, "add", "b.txt")
    git(sub, "commit", "-q", "-m", "b")
    tops = []
    for name in ("same", "moved"):
        top = make_repo(tmp_path / name)
        git(top, "-c", "protocol.file.allow=always", "submodule", "add", "-q", sub, "sub")
        git(top, "commit", "-q", "-m", "submodule")
        tops.append(top)
    git(f"{tops[1]}/sub", "checkout", "-q", "HEAD~")  # not the commit the superproject records
    for top in tops:
        inner = f"{top}/sub"
        info = Path(subprocess.run([GIT, "-C", inner, "rev-parse", "--absolute-git-dir"], capture_output=True, text=True).stdout.strip()) / "info"
        info.mkdir(exist_ok=True)
        (info / "attributes").write_text("* filter=evil\n")
        arm(inner, ran)
        assert plain_status_runs(top, ran) == ["filter", "fsmonitor"]  # git status recurses, with the submodule's config
    assert await answers(tops) == [False, True]
    assert list(ran.iterdir()) == []


async def test_a_partial_clone_fetches_nothing(tmp_path, repo):
    ran = tmp_path / "ran"
    ran.mkdir()
    upload_pack = script(tmp_path / "upload-pack", f'touch "{ran}/upload-pack"\nexit 1')
    git(repo, "config", "core.repositoryformatversion", "1")
    git(repo, "config", "extensions.partialClone", "origin")
    git(repo, "config", "remote.origin.url", repo)
    git(repo, "config", "remote.origin.uploadpack", upload_pack)
    git(repo, "config", "remote.origin.promisor", "true")
    (tmp_path / "repo" / "a.txt").write_text("two\n")
    git(repo, "add", "a.txt")  # the index no longer caches HEAD's tree: status reads it
    tree = subprocess.run([GIT, "-C", repo, "rev-parse", "HEAD^{tree}"], capture_output=True, text=True).stdout.strip()
    (tmp_path / "repo" / ".git" / "objects" / tree[:2] / tree[2:]).unlink()  # as if never fetched
    assert plain_status_runs(repo, ran) == ["upload-pack"]  # a lazy fetch, running the remote's uploadpack
    log = tmp_path / "calls"
    trees = WorkTrees(interval=3600, git=recording_git(tmp_path / "git", log))
    async with running(trees):
        trees.watch(repo)
        await until(lambda: "status 128" in calls(log))  # "unable to read tree"
    assert trees.dirty(repo) is None
    assert list(ran.iterdir()) == []


async def test_a_filter_name_git_cannot_override_is_not_checked(tmp_path, repo):
    ran = tmp_path / "ran"
    arm(repo, ran, driver="a=b")  # "-c filter.a=b.clean=" would set filter.a to "b.clean="
    (tmp_path / "repo" / ".git" / "info" / "attributes").write_text("* filter=a=b\n")
    assert plain_status_runs(repo, ran) == ["filter", "fsmonitor"]
    log = tmp_path / "calls"
    trees = WorkTrees(interval=3600, git=recording_git(tmp_path / "git", log))
    async with running(trees):
        trees.watch(repo)
        await until(lambda: calls(log))
        await trio.sleep(0.2)
    assert calls(log) == ["other 0"]  # git config only
    assert trees.dirty(repo) is None
    assert list(ran.iterdir()) == []


async def test_directories_beyond_the_limit_wait_for_room(tmp_path, caplog):
    log = tmp_path / "calls"
    repos = [make_repo(tmp_path / f"repo{i}") for i in range(5)]
    trees = WorkTrees(interval=3600, limit=2, git=counting_git(tmp_path / "git", log))
    async with running(trees):
        for cwd in repos[:4] * 2:
            trees.watch(cwd)
        await until(lambda: trees.dirty(repos[0]) is False and trees.dirty(repos[1]) is False)
        trees.recheck(repos[2])  # waiting: not checked
        await trio.sleep(0.2)
        assert len(calls(log)) == 2
        assert trees.dirty(repos[2]) is None and trees.dirty(repos[3]) is None
        assert len(capped(caplog)) == 1
        trees.forget(repos[0])  # room for the first one waiting
        await until(lambda: trees.dirty(repos[2]) is False)
        assert trees.dirty(repos[3]) is None
        trees.forget(repos[3])  # none waits now
        trees.watch(repos[4])  # over the limit again: warned again
        assert len(capped(caplog)) == 2
        trees.forget(repos[1])
        await until(lambda: trees.dirty(repos[4]) is False)
    assert capped(caplog)[0].msg["limit"] == 2
