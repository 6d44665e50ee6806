import math
import os
import signal

import pytest
import trio.testing

from agentwatch.logs import configure_logging
from disk_shim import ShimDisk
from helpers import STARTED

# A shell's background job (`pytest &`, a CI runner's) starts with SIGINT ignored, and every process
# the tests start would inherit that: a test's Ctrl-C (SIGINT) would do nothing, and it would wait
# forever. A handler of our own is not inherited: children start with the default, as at a terminal.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

# The daemon's own handler writes nowhere; pytest's capture handler still records every
# line, and shows them when a test fails.
configure_logging("info", "json", open(os.devnull, "w"))  # noqa: SIM115


@pytest.fixture
def state_dir(tmp_path):
    return tmp_path / "state"


@pytest.fixture
def virtual_clock(monkeypatch):
    """Virtual time for timer tests against a real daemon.

    Like ``autojump_clock``, but the clock jumps only after 20 ms of real idleness, so a loopback
    packet in flight arrives first, and never while work handed to a thread (an fsync, a long
    write transaction) is running: trio counts a task waiting on ``trio.to_thread.run_sync`` as
    blocked, and a plain autojump clock would skip past every timeout on a loaded machine.
    """
    threshold = 0.02
    clock = trio.testing.MockClock(autojump_threshold=threshold)
    run_sync = trio.to_thread.run_sync
    running = 0

    async def counted(*args, **kwargs):
        nonlocal running
        running += 1
        clock.autojump_threshold = math.inf
        try:
            return await run_sync(*args, **kwargs)
        finally:
            running -= 1
            if not running:
                clock.autojump_threshold = threshold

    monkeypatch.setattr(trio.to_thread, "run_sync", counted)
    return clock


@pytest.fixture
def clock_past_threads():
    """Virtual time that jumps even while a thread works: for tests that wedge a thread on purpose."""
    return trio.testing.MockClock(autojump_threshold=0.02)


@pytest.fixture
def disk():
    """A disk that tests can make full or slow (``disk_shim.ShimDisk``), under every SQLite file
    opened while the test runs."""
    shim = ShimDisk()
    yield shim
    shim.unregister()


@pytest.fixture(autouse=True)
def no_daemon_outlives_its_test():
    """A test that fails (or times out) half-way must not leave its daemon subprocesses running."""
    yield
    while STARTED:
        proc = STARTED.pop()
        if proc.poll() is None:
            proc.kill()
            proc.wait()

