"""The ``claude-stream-json`` format: lines of ``claude -p --output-format stream-json --verbose``.

Each record is stored once with one primary kind:

- ``system``: ``init`` is ``session_started``, ``compact_boundary`` is ``compacted``, any other
  subtype is a ``notification``.
- ``assistant``: a ``tool_use`` block wins (the first one), then ``text`` blocks (``output``),
  then ``thinking`` blocks (``thinking``).
- ``user``: a ``tool_result`` block (the first one) is ``tool_result``, plain text is ``prompt``.
- ``result``: ``success`` without ``is_error`` is ``turn_completed``, anything else is ``error``;
  the cost is ``total_cost_usd``, or the older ``cost_usd`` / ``total_cost``.
- ``{"type": "keep_alive"}`` is a heartbeat; every other record is ``raw``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from agentwatch.hookspecs import hookimpl
from agentwatch.model import RAW, Format, Normalized
from agentwatch.plugins.formats.fields import mapping, number, string


def _blocks(content: Any, block_type: str) -> list[dict[str, Any]]:
    """The content blocks of ``block_type`` in a message's ``content`` list."""
    if not isinstance(content, list):
        return []
    return [block for block in content if isinstance(block, dict) and block.get("type") == block_type]


def _joined(blocks: list[dict[str, Any]], key: str) -> str:
    return "\n".join(text for block in blocks if (text := string(block.get(key))) is not None)


def _content_text(content: Any) -> str | None:
    """A ``content`` that is a string, or the joined text of its ``text`` blocks."""
    if isinstance(content, str):
        return content
    texts = _blocks(content, "text")
    return _joined(texts, "text") if texts else None


def _system(data: dict[str, Any]) -> Normalized:
    session_id = string(data.get("session_id"))
    subtype = data.get("subtype")
    if subtype == "init":
        return Normalized("session_started", session_id=session_id, cwd=string(data.get("cwd")))
    if subtype == "compact_boundary":
        return Normalized("compacted", session_id=session_id)
    text = string(data.get("message")) or string(data.get("content"))
    return Normalized("notification", text=text, session_id=session_id)


def _assistant(data: dict[str, Any]) -> Normalized:
    message = mapping(data.get("message")) or {}
    content = message.get("content")
    fields: dict[str, Any] = {
        "session_id": string(data.get("session_id")),
        "usage": mapping(message.get("usage")),
    }
    if tool_uses := _blocks(content, "tool_use"):
        first = tool_uses[0]
        return Normalized("tool_use", tool=string(first.get("name")), input=first.get("input"), **fields)
    if texts := _blocks(content, "text"):
        return Normalized("output", text=_joined(texts, "text"), **fields)
    if thoughts := _blocks(content, "thinking"):
        return Normalized("thinking", text=_joined(thoughts, "thinking"), **fields)
    return RAW


def _user(data: dict[str, Any]) -> Normalized:
    content = (mapping(data.get("message")) or {}).get("content")
    session_id = string(data.get("session_id"))
    if results := _blocks(content, "tool_result"):
        first = results[0]
        return Normalized(
            "tool_result",
            text=_content_text(first.get("content")),
            is_error=first.get("is_error") is True,
            session_id=session_id,
        )
    text = _content_text(content)
    return RAW if text is None else Normalized("prompt", text=text, session_id=session_id)


def _result(data: dict[str, Any]) -> Normalized:
    cost = next(
        (c for key in ("total_cost_usd", "cost_usd", "total_cost") if (c := number(data.get(key))) is not None),
        None,
    )
    fields: dict[str, Any] = {
        "usage": mapping(data.get("usage")),
        "cost_usd": cost,
        "session_id": string(data.get("session_id")),
    }
    text = string(data.get("result"))
    if data.get("subtype") == "success" and data.get("is_error") is not True:
        return Normalized("turn_completed", text=text, is_error=False, **fields)
    errors = data.get("errors")
    if text is None and isinstance(errors, list):
        text = "\n".join(error for error in errors if isinstance(error, str)) or None
    return Normalized("error", text=text or string(data.get("subtype")), is_error=True, **fields)


_BY_TYPE: dict[str, Callable[[dict[str, Any]], Normalized]] = {
    "system": _system,
    "assistant": _assistant,
    "user": _user,
    "result": _result,
}


class ClaudeStreamJsonFormat:
    """Reads the NDJSON stream of Claude Code's print mode."""

    name = "claude-stream-json"

    def normalize(self, data: Any) -> Normalized:
        if not isinstance(data, dict):
            return RAW
        record_type = data.get("type")
        if record_type == "keep_alive":
            return Normalized("raw", heartbeat=True)
        handler = _BY_TYPE.get(record_type) if isinstance(record_type, str) else None
        return handler(data) if handler else RAW


@hookimpl
def agentwatch_register_formats(register: Callable[[Format], None]) -> None:
    register(ClaudeStreamJsonFormat())
