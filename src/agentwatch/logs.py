"""Structured logging: JSON lines off a terminal, readable console output on one.

stdlib ``logging`` records (trio-websocket, apsw) go through the same processor chain, and
per-connection context bound with :func:`structlog.contextvars.bind_contextvars` lands on
every line.
"""

from __future__ import annotations

import io
import logging
import os
import sys
from collections.abc import Mapping
from typing import Any, TextIO

import structlog

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


#: syslog priorities (sd-daemon(3)), by structlog level name, for journald.
PRIORITIES = {"debug": 7, "info": 6, "warning": 4, "error": 3, "critical": 2}


def configure_logging(
    level: str = "info", fmt: str = "auto", stream: TextIO | None = None, environ: Mapping[str, str] | None = None
) -> None:
    """Route structlog and stdlib logging to ``stream`` (stdout) as JSON or console lines. When the
    stream is journald's (``JOURNAL_STREAM``), each line starts with its ``<priority>``, which
    journald takes as the entry's priority and removes."""
    stream = stream or sys.stdout
    use_json = fmt == "json" or (fmt == "auto" and not stream.isatty())
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: structlog.types.Processor
    if use_json:
        renderer = structlog.processors.JSONRenderer()
        # Locals stay out of tracebacks: they could hold the token or a record's content.
        transformer = structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
        shared.append(structlog.processors.ExceptionRenderer(transformer))
    else:
        renderer = structlog.dev.ConsoleRenderer(exception_formatter=structlog.dev.plain_traceback)
    if to_journal(stream, os.environ if environ is None else environ):
        renderer = _with_priority(renderer)
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[structlog.stdlib.ExtraAdder(), *shared],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(_LEVELS[level])
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.processors.StackInfoRenderer(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )


def to_journal(stream: TextIO, environ: Mapping[str, str]) -> bool:
    """Whether ``stream`` is connected to journald: ``JOURNAL_STREAM`` names its device and inode
    (a redirected stream of a process started by systemd is not)."""
    device, _, inode = environ.get("JOURNAL_STREAM", "").partition(":")
    try:
        stat = os.fstat(stream.fileno())
    except (OSError, ValueError, io.UnsupportedOperation):
        return False
    return f"{stat.st_dev}:{stat.st_ino}" == f"{device}:{inode}"


def _with_priority(renderer: structlog.types.Processor) -> structlog.types.Processor:
    def render(logger: Any, name: str, event_dict: structlog.types.EventDict) -> str:
        priority = PRIORITIES.get(event_dict.get("level", "info"), 6)
        return f"<{priority}>{renderer(logger, name, event_dict)}"

    return render


def set_level(level: str) -> None:
    """Change the level of every logger (a reload)."""
    logging.getLogger().setLevel(_LEVELS[level])


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    """A logger named after its module (the ``logger`` field of every line)."""
    return structlog.stdlib.get_logger(name)
