"""``agentwatch hook``: forward the Claude Code hook payload on stdin to the daemon.

It runs on Claude Code's interactive path, at every tool call, so it is built to be quick and
harmless: standard library only (no event loop, no configuration file), one short connection,
bounded waits, and exit status 0 whatever happens, so Claude Code never stalls or shows an
error because of it. The payload goes into the agent's outbox first (:mod:`agentwatch.outbox`):
when the daemon is down it stays there, and the next hook, ``agentwatch run`` or
``agentwatch flush`` delivers it.

The agent is the Claude Code process (``claude-<host>-<pid>``), found by walking up from this
process past any shell; so one agent keeps its identity across ``/clear``, which the daemon
records as the next session. ``AGENTWATCH_AGENT_ID`` overrides it; an id the daemon would not
take (it also names the outbox's files) is reported, and nothing is written.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, BinaryIO

from agentwatch import outbox
from agentwatch.courier import Undelivered, deliver, flush_outboxes
from agentwatch.identity import check_agent_id, claude_pid, id_part, iso_now, short_host
from agentwatch.locate import ClientError, announced
from agentwatch.paths import state_dir_from
from agentwatch.record_lines import READ_LIMIT, Line, record_of

FORMAT = "claude-hook"
TIMEOUT = 2.0  # seconds for any one wait on the daemon
FLUSH_BUDGET = 1.0  # seconds spent, after a delivery, on outboxes other agents left behind
READ_AT_MOST = 1 << 30  # bytes of stdin read before the payload is taken as it is


def main(environ: Mapping[str, str] | None = None) -> int:
    """Forward one payload; always 0 (problems are reported on stderr, which Claude Code shows in verbose mode)."""
    environ = os.environ if environ is None else environ
    try:
        forward(_read_payload(sys.stdin.buffer), environ)
    except Exception as exc:  # noqa: BLE001 - a hook must never fail Claude Code
        print(f"agentwatch hook: {exc}", file=sys.stderr)
    return 0


def _read_payload(stream: BinaryIO) -> Line:
    """The payload on ``stream``: whole up to ``READ_LIMIT`` bytes, else its head (the rest is
    read and counted, up to ``READ_AT_MOST``: a stream that never ends is not waited for)."""
    head = stream.read(READ_LIMIT)
    size = len(head)
    while size < READ_AT_MOST and (chunk := stream.read(1 << 20)):
        size += len(chunk)
    return Line(head, size)


def forward(raw: bytes | Line, environ: Mapping[str, str]) -> None:
    """Put the payload ``raw`` in its agent's outbox (as JSON, or as text if it is not JSON; cut
    to the daemon's frame limit) and deliver that; :class:`ClientError` if the daemon did not take
    it (it stays in the outbox), ``ValueError`` (nothing written) if ``AGENTWATCH_AGENT_ID`` is not
    a valid agent id."""
    data: Any = record_of(raw if isinstance(raw, Line) else Line(raw, len(raw)))
    payload = data if isinstance(data, dict) else {}
    state_dir = state_dir_from(environ)
    host = short_host()
    pid = claude_pid()
    agent_id = check_agent_id(environ.get("AGENTWATCH_AGENT_ID") or f"claude-{id_part(host)}-{pid}")  # it names files
    cwd = payload.get("cwd") if isinstance(payload.get("cwd"), str) else None
    agent = {"kind": "claude-code", "host": host, "pid": pid} | ({"cwd": cwd, "name": Path(cwd).name} if cwd else {})
    with outbox.locked(state_dir, agent_id) as box:
        box.set_hello({"format": FORMAT, "agent": agent})
        box.append([(data, FORMAT, iso_now())])
        endpoint = announced(state_dir, environ)  # after the append: a daemon that cannot be found must not lose the event
        if endpoint is None:
            box.hold()
            raise ClientError(f"no daemon is running with state directory {state_dir}; the event waits in its outbox")
        try:
            deliver(box, endpoint, TIMEOUT)
        except Undelivered as exc:
            raise ClientError(f"{exc}; the event waits in its outbox") from None
        if payload.get("hook_event_name") == "SessionEnd" and payload.get("reason") != "clear":
            box.forget()  # the Claude Code process is ending
    flush_outboxes(state_dir, endpoint, timeout=TIMEOUT, budget=FLUSH_BUDGET, skip=agent_id)
