"""The daemon's timestamps (``now_ms``) follow Trio's clock."""

import time

import trio

from agentwatch.model import now_ms


async def test_under_a_mock_clock_timestamps_move_with_virtual_time_only(virtual_clock):
    first = now_ms()
    assert abs(first - time.time() * 1000) < 1000, "it starts at the wall clock"
    time.sleep(0.01)  # real time passes, virtual time does not
    assert now_ms() == first, "two timestamps between jumps are equal, never a millisecond apart"
    await trio.sleep(3600)
    assert now_ms() == first + 3_600_000


async def test_under_the_real_clock_it_is_the_wall_clock():
    assert abs(now_ms() - time.time() * 1000) < 50
