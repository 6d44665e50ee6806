"""The ``claude-transcript`` format: lines of a Claude Code session file
``~/.claude/projects/<project>/<session>.jsonl``.

Each line is stored once with one kind. ``session_id`` is ``sessionId`` and ``cwd`` is ``cwd``,
on every line that has them.

- ``assistant`` (Claude Code writes one line per content block of an API message):

  - ``isApiErrorMessage`` (the failure Claude Code gives up on) is ``error``; any other line of
    the ``<synthetic>`` model is Claude Code's own filler, a ``notification``.
  - ``message.stop_reason`` ``end_turn`` or ``stop_sequence`` is ``turn_completed`` with the
    line's text: the model ended its reply without asking for a tool, so the turn is over.
  - else a ``tool_use`` block is ``tool_use`` (every one is answered by a ``tool_result`` line,
    an interrupted one too), ``text`` is ``output``, ``thinking``/``redacted_thinking`` is
    ``thinking``. ``usage`` is ``message.usage``, ``cost_usd`` the old ``costUSD``.
  - a subagent's line (``isSidechain``) never ends nor fails the session's turn.

- ``user``: a ``tool_result`` block is ``tool_result``. "[Request interrupted by user…]" is
  ``turn_completed``: the person stopped the agent and it now waits (nothing else ends that
  turn). A local command (``<command-name>``, ``<local-command-stdout>``, …) is a
  ``notification``, except ``/exit`` (``session_ended``) and ``/clear`` (``context_cleared``:
  Claude Code starts the new conversation's file with it). Meta lines (``isMeta``, compact
  summaries, text injected by Claude Code such as ``<task-notification>``) and every line of a
  subagent (``isSidechain``) are ``notification``. Anything else the person typed is ``prompt``.
- ``system``: ``compact_boundary``/``microcompact_boundary`` is ``compacted``; ``turn_duration``
  (written when a turn of over 30 s ends, not when it was aborted) is ``turn_completed``;
  ``local_command`` as the user line above; ``api_error`` (a retry notice: the turn goes on) and
  every other subtype is ``notification``.
- ``attachment``: a prompt the person queued while the agent worked is ``prompt``; any other
  attachment is ``notification``.
- Bookkeeping (``progress``, ``file-history-snapshot``, ``queue-operation``, ``summary``, titles,
  tags, modes, snapshots, …) is ``notification``: understood, and carrying nothing that moves
  the session. Any other line is ``raw``.

A long turn of a recent Claude Code may end with both an ``end_turn`` line and a ``turn_duration``
line: two ``turn_completed`` a moment apart, which leave the session in the same state as one.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from agentwatch.hookspecs import hookimpl
from agentwatch.model import RAW, Format, Normalized
from agentwatch.plugins.formats.fields import mapping, number, string

#: Stop reasons after which Claude Code's query loop ends the turn.
_TURN_ENDS = frozenset({"end_turn", "stop_sequence"})

#: Text Claude Code writes for a local command (slash command, ``!`` shell, ``#`` memory).
_LOCAL_COMMAND_TAGS = (
    "<command-name",
    "<command-message",
    "<command-args",
    "<local-command-stdout",
    "<local-command-stderr",
    "<local-command-caveat",
    "<bash-input",
    "<bash-stdout",
    "<bash-stderr",
    "<user-memory-input",
)

#: Text Claude Code (or another agent) puts in the person's place.
_INJECTED_PREFIXES = (
    "<task-notification",
    "<system-reminder",
    "<teammate-message",
    "<bash-notification",
    "This session is being continued from a previous conversation",
)

_INTERRUPTED = "[Request interrupted by user"

#: The name of a local command. Bounded and possessive (Python 3.11) quantifiers: from each opening
#: tag the search reads at most a couple of hundred characters and never backtracks, so it takes
#: time linear in the text (``\s*/?([^<\s]*)\s*`` rescanned every run of spaces quadratically).
_COMMAND_NAME = re.compile(r"<command-name>\s{0,64}+/?([^<\s]{0,64}+)\s{0,64}+</command-name>")
#: Claude Code writes a local command's tags first (``<command-message>``, ``<command-name>``,
#: ``<command-args>``): the name is looked for in this much of the text.
_COMMAND_SCAN = 4096

#: Local commands that end the conversation, or start a new one.
_COMMAND_KINDS = {
    "exit": "session_ended",
    "quit": "session_ended",
    "clear": "context_cleared",
    "reset": "context_cleared",
    "new": "context_cleared",
}

#: Flags of user lines the person did not type (``isSidechain``: a subagent's conversation).
_NOT_THE_PERSON = ("isSidechain", "isMeta", "isCompactSummary", "isVisibleInTranscriptOnly")

#: Bookkeeping line types -> the key of their text for the person, if any.
_BOOKKEEPING: dict[str, str | None] = {
    "progress": None,
    "file-history-snapshot": None,
    "queue-operation": "content",
    "summary": "summary",
    "custom-title": "customTitle",
    "ai-title": "aiTitle",
    "last-prompt": "lastPrompt",
    "task-summary": "summary",
    "tag": "tag",
    "agent-name": "agentName",
    "agent-color": None,
    "agent-setting": "agentSetting",
    "pr-link": "prUrl",
    "mode": "mode",
    "permission-mode": "permissionMode",
    "worktree-state": None,
    "content-replacement": None,
    "attribution-snapshot": None,
    "speculation-accept": None,
    "marble-origami-commit": None,
    "marble-origami-snapshot": None,
}

#: Conversation line types: each carries a string ``sessionId`` and ``uuid``.
_ENTRY_TYPES = frozenset({"user", "assistant", "system", "progress", "attachment"})


def _blocks(content: Any, *block_types: str) -> list[dict[str, Any]]:
    """The content blocks of the given types in a message's ``content`` list."""
    if not isinstance(content, list):
        return []
    return [block for block in content if isinstance(block, dict) and block.get("type") in block_types]


def _joined(blocks: list[dict[str, Any]], key: str) -> str | None:
    """The ``key`` strings of ``blocks`` joined by newlines, or ``None`` if there are none."""
    texts = [text for block in blocks if (text := string(block.get(key))) is not None]
    return "\n".join(texts) if texts else None


def _content_text(content: Any) -> str | None:
    """A ``content`` that is a string, or the joined text of its ``text`` blocks."""
    return content if isinstance(content, str) else _joined(_blocks(content, "text"), "text")


def command_name(text: str) -> str | None:
    """The command of the first ``<command-name>/name</command-name>`` in the first 4 KiB of ``text``
    (a name of up to 64 characters and no spaces, the slash optional, up to 64 spaces around it), or
    ``None``."""
    match = _COMMAND_NAME.search(text, 0, _COMMAND_SCAN)
    return match.group(1) if match else None


def _local_command(text: str, fields: dict[str, Any]) -> Normalized:
    """A local command's record: the end or clear of the conversation, else a notification."""
    name = command_name(text)
    kind = _COMMAND_KINDS.get(name, "notification") if name is not None else "notification"
    return Normalized(kind, text=text, **fields)


def _user(data: dict[str, Any], fields: dict[str, Any]) -> Normalized:
    content = (mapping(data.get("message")) or {}).get("content")
    if results := _blocks(content, "tool_result"):
        first = results[0]
        return Normalized(
            "tool_result", text=_content_text(first.get("content")), is_error=first.get("is_error") is True, **fields
        )
    text = _content_text(content)
    if any(data.get(flag) is True for flag in _NOT_THE_PERSON):
        return Normalized("notification", text=text, **fields)
    if text is None:
        return Normalized("prompt", **fields) if _blocks(content, "image") else RAW
    start = text.lstrip()
    if start.startswith(_LOCAL_COMMAND_TAGS):
        return _local_command(text, fields)
    if start.startswith(_INTERRUPTED):
        return Normalized("turn_completed", text=text, is_error=False, **fields)
    if start.startswith(_INJECTED_PREFIXES):
        return Normalized("notification", text=text, **fields)
    return Normalized("prompt", text=text, **fields)


def _assistant(data: dict[str, Any], fields: dict[str, Any]) -> Normalized:
    message = mapping(data.get("message")) or {}
    content = message.get("content")
    fields = {**fields, "usage": mapping(message.get("usage")), "cost_usd": number(data.get("costUSD"))}
    text = _joined(_blocks(content, "text"), "text")
    main_chain = data.get("isSidechain") is not True
    if data.get("isApiErrorMessage") is True and main_chain:
        return Normalized("error", text=text or string(data.get("error")), is_error=True, **fields)
    if message.get("model") == "<synthetic>":
        return Normalized("notification", text=text, **fields)
    if string(message.get("stop_reason")) in _TURN_ENDS and main_chain:
        return Normalized("turn_completed", text=text, is_error=False, **fields)
    if tool_uses := _blocks(content, "tool_use"):
        first = tool_uses[0]
        return Normalized("tool_use", tool=string(first.get("name")), input=first.get("input"), **fields)
    if text is not None:
        return Normalized("output", text=text, **fields)
    if thoughts := _blocks(content, "thinking", "redacted_thinking"):
        return Normalized("thinking", text=_joined(thoughts, "thinking"), **fields)
    return RAW


def _system(data: dict[str, Any], fields: dict[str, Any]) -> Normalized:
    subtype = data.get("subtype")
    text = string(data.get("content"))
    if subtype in ("compact_boundary", "microcompact_boundary"):
        return Normalized("compacted", text=text, **fields)
    if subtype == "turn_duration" and data.get("isSidechain") is not True:
        return Normalized("turn_completed", is_error=False, **fields)
    if subtype == "local_command" and text is not None:
        return _local_command(text, fields)
    return Normalized("notification", text=text, **fields)


def _attachment(data: dict[str, Any], fields: dict[str, Any]) -> Normalized:
    attachment = mapping(data.get("attachment")) or {}
    prompt = attachment.get("prompt")
    text = _content_text(prompt)
    origin = mapping(attachment.get("origin"))
    queued_by_person = (
        attachment.get("type") == "queued_command"
        and attachment.get("commandMode") in (None, "prompt")
        and (origin is None or origin.get("kind") == "human")
        and data.get("isSidechain") is not True
        and not (text or "").lstrip().startswith(_INJECTED_PREFIXES)
    )
    if queued_by_person and (text is not None or _blocks(prompt, "image")):
        return Normalized("prompt", text=text, **fields)
    return Normalized("notification", text=text, **fields)


_BY_TYPE: dict[str, Callable[[dict[str, Any], dict[str, Any]], Normalized]] = {
    "user": _user,
    "assistant": _assistant,
    "system": _system,
    "attachment": _attachment,
}


class ClaudeTranscriptFormat:
    """Reads the lines of Claude Code's on-disk session transcripts."""

    name = "claude-transcript"

    def normalize(self, data: Any) -> Normalized:
        if not isinstance(data, dict) or not isinstance(record_type := data.get("type"), str):
            return RAW
        fields = {"session_id": string(data.get("sessionId")), "cwd": string(data.get("cwd"))}
        if handler := _BY_TYPE.get(record_type):
            return handler(data, fields)
        if record_type in _BOOKKEEPING:
            key = _BOOKKEEPING[record_type]
            return Normalized("notification", text=string(data.get(key)) if key else None, **fields)
        return RAW

    def sniff(self, data: Any) -> bool:
        """A transcript line: a conversation line with a string ``sessionId`` and ``uuid``, or a
        bookkeeping line with its own keys; never a line with ``session_id`` (stream-json, hooks)."""
        if not isinstance(data, dict) or "session_id" in data or not isinstance(record_type := data.get("type"), str):
            return False
        session_id = isinstance(data.get("sessionId"), str)
        if record_type in _ENTRY_TYPES:
            return session_id and isinstance(data.get("uuid"), str)
        if record_type == "summary":
            return isinstance(data.get("summary"), str) and isinstance(data.get("leafUuid"), str)
        if record_type == "file-history-snapshot":
            return isinstance(data.get("messageId"), str) and isinstance(data.get("snapshot"), dict)
        if record_type == "queue-operation":
            return session_id and isinstance(data.get("operation"), str)
        return session_id and record_type in _BOOKKEEPING


@hookimpl
def agentwatch_register_formats(register: Callable[[Format], None]) -> None:
    register(ClaudeTranscriptFormat())
