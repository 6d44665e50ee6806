"""The writer's queue: each agent's frames in order, agents taken in turn, a byte budget a flood
cannot use to keep another agent out."""

import trio

from agentwatch.model import Batch, IncomingEvent, Normalized
from agentwatch.plugins.storage.write_queue import QUIET_OVERDRAFT, WriteQueue


class _Sink:
    def committed(self, batch, acked_seq, stored) -> None: ...

    def failed(self, batch, code, message) -> None: ...


def frame(agent_id: str, seq: int, events: int = 1, size: int = 100) -> Batch:
    incoming = [IncomingEvent(s, None, "agentwatch", "{}", Normalized("output")) for s in range(seq, seq + events)]
    return Batch(agent_id, incoming, 0, _Sink(), size)


def names(items) -> list[str]:
    return [f"{item.agent_id}{item.events[0].seq}" if isinstance(item, Batch) else item for item in items]


async def test_agents_are_taken_in_turn_each_in_its_own_order():
    queue = WriteQueue[str](1 << 20)
    for seq in range(1, 11):
        await queue.put_batch(frame("flood", seq))
    await queue.put_batch(frame("quiet", 1))
    await queue.put_batch(frame("quiet", 2))
    await queue.put_batch(frame("other", 1))
    # the flood fills the first commit, then goes to the back: the others come first in the next
    assert names(await queue.take(4)) == ["flood1", "flood2", "flood3", "flood4"]
    assert names(await queue.take(5)) == ["quiet1", "quiet2", "other1", "flood5", "flood6"]
    assert names(await queue.take(100)) == [f"flood{seq}" for seq in range(7, 11)]


async def test_an_agent_that_arrives_behind_a_long_flood_waits_one_commit_not_the_flood():
    queue = WriteQueue[str](1 << 30)
    for seq in range(1, 1001):
        await queue.put_batch(frame("flood", seq, events=10))
    await queue.put_batch(frame("quiet", 1))
    assert "quiet1" not in names(await queue.take(5000))
    assert names(await queue.take(5000))[0] == "quiet1"


async def test_a_take_stops_at_max_events_counting_every_event_of_a_frame():
    queue = WriteQueue[str](1 << 20)
    await queue.put_batch(frame("a", 1, events=3))
    await queue.put_batch(frame("b", 1, events=3))
    await queue.put_batch(frame("c", 1, events=3))
    assert names(await queue.take(5)) == ["a1", "b1"]
    assert names(await queue.take(5)) == ["c1"]


async def test_a_hello_goes_first_unless_its_agent_has_frames_queued():
    queue = WriteQueue[str](1 << 20)
    await queue.put_batch(frame("a", 1))
    await queue.put_batch(frame("a", 2))
    queue.put_hello("a", "hello-a")  # a reconnect racing its old connection: after its frames
    queue.put_hello("b", "hello-b")  # a new agent: ahead of everything
    assert names(await queue.take(100)) == ["hello-b", "a1", "a2", "hello-a"]


async def test_a_hello_waits_for_its_agents_frames_still_being_committed():
    queue = WriteQueue[str](1 << 20)
    await queue.put_batch(first := frame("a", 1))
    assert names(await queue.take(100)) == ["a1"]
    queue.put_hello("a", "hello-a")
    await queue.put_batch(frame("b", 1))
    assert names(await queue.take(100)) == ["hello-a", "b1"]  # a's line comes first in turn
    queue.done(first)
    queue.put_hello("a", "again")
    assert names(await queue.take(100)) == ["again"]


async def test_a_flood_fills_the_budget_and_waits_while_a_quiet_agent_still_gets_in():
    queue = WriteQueue[str](1000)
    for seq in range(1, 11):
        await queue.put_batch(frame("flood", seq, size=100))
    assert queue.queued_bytes == 1000
    with trio.move_on_after(1) as blocked:
        await queue.put_batch(frame("flood", 11, size=100))
    assert blocked.cancelled_caught, "an agent with frames queued waits at the budget"
    with trio.fail_after(1):
        await queue.put_batch(frame("quiet", 1, size=100))  # nothing of its own queued: it gets in
    assert queue.queued_bytes == 1100


async def test_quiet_agents_together_stop_at_the_overdraft():
    queue = WriteQueue[str](1000)
    await queue.put_batch(frame("flood", 1, size=1000))
    for number in range(QUIET_OVERDRAFT - 1):
        await queue.put_batch(frame(f"quiet{number}", 1, size=1000))
    assert queue.queued_bytes == QUIET_OVERDRAFT * 1000
    with trio.move_on_after(1) as blocked:
        await queue.put_batch(frame("late", 1, size=1))
    assert blocked.cancelled_caught, "past the overdraft everyone waits"


async def test_a_waiting_frame_gets_in_once_a_commit_frees_room():
    queue = WriteQueue[str](1000)
    await queue.put_batch(frame("flood", 1, size=1000))
    admitted = trio.Event()

    async def put_next() -> None:
        await queue.put_batch(frame("flood", 2, size=1000))
        admitted.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(put_next)
        [taken] = await queue.take(100)
        await trio.sleep(0.1)
        assert not admitted.is_set()
        queue.done(taken)
        with trio.fail_after(1):
            await admitted.wait()
    assert names(await queue.take(100)) == ["flood2"]
