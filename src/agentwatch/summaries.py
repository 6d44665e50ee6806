"""One line saying what an event is about: ``Bash: npm test``, ``$0.0123, all tests pass``.

Used by the command line for ``tail`` and ``events``, and by the daemon for what an attention
item says waits (the tool and its command for a permission, the tool a stalled agent runs).
Text that comes from agents is flattened to one line with its control characters removed.
"""

from __future__ import annotations

import json
import re
from typing import Any

from agentwatch.model import Normalized

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
#: The argument that says what a tool call does, by the names tools give it.
_MAIN_ARGUMENTS = ("command", "file_path", "path", "pattern", "url", "query", "prompt", "description")
_FOLD_PREFIX = 4096  # characters of a long text folded when only its start is wanted


def one_line(text: str) -> str:
    """``text`` without control characters, its runs of whitespace (line breaks too) one space."""
    return " ".join(_CONTROL.sub(" ", text).split())


def summary(kind: str, normalized: Normalized, data: Any = None) -> str:
    """What an event of canonical ``kind`` is about, in one line (not cut: callers cut it to fit)."""
    match kind:
        case "tool_use":
            text = tool_call(normalized)
        case "permission_request":  # what waits: the tool and its argument, else what the agent asks
            argument = _main_argument(normalized.input, strings_only=True)
            text = tool_call(normalized) if argument else _first_line(normalized.text) or tool_call(normalized)
        case "turn_completed":
            cost = f"${normalized.cost_usd:.4f}" if normalized.cost_usd is not None else ""
            text = _joined(", ", cost, "error" if normalized.is_error else "", _first_line(normalized.text))
        case "session_started":
            text = normalized.cwd or normalized.session_id or ""
        case "raw":
            record_type = data.get("type") if isinstance(data, dict) else None
            text = record_type if isinstance(record_type, str) else _compact(data)
        case "tool_result" if normalized.is_error:
            text = _joined(": ", "error", _first_line(normalized.text))
        case _:
            text = _first_line(normalized.text)
    return one_line(text)


def tool_call(normalized: Normalized) -> str:
    """``Tool: its main argument`` (``Bash: npm test``, ``Edit: src/app.py``)."""
    return _joined(": ", normalized.tool or "", _main_argument(normalized.input))


def _first_line(text: str | None) -> str:
    return next((line for line in (text or "")[:_FOLD_PREFIX].splitlines() if line.strip()), "")


def _compact(value: Any) -> str:
    """Compact JSON of ``value``; empty for ``null``, ``{}`` and ``[]``."""
    if value is None or value == {} or value == []:
        return ""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _main_argument(tool_input: Any, strings_only: bool = False) -> str:
    """The argument of :data:`_MAIN_ARGUMENTS` a tool call has, else (unless ``strings_only``) its
    input as compact JSON."""
    if isinstance(tool_input, dict):
        for key in _MAIN_ARGUMENTS:
            if isinstance(value := tool_input.get(key), str) and value.strip():
                return value[:_FOLD_PREFIX]
    return "" if strings_only else _compact(tool_input)[:_FOLD_PREFIX]


def _joined(separator: str, *parts: str) -> str:
    return separator.join(part for part in parts if part)
