"""The worst records we can build for each built-in format, at any size.

Each record aims at what its format reads: long runs of the tags and prefixes it searches for,
strings that begin with what it strips, thousands of content blocks, items or questions it joins,
JSON text it parses, and nesting as deep as the daemon's JSON parser admits. Used by
``tests/test_formats_adversarial.py`` (at ``server.max_frame_bytes``) and ``bench/normalise.py``
(the growth from 100 KB to 1 MiB).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

#: Deep nesting, within what the daemon's parser admits (``strict_json`` refuses about 995 levels,
#: less the stack it is called from; a test's stack is deeper than the daemon's).
DEEP = 900


def runs(size: int, *parts: str) -> str:
    """``parts[:-1]`` once, then ``parts[-1]`` repeated to about ``size`` characters."""
    head, unit = "".join(parts[:-1]), parts[-1]
    return head + unit * max(1, (size - len(head)) // len(unit))


def many(size: int, item: Any) -> list[Any]:
    """Copies of ``item``, about ``size`` bytes of JSON in all."""
    return [item] * max(1, size // (len(json.dumps(item, separators=(",", ":"))) + 1))


def nested(depth: int = DEEP) -> Any:
    """Arrays nested ``depth`` deep."""
    value: Any = []
    for _ in range(depth - 1):
        value = [value]
    return value


def _hook(event: str, **fields: Any) -> dict[str, Any]:
    return {"hook_event_name": event, "session_id": "s1", "cwd": "/w", **fields}


def _transcript(line_type: str, content: Any, **fields: Any) -> dict[str, Any]:
    message = {"role": line_type, "content": content}
    return {"type": line_type, "sessionId": "s1", "uuid": "u1", "cwd": "/w", "message": message, **fields}


TEXT = {"type": "text", "text": "a"}

#: format -> name -> the record of about ``size`` bytes.
BUILDERS: dict[str, dict[str, Callable[[int], Any]]] = {
    "claude-hook": {
        "task summary tags": lambda n: _hook("UserPromptSubmit", prompt=runs(n, "<task-notification>", "<summary>")),
        "task summary unclosed": lambda n: _hook("UserPromptSubmit", prompt=runs(n, "<task-notification><summary>", "x")),
        "task summary close tags": lambda n: _hook("UserPromptSubmit", prompt=runs(n, "<task-notification>", "</summary>")),
        "prompt behind spaces": lambda n: _hook("UserPromptSubmit", prompt=runs(n, " ")),
        "permission message": lambda n: _hook("Notification", message=runs(n, "Claude needs your permission")),
        "tool response blocks": lambda n: _hook("PostToolUse", tool_name="T", tool_response={"content": many(n, TEXT)}),
        "tool response list": lambda n: _hook("PostToolUse", tool_name="T", tool_response=many(n, TEXT)),
        "deep tool input": lambda n: _hook("PreToolUse", tool_name="T", tool_input=nested()),
    },
    "claude-transcript": {
        "command name spaces": lambda n: _transcript("user", runs(n, "<command-name>", " ")),
        "command name tags": lambda n: _transcript("user", runs(n, "<command-name>")),
        "command names with spaces": lambda n: _transcript("user", runs(n, "<command-name>/a b</command-name>")),
        "command name unclosed": lambda n: _transcript("user", runs(n, "<command-name>/", "x")),
        "local command spaces": lambda n: {"type": "system", "subtype": "local_command", "sessionId": "s1",
                                           "content": runs(n, "<command-name>", "\t")},
        "injected prefix spaces": lambda n: _transcript("user", runs(n, " ")),
        "text blocks": lambda n: _transcript("user", many(n, TEXT)),
        "tool result blocks": lambda n: _transcript("user", many(n, {"type": "tool_result", "content": [TEXT]})),
        "assistant blocks": lambda n: _transcript("assistant", many(n, {"type": "thinking", "thinking": "t"})),
        "queued prompt blocks": lambda n: {"type": "attachment", "sessionId": "s1", "uuid": "u1", "attachment": {
            "type": "queued_command", "prompt": many(n, TEXT)}},
    },
    "claude-stream-json": {
        "assistant text blocks": lambda n: {"type": "assistant", "session_id": "s1", "message": {"content": many(n, TEXT)}},
        "assistant thinking blocks": lambda n: {"type": "assistant", "session_id": "s1",
                                                "message": {"content": many(n, {"type": "thinking", "thinking": "t"})}},
        "tool result blocks": lambda n: {"type": "user", "session_id": "s1",
                                         "message": {"content": [{"type": "tool_result", "content": many(n, TEXT)}]}},
        "result errors": lambda n: {"type": "result", "subtype": "error_during_execution", "errors": many(n, "e")},
        "hook output spaces": lambda n: {"type": "system", "subtype": "hook_response", "hook_event": "Stop",
                                         "output": runs(n, " ")},
        "deep control input": lambda n: {"type": "control_request", "request": {"subtype": "can_use_tool",
                                                                                "tool_name": "T", "input": nested()}},
    },
    "codex-exec-json": {
        "file changes": lambda n: {"type": "item.completed", "item": {"type": "file_change", "status": "completed",
                                                                     "changes": many(n, {"kind": "add", "path": "p"})}},
        "todo items": lambda n: {"type": "item.updated", "item": {"type": "todo_list",
                                                                  "items": many(n, {"text": "t", "completed": True})}},
        "agents states": lambda n: {"type": "item.completed", "item": {"type": "collab_tool_call", "agents_states": {
            f"a{i}": {"message": "m"} for i in range(max(1, n // 24))}}},
        "questions": lambda n: {"type": "request_user_input", "questions": many(n, {"question": "q"})},
        "mcp result blocks": lambda n: {"type": "item.completed", "item": {"type": "mcp_tool_call", "server": "s",
                                                                          "tool": "t", "result": {"content": many(n, TEXT)}}},
    },
    "codex-rollout": {
        "arguments as deep JSON": lambda n: {"type": "response_item", "payload": {
            "type": "function_call", "name": "shell", "arguments": runs(n, "[") + runs(n, "]")}},
        "arguments as long JSON": lambda n: {"type": "response_item", "payload": {
            "type": "function_call", "name": "shell", "arguments": json.dumps(many(n // 2, "x"))}},
        "shell output as JSON": lambda n: {"type": "response_item", "payload": {
            "type": "function_call_output", "output": json.dumps({"output": runs(n // 2, "o"), "metadata": {"exit_code": 1}})}},
        "message blocks": lambda n: {"type": "response_item", "payload": {
            "type": "message", "role": "assistant", "content": many(n, {"type": "output_text", "text": "a"})}},
        "user message spaces": lambda n: {"type": "event_msg", "payload": {"type": "user_message", "message": runs(n, " ")}},
    },
    "gemini-stream-json": {
        "message": lambda n: {"type": "message", "role": "assistant", "content": runs(n, "a"), "timestamp": "t"},
        "tool result": lambda n: {"type": "tool_result", "status": "error", "output": runs(n, " "), "timestamp": "t"},
    },
    "agentwatch": {
        "text": lambda n: {"kind": "output", "text": runs(n, " a")},
        "deep input": lambda n: {"kind": "tool_use", "tool": "T", "input": nested()},
    },
}


def _sized(build: Callable[[int], Any], size: int) -> Any:
    """The record ``build`` makes, at most ``size`` bytes of compact JSON and not far below."""
    record = build(size)
    length = len(json.dumps(record, separators=(",", ":")))
    return record if length <= size else build(size * size // length - 64)


def worst_records(size: int) -> list[tuple[str, str, Any]]:
    """``(format, name, record)`` for every record of :data:`BUILDERS`, each at most ``size`` bytes
    of compact JSON (and more than half of it, unless its nesting alone makes it small)."""
    return [(fmt, name, _sized(build, size)) for fmt, builders in BUILDERS.items() for name, build in builders.items()]
