"""The ``codex-rollout`` format: lines of a Codex session file,
``~/.codex/sessions/YYYY/MM/DD/rollout-*.jsonl`` (OpenAI Codex CLI, IDE and desktop app).

Every line is ``{"timestamp", "type", "payload"}``, ``type`` a ``RolloutItem`` of
``codex-rs/protocol/src/protocol.rs``. A rollout holds the conversation twice: as the model saw it
(``response_item``) and as the interface showed it (``event_msg``), and newer versions a third
time as completed items (``event_msg`` ``item_completed``). Each thing is read from one of them
only, and every other copy is ``raw`` (stored, with no meaning of its own):

- ``session_meta`` is ``session_started`` (session id ``payload.id``, cwd ``payload.cwd``).
- The person's prompt is read from the events: ``user_message`` (and ``item_completed`` of a
  ``UserMessage``, which replaces it in paginated rollouts) is ``prompt``. The ``user`` messages
  among the response items are not read: they also hold the context Codex injects (AGENTS.md,
  ``<environment_context>``), which a redacted or unfamiliar rollout cannot tell from a prompt. A
  ``user_message`` that is such context (``kind`` ``environment_context`` or
  ``user_instructions`` in older versions) is ``raw``.
- What the agent says and thinks is read from the response items: an ``assistant`` ``message`` is
  ``output``, ``reasoning`` is ``thinking``. Every version persists these exactly once, while the
  events repeat them (``agent_message``, ``agent_reasoning``, and in the newest versions an
  ``item_completed`` ``AgentMessage`` besides).
- Tool calls are read from the response items, where each call has its output: a
  ``function_call``, ``custom_tool_call``, ``local_shell_call`` or ``tool_search_call`` is
  ``tool_use``, its ``*_output`` ``tool_result``. The events keep only the end of a call
  (``exec_command_end``, ``mcp_tool_call_end``, ...), so they are ``raw``, as are searches and
  image generations the server ran (``web_search_call``, ``image_generation_call``: one record,
  nothing to pair).
- ``task_complete`` (``turn_complete``) is ``turn_completed`` with the last agent message,
  ``is_error`` when it carries an error; ``turn_aborted`` (the person interrupted, or a new
  prompt replaced the turn) is ``turn_completed`` too: the turn is over and Codex waits for the
  person. ``error`` is ``error``; ``warning``, ``stream_error`` (a retried disconnect) and
  ``undo_completed`` are ``notification``.
- A ``compacted`` line is ``compacted``; the ``context_compacted`` event of the same compaction
  is ``raw``.
- ``token_count`` is ``raw`` carrying the session's total token ``usage``, and ``turn_context`` is
  ``raw`` carrying the turn's ``cwd``: bookkeeping written before and after every model call,
  not something said or done.
- Anything else (``task_started``, ``world_state``, ``ghost_snapshot``, review mode, sub-agent
  and goal events, ...) is ``raw``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from agentwatch.hookspecs import hookimpl
from agentwatch.model import RAW, Format, Normalized
from agentwatch.plugins.formats.fields import mapping, string

#: The ``RolloutItem`` types of a rollout line (what ``sniff`` recognises).
_LINE_TYPES = frozenset(
    {
        "session_meta",
        "response_item",
        "event_msg",
        "turn_context",
        "compacted",
        "world_state",
        "inter_agent_communication",
        "inter_agent_communication_metadata",
        "tool_manifest",
        "sampling_boundary",
    }
)
#: ``user_message`` kinds (older Codex versions) that are context Codex injected, not a prompt.
_INJECTED_KINDS = frozenset({"environment_context", "user_instructions"})
#: How injected context messages begin (``InputMessageKind::from`` in protocol.rs).
_INJECTED_PREFIXES = ("<environment_context>", "<user_instructions>")


def _texts(blocks: Any, *types: str) -> str | None:
    """The joined ``text`` of the content blocks of one of ``types``."""
    if not isinstance(blocks, list):
        return None
    texts = [
        text
        for block in blocks
        if isinstance(block, dict) and block.get("type") in types and (text := string(block.get("text"))) is not None
    ]
    return "\n".join(texts) if texts else None


def _parsed(arguments: Any) -> Any:
    """A call's ``arguments``: the JSON they encode, or as they are if they are not JSON."""
    if not isinstance(arguments, str):
        return arguments
    try:
        return json.loads(arguments)
    except (ValueError, RecursionError):
        return arguments


def _output(output: Any) -> tuple[str | None, bool]:
    """The text of a call's ``output`` and whether it failed.

    The output is a string (the older ``shell`` tool's is JSON ``{"output", "metadata":
    {"exit_code"}}``), a list of content items, or an object with ``content`` or ``text`` (and
    ``success``)."""
    if isinstance(output, list):
        return _texts(output, "input_text", "output_text", "text"), False
    if isinstance(output, dict):
        text = string(output.get("content")) or string(output.get("text")) or _texts(output.get("content"), "input_text", "text")
        return text, output.get("success") is False
    if not isinstance(output, str):
        return None, False
    shell = _parsed(output)
    if isinstance(shell, dict) and isinstance(text := shell.get("output"), str):
        exit_code = (mapping(shell.get("metadata")) or {}).get("exit_code")
        return text, isinstance(exit_code, int) and not isinstance(exit_code, bool) and exit_code != 0
    return output, False


def _session_meta(payload: dict[str, Any]) -> Normalized:
    session_id = string(payload.get("id")) or string(payload.get("session_id"))
    return Normalized("session_started", session_id=session_id, cwd=string(payload.get("cwd")))


def _message(payload: dict[str, Any]) -> Normalized:
    if payload.get("role") != "assistant":
        return RAW
    return Normalized("output", text=_texts(payload.get("content"), "output_text", "text"))


def _reasoning(payload: dict[str, Any]) -> Normalized:
    text = _texts(payload.get("summary"), "summary_text") or _texts(payload.get("content"), "reasoning_text", "text")
    return Normalized("thinking", text=text)


def _tool_use(tool: str | None, input: Any) -> Normalized:
    return Normalized("tool_use", tool=tool, input=input)


def _tool_result(payload: dict[str, Any]) -> Normalized:
    text, failed = _output(payload.get("output"))
    return Normalized("tool_result", text=text, is_error=failed)


_RESPONSE_ITEMS: dict[str, Callable[[dict[str, Any]], Normalized]] = {
    "message": _message,
    "reasoning": _reasoning,
    "function_call": lambda p: _tool_use(string(p.get("name")), _parsed(p.get("arguments"))),
    "custom_tool_call": lambda p: _tool_use(string(p.get("name")), p.get("input")),
    "local_shell_call": lambda p: _tool_use("local_shell", p.get("action")),
    "tool_search_call": lambda p: _tool_use("tool_search", p.get("arguments")),
    "function_call_output": _tool_result,
    "custom_tool_call_output": _tool_result,
    "tool_search_output": lambda p: Normalized("tool_result", is_error=p.get("status") == "failed"),
}


def _response_item(payload: dict[str, Any]) -> Normalized:
    item_type = payload.get("type")
    reader = _RESPONSE_ITEMS.get(item_type) if isinstance(item_type, str) else None
    return reader(payload) if reader else RAW


def _user_message(payload: dict[str, Any]) -> Normalized:
    text = string(payload.get("message"))
    if string(payload.get("kind")) in _INJECTED_KINDS or (text is not None and text.lstrip().startswith(_INJECTED_PREFIXES)):
        return RAW
    return Normalized("prompt", text=text)


def _item_completed(payload: dict[str, Any]) -> Normalized:
    item = mapping(payload.get("item")) or {}
    if item.get("type") != "UserMessage":
        return RAW
    return Normalized("prompt", text=_texts(item.get("content"), "text"))


def _turn_complete(payload: dict[str, Any]) -> Normalized:
    error = payload.get("error")
    text = string(payload.get("last_agent_message")) or (string(error.get("message")) if isinstance(error, dict) else None)
    return Normalized("turn_completed", text=text, is_error=error is not None)


def _token_count(payload: dict[str, Any]) -> Normalized:
    info = mapping(payload.get("info")) or {}
    return Normalized("raw", usage=mapping(info.get("total_token_usage")))


def _message_event(kind: str, is_error: bool | None = None) -> Callable[[dict[str, Any]], Normalized]:
    """An event of ``kind`` whose text is the payload's ``message``."""
    return lambda payload: Normalized(kind, text=string(payload.get("message")), is_error=is_error)


_EVENTS: dict[str, Callable[[dict[str, Any]], Normalized]] = {
    "user_message": _user_message,
    "item_completed": _item_completed,
    "task_complete": _turn_complete,
    "turn_complete": _turn_complete,
    "turn_aborted": lambda payload: Normalized("turn_completed", is_error=False),
    "error": _message_event("error", is_error=True),
    "warning": _message_event("notification"),
    "stream_error": _message_event("notification"),
    "undo_completed": _message_event("notification"),
    "token_count": _token_count,
}


def _event_msg(payload: dict[str, Any]) -> Normalized:
    event_type = payload.get("type")
    reader = _EVENTS.get(event_type) if isinstance(event_type, str) else None
    return reader(payload) if reader else RAW


_BY_TYPE: dict[str, Callable[[dict[str, Any]], Normalized]] = {
    "session_meta": _session_meta,
    "response_item": _response_item,
    "event_msg": _event_msg,
    "compacted": lambda payload: Normalized("compacted"),
    "turn_context": lambda payload: Normalized("raw", cwd=string(payload.get("cwd"))),
}


class CodexRolloutFormat:
    """Reads the lines of Codex rollout (session) files."""

    name = "codex-rollout"

    def normalize(self, data: Any) -> Normalized:
        if not isinstance(data, dict) or not isinstance(payload := data.get("payload"), dict):
            return RAW
        line_type = data.get("type")
        reader = _BY_TYPE.get(line_type) if isinstance(line_type, str) else None
        return reader(payload) if reader else RAW

    def sniff(self, data: Any) -> bool:
        """A rollout line: an object with a ``payload`` object and a ``type`` among the rollout
        item types."""
        return (
            isinstance(data, dict)
            and isinstance(line_type := data.get("type"), str)
            and line_type in _LINE_TYPES
            and isinstance(data.get("payload"), dict)
        )


@hookimpl
def agentwatch_register_formats(register: Callable[[Format], None]) -> None:
    register(CodexRolloutFormat())
