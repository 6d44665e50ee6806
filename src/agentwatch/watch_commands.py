"""The commands that read a running daemon: ``status``, ``agents``, ``sessions``, ``events``,
``attention`` and ``tail``. Human output by default, ``--json`` for scripts.

Human output fits the terminal's width (``$COLUMNS`` when piped, if set; else tables are not cut
and event lines are cut at 160 columns). ``attention --watch`` and ``tail`` say so when the daemon
stops; with ``--reconnect`` they wait for it to come back and go on where they were.
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import sys
from collections.abc import Awaitable, Callable
from typing import Any, TextIO

import trio

from agentwatch import render
from agentwatch.attention_view import view_for
from agentwatch.client import (
    ClientError,
    DaemonGone,
    DaemonNotRunning,
    Endpoint,
    RpcError,
    WatchClient,
    find_daemon,
    open_watch,
)
from agentwatch.config import Config
from agentwatch.exceptions import unwrapped
from agentwatch.invocation import command_name
from agentwatch.model import RAW, Format, Normalized, now_ms
from agentwatch.plugin_manager import PluginError, Plugins

EXIT_FAILED = 1  # the daemon refused or failed the request
EXIT_USAGE = 2  # the command line asks for something that cannot be
EXIT_NOT_RUNNING = 3  # no daemon answers
PIPED_LINE_WIDTH = 160  # an event line's width when piped without $COLUMNS
RETRY_FIRST_S, RETRY_MAX_S = 0.5, 5.0  # --reconnect: the first wait for the daemon, doubling up to the last

Command = Callable[[WatchClient, argparse.Namespace, "Output"], Awaitable[None]]


class Output:
    """Where a command prints, and how: JSON, or text styled and cut for the terminal."""

    def __init__(self, stream: TextIO, as_json: bool, formats: dict[str, Format]) -> None:
        self.stream = stream
        self.json = as_json
        self.terminal = stream.isatty()
        self.style = render.style_for(stream, os.environ)
        self.aligned = False  # event lines of many agents: their agent column has one width
        self._formats = formats

    @property
    def width(self) -> int | None:
        """The terminal's width now (it may have been resized); piped, ``$COLUMNS`` or None."""
        if (size := self._terminal_size()) is not None:
            return size.columns
        columns = os.environ.get("COLUMNS", "")
        return int(columns) if columns.isdigit() and int(columns) > 0 else None

    @property
    def height(self) -> int:
        """The terminal's height now (24 when it cannot be told)."""
        size = self._terminal_size()
        return size.lines if size is not None else 24

    def _terminal_size(self) -> os.terminal_size | None:
        if self.terminal:
            try:
                return os.get_terminal_size(self.stream.fileno())
            except OSError:
                pass
        return None

    def print(self, text: str) -> None:
        """``text`` and a newline; a lone surrogate (a record may hold one) prints as "?"."""
        self.write(text + "\n")

    def write(self, text: str) -> None:
        """``text`` as it is, at once."""
        self.stream.write(text.encode("utf-8", "replace").decode())
        self.stream.flush()

    def document(self, value: Any) -> None:
        """One JSON document (or one line of a JSON lines stream)."""
        self.print(json.dumps(value))

    def event(self, event: dict[str, Any]) -> None:
        if self.json:
            self.document(event)
        else:
            width = self.width or PIPED_LINE_WIDTH
            self.print(render.event_line(event, self._normalized(event), self.style, width, self.aligned))

    def _normalized(self, event: dict[str, Any]) -> Normalized:
        fmt = self._formats.get(event.get("format", ""))
        try:
            return fmt.normalize(event.get("data")) if fmt else RAW
        except Exception:
            return RAW


def notice(text: str) -> None:
    """A line about the command itself (not its output) on stderr."""
    print(f"agentwatch: {text}", file=sys.stderr, flush=True)


async def status(watch: WatchClient, args: argparse.Namespace, out: Output) -> None:
    result = await watch.call("status")
    out.document(result) if out.json else out.print(render.status_text(result, out.style))


async def agents(watch: WatchClient, args: argparse.Namespace, out: Output) -> None:
    result = await watch.call("agents.list")
    out.document(result) if out.json else out.print(render.agents_table(result, now_ms(), out.style, out.width))


async def sessions(watch: WatchClient, args: argparse.Namespace, out: Output) -> None:
    params = {"limit": args.limit} | ({"agent_id": args.agent} if args.agent else {})
    result = await watch.call("sessions.list", **params)
    if not result and args.agent:
        await _known(watch, args.agent)
    out.document(result) if out.json else out.print(render.sessions_table(result, now_ms(), out.style, out.width))


async def events(watch: WatchClient, args: argparse.Namespace, out: Output) -> None:
    params: dict[str, Any] = {"agent_id": args.agent, "limit": args.limit}
    for name, value in (("session", args.session), ("kinds", args.kind), ("after_seq", args.after_seq)):
        if value is not None:
            params[name] = value
    try:
        page = await watch.call("events.list", **params)
    except RpcError:
        await _known(watch, args.agent)
        raise
    if out.json:
        out.document(page)
        return
    for event in page["events"]:
        out.event(event)
    if page["has_more"]:
        last = page["events"][-1]["seq"]
        out.print(out.style.dim(f"... more: {command_name()} events --agent {args.agent} --after-seq {last}"))


async def _known(watch: WatchClient, agent_id: str) -> None:
    """Raise a :class:`ClientError` that says so if the daemon knows no agent ``agent_id``."""
    known = [agent["agent_id"] for agent in await watch.call("agents.list")]
    if agent_id not in known:
        close = difflib.get_close_matches(agent_id, known, n=1)
        hint = f"did you mean {close[0]}? " if close else ""
        raise ClientError(f"no agent {agent_id!r} is known; {hint}`{command_name()} agents` lists them")


async def attention(watch: WatchClient, args: argparse.Namespace, out: Output) -> None:
    result = await watch.call("attention.list")
    out.document(result) if out.json else out.print(render.attention_table(result["items"], now_ms(), out.style, out.width))


async def _follow_attention(args: argparse.Namespace, out: Output, find: Callable[[], Endpoint]) -> None:
    """``attention --watch``: the feed, redrawn in place on a terminal, printed again when it changes elsewhere."""
    with view_for(out) as view, unwrapped():

        async def show(watch: WatchClient) -> None:
            async with watch.subscribe("attention") as feed:
                async for note in feed:
                    if note.method == "attention":
                        view.update(note.params["items"])

        async with trio.open_nursery() as nursery:
            nursery.start_soon(view.keep_drawn)
            await _connected(find, show, args.reconnect, view.status)
            nursery.cancel_scope.cancel()


class _EventTail:
    """``tail``: every event as it is stored, none twice, and none missed across a gap (a slow
    terminal) or a daemon restart: what is missing is read from the store.

    It keeps, per agent, the last ``seq`` it printed (or, for what came before it started, the
    agent's acknowledged seq then). After subscribing, and after a gap, it reads each agent's
    events above that from ``events.list``; live events at or below it were printed already.
    """

    def __init__(self, args: argparse.Namespace, out: Output) -> None:
        self.agent: str | None = args.agent
        self.kinds: list[str] | None = args.kind
        self.out = out
        out.aligned = args.agent is None
        self.shown: dict[str, int] | None = None  # agent id: the last seq printed or skipped as old

    async def follow(self, watch: WatchClient) -> None:
        if self.shown is None:  # where it starts: what is stored now is not shown
            agents = await watch.call("agents.list")
            self.shown = {agent["agent_id"]: agent["acked_seq"] for agent in agents}
            if self.agent is not None and self.agent not in self.shown:
                notice(f"no agent {self.agent!r} is known yet; waiting for it")
        async with watch.subscribe("events", agent_id=self.agent, kinds=self.kinds) as feed:
            await self._catch_up(watch)
            async for note in feed:
                if note.method == "event":
                    self._show(note.params["event"])
                elif note.method == "gap":
                    await self._catch_up(watch)

    async def _catch_up(self, watch: WatchClient) -> None:
        assert self.shown is not None
        agents = [agent for agent in await watch.call("agents.list") if self.agent in (None, agent["agent_id"])]
        for agent in agents:
            agent_id = agent["agent_id"]
            while agent["acked_seq"] > self.shown.get(agent_id, 0):
                params = {"agent_id": agent_id, "after_seq": self.shown.get(agent_id, 0), "limit": 1000}
                page = await watch.call("events.list", **params, **({"kinds": self.kinds} if self.kinds else {}))
                for event in page["events"]:
                    self._show(event)
                if not page["has_more"]:
                    break

    def _show(self, event: dict[str, Any]) -> None:
        assert self.shown is not None
        if event["seq"] > self.shown.get(event["agent_id"], 0):
            self.shown[event["agent_id"]] = event["seq"]
            self.out.event(event)


async def _tail(args: argparse.Namespace, out: Output, find: Callable[[], Endpoint]) -> None:
    await _connected(find, _EventTail(args, out).follow, args.reconnect, lambda news, lost: notice(news + (" (Ctrl-C to stop)" if lost else "")))


async def _connected(
    find: Callable[[], Endpoint], body: Callable[[WatchClient], Awaitable[None]], reconnect: bool,
    say: Callable[[str, bool], Any],
) -> None:
    """Run ``body`` on a connection to the daemon; with ``reconnect``, when the daemon stops (or is
    not running yet), wait for it and run ``body`` again. ``say(news, lost)`` hears of it."""
    delay, lost, answered = RETRY_FIRST_S, False, False
    while True:
        try:
            async with open_watch(find()) as watch:
                if lost:
                    say("the daemon is back" if answered else "the daemon is up", False)
                    lost, delay = False, RETRY_FIRST_S
                answered = True
                await body(watch)
                return
        except (DaemonGone, DaemonNotRunning) as exc:
            if not reconnect:
                raise
            if not lost:
                say(f"{exc}; waiting for it to come back", True)
                lost = True
        await trio.sleep(delay)
        delay = min(delay * 2, RETRY_MAX_S)


COMMANDS: dict[str, Command] = {
    "status": status,
    "agents": agents,
    "sessions": sessions,
    "events": events,
    "attention": attention,
}


def failed(exc: ClientError, args: argparse.Namespace) -> int:
    """Say on stderr why the daemon could not help; the exit status for it."""
    if isinstance(exc, DaemonNotRunning):
        notice(f"the daemon is not running: {exc}. Start it with: {command_name()} serve")
        return EXIT_NOT_RUNNING
    if isinstance(exc, DaemonGone):
        following = (args.command == "tail" or getattr(args, "watch", False)) and not args.reconnect
        notice(f"{exc}" + (". Add --reconnect to wait for it to come back" if following else ""))
        return EXIT_NOT_RUNNING
    notice(str(exc))
    return EXIT_FAILED


def run(config: Config, args: argparse.Namespace) -> int:
    """Run one of the commands against the daemon ``config`` describes; the exit status."""
    try:
        formats = {name: fmt for name, (fmt, _) in Plugins(config["plugins"]["disable"]).formats().items()}
    except PluginError:
        formats = {}  # summaries fall back to the raw record; the daemon reports the plugin itself
    if args.command == "attention" and args.reconnect and not args.watch:
        notice("--reconnect goes with --watch (a single attention list does not wait for the daemon)")
        return EXIT_USAGE
    out = Output(sys.stdout, args.json, formats)
    try:
        trio.run(_run, args, out, lambda: find_daemon(config))
    except ClientError as exc:
        return failed(exc, args)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # piped into head, which has had enough: no complaint at exit either
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


async def _run(args: argparse.Namespace, out: Output, find: Callable[[], Endpoint]) -> None:
    if args.command == "tail":
        await _tail(args, out, find)
    elif args.command == "attention" and args.watch:
        await _follow_attention(args, out, find)
    else:
        async with open_watch(find()) as watch:
            await COMMANDS[args.command](watch, args, out)
