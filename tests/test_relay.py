"""``agentwatch run -- COMMAND...`` as a real subprocess, recording a fake agent that prints real
recordings (tests/fixtures): every line stored once and in order with its sniffed format, the
output passed through, the child's exit status kept, the daemon killed and restarted mid-run or
down for the whole run (the outbox, then ``agentwatch flush``, and no wait once the agent exits),
signals passed on (and Ctrl-C at a terminal left to reach the agent), a line too long to hold
whole, and agent ids that could name a file outside the outbox."""

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest
import trio

from agentwatch import daemon_file, outbox
from helpers import FIXTURES, DaemonProcess, RpcError, fixture_records, running_daemon, stored, watcher

CODEX = "codex-exec-json/agentcmd__stream-output-2.jsonl"
CLAUDE = "claude-stream-json/terragon-oss__claude-json-bash-test.DERIVED.ndjson"
#: The kinds of the two recordings, line by line (see the format tests for why).
KINDS = {
    CODEX: ["session_started", "prompt", "thinking", "tool_use", "tool_result", "output", "turn_completed"],
    CLAUDE: ["session_started", "output"] + ["tool_use"] * 10 + ["tool_result"] * 10 + ["output", "turn_completed"],
}
FORMATS = {CODEX: "codex-exec-json", CLAUDE: "claude-stream-json"}
WAIT = 15.0  # seconds any one condition may take before the test fails

#: The fake agent: prints a file's lines as they are (each in two writes with ``--split``), and
#: before line N touches REACHED and waits for GO to exist (``N,REACHED,GO``); exits with STATUS.
FAKE_AGENT = """\
import sys, time
from pathlib import Path

fixture, status, *rest = sys.argv[1:]
split = "--split" in rest
pauses = {int(n): (Path(reached), Path(go)) for n, reached, go in (spec.split(",") for spec in rest if spec != "--split")}
out = sys.stdout.buffer
for index, line in enumerate(Path(fixture).read_bytes().splitlines(keepends=True)):
    if index in pauses:
        reached, go = pauses[index]
        reached.touch()
        deadline = time.monotonic() + 30
        while not go.exists() and time.monotonic() < deadline:
            time.sleep(0.005)
    if split:  # half a line, then the rest: the relay must put it together
        out.write(line[: len(line) // 2])
        out.flush()
        time.sleep(0.002)
        line = line[len(line) // 2 :]
    out.write(line)
    out.flush()
sys.exit(int(status))
"""

#: A child that says it is ready (a file), and on SIGTERM prints a line and exits 3.
TRAPS_SIGTERM = """\
import signal, sys, time
from pathlib import Path

def stop(signum, frame):
    print("got SIGTERM", flush=True)
    sys.exit(3)

signal.signal(signal.SIGTERM, stop)
print('{"kind": "output", "text": "working"}', flush=True)
Path(sys.argv[1]).touch()
time.sleep(30)
sys.exit(0)
"""


#: A child that says how SIGINT and SIGHUP would find it, says it is ready (a file), and waits.
SAYS_ITS_SIGNALS = """\
import signal, sys, time
from pathlib import Path

def disposition(signum):
    handler = signal.getsignal(signum)
    return "ignored" if handler is signal.SIG_IGN else "default" if handler in (signal.SIG_DFL, signal.default_int_handler) else "caught"

print(f"SIGINT {disposition(signal.SIGINT)}, SIGHUP {disposition(signal.SIGHUP)}", flush=True)
Path(sys.argv[1]).touch()
time.sleep(30)
"""

#: Runs ARGV... with the terminal TTY as its controlling terminal and stdin, stdout and stderr:
#: ``python -c ON_A_TERMINAL TTY ARGV...`` (Ctrl-C typed there reaches its process group).
ON_A_TERMINAL = "import os, sys; os.login_tty(os.open(sys.argv[1], os.O_RDWR)); os.execvp(sys.argv[2], sys.argv[2:])"

#: Runs ARGV... with SIGINT and SIGHUP ignored, as ``nohup`` or a shell's background job would.
IGNORING = ("import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_IGN); signal.signal(signal.SIGHUP, signal.SIG_IGN); "
            "os.execvp(sys.argv[1], sys.argv[1:])")

#: Writes ARGV[1] MiB of "x", without a newline.
WRITES_MIB = "import sys; [sys.stdout.buffer.write(b'x' * (1 << 20)) for _ in range(int(sys.argv[1]))]"

#: A child that prints a line, says so (a file), waits for GO to exist, then exits 0 at once.
PRINTS_AND_WAITS = """\
import sys, time
from pathlib import Path

print("working", flush=True)
Path(sys.argv[1]).touch()
while not Path(sys.argv[2]).exists():
    time.sleep(0.005)
"""


def environment(state_dir):
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTWATCH_")}
    return env | {"AGENTWATCH_STATE_DIR": str(state_dir)}


def agentwatch(*args):
    return [sys.executable, "-m", "agentwatch", *args]


def small_read_limit(rss_file):
    """``agentwatch`` holding at most 1 MiB of a line (not READ_LIMIT, 64 MiB), and writing its peak RSS (KiB) to ``rss_file``."""
    return [sys.executable, "-c", "import resource, sys; from agentwatch import record_lines; "
            "record_lines.LineSplitter.__init__.__defaults__ = (1 << 20,); from agentwatch.entry import main; code = main(); "
            f"open({str(rss_file)!r}, 'w').write(str(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)); sys.exit(code)"]


def write_script(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def fake_agent(tmp_path, fixture, status=0, *options):
    script = tmp_path / "fake_agent.py"
    script.write_text(FAKE_AGENT)
    return [sys.executable, str(script), str(FIXTURES / fixture), str(status), *options]


def ended(status):
    return {"kind": "session_ended", "text": f"{python()} exited with status {status}", "is_error": status != 0}


def python():
    return os.path.basename(sys.executable)


async def relay(state_dir, *args, program=agentwatch()):
    """``agentwatch run ARGS`` to the end: the completed process (stdout and stderr captured)."""
    with trio.fail_after(WAIT):
        return await trio.run_process([*program, "run", *args], stdin=subprocess.DEVNULL, capture_stdout=True,
                                      capture_stderr=True, check=False, env=environment(state_dir))


async def until(condition, what):
    """Poll ``condition`` (sync or async) until true, for up to ``WAIT`` seconds."""
    with trio.fail_after(WAIT):
        while True:
            result = condition()
            if hasattr(result, "__await__"):
                result = await result
            if result:
                return result
            await trio.sleep(0.01)


async def exited(proc):
    """The exit status of a ``subprocess.Popen``, once it has one."""
    await until(lambda: proc.poll() is not None, "the relay to exit")
    return proc.returncode


@contextlib.contextmanager
def killed_if_running(proc):
    """``proc``, killed when the block ends if it has not exited (a failed test leaves no process behind)."""
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def outbox_events(state_dir, agent_id):
    path = state_dir / "outbox" / f"{agent_id}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.mark.parametrize(("fixture", "status", "split"), [(CODEX, 0, False), (CLAUDE, 5, True)])
async def test_every_line_is_stored_once_in_order_with_the_sniffed_format(state_dir, tmp_path, fixture, status, split):
    records = fixture_records(fixture)
    async with running_daemon(state_dir) as d:
        done = await relay(state_dir, "--agent-id", "relayed", "--", *fake_agent(tmp_path, fixture, status, *(["--split"] if split else [])))
        events = await stored(d, "relayed")
        async with watcher(d) as w:
            agents = {a["agent_id"]: a for a in await w.call("agents.list")}
    assert done.returncode == status, done.stderr
    assert done.stdout == (FIXTURES / fixture).read_bytes(), "the output passes through byte for byte"
    assert [e["data"] for e in events] == records + [ended(status)]
    assert [e["seq"] for e in events] == list(range(1, len(records) + 2))
    assert [e["format"] for e in events] == [FORMATS[fixture]] * len(records) + ["agentwatch"]
    assert [e["kind"] for e in events] == KINDS[fixture] + ["session_ended"]
    assert agents["relayed"]["kind"] == {CODEX: "codex", CLAUDE: "claude-code"}[fixture]
    assert agents["relayed"]["name"] == python()
    assert done.stderr == b"", "nothing to say while the daemon takes everything"
    assert not list((state_dir / "outbox").glob("*.jsonl")), "nothing left waiting"


async def test_quiet_passes_nothing_through_and_the_default_agent_id_is_program_host_pid(state_dir, tmp_path):
    async with running_daemon(state_dir) as d:
        done = await relay(state_dir, "--quiet", "--", *fake_agent(tmp_path, CODEX))
        async with watcher(d) as w:
            agents = await w.call("agents.list")
        assert len(agents) == 1
        agent_id = agents[0]["agent_id"]
        events = await stored(d, agent_id)
    assert done.returncode == 0
    assert done.stdout == b""
    assert agent_id.startswith(f"{python()}-") and agent_id.rsplit("-", 1)[1].isdigit()
    assert [e["data"] for e in events] == fixture_records(CODEX) + [ended(0)]
    assert not list((state_dir / "outbox").glob(f"{agent_id}.json*")), "a pid's outbox is removed once delivered"


async def test_a_command_that_does_not_exist_exits_127_with_a_message(state_dir, tmp_path):
    done = await relay(state_dir, "--", str(tmp_path / "no-such-agent"))
    assert done.returncode == 127
    assert b"cannot run" in done.stderr and b"no-such-agent" in done.stderr
    assert done.stdout == b""


async def test_no_command_or_an_unknown_format_is_a_usage_error(state_dir, tmp_path):
    missing = await relay(state_dir, "--")
    unknown = await relay(state_dir, "--format", "nope", "--", *fake_agent(tmp_path, CODEX))
    assert missing.returncode == 2 and b"name the agent's command" in missing.stderr
    assert unknown.returncode == 2 and b"unknown format 'nope'" in unknown.stderr
    assert unknown.stdout == b"", "the agent is not started"


async def test_daemon_killed_and_restarted_mid_run_every_line_stored_exactly_once(tmp_path):
    """Lines 0-7 go in live, 8-15 while the daemon is dead (outbox), 16-23 after its restart."""
    state_dir = tmp_path / "state"
    records = fixture_records(CLAUDE)
    gates = [(n, tmp_path / f"reached-{n}", tmp_path / f"go-{n}") for n in (8, 16)]
    daemon = DaemonProcess(state_dir)
    running = await daemon.ready()
    stderr = (tmp_path / "relay.err").open("wb")
    proc = subprocess.Popen(
        agentwatch("run", "--quiet", "--agent-id", "crashy", "--",
                   *fake_agent(tmp_path, CLAUDE, 0, *(f"{n},{reached},{go}" for n, reached, go in gates))),
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr, env=environment(state_dir),
    )
    try:
        (_, reached, go), (_, reached_2, go_2) = gates
        await until(reached.exists, "the first 8 lines")
        await until(lambda: _count(running, "crashy", 8), "the first 8 lines stored")
        daemon.proc.send_signal(signal.SIGKILL)
        assert await daemon.wait() == -signal.SIGKILL
        go.touch()
        await until(reached_2.exists, "lines 8-15")
        await until(lambda: records[15] in [e["data"] for e in outbox_events(state_dir, "crashy")], "lines 8-15 in the outbox")
        waiting = outbox_events(state_dir, "crashy")
        assert [e["data"] for e in waiting][-8:] == records[8:16], "held in order while the daemon is down"
        daemon = DaemonProcess(state_dir)
        running = await daemon.ready()
        go_2.touch()
        assert await exited(proc) == 0
        events = await stored(running, "crashy")
    finally:
        if proc.poll() is None:
            proc.kill()
        daemon.proc.send_signal(signal.SIGTERM)
        await daemon.wait()
        stderr.close()
    assert [e["data"] for e in events] == records + [ended(0)], "every line once, in order: no gap, no duplicate"
    assert [e["seq"] for e in events] == list(range(1, len(records) + 2))
    assert {e["format"] for e in events[:-1]} == {"claude-stream-json"}
    said = (tmp_path / "relay.err").read_text()
    assert "keeping events in" in said and "the daemon is back" in said
    assert outbox_events(state_dir, "crashy") == []


async def _count(running, agent_id, n):
    """Whether the daemon holds at least ``n`` events of ``agent_id`` (none while it does not know it)."""
    try:
        return len(await stored(running, agent_id)) >= n
    except RpcError:
        return False


async def test_the_relay_exits_once_the_last_event_is_acknowledged_not_a_poll_later(state_dir, tmp_path):
    """The sender used to sit out one more IDLE_POLL (1 s) after its final delivery."""
    reached, go = tmp_path / "reached", tmp_path / "go"
    async with running_daemon(state_dir) as d:
        proc = subprocess.Popen(agentwatch("run", "--quiet", "--agent-id", "prompt", "--", *fake_agent(tmp_path, CODEX, 0, f"4,{reached},{go}")),
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, env=environment(state_dir))
        try:
            await until(lambda: _count(d, "prompt", 4), "the first 4 lines stored (the sender is idle)")
            go.touch()
            released = time.monotonic()
            assert await exited(proc) == 0
            took = time.monotonic() - released
        finally:
            if proc.poll() is None:
                proc.kill()
        events = await stored(d, "prompt")
    assert [e["data"] for e in events] == fixture_records(CODEX) + [ended(0)]
    assert took < 0.8, f"the relay took {took:.2f}s to end after its child"


async def test_daemon_down_for_the_whole_run_keeps_the_events_for_flush(tmp_path):
    state_dir = tmp_path / "state"
    records = fixture_records(CODEX)
    done = await relay(state_dir, "--agent-id", "offline", "--", *fake_agent(tmp_path, CODEX, 7))
    assert done.returncode == 7, "the child's status, daemon or not"
    assert done.stdout == (FIXTURES / CODEX).read_bytes()
    assert b"no daemon is running" in done.stderr
    assert b"7 events of offline wait in" not in done.stderr and b"8 events of offline wait in" in done.stderr
    waiting = outbox_events(state_dir, "offline")
    assert [e["data"] for e in waiting] == records + [ended(7)]
    assert [e["seq"] for e in waiting] == list(range(1, len(records) + 2))

    async with running_daemon(state_dir) as d:
        flushed = await trio.run_process(agentwatch("flush"), capture_stdout=True, capture_stderr=True, check=False,
                                         env=environment(state_dir))
        again = await trio.run_process(agentwatch("flush"), capture_stdout=True, check=False, env=environment(state_dir))
        events = await stored(d, "offline")
    assert flushed.returncode == 0, flushed.stderr
    assert flushed.stdout == b"delivered 8 events\n"
    assert again.stdout == b"delivered 0 events\n"
    assert [e["data"] for e in events] == records + [ended(7)]
    assert [e["format"] for e in events] == ["codex-exec-json"] * len(records) + ["agentwatch"]
    assert [e["kind"] for e in events] == KINDS[CODEX] + ["session_ended"]
    assert outbox_events(state_dir, "offline") == []


async def test_sigterm_to_the_relay_reaches_the_child_and_its_status_is_kept(state_dir, tmp_path):
    script = tmp_path / "traps.py"
    script.write_text(TRAPS_SIGTERM)
    ready = tmp_path / "ready"
    out = (tmp_path / "relay.out").open("wb")
    async with running_daemon(state_dir) as d:
        proc = subprocess.Popen(agentwatch("run", "--agent-id", "trapper", "--", sys.executable, str(script), str(ready)),
                                stdin=subprocess.DEVNULL, stdout=out, env=environment(state_dir))
        try:
            await until(ready.exists, "the child to trap SIGTERM")
            proc.send_signal(signal.SIGTERM)
            assert await exited(proc) == 3
        finally:
            if proc.poll() is None:
                proc.kill()
            out.close()
        events = await stored(d, "trapper")
    assert (tmp_path / "relay.out").read_bytes() == b'{"kind": "output", "text": "working"}\ngot SIGTERM\n'
    assert [e["data"] for e in events] == [{"kind": "output", "text": "working"}, "got SIGTERM", ended(3)]
    assert [e["kind"] for e in events] == ["output", "raw", "session_ended"]


class Terminal:
    """A pseudo-terminal (processes open it by ``name``): what is written to it is collected (``output``) by a thread."""

    def __init__(self):
        self.master, self._slave = os.openpty()  # the slave held open: without one, reading the master fails at once
        self.name = os.ttyname(self._slave)
        self.output = b""
        self._collector = threading.Thread(target=self._collect, daemon=True)
        self._collector.start()

    def _collect(self):
        with contextlib.suppress(OSError):  # EIO: no process has the terminal open any more
            while chunk := os.read(self.master, 1 << 16):
                self.output += chunk

    def type(self, data):
        os.write(self.master, data)

    def close(self):
        os.close(self._slave)
        self._collector.join(5)
        os.close(self.master)


async def test_ctrl_c_at_a_terminal_stops_the_agent(state_dir, tmp_path):
    """The relay used to ignore SIGINT (SIG_IGN) before starting its child, which inherited it: Ctrl-C did nothing."""
    ready = tmp_path / "ready"
    terminal = Terminal()
    async with running_daemon(state_dir) as d:
        says = write_script(tmp_path, "says.py", SAYS_ITS_SIGNALS)
        with contextlib.closing(terminal), killed_if_running(subprocess.Popen(
                [sys.executable, "-c", ON_A_TERMINAL, terminal.name,
                 *agentwatch("run", "--agent-id", "typed-at", "--", sys.executable, says, str(ready))],
                env=environment(state_dir))) as proc:
            await until(ready.exists, "the child to start")
            await until(lambda: b"SIGINT" in terminal.output, "the child's line on the terminal")
            assert b"SIGINT default, SIGHUP default" in terminal.output
            terminal.type(b"\x03")
            assert await exited(proc) == 128 + signal.SIGINT
        events = await stored(d, "typed-at")
    assert [e["data"] for e in events] == ["SIGINT default, SIGHUP default", ended(128 + signal.SIGINT)]


async def test_signals_ignored_when_the_relay_starts_stay_ignored_for_the_agent(state_dir, tmp_path):
    """``nohup agentwatch run ...``: the agent is as deaf to SIGHUP as it would be without the relay."""
    ready = tmp_path / "ready"
    async with running_daemon(state_dir) as d:
        says = write_script(tmp_path, "says.py", SAYS_ITS_SIGNALS)
        with (tmp_path / "relay.out").open("wb") as out, killed_if_running(subprocess.Popen(
                [sys.executable, "-c", IGNORING, *agentwatch("run", "--agent-id", "nohup", "--", sys.executable, says, str(ready))],
                stdin=subprocess.DEVNULL, stdout=out, env=environment(state_dir))) as proc:
            await until(ready.exists, "the child to start")
            proc.send_signal(signal.SIGHUP)
            proc.send_signal(signal.SIGINT)
            await trio.sleep(0.2)
            assert proc.poll() is None, "the relay and its agent ignore SIGHUP and SIGINT"
            proc.send_signal(signal.SIGTERM)
            assert await exited(proc) == 128 + signal.SIGTERM
        events = await stored(d, "nohup")
    assert [e["data"] for e in events] == ["SIGINT ignored, SIGHUP ignored", ended(128 + signal.SIGTERM)]


async def test_a_line_past_the_read_limit_is_recorded_as_its_head_and_never_held_whole(state_dir, tmp_path):
    """The relay used to keep a line whole, growing it chunk by chunk (quadratic time: 7.9 s for 32 MB)."""
    peak_kib = {}
    for mib in (0, 16):
        rss = tmp_path / f"rss-{mib}"
        done = await relay(state_dir, "--quiet", "--agent-id", f"long-{mib}", "--", sys.executable, "-c", WRITES_MIB, str(mib),
                           program=small_read_limit(rss))
        assert done.returncode == 0, done.stderr
        peak_kib[mib] = int(rss.read_text())
    [line, end] = outbox_events(state_dir, "long-16")
    assert line["data"] == "x" * (64 << 10) + f"… [cut by agentwatch: {16 << 20} bytes in all]"
    assert end["data"] == ended(0)
    assert peak_kib[16] - peak_kib[0] < 8 << 10, f"a 16 MiB line took the relay's peak RSS up by {peak_kib[16] - peak_kib[0]} KiB"


def down_with_no_daemon_file(state_dir):
    """No daemon has run here."""


def down_with_its_process_gone(state_dir):
    """The file of a daemon that died without removing it."""
    gone = subprocess.Popen(["true"])
    gone.wait()
    (state_dir / "daemon.json").write_text(json.dumps({"pid": gone.pid, "addresses": [f"127.0.0.1:{closed_port()}"], "token_file": None}))


def down_with_nothing_listening(state_dir):
    """Announced by a live process (this one), on a port nothing listens on."""
    (state_dir / "token").write_text("secret\n")
    daemon_file.announce(state_dir, [f"127.0.0.1:{closed_port()}"], state_dir / "token")


def closed_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.parametrize("down", [down_with_no_daemon_file, down_with_its_process_gone, down_with_nothing_listening])
async def test_with_no_daemon_the_relay_exits_as_soon_as_its_agent_does(state_dir, tmp_path, down):
    """It used to wait 1 s (LAST_TRY), or 10 s (FINAL_WAIT) when the agent exited before the first failed attempt."""
    state_dir.mkdir()
    down(state_dir)
    exit_time = tmp_path / "exit-time"
    child = f"print('hi'); import time; open({str(exit_time)!r}, 'w').write(repr(time.monotonic()))"
    try:
        started = time.monotonic()
        done = await relay(state_dir, "--agent-id", "alone", "--", sys.executable, "-c", child)
        finished = time.monotonic()
    finally:
        daemon_file.withdraw(state_dir)
    assert done.returncode == 0 and done.stdout == b"hi\n"
    assert f"agentwatch: 2 events of alone wait in {state_dir / 'outbox'}; ".encode() in done.stderr
    assert [e["data"] for e in outbox_events(state_dir, "alone")] == ["hi", ended(0)]
    assert finished - started < 5
    assert finished - float(exit_time.read_text()) < 0.8, "the relay exits right after its agent"


async def test_a_daemon_killed_just_before_the_agent_exits_does_not_hold_the_relay(tmp_path):
    """The daemon's file is left behind, and the sender has not noticed yet: it used to wait FINAL_WAIT (10 s)."""
    state_dir = tmp_path / "state"
    reached, go = tmp_path / "reached", tmp_path / "go"
    daemon = DaemonProcess(state_dir)
    running = await daemon.ready()
    stderr = (tmp_path / "relay.err").open("wb")
    waits = write_script(tmp_path, "waits.py", PRINTS_AND_WAITS)
    proc = subprocess.Popen(agentwatch("run", "--agent-id", "orphan", "--format", "agentwatch", "--", sys.executable, waits, str(reached), str(go)),
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr, env=environment(state_dir))
    try:
        await until(lambda: _count(running, "orphan", 1), "the first line stored")
        daemon.proc.kill()
        await daemon.wait()
        assert (state_dir / "daemon.json").exists(), "SIGKILL left the daemon's file behind"
        go.touch()
        released = time.monotonic()
        assert await exited(proc) == 0
        took = time.monotonic() - released
    finally:
        if proc.poll() is None:
            proc.kill()
        stderr.close()
    assert took < 5, f"the relay took {took:.2f}s to end after its agent"
    assert [e["data"] for e in outbox_events(state_dir, "orphan")] == [ended(0)]
    assert f"1 events of orphan wait in {state_dir / 'outbox'}" in (tmp_path / "relay.err").read_text()


@pytest.mark.parametrize("agent_id", ["../../escaped", "a/b", "", "x" * 129, "tab\there"])
async def test_an_agent_id_that_is_not_valid_is_refused_before_the_agent_starts(tmp_path, agent_id):
    """The id names the outbox's files: ``../../escaped`` used to write next to the state directory."""
    state_dir = tmp_path / "deep" / "state"
    started = tmp_path / "started"
    done = await relay(state_dir, "--agent-id", agent_id, "--", sys.executable, "-c", f"open({str(started)!r}, 'w')")
    assert done.returncode == 2
    assert done.stderr.startswith(b"agentwatch run: agent id ") and b"is not valid: use " in done.stderr
    assert list(tmp_path.rglob("*")) == [], "the agent did not start and nothing was written"


async def test_a_long_program_name_still_makes_an_agent_id_the_daemon_takes(state_dir, tmp_path):
    """PROGRAM-HOST-PID used to pass 128 characters with a long program name: the daemon refused every event."""
    program = tmp_path / ("agent" * 40)
    program.symlink_to(sys.executable)
    async with running_daemon(state_dir) as d:
        done = await relay(state_dir, "--quiet", "--", str(program), "-c", "print('hi')")
        async with watcher(d) as w:
            [agent] = await w.call("agents.list")
        events = await stored(d, agent["agent_id"])
    assert done.returncode == 0, done.stderr
    assert len(agent["agent_id"]) <= 128 and agent["agent_id"].startswith("agentagent")
    assert [e["data"] for e in events] == ["hi", {"kind": "session_ended", "text": f"{program.name} exited with status 0", "is_error": False}]


async def test_a_second_run_with_the_same_agent_id_waits_before_starting_its_agent(state_dir, tmp_path):
    """It used to start its agent, then wait for the outbox, not reading the agent's output meanwhile."""
    reached, go = tmp_path / "reached", tmp_path / "go"
    second_started = tmp_path / "second-started"
    second_err = tmp_path / "second.err"
    async with running_daemon(state_dir) as d:
        first = subprocess.Popen(agentwatch("run", "--quiet", "--agent-id", "twice", "--", *fake_agent(tmp_path, CODEX, 0, f"4,{reached},{go}")),
                                 stdin=subprocess.DEVNULL, env=environment(state_dir))
        second = None
        try:
            await until(reached.exists, "the first agent's first lines")
            with second_err.open("wb") as err:
                second = subprocess.Popen(agentwatch("run", "--quiet", "--agent-id", "twice", "--", sys.executable, "-c",
                                                     f"open({str(second_started)!r}, 'w'); print('second')"),
                                          stdin=subprocess.DEVNULL, stderr=err, env=environment(state_dir))
            await until(lambda: b"waiting for another process" in second_err.read_bytes(), "the second run to say it waits")
            assert not second_started.exists(), "the second agent waits for the outbox to be free"
            go.touch()
            assert await exited(first) == 0
            assert await exited(second) == 0
        finally:
            for proc in (first, second):
                if proc is not None and proc.poll() is None:
                    proc.kill()
        events = await stored(d, "twice")
    assert [e["data"] for e in events] == fixture_records(CODEX) + [ended(0), "second", ended(0)]


async def test_a_reader_that_goes_away_stops_the_echo_not_the_recording(state_dir):
    """``agentwatch run ... | head -1`` used to end in a BrokenPipeError traceback, the agent unrecorded."""
    prints = "import sys\nfor n in range(20000): print(f'line {n}', flush=n % 1000 == 0)"
    async with running_daemon(state_dir) as d:
        with killed_if_running(subprocess.Popen(agentwatch("run", "--agent-id", "headed", "--", sys.executable, "-c", prints),
                                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                                env=environment(state_dir))) as proc:
            assert proc.stdout.readline() == b"line 0\n"
            proc.stdout.close()  # as head does after its line
            assert await exited(proc) == 0
            stderr = proc.stderr.read()
        events = await stored(d, "headed")
    assert stderr == b"", "nothing to report: the reader chose to stop"
    assert [e["data"] for e in events] == [f"line {n}" for n in range(20000)] + [ended(0)]


async def test_ctrl_c_while_waiting_for_the_outbox_says_so_and_starts_nothing(state_dir, tmp_path):
    started = tmp_path / "started"
    err = tmp_path / "err"
    with outbox.locked(state_dir, "busy"), err.open("wb") as errors, killed_if_running(subprocess.Popen(
            agentwatch("run", "--agent-id", "busy", "--", sys.executable, "-c", f"open({str(started)!r}, 'w')"),
            stdin=subprocess.DEVNULL, stderr=errors, env=environment(state_dir))) as proc:
        await until(lambda: b"waiting for another process" in err.read_bytes(), "the run to say it waits")
        proc.send_signal(signal.SIGINT)
        assert await exited(proc) == 128 + signal.SIGINT
    assert err.read_bytes().splitlines()[-1] == b"agentwatch: stopped while waiting; the agent was not started"
    assert b"Traceback" not in err.read_bytes()
    assert not started.exists()
