"""Quoting what a client sent in an error message or a log line, without letting it grow them."""

from __future__ import annotations

from typing import Any


def brief(value: Any, limit: int = 60) -> str:
    """``repr(value)`` cut to ``limit`` characters."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
