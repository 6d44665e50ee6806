"""The built-in SQLite store below the protocol: group commit isolation, schema ownership."""

import json
import threading

import apsw
import pytest
import trio

from agentwatch.model import AgentInfo, Batch, IncomingEvent, Normalized, StoredEvent, now_ms
from agentwatch.plugins.storage import checkpoints
from agentwatch.plugins.storage.schema import APPLICATION_ID, MIGRATIONS
from agentwatch.plugins.storage.sqlite_store import SqliteStore
from agentwatch.store import StoreRefused
from helpers import agent, running_daemon, watcher


class Outcome:
    """Records what the store reports for one batch (the role of an ingest connection)."""

    def __init__(self) -> None:
        self.done = trio.Event()
        self.acked: int | None = None
        self.failure: tuple[str, str] | None = None

    def committed(self, batch, acked_seq: int, stored: list[StoredEvent]) -> None:
        self.acked = acked_seq
        self.done.set()

    def failed(self, batch: Batch, code: str, message: str) -> None:
        self.failure = (code, message)
        self.done.set()


def batch(
    agent_id: str, seq: int, fmt: str = "agentwatch", count: int = 1, record: str = '{"kind":"output"}'
) -> tuple[Batch, Outcome]:
    outcome = Outcome()
    events = [IncomingEvent(s, None, fmt, record, Normalized("output")) for s in range(seq, seq + count)]
    return Batch(agent_id, events, now_ms(), outcome, sum(len(e.data_json) for e in events)), outcome


async def test_one_unwritable_frame_in_a_group_commit_fails_alone(tmp_path):
    store = SqliteStore(tmp_path / "a.db")
    async with trio.open_nursery() as nursery:
        await nursery.start(store.run, lambda events, sessions, removed: None)
        for agent_id in ("good", "bad"):
            await store.hello(agent_id, AgentInfo(), now_ms())
        release = threading.Event()
        nursery.start_soon(store.run_in_writer, lambda conn: release.wait())
        await trio.sleep(0.05)  # the writer's thread is now held
        first, first_outcome = batch("good", 1)
        await store.submit(first)  # taken by the writer loop, which waits for the thread
        bad, bad_outcome = batch("bad", 1, fmt="lone \udc90")  # a plugin's format name SQLite cannot encode
        good, good_outcome = batch("good", 2)
        await store.submit(bad)
        await store.submit(good)  # bad and good now wait together: one group commit
        release.set()
        await good_outcome.done.wait()
        await bad_outcome.done.wait()
        assert first_outcome.acked == 1 and good_outcome.acked == 2
        assert bad_outcome.failure is not None and bad_outcome.failure[0] == "internal"
        page = await store.events("good")
        assert page is not None and [e["seq"] for e in json.loads(page)["events"]] == [1, 2]
        nursery.cancel_scope.cancel()


async def test_a_hello_overtakes_other_agents_frames_but_not_its_own(tmp_path):
    store = SqliteStore(tmp_path / "a.db")
    async with trio.open_nursery() as nursery:
        await nursery.start(store.run, lambda events, sessions, removed: None)
        await store.hello("busy", AgentInfo(), now_ms())
        release = threading.Event()
        nursery.start_soon(store.run_in_writer, lambda conn: release.wait())
        await trio.sleep(0.05)  # the writer's thread is held
        outcomes = []
        for start in range(1, 12_001, 1000):  # more than two commits' worth of one agent's frames
            queued, outcome = batch("busy", start, count=1000)
            await store.submit(queued)
            outcomes.append(outcome)
        welcomed = {}

        async def say_hello(agent_id):
            welcomed[agent_id] = (await store.hello(agent_id, AgentInfo(), now_ms()), sum(o.done.is_set() for o in outcomes))

        nursery.start_soon(say_hello, "newcomer")
        nursery.start_soon(say_hello, "busy")
        await trio.sleep(0.05)
        release.set()
        with trio.fail_after(10):
            while len(welcomed) < 2:
                await trio.sleep(0.01)
        nursery.cancel_scope.cancel()
    (session, acked), committed_before = welcomed["newcomer"]
    assert (session, acked) == (0, 0) and committed_before < len(outcomes), "the newcomer did not wait for the queue"
    (session, acked), committed_before = welcomed["busy"]
    assert acked == 12_000 and committed_before == len(outcomes), "a reconnect's welcome covers its own queued frames"


async def test_after_a_failed_write_nothing_above_the_hole_is_stored_until_it_is_resent(tmp_path):
    """The guard survives a new hello (a reconnect racing the old connection's frames) and starts
    at the first seq that was new, so a resend overlapping stored events clears it."""
    store = SqliteStore(tmp_path / "a.db")
    async with trio.open_nursery() as nursery:
        await nursery.start(store.run, lambda events, sessions, removed: None)
        await store.hello("a", AgentInfo(), now_ms())
        first, outcome = batch("a", 1, count=10)
        await store.submit(first)
        await outcome.done.wait()
        pages = await store.run_in_writer(lambda conn: conn.execute("PRAGMA page_count").get)
        await store.run_in_writer(lambda conn: conn.execute(f"PRAGMA max_page_count = {pages}").get)
        big = '{"kind":"output","text":"' + "x" * 100_000 + '"}'
        failing, outcome = batch("a", 8, record=big, count=8)  # 8..15, of which 11..15 are new
        await store.submit(failing)
        await outcome.done.wait()
        assert outcome.failure is not None and outcome.failure[0] == "storage_unavailable"
        await store.run_in_writer(lambda conn: conn.execute("PRAGMA max_page_count = 4294967294").get)
        assert await store.hello("a", AgentInfo(), now_ms()) == (0, 10)
        late, outcome = batch("a", 16)  # the old connection's pipelined frame, after the new hello
        await store.submit(late)
        await outcome.done.wait()
        assert outcome.failure is not None and "from seq 11" in outcome.failure[1]
        resent, outcome = batch("a", 8, count=9)  # 8..16, overlapping what is stored
        await store.submit(resent)
        await outcome.done.wait()
        assert outcome.acked == 16
        page = await store.events("a")
        assert page is not None and [e["seq"] for e in json.loads(page)["events"]] == list(range(1, 17))
        nursery.cancel_scope.cancel()


async def open_store(path):
    store = SqliteStore(path)
    async with trio.open_nursery() as nursery:
        await nursery.start(store.run, lambda events, sessions, removed: None)
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize(
    ("sql", "refusal"),
    [
        (f"PRAGMA application_id = {APPLICATION_ID}; PRAGMA user_version = {len(MIGRATIONS) + 1}", "newer than this agentwatch"),
        ("CREATE TABLE invoices(id INTEGER PRIMARY KEY)", "another program"),
    ],
)
async def test_a_database_agentwatch_cannot_own_is_refused_untouched(tmp_path, sql, refusal):
    path = tmp_path / "a.db"
    conn = apsw.Connection(str(path))
    conn.execute(sql)
    conn.close()
    before = path.read_bytes()
    with pytest.RaisesGroup(pytest.RaisesExc(StoreRefused, match=refusal), flatten_subgroups=True):
        await open_store(path)
    assert path.read_bytes() == before


async def test_reopening_keeps_the_schema_version(tmp_path):
    path = tmp_path / "a.db"
    await open_store(path)
    await open_store(path)
    conn = apsw.Connection(str(path))
    assert conn.execute("PRAGMA user_version").get == len(MIGRATIONS)
    assert conn.execute("PRAGMA journal_mode").get == "wal"


async def test_checkpoints_move_the_wal_into_the_database_while_it_runs(state_dir):
    """SQLite's own auto-checkpoint is off (a checkpoint would stall a commit); the store's
    checkpointer copies the WAL into the database on its own connection."""
    db = state_dir / "agentwatch.db"
    async with running_daemon(state_dir) as d, agent(d, "a1") as a:
        await a.hello()
        initial = db.stat().st_size
        for start in range(1, 3001, 500):  # about 6 MB of records: well past 1000 WAL pages
            await a.batch(range(start, start + 500), lambda seq: {"kind": "output", "text": "x" * 2000})
            await a.until_ack(start + 499)
        with trio.fail_after(10):
            while db.stat().st_size < initial + (4 << 20):
                await trio.sleep(0.01)
        assert await d.daemon.store.run_in_writer(lambda conn: conn.execute("PRAGMA wal_autocheckpoint").get) == 0


async def test_a_wal_past_its_truncate_size_is_emptied_once_no_reader_is_behind(state_dir, monkeypatch):
    """A WAL whose passive checkpoints fall behind grows; past TRUNCATE_PAGES it is emptied (a
    passive checkpoint would let it start over but keep the file at its size)."""
    monkeypatch.setattr(checkpoints, "CHECKPOINT_PAGES", 2000)  # the checkpointer falls behind ...
    monkeypatch.setattr(checkpoints, "TRUNCATE_PAGES", 1500)  # ... past the truncate size (6 MB, not 64 MB)
    wal = state_dir / "agentwatch.db-wal"
    async with running_daemon(state_dir) as d, agent(d, "a1") as a:
        await a.hello()
        sizes = []
        for start in range(1, 3001, 250):  # 6 MB of records: one checkpoint, at about 2000 pages
            await a.batch(range(start, start + 250), lambda seq: {"kind": "output", "text": "x" * 2000})
            await a.until_ack(start + 249)
            sizes.append(wal.stat().st_size)
        largest = sizes.index(max(sizes))
        assert sizes[largest] > 2000 * 4096 and min(sizes[largest:]) < 2 << 20, sizes
        async with watcher(d) as w:
            assert (await w.call("status"))["events_stored"] == 3000
