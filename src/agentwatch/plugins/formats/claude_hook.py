"""The ``claude-hook`` format: the JSON object Claude Code passes on stdin to a hook command.

Every payload names its ``hook_event_name`` and carries ``session_id`` and ``cwd``, which every
event read from it keeps. Each record is stored once with one kind:

- ``SessionStart``: source ``clear`` is ``context_cleared``, ``compact`` is ``compacted``, any other
  (``startup``, ``resume``) is ``session_started``.
- ``UserPromptSubmit`` is ``prompt``, except text Claude Code submits by itself (a
  ``<task-notification>`` when a background task finishes): that is a ``notification``.
- ``PreToolUse`` is ``tool_use``; ``PostToolUse`` is ``tool_result``, ``PostToolUseFailure`` a
  ``tool_result`` with ``is_error``.
- ``PermissionRequest`` is ``permission_request``.
- ``Notification``: a permission prompt (``notification_type`` ``permission_prompt``, or before that
  field existed a message "Claude needs your permission...") and an MCP elicitation dialog (a
  server asks the person a question and waits for the answer) are ``permission_request``: the
  agent is blocked on the person. Anything else (idle prompt, auth success) is ``notification``.
- ``Stop`` is ``turn_completed``; ``StopFailure`` (the turn ended on an API error) is ``error``.
- ``SubagentStart``, ``SubagentStop``, ``PreCompact`` and ``PostCompact`` are ``notification``: a
  subagent finishing does not end the main turn, and a compaction is reported as ``compacted`` by
  the ``SessionStart`` (source ``compact``) that follows it.
- ``SessionEnd`` is ``session_ended``.
- Any other event, and a record that is not an object, is ``raw``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from agentwatch.hookspecs import hookimpl
from agentwatch.model import RAW, Format, Normalized
from agentwatch.plugins.formats.fields import between, string

#: How prompts that Claude Code submits on its own begin (the person never typed them).
_INJECTED_PROMPTS = ("<task-notification>",)
#: Notification types that leave the agent blocked until the person answers.
_ASKING = frozenset({"permission_prompt", "elicitation_dialog"})
#: The message of a permission prompt in payloads without ``notification_type``.
_PERMISSION_MESSAGE = "Claude needs your permission"
#: Fields of an object ``tool_response`` that hold its output as text, in order of preference.
_RESPONSE_TEXT_KEYS = ("stdout", "stderr", "output", "result", "text")


def _event(kind: str, data: dict[str, Any], **fields: Any) -> Normalized:
    """A ``kind`` event with the session id and cwd every hook payload carries."""
    return Normalized(kind, session_id=string(data.get("session_id")), cwd=string(data.get("cwd")), **fields)


def _text_blocks(value: Any) -> str | None:
    """The joined text of a list of ``{"type": "text", "text": ...}`` content blocks."""
    if not isinstance(value, list):
        return None
    texts = [
        text
        for block in value
        if isinstance(block, dict) and block.get("type") == "text" and (text := string(block.get("text"))) is not None
    ]
    return "\n".join(texts) if texts else None


def _response_text(response: Any) -> str | None:
    """A tool's response as text: a string, text content blocks, or an object's first non-empty
    text field (``stdout`` of Bash, the ``content`` blocks of an MCP result)."""
    if isinstance(response, str):
        return response
    if not isinstance(response, dict):
        return _text_blocks(response)
    for key in _RESPONSE_TEXT_KEYS:
        if text := string(response.get(key)):
            return text
    return _text_blocks(response.get("content"))


def _tool_fields(data: dict[str, Any]) -> dict[str, Any]:
    return {"tool": string(data.get("tool_name")), "input": data.get("tool_input")}


def _session_start(data: dict[str, Any]) -> Normalized:
    source = data.get("source")
    if source == "clear":
        return _event("context_cleared", data)
    if source == "compact":
        return _event("compacted", data)
    return _event("session_started", data)


def _prompt(data: dict[str, Any]) -> Normalized:
    text = string(data.get("prompt"))
    if text is not None and text.lstrip().startswith(_INJECTED_PROMPTS):
        summary = between(text, "<summary>", "</summary>")
        return _event("notification", data, text=summary.strip() if summary is not None else text)
    return _event("prompt", data, text=text)


def _pre_tool_use(data: dict[str, Any]) -> Normalized:
    return _event("tool_use", data, **_tool_fields(data))


def _post_tool_use(data: dict[str, Any]) -> Normalized:
    return _event("tool_result", data, text=_response_text(data.get("tool_response")), is_error=False, **_tool_fields(data))


def _post_tool_use_failure(data: dict[str, Any]) -> Normalized:
    return _event("tool_result", data, text=string(data.get("error")), is_error=True, **_tool_fields(data))


def _permission_request(data: dict[str, Any]) -> Normalized:
    return _event("permission_request", data, **_tool_fields(data))


def _notification(data: dict[str, Any]) -> Normalized:
    message = string(data.get("message"))
    notification_type = string(data.get("notification_type"))
    if notification_type is None:
        asking = message is not None and message.startswith(_PERMISSION_MESSAGE)
    else:
        asking = notification_type in _ASKING
    return _event("permission_request" if asking else "notification", data, text=message)


def _stop(data: dict[str, Any]) -> Normalized:
    return _event("turn_completed", data, text=string(data.get("last_assistant_message")), is_error=False)


def _stop_failure(data: dict[str, Any]) -> Normalized:
    text = next(
        (t for key in ("error_details", "last_assistant_message", "error") if (t := string(data.get(key)))),
        None,
    )
    return _event("error", data, text=text, is_error=True)


def _note(text_key: str | None) -> Callable[[dict[str, Any]], Normalized]:
    """A ``notification`` whose text is the payload's ``text_key`` (none if ``None``)."""
    return lambda data: _event("notification", data, text=string(data.get(text_key)) if text_key else None)


def _session_end(data: dict[str, Any]) -> Normalized:
    return _event("session_ended", data, text=string(data.get("reason")))


_BY_EVENT: dict[str, Callable[[dict[str, Any]], Normalized]] = {
    "SessionStart": _session_start,
    "UserPromptSubmit": _prompt,
    "PreToolUse": _pre_tool_use,
    "PostToolUse": _post_tool_use,
    "PostToolUseFailure": _post_tool_use_failure,
    "PermissionRequest": _permission_request,
    "Notification": _notification,
    "Stop": _stop,
    "StopFailure": _stop_failure,
    "SubagentStart": _note(None),
    "SubagentStop": _note("last_assistant_message"),
    "PreCompact": _note("custom_instructions"),
    "PostCompact": _note("compact_summary"),
    "SessionEnd": _session_end,
}


class ClaudeHookFormat:
    """Reads the stdin payloads of Claude Code hooks, one per record."""

    name = "claude-hook"

    def normalize(self, data: Any) -> Normalized:
        if not isinstance(data, dict):
            return RAW
        event_name = data.get("hook_event_name")
        handler = _BY_EVENT.get(event_name) if isinstance(event_name, str) else None
        return handler(data) if handler else RAW

    def sniff(self, data: Any) -> bool:
        """A hook payload: an object with a string ``hook_event_name`` and a ``session_id``."""
        return isinstance(data, dict) and isinstance(data.get("hook_event_name"), str) and "session_id" in data


@hookimpl
def agentwatch_register_formats(register: Callable[[Format], None]) -> None:
    register(ClaudeHookFormat())
