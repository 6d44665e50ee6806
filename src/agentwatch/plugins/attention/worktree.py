"""Whether a session's directory holds uncommitted work, checked in the background.

``git status --porcelain`` runs per directory (however many sessions share it) on an
interval and after :meth:`WorkTrees.recheck`; the request path only reads the cached answer.
At most :data:`MAX_WORKTREES` directories are tracked; further ones wait for room, unchecked.

Agents report any directory, so the repository there is untrusted, and nothing it configures
may run a program. Each check therefore runs ``git config --null --list`` first (it reads every
configuration file, includes resolved, and runs nothing), then ``git status`` with overrides that
the command line's scope makes win over the repository's own:

- every filter driver named there gets an empty ``clean``, ``smudge`` and ``process`` and
  ``required=false``: convert.c's ``apply_filter`` then runs nothing, and nothing dies for a
  required filter. A tracked file whose stat data went stale is then hashed unfiltered, so a
  filtered file (git-lfs) that was only touched reads as modified. A driver name with ``=``
  cannot be passed to ``-c``: that directory is not checked (None);
- ``core.fsmonitor=false`` (a hook command, or ``true``: git's daemon), ``core.hooksPath=/dev/null``
  and ``hook.<name>.enabled=false`` for every name in ``hook.*`` (hooks from the configuration,
  git 2.54+); status writes no index with optional locks off, so ``post-index-change`` never
  fires anyway;
- ``--ignore-submodules=dirty``: git compares a submodule's HEAD in-process and starts no
  ``git status`` inside it (with its own configuration); a submodule on another commit still
  counts, uncommitted work inside one does not;
- ``GIT_NO_LAZY_FETCH=1`` (git 2.39.4+) and ``GIT_ALLOW_PROTOCOL=`` (older ones): a partial clone
  missing an object would otherwise fetch it, running its remote's ``uploadpack``, ``ext::``
  command or remote helper; ``--no-renames`` reads no blob; ``--no-pager``. ``--porcelain``
  prints no submodule summary (``status.submoduleSummary``) and no columns.

What remains: a filter driver (or hook) added to the configuration between the two calls —
milliseconds apart, by whoever can write it — is not overridden and runs once in that check.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable

import trio

from agentwatch.logs import get_logger

log = get_logger(__name__)

#: What git clears when it enters another repository (``git rev-parse --local-env-vars``); inherited
#: from the daemon's environment, these would make the check look elsewhere than ``-C``.
_REPOSITORY_ENV = frozenset(
    {
        "GIT_ALTERNATE_OBJECT_DIRECTORIES",
        "GIT_CONFIG",
        "GIT_CONFIG_PARAMETERS",
        "GIT_CONFIG_COUNT",
        "GIT_OBJECT_DIRECTORY",
        "GIT_DIR",
        "GIT_WORK_TREE",
        "GIT_IMPLICIT_WORK_TREE",
        "GIT_GRAFT_FILE",
        "GIT_INDEX_FILE",
        "GIT_NO_REPLACE_OBJECTS",
        "GIT_REPLACE_REF_BASE",
        "GIT_PREFIX",
        "GIT_INTERNAL_SUPER_PREFIX",
        "GIT_SHALLOW_FILE",
        "GIT_COMMON_DIR",
    }
)

#: Directories tracked at most (an agent may report thousands); see :meth:`WorkTrees.watch`.
MAX_WORKTREES = 256

#: What every check runs with: no optional locks (never the index lock the agent's git needs),
#: no lazy fetch, no transport at all (``GIT_ALLOW_PROTOCOL`` names none).
_CHECK_ENV = {"GIT_OPTIONAL_LOCKS": "0", "LC_ALL": "C", "GIT_NO_LAZY_FETCH": "1", "GIT_ALLOW_PROTOCOL": ""}

_STATUS = ["status", "--porcelain", "--untracked-files=normal", "--ignore-submodules=dirty", "--no-renames"]
_NO_PROGRAMS = ["-c", "core.fsmonitor=false", "-c", "core.hooksPath=/dev/null"]


def overrides(listing: str) -> list[str] | None:
    """``-c`` options disabling every filter driver and configured hook named in ``listing``
    (``git config --null --list``); None if a name holds ``=``, which ``-c`` cannot carry."""
    names: dict[str, set[str]] = {"filter": set(), "hook": set()}
    for entry in listing.split("\0"):
        section, _, rest = entry.partition("\n")[0].partition(".")
        name, dot, _ = rest.rpartition(".")
        if dot and section in names:
            names[section].add(name)
    if any("=" in name for found in names.values() for name in found):
        return None
    options = list(_NO_PROGRAMS)
    for name in sorted(names["filter"]):
        for setting in ("clean=", "smudge=", "process=", "required=false"):
            options += ["-c", f"filter.{name}.{setting}"]
    for name in sorted(names["hook"]):
        options += ["-c", f"hook.{name}.enabled=false"]
    return options


class WorkTrees:
    """Cached ``git status`` answers for the directories agents work in.

    An answer is True (uncommitted changes, untracked files included), False (clean) or
    None (not checked yet, waiting for room, not a git work tree, git missing, failed or timed
    out). ``on_change(cwd, answer)`` is called whenever a directory's answer changes.
    """

    def __init__(
        self,
        interval: float = 60.0,
        timeout: float = 10.0,
        concurrency: int = 4,
        git: str = "git",
        on_change: Callable[[str, bool | None], None] | None = None,
        limit: int = MAX_WORKTREES,
    ) -> None:
        self.interval = interval
        self.limit = limit
        self.timeout = timeout
        self.git = git
        self.on_change = on_change
        self._answers: dict[str, bool | None] = {}  # the tracked directories
        self._waiting: dict[str, None] = {}  # watched beyond the limit, oldest first
        self._checked_at: dict[str, float] = {}  # trio time each one's last check ended
        self._marked: set[str] = set()  # rechecks asked for
        self._running: set[str] = set()
        self._limiter = trio.CapacityLimiter(concurrency)
        self._wake = trio.Event()
        self._git_missing = False

    def watch(self, cwd: str | None) -> None:
        """Start tracking ``cwd`` (None is ignored; watching it again changes nothing). Beyond
        ``limit`` tracked directories it waits, unchecked, until :meth:`forget` makes room; the
        first to wait logs ``worktrees_capped``, once until none waits any more."""
        if cwd is None or cwd in self._answers or cwd in self._waiting:
            return
        if len(self._answers) < self.limit:
            self._answers[cwd] = None
            self._wake.set()
            return
        if not self._waiting:
            log.warning(
                "worktrees_capped",
                limit=self.limit,
                hint="uncommitted_work stays null for sessions in further directories until sessions elsewhere end",
            )
        self._waiting[cwd] = None

    def forget(self, cwd: str | None) -> None:
        """Stop tracking ``cwd``, for every session in it; a waiting directory takes its place."""
        if cwd is None:
            return
        self._waiting.pop(cwd, None)
        self._answers.pop(cwd, None)
        self._checked_at.pop(cwd, None)
        self._marked.discard(cwd)
        while self._waiting and len(self._answers) < self.limit:
            admitted = next(iter(self._waiting))
            del self._waiting[admitted]
            self.watch(admitted)

    def dirty(self, cwd: str | None) -> bool | None:
        """The cached answer for ``cwd``; never does I/O."""
        return None if cwd is None else self._answers.get(cwd)

    def recheck(self, cwd: str | None) -> None:
        """Check a tracked ``cwd`` again soon (after a tool call that wrote files)."""
        if cwd is not None and cwd in self._answers:
            self._marked.add(cwd)
            self._wake.set()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Check directories that are due or marked, forever; at most one check per directory."""
        async with trio.open_nursery() as nursery:
            task_status.started()
            while True:
                self._wake = trio.Event()
                next_due = math.inf
                if not self._git_missing:
                    now = trio.current_time()
                    for cwd in self._answers:
                        if cwd in self._running:
                            continue  # a check that ends wakes this loop
                        due = self._checked_at.get(cwd, -math.inf) + self.interval
                        if cwd in self._marked or due <= now:
                            self._marked.discard(cwd)
                            self._running.add(cwd)
                            nursery.start_soon(self._check, cwd)
                        else:
                            next_due = min(next_due, due)
                with trio.move_on_at(next_due):
                    await self._wake.wait()

    async def _check(self, cwd: str) -> None:
        try:
            async with self._limiter:
                if self._git_missing:
                    return
                answer = await self._status(cwd)
            if cwd in self._answers:  # not forgotten meanwhile
                self._checked_at[cwd] = trio.current_time()
                self._set(cwd, answer)
        finally:
            self._running.discard(cwd)
            self._wake.set()

    async def _status(self, cwd: str) -> bool | None:
        env = {name: value for name, value in os.environ.items() if name not in _REPOSITORY_ENV} | _CHECK_ENV
        with trio.move_on_after(self.timeout):
            try:
                listing = await self._git(cwd, ["config", "--null", "--list", "--includes"], env)
                if listing is None or (options := overrides(listing)) is None:
                    return None
                output = await self._git(cwd, [*options, *_STATUS], env)
                return None if output is None else bool(output.strip())
            except FileNotFoundError:
                self._git_missing = True
                log.warning("git_missing", git=self.git, hint="uncommitted_work stays null")
                for tracked in list(self._answers):
                    self._set(tracked, None)
                return None
            except (OSError, ValueError):  # ValueError: a NUL or a lone surrogate in cwd, which no path holds
                return None
        return None

    async def _git(self, cwd: str, arguments: list[str], env: dict[str, str]) -> str | None:
        """What ``git -C cwd ARGUMENTS`` wrote, or None when it failed."""
        command = [self.git, "--no-pager", "-C", cwd, *arguments]
        done = await trio.run_process(command, capture_stdout=True, capture_stderr=True, check=False, env=env)
        return os.fsdecode(done.stdout) if done.returncode == 0 else None

    def _set(self, cwd: str, answer: bool | None) -> None:
        if self._answers.get(cwd) != answer:
            self._answers[cwd] = answer
            if self.on_change is not None:
                self.on_change(cwd, answer)
