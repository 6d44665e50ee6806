"""The ``agentwatch`` format: records that are already canonical events.

``data`` is ``{"kind": "<canonical kind>", ...}`` with the optional fields ``text``, ``tool``,
``input``, ``is_error``, ``usage``, ``cost_usd``, ``session_id`` and ``cwd``. A kind outside
the table of protocol.md, or a record that is not an object, is stored as ``raw``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from agentwatch.hookspecs import hookimpl
from agentwatch.model import KINDS, RAW, Format, Normalized
from agentwatch.plugins.formats.fields import mapping, number, string


class CanonicalFormat:
    """Reads records written directly in canonical form."""

    name = "agentwatch"

    def normalize(self, data: Any) -> Normalized:
        if not isinstance(data, dict):
            return RAW
        kind = data.get("kind")
        if data.get("type") == "keep_alive" and kind is None:
            return Normalized("raw", heartbeat=True)
        if not isinstance(kind, str) or kind not in KINDS:
            return RAW
        is_error = data.get("is_error")
        return Normalized(
            kind,
            text=string(data.get("text")),
            tool=string(data.get("tool")),
            input=data.get("input"),
            is_error=is_error if isinstance(is_error, bool) else None,
            usage=mapping(data.get("usage")),
            cost_usd=number(data.get("cost_usd")),
            session_id=string(data.get("session_id")),
            cwd=string(data.get("cwd")),
        )

    def sniff(self, data: Any) -> bool:
        """A JSON object whose ``kind`` is one of the canonical kinds."""
        return isinstance(data, dict) and isinstance(kind := data.get("kind"), str) and kind in KINDS


@hookimpl
def agentwatch_register_formats(register: Callable[[Format], None]) -> None:
    register(CanonicalFormat())
