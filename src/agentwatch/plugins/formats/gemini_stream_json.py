"""The ``gemini-stream-json`` format: lines of ``gemini -p ... --output-format stream-json``.

The record shapes are Gemini CLI's (google-gemini/gemini-cli, packages/core/src/output/types.ts);
every record has a ``type`` and a ``timestamp``. Each record is stored once with one kind:

- ``init`` is ``session_started`` (its ``session_id``).
- ``message``: role ``user`` is ``prompt`` (the prompt as the person gave it), role ``assistant``
  is ``output``. The CLI streams a reply as several ``"delta": true`` messages, each carrying
  only new text and never repeated whole later, so every chunk is an ``output`` of its own words:
  nothing is said twice, and the daemon hears the agent speak as it streams (its summary of the
  agent's last words is the last chunk). Any other role is ``raw``.
- ``tool_use`` is ``tool_use`` (``tool_name``, ``parameters``); ``tool_result`` is
  ``tool_result``, an error when ``status`` is ``error`` (the text is ``output``, else the
  error's message). The CLI answers every scheduled ``tool_use`` with a ``tool_result``; the
  calls it drops on a broken model stream end with the ``result`` that follows.
- ``error``: severity ``warning`` is a ``notification`` (e.g. "Loop detected, stopping
  execution"), any other severity an ``error`` (e.g. "Maximum session turns exceeded"; the CLI
  may still end that run with a ``success`` result, which then completes the turn).
- ``result``: status ``success`` is ``turn_completed``, any other status an ``error`` (text:
  the error's message, else its type); ``usage`` is ``stats`` (``input_tokens``,
  ``output_tokens``, ``total_tokens``, ``cached``, ``duration_ms``, ``tool_calls`` and the
  same tokens per model under ``models``).
- every other record is ``raw``. The stream carries no working directory and no cost.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from agentwatch.hookspecs import hookimpl
from agentwatch.model import RAW, Format, Normalized
from agentwatch.plugins.formats.fields import by_type, mapping, string


def _error_message(data: dict[str, Any]) -> str | None:
    """The ``message``, else the ``type``, of a record's ``error`` object."""
    error = mapping(data.get("error")) or {}
    return string(error.get("message")) or string(error.get("type"))


def _init(data: dict[str, Any]) -> Normalized:
    return Normalized("session_started", session_id=string(data.get("session_id")))


_MESSAGE_KINDS = {"user": "prompt", "assistant": "output"}


def _message(data: dict[str, Any]) -> Normalized:
    kind = _MESSAGE_KINDS.get(string(data.get("role")) or "")
    return RAW if kind is None else Normalized(kind, text=string(data.get("content")))


def _tool_use(data: dict[str, Any]) -> Normalized:
    return Normalized("tool_use", tool=string(data.get("tool_name")), input=data.get("parameters"))


def _tool_result(data: dict[str, Any]) -> Normalized:
    return Normalized(
        "tool_result",
        text=string(data.get("output")) or _error_message(data),
        is_error=data.get("status") == "error",
    )


def _error(data: dict[str, Any]) -> Normalized:
    text = string(data.get("message"))
    if data.get("severity") == "warning":
        return Normalized("notification", text=text)
    return Normalized("error", text=text, is_error=True)


def _result(data: dict[str, Any]) -> Normalized:
    usage = mapping(data.get("stats"))
    if data.get("status") == "success":
        return Normalized("turn_completed", is_error=False, usage=usage)
    return Normalized("error", text=_error_message(data), is_error=True, usage=usage)


_BY_TYPE: dict[str, Callable[[dict[str, Any]], Normalized]] = {
    "init": _init,
    "message": _message,
    "tool_use": _tool_use,
    "tool_result": _tool_result,
    "error": _error,
    "result": _result,
}

#: What makes a record of each type unmistakably Gemini's, besides its string ``timestamp``.
_SIGNATURE: dict[str, Callable[[dict[str, Any]], bool]] = {
    "init": lambda d: isinstance(d.get("session_id"), str) and isinstance(d.get("model"), str),
    "message": lambda d: d.get("role") in ("user", "assistant") and isinstance(d.get("content"), str),
    "tool_use": lambda d: isinstance(d.get("tool_name"), str) and isinstance(d.get("tool_id"), str),
    "tool_result": lambda d: isinstance(d.get("tool_id"), str) and d.get("status") in ("success", "error"),
    "error": lambda d: d.get("severity") in ("warning", "error") and isinstance(d.get("message"), str),
    "result": lambda d: d.get("status") in ("success", "error") and "subtype" not in d,
}


class GeminiStreamJsonFormat:
    """Reads the JSONL stream of Gemini CLI's headless mode."""

    name = "gemini-stream-json"

    def normalize(self, data: Any) -> Normalized:
        if not isinstance(data, dict):
            return RAW
        return by_type(data, _BY_TYPE)

    def sniff(self, data: Any) -> bool:
        """A record of one of the six types with that type's own fields and a ``timestamp``."""
        if not isinstance(data, dict) or not isinstance(data.get("timestamp"), str):
            return False
        record_type = data.get("type")
        signature = _SIGNATURE.get(record_type) if isinstance(record_type, str) else None
        return signature is not None and signature(data)


@hookimpl
def agentwatch_register_formats(register: Callable[[Format], None]) -> None:
    register(GeminiStreamJsonFormat())
