"""Start-up failures of the environment and of the store, with a real ``agentwatch serve`` process:
one line on stderr that names the path and says what to do, one ``startup_failed`` log line, and
exit status 2 (which systemd does not restart) - never a traceback.

Each case here ended in a traceback and exit 1, or in a line with wrong or no advice, before.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import closing
from pathlib import Path

import pytest
import trio

from agentwatch.cli import EXIT_CONFIG
from agentwatch.watch import STORAGE_UNAVAILABLE
from helpers import DaemonProcess, RpcError, agent, running_daemon, watcher


def serve(
    state_dir: Path, *args: str, prefix: Sequence[str] = (), env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``agentwatch serve`` on ``state_dir`` as a process of its own (under ``prefix``: unshare,
    setpriv), run to its end; without the service manager's and agentwatch's variables."""
    ours = ("AGENTWATCH_", "LISTEN_", "NOTIFY_", "WATCHDOG_", "STATE_DIRECTORY")
    environ = {name: value for name, value in os.environ.items() if not name.startswith(ours)}
    return subprocess.run(
        [*prefix, sys.executable, "-m", "agentwatch", "serve", "--state-dir", str(state_dir), "--listen", "127.0.0.1:0",
         "--log-format", "json", *args],
        capture_output=True, text=True, timeout=60, env={**environ, **(env or {})}, stdin=subprocess.DEVNULL,
    )


def refused(result: subprocess.CompletedProcess[str], *words: str) -> str:
    """Assert that start-up was refused the way a person can act on; return the line."""
    assert result.returncode == EXIT_CONFIG, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr and "ExceptionGroup" not in result.stderr, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("agentwatch: cannot start: "), result.stderr
    for word in words:
        assert word in lines[0], (word, lines[0])
    logged = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert [record["error"] for record in logged if record["event"] == "startup_failed"] == [
        lines[0].removeprefix("agentwatch: cannot start: ")
    ]
    return lines[0]


# --- a damaged database ---


@pytest.fixture(scope="module")
def filled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A state directory a real daemon filled: three agents, each with a session, its facts and 300 events."""
    state = tmp_path_factory.mktemp("filled") / "state"

    async def fill() -> None:
        async with running_daemon(state) as d:
            for n in range(3):
                async with agent(d, f"agent-{n}") as a:
                    await a.hello(cwd=f"/work/{n}")
                    await a.batch(range(1, 301), lambda seq: {"kind": "prompt" if seq == 1 else "output", "text": "x" * 200})
                    await a.until_ack(300)

    trio.run(fill)
    assert not (state / "agentwatch.db-wal").exists(), "everything is in the database file itself"
    return state


def damaged(filled: Path, tmp_path: Path, table: str | None) -> Path:
    """A copy of ``filled`` with the first 1000 bytes of ``table``'s root page overwritten, its b-tree
    page header included (None: the first page, after the file header): its schema still opens,
    reading that table fails. Past the header alone, SQLite masks a wild cell pointer into the page
    and a read could still succeed."""
    state = tmp_path / "state"
    shutil.copytree(filled, state)
    db = state / "agentwatch.db"
    with closing(sqlite3.connect(db)) as conn:
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        page = conn.execute("SELECT rootpage FROM sqlite_schema WHERE name = ?", (table,)).fetchone()[0] if table else 1
    with db.open("r+b") as file:
        file.seek((page - 1) * page_size + (100 if page == 1 else 0))  # its first byte says what kind of page
        file.write(b"\xff" * 1000)
    return state


@pytest.mark.parametrize("table", ["sessions", "agents"])
def test_a_damaged_page_that_plugins_read_at_start_stops_it_with_one_line(filled, tmp_path, table):
    """The attention and stall plugins read every current session's facts at start. It was a
    traceback (both plugins' CorruptError) and exit 1, after the daemon had said it was ready."""
    state = damaged(filled, tmp_path, table)
    db = state / "agentwatch.db"
    with closing(sqlite3.connect(db)) as conn:
        assert conn.execute("SELECT count(*) FROM sqlite_schema").fetchone()[0] > 0, "the schema still opens"
        with pytest.raises(sqlite3.DatabaseError, match="malformed"):
            conn.execute(f"SELECT * FROM {table}").fetchall()
    refused(serve(state), f"the database {db} is damaged (database disk image is malformed)", "restore it from a backup",
            "move it and its -wal file aside")


def test_a_damaged_first_page_is_called_damaged_when_the_store_opens(filled, tmp_path):
    """The schema check at open reads it. It was "not a usable SQLite database ... move it away"."""
    state = damaged(filled, tmp_path, None)
    db = state / "agentwatch.db"
    before = db.read_bytes()
    refused(serve(state), f"the database {db} is damaged", "restore it from a backup")
    assert db.read_bytes() == before


async def test_a_damaged_page_read_at_run_time_is_an_error_reply_and_the_daemon_lives_on(filled, tmp_path):
    """Events are not read at start: the daemon starts, and a query that reads them is answered
    with a storage error that names the file (it named none)."""
    state = damaged(filled, tmp_path, "events")
    db = state / "agentwatch.db"
    d = DaemonProcess(state)
    running = await d.ready()
    async with watcher(running) as w:
        for _ in range(2):
            with pytest.raises(RpcError) as error:
                await w.call("events.list", agent_id="agent-0")
            assert error.value.code == STORAGE_UNAVAILABLE
            assert f"the database {db} is damaged" in error.value.message, error.value.message
        assert len(await w.call("agents.list")) == 3, "what does not read the damaged page still answers"
        assert (await w.call("status"))["events_stored"] == 900
    assert d.proc.poll() is None
    d.proc.terminate()
    assert await d.wait() == 0


# --- a state directory that cannot be used ---


@pytest.mark.parametrize(
    ("state", "args"),
    [("file/state", []), ("file/state", ["--no-auth"]), ("file", [])],
    ids=["below-a-file", "below-a-file-no-auth", "is-a-file"],
)
def test_a_state_dir_where_a_regular_file_is(tmp_path, state, args):
    """NotADirectoryError, FileExistsError: tracebacks; with --no-auth a bare "Not a directory"."""
    (tmp_path / "file").write_text("not a directory\n")
    refused(serve(tmp_path / state, *args), f"cannot use the state directory {tmp_path / state}",
            f"{tmp_path / 'file'} is a file, not a directory", "choose another --state-dir")


@functools.cache
def mount_namespace() -> list[str] | None:
    """unshare's flags for a mount namespace this process may make (as root, or as root of a user
    namespace of its own), or None if neither works here."""
    if shutil.which("unshare") is None:
        return None
    with tempfile.TemporaryDirectory() as scratch:
        for flags in (["--mount"], ["--user", "--map-root-user", "--mount"]):
            if subprocess.run(read_only(scratch, scratch, flags) + ["true"], capture_output=True).returncode == 0:
                return flags
    return None


def read_only(source: Path | str, mountpoint: Path | str, flags: list[str]) -> list[str]:
    """A prefix that runs a command with ``source`` mounted read-only on ``mountpoint`` (EROFS)."""
    script = 'mount --bind "$1" "$2" && mount -o remount,bind,ro "$2" && shift 2 && exec "$@"'
    return ["unshare", *flags, "sh", "-c", script, "sh", str(source), str(mountpoint)]


@pytest.mark.parametrize("case", ["to-create", "empty", "holds-a-database"])
def test_a_state_dir_on_a_read_only_file_system(filled, tmp_path, case):
    """To create: a traceback (EROFS). Empty: a traceback (the token's clean-up hid its EROFS).
    Holding a database: "not a usable SQLite database ... move it away", of a sound database."""
    if (flags := mount_namespace()) is None:
        pytest.skip("neither `unshare --mount` nor `unshare --user --map-root-user --mount` works here")
    source, mountpoint = tmp_path / "source", tmp_path / "mnt"
    mountpoint.mkdir()
    if case == "holds-a-database":
        shutil.copytree(filled, source)
    else:
        source.mkdir()
    state = mountpoint / "state" if case == "to-create" else mountpoint
    words = {
        "to-create": [f"cannot use the state directory {state}"],
        "empty": [f"cannot create token file {state / 'token'}"],
        "holds-a-database": [f"cannot open the store at {state / 'agentwatch.db'}"],
    }[case]
    line = refused(serve(state, prefix=read_only(source, mountpoint, flags)), *words,
                   f"{mountpoint} is on a read-only file system", "make it writable or choose another --state-dir")
    assert "move it" not in line
    if case == "holds-a-database":
        assert (source / "agentwatch.db").read_bytes() == (filled / "agentwatch.db").read_bytes()


@pytest.fixture
def locked() -> Iterator[Path]:
    """A directory that every user may enter and only root may write in (outside tmp_path, which
    other users cannot enter), with ``kept/token`` that only root may read and ``closed/`` that
    only root may enter."""
    root = os.geteuid() == 0
    directory = Path(tempfile.mkdtemp(prefix="aw-locked-"))
    kept, closed = directory / "kept", directory / "closed"
    kept.mkdir()
    closed.mkdir()
    (kept / "token").write_text("secret\n")
    (kept / "token").chmod(0o600 if root else 0o000)
    closed.chmod(0o700 if root else 0o000)
    for made in (kept, directory):
        made.chmod(0o755 if root else 0o555)
    yield directory
    for made in (directory, kept, closed):
        made.chmod(0o755)
    shutil.rmtree(directory)


@pytest.fixture
def unprivileged() -> list[str]:
    """What to run the daemon under so that file permissions stop it: as root, ``setpriv`` to nobody."""
    prefix = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"] if os.geteuid() == 0 else []
    if prefix and (shutil.which("setpriv") is None or subprocess.run([*prefix, sys.executable, "-c", ""]).returncode):
        pytest.skip("root may write anywhere, and this Python cannot run as nobody (setpriv) to be refused")
    return prefix


def test_a_database_the_daemon_may_not_write_is_refused_at_start(tmp_path, unprivileged):
    """SQLite opened it read-only: the daemon started, and every event got storage_unavailable."""
    state = Path(tempfile.mkdtemp(prefix="aw-readonly-db-"))
    try:
        (state / "token").write_text("secret\n")
        (state / "agentwatch.db").touch(mode=0o444)
        if unprivileged:
            for path in (state, state / "token", state / "agentwatch.db"):
                os.chown(path, 65534, 65534)
        refused(serve(state, prefix=unprivileged), f"may not open {state / 'agentwatch.db'}", "give it access")
    finally:
        shutil.rmtree(state)


@pytest.mark.parametrize("case", ["exists", "to-create", "behind-a-closed-dir", "token-unreadable"])
def test_a_state_dir_the_daemon_may_not_write_in(locked, case, unprivileged):
    """Exists: "Permission denied" and no advice. To create, also in a directory it may not enter:
    a traceback (PermissionError). A token file it may not read: "Permission denied" and no advice."""
    prefix = unprivileged
    token = locked / "kept" / "token"
    state, words = {
        "exists": (locked, [f"cannot create token file {locked / 'token'}", f"may not write in {locked}"]),
        "to-create": (locked / "state", [f"cannot use the state directory {locked / 'state'}", f"may not write in {locked}"]),
        "behind-a-closed-dir": (locked / "closed" / "state", [f"may not write in {locked / 'closed'}"]),
        "token-unreadable": (token.parent, [f"cannot read token file {token}", f"may not open {token}"]),
    }[case]
    refused(serve(state, prefix=prefix), *words, "give it access or choose another --state-dir")


# --- a plugin's start-up ---

BROKEN_STORE = """
from agentwatch.hookspecs import hookimpl

@hookimpl
def agentwatch_open_store(config, metrics):
    raise OSError("the bucket s3://agents is gone")
"""


def test_a_store_plugin_that_raises_is_named(tmp_path):
    """A store is fatal (FATAL_HOOKS in test_plugins): it was a traceback and exit 1."""
    site = tmp_path / "site"
    (site / "brokenstore-1.0.dist-info").mkdir(parents=True)
    (site / "brokenstore.py").write_text(BROKEN_STORE)
    (site / "brokenstore-1.0.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: brokenstore\nVersion: 1.0\n")
    (site / "brokenstore-1.0.dist-info" / "entry_points.txt").write_text("[agentwatch]\nbrokenstore = brokenstore\n")
    path = os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")]))
    refused(serve(tmp_path / "state", env={"PYTHONPATH": path}), "plugin 'brokenstore' failed in agentwatch_open_store",
            "s3://agents is gone", "add it to plugins.disable")
