"""The commands that bring agents in: ``run``, ``hooks install|uninstall``, ``import`` and ``flush``."""

from __future__ import annotations

import argparse
import json
import os
import sys
from functools import partial
from pathlib import Path

import trio

from agentwatch import claude_settings
from agentwatch.client import ClientError, find_daemon
from agentwatch.config import Config
from agentwatch.courier import flush_outboxes
from agentwatch.format_choice import FormatChooser
from agentwatch.identity import check_agent_id
from agentwatch.invocation import command_name
from agentwatch.importer import Progress, run_import
from agentwatch.locate import announced
from agentwatch.model import Format
from agentwatch.plugin_manager import PluginError, Plugins
from agentwatch.relay import run as relay
from agentwatch.watch_commands import EXIT_FAILED, EXIT_NOT_RUNNING, failed

EXIT_USAGE = 2


def run(config: Config, args: argparse.Namespace) -> int:
    """Run ``args.command`` with ``config``; the exit status."""
    if args.command == "hooks":
        return hooks(args)
    if args.command == "flush":
        return flush(config)
    try:
        formats = {name: fmt for name, (fmt, _) in Plugins(config["plugins"]["disable"]).formats().items()}
    except PluginError as exc:
        print(f"agentwatch: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.command == "run":
        return run_agent(config, args, formats)
    return import_files(config, args, formats)


def run_agent(config: Config, args: argparse.Namespace, formats: dict[str, Format]) -> int:
    """``agentwatch run``: the agent's exit status; 2, before it starts, if its command, format or id will not do."""
    command = args.agent_command[1:] if args.agent_command[:1] == ["--"] else args.agent_command
    if not command:
        print("agentwatch run: name the agent's command after --, e.g. agentwatch run -- codex exec --json 'fix it'", file=sys.stderr)
        return EXIT_USAGE
    try:  # checked before anything starts: the id names the outbox's files
        chooser = FormatChooser(args.format, formats)
        agent_id = None if args.agent_id is None else check_agent_id(args.agent_id)
    except ValueError as exc:
        print(f"agentwatch run: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return relay(command, agent_id=agent_id, chooser=chooser, quiet=args.quiet, state_dir=config.state_dir, environ=os.environ)


def hooks(args: argparse.Namespace) -> int:
    path = claude_settings.settings_path(args.scope, Path.home(), Path.cwd())
    try:
        if args.scope != "user":  # the user's own links (dotfiles) are followed anywhere
            claude_settings.check_inside(path, Path.cwd())
        before = claude_settings.read(path)
        if args.action == "install":
            try:
                after = claude_settings.installed(before, claude_settings.hook_command())
            except claude_settings.SettingsError as exc:  # its message says "its ...": name the file
                raise claude_settings.SettingsError(f"{path}: {exc}") from None
        else:
            after = claude_settings.uninstalled(before)
        if after == before:
            print(f"{path}: nothing to change (agentwatch hooks are {'already' if args.action == 'install' else 'not'} there)")
            return 0
        if args.dry_run:
            print(f"would write {path}:")
            print(json.dumps(after, indent=2, ensure_ascii=False))
            return 0
        backup = claude_settings.write(path, after)
    except claude_settings.SettingsError as exc:
        print(f"agentwatch hooks: {exc}", file=sys.stderr)
        return EXIT_FAILED
    done = "added agentwatch's hooks to" if args.action == "install" else "removed agentwatch's hooks from"
    print(f"{done} {path}" + (f" (the previous file is {backup})" if backup else ""))
    if args.action == "install":
        print(f"Claude Code sessions started from now on report to agentwatch; see them with: {command_name()} attention")
    return 0


def import_files(config: Config, args: argparse.Namespace, formats: dict[str, Format]) -> int:
    """``agentwatch import``: 0, or EXIT_FAILED if a file had errors (each said on stderr); 2 for a wrong path or format."""
    paths = args.paths or [Path.home() / ".claude" / "projects"]
    missing = [str(path) for path in paths if not path.exists()]
    if missing:
        print(f"agentwatch import: no such file or directory: {', '.join(missing)}", file=sys.stderr)
        return EXIT_USAGE
    try:
        FormatChooser(args.format, formats)
    except ValueError as exc:
        print(f"agentwatch import: {exc}", file=sys.stderr)
        return EXIT_USAGE
    show = _progress_bar if sys.stderr.isatty() else (lambda progress: None)
    try:
        endpoint = find_daemon(config)
        progress = trio.run(partial(run_import, paths, follow=args.follow, format=args.format, formats=formats,
                                    state_dir=config.state_dir, endpoint=endpoint, show=show))
    except ClientError as exc:
        return failed(exc, args)
    except KeyboardInterrupt:
        return 130
    if sys.stderr.isatty():
        print(file=sys.stderr)
    print(progress.summary())
    return EXIT_FAILED if progress.failed else 0


def _progress_bar(progress: Progress) -> None:
    """Draw the bar on stderr, leaving the cursor at its start (so that a message about a file overwrites it)."""
    width = 30
    filled = width * progress.done // max(progress.files, 1)
    bar = "#" * filled + "." * (width - filled)
    print(f"[{bar}] {progress.done}/{progress.files} files, {progress.stored} events stored", end="\r", file=sys.stderr, flush=True)


def flush(config: Config) -> int:
    try:
        endpoint = announced(config.state_dir, os.environ) or find_daemon(config)
    except ClientError as exc:
        print(f"agentwatch: {exc}", file=sys.stderr)
        return EXIT_NOT_RUNNING
    delivered, left = flush_outboxes(config.state_dir, endpoint, timeout=5.0, budget=float("inf"))
    print(f"delivered {delivered} events" + (f"; {left} still wait (is the daemon up?)" if left else ""))
    return EXIT_FAILED if left else 0
