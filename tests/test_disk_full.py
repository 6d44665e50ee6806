"""A disk that fills up under the daemon: an APSW VFS shim fails every write with SQLITE_FULL
once a byte budget is spent, the way a full file system does (WAL appends, checkpoints and all)."""

import pytest
import trio

from agentwatch.config import Overrides, load_config
from agentwatch.daemon import Daemon
from agentwatch.exceptions import unwrapped
from agentwatch.store import StoreRefused
from helpers import agent, running_daemon, stored, watcher


def output(seq: int) -> dict:
    return {"kind": "output", "text": f"line {seq} " + "x" * 2000}


async def test_a_full_disk_fails_frames_acks_nothing_unwritten_and_ingest_resumes_when_space_returns(state_dir, disk):
    async with running_daemon(state_dir) as d, agent(d, "a1") as a:
        await a.hello()
        for seq in range(1, 21):
            await a.event(seq, output(seq))
        await a.until_ack(20)

        disk.budget = 0  # the disk is full
        refused = []
        for seq in range(21, 31):
            await a.event(seq, output(seq))
        with trio.fail_after(10):
            while len(refused) < 10:
                frame = await a.recv()
                assert frame["type"] == "error", f"nothing may be acked while the disk is full: {frame}"
                refused.append((frame["code"], frame["seq"]))
        assert {code for code, _ in refused} == {"storage_unavailable"}
        assert disk.refused > 0
        async with watcher(d) as w:  # reads go on, and the daemon is alive
            assert (await w.call("status"))["events_stored"] == 20

        disk.budget = float("inf")  # space returns; the client resends what was not acked
        async with agent(d, "a1") as again:
            welcome = await again.hello()
            assert welcome["acked_seq"] == 20
            for seq in range(21, 41):
                await again.event(seq, output(seq))
            await again.until_ack(40)
        events = await stored(d, "a1")
    assert [event["seq"] for event in events] == list(range(1, 41)), "each event once, none lost"
    assert [event["data"] for event in events] == [output(seq) for seq in range(1, 41)]


async def test_checkpoints_failing_on_a_full_disk_do_not_stop_ingest_nor_lose_anything(state_dir, disk):
    async with running_daemon(state_dir) as d, agent(d, "a1") as a:
        await a.hello()
        disk.only, disk.budget = "agentwatch.db", 0  # the WAL still grows; the checkpoints' copies fail
        for start in range(1, 3001, 100):  # about 1500 WAL pages: checkpoints are due
            await a.batch(range(start, start + 100), output)
            await a.until_ack(start + 99)
        assert disk.refused > 0, "a checkpoint tried to write the database"
        disk.budget = float("inf")
    async with running_daemon(state_dir) as d, watcher(d) as w:
        seqs = []
        while len(seqs) < 3000:  # pages of 200: a page of 1000 such events is over the client's frame limit
            page = await w.call("events.list", agent_id="a1", after_seq=seqs[-1] if seqs else 0, limit=200)
            seqs += [event["seq"] for event in page["events"]]
            if not page["has_more"]:
                break
        assert seqs == list(range(1, 3001))
        assert await d.daemon.store.run_in_writer(lambda conn: conn.execute("PRAGMA integrity_check").get) == "ok"


async def test_a_full_disk_at_start_is_a_clear_refusal(state_dir, disk):
    disk.budget = 0
    config = load_config(Overrides(state_dir=state_dir, listen=["127.0.0.1:0"]), environ={})
    with pytest.raises(StoreRefused, match=r"cannot open the store at .*FullError.*free space on its disk"):
        with unwrapped():
            async with trio.open_nursery() as nursery:
                await nursery.start(Daemon(config).run)
