"""Reading typed fields out of untrusted records: a wrong type reads as ``None``, never raises."""

from __future__ import annotations

from typing import Any


def string(value: Any) -> str | None:
    """``value`` if it is a string."""
    return value if isinstance(value, str) else None


def mapping(value: Any) -> dict[str, Any] | None:
    """``value`` if it is a JSON object."""
    return value if isinstance(value, dict) else None


def number(value: Any) -> float | None:
    """``value`` as a float if it is a JSON number (booleans are not numbers)."""
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
