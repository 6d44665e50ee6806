"""The write connection's thread: one OS thread, calls in order, results and errors carried back."""

import threading

import pytest
import trio

from agentwatch.plugins.storage.writer_thread import WriterThread


@pytest.fixture
async def writer():
    thread = WriterThread("test-writer")
    thread.start()
    yield thread
    thread.stop()


async def test_every_call_runs_on_the_same_thread_in_the_order_asked(writer):
    seen: list[tuple[int, int]] = []

    async def call(number: int) -> int:
        return await writer.run(lambda: seen.append((number, threading.get_ident())) or number * 10)

    results: dict[int, int] = {}

    async def caller(number: int) -> None:
        results[number] = await call(number)

    async with trio.open_nursery() as nursery:
        for number in range(20):
            nursery.start_soon(caller, number)
            await trio.lowlevel.checkpoint()  # each caller hands its call over before the next starts

    assert [number for number, _ in seen] == list(range(20))
    assert len({ident for _, ident in seen}) == 1 and seen[0][1] != threading.get_ident()
    assert results == {number: number * 10 for number in range(20)}


async def test_an_exception_on_the_thread_is_raised_in_the_caller_and_the_thread_goes_on(writer):
    def fail() -> None:
        raise ValueError("disk on fire")

    with pytest.raises(ValueError, match="disk on fire"):
        await writer.run(fail)
    assert await writer.run(lambda x: x + 1, 41) == 42


async def test_busy_for_counts_while_a_call_is_stuck_and_resets_when_it_moves(writer):
    release = threading.Event()
    assert writer.busy_for() == 0.0
    async with trio.open_nursery() as nursery:
        nursery.start_soon(writer.run, release.wait)
        await trio.sleep(0.05)
        assert writer.busy_for() >= 0.05
        release.set()
    assert writer.busy_for() == 0.0


async def test_a_call_handed_over_is_not_abandoned_when_its_caller_is_cancelled(writer):
    release = threading.Event()
    finished: list[str] = []

    def slow() -> str:
        release.wait()
        finished.append("slow")
        return "done"

    with trio.move_on_after(0.05) as scope:
        threading.Timer(0.2, release.set).start()
        result = await writer.run(slow)
    assert result == "done" and finished == ["slow"] and not scope.cancelled_caught
    assert await writer.run(lambda: "next") == "next"


async def test_a_caller_cancelled_before_handing_over_runs_nothing(writer):
    ran: list[int] = []
    with trio.CancelScope() as scope:
        scope.cancel()
        await writer.run(ran.append, 1)
    assert scope.cancelled_caught and ran == []


async def test_callers_resume_in_the_order_their_calls_ran(writer):
    """What a caller reports as soon as its call returns (a commit's acks, a removal's news) is
    reported in the order of the writes, although trio may run woken tasks in any order."""
    for _ in range(10):
        gate = threading.Event()
        resumed: list[int] = []

        async def caller(number: int) -> None:
            await writer.run(gate.wait if number == 0 else int)
            resumed.append(number)

        async with trio.open_nursery() as nursery:
            for number in range(8):
                nursery.start_soon(caller, number)
                await trio.lowlevel.checkpoint()
            gate.set()  # the eight calls now finish together, their callers woken in one batch
        assert resumed == list(range(8))


async def test_a_call_after_the_thread_stopped_is_refused_instead_of_waiting_for_ever():
    thread = WriterThread("stopping")
    thread.start()
    assert await thread.run(lambda: "before") == "before"
    thread.stop()
    with pytest.raises(trio.ClosedResourceError), trio.fail_after(1):
        await thread.run(lambda: "after")
