"""The commands that read a running daemon: ``status``, ``agents``, ``sessions``, ``events``,
``attention`` and ``tail``. Human output by default, ``--json`` for scripts."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any, TextIO

import trio

from agentwatch import render
from agentwatch.client import ClientError, DaemonNotRunning, Endpoint, WatchClient, find_daemon, open_watch
from agentwatch.config import Config
from agentwatch.model import RAW, Format, Normalized
from agentwatch.plugin_manager import PluginError, Plugins

EXIT_FAILED = 1  # the daemon refused or failed the request
EXIT_NOT_RUNNING = 3  # no daemon answers
REDRAW_S = 5.0  # attention --watch redraws this often even when nothing changed (waiting times grow)

Command = Callable[[WatchClient, argparse.Namespace, "Output"], Awaitable[None]]


class Output:
    """Where a command prints, and how: JSON, or text styled for the terminal."""

    def __init__(self, stream: TextIO, as_json: bool, formats: dict[str, Format]) -> None:
        self.stream = stream
        self.json = as_json
        self.style = render.style_for(stream, os.environ)
        self._formats = formats

    def print(self, text: str) -> None:
        """``text`` and a newline; a lone surrogate (a record may hold one) prints as "?"."""
        print(text.encode("utf-8", "replace").decode(), file=self.stream, flush=True)

    def document(self, value: Any) -> None:
        """One JSON document (or one line of a JSON lines stream)."""
        self.print(json.dumps(value))

    def event(self, event: dict[str, Any]) -> None:
        if self.json:
            self.document(event)
        else:
            width = shutil.get_terminal_size().columns if self.style.color else 160
            self.print(render.event_line(event, self._normalized(event), self.style, width))

    def _normalized(self, event: dict[str, Any]) -> Normalized:
        fmt = self._formats.get(event.get("format", ""))
        try:
            return fmt.normalize(event.get("data")) if fmt else RAW
        except Exception:
            return RAW


def now_ms() -> int:
    return time.time_ns() // 1_000_000


async def status(watch: WatchClient, args: argparse.Namespace, out: Output) -> None:
    result = await watch.call("status")
    out.document(result) if out.json else out.print(render.status_text(result, out.style))


async def agents(watch: WatchClient, args: argparse.Namespace, out: Output) -> None:
    result = await watch.call("agents.list")
    out.document(result) if out.json else out.print(render.agents_table(result, now_ms(), out.style))


async def sessions(watch: WatchClient, args: argparse.Namespace, out: Output) -> None:
    params = {"limit": args.limit} | ({"agent_id": args.agent} if args.agent else {})
    result = await watch.call("sessions.list", **params)
    out.document(result) if out.json else out.print(render.sessions_table(result, now_ms(), out.style))


async def events(watch: WatchClient, args: argparse.Namespace, out: Output) -> None:
    params: dict[str, Any] = {"agent_id": args.agent, "limit": args.limit}
    for name, value in (("session", args.session), ("kinds", args.kind), ("after_seq", args.after_seq)):
        if value is not None:
            params[name] = value
    page = await watch.call("events.list", **params)
    if out.json:
        out.document(page)
        return
    for event in page["events"]:
        out.event(event)
    if page["has_more"]:
        last = page["events"][-1]["seq"]
        out.print(out.style.dim(f"... more: agentwatch events --agent {args.agent} --after-seq {last}"))


async def attention(watch: WatchClient, args: argparse.Namespace, out: Output) -> None:
    if not args.watch:
        result = await watch.call("attention.list")
        out.document(result) if out.json else out.print(render.attention_table(result["items"], now_ms(), out.style))
        return
    async with watch.subscribe("attention") as feed:
        items: list[dict[str, Any]] = []
        notes = aiter(feed)
        while True:
            with trio.move_on_after(REDRAW_S if not out.json else float("inf")):
                note = await anext(notes)
                if note.method == "attention":
                    items = note.params["items"]
                    if out.json:
                        out.document(items)
            if not out.json:
                _redraw(out, items)


def _redraw(out: Output, items: list[dict[str, Any]]) -> None:
    clear = "\x1b[H\x1b[2J" if out.style.color else ""
    header = out.style.bold(f"agentwatch attention  {time.strftime('%H:%M:%S')}") + out.style.dim("  (Ctrl-C to stop)")
    out.print(f"{clear}{header}\n{render.attention_table(items, now_ms(), out.style)}\n")


async def tail(watch: WatchClient, args: argparse.Namespace, out: Output) -> None:
    async with watch.subscribe("events", agent_id=args.agent, kinds=args.kind) as feed:
        async for note in feed:
            if note.method == "event":
                out.event(note.params["event"])
            elif note.method == "gap":
                print(f"agentwatch: {note.params['skipped']} events skipped: this terminal fell behind", file=sys.stderr)


COMMANDS: dict[str, Command] = {
    "status": status,
    "agents": agents,
    "sessions": sessions,
    "events": events,
    "attention": attention,
    "tail": tail,
}


def failed(exc: ClientError) -> int:
    """Say on stderr why the daemon could not help; the exit status for it."""
    if isinstance(exc, DaemonNotRunning):
        print(f"agentwatch: the daemon is not running: {exc}. Start it with: agentwatch serve", file=sys.stderr)
        return EXIT_NOT_RUNNING
    print(f"agentwatch: {exc}", file=sys.stderr)
    return EXIT_FAILED


def run(config: Config, args: argparse.Namespace) -> int:
    """Run one of :data:`COMMANDS` against the daemon ``config`` describes; the exit status."""
    try:
        formats = {name: fmt for name, (fmt, _) in Plugins(config["plugins"]["disable"]).formats().items()}
    except PluginError:
        formats = {}  # summaries fall back to the raw record; the daemon reports the plugin itself
    out = Output(sys.stdout, args.json, formats)
    try:
        endpoint = find_daemon(config)
        trio.run(_run, COMMANDS[args.command], endpoint, args, out)
    except ClientError as exc:
        return failed(exc)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # piped into head, which has had enough: no complaint at exit either
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


async def _run(command: Command, endpoint: Endpoint, args: argparse.Namespace, out: Output) -> None:
    async with open_watch(endpoint) as watch:
        await command(watch, args, out)
