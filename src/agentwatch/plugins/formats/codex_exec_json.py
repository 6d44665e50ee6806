"""The ``codex-exec-json`` format: the JSONL lines of ``codex exec --json`` (OpenAI Codex CLI).

The shapes are those of ``codex-rs/exec/src/exec_events.rs`` (``ThreadEvent``, ``ThreadItem``).
Each record is stored once with one kind:

- ``thread.started`` is ``session_started`` (the session id is its ``thread_id``).
- ``turn.started`` is ``prompt`` without text: ``codex exec`` starts a turn only for the prompt
  the person gave on its command line, and no other record carries that prompt.
- ``turn.completed`` is ``turn_completed`` with its ``usage``; ``turn.failed`` and a top-level
  ``error`` record are ``error``.
- ``item.completed`` of an ``agent_message`` is ``output``, of ``reasoning`` ``thinking``.
- Tool items (``command_execution``, ``mcp_tool_call``, ``web_search``, ``file_change``,
  ``collab_tool_call``): ``item.started`` is ``tool_use`` and ``item.completed`` is
  ``tool_result``, ``is_error`` for a non-zero exit code or a failed or declined status. Codex
  completes every item it started, at the latest when the turn ends; items older versions never
  start (a file change, a web search) are only an ``item.completed``, so no ``tool_use`` is
  ever left open.
- ``item.updated`` never opens a tool call: it is ``raw``, except for a ``todo_list``.
- ``todo_list`` (started, updated and completed), ``error`` items (non-fatal warnings) and a
  completed ``plan`` are ``notification``.
- ``request_user_input`` (the model asks the person questions) is ``permission_request``.
- Anything else is ``raw``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from agentwatch.hookspecs import hookimpl
from agentwatch.model import RAW, Format, Normalized
from agentwatch.plugins.formats.fields import by_type, mapping, string

#: The record types that only ``codex exec --json`` writes (what ``sniff`` recognises).
_EVENT_TYPES = frozenset(
    {
        "thread.started",
        "turn.started",
        "turn.completed",
        "turn.failed",
        "item.started",
        "item.updated",
        "item.completed",
        "item.plan.delta",
    }
)
#: Statuses of a tool item that mean it did not succeed.
_FAILED = frozenset({"failed", "declined"})


def _joined_texts(blocks: Any) -> str | None:
    """The joined ``text`` of a list of content blocks (an MCP result's ``content``)."""
    if not isinstance(blocks, list):
        return None
    texts = [text for block in blocks if isinstance(block, dict) and (text := string(block.get("text"))) is not None]
    return "\n".join(texts) if texts else None


def _failed(item: dict[str, Any]) -> bool:
    return string(item.get("status")) in _FAILED


def _command(item: dict[str, Any]) -> Normalized:
    exit_code = item.get("exit_code")
    failed = _failed(item) or (isinstance(exit_code, int) and not isinstance(exit_code, bool) and exit_code != 0)
    return Normalized(
        "tool_result",
        tool="command_execution",
        input={"command": string(item.get("command"))},
        text=string(item.get("aggregated_output")),
        is_error=failed,
    )


def _mcp_tool_call(item: dict[str, Any]) -> Normalized:
    server, tool = string(item.get("server")), string(item.get("tool"))
    error = mapping(item.get("error"))
    text = string(error.get("message")) if error else _joined_texts((mapping(item.get("result")) or {}).get("content"))
    return Normalized(
        "tool_result",
        tool=f"mcp__{server}__{tool}" if server and tool else tool or "mcp_tool_call",
        input=item.get("arguments"),
        text=text,
        is_error=_failed(item) or error is not None,
    )


def _web_search(item: dict[str, Any]) -> Normalized:
    query = string(item.get("query"))
    return Normalized("tool_result", tool="web_search", input={"query": query}, text=query, is_error=False)


def _file_change(item: dict[str, Any]) -> Normalized:
    changes = item.get("changes")
    lines = [
        f"{string(change.get('kind')) or '?'} {string(change.get('path')) or '?'}"
        for change in (changes if isinstance(changes, list) else [])
        if isinstance(change, dict)
    ]
    return Normalized(
        "tool_result", tool="file_change", input={"changes": changes}, text="\n".join(lines) or None, is_error=_failed(item)
    )


def _collab_tool_call(item: dict[str, Any]) -> Normalized:
    states = mapping(item.get("agents_states")) or {}
    messages = [text for state in states.values() if isinstance(state, dict) and (text := string(state.get("message")))]
    return Normalized(
        "tool_result",
        tool=string(item.get("tool")) or "collab_tool_call",
        input={"prompt": string(item.get("prompt")), "receiver_thread_ids": item.get("receiver_thread_ids")},
        text="\n".join(messages) or None,
        is_error=_failed(item),
    )


#: How a tool item reads, as the ``tool_result`` of its ``item.completed``; its ``item.started``
#: is the same call as a ``tool_use`` without result fields.
_TOOL_ITEMS: dict[str, Callable[[dict[str, Any]], Normalized]] = {
    "command_execution": _command,
    "mcp_tool_call": _mcp_tool_call,
    "web_search": _web_search,
    "file_change": _file_change,
    "collab_tool_call": _collab_tool_call,
}


def _todo_list(item: dict[str, Any]) -> Normalized:
    """The to-do list as lines ``[x] step`` / ``[ ] step``."""
    entries = item.get("items")
    lines = [
        f"[{'x' if entry.get('completed') is True else ' '}] {text}"
        for entry in (entries if isinstance(entries, list) else [])
        if isinstance(entry, dict) and (text := string(entry.get("text"))) is not None
    ]
    return Normalized("notification", text="\n".join(lines) or None)


def _item(data: dict[str, Any]) -> dict[str, Any] | None:
    """The record's ``item`` with a string ``type``."""
    item = mapping(data.get("item"))
    return item if item is not None and isinstance(item.get("type"), str) else None


def _item_started(data: dict[str, Any]) -> Normalized:
    item = _item(data)
    if item is None:
        return RAW
    if item["type"] == "todo_list":
        return _todo_list(item)
    reader = _TOOL_ITEMS.get(item["type"])
    if reader is None:
        return RAW
    result = reader(item)
    return Normalized("tool_use", tool=result.tool, input=result.input)


def _item_updated(data: dict[str, Any]) -> Normalized:
    item = _item(data)
    return _todo_list(item) if item is not None and item["type"] == "todo_list" else RAW


def _item_completed(data: dict[str, Any]) -> Normalized:
    item = _item(data)
    if item is None:
        return RAW
    item_type = item["type"]
    text = string(item.get("text"))
    if item_type == "agent_message":
        return Normalized("output", text=text)
    if item_type == "reasoning":
        return Normalized("thinking", text=text)
    if item_type == "plan":
        return Normalized("notification", text=text)
    if item_type == "error":
        return Normalized("notification", text=string(item.get("message")), is_error=True)
    if item_type == "todo_list":
        return _todo_list(item)
    reader = _TOOL_ITEMS.get(item_type)
    return reader(item) if reader else RAW


def _thread_started(data: dict[str, Any]) -> Normalized:
    return Normalized("session_started", session_id=string(data.get("thread_id")))


def _turn_started(data: dict[str, Any]) -> Normalized:
    return Normalized("prompt")


def _turn_completed(data: dict[str, Any]) -> Normalized:
    return Normalized("turn_completed", usage=mapping(data.get("usage")), is_error=False)


def _turn_failed(data: dict[str, Any]) -> Normalized:
    error = mapping(data.get("error")) or {}
    return Normalized("error", text=string(error.get("message")), is_error=True)


def _error(data: dict[str, Any]) -> Normalized:
    return Normalized("error", text=string(data.get("message")), is_error=True)


def _request_user_input(data: dict[str, Any]) -> Normalized:
    questions = data.get("questions")
    texts = [
        text
        for question in (questions if isinstance(questions, list) else [])
        if isinstance(question, dict) and (text := string(question.get("question"))) is not None
    ]
    return Normalized("permission_request", tool="request_user_input", input=questions, text="\n".join(texts) or None)


_BY_TYPE: dict[str, Callable[[dict[str, Any]], Normalized]] = {
    "thread.started": _thread_started,
    "turn.started": _turn_started,
    "turn.completed": _turn_completed,
    "turn.failed": _turn_failed,
    "item.started": _item_started,
    "item.updated": _item_updated,
    "item.completed": _item_completed,
    "request_user_input": _request_user_input,
    "error": _error,
}


class CodexExecJsonFormat:
    """Reads the JSONL event stream of ``codex exec --json``."""

    name = "codex-exec-json"

    def normalize(self, data: Any) -> Normalized:
        if not isinstance(data, dict):
            return RAW
        return by_type(data, _BY_TYPE)

    def sniff(self, data: Any) -> bool:
        """A ``codex exec --json`` event: an object whose ``type`` is one of its dotted event names."""
        return isinstance(data, dict) and isinstance(record_type := data.get("type"), str) and record_type in _EVENT_TYPES


@hookimpl
def agentwatch_register_formats(register: Callable[[Format], None]) -> None:
    register(CodexExecJsonFormat())
