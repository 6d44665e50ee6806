"""The ``claude-stream-json`` format: lines of ``claude -p --output-format stream-json --verbose``.

Each record is stored once with one primary kind:

- ``system``: ``init`` is ``session_started``, ``compact_boundary`` is ``compacted``, any other
  subtype is a ``notification`` whose text says what happened: an API retry (error, HTTP status,
  attempt, delay), a hook that started or finished (its outcome and output), a background task's
  state and summary, the ``status`` (e.g. ``compacting``) or new permission mode; else the
  record's ``message`` or ``content``, else the subtype.
- ``assistant``: a ``tool_use`` block wins (the first one), then ``text`` blocks (``output``),
  then ``thinking`` blocks (``thinking``).
- ``user``: a ``tool_result`` block (the first one) is ``tool_result``, plain text is ``prompt``.
- ``result``: ``success`` without ``is_error`` is ``turn_completed``, anything else is ``error``
  (``error_max_turns`` and the other error subtypes even when ``is_error`` is false, as older
  CLIs sent them); the cost is ``total_cost_usd``, or the older ``cost_usd`` / ``total_cost``.
- ``stream_event`` (``--include-partial-messages``): the six events of a streamed model reply
  (``message_start``, ``content_block_start|delta|stop``, ``message_delta``, ``message_stop``)
  are ``thinking`` without text: the agent is at work on a reply. The whole reply follows as
  ``assistant`` records, which alone say the words and open tool calls, so the partials neither
  repeat what is said nor open a tool call no result would close. Other events are ``raw``.
- ``control_request`` with ``request.subtype`` ``can_use_tool`` is ``permission_request``
  (``request.tool_name`` and ``request.input``); a ``control_response`` carrying a permission
  decision (``response.response.behavior``: ``allow`` / ``deny``) and a
  ``control_cancel_request`` (the CLI withdrew its request) are ``permission_resolved``. Other
  control traffic (initialize, hook callbacks, MCP messages and their answers) is ``raw``.
- ``rate_limit_event`` is a ``notification`` naming the limit, how much of it is used and when
  it resets.
- ``conversation_reset`` (``/clear`` in a long-lived session) is ``context_cleared``.
- ``{"type": "keep_alive"}`` is a heartbeat; every other record is ``raw``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from agentwatch.hookspecs import hookimpl
from agentwatch.model import RAW, Format, Normalized
from agentwatch.plugins.formats.fields import by_type, mapping, number, string


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


def _count(value: Any) -> str | None:
    """A JSON number as text without a needless ``.0``."""
    n = number(value)
    return None if n is None else f"{n:g}"


def _retry_text(data: dict[str, Any]) -> str:
    """``api_retry`` (``error``, ``error_status``, ``attempt``, ``max_retries``,
    ``retry_delay_ms``), or the transcript's ``api_error`` spelling of the same."""
    error = data.get("error")
    error_object = mapping(error) or {}
    details = [string(error) or string(error_object.get("message"))]
    if status := _count(data.get("error_status")) or _count(error_object.get("status")):
        details.append(f"HTTP {status}")
    retry = "retry"
    if attempt := _count(data.get("attempt")) or _count(data.get("retryAttempt")):
        maximum = _count(data.get("max_retries")) or _count(data.get("maxRetries"))
        retry += f" {attempt}/{maximum}" if maximum else f" {attempt}"
    delay = number(data.get("retry_delay_ms"))
    if delay is None:
        delay = number(data.get("retryInMs"))
    if delay is not None:
        retry += f" in {delay / 1000:.1f} s"
    details.append(retry if retry != "retry" else None)
    return ", ".join(["API error"] + [detail for detail in details if detail])


def _hook_text(data: dict[str, Any]) -> str:
    """``hook_started`` / ``hook_response`` (``hook_event``, ``outcome``, ``output``)."""
    name = string(data.get("hook_event")) or string(data.get("hook_name")) or string(data.get("hook_event_name"))
    hook = f"{name} hook" if name else "hook"
    if data.get("subtype") == "hook_started":
        return f"{hook} started"
    said = f"{hook}: {string(data.get('outcome')) or 'finished'}"
    output = (string(data.get("output")) or "").strip()
    return f"{said}: {output}" if output else said


_TASK_STATES = {"task_started": "started", "task_progress": "in progress"}


def _task_text(data: dict[str, Any]) -> str:
    """``task_started`` / ``task_progress`` / ``task_notification`` / ``task_updated``."""
    state = (
        _TASK_STATES.get(string(data.get("subtype")) or "")
        or string(data.get("status"))
        or string((mapping(data.get("patch")) or {}).get("status"))
        or "updated"
    )
    about = string(data.get("summary")) or string(data.get("description"))
    return f"task {state}: {about}" if about else f"task {state}"


def _status_text(data: dict[str, Any]) -> str | None:
    """``status`` (``status`` such as ``compacting`` / ``requesting``, or ``permissionMode``)."""
    if status := string(data.get("status")):
        return f"status: {status}"
    mode = string(data.get("permissionMode"))
    return f"permission mode: {mode}" if mode else None


_SYSTEM_TEXT: dict[str, Callable[[dict[str, Any]], str | None]] = {
    "api_retry": _retry_text,
    "api_error": _retry_text,
    "hook_started": _hook_text,
    "hook_response": _hook_text,
    "task_started": _task_text,
    "task_progress": _task_text,
    "task_notification": _task_text,
    "task_updated": _task_text,
    "status": _status_text,
}


def _system(data: dict[str, Any]) -> Normalized:
    session_id = string(data.get("session_id"))
    subtype = string(data.get("subtype"))
    if subtype == "init":
        return Normalized("session_started", session_id=session_id, cwd=string(data.get("cwd")))
    if subtype == "compact_boundary":
        return Normalized("compacted", session_id=session_id)
    text_of = _SYSTEM_TEXT.get(subtype) if subtype else None
    text = (text_of(data) if text_of else None) or string(data.get("message")) or string(data.get("content")) or subtype
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


#: The events of one streamed model reply (the Messages API's stream, relayed as ``stream_event``).
_PARTIAL_EVENTS = frozenset(
    {"message_start", "content_block_start", "content_block_delta", "content_block_stop", "message_delta", "message_stop"}
)


def _stream_event(data: dict[str, Any]) -> Normalized:
    event_type = string((mapping(data.get("event")) or {}).get("type"))
    if event_type not in _PARTIAL_EVENTS:
        return RAW
    return Normalized("thinking", session_id=string(data.get("session_id")))


def _control_request(data: dict[str, Any]) -> Normalized:
    request = mapping(data.get("request")) or {}
    if request.get("subtype") != "can_use_tool":
        return RAW
    text = string(request.get("title")) or string(request.get("description")) or string(request.get("decision_reason"))
    return Normalized("permission_request", text=text, tool=string(request.get("tool_name")), input=request.get("input"))


def _control_response(data: dict[str, Any]) -> Normalized:
    """The answer to ``can_use_tool`` is ``{"behavior": "allow"|"deny", ...}``; other answers are not decisions."""
    decision = mapping((mapping(data.get("response")) or {}).get("response")) or {}
    behavior = string(decision.get("behavior"))
    if behavior is None:
        return RAW
    message = string(decision.get("message"))
    return Normalized("permission_resolved", text=f"{behavior}: {message}" if message else behavior)


def _when(seconds: Any) -> str | None:
    """Unix seconds as ``YYYY-MM-DD HH:MM UTC``."""
    value = number(seconds)
    if value is None:
        return None
    try:
        return datetime.fromtimestamp(value, UTC).strftime("%Y-%m-%d %H:%M UTC")
    except (ValueError, OverflowError, OSError):
        return None


def _rate_limit_event(data: dict[str, Any]) -> Normalized:
    info = mapping(data.get("rate_limit_info")) or {}
    utilization = number(info.get("utilization"))
    resets = _when(info.get("resetsAt"))
    details = [
        string(info.get("rateLimitType")),
        None if utilization is None else f"{utilization * 100:.0f}% used",
        None if resets is None else f"resets {resets}",
    ]
    said = ", ".join(detail for detail in details if detail)
    text = f"rate limit {string(info.get('status')) or 'changed'}" + (f" ({said})" if said else "")
    return Normalized("notification", text=text, session_id=string(data.get("session_id")))


_BY_TYPE: dict[str, Callable[[dict[str, Any]], Normalized]] = {
    "system": _system,
    "assistant": _assistant,
    "user": _user,
    "result": _result,
    "stream_event": _stream_event,
    "control_request": _control_request,
    "control_response": _control_response,
    "control_cancel_request": lambda data: Normalized("permission_resolved"),
    "rate_limit_event": _rate_limit_event,
    "conversation_reset": lambda data: Normalized("context_cleared"),
}


class ClaudeStreamJsonFormat:
    """Reads the NDJSON stream of Claude Code's print mode."""

    name = "claude-stream-json"

    def normalize(self, data: Any) -> Normalized:
        if not isinstance(data, dict):
            return RAW
        if data.get("type") == "keep_alive":
            return Normalized("raw", heartbeat=True)
        return by_type(data, _BY_TYPE)

    def sniff(self, data: Any) -> bool:
        """An ``init`` with ``session_id``, a message with ``session_id`` (a transcript's is
        ``sessionId``), a ``result`` with a subtype, a ``control_request`` or a ``stream_event``."""
        if not isinstance(data, dict):
            return False
        match data.get("type"):
            case "system":
                return data.get("subtype") == "init" and isinstance(data.get("session_id"), str)
            case "assistant" | "user":
                return isinstance(data.get("message"), dict) and isinstance(data.get("session_id"), str) and "sessionId" not in data
            case "result":
                return isinstance(data.get("subtype"), str)
            case "control_request" | "stream_event":
                return True
        return False


@hookimpl
def agentwatch_register_formats(register: Callable[[Format], None]) -> None:
    register(ClaudeStreamJsonFormat())
