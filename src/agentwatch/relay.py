"""``agentwatch run -- COMMAND...``: run an agent and record every line it prints.

The child's stdout is passed through to the terminal as it comes (unless ``--quiet``) and
each line is a record: parsed as JSON (a line that is not JSON is stored as a string, as
``raw``), given its format (``--format``, or ``auto``: the first format that recognises the
first lines), and written to the agent's outbox before a sender thread delivers it over one
connection that it reopens whenever the daemon goes away. Nothing is lost while the daemon is
down or restarting, and nothing is stored twice (:mod:`agentwatch.outbox`). stderr and stdin are
the child's own. Signals that stop or notify a program are passed on to the child, and its exit
status becomes this command's; a ``session_ended`` event records the exit.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from agentwatch import outbox
from agentwatch.courier import Courier, Undelivered, flush_outboxes
from agentwatch.format_choice import FormatChooser
from agentwatch.identity import id_part, iso_now, short_host
from agentwatch.locate import ClientError, announced
from agentwatch.model import Format
from agentwatch.outbox import Outbox

TIMEOUT = 5.0  # seconds for any one wait on the daemon
FINAL_WAIT = 10.0  # seconds the last events get to be acknowledged after the child exits
LAST_TRY = 1.0  # ... when the daemon was unreachable at that moment: one more try, not a long wait
RETRY_FIRST, RETRY_MAX = 0.1, 5.0  # seconds between attempts to reach the daemon: doubling, capped
IDLE_POLL = 1.0  # seconds between looks at an idle connection (to answer the daemon's pings)
MAX_LINE = (1 << 20) - 4096  # a line longer than this is stored as its head and its size
HEAD_CHARS = 64 << 10
FORWARDED = (signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2, signal.SIGWINCH)
#: The agent kind shown for a format.
KINDS = {"claude": "claude-code", "codex": "codex", "gemini": "gemini"}


class Sender(threading.Thread):
    """Delivers the outbox in the background, reconnecting as needed, until :meth:`finish`."""

    def __init__(self, box: Outbox, state_dir: Path, environ: Mapping[str, str]) -> None:
        super().__init__(name="agentwatch-sender", daemon=True)
        self.box = box
        self._state_dir = state_dir
        self._environ = environ
        self._wake = threading.Event()
        self._stopping = False
        self.problem: str | None = None  # why the daemon is not taking events, while it is not

    def wake(self) -> None:
        """New events are in the outbox."""
        self._wake.set()

    def finish(self, timeout: float) -> None:
        """Deliver what is left, for up to ``timeout`` seconds, then stop."""
        self._stopping = True
        self._wake.set()
        self.join(timeout)

    def run(self) -> None:
        courier: Courier | None = None
        greeted: dict[str, Any] = {}  # the hello of the connection
        pause = RETRY_FIRST
        flushed = False
        while not (self._stopping and not self.box.pending and greeted == self.box.hello):
            try:
                if courier is not None and greeted != self.box.hello:  # the format is known now: say who we are
                    courier.close()
                    courier = None
                if courier is None:
                    greeted = self.box.hello
                    courier = self._connect()
                    pause = RETRY_FIRST
                courier.deliver()
                self._report(None)
                if not flushed:  # once connected: what earlier runs and hooks left behind
                    endpoint = announced(self._state_dir, self._environ)
                    if endpoint is not None:
                        flush_outboxes(self._state_dir, endpoint, timeout=TIMEOUT, budget=TIMEOUT, skip=self.box.agent_id)
                    flushed = True
                if not self._stopping and self._wake.wait(IDLE_POLL):  # stopping: on at once to the end
                    self._wake.clear()
                courier.idle()
            except ClientError as exc:
                self._report(str(exc))
                if courier is not None:
                    courier.close()
                    courier = None
                self._wake.wait(pause)
                self._wake.clear()
                pause = min(pause * 2, RETRY_MAX)
        if courier is not None:
            courier.close()

    def _connect(self) -> Courier:
        endpoint = announced(self._state_dir, self._environ)
        if endpoint is None:
            raise Undelivered(f"no daemon is running with state directory {self._state_dir}")
        return Courier(self.box, endpoint, TIMEOUT)

    def _report(self, problem: str | None) -> None:
        """Say on stderr when the daemon stops and starts taking events (once each way)."""
        if problem and not self.problem:
            print(f"agentwatch: {problem}; keeping events in {outbox.directory(self._state_dir)} until it is back", file=sys.stderr)
        elif self.problem and not problem:
            print("agentwatch: the daemon is back; delivering", file=sys.stderr)
        self.problem = problem


def run(command: Sequence[str], *, agent_id: str | None, format: str, quiet: bool, formats: Mapping[str, Format],
        state_dir: Path, environ: Mapping[str, str]) -> int:
    """Run ``command`` as a recorded agent; its exit status (128 + N if killed by signal N)."""
    chooser = FormatChooser(format, formats)
    host = short_host()
    program = Path(command[0]).name
    agent_id = agent_id or f"{id_part(program)}-{id_part(host)}-{os.getpid()}"
    signals = SignalRelay()
    try:
        child = subprocess.Popen(list(command), stdout=subprocess.PIPE)
    except OSError as exc:
        print(f"agentwatch: cannot run {command[0]!r}: {exc.strerror or exc}", file=sys.stderr)
        return 127 if isinstance(exc, FileNotFoundError) else 126
    signals.started(child)
    with outbox.locked(state_dir, agent_id) as box:
        box.set_hello(_hello(chooser.chosen, program, host, child.pid))
        sender = Sender(box, state_dir, environ)
        sender.start()

        def record(ready: list[tuple[Any, str]]) -> None:
            if ready:
                box.set_hello(_hello(chooser.chosen, program, host, child.pid))
                box.append([(data, fmt, iso_now()) for data, fmt in ready])
                sender.wake()

        assert child.stdout is not None
        for line in _lines(child.stdout.fileno(), None if quiet else sys.stdout.buffer):
            if line.strip():
                record(chooser.feed(_record(line)))
        record(chooser.finish())
        status = child.wait()
        code = 128 - status if status < 0 else status
        ended = {"kind": "session_ended", "text": f"{program} exited with status {code}", "is_error": code != 0}
        box.append([(ended, "agentwatch", iso_now())])
        sender.finish(FINAL_WAIT if sender.problem is None else LAST_TRY)
        if box.pending:
            print(
                f"agentwatch: {len(box.pending)} events of {agent_id} wait in {outbox.directory(state_dir)}; "
                "the next `agentwatch run`, hook or `agentwatch flush` delivers them",
                file=sys.stderr,
            )
        elif agent_id.endswith(f"-{os.getpid()}"):
            box.forget()  # this pid's agent will not come back
    return code


def _hello(format: str | None, program: str, host: str, pid: int) -> dict[str, Any]:
    family = (format or "").split("-")[0]
    kind = KINDS.get(family, program)
    return {"format": format or "agentwatch", "agent": {"name": program, "kind": kind, "cwd": os.getcwd(), "host": host, "pid": pid}}


def _lines(fd: int, echo: Any) -> Any:
    """The lines read from ``fd`` (without their newline), echoing every byte to ``echo`` as it comes."""
    buffer = b""
    while chunk := os.read(fd, 1 << 16):
        if echo is not None:
            echo.write(chunk)
            echo.flush()
        buffer += chunk
        *lines, buffer = buffer.split(b"\n")
        yield from lines
    if buffer:
        yield buffer


def _record(line: bytes) -> Any:
    """The record a line of output is: its JSON value, else its text; a line over ``MAX_LINE`` is its head and size."""
    if len(line) > MAX_LINE:
        return {"agentwatch_oversized_line": {"bytes": len(line), "head": line[:HEAD_CHARS].decode("utf-8", "replace")}}
    text = line.decode("utf-8", "replace").rstrip("\r")
    try:
        return json.loads(text)
    except ValueError:
        return text


class SignalRelay:
    """Passes the signals that stop or notify a program on to the child. Installed before the
    child starts, so none is missed: one that comes before the child exists waits for it. Ctrl-C
    at a terminal reaches the child by itself (it shares the terminal's process group), so SIGINT
    is passed on only when it cannot have come from one."""

    def __init__(self) -> None:
        self._child: subprocess.Popen[bytes] | None = None
        self._early: list[int] = []
        for signum in FORWARDED:
            signal.signal(signum, self._forward)
        signal.signal(signal.SIGINT, signal.SIG_IGN if sys.stdin.isatty() else self._forward)

    def started(self, child: subprocess.Popen[bytes]) -> None:
        """The child exists: it gets what came before."""
        self._child = child
        for signum in self._early:
            child.send_signal(signum)

    def _forward(self, signum: int, frame: object) -> None:
        if self._child is None:
            self._early.append(signum)
        else:
            self._child.send_signal(signum)
