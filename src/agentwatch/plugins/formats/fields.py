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


def between(text: str, start: str, end: str) -> str | None:
    """The text between the first ``start`` in ``text`` and the first ``end`` after it, or ``None``.

    What ``re.search(f"{start}(.*?){end}", text, re.DOTALL)`` finds, in one pass: a regular
    expression retries its scan from every ``start`` that has no ``end`` after it, which takes time
    quadratic in the length of a record made of many of them.
    """
    opened = text.find(start)
    if opened < 0:
        return None
    closed = text.find(end, opened + len(start))
    return None if closed < 0 else text[opened + len(start) : closed]


def by_type(data: dict[str, Any], handlers: Mapping[str, Callable[[dict[str, Any]], Normalized]]) -> Normalized:
    """``data`` read by the handler of its ``type``; ``raw`` for a type without one."""
    record_type = data.get("type")
    handler = handlers.get(record_type) if isinstance(record_type, str) else None
    return handler(data) if handler else RAW
