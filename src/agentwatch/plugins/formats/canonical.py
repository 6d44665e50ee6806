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


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


class CanonicalFormat:
    """Reads records written directly in canonical form."""

    name = "agentwatch"

    def normalize(self, data: Any) -> Normalized:
        if not isinstance(data, dict):
            return RAW
        kind = data.get("kind")
        if data.get("type") == "keep_alive" and kind is None:
            return Normalized("raw", heartbeat=True)
        if kind not in KINDS:
            return RAW
        is_error = data.get("is_error")
        usage = data.get("usage")
        cost = data.get("cost_usd")
        return Normalized(
            kind,
            text=_str(data.get("text")),
            tool=_str(data.get("tool")),
            input=data.get("input"),
            is_error=is_error if isinstance(is_error, bool) else None,
            usage=usage if isinstance(usage, dict) else None,
            cost_usd=float(cost) if isinstance(cost, int | float) and not isinstance(cost, bool) else None,
            session_id=_str(data.get("session_id")),
            cwd=_str(data.get("cwd")),
        )


@hookimpl
def agentwatch_register_formats(register: Callable[[Format], None]) -> None:
    register(CanonicalFormat())
