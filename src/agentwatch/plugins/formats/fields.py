"""Reading typed fields out of untrusted records: a wrong type reads as ``None``, never raises."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from agentwatch.model import RAW, Normalized


def string(value: Any) -> str | None:
    """``value`` if it is a string."""
    return value if isinstance(value, str) else None


def mapping(value: Any) -> dict[str, Any] | None:
    """``value`` if it is a JSON object."""
    return value if isinstance(value, dict) else None


def number(value: Any) -> float | None:
    """``value`` as a float if it is a JSON number (booleans are not numbers)."""
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def by_type(data: dict[str, Any], handlers: Mapping[str, Callable[[dict[str, Any]], Normalized]]) -> Normalized:
    """``data`` read by the handler of its ``type``; ``raw`` for a type without one."""
    record_type = data.get("type")
    handler = handlers.get(record_type) if isinstance(record_type, str) else None
    return handler(data) if handler else RAW
