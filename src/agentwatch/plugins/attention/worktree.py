"""Whether a session's directory holds uncommitted work, checked in the background.

``git status --porcelain`` runs per directory (however many sessions share it) on an
interval and after :meth:`WorkTrees.recheck`; the request path only reads the cached answer.
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


class WorkTrees:
    """Cached ``git status`` answers for the directories agents work in.

    An answer is True (uncommitted changes, untracked files included), False (clean) or
    None (not checked yet, not a git work tree, git missing, failed or timed out).
    ``on_change(cwd, answer)`` is called whenever a directory's answer changes.
    """

    def __init__(
        self,
        interval: float = 60.0,
        timeout: float = 10.0,
        concurrency: int = 4,
        git: str = "git",
        on_change: Callable[[str, bool | None], None] | None = None,
    ) -> None:
        self.interval = interval
        self.timeout = timeout
        self.git = git
        self.on_change = on_change
        self._answers: dict[str, bool | None] = {}  # the tracked directories
        self._checked_at: dict[str, float] = {}  # trio time each one's last check ended
        self._marked: set[str] = set()  # rechecks asked for
        self._running: set[str] = set()
        self._limiter = trio.CapacityLimiter(concurrency)
        self._wake = trio.Event()
        self._git_missing = False

    def watch(self, cwd: str | None) -> None:
        """Start tracking ``cwd`` (None is ignored; watching it again changes nothing)."""
        if cwd is not None and cwd not in self._answers:
            self._answers[cwd] = None
            self._wake.set()

    def forget(self, cwd: str | None) -> None:
        """Stop tracking ``cwd``, for every session in it."""
        if cwd is not None:
            self._answers.pop(cwd, None)
            self._checked_at.pop(cwd, None)
            self._marked.discard(cwd)

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
        command = [self.git, "-C", cwd, "status", "--porcelain", "--untracked-files=normal"]
        # No optional locks: the check must never hold the index lock the agent's git needs.
        env = {name: value for name, value in os.environ.items() if name not in _REPOSITORY_ENV}
        env |= {"GIT_OPTIONAL_LOCKS": "0", "LC_ALL": "C"}
        with trio.move_on_after(self.timeout):
            try:
                done = await trio.run_process(
                    command, capture_stdout=True, capture_stderr=True, check=False, env=env
                )
            except FileNotFoundError:
                self._git_missing = True
                log.warning("git_missing", git=self.git, hint="uncommitted_work stays null")
                for tracked in list(self._answers):
                    self._set(tracked, None)
                return None
            except (OSError, ValueError):  # ValueError: a NUL or a lone surrogate in cwd, which no path holds
                return None
            return bool(done.stdout.strip()) if done.returncode == 0 else None
        return None

    def _set(self, cwd: str, answer: bool | None) -> None:
        if self._answers.get(cwd) != answer:
            self._answers[cwd] = answer
            if self.on_change is not None:
                self.on_change(cwd, answer)
