"""``agentwatch run -- COMMAND...``: run an agent and record every line it prints.

The child's stdout is passed through to the terminal as it comes (unless ``--quiet``) and
each line is a record: parsed as JSON (a line that is not JSON is stored as a string, as
``raw``; one too long to hold whole, as its head, see :mod:`agentwatch.record_lines`), given its
format (``--format``, or ``auto``: the first format that recognises the first lines), and written
to the agent's outbox before a sender thread delivers it over one connection that it reopens
whenever the daemon goes away. Nothing is lost while the daemon is down or restarting, and nothing
is stored twice (:mod:`agentwatch.outbox`). Once the child has exited, the relay exits as soon as
the daemon has everything, or at once when it cannot be reached: what is left waits in the outbox.
stderr and stdin are the child's own. Signals that stop or notify a program are passed on to the
child, and its exit status becomes this command's; a ``session_ended`` event records the exit.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, BinaryIO

from agentwatch import outbox
from agentwatch.invocation import command_name
from agentwatch.courier import Courier, Resend, Undelivered, flush_outboxes
from agentwatch.format_choice import FormatChooser
from agentwatch.identity import id_part, iso_now, short_host
from agentwatch.locate import ClientError, announced
from agentwatch.outbox import Outbox
from agentwatch.record_lines import Line, LineSplitter, record_of

TIMEOUT = 5.0  # seconds for any one wait on the daemon
FINAL_WAIT = 10.0  # seconds the last events get to be acknowledged after the child exits, while the daemon takes them
RETRY_FIRST, RETRY_MAX = 0.1, 5.0  # seconds between attempts to reach the daemon: doubling, capped
IDLE_POLL = 1.0  # seconds between looks at an idle connection (to answer the daemon's pings)
CHUNK = 1 << 16  # bytes read from the child at a time
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
        """Deliver what is left, for up to ``timeout`` seconds, then stop; stop at once if the
        daemon cannot be reached (what is left waits in the outbox)."""
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
            except Resend:  # the outbox was put right: on at once, over a new connection
                if courier is not None:
                    courier.close()
                    courier = None
                continue
            except ClientError as exc:
                self.box.hold()
                self._report(str(exc))
                if courier is None and self._stopping:
                    return  # the daemon cannot be reached and nothing is coming: no retrying
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


def run(command: Sequence[str], *, agent_id: str | None, chooser: FormatChooser, quiet: bool, state_dir: Path,
        environ: Mapping[str, str]) -> int:
    """Run ``command`` as the recorded agent ``agent_id`` (valid, see
    :func:`agentwatch.identity.check_agent_id`; None: PROGRAM-HOST-PID); its exit status (128 + N
    if killed by signal N)."""
    host = short_host()
    program = Path(command[0]).name
    agent_id = agent_id or default_agent_id(program, host, os.getpid())
    with _own_outbox(state_dir, agent_id) as box:
        signals = SignalRelay()
        try:
            child = subprocess.Popen(list(command), stdout=subprocess.PIPE)
        except OSError as exc:
            print(f"agentwatch: cannot run {command[0]!r}: {exc.strerror or exc}", file=sys.stderr)
            return 127 if isinstance(exc, FileNotFoundError) else 126
        signals.started(child)
        box.set_hello(_hello(chooser.chosen, program, host, child.pid))
        sender = Sender(box, state_dir, environ)
        sender.start()

        def record(ready: list[tuple[Any, str]]) -> None:
            if ready:
                box.set_hello(_hello(chooser.chosen, program, host, child.pid))
                box.append([(data, fmt, iso_now()) for data, fmt in ready])
                sender.wake()

        assert child.stdout is not None
        for lines in _lines(child.stdout.fileno(), None if quiet else sys.stdout.buffer):
            ready: list[tuple[Any, str]] = []  # one outbox write (and fsync, the daemon down) for a read's lines
            for line in lines:
                if line.data and not line.data.isspace():  # not strip(): no copy of a long line
                    ready.extend(chooser.feed(record_of(line)))
            record(ready)
        record(chooser.finish())
        status = child.wait()
        code = 128 - status if status < 0 else status
        ended = {"kind": "session_ended", "text": f"{program} exited with status {code}", "is_error": code != 0}
        box.append([(ended, "agentwatch", iso_now())])
        sender.finish(FINAL_WAIT)
        if box.pending:
            print(
                f"agentwatch: {len(box.pending)} events of {agent_id} wait in {outbox.directory(state_dir)}; "
                f"the next `agentwatch run`, hook or `{command_name()} flush` delivers them",
                file=sys.stderr,
            )
        elif agent_id.endswith(f"-{os.getpid()}"):
            box.forget()  # this pid's agent will not come back
    return code


def default_agent_id(program: str, host: str, pid: int) -> str:
    """PROGRAM-HOST-PID, shortened to an id the daemon takes (at most 128 characters)."""
    return f"{id_part(program)[:64]}-{id_part(host)[:48]}-{pid}"


@contextlib.contextmanager
def _own_outbox(state_dir: Path, agent_id: str) -> Iterator[Outbox]:
    """``agent_id``'s outbox, taken before the child starts: a child whose output nobody reads
    would stall. Says so when another process has it (another run with this ``--agent-id``)."""
    with outbox.try_locked(state_dir, agent_id) as box:
        if box is not None:
            yield box
            return
    print(f"agentwatch: waiting for another process to finish with the outbox of {agent_id}", file=sys.stderr)
    waited = contextlib.ExitStack()
    try:
        box = waited.enter_context(outbox.locked(state_dir, agent_id))
    except KeyboardInterrupt:  # Ctrl-C while waiting
        print("agentwatch: stopped while waiting; the agent was not started", file=sys.stderr)
        raise SystemExit(128 + signal.SIGINT) from None
    with waited:
        yield box


def _hello(format: str | None, program: str, host: str, pid: int) -> dict[str, Any]:
    family = (format or "").split("-")[0]
    kind = KINDS.get(family, program)
    return {"format": format or "agentwatch", "agent": {"name": program, "kind": kind, "cwd": os.getcwd(), "host": host, "pid": pid}}


def _lines(fd: int, echo: BinaryIO | None) -> Iterator[list[Line]]:
    """The lines read from ``fd``, those each read completes together, in time linear in their
    size (see :class:`LineSplitter`), echoing every byte to ``echo`` as it comes, until its reader
    goes away (``| head``): then the agent is still recorded whole, as ``--quiet`` would."""
    splitter = LineSplitter()
    while chunk := os.read(fd, CHUNK):
        if echo is not None:
            try:
                echo.write(chunk)
                echo.flush()
            except BrokenPipeError:
                os.dup2(os.open(os.devnull, os.O_WRONLY), echo.fileno())  # what is still buffered goes nowhere, quietly
                echo = None
        if lines := list(splitter.feed(chunk)):
            yield lines
    if (last := splitter.end()) is not None:
        yield [last]


class SignalRelay:
    """Passes the signals that stop or notify a program on to the child. Installed before the
    child starts, so none is missed: one that comes before the child exists waits for it. Ctrl-C
    at a terminal reaches the child by itself (it shares the terminal's process group), so SIGINT
    is passed on only when it cannot have come from one.

    Only Python handlers are installed, never ``SIG_IGN``: ``exec`` resets handlers to the
    default, so the child starts with the dispositions this process started with. A signal this
    process was started ignoring (``nohup``, a background job) stays ignored, by both."""

    def __init__(self) -> None:
        self._child: subprocess.Popen[bytes] | None = None
        self._early: list[int] = []
        at_terminal = os.isatty(0)
        for signum in (*FORWARDED, signal.SIGINT):
            if signal.getsignal(signum) is not signal.SIG_IGN:
                signal.signal(signum, _not_passed_on if signum == signal.SIGINT and at_terminal else self._forward)

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


def _not_passed_on(signum: int, frame: object) -> None:
    """Ctrl-C at a terminal: the child got it from the terminal too."""
