"""The ``agentwatch`` command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from agentwatch import __version__

EXIT_CONFIG = 2  # the configuration or the environment stops start-up


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="agentwatch", description="Watch every coding agent on this machine.")
    parser.add_argument("--version", action="version", version=f"agentwatch {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve = commands.add_parser(
        "serve",
        help="run the daemon",
        description="Run the daemon. Settings: defaults, then --config FILE, then AGENTWATCH_<SECTION>_<KEY> "
        "variables, then these flags.",
    )
    serve.add_argument("--listen", action="append", metavar="ADDR", help="HOST:PORT or unix:/path (repeatable; default 127.0.0.1:7717)")
    serve.add_argument("--state-dir", type=Path, metavar="DIR", help="where the database and token live")
    serve.add_argument("--config", type=Path, metavar="FILE", help="TOML configuration file")
    serve.add_argument("--no-auth", action="store_true", help="accept connections without a token (tests only)")
    serve.add_argument("--log-level", metavar="LEVEL", help="debug, info, warning or error")
    serve.add_argument("--log-format", metavar="FORMAT", help="auto, json or console")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "serve":
        return _serve(args)
    raise AssertionError(args.command)


def _serve(args: argparse.Namespace) -> int:
    import trio

    from agentwatch.auth import TokenFileError
    from agentwatch.config import ConfigError, Overrides, load_config
    from agentwatch.daemon import StartupError, serve
    from agentwatch.logs import configure_logging, get_logger
    from agentwatch.store import StoreRefused

    overrides = Overrides(args.config, args.state_dir, args.listen, args.no_auth, args.log_level, args.log_format)
    try:
        config = load_config(overrides)
    except ConfigError as exc:
        print(f"agentwatch: configuration error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    configure_logging(config["log"]["level"], config["log"]["format"])
    log = get_logger("agentwatch.cli")
    failures: list[BaseException] = []
    try:
        trio.run(serve, config)
    except* (StartupError, StoreRefused, TokenFileError) as group:
        failures = _leaves(group)
    for exc in failures:
        log.error("startup_failed", error=str(exc))
        print(f"agentwatch: cannot start: {exc}", file=sys.stderr)
    return EXIT_CONFIG if failures else 0


def _leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    leaves: list[BaseException] = []
    for exc in group.exceptions:
        leaves.extend(_leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc])
    return leaves
