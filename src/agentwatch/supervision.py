"""What the daemon tells its service manager while it runs: a status line, and watchdog pings
that stop when it is wedged (see :mod:`agentwatch.sd_notify`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import trio

from agentwatch.logs import get_logger

if TYPE_CHECKING:
    from agentwatch.daemon import Daemon

log = get_logger(__name__)

STATUS_EVERY = 5.0  # seconds between STATUS= updates


async def supervise(daemon: Daemon) -> None:
    """Report status, and ping the watchdog if one is set, until cancelled."""
    if not daemon.notifier.enabled:
        return
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_report_status, daemon)
        if daemon.notifier.watchdog_interval is not None:
            nursery.start_soon(_keep_watchdog, daemon, daemon.notifier.watchdog_interval)


async def _report_status(daemon: Daemon) -> None:
    shown = ""
    stored, at = daemon.events_stored, trio.current_time()
    while True:
        await trio.sleep(STATUS_EVERY)
        rate = (daemon.events_stored - stored) / (trio.current_time() - at)
        stored, at = daemon.events_stored, trio.current_time()
        if (status := daemon.status_line(rate)) != shown:
            daemon.notifier.status(status)
            shown = status


async def _keep_watchdog(daemon: Daemon, interval: float) -> None:
    """``WATCHDOG=1`` every ``interval`` while the loop runs this task on time and no single write
    has been in progress for longer than ``interval``: a wedged writer lets systemd restart us."""
    withheld = False
    while True:
        busy = daemon.store.writer_busy_for()
        if busy < interval:
            daemon.notifier.watchdog()
            if withheld:
                log.info("watchdog_resumed")
                withheld = False
        elif not withheld:
            log.error("watchdog_withheld", writer_busy_s=round(busy, 1), hint="a write is stuck; systemd restarts the daemon at WatchdogSec")
            withheld = True
        await trio.sleep(interval)
