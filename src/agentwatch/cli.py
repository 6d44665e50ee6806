"""The ``agentwatch`` command line."""

from __future__ import annotations

import argparse
import difflib
import sys
from collections.abc import Sequence
from pathlib import Path

from agentwatch import __version__
from agentwatch.config import Config, ConfigError, Overrides, load_config
from agentwatch.exceptions import leaves

EXIT_CONFIG = 2  # the configuration or the environment stops start-up


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="agentwatch", description="Watch every coding agent on this machine.")
    parser.add_argument("--version", action="version", version=f"agentwatch {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--state-dir", type=Path, metavar="DIR", help="where the database and token live")
    common.add_argument("--config", type=Path, metavar="FILE", help="TOML configuration file")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve = commands.add_parser(
        "serve",
        parents=[common],
        help="run the daemon",
        description="Run the daemon. Settings: defaults, then --config FILE, then AGENTWATCH_<SECTION>_<KEY> "
        "variables, then these flags.",
    )
    serve.add_argument("--listen", action="append", metavar="ADDR", help="HOST:PORT or unix:/path (repeatable; default 127.0.0.1:7717)")
    serve.add_argument("--no-auth", action="store_true", help="accept connections without a token (tests only)")
    serve.add_argument("--log-level", metavar="LEVEL", help="debug, info, warning or error")
    serve.add_argument("--log-format", metavar="FORMAT", help="auto, json or console")
    prune = commands.add_parser(
        "prune",
        parents=[common],
        help="run one retention sweep now",
        description="Remove what the [retention] limits select, now, and print what went. If a daemon has the "
        "store open, it runs the sweep with its own limits (found through daemon.json in the state directory, "
        "AGENTWATCH_URL or server.listen); else the sweep runs here, on the file.",
    )
    prune.add_argument("--dry-run", action="store_true", help="only say what would be removed")
    prune.add_argument("--json", action="store_true", help="print the report as JSON")
    _watch_commands(commands, common)
    _agent_commands(commands, common)
    _systemd_commands(commands)
    _remember_parsers(parser)
    return parser


def _remember_parsers(parser: argparse.ArgumentParser) -> None:
    """Give each command's parser a default ``parser``: itself (the innermost one chosen wins); and
    take no abbreviated flags (``serve --no`` was ``--no-auth``, ``systemd install --f`` ``--force``,
    and a flag added later would change what an abbreviation in a script means)."""
    parser.set_defaults(parser=parser)
    parser.allow_abbrev = False
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for command in dict.fromkeys(action.choices.values()):
                _remember_parsers(command)


def _watch_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser) -> None:
    """The commands that ask a running daemon (found through daemon.json, AGENTWATCH_URL or server.listen)."""
    reading = argparse.ArgumentParser(add_help=False, parents=[common])
    reading.add_argument("--json", action="store_true", help="JSON for scripts (JSON lines for streams)")
    commands.add_parser("status", parents=[reading], help="the daemon's version, uptime, agents and events")
    commands.add_parser("agents", parents=[reading], help="every known agent, connected or not")
    sessions = commands.add_parser("sessions", parents=[reading], help="sessions, most recently active first")
    sessions.add_argument("--agent", metavar="ID", help="only this agent's")
    sessions.add_argument("--limit", type=int, default=100, metavar="N", help="at most N (default 100, max 1000)")
    events = commands.add_parser("events", parents=[reading], help="an agent's stored events, oldest first")
    events.add_argument("--agent", required=True, metavar="ID", help="the agent (see: agentwatch agents)")
    events.add_argument("--session", type=int, metavar="N", help="only this session")
    events.add_argument("--kind", action="append", metavar="KIND", help="only this kind (repeatable)")
    events.add_argument("--after-seq", type=int, metavar="SEQ", help="only events after this seq")
    events.add_argument("--limit", type=int, default=100, metavar="N", help="at most N (default 100, max 1000)")
    attention = commands.add_parser("attention", parents=[reading], help="which agents need you now, and why")
    attention.add_argument("--watch", action="store_true", help="keep the feed on screen, redrawn as it changes")
    tail = commands.add_parser("tail", parents=[reading], help="follow events live, one line each, until Ctrl-C")
    tail.add_argument("--agent", metavar="ID", help="only this agent's")
    tail.add_argument("--kind", action="append", metavar="KIND", help="only this kind (repeatable)")
    for following in (attention, tail):
        following.add_argument("--reconnect", action="store_true",
                               help="when the daemon stops (or is not up yet), wait for it and go on where it was")


def _agent_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser) -> None:
    """The commands that bring agents' records in."""
    run = commands.add_parser(
        "run",
        parents=[common],
        help="run an agent and record every line it prints",
        description="Run COMMAND, pass its output through, and record each line of it as an event. Events wait in the "
        "outbox in the state directory while the daemon is unreachable. The exit status is COMMAND's.",
    )
    run.add_argument("--agent-id", metavar="ID", help="the agent's id (default: PROGRAM-HOST-PID)")
    run.add_argument("--format", default="auto", metavar="F", help="how its lines read (default auto: recognised from the first lines)")
    run.add_argument("--quiet", action="store_true", help="do not pass its output through")
    run.add_argument("agent_command", nargs=argparse.REMAINDER, metavar="-- COMMAND...", help="the agent to run")
    commands.add_parser(
        "hook",
        help="forward one Claude Code hook payload (stdin); for Claude Code's settings",
        description="Read one Claude Code hook payload on stdin and forward it. Always exits 0. Installed by: agentwatch hooks install",
    )
    hooks = commands.add_parser("hooks", help="install or remove agentwatch's hooks in Claude Code's settings")
    actions = hooks.add_subparsers(dest="action", required=True, metavar="ACTION")
    for action, text in (("install", "add agentwatch hook to Claude Code's settings (a backup is kept)"),
                         ("uninstall", "remove exactly the entries install added")):
        parser = actions.add_parser(action, parents=[common], help=text, description=text)
        parser.add_argument("--scope", choices=("user", "project", "local"), default="user",
                            help="~/.claude/settings.json (user, default), .claude/settings.json (project) or .claude/settings.local.json (local)")
        parser.add_argument("--dry-run", action="store_true", help="print the settings that would be written")
    imports = commands.add_parser(
        "import",
        parents=[common],
        help="import agents' session files (default: ~/.claude/projects)",
        description="Import Claude Code transcripts, Codex rollouts or other JSON-lines session files. Importing again "
        "stores nothing twice.",
    )
    imports.add_argument("paths", nargs="*", type=Path, metavar="PATH", help="files or directories (their *.jsonl)")
    imports.add_argument("--follow", action="store_true", help="keep importing as files grow and appear, until Ctrl-C")
    imports.add_argument("--format", default="auto", metavar="F", help="how the files read (default auto)")
    commands.add_parser("flush", parents=[common], help="deliver events waiting in the outbox now")


def _systemd_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``agentwatch systemd install``: the units in systemd/ (see systemd/README.md)."""
    systemd = commands.add_parser("systemd", help="install agentwatch's systemd units")
    actions = systemd.add_subparsers(dest="action", required=True, metavar="ACTION")
    install = actions.add_parser(
        "install",
        help="write agentwatch.service and agentwatch.socket where systemd reads them",
        description="Write agentwatch.service and agentwatch.socket, with ExecStart= naming this agentwatch, into "
        "/etc/systemd/system (or ~/.config/systemd/user with --user). Units already there and the same are left "
        "alone; one that differs is replaced only with --force.",
    )
    install.add_argument("--user", action="store_true", help="your own units, for systemctl --user")
    install.add_argument("--unit-dir", type=Path, metavar="DIR", help="write them into DIR instead")
    install.add_argument("--dry-run", action="store_true", help="print the units; write nothing")
    install.add_argument("--force", action="store_true", help="replace units that differ (edited by hand, another version)")


AGENT_COMMANDS = frozenset({"run", "hooks", "import", "flush"})


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    """The arguments; a mistake is shown with the usage of the command it was made in (argparse
    leaves an unknown flag to the top-level parser, which showed its own usage)."""
    parser = _parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        command: argparse.ArgumentParser = getattr(args, "parser", parser)
        flags = [flag for action in command._actions for flag in action.option_strings]
        guess = difflib.get_close_matches(unknown[0], flags, n=1) if unknown[0].startswith("-") else []
        command.error(f"unrecognized arguments: {' '.join(unknown)}" + (f" (did you mean {guess[0]}?)" if guess else ""))
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)
    if args.command == "serve":
        return _serve(args)
    if args.command == "prune":
        return _prune(args)
    if args.command == "hook":
        from agentwatch.hook_command import main as hook

        return hook()
    if args.command == "systemd":
        from agentwatch.systemd_units import run as systemd

        return systemd(args)
    config = _load(Overrides(args.config, args.state_dir))
    if config is None:
        return EXIT_CONFIG
    if args.command in AGENT_COMMANDS:
        from agentwatch import agent_commands

        return agent_commands.run(config, args)
    from agentwatch import watch_commands

    return watch_commands.run(config, args)


def _load(overrides: Overrides) -> Config | None:
    try:
        return load_config(overrides)
    except ConfigError as exc:
        print(f"agentwatch: configuration error: {exc}", file=sys.stderr)
        return None


def _serve(args: argparse.Namespace) -> int:
    import trio

    from agentwatch.auth import TokenFileError
    from agentwatch.daemon import StartupError, serve
    from agentwatch.logs import configure_logging, get_logger
    from agentwatch.store import StorageUnavailable, StoreRefused

    overrides = Overrides(args.config, args.state_dir, args.listen, args.no_auth, args.log_level, args.log_format)
    config = _load(overrides)
    if config is None:
        return EXIT_CONFIG
    configure_logging(config["log"]["level"], config["log"]["format"])
    log = get_logger("agentwatch.cli")
    failures: list[BaseException] = []
    try:
        trio.run(serve, config, lambda: load_config(overrides))
    except* (StartupError, StoreRefused, TokenFileError, StorageUnavailable) as group:
        failures = leaves(group)  # StorageUnavailable: a plugin's start-up read found the store unreadable
    for message in dict.fromkeys(map(str, failures)):  # plugins that read the same damaged store say the same
        log.error("startup_failed", error=message)
        print(f"agentwatch: cannot start: {message}", file=sys.stderr)
    return EXIT_CONFIG if failures else 0


def _prune(args: argparse.Namespace) -> int:
    import json
    import time
    from functools import partial

    import trio

    from agentwatch.auth import TokenFileError
    from agentwatch.client import ClientError
    from agentwatch.logs import configure_logging
    from agentwatch.plugin_manager import PluginError
    from agentwatch.prune import describe, prune
    from agentwatch.store import StorageUnavailable, StoreRefused

    config = _load(Overrides(args.config, args.state_dir))
    if config is None:
        return EXIT_CONFIG
    configure_logging("warning", "auto")  # this command reports on stdout; only problems are logged

    shown = time.monotonic()

    def progress(removed: int, planned: int) -> None:
        nonlocal shown
        if time.monotonic() - shown >= 1.0:
            shown = time.monotonic()
            print(f"removed {removed} of {planned} events...", file=sys.stderr, flush=True)

    failures: list[BaseException] = []
    try:
        report = trio.run(partial(prune, config, dry_run=args.dry_run, progress=progress))
    except* (StoreRefused, PluginError, TokenFileError, ClientError, StorageUnavailable) as group:
        failures = leaves(group)
    for exc in failures:
        print(f"agentwatch: cannot prune: {exc}", file=sys.stderr)
    if failures:
        return EXIT_CONFIG if all(isinstance(exc, StoreRefused | PluginError) for exc in failures) else 1
    print(json.dumps(report) if args.json else describe(report))
    return 0

